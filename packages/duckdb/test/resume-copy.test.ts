/**
 * A copy interrupted part-way resumes with the chunks the DuckDB file lacks: rows written while it
 * was down (inserts, updates that move rows between chunks, key changes, deletes) still end equal
 * to Postgres, a rewritten table is copied again in full, and a replayed update that needs a row the
 * resumed copy could not bring makes the table copy again in full instead of guessing.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CopiedRows, CopyPlan, Logger, Lsn, TableSchema } from '../../pg-replicate/src/index.js';
import { isPgReplicateError } from '../../pg-replicate/src/index.js';
import { DuckDbSink, type DuckDbSinkOptions } from '../src/index.js';
import {
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
  db = await freshDatabase('resume_copy');
  scratch = scratchDir();
});
afterAll(async () => {
  await db?.close();
  scratch?.remove();
});

/**
 * A sink that "crashes" (throws) once `chunks` chunks are durable. Copied rows that `lost` matches
 * never reach DuckDB, as if in flight at the crash; they must live in the table's last chunk, which
 * is then never recorded, whenever it finishes.
 */
class CrashingSink extends DuckDbSink {
  #left: number;
  readonly #lost: ((id: number) => boolean) | undefined;
  #lastChunk = -1;

  constructor(options: DuckDbSinkOptions, chunks: number, lost?: (id: number) => boolean) {
    super(options);
    this.#left = chunks;
    this.#lost = lost;
  }

  override async beginCopy(table: TableSchema, snapshotLsn: Lsn | null, plan?: CopyPlan): Promise<void> {
    this.#lastChunk = (plan?.chunks.length ?? 1) - 1;
    await super.beginCopy(table, snapshotLsn, plan);
  }

  override async writeRows(table: TableSchema, rows: CopiedRows): Promise<void> {
    const lost = this.#lost;
    await super.writeRows(table, lost ? Array.from(rows).filter((row) => !lost(Number(row.text(0)))) : rows);
  }

