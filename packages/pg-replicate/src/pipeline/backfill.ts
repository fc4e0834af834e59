/**
 * Copies tables into the sink inside one snapshot. A big table is split into ranges of heap pages
 * copied by several connections at once (all importing the same snapshot, so the result is one
 * consistent view); their row batches meet in a bounded queue that the sink drains, one call at a
 * time. Postgres keeps sending while the sink writes, and memory stays bounded by the queue.
 *
 * Resumption is per table: a table whose copy was interrupted is cleared and copied again.
 */
import { PgReplicateError } from '../errors.js';
import type { CopyTextRow } from '../row.js';
import { tableKey } from '../schema.js';
import type { Sink } from '../sink/sink.js';
import type { PublishedTable } from '../source/catalog.js';
import type { PostgresSource, Snapshot } from '../source/postgres-source.js';
import { BoundedQueue } from './bounded-queue.js';
import type { PipelineStats, ProgressEvent } from './progress.js';

export interface BackfillOptions {
  batchRows: number;
  /** Connections copying at once (page ranges of one table). */
  workers: number;
  /** Smallest page range worth a connection of its own. */
  chunkPages: number;
  signal: AbortSignal | undefined;
  onProgress: (event: ProgressEvent) => void;
  stats: PipelineStats;
}

export async function backfill(
  source: PostgresSource,
  sink: Sink,
  tables: readonly PublishedTable[],
  snapshot: Snapshot,
  options: BackfillOptions,
): Promise<void> {
  for (const [index, table] of tables.entries()) {
    throwIfAborted(options.signal);
    await copyOne(source, sink, table, snapshot, options, { index: index + 1, count: tables.length });
  }
}

async function copyOne(
  source: PostgresSource,
  sink: Sink,
  table: PublishedTable,
  snapshot: Snapshot,
  options: BackfillOptions,
  position: { index: number; count: number },
): Promise<void> {
  const key = tableKey(table);
  const started = performance.now();
  options.onProgress({
    type: 'copy-start',
    table: key,
    estimatedRows: table.estimatedRows ?? -1,
    ...position,
  });
  const chunks = await source.planChunks(table, options.workers, options.chunkPages);
  await sink.beginCopy(table, snapshot.lsn);
  const queue = new BoundedQueue<CopyTextRow[]>(COPY_QUEUE_BYTES, batchBytes);
  const readers = readChunks(source, table, snapshot, chunks, queue, options);
  let rows = 0;
  try {
    for (let batch = await queue.take(); batch !== undefined; batch = await queue.take()) {
      throwIfAborted(options.signal);
      await sink.writeRows(table, batch);
      rows += batch.length;
      options.stats.rowsCopied += batch.length;
      options.onProgress({ type: 'copy-progress', table: key, rows });
    }
  } catch (error) {
    queue.close(error);
    await readers.catch(() => {});
    throw error;
  }
  await readers;
  await sink.endCopy(table, snapshot.lsn);
  options.stats.tablesCopied++;
  options.onProgress({ type: 'copy-done', table: key, rows, ms: performance.now() - started });
}

/** Copies the chunks, `workers` at a time, into the queue; closes it when all are done or one fails. */
async function readChunks(
  source: PostgresSource,
  table: PublishedTable,
  snapshot: Snapshot,
  chunks: readonly (string | undefined)[],
  queue: BoundedQueue<CopyTextRow[]>,
  options: BackfillOptions,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < chunks.length) {
      const where = chunks[next++];
      for await (const batch of source.copyTable(table, snapshot, { batchRows: options.batchRows, where })) {
        await queue.push(batch);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.workers, chunks.length) }, worker));
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
const COPY_QUEUE_BYTES = 32 * 1024 * 1024;

function batchBytes(rows: readonly CopyTextRow[]): number {
  let bytes = 0;
  for (const row of rows) bytes += row.bytes.length;
  return bytes;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new PgReplicateError('ABORTED', 'stopped on request');
}
