/**
 * The BigQuery sink's options, their defaults and their checks, apart from the sink so the CLI
 * and the replicator config can validate them the same way.
 */
import { PgReplicateError } from 'pg-replicate';
import type { BigQueryClientOptions } from './clients.js';
import type { UnrepresentablePolicy } from './row-encoder.js';

/** Where the sink reports what it does (a pg-replicate `Logger` fits). */
export interface SinkLogger {
  info(message: string): void;
  warn(message: string): void;
}

/** Options of {@link BigQuerySink}. */
export interface BigQuerySinkOptions {
  /** The Google Cloud project of the dataset (and of the query jobs the sink runs). */
  projectId: string;
  /** The dataset the tables go to; created (in `location`) if missing. */
  datasetId: string;
  /** Location of a new dataset and of queries, e.g. `US`, `EU`, `europe-west3`. */
  location?: string;
  /** A service-account key file; without it Application Default Credentials are used. */
  keyFilename?: string;
  /**
   * `max_staleness` of the tables: how stale queries may read them, which lets BigQuery apply
   * changes in the background (cheaper, faster queries). Seconds, or `90s`, `15m`, `1h`; 0 for
   * none (every query merges pending changes). Default `15m`.
   */
  maxStaleness?: number | string;
  /** Largest AppendRows request in bytes (BigQuery refuses more than 10 MB). Default 8 MiB. */
  maxBatchBytes?: number;
  /** AppendRows requests in flight per table. Default 4. */
  maxInFlight?: number;
  /**
   * A value BigQuery's column type cannot hold (numeric NaN, a date in year 0, `infinity`, an
   * array with NULLs…): `error` (default) stops with the table, column and row; `null` writes NULL
   * and warns once per column.
   */
  unrepresentable?: UnrepresentablePolicy;
  /** Memory for recently written large values, to fill in unchanged TOAST values. Default 64 MiB. */
  toastCacheBytes?: number;
  /** Retries of failed appends: attempts in all and backoff bounds. */
  retry?: { maxAttempts?: number; initialDelayMs?: number; maxDelayMs?: number };
  /** An append without an answer after this long is sent again on a new connection. Default 120 s. */
  requestTimeoutMs?: number;
  /** How long rejections of new columns are retried after adding them (BigQuery lags). Default 10 min. */
  schemaPropagationMs?: number;
  /**
   * Allowance for clock differences between this host and BigQuery when deciding whether a table
   * can be read without missing recent changes (unchanged TOAST values). Default 5 s.
   */
  clockMarginMs?: number;
  /** Passed to the Google clients as is: endpoints (emulators, tests), credentials, transport. */
  clientOptions?: BigQueryClientOptions;
  logger?: SinkLogger;
}

export interface ResolvedOptions {
  readonly projectId: string;
  readonly datasetId: string;
  readonly location: string | undefined;
  readonly keyFilename: string | undefined;
  readonly maxStalenessMs: number;
  readonly maxBatchBytes: number;
  readonly maxInFlight: number;
  readonly unrepresentable: UnrepresentablePolicy;
  readonly toastCacheBytes: number;
  readonly retry: { maxAttempts: number; initialDelayMs: number; maxDelayMs: number };
  readonly requestTimeoutMs: number;
  readonly schemaPropagationMs: number;
  readonly clockMarginMs: number;
  readonly clientOptions: BigQueryClientOptions | undefined;
  readonly logger: SinkLogger;
}

/** BigQuery's limit on an AppendRows request, less room for the writer schema and framing. */
export const MAX_BATCH_BYTES = 10 * 1024 * 1024 - 512 * 1024;

const STDERR_LOGGER: SinkLogger = {
  info: () => {},
  warn: (message) => process.stderr.write(`bigquery sink: ${message}\n`),
};

function invalid(message: string, hint?: string): PgReplicateError {
  return new PgReplicateError('INVALID_ARGUMENT', message, hint === undefined ? {} : { hint });
}

/** `15m` → 900000; seconds when a number. */
export function parseDuration(value: number | string, what: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0)
      throw invalid(`${what} must be a non-negative number of seconds`);
    return Math.round(value * 1000);
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$/.exec(value);
  if (match === null) throw invalid(`${what} must be like 90s, 15m or 1h, not ${JSON.stringify(value)}`);
  const unit = match[2] ?? 's';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'h' ? 3_600_000 : 60_000;
  return Math.round(Number(match[1]) * factor);
}

/** `max_staleness` as BigQuery's IntervalValue text, e.g. `0-0 0 0:15:0`. */
export function stalenessInterval(ms: number): string {
  const totalSeconds = Math.floor(ms / 1000);
  const days = Math.floor(totalSeconds / 86_400);
  const hours = Math.floor((totalSeconds % 86_400) / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  const fraction = ms % 1000;
  return `0-0 ${days} ${hours}:${minutes}:${seconds}${fraction === 0 ? '' : `.${String(fraction).padStart(3, '0')}`}`;
}

function positiveInteger(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0)
    throw invalid(`${what} must be a positive integer, not ${value}`);
  return value;
}

export function resolveOptions(options: BigQuerySinkOptions): ResolvedOptions {
  if (typeof options?.projectId !== 'string' || options.projectId === '')
    throw invalid('the BigQuery sink needs a project', 'pass --bq-project (or projectId)');
  if (typeof options.datasetId !== 'string' || options.datasetId === '')
    throw invalid('the BigQuery sink needs a dataset', 'pass --bq-dataset (or datasetId)');
  if (!/^[A-Za-z0-9_]{1,1024}$/.test(options.datasetId))
    throw invalid(
      `the BigQuery dataset must be letters, digits and underscores, not ${JSON.stringify(options.datasetId)}`,
      'pass --bq-dataset (or datasetId)',
    );
  const maxBatchBytes = positiveInteger(options.maxBatchBytes, 8 * 1024 * 1024, 'maxBatchBytes');
  if (maxBatchBytes > MAX_BATCH_BYTES)
    throw invalid(`maxBatchBytes may be at most ${MAX_BATCH_BYTES} (BigQuery refuses requests over 10 MB)`);
  const unrepresentable = options.unrepresentable ?? 'error';
  if (unrepresentable !== 'error' && unrepresentable !== 'null')
    throw invalid(`unrepresentable must be error or null, not ${String(unrepresentable)}`);
  const retry = options.retry ?? {};
  return {
    projectId: options.projectId,
    datasetId: options.datasetId,
    location: options.location,
    keyFilename: options.keyFilename,
    maxStalenessMs: parseDuration(options.maxStaleness ?? '15m', 'maxStaleness'),
    maxBatchBytes,
    maxInFlight: positiveInteger(options.maxInFlight, 4, 'maxInFlight'),
    unrepresentable,
    toastCacheBytes: options.toastCacheBytes ?? 64 * 1024 * 1024,
    retry: {
      maxAttempts: positiveInteger(retry.maxAttempts, 10, 'retry.maxAttempts'),
      initialDelayMs: retry.initialDelayMs ?? 250,
      maxDelayMs: retry.maxDelayMs ?? 30_000,
    },
    requestTimeoutMs: positiveInteger(options.requestTimeoutMs, 120_000, 'requestTimeoutMs'),
    schemaPropagationMs: options.schemaPropagationMs ?? 10 * 60_000,
    clockMarginMs: options.clockMarginMs ?? 5_000,
    clientOptions: options.clientOptions,
    logger: options.logger ?? STDERR_LOGGER,
  };
}
