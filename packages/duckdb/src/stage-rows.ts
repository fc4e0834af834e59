/**
 * Turns a row into staged fields: each column's text, rewritten by its type mapping's `prepare`
 * where DuckDB cannot read the Postgres form — the one place a value DuckDB cannot hold is caught
 * before anything is written, so the error can name the table and column.
 */
import { PgReplicateError, type RowData } from 'pg-replicate';
import { ident } from './sql.js';
import type { StageFile } from './stage-file.js';
import type { TablePlan } from './table-plan.js';

/** A row whose values lie as bytes in a buffer (pgoutput's `TupleData`). */
interface RawRow extends RowData {
  readonly buffer: Buffer;
  valueStart(index: number): number;
  valueLength(index: number): number;
}

function hasRaw(row: RowData): row is RawRow {
  return typeof (row as Partial<RawRow>).valueStart === 'function';
}

/** Stages a row's columns: NULL, or text (after the column's `prepare`). */
export function stageRowFields(stage: StageFile, plan: TablePlan, row: RowData): void {
  const raw = hasRaw(row);
  for (let i = 0; i < plan.columns.length; i++) {
    const prepare = plan.columns[i]!.mapping.prepare;
    if (raw && prepare === null && !row.isUnchangedToast(i)) {
      // Straight from the message bytes: no string made unless the value needs escaping.
      const start = row.valueStart(i);
      if (start === -1) stage.field(null);
      else stage.bytesField(row.buffer, start, start + row.valueLength(i));
      continue;
    }
    const text = row.text(i);
    stage.field(text === null || prepare === null ? text : prepareValue(plan, i, text));
  }
}

/** Runs a column's `prepare`, naming the table and column when DuckDB cannot hold the value. */
export function prepareValue(plan: TablePlan, column: number, text: string): string {
  try {
    return plan.columns[column]!.mapping.prepare!(text);
  } catch (error) {
    const name = plan.columns[column]!.name;
    throw new PgReplicateError(
      'SINK_ERROR',
      `a value of column "${name}" of ${plan.key} cannot be stored in DuckDB: ${(error as Error).message}`,
      {
        hint: `ALTER TABLE ${plan.target} ALTER COLUMN ${ident(name)} TYPE VARCHAR in DuckDB to keep the Postgres text form of this column, then restart`,
        cause: error,
      },
    );
  }
}
