/**
 * Why some deletes and in-place updates run ahead of their transaction, in chunks of row groups.
 *
 * DuckDB 1.5 holds what a transaction changed in a row group until a checkpoint, and no checkpoint
 * can run while the transaction is open (upstream duckdb/duckdb#19392):
 * - a `DELETE` holds version data for every row group it touches, a 256 KiB block per 16 vectors
 *   of 2,048 rows: 11,000 scattered deletes over 30M rows touch all 458 row groups, ~190 MB;
 * - an in-place `UPDATE` holds undo data for every vector and column it touches (~300 KiB each, by
 *   RSS): 10,000 scattered updates of 7 columns beside a TOASTed one, over 1M rows, ~200 MB.
 * Both are more than the sink's memory limit leaves. So those changes go first, in `rowid` ranges
 * of a few row groups, each range committed and checkpointed (which releases what it held): in
 * DuckDB alone, the delete over 30M rows peaked at 178 MB instead of 339 in 8 chunks (2.2× the
 * time); in the sink, 20 transactions of those updates peaked at 324 MB instead of 465 (3× the
 * time: a range is ~0.2 s).
 *
 * The file is then between two transactions for a moment, but nothing is lost: the position it
 * records still comes before the transaction, so after a crash Postgres sends it again, and
 * whatever went ahead is what the transaction does anyway, by key:
 * - a key's old row is deleted ahead only when the transaction's first change of that key does
 *   not read it (it deletes the row or replaces every value): a replay that splits the changes
 *   into other batches still starts with that change;
 * - a key's row is updated ahead only when every change of the key in the transaction is an
 *   in-place update (same key, some values unchanged), all collapsed into one batch: replayed,
 *   they set what they set before, in the same order, and nothing else reads the row meanwhile
 *   (if a longer replay adds another change of the key, that row is there, updated, to find).
 * Ranges go from the end of the table to its start: a checkpoint may vacuum an emptied row group
 * and move every later row down, so a row not reached yet can only move into a range still to come
 * (and a row DuckDB updates by a delete and an insert lands in the last range, already done).
 */
import { countConverting, runConverting } from './conversion-errors.js';
import type { DuckDbDatabase } from './duckdb-database.js';
import { literal } from './sql.js';
import {
  type AppliedAhead,
  columnsSet,
  inPlaceUpdateSql,
  type KeyedStep,
  keyedStagedNames,
  keyFlagged,
  keyMatch,
  missingOrigin,
  rowKeyMatch,
  type StagedChanges,
  stagedKeys,
} from './staged-changes.js';
import type { TablePlan } from './table-plan.js';

/** DuckDB's block of version data: 16 vectors of 2,048 rows. */
const VERSION_BLOCK_BYTES = 256 * 1024;
const ROWS_PER_VERSION_BLOCK = 16 * 2048;
const VECTOR_ROWS = 2048;
/**
 * What an in-place update makes DuckDB hold per vector and column it touches, as ranges are sized:
 * DuckDB's accounting says ~270 KiB, and a range's `UPDATE` of 7 columns in 32 vectors raised RSS
 * by ~70 MB; but ranges half as large were no lower at the peak (checkpoints that merge row groups
 * set it) and took twice as long (32 MB: 338 MB in 17.9 s for 6 transactions; 16 MB: 327 MB in
 * 32.2 s; 64 MB: 383 MB in 14.1 s).
 */
const UPDATE_BYTES_PER_VECTOR_COLUMN = 128 * 1024;

/** At most what deletes in a row group of `rows` rows make DuckDB hold until a checkpoint. */
export function versionBytes(rows: number): number {
  return Math.ceil(rows / ROWS_PER_VERSION_BLOCK) * VERSION_BLOCK_BYTES;
}

/** At most what in-place updates of `columns` columns in `rows` rows make DuckDB hold. */
export function updateBytes(rows: number, columns: number): number {
  return Math.ceil(rows / VECTOR_ROWS) * columns * UPDATE_BYTES_PER_VECTOR_COLUMN;
}

/**
 * `rowid` ranges `[from, to)` of whole row groups of `groupRows` rows, each holding at most `budget`
 * bytes when every group in it holds `groupBytes` (one group when a group holds more); the last
 * is open-ended (`to` null), so rows added since `rows` was counted are covered too. Null when
 * the whole table fits the budget: one statement holds no more than that.
 */
