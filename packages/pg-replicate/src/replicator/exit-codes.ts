/**
 * The replicator's exit statuses. They are a contract with whatever runs it (Kubernetes, systemd,
 * Docker restart policies, shell scripts): each kind of ending has its own number, so an operator
 * or an orchestrator can tell "fix the config" from "fix the database" from "just restart it".
 */

/** Every ending of `pg-replicate run`, by name. */
export const EXIT = {
  /** Stopped by SIGTERM/SIGINT after flushing and confirming, or `copy` mode finished. */
  OK: 0,
  /** Something nobody planned for (a bug): the message says what; please report it. */
  UNEXPECTED: 1,
  /** Bad command line (unknown flag). Same as the rest of the CLI. */
  USAGE: 2,
  /** The configuration is invalid; every problem was listed. Nothing touched Postgres. */
  CONFIG_INVALID: 3,
  /** A failure retrying cannot fix (invalidated slot, bad credentials, schema the sink cannot hold…). */
  PERMANENT_FAILURE: 4,
  /** Transient failures went on for `retry.maxAttempts` attempts in a row. */
  RETRIES_EXHAUSTED: 5,
  /** A stop was requested but did not finish within `shutdown.timeoutMs`. */
  SHUTDOWN_TIMEOUT: 6,
  /** A second SIGTERM/SIGINT: stopped at once, without waiting for the flush (128 + SIGINT). */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
