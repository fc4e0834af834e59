/**
 * Deleting ahead (see `src/delete-ahead.ts`): the rows a transaction's updates and deletes replace
 * go first, a few row groups per DuckDB transaction, when one delete could hold more version data
 * than `deleteMemory`. Tables end equal to Postgres whichever way their rows went; a transaction
 * that fails after its rows were deleted ahead leaves them deleted until it comes again.
 */
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DuckDbSink, type DuckDbSinkOptions } from '../src/index.js';
import {
  CountingSink,
  expectEqualTables,
  freshDatabase,
  queryDuckDb,
  replicate,
  scratchDir,
  type TestDatabase,
  watchChunks,
} from './harness.js';

let db: TestDatabase;
let scratch: ReturnType<typeof scratchDir>;

beforeAll(async () => {
  db = await freshDatabase('duckdb_delete_ahead');
  scratch = scratchDir();
});
afterAll(async () => {
  await db?.close();
  scratch?.remove();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** The row groups of narrow rows (65,536) hold 512 KiB each: one per chunk under this budget. */
const DELETE_MEMORY = '512KB';
const ROWS = 300_000;
/** Incompressible text, stored out of line (TOAST): ~3.2 KB. */
const BIG = `(SELECT string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 100) g)`;

describe('deleting ahead', () => {
  it('deletes ahead, in chunks, the rows scattered updates and deletes replace, also for transactions in parts', async () => {
    await db.sql(`
      CREATE TABLE narrow (id bigint PRIMARY KEY, n int, t text, amount numeric(10,2));
      INSERT INTO narrow SELECT g, g % 1000, 'row ' || g, (g % 10000) / 100.0 FROM generate_series(1, ${ROWS}) g;
      CREATE TABLE docs (id int PRIMARY KEY, n int, body text);
      ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
      INSERT INTO docs SELECT g, 0, ${BIG} FROM generate_series(1, 12000) g;
      CREATE PUBLICATION pub_scatter FOR TABLE narrow, docs;`);
    const path = join(scratch.dir, 'scatter.duckdb');
    const options: DuckDbSinkOptions = { path, deleteMemory: DELETE_MEMORY };
    await replicate(db, { publication: 'pub_scatter', slot: 'slot_scatter', sink: options });
    const sizes = await queryDuckDb(
      path,
      `SELECT table_key, row_group_size FROM _pg_replicate.tables ORDER BY table_key`,
    );
    // What each copy wrote in, recorded for the chunks: narrow rows 65,536, ~3 KB rows 2,048.
    expect(sizes).toEqual([
      { table_key: '"public"."docs"', row_group_size: 2048 },
      { table_key: '"public"."narrow"', row_group_size: 65_536 },
    ]);

    // Scattered rows, chosen so that no two statements touch the same one.
    await db.sql(`
      -- One batch: 2,000 updates and 300 deletes.
      BEGIN;
      UPDATE narrow SET n = n + 1 WHERE id % 150 = 0;
      DELETE FROM narrow WHERE id % 1000 = 7;
      COMMIT;
      -- In parts (500 changes per batch; 3,697 changes: 7 parts held back and the last batch):
      -- 1,500 updates, 5 key updates, new rows updated and deleted, 300 deletes, 600 updates of
      -- narrow — and in docs, rows updated around their TOAST values, in place or under a new key,
      -- then some of them deleted in a later part: their values are read from DuckDB, so docs
      -- is never deleted ahead.
      BEGIN;
      UPDATE narrow SET t = t || '!' WHERE id % 200 = 1;
      UPDATE docs SET n = n + 1 WHERE id % 14 = 0;
      UPDATE docs SET id = -id WHERE id IN (3, 5);
      DELETE FROM docs WHERE id % 28 = 0;
      UPDATE narrow SET id = -id WHERE id IN (2, 4, 6, 8, 10);
      INSERT INTO narrow VALUES (${ROWS + 1}, 1, 'new', 1), (${ROWS + 2}, 2, 'new', 2);
      UPDATE narrow SET n = 99 WHERE id IN (${ROWS + 1}, ${ROWS + 2});
      DELETE FROM narrow WHERE id = ${ROWS + 2};
      DELETE FROM narrow WHERE id % 1000 = 9;
      UPDATE narrow SET amount = amount + 1 WHERE id % 500 = 13;
      COMMIT;
      -- 6,000 updates: 12 parts, more than are held back (8), so the last 4 apply in the open transaction.
      UPDATE narrow SET n = n - 1 WHERE id % 50 = 2;`);
    const chunks = watchChunks();
    const sink = new CountingSink(new DuckDbSink(options));
    await replicate(db, { publication: 'pub_scatter', slot: 'slot_scatter', sink, batchMaxRows: 500 });
    expect(sink.partialBatches).toBeGreaterThanOrEqual(14);
    // 300,000 rows in groups of 65,536: 5 chunks for each of the three transactions, deleting
    // 2,300 rows, then 2,405 (every part held back), then 4,000 (the first 8 parts of 12).
    expect(chunks.get('"public"."narrow"')).toEqual({ chunks: 15, rows: 2300 + 2405 + 4000 });
    expect(chunks.get('"public"."docs"')).toBeUndefined();
    await expectEqualTables(db, path, ['public.narrow', 'public.docs']);
  });

  it('reaches every row when a checkpoint between chunks vacuums an emptied row group away', async () => {
    await db.sql(`
      CREATE TABLE vacuumed (id bigint PRIMARY KEY, n int);
      INSERT INTO vacuumed SELECT g, 0 FROM generate_series(1, ${ROWS}) g;
      CREATE PUBLICATION pub_vacuumed FOR TABLE vacuumed;`);
    const path = join(scratch.dir, 'vacuumed.duckdb');
    const options: DuckDbSinkOptions = { path, deleteMemory: DELETE_MEMORY };
    await replicate(db, { publication: 'pub_vacuumed', slot: 'slot_vacuumed', sink: options });
    // The copy wrote the rows in order, 65,536 per group: the second group goes whole, and the
    // checkpoint after its chunk drops it, moving the rows after it 65,536 places down.
    await db.sql(`
      BEGIN;
      DELETE FROM vacuumed WHERE id BETWEEN 65537 AND 131072;
      UPDATE vacuumed SET n = 1 WHERE id % 97 = 0;
      COMMIT;`);
    const chunks = watchChunks();
    await replicate(db, { publication: 'pub_vacuumed', slot: 'slot_vacuumed', sink: options });
    expect(chunks.get('"public"."vacuumed"')?.chunks).toBe(5);
    await expectEqualTables(db, path, ['public.vacuumed']);
  });

  it('leaves rows deleted ahead deleted when their transaction fails, and applies it whole when it comes again', async () => {
    await db.sql(`
      CREATE TABLE fails (id bigint PRIMARY KEY, n int, amount numeric(10,2));
      INSERT INTO fails SELECT g, g % 1000, (g % 10000) / 100.0 FROM generate_series(1, ${ROWS}) g;
      CREATE PUBLICATION pub_fails FOR TABLE fails;`);
    const path = join(scratch.dir, 'fails.duckdb');
    const options: DuckDbSinkOptions = { path, deleteMemory: DELETE_MEMORY };
    await replicate(db, { publication: 'pub_fails', slot: 'slot_fails', sink: options });
    await db.sql(`
      CREATE TABLE doomed AS SELECT id FROM fails WHERE id IN (SELECT (random() * ${ROWS - 1})::bigint + 1 FROM generate_series(1, 3000));
      BEGIN;
      UPDATE fails SET n = n + 1 WHERE id IN (SELECT id FROM doomed);
      UPDATE fails SET amount = 'NaN' WHERE id = (SELECT max(id) FROM doomed);
      COMMIT;`);
    const [{ doomed }] = (await db.sql<{ doomed: string }>(`SELECT count(*) AS doomed FROM doomed`)) as [
      { doomed: string },
    ];
    const failing = replicate(db, {
      publication: 'pub_fails',
      slot: 'slot_fails',
      sink: options,
      batchMaxRows: 1000,
    });
    await expect(failing).rejects.toMatchObject({
      code: 'SINK_ERROR',
      message: expect.stringMatching(/column "amount" of "public"."fails" .*NaN/),
    });
    // The rows went ahead of the transaction that failed: gone, and the position is still before it.
    const [left] = await queryDuckDb(path, 'SELECT count(*)::INT AS n FROM public.fails');
    expect(left?.['n']).toBe(ROWS - Number(doomed));

    const duck = await DuckDBInstance.create(path);
    const connection = await duck.connect();
    await connection.run('ALTER TABLE public.fails ALTER COLUMN amount TYPE VARCHAR');
    connection.closeSync();
    duck.closeSync();
    await replicate(db, { publication: 'pub_fails', slot: 'slot_fails', sink: options });
    await expectEqualTables(db, path, ['public.fails']);
  });
});