export function chunkRanges(
  rows: number,
  groupRows: number,
  groupBytes: number,
  budget: number,
): Array<[number, number | null]> | null {
  if (Math.ceil(rows / groupRows) * groupBytes <= budget) return null;
  const span = Math.max(1, Math.floor(budget / groupBytes)) * groupRows;
  const ranges: Array<[number, number | null]> = [];
  for (let from = 0; from < rows; from += span) ranges.push([from, from + span < rows ? from + span : null]);
  return ranges;
}

export interface AheadOptions {
  /** Bytes one statement may make DuckDB hold until a checkpoint. */
  readonly budget: number;
  /**
   * DuckDB's cache is cut down to this after each range (it keeps the columns a range scanned):
   * `updates` where rows are updated in place (their undo data comes on top of the cache until the
   * checkpoint), `deletes` where only deletes go ahead.
   */
  readonly cacheLimits: { readonly updates: string; readonly deletes: string };
  /** The rows per row group the table was written in. */
  readonly groupRows: (plan: TablePlan) => number;
  /** The name of the temp table listing the `n`-th table's keys (dropped by the caller). */
  readonly keysTable: (n: number) => string;
}

const STAGED_TABLE = '_pg_replicate_staged';

/** How a table's keys were classified (see `TableAhead.#classifyKeys`). */
interface KeyCounts {
  /** Keys whose old row goes ahead. */
  readonly deleted: number;
  /** Staged rows updated ahead, in all parts. */
  readonly updatedRows: number;
  /** The same by part and `_u` mask: one `UPDATE` per entry and range. */
  readonly updated: readonly { part: number; mask: string; rows: number }[];
  /** By part: its rows whose key's old row must go but does not go ahead. */
  readonly kept: readonly number[];
}

/**
 * Applies ahead of their transaction what `parts` — the staged batches of one Postgres transaction,
 * in order — delete and update in place in tables where one statement could hold more than the
 * budget (see the module comment), and records it in each part's `ahead` for its statements.
 * Only between transactions. Tables whose changes are replayed over a resumed copy, or are not
 * keyed, never go ahead. Returns the temp tables it created.
 */
export async function applyAhead(
  db: DuckDbDatabase,
  parts: readonly StagedChanges[],
  options: AheadOptions,
): Promise<string[]> {
  const tables = new Map<string, { steps: KeyedStep[]; parts: StagedChanges[] } | null>();
  for (const part of parts) {
    for (const step of part.steps) {
      const entry = tables.get(step.plan.key);
      if (step.kind === 'changelog' || entry === null) continue; // a changelog is only appended to
      if (step.kind !== 'keyed' || step.replayed) tables.set(step.plan.key, null);
      else if (entry === undefined) tables.set(step.plan.key, { steps: [step], parts: [part] });
      else {
        entry.steps.push(step);
        entry.parts.push(part);
      }
    }
  }
  const created: string[] = [];
  for (const entry of tables.values()) {
    if (entry === null) continue;
    const keys = options.keysTable(created.length);
    const ahead = await new TableAhead(db, entry.steps, options, keys).run();
    if (ahead === null) continue;
    created.push(keys);
    entry.parts.forEach((part, p) => {
      part.ahead.set(entry.steps[p]!, ahead(p));
    });
  }
  return created;
}

/** What goes ahead for one table, across the parts that change it. */
class TableAhead {
  readonly #db: DuckDbDatabase;
  readonly #steps: readonly KeyedStep[];
  readonly #options: AheadOptions;
  readonly #keys: string;
  readonly #plan: TablePlan;
  readonly #keyColumns: readonly number[];
  readonly #groupRows: number;
  readonly #what: string;
  /** The most columns an in-place update of the table sets. */
  readonly #columns: number;
  /** The key list's key columns: `k0, k1, …`. */
  readonly #keyNames: string;

