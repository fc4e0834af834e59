/**
 * The hard cases of applying changes set-wise: unchanged TOAST values, key updates, several
 * changes to one key in a batch, truncates between changes, transactions larger than a batch,
 * schema changes, tables identified by the whole row, and the changelog.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sink } from '../../pg-replicate/src/index.js';
import { Pipeline } from '../../pg-replicate/src/pipeline/pipeline.js';
import { PostgresSource } from '../../pg-replicate/src/source/postgres-source.js';
import { DuckDbSink } from '../src/index.js';
import {
  CountingSink,
  currentLsn,
  expectEqualTables,
  freshDatabase,
  queryDuckDb,
  replicate,
  scratchDir,
  type TestDatabase,
} from './harness.js';

let db: TestDatabase;
let scratch: ReturnType<typeof scratchDir>;

beforeAll(async () => {
  db = await freshDatabase('duckdb_cdc');
  scratch = scratchDir();
});
afterAll(async () => {
  await db?.close();
  scratch?.remove();
});

async function run(publication: string, sink: Sink, batchMaxRows = 10_000): Promise<void> {
  const source = new PostgresSource({ connection: db.options, publication, slot: `slot_${publication}` });
  await new Pipeline({
    source,
    sink,
    mode: 'both',
    batchMaxRows,
    batchMaxDelayMs: 20,
    endLsn: await currentLsn(db),
  }).run();
}

/** Incompressible text, stored out of line (TOAST) when longer than ~2 kB. */
const BIG = `(SELECT string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 100) g)`;

