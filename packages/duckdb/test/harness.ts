/**
 * Test harness for the DuckDB sink: a fresh Postgres database per file (the run's shared server),
 * a DuckDB file in a temp directory, the real Pipeline and PostgresSource, and a table comparison
 * that fails with the differing rows.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { expect, vi } from 'vitest';
import type { ChangeBatch, Sink } from '../../pg-replicate/src/index.js';
import { type Lsn, parseLsn } from '../../pg-replicate/src/lsn.js';
import {
  Pipeline,
  type PipelineOptions,
  type PipelineResult,
} from '../../pg-replicate/src/pipeline/pipeline.js';
import { PostgresSource } from '../../pg-replicate/src/source/postgres-source.js';
import { freshDatabase, type TestDatabase } from '../../pg-replicate/test/helpers.js';
import { DuckDbDatabase } from '../src/duckdb-database.js';
import { DuckDbSink, type DuckDbSinkOptions } from '../src/index.js';
// @ts-expect-error plain JS shared with the fault-trial script
import { compareTables } from './fixtures/compare.mjs';

export { freshDatabase, type TestDatabase };

export interface TableDiff {
  table: string;
  pgRows: number;
  duckRows: number;
  missing: number;
  extra: number;
  examples: string[];
}

/** A scratch directory removed by the returned function. */
export function scratchDir(prefix = 'duckdb-sink-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function currentLsn(db: TestDatabase): Promise<Lsn> {
  const [row] = await db.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return parseLsn(row!.lsn);
}

export interface ReplicateOptions extends Partial<Omit<PipelineOptions, 'source' | 'sink'>> {
  publication: string;
  slot?: string;
  sink: DuckDbSinkOptions | Sink;
  /** Run until everything up to the current WAL position is applied (default for cdc/both). */
  catchUp?: boolean;
}

/** Runs a pipeline into DuckDB; `both`/`cdc` stop once everything written so far is applied. */
export async function replicate(db: TestDatabase, options: ReplicateOptions): Promise<PipelineResult> {
  const { publication, slot, sink, catchUp = true, ...rest } = options;
  const mode = rest.mode ?? 'both';
  const source = new PostgresSource({
    connection: db.options,
    publication,
    slot: mode === 'copy' ? undefined : slot,
  });
  const endLsn = mode !== 'copy' && catchUp && rest.endLsn === undefined ? await currentLsn(db) : rest.endLsn;
  const pipeline = new Pipeline({
    source,
    sink: 'writeChanges' in sink ? sink : new DuckDbSink(sink),
    batchMaxDelayMs: 20,
    ...rest,
    mode,
    endLsn,
  });
  return pipeline.run();
}

/** Compares the tables of both sides (`schema.table`); returns the differences. */
export async function diffTables(db: TestDatabase, duckPath: string, tables: string[]): Promise<TableDiff[]> {
  const client = await db.client();
  try {
    return (await compareTables(client, duckPath, tables)) as TableDiff[];
  } finally {
    await client.end();
  }
}

/** Expects every table to be equal on both sides. */
export async function expectEqualTables(
  db: TestDatabase,
  duckPath: string,
  tables: string[],
): Promise<TableDiff[]> {
  const diffs = await diffTables(db, duckPath, tables);
  for (const diff of diffs) {
    expect(diff.examples, `${diff.table}: ${diff.missing} missing, ${diff.extra} extra`).toEqual([]);
    expect(diff.duckRows).toBe(diff.pgRows);
  }
  return diffs;
}

