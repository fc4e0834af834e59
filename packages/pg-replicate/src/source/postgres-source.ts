/**
 * The Postgres side of a pipeline: checks the server, knows the published tables and their types,
 * opens consistent snapshots for backfill (from the slot's creation, or from a temporary slot when
 * the main slot already exists), copies tables, and streams changes from the slot.
 *
 * Connections: one ordinary "control" connection for the catalog and heartbeats, one walsender
 * connection for the slot, and one ordinary connection per concurrent table copy.
 */
import type pg from 'pg';
import { connect, quoteIdent } from '../connection/connect.js';
import {
  type ConnectionInput,
  type ConnectionOptions,
  describeConnection,
  resolveConnection,
} from '../connection/connection-options.js';
import { IdleConnections } from '../connection/idle-connections.js';
import type { CopyTextBatch } from '../copy-batch.js';
import { PgReplicateError } from '../errors.js';
import type { Lsn } from '../lsn.js';
import type { RelationMessage } from '../pgoutput/messages.js';
import { type CreatedSlot, ReplicationConnection } from '../protocol/replication-connection.js';
import type { ReplicationStream } from '../protocol/replication-stream.js';
import type { ColumnSchema, TableSchema } from '../schema.js';
import type { CopyChunk } from '../sink/sink.js';
import { TypeRegistry } from '../types/type-registry.js';
import {
  currentWalLsn,
  type PublishedTable,
  publications,
  replicationSlot,
  type SlotInfo,
} from './catalog.js';
import { type PreflightResult, preflight, type ReplicationMode } from './preflight.js';
import { type CopyTableOptions, copyTable } from './table-copy.js';

export interface PostgresSourceOptions {
  /** Connection settings; unset fields come from DATABASE_URL / PG* variables / libpq defaults. */
  connection?: ConnectionInput | ConnectionOptions;
  /** Publication(s) whose tables are replicated. */
  publication: string | readonly string[];
  /** Replication slot (created when missing); required for `cdc` and `both`. */
  slot?: string;
  /** See {@link PreflightOptions.requireReplicaIdentity}. */
  requireReplicaIdentity?: boolean;
  /** Standby status interval (default 10 s). */
  statusIntervalMs?: number;
}

/** How long a COPY waits for its table's lock (see `copyTable`). */
const COPY_LOCK_TIMEOUT_MS = 5_000;

/** The largest page range of a chunk: 1 GiB of 8 KiB pages. */
const MAX_CHUNK_PAGES = 131_072;

/** How a table is split for copying (see `PostgresSource.planChunks`). */
export interface ChunkPlan {
  readonly chunks: readonly CopyChunk[];
  readonly fingerprint: string;
}

/** A consistent view of the database for backfill, and the LSN from which streaming continues it. */
export interface Snapshot {
  /** For `SET TRANSACTION SNAPSHOT` (null: a plain transaction, see {@link PostgresSource.copyTable}). */
  readonly name: string | null;
  /** Changes committed before this LSN are in the snapshot; null without a slot (copy mode). */
  readonly lsn: Lsn | null;
  /** True when the main slot was created for this snapshot (it did not exist before). */
  readonly createdSlot: boolean;
  /** Ends the snapshot (closes the connection that holds it). */
  release(): Promise<void>;
}

export class PostgresSource {
  readonly connection: ConnectionOptions;
  readonly publications: readonly string[];
  readonly slot: string | undefined;
  readonly types = new TypeRegistry();
  readonly #options: PostgresSourceOptions;
  #control: pg.Client | null = null;
  #controlQueue: Promise<void> = Promise.resolve();
  #replication: ReplicationConnection | null = null;
  #preflight: PreflightResult | null = null;
  /** Ordinary connections for the snapshot, the table lock and the COPYs (see {@link warmUp}). */
  readonly #idle: IdleConnections;

  constructor(options: PostgresSourceOptions) {
    this.#options = options;
    this.connection = resolveConnection(options.connection);
    this.#idle = new IdleConnections(this.connection);
    this.publications = typeof options.publication === 'string' ? [options.publication] : options.publication;
    this.slot = options.slot;
  }

  /** `user@host:port/db` — safe to log. */
  get description(): string {
    return describeConnection(this.connection);
  }

