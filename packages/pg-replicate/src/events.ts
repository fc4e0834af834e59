/**
 * Change events as sinks receive them: one per inserted, updated or deleted row, per TRUNCATE,
 * and per schema change, each with the transaction it belongs to. Rows stay lazy ({@link RowData});
 * sinks parse only what they need.
 */
import type { Lsn } from './lsn.js';
import type { RowData } from './row.js';
import type { TableSchema } from './schema.js';

/** The transaction a change belongs to (known from its Begin, before its first change). */
export interface TransactionInfo {
  readonly xid: number;
  /** LSN of the commit record. */
  readonly commitLsn: Lsn;
  /** Commit time, microseconds since the Unix epoch. */
  readonly commitTime: bigint;
}

interface BaseEvent {
  /** WAL position of the change itself. */
  readonly lsn: Lsn;
  readonly tx: TransactionInfo;
}

export interface InsertEvent extends BaseEvent {
  readonly op: 'insert';
  readonly table: TableSchema;
  readonly new: RowData;
}

export interface UpdateEvent extends BaseEvent {
  readonly op: 'update';
  readonly table: TableSchema;
  readonly new: RowData;
  /**
   * The old row when Postgres sent one: only the identity key columns (`oldIsKey`, sent when the
   * key changed), or the whole old row (REPLICA IDENTITY FULL). Undefined when the key did not change.
   */
  readonly old: RowData | undefined;
  readonly oldIsKey: boolean;
}

export interface DeleteEvent extends BaseEvent {
  readonly op: 'delete';
  readonly table: TableSchema;
  /** Identity key columns only (`oldIsKey`) or the whole row (REPLICA IDENTITY FULL). */
  readonly old: RowData;
  readonly oldIsKey: boolean;
}

export interface TruncateEvent extends BaseEvent {
  readonly op: 'truncate';
  readonly tables: readonly TableSchema[];
  readonly cascade: boolean;
  readonly restartIdentity: boolean;
}

/** A table's columns changed (ALTER TABLE); later rows of that table follow the new schema. */
export interface SchemaEvent extends BaseEvent {
  readonly op: 'schema';
  readonly table: TableSchema;
  readonly previous: TableSchema;
}

export type RowChangeEvent = InsertEvent | UpdateEvent | DeleteEvent;
export type ChangeEvent = RowChangeEvent | TruncateEvent | SchemaEvent;
