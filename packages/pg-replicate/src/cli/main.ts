/**
 * Entry point of the `pg-replicate` binary: parses the command line, runs the pipeline with a
 * progress reporter, stops gracefully on the first SIGINT/SIGTERM (at once on the second), and
 * turns every failure into one actionable line on stderr and a non-zero exit status.
 */
import { CommanderError } from 'commander';
import { connect, quoteIdent } from '../connection/connect.js';
import { type ConnectionOptions, resolveConnection } from '../connection/connection-options.js';
import { isPgReplicateError, PgReplicateError } from '../errors.js';
import { formatLsn } from '../lsn.js';
import { Pipeline } from '../pipeline/pipeline.js';
import type { PipelineStats } from '../pipeline/progress.js';
import { backoffDelay } from '../retry/backoff.js';
import { classifyFailure } from '../retry/failure-policy.js';
import { replicationSlot, serverInfo } from '../source/catalog.js';
import { PostgresSource } from '../source/postgres-source.js';
import { buildProgram, type CliOptions, connectionInput } from './program.js';
import { ProgressReporter } from './progress-reporter.js';
import { createSink } from './sinks.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
/** A second signal: stop now, like most CLIs (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;
/** The reader of stdout went away (128 + SIGPIPE, as a process killed by it reports). */
const EXIT_BROKEN_PIPE = 141;

export async function main(argv: readonly string[] = process.argv): Promise<void> {
  // `pg-replicate … | head`: the reader is gone, so the lines written next would be lost to it.
  // Stop as a process killed by SIGPIPE does (Node ignores that signal), without a stack trace;
  // the stdout sink confirms a line only once written, so a resumed run starts after the last one.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(EXIT_BROKEN_PIPE);
  });
  const program = buildProgram(handle);
  try {
    await program.parseAsync(argv as string[]);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
      return;
    }
    throw error;
  }
}

