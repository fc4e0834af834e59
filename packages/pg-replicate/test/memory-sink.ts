/**
 * A transactional in-memory sink for tests: materializes every table as rows of Postgres text
 * values keyed by identity, applies change batches atomically at `commit`, and can be told to
 * fail at a chosen moment (a crash: whatever was not committed is lost). It is strict: an insert
 * of an existing key or an update/delete of a missing one is recorded as an anomaly, so a test
 * sees duplicates and losses instead of having them papered over.
 */

import type { CopiedRows } from '../src/copy-batch.js';
import type { ChangeEvent } from '../src/events.js';
import type { Lsn } from '../src/lsn.js';
import type { RowData } from '../src/row.js';
import { identityColumns, type TableSchema, tableKey } from '../src/schema.js';
import type { ChangeBatch, Sink, SinkState } from '../src/sink/sink.js';

type Row = (string | null)[];

interface Stored {
  tables: Map<string, Map<string, Row>>;
  columns: Map<string, string[]>;
  copied: Map<string, Lsn | null>;
  lastLsn: Lsn | null;
}

function clone(stored: Stored): Stored {
  return {
    tables: new Map([...stored.tables].map(([k, v]) => [k, new Map(v)])),
    columns: new Map(stored.columns),
    copied: new Map(stored.copied),
    lastLsn: stored.lastLsn,
  };
}

export class MemorySink implements Sink {
  readonly name = 'memory';
  readonly transactional = true;
  /** Durable contents (what survives a crash). */
  durable: Stored = { tables: new Map(), columns: new Map(), copied: new Map(), lastLsn: null };
  #working: Stored | null = null;
  readonly anomalies: string[] = [];
  /** Throws (simulating a crash) when this returns true; called before each write. */
  failWhen: ((call: string, count: number) => boolean) | null = null;
  #calls = 0;
  /** Slows row writes down, so that concurrent writers get a chance during a copy. */
  rowDelayMs = 0;
  batches: ChangeBatch[] = [];

  async open(): Promise<SinkState> {
    this.#working = null;
    return { copiedTables: new Map(this.durable.copied), lastLsn: this.durable.lastLsn };
  }

  async prepare(tables: readonly TableSchema[]): Promise<void> {
    for (const table of tables) {
      this.durable.columns.set(
        tableKey(table),
        table.columns.map((c) => c.name),
      );
      if (!this.durable.tables.has(tableKey(table))) this.durable.tables.set(tableKey(table), new Map());
    }
  }

  async beginCopy(table: TableSchema): Promise<void> {
    this.#maybeFail('beginCopy');
    this.durable.tables.set(tableKey(table), new Map());
    this.durable.copied.delete(tableKey(table));
    this.#working = clone(this.durable);
  }

