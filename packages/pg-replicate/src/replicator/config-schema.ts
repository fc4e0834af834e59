/**
 * The replicator's configuration, as one zod schema: the single source of truth for validation,
 * defaults, the environment variable names (`config-fields.ts`) and the generated reference
 * (`docs/config-reference.md`). A field documented here cannot be missing from the docs, and the
 * docs cannot describe a field that does not exist.
 *
 * Keys are camelCase like the library's options (`batch.maxRows` ↔ `PipelineOptions.batchMaxRows`,
 * `sink.stateFile` ↔ `StdoutSinkOptions.stateFile`); connection fields keep libpq's names
 * (`sslmode`, `sslrootcert`) because that is what Postgres operators know.
 */
import { accessSync, constants } from 'node:fs';
import { z } from 'zod';
import { DUCKDB_SIZE } from '../cli/sinks.js';
import { SSL_MODES } from '../connection/connection-options.js';
import { DEFAULT_BATCH_MAX_BYTES } from '../pipeline/pipeline.js';

/** Log levels, most to least verbose (`silent` turns logging off). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** A path that must name a file this process can read (checked at start, before any connection). */
function readableFile(description: string) {
  return z
    .string()
    .min(1)
    .refine((path) => path === 'system' || isReadable(path), {
      error: (issue) => `cannot read file ${JSON.stringify(issue.input)}`,
    })
    .describe(description);
}

function isReadable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function isPostgresUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'postgres:' || url.protocol === 'postgresql:';
  } catch {
    return false;
  }
}

const wholeNumber = (min: number) => z.number().int().min(min);

const sourceSchema = z
  .strictObject({
    url: z
      .string()
      // Never echo the value: it may hold a password.
      .refine(isPostgresUrl, { error: 'expected a postgres://user:password@host:port/database URL' })
      .optional()
      .describe('`postgres://user:password@host:port/database?sslmode=…`; separate fields below win over it.')
      .meta({ secret: true }),
    host: z
      .string()
      .min(1)
      .optional()
      .describe('Server host. Default: from `url`, `PGHOST`, else `localhost`.'),
    port: wholeNumber(1)
      .max(65535)
      .optional()
      .describe('Server port. Default: from `url`, `PGPORT`, else 5432.'),
    database: z
      .string()
      .min(1)
      .optional()
      .describe('Database. Default: from `url`, `PGDATABASE`, else the user name.'),
    user: z.string().min(1).optional().describe('User (needs REPLICATION and SELECT on the tables).'),
    password: z
      .string()
      .optional()
      .describe('Password. Give it with the environment variable or its `_FILE` form, not in the file.')
      .meta({ secret: true }),
    sslmode: z.enum(SSL_MODES).optional().describe('TLS, with libpq semantics. Default `prefer`.'),
    sslrootcert: readableFile(
      'PEM file of the CA(s) that sign the server certificate (for `verify-ca`/`verify-full`), or `system`.',
    ).optional(),
    sslcert: readableFile('Client certificate (PEM), for certificate authentication.').optional(),
    sslkey: readableFile('Client private key (PEM), for certificate authentication.').optional(),
    applicationName: z
      .string()
      .min(1)
      .optional()
      .describe('`application_name` in `pg_stat_activity`. Default `pg-replicate:<name>`.'),
    connectTimeoutMs: wholeNumber(100)
      .optional()
      .describe(
        'Give up connecting after this long. Default: `connect_timeout` in `url`, `PGCONNECT_TIMEOUT`, else 10 000.',
      ),
    publication: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
      .describe('Publication(s) whose tables are replicated (a list: comma-separated in the environment).'),
    slot: z
      .string()
      .regex(/^[a-z0-9_]{1,63}$/, {
        error: 'expected a slot name: 1 to 63 lower-case letters, digits and underscores',
      })
      .optional()
      .describe(
        'Replication slot that remembers the position (created if missing). Required for `cdc` and `both`.',
      ),
  })
  .describe('Where the data comes from.');

