/**
 * Applies a batch of change events to DuckDB set-wise, inside the transaction the sink holds open.
 *
 * The batch is cut at truncates and schema changes (which must happen exactly between the changes
 * before and after them); between cuts, each table's changes are collapsed (see
 * `change-collapser.ts`), staged to a file, and applied with a handful of statements per table:
 *
 *   rows needing unchanged TOAST values  → materialized, joined to their origin row in DuckDB
 *   keys whose old row may exist         → DELETE … USING the staged keys
 *   final rows                           → INSERT … SELECT the staged rows
 *
 * so a batch of 10 000 changes costs a few statements, not 10 000.
 */
import {
  type ChangeEvent,
  type Lsn,
  PgReplicateError,
  type RowChangeEvent,
  type RowData,
  type TableSchema,
  type TruncateEvent,
  tableKey,
} from 'pg-replicate';
import { ChangeCollapser, MergedRow, type Texts, UnappliableChangeError } from './change-collapser.js';
import { changelogInsertSql, changelogStagedNames, stageChangelog } from './changelog.js';
import { runConverting } from './conversion-errors.js';
import type { DuckDbDatabase } from './duckdb-database.js';
import type { StageFile } from './stage-file.js';
import { stageRowFields } from './stage-rows.js';
import type { TableCatalog } from './table-catalog.js';
import type { TablePlan } from './table-plan.js';
import { fromStaged } from './type-mapping.js';

/** What is pending for one table since the last cut. */
interface Pending {
  readonly plan: TablePlan;
  readonly collapser: ChangeCollapser;
  readonly changelog: (RowChangeEvent | TruncateEvent)[];
  /** Some of the changes are replayed over a resumed copy (see `setReplayWindow`). */
  replayed: boolean;
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

const ROWS_TABLE = '_pg_replicate_rows';

/** Applies change batches set-wise into the sink's open DuckDB transaction (see the module comment). */
export class ChangeApplier {
  readonly #db: DuckDbDatabase;
  readonly #catalog: TableCatalog;
  readonly #stage: StageFile;
  readonly #pending = new Map<TableSchema, Pending>();
  /** Tables this transaction deleted rows from (their schema changes need a rebuild). */
  readonly #deletedFrom = new Set<string>();
  /** By table key: changes up to this LSN may already be in the table (after a resumed copy). */
  readonly #replayUntil = new Map<string, Lsn>();

  constructor(db: DuckDbDatabase, catalog: TableCatalog, stage: StageFile) {
    this.#db = db;
    this.#catalog = catalog;
    this.#stage = stage;
  }

  /** Applies `events` in order (the caller owns the transaction). */
  async apply(events: readonly ChangeEvent[]): Promise<void> {
    for (const event of events) {
      switch (event.op) {
        case 'insert':
        case 'update':
        case 'delete': {
          const pending = await this.#pendingFor(event.table);
          const until = this.#replayUntil.get(tableKey(event.table));
          const replayed = until !== undefined && event.lsn <= until;
          if (replayed) pending.replayed = true;
          try {
            if (this.#catalog.materialized) pending.collapser.add(event, replayed);
          } catch (error) {
            throw unappliable(pending.plan, error);
          }
          if (this.#catalog.changelog) pending.changelog.push(event);
          break;
        }
        case 'truncate':
          await this.#flush();
          for (const table of event.tables) await this.#truncate(table, event);
          break;
        case 'schema':
          // Rows before the change are written in the old shape, rows after it in the new one.
          await this.#flush();
          await this.#plan(event.table);
          break;
      }
    }
    await this.#flush();
  }

  /** Up to which LSN changes of the table may already be in it (see {@link setReplayWindow}). */
  replayWindow(key: string): Lsn | undefined {
    return this.#replayUntil.get(key);
  }

  /** Changes of the table up to `lsn` may already be in it (null: none may). */
  setReplayWindow(key: string, lsn: Lsn | null): void {
    if (lsn === null) this.#replayUntil.delete(key);
    else this.#replayUntil.set(key, lsn);
  }

  /** The sink's transaction ended (committed or rolled back). */
  transactionEnded(): void {
    this.#deletedFrom.clear();
  }

  async #pendingFor(table: TableSchema): Promise<Pending> {
    let pending = this.#pending.get(table);
    if (pending === undefined) {
      const plan = await this.#plan(table);
      pending = { plan, collapser: new ChangeCollapser(plan.identity), changelog: [], replayed: false };
      this.#pending.set(table, pending);
    }
    return pending;
  }

  #plan(table: TableSchema): Promise<TablePlan> {
    return this.#catalog.plan(table, this.#deletedFrom.has(tableKey(table)));
  }

