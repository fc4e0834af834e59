/**
 * The BigQuery sink: each replicated table is a BigQuery table kept current the way Google
 * recommends for CDC — rows streamed to the Storage Write API's default stream as UPSERT/DELETE
 * with `_CHANGE_SEQUENCE_NUMBER`, the primary key declared `NOT ENFORCED`, clustering on it and a
 * `max_staleness` so BigQuery applies changes in the background — behind a view that survives
 * TRUNCATE and new copies.
 *
 * Delivery: every change carries the sequence number (commit LSN, position in transaction), so
 * BigQuery keeps the latest change of each key and a change delivered twice is kept once. The
 * position (`lastLsn`) is written to the state table after the batch's rows were acknowledged;
 * after a crash the pipeline sends the unconfirmed tail again and nothing changes but the rows'
 * ingestion time: exactly-once in effect, though not atomic (a batch may be half visible).
 */
import {
  type ChangeBatch,
  type CopiedRows,
  CopyTextBatch,
  type Lsn,
  PgReplicateError,
  type Sink,
  type SinkContext,
  type SinkState,
  type TableSchema,
  tableKey,
} from 'pg-replicate';
import { encodeChangeSequence } from './change-sequence.js';
import { ChangeWriter } from './change-writer.js';
import { type Clients, createClients } from './clients.js';
import { type BigQuerySinkOptions, type ResolvedOptions, resolveOptions } from './options.js';
import { ProtoWriter } from './proto-writer.js';
import { RecentValues } from './recent-values.js';
import { describeKey, writeRow } from './row-encoder.js';
import { STATE_DESCRIPTOR, STATE_TABLE, StateTable } from './state-table.js';
import { TableAdmin } from './table-admin.js';
import { TableAppender } from './table-appender.js';
import { type PendingCopy, TableCatalog } from './table-catalog.js';
import { ToastResolver } from './toast-resolver.js';

/** Batches of copied rows in flight at once (each up to the pipeline's copy batch size). */
const COPY_BATCHES_IN_FLIGHT = 3;

interface OpenState {
  readonly clients: Clients;
  readonly admin: TableAdmin;
  readonly state: StateTable;
  readonly stateAppender: TableAppender;
  readonly catalog: TableCatalog;
  readonly changes: ChangeWriter;
  readonly copies: Map<string, PendingCopy>;
}

/**
 * Replicates into BigQuery through the Storage Write API.
 *
 * ```ts
 * import { Pipeline, PostgresSource } from 'pg-replicate';
 * import { BigQuerySink } from '@pg-replicate/bigquery';
 *
 * const source = new PostgresSource({ publication: 'my_publication', slot: 'my_slot' });
 * const sink = new BigQuerySink({ projectId: 'my-project', datasetId: 'replica' });
 * await new Pipeline({ source, sink, mode: 'both' }).run();
 * ```
 */
export class BigQuerySink implements Sink {
  readonly name = 'bigquery';
  /** Batches are not applied atomically; replays are harmless (see the module comment). */
  readonly transactional = false;
  readonly #options: ResolvedOptions;
  #open: OpenState | null = null;
  readonly #copyWriter = new ProtoWriter(1024 * 1024);
  /** Snapshot LSNs of the copies in progress (their rows' sequence numbers). */
  readonly #snapshots = new Map<string, Lsn>();
  /** Appends of copied rows not yet acknowledged, per table. */
  readonly #copyInFlight = new Map<string, Promise<void>[]>();
  /** The stored position, and how far appends may have gone beyond it. */
  #lastLsn: Lsn | null = null;
  #appendingUpTo: Lsn | null = null;

  constructor(options: BigQuerySinkOptions) {
    this.#options = resolveOptions(options);
  }

