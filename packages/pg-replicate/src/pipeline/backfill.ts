/**
 * Copies tables into the sink inside one snapshot, on up to `workers` connections at once, all
 * importing the same snapshot (so the result is one consistent view). A big table is split into
 * ranges of heap pages copied side by side; connections its ranges do not need copy the tables
 * after it. The sink still takes one table at a time, in order, one call at a time: rows of the
 * tables ahead wait in queues of their own (`CopyQueues`), within one memory budget. Postgres
 * keeps sending while the sink writes, and memory stays bounded whatever the tables' sizes.
 *
 * Resumption is per chunk with sinks that record chunks (`Sink.chunkCopied`): a copy cut short
 * copies only the chunks that were not durable, in a new snapshot, and the table keeps the LSN of
 * the first snapshot — streaming then replays every change after it over all chunks, which the
 * sink applies idempotently up to the new snapshot (rows of the new chunks already have them).
 * A rewrite of the table in between (VACUUM FULL, CLUSTER…) moves rows between page ranges
 * without any change to replay, and an ALTER TABLE or a new row filter changes rows without one:
 * either means a full copy again (see `PostgresSource.fingerprint`). Other sinks copy an interrupted
 * table again in full (`beginCopy` clears it).
 */

import type { CopyTextBatch } from '../copy-batch.js';
import { PgReplicateError } from '../errors.js';
import type { Lsn } from '../lsn.js';
import { tableKey } from '../schema.js';
import type { CopyPlan, PartialCopy, Sink } from '../sink/sink.js';
import type { PublishedTable } from '../source/catalog.js';
import type { ChunkPlan, PostgresSource, Snapshot } from '../source/postgres-source.js';
import { CopyQueues } from './copy-queues.js';
import type { Logger, PipelineStats, ProgressEvent } from './progress.js';

export interface BackfillOptions {
  batchRows: number;
  /** Connections copying at once (page ranges of a table, and the tables after it). */
  workers: number;
  /** Smallest page range worth a connection of its own. */
  chunkPages: number;
  /** Copies the sink can resume, by table key (only those the pipeline found safe to resume). */
  resumable: ReadonlyMap<string, PartialCopy>;
  signal: AbortSignal | undefined;
  onProgress: (event: ProgressEvent) => void;
  logger: Logger;
  stats: PipelineStats;
}

/** A batch of copied rows, or the end of the chunk with this index. */
type CopyItem = CopyTextBatch | number;

/** What a table's copy does: its plan, the chunks left to copy, and its consistent LSN. */
interface PlannedCopy {
  readonly plan: CopyPlan;
  readonly todo: readonly number[];
  readonly consistentAt: Lsn | null;
  /** Rows it is expected to send (-1: unknown, the table was never analyzed). */
  readonly estimatedRows: number;
}

/** Copies `tables`; returns, for each, the LSN its copy is consistent with. */
export async function backfill(
  source: PostgresSource,
  sink: Sink,
  tables: readonly PublishedTable[],
  snapshot: Snapshot,
  options: BackfillOptions,
): Promise<Map<string, Lsn | null>> {
  const chunkPlans = await source.planChunks(tables, options.workers, options.chunkPages);
  const planned = tables.map((table, i) => planCopy(table, chunkPlans[i]!, snapshot, options));
  const estimates = planned.map((copy) => copy.estimatedRows);
  options.onProgress({
    type: 'backfill-start',
    tables: tables.length,
    estimatedRows: estimates.includes(-1) ? -1 : estimates.reduce((sum, rows) => sum + rows, 0),
  });
  const queues = new CopyQueues<CopyItem>(tables.length, COPY_QUEUE_BYTES, weigh);
  const reading = readTables(source, sink, tables, planned, snapshot, queues, options);
  const consistentAt = new Map<string, Lsn | null>();
  try {
    for (const [index, table] of tables.entries()) {
      throwIfAborted(options.signal);
      const position = { index: index + 1, count: tables.length };
      await writeTable(sink, table, planned[index]!, queues, index, options, position);
      consistentAt.set(tableKey(table), planned[index]!.consistentAt);
    }
  } catch (error) {
    queues.fail(error);
    await reading.catch(() => {});
    throw error;
  }
  await reading;
  return consistentAt;
}