  /** Connects, runs every preflight check for `mode`, and loads the tables and their types. */
  async open(mode: ReplicationMode): Promise<PreflightResult> {
    this.#control ??= await connect(this.connection);
    const result = await preflight(this.#control, {
      mode,
      publications: this.publications,
      slot: this.slot,
      requireReplicaIdentity: this.#options.requireReplicaIdentity,
    });
    await this.types.load(
      this.#control,
      result.tables.flatMap((table) => table.columns.map((column) => column.typeOid)),
    );
    this.#preflight = result;
    return result;
  }

  /**
   * Starts opening `connections` ordinary connections for a backfill about to begin, so that the
   * snapshot, the table lock and the first COPY do not each wait for one in turn.
   */
  warmUp(connections: number): void {
    this.#idle.warm(connections);
  }

  /** Closes the connections a backfill left idle (streaming does not use them). */
  async closeIdleConnections(): Promise<void> {
    await this.#idle.close();
  }

  get tables(): readonly PublishedTable[] {
    return this.#requirePreflight().tables;
  }

  get server(): PreflightResult['server'] {
    return this.#requirePreflight().server;
  }

  /** The slot as found by the last {@link open} or {@link refreshSlot}. */
  get slotInfo(): SlotInfo | null {
    return this.#requirePreflight().slot;
  }

  async refreshSlot(): Promise<SlotInfo | null> {
    const result = this.#requirePreflight();
    const slot = this.#requireSlot();
    result.slot = await this.#withControl((client) =>
      replicationSlot(client, slot, result.server.versionNum),
    );
    return result.slot;
  }

  /** The pipeline's publications that no longer exist. */
  async missingPublications(): Promise<string[]> {
    const found = await this.#withControl((client) => publications(client, this.publications));
    return this.publications.filter((name) => !found.some((p) => p.name === name));
  }

  async currentWalLsn(): Promise<Lsn> {
    return this.#withControl((client) => currentWalLsn(client));
  }

  /**
   * Opens a snapshot consistent with the replication slot:
   * - slot missing: creates it with an exported snapshot (streaming later starts exactly there);
   * - slot present: creates a TEMPORARY slot just for its exported snapshot; changes the main slot
   *   streams that committed before the snapshot's LSN must then be skipped for tables copied in it.
   * Without a slot (copy mode) a REPEATABLE READ transaction exports it, so every table (and every
   * chunk of a table) is copied from the same view.
   */
  async openSnapshot(mode: ReplicationMode): Promise<Snapshot> {
    if (mode === 'copy') return this.#exportSnapshot();
    const slotName = this.#requireSlot();
    if (this.slotInfo === null) {
      const replication = await this.#replicationConnection();
      const created = await this.#createSlot(replication, slotName, false);
      await this.refreshSlot();
      // The snapshot lives until the next command on this connection: streaming starts after the copy.
      return {
        name: created.snapshotName,
        lsn: created.consistentPoint,
        createdSlot: true,
        release: async () => {},
      };
    }
    const temporary = await ReplicationConnection.open(this.connection);
    try {
      const name = `${slotName}_sync_${process.pid}_${Date.now().toString(36)}`.slice(0, 63);
      const created = await this.#createSlot(temporary, name, true);
      return {
        name: created.snapshotName,
        lsn: created.consistentPoint,
        createdSlot: false,
        release: () => temporary.close(),
      };
    } catch (error) {
      await temporary.close();
      if (error instanceof PgReplicateError && error.code === 'SLOTS_EXHAUSTED') {
        throw new PgReplicateError(
          'SLOTS_EXHAUSTED',
          `copying the tables slot ${slotName} has not copied yet needs one more replication slot (a temporary one, for its snapshot), and all are in use`,
          {
            hint: 'drop an unused slot (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots (needs a restart), then run again',
            cause: error,
          },
        );
      }
      throw error;
    }
  }

  /** A snapshot exported by an ordinary transaction, held open until released. */
  async #exportSnapshot(): Promise<Snapshot> {
    const holder = await this.#idle.take();
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const result = await holder.query<{ name: string }>('SELECT pg_export_snapshot() AS name');
      return {
        name: result.rows[0]!.name,
        lsn: null,
        createdSlot: false,
        release: () => this.#commitAndGiveBack(holder),
      };
    } catch (error) {
      await holder.end().catch(() => {});
      throw sourceError(error, 'exporting a snapshot');
    }
  }

  /**
   * Splits each table into ranges of heap pages (ctid) of at least `minPages` each, for copying by
   * `workers` connections in one snapshot: as many ranges as workers, or more so that none exceeds
   * 1 GiB (a copy cut short resumes per range). One whole-table chunk for one worker, and for small
   * and partitioned tables. The last range is open-ended: pages added after the size was read hold
   * no rows the snapshot can see, but the range covers them anyway.
   *
   * Also returns each table's fingerprint: what must not have changed for a copy begun earlier to
   * resume — the table's data file (a rewrite moves rows between page ranges without any change
   * to replay), its definition (an added column with a default changes rows without WAL) and its
   * publication entries (a new row filter or column list, or a table dropped from the publication
   * and added back). One query for all tables: per table, its round trips cost more than copying
   * a small table.
   */
  async planChunks(
    tables: readonly PublishedTable[],
    workers: number,
    minPages = 1024,
  ): Promise<ChunkPlan[]> {
    if (tables.length === 0) return [];
    // pg_relation_size locks the table: like the COPY, it must not wait behind a TRUNCATE that
    // waits for `lockForCopy` (see `copyTable`).
    const result = await this.#withControl(async (client) => {
      await client.query(`BEGIN; SET LOCAL lock_timeout = '${COPY_LOCK_TIMEOUT_MS}ms'`);
      try {
        const sizes = await client.query<{ i: string; pages: string; fingerprint: string }>(
          `SELECT t.i::text AS i, (pg_relation_size(c.oid) / current_setting('block_size')::int8)::text AS pages,
                  concat_ws(':', pg_relation_filenode(c.oid), c.xmin,
                    (SELECT string_agg(pr.oid::text || '/' || pr.xmin::text, ',' ORDER BY pr.oid)
                       FROM pg_publication_rel pr WHERE pr.prrelid = c.oid)) AS fingerprint
             FROM unnest($1::oid[]) WITH ORDINALITY AS t(oid, i) JOIN pg_class c ON c.oid = t.oid`,
          [tables.map((table) => table.relationId)],
        );
        await client.query('COMMIT');
        return sizes;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw lockWaitError(error, 'one of the tables to copy') ?? error;
      }
    });
    const found = new Map(result.rows.map((row) => [Number(row.i) - 1, row]));
    return tables.map((table, index) => {
      const row = found.get(index); // none for a table dropped since the preflight: its COPY says so
      const fingerprint = row?.fingerprint ?? '';
      const whole = { chunks: [{ firstPage: 0, endPage: null }], fingerprint };
      if (workers <= 1 || table.kind === 'p' || row === undefined) return whole;
      const pages = Number(row.pages);
      const count = Math.max(
        Math.min(workers, Math.floor(pages / minPages)),
        Math.ceil(pages / MAX_CHUNK_PAGES),
      );
      if (count <= 1) return whole;
      const step = Math.ceil(pages / count);
      const chunks = Array.from({ length: count }, (_, i) => ({
        firstPage: i * step,
        endPage: i === count - 1 ? null : (i + 1) * step,
      }));
      return { chunks, fingerprint };
    });
  }

  /**
   * Locks the tables (ACCESS SHARE, like pg_dump) in a transaction on `snapshot` for the whole
   * backfill, and checks that none was rewritten after the snapshot was taken. TRUNCATE and
   * rewriting ALTER TABLEs are not MVCC-safe: a COPY in the older snapshot would read the new, empty
   * file and miss every row. Holding the lock makes them wait until the copy is done; a rewrite that
   * slipped in between the snapshot and the lock is reported (transient: a new snapshot will do).
   * Returns the function that releases the locks.
   */
  async lockForCopy(tables: readonly PublishedTable[], snapshot: Snapshot): Promise<() => Promise<void>> {
    const client = await this.#idle.take();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      if (snapshot.name !== null) await client.query(`SET TRANSACTION SNAPSHOT '${snapshot.name}'`);
      await client.query(`SET LOCAL lock_timeout = '60s'`);
      const names = tables.map((table) => `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`);
      await client.query(`LOCK TABLE ${names.join(', ')} IN ACCESS SHARE MODE`);
      // pg_class as the snapshot saw it, against the file the table has now.
      const rewritten = await client.query<{ name: string }>(
        `SELECT format('%I.%I', n.nspname, c.relname) AS name
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = ANY($1::oid[]) AND c.relfilenode <> 0 AND c.relfilenode <> pg_relation_filenode(c.oid)`,
        [tables.map((table) => table.relationId)],
      );
      if (rewritten.rows.length > 0) {
        throw new PgReplicateError(
          'TABLE_REWRITTEN',
          `${rewritten.rows.map((r) => r.name).join(', ')} was truncated or rewritten just after the copy's snapshot was taken`,
          { hint: 'run again: the copy starts over from a new snapshot' },
        );
      }
      return () => this.#commitAndGiveBack(client);
    } catch (error) {
      await client.end().catch(() => {});
      throw error instanceof PgReplicateError ? error : sourceError(error, 'locking the tables to copy');
    }
  }

  /**
   * Copies a table inside `snapshot` on a connection of its own, yielding batches of rows.
   * The connection is closed when the generator finishes or is abandoned.
   */
  async *copyTable(
    table: PublishedTable,
    snapshot: Snapshot,
    options: CopyTableOptions = {},
  ): AsyncGenerator<CopyTextBatch, void, undefined> {
    const client = await this.#idle.take();
    let finished = false;
    try {
      // While `lockForCopy` holds the table, this COPY's own lock can only wait behind a TRUNCATE
      // or ALTER TABLE queued for it — which waits for `lockForCopy`, which waits for this COPY:
      // a deadlock Postgres cannot see. Give up after a while and start over instead. (One round
      // trip for the three: a chunk of a small table costs little more than its round trips.)
      await client.query(
        [
          'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
          ...(snapshot.name === null ? [] : [`SET TRANSACTION SNAPSHOT '${snapshot.name}'`]),
          `SET LOCAL lock_timeout = '${COPY_LOCK_TIMEOUT_MS}ms'`,
        ].join('; '),
      );
      yield* copyTable(client, table, options);
      await client.query('COMMIT');
      finished = true;
    } catch (error) {
      throw (
        lockWaitError(error, `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`) ??
        sourceError(error, `copying ${quoteIdent(table.schema)}.${quoteIdent(table.name)}`)
      );
    } finally {
      if (finished) this.#idle.give(client);
      // An abandoned COPY leaves the connection mid-stream: drop it rather than wait for the rest.
      else client.connection.stream.destroy();
    }
  }

  /**
   * Starts streaming from the slot at `startLsn` (the server resumes at the later of it and the
   * slot's confirmed position). Creates the slot (without snapshot) if it does not exist.
   */
  async startStreaming(startLsn: Lsn): Promise<ReplicationStream> {
    const slotName = this.#requireSlot();
    const replication = await this.#replicationConnection();
    if (this.slotInfo === null) {
      await this.#createSlot(replication, slotName, false, 'nothing');
      await this.refreshSlot();
    }
    return replication.startReplication(slotName, startLsn, {
      publications: this.publications,
      statusIntervalMs: this.#options.statusIntervalMs,
    });
  }

  /**
   * The schema for a Relation message: the catalog's view of the table (types' display names,
   * nullability, primary key) merged with the columns pgoutput now sends.
   */
  async schemaFromRelation(
    relation: RelationMessage,
    previous: TableSchema | undefined,
  ): Promise<TableSchema> {
    const known = new Map<string, ColumnSchema>((previous?.columns ?? []).map((c) => [c.name, c]));
    const unknownTypes = relation.columns.filter(
      (c) => known.get(c.name)?.typeOid !== c.typeOid || known.get(c.name)?.typeMod !== c.typeMod,
    );
    const typeNames = new Map<string, string>();
    if (unknownTypes.length > 0) {
      const result = await this.#withControl(async (client) => {
        await this.types.load(
          client,
          unknownTypes.map((c) => c.typeOid),
        );
        return client.query<{ i: string; name: string }>(
          `SELECT t.i::text AS i, format_type(t.oid, t.typmod) AS name
             FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS t(oid, typmod, i)`,
          [unknownTypes.map((c) => c.typeOid), unknownTypes.map((c) => c.typeMod)],
        );
      });
      for (const row of result.rows) typeNames.set(unknownTypes[Number(row.i) - 1]!.name, row.name);
    }
    const columns: ColumnSchema[] = relation.columns.map((column) => {
      const before = known.get(column.name);
      const sameType = before?.typeOid === column.typeOid && before.typeMod === column.typeMod;
      return {
        name: column.name,
        typeOid: column.typeOid,
        typeMod: column.typeMod,
        typeName: sameType ? before.typeName : (typeNames.get(column.name) ?? String(column.typeOid)),
        nullable: sameType ? before.nullable : true,
        isKey: relation.replicaIdentity === 'full' || column.isKey,
      };
    });
    const names = new Set(columns.map((c) => c.name));
    return {
      relationId: relation.relationId,
      schema: relation.schema,
      name: relation.name,
      columns,
      primaryKey: (previous?.primaryKey ?? []).filter((name) => names.has(name)),
      replicaIdentity: relation.replicaIdentity,
      rowFilter: previous?.rowFilter,
    };
  }

  /** Emits a non-transactional logical message, so an idle slot has something to confirm. */
  async heartbeat(): Promise<void> {
    await this.#withControl((client) =>
      client.query(`SELECT pg_logical_emit_message(false, 'pg-replicate', 'heartbeat')`),
    );
  }

  async close(): Promise<void> {
    await this.#idle.close();
    await this.#replication?.close();
    this.#replication = null;
    await this.#control?.end().catch(() => {});
    this.#control = null;
  }

  /** Ends the transaction on `client` and keeps the connection for the next one (or closes it). */
  async #commitAndGiveBack(client: pg.Client): Promise<void> {
    try {
      await client.query('COMMIT');
      this.#idle.give(client);
    } catch {
      await client.end().catch(() => {});
    }
  }

  async #replicationConnection(): Promise<ReplicationConnection> {
    this.#replication ??= await ReplicationConnection.open(this.connection);
    return this.#replication;
  }

  async #createSlot(
    replication: ReplicationConnection,
    name: string,
    temporary: boolean,
    snapshot: 'export' | 'nothing' = 'export',
  ): Promise<CreatedSlot> {
    return replication.createSlot(name, { temporary, snapshot });
  }

  /**
   * Runs `work` on the control connection once the work queued before it is done. The pipeline, the
   * slot monitor and heartbeats share this connection; pg deprecates overlapping queries on one
   * client, and serializing them keeps each caller's queries together.
   */
  #withControl<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const control = this.#control;
    if (control === null) return Promise.reject(new Error('PostgresSource.open() has not been called'));
    const run = this.#controlQueue.then(() => work(control));
    this.#controlQueue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  #requirePreflight(): PreflightResult {
    if (this.#preflight === null) throw new Error('PostgresSource.open() has not been called');
    return this.#preflight;
  }

  #requireSlot(): string {
    if (this.slot === undefined) {
      throw new PgReplicateError('INVALID_ARGUMENT', 'a replication slot name is required to stream changes');
    }
    return this.slot;
  }
}

/** A lock wait on `name` given up on (`lock_timeout`) while copying: see `copyTable`. */
function lockWaitError(error: unknown, name: string): PgReplicateError | null {
  if ((error as { code?: string }).code !== '55P03') return null;
  return new PgReplicateError(
    'TABLE_REWRITTEN',
    `a TRUNCATE or ALTER TABLE of ${name} is waiting for the copy's lock, and the copy cannot go on without it`,
    { hint: 'the copy starts over from a new snapshot once that statement is done', cause: error },
  );
}

function sourceError(error: unknown, what: string): unknown {
  if (error instanceof PgReplicateError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  if (code === '42501') {
    return new PgReplicateError('MISSING_SELECT_PRIVILEGE', `permission denied ${what}: ${message}`, {
      hint: 'GRANT SELECT on the table to the replication user',
      cause: error,
    });
  }
  if (/terminated|ECONNRESET|closed/i.test(message)) {
    return new PgReplicateError('CONNECTION_LOST', `connection lost while ${what}: ${message}`, {
      cause: error,
    });
  }
  return new PgReplicateError('SERVER_ERROR', `failed ${what}: ${message}`, { cause: error });
}
