/**
 * The replicator's Prometheus metrics, in a registry of its own (several replicators can live in
 * one process, e.g. in tests). Counters move from the pipeline's progress events and the sink's
 * timings; slot gauges come from the slot monitor; process and Node.js gauges (memory, event loop)
 * from prom-client's defaults. Every series carries `pipeline="<name>"`.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ProgressEvent } from '../pipeline/progress.js';
import type { FailureKind } from '../retry/failure-policy.js';

/** What the service is doing, as shown by `/readyz` and `pg_replicate_state`. */
export const SERVICE_STATES = [
  'starting',
  'backfilling',
  'streaming',
  'retrying',
  'stopping',
  'stopped',
  'failed',
] as const;
export type ServiceState = (typeof SERVICE_STATES)[number];

/** Sink calls that are timed. */
export type SinkOperation = 'changes' | 'position' | 'rows' | 'copy_commit';

const PREFIX = 'pg_replicate_';
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface MetricsOptions {
  pipeline: string;
  mode: string;
  sink: string;
  version: string;
}

export class ReplicatorMetrics {
  readonly registry = new Registry();
  readonly #rowsCopied: Counter<'table'>;
  readonly #tablesCopied: Counter;
  readonly #changes: Counter<'op'>;
  readonly #transactions: Counter;
  readonly #batches: Counter;
  readonly #commitToDurable: Histogram;
  readonly #sinkWrite: Histogram<'operation'>;
  readonly #lagSeconds: Gauge;
  readonly #lagBytes: Gauge;
  readonly #retainedWal: Gauge;
  readonly #slotActive: Gauge;
  readonly #durableLsn: Gauge;
  readonly #errors: Counter<'kind' | 'code'>;
  readonly #restarts: Counter;
  readonly #monitorErrors: Counter;
  readonly #state: Gauge<'state'>;
  /** Rows already counted for each table being copied (progress events carry running totals). */
  readonly #copyRows = new Map<string, number>();