  constructor(db: DuckDbDatabase, steps: readonly KeyedStep[], options: AheadOptions, keys: string) {
    this.#db = db;
    this.#steps = steps;
    this.#options = options;
    this.#keys = keys;
    this.#plan = steps[0]!.plan;
    this.#keyColumns = steps[0]!.keyColumns;
    this.#groupRows = options.groupRows(this.#plan);
    this.#what = `applying ahead the deletes and in-place updates of ${this.#plan.key} in a transaction`;
    let columns = 0;
    for (const step of steps)
      for (const mask of step.inPlace.keys()) columns = Math.max(columns, columnsSet(mask, this.#keyColumns));
    this.#columns = columns;
    this.#keyNames = this.#keyColumns.map((_, j) => `k${j}`).join(', ');
  }

  /** Null when nothing went ahead; else what did, for the table's step in each part. */
  async run(): Promise<((part: number) => AppliedAhead) | null> {
    // Cheap bound first: each row in a row group of its own.
    let deletes = 0;
    let updates = 0;
    for (const step of this.#steps) {
      deletes += step.deletes;
      for (const rows of step.inPlace.values()) updates += rows;
    }
    const { budget } = this.#options;
    if (deletes * versionBytes(this.#groupRows) + updates * updateBytes(1, this.#columns) <= budget)
      return null;

    const counts = await this.#classifyKeys();
    const rows = await this.#rowidEnd();
    const deleted = counts.deleted > 0;
    const updated = counts.updated.length > 0;
    const groupBytes =
      (deleted ? versionBytes(this.#groupRows) : 0) +
      (updated ? updateBytes(this.#groupRows, this.#columns) : 0);
    const vectors = Math.ceil(rows / VECTOR_ROWS);
    const total =
      Math.min(counts.deleted, Math.ceil(rows / this.#groupRows)) * versionBytes(this.#groupRows) +
      Math.min(counts.updatedRows, vectors) * updateBytes(1, this.#columns);
    const ranges = total <= budget ? null : chunkRanges(rows, this.#groupRows, groupBytes, budget);
    if (ranges === null) {
      await this.#db.run(`DROP TABLE IF EXISTS temp.main.${this.#keys}`, this.#what);
      return null;
    }
    let found = 0;
    try {
      for (const [from, to] of ranges.reverse()) found += await this.#applyRange(from, to, counts);
    } finally {
      await this.#db.rollback();
    }
    if (found < counts.updatedRows) throw missingOrigin(this.#plan, false);
    // Read after the last checkpoint: nothing moves the rows until the transaction ends, and the
    // rows it adds come after them (an open transaction's own even at 2^55 and up).
    const end = await this.#rowidEnd();
    return (part) => ({
      end,
      keys: this.#keys,
      keptDeletes: counts.kept[part] ?? 0,
      updated: new Map(counts.updated.filter((u) => u.part === part).map((u) => [u.mask, u.rows])),
    });
  }

  /**
   * Lists in the keys table every key the parts change, flagged `deleted` (its old row goes ahead)
   * and `updated` (it goes ahead updated), and counts what the parts' statements will skip.
   */
  async #classifyKeys(): Promise<KeyCounts> {
    const plan = this.#plan;
    const keyColumns = this.#keyColumns;
    const keys = this.#keyNames;
    try {
      for (const [p, step] of this.#steps.entries()) {
        const read = step.file.readSql(keyedStagedNames(step.plan, step.keyColumns));
        const select = `SELECT ${p} AS p, s._d, s._w, s._u, s._r, ${stagedKeys(plan, keyColumns)} FROM ${read} AS s`;
        await runConverting(
          this.#db,
          p === 0
            ? `CREATE OR REPLACE TEMP TABLE ${STAGED_TABLE} AS ${select}`
            : `INSERT INTO temp.main.${STAGED_TABLE} ${select}`,
          this.#what,
          plan,
          read,
        );
      }
      // A key's old row goes ahead if its first change does not read it; its row is updated ahead
      // if every change of it is in place (see the module comment) — and in one part only: DuckDB
      // updates some columns (lists) by a delete and an insert at the end of the table, out of the
      // range, where the update of a later part would not find it.
      await this.#db.run(
        `CREATE OR REPLACE TEMP TABLE ${this.#keys} AS
           SELECT ${keys}, arg_min(_d = '1' AND _r = '0', p) AS deleted,
                  count(*) = 1 AND bool_and(_d = '0' AND _w = '0' AND _u IS NOT NULL) AS updated
             FROM temp.main.${STAGED_TABLE} GROUP BY ALL`,
        this.#what,
      );
      const join = keyColumns.map((_, j) => `s.k${j} = a.k${j}`).join(' AND ');
      const rows = await this.#db.rows(
        `SELECT s.p, s._u AS mask,
                count(*) FILTER (WHERE a.updated AND s._d = '0' AND s._w = '0' AND s._u IS NOT NULL)::INT AS updated,
                count(*) FILTER (WHERE s._d = '1' AND NOT a.deleted)::INT AS kept
           FROM temp.main.${STAGED_TABLE} AS s JOIN temp.main.${this.#keys} AS a ON ${join}
          GROUP BY ALL ORDER BY s.p`,
        this.#what,
      );
      const [deleted] = await this.#db.rows(
        `SELECT count(*)::INT AS n FROM temp.main.${this.#keys} WHERE deleted`,
        this.#what,
      );
      const updated: { part: number; mask: string; rows: number }[] = [];
      const kept: number[] = [];
      let updatedRows = 0;
      for (const row of rows) {
        const part = Number(row['p']);
        kept[part] = (kept[part] ?? 0) + Number(row['kept']);
        if (Number(row['updated']) === 0) continue;
        updated.push({ part, mask: String(row['mask']), rows: Number(row['updated']) });
        updatedRows += Number(row['updated']);
      }
      return { deleted: Number(deleted?.['n']), updatedRows, updated, kept };
    } finally {
      await this.#db.run(`DROP TABLE IF EXISTS temp.main.${STAGED_TABLE}`, this.#what).catch(() => {});
    }
  }

  /** Deletes and updates the range's rows in a transaction of their own; returns the rows updated. */
  async #applyRange(from: number, to: number | null, counts: KeyCounts): Promise<number> {
    const { target } = this.#plan;
    const within = (row: string) =>
      `${row}.rowid >= ${from}${to === null ? '' : ` AND ${row}.rowid < ${to}`}`;
    const range = within(target);
    let changed = 0;
    let updated = 0;
    await this.#db.begin();
    if (counts.deleted > 0) {
      const [deleted] = await this.#db.rows(
        `DELETE FROM ${target} USING (SELECT ${this.#keyNames} FROM temp.main.${this.#keys} WHERE deleted) AS d
          WHERE ${keyMatch(this.#plan, this.#keyColumns)} AND ${range}`,
        this.#what,
      );
      changed += Number(deleted?.['Count']);
    }
    // Only the staged rows whose row is in the range: joined whole to the table (a hash table of
    // every staged row, as wide as the table), 10,000 staged rows took ~100 MB per statement
    // whatever the range; these ~650 of them (1/16 of 1M rows), ~30 MB.
    const flagged = ` AND ${keyFlagged(this.#keys, 'updated', this.#plan, this.#keyColumns)}
      AND EXISTS (SELECT 1 FROM ${target} AS t WHERE ${rowKeyMatch(this.#plan, this.#keyColumns, 't')} AND ${within('t')})`;
    for (const { part, mask } of counts.updated) {
      const step = this.#steps[part]!;
      const read = step.file.readSql(keyedStagedNames(step.plan, step.keyColumns));
      const sql = inPlaceUpdateSql(this.#plan, this.#keyColumns, read, mask, flagged, ` AND ${range}`);
      updated += await countConverting(this.#db, sql, this.#what, this.#plan, read);
    }
    changed += updated;
    await this.#db.commit();
    const { cacheLimits } = this.#options;
    const cacheLimit = counts.updated.length > 0 ? cacheLimits.updates : cacheLimits.deletes;
    if (changed > 0) {
      // The blocks the statements read go first, so that the checkpoint's own memory comes on
      // top of less; the checkpoint releases what the range's row groups held (a commit does not).
      await this.#db.releaseCache(cacheLimit);
      await this.#db.run('CHECKPOINT', this.#what);
    }
    await this.#db.releaseCache(cacheLimit);
    return updated;
  }

  /** One past the table's last `rowid`: the rows appended and not vacuumed since (deleted ones count). */
  async #rowidEnd(): Promise<number> {
    const { table, key } = this.#plan;
    const [size] = await this.#db.rows(
      `SELECT estimated_size::DOUBLE AS n FROM duckdb_tables()
        WHERE database_name = current_database() AND schema_name = ${literal(table.schema)} AND table_name = ${literal(table.name)}`,
      `reading the size of ${key}`,
    );
    return Number(size?.['n'] ?? 0);
  }
}
