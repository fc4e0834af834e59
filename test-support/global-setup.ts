/**
 * Starts one throwaway Postgres for the whole test run; each test file makes its own database on
 * it (see `withDatabase`). Tests that must restart or reconfigure a server start their own.
 *
 * Every test worker gets TMPDIR pointing into one scratch directory that teardown removes, so a
 * test that forgets to clean up (or a cluster of a failed test) leaves nothing in /tmp.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ClusterConnection, TestCluster } from '@pg-replicate/testkit';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    postgres: ClusterConnection;
  }
}

let cluster: TestCluster | undefined;
let scratch: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  scratch = mkdtempSync(join(tmpdir(), 'pg-replicate-tests-'));
  // Like /tmp itself: the `postgres` OS user (when tests run as root) makes its clusters in here.
  chmodSync(scratch, 0o1777);
  process.env['TMPDIR'] = scratch;
  cluster = await TestCluster.start();
  const [row] = await cluster.query<{ version: string }>(
    `SELECT current_setting('server_version') AS version`,
  );
  process.stderr.write(`tests run against Postgres ${row!.version} (set PG_VERSION=14…18 to choose)\n`);
  project.provide('postgres', cluster.connection());
}

export async function teardown(): Promise<void> {
  await cluster?.destroy();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}
