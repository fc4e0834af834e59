/**
 * Applies a batch of change events to DuckDB set-wise, inside the transaction the sink holds open.
 *
 * The batch is cut at truncates and schema changes (which must happen exactly between the changes
 * before and after them); between cuts, each table's changes are collapsed (see
 * `change-collapser.ts`), staged to a file, and applied with a handful of statements per table:
 *
 *   rows needing unchanged TOAST values  → UPDATE … FROM the staged rows, setting the other columns
 *     (when the key did not change)          (one statement per set of unchanged columns)
 *   … and whose key changed              → materialized, joined to their origin row in DuckDB
 *   keys whose old row may exist         → DELETE … USING the staged keys
 *   final rows                           → INSERT … SELECT the staged rows
 *
 * so a batch of 10 000 changes costs a few statements, not 10 000. (In big tables, most of those
 * updates and deletes may have gone ahead of the transaction: see `apply-ahead.ts`; the staging
 * file's layout is in `staged-changes.ts`.)
 *
 * Staging (collapse, files) needs no DuckDB, so a batch without cuts is staged in one go by
 * {@link ChangeApplier.stage} — on the main thread, while DuckDB may still be applying the batch
 * before on its own threads — and only its statements wait their turn ({@link ChangeApplier.applyStaged}).
 */
import {
  type ChangeEvent,
  type Lsn,
  PgReplicateError,
  type RowChangeEvent,
  type TableSchema,
  type TruncateEvent,
  tableKey,
} from 'pg-replicate';
import { type AheadOptions, applyAhead } from './apply-ahead.js';
import { ChangeCollapser, MergedRow, type Texts, UnappliableChangeError } from './change-collapser.js';
import { changelogInsertSql, changelogStagedNames, stageChangelog } from './changelog.js';
import { countConverting, runConverting } from './conversion-errors.js';
import type { DuckDbDatabase } from './duckdb-database.js';
import type { StageFile, StageFilePool } from './stage-file.js';
import { stageRowFields } from './stage-rows.js';
import {
  type AppliedAhead,
  inPlaceUpdateSql,
  type KeyedStep,
  keyedStagedNames,
  keyFlagged,
  keyMatch,
  missingOrigin,
  StagedChanges,
  type Step,
  stagedKeys,
} from './staged-changes.js';
import type { TableCatalog } from './table-catalog.js';
import type { TablePlan } from './table-plan.js';
import { fromStaged } from './type-mapping.js';

/** What one table collected since the last cut. */
interface Pending {
  readonly plan: TablePlan;
  readonly collapser: ChangeCollapser;
  readonly changelog: (RowChangeEvent | TruncateEvent)[];
  /** Some of the changes are replayed over a resumed copy (see `setReplayWindow`). */
  replayed: boolean;
}

/** Changes collected per table between two cuts (one map per staging, never shared by batches). */
type Run = Map<TableSchema, Pending>;

const ROWS_TABLE = '_pg_replicate_rows';

/** Applies change batches set-wise into the sink's open DuckDB transaction (see the module comment). */
export class ChangeApplier {
  readonly #db: DuckDbDatabase;
  readonly #catalog: TableCatalog;
  readonly #files: StageFilePool;
  /** Tables this transaction deleted or updated rows of (their schema changes need a rebuild). */
  readonly #deletedFrom = new Set<string>();
  /** By table key: changes up to this LSN may already be in the table (after a resumed copy). */
  readonly #replayUntil = new Map<string, Lsn>();
  /** By table key: the rows per row group its copy wrote (see {@link applyAhead}). */
  readonly #rowGroupSizes = new Map<string, number>();
  /** Temp tables of keys {@link applyAhead} made for the transaction it ran before. */
  readonly #aheadKeys: string[] = [];

  constructor(db: DuckDbDatabase, catalog: TableCatalog, files: StageFilePool) {
    this.#db = db;
    this.#catalog = catalog;
    this.#files = files;
  }

  /**
   * Collapses and stages a batch without touching DuckDB — so it can be done while DuckDB still
   * applies the batch before it. Null when the batch must go through {@link apply} instead: it
   * truncates or changes a schema (cuts that need DuckDB in between), or it changes a table
   * whose plan is not built yet.
   */
  stage(events: readonly ChangeEvent[]): StagedChanges | null {
    const run: Run = new Map();
    for (const event of events) {
      if (event.op === 'truncate' || event.op === 'schema') return null;
      const plan = run.get(event.table)?.plan ?? this.#catalog.knownPlan(event.table);
      if (plan === undefined) return null;
      this.#collect(run, plan, event);
    }
    return this.#stageRun(run);
  }