/** Runs a query on a DuckDB file (opened read-only, then closed); rows as plain JS values. */
export async function queryDuckDb(path: string, sql: string): Promise<Record<string, unknown>[]> {
  const instance = await DuckDBInstance.create(path, { access_mode: 'READ_ONLY' });
  const connection = await instance.connect();
  try {
    await connection.run(`SET TimeZone = 'UTC'`);
    return (await connection.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/** Counts what reaches the sink, to prove a test exercises what it claims to. */
export class CountingSink implements Sink {
  readonly name = 'counting';
  readonly transactional = true;
  unchangedToast = 0;
  partialBatches = 0;
  keyUpdates = 0;
  readonly open: Sink['open'];
  readonly prepare: Sink['prepare'];
  readonly beginCopy: Sink['beginCopy'];
  readonly writeRows: Sink['writeRows'];
  readonly endCopy: Sink['endCopy'];
  readonly close: Sink['close'];

  constructor(readonly inner: Sink) {
    this.open = inner.open.bind(inner);
    this.prepare = inner.prepare.bind(inner);
    this.beginCopy = inner.beginCopy.bind(inner);
    this.writeRows = inner.writeRows.bind(inner);
    this.endCopy = inner.endCopy.bind(inner);
    this.close = inner.close.bind(inner);
  }

  async writeChanges(batch: ChangeBatch): Promise<void> {
    if (batch.commit === undefined) this.partialBatches++;
    for (const event of batch.events) {
      if (event.op !== 'update') continue;
      if (event.old !== undefined && event.oldIsKey) this.keyUpdates++;
      for (let i = 0; i < event.new.length; i++) if (event.new.isUnchangedToast(i)) this.unchangedToast++;
    }
    await this.inner.writeChanges(batch);
  }
}

/**
 * What went ahead of transactions, per table: ranges, rows deleted and updated in them, and the
 * memory limits DuckDB's cache was cut down to after their checkpoints.
 */
export interface AheadSeen {
  chunks: number;
  rows: number;
  updated: number;
  cacheLimits: string[];
}

/** Watches what went ahead of transactions (see `src/apply-ahead.ts`) in the statements the sink runs. */
export function watchChunks(): Map<string, AheadSeen> {
  const tables = new Map<string, AheadSeen>();
  const lastFrom = new Map<string, string>();
  const seen = (table: string) => {
    const entry = tables.get(table) ?? { chunks: 0, rows: 0, updated: 0, cacheLimits: [] };
    tables.set(table, entry);
    return entry;
  };
  /** The table whose range checkpointed last, until the next `SET memory_limit`. */
  let checkpointed: string | null = null;
  const run = DuckDbDatabase.prototype.run;
  vi.spyOn(DuckDbDatabase.prototype, 'run').mockImplementation(async function (
    this: DuckDbDatabase,
    sql,
    what,
  ) {
    const limit = /^SET memory_limit = '(.*)'$/.exec(sql)?.[1];
    if (limit !== undefined && checkpointed !== null) {
      const { cacheLimits } = seen(checkpointed);
      if (!cacheLimits.includes(limit)) cacheLimits.push(limit);
      checkpointed = null;
    }
    if (sql === 'CHECKPOINT') checkpointed = aheadTable(what);
    return run.call(this, sql, what);
  });
  const rows = DuckDbDatabase.prototype.rows;
  vi.spyOn(DuckDbDatabase.prototype, 'rows').mockImplementation(async function (
    this: DuckDbDatabase,
    sql,
    what,
  ) {
    const result = await rows.call(this, sql, what);
    const table = aheadTable(what);
    const from = /\.rowid >= (\d+)/.exec(sql)?.[1];
    if (table !== null && from !== undefined) {
      const entry = seen(table);
      // Ranges follow one another from the end: each begins where the one before did not.
      if (lastFrom.get(table) !== from) entry.chunks++;
      lastFrom.set(table, from);
      const count = Number(result[0]?.['Count']);
      if (sql.startsWith('DELETE')) entry.rows += count;
      else entry.updated += count;
    }
    return result as never;
  });
  return tables;
}

/** The table a statement applies changes ahead for, by what the statement says it does. */
function aheadTable(what: string): string | null {
  return /^applying ahead .* of (\S+) in a transaction$/.exec(what)?.[1] ?? null;
}
