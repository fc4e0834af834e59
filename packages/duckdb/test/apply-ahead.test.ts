/**
 * Applying ahead (see `src/apply-ahead.ts`): the rows a transaction's updates and deletes replace,
 * and the rows it only updates in place, go first, a few row groups per DuckDB transaction, when
 * one statement could hold more than `deleteMemory`. Tables end equal to Postgres whichever way
 * their rows went; a transaction that fails after that leaves them so until it comes again —
 * then in batches cut anywhere else.
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
  db = await freshDatabase('duckdb_apply_ahead');
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

describe('applying ahead', () => {
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
      -- then some of them deleted in a later part: rows whose first change reads them are never
      -- deleted ahead, and only rows that nothing but in-place updates change are updated ahead.
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
    // Ranges of deletes only keep the copy's cache; ranges with updates in place keep less.
    expect(chunks.get('"public"."narrow"')).toEqual({
      chunks: 15,
      rows: 2300 + 2405 + 4000,
      updated: 0,
      cacheLimits: ['64MB'],
    });
    // 12,000 rows of docs in 6 groups of 2,048, one column updated in place: 2 ranges of 4 groups.
    // Only the 429 rows updated in place and never deleted go ahead (updated); the 428 deleted
    // later were read first, and the two moved to a new key are read for their TOAST values.
    expect(chunks.get('"public"."docs"')).toEqual({
      chunks: 2,
      rows: 0,
      updated: 429,
      cacheLimits: ['16MB'],
    });
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
    await expectNaNFailure(
      replicate(db, { publication: 'pub_fails', slot: 'slot_fails', sink: options, batchMaxRows: 1000 }),
      'fails',
    );
    // The rows went ahead of the transaction that failed: gone, and the position is still before it.
    const [left] = await queryDuckDb(path, 'SELECT count(*)::INT AS n FROM public.fails');
    expect(left?.['n']).toBe(ROWS - Number(doomed));

    await amountAsText(path, 'fails');
    await replicate(db, { publication: 'pub_fails', slot: 'slot_fails', sink: options });
    await expectEqualTables(db, path, ['public.fails']);
  });

  it('applies a failed transaction again over what went ahead, in other batches', async () => {
    await db.sql(`
      CREATE TABLE notes (id int PRIMARY KEY, n int, body text);
      ALTER TABLE notes ALTER COLUMN body SET STORAGE EXTERNAL;
      INSERT INTO notes SELECT g, 0, ${BIG} FROM generate_series(1, 12000) g;
      CREATE TABLE pruned (id int PRIMARY KEY, n int, body text);
      ALTER TABLE pruned ALTER COLUMN body SET STORAGE EXTERNAL;
      INSERT INTO pruned SELECT g, 0, ${BIG} FROM generate_series(1, 12000) g;
      CREATE TABLE amounts (id int PRIMARY KEY, amount numeric(10,2));
      INSERT INTO amounts VALUES (1, 1);
      CREATE PUBLICATION pub_again FOR TABLE notes, pruned, amounts;`);
    const path = join(scratch.dir, 'again.duckdb');
    const options: DuckDbSinkOptions = { path, deleteMemory: DELETE_MEMORY };
    await replicate(db, { publication: 'pub_again', slot: 'slot_again', sink: options });
    await db.sql(`
      BEGIN;
      UPDATE notes SET n = n + 1 WHERE id % 10 = 0;
      UPDATE pruned SET n = n + 1 WHERE id % 10 = 0;
      COMMIT;
      BEGIN;
      DELETE FROM notes WHERE id % 20 = 0;                        -- read first by the update before
      DELETE FROM pruned WHERE id % 10 = 0;                       -- all of pruned's, likewise
      UPDATE notes SET n = n + 1, body = 'short' WHERE id % 10 = 5; -- replaced unread
      DELETE FROM notes WHERE id % 10 = 7;                        -- deleted unread
      UPDATE notes SET n = n + 2 WHERE id % 10 = 5;               -- in place over the row just written
      UPDATE notes SET n = n + 5 WHERE id % 20 = 10;              -- in place a second time
      UPDATE notes SET id = -id WHERE id % 10 = 3;                -- moved, TOAST values read
      COMMIT;
      UPDATE amounts SET amount = 'NaN';`);
    // All three transactions in one batch: the collapsed batch deletes pruned's rows and notes'
    // id % 20 = 0, whose first changes read them — if they went ahead, the same transactions cut
    // into other batches would find them missing.
    const chunks = watchChunks();
    await expectNaNFailure(
      replicate(db, { publication: 'pub_again', slot: 'slot_again', sink: options, batchMaxDelayMs: 60_000 }),
      'amounts',
    );
    // Deletes and an update of one column: 384 KiB per group of 2,048, so one group per range.
    expect(chunks.get('"public"."notes"')).toEqual({
      chunks: 6,
      rows: 2400,
      updated: 600,
      cacheLimits: ['16MB'],
    });
    expect(chunks.get('"public"."pruned"')).toBeUndefined();
    const [ahead] = await queryDuckDb(
      path,
      `SELECT count(*)::INT AS n, count(*) FILTER (WHERE n = 6)::INT AS updated FROM public.notes`,
    );
    expect(ahead).toEqual({ n: 12000 - 2400, updated: 600 });

    await amountAsText(path, 'amounts');
    // Now the first transaction alone, in parts, then the second.
    await replicate(db, { publication: 'pub_again', slot: 'slot_again', sink: options, batchMaxRows: 500 });
    await expectEqualTables(db, path, ['public.notes', 'public.pruned', 'public.amounts']);
  });
});

/** The batch fails on the NaN written to `table`.amount, which DuckDB's DECIMAL cannot hold. */
async function expectNaNFailure(run: Promise<unknown>, table: string): Promise<void> {
  await expect(run).rejects.toMatchObject({
    code: 'SINK_ERROR',
    message: expect.stringMatching(new RegExp(`column "amount" of "public"."${table}" .*NaN`)),
  });
}

/** Makes `table`.amount VARCHAR in DuckDB, as the error's hint says: the NaN fits then. */
async function amountAsText(path: string, table: string): Promise<void> {
  const duck = await DuckDBInstance.create(path);
  const connection = await duck.connect();
  await connection.run(`ALTER TABLE public.${table} ALTER COLUMN amount TYPE VARCHAR`);
  connection.closeSync();
  duck.closeSync();
}
