/**
 * The DuckDB sink: one DuckDB table per published table, kept equal to it row for row, with
 * exactly-once delivery — every batch is applied in one DuckDB transaction together with the
 * position it reaches, so a crash at any instant leaves the file at a transaction boundary that
 * the pipeline resumes from. (Scattered deletes and in-place updates of a big table may go just
 * before, in transactions of their own: see `apply-ahead.ts`.)
 *
 * Transactions, as the `Sink` contract asks:
 * - `beginCopy` clears the table and its copied flag in a transaction that the first load of rows
 *   commits; the rows load in transactions of ~64 MB, and `endCopy` sets the flag in the last one
 *   (a small table is one transaction: its three commits cost more than its rows). A copy cut
 *   short leaves the flag unset, so the table is cleared and copied again.
 * - A change batch opens a transaction (or continues the one an earlier batch without `commit`
 *   left open); the batch with `commit` records the LSN and commits. `close` rolls back whatever
 *   is still open: Postgres sends that transaction again.
 *
 * Copies split in chunks resume (keyed, materialized tables): each `chunkCopied` makes the rows so
 * far durable and records the chunk; a resumed copy replaces rows by key, and the changes then
 * replayed up to its snapshot are applied idempotently (an insert of a key that exists replaces
 * it). If such a change needs a row the copy did not bring (an update with unchanged TOAST values
 * of a row that moved into a chunk copied earlier), the table is marked for a full copy and the
 * batch fails with a transient `COPY_INCOMPLETE`: the next run copies it again.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  ChangeBatch,
  ChangeEvent,
  CopiedRows,
  CopyPlan,
  Lsn,
  PartialCopy,
  Sink,
  SinkContext,
  SinkState,
  TableSchema,
} from 'pg-replicate';
import { maxLsn, PgReplicateError, tableKey } from 'pg-replicate';
import { ChangeApplier } from './change-applier.js';
import { type ChangelogMode, changelogName } from './changelog.js';
import { CopyWriter } from './copy-writer.js';
import {
  DuckDbDatabase,
  isOutOfMemory,
  ROW_GROUP_SIZE,
  sizeInBytes,
  smallerSize,
} from './duckdb-database.js';
import { qualified } from './sql.js';
import { StageFilePool } from './stage-file.js';
import { ResumedCopyIncompleteError, type StagedChanges } from './staged-changes.js';
import { StateStore } from './state-store.js';
import { TableCatalog } from './table-catalog.js';
import { checkIdentity, identityNames } from './table-plan.js';

/** Options of {@link DuckDbSink}. */
export interface DuckDbSinkOptions {
  /** The DuckDB database file (created if missing). */
  path: string;
  /**
   * `off` (default): materialized tables only. `beside`: also append every change to
   * `<table>_changelog`. `only`: changelog tables instead of materialized ones.
   */
  changelog?: ChangelogMode;
  /**
   * Accept tables that have neither a primary key nor REPLICA IDENTITY FULL, applying only their
   * inserts and truncates (an update or delete of such a table fails). Default false: such a
   * table is refused when the pipeline starts.
   */
  appendOnlyWithoutKey?: boolean;
  /**
   * DuckDB worker threads (default: one core less than the machine has, between 2 and 4 — the
   * pipeline's own thread and Postgres need the rest, but on two cores loads on two threads were
   * still 25% faster than on one).
   */
  threads?: number;
  /** DuckDB `memory_limit` of the sink (default `256MB`; what does not fit spills to `<path>.tmp`). */
  memoryLimit?: string;
  /**
   * DuckDB `memory_limit` while the sink copies a table (default `64MB`, never above
   * `memoryLimit`). A copy only appends, but DuckDB keeps the blocks it writes cached up to its
   * limit: copying 5M rows peaked at ~560 MB RSS under 256 MB and 290–330 MB under 64 MB, as fast.
   * Bulk loads run under it too: transactions larger than a batch whose first part is inserts
   * only (until a part updates or deletes). Other changes, and resumed copies (which replace rows
   * by key), run under `memoryLimit`.
   */
  copyMemoryLimit?: string;
  /**
   * What the deletes and in-place updates of one DuckDB transaction may make DuckDB hold, at most
   * (default: an eighth of `memoryLimit`). DuckDB keeps version data for each row group a delete
   * touches, and undo data for each vector and column an update touches, until it checkpoints; so
   * when a transaction's could hold more (scattered rows of a big table), they go ahead of it, a
   * few row groups per DuckDB transaction (see "Scattered updates over big tables" in the README).
   */
  deleteMemory?: string;
  /** Directory for staging files (default: the OS temp directory). */
  stagingDir?: string;
}