  override async chunkCopied(table: TableSchema, index: number): Promise<void> {
    if (this.#lost !== undefined && index === this.#lastChunk) return; // in flight at the crash
    await super.chunkCopied(table, index);
    if (--this.#left === 0) throw new Error('simulated crash after a chunk');
  }
}

function recorder(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const push = (message: string) => lines.push(message);
  return { logger: { debug() {}, info: push, warn: push }, lines };
}

/** Four chunks of at least 60 pages, copied by four connections. */
const COPY = { copyWorkers: 4, copyChunkPages: 60, copyBatchRows: 500 } as const;

async function pagesOf(table: string): Promise<number> {
  const [row] = await db.sql<{ pages: string }>(
    `SELECT (pg_relation_size('${table}') / current_setting('block_size')::int)::text AS pages`,
  );
  return Number(row!.pages);
}

describe('a copy interrupted part-way', () => {
  it('copies only the missing chunks, and ends equal to Postgres after changes made meanwhile', async () => {
    await db.sql(`
      CREATE TABLE moving (id int8 PRIMARY KEY, grp int NOT NULL, pad text NOT NULL) WITH (fillfactor = 100);
      INSERT INTO moving SELECT g, g % 7, repeat(md5(g::text), 3) FROM generate_series(1, 24000) g;
      CREATE PUBLICATION pub_moving FOR TABLE moving;
    `);
    const pages = await pagesOf('moving');
    expect(pages).toBeGreaterThanOrEqual(240); // four chunks of 60 pages
    const path = join(scratch.dir, 'moving.duckdb');
    const first = replicate(db, {
      publication: 'pub_moving',
      slot: 'slot_moving',
      sink: new CrashingSink({ path }, 2),
      catchUp: false,
      ...COPY,
    });
    await expect(first).rejects.toThrow(/simulated crash/);
    const durable = Number((await queryDuckDb(path, 'SELECT count(*) AS n FROM public.moving'))[0]!['n']);
    expect(durable).toBeGreaterThan(0); // rows of unfinished chunks may be there too

    // While it was down: rows are added (at the end: a chunk copied again, so replaying their
    // inserts meets them), keys change, rows leave the first chunk (freeing room there), rows of
    // the last chunks are updated into that room, rows go.
    await db.sql(`
      INSERT INTO moving SELECT g, 1, 'new' FROM generate_series(30001, 30500) g;
      UPDATE moving SET id = id + 1000000 WHERE id BETWEEN 3000 AND 3100;
      UPDATE moving SET pad = 'changed' WHERE id BETWEEN 12000 AND 12100;
      DELETE FROM moving WHERE id BETWEEN 15000 AND 15050;
      DELETE FROM moving WHERE id <= 2000 AND id % 2 = 0;
    `);
    await db.sql(`VACUUM moving`);
    await db.sql(`UPDATE moving SET grp = grp + 100 WHERE id > 20000 AND id <= 24000 AND id % 3 = 0`);
    const [added] = await db.sql<{ n: string }>(
      `SELECT count(*)::text AS n FROM moving WHERE id > 30000 AND (ctid::text::point)[0] >= ${Math.floor((pages * 3) / 4)}`,
    );
    expect(Number(added!.n), 'added rows are in the last chunk').toBeGreaterThan(0);
    const [moved] = await db.sql<{ n: string }>(
      `SELECT count(*)::text AS n FROM moving WHERE id > 20000 AND id <= 24000 AND id % 3 = 0 AND (ctid::text::point)[0] < 60`,
    );
    expect(Number(moved!.n), 'some updated rows moved into the first chunk').toBeGreaterThan(0);

    const { logger, lines } = recorder();
    const second = await replicate(db, {
      publication: 'pub_moving',
      slot: 'slot_moving',
      sink: { path },
      logger,
      ...COPY,
    });
    expect(lines.some((line) => /resuming the copy of "public"."moving": 2 of 4 chunks/.test(line))).toBe(
      true,
    );
    expect(second.stats.rowsCopied).toBeLessThan(24000);
    await expectEqualTables(db, path, ['public.moving']);

    // Later changes apply as usual (the replay window has passed).
    await db.sql(`INSERT INTO moving VALUES (40000, 1, 'after'); UPDATE moving SET grp = 0 WHERE id = 1`);
    await replicate(db, { publication: 'pub_moving', slot: 'slot_moving', sink: { path }, ...COPY });
    await expectEqualTables(db, path, ['public.moving']);
  });

  it.each([
    ['rewritten (VACUUM FULL)', 'VACUUM FULL'],
    ['altered (ADD COLUMN … DEFAULT, no rewrite)', 'ADD COLUMN'],
  ])('copies a table %s since its copy began again in full', async (_, change) => {
    const name = change === 'VACUUM FULL' ? 'rewritten' : 'altered';
    await db.sql(`
      CREATE TABLE ${name} (id int8 PRIMARY KEY, pad text NOT NULL);
      INSERT INTO ${name} SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 24000) g;
      CREATE PUBLICATION pub_${name} FOR TABLE ${name};
    `);
    const path = join(scratch.dir, `${name}.duckdb`);
    await expect(
      replicate(db, {
        publication: `pub_${name}`,
        slot: `slot_${name}`,
        sink: new CrashingSink({ path }, 1),
        catchUp: false,
        ...COPY,
      }),
    ).rejects.toThrow(/simulated crash/);
    await db.sql(`DELETE FROM ${name} WHERE id % 2 = 0`);
    // Both change rows without a change to replay: moved between page ranges, or given a default.
    if (change === 'VACUUM FULL') await db.sql(`VACUUM FULL ${name}`);
    else await db.sql(`ALTER TABLE ${name} ADD COLUMN n int NOT NULL DEFAULT 7`);
    const { logger, lines } = recorder();
    const second = await replicate(db, {
      publication: `pub_${name}`,
      slot: `slot_${name}`,
      sink: { path },
      logger,
      ...COPY,
    });
    expect(lines.some((line) => /since its copy began .*: copying it again in full/.test(line))).toBe(true);
    expect(second.stats.rowsCopied).toBe(12000);
    await expectEqualTables(db, path, [`public.${name}`]);
  });

  it('copies the table in full when a replayed update needs a TOAST value the resumed copy lacks', async () => {
    await db.sql(`
      CREATE TABLE toasty (id int8 PRIMARY KEY, n int NOT NULL, big text NOT NULL) WITH (fillfactor = 100);
      ALTER TABLE toasty ALTER COLUMN big SET STORAGE EXTERNAL;
      INSERT INTO toasty SELECT g, 0, CASE WHEN g % 100 = 0 THEN repeat(md5(g::text), 100) ELSE 'small' END
        FROM generate_series(1, 40000) g;
      CREATE PUBLICATION pub_toasty FOR TABLE toasty;
    `);
    const path = join(scratch.dir, 'toasty.duckdb');
    await expect(
      replicate(db, {
        publication: 'pub_toasty',
        slot: 'slot_toasty',
        sink: new CrashingSink({ path }, 1, (id) => id > 32000),
        catchUp: false,
        ...COPY,
      }),
    ).rejects.toThrow(/simulated crash/);
    // Room in the chunk that was recorded, then rows with TOASTed values from the last chunk
    // updated into it without touching the TOASTed column: their values are in neither the
    // copied chunks nor the WAL.
    const [state] = await queryDuckDb(
      path,
      `SELECT CAST(copy_plan AS VARCHAR) AS plan FROM _pg_replicate.tables`,
    );
    const plan = JSON.parse(String(state!['plan'])) as { chunks: [number, number | null][]; done: number[] };
    expect(plan.done).toHaveLength(1);
    const [first, end] = plan.chunks[plan.done[0]!]!;
    const inDone = `(ctid::text::point)[0] >= ${first} AND (ctid::text::point)[0] < ${end}`;
    await db.sql(`DELETE FROM toasty WHERE ${inDone} AND id % 100 <> 0`);
    await db.sql(`VACUUM toasty`);
    await db.sql(`UPDATE toasty SET n = 1 WHERE id % 100 = 0 AND id > 32000`);
    const [moved] = await db.sql<{ n: string }>(
      `SELECT count(*)::text AS n FROM toasty WHERE n = 1 AND ${inDone}`,
    );
    expect(Number(moved!.n), 'some updated rows moved into the recorded chunk').toBeGreaterThan(0);

    const failed = await replicate(db, {
      publication: 'pub_toasty',
      slot: 'slot_toasty',
      sink: { path },
      ...COPY,
    }).catch((error: unknown) => error);
    expect(isPgReplicateError(failed) && failed.code).toBe('COPY_INCOMPLETE');
    expect(isPgReplicateError(failed) && failed.transient).toBe(true);

    const { logger, lines } = recorder();
    const third = await replicate(db, {
      publication: 'pub_toasty',
      slot: 'slot_toasty',
      sink: { path },
      logger,
      ...COPY,
    });
    expect(lines.some((line) => /resuming/.test(line))).toBe(false);
    expect(third.stats.rowsCopied).toBe(
      Number((await db.sql<{ n: string }>('SELECT count(*)::text AS n FROM toasty'))[0]!.n),
    );
    await expectEqualTables(db, path, ['public.toasty']);
  });
});
