/**
 * Copies tables into the sink inside one snapshot. A big table is split into ranges of heap pages
 * copied by several connections at once (all importing the same snapshot, so the result is one
 * consistent view); their row batches meet in a bounded queue that the sink drains, one call at a
 * time. Postgres keeps sending while the sink writes, and memory stays bounded by the queue.
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
import type { CopyChunk, CopyPlan, PartialCopy, Sink } from '../sink/sink.js';
import type { PublishedTable } from '../source/catalog.js';
import type { PostgresSource, Snapshot } from '../source/postgres-source.js';
import { BoundedQueue } from './bounded-queue.js';
import type { Logger, PipelineStats, ProgressEvent } from './progress.js';

export interface BackfillOptions {
  batchRows: number;
  /** Connections copying at once (page ranges of one table). */
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

/** Copies `tables`; returns, for each, the LSN its copy is consistent with. */
export async function backfill(
  source: PostgresSource,
  sink: Sink,
  tables: readonly PublishedTable[],
  snapshot: Snapshot,
  options: BackfillOptions,
): Promise<Map<string, Lsn | null>> {
  const consistentAt = new Map<string, Lsn | null>();
  for (const [index, table] of tables.entries()) {
    throwIfAborted(options.signal);
    const position = { index: index + 1, count: tables.length };
    consistentAt.set(tableKey(table), await copyOne(source, sink, table, snapshot, options, position));
  }
  return consistentAt;
}

/** A batch of copied rows, or the end of the chunk with this index. */
type CopyItem = CopyTextBatch | number;

async function copyOne(
  source: PostgresSource,
  sink: Sink,
  table: PublishedTable,
  snapshot: Snapshot,
  options: BackfillOptions,
  position: { index: number; count: number },
): Promise<Lsn | null> {
  const key = tableKey(table);
  const started = performance.now();
  const { plan, todo, consistentAt } = await planCopy(source, table, snapshot, options);
  // A resumed copy sends the rows of its remaining chunks only (pages are a fair proxy).
  const estimatedRows =
    table.estimatedRows === undefined || table.estimatedRows < 0
      ? -1
      : Math.round((table.estimatedRows * todo.length) / plan.chunks.length);
  options.onProgress({ type: 'copy-start', table: key, estimatedRows, ...position });
  await sink.beginCopy(table, consistentAt, plan);
  const reportChunks = sink.chunkCopied !== undefined && plan.chunks.length > 1;
  const queue = new BoundedQueue<CopyItem>(COPY_QUEUE_BYTES, weigh);
  const readers = readChunks(source, table, snapshot, plan.chunks, todo, queue, options, reportChunks);
  let rows = 0;
  try {
    for (let item = await queue.take(); item !== undefined; item = await queue.take()) {
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
  } catch (error) {
    queue.close(error);
    await readers.catch(() => {});
    throw error;
  }
  await readers;
  await sink.endCopy(table, consistentAt);
  options.stats.tablesCopied++;
  options.onProgress({ type: 'copy-done', table: key, rows, ms: performance.now() - started });
  return consistentAt;
}

/** The chunks to copy, and the LSN the table's copy will be consistent with. */
async function planCopy(
  source: PostgresSource,
  table: PublishedTable,
  snapshot: Snapshot,
  options: BackfillOptions,
): Promise<{ plan: CopyPlan; todo: number[]; consistentAt: Lsn | null }> {
  const key = tableKey(table);
  const partial = options.resumable.get(key);
  if (partial !== undefined && snapshot.lsn !== null) {
    if ((await source.fingerprint(table)) === partial.fingerprint) {
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
      };
    }
    options.logger.warn(
      `${key} was rewritten or redefined since its copy began (or its publication entry changed): copying it again in full`,
    );
  }
  const { chunks, fingerprint } = await source.planChunks(table, options.workers, options.chunkPages);
  return {
    plan: { chunks, fingerprint, resume: null },
    todo: chunks.map((_, i) => i),
    consistentAt: snapshot.lsn,
  };
}

/**
 * Copies the chunks numbered `todo`, `workers` at a time, into the queue (each followed by its
 * index when `reportChunks`); closes the queue when all are done or one fails.
 */
async function readChunks(
  source: PostgresSource,
  table: PublishedTable,
  snapshot: Snapshot,
  chunks: readonly CopyChunk[],
  todo: readonly number[],
  queue: BoundedQueue<CopyItem>,
  options: BackfillOptions,
  reportChunks: boolean,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const index = todo[next++]!;
      const chunk = chunks[index];
      for await (const batch of source.copyTable(table, snapshot, { batchRows: options.batchRows, chunk })) {
        await queue.push(batch);
      }
      if (reportChunks) await queue.push(index);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.workers, todo.length) }, worker));
    queue.close();
  } catch (error) {
    queue.close(error);
    throw error;
  }
}

/**
 * Copied rows waiting for the sink, across all connections: enough to keep the sink busy while
 * Postgres sends, small enough that memory stays flat whatever the table size.
 */
const COPY_QUEUE_BYTES = 8 * 1024 * 1024;

function weigh(item: CopyItem): number {
  return typeof item === 'number' ? 0 : item.byteLength;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new PgReplicateError('ABORTED', 'stopped on request');
}
