/**
 * The `pg-replicate` command line: connection flags (or a URL, DATABASE_URL, PG* variables), the
 * modes `cdc`, `copy`, `both`, and `drop`. Flags and output formats are contracts users script
 * against; the help text teaches each command with an example.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { ConnectionInput } from '../connection/connection-options.js';
import { SSL_MODES, type SslMode } from '../connection/connection-options.js';
import { parseLsn } from '../lsn.js';
import { DEFAULT_BATCH_MAX_BYTES } from '../pipeline/pipeline.js';
import { registerRunCommand } from '../replicator/run-command.js';
import { DUCKDB_SIZE, SINK_NAMES, type SinkName } from './sinks.js';

/** Everything the flags say, merged from the program and the subcommand. */
export interface CliOptions {
  url?: string;
  dbHost?: string;
  dbPort?: number;
  dbName?: string;
  dbUsername?: string;
  dbPassword?: string;
  sslmode?: SslMode;
  sslrootcert?: string;
  sink?: SinkName;
  stateFile?: string;
  duckdbPath?: string;
  duckdbMemoryLimit?: string;
  duckdbCopyMemoryLimit?: string;
  duckdbDeleteMemory?: string;
  bqProject?: string;
  bqDataset?: string;
  bqKeyFile?: string;
  bqLocation?: string;
  bqMaxStaleness?: string;
  bqMaxBatchBytes?: number;
  bqUnrepresentable?: 'error' | 'null';
  batchMaxRows?: number;
  batchMaxBytes?: number;
  batchMaxDelay?: number;
  copyBatchRows?: number;
  copyWorkers?: number;
  endLsn?: bigint;
  heartbeat?: number;
  maxRetainedWal?: number;
  /** False with --no-retry. */
  retry?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  yes?: boolean;
  publication?: string;
}

export type CommandHandler = (
  command: 'cdc' | 'copy' | 'both' | 'drop',
  args: { publication?: string; slot?: string },
  options: CliOptions,
) => Promise<number>;

const EXAMPLES = `
Examples:
  # stream every change of the tables in publication "my_publication" to stdout as JSON lines
  pg-replicate --db-host localhost --db-port 5432 --db-name postgres \\
    --db-username postgres --db-password password cdc my_publication stdout_slot

  # copy the tables once (consistent snapshot), then exit
  pg-replicate --url postgres://user@db:5432/app copy my_publication

  # copy, then keep a DuckDB file in step with every change
  pg-replicate --sink duckdb --duckdb-path ./replica.duckdb both my_publication my_slot

  # the same into a BigQuery dataset (Application Default Credentials, or --bq-key-file)
  pg-replicate --sink bigquery --bq-project my-project --bq-dataset replica both my_publication my_slot

  # catch up to a known position and stop (for jobs and tests)
  pg-replicate cdc my_publication my_slot --end-lsn 0/3000060

Set-up on the server (once):
  ALTER SYSTEM SET wal_level = 'logical';  -- then restart Postgres
  CREATE PUBLICATION my_publication FOR TABLE orders, customers;
  ALTER ROLE app_user WITH REPLICATION;

Connection settings come from the flags, else --url, else DATABASE_URL, else the PGHOST, PGPORT,
PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE variables (and ~/.pgpass). Prefer PGPASSWORD or
DATABASE_URL to --db-password: command lines are visible to other users of the machine.
Data goes to stdout; logs and progress to stderr. Exit status: 0 done, 1 failed, 2 bad arguments.`;

function integer(name: string, min: number) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min) {
      throw new InvalidArgumentError(`${name} must be a whole number of at least ${min}`);
    }
    return parsed;
  };
}

function duckDbSize(name: string) {
  return (value: string): string => {
    if (!DUCKDB_SIZE.test(value)) throw new InvalidArgumentError(`${name} must be a size like 128MB or 1GB`);
    return value;
  };
}

function lsnArgument(value: string): bigint {
  try {
    return parseLsn(value);
  } catch {
    throw new InvalidArgumentError(`"${value}" is not an LSN; write it like 0/16B3748`);
  }
}