async function handle(
  command: 'cdc' | 'copy' | 'both' | 'drop',
  args: { publication?: string; slot?: string },
  options: CliOptions,
): Promise<number> {
  const reporter = new ProgressReporter({ quiet: options.quiet, verbose: options.verbose });
  let connection: ConnectionOptions | undefined;
  try {
    connection = resolveConnection(connectionInput(options));
    if (command === 'drop') return await drop(connection, args.slot!, options, reporter);
    const mode = command;
    const controller = new AbortController();
    const stop = () => {
      if (controller.signal.aborted) process.exit(EXIT_INTERRUPTED);
      reporter.info('stopping: finishing the current batch (press Ctrl-C again to quit at once)');
      controller.abort();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    try {
      // Fail fast on anything found before streaming starts (bad settings stay bad); once the
      // pipeline has streamed, a transient failure (server restart, lost connection) is retried
      // with backoff from the sink's durable state.
      let streamed = false;
      for (let retry = 1; ; retry++) {
        const started = performance.now();
        try {
          const result = await runOnce(mode, args, options, connection, reporter, controller.signal, () => {
            streamed = true;
          });
          reporter.finish();
          summarize(result.stats, result.stopped, reporter);
          return EXIT_OK;
        } catch (error) {
          const failure = classifyFailure(error);
          // A copy that must start over (a TRUNCATE came in its way, or a resumed copy fell
          // short) is retried too: the settings were fine.
          const copyAgain = failure.code === 'TABLE_REWRITTEN' || failure.code === 'COPY_INCOMPLETE';
          if (
            !(streamed || copyAgain) ||
            options.retry === false ||
            failure.kind !== 'transient' ||
            controller.signal.aborted
          ) {
            throw error;
          }
          // A long healthy run earns a fresh backoff.
          if (performance.now() - started > CLI_RETRY.resetAfterMs) retry = 1;
          const delay = backoffDelay(retry, CLI_RETRY);
          reporter.warn(
            `${redact(failure.message, connection.password)} — retrying in ${(delay / 1000).toFixed(1)} s (attempt ${retry}; --no-retry to stop instead)`,
          );
          await sleep(delay, controller.signal);
          if (controller.signal.aborted) {
            reporter.info('stopped; run the same command to resume');
            return EXIT_OK;
          }
        }
      }
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  } catch (error) {
    reporter.finish();
    process.stderr.write(
      `pg-replicate: error: ${redact(describe(error, options.verbose), connection?.password)}\n`,
    );
    return isPgReplicateError(error) && (error.code === 'INVALID_ARGUMENT' || error.code === 'INVALID_LSN')
      ? EXIT_USAGE
      : EXIT_FAILED;
  }
}

/** Backoff of the CLI's retries after a mid-stream failure: 1 s doubling up to 30 s, jittered. */
const CLI_RETRY = {
  maxAttempts: 0,
  initialDelayMs: 1000,
  maxDelayMs: 30_000,
  multiplier: 2,
  resetAfterMs: 60_000,
};

/** One run of the pipeline with a new source and sink (a retry must not reuse closed ones). */
async function runOnce(
  command: 'cdc' | 'copy' | 'both',
  args: { publication?: string; slot?: string },
  options: CliOptions,
  connection: ConnectionOptions,
  reporter: ProgressReporter,
  signal: AbortSignal,
  onStreaming: () => void,
) {
  const sink = await createSink({
    sink: options.sink ?? 'stdout',
    stateFile: options.stateFile,
    duckdbPath: options.duckdbPath,
    duckdbMemoryLimit: options.duckdbMemoryLimit,
    duckdbCopyMemoryLimit: options.duckdbCopyMemoryLimit,
    duckdbDeleteMemory: options.duckdbDeleteMemory,
    bqProject: options.bqProject,
    bqDataset: options.bqDataset,
    bqKeyFile: options.bqKeyFile,
    bqLocation: options.bqLocation,
    bqMaxStaleness: options.bqMaxStaleness,
    bqMaxBatchBytes: options.bqMaxBatchBytes,
    bqUnrepresentable: options.bqUnrepresentable,
    logger: reporter,
  });
  const source = new PostgresSource({ connection, publication: args.publication!, slot: args.slot });
  const pipeline = new Pipeline({
    source,
    sink,
    mode: command,
    batchMaxRows: options.batchMaxRows,
    batchMaxBytes: options.batchMaxBytes,
    batchMaxDelayMs: options.batchMaxDelay,
    copyBatchRows: options.copyBatchRows,
    copyWorkers: options.copyWorkers,
    endLsn: options.endLsn,
    heartbeatIntervalMs: options.heartbeat === undefined ? undefined : options.heartbeat * 1000,
    maxRetainedWalBytes: options.maxRetainedWal === undefined ? undefined : options.maxRetainedWal * 2 ** 20,
    signal,
    onProgress: (event) => {
      if (event.type === 'streaming') onStreaming();
      reporter.onProgress(event);
    },
    logger: reporter,
  });
  return pipeline.run();
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

function summarize(stats: PipelineStats, stopped: boolean, reporter: ProgressReporter): void {
  if (stats.tablesCopied > 0) {
    const rate = stats.copyMs > 0 ? Math.round((stats.rowsCopied / stats.copyMs) * 1000) : 0;
    reporter.info(
      `copied ${stats.rowsCopied} rows from ${stats.tablesCopied} table(s) in ${(stats.copyMs / 1000).toFixed(1)} s (${rate} rows/s)`,
    );
  }
  const changes = stats.inserts + stats.updates + stats.deletes + stats.truncates;
  if (stats.streamMs > 0) {
    reporter.info(
      `applied ${changes} changes (${stats.inserts} inserts, ${stats.updates} updates, ${stats.deletes} deletes, ${stats.truncates} truncates) in ${stats.transactions} transactions`,
    );
  }
  if (stats.durableLsn !== null) reporter.info(`durable up to ${formatLsn(stats.durableLsn)}`);
  if (stopped) reporter.info('stopped; run the same command to resume');
}

async function drop(
  connection: ConnectionOptions,
  slot: string,
  options: CliOptions,
  reporter: ProgressReporter,
): Promise<number> {
  const client = await connect(connection);
  try {
    const server = await serverInfo(client);
    const info = await replicationSlot(client, slot, server.versionNum);
    if (info === null) {
      throw new PgReplicateError('SLOT_NOT_FOUND', `slot "${slot}" does not exist in ${server.database}`, {
        hint: 'list slots with: SELECT slot_name FROM pg_replication_slots;',
      });
    }
    if (info.active) {
      throw new PgReplicateError('SLOT_IN_USE', `slot "${slot}" is in use (PID ${info.activePid})`, {
        hint: 'stop the pipeline that uses it first',
      });
    }
    const retained =
      info.retainedWalBytes === null
        ? ''
        : `, retaining ${Math.round(info.retainedWalBytes / 1048576)} MB of WAL`;
    const what = `slot "${slot}"${retained}${options.publication ? ` and publication "${options.publication}"` : ''}`;
    if (!options.yes) {
      process.stderr.write(`pg-replicate: would drop ${what}; nothing dropped: add --yes to confirm\n`);
      return EXIT_USAGE;
    }
    await client.query('SELECT pg_drop_replication_slot($1)', [slot]);
    if (options.publication)
      await client.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(options.publication)}`);
    reporter.info(`dropped ${what}`);
    return EXIT_OK;
  } finally {
    await client.end().catch(() => {});
  }
}

function describe(error: unknown, verbose: boolean | undefined): string {
  if (error instanceof PgReplicateError) {
    return verbose && error.stack ? `${error.toOneLine()}\n${error.stack}` : error.toOneLine();
  }
  const message = error instanceof Error ? error.message : String(error);
  if (verbose && error instanceof Error) return `${message}\n${error.stack}`;
  return `${message} (unexpected; run with --verbose for details and please report it)`;
}

/**
 * Belt and braces: messages never contain passwords by construction, but whatever a library puts
 * in one, the password (raw or URL-encoded) does not reach the terminal. Passwords shorter than 4
 * characters are left alone: masking them would garble every word they occur in — and reveal them.
 */
function redact(text: string, password: string | undefined): string {
  if (password === undefined || password.length < 4) return text;
  return [password, encodeURIComponent(password)].reduce(
    (out, form) => out.split(form).join('********'),
    text,
  );
}
