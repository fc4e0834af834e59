/**
 * Keeps one pipeline running: each attempt builds a fresh source, sink and pipeline (the previous
 * ones were closed by `Pipeline.run`), so a restart resumes from the state the sink made durable —
 * exactly-once with a transactional sink. Transient failures are retried with exponential backoff
 * and jitter; permanent ones end the service with their own exit code (see `retry/failure-policy.ts`).
 */
import type { PipelineResult } from '../pipeline/pipeline.js';
import { backoffDelay } from '../retry/backoff.js';
import { classifyFailure, type Failure } from '../retry/failure-policy.js';
import type { ReplicatorConfig } from './config-schema.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import type { ServiceLogger } from './logger.js';
import type { ReplicatorMetrics } from './metrics.js';
import type { ServiceStatus } from './service-status.js';

export type RetryPolicy = ReplicatorConfig['retry'];

/** How supervision ended. */
export type SupervisorOutcome =
  /** `copy` mode finished, or streaming reached its end. */
  | { readonly kind: 'finished'; readonly exitCode: ExitCode }
  /** Stopped on request after flushing. */
  | { readonly kind: 'stopped'; readonly exitCode: ExitCode }
  | { readonly kind: 'failed'; readonly exitCode: ExitCode; readonly failure: Failure };

export interface SupervisorOptions {
  retry: RetryPolicy;
  /** Aborted on SIGTERM/SIGINT: the running attempt stops gracefully, a pending retry is cancelled. */
  signal: AbortSignal;
  logger: ServiceLogger;
  status: ServiceStatus;
  metrics: ReplicatorMetrics;
  /** Runs one attempt with new source, sink and pipeline objects. */
  attempt: (signal: AbortSignal) => Promise<PipelineResult>;
  /** Source of jitter (tests pin it). */
  random?: () => number;
}

export class Supervisor {
  readonly #options: SupervisorOptions;

  constructor(options: SupervisorOptions) {
    this.#options = options;
  }

  async run(): Promise<SupervisorOutcome> {
    const { retry, signal, logger, status, metrics } = this.#options;
    let failuresInARow = 0;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return this.#stopped();
      status.setState('starting');
      const started = performance.now();
      try {
        const result = await this.#options.attempt(signal);
        if (result.stopped) return this.#stopped();
        status.setState('stopped');
        return { kind: 'finished', exitCode: EXIT.OK };
      } catch (error) {
        const failure = classifyFailure(error);
        metrics.recordFailure(failure.kind, failure.code);
        const fields = { err: { code: failure.code, message: failure.message, hint: failure.hint }, attempt };
        if (failure.kind !== 'transient') {
          status.failed(failure);
          const what = failure.kind === 'permanent' ? 'permanent failure' : 'unexpected error';
          logger.error(
            {
              ...fields,
              err: error instanceof Error ? error : fields.err,
              code: failure.code,
              hint: failure.hint,
            },
            `${what}, stopping: ${failure.message}${failure.hint ? ` — ${failure.hint}` : ''} [${failure.code}]`,
          );
          const exitCode = failure.kind === 'permanent' ? EXIT.PERMANENT_FAILURE : EXIT.UNEXPECTED;
          return { kind: 'failed', exitCode, failure };
        }
        if (signal.aborted) {
          logger.warn(
            fields,
            `failed while stopping (${failure.code}): ${failure.message}; what is durable stays durable`,
          );
          return this.#stopped();
        }
        failuresInARow = performance.now() - started >= retry.resetAfterMs ? 1 : failuresInARow + 1;
        if (retry.maxAttempts > 0 && failuresInARow >= retry.maxAttempts) {
          status.failed(failure);
          logger.error(
            fields,
            `giving up after ${failuresInARow} failed attempts in a row: ${failure.message} [${failure.code}]`,
          );
          return { kind: 'failed', exitCode: EXIT.RETRIES_EXHAUSTED, failure };
        }
        const delayMs = backoffDelay(failuresInARow, retry, this.#options.random);
        status.retrying(failure, delayMs);
        metrics.recordRestart();
        logger.warn(
          { ...fields, retryInMs: delayMs, failuresInARow },
          `transient failure, retrying in ${(delayMs / 1000).toFixed(1)} s: ${failure.message} [${failure.code}]`,
        );
        await sleep(delayMs, signal);
      }
    }
  }

  #stopped(): SupervisorOutcome {
    this.#options.status.setState('stopped');
    return { kind: 'stopped', exitCode: EXIT.OK };
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