const stdoutSinkSchema = z.strictObject({
  type: z.literal('stdout'),
  stateFile: z
    .string()
    .min(1)
    .optional()
    .describe(
      'stdout: JSON file that keeps the resumption state across restarts (without it, a restart copies again).',
    ),
});
const nullSinkSchema = z.strictObject({ type: z.literal('null') });
const duckDbSize = () => z.string().regex(DUCKDB_SIZE, { error: 'expected a size like 128MB or 1GB' });
const duckDbSinkSchema = z.strictObject({
  type: z.literal('duckdb'),
  path: z.string().min(1).describe('duckdb: the database file (put it on a persistent volume).'),
  memoryLimit: duckDbSize()
    .optional()
    .describe("duckdb: DuckDB's `memory_limit` (default `256MB`); what does not fit spills to disk."),
  copyMemoryLimit: duckDbSize()
    .optional()
    .describe(
      "duckdb: DuckDB's `memory_limit` while a table is copied, and for bulk loads (transactions of inserts only, larger than a batch) (default `64MB`, never above `memoryLimit`).",
    ),
  deleteMemory: duckDbSize()
    .optional()
    .describe(
      'duckdb: what the deletes and in-place updates of one DuckDB transaction may hold; those that could hold more go ahead of their transaction, a few row groups at a time (default: an eighth of `memoryLimit`).',
    ),
});

const bigQuerySinkSchema = z.strictObject({
  type: z.literal('bigquery'),
  project: z.string().min(1).describe('bigquery: the Google Cloud project of the dataset.'),
  dataset: z
    .string()
    .regex(/^[A-Za-z0-9_]{1,1024}$/, { error: 'expected a dataset name: letters, digits and underscores' })
    .describe('bigquery: the dataset the tables go to (created if missing).'),
  keyFile: z
    .string()
    .min(1)
    .optional()
    .describe('bigquery: a service-account key file; without it Application Default Credentials are used.'),
  location: z
    .string()
    .min(1)
    .optional()
    .describe('bigquery: location of a new dataset and of queries (default `US`).'),
  maxStaleness: z
    .string()
    .regex(/^\d+(\.\d+)?(ms|s|m|min|h)?$/, { error: 'expected a duration like 90s, 15m or 1h (0 for none)' })
    .optional()
    .describe("bigquery: the tables' `max_staleness` (default `15m`)."),
  maxBatchBytes: wholeNumber(1)
    .max(9_961_472)
    .optional()
    .describe('bigquery: largest AppendRows request in bytes (default 8388608).'),
  unrepresentable: z
    .enum(['error', 'null'])
    .optional()
    .describe(
      'bigquery: a value BigQuery cannot hold stops the pipeline (`error`, default) or becomes NULL (`null`).',
    ),
});

const sinkSchema = z
  .discriminatedUnion('type', [stdoutSinkSchema, nullSinkSchema, duckDbSinkSchema, bigQuerySinkSchema])
  .describe(
    'Where the data goes: `stdout` (JSON lines), `null` (discard), `duckdb` (needs `@pg-replicate/duckdb`), `bigquery` (needs `@pg-replicate/bigquery`).',
  );

const batchSchema = z
  .strictObject({
    maxRows: wholeNumber(1).default(10_000).describe('Changes per sink batch.'),
    maxBytes: wholeNumber(1)
      .default(DEFAULT_BATCH_MAX_BYTES)
      .describe('Bytes of changes per sink batch, as Postgres sent them (wide rows make smaller batches).'),
    maxDelayMs: wholeNumber(0)
      .default(1_000)
      .describe('Longest a committed change waits before its batch is written.'),
    copyRows: wholeNumber(1).default(10_000).describe('Rows per backfill batch.'),
    copyWorkers: wholeNumber(1)
      .default(4)
      .describe(
        'Connections copying at once, in one snapshot: a big table in ranges of its pages, and the next tables on those its ranges do not need.',
      ),
  })
  .prefault({})
  .describe('Batching.');

