/**
 * What the CLI and the replicator do about each failure: retry it after a backoff (the failure goes away by
 * itself: a lost connection, a restarting server, a sink briefly unavailable) or stop with a clear
 * message (it needs a person: an invalidated slot, wrong credentials, a schema the sink cannot
 * hold). One table over every {@link ErrorCode}, so a new code does not compile until somebody has
 * decided which it is — the automatic-retry list is kept deliberately narrow.
 *
 * Errors that are not {@link PgReplicateError}s (raw `pg` or socket errors from a query that lost
 * its connection) are classified by their SQLSTATE class or socket code.
 */
import { type ErrorCode, isServerError, PgReplicateError } from '../errors.js';

export type FailureKind = 'transient' | 'permanent' | 'unexpected';

export interface Failure {
  readonly kind: FailureKind;
  /** A {@link ErrorCode}, a SQLSTATE (`57P01`), a socket code (`ECONNRESET`), or `UNEXPECTED`. */
  readonly code: string;
  /** One line for the log (no secrets: connection descriptions never carry the password). */
  readonly message: string;
  readonly hint: string | undefined;
}

/** `true`: retried with backoff; `false`: the CLI stops (exit 1), the replicator too (exit 4). */
const RETRY: Record<ErrorCode, boolean> = {
  INVALID_ARGUMENT: false,
  INVALID_LSN: false,
  HOST_UNREACHABLE: true,
  CONNECTION_TIMEOUT: true,
  AUTHENTICATION_FAILED: false,
  DATABASE_NOT_FOUND: false,
  TLS_ERROR: false,
  CONNECTION_LOST: true,
  TOO_MANY_CONNECTIONS: true,
  UNSUPPORTED_SERVER_VERSION: false,
  WAL_LEVEL_NOT_LOGICAL: false,
  PUBLICATION_NOT_FOUND: false,
  PUBLICATION_EMPTY: false,
  MISSING_REPLICATION_PRIVILEGE: false,
  MISSING_SELECT_PRIVILEGE: false,
  // The previous walsender may not have noticed its client is gone yet (or the old pod of a
  // rolling deploy is still stopping): it frees the slot by itself.
  SLOT_IN_USE: true,
  SLOT_WRONG_PLUGIN: false,
  SLOT_INVALIDATED: false,
  SLOT_NOT_FOUND: false,
  SLOT_WRONG_DATABASE: false,
  SLOTS_EXHAUSTED: false,
  // Like too many connections: another client will end.
  WAL_SENDERS_EXHAUSTED: true,
  NO_REPLICA_IDENTITY: false,
  UNSUPPORTED_TYPE: false,
  // A new snapshot will do.
  TABLE_REWRITTEN: true,
  PROTOCOL_VIOLATION: false,
  SERVER_ERROR: true,
  SINK_ERROR: false,
  SINK_UNAVAILABLE: true,
  // Same reason as SLOT_IN_USE: the previous holder of the sink's lock is still stopping.
  SINK_LOCKED: true,
  SINK_STATE_INVALID: false,
  SINK_BEHIND_SLOT: false,
  SINK_AHEAD_OF_SERVER: false,
  SCHEMA_UNSUPPORTED: false,
  // The sink has marked the table for a full copy: the next attempt does it.
  COPY_INCOMPLETE: true,
  ABORTED: false,
};

/** SQLSTATE classes that mean "try again later": connection exception, insufficient resources, operator intervention, transaction rollback. */
const TRANSIENT_SQLSTATE_CLASSES = new Set(['08', '53', '57', '40']);

/** Socket-level failures of an established connection. */
const TRANSIENT_SOCKET_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** What `pg` says when a client's connection died under a query. */
const CONNECTION_GONE =
  /Connection terminated|connection error|not queryable|Client was closed|socket hang up/i;

/** Decides whether `error` is retried, and describes it for the log. */
export function classifyFailure(error: unknown): Failure {
  if (error instanceof PgReplicateError) {
    return {
      kind: RETRY[error.code] ? 'transient' : 'permanent',
      code: error.code,
      message: error.detail ? `${error.message} (${error.detail})` : error.message,
      hint: error.hint,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  if (isServerError(error)) {
    const sqlstate = error.code ?? '';
    const transient = TRANSIENT_SQLSTATE_CLASSES.has(sqlstate.slice(0, 2));
    return { kind: transient ? 'transient' : 'permanent', code: sqlstate, message, hint: error.hint };
  }
  const socketCode = (error as { code?: unknown }).code;
  if (typeof socketCode === 'string' && TRANSIENT_SOCKET_CODES.has(socketCode)) {
    return { kind: 'transient', code: socketCode, message, hint: undefined };
  }
  if (CONNECTION_GONE.test(message)) {
    return { kind: 'transient', code: 'CONNECTION_LOST', message, hint: undefined };
  }
  return {
    kind: 'unexpected',
    code: 'UNEXPECTED',
    message,
    hint: 'this is probably a bug: please report it with the log',
  };
}