  /**
   * {@link stage}, for a batch that could not be staged only because it changes tables whose plans
   * are not built yet (the first batch after each Relation message): builds them first, in one
   * transaction of their own — what they write to DuckDB (a table made to match the schema, its
   * description) holds at any later position too. Null when the batch truncates or changes a schema.
   */
  async planAndStage(events: readonly ChangeEvent[]): Promise<StagedChanges | null> {
    const unknown = new Set<TableSchema>();
    for (const event of events) {
      if (event.op === 'truncate' || event.op === 'schema') return null;
      if (this.#catalog.knownPlan(event.table) === undefined) unknown.add(event.table);
    }
    if (unknown.size > 0) {
      await this.#db.transaction(async () => {
        for (const table of unknown) await this.#plan(table);
      });
    }
    return this.stage(events);
  }

  /** Runs the statements of a staged batch (the caller owns the transaction). */
  async applyStaged(staged: StagedChanges): Promise<void> {
    try {
      for (const step of staged.steps) {
        if (step.kind === 'keyed') await this.#applyKeyed(step, staged.ahead.get(step));
        else if (step.kind === 'counted') await this.#applyCounted(step);
        else if (step.kind === 'append') await this.#applyInserts(step.plan, step.file);
        else await this.#writeChangelog(step.plan, step.file);
      }
    } finally {
      this.discard(staged);
    }
  }

  /**
   * Applies ahead of their transaction, a few row groups per DuckDB transaction, what `parts` —
   * the staged batches of one Postgres transaction, in order — delete and update in place in
   * tables where one statement could hold more than `budget` bytes (see `apply-ahead.ts`); after
   * each range DuckDB's cache is cut down to one of `cacheLimits`. Only between transactions.
   */
  async applyAhead(
    parts: readonly StagedChanges[],
    budget: number,
    cacheLimits: AheadOptions['cacheLimits'],
  ): Promise<void> {
    // The key lists of the transaction before (read by its statements, which are done).
    for (const table of this.#aheadKeys.splice(0))
      await this.#db.run(`DROP TABLE IF EXISTS temp.main.${table}`, 'dropping a key list');
    const created = await applyAhead(this.#db, parts, {
      budget,
      cacheLimits,
      groupRows: (plan) => this.#rowGroupSizes.get(plan.key) ?? this.#db.rowGroupSize,
      keysTable: (n) => `_pg_replicate_ahead_${n}`,
    });
    this.#aheadKeys.push(...created);
  }

  /** Gives back the files of a staged batch that will not be applied. */
  discard(staged: StagedChanges): void {
    for (const step of staged.steps) this.#files.release(step.file);
  }

  /** Applies `events` in order (the caller owns the transaction), staging between the cuts. */
  async apply(events: readonly ChangeEvent[]): Promise<void> {
    let run: Run = new Map();
    for (const event of events) {
      switch (event.op) {
        case 'insert':
        case 'update':
        case 'delete':
          this.#collect(run, run.get(event.table)?.plan ?? (await this.#plan(event.table)), event);
          break;
        case 'truncate':
          await this.applyStaged(this.#stageRun(run));
          run = new Map();
          for (const table of event.tables) await this.#truncate(table, event);
          break;
        case 'schema':
          // Rows before the change are written in the old shape, rows after it in the new one.
          await this.applyStaged(this.#stageRun(run));
          run = new Map();
          await this.#plan(event.table);
          break;
      }
    }
    await this.applyStaged(this.#stageRun(run));
  }

  /** Up to which LSN changes of the table may already be in it (see {@link setReplayWindow}). */
  replayWindow(key: string): Lsn | undefined {
    return this.#replayUntil.get(key);
  }

  /** Whether any table has a replay window (changes replayed over a resumed copy). */
  get replaying(): boolean {
    return this.#replayUntil.size > 0;
  }

  /** Changes of the table up to `lsn` may already be in it (null: none may). */
  setReplayWindow(key: string, lsn: Lsn | null): void {
    if (lsn === null) this.#replayUntil.delete(key);
    else this.#replayUntil.set(key, lsn);
  }

  /** The table's copy wrote row groups of `rows` rows. */
  setRowGroupSize(key: string, rows: number): void {
    this.#rowGroupSizes.set(key, rows);
  }

  /** The fewest rows per row group any table's copy wrote, or `rows` if fewer. */
  smallestRowGroupSize(rows: number): number {
    return Math.min(rows, ...this.#rowGroupSizes.values());
  }

  /** The sink's transaction ended (committed or rolled back). */
  transactionEnded(): void {
    this.#deletedFrom.clear();
  }

  /** Adds a row change to its table's share of the run. */
  #collect(run: Run, plan: TablePlan, event: RowChangeEvent): void {
    let pending = run.get(event.table);
    if (pending === undefined) {
      pending = { plan, collapser: new ChangeCollapser(plan.identity), changelog: [], replayed: false };
      run.set(event.table, pending);
    }
    const until = this.#replayUntil.get(plan.key);
    const replayed = until !== undefined && event.lsn <= until;
    if (replayed) pending.replayed = true;
    try {
      if (this.#catalog.materialized) pending.collapser.add(event, replayed);
    } catch (error) {
      throw unappliable(plan, error);
    }
    if (this.#catalog.changelog) pending.changelog.push(event);
  }

  #plan(table: TableSchema): Promise<TablePlan> {
    return this.#catalog.plan(table, this.#deletedFrom.has(tableKey(table)));
  }

  async #truncate(table: TableSchema, event: TruncateEvent): Promise<void> {
    const plan = await this.#plan(table);
    if (this.#catalog.materialized)
      await this.#db.run(`DELETE FROM ${plan.target}`, `truncating ${plan.key}`);
    if (this.#catalog.changelog) {
      // A run of its own holding only the truncate: staged (and given back on failure) like any other.
      const collapser = new ChangeCollapser(plan.identity);
      const run: Run = new Map([[table, { plan, collapser, changelog: [event], replayed: false }]]);
      await this.applyStaged(this.#stageRun(run));
    }
  }

  /** Stages everything the run collected, table by table. */
  #stageRun(run: Run): StagedChanges {
    const steps: Step[] = [];
    try {
      for (const { plan, collapser, changelog, replayed } of run.values()) {
        if (collapser.size > 0) {
          const file = this.#files.take();
          let step: Step;
          try {
            step = this.#stageTable(plan, collapser, file, replayed);
          } catch (error) {
            this.#files.release(file);
            throw error;
          }
          if (file.rows > 0) steps.push(step);
          else this.#files.release(file); // every change cancelled out within the run
        }
        if (changelog.length > 0) {
          const file = this.#files.take();
          steps.push({ kind: 'changelog', plan, file });
          stageChangelog(file, plan, changelog);
        }
      }
      for (const step of steps) step.file.flush();
    } catch (error) {
      this.discard(new StagedChanges(steps));
      throw error;
    }
    return new StagedChanges(steps);
  }

  #stageTable(plan: TablePlan, collapser: ChangeCollapser, file: StageFile, replayed: boolean): Step {
    const identity = plan.identity;
    if (identity.kind === 'key') return this.#stageKeyed(plan, collapser, identity.columns, file, replayed);
    if (identity.kind === 'row') return this.#stageCounted(plan, collapser, file);
    for (const row of collapser.inserts) {
      file.plainField('1');
      stageRowFields(file, plan, row);
      file.endRow();
    }
    return { kind: 'append', plan, file };
  }

  #stageKeyed(
    plan: TablePlan,
    collapser: ChangeCollapser,
    keyColumns: readonly number[],
    file: StageFile,
    replayed: boolean,
  ): Step {
    let deletes = 0;
    let writes = 0;
    let masked = 0;
    const inPlace = new Map<string, number>();
    const width = plan.columns.length;
    for (const row of collapser.inserts) {
      // New keys: nothing to delete, no unchanged values, no origin.
      file.plainField('0');
      file.plainField('1');
      file.field(null);
      file.plainField('0');
      stageRowFields(file, plan, row);
      for (let j = 0; j < keyColumns.length; j++) file.field(null);
      file.endRow();
      writes++;
    }
    for (const entry of collapser.keyedEntries) {
      if (!entry.deleteExisting && entry.row === null) continue; // inserted and deleted within the run
      const mask =
        entry.unchanged === null
          ? null
          : Array.from(entry.unchanged, (flag) => (flag === 1 ? '1' : '0')).join('');
      // Unchanged TOAST values of a row that keeps its key: an UPDATE of the other columns, which
      // neither rewrites the big values nor holds them in the transaction (staged `_d` = `_w` = 0).
      const updateInPlace = mask !== null && entry.deleteExisting && sameKey(entry.origin, entry.key);
      file.plainField(entry.deleteExisting && !updateInPlace ? '1' : '0');
      file.plainField(entry.row === null || updateInPlace ? '0' : '1');
      if (mask === null) file.field(null);
      else file.plainField(mask);
      file.plainField(entry.readsExisting ? '1' : '0');
      if (entry.row === null) {
        const row: Texts = new Array(width).fill(null);
        keyColumns.forEach((column, j) => {
          row[column] = entry.key[j] ?? null;
        });
        stageRowFields(file, plan, new MergedRow(row));
      } else {
        stageRowFields(file, plan, entry.row);
      }
      for (let j = 0; j < keyColumns.length; j++) file.field(entry.origin?.[j] ?? null);
      file.endRow();
      if (mask !== null && updateInPlace) {
        inPlace.set(mask, (inPlace.get(mask) ?? 0) + 1);
        continue;
      }
      if (entry.deleteExisting) deletes++;
      if (entry.row !== null) writes++;
      if (mask !== null) masked++;
    }
    return { kind: 'keyed', plan, file, keyColumns, deletes, writes, masked, inPlace, replayed };
  }

  /** Multiset tables: each distinct row with the number of copies to add or remove. */
  #stageCounted(plan: TablePlan, collapser: ChangeCollapser, file: StageFile): Step {
    let removes = 0;
    let adds = 0;
    for (const { row, count } of collapser.rowCounts) {
      if (count === 0) continue;
      file.plainField(count > 0 ? '1' : '0');
      file.plainField(String(Math.abs(count)));
      stageRowFields(file, plan, new MergedRow(row));
      file.endRow();
      if (count > 0) adds++;
      else removes++;
    }
    return { kind: 'counted', plan, file, removes, adds };
  }

  async #applyKeyed(step: KeyedStep, ahead: AppliedAhead | undefined): Promise<void> {
    const { plan, file, keyColumns, deletes, writes, masked, inPlace, replayed } = step;
    const read = file.readSql(keyedStagedNames(plan, keyColumns));
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
      if (Number(missing?.['n']) > 0) throw missingOrigin(plan, replayed);
    }
    if (inPlace.size > 0) {
      // The rows keep their key, and no other staged row touches it: nothing else depends on order.
      this.#deletedFrom.add(plan.key); // as after deletes, DuckDB refuses to commit an ALTER of it
      const notAhead =
        ahead === undefined ? '' : ` AND NOT ${keyFlagged(ahead.keys, 'updated', plan, keyColumns)}`;
      for (const [mask, rows] of inPlace) {
        const left = rows - (ahead?.updated.get(mask) ?? 0);
        if (left === 0) continue;
        const sql = inPlaceUpdateSql(plan, keyColumns, read, mask, notAhead);
        if ((await countConverting(this.#db, sql, what, plan, read)) < left)
          throw missingOrigin(plan, replayed);
      }
    }
    if (deletes > 0) {
      this.#deletedFrom.add(plan.key);
      const doomed = `SELECT DISTINCT ${stagedKeys(plan, keyColumns)} FROM ${read} AS s WHERE s._d = '1'`;
      const deleteSql = (keys: string, where = '') =>
        `DELETE FROM ${plan.target} USING (${keys}) AS d WHERE ${keyMatch(plan, keyColumns)}${where}`;
      if (ahead === undefined) {
        await this.#convert(deleteSql(doomed), what, plan, read);
      } else {
        // Keys whose old row went ahead: only rows the transaction added can be left, and the
        // scan skips the row groups before them. The others' old rows are still anywhere.
        if (ahead.keptDeletes < deletes)
          await this.#convert(
            deleteSql(doomed, ` AND ${plan.target}.rowid >= ${ahead.end}`),
            what,
            plan,
            read,
          );
        if (ahead.keptDeletes > 0) {
          const kept = `${doomed} AND NOT ${keyFlagged(ahead.keys, 'deleted', plan, keyColumns)}`;
          await this.#convert(deleteSql(kept), what, plan, read);
        }
      }
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
  async #applyCounted(step: Extract<Step, { kind: 'counted' }>): Promise<void> {
    const { plan, file, removes, adds } = step;
    const read = file.readSql(['_w', '_n', ...plan.columns.map((_, i) => `c${i}`)]);
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

  async #applyInserts(plan: TablePlan, file: StageFile): Promise<void> {
    const columns = plan.columns.map((column) => column.sql).join(', ');
    const values = plan.columns.map((column, i) => fromStaged(column.mapping, `s.c${i}`)).join(', ');
    const read = file.readSql(['_w', ...plan.columns.map((_, i) => `c${i}`)]);
    await this.#convert(
      `INSERT INTO ${plan.target} (${columns}) SELECT ${values} FROM ${read} AS s`,
      `appending to ${plan.key}`,
      plan,
      read,
    );
  }

  #convert(sql: string, what: string, plan: TablePlan, read: string): Promise<void> {
    return runConverting(this.#db, sql, what, plan, read);
  }

  async #writeChangelog(plan: TablePlan, file: StageFile): Promise<void> {
    const read = file.readSql(changelogStagedNames(plan));
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

/** Whether a row's origin (the key its unchanged values are read under) is its own key. */
function sameKey(origin: Texts | null, key: Texts): boolean {
  return origin !== null && origin.length === key.length && origin.every((text, j) => text === key[j]);
}
