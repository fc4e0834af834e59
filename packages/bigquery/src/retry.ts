/**
 * Which BigQuery failures go away by themselves, and how long to wait before trying again:
 * truncated exponential backoff with full jitter, as Google recommends for the Storage Write API
 * (https://cloud.google.com/bigquery/docs/write-api#handle_unavailability). Everything appended
 * carries a `_CHANGE_SEQUENCE_NUMBER`, so sending a request again, even one that had in fact
 * succeeded, changes nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
export enum GrpcStatus {
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  UNAUTHENTICATED = 16,
}

const STATUS_NAMES: Readonly<Record<number, string>> = {
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  16: 'UNAUTHENTICATED',
};

export function statusName(code: number): string {
  return STATUS_NAMES[code] ?? `status ${code}`;
}

/** Quota, overload, connection and server-side failures: worth sending again after a pause. */
export function isRetryableStatus(code: number): boolean {
  return (
    code === GrpcStatus.UNAVAILABLE ||
    code === GrpcStatus.RESOURCE_EXHAUSTED ||
    code === GrpcStatus.ABORTED ||
    code === GrpcStatus.INTERNAL ||
    code === GrpcStatus.DEADLINE_EXCEEDED ||
    code === GrpcStatus.CANCELLED
  );
}

export interface BackoffOptions {
  /** Attempts in all, the first included. */
  readonly maxAttempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

/** Delays of one retried operation: full jitter over a doubling ceiling. */
export class Backoff {
  readonly #options: BackoffOptions;
  #attempt = 0;

  constructor(options: BackoffOptions) {
    this.#options = options;
  }

  /** Attempts made so far. */
  get attempts(): number {
    return this.#attempt;
  }

  /** Counts an attempt; false when none is left. */
  next(): boolean {
    this.#attempt++;
    return this.#attempt <= this.#options.maxAttempts;
  }

  /** Waits before the next attempt (or until `signal` aborts). */
  async pause(signal?: AbortSignal): Promise<void> {
    const ceiling = Math.min(
      this.#options.maxDelayMs,
      this.#options.initialDelayMs * 2 ** (this.#attempt - 1),
    );
    await sleep(Math.random() * ceiling, undefined, { signal }).catch(() => {});
  }
}
