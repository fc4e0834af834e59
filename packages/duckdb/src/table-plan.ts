/**
 * What the sink needs to know to write one table, worked out once per schema: the DuckDB table,
 * each column's type mapping (following the DuckDB column's actual type, so a column an operator
 * retyped to VARCHAR keeps receiving Postgres text), and how rows are identified for updates and
 * deletes.
 *
 * Identity follows what Postgres sends, not just the primary key: under REPLICA IDENTITY USING
 * INDEX the old-key tuple carries the index's columns (which may differ from the primary key).
 */
import { PgReplicateError, type TableSchema, type TypeRegistry, tableKey } from 'pg-replicate';
import { ident, qualified } from './sql.js';
import { mapColumn, mappingFor, type TypeMapping } from './type-mapping.js';

/** How the rows of a table are told apart. */
export type Identity =
  /** By these columns (indices into the table's columns): unique, so changes collapse per key. */
  | { readonly kind: 'key'; readonly columns: readonly number[] }
  /** REPLICA IDENTITY FULL without a key: by the whole old row; identical rows may repeat. */
  | { readonly kind: 'row' }
  /** No identity (allowed with `appendOnlyWithoutKey`): inserts and truncates only. */
  | { readonly kind: 'none' };

export interface ColumnPlan {
  readonly name: string;
  /** The quoted identifier. */
  readonly sql: string;
  readonly mapping: TypeMapping;
}

export interface TablePlan {
  readonly table: TableSchema;
  /** `tableKey(table)`, for messages and state. */
  readonly key: string;
  /** The quoted, schema-qualified DuckDB table. */
  readonly target: string;
  readonly columns: readonly ColumnPlan[];
  readonly identity: Identity;
  /** True when no column's text needs rewriting: COPY rows are staged byte for byte. */
  readonly rawCopy: boolean;
}

/** The identity of a table's rows, from its replica identity (see the module comment). */
export function rowIdentity(table: TableSchema): Identity {
  const indices = (names: readonly string[]) =>
    names.map((name) => table.columns.findIndex((c) => c.name === name));
  const primary = indices(table.primaryKey);
  const hasPrimary = primary.length > 0 && primary.every((index) => index >= 0);
  if (table.replicaIdentity === 'full')
    return hasPrimary ? { kind: 'key', columns: primary } : { kind: 'row' };
  if (table.replicaIdentity === 'nothing') return { kind: 'none' };
  const flagged = table.columns.flatMap((column, index) => (column.isKey ? [index] : []));
  if (flagged.length > 0) return { kind: 'key', columns: flagged };
  return hasPrimary && table.replicaIdentity === 'default'
    ? { kind: 'key', columns: primary }
    : { kind: 'none' };
}

/** Names of the identity columns, for the state table. */
export function identityNames(table: TableSchema, identity: Identity): string[] {
  if (identity.kind === 'key') return identity.columns.map((index) => table.columns[index]!.name);
  return identity.kind === 'row' ? table.columns.map((column) => column.name) : [];
}

/**
 * Refuses a table whose updates and deletes could not be applied (unless append-only is allowed).
 * Checked when changes start to stream, not before: copying such a table is fine.
 */
export function checkIdentity(table: TableSchema, appendOnlyWithoutKey: boolean): void {
  if (rowIdentity(table).kind !== 'none' || appendOnlyWithoutKey) return;
  const name = tableKey(table);
  throw new PgReplicateError(
    'NO_REPLICA_IDENTITY',
    `table ${name} has no primary key or replica identity: its updates and deletes cannot be applied in DuckDB`,
    {
      hint: `add a primary key, or run ALTER TABLE ${name} REPLICA IDENTITY FULL; — or, if the table only ever gets inserts, create the sink with appendOnlyWithoutKey: true`,
    },
  );
}

/** Refuses what DuckDB cannot create: a table without columns. */
export function checkColumns(table: TableSchema): void {
  if (table.columns.length === 0) {
    throw new PgReplicateError(
      'SCHEMA_UNSUPPORTED',
      `table ${tableKey(table)} has no columns; DuckDB tables need at least one`,
      {
        hint: 'leave the table out of the publication, or give it a column',
      },
    );
  }
}

/** The expected DuckDB type of each column. */
export function expectedMappings(table: TableSchema, types: TypeRegistry): TypeMapping[] {
  return table.columns.map((column) => mapColumn(column, types));
}

/**
 * Builds the plan for `table` given the DuckDB column types as they are now (`actual`: name →
 * `duckdb_columns().data_type`).
 */
export function buildPlan(
  table: TableSchema,
  types: TypeRegistry,
  actual: ReadonlyMap<string, string>,
): TablePlan {
  checkColumns(table);
  const identity = rowIdentity(table);
  if (identity.kind === 'row' && table.columns.some((column) => column.name.toLowerCase() === 'rowid')) {
    // Whole-row deletes pick rows by DuckDB's rowid, which a column of that name hides.
    throw new PgReplicateError(
      'SCHEMA_UNSUPPORTED',
      `table ${tableKey(table)} is identified by its whole row and has a column named rowid, which hides DuckDB's row ids`,
      { hint: 'give the table a primary key (or rename the column)' },
    );
  }
  const columns = table.columns.map((column): ColumnPlan => {
    const expected = mapColumn(column, types);
    const duckType = actual.get(column.name);
    return {
      name: column.name,
      sql: ident(column.name),
      mapping: mappingFor(expected, duckType ?? expected.duckType),
    };
  });
  return {
    table,
    key: tableKey(table),
    target: qualified(table.schema, table.name),
    columns,
    identity,
    rawCopy: columns.every((column) => column.mapping.prepare === null),
  };
}
