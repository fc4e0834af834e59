/**
 * The one interface every destination implements. It is deliberately small: a sink learns the
 * tables, receives copied rows and change batches in order, and reports the resumption state it
 * has durably stored. Durability and resumption belong to the sink because only the sink can make
 * them atomic with the data; the pipeline does the rest (ordering, batching, skipping what the
 * stored state says is already applied, confirming positions to Postgres).
 *
 * Call order, always awaited one at a time (a sink never sees two calls at once, except up to
 * {@link Sink.maxChangeBatchesInFlight} `writeChanges`):
 * `open` → `prepare` → (`beginCopy` → (`writeRows` | `chunkCopied`)* → `endCopy`)* →
 * `writeChanges`* → `close`.
 */

import type { CopiedRows } from '../copy-batch.js';
import type { ChangeEvent } from '../events.js';
import type { Lsn } from '../lsn.js';
import type { TableSchema } from '../schema.js';
import type { ReplicationMode } from '../source/preflight.js';
import type { TypeRegistry } from '../types/type-registry.js';

/** What a sink has durably stored about its progress. */
export interface SinkState {
  /**
   * Tables whose backfill completed, by {@link tableKey}, with the LSN of the snapshot they were
   * copied at (`null` for a copy without a slot): changes committed before it are in the copy.
   */
  readonly copiedTables: ReadonlyMap<string, Lsn | null>;
  /** End LSN of the last transaction durably applied (`null`: nothing yet, or not tracked). */
  readonly lastLsn: Lsn | null;
  /**
   * Copies interrupted part-way that the sink can resume (only sinks with {@link Sink.chunkCopied}),
   * by {@link tableKey}. The pipeline copies the other chunks and the table keeps its rows.
   */
  readonly partialCopies?: ReadonlyMap<string, PartialCopy> | undefined;
}

/**
 * A range of a table's heap pages, copied as one unit: `firstPage` up to `endPage` (exclusive), or
 * to the end of the table when `endPage` is null (so rows added since the plan are included).
 */
export interface CopyChunk {
  readonly firstPage: number;
  readonly endPage: number | null;
}

/** How a table's copy is split, and which chunks are durable (see {@link SinkState.partialCopies}). */
export interface PartialCopy {
  /** The LSN the copy started consistent with: changes after it are replayed over every chunk. */
  readonly snapshotLsn: Lsn;
  /** What must not change for the copy to resume (see `PostgresSource.fingerprint`). */
  readonly fingerprint: string;
  readonly chunks: readonly CopyChunk[];
  /** Indices into `chunks` of those whose every row is durable. */
  readonly done: readonly number[];
}

/** What `beginCopy` is told besides the table (sinks that do not resume copies may ignore it). */
export interface CopyPlan {
  /** The chunks of this copy; `chunkCopied` reports each by its index. */
  readonly chunks: readonly CopyChunk[];
  /** To store with the chunks (see {@link PartialCopy.fingerprint}). */
  readonly fingerprint: string;
  /**
   * Set when this copy resumes the sink's partial copy: keep the table's rows, and write each row
   * received in place of any row with the same key (rows of unfinished chunks may already be
   * there). Changes up to `replayUntil` (the LSN of the snapshot the remaining chunks are copied
   * in) may then meet rows that already have them: apply those idempotently too (an insert of a
   * key that exists replaces it) — across restarts, so `replayUntil` must be stored durably.
   * `beginCopy`'s `snapshotLsn` is then the first copy's: changes after it are replayed.
   */
  readonly resume: { readonly replayUntil: Lsn } | null;
}

export const EMPTY_SINK_STATE: SinkState = { copiedTables: new Map(), lastLsn: null };

/** What the pipeline hands a sink when opening it. */
export interface SinkContext {
  /** Parsers for every column type of the replicated tables (see `parseRow`). */
  readonly types: TypeRegistry;
  /** Name of the pipeline (slot or publication), for sinks that keep state for several. */
  readonly pipelineId: string;
  /** What the pipeline will do: `copy` sends no changes; `cdc` and `both` do (keys matter then). */
  readonly mode: ReplicationMode;
}

/** A batch of change events, in commit order. */
export interface ChangeBatch {
  readonly events: readonly ChangeEvent[];
  /**
   * Set when the batch ends at a transaction boundary: everything written since the previous
   * commit (this batch and earlier partial ones) must become durable together with `lastLsn = lsn`.
   * Absent when a transaction is larger than a batch: more of it follows, and nothing of it may
   * become visible (for transactional sinks) until a batch with `commit` arrives.
   */
  readonly commit?: { readonly lsn: Lsn } | undefined;
}

export interface Sink {
  /** Short name for logs and metrics, e.g. `duckdb`. */
  readonly name: string;

  /**
   * Whether the sink applies each change batch and its state atomically (exactly-once). If false,
   * delivery is at-least-once: after a crash, the unconfirmed tail is delivered again.
   */
  readonly transactional: boolean;

  /** Connects or opens files; returns the durable resumption state (empty on a first run). */
  open(context: SinkContext): Promise<SinkState>;

  /**
   * The tables about to be replicated, with their current schemas: create what is missing and
   * adapt what changed. Later schema changes arrive as `schema` events inside change batches.
   */
  prepare(tables: readonly TableSchema[]): Promise<void>;

  /**
   * A table's backfill starts: discard whatever an earlier, interrupted copy of it left behind
   * (and any rows of it at all — the copy replaces the table's contents), unless `plan.resume`
   * says this copy resumes one. `snapshotLsn` is the LSN the copy is consistent with (null
   * without a slot).
   */
  beginCopy(table: TableSchema, snapshotLsn: Lsn | null, plan?: CopyPlan): Promise<void>;

  /**
   * Copied rows of the table, in batches. Need not be durable until `endCopy`. From the pipeline
   * the batch is a `CopyTextBatch`: sinks that store COPY text can take its bytes as they are.
   * The rows are valid until the returned promise settles (their memory is reused for later rows):
   * a sink that needs them longer keeps a copy (`batch.detach()`, or the values it extracted).
   */
  writeRows(table: TableSchema, rows: CopiedRows): Promise<void>;

  /**
   * Optional: every row of chunk `index` of the plan has been given to `writeRows`. Make the rows
   * written so far durable and record the chunk as done, so that a copy cut short can resume (see
   * {@link SinkState.partialCopies}). Sinks without it copy interrupted tables again in full.
   */
  chunkCopied?(table: TableSchema, index: number): Promise<void>;

  /** The table's copy is complete: make its rows durable and record it as copied at `snapshotLsn`. */
  endCopy(table: TableSchema, snapshotLsn: Lsn | null): Promise<void>;

  /** Applies a batch of changes (see {@link ChangeBatch.commit} for durability). */
  writeChanges(batch: ChangeBatch): Promise<void>;

  /**
   * Optional: how many `writeChanges` calls may be outstanding at once (default 1). A sink that
   * takes more prepares a batch while the one before is still being applied (e.g. stages it on the
   * main thread while a database works on the previous one). It must apply batches in call order,
   * settle their promises in that order, and fail every batch after one that failed without
   * applying it. Only `close` may be called while batches are outstanding (the pipeline stops on
   * an error elsewhere): it lets them settle first.
   */
  readonly maxChangeBatchesInFlight?: number;

  /**
   * Releases resources. A transaction left open by a batch without `commit` is abandoned (rolled
   * back): it will be delivered again in full.
   */
  close(): Promise<void>;
}
