/**
 * What a replicated table looks like: its columns with their Postgres types, its key, and how
 * Postgres identifies old rows. Built from the catalog at start and kept current from pgoutput
 * Relation messages, so sinks always see the schema the next rows were written with.
 */
import type { ReplicaIdentity } from './pgoutput/messages.js';

export interface ColumnSchema {
  readonly name: string;
  readonly typeOid: number;
  /** Type modifier (`atttypmod`), -1 if none. */
  readonly typeMod: number;
  /** `format_type(oid, typmod)`, e.g. `numeric(10,2)`, `character varying(20)`, `integer[]`. */
  readonly typeName: string;
  /** False when the column is NOT NULL. Unknown (true) for columns first seen in a Relation message. */
  readonly nullable: boolean;
  /** Part of the replica identity (primary key, the identity index, or every column under FULL). */
  readonly isKey: boolean;
}

export interface TableSchema {
  /** The relation's OID: stable across renames, used to match pgoutput messages. */
  readonly relationId: number;
  readonly schema: string;
  readonly name: string;
  readonly columns: readonly ColumnSchema[];
  /** Primary key column names, in key order; empty when the table has none. */
  readonly primaryKey: readonly string[];
  readonly replicaIdentity: ReplicaIdentity;
  /** Row filter of the publication (PG 15+), applied to the backfill as Postgres applies it to changes. */
  readonly rowFilter?: string | undefined;
  /** Estimated row count (`pg_class.reltuples`) for progress; -1 if unknown. */
  readonly estimatedRows?: number;
}

const tableKeys = new WeakMap<object, string>();

/** `"schema"."name"`: a key that is unambiguous even when names contain dots or quotes. */
export function tableKey(table: { readonly schema: string; readonly name: string }): string {
  // Sinks look tables up by key for every change: built once per (immutable) schema object.
  let key = tableKeys.get(table);
  if (key === undefined) {
    key = `${quote(table.schema)}.${quote(table.name)}`;
    tableKeys.set(table, key);
  }
  return key;
}

function quote(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The columns that identify a row for updates and deletes — the ones the old-row tuples of
 * pgoutput carry: under REPLICA IDENTITY USING INDEX the index's columns; otherwise the primary
 * key; under FULL without a primary key, every column. Empty when rows cannot be identified
 * (identity NOTHING, or DEFAULT without a primary key).
 */
export function identityColumns(table: TableSchema): readonly string[] {
  switch (table.replicaIdentity) {
    case 'index':
      return table.columns.filter((column) => column.isKey).map((column) => column.name);
    case 'full':
      return table.primaryKey.length > 0 ? table.primaryKey : table.columns.map((column) => column.name);
    case 'default':
      return table.primaryKey;
    case 'nothing':
      return [];
  }
}

/** True when two schemas would need a different destination table (columns, types or key). */
export function schemaChanged(a: TableSchema, b: TableSchema): boolean {
  if (a.schema !== b.schema || a.name !== b.name || a.columns.length !== b.columns.length) return true;
  if (a.replicaIdentity !== b.replicaIdentity) return true;
  return a.columns.some((column, i) => {
    const other = b.columns[i]!;
    return (
      column.name !== other.name ||
      column.typeOid !== other.typeOid ||
      column.typeMod !== other.typeMod ||
      column.isKey !== other.isKey
    );
  });
}
