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

/** The columns of every table of the database, by qualified name (one query, however many tables). */
export async function readAllColumns(db: DuckDbDatabase): Promise<Map<string, Map<string, string>>> {
  const rows = await db.rows<{
    schema_name: string;
    table_name: string;
    column_name: string;
    data_type: string;
  }>(
    `SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns()
      WHERE database_name = current_database() ORDER BY schema_name, table_name, column_index`,
    'reading the columns of the tables',
  );
  const tables = new Map<string, Map<string, string>>();
  for (const row of rows) {
    const key = qualified(row.schema_name, row.table_name);
    const columns = tables.get(key) ?? new Map<string, string>();
    if (columns.size === 0) tables.set(key, columns);
    columns.set(row.column_name, row.data_type);
  }
  return tables;
}

/**
 * Creates the table, or alters it to have exactly `wanted` columns; returns whether it did either.
 * `known`: its columns now, if the caller knows them (null: it does not exist), saving a read.
 *
 * Renames: pgoutput's Relation message does not say that a column was renamed, only that a name
 * disappeared and another appeared. Postgres keeps a renamed column in its place, and DuckDB's
 * column order follows Postgres' (both append added columns and close the gap of dropped ones),
 * so a vanished column and a new one at the same position with the same type are taken as a
 * rename and keep their values. (The one thing this mistakes: dropping the last column and
 * adding one of the same type, with no change to the table in between.)
 *
 * `rebuild`: DuckDB cannot commit an ALTER that adds, drops or retypes a column of a table whose
 * committed rows the same transaction deleted or updated ("another transaction has altered this
 * table"), so such a table is rebuilt instead — copied into a new table of the wanted shape that
 * replaces it.
 */
export async function syncTable(
  db: DuckDbDatabase,
  schema: string,
  table: string,
  wanted: readonly WantedColumn[],
  rebuild = false,
  known?: ReadonlyMap<string, string> | null,
): Promise<boolean> {
  const target = qualified(schema, table);
  const what = `altering ${target}`;
  const read = known === undefined ? await readColumns(db, schema, table) : known;
  if (read === null) {
    await db.run(`CREATE SCHEMA IF NOT EXISTS ${ident(schema)}`, `creating schema ${ident(schema)}`);
    const columns = wanted.map((column) => `${ident(column.name)} ${column.duckType}`).join(', ');
    await db.run(`CREATE TABLE ${target} (${columns})`, `creating ${target}`);
    return true;
  }
  const actual = new Map(read);
  const wantedNames = new Set(wanted.map((column) => column.name));
  const actualNames = [...actual.keys()];
  let renames = 0;
  for (let i = 0; i < Math.min(wanted.length, actualNames.length); i++) {
    const from = actualNames[i]!;
    const to = wanted[i]!;
    if (wantedNames.has(from) || actual.has(to.name)) continue;
    const type = actual.get(from)!;
    if (type !== to.duckType && type !== 'VARCHAR') continue;
    await db.run(`ALTER TABLE ${target} RENAME COLUMN ${ident(from)} TO ${ident(to.name)}`, what);
    renames++;
  }
  if (renames > 0) {
    const renamed = await readColumns(db, schema, table);
    actual.clear();
    for (const [name, type] of renamed ?? []) actual.set(name, type);
  }
  const changed =
    actual.size !== wanted.length ||
    wanted.some((column) => !actual.has(column.name) || retyped(column, actual.get(column.name)));
  if (!changed) return renames > 0;
  if (rebuild) await rebuildTable(db, schema, table, wanted, actual);
  else await alterTable(db, target, wanted, actual);
  return true;
}

/** Whether a column of DuckDB type `type` must change type (VARCHAR holds any Postgres text). */
function retyped(column: WantedColumn, type: string | undefined): boolean {
  return type !== undefined && type !== column.duckType && type !== 'VARCHAR';
}

/** Adds, retypes and drops columns until the table has the `wanted` ones (see {@link syncTable}). */
async function alterTable(
  db: DuckDbDatabase,
  target: string,
  wanted: readonly WantedColumn[],
  actual: ReadonlyMap<string, string>,
): Promise<void> {
  const what = `altering ${target}`;
  const wantedNames = new Set(wanted.map((column) => column.name));
  for (const column of wanted) {
    const type = actual.get(column.name);
    const name = ident(column.name);
    if (type === undefined) {
      await db.run(`ALTER TABLE ${target} ADD COLUMN ${name} ${column.duckType}`, what);
    } else if (retyped(column, type)) {
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

/** Replaces the table by a copy of the wanted shape (see {@link syncTable}). */
async function rebuildTable(
  db: DuckDbDatabase,
  schema: string,
  table: string,
  wanted: readonly WantedColumn[],
  actual: ReadonlyMap<string, string>,
): Promise<void> {
  const target = qualified(schema, table);
  const scratch = qualified(schema, `_pg_replicate_rebuild_${table}`);
  const select = wanted.map((column) => {
    const type = actual.get(column.name);
    const name = ident(column.name);
    if (type === undefined) return `CAST(NULL AS ${column.duckType}) AS ${name}`;
    return type === column.duckType || type === 'VARCHAR'
      ? name
      : `CAST(${name} AS ${column.duckType}) AS ${name}`;
  });
  const what = `rebuilding ${target} for a schema change`;
  await db.run(`DROP TABLE IF EXISTS ${scratch}`, what);
  await db.run(`CREATE TABLE ${scratch} AS SELECT ${select.join(', ')} FROM ${target}`, what);
  await db.run(`DROP TABLE ${target}`, what);
  await db.run(`ALTER TABLE ${scratch} RENAME TO ${ident(table)}`, what);
}