export function buildProgram(handler: CommandHandler): Command {
  const program = new Command('pg-replicate')
    .description(
      'Replicate Postgres tables with logical replication: a consistent copy of the tables in a publication, then every insert, update, delete and truncate, into a sink — resumed exactly where it stopped.',
    )
    .version('0.1.0', '-V, --version')
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showSuggestionAfterError()
    // Usage errors throw (and main exits 2) instead of commander exiting 1; inherited by subcommands.
    .exitOverride()
    // One line, like every other error: "pg-replicate: error: unknown option '--x' (Did you mean …?)".
    .configureOutput({
      outputError: (text, write) => write(`pg-replicate: ${text.trim().replace(/\s*\n\s*/g, ' ')}\n`),
    })
    .addHelpText('after', EXAMPLES);

  program
    .optionsGroup('Connection (global, before or after the command):')
    .option('--url <url>', 'postgres://user:password@host:port/database (or DATABASE_URL)')
    .option('--db-host <host>', 'server host (PGHOST; default localhost)')
    .option('--db-port <port>', 'server port (PGPORT; default 5432)', integer('--db-port', 1))
    .option('--db-name <name>', 'database (PGDATABASE; default: the user name)')
    .option('--db-username <user>', 'user (PGUSER; default: the OS user)')
    .option('--db-password <password>', 'password (prefer PGPASSWORD)')
    .addOption(new Option('--sslmode <mode>', 'TLS (PGSSLMODE; default prefer)').choices(SSL_MODES))
    .option('--sslrootcert <file>', 'CA certificate(s) for verify-ca / verify-full (PGSSLROOTCERT)');
  program
    .optionsGroup('Sink:')
    .addOption(new Option('--sink <name>', 'where data goes (default stdout)').choices(SINK_NAMES))
    .option('--state-file <path>', 'stdout: keep resumption state in this JSON file across runs')
    .option('--duckdb-path <path>', 'duckdb: database file (default ./replica.duckdb)')
    .option(
      '--duckdb-memory-limit <size>',
      "duckdb: DuckDB's memory_limit, e.g. 128MB (default 256MB; the rest spills to disk)",
      duckDbSize('--duckdb-memory-limit'),
    )
    .option(
      '--duckdb-copy-memory-limit <size>',
      "duckdb: DuckDB's memory_limit while a table is copied, and for bulk loads (transactions of inserts only, larger than a batch) (default 64MB, never above --duckdb-memory-limit)",
      duckDbSize('--duckdb-copy-memory-limit'),
    )
    .option(
      '--duckdb-delete-memory <size>',
      'duckdb: what the deletes and in-place updates of one DuckDB transaction may hold; those that could hold more go ahead of their transaction, a few row groups at a time (default: an eighth of --duckdb-memory-limit)',
      duckDbSize('--duckdb-delete-memory'),
    )
    .option('--bq-project <id>', 'bigquery: Google Cloud project of the dataset')
    .option('--bq-dataset <name>', 'bigquery: dataset the tables go to (created if missing)')
    .option(
      '--bq-key-file <file>',
      'bigquery: service-account key file (default: Application Default Credentials)',
    )
    .option('--bq-location <location>', 'bigquery: location of a new dataset and of queries (default US)')
    .option(
      '--bq-max-staleness <duration>',
      "bigquery: tables' max_staleness, e.g. 15m, 90s, 0 for none (default 15m)",
    )
    .option(
      '--bq-max-batch-bytes <n>',
      'bigquery: largest AppendRows request in bytes (default 8388608, at most 9961472)',
      integer('--bq-max-batch-bytes', 1),
    )
    .addOption(
      new Option(
        '--bq-unrepresentable <policy>',
        'bigquery: a value BigQuery cannot hold stops (error, default) or becomes NULL',
      ).choices(['error', 'null']),
    );
  program
    .optionsGroup('Pipeline:')
    .option('--batch-max-rows <n>', 'changes per sink batch (default 10000)', integer('--batch-max-rows', 1))
    .option(
      '--batch-max-bytes <n>',
      `bytes of changes per sink batch, as sent by Postgres (default ${DEFAULT_BATCH_MAX_BYTES})`,
      integer('--batch-max-bytes', 1),
    )
    .option(
      '--batch-max-delay <ms>',
      'max wait before a batch is written (default 1000)',
      integer('--batch-max-delay', 0),
    )
    .option(
      '--copy-batch-rows <n>',
      'rows per backfill batch (default 10000)',
      integer('--copy-batch-rows', 1),
    )
    .option(
      '--copy-workers <n>',
      'connections copying at once, in one snapshot: a big table in page ranges, and the next tables on those its ranges do not need (default 4)',
      integer('--copy-workers', 1),
    )
    .option('--end-lsn <X/Y>', 'stop once everything up to this LSN is durable in the sink', lsnArgument)
    .option(
      '--heartbeat <seconds>',
      'emit a heartbeat message this often to keep an idle slot moving',
      integer('--heartbeat', 1),
    )
    .option(
      '--max-retained-wal <MB>',
      'warn when the slot keeps more WAL than this from being recycled (default 1024)',
      integer('--max-retained-wal', 1),
    )
    .option('--no-retry', 'exit on a lost connection instead of reconnecting with backoff once streaming')
    .option('-q, --quiet', 'only warnings and errors on stderr')
    .option('-v, --verbose', 'more detail on stderr');

  const run = (command: 'cdc' | 'copy' | 'both' | 'drop') =>
    async function (this: Command, ...args: unknown[]) {
      const [first, second] = args as [string | undefined, string | undefined];
      const named =
        command === 'copy'
          ? { publication: first }
          : command === 'drop'
            ? { slot: first }
            : { publication: first, slot: second };
      process.exitCode = await handler(command, named, this.optsWithGlobals<CliOptions>());
    };

  program
    .command('cdc')
    .description('stream changes from a slot (created if missing), starting where it stopped')
    .argument('<publication>', 'publication whose tables to replicate')
    .argument('<slot>', 'replication slot that remembers the position')
    .addHelpText(
      'after',
      '\nExample:\n  pg-replicate --url postgres://postgres@localhost/app cdc my_publication my_slot',
    )
    .action(run('cdc'));

  program
    .command('copy')
    .description('copy the tables of a publication once (one consistent snapshot), then exit')
    .argument('<publication>', 'publication whose tables to copy')
    .addHelpText(
      'after',
      '\nExample:\n  pg-replicate --sink duckdb --duckdb-path ./replica.duckdb copy my_publication',
    )
    .action(run('copy'));

  program
    .command('both')
    .description('copy the tables consistently with a new slot, then stream every change after the copy')
    .argument('<publication>', 'publication whose tables to replicate')
    .argument('<slot>', 'replication slot (created with the snapshot the copy uses)')
    .addHelpText(
      'after',
      '\nExamples:\n  pg-replicate --sink duckdb --duckdb-path ./replica.duckdb both my_publication my_slot\n  pg-replicate --sink bigquery --bq-project my-project --bq-dataset replica both my_publication my_slot',
    )
    .action(run('both'));

  program
    .command('drop')
    .description('retire a pipeline: drop its replication slot (and optionally its publication)')
    .argument('<slot>', 'replication slot to drop')
    .option('--publication <name>', 'also drop this publication')
    .option('--yes', 'confirm: without it, only say what would be dropped')
    .addHelpText(
      'after',
      '\nExample:\n  pg-replicate --url postgres://postgres@localhost/app drop my_slot --publication my_publication --yes',
    )
    .action(run('drop'));

  registerRunCommand(program);
  return program;
}

/** The connection part of the options, for {@link resolveConnection}. */
export function connectionInput(options: CliOptions): ConnectionInput {
  return {
    url: options.url,
    host: options.dbHost,
    port: options.dbPort,
    database: options.dbName,
    user: options.dbUsername,
    password: options.dbPassword,
    sslmode: options.sslmode,
    sslrootcert: options.sslrootcert,
  };
}
