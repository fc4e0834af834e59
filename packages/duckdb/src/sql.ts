/**
 * Quoting for the SQL this package builds. Every identifier that reaches DuckDB comes from
 * Postgres (schema, table and column names can hold any character), so nothing is spliced in
 * unquoted; values go in as literals only where DuckDB cannot bind a parameter (DDL, table
 * functions).
 */

/** `"name"`, with embedded double quotes doubled. */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** `"schema"."table"`. */
export function qualified(schema: string, table: string): string {
  return `${ident(schema)}.${ident(table)}`;
}

/** `'text'`, with embedded single quotes doubled. */
export function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