/** Hands one table's rows from its queue to the sink, between `beginCopy` and `endCopy`. */
async function writeTable(
  sink: Sink,
  table: PublishedTable,
  { plan, consistentAt, estimatedRows }: PlannedCopy,
  queues: CopyQueues<CopyItem>,
  index: number,
  options: BackfillOptions,
  position: { index: number; count: number },
): Promise<void> {
  const key = tableKey(table);
  const started = performance.now();
  options.onProgress({ type: 'copy-start', table: key, estimatedRows, ...position });
  await sink.beginCopy(table, consistentAt, plan);
  let rows = 0;
  for (let item = await queues.take(index); item !== undefined; item = await queues.take(index)) {
    throwIfAborted(options.signal);
    if (typeof item === 'number') {
      await sink.chunkCopied?.(table, item);
      continue;
    }
    await sink.writeRows(table, item);
    item.release(); // its memory goes to the next rows: sinks keep copies, never the rows
    rows += item.length;
    options.stats.rowsCopied += item.length;
    options.onProgress({ type: 'copy-progress', table: key, rows });
  }
  await sink.endCopy(table, consistentAt);
  options.stats.tablesCopied++;
  options.onProgress({ type: 'copy-done', table: key, rows, ms: performance.now() - started });
}

/**
 * The reading side: `workers` connections take the chunks of every table in table order and put
 * their rows in the table's queue (each chunk followed by its index when the sink records chunks).
 * A table's queue ends when all its chunks are read; any failure fails the queues.
 */
async function readTables(
  source: PostgresSource,
  sink: Sink,
  tables: readonly PublishedTable[],
  planned: readonly PlannedCopy[],
  snapshot: Snapshot,
  queues: CopyQueues<CopyItem>,
  options: BackfillOptions,
): Promise<void> {
  const chunks = planned.flatMap(({ todo }, table) => todo.map((chunk) => ({ table, chunk })));
  /** Chunks of each table not read to the end yet. */
  const unread = planned.map(({ todo }) => todo.length);
  for (const [table, left] of unread.entries()) if (left === 0) queues.end(table);
  let next = 0;
  const worker = async () => {
    while (next < chunks.length) {
      const { table, chunk } = chunks[next++]!;
      const { plan } = planned[table]!;
      const batches = source.copyTable(tables[table]!, snapshot, {
        batchRows: options.batchRows,
        chunk: plan.chunks[chunk],
      });
      for await (const batch of batches) await queues.push(table, batch);
      if (sink.chunkCopied !== undefined && plan.chunks.length > 1) await queues.push(table, chunk);
      if (--unread[table]! === 0) queues.end(table);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.workers, chunks.length) }, worker));
  } catch (error) {
    queues.fail(error);
    throw error;
  }
}

/** The chunks to copy, and the LSN the table's copy will be consistent with. */
function planCopy(
  table: PublishedTable,
  { chunks, fingerprint }: ChunkPlan,
  snapshot: Snapshot,
  options: BackfillOptions,
): PlannedCopy {
  const key = tableKey(table);
  const partial = options.resumable.get(key);
  if (partial !== undefined && snapshot.lsn !== null) {
    if (fingerprint === partial.fingerprint) {
      const done = new Set(partial.done);
      const todo = partial.chunks.flatMap((_, i) => (done.has(i) ? [] : [i]));
      options.logger.info(
        `resuming the copy of ${key}: ${done.size} of ${partial.chunks.length} chunks are in the sink, copying the other ${todo.length}`,
      );
      return {
        plan: {
          chunks: partial.chunks,
          fingerprint: partial.fingerprint,
          resume: { replayUntil: snapshot.lsn },
        },
        todo,
        consistentAt: partial.snapshotLsn,
        // It sends the rows of its remaining chunks only (pages are a fair proxy).
        estimatedRows: estimate(table, todo.length / partial.chunks.length),
      };
    }
    options.logger.warn(
      `${key} was rewritten or redefined since its copy began (or its publication entry changed): copying it again in full`,
    );
  }
  return {
    plan: { chunks, fingerprint, resume: null },
    todo: chunks.map((_, i) => i),
    consistentAt: snapshot.lsn,
    estimatedRows: estimate(table, 1),
  };
}

/** A share of the table's rows by its statistics (-1: never analyzed). */
function estimate(table: PublishedTable, share: number): number {
  if (table.estimatedRows === undefined || table.estimatedRows < 0) return -1;
  return Math.round(table.estimatedRows * share);
}

/**
 * Copied rows waiting for the sink, across all connections and tables: enough to keep the sink
 * busy while Postgres sends, small enough that memory stays flat whatever the tables.
 */
const COPY_QUEUE_BYTES = 8 * 1024 * 1024;

/** What a queued item holds: the memory of its rows (slabs included), not just their bytes. */
function weigh(item: CopyItem): number {
  return typeof item === 'number' ? 0 : item.retainedBytes;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new PgReplicateError('ABORTED', 'stopped on request');
}
