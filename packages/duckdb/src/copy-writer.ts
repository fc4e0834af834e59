/**
 * Backfill into DuckDB: copied rows are staged to a file and loaded with one
 * `INSERT … SELECT … FROM read_csv(…)` per ~64 MB, each load a transaction of its own (the
 * table's copied flag is only set once every load is committed, so a copy cut short is cleared
 * and done again; small transactions keep DuckDB's memory flat however large the table).
 *
 * Rows from `COPY … TO STDOUT` are already in the staging format, so for tables whose columns
 * need no rewriting their bytes are written through untouched. Two staging files alternate: while
 * DuckDB loads one, the next batches go to the other (and Postgres keeps sending), so neither
 * side waits for the other longer than it must. Memory stays at two file buffers, whatever the
 * table's size.
 */
import { type CopiedRows, CopyTextBatch, CopyTextRow, type Lsn } from 'pg-replicate';
import { changelogCopySql } from './changelog.js';
import { runConverting } from './conversion-errors.js';
import { type DuckDbDatabase, rowGroupSizeFor } from './duckdb-database.js';
import type { StageFile } from './stage-file.js';
import { prepareValue } from './stage-rows.js';
import type { TablePlan } from './table-plan.js';
import { fromStaged } from './type-mapping.js';

/**
 * Bytes staged before a load is started. Measured against 16 MB (interleaved runs, two cores):
 * 5M rows copied at 0.66× `COPY` instead of 0.60×, peaking at 281 MB instead of 309 MB; 1M rows
 * 0.57× instead of 0.55×, 215–225 MB instead of 271 MB. 128 MB was no better, 256 MB slower.
 * DuckDB alone loads the same rows as fast in 10 loads as in one: what smaller loads cost is
 * DuckDB's threads contending with Postgres and the reader more often.
 */
const LOAD_BYTES = 64 * 1024 * 1024;

export interface CopyTarget {
  readonly plan: TablePlan;
  readonly snapshotLsn: Lsn | null;
  /** Write into the table (false in changelog-only mode). */
  readonly materialized: boolean;
  /** Also append the rows to the changelog as `copy` rows. */
  readonly changelog: boolean;
  /**
   * Replace rows with the same key instead of appending (a resumed copy: rows of its chunks may
   * already be in the table). Only for keyed, materialized tables.
   */
  readonly upsert: boolean;
  /** DuckDB memory for the checkpoint a change of row group size takes (the sink's, not the copy's, limit). */
  readonly memoryLimit: string;
}

/** Stages and loads one table's copied rows at a time (see the module comment). */
export class CopyWriter {
  readonly #db: DuckDbDatabase;
  readonly #files: readonly [StageFile, StageFile];
  #current = 0;
  #target: CopyTarget | null = null;
  /** The load in progress (its file is not written to until it settles). */
  #loading: Promise<void> | null = null;
  /** The copy's first load has chosen the row group size (by the width of its rows). */
  #sized = false;

  constructor(db: DuckDbDatabase, files: readonly [StageFile, StageFile]) {
    this.#db = db;
    this.#files = files;
  }

  /** Starts copying into `target`. */
  begin(target: CopyTarget): void {
    this.#target = target;
    this.#current = 0;
    this.#sized = false;
    this.#files[0].reset();
  }

  async write(rows: CopiedRows): Promise<void> {
    const target = this.#require();
    const stage = this.#files[this.#current]!;
    const { plan } = target;
    const width = plan.columns.length;
    const sentinel = width === 1; // DuckDB skips empty lines: a one-column row needs a second field
    if (plan.rawCopy && !sentinel && rows instanceof CopyTextBatch) {
      stage.copyBatch(rows);
      if (stage.bytes >= LOAD_BYTES) await this.#startLoad();
      return;
    }
    for (const row of rows) {
      if (plan.rawCopy && row instanceof CopyTextRow) {
        stage.copyRow(row.bytes);
      } else {
        for (let i = 0; i < width; i++) {
          const text = row.text(i);
          const prepare = plan.columns[i]!.mapping.prepare;
          stage.field(text === null || prepare === null ? text : prepareValue(plan, i, text));
        }
      }
      if (sentinel) stage.plainField('.');
      stage.endRow();
    }
    if (stage.bytes >= LOAD_BYTES) await this.#startLoad();
  }

