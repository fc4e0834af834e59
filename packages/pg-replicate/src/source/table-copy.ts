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

export interface CopyTableOptions {
  /** Rows per batch handed to the caller (default 10 000). */
  batchRows?: number;
  /** Extra WHERE condition (e.g. a ctid range for a chunk), ANDed with the row filter. */
  where?: string;
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
  const copy = new CopyStream(copyStatement(table, options.where));
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
