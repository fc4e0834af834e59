/**
 * A batch of row changes collapsed and written to staging files (see `change-applier.ts`), and
 * the SQL pieces that read those files back: shared by the applier, which runs a batch inside
 * the sink's transaction, and by `apply-ahead.ts`, which runs parts of it just before.
 *
 * A keyed table's staging file has one row per key the batch changes:
 *   _d   '1': delete the row DuckDB may hold under this key first
 *   _w   '1': write the staged row (every column) under it
 *   _u   which columns keep the value the row in DuckDB has (unchanged TOAST values), or NULL
 *   _r   '1': the batch's first change of this key read the row DuckDB has (see `KeyedEntry`)
 *   c0…  the row's columns, as text
 *   o0…  the key of the row in DuckDB the unchanged values come from
 * A row with `_u` set whose `_d` and `_w` are '0' is updated in place (its key did not change).
 */
import { PgReplicateError } from 'pg-replicate';
import type { StageFile } from './stage-file.js';
import type { TablePlan } from './table-plan.js';
import { fromStaged } from './type-mapping.js';

/** One table's share of a staged batch: its staging file, and what the statements need to know. */
export type Step =
  | {
      readonly kind: 'keyed';
      readonly plan: TablePlan;
      readonly file: StageFile;
      readonly keyColumns: readonly number[];
      readonly deletes: number;
      readonly writes: number;
      /** Rows whose unchanged TOAST values come from a row under another key (materialized first). */
      readonly masked: number;
      /** Rows updated in place, counted by their `_u` mask (which columns keep their value). */
      readonly inPlace: ReadonlyMap<string, number>;
      readonly replayed: boolean;
    }
  | {
      readonly kind: 'counted';
      readonly plan: TablePlan;
      readonly file: StageFile;
      readonly removes: number;
      readonly adds: number;
    }
  | { readonly kind: 'append' | 'changelog'; readonly plan: TablePlan; readonly file: StageFile };

export type KeyedStep = Extract<Step, { kind: 'keyed' }>;

/**
 * What went ahead of a batch's transaction for one table (see `apply-ahead.ts`), as its statements
 * must know it: which keys' old rows are already deleted or updated, and where its own rows start.
 */
export interface AppliedAhead {
  /** Every row the transaction adds is at or above this `rowid`. */
  readonly end: number;
  /**
   * A temp table of keys (`k0, k1, …`) with two flags: `deleted`, its old row was deleted ahead;
   * `updated`, its row was updated ahead by every in-place update of the transaction.
   */
  readonly keys: string;
  /** This batch's rows whose key was not deleted ahead but must go (their row was read first). */
  readonly keptDeletes: number;
  /** This batch's in-place rows updated ahead, by `_u` mask. */
  readonly updated: ReadonlyMap<string, number>;
}

/** Row changes collapsed and written to staging files: only the SQL is left to run. */
export class StagedChanges {
  /** By step: what of it went ahead of its transaction. */
  readonly ahead = new Map<Step, AppliedAhead>();

  constructor(readonly steps: readonly Step[]) {}

  /** Whether applying it deletes or updates rows by key — what could go ahead. */
  get touchesRows(): boolean {
    return this.steps.some((step) => step.kind === 'keyed' && (step.deletes > 0 || step.inPlace.size > 0));
  }
}

/** The columns of a keyed staging file (see the module comment). */
export function keyedStagedNames(plan: TablePlan, keyColumns: readonly number[]): string[] {
  return [
    '_d',
    '_w',
    '_u',
    '_r',
    ...plan.columns.map((_, i) => `c${i}`),
    ...keyColumns.map((_, j) => `o${j}`),
  ];
}

/** A keyed staging file's (`s`) key columns, converted, as `k0, k1, …`. */
export function stagedKeys(plan: TablePlan, keyColumns: readonly number[]): string {
  return keyColumns
    .map((column, j) => `${fromStaged(plan.columns[column]!.mapping, `s.c${column}`)} AS k${j}`)
    .join(', ');
}

