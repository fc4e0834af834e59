/**
 * The replicated tables as the sink runs them: for each, its plan, the version table that holds
 * its rows, the view users query, and the appender writing to that version.
 *
 * Why versions: a table with active CDC accepts no DML, so a TRUNCATE (or a new copy) cannot
 * empty it. Instead the rows go to a fresh version table and the view is switched to it; the old
 * version is dropped. The state table records which version is current, and is written before the
 * view is switched, so at start (`prepare`) the view is pointed back at the recorded version and
 * versions nobody records (left by a crash) are dropped.
 */
import type { managedwriter } from '@google-cloud/bigquery-storage';
import { type Lsn, PgReplicateError, type TableSchema, type TypeRegistry, tableKey } from 'pg-replicate';
import { isVersionOf, newVersionName } from './naming.js';
import { type ResolvedOptions, stalenessInterval } from './options.js';
import type { RecentValues } from './recent-values.js';
import { RowConverter } from './row-encoder.js';
import type { StateTable, TableState } from './state-table.js';
import { sameType, type TableAdmin } from './table-admin.js';
import { TableAppender } from './table-appender.js';
import { planTable, type TablePlan } from './table-plan.js';

/** A table being replicated. */
export interface LiveTable {
  plan: TablePlan;
  converter: RowConverter;
  state: TableState;
  appender: TableAppender;
}

/** A copy in progress: rows go to `version` until it replaces the current one. */
export interface PendingCopy {
  readonly plan: TablePlan;
  readonly converter: RowConverter;
  readonly version: string;
  readonly appender: TableAppender;
}

/** How the REST API spells "no staleness". */
const NO_STALENESS = '0-0 0 0:0:0';

export class TableCatalog {
  readonly #admin: TableAdmin;
  readonly #writer: managedwriter.WriterClient;
  readonly #stateTable: StateTable;
  readonly #cache: RecentValues;
  readonly #options: ResolvedOptions;
  readonly #types: TypeRegistry;
  readonly #stored: Map<string, TableState>;
  readonly #tables = new Map<string, LiveTable>();
  readonly #opened = Date.now();

  constructor(
    admin: TableAdmin,
    writer: managedwriter.WriterClient,
    stateTable: StateTable,
    cache: RecentValues,
    options: ResolvedOptions,
    types: TypeRegistry,
    stored: ReadonlyMap<string, TableState>,
  ) {
    this.#admin = admin;
    this.#writer = writer;
    this.#stateTable = stateTable;
    this.#cache = cache;
    this.#options = options;
    this.#types = types;
    this.#stored = new Map(stored);
  }

  /** The live table of `key`; throws if it was never prepared. */
  get(key: string): LiveTable {
    const table = this.#tables.get(key);
    if (table === undefined) throw new PgReplicateError('SINK_ERROR', `table ${key} was not prepared`);
    return table;
  }

  get tables(): Iterable<LiveTable> {
    return this.#tables.values();
  }

  /** Creates what is missing, adds new columns, points views at their recorded versions, drops leftovers. */
  async prepare(tables: readonly TableSchema[]): Promise<void> {
    const plans = tables.map((table) => planTable(table, this.#types));
    this.#checkViewNames(plans);
    for (const plan of plans) {
      const stored = this.#stored.get(plan.key);
      let state: TableState;
      let added = false;
      if (stored === undefined) {
        state = { version: newVersionName(plan.view), copied: false, snapshotLsn: null };
        await this.#createVersion(plan, state.version);
        await this.#stateTable.setTable(plan.key, state);
        this.#stored.set(plan.key, state);
      } else {
        state = stored;
        added = await this.#checkVersion(plan, state.version);
        // Rows written before this process started are not in the cache.
        this.#cache.untracked(plan.key, this.#opened);
      }
      await this.#admin.ensureView(plan.view, state.version, added);
      const previous = this.#tables.get(plan.key);
      await previous?.appender.close();
      this.#tables.set(plan.key, {
        plan,
        converter: this.#converter(plan),
        state,
        appender: this.#appender(plan, state.version),
      });
    }
    await this.#dropLeftovers();
  }