  constructor(options: MetricsOptions) {
    const registers = [this.registry];
    const counter = <L extends string = never>(name: string, help: string, labelNames: L[] = []) =>
      new Counter<L>({ name: PREFIX + name, help, labelNames, registers });
    const gauge = <L extends string = never>(name: string, help: string, labelNames: L[] = []) =>
      new Gauge<L>({ name: PREFIX + name, help, labelNames, registers });
    const histogram = <L extends string = never>(name: string, help: string, labelNames: L[] = []) =>
      new Histogram<L>({ name: PREFIX + name, help, labelNames, buckets: LATENCY_BUCKETS, registers });

    this.registry.setDefaultLabels({ pipeline: options.pipeline });
    collectDefaultMetrics({ register: this.registry });
    gauge('info', 'Always 1; the labels describe the replicator.', ['version', 'mode', 'sink']).set(
      { version: options.version, mode: options.mode, sink: options.sink },
      1,
    );
    this.#rowsCopied = counter(
      'rows_copied_total',
      'Rows copied by backfills, per table (a copy that is redone counts again).',
      ['table'],
    );
    this.#tablesCopied = counter('tables_copied_total', 'Table backfills completed.');
    this.#changes = counter(
      'changes_applied_total',
      'Changes made durable in the sink, per operation (insert, update, delete, truncate).',
      ['op'],
    );
    for (const op of ['insert', 'update', 'delete', 'truncate']) this.#changes.inc({ op }, 0);
    this.#transactions = counter('transactions_applied_total', 'Transactions made durable in the sink.');
    this.#batches = counter('batches_total', 'Change batches made durable in the sink.');
    this.#commitToDurable = histogram(
      'batch_commit_to_durable_seconds',
      'Per batch: from the commit of its first transaction in Postgres to durable in the sink.',
    );
    this.#sinkWrite = histogram(
      'sink_write_duration_seconds',
      'Time the sink took per call: changes (a batch; for a sink taking two batches at once, from hand-over, so including the wait for the batch before), position (idle progress), rows (a backfill batch), copy_commit.',
      ['operation'],
    );
    this.#lagSeconds = gauge(
      'replication_lag_seconds',
      'Commit in Postgres to durable in the sink, for the last batch; 0 once caught up with an idle server.',
    );
    this.#lagBytes = gauge(
      'replication_lag_bytes',
      "Bytes of WAL between the server's current position and what the sink holds durably (slot monitor).",
    );
    this.#retainedWal = gauge(
      'slot_retained_wal_bytes',
      'Bytes of WAL the replication slot keeps on the server (current position minus restart_lsn).',
    );
    this.#slotActive = gauge('slot_active', '1 when a walsender is streaming from the slot.');
    this.#durableLsn = gauge(
      'durable_lsn',
      'Last LSN durable in the sink and confirmed to Postgres, as a number (X/Y = X * 2^32 + Y).',
    );
    this.#errors = counter(
      'errors_total',
      'Pipeline failures, by kind (transient: retried; permanent, unexpected: stopped) and code.',
      ['kind', 'code'],
    );
    this.#restarts = counter('restarts_total', 'Pipeline restarts after a transient failure.');
    this.#monitorErrors = counter(
      'slot_monitor_errors_total',
      'Failed slot monitor queries (they never stop the pipeline).',
    );
    this.#state = gauge('state', 'What the replicator is doing: 1 for the current state, 0 for the others.', [
      'state',
    ]);
    this.setState('starting');
  }

  /** Feeds a pipeline progress event in. */
  onProgress(event: ProgressEvent): void {
    switch (event.type) {
      case 'copy-start':
        this.#copyRows.set(event.table, 0);
        this.#rowsCopied.inc({ table: event.table }, 0);
        return;
      case 'copy-progress': {
        const before = this.#copyRows.get(event.table) ?? 0;
        if (event.rows > before) this.#rowsCopied.inc({ table: event.table }, event.rows - before);
        this.#copyRows.set(event.table, event.rows);
        return;
      }
      case 'copy-done':
        this.#copyRows.delete(event.table);
        this.#tablesCopied.inc();
        return;
      case 'streaming':
        if (event.startLsn > 0n) this.#durableLsn.set(Number(event.startLsn));
        return;
      case 'changes':
        for (const [op, count] of Object.entries(event.counts))
          if (count > 0) this.#changes.inc({ op }, count);
        this.#transactions.inc(event.transactions);
        this.#batches.inc();
        this.#commitToDurable.observe(event.maxLagMs / 1000);
        this.#lagSeconds.set(event.lagMs / 1000);
        this.#durableLsn.set(Number(event.lsn));
        return;
      case 'advanced':
        this.#lagSeconds.set(0);
        this.#durableLsn.set(Number(event.lsn));
        return;
      case 'slot':
        // The pipeline's own look at the slot while streaming (the slot monitor looks always).
        this.#retainedWal.set(event.retainedWalBytes);
        this.#lagBytes.set(Math.max(0, event.lagBytes));
        return;
    }
  }

  observeSinkWrite(operation: SinkOperation, seconds: number): void {
    this.#sinkWrite.observe({ operation }, seconds);
  }

  setState(state: ServiceState): void {
    for (const each of SERVICE_STATES) this.#state.set({ state: each }, each === state ? 1 : 0);
  }

  recordFailure(kind: FailureKind, code: string): void {
    this.#errors.inc({ kind, code });
  }

  recordRestart(): void {
    this.#restarts.inc();
  }

  /** From the slot monitor; a null leaves the gauge as it was. */
  setSlot(slot: { retainedWalBytes: number | null; lagBytes: number | null; active: boolean }): void {
    if (slot.retainedWalBytes !== null) this.#retainedWal.set(slot.retainedWalBytes);
    if (slot.lagBytes !== null) this.#lagBytes.set(Math.max(0, slot.lagBytes));
    this.#slotActive.set(slot.active ? 1 : 0);
  }

  recordMonitorError(): void {
    this.#monitorErrors.inc();
  }

  /** The exposition text for `/metrics`. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