  /**
   * Loads what is left and waits for every load. The last load's transaction stays open, for the
   * caller to record the copy done in it.
   */
  async finish(): Promise<void> {
    await this.flush();
    this.#target = null;
    this.#discardFiles();
  }

  /**
   * Loads every row written so far (the copy goes on), leaving the load's transaction open for the
   * caller to commit with what it records about those rows: the rows and the record are durable
   * together.
   */
  async flush(): Promise<void> {
    await this.#startLoad(true);
    await this.#settle();
  }

  /** Abandons the copy (the caller rolls back a load that is still open). */
  async abandon(): Promise<void> {
    await this.#loading?.catch(() => {});
    this.#loading = null;
    this.#target = null;
    this.#discardFiles();
  }

  /** Hands the staging files' space back (up to 2 × 64 MB, maybe in a RAM-backed /tmp) between copies. */
  #discardFiles(): void {
    for (const file of this.#files) file.discard();
  }

  /** Hands the current file to DuckDB and switches to the other one. */
  async #startLoad(keepOpen = false): Promise<void> {
    const target = this.#require();
    const stage = this.#files[this.#current]!;
    if (stage.rows === 0) return;
    await this.#settle();
    stage.flush();
    const load = this.#load(target, stage, keepOpen);
    load.catch(() => {}); // observed by #settle
    this.#loading = load;
    this.#current = 1 - this.#current;
    this.#files[this.#current]!.reset();
  }

  /**
   * Loads a staged file in a transaction: the one still open (the sink's `beginCopy` leaves the
   * table's clearing open, so that a small table is copied in one transaction instead of three),
   * or a new one. Commits it unless `keepOpen`.
   */
  async #load(target: CopyTarget, stage: StageFile, keepOpen: boolean): Promise<void> {
    const { plan } = target;
    const names = plan.columns.map((_, i) => `c${i}`);
    if (plan.columns.length === 1) names.push('_sentinel');
    const read = stage.readSql(names);
    if (!this.#sized) {
      this.#sized = true;
      const rows = rowGroupSizeFor(stage.bytes / stage.rows);
      // The file is attached again only between transactions: what is open is whole on its own.
      if (rows !== this.#db.rowGroupSize) await this.#db.commit();
      await this.#db.useRowGroupSize(rows, `copying into ${plan.key}`, target.memoryLimit);
    }
    await this.#db.begin();
    if (target.upsert && plan.identity.kind === 'key') {
      const keys = plan.identity.columns;
      const select = keys.map(
        (column, j) => `${fromStaged(plan.columns[column]!.mapping, `s.c${column}`)} AS k${j}`,
      );
      const match = keys.map((column, j) => `${plan.target}.${plan.columns[column]!.sql} = d.k${j}`);
      const sql = `DELETE FROM ${plan.target} USING (SELECT DISTINCT ${select.join(', ')} FROM ${read} AS s) AS d WHERE ${match.join(' AND ')}`;
      await runConverting(this.#db, sql, `replacing rows of ${plan.key} copied before`, plan, read);
    }
    if (target.materialized) {
      const columns = plan.columns.map((column) => column.sql).join(', ');
      const values = plan.columns.map((column, i) => fromStaged(column.mapping, `s.c${i}`)).join(', ');
      const sql = `INSERT INTO ${plan.target} (${columns}) SELECT ${values} FROM ${read} AS s`;
      await runConverting(this.#db, sql, `copying into ${plan.key}`, plan, read);
    }
    if (target.changelog) {
      const sql = changelogCopySql(read, plan, target.snapshotLsn);
      await runConverting(this.#db, sql, `copying into the changelog of ${plan.key}`, plan, read);
    }
    if (!keepOpen) await this.#db.commit();
  }

  async #settle(): Promise<void> {
    const loading = this.#loading;
    if (loading === null) return;
    this.#loading = null;
    await loading;
  }

  #require(): CopyTarget {
    if (this.#target === null) throw new Error('CopyWriter.begin() has not been called');
    return this.#target;
  }
}
