/**
 * The one DuckDB connection a sink uses: opening the file (a lock held by another process is
 * told apart from every other failure), running SQL with failures turned into
 * `PgReplicateError`s that say what was being done to which table, and the sink's single
 * transaction, which may span several change batches.
 */
import { createRequire } from 'node:module';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { PgReplicateError } from 'pg-replicate';
import { literal } from './sql.js';

/** DuckDB settings the sink passes through. */
export interface OpenOptions {
  /** DuckDB worker threads (default: DuckDB's, one per core). */
  threads?: number | undefined;
  /** DuckDB `memory_limit`, e.g. `512MB` (default: DuckDB's, 80% of RAM). */
  memoryLimit?: string | undefined;
}

/**
 * Rows per group until the width of a table's rows is known (a copy's first load measures it).
 * DuckDB re-reads and recompresses the open row group at every checkpoint, in memory its
 * `memory_limit` does not count: with its default of 122,880 rows, a copy of a table of ~2 KB
 * rows peaked at 1.2 GB RSS under a 256 MB limit. 16,384 rows measured 0.6 GB there and loads
 * were twice as fast; scans lose little (a row group is still eight vectors).
 */
export const ROW_GROUP_SIZE = 16_384;

/**
 * Bytes of staged row text a row group should hold at most, so that wide rows get smaller row
 * groups: 200,000 rows of ~2 KB peaked at 371–375 MB with 16,384 rows per group, 293–309 MB
 * with 8,192 and 256–259 MB with 4,096 (and loaded faster), while narrow rows (~170 bytes in the
 * benchmark) get 65,536: 8,192 made 5M of them 15% slower to copy, into a file 24% larger.
 */
const ROW_GROUP_BYTES = 12 * 1024 * 1024;
/**
 * The most rows per group a copy chooses. Deletes hold a 256 KiB block of version data per row
 * group they touch until DuckDB checkpoints, so scattered updates over a big table need memory per
 * row group: over 10M narrow rows they peaked at 319 MB with 65,536 rows per group against 389 MB
 * with 16,384 (before they were deleted ahead, see `apply-ahead.ts`); a 1M-row copy peaked 10–25
 * MB higher, as fast.
 */
const MAX_ROW_GROUP_SIZE = 65_536;
/** DuckDB's smallest row group: one vector. */
const MIN_ROW_GROUP_SIZE = 2048;

/**
 * Rows per row group for rows of about `bytesPerRow` bytes of staged text: {@link MAX_ROW_GROUP_SIZE}
 * halved while a group would hold more than {@link ROW_GROUP_BYTES}, down to one vector.
 */
export function rowGroupSizeFor(bytesPerRow: number): number {
  let rows = MAX_ROW_GROUP_SIZE;
  while (rows > MIN_ROW_GROUP_SIZE && rows * bytesPerRow > ROW_GROUP_BYTES) rows /= 2;
  return rows;
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12 };
for (const [i, unit] of ['kib', 'mib', 'gib', 'tib'].entries()) SIZE_UNITS[unit] = 1024 ** (i + 1);

/** Bytes in a DuckDB size such as `64MB` or `1GiB` (NaN when it is not a plain size, e.g. `80%`). */
export function sizeInBytes(size: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(size);
  const unit = SIZE_UNITS[(match?.[2] || 'b').toLowerCase()];
  return match && unit !== undefined ? Number(match[1]) * unit : Number.NaN;
}

/** The smaller of two DuckDB sizes (`a` when either is not a plain size, e.g. `80%`). */
export function smallerSize(a: string, b: string): string {
  return sizeInBytes(b) < sizeInBytes(a) ? b : a;
}

/**
 * DuckDB settings that differ between copying a table and applying changes (see `DuckDbSink`).
 */
export interface PhaseSettings {
  memoryLimit: string;
  /**
   * Keep the order of an INSERT's rows. Rows of a table have no order the sink promises
   * (changelogs sort by LSN), but keeping it makes DuckDB load on one thread: copies ran 2× slower
   * with it; change batches (10,000 rows) ran 20% faster with it.
   */
  preserveInsertionOrder: boolean;
  /**
   * Let checkpoints merge adjacent row groups that together fit in fewer (DuckDB's vacuum; when
   * omitted, as it was). A load leaves a partly filled row group per DuckDB thread, and the
   * checkpoint after a copy merged them: over 10M rows it took 0.6 s and raised RSS by 217 MB
   * (to 396 MB, the copy's loads peaking at 256); without, 38 ms and nothing. Changes need the
   * merges (rows a delete leaves are only freed by them), and get them, for the row groups they
   * touch, at the checkpoints that follow.
   */
  mergeRowGroups?: boolean;
}