  async #truncate(table: TableSchema, event: TruncateEvent): Promise<void> {
    const plan = await this.#plan(table);
    if (this.#catalog.materialized)
      await this.#db.run(`DELETE FROM ${plan.target}`, `truncating ${plan.key}`);
    if (this.#catalog.changelog) {
      this.#stage.reset();
      stageChangelog(this.#stage, plan, [event]);
      await this.#writeChangelog(plan);
    }
  }

  /** Applies everything pending, table by table. */
  async #flush(): Promise<void> {
    for (const pending of this.#pending.values()) {
      const { plan, collapser } = pending;
      if (collapser.size > 0) {
        if (plan.identity.kind === 'key')
          await this.#applyKeyed(plan, collapser, plan.identity.columns, pending.replayed);
        else if (plan.identity.kind === 'row') await this.#applyCounted(plan, collapser);
        else await this.#applyInserts(plan, collapser.inserts);
      }
      if (pending.changelog.length > 0) {
        this.#stage.reset();
        stageChangelog(this.#stage, plan, pending.changelog);
        await this.#writeChangelog(plan);
      }
    }
    this.#pending.clear();
  }

  async #applyKeyed(
    plan: TablePlan,
    collapser: ChangeCollapser,
    keyColumns: readonly number[],
    replayed: boolean,
  ): Promise<void> {
    const stage = this.#stage;
    stage.reset();
    let deletes = 0;
    let writes = 0;
    let masked = 0;
    const width = plan.columns.length;
    for (const entry of collapser.keyedEntries) {
      if (!entry.deleteExisting && entry.row === null) continue; // inserted and deleted within the run
      stage.plainField(entry.deleteExisting ? '1' : '0');
      stage.plainField(entry.row === null ? '0' : '1');
      if (entry.unchanged === null) stage.field(null);
      else stage.plainField(Array.from(entry.unchanged, (flag) => (flag === 1 ? '1' : '0')).join(''));
      if (entry.row === null) {
        const row: Texts = new Array(width).fill(null);
        keyColumns.forEach((column, j) => {
          row[column] = entry.key[j] ?? null;
        });
        this.#stageRow(plan, new MergedRow(row));
      } else {
        this.#stageRow(plan, entry.row);
      }
      for (let j = 0; j < keyColumns.length; j++) stage.field(entry.origin?.[j] ?? null);
      stage.endRow();
      if (entry.deleteExisting) deletes++;
      if (entry.row !== null) writes++;
      if (entry.unchanged !== null) masked++;
    }
    collapser.clear();
    if (stage.rows === 0) return;
    stage.flush();
    const names = [
      '_d',
      '_w',
      '_u',
      ...plan.columns.map((_, i) => `c${i}`),
      ...keyColumns.map((_, j) => `o${j}`),
    ];
    const read = stage.readSql(names);
    const convert = (column: number, expr: string) => fromStaged(plan.columns[column]!.mapping, expr);
    const what = `applying changes to ${plan.key}`;
    if (masked > 0) {
      // Before anything is deleted: rows whose unchanged TOAST values come from DuckDB.
      const join = keyColumns.map(
        (column, j) => `o.${plan.columns[column]!.sql} = ${convert(column, `s.o${j}`)}`,
      );
      const values = plan.columns.map(
        (column, i) =>
          `CASE WHEN substr(s._u, ${i + 1}, 1) = '1' THEN o.${column.sql} ELSE ${convert(i, `s.c${i}`)} END AS ${column.sql}`,
      );
      await this.#convert(
        `CREATE OR REPLACE TEMP TABLE ${ROWS_TABLE} AS SELECT ${values.join(', ')}, (s._u IS NOT NULL AND o.${plan.columns[keyColumns[0]!]!.sql} IS NULL) AS _missing
           FROM ${read} AS s LEFT JOIN ${plan.target} AS o ON ${join.join(' AND ')} WHERE s._w = '1'`,
        what,
        plan,
        read,
      );
      const [missing] = await this.#db.rows(
        `SELECT count(*) AS n FROM temp.main.${ROWS_TABLE} WHERE _missing`,
        what,
      );
      if (Number(missing?.['n']) > 0) {
        // Replayed over a resumed copy: the row moved out of a chunk that was copied again (an
        // update placed it in a chunk copied before) and its unchanged values are nowhere here.
        if (replayed) throw new ResumedCopyIncompleteError(plan.key);
        throw new PgReplicateError(
          'SINK_ERROR',
          `an update of ${plan.key} kept unchanged TOAST values of a row that is not in DuckDB`,
          {
            hint: 'the DuckDB table does not hold the rows Postgres had: it was never copied (cdc mode streams changes only — use both), or it was edited by hand; copy the table again with a new slot (both)',
          },
        );
      }
    }
    if (deletes > 0) {
      this.#deletedFrom.add(plan.key);
      const keys = keyColumns.map((column, j) => `${convert(column, `s.c${column}`)} AS k${j}`);
      const match = keyColumns.map((column, j) => `${plan.target}.${plan.columns[column]!.sql} = d.k${j}`);
      await this.#convert(
        `DELETE FROM ${plan.target} USING (SELECT DISTINCT ${keys.join(', ')} FROM ${read} AS s WHERE s._d = '1') AS d
          WHERE ${match.join(' AND ')}`,
        what,
        plan,
        read,
      );
    }
    if (writes > 0) {
      const columns = plan.columns.map((column) => column.sql).join(', ');
      const source =
        masked > 0
          ? `SELECT ${columns} FROM temp.main.${ROWS_TABLE}`
          : `SELECT ${plan.columns.map((_, i) => convert(i, `s.c${i}`)).join(', ')} FROM ${read} AS s WHERE s._w = '1'`;
      await this.#convert(`INSERT INTO ${plan.target} (${columns}) ${source}`, what, plan, read);
    }
  }

  /** Multiset tables: remove |count| copies of rows with a negative count, add copies of the others. */
  async #applyCounted(plan: TablePlan, collapser: ChangeCollapser): Promise<void> {
    const stage = this.#stage;
    stage.reset();
    let removes = 0;
    let adds = 0;
    for (const { row, count } of collapser.rowCounts) {
      if (count === 0) continue;
      stage.plainField(count > 0 ? '1' : '0');
      stage.plainField(String(Math.abs(count)));
      this.#stageRow(plan, new MergedRow(row));
      stage.endRow();
      if (count > 0) adds++;
      else removes++;
    }
    collapser.clear();
    if (stage.rows === 0) return;
    stage.flush();
    const read = stage.readSql(['_w', '_n', ...plan.columns.map((_, i) => `c${i}`)]);
    const what = `applying changes to ${plan.key}`;
    const converted = plan.columns.map(
      (column, i) => `${fromStaged(column.mapping, `s.c${i}`)} AS ${column.sql}`,
    );
    if (removes > 0) {
      this.#deletedFrom.add(plan.key);
      // Rows that compare equal (0 and -0, '1 day' and '24 hours') are one group: as many rows
      // of the group are deleted as Postgres deleted, those spelled exactly as sent first (DuckDB
      // may store a segment of only zeros with one sign), and no row is picked twice.
      const names = plan.columns.map((column) => column.sql);
      const text = (alias: string) =>
        `concat_ws(chr(1), ${names.map((name) => `coalesce(CAST(${alias}.${name} AS VARCHAR), chr(2))`).join(', ')})`;
      const match = names.map((name) => `t.${name} IS NOT DISTINCT FROM g.${name}`);
      await this.#convert(
        `DELETE FROM ${plan.target} WHERE rowid IN (
           SELECT rid FROM (
             SELECT t.rowid AS rid, g._n AS n,
                    row_number() OVER (PARTITION BY g._id ORDER BY list_contains(g._texts, ${text('t')}) DESC, t.rowid) AS rn
               FROM ${plan.target} AS t
               JOIN (SELECT row_number() OVER () AS _id, sum(d._n) AS _n, list(${text('d')}) AS _texts, ${names.map((name) => `d.${name}`).join(', ')}
                       FROM (SELECT CAST(s._n AS BIGINT) AS _n, ${converted.join(', ')} FROM ${read} AS s WHERE s._w = '0') AS d
                      GROUP BY ALL) AS g
                 ON ${match.join(' AND ')})
            WHERE rn <= n)`,
        what,
        plan,
        read,
      );
    }
    if (adds > 0) {
      const columns = plan.columns.map((column) => column.sql).join(', ');
      await this.#convert(
        `INSERT INTO ${plan.target} (${columns})
         SELECT ${columns} FROM (SELECT ${converted.join(', ')}, unnest(range(CAST(s._n AS BIGINT))) AS _copy
                                   FROM ${read} AS s WHERE s._w = '1')`,
        what,
        plan,
        read,
      );
    }
  }

  async #applyInserts(plan: TablePlan, rows: readonly RowData[]): Promise<void> {
    const stage = this.#stage;
    stage.reset();
    for (const row of rows) {
      stage.plainField('1');
      this.#stageRow(plan, row);
      stage.endRow();
    }
    stage.flush();
    const columns = plan.columns.map((column) => column.sql).join(', ');
    const values = plan.columns.map((column, i) => fromStaged(column.mapping, `s.c${i}`)).join(', ');
    const read = stage.readSql(['_w', ...plan.columns.map((_, i) => `c${i}`)]);
    await this.#convert(
      `INSERT INTO ${plan.target} (${columns}) SELECT ${values} FROM ${read} AS s`,
      `appending to ${plan.key}`,
      plan,
      read,
    );
  }

  #stageRow(plan: TablePlan, row: RowData): void {
    stageRowFields(this.#stage, plan, row);
  }

  #convert(sql: string, what: string, plan: TablePlan, read: string): Promise<void> {
    return runConverting(this.#db, sql, what, plan, read);
  }

  async #writeChangelog(plan: TablePlan): Promise<void> {
    this.#stage.flush();
    const read = this.#stage.readSql(changelogStagedNames(plan));
    await runConverting(
      this.#db,
      changelogInsertSql(read, plan),
      `writing the changelog of ${plan.key}`,
      plan,
      read,
    );
  }
}

function unappliable(plan: TablePlan, error: unknown): unknown {
  if (!(error instanceof UnappliableChangeError)) return error;
  return new PgReplicateError('SINK_ERROR', `cannot apply a change to ${plan.key}: ${error.message}`, {
    hint: 'give the table a primary key or REPLICA IDENTITY FULL, then copy it again with a new slot',
    cause: error,
  });
}
