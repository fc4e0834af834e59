/**
 * Turns DuckDB's "Could not convert string … to DECIMAL(6,2)" — which names neither the table nor
 * the column — into an error that names both and shows the value: after the failure (which aborts
 * the transaction, so it is rolled back first), the staged batch is read again with every column's
 * conversion wrapped in `TRY`, and the first column with a value that does not convert is reported.
 */
import { PgReplicateError } from 'pg-replicate';
import type { DuckDbDatabase } from './duckdb-database.js';
import { ident } from './sql.js';
import type { TablePlan } from './table-plan.js';
import { fromStaged } from './type-mapping.js';

const CONVERSION = /^(Conversion|Invalid Input|Out of Range) Error/;

/**
 * Runs a statement that converts staged values; if DuckDB refuses a value, rolls back and throws
 * an error naming the column.
 * @param read the `read_csv(…)` of the staged file, whose column `c<i>` holds the table's column i
 */
export async function runConverting(
  db: DuckDbDatabase,
  sql: string,
  what: string,
  plan: TablePlan,
  read: string,
): Promise<void> {
  await converting(db, plan, read, () => db.run(sql, what));
}

/** {@link runConverting} for an `UPDATE` (or `INSERT`, `DELETE`): returns how many rows it changed. */
export async function countConverting(
  db: DuckDbDatabase,
  sql: string,
  what: string,
  plan: TablePlan,
  read: string,
): Promise<number> {
  const [row] = await converting(db, plan, read, () => db.rows(sql, what));
  return Number(row?.['Count'] ?? 0);
}

async function converting<T>(
  db: DuckDbDatabase,
  plan: TablePlan,
  read: string,
  run: () => Promise<T>,
): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    const message = cause instanceof Error ? cause.message : '';
    if (!CONVERSION.test(message)) throw error;
    await db.rollback();
    throw (await explain(db, plan, read, message)) ?? error;
  }
}

async function explain(
  db: DuckDbDatabase,
  plan: TablePlan,
  read: string,
  message: string,
): Promise<PgReplicateError | null> {
  const checks = plan.columns.map(
    (column, i) =>
      `first(s.c${i}) FILTER (WHERE s.c${i} IS NOT NULL AND try(${fromStaged(column.mapping, `s.c${i}`)}) IS NULL) AS c${i}`,
  );
  let row: Record<string, unknown> | undefined;
  try {
    [row] = await db.rows(
      `SELECT ${checks.join(', ')} FROM ${read} AS s`,
      `checking the values of ${plan.key}`,
    );
  } catch {
    return null;
  }
  const index = plan.columns.findIndex((_, i) => row?.[`c${i}`] != null);
  if (index === -1) return null;
  const column = plan.columns[index]!;
  const value = String(row![`c${index}`]);
  return new PgReplicateError(
    'SINK_ERROR',
    `column ${ident(column.name)} of ${plan.key} has a value DuckDB cannot store as ${column.mapping.duckType}: ${value.length > 80 ? `${value.slice(0, 80)}…` : value}`,
    {
      detail: message.split('\n')[0],
      hint: `ALTER TABLE ${plan.target} ALTER COLUMN ${column.sql} TYPE VARCHAR in DuckDB to keep the Postgres text form of this column, then restart (see the type table in the @pg-replicate/duckdb README)`,
    },
  );
}
