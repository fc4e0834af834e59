/**
 * The sink's view of its tables: makes each DuckDB table (and changelog table) match its Postgres
 * schema, and hands out the {@link TablePlan} for a schema, built once per schema object (a schema
 * change arrives as a new object, so a plan never outlives the shape it was built for).
 */
import type { TableSchema, TypeRegistry } from 'pg-replicate';
import { type ChangelogMode, changelogColumns, changelogName } from './changelog.js';
import type { DuckDbDatabase } from './duckdb-database.js';
import type { StateStore } from './state-store.js';
import { readColumns, renamedColumns, syncTable, type WantedColumn } from './table-ddl.js';
import { buildPlan, checkIdentity, expectedMappings, identityNames, type TablePlan } from './table-plan.js';

export interface CatalogOptions {
  readonly changelog: ChangelogMode;
  readonly appendOnlyWithoutKey: boolean;
}

export class TableCatalog {
  readonly #db: DuckDbDatabase;
  readonly #types: TypeRegistry;
  readonly #state: StateStore;
  readonly #options: CatalogOptions;
  readonly #plans = new WeakMap<TableSchema, TablePlan>();

  constructor(db: DuckDbDatabase, types: TypeRegistry, state: StateStore, options: CatalogOptions) {
    this.#db = db;
    this.#types = types;
    this.#state = state;
    this.#options = options;
  }

  get materialized(): boolean {
    return this.#options.changelog !== 'only';
  }

  get changelog(): boolean {
    return this.#options.changelog !== 'off';
  }

  /** Creates or adapts the DuckDB tables of `table` (inside the caller's transaction). */
  async prepare(table: TableSchema, previous?: TableSchema): Promise<TablePlan> {
    const identity = checkIdentity(table, this.#options.appendOnlyWithoutKey);
    const wanted: WantedColumn[] = expectedMappings(table, this.#types).map((mapping, i) => ({
      name: table.columns[i]!.name,
      duckType: mapping.duckType,
    }));
    const renames = previous === undefined ? new Map<string, string>() : renamedColumns(previous, table);
    if (this.materialized) await syncTable(this.#db, table.schema, table.name, wanted, renames);
    if (this.changelog) {
      await syncTable(this.#db, table.schema, changelogName(table), changelogColumns(table, wanted), renames);
    }
    await this.#state.describeTable(table, identityNames(table, identity));
    return this.#build(table);
  }

  /** The plan for a schema, preparing the table first if this schema was never seen. */
  async plan(table: TableSchema): Promise<TablePlan> {
    return this.#plans.get(table) ?? (await this.prepare(table));
  }

  async #build(table: TableSchema): Promise<TablePlan> {
    const name = this.materialized ? table.name : changelogName(table);
    const actual = (await readColumns(this.#db, table.schema, name)) ?? new Map<string, string>();
    const plan = buildPlan(table, this.#types, actual, this.#options.appendOnlyWithoutKey);
    this.#plans.set(table, plan);
    return plan;
  }
}
