/**
 * Starts one throwaway Postgres for the whole test run; each test file makes its own database on
 * it (see `withDatabase`). Tests that must restart or reconfigure a server start their own.
 */
import { type ClusterConnection, TestCluster } from '@pg-replicate/testkit';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    postgres: ClusterConnection;
  }
}

let cluster: TestCluster | undefined;

export async function setup(project: TestProject): Promise<void> {
  cluster = await TestCluster.start();
  const [row] = await cluster.query<{ version: string }>(
    `SELECT current_setting('server_version') AS version`,
  );
  process.stderr.write(`tests run against Postgres ${row!.version} (set PG_VERSION=14…18 to choose)\n`);
  project.provide('postgres', cluster.connection());
}

export async function teardown(): Promise<void> {
  await cluster?.destroy();
}
