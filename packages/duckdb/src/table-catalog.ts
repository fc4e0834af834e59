/**
 * The sink's view of its tables: makes each DuckDB table (and changelog table) match its Postgres
 * schema, and hands out the {@link TablePlan} for a schema, built once per schema object (a schema
 * change arrives as a new object, so a plan never outlives the shape it was built for).
 */
import type { TableSchema, TypeRegistry } from 'pg-replicate';
import { type ChangelogMode, changelogColumns, changelogName } from './changelog.js';
import type { DuckDbDatabase } from './duckdb-database.js';
import { qualified } from './sql.js';
import type { StateStore, TableDescription } from './state-store.js';
import { readAllColumns, readColumns, syncTable, type WantedColumn } from './table-ddl.js';
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
  /**
   * The columns of each DuckDB table as this catalog last read or made them (null: no such table).
   * Every DDL goes through here, and a failed transaction ends the sink's session (it is opened
   * again, with a new catalog), so this never outlives a rollback.
   */
  readonly #columns = new Map<string, ReadonlyMap<string, string> | null>();

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
   * are: their shape matches the position the sink stopped at, while `tables` are the catalog's
   * shapes now, which may be ahead of the changes still to come; the first change of each table
   * (or its copy) brings it up to date through {@link plan}. The columns of all tables are read in
   * one query before and after (a query per table took ~4 ms, more the more tables the file has).
   */
  async create(tables: readonly TableSchema[]): Promise<void> {
    await this.#readAll(tables);
    let created = false;
    const described: TableDescription[] = [];
    for (const table of tables) {
      checkColumns(table);
      const identity = rowIdentity(table);
      const wanted = this.#wanted(table);
      if (this.materialized && (await this.#read(table.schema, table.name)) === null) {
        created = (await this.#sync(table.schema, table.name, wanted)) || created;
      }
      if (this.changelog && (await this.#read(table.schema, changelogName(table))) === null) {
        const columns = changelogColumns(table, wanted);
        created = (await this.#sync(table.schema, changelogName(table), columns)) || created;
      }
      described.push({ table, keyColumns: identityNames(table, identity) });
    }
    await this.#state.describeTables(described);
    if (created) await this.#readAll(tables);
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
    if (this.materialized) await this.#sync(table.schema, table.name, wanted, rebuild);
    if (this.changelog) await this.#sync(table.schema, changelogName(table), changelogColumns(table, wanted));
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
    const actual = (await this.#read(table.schema, name)) ?? new Map<string, string>();
    const plan = buildPlan(table, this.#types, actual);
    this.#plans.set(table, plan);
    return plan;
  }

  async #read(schema: string, table: string): Promise<ReadonlyMap<string, string> | null> {
    const key = qualified(schema, table);
    if (!this.#columns.has(key)) this.#columns.set(key, await readColumns(this.#db, schema, table));
    return this.#columns.get(key)!;
  }

  /** Reads the columns of every table; those of `tables` not found are known not to exist. */
  async #readAll(tables: readonly TableSchema[]): Promise<void> {
    const all = await readAllColumns(this.#db);
    for (const table of tables) {
      for (const name of [table.name, changelogName(table)]) {
        const key = qualified(table.schema, name);
        this.#columns.set(key, all.get(key) ?? null);
      }
    }
  }

  /** {@link syncTable} with the columns known; a table it changed is read again when next needed. */
  async #sync(
    schema: string,
    table: string,
    wanted: readonly WantedColumn[],
    rebuild = false,
  ): Promise<boolean> {
    const key = qualified(schema, table);
    const changed = await syncTable(
      this.#db,
      schema,
      table,
      wanted,
      rebuild,
      await this.#read(schema, table),
    );
    if (changed) this.#columns.delete(key);
    return changed;
  }
}
