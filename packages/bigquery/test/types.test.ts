/**
 * Every type the README's mapping table lists, through the copy and as changes, compared with
 * what Postgres itself computes as BigQuery's value (see `harness.ts`); then the values BigQuery's
 * types cannot hold, with both policies.
 */
import { describe, expect, it } from 'vitest';
import { TYPES_TABLE, typeRows } from './fixtures/types-table.js';
import { expectSameRows, PROJECT, replicate, setupSuite, sinkOptions } from './harness.js';

const suite = setupSuite('bq_types');

describe('type mapping', () => {
  it('copies and streams every type exactly', async () => {
    await suite.db.sql(TYPES_TABLE);
    await suite.db.sql(typeRows(0));
    const options = sinkOptions(suite.fake, 'types');
    await replicate(suite.db, { publication: 'pub_types', slot: 'slot_types', sink: options });
    await expectSameRows(suite.db, suite.fake, 'types', 'types');
    // The same values again, this time as changes.
    await suite.db.sql(typeRows(10));
    await suite.db.sql(
      `UPDATE types SET t = t || '!', ta = ta || '{x}'::text[] WHERE id IN (1, 11); DELETE FROM types WHERE id = 2`,
    );
    await replicate(suite.db, { publication: 'pub_types', slot: 'slot_types', sink: options });
    expect(await expectSameRows(suite.db, suite.fake, 'types', 'types')).toBe(7);
    const table = suite.fake.rows(PROJECT, 'types', 'public_types');
    expect(table.length).toBe(7);
  });

  it('creates the table with its key, clustering, max_staleness and BigQuery types', async () => {
    await suite.db.sql(`
      CREATE TABLE keyed (region text, id bigint, at date, payload jsonb, PRIMARY KEY (region, id, at));
      CREATE PUBLICATION pub_keyed FOR TABLE keyed;`);
    await replicate(suite.db, {
      publication: 'pub_keyed',
      mode: 'copy',
      sink: sinkOptions(suite.fake, 'layout', { maxStaleness: '15m' }),
    });
    const view = suite.fake.table(PROJECT, 'layout', 'public_keyed');
    expect(view?.type).toBe('VIEW');
    const target = /`[^`]*\.([^`.]+)`/.exec(view?.viewQuery ?? '')?.[1] ?? '';
    const table = suite.fake.table(PROJECT, 'layout', target)!;
    expect(table.primaryKey).toEqual(['region', 'id', 'at']);
    expect(table.clustering).toEqual(['region', 'id', 'at']);
    expect(table.maxStaleness).toBe('0-0 0 0:15:0');
    // A changed option is applied to the existing table on the next start.
    await replicate(suite.db, {
      publication: 'pub_keyed',
      mode: 'copy',
      sink: sinkOptions(suite.fake, 'layout', { maxStaleness: 90 }),
    });
    expect(suite.fake.table(PROJECT, 'layout', target)?.maxStaleness).toBe('0-0 0 0:1:30');
    expect(table.schema).toEqual([
      { name: 'region', type: 'STRING', mode: 'REQUIRED' },
      { name: 'id', type: 'INT64', mode: 'REQUIRED' },
      { name: 'at', type: 'DATE', mode: 'REQUIRED' },
      { name: 'payload', type: 'JSON', mode: 'NULLABLE' },
    ]);
  });
});

describe('values BigQuery cannot hold', () => {
  const setup = `
    CREATE TABLE odd (id int PRIMARY KEY, n numeric(10,2), d date, ts timestamptz, tm time, iv interval, ia int[], note text);
    CREATE PUBLICATION pub_odd FOR TABLE odd;
    INSERT INTO odd VALUES (1, 1, '2024-01-01', now(), '12:00', '1 day', '{1}', 'fine');`;

  it('stop the pipeline naming table, column and row (policy error)', async () => {
    await suite.db.sql(setup);
    const options = sinkOptions(suite.fake, 'odd_error');
    await replicate(suite.db, { publication: 'pub_odd', slot: 'slot_odd', sink: options });
    await suite.db.sql(`INSERT INTO odd VALUES (2, 'NaN', NULL, NULL, NULL, NULL, NULL, 'nan')`);
    await expect(
      replicate(suite.db, { publication: 'pub_odd', slot: 'slot_odd', sink: options }),
    ).rejects.toThrow(/"public"."odd".n of row \(id=2\): NaN does not fit in BigQuery's NUMERIC/);
    await suite.db.sql(`DELETE FROM odd WHERE id = 2; SELECT pg_drop_replication_slot('slot_odd')`);
  });

  it('become NULL with a warning under policy null', async () => {
    const warnings: string[] = [];
    const options = sinkOptions(suite.fake, 'odd_null', {
      unrepresentable: 'null',
      logger: { info: () => {}, warn: (message) => warnings.push(message) },
    });
    await replicate(suite.db, { publication: 'pub_odd', slot: 'slot_odd_null', sink: options });
    await suite.db.sql(`
      INSERT INTO odd VALUES
        (3, 'NaN', '0044-03-15 BC', 'infinity', '24:00:00', '200000 years', '{1,NULL}', 'odd'),
        (4, 'NaN', 'infinity', '10000-01-01 00:00:00+00', '24:00', '-200000 years', '{{1,2},{3,4}}', 'odd');`);
    await replicate(suite.db, { publication: 'pub_odd', slot: 'slot_odd_null', sink: options });
    const rows = suite.fake.rows(PROJECT, 'odd_null', 'public_odd').filter((row) => Number(row.id) >= 3);
    expect(rows).toHaveLength(2);
    for (const row of rows)
      expect([row.n, row.d, row.ts, row.tm, row.iv, row.ia, row.note]).toEqual([
        null,
        null,
        null,
        null,
        null,
        [],
        'odd',
      ]);
    expect(warnings.join('\n')).toMatch(
      /"public"."odd".n: NaN does not fit in BigQuery's NUMERIC; written as NULL \(row \(id=3\)\)/,
    );
    expect(warnings).toHaveLength(6);
  });
});
