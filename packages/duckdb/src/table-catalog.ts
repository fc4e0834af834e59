/**
 * The sink's view of its tables: makes each DuckDB table (and changelog table) match its Postgres
 * schema, and hands out the {@link TablePlan} for a schema, built once per schema object (a schema
 * change arrives as a new object, so a plan never outlives the shape it was built for).
 */
import type { TableSchema, TypeRegistry } from 'pg-replicate';
import { type ChangelogMode, changelogColumns, changelogName } from './changelog.js';
import type { DuckDbDatabase } from './duckdb-database.js';
import type { StateStore } from './state-store.js';
import { readColumns, syncTable, type WantedColumn } from './table-ddl.js';
import {
  buildPlan,
  checkColumns,
  expectedMappings,
  identityNames,
  rowIdentity,
  type TablePlan,
} from './table-plan.js';

/** What the catalog keeps: materialized tables, changelog tables, or both. */
export interface CatalogOptions {
  readonly changelog: ChangelogMode;
}

/** Creates and alters the DuckDB tables, and hands out the plan for each schema. */
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

  /**
   * At start: creates the DuckDB tables that do not exist yet. Existing tables are left as they
   * are: their shape matches the position the sink stopped at, while `table` is the catalog's
   * shape now, which may be ahead of the changes still to come; the first change of each table
   * (or its copy) brings it up to date through {@link plan}.
   */
  async create(table: TableSchema): Promise<void> {
    checkColumns(table);
    const identity = rowIdentity(table);
    const wanted = this.#wanted(table);
    if (this.materialized && (await readColumns(this.#db, table.schema, table.name)) === null) {
      await syncTable(this.#db, table.schema, table.name, wanted);
    }
    if (this.changelog && (await readColumns(this.#db, table.schema, changelogName(table))) === null) {
      await syncTable(this.#db, table.schema, changelogName(table), changelogColumns(table, wanted));
    }
    await this.#state.describeTable(table, identityNames(table, identity));
  }

  /** The plan for a schema, if {@link plan} built it already (no DuckDB work needed). */
  knownPlan(table: TableSchema): TablePlan | undefined {
    return this.#plans.get(table);
  }

  /**
   * The plan for a schema. The first time a schema is seen, its DuckDB tables are made to match
   * it (inside the caller's transaction); `rebuild`: the transaction deleted rows of the table,
   * so a changed table is rebuilt rather than altered (see `syncTable`).
   */
  async plan(table: TableSchema, rebuild = false): Promise<TablePlan> {
    const known = this.#plans.get(table);
    if (known !== undefined) return known;
    checkColumns(table);
    const identity = rowIdentity(table);
    const wanted = this.#wanted(table);
    if (this.materialized) await syncTable(this.#db, table.schema, table.name, wanted, rebuild);
    if (this.changelog)
      await syncTable(this.#db, table.schema, changelogName(table), changelogColumns(table, wanted));
    await this.#state.describeTable(table, identityNames(table, identity));
    return this.#build(table);
  }

  #wanted(table: TableSchema): WantedColumn[] {
    return expectedMappings(table, this.#types).map((mapping, i) => ({
      name: table.columns[i]!.name,
      duckType: mapping.duckType,
    }));
  }

  async #build(table: TableSchema): Promise<TablePlan> {
    const name = this.materialized ? table.name : changelogName(table);
    const actual = (await readColumns(this.#db, table.schema, name)) ?? new Map<string, string>();
    const plan = buildPlan(table, this.#types, actual);
    this.#plans.set(table, plan);
    return plan;
  }
}
