/**
 * One error class for everything pg-replicate reports, with a stable `code` that programs can
 * switch on, a `hint` that tells a person what to do, and whether retrying can help.
 */

/** Every kind of failure, grouped by where it comes from. Codes are part of the public API. */
export type ErrorCode =
  // arguments and configuration
  | 'INVALID_ARGUMENT'
  | 'INVALID_LSN'
  // connecting
  | 'HOST_UNREACHABLE'
  | 'CONNECTION_TIMEOUT'
  | 'AUTHENTICATION_FAILED'
  | 'DATABASE_NOT_FOUND'
  | 'TLS_ERROR'
  | 'CONNECTION_LOST'
  | 'TOO_MANY_CONNECTIONS'
  // server set-up, found by preflight checks
  | 'UNSUPPORTED_SERVER_VERSION'
  | 'WAL_LEVEL_NOT_LOGICAL'
  | 'PUBLICATION_NOT_FOUND'
  | 'PUBLICATION_EMPTY'
  | 'MISSING_REPLICATION_PRIVILEGE'
  | 'MISSING_SELECT_PRIVILEGE'
  | 'SLOT_IN_USE'
  | 'SLOT_WRONG_PLUGIN'
  | 'SLOT_INVALIDATED'
  | 'SLOT_NOT_FOUND'
  | 'SLOT_WRONG_DATABASE'
  | 'SLOTS_EXHAUSTED'
  | 'WAL_SENDERS_EXHAUSTED'
  | 'NO_REPLICA_IDENTITY'
  | 'UNSUPPORTED_TYPE'
  | 'TABLE_REWRITTEN'
  // the wire
  | 'PROTOCOL_VIOLATION'
  | 'SERVER_ERROR'
  // the sink and its resumption state
  | 'SINK_ERROR'
  | 'SINK_UNAVAILABLE'
  | 'SINK_LOCKED'
  | 'SINK_STATE_INVALID'
  | 'SINK_BEHIND_SLOT'
  | 'SINK_AHEAD_OF_SERVER'
  | 'SCHEMA_UNSUPPORTED'
  /** A resumed copy lacks a row a replayed change needs: the sink will copy the table in full. */
  | 'COPY_INCOMPLETE'
  // lifecycle
  | 'ABORTED';

/**
 * Failures that go away by themselves (network, restarts, another process letting go of a slot, a
 * sender or a file): a supervisor may retry them. Keep in step with `retry/failure-policy.ts`.
 */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'HOST_UNREACHABLE',
  'CONNECTION_TIMEOUT',
  'CONNECTION_LOST',
  'TOO_MANY_CONNECTIONS',
  'SLOT_IN_USE',
  'WAL_SENDERS_EXHAUSTED',
  'SINK_UNAVAILABLE',
  'SINK_LOCKED',
  'SERVER_ERROR',
  'TABLE_REWRITTEN',
  'COPY_INCOMPLETE',
]);

export interface PgReplicateErrorOptions {
  /** What the user should do about it, as one sentence. */
  hint?: string;
  /** Extra facts (the server's detail, the offending value, the byte offset…). */
  detail?: string;
  cause?: unknown;
}

export class PgReplicateError extends Error {
  override readonly name = 'PgReplicateError';
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, message: string, options: PgReplicateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
    this.detail = options.detail;
  }

  /** Whether retrying later, unchanged, can succeed. */
  get transient(): boolean {
    return TRANSIENT.has(this.code);
  }

  /** The one line a CLI prints: what is wrong, then what to do. */
  toOneLine(): string {
    const parts = [this.message];
    if (this.detail) parts.push(`(${this.detail})`);
    let line = parts.join(' ');
    if (this.hint) line += ` — ${this.hint}`;
    return `${line} [${this.code}]`.replace(/\s*\n\s*/g, ' ');
  }
}

export function isPgReplicateError(error: unknown, code?: ErrorCode): error is PgReplicateError {
  return error instanceof PgReplicateError && (code === undefined || error.code === code);
}

/** The fields of a Postgres ErrorResponse that we look at (pg's `DatabaseError` has them all). */
export interface ServerErrorFields {
  code?: string | undefined;
  severity?: string | undefined;
  detail?: string | undefined;
  hint?: string | undefined;
}

/** True for errors that came from the server (an ErrorResponse), as opposed to the network. */
export function isServerError(error: unknown): error is Error & ServerErrorFields {
  return (
    error instanceof Error && typeof (error as ServerErrorFields).code === 'string' && 'severity' in error
  );
}
