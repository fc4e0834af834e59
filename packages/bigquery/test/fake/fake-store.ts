/**
 * The fake's state: projects → datasets → tables, in memory, shared by its REST and gRPC faces,
 * plus the background apply job that moves CDC tables' watermarks (when staleness is modeled).
 */
import type { FakeTable } from './fake-table.js';

export interface FakeDataset {
  readonly project: string;
  readonly id: string;
  readonly location: string;
  readonly creationTime: number;
  readonly tables: Map<string, FakeTable>;
}

export interface FakeStoreOptions {
  /**
   * Model `max_staleness`: run the background apply job this often (ms). Unset: changes are
   * applied as they arrive (queries are always fresh).
   */
  applyIntervalMs?: number | undefined;
  /** How long the Storage Write API keeps validating against a table's old schema after tables.patch. */
  schemaPropagationMs?: number | undefined;
}

export class FakeStore {
  readonly datasets = new Map<string, FakeDataset>();
  readonly options: FakeStoreOptions;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: FakeStoreOptions = {}) {
    this.options = options;
    if (options.applyIntervalMs !== undefined) {
      this.#timer = setInterval(() => this.applyAll(), options.applyIntervalMs);
      this.#timer.unref();
    }
  }

  get appliesImmediately(): boolean {
    return this.options.applyIntervalMs === undefined;
  }

  dataset(project: string, dataset: string): FakeDataset | undefined {
    return this.datasets.get(`${project}.${dataset}`);
  }

  createDataset(project: string, dataset: string, location: string): FakeDataset {
    const created: FakeDataset = {
      project,
      id: dataset,
      location,
      creationTime: Date.now(),
      tables: new Map(),
    };
    this.datasets.set(`${project}.${dataset}`, created);
    return created;
  }

  table(project: string, dataset: string, table: string): FakeTable | undefined {
    return this.dataset(project, dataset)?.tables.get(table);
  }

  /** The background apply job of every CDC table. */
  applyAll(): void {
    const now = Date.now();
    for (const dataset of this.datasets.values()) {
      for (const table of dataset.tables.values()) if (table.type === 'TABLE') table.backgroundApply(now);
    }
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
  }
}
