/**
 * `pg-replicate run --config replicator.yaml`: the long-running replicator service (see issue 8).
 */
import type { Command } from 'commander';

/** Adds the `run` command to the CLI. */
export function registerRunCommand(_program: Command): void {}
