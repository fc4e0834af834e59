/**
 * `pg-replicate run --config replicator.yaml`: the long-running replicator service (the container
 * entrypoint). This module owns the process: it loads the configuration (listing every problem
 * and exiting 3 before anything connects), runs the {@link Replicator}, turns the first
 * SIGTERM/SIGINT into a graceful stop bounded by `shutdown.timeoutMs`, a second into an immediate
 * exit, and exits with the status the run ended with (see `exit-codes.ts`).
 */
import { stringify } from 'yaml';
import { ENV_PREFIX } from './config-fields.js';
import { ConfigError } from './config-issues.js';
import { type LoadedConfig, loadConfig } from './config-loader.js';
import { configReference } from './config-reference.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { createLogger, redactor } from './logger.js';
import { buildSink, Replicator } from './replicator.js';

export interface RunOptions {
  config?: string;
  check?: boolean;
  printConfigReference?: boolean;
}

export async function runCommand(options: RunOptions): Promise<ExitCode> {
  if (options.printConfigReference) {
    process.stdout.write(configReference());
    return EXIT.OK;
  }
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig({ path: options.config });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const format = process.env[`${ENV_PREFIX}LOG_FORMAT`];
    const logger = createLogger({
      level: 'info',
      format: format === 'json' || format === 'pretty' ? format : 'auto',
      pipeline: error.pipeline ?? 'unknown',
    });
    logger.fatal({ issues: error.issues }, error.describe());
    return EXIT.CONFIG_INVALID;
  }
  if (options.check) return check(loaded);
  return serve(loaded);
}

/** `--check`: everything `run` validates before connecting, then the effective configuration. */
async function check(loaded: LoadedConfig): Promise<ExitCode> {
  try {
    await buildSink(loaded.config.sink);
  } catch (error) {
    process.stderr.write(`pg-replicate: invalid configuration: ${(error as Error).message}\n`);
    return EXIT.CONFIG_INVALID;
  }
  for (const warning of loaded.warnings) process.stderr.write(`pg-replicate: warning: ${warning}\n`);
  const { name, ...rest } = loaded.config;
  const text = stringify({ name, ...rest });
  process.stdout.write(
    `# configuration is valid${loaded.file ? ` (${loaded.file} + environment)` : ''}\n${redactor(loaded.secrets)(text)}`,
  );
  return EXIT.OK;
}

async function serve(loaded: LoadedConfig): Promise<ExitCode> {
  const replicator = new Replicator(loaded);
  const { logger } = replicator;
  const timeoutMs = loaded.config.shutdown.timeoutMs;
  let deadline: NodeJS.Timeout | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (replicator.stopping) {
      logger.warn(`${signal} again: exiting at once; work since the last durable batch will be replayed`);
      process.exit(EXIT.INTERRUPTED);
    }
    logger.info(
      `${signal}: stopping (flushing committed work; up to ${timeoutMs} ms; send it again to quit at once)`,
    );
    replicator.stop();
    deadline = setTimeout(() => {
      logger.error(`shutdown did not finish within ${timeoutMs} ms (shutdown.timeoutMs); exiting`);
      process.exit(EXIT.SHUTDOWN_TIMEOUT);
    }, timeoutMs);
  };
  const onCrash = (error: unknown) => {
    logger.fatal(
      { err: error },
      `unexpected error: ${error instanceof Error ? error.message : String(error)}`,
    );
    process.exit(EXIT.UNEXPECTED);
  };
  // Node prints its own warnings (deprecations…) as plain text on stderr: route them into the
  // structured log instead, so that every line on stderr stays one JSON object.
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    logger.warn(
      { warning: { name: warning.name, code: (warning as NodeJS.ErrnoException).code } },
      warning.message,
    );
  });
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  try {
    return await replicator.run();
  } finally {
    if (deadline !== null) clearTimeout(deadline);
  }
}
