/**
 * The one DuckDB connection a sink uses: opening the file (a lock held by another process is
 * told apart from every other failure), running SQL with failures turned into
 * `PgReplicateError`s that say what was being done to which table, and the sink's single
 * transaction, which may span several change batches.
 */
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { PgReplicateError } from 'pg-replicate';

/** DuckDB settings the sink passes through. */
export interface OpenOptions {
  /** DuckDB worker threads (default: DuckDB's, one per core). */
  threads?: number | undefined;
  /** DuckDB `memory_limit`, e.g. `512MB` (default: DuckDB's, 80% of RAM). */
  memoryLimit?: string | undefined;
}

type Row = Record<string, unknown>;

/** The sink's DuckDB file and connection, with errors named and the open transaction tracked. */
export class DuckDbDatabase {
  readonly path: string;
  readonly #instance: DuckDBInstance;
  readonly #connection: DuckDBConnection;
  #inTransaction = false;

  private constructor(path: string, instance: DuckDBInstance, connection: DuckDBConnection) {
    this.path = path;
    this.#instance = instance;
    this.#connection = connection;
  }

  /** Opens (creating if missing) the database file; `SINK_LOCKED` when another process has it. */
  static async open(path: string, options: OpenOptions = {}): Promise<DuckDbDatabase> {
    const config: Record<string, string> = {};
    if (options.threads !== undefined) config['threads'] = String(options.threads);
    if (options.memoryLimit !== undefined) config['memory_limit'] = options.memoryLimit;
    let instance: DuckDBInstance;
    try {
      instance = await DuckDBInstance.create(path, config);
    } catch (error) {
      throw openError(error, path);
    }
    try {
      const connection = await instance.connect();
      const database = new DuckDbDatabase(path, instance, connection);
      // Timestamps without a zone are UTC, as on the Postgres side of the pipeline.
      await database.run(`SET TimeZone = 'UTC'`, 'configuring the session');
      return database;
    } catch (error) {
      instance.closeSync();
      throw error instanceof PgReplicateError ? error : openError(error, path);
    }
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

/** Wraps a DuckDB failure with what was being done (and to which table). */
export function sinkError(error: unknown, what: string): PgReplicateError {
  if (error instanceof PgReplicateError) return error;
  const message = messageOf(error).split('\n')[0] ?? '';
  const conversion = /^(Conversion|Invalid Input) Error/.test(message);
  const memory = /^Out of Memory Error/.test(message);
  return new PgReplicateError('SINK_ERROR', `DuckDB failed ${what}: ${message}`, {
    hint: conversion
      ? 'a value does not fit the DuckDB column type (see the type table in the @pg-replicate/duckdb README); ALTER the DuckDB column to VARCHAR to keep the Postgres text form instead, then restart'
      : memory
        ? 'give the sink more memory (memoryLimit) or send smaller batches (--batch-max-rows); nothing was applied, the batch is delivered again after a restart'
        : 'the batch was rolled back and will be delivered again after a restart; if it keeps failing, please report it with this message',
    cause: error,
  });
}
