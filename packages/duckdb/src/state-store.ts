/**
 * The resumption state, kept inside the DuckDB file itself so that it is written in the same
 * transaction as the data it describes: a crash can never leave rows without their position or a
 * position without its rows.
 *
 *   _pg_replicate.state   one row per pipeline: the end LSN of the last applied transaction
 *   _pg_replicate.tables  one row per pipeline and table: copied or not, at which snapshot LSN,
 *                         the key used for updates and deletes, the Postgres columns, the chunks
 *                         of a copy in progress, up to which LSN replayed changes may meet
 *                         rows that already have them (after a resumed copy), and the rows per
 *                         row group its copy wrote
 *
 * Pipelines are told apart by `SinkContext.pipelineId` (the slot name), so a new slot starts with
 * a clean state even in an old file.
 */
import {
  formatLsn,
  type Lsn,
  type PartialCopy,
  PgReplicateError,
  type SinkState,
  type TableSchema,
  tableKey,
} from 'pg-replicate';
import type { DuckDbDatabase } from './duckdb-database.js';
import { literal } from './sql.js';

export const STATE_SCHEMA = '_pg_replicate';

const CREATE_SQL = `
CREATE SCHEMA IF NOT EXISTS ${STATE_SCHEMA};
CREATE TABLE IF NOT EXISTS ${STATE_SCHEMA}.state (
  pipeline_id VARCHAR NOT NULL,
  last_lsn UBIGINT,
  last_lsn_text VARCHAR,
  updated_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS ${STATE_SCHEMA}.tables (
  pipeline_id VARCHAR NOT NULL,
  table_key VARCHAR NOT NULL,
  schema_name VARCHAR NOT NULL,
  table_name VARCHAR NOT NULL,
  copied BOOLEAN NOT NULL,
  snapshot_lsn UBIGINT,
  key_columns VARCHAR[],
  pg_columns JSON,
  updated_at TIMESTAMPTZ
);
ALTER TABLE ${STATE_SCHEMA}.tables ADD COLUMN IF NOT EXISTS copy_plan JSON;
ALTER TABLE ${STATE_SCHEMA}.tables ADD COLUMN IF NOT EXISTS replay_until UBIGINT;
ALTER TABLE ${STATE_SCHEMA}.tables ADD COLUMN IF NOT EXISTS row_group_size INTEGER;`;

/** A copy's chunks as stored in `copy_plan`. */
interface StoredPlan {
  snapshotLsn: string;
  fingerprint: string;
  chunks: [number, number | null][];
  done: number[];
}

/** Reads and writes one pipeline's resumption state (inside the caller's transaction). */
export class StateStore {
  readonly #db: DuckDbDatabase;
  readonly #pipeline: string;
  /**
   * What {@link describeTables} last wrote for each table (a table's key and columns only change
   * with its schema). A failed transaction ends the sink's session, so this never outlives a rollback.
   */
  readonly #described = new Map<string, string>();

  constructor(db: DuckDbDatabase, pipelineId: string) {
    this.#db = db;
    this.#pipeline = literal(pipelineId);
  }