const heartbeatSchema = z
  .strictObject({
    intervalMs: wholeNumber(1_000)
      .optional()
      .describe(
        'Emit a logical message this often so an idle database still moves the slot (needs `pg_logical_emit_message`). Off when unset.',
      ),
  })
  .prefault({})
  .describe('Heartbeat.');

const httpSchema = z
  .strictObject({
    host: z.string().min(1).default('0.0.0.0').describe('Address the HTTP server listens on.'),
    port: wholeNumber(1).max(65535).default(9898).describe('Port of `/healthz`, `/readyz` and `/metrics`.'),
  })
  .prefault({})
  .describe('Health and metrics endpoints.');

const logSchema = z
  .strictObject({
    level: z.enum(LOG_LEVELS).default('info').describe('Least severe level written.'),
    format: z
      .enum(['auto', 'json', 'pretty'])
      .default('auto')
      .describe(
        '`json` (one object per line), `pretty` (for people), or `auto`: pretty when stderr is a terminal.',
      ),
  })
  .prefault({})
  .describe('Logs (always on stderr).');

const retrySchema = z
  .strictObject({
    initialDelayMs: wholeNumber(0).default(1_000).describe('Wait before the first retry.'),
    maxDelayMs: wholeNumber(0).default(60_000).describe('Longest wait between retries.'),
    multiplier: z
      .number()
      .min(1)
      .default(2)
      .describe('Each wait is this many times the previous one (before jitter).'),
    maxAttempts: wholeNumber(0)
      .default(0)
      .describe('Give up (exit 5) after this many failed attempts in a row; 0 retries forever.'),
    resetAfterMs: wholeNumber(0)
      .default(60_000)
      .describe('An attempt that ran this long without failing resets the backoff.'),
  })
  .prefault({})
  .describe('Retries of transient failures (lost connections, restarts): exponential backoff with jitter.');

const shutdownSchema = z
  .strictObject({
    timeoutMs: wholeNumber(0)
      .default(30_000)
      .describe('After SIGTERM/SIGINT, how long flushing and closing may take before exiting with 6.'),
  })
  .prefault({})
  .describe('Graceful stop.');

const monitorSchema = z
  .strictObject({
    intervalMs: wholeNumber(100)
      .default(15_000)
      .describe('How often the slot (retained WAL, lag in bytes) is read, on a connection of its own.'),
    maxRetainedWalMb: wholeNumber(1)
      .default(1024)
      .describe(
        'Log a warning (with the likely cause) when the slot keeps more WAL than this on the server.',
      ),
  })
  .prefault({})
  .describe('Slot monitoring, for the metrics and the warnings.');

/** The whole configuration file, validated. */
export const replicatorConfigSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,63}$/, { error: 'expected 1 to 63 letters, digits, ".", "_" or "-"' })
    .optional()
    .describe('Name of the pipeline, on every log line and metric. Default: the slot, else the publication.'),
  mode: z
    .enum(['copy', 'cdc', 'both'])
    .default('both')
    .describe(
      '`copy` (backfill, then exit 0), `cdc` (stream changes), `both` (consistent backfill, then stream).',
    ),
  source: sourceSchema,
  sink: sinkSchema,
  batch: batchSchema,
  heartbeat: heartbeatSchema,
  http: httpSchema,
  log: logSchema,
  retry: retrySchema,
  shutdown: shutdownSchema,
  monitor: monitorSchema,
});

/** The configuration after validation and defaults (`name` filled in by the loader). */
export type ReplicatorConfig = z.output<typeof replicatorConfigSchema> & { name: string };
/** One sink's settings. */
export type SinkConfig = ReplicatorConfig['sink'];
/** The source's settings. */
export type SourceConfig = ReplicatorConfig['source'];
