/**
 * What the replicator is doing right now, for `/readyz` and the `pg_replicate_state` gauge: set by
 * the supervisor (starting, retrying, stopping…) and by the pipeline's progress events
 * (backfilling with its progress, streaming with its durable position).
 *
 * Ready means doing its job: streaming, or backfilling (a long copy is progress, not a hang).
 */
import { formatLsn, type Lsn } from '../lsn.js';
import type { ProgressEvent } from '../pipeline/progress.js';
import type { Failure } from '../retry/failure-policy.js';
import type { ServiceState } from './metrics.js';

/** The body of `/readyz`. */
export interface StatusReport {
  readonly ready: boolean;
  readonly state: ServiceState;
  readonly pipeline: string;
  readonly mode: string;
  /** Since when the current state holds (ISO 8601). */
  readonly since: string;
  readonly durableLsn: string | null;
  readonly backfill: {
    readonly table: string | null;
    readonly tableRows: number;
    readonly tablesDone: number;
    readonly rowsCopied: number;
  } | null;
  readonly restarts: number;
  readonly lastError: { readonly code: string; readonly message: string; readonly at: string } | null;
  /** While retrying: when the next attempt starts. */
  readonly nextAttemptAt: string | null;
}

export class ServiceStatus {
  readonly #pipeline: string;
  readonly #mode: string;
  readonly #onState: (state: ServiceState) => void;
  #state: ServiceState = 'starting';
  #since = new Date();
  #durableLsn: Lsn | null = null;
  #table: string | null = null;
  #tableRows = 0;
  #tablesDone = 0;
  #rowsCopied = 0;
  #backfilled = false;
  #restarts = 0;
  #lastError: StatusReport['lastError'] = null;
  #nextAttemptAt: Date | null = null;

  constructor(pipeline: string, mode: string, onState: (state: ServiceState) => void = () => {}) {
    this.#pipeline = pipeline;
    this.#mode = mode;
    this.#onState = onState;
  }

  get state(): ServiceState {
    return this.#state;
  }

  get ready(): boolean {
    return this.#state === 'streaming' || this.#state === 'backfilling';
  }

  /** The sink's durable position as last reported by the pipeline. */
  get durableLsn(): Lsn | null {
    return this.#durableLsn;
  }

  setState(state: ServiceState): void {
    if (state !== 'retrying') this.#nextAttemptAt = null;
    if (state === this.#state) return;
    this.#state = state;
    this.#since = new Date();
    this.#onState(state);
  }

  /** A transient failure: not ready until the next attempt streams again. */
  retrying(failure: Failure, delayMs: number): void {
    this.#restarts++;
    this.#recordError(failure);
    this.setState('retrying');
    this.#nextAttemptAt = new Date(Date.now() + delayMs);
  }

  failed(failure: Failure): void {
    this.#recordError(failure);
    this.setState('failed');
  }

  onProgress(event: ProgressEvent): void {
    switch (event.type) {
      case 'copy-start':
        this.#backfilled = true;
        this.#table = event.table;
        this.#tableRows = 0;
        this.setState('backfilling');
        return;
      case 'copy-progress':
        this.#rowsCopied += event.rows - this.#tableRows;
        this.#tableRows = event.rows;
        return;
      case 'copy-done':
        this.#tablesDone++;
        this.#table = null;
        return;
      case 'streaming':
        if (event.startLsn > 0n) this.#durableLsn = event.startLsn;
        this.setState('streaming');
        return;
      case 'changes':
      case 'advanced':
        this.#durableLsn = event.lsn;
        return;
      case 'slot':
        return;
    }
  }

  report(): StatusReport {
    return {
      ready: this.ready,
      state: this.#state,
      pipeline: this.#pipeline,
      mode: this.#mode,
      since: this.#since.toISOString(),
      durableLsn: this.#durableLsn === null ? null : formatLsn(this.#durableLsn),
      backfill: this.#backfilled
        ? {
            table: this.#table,
            tableRows: this.#tableRows,
            tablesDone: this.#tablesDone,
            rowsCopied: this.#rowsCopied,
          }
        : null,
      restarts: this.#restarts,
      lastError: this.#lastError,
      nextAttemptAt: this.#nextAttemptAt?.toISOString() ?? null,
    };
  }

  #recordError(failure: Failure): void {
    this.#lastError = { code: failure.code, message: failure.message, at: new Date().toISOString() };
  }
}