/** The table's key columns equal to `d.k0, d.k1, …` (see {@link stagedKeys}). */
export function keyMatch(plan: TablePlan, keyColumns: readonly number[]): string {
  return keyColumns.map((column, j) => `${plan.target}.${plan.columns[column]!.sql} = d.k${j}`).join(' AND ');
}

/** The staged row's (`s`) key equal to `alias.k0, alias.k1, …`. */
function stagedKeyMatch(plan: TablePlan, keyColumns: readonly number[], alias: string): string {
  return keyColumns
    .map((column, j) => `${alias}.k${j} = ${fromStaged(plan.columns[column]!.mapping, `s.c${column}`)}`)
    .join(' AND ');
}

/** The key columns of the table's row `row` (an alias, or the table) equal to the staged row's (`s`). */
export function rowKeyMatch(plan: TablePlan, keyColumns: readonly number[], row: string): string {
  return keyColumns
    .map(
      (column) =>
        `${row}.${plan.columns[column]!.sql} = ${fromStaged(plan.columns[column]!.mapping, `s.c${column}`)}`,
    )
    .join(' AND ');
}

/** Whether the staged row's (`s`) key has `flag` set in a key list of what went ahead (`keys`). */
export function keyFlagged(
  keys: string,
  flag: 'deleted' | 'updated',
  plan: TablePlan,
  keyColumns: readonly number[],
): string {
  return `EXISTS (SELECT 1 FROM temp.main.${keys} AS a WHERE a.${flag} AND ${stagedKeyMatch(plan, keyColumns, 'a')})`;
}

/**
 * The statement updating in place the rows of a keyed staging file (`read`) with one `_u` mask:
 * it sets the columns the mask does not keep, for the staged rows `filter` (on `s`) admits and
 * the table's rows `where` admits. Its result counts the rows it found ("Count").
 */
export function inPlaceUpdateSql(
  plan: TablePlan,
  keyColumns: readonly number[],
  read: string,
  mask: string,
  filter = '',
  where = '',
): string {
  const convert = (column: number) => fromStaged(plan.columns[column]!.mapping, `s.c${column}`);
  const match = rowKeyMatch(plan, keyColumns, plan.target);
  const sets = plan.columns
    .map((column, i) => ({ column, i }))
    .filter(({ i }) => mask[i] === '0' && !keyColumns.includes(i))
    .map(({ column, i }) => `${column.sql} = ${convert(i)}`);
  const staged = `(SELECT * FROM ${read} AS s WHERE s._w = '0' AND s._d = '0' AND s._u = '${mask}'${filter}) AS s`;
  const restrict = `${match}${where}`;
  return sets.length > 0
    ? `UPDATE ${plan.target} SET ${sets.join(', ')} FROM ${staged} WHERE ${restrict}`
    : `SELECT count(*) AS "Count" FROM ${plan.target}, ${staged} WHERE ${restrict}`;
}

/** How many columns an in-place update with this mask sets. */
export function columnsSet(mask: string, keyColumns: readonly number[]): number {
  let set = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i] === '0' && !keyColumns.includes(i)) set++;
  return set;
}

/**
 * A change replayed over a resumed copy needs a row the copy did not bring: the sink must copy
 * the table again in full (see `DuckDbSink`).
 */
export class ResumedCopyIncompleteError extends Error {
  readonly tableKey: string;

  constructor(tableKey: string) {
    super(`a change replayed over the resumed copy of ${tableKey} needs a row the copy did not bring`);
    this.tableKey = tableKey;
  }
}

/** An update kept unchanged TOAST values of a row DuckDB does not have. */
export function missingOrigin(plan: TablePlan, replayed: boolean): Error {
  // Replayed over a resumed copy: the row moved out of a chunk that was copied again (an update
  // placed it in a chunk copied before) and its unchanged values are nowhere here.
  if (replayed) return new ResumedCopyIncompleteError(plan.key);
  return new PgReplicateError(
    'SINK_ERROR',
    `an update of ${plan.key} kept unchanged TOAST values of a row that is not in DuckDB`,
    {
      hint: 'the DuckDB table does not hold the rows Postgres had: it was never copied (cdc mode streams changes only — use both), or it was edited by hand; copy the table again with a new slot (both)',
    },
  );
}