  /** Creates the state tables if missing and reads the state back. */
  async load(): Promise<SinkState> {
    await this.#db.transaction(async () => {
      await this.#db.run(CREATE_SQL, 'creating the state tables');
      const [row] = await this.#db.rows(
        `SELECT count(*) AS n FROM ${STATE_SCHEMA}.state WHERE pipeline_id = ${this.#pipeline}`,
        'reading the state',
      );
      if (Number(row?.['n']) === 0) {
        await this.#db.run(
          `INSERT INTO ${STATE_SCHEMA}.state VALUES (${this.#pipeline}, NULL, NULL, now())`,
          'creating the state',
        );
      }
    });
    const [state] = await this.#db.rows<{ last_lsn: bigint | null }>(
      `SELECT last_lsn FROM ${STATE_SCHEMA}.state WHERE pipeline_id = ${this.#pipeline}`,
      'reading the state',
    );
    const tables = await this.#db.rows<{ table_key: string; snapshot_lsn: bigint | null }>(
      `SELECT table_key, snapshot_lsn FROM ${STATE_SCHEMA}.tables WHERE pipeline_id = ${this.#pipeline} AND copied`,
      'reading the copied tables',
    );
    const partial = await this.#db.rows<{ table_key: string; copy_plan: string }>(
      `SELECT table_key, CAST(copy_plan AS VARCHAR) AS copy_plan FROM ${STATE_SCHEMA}.tables
        WHERE pipeline_id = ${this.#pipeline} AND NOT copied AND copy_plan IS NOT NULL`,
      'reading the copies in progress',
    );
    return {
      lastLsn: state?.last_lsn ?? null,
      copiedTables: new Map(tables.map((table) => [table.table_key, table.snapshot_lsn])),
      partialCopies: new Map(partial.map((row) => [row.table_key, parsePlan(row.copy_plan)])),
    };
  }

  /**
   * By table: up to which LSN its replayed changes may meet rows that have them (tables with
   * such a window only), and the rows per row group its copy wrote (tables copied since it is recorded).
   */
  async copyTraits(): Promise<{ replayWindows: Map<string, Lsn>; rowGroupSizes: Map<string, number> }> {
    const rows = await this.#db.rows<{
      table_key: string;
      replay_until: bigint | null;
      row_group_size: number | null;
    }>(
      `SELECT table_key, replay_until, row_group_size FROM ${STATE_SCHEMA}.tables
        WHERE pipeline_id = ${this.#pipeline} AND (replay_until IS NOT NULL OR row_group_size IS NOT NULL)`,
      'reading the replay windows and row group sizes',
    );
    const replayWindows = new Map<string, Lsn>();
    const rowGroupSizes = new Map<string, number>();
    for (const row of rows) {
      if (row.replay_until !== null) replayWindows.set(row.table_key, row.replay_until);
      if (row.row_group_size !== null) rowGroupSizes.set(row.table_key, row.row_group_size);
    }
    return { replayWindows, rowGroupSizes };
  }

  /** Records the end LSN of the last applied transaction (inside the caller's transaction). */
  async setLastLsn(lsn: Lsn): Promise<void> {
    await this.#db.run(
      `UPDATE ${STATE_SCHEMA}.state SET last_lsn = ${lsn}, last_lsn_text = ${literal(formatLsn(lsn))}, updated_at = now() WHERE pipeline_id = ${this.#pipeline}`,
      'recording the applied position',
    );
  }

  /**
   * Records what changed in a table's copy state, in one statement inside the caller's
   * transaction (a copy of a small table costs little more than its statements): whether it is
   * copied (and at which snapshot LSN; its key and columns are documented with it), the chunks of
   * a copy in progress (null: none), and up to which LSN replayed changes may meet rows that
   * already have them (null: none), and the rows per row group the copy wrote. Fields left out
   * keep their value.
   */
  async recordCopy(table: TableSchema, change: CopyStateChange): Promise<void> {
    const { copied, plan, replayUntil, rowGroupSize } = change;
    const sets: string[] = [];
    if (copied !== undefined) {
      await this.describeTable(table, copied.keyColumns);
      const lsn = copied.snapshotLsn === null ? 'NULL' : copied.snapshotLsn;
      sets.push(`copied = ${copied.done}`, `snapshot_lsn = ${lsn}`);
    }
    if (plan !== undefined)
      sets.push(`copy_plan = ${plan === null ? 'NULL' : literal(JSON.stringify(storedPlan(plan)))}`);
    if (replayUntil !== undefined) sets.push(`replay_until = ${replayUntil === null ? 'NULL' : replayUntil}`);
    if (rowGroupSize !== undefined) sets.push(`row_group_size = ${rowGroupSize}`);
    if (sets.length === 0) return;
    await this.#db.run(
      `UPDATE ${STATE_SCHEMA}.tables SET ${sets.join(', ')}
        WHERE pipeline_id = ${this.#pipeline} AND table_key = ${literal(tableKey(table))}`,
      `recording the copy state of ${tableKey(table)}`,
    );
  }

  /** Documents a table's key and Postgres columns (see {@link describeTables}). */
  async describeTable(table: TableSchema, keyColumns: readonly string[]): Promise<void> {
    await this.describeTables([{ table, keyColumns }]);
  }

  /**
   * Documents tables' keys and Postgres columns, keeping their copy state (a new table: not
   * copied), in two statements however many tables — two per table made a pipeline of 100 tables
   * spend ~230 ms on it at every start. A row whose description is stored already is left as it
   * is, `updated_at` included.
   */
  async describeTables(tables: readonly TableDescription[]): Promise<void> {
    const described = new Map<string, string>();
    const rows: string[] = [];
    for (const { table, keyColumns } of tables) {
      const key = tableKey(table);
      const columns = literal(
        JSON.stringify(table.columns.map((column) => ({ name: column.name, type: column.typeName }))),
      );
      const keys = `[${keyColumns.map(literal).join(', ')}]::VARCHAR[]`;
      const description = `${keys} ${columns}`;
      if (this.#described.get(key) === description || described.has(key)) continue;
      described.set(key, description);
      rows.push(`(${literal(key)}, ${literal(table.schema)}, ${literal(table.name)}, ${keys}, ${columns})`);
    }
    if (rows.length === 0) return;
    const wanted = `(VALUES ${rows.join(', ')}) AS d(table_key, schema_name, table_name, key_columns, pg_columns)`;
    await this.#db.run(
      `UPDATE ${STATE_SCHEMA}.tables SET key_columns = d.key_columns, pg_columns = d.pg_columns, updated_at = now()
        FROM ${wanted}
        WHERE tables.pipeline_id = ${this.#pipeline} AND tables.table_key = d.table_key
          AND (tables.key_columns IS DISTINCT FROM d.key_columns OR CAST(tables.pg_columns AS VARCHAR) IS DISTINCT FROM d.pg_columns);
       INSERT INTO ${STATE_SCHEMA}.tables (pipeline_id, table_key, schema_name, table_name, copied, snapshot_lsn, key_columns, pg_columns, updated_at)
       SELECT ${this.#pipeline}, d.table_key, d.schema_name, d.table_name, false, NULL, d.key_columns, d.pg_columns, now()
        FROM ${wanted}
        WHERE NOT EXISTS (SELECT 1 FROM ${STATE_SCHEMA}.tables AS t WHERE t.pipeline_id = ${this.#pipeline} AND t.table_key = d.table_key)`,
      rows.length === 1
        ? `recording the schema of ${[...described.keys()][0]}`
        : `recording the schemas of ${rows.length} tables`,
    );
    for (const [key, description] of described) this.#described.set(key, description);
  }
}