describe('applying changes', () => {
  it('keeps unchanged TOAST values through updates, key updates and batches', async () => {
    await db.sql(`
      CREATE TABLE docs (id int PRIMARY KEY, title text, body text, meta jsonb);
      ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL, ALTER COLUMN meta SET STORAGE EXTERNAL;
      CREATE PUBLICATION docs FOR TABLE docs;
      INSERT INTO docs SELECT g, 't' || g, ${BIG}, jsonb_build_object('pad', ${BIG}) FROM generate_series(1, 20) g;`);
    const path = join(scratch.dir, 'toast.duckdb');
    await run('docs', new DuckDbSink({ path }));
    await db.sql(`
      UPDATE docs SET title = 'one' WHERE id = 1;
      BEGIN; UPDATE docs SET title = 'two-a' WHERE id = 2; UPDATE docs SET title = 'two-b' WHERE id = 2; COMMIT;
      UPDATE docs SET id = 103 WHERE id = 3;
      BEGIN; UPDATE docs SET id = 104 WHERE id = 4; UPDATE docs SET title = 'four' WHERE id = 104; UPDATE docs SET id = 204 WHERE id = 104; COMMIT;
      BEGIN; UPDATE docs SET body = 'short now' WHERE id = 5; UPDATE docs SET title = 'five' WHERE id = 5; COMMIT;
      BEGIN; INSERT INTO docs VALUES (21, 'new', ${BIG}, '{}'); UPDATE docs SET title = 'new!' WHERE id = 21; COMMIT;
      BEGIN; DELETE FROM docs WHERE id = 6; INSERT INTO docs VALUES (6, 'again', ${BIG}, '{}'); UPDATE docs SET title = 'again!' WHERE id = 6; COMMIT;
      BEGIN; UPDATE docs SET id = 1000 WHERE id = 7; UPDATE docs SET id = 7 WHERE id = 8; UPDATE docs SET id = 8 WHERE id = 1000; COMMIT;
      UPDATE docs SET title = title || '.' WHERE id > 8;`);
    const counting = new CountingSink(new DuckDbSink({ path }));
    await run('docs', counting, 7);
    expect(counting.unchangedToast).toBeGreaterThan(20);
    expect(counting.keyUpdates).toBeGreaterThanOrEqual(5);
    await expectEqualTables(db, path, ['public.docs']);
  });

  it('updates rows with unchanged TOAST values in place, also before a schema change in the same transaction', async () => {
    await db.sql(`
      CREATE TABLE inplace (id int PRIMARY KEY, n int, body text, note text);
      ALTER TABLE inplace ALTER COLUMN body SET STORAGE EXTERNAL;
      CREATE PUBLICATION inplace FOR TABLE inplace;
      INSERT INTO inplace SELECT g, 0, ${BIG}, NULL FROM generate_series(1, 30) g;`);
    const path = join(scratch.dir, 'inplace.duckdb');
    await run('inplace', new DuckDbSink({ path }));
    // Two sets of unchanged columns in one batch (body; body and note), then an ALTER after them.
    await db.sql(`
      UPDATE inplace SET note = 'noted' WHERE id > 20;
      BEGIN; UPDATE inplace SET n = n + 1; UPDATE inplace SET note = 'again' WHERE id <= 10;
        ALTER TABLE inplace ADD COLUMN extra int; UPDATE inplace SET extra = 7 WHERE id <= 5; COMMIT;`);
    const counting = new CountingSink(new DuckDbSink({ path }));
    await run('inplace', counting);
    expect(counting.unchangedToast).toBeGreaterThanOrEqual(55);
    await expectEqualTables(db, path, ['public.inplace']);

    // A row DuckDB lacks cannot be updated in place: named, never silently skipped.
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const instance = await DuckDBInstance.create(path);
    const connection = await instance.connect();
    await connection.run('DELETE FROM public.inplace WHERE id = 30');
    connection.closeSync();
    instance.closeSync();
    await db.sql(`UPDATE inplace SET n = 100 WHERE id >= 29`);
    await expect(run('inplace', new DuckDbSink({ path }))).rejects.toMatchObject({
      code: 'SINK_ERROR',
      message: expect.stringMatching(/kept unchanged TOAST values of a row that is not in DuckDB/),
    });
  });

  it('applies truncates in order with the changes around them', async () => {
    await db.sql(`
      CREATE TABLE ta (id int PRIMARY KEY, v text);
      CREATE TABLE tb (id int PRIMARY KEY, v text);
      CREATE PUBLICATION trunc FOR TABLE ta, tb;
      INSERT INTO ta SELECT g, 'a' FROM generate_series(1, 10) g;
      INSERT INTO tb SELECT g, 'b' FROM generate_series(1, 10) g;`);
    const path = join(scratch.dir, 'truncate.duckdb');
    await run('trunc', new DuckDbSink({ path }));
    await db.sql(`
      BEGIN; INSERT INTO ta VALUES (11, 'x'); UPDATE tb SET v = 'b1'; TRUNCATE ta; INSERT INTO ta VALUES (1, 'after'); UPDATE tb SET v = 'b2' WHERE id < 5; COMMIT;
      INSERT INTO tb VALUES (11, 'y');
      TRUNCATE tb;
      INSERT INTO tb VALUES (1, 'z'), (2, 'z');
      BEGIN; UPDATE ta SET v = 'pre'; TRUNCATE ta, tb; INSERT INTO tb VALUES (3, 'last'); COMMIT;
      INSERT INTO ta VALUES (5, 'end');`);
    await run('trunc', new DuckDbSink({ path }));
    await expectEqualTables(db, path, ['public.ta', 'public.tb']);
  });

  it('writes a transaction larger than a batch in parts and commits it once', async () => {
    await db.sql(`
      CREATE TABLE big (id int PRIMARY KEY, n int, body text);
      ALTER TABLE big ALTER COLUMN body SET STORAGE EXTERNAL;
      CREATE PUBLICATION big FOR TABLE big;`);
    const path = join(scratch.dir, 'big.duckdb');
    await run('big', new DuckDbSink({ path }));
    await db.sql(`
      BEGIN;
      INSERT INTO big SELECT g, 0, CASE WHEN g % 10 = 0 THEN ${BIG} ELSE 'small' END FROM generate_series(1, 3000) g;
      UPDATE big SET n = n + 1 WHERE id % 2 = 0;
      DELETE FROM big WHERE id % 7 = 0;
      UPDATE big SET id = id + 10000 WHERE id % 5 = 0;
      UPDATE big SET n = n + 1 WHERE id > 10000;
      COMMIT;`);
    const counting = new CountingSink(new DuckDbSink({ path }));
    await run('big', counting, 500);
    expect(counting.partialBatches).toBeGreaterThan(5);
    expect(counting.unchangedToast).toBeGreaterThan(50);
    await expectEqualTables(db, path, ['public.big']);
  });

  it('follows schema changes: added, dropped, renamed and widened columns', async () => {
    await db.sql(`
      CREATE TABLE evolve (id int PRIMARY KEY, a int, b text, c numeric(5,2), d text);
      CREATE PUBLICATION evolve FOR TABLE evolve;
      INSERT INTO evolve SELECT g, g, 'b' || g, g / 10.0, 'd' FROM generate_series(1, 20) g;`);
    const path = join(scratch.dir, 'evolve.duckdb');
    await run('evolve', new DuckDbSink({ path }));
    await db.sql(`
      ALTER TABLE evolve ADD COLUMN e timestamptz;
      UPDATE evolve SET e = '2024-01-01 00:00:00+00' WHERE id < 5;
      BEGIN; INSERT INTO evolve VALUES (21, 21, 'x', 1.5, 'd', now()); ALTER TABLE evolve DROP COLUMN d; UPDATE evolve SET b = 'y' WHERE id = 21; COMMIT;
      ALTER TABLE evolve ALTER COLUMN a TYPE bigint;
      UPDATE evolve SET a = 9000000000 WHERE id = 1;
      ALTER TABLE evolve ALTER COLUMN c TYPE numeric(12,4);
      UPDATE evolve SET c = 12345678.1234 WHERE id = 2;
      ALTER TABLE evolve RENAME COLUMN b TO bee;
      UPDATE evolve SET bee = bee || '!' WHERE id % 2 = 0;
      INSERT INTO evolve VALUES (22, 22, 'z', 2.25, NULL);`);
    await run('evolve', new DuckDbSink({ path }));
    await expectEqualTables(db, path, ['public.evolve']);
    const columns = await queryDuckDb(
      path,
      `SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'evolve' ORDER BY column_index`,
    );
    expect(columns.map((c) => `${c['column_name']} ${c['data_type']}`)).toEqual([
      'id INTEGER',
      'a BIGINT',
      'bee VARCHAR',
      'c DECIMAL(12,4)',
      'e TIMESTAMP WITH TIME ZONE',
    ]);
  });

  it('matches whole rows under REPLICA IDENTITY FULL, duplicates included', async () => {
    await db.sql(`
      CREATE TABLE dup (a int, b text, f float8, j json);
      ALTER TABLE dup REPLICA IDENTITY FULL;
      CREATE TABLE byindex (id int PRIMARY KEY, code text NOT NULL, v text);
      CREATE UNIQUE INDEX byindex_code ON byindex (code);
      ALTER TABLE byindex REPLICA IDENTITY USING INDEX byindex_code;
      CREATE PUBLICATION dup FOR TABLE dup, byindex;
      INSERT INTO dup VALUES (1, 'x', 'NaN', '{"k": 1}'), (1, 'x', 'NaN', '{"k": 1}'), (1, 'x', 'NaN', '{"k": 1}'), (2, NULL, NULL, NULL), (2, NULL, NULL, NULL),
        (5, 'z', '0', NULL), (5, 'z', '-0', NULL), (6, 'w', '0', NULL), (6, 'w', '-0', NULL), (7, 'v', '-0', NULL);
      INSERT INTO byindex SELECT g, 'c' || g, 'v' FROM generate_series(1, 10) g;`);
    const path = join(scratch.dir, 'dup.duckdb');
    await run('dup', new DuckDbSink({ path }));
    await db.sql(`
      DELETE FROM dup WHERE ctid = (SELECT min(ctid) FROM dup WHERE a = 1);
      UPDATE dup SET b = 'y' WHERE ctid = (SELECT min(ctid) FROM dup WHERE a = 1);
      INSERT INTO dup VALUES (2, NULL, NULL, NULL);
      DELETE FROM dup WHERE ctid = (SELECT max(ctid) FROM dup WHERE a = 2);
      BEGIN; INSERT INTO dup VALUES (3, 'z', 1.5, '[]'); UPDATE dup SET a = 4 WHERE a = 3; INSERT INTO dup VALUES (4, 'z', 1.5, '[]'); COMMIT;
      -- 0 = -0, but Postgres deletes (and sends) one of them: the other must stay, whichever it is.
      DELETE FROM dup WHERE ctid = (SELECT ctid FROM dup WHERE a = 5 AND f::text = '-0');
      BEGIN; DELETE FROM dup WHERE ctid = (SELECT ctid FROM dup WHERE a = 6 AND f::text = '-0');
             DELETE FROM dup WHERE ctid = (SELECT ctid FROM dup WHERE a = 6 AND f::text = '0'); COMMIT;
      UPDATE dup SET b = 'u' WHERE a = 7;
      UPDATE byindex SET id = id + 100 WHERE id < 4;
      UPDATE byindex SET code = code || 'x' WHERE id > 7;
      UPDATE byindex SET v = 'w' WHERE id = 5;
      DELETE FROM byindex WHERE id = 6;`);
    await run('dup', new DuckDbSink({ path }), 3);
    await expectEqualTables(db, path, ['public.dup', 'public.byindex']);
  });

  it('keeps a changelog beside the table, or instead of it', async () => {
    await db.sql(`
      CREATE TABLE audited (id int PRIMARY KEY, v text, big text);
      ALTER TABLE audited ALTER COLUMN big SET STORAGE EXTERNAL;
      CREATE PUBLICATION audited FOR TABLE audited;
      INSERT INTO audited VALUES (1, 'a', ${BIG}), (2, 'b', NULL);`);
    const beside = join(scratch.dir, 'beside.duckdb');
    const only = join(scratch.dir, 'only.duckdb');
    await replicate(db, {
      publication: 'audited',
      slot: 'slot_beside',
      sink: { path: beside, changelog: 'beside' },
    });
    await replicate(db, {
      publication: 'audited',
      slot: 'slot_only',
      sink: { path: only, changelog: 'only' },
    });
    await db.sql(`
      INSERT INTO audited VALUES (3, 'c', NULL);
      UPDATE audited SET v = 'a2' WHERE id = 1;
      UPDATE audited SET id = 20 WHERE id = 2;
      DELETE FROM audited WHERE id = 3;
      TRUNCATE audited;`);
    await replicate(db, {
      publication: 'audited',
      slot: 'slot_beside',
      sink: { path: beside, changelog: 'beside' },
    });
    await replicate(db, {
      publication: 'audited',
      slot: 'slot_only',
      sink: { path: only, changelog: 'only' },
    });
    await expectEqualTables(db, beside, ['public.audited']);
    for (const path of [beside, only]) {
      const log = await queryDuckDb(
        path,
        `SELECT op, id, v, unchanged_toast, CAST(old AS VARCHAR) AS old, commit_time IS NOT NULL AS timed
           FROM public.audited_changelog ORDER BY commit_lsn, lsn, id`,
      );
      expect(log).toEqual([
        { op: 'copy', id: 1, v: 'a', unchanged_toast: null, old: null, timed: false },
        { op: 'copy', id: 2, v: 'b', unchanged_toast: null, old: null, timed: false },
        { op: 'insert', id: 3, v: 'c', unchanged_toast: null, old: null, timed: true },
        { op: 'update', id: 1, v: 'a2', unchanged_toast: ['big'], old: null, timed: true },
        { op: 'update', id: 20, v: 'b', unchanged_toast: null, old: '{"id":"2"}', timed: true },
        { op: 'delete', id: 3, v: null, unchanged_toast: null, old: '{"id":"3"}', timed: true },
        { op: 'truncate', id: null, v: null, unchanged_toast: null, old: null, timed: true },
      ]);
    }
    const tables = await queryDuckDb(
      only,
      `SELECT table_name FROM duckdb_tables() WHERE schema_name = 'public'`,
    );
    expect(tables).toEqual([{ table_name: 'audited_changelog' }]);
  });
});