  async open(context: SinkContext): Promise<SinkState> {
    if (this.#open !== null) await this.close();
    const options = this.#options;
    const clients = createClients({
      projectId: options.projectId,
      location: options.location,
      keyFilename: options.keyFilename,
      maxRetries: Math.max(0, options.retry.maxAttempts - 1),
      maxRetryDelayMs: options.retry.maxDelayMs,
      clientOptions: options.clientOptions,
    });
    try {
      const admin = new TableAdmin(clients.bigquery, options.projectId, options.datasetId, options.location);
      await admin.ensureDataset();
      const state = new StateTable(admin, context.pipelineId);
      const stateAppender = new TableAppender(
        clients.writer,
        admin.writePath(STATE_TABLE),
        STATE_TABLE,
        STATE_DESCRIPTOR,
        {
          maxBatchBytes: options.maxBatchBytes,
          maxInFlight: 1,
          backoff: options.retry,
          requestTimeoutMs: options.requestTimeoutMs,
          schemaPropagationMs: 0,
          log: (message) => options.logger.warn(message),
        },
      );
      await state.ensure(stateAppender);
      const stored = await state.load();
      this.#lastLsn = stored.lastLsn;
      this.#appendingUpTo = stored.appendingUpTo;
      const replayUpTo =
        stored.appendingUpTo !== null && (stored.lastLsn === null || stored.appendingUpTo > stored.lastLsn)
          ? stored.appendingUpTo
          : null;
      const cache = new RecentValues(options.toastCacheBytes);
      const catalog = new TableCatalog(
        admin,
        clients.writer,
        state,
        cache,
        options,
        context.types,
        stored.tables,
      );
      const resolver = new ToastResolver(admin, cache, {
        maxStalenessMs: options.maxStalenessMs,
        marginMs: options.clockMarginMs,
        pollMs: Math.min(5_000, Math.max(100, options.maxStalenessMs / 10)),
        log: (message) => options.logger.warn(message),
        replayUpTo,
      });
      this.#open = {
        clients,
        admin,
        state,
        stateAppender,
        catalog,
        changes: new ChangeWriter(catalog, resolver, cache),
        copies: new Map(),
      };
      const copiedTables = new Map<string, Lsn | null>();
      for (const [key, table] of stored.tables) if (table.copied) copiedTables.set(key, table.snapshotLsn);
      return { copiedTables, lastLsn: stored.lastLsn };
    } catch (error) {
      if (this.#open === null) clients.writer.close();
      else await this.close();
      throw error;
    }
  }

  async prepare(tables: readonly TableSchema[]): Promise<void> {
    await this.#require().catalog.prepare(tables);
  }

  async beginCopy(table: TableSchema, snapshotLsn: Lsn | null): Promise<void> {
    const open = this.#require();
    const key = tableKey(table);
    this.#snapshots.set(key, snapshotLsn ?? 0n);
    await this.#settleCopy(key).catch(() => {});
    await open.copies.get(key)?.appender.close();
    open.copies.set(key, await open.catalog.startCopy(table));
  }

  async writeRows(table: TableSchema, copied: CopiedRows): Promise<void> {
    // Rows are named in errors reported after this call returns: keep them in memory of our own.
    const rows = Array.from(copied instanceof CopyTextBatch ? copied.detach() : copied);
    const copy = this.#copy(tableKey(table));
    const writer = this.#copyWriter;
    writer.reset();
    // Copied rows lose to every change after the snapshot: position 0 of the snapshot's LSN.
    const sequence = encodeChangeSequence(this.#snapshots.get(copy.plan.key) ?? 0n, 0);
    const ends: number[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      writeRow(writer, copy.plan, copy.converter.values(rows[i]!), 'UPSERT', sequence);
      ends[i] = writer.length;
    }
    const all = writer.copy(0);
    const encoded: Buffer[] = new Array(rows.length);
    for (let i = 0, start = 0; i < rows.length; start = ends[i++]!) encoded[i] = all.subarray(start, ends[i]);
    // Rows need not be durable before endCopy: keep a few batches in flight while Postgres sends more.
    const inFlight = this.#copyInFlight.get(copy.plan.key) ?? [];
    this.#copyInFlight.set(copy.plan.key, inFlight);
    const sent = copy.appender.append(
      encoded,
      (index) => `copied row ${describeKey(copy.plan, rows[index]!)}`,
    );
    sent.catch(() => {}); // awaited below or in endCopy
    inFlight.push(sent);
    while (inFlight.length > COPY_BATCHES_IN_FLIGHT) await inFlight.shift();
  }

  async endCopy(table: TableSchema, snapshotLsn: Lsn | null): Promise<void> {
    const open = this.#require();
    const key = tableKey(table);
    const copy = this.#copy(key);
    await this.#settleCopy(key);
    await open.catalog.finishCopy(copy, snapshotLsn);
    open.copies.delete(key);
    this.#snapshots.delete(key);
  }

  async writeChanges(batch: ChangeBatch): Promise<void> {
    const open = this.#require();
    try {
      // First say how far this batch's appends may go (see StateTable), then append, then record.
      let newest: Lsn | null = null;
      for (const event of batch.events) {
        if (event.op !== 'schema' && (newest === null || event.tx.commitLsn > newest))
          newest = event.tx.commitLsn;
      }
      if (newest !== null && (this.#appendingUpTo === null || newest > this.#appendingUpTo)) {
        this.#appendingUpTo = newest;
        await open.state.setPosition(this.#lastLsn, newest);
      }
      await open.changes.write(batch.events);
      if (batch.commit) {
        this.#lastLsn = batch.commit.lsn;
        if (this.#appendingUpTo === null || this.#lastLsn > this.#appendingUpTo)
          this.#appendingUpTo = this.#lastLsn;
        await open.state.setPosition(this.#lastLsn, this.#appendingUpTo);
      }
    } catch (error) {
      open.changes.reset();
      throw error;
    }
  }

  async close(): Promise<void> {
    const open = this.#open;
    if (open === null) return;
    this.#open = null;
    for (const [key, copy] of open.copies) {
      await this.#settleCopy(key).catch(() => {});
      await copy.appender.close();
    }
    await open.catalog.close();
    await open.stateAppender.close();
    open.clients.writer.close();
  }

  /** Waits for the copy's batches in flight; rethrows the first failure. */
  async #settleCopy(key: string): Promise<void> {
    const inFlight = this.#copyInFlight.get(key) ?? [];
    this.#copyInFlight.delete(key);
    const results = await Promise.allSettled(inFlight);
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }

  #copy(key: string): PendingCopy {
    const copy = this.#require().copies.get(key);
    if (copy === undefined) {
      throw new PgReplicateError('SINK_ERROR', `rows of ${key} arrived outside a copy`, {
        hint: 'beginCopy must come first; please report this',
      });
    }
    return copy;
  }

  #require(): OpenState {
    if (this.#open === null) {
      throw new PgReplicateError('SINK_ERROR', 'the BigQuery sink is not open', {
        hint: 'call open() first',
      });
    }
    return this.#open;
  }
}
