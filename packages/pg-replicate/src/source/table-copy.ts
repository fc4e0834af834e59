/**
 * Streams one table out with `COPY … TO STDOUT` (text format) as batches of lazy rows. The caller
 * provides a client already inside the snapshot the copy must see. Memory stays bounded: a batch
 * is handed over before the next is read, and the socket is read only when asked.
 */
import type pg from 'pg';
import { quoteIdent } from '../connection/connect.js';
import { CopyStream } from '../protocol/copy-stream.js';
import { type CopyTextRow, CopyTextRowSplitter } from '../row.js';
import type { TableSchema } from '../schema.js';
import type { CopyChunk } from '../sink/sink.js';

export interface CopyTableOptions {
  /** Rows per batch handed to the caller (default 10 000). */
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

export async function* copyTable(
  client: pg.Client,
  table: TableSchema & { kind?: string },
  options: CopyTableOptions = {},
): AsyncGenerator<CopyTextRow[], void, undefined> {
  const batchRows = options.batchRows ?? 10_000;
  const copy = new CopyStream(copyStatement(table, chunkCondition(options.chunk)));
  client.query(copy);
  const splitter = new CopyTextRowSplitter(table.columns.length);
  let rows: CopyTextRow[] = [];
  for (;;) {
    const frames = await copy.next();
    if (frames === null) break;
    for (const frame of frames) {
      splitter.push(frame, rows);
      if (rows.length >= batchRows) {
        yield rows;
        rows = [];
      }
    }
  }
  splitter.finish();
  if (rows.length > 0) yield rows;
}