/**
 * `@duckdb/node-api` is CommonJS: imported from ESM, Node first scans each of its 124 files for
 * named exports, which made loading it take 150 ms instead of 60, before the first row of every
 * run (an empty copy took 0.55–0.62 s; 0.42–0.50 s with `require`, which skips the scan).
 */
const { DuckDBInstance: Instance } = createRequire(import.meta.url)(
  '@duckdb/node-api',
) as typeof import('@duckdb/node-api');

/** The name the sink's file is attached under in its own session. */
const CATALOG = 'replica';

type Row = Record<string, unknown>;

/** The sink's DuckDB file and connection, with errors named and the open transaction tracked. */
export class DuckDbDatabase {
  readonly path: string;
  readonly #instance: DuckDBInstance;
  readonly #connection: DuckDBConnection;
  #inTransaction = false;
  /** Rows per row group of the file as attached now (see {@link useRowGroupSize}). */
  #rowGroupSize = ROW_GROUP_SIZE;
  /** The settings DuckDB runs with now (DuckDB's own default when unset). */
  #settings: Partial<PhaseSettings>;

  private constructor(
    path: string,
    instance: DuckDBInstance,
    connection: DuckDBConnection,
    memoryLimit: string | undefined,
  ) {
    this.path = path;
    this.#instance = instance;
    this.#connection = connection;
    this.#settings = { memoryLimit, preserveInsertionOrder: true, mergeRowGroups: true };
  }

  /**
   * Opens (creating if missing) the database file; `SINK_LOCKED` when another process has it.
   * The file is attached to an in-memory session rather than opened directly, because only
   * `ATTACH` takes a row-group size (see {@link ROW_GROUP_SIZE} and {@link useRowGroupSize}).
   */
  static async open(path: string, options: OpenOptions = {}): Promise<DuckDbDatabase> {
    // What does not fit in memory spills beside the file, as when DuckDB opens the file itself.
    const config: Record<string, string> = {
      temp_directory: `${path}.tmp`,
      // Freed memory goes back to the system after every bulk release, not only past 512 MB (the
      // default): copying 5M rows peaked ~70 MB lower. It costs CPU (the pages are faulted in
      // again): ~0.3 CPU-s per million rows copied, measured against 16 MB, which peaked ~50 MB higher.
      allocator_bulk_deallocation_flush_threshold: '4MB',
    };
    if (options.threads !== undefined) config['threads'] = String(options.threads);
    if (options.memoryLimit !== undefined) config['memory_limit'] = options.memoryLimit;
    const instance = await Instance.create(':memory:', config);
    let connection: DuckDBConnection | undefined;
    try {
      connection = await instance.connect();
      await connection.run(
        `ATTACH ${literal(path)} AS ${CATALOG} (ROW_GROUP_SIZE ${ROW_GROUP_SIZE}); USE ${CATALOG}`,
      );
    } catch (error) {
      connection?.closeSync();
      instance.closeSync();
      throw openError(error, path);
    }
    try {
      const database = new DuckDbDatabase(path, instance, connection, options.memoryLimit);
      // Timestamps without a zone are UTC, as on the Postgres side of the pipeline.
      await database.run(`SET TimeZone = 'UTC'`, 'configuring the session');
      return database;
    } catch (error) {
      instance.closeSync();
      throw error instanceof PgReplicateError ? error : openError(error, path);
    }
  }

