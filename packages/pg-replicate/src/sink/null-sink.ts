/**
 * Counts and discards: the sink for benchmarks and dry runs. Everything is "durable" at once; the
 * state lives in memory, so every run starts fresh unless the same instance is reused.
 */

import type { CopiedRows } from '../copy-batch.js';
import type { Lsn } from '../lsn.js';
import { type TableSchema, tableKey } from '../schema.js';
import type { ChangeBatch, Sink, SinkState } from './sink.js';

export class NullSink implements Sink {
  readonly name = 'null';
  readonly transactional = true;
  rowsCopied = 0;
  changes = 0;
  batches = 0;
  readonly #copied = new Map<string, Lsn | null>();
  #lastLsn: Lsn | null = null;

  async open(): Promise<SinkState> {
    return { copiedTables: new Map(this.#copied), lastLsn: this.#lastLsn };
  }

  async prepare(): Promise<void> {}

  async beginCopy(table: TableSchema): Promise<void> {
    this.#copied.delete(tableKey(table));
  }

  async writeRows(_table: TableSchema, rows: CopiedRows): Promise<void> {
    this.rowsCopied += rows.length;
  }

  async endCopy(table: TableSchema, snapshotLsn: Lsn | null): Promise<void> {
    this.#copied.set(tableKey(table), snapshotLsn);
  }

  async writeChanges(batch: ChangeBatch): Promise<void> {
    this.changes += batch.events.length;
    this.batches++;
    if (batch.commit) this.#lastLsn = batch.commit.lsn;
  }

  async close(): Promise<void> {}
}