  /** A fresh, empty version for a copy of `table`; the view still shows the current one. */
  async startCopy(table: TableSchema): Promise<PendingCopy> {
    this.get(tableKey(table));
    const plan = planTable(table, this.#types);
    const version = newVersionName(plan.view);
    await this.#createVersion(plan, version);
    return { plan, converter: this.#converter(plan), version, appender: this.#appender(plan, version) };
  }

  /** The copy is complete: it becomes the current version (state first, then the view). */
  async finishCopy(copy: PendingCopy, snapshotLsn: Lsn | null): Promise<void> {
    const live = this.get(copy.plan.key);
    await this.#switch(live, copy, { version: copy.version, copied: true, snapshotLsn });
    // Copied rows are not in the cache: lookups wait until BigQuery has them applied.
    this.#cache.clearTable(copy.plan.key, Date.now());
  }

  /** TRUNCATE: a fresh, empty version replaces the current one. */
  async truncate(key: string): Promise<void> {
    const live = this.get(key);
    const version = newVersionName(live.plan.view);
    await this.#createVersion(live.plan, version);
    const next = {
      plan: live.plan,
      converter: live.converter,
      version,
      appender: this.#appender(live.plan, version),
    };
    await this.#switch(live, next, { ...live.state, version });
    // Every row of the new version is written by this process from now on.
    this.#cache.clearTable(key, 0);
  }

  /** The table's columns changed: add new ones to BigQuery before rows that carry them are sent. */
  async applySchema(table: TableSchema): Promise<void> {
    const live = this.get(tableKey(table));
    const plan = planTable(table, this.#types);
    this.#checkCompatible(plan, live.state.version, live.plan.fields);
    const added = await this.#admin.addColumns(live.state.version, plan.fields);
    if (added.length > 0) await this.#admin.ensureView(plan.view, live.state.version, true);
    live.plan = plan;
    live.converter = this.#converter(plan);
    live.appender.setDescriptor(plan.descriptor);
    this.#cache.clearTable(plan.key, Date.now());
  }

  async close(): Promise<void> {
    for (const live of this.#tables.values()) await live.appender.close();
    this.#tables.clear();
  }

  async #switch(
    live: LiveTable,
    next: Omit<PendingCopy, 'plan'> & { plan: TablePlan },
    state: TableState,
  ): Promise<void> {
    const old = live.state.version;
    await this.#stateTable.setTable(next.plan.key, state);
    this.#stored.set(next.plan.key, state);
    await this.#admin.ensureView(next.plan.view, state.version);
    await live.appender.close();
    live.plan = next.plan;
    live.converter = next.converter;
    live.appender = next.appender;
    live.state = state;
    if (old !== state.version) await this.#admin.deleteTable(old);
  }

  async #createVersion(plan: TablePlan, version: string): Promise<void> {
    await this.#admin.createTable(version, plan.fields, {
      primaryKey: plan.keyColumns.map((column) => column.name),
      clustering: plan.clustering,
      maxStaleness: this.#staleness(),
    });
  }

