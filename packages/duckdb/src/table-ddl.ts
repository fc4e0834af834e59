/**
 * Keeps DuckDB tables shaped like their Postgres tables: creates missing ones, and on a schema
 * change (a Relation message, or a different catalog at start) adds, renames, retypes and drops
 * columns before the next rows are written. Columns are matched by name; a column whose DuckDB
 * type is VARCHAR where another type is expected is left alone (it holds the Postgres text).
 *
 * Tables get no PRIMARY KEY constraint: DuckDB's ART index slows bulk loading by about a third,
 * must fit in memory, and its constraint checks and ALTER restrictions get in the way of
 * applying a transaction's changes set-wise. The key is recorded in `_pg_replicate.tables`.
 */
import type { TableSchema } from 'pg-replicate';
import type { DuckDbDatabase } from './duckdb-database.js';
import { ident, literal, qualified } from './sql.js';

export interface WantedColumn {
  readonly name: string;
  readonly duckType: string;
}

/** The columns of a DuckDB table (name → type, in order), or null when it does not exist. */
export async function readColumns(
  db: DuckDbDatabase,
  schema: string,
  table: string,
): Promise<Map<string, string> | null> {
  const rows = await db.rows<{ column_name: string; data_type: string }>(
    `SELECT column_name, data_type FROM duckdb_columns()
      WHERE database_name = current_database() AND schema_name = ${literal(schema)} AND table_name = ${literal(table)}
      ORDER BY column_index`,
    `reading the columns of ${qualified(schema, table)}`,
  );
  if (rows.length === 0) return null;
  return new Map(rows.map((row) => [row.column_name, row.data_type]));
}

/**
 * Creates the table, or alters it to have exactly `wanted` columns. `renames` (old → new name)
 * carries a column's values over when Postgres renamed it.
 */
export async function syncTable(
  db: DuckDbDatabase,
  schema: string,
  table: string,
  wanted: readonly WantedColumn[],
  renames: ReadonlyMap<string, string> = new Map(),
): Promise<void> {
  const target = qualified(schema, table);
  const what = `altering ${target}`;
  await db.run(`CREATE SCHEMA IF NOT EXISTS ${ident(schema)}`, `creating schema ${ident(schema)}`);
  const actual = await readColumns(db, schema, table);
  if (actual === null) {
    const columns = wanted.map((column) => `${ident(column.name)} ${column.duckType}`).join(', ');
    await db.run(`CREATE TABLE ${target} (${columns})`, `creating ${target}`);
    return;
  }
  const wantedNames = new Set(wanted.map((column) => column.name));
  for (const [from, to] of renames) {
    if (actual.has(from) && !actual.has(to) && wantedNames.has(to) && !wantedNames.has(from)) {
      await db.run(`ALTER TABLE ${target} RENAME COLUMN ${ident(from)} TO ${ident(to)}`, what);
      actual.set(to, actual.get(from)!);
      actual.delete(from);
    }
  }
  for (const column of wanted) {
    const type = actual.get(column.name);
    if (type === undefined) {
      await db.run(`ALTER TABLE ${target} ADD COLUMN ${ident(column.name)} ${column.duckType}`, what);
    } else if (type !== column.duckType && type !== 'VARCHAR') {
      const name = ident(column.name);
      await db.run(
        `ALTER TABLE ${target} ALTER COLUMN ${name} SET DATA TYPE ${column.duckType} USING CAST(${name} AS ${column.duckType})`,
        what,
      );
    }
  }
  for (const name of actual.keys()) {
    if (!wantedNames.has(name)) await db.run(`ALTER TABLE ${target} DROP COLUMN ${ident(name)}`, what);
  }
}

/**
 * Columns Postgres renamed between two schemas: a column whose name disappeared, at the same
 * position and with the same type as a column whose name appeared.
 */
export function renamedColumns(previous: TableSchema, next: TableSchema): Map<string, string> {
  const before = new Set(previous.columns.map((column) => column.name));
  const after = new Set(next.columns.map((column) => column.name));
  const renames = new Map<string, string>();
  next.columns.forEach((column, index) => {
    const old = previous.columns[index];
    if (old === undefined || after.has(old.name) || before.has(column.name)) return;
    if (old.typeOid === column.typeOid && old.typeMod === column.typeMod) renames.set(old.name, column.name);
  });
  return renames;
}
