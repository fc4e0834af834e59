/**
 * Streams one table out with `COPY … TO STDOUT` (text format) as batches of rows kept as the
 * bytes they arrived in (`CopyTextBatch`). The caller provides a client already inside the
 * snapshot the copy must see. Memory stays bounded: a batch (at most `batchRows` rows or about
 * 4 MiB, whichever comes first) is handed over before the next is read, and the socket is read
 * only when asked.
 */
import type pg from 'pg';
import { quoteIdent } from '../connection/connect.js';
import { type CopyTextBatch, CopyTextBatcher } from '../copy-batch.js';
import { CopyStream } from '../protocol/copy-stream.js';
import type { TableSchema } from '../schema.js';
import type { CopyChunk } from '../sink/sink.js';

export interface CopyTableOptions {
  /** Rows per batch handed to the caller (default 10 000; fewer when rows are wide). */
  batchRows?: number;
  /** Only the rows of this range of pages (default: the whole table). */
  chunk?: CopyChunk;
}

/** The ctid condition of a chunk (none for the whole table). */
export function chunkCondition(chunk: CopyChunk | undefined): string | undefined {
  if (chunk === undefined || (chunk.firstPage === 0 && chunk.endPage === null)) return undefined;
  // Integers only: chunks may come back from a sink's stored state.
  const page = (n: number) => {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`invalid page number ${n}`);
    return `'(${n},0)'::tid`;
  };
  const from = `ctid >= ${page(chunk.firstPage)}`;
  return chunk.endPage === null ? from : `${from} AND ctid < ${page(chunk.endPage)}`;
}

/** The COPY statement for the table's published columns and rows. */
export function copyStatement(table: TableSchema & { kind?: string }, where?: string): string {
  const target = `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
  const columns = table.columns.map((column) => quoteIdent(column.name)).join(', ');
  const conditions = [table.rowFilter, where].filter((c): c is string => c !== undefined && c !== '');
  // COPY table (cols) is the fastest form, but partitioned tables and filters need a query.
  if (conditions.length === 0 && table.kind !== 'p' && table.columns.length > 0) {
    return `COPY ${target} (${columns}) TO STDOUT`;
  }
  const filter = conditions.length > 0 ? ` WHERE ${conditions.map((c) => `(${c})`).join(' AND ')}` : '';
  return `COPY (SELECT ${columns} FROM ${target}${filter}) TO STDOUT`;
}

/** A batch is handed over at this size even if it has fewer rows than asked (wide rows). */
const BATCH_BYTES = 4 * 1024 * 1024;

/**
 * Socket bytes read ahead of the batcher. Each 64 KiB socket chunk stays alive until its rows are
 * batched, and when the sink is the slower side every copy worker holds its read-ahead plus the
 * frames it is working through: at 4 MiB, four workers into DuckDB pinned ~40 MB of chunks. 1 MiB
 * copies as fast (the sink, not the socket, sets the pace then).
 */
const READ_AHEAD_BYTES = 1024 * 1024;

export async function* copyTable(
  client: pg.Client,
  table: TableSchema & { kind?: string },
  options: CopyTableOptions = {},
): AsyncGenerator<CopyTextBatch, void, undefined> {
  const batchRows = options.batchRows ?? 10_000;
  const copy = new CopyStream(copyStatement(table, chunkCondition(options.chunk)), {
    highWaterBytes: READ_AHEAD_BYTES,
  });
  client.query(copy);
  const batcher = new CopyTextBatcher(table.columns.length);
  for (;;) {
    const frames = await copy.nextFrames();
    if (frames === null) break;
    const { buffers, bounds } = frames;
    for (let i = 0; i < buffers.length; i++) {
      batcher.push(buffers[i]!, bounds[2 * i]!, bounds[2 * i + 1]!);
      if (batcher.rows >= batchRows || batcher.bytes >= BATCH_BYTES) yield batcher.take();
    }
  }
  batcher.finish();
  if (batcher.rows > 0) yield batcher.take();
}
