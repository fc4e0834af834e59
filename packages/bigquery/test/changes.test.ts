/**
 * The changes BigQuery CDC cannot take as they come: TRUNCATE (no DML on CDC tables: a new
 * version table behind the view), added columns (added to BigQuery before the rows that carry
 * them, while the Storage Write API still lags), and what happens inside one transaction.
 */
import { describe, expect, it } from 'vitest';
import { waitFor } from '../../pg-replicate/test/helpers.js';
import { expectSameRows, PROJECT, replicate, setupSuite, sinkOptions } from './harness.js';

const suite = setupSuite('bq_changes', { schemaPropagationMs: 300 });

function versionOf(dataset: string, view: string): string {
  const query = suite.fake.table(PROJECT, dataset, view)?.viewQuery ?? '';
  return /\.([^.`]+)`$/.exec(query)?.[1] ?? '';
}

describe('TRUNCATE', () => {
  it('switches the view to a new, empty version and drops the old one', async () => {
    await suite.db.sql(`
      CREATE TABLE t (id int PRIMARY KEY, v text);
      CREATE TABLE other (id int PRIMARY KEY, v text);
      INSERT INTO t SELECT g, 'before' FROM generate_series(1, 20) g;
      INSERT INTO other VALUES (1, 'kept');
      CREATE PUBLICATION pub_t FOR TABLE t, other;`);
    const options = sinkOptions(suite.fake, 'trunc');
    await replicate(suite.db, { publication: 'pub_t', slot: 'slot_t', sink: options });
    const first = versionOf('trunc', 'public_t');
    await suite.db.sql(`
      BEGIN;
      INSERT INTO t VALUES (21, 'gone with the truncate');
      UPDATE other SET v = 'still kept';
      TRUNCATE t;
      INSERT INTO t VALUES (1, 'after'), (2, 'after');
      COMMIT;
      INSERT INTO t VALUES (3, 'later');`);
    await replicate(suite.db, { publication: 'pub_t', slot: 'slot_t', sink: options });
    expect(await expectSameRows(suite.db, suite.fake, 'trunc', 't')).toBe(3);
    expect(await expectSameRows(suite.db, suite.fake, 'trunc', 'other')).toBe(1);
    const second = versionOf('trunc', 'public_t');
    expect(second).not.toBe(first);
    const tables = suite.fake.tableNames(PROJECT, 'trunc');
    expect(tables).not.toContain(first);
    expect(tables).toContain(second);
  });

  it('of several tables at once, twice in a transaction, resumes on the recorded version', async () => {
    const options = sinkOptions(suite.fake, 'trunc');
    await suite.db.sql(`
      BEGIN;
      TRUNCATE t, other;
      INSERT INTO t VALUES (5, 'x');
      TRUNCATE t;
      INSERT INTO t VALUES (6, 'y');
      INSERT INTO other VALUES (9, 'z');
      COMMIT;`);
    await replicate(suite.db, { publication: 'pub_t', slot: 'slot_t', sink: options });
    expect(await expectSameRows(suite.db, suite.fake, 'trunc', 't')).toBe(1);
    expect(await expectSameRows(suite.db, suite.fake, 'trunc', 'other')).toBe(1);
    const version = versionOf('trunc', 'public_t');
    // A new run finds the same version through the state table and keeps writing there.
    await suite.db.sql(`INSERT INTO t VALUES (7, 'z')`);
    await replicate(suite.db, { publication: 'pub_t', slot: 'slot_t', sink: options });
    expect(versionOf('trunc', 'public_t')).toBe(version);
    expect(await expectSameRows(suite.db, suite.fake, 'trunc', 't')).toBe(2);
    // Exactly one version per view is left.
    expect(
      suite.fake.tableNames(PROJECT, 'trunc').filter((name) => name.startsWith('public_t__v')),
    ).toHaveLength(1);
  });
});

describe('schema changes', () => {
  it('adds columns while streaming, before the rows that carry them (retrying while BigQuery lags)', async () => {
    await suite.db.sql(`
      CREATE TABLE evolving (id int PRIMARY KEY, a text);
      INSERT INTO evolving VALUES (1, 'one');
      CREATE PUBLICATION pub_evolving FOR TABLE evolving;`);
    const warnings: string[] = [];
    const options = sinkOptions(suite.fake, 'schema', {
      logger: { info: () => {}, warn: (message) => warnings.push(message) },
    });
    await replicate(suite.db, { publication: 'pub_evolving', slot: 'slot_evolving', sink: options });
    // This time the pipeline is streaming when the table changes.
    const stop = new AbortController();
    let streaming: () => void = () => {};
    const started = new Promise<void>((resolve) => {
      streaming = resolve;
    });
    const running = replicate(suite.db, {
      publication: 'pub_evolving',
      slot: 'slot_evolving',
      sink: options,
      catchUp: false,
      signal: stop.signal,
      onProgress: (event) => {
        if (event.type === 'streaming') streaming();
      },
    });
    await started;
    await suite.db.sql(`
      INSERT INTO evolving VALUES (2, 'two');
      ALTER TABLE evolving ADD COLUMN b int, ADD COLUMN c jsonb;
      INSERT INTO evolving VALUES (3, 'three', 3, '{"x": 3}');
      UPDATE evolving SET b = 1 WHERE id = 1;
      ALTER TABLE evolving ADD COLUMN "Weird Name!" text[];
      INSERT INTO evolving VALUES (4, 'four', 4, NULL, '{w}');`);
    await waitFor(() => suite.fake.rows(PROJECT, 'schema', 'public_evolving').some((row) => row.id === '4'));
    stop.abort();
    await running;
    expect(await expectSameRows(suite.db, suite.fake, 'schema', 'evolving')).toBe(4);
    const table = suite.fake.table(PROJECT, 'schema', versionOf('schema', 'public_evolving'))!;
    expect(table.schema.map((field) => `${field.name} ${field.type} ${field.mode}`)).toEqual([
      'id INT64 REQUIRED',
      'a STRING NULLABLE',
      'b INT64 NULLABLE',
      'c JSON NULLABLE',
      'Weird_Name_ STRING REPEATED',
    ]);
    // The Storage Write API saw the new columns late: those appends were retried.
    expect(warnings.join('\n')).toMatch(/extra fields.*retrying/);
    expect(
      suite.fake.table(PROJECT, 'schema', 'public_evolving')?.schema.map((field) => field.name),
    ).toContain('Weird_Name_');
  });

  it('keeps dropped columns (NULL from then on) and refuses a changed type', async () => {
    const options = sinkOptions(suite.fake, 'schema');
    await suite.db.sql(`
      ALTER TABLE evolving DROP COLUMN c;
      INSERT INTO evolving VALUES (5, 'five', 5);`);
    await replicate(suite.db, { publication: 'pub_evolving', slot: 'slot_evolving', sink: options });
    const rows = suite.fake.rows(PROJECT, 'schema', 'public_evolving');
    expect(rows.find((row) => row.id === '5')).toMatchObject({ a: 'five', b: '5', c: null });
    expect(rows.find((row) => row.id === '3')).toMatchObject({ c: '{"x":3}' });
    await suite.db.sql(
      `ALTER TABLE evolving ALTER COLUMN b TYPE text; INSERT INTO evolving VALUES (6, 'six', 'six')`,
    );
    await expect(
      replicate(suite.db, { publication: 'pub_evolving', slot: 'slot_evolving', sink: options }),
    ).rejects.toThrow(/"public"."evolving".b is INTEGER NULLABLE in .* but maps to STRING NULLABLE now/);
  });
});

describe('within one transaction', () => {
  it('applies the last change of each key, with key updates, deletes and re-inserts', async () => {
    await suite.db.sql(`
      CREATE TABLE churn (id int PRIMARY KEY, v int);
      CREATE PUBLICATION pub_churn FOR TABLE churn;`);
    const options = sinkOptions(suite.fake, 'churn');
    await replicate(suite.db, { publication: 'pub_churn', slot: 'slot_churn', sink: options });
    await suite.db.sql(`
      BEGIN;
      INSERT INTO churn SELECT g, g FROM generate_series(1, 10) g;
      UPDATE churn SET v = v * 10;
      DELETE FROM churn WHERE id = 3;
      INSERT INTO churn VALUES (3, 333);
      UPDATE churn SET id = id + 100 WHERE id IN (4, 5);
      UPDATE churn SET id = 4 WHERE id = 104;
      DELETE FROM churn WHERE id = 6;
      COMMIT;`);
    await replicate(suite.db, {
      publication: 'pub_churn',
      slot: 'slot_churn',
      sink: options,
      batchMaxRows: 7,
    });
    expect(await expectSameRows(suite.db, suite.fake, 'churn', 'churn')).toBe(9);
  });

  it('keys BigQuery on the replica identity index when it is not the primary key', async () => {
    await suite.db.sql(`
      CREATE TABLE coded (id int PRIMARY KEY, code text NOT NULL, v int);
      CREATE UNIQUE INDEX coded_code ON coded (code);
      ALTER TABLE coded REPLICA IDENTITY USING INDEX coded_code;
      INSERT INTO coded SELECT g, 'c' || g, g FROM generate_series(1, 6) g;
      CREATE PUBLICATION pub_coded FOR TABLE coded;`);
    const options = sinkOptions(suite.fake, 'coded');
    await replicate(suite.db, { publication: 'pub_coded', slot: 'slot_coded', sink: options });
    await suite.db.sql(`
      UPDATE coded SET id = 100 WHERE id = 1;
      UPDATE coded SET code = 'renamed' WHERE id = 2;
      DELETE FROM coded WHERE id = 3;
      UPDATE coded SET v = 0;`);
    await replicate(suite.db, { publication: 'pub_coded', slot: 'slot_coded', sink: options });
    expect(await expectSameRows(suite.db, suite.fake, 'coded', 'coded')).toBe(5);
    const view = suite.fake.table(PROJECT, 'coded', 'public_coded')!;
    const table = suite.fake.table(PROJECT, 'coded', /\.([^.`]+)`$/.exec(view.viewQuery!)![1]!)!;
    expect(table.primaryKey).toEqual(['code']);
  });
});