const STAGING_PREFIX = 'pg-replicate-duckdb-';
const MEMORY_LIMIT = '256MB';
const COPY_MEMORY_LIMIT = '64MB';
/**
 * What DuckDB may keep cached between the ranges a transaction's in-place updates go ahead in
 * (see `apply-ahead.ts`): each range reads its rows again anyway, and an update's undo data comes
 * on top. Against the copy's 64 MB, six transactions of scattered updates around a TOASTed column
 * over 1M rows peaked at 280–283 MB instead of 331–333 (the base the ranges' updates and
 * checkpoints start from, 185 instead of 237 MB), in 20–22 s instead of 17–20. Ranges of deletes
 * only keep the copy's limit: their version data is small, and 16 MB made each range read its rows
 * again from disk (30M narrow rows: 51.9 s and 249 MB, against 45.7 s and 257 MB).
 */
const UPDATE_AHEAD_CACHE_LIMIT = '16MB';
/** A share of `memoryLimit`: what deletes and updates in one transaction may make DuckDB hold (see `apply-ahead.ts`). */
const DELETE_AHEAD_SHARE = 8;
/** The same when `memoryLimit` is not a plain size (a percentage of RAM). */
const DEFAULT_DELETE_AHEAD_BUDGET = 32 * 1024 * 1024;
/** Parts of one Postgres transaction held back at most (10,000 changes or 8 MiB each, by default). */
const HELD_BACK_PARTS = 8;
/** Staging files they may hold at most (one per table of a part, each written through 1 MiB). */
const HELD_BACK_FILES = 16;
/** What DuckDB holds at least per column of a table appended to, until a checkpoint. */
const SEGMENT_BYTES = 16 * 1024;