  /** The tables' `max_staleness`, or undefined for none. */
  #staleness(): string | undefined {
    return this.#options.maxStalenessMs > 0 ? stalenessInterval(this.#options.maxStalenessMs) : undefined;
  }

  /** The recorded version exists, has the key and the columns' types; adds missing columns (true if any). */
  async #checkVersion(plan: TablePlan, version: string): Promise<boolean> {
    const info = await this.#admin.getTable(version);
    if (info === undefined) {
      throw new PgReplicateError(
        'SINK_STATE_INVALID',
        `${plan.key} is recorded in ${this.#admin.qualified(version)}, which does not exist`,
        {
          hint: `the table was dropped behind the sink: delete the row "table:${plan.key}" of this pipeline from _pg_replicate_state (and the view ${plan.view}) to copy it again`,
        },
      );
    }
    const wantedKey = plan.keyColumns.map((column) => column.name).join(', ');
    if (info.primaryKey.join(', ') !== wantedKey) {
      throw new PgReplicateError(
        'SCHEMA_UNSUPPORTED',
        `${plan.key}: the BigQuery table has primary key (${info.primaryKey.join(', ')}), Postgres now (${wantedKey})`,
        { hint: 'a changed key needs a new copy: drop the view and the state row of the table and restart' },
      );
    }
    this.#checkCompatible(plan, version, info.fields);
    const staleness = this.#staleness() ?? NO_STALENESS;
    if ((info.maxStaleness ?? NO_STALENESS) !== staleness)
      await this.#admin.setMaxStaleness(version, staleness);
    const added = await this.#admin.addColumns(version, plan.fields);
    if (added.length > 0)
      this.#options.logger.info(`${plan.key}: added column(s) ${added.map((f) => f.name).join(', ')}`);
    return added.length > 0;
  }

  /** Columns present on both sides keep their BigQuery type and mode. */
  #checkCompatible(
    plan: TablePlan,
    version: string,
    existing: readonly { name: string; type: string; mode?: string }[],
  ): void {
    for (const field of plan.fields) {
      const current = existing.find((candidate) => candidate.name.toLowerCase() === field.name.toLowerCase());
      if (current === undefined) continue;
      const mode = current.mode ?? 'NULLABLE';
      const modeOk =
        mode === field.mode ||
        (mode === 'NULLABLE' && field.mode === 'REQUIRED') ||
        (mode === 'REQUIRED' && field.mode === 'NULLABLE');
      if (!sameType(current.type, field.type) || !modeOk) {
        throw new PgReplicateError(
          'SCHEMA_UNSUPPORTED',
          `${plan.key}.${field.name} is ${current.type} ${mode} in ${this.#admin.qualified(version)}, but maps to ${field.type} ${field.mode} now`,
          {
            hint: 'BigQuery cannot change a column type in place: copy the table again (drop its view and state row), or add a new column in Postgres instead',
          },
        );
      }
    }
  }

  #checkViewNames(plans: readonly TablePlan[]): void {
    const byView = new Map<string, string>();
    for (const live of this.#tables.values()) byView.set(live.plan.view.toLowerCase(), live.plan.key);
    for (const plan of plans) {
      const other = byView.get(plan.view.toLowerCase());
      if (other !== undefined && other !== plan.key) {
        throw new PgReplicateError(
          'SCHEMA_UNSUPPORTED',
          `${plan.key} and ${other} would both be ${plan.view} in BigQuery`,
          {
            hint: 'rename one of the tables, or replicate them into different datasets',
          },
        );
      }
      byView.set(plan.view.toLowerCase(), plan.key);
    }
  }

  /** Drops version tables of our views that no state records (left by a crash or a finished switch). */
  async #dropLeftovers(): Promise<void> {
    const names = await this.#admin.listTables();
    const current = new Set([...this.#stored.values()].map((state) => state.version));
    for (const live of this.#tables.values()) {
      for (const name of names) {
        if (isVersionOf(name, live.plan.view) && !current.has(name)) {
          this.#options.logger.info(
            `dropping ${this.#admin.qualified(name)}, a version of ${live.plan.view} no longer used`,
          );
          await this.#admin.deleteTable(name);
        }
      }
    }
  }

  #converter(plan: TablePlan): RowConverter {
    return new RowConverter(plan, this.#options.unrepresentable, (message) =>
      this.#options.logger.warn(message),
    );
  }

  #appender(plan: TablePlan, version: string): TableAppender {
    return new TableAppender(
      this.#writer,
      this.#admin.writePath(version),
      `${plan.key} (${version})`,
      plan.descriptor,
      {
        maxBatchBytes: this.#options.maxBatchBytes,
        maxInFlight: this.#options.maxInFlight,
        backoff: this.#options.retry,
        requestTimeoutMs: this.#options.requestTimeoutMs,
        schemaPropagationMs: this.#options.schemaPropagationMs,
        log: (message) => this.#options.logger.warn(message),
      },
    );
  }
}