  /** Applies the settings of a phase, running `SET` only for those that change. */
  async configure(settings: PhaseSettings): Promise<void> {
    const { memoryLimit, preserveInsertionOrder } = settings;
    const mergeRowGroups = settings.mergeRowGroups ?? this.#settings.mergeRowGroups;
    if (memoryLimit !== this.#settings.memoryLimit) await this.#setMemoryLimit(memoryLimit);
    if (preserveInsertionOrder !== this.#settings.preserveInsertionOrder)
      await this.run(`SET preserve_insertion_order = ${preserveInsertionOrder}`, 'configuring loads');
    if (mergeRowGroups !== this.#settings.mergeRowGroups) {
      const sql = mergeRowGroups ? 'RESET max_vacuum_tasks' : 'SET max_vacuum_tasks = 0';
      await this.run(sql, 'configuring checkpoints');
    }
    this.#settings = { memoryLimit, preserveInsertionOrder, mergeRowGroups };
  }

  /**
   * Attaches the file again with `rows` rows per row group, for the rows written from now on
   * (DuckDB takes the size per `ATTACH`, not per table; groups already written keep theirs).
   * Done only between transactions: inside one it keeps the size it has. `what` names the work
   * it is done for, in errors.
   */
  async useRowGroupSize(rows: number, what: string, memoryLimit: string): Promise<void> {
    if (rows === this.#rowGroupSize || this.#inTransaction) return;
    await this.#checkpointUnder(memoryLimit, async () => {
      // A DETACH whose checkpoint fails leaves the file detached: checkpoint first.
      await this.run('CHECKPOINT', `${what}: checkpointing before the file is attached again`);
      await this.#reattach(rows).catch((error: unknown) => {
        throw sinkError(error, `${what}: attaching the file again with ${rows} rows per row group`);
      });
    });
  }

  /**
   * Checkpoints when what transactions appended since the last checkpoint holds more than `bytes`
   * of memory. DuckDB keeps the rows of a transaction too small to write whole row groups in
   * memory — at least 16 KiB per column of each table it touched — until a checkpoint, and
   * checkpoints by itself only once its WAL passes 16 MB: copying 1,000 one-row tables of three
   * columns ran out of memory at the 938th under 64 MB (~62 KiB each). Between transactions only.
   */
  async checkpointIfHolding(bytes: number, memoryLimit: string): Promise<void> {
    if (this.#inTransaction) return;
    const [held] = await this.rows(
      `SELECT coalesce(sum(memory_usage_bytes), 0)::DOUBLE AS bytes FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'`,
      'reading the memory held by appended rows',
    );
    if (Number(held?.['bytes']) <= bytes) return;
    await this.#checkpointUnder(memoryLimit, () =>
      this.run('CHECKPOINT', 'checkpointing the rows held in memory'),
    );
  }

  /**
   * Runs `checkpoint` under `memoryLimit` rather than the phase's (a copy's lower) limit: a
   * checkpoint rewrites whatever the WAL holds, and DuckDB invalidates a database whose checkpoint fails.
   */
  async #checkpointUnder(memoryLimit: string, checkpoint: () => Promise<void>): Promise<void> {
    const phaseLimit = this.#settings.memoryLimit;
    const restore = phaseLimit !== undefined && phaseLimit !== memoryLimit ? phaseLimit : null;
    if (restore !== null) await this.#setMemoryLimit(memoryLimit);
    try {
      await checkpoint();
    } catch (error) {
      if (restore !== null) await this.#setMemoryLimit(restore).catch(() => {}); // report the failure
      throw error;
    }
    if (restore !== null) await this.#setMemoryLimit(restore);
  }

  async #reattach(rows: number): Promise<void> {
    const file = literal(this.path);
    try {
      await this.#connection.run(
        `USE memory; DETACH ${CATALOG}; ATTACH ${file} AS ${CATALOG} (ROW_GROUP_SIZE ${rows}); USE ${CATALOG}`,
      );
      this.#rowGroupSize = rows;
    } catch (error) {
      const size = this.#rowGroupSize;
      const again = `ATTACH IF NOT EXISTS ${file} AS ${CATALOG} (ROW_GROUP_SIZE ${size}); USE ${CATALOG}`;
      await this.#connection.run(again).catch(() => {});
      throw error;
    }
  }

  /**
   * Drops what DuckDB keeps cached beyond `limit` — blocks it wrote or read, kept up to its
   * `memory_limit` although a batch that follows rarely needs them — by lowering the limit to
   * `limit` and back. A DuckDB that cannot get down to it (memory still pinned) keeps what it has.
   * Only between transactions: a `SET` that fails aborts the transaction it runs in.
   */
  async releaseCache(limit: string): Promise<void> {
    const current = this.#settings.memoryLimit;
    if (current === undefined || current === limit || this.#inTransaction) return;
    await this.#setMemoryLimit(limit).catch(() => {});
    await this.#setMemoryLimit(current);
  }

  /** Sets DuckDB's `memory_limit` (not what the phase's settings record: callers restore it). */
  #setMemoryLimit(limit: string): Promise<void> {
    return this.run(`SET memory_limit = ${literal(limit)}`, 'setting the memory limit');
  }

  /** Rows per row group of the file as attached now. */
  get rowGroupSize(): number {
    return this.#rowGroupSize;
  }

  get inTransaction(): boolean {
    return this.#inTransaction;
  }

  /** Runs one statement (or several separated by `;`). `what` names the operation in errors. */
  async run(sql: string, what: string): Promise<void> {
    try {
      await this.#connection.run(sql);
    } catch (error) {
      throw sinkError(error, what);
    }
  }

  /** Runs a query and returns its rows as plain JS values (BIGINT as bigint). */
  async rows<R extends Row = Row>(sql: string, what: string): Promise<R[]> {
    try {
      const reader = await this.#connection.runAndReadAll(sql);
      return reader.getRowObjectsJS() as R[];
    } catch (error) {
      throw sinkError(error, what);
    }
  }

  /** Begins the sink's transaction if none is open. */
  async begin(): Promise<void> {
    if (this.#inTransaction) return;
    await this.run('BEGIN TRANSACTION', 'beginning a transaction');
    this.#inTransaction = true;
  }

  async commit(): Promise<void> {
    if (!this.#inTransaction) return;
    this.#inTransaction = false;
    await this.run('COMMIT', 'committing');
  }

  /** Rolls back the open transaction, if any; never throws (used on error paths). */
  async rollback(): Promise<void> {
    if (!this.#inTransaction) return;
    this.#inTransaction = false;
    await this.#connection.run('ROLLBACK').catch(() => {});
  }

  /** Runs `work` inside the open transaction, or inside one of its own that it commits. */
  async transaction(work: () => Promise<void>): Promise<void> {
    if (this.#inTransaction) {
      await work();
      return;
    }
    await this.begin();
    try {
      await work();
      await this.commit();
    } catch (error) {
      await this.rollback();
      throw error;
    }
  }

  /** Rolls back what is open and closes the file (DuckDB checkpoints its WAL on close). */
  async close(): Promise<void> {
    await this.rollback();
    this.#connection.closeSync();
    this.#instance.closeSync();
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function openError(error: unknown, path: string): PgReplicateError {
  const message = messageOf(error);
  if (/Could not set lock on file|Conflicting lock is held/i.test(message)) {
    const holder = /Conflicting lock is held in (.+?) \(PID (\d+)\)/.exec(message);
    return new PgReplicateError('SINK_LOCKED', `the DuckDB file ${path} is in use by another process`, {
      detail: holder ? `held by ${holder[1]} (PID ${holder[2]})` : message,
      hint: 'DuckDB allows one writing process per file: stop the other pipeline (or close the DuckDB CLI or notebook that has it open), or point --duckdb-path at another file',
      cause: error,
    });
  }
  return new PgReplicateError('SINK_UNAVAILABLE', `cannot open the DuckDB file ${path}: ${message}`, {
    hint: 'check that the directory exists and is writable, and that the file is a DuckDB database of a compatible version',
    cause: error,
  });
}

/** Whether DuckDB failed for want of memory (under its `memory_limit`). */
export function isOutOfMemory(message: string): boolean {
  // A checkpoint that runs out of memory fails as an I/O error that names the block it could not pin.
  return /Out of Memory Error|failed to pin block/.test(message);
}

/** Wraps a DuckDB failure with what was being done (and to which table). */
export function sinkError(error: unknown, what: string): PgReplicateError {
  if (error instanceof PgReplicateError) return error;
  const message = messageOf(error).split('\n')[0] ?? '';
  const conversion = /^(Conversion|Invalid Input) Error/.test(message);
  const memory = isOutOfMemory(message);
  const copying = what.startsWith('copying');
  return new PgReplicateError('SINK_ERROR', `DuckDB failed ${what}: ${message}`, {
    hint: conversion
      ? 'a value does not fit the DuckDB column type (see the type table in the @pg-replicate/duckdb README); ALTER the DuckDB column to VARCHAR to keep the Postgres text form instead, then restart'
      : memory && copying
        ? 'give the copy more memory (copyMemoryLimit, --duckdb-copy-memory-limit; default 64MB); the failed load was rolled back, and the copy resumes after a restart'
        : memory
          ? 'give the sink more memory (memoryLimit, --duckdb-memory-limit), or less to what goes ahead of a transaction (deleteMemory, --duckdb-delete-memory): deletes hold ~256 KiB per row group and in-place updates ~128 KiB per vector and column they touch until DuckDB checkpoints, and those of a transaction of more than 8 batches, or replayed over a resumed copy, do not all go ahead. The position did not advance: the batch is delivered again after a restart'
          : 'the batch was rolled back and will be delivered again after a restart; if it keeps failing, please report it with this message',
    cause: error,
  });
}