/** Removes staging directories left by sinks whose process is gone (killed before `close`). */
function removeAbandonedStaging(root: string): void {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(/^pg-replicate-duckdb-(\d+)-[0-9a-f]+$/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid || isRunning(pid)) continue;
    rmSync(join(root, name), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface OpenState {
  readonly db: DuckDbDatabase;
  readonly state: StateStore;
  readonly catalog: TableCatalog;
  readonly applier: ChangeApplier;
  readonly copier: CopyWriter;
  readonly stagingDir: string;
  readonly files: StageFilePool;
}

/**
 * Keeps a DuckDB file equal to the replicated Postgres tables, exactly once.
 *
 * ```ts
 * import { Pipeline, PostgresSource } from 'pg-replicate';
 * import { DuckDbSink } from '@pg-replicate/duckdb';
 *
 * const source = new PostgresSource({ publication: 'my_publication', slot: 'my_slot' });
 * const sink = new DuckDbSink({ path: './replica.duckdb' });
 * await new Pipeline({ source, sink, mode: 'both' }).run();
 * ```
 */
export class DuckDbSink implements Sink {
  readonly name = 'duckdb';
  readonly transactional = true;
  /** A batch is staged while DuckDB still applies the one before (see {@link writeChanges}). */
  readonly maxChangeBatchesInFlight = 2;
  readonly #options: Required<Pick<DuckDbSinkOptions, 'path' | 'changelog' | 'appendOnlyWithoutKey'>> &
    DuckDbSinkOptions;
  #open: OpenState | null = null;
  /** Tables given to `prepare`, checked for an identity when changes start to flow. */
  #tables: TableSchema[] = [];
  #streaming = false;
  /** The last change batch given, until applied (batches apply one after another, in order). */
  #applying: Promise<void> = Promise.resolve();
  /** The open change transaction is a bulk load, under the copy's limit (see `#configureForChanges`). */
  #bulkLoad = false;
  /** Tables appended to since DuckDB's memory was last measured (see {@link #checkpointIfHolding}). */
  readonly #appendedTo = new Set<TableSchema>();
  /** Copies in progress that record their chunks, by table key (as stored). */
  readonly #copies = new Map<string, PartialCopy>();
  /** Parts of a Postgres transaction held back until it ends (see `#holdsBack`). */
  #heldBack: StagedChanges[] = [];

  constructor(options: DuckDbSinkOptions) {
    if (typeof options?.path !== 'string' || options.path === '') {
      throw new PgReplicateError('INVALID_ARGUMENT', 'the DuckDB sink needs a database file path');
    }
    const changelog = options.changelog ?? 'off';
    if (!['off', 'beside', 'only'].includes(changelog)) {
      throw new PgReplicateError(
        'INVALID_ARGUMENT',
        `changelog must be off, beside or only, not ${String(changelog)}`,
      );
    }
    const deleteMemory = options.deleteMemory;
    if (deleteMemory !== undefined && !(sizeInBytes(deleteMemory) > 0)) {
      throw new PgReplicateError(
        'INVALID_ARGUMENT',
        `deleteMemory must be a size such as 32MB, not ${String(deleteMemory)}`,
      );
    }
    this.#options = Object.freeze({
      ...options,
      changelog,
      appendOnlyWithoutKey: options.appendOnlyWithoutKey ?? false,
    });
  }

  async open(context: SinkContext): Promise<SinkState> {
    if (this.#open !== null) await this.close();
    this.#tables = [];
    this.#streaming = false;
    this.#applying = Promise.resolve();
    const options = this.#options;
    const db = await DuckDbDatabase.open(options.path, {
      threads: options.threads ?? Math.min(4, Math.max(2, availableParallelism() - 1)),
      memoryLimit: this.#memoryLimit(),
    });
    try {
      const stagingRoot = options.stagingDir ?? tmpdir();
      removeAbandonedStaging(stagingRoot);
      const stagingDir = join(
        stagingRoot,
        `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`,
      );
      mkdirSync(stagingDir, { recursive: true });
      const files = new StageFilePool(stagingDir);
      const state = new StateStore(db, context.pipelineId);
      const catalog = new TableCatalog(db, context.types, state, { changelog: options.changelog });
      const applier = new ChangeApplier(db, catalog, files);
      this.#open = {
        db,
        state,
        catalog,
        applier,
        copier: new CopyWriter(db, [files.take(), files.take()]),
        stagingDir,
        files,
      };
      const stored = await state.load();
      this.#copies.clear();
      for (const [key, copy] of stored.partialCopies ?? []) this.#copies.set(key, copy);
      const { replayWindows, rowGroupSizes } = await state.copyTraits();
      for (const [key, lsn] of replayWindows) applier.setReplayWindow(key, lsn);
      for (const [key, rows] of rowGroupSizes) applier.setRowGroupSize(key, rows);
      // Only keyed, materialized tables resume (a changelog would hold the first rows twice);
      // the pipeline asks for it, and `beginCopy` checks the key again.
      const partialCopies = options.changelog === 'off' ? stored.partialCopies : new Map();
      return { ...stored, partialCopies };
    } catch (error) {
      if (this.#open !== null) await this.close();
      else await db.close().catch(() => {});
      throw error;
    }
  }

  async prepare(tables: readonly TableSchema[]): Promise<void> {
    const { db, catalog } = this.#require();
    this.#tables.push(...tables);
    if (this.#streaming) for (const table of tables) checkIdentity(table, this.#options.appendOnlyWithoutKey);
    await this.#guard(() =>
      db.transaction(async () => {
        await catalog.create(tables);
      }),
    );
  }

  async beginCopy(table: TableSchema, snapshotLsn: Lsn | null, copyPlan?: CopyPlan): Promise<void> {
    const { db, catalog, state, copier, applier } = this.#require();
    const key = tableKey(table);
    await this.#guard(async () => {
      if (db.inTransaction) {
        throw new PgReplicateError(
          'SINK_ERROR',
          `a copy of ${qualified(table.schema, table.name)} began while a change batch was still open`,
        );
      }
      const plan = await catalog.plan(table);
      const keys = identityNames(table, plan.identity);
      const resumable = catalog.materialized && !catalog.changelog && plan.identity.kind === 'key';
      const resume = copyPlan?.resume ?? null;
      if (resume !== null && !resumable) {
        // The table lost its key since: forget the plan, so the next run copies it in full.
        await db.transaction(() => state.recordCopy(table, { plan: null }));
        throw new PgReplicateError(
          'COPY_INCOMPLETE',
          `the copy of ${key} cannot resume: it has no key any more`,
        );
      }
      // Before any transaction: a `SET` that fails aborts the transaction it runs in.
      await db.configure({
        memoryLimit: resume === null ? this.#copyMemoryLimit() : this.#memoryLimit(),
        preserveInsertionOrder: false,
        mergeRowGroups: false,
      });
      if (resume !== null) {
        // The plan as stored, with the chunks already done (the pipeline resumes exactly it).
        const stored = this.#copies.get(key);
        if (stored === undefined || (stored.done.length > 0 && (await this.#isEmpty(plan.target)))) {
          // The rows copied before are gone (the DuckDB table was dropped or emptied by hand).
          await db.transaction(() => state.recordCopy(table, { plan: null }));
          throw new PgReplicateError(
            'COPY_INCOMPLETE',
            `the copy of ${key} cannot resume: the DuckDB table lost the rows copied before`,
          );
        }
        const until = maxLsn(applier.replayWindow(key) ?? 0n, resume.replayUntil);
        await db.transaction(async () => {
          await state.recordCopy(table, {
            copied: { done: false, snapshotLsn, keyColumns: keys },
            replayUntil: until,
          });
        });
        applier.setReplayWindow(key, until);
      } else {
        const recorded: PartialCopy | null =
          resumable && snapshotLsn !== null && copyPlan !== undefined && copyPlan.chunks.length > 1
            ? { snapshotLsn, fingerprint: copyPlan.fingerprint, chunks: copyPlan.chunks, done: [] }
            : null;
        // Left open: it commits with the first load (see `CopyWriter`), or with `endCopy`.
        await db.begin();
        if (catalog.materialized)
          await db.run(`DELETE FROM ${plan.target}`, `clearing ${plan.key} for its copy`);
        if (catalog.changelog) {
          await db.run(
            `DELETE FROM ${qualified(table.schema, changelogName(table))} WHERE op = 'copy'`,
            `clearing the copied rows of ${plan.key} from its changelog`,
          );
        }
        await state.recordCopy(table, {
          copied: { done: false, snapshotLsn: null, keyColumns: keys },
          plan: recorded,
          replayUntil: null,
        });
        applier.setReplayWindow(key, null);
        if (recorded !== null) this.#copies.set(key, recorded);
        else this.#copies.delete(key);
      }
      copier.begin({
        plan,
        snapshotLsn,
        materialized: catalog.materialized,
        changelog: catalog.changelog,
        upsert: resume !== null,
        memoryLimit: this.#memoryLimit(),
      });
    });
  }

  async writeRows(_table: TableSchema, rows: CopiedRows): Promise<void> {
    const { copier } = this.#require();
    await this.#guard(() => copier.write(rows));
  }

  async chunkCopied(table: TableSchema, index: number): Promise<void> {
    const { db, state, copier } = this.#require();
    const copy = this.#copies.get(tableKey(table));
    if (copy === undefined) return;
    await this.#guard(async () => {
      await copier.flush(); // leaves its load open: the chunk's rows commit with its record
      this.#noteAppended([table]);
      const recorded = { ...copy, done: [...copy.done, index] };
      await db.begin();
      await state.recordCopy(table, { plan: recorded });
      await db.commit();
      this.#copies.set(tableKey(table), recorded);
      await this.#checkpointIfHolding();
    });
  }

  async endCopy(table: TableSchema, snapshotLsn: Lsn | null): Promise<void> {
    const { db, state, copier, catalog, applier } = this.#require();
    await this.#guard(async () => {
      await copier.finish(); // leaves its last load open: the rows commit with the copied flag
      this.#noteAppended([table]);
      const plan = await catalog.plan(table);
      const keyColumns = identityNames(table, plan.identity);
      await db.begin();
      // What the copy's rows were written in (see `apply-ahead.ts`).
      const rowGroupSize = db.rowGroupSize;
      await state.recordCopy(table, {
        copied: { done: true, snapshotLsn, keyColumns },
        plan: null,
        rowGroupSize,
      });
      await db.commit();
      applier.setRowGroupSize(tableKey(table), rowGroupSize);
      this.#copies.delete(tableKey(table));
      await this.#checkpointIfHolding();
    });
  }

  /**
   * Stages the batch at once — collapsing it and writing its staging files on this thread while
   * DuckDB may still be applying the batch before on its own — and applies it after that one.
   * A batch whose predecessor failed fails with the same error, untouched.
   */
  writeChanges(batch: ChangeBatch): Promise<void> {
    let staged: StagedChanges | null = null;
    let stagingError: unknown = null;
    try {
      const { applier } = this.#require();
      this.#startStreaming();
      staged = applier.stage(batch.events);
    } catch (error) {
      stagingError = error;
    }
    this.#noteAppended(appendedTables(batch.events));
    // The events are only kept when they could not be staged (the batch object is let go here).
    const events = staged === null ? batch.events : null;
    const insertsOnly = batch.events.every((event) => event.op === 'insert');
    const applying = this.#applyChanges(
      this.#applying,
      staged,
      stagingError,
      events,
      batch.commit,
      insertsOnly,
    );
    this.#applying = applying;
    return applying;
  }

  /** Copying a table without identity is fine; streaming its changes is not (unless append-only). */
  #startStreaming(): void {
    if (this.#streaming) return;
    for (const table of this.#tables) checkIdentity(table, this.#options.appendOnlyWithoutKey);
    this.#streaming = true;
  }

  async #applyChanges(
    previous: Promise<void>,
    staged: StagedChanges | null,
    stagingError: unknown,
    events: readonly ChangeEvent[] | null,
    commit: ChangeBatch['commit'],
    insertsOnly: boolean,
  ): Promise<void> {
    const { db, applier, state } = this.#require();
    let parts: StagedChanges[] = [];
    try {
      await previous;
      await this.#guard(async () => {
        if (stagingError !== null) throw stagingError;
        if (staged === null && events !== null && !db.inTransaction) {
          staged = await applier.planAndStage(events);
          if (staged !== null) events = null;
        }
        if (staged !== null && commit === undefined && this.#holdsBack(staged)) {
          this.#heldBack.push(staged);
          staged = null;
          return;
        }
        parts = this.#heldBack;
        this.#heldBack = [];
        if (staged !== null) parts.push(staged);
        staged = null;
        // No more rows per group than any table's copy wrote: a checkpoint re-chunks a table's
        // row groups to the size the file is attached with, rewriting all their columns. A 1M-row
        // table of ~2.6 KB rows, copied in groups of 4,096 and streamed into under 16,384: its
        // first checkpoints took 4–6 s and peaked at 1 GB RSS (in DuckDB alone, under a 256 MB
        // limit); under 4,096, 23 ms and 95 MB. Narrow tables append in smaller groups for it.
        if (!db.inTransaction)
          await db.useRowGroupSize(
            applier.smallestRowGroupSize(ROW_GROUP_SIZE),
            'streaming changes',
            this.#memoryLimit(),
          );
        await this.#configureForChanges(insertsOnly && parts.length <= 1, commit !== undefined);
        if (!db.inTransaction && parts.length > 0)
          await applier.applyAhead(parts, this.#aheadBudget(), {
            updates: smallerSize(UPDATE_AHEAD_CACHE_LIMIT, this.#copyMemoryLimit()),
            deletes: this.#copyMemoryLimit(),
          });
        await db.begin();
        while (parts.length > 0) await applier.applyStaged(parts.shift()!);
        if (events !== null) await applier.apply(events);
        if (commit) {
          await state.setLastLsn(commit.lsn);
          await db.commit();
          this.#bulkLoad = false;
          applier.transactionEnded();
          await this.#checkpointIfHolding();
          // Under 256 MB, DuckDB kept ~200 MB of blocks cached through a stream of inserts.
          await db.releaseCache(this.#copyMemoryLimit());
        }
      });
    } catch (error) {
      // The transaction comes again (from its first part) after the failure.
      for (const part of this.#heldBack) applier.discard(part);
      this.#heldBack = [];
      const bulkLoad = this.#bulkLoad;
      this.#bulkLoad = false; // rolled back
      if (bulkLoad && error instanceof Error && isOutOfMemory(error.message)) {
        throw new PgReplicateError('SINK_ERROR', error.message, {
          hint: 'the transaction is a bulk load (inserts only, larger than a batch), applied under copyMemoryLimit as copies are: raise it (--duckdb-copy-memory-limit, sink.copyMemoryLimit; default 64MB) and run again — nothing of it was applied',
          cause: error,
        });
      }
      const incomplete = error instanceof PgReplicateError ? error.cause : undefined;
      if (!(incomplete instanceof ResumedCopyIncompleteError)) throw error;
      await this.#recopy(incomplete.tableKey);
      throw new PgReplicateError('COPY_INCOMPLETE', incomplete.message, {
        hint: 'the table is marked to be copied again in full: the next run (or the automatic retry) does it',
        cause: incomplete,
      });
    } finally {
      // Staged but never applied (an earlier batch failed): its files are free again.
      if (staged !== null) applier.discard(staged);
      for (const part of parts) applier.discard(part);
    }
  }

  /**
   * Whether to hold back a part of a transaction that arrives in parts, not applied until the
   * transaction's last part comes: then what all its parts delete or update in place can go ahead,
   * outside its DuckDB transaction (see `apply-ahead.ts`) — a part applied at once leaves the
   * transaction open, and every later delete or update in it holds what it touches until the
   * commit. Only when the part deletes or updates something, no DuckDB transaction is open, and
   * for up to `HELD_BACK_PARTS` parts and `HELD_BACK_FILES` staging files (they wait on disk);
   * beyond, the parts held are applied as they would have been, partly ahead, and the rest of the
   * transaction as it comes.
   */
  #holdsBack(staged: StagedChanges): boolean {
    const { db } = this.#require();
    if (db.inTransaction || this.#heldBack.length + 1 >= HELD_BACK_PARTS) return false;
    let files = staged.steps.length;
    for (const part of this.#heldBack) files += part.steps.length;
    return files <= HELD_BACK_FILES && (this.#heldBack.length > 0 || staged.touchesRows);
  }

  /** Bytes one transaction's deletes and updates may make DuckDB hold (see `apply-ahead.ts`). */
  #aheadBudget(): number {
    if (this.#options.deleteMemory !== undefined) return sizeInBytes(this.#options.deleteMemory);
    const limit = sizeInBytes(this.#memoryLimit());
    return Number.isFinite(limit) ? limit / DELETE_AHEAD_SHARE : DEFAULT_DELETE_AHEAD_BUDGET;
  }

  /**
   * The memory limit for a change batch. A transaction that arrives in parts and whose first part
   * is inserts only is a bulk load, run under the copy's limit as copies are: DuckDB keeps the
   * blocks it writes cached up to its limit until the commit, and a 2 GB load in one transaction
   * peaked at 526 MB under 256 MB, 316 MB under 64 MB. A later part that updates or deletes gets
   * the sink's limit back: those join staged rows with the table, and failed under 80 MB. Raising
   * the limit inside a transaction is safe; lowering it is tried only between transactions (a
   * `SET` that fails aborts the transaction it runs in), and if DuckDB cannot get down to it, the
   * sink's limit stays.
   */
  async #configureForChanges(insertsOnly: boolean, lastPart: boolean): Promise<void> {
    const { db, applier } = this.#require();
    if (db.inTransaction && insertsOnly) return; // goes on under the limit it began with
    if (!db.inTransaction && !lastPart && insertsOnly && !applier.replaying) {
      const asCopies = {
        memoryLimit: this.#copyMemoryLimit(),
        preserveInsertionOrder: true,
        mergeRowGroups: false,
      };
      this.#bulkLoad = await db
        .configure(asCopies)
        .then(() => true)
        .catch(() => false);
      if (this.#bulkLoad) return;
    }
    await db.configure({
      memoryLimit: this.#memoryLimit(),
      preserveInsertionOrder: true,
      mergeRowGroups: true,
    });
    this.#bulkLoad = false;
  }

  async #isEmpty(target: string): Promise<boolean> {
    const { db } = this.#require();
    const rows = await db.rows(`SELECT 1 FROM ${target} LIMIT 1`, 'checking the rows copied before');
    return rows.length === 0;
  }

  /** Marks a table as not copied, without a plan to resume: the next run copies it in full. */
  async #recopy(key: string): Promise<void> {
    const { db, state, catalog } = this.#require();
    const table = this.#tables.find((candidate) => tableKey(candidate) === key);
    if (table === undefined) return;
    const plan = await catalog.plan(table);
    await db.transaction(async () => {
      const keyColumns = identityNames(table, plan.identity);
      await state.recordCopy(table, {
        copied: { done: false, snapshotLsn: null, keyColumns },
        plan: null,
        replayUntil: null,
      });
    });
  }

  async close(): Promise<void> {
    const open = this.#open;
    if (open === null) return;
    // A change batch still applying finishes (or fails) first; what it left open is rolled back.
    await this.#applying.catch(() => {});
    this.#open = null;
    this.#heldBack = []; // their files close with the pool: Postgres sends the transaction again
    await open.copier.abandon();
    open.files.close();
    rmSync(open.stagingDir, { recursive: true, force: true });
    // DuckDB checkpoints as it closes, caching blocks up to its limit: after a 5M-row copy that
    // peaked at 330–460 MB under memoryLimit and 295–305 MB under copyMemoryLimit, as fast.
    await open.db.rollback();
    await open.db
      .configure({ memoryLimit: this.#copyMemoryLimit(), preserveInsertionOrder: true })
      .catch(() => {});
    await open.db.close();
  }

  /** Runs a step; on failure rolls back (the pipeline redelivers from the stored state) and rethrows. */
  async #guard(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (error) {
      const open = this.#open;
      if (open !== null) {
        await open.copier.abandon();
        await open.db.rollback();
        open.applier.transactionEnded();
      }
      throw error instanceof PgReplicateError
        ? error
        : new PgReplicateError('SINK_ERROR', `the DuckDB sink failed: ${(error as Error).message}`, {
            cause: error,
          });
    }
  }

  #memoryLimit(): string {
    return this.#options.memoryLimit ?? MEMORY_LIMIT;
  }

  #copyMemoryLimit(): string {
    return smallerSize(this.#options.copyMemoryLimit ?? COPY_MEMORY_LIMIT, this.#memoryLimit());
  }

  /**
   * Checkpoints once appended rows hold more than an eighth of the copy's memory limit (8 MiB when
   * it is not a plain size): the copy runs under it, and between change transactions the sink
   * lowers DuckDB's limit to it (see `DuckDbDatabase.checkpointIfHolding`). A checkpoint of many
   * tables needs memory of its own: copying 1,000 one-row tables peaked at 294 MB checkpointing
   * after a quarter, 252 MB after an eighth (2% slower), 232 MB after a sixteenth (20% slower).
   * Measuring costs ~1 ms, so it is done only once the tables appended to since could hold that
   * much: many tables with few rows each are what DuckDB's own checkpoint, after 16 MB of WAL,
   * does not catch.
   */
  async #checkpointIfHolding(): Promise<void> {
    const limit = sizeInBytes(this.#copyMemoryLimit());
    const bytes = Number.isFinite(limit) ? limit / 8 : 8 * 1024 * 1024;
    // At least what the tables appended to hold: DuckDB's 16 KiB per column of each.
    let appended = 0;
    for (const table of this.#appendedTo) appended += table.columns.length * SEGMENT_BYTES;
    if (appended < bytes) return;
    this.#appendedTo.clear();
    await this.#require().db.checkpointIfHolding(bytes, this.#memoryLimit());
  }

  #noteAppended(tables: Iterable<TableSchema>): void {
    // A relation's events share its schema object: the set holds each table once.
    for (const table of tables) this.#appendedTo.add(table);
  }

  #require(): OpenState {
    if (this.#open === null) {
      throw new PgReplicateError('SINK_ERROR', 'the DuckDB sink is not open', { hint: 'call open() first' });
    }
    return this.#open;
  }
}

/** The tables of a batch's row changes (in order, with repeats). */
function* appendedTables(events: readonly ChangeEvent[]): Iterable<TableSchema> {
  for (const event of events) if ('table' in event) yield event.table;
}