/** A table and the columns that identify its rows, as {@link StateStore.describeTables} records them. */
export interface TableDescription {
  table: TableSchema;
  keyColumns: readonly string[];
}

/** A stored copy plan, checked: it decides which rows are copied again. */
function parsePlan(text: string): PartialCopy {
  const invalid = () =>
    new PgReplicateError(
      'SINK_STATE_INVALID',
      `the copy plan in ${STATE_SCHEMA}.tables is not valid: ${text}`,
      {
        hint: `set copy_plan to NULL in ${STATE_SCHEMA}.tables to copy the table again in full`,
      },
    );
  let plan: StoredPlan;
  try {
    plan = JSON.parse(text) as StoredPlan;
  } catch {
    throw invalid();
  }
  const page = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  // Contiguous ranges from page 0, the last one open-ended: together, the whole table.
  const covers = (chunks: [number, number | null][]) =>
    chunks.length > 0 &&
    chunks[0]![0] === 0 &&
    chunks.every(([, end], i) => (i === chunks.length - 1 ? end === null : end === chunks[i + 1]![0]));
  if (
    typeof plan?.snapshotLsn !== 'string' ||
    !/^\d+$/.test(plan.snapshotLsn) ||
    typeof plan.fingerprint !== 'string' ||
    !Array.isArray(plan.chunks) ||
    !plan.chunks.every((c) => Array.isArray(c) && page(c[0]) && (c[1] === null || page(c[1]))) ||
    !covers(plan.chunks) ||
    !Array.isArray(plan.done) ||
    !plan.done.every((i) => Number.isInteger(i) && i >= 0 && i < plan.chunks.length)
  ) {
    throw invalid();
  }
  return {
    snapshotLsn: BigInt(plan.snapshotLsn),
    fingerprint: plan.fingerprint,
    chunks: plan.chunks.map(([firstPage, endPage]) => ({ firstPage, endPage })),
    done: plan.done,
  };
}

/** A change of a table's copy state (see {@link StateStore.recordCopy}). */
export interface CopyStateChange {
  readonly copied?: {
    readonly done: boolean;
    readonly snapshotLsn: Lsn | null;
    readonly keyColumns: readonly string[];
  };
  readonly plan?: PartialCopy | null;
  readonly replayUntil?: Lsn | null;
  readonly rowGroupSize?: number;
}

function storedPlan(plan: PartialCopy): StoredPlan {
  return {
    snapshotLsn: String(plan.snapshotLsn),
    fingerprint: plan.fingerprint,
    chunks: plan.chunks.map((chunk) => [chunk.firstPage, chunk.endPage]),
    done: [...plan.done],
  };
}
