/**
 * Names in BigQuery for what Postgres names: a dataset is flat, so `schema.table` becomes one view
 * name, and BigQuery's column names are narrower than Postgres' (letters, digits and underscores,
 * not starting with a digit, unique regardless of case, some prefixes reserved). Names are derived
 * deterministically from the Postgres names, so a restart finds the same tables and columns.
 *
 * Each replicated table is a view (the name users query) over one *version* table that holds the
 * rows; a TRUNCATE or a new copy switches the view to a fresh version (CDC tables accept no DML),
 * so version names carry a unique suffix and are never reused.
 */
import { randomBytes } from 'node:crypto';

const MAX_COLUMN_NAME = 300;
const MAX_TABLE_NAME = 1024;
/** Column name prefixes BigQuery reserves (https://cloud.google.com/bigquery/docs/schemas#column_names). */
const RESERVED_PREFIXES = [
  '_table_',
  '_file_',
  '_partition',
  '_row_timestamp',
  '__root__',
  '_colidentifier',
  '_change_sequence_number',
  '_change_type',
  '_change_timestamp',
];

/** Letters, digits and underscores; a leading underscore before a digit; never empty. */
export function sanitizeName(name: string): string {
  let out = name.replace(/[^A-Za-z0-9_]/g, '_');
  if (out === '' || /^[0-9]/.test(out)) out = `_${out}`;
  return out;
}

/**
 * BigQuery column names for Postgres column names, in order: sanitized, reserved prefixes
 * escaped with `pg`, made unique (case-insensitively) with `_2`, `_3`… suffixes.
 */
export function columnNames(names: readonly string[]): string[] {
  const taken = new Set<string>();
  return names.map((name) => {
    let base = sanitizeName(name);
    const lower = base.toLowerCase();
    if (RESERVED_PREFIXES.some((prefix) => lower.startsWith(prefix))) base = `pg${base}`;
    base = base.slice(0, MAX_COLUMN_NAME - 6);
    let candidate = base;
    for (let n = 2; taken.has(candidate.toLowerCase()); n++) candidate = `${base}_${n}`;
    taken.add(candidate.toLowerCase());
    return candidate;
  });
}

/** The view name for a Postgres table: `schema_table`, sanitized. */
export function viewName(table: { readonly schema: string; readonly name: string }): string {
  return sanitizeName(`${table.schema}_${table.name}`).slice(0, MAX_TABLE_NAME - 16);
}

/** Separates a view's name from its versions' suffixes. */
const VERSION_MARK = '__v';

/** A new, never used version table name for the view `view`. */
export function newVersionName(view: string): string {
  const suffix = Date.now().toString(36) + randomBytes(3).toString('hex');
  return `${view}${VERSION_MARK}${suffix}`;
}

/** True when `table` is a version table of the view `view` (as {@link newVersionName} makes them). */
export function isVersionOf(table: string, view: string): boolean {
  return table.startsWith(view + VERSION_MARK) && /^[0-9a-z]+$/.test(table.slice(view.length + 3));
}
