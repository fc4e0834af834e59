/**
 * The `run` command's place in the CLI: its flags and help. What it does is in `run-service.ts`,
 * loaded only when `run` is chosen — the service's dependencies (logging, metrics, config
 * validation) would otherwise add a third to the start-up of every other command.
 */
import type { Command } from 'commander';
import { ENV_PREFIX } from './env-prefix.js';
import type { RunOptions } from './run-service.js';

const HELP = `
The configuration comes from the YAML file, then PG_REPLICATE_* environment variables (which win;
append _FILE to read a value from a file). The global connection flags do not apply to "run".
Reference: docs/config-reference.md (or --print-config-reference).

Example:
  pg-replicate run --config replicator.yaml
  PG_REPLICATE_SOURCE_PASSWORD_FILE=/run/secrets/pg_password pg-replicate run -c replicator.yaml

Exit status: 0 stopped cleanly (or copy finished), 1 unexpected error, 3 invalid configuration,
4 permanent failure, 5 retries exhausted, 6 shutdown timed out, 130 second signal.`;

/** Adds the `run` command to the CLI. */
export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description(
      'run one pipeline as a service: health and metrics over HTTP, JSON logs, retries, graceful stop',
    )
    .option(
      '-c, --config <file>',
      `YAML configuration (default: ${ENV_PREFIX}CONFIG, else the environment alone)`,
    )
    .option('--check', 'validate the configuration, print it with secrets masked, and exit')
    .option('--print-config-reference', 'print the configuration reference (Markdown) and exit')
    .addHelpText('after', HELP)
    .action(async function (this: Command) {
      const { runCommand } = await import('./run-service.js');
      const code = await runCommand(this.opts<RunOptions>());
      process.exit(code);
    });
}
