/**
 * Copies tables into the sink inside one snapshot. While the sink writes one batch, the next is
 * already being read from Postgres (one batch in flight, one being read: bounded memory, and
 * neither side waits for the other more than it must).
 */
import { PgReplicateError } from '../errors.js';
import { tableKey } from '../schema.js';
import type { Sink } from '../sink/sink.js';
import type { PublishedTable } from '../source/catalog.js';
import type { PostgresSource, Snapshot } from '../source/postgres-source.js';
import type { PipelineStats, ProgressEvent } from './progress.js';

export interface BackfillOptions {
  batchRows: number;
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
  for (const table of tables) {
    throwIfAborted(options.signal);
    await copyOne(source, sink, table, snapshot, options);
  }
}

async function copyOne(
  source: PostgresSource,
  sink: Sink,
  table: PublishedTable,
  snapshot: Snapshot,
  options: BackfillOptions,
): Promise<void> {
  const key = tableKey(table);
  const started = performance.now();
  options.onProgress({ type: 'copy-start', table: key, estimatedRows: table.estimatedRows ?? -1 });
  await sink.beginCopy(table, snapshot.lsn);
  let rows = 0;
  let writing: Promise<void> | null = null;
  for await (const batch of source.copyTable(table, snapshot, { batchRows: options.batchRows })) {
    if (writing !== null) await writing;
    throwIfAborted(options.signal);
    writing = sink.writeRows(table, batch);
    // Handled when awaited; this only keeps Node from reporting it as unhandled meanwhile.
    writing.catch(() => {});
    rows += batch.length;
    options.stats.rowsCopied += batch.length;
    options.onProgress({ type: 'copy-progress', table: key, rows });
  }
  if (writing !== null) await writing;
  await sink.endCopy(table, snapshot.lsn);
  options.stats.tablesCopied++;
  options.onProgress({ type: 'copy-done', table: key, rows, ms: performance.now() - started });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new PgReplicateError('ABORTED', 'stopped on request');
}
