/**
 * What a running pipeline reports: progress events for whoever displays them (the CLI's progress
 * bar, the replicator's metrics), a logger interface, and the counters kept for the summary.
 */
import type { Lsn } from '../lsn.js';

export type ProgressEvent =
  | {
      readonly type: 'backfill-start';
      /** Tables this backfill copies. */
      readonly tables: number;
      /** Rows it is expected to copy, from the statistics (-1: a table was never analyzed). */
      readonly estimatedRows: number;
    }
  | {
      readonly type: 'copy-start';
      readonly table: string;
      readonly estimatedRows: number;
      /** 1-based position of the table in this backfill, and how many tables it copies. */
      readonly index: number;
      readonly count: number;
    }
  | { readonly type: 'copy-progress'; readonly table: string; readonly rows: number }
  | { readonly type: 'copy-done'; readonly table: string; readonly rows: number; readonly ms: number }
  | { readonly type: 'streaming'; readonly startLsn: Lsn }
  | {
      readonly type: 'changes';
      /** Changes made durable by this batch, by operation. */
      readonly counts: Readonly<Record<'insert' | 'update' | 'delete' | 'truncate', number>>;
      readonly transactions: number;
      readonly lsn: Lsn;
      /** Commit of the batch's last transaction → durable in the sink. */
      readonly lagMs: number;
      /** Commit of the batch's first transaction → durable: the longest any change waited. */
      readonly maxLagMs: number;
    }
  | { readonly type: 'advanced'; readonly lsn: Lsn }
  | {
      readonly type: 'slot';
      /** WAL the slot keeps from being recycled (server position − restart_lsn). */
      readonly retainedWalBytes: number;
      /** Server position − confirmed_flush_lsn. */
      readonly lagBytes: number;
      readonly walStatus: string | null;
    };

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

export const SILENT_LOGGER: Logger = { debug() {}, info() {}, warn() {} };

export interface PipelineStats {
  rowsCopied: number;
  tablesCopied: number;
  inserts: number;
  updates: number;
  deletes: number;
  truncates: number;
  transactions: number;
  batches: number;
  /** Last LSN durable in the sink (and confirmed to Postgres). */
  durableLsn: Lsn | null;
  /** Lag of the last batch: commit time of its last transaction → durable. */
  lastLagMs: number | null;
  copyMs: number;
  streamMs: number;
}

export function emptyStats(): PipelineStats {
  return {
    rowsCopied: 0,
    tablesCopied: 0,
    inserts: 0,
    updates: 0,
    deletes: 0,
    truncates: 0,
    transactions: 0,
    batches: 0,
    durableLsn: null,
    lastLagMs: null,
    copyMs: 0,
    streamMs: 0,
  };
}