  async writeRows(table: TableSchema, rows: CopiedRows): Promise<void> {
    this.#maybeFail('writeRows');
    if (this.rowDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.rowDelayMs));
    const target = this.#working!.tables.get(tableKey(table))!;
    for (const row of rows) {
      const values = texts(row);
      const key = keyOf(
        table,
        values,
        table.columns.map((c) => c.name),
      );
      if (target.has(key)) this.anomalies.push(`copy: duplicate ${tableKey(table)} ${key}`);
      target.set(key, values);
    }
  }

  async endCopy(table: TableSchema, snapshotLsn: Lsn | null): Promise<void> {
    this.#maybeFail('endCopy');
    this.#working!.copied.set(tableKey(table), snapshotLsn);
    this.durable = this.#working!;
    this.#working = null;
  }

  async writeChanges(batch: ChangeBatch): Promise<void> {
    this.#maybeFail('writeChanges');
    this.batches.push(batch);
    this.#working ??= clone(this.durable);
    for (const event of batch.events) this.#apply(this.#working, event);
    if (batch.commit) {
      this.#working.lastLsn = batch.commit.lsn;
      this.durable = this.#working;
      this.#working = null;
    }
  }

  async close(): Promise<void> {
    this.#working = null;
  }

  /** Durable rows of a table as sorted tab-joined text lines (comparable with Postgres). */
  rows(table: string): string[] {
    const rows = this.durable.tables.get(table) ?? new Map<string, Row>();
    return [...rows.values()].map((row) => row.map((v) => (v === null ? '\\N' : v)).join('\t')).sort();
  }

  #maybeFail(call: string): void {
    this.#calls++;
    if (this.failWhen?.(call, this.#calls)) throw new Error(`simulated sink failure in ${call}`);
  }

  #apply(state: Stored, event: ChangeEvent): void {
    if (event.op === 'schema') {
      state.columns.set(
        tableKey(event.table),
        event.table.columns.map((c) => c.name),
      );
      return;
    }
    if (event.op === 'truncate') {
      for (const table of event.tables) state.tables.set(tableKey(table), new Map());
      return;
    }
    const key = tableKey(event.table);
    const target = state.tables.get(key) ?? new Map<string, Row>();
    state.tables.set(key, target);
    const names = event.table.columns.map((c) => c.name);
    if (event.op === 'insert') {
      const values = texts(event.new);
      const id = keyOf(event.table, values, names);
      if (target.has(id)) this.anomalies.push(`insert: duplicate ${key} ${id}`);
      target.set(id, values);
      return;
    }
    const oldValues = event.old === undefined ? undefined : texts(event.old);
    if (event.op === 'delete') {
      const id = keyOf(event.table, oldValues!, names);
      if (!target.delete(id)) this.anomalies.push(`delete: missing ${key} ${id}`);
      return;
    }
    const newValues = texts(event.new);
    const oldId = keyOf(event.table, oldValues ?? newValues, names);
    const existing = target.get(oldId);
    if (existing === undefined) {
      this.anomalies.push(`update: missing ${key} ${oldId}`);
      return;
    }
    target.delete(oldId);
    const merged = newValues.map((value, i) => (event.new.isUnchangedToast(i) ? existing[i]! : value));
    target.set(keyOf(event.table, merged, names), merged);
  }
}

/**
 * A {@link MemorySink} that takes two change batches at once (`maxChangeBatchesInFlight`) and
 * applies them one after another, each after a delay — as a sink that stages a batch while its
 * database applies the one before. A batch after a failed one fails without being applied.
 */
export class PipelinedMemorySink extends MemorySink {
  readonly maxChangeBatchesInFlight = 2;
  /** writeChanges calls so far, and the most ever outstanding at once. */
  given = 0;
  maxOutstanding = 0;
  /** This call (1-based) is rejected at once, outside the sink's order of batches. */
  rejectCall = 0;
  #outstanding = 0;
  #last: Promise<void> = Promise.resolve();

  constructor(readonly delayMs = 10) {
    super();
  }

  override writeChanges(batch: ChangeBatch): Promise<void> {
    this.given++;
    // As a wrapper around the sink would: the call fails without the sink ever seeing the batch.
    if (this.given === this.rejectCall) return Promise.reject(new Error('call rejected before the sink'));
    this.maxOutstanding = Math.max(this.maxOutstanding, ++this.#outstanding);
    const previous = this.#last;
    const apply = async () => {
      try {
        await previous;
        await new Promise((resolve) => setTimeout(resolve, this.delayMs));
        await super.writeChanges(batch);
      } finally {
        this.#outstanding--;
      }
    };
    this.#last = apply();
    return this.#last;
  }

  override async close(): Promise<void> {
    await this.#last.catch(() => {});
    this.#last = Promise.resolve();
    await super.close();
  }
}

function texts(row: RowData): Row {
  const values: Row = [];
  for (let i = 0; i < row.length; i++)
    values.push(row.isUnchangedToast(i) ? '<unchanged toast>' : row.text(i));
  return values;
}

function keyOf(table: TableSchema, values: Row, names: readonly string[]): string {
  const identity = identityColumns(table);
  const columns = identity.length > 0 ? identity : names;
  return JSON.stringify(columns.map((name) => values[names.indexOf(name)]));
}
