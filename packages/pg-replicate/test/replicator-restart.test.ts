/**
 * Supervision against a Postgres that goes away: on a cluster of its own (it is stopped and
 * started), the replicator starts before the server is up (alive, not ready, retrying), becomes
 * ready once it is, survives a server restart mid-stream by resuming from the durable state, and
 * ends with the sink equal to the tables.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, TestCluster } from '@pg-replicate/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseLsn } from '../src/lsn.js';
import { materialize, startService, tempDir, until, writeConfig } from './replicator-harness.js';

let cluster: TestCluster;
const DATABASE = 'shop';

async function sql<Row extends Record<string, unknown>>(text: string): Promise<Row[]> {
  return cluster.query<Row>(text, DATABASE);
}

beforeAll(async () => {
  cluster = await TestCluster.start({ password: 'Cluster-restart-s3cret' });
  await cluster.query(`CREATE DATABASE ${DATABASE}`);
  await sql(`
    CREATE TABLE orders (id int PRIMARY KEY, v text);
    INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 500) g;
    CREATE PUBLICATION shop_pub FOR TABLE orders;
  `);
});
afterAll(async () => cluster?.destroy());

it('waits for Postgres, recovers from a server restart, and the sink equals Postgres', async () => {
  const dir = tempDir('restart');
  const port = await freePort();
  const stdoutFile = join(dir, 'sink.jsonl');
  const configFile = writeConfig(dir, {
    name: 'shop',
    source: {
      url: `postgres://postgres@127.0.0.1:${cluster.port}/${DATABASE}?sslmode=disable`,
      publication: 'shop_pub',
      slot: 'shop_slot',
      connectTimeoutMs: 2000,
    },
    sink: { type: 'stdout', stateFile: join(dir, 'state.json') },
    batch: { maxDelayMs: 100 },
    http: { host: '127.0.0.1', port },
    monitor: { intervalMs: 200 },
    retry: { initialDelayMs: 100, maxDelayMs: 400 },
  });
  const passwordFile = join(dir, 'password');
  // A mounted secret, as Docker and Kubernetes write them: with a trailing newline.
  writeFileSync(passwordFile, `${cluster.password}\n`);

  await cluster.stopServer();
  const service = startService({
    args: ['--config', configFile],
    env: { PG_REPLICATE_SOURCE_PASSWORD_FILE: passwordFile },
    port,
    stdoutFile,
  });
  try {
    // Down database: alive, not ready, retrying.
    await until(async () => JSON.parse((await service.get('/readyz')).body).state === 'retrying', 'retrying');
    expect((await service.get('/healthz')).status).toBe(200);
    const down = await service.get('/readyz');
    expect(down.status).toBe(503);
    expect(JSON.parse(down.body).lastError.code).toBe('HOST_UNREACHABLE');

    await cluster.startServer();
    await until(async () => (await service.get('/readyz')).status === 200, 'ready after the server started');
    await sql(`INSERT INTO orders SELECT g, 'before restart ' || g FROM generate_series(1001, 1200) g`);
    await sql(`UPDATE orders SET v = 'updated before restart' WHERE id <= 30`);
    await until(
      async () => (await service.metrics()).get('pg_replicate_changes_applied_total{op="update"}') === 30,
      'first workload',
    );

    await cluster.restart();
    await until(async () => (await service.get('/readyz')).status === 200, 'ready after the restart');
    await sql(`INSERT INTO orders SELECT g, 'after restart ' || g FROM generate_series(2001, 2100) g`);
    await sql(`DELETE FROM orders WHERE id BETWEEN 31 AND 50`);
    const [{ lsn }] = await sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    await until(async () => {
      const durable = JSON.parse((await service.get('/readyz')).body).durableLsn as string | null;
      return durable !== null && parseLsn(durable) >= parseLsn(lsn);
    }, 'caught up after the restart');

    const metrics = await service.metrics();
    expect(metrics.get('pg_replicate_restarts_total')).toBeGreaterThanOrEqual(2);
    const transient = [...metrics].filter(([name]) =>
      name.startsWith('pg_replicate_errors_total{kind="transient"'),
    );
    expect(transient.length).toBeGreaterThan(0);
    expect([...metrics].some(([name]) => name.startsWith('pg_replicate_errors_total{kind="permanent"'))).toBe(
      false,
    );
    expect(metrics.get('pg_replicate_rows_copied_total{table="\\"public\\".\\"orders\\""}')).toBe(500);

    expect(await service.stop('SIGTERM')).toBe(0);
  } finally {
    if (service.child.exitCode === null) service.child.kill('SIGKILL');
  }
  expect(service.stderr()).not.toContain(cluster.password);
  expect(service.logs().every((line) => line.pipeline === 'shop')).toBe(true);

  const rows = await sql<{ id: number; v: string }>('SELECT id, v FROM orders ORDER BY id');
  const expected = new Map(rows.map((row) => [String(row.id), { id: row.id, v: row.v }]));
  expect(expected.size).toBe(500 + 200 + 100 - 20);
  expect(materialize(stdoutFile)).toEqual(new Map([['orders', expected]]));
});
