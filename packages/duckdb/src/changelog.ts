/**
 * Changelog mode: every change appended as a row of `<table>_changelog` (next to the table, same
 * schema), for audits and time-travel queries, written in the same transaction as the rest of the
 * batch. Columns, then the table's own columns:
 *
 *   op               'copy' | 'insert' | 'update' | 'delete' | 'truncate'
 *   lsn              WAL position of the change (of the snapshot, for copied rows)
 *   commit_lsn       commit position of its transaction; changes sort by (commit_lsn, lsn)
 *   commit_time      commit time (NULL for copied rows)
 *   xid              transaction id (NULL for copied rows)
 *   unchanged_toast  update: columns Postgres did not send because they did not change (NULL here)
 *   old              update/delete: the old key (or whole old row under REPLICA IDENTITY FULL) as
 *                    JSON of Postgres text values; NULL when Postgres sent none
 *
 * A delete's row holds the old key (or old row); other columns are NULL.
 */
import {
  PgReplicateError,
  type RowChangeEvent,
  type RowData,
  type TableSchema,
  type TruncateEvent,
} from 'pg-replicate';
import { ident, qualified } from './sql.js';
import type { StageFile } from './stage-file.js';
import { stageRowFields } from './stage-rows.js';
import type { WantedColumn } from './table-ddl.js';
import type { TablePlan } from './table-plan.js';
import { fromStaged, unescapeCopySql } from './type-mapping.js';

/** Whether changes go to the tables, to changelogs, or to both. */
export type ChangelogMode = 'off' | 'beside' | 'only';

const META: readonly WantedColumn[] = [
  { name: 'op', duckType: 'VARCHAR' },
  { name: 'lsn', duckType: 'UBIGINT' },
  { name: 'commit_lsn', duckType: 'UBIGINT' },
  { name: 'commit_time', duckType: 'TIMESTAMP WITH TIME ZONE' },
  { name: 'xid', duckType: 'UBIGINT' },
  { name: 'unchanged_toast', duckType: 'VARCHAR[]' },
  { name: 'old', duckType: 'JSON' },
];

const STAGED_META = ['_op', '_lsn', '_clsn', '_ctime', '_xid', '_toast', '_old'];

export function changelogName(table: TableSchema): string {
  return `${table.name}_changelog`;
}

/** The changelog table's columns; refuses tables whose own columns clash with the meta columns. */
export function changelogColumns(table: TableSchema, columns: readonly WantedColumn[]): WantedColumn[] {
  // DuckDB compares identifiers without regard to case, quoted or not.
  const clash = columns.find((column) => META.some((meta) => meta.name === column.name.toLowerCase()));
  if (clash !== undefined) {
    throw new PgReplicateError(
      'SCHEMA_UNSUPPORTED',
      `column "${clash.name}" of ${qualified(table.schema, table.name)} has the name of a changelog column`,
      {
        hint: `changelog tables reserve ${META.map((meta) => meta.name).join(', ')}; rename the column or run with changelog off`,
      },
    );
  }
  return [...META, ...columns];
}

/** Appends `events` (row changes and truncates of one table, in order) to the stage file. */
export function stageChangelog(
  stage: StageFile,
  plan: TablePlan,
  events: readonly (RowChangeEvent | TruncateEvent)[],
): void {
  const width = plan.columns.length;
  for (const event of events) {
    stage.plainField(event.op);
    stage.plainField(String(event.lsn));
    stage.plainField(String(event.tx.commitLsn));
    stage.plainField(String(event.tx.commitTime));
    stage.plainField(String(event.tx.xid));
    if (event.op === 'truncate') {
      stage.field(null);
      stage.field(null);
      for (let i = 0; i < width; i++) stage.field(null);
    } else {
      const row = event.op === 'delete' ? event.old : event.new;
      const unchanged: string[] = [];
      for (let i = 0; i < width; i++) if (row.isUnchangedToast(i)) unchanged.push(plan.columns[i]!.name);
      stage.field(unchanged.length > 0 ? JSON.stringify(unchanged) : null);
      const old =
        event.op === 'insert' || event.old === undefined ? null : oldJson(plan, event.old, event.oldIsKey);
      stage.field(old);
      stageRowFields(stage, plan, row);
    }
    stage.endRow();
  }
}

function oldJson(plan: TablePlan, old: RowData, keyOnly: boolean): string {
  const object: Record<string, string | null> = {};
  for (let i = 0; i < plan.columns.length; i++) {
    if (old.isUnchangedToast(i)) continue;
    const text = old.text(i);
    if (keyOnly && text === null) continue;
    object[plan.columns[i]!.name] = text;
  }
  return JSON.stringify(object);
}

/** Column names of what {@link stageChangelog} stages. */
export function changelogStagedNames(plan: TablePlan): string[] {
  return [...STAGED_META, ...plan.columns.map((_, i) => `c${i}`)];
}

/** The INSERT reading what {@link stageChangelog} staged (`read`) into the changelog table. */
export function changelogInsertSql(read: string, plan: TablePlan): string {
  const target = qualified(plan.table.schema, changelogName(plan.table));
  const columns = [...META.map((meta) => ident(meta.name)), ...plan.columns.map((column) => column.sql)];
  const values = [
    's._op',
    'CAST(s._lsn AS UBIGINT)',
    'CAST(s._clsn AS UBIGINT)',
    'CAST(make_timestamp(CAST(s._ctime AS BIGINT)) AS TIMESTAMPTZ)',
    'CAST(s._xid AS UBIGINT)',
    `from_json(${unescapeCopySql('s._toast')}, '["VARCHAR"]')`,
    `CAST(${unescapeCopySql('s._old')} AS JSON)`,
    ...plan.columns.map((column, i) => fromStaged(column.mapping, `s.c${i}`)),
  ];
  return `INSERT INTO ${target} (${columns.join(', ')}) SELECT ${values.join(', ')} FROM ${read} AS s`;
}

/** The INSERT copying what a copy staged (columns `c0…`) into the changelog as `copy` rows. */
export function changelogCopySql(read: string, plan: TablePlan, snapshotLsn: bigint | null): string {
  const target = qualified(plan.table.schema, changelogName(plan.table));
  const lsn = snapshotLsn === null ? 'NULL' : String(snapshotLsn);
  const columns = ['op', 'lsn', 'commit_lsn', ...plan.columns.map((column) => column.name)].map(ident);
  const values = [
    `'copy'`,
    lsn,
    lsn,
    ...plan.columns.map((column, i) => fromStaged(column.mapping, `s.c${i}`)),
  ];
  return `INSERT INTO ${target} (${columns.join(', ')}) SELECT ${values.join(', ')} FROM ${read} AS s`;
}
