/**
 * A sink wrapped for the service: every write is timed for the metrics, and an error a sink throws
 * that is not a {@link PgReplicateError} (a driver's own error) becomes `SINK_UNAVAILABLE` (socket
 * failures: retried) or `SINK_ERROR` (anything else: stops), so the error policy and the logs can
 * say it came from the sink and not from Postgres.
 */

import type { CopiedRows } from '../copy-batch.js';
import { PgReplicateError } from '../errors.js';
import type { Lsn } from '../lsn.js';
import { classifyFailure } from '../retry/failure-policy.js';
import type { TableSchema } from '../schema.js';
import type { ChangeBatch, CopyPlan, Sink, SinkContext, SinkState } from '../sink/sink.js';
import type { SinkOperation } from './metrics.js';

/** Receives the duration of each timed sink call, in seconds. */
export type SinkTimer = (operation: SinkOperation, seconds: number) => void;

export class InstrumentedSink implements Sink {
  readonly #inner: Sink;
  readonly #timer: SinkTimer;

  constructor(inner: Sink, timer: SinkTimer) {
    this.#inner = inner;
    this.#timer = timer;
    const chunkCopied = inner.chunkCopied?.bind(inner);
    if (chunkCopied !== undefined) {
      this.chunkCopied = (table, index) =>
        this.#call('recording a copied chunk', () => chunkCopied(table, index), 'copy_commit');
    }
  }

  get name(): string {
    return this.#inner.name;
  }

  get transactional(): boolean {
    return this.#inner.transactional;
  }

  get maxChangeBatchesInFlight(): number | undefined {
    return this.#inner.maxChangeBatchesInFlight;
  }

  open(context: SinkContext): Promise<SinkState> {
    return this.#call('opening', () => this.#inner.open(context));
  }

  prepare(tables: readonly TableSchema[]): Promise<void> {
    return this.#call('preparing tables', () => this.#inner.prepare(tables));
  }

  beginCopy(table: TableSchema, snapshotLsn: Lsn | null, plan?: CopyPlan): Promise<void> {
    return this.#call('starting a copy', () => this.#inner.beginCopy(table, snapshotLsn, plan));
  }

  /** Present only when the wrapped sink records chunks. */
  readonly chunkCopied?: (table: TableSchema, index: number) => Promise<void>;

  writeRows(table: TableSchema, rows: CopiedRows): Promise<void> {
    return this.#call('writing copied rows', () => this.#inner.writeRows(table, rows), 'rows');
  }

  endCopy(table: TableSchema, snapshotLsn: Lsn | null): Promise<void> {
    return this.#call('finishing a copy', () => this.#inner.endCopy(table, snapshotLsn), 'copy_commit');
  }

  writeChanges(batch: ChangeBatch): Promise<void> {
    const operation = batch.events.length === 0 ? 'position' : 'changes';
    return this.#call('writing changes', () => this.#inner.writeChanges(batch), operation);
  }

  close(): Promise<void> {
    return this.#call('closing', () => this.#inner.close());
  }

  async #call<T>(what: string, run: () => Promise<T>, operation?: SinkOperation): Promise<T> {
    const started = performance.now();
    try {
      const result = await run();
      if (operation !== undefined) this.#timer(operation, (performance.now() - started) / 1000);
      return result;
    } catch (error) {
      if (error instanceof PgReplicateError) throw error;
      // A socket-level failure of a networked sink can pass; anything else needs a look.
      const code = classifyFailure(error).kind === 'transient' ? 'SINK_UNAVAILABLE' : 'SINK_ERROR';
      const message = error instanceof Error ? error.message : String(error);
      throw new PgReplicateError(code, `the ${this.#inner.name} sink failed ${what}: ${message}`, {
        cause: error,
      });
    }
  }
}
