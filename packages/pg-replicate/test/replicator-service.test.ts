/**
 * The replicator as operators run it: `pg-replicate run --config <file>` as a child process on a
 * real Postgres. Readiness, metrics that move with a workload, SIGTERM → exit 0 and a later run
 * resuming without loss (the sink's lines replayed equal the tables), permanent failures and
 * invalid configurations with their own exit codes, and no secret in any output.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '@pg-replicate/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLsn } from '../src/lsn.js';
import { freshDatabase, type TestDatabase } from './helpers.js';
import { materialize, startService, tempDir, until, writeConfig } from './replicator-harness.js';

const PASSWORD = 'Rep1icat0r-s3rvice-secret';
let db: TestDatabase;
let dir: string;

function config(port: number, overrides: Record<string, unknown> = {}) {
  return {
    source: {
      host: db.options.host,
      port: db.options.port,
      database: db.options.database,
      user: 'svc_user',
      sslmode: 'disable',
      publication: 'svc_pub',
      slot: 'svc_slot',
    },
    sink: { type: 'stdout', stateFile: join(dir, 'state.json') },
    batch: { maxDelayMs: 100 },
    http: { host: '127.0.0.1', port },
    monitor: { intervalMs: 200 },
    retry: { initialDelayMs: 100, maxDelayMs: 500 },
    ...overrides,
  };
}

async function tablesInPostgres(): Promise<Map<string, Map<string, Record<string, unknown>>>> {
  const tables = new Map<string, Map<string, Record<string, unknown>>>();
  for (const name of ['items', 'notes']) {
    const rows = await db.sql<{ id: number; v: string }>(`SELECT id, v FROM ${name} ORDER BY id`);
    tables.set(name, new Map(rows.map((row) => [String(row.id), { id: row.id, v: row.v }])));
  }
  return tables;
}

beforeAll(async () => {
  db = await freshDatabase('replsvc');
  dir = tempDir('service');
  await db.sql(`
    CREATE ROLE svc_user LOGIN REPLICATION PASSWORD '${PASSWORD}';
    CREATE TABLE items (id int PRIMARY KEY, v text);
    CREATE TABLE notes (id int PRIMARY KEY, v text);
    INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 2000) g;
    INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;
    CREATE PUBLICATION svc_pub FOR TABLE items, notes;
    GRANT SELECT ON items, notes TO svc_user;
  `);
});
afterAll(async () => db.close());

describe('pg-replicate run', () => {
  it('backfills, streams, exposes moving metrics, stops on SIGTERM with 0, and resumes without loss', async () => {
    const port = await freePort();
    const stdoutFile = join(dir, 'sink.jsonl');
    const args = ['--config', writeConfig(dir, config(port))];
    // A process warning (as pg prints deprecations) on SIGTERM: it must become a JSON log line.
    const preload = join(dir, 'warn-on-sigterm.cjs');
    writeFileSync(
      preload,
      `process.prependListener('SIGTERM', () => process.emitWarning('test warning', 'DeprecationWarning', 'DEP_TEST'));\n`,
    );
    const env = { PG_REPLICATE_SOURCE_PASSWORD: PASSWORD, NODE_OPTIONS: `--require ${preload}` };

    const first = startService({ args, env, port, stdoutFile });
    expect((await until(() => first.get('/healthz').catch(() => null), '/healthz')).status).toBe(200);
    const ready = await until(async () => {
      const response = await first.get('/readyz');
      return response.status === 200 && JSON.parse(response.body).state === 'streaming' ? response : null;
    }, '/readyz to report streaming');
    expect(JSON.parse(ready.body)).toMatchObject({ ready: true, pipeline: 'svc_slot', mode: 'both' });

    let metrics = await first.metrics();
    expect(metrics.get('pg_replicate_rows_copied_total{table="\\"public\\".\\"items\\""}')).toBe(2000);
    expect(metrics.get('pg_replicate_rows_copied_total{table="\\"public\\".\\"notes\\""}')).toBe(50);
    expect(metrics.get('pg_replicate_tables_copied_total')).toBe(2);
    expect(metrics.get('pg_replicate_changes_applied_total{op="insert"}')).toBe(0);
    expect(metrics.get('pg_replicate_state{state="streaming"}')).toBe(1);
    expect(metrics.get('process_resident_memory_bytes')).toBeGreaterThan(10_000_000);

    // A workload: 300 inserts in 3 transactions, 40 updates, 25 deletes, one truncate.
    for (let i = 0; i < 3; i++) {
      await db.sql(
        `INSERT INTO items SELECT g, 'new ' || g FROM generate_series(${3001 + i * 100}, ${3100 + i * 100}) g`,
      );
    }
    await db.sql(`UPDATE items SET v = 'changed' WHERE id <= 40`);
    await db.sql(`DELETE FROM items WHERE id BETWEEN 101 AND 125`);
    await db.sql(`TRUNCATE notes`);
    metrics = await until(async () => {
      const m = await first.metrics();
      return m.get('pg_replicate_changes_applied_total{op="truncate"}') === 1 ? m : null;
    }, 'the workload in the metrics');
    expect(metrics.get('pg_replicate_changes_applied_total{op="insert"}')).toBe(300);
    expect(metrics.get('pg_replicate_changes_applied_total{op="update"}')).toBe(40);
    expect(metrics.get('pg_replicate_changes_applied_total{op="delete"}')).toBe(25);
    expect(metrics.get('pg_replicate_transactions_applied_total')).toBe(6);
    expect(metrics.get('pg_replicate_batches_total')).toBeGreaterThanOrEqual(1);
    expect(metrics.get('pg_replicate_batch_commit_to_durable_seconds_count')).toBe(
      metrics.get('pg_replicate_batches_total'),
    );
    expect(
      metrics.get('pg_replicate_sink_write_duration_seconds_count{operation="changes"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metrics.get('pg_replicate_sink_write_duration_seconds_count{operation="rows"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(metrics.get('pg_replicate_durable_lsn')).toBeGreaterThan(0);
    expect(metrics.get('pg_replicate_replication_lag_seconds')).toBeGreaterThanOrEqual(0);
    const slot = await until(async () => {
      const m = await first.metrics();
      return (m.get('pg_replicate_slot_retained_wal_bytes') ?? 0) > 0 &&
        m.has('pg_replicate_replication_lag_bytes')
        ? m
        : null;
    }, 'the slot monitor');
    expect(slot.get('pg_replicate_slot_active')).toBe(1);

    expect(await first.stop('SIGTERM')).toBe(0);
    const logs = first.logs();
    expect(logs.every((line) => line.pipeline === 'svc_slot')).toBe(true);
    expect(logs.find((line) => line.msg === 'test warning')).toMatchObject({
      level: 'warn',
      warning: { name: 'DeprecationWarning', code: 'DEP_TEST' },
    });
    expect(logs.map((line) => line.msg)).toContainEqual(
      expect.stringMatching(/^stopped; durable up to \d+\/[0-9A-F]+; start again to resume$/),
    );
    expect(first.stderr()).not.toContain(PASSWORD);

    // While it is down: more changes. The next run must pick them up, and copy nothing again.
    await db.sql(`INSERT INTO items SELECT g, 'later ' || g FROM generate_series(5001, 5100) g`);
    await db.sql(`UPDATE items SET v = 'later' WHERE id BETWEEN 41 AND 60`);
    await db.sql(`INSERT INTO notes VALUES (1, 'after the truncate')`);
    const [{ lsn }] = await db.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');

    const second = startService({ args, env, port, stdoutFile });
    await until(async () => {
      const status = JSON.parse((await second.get('/readyz')).body) as { durableLsn: string | null };
      return status.durableLsn !== null && parseLsn(status.durableLsn) >= parseLsn(lsn);
    }, 'the second run to catch up');
    metrics = await second.metrics();
    expect(metrics.get('pg_replicate_tables_copied_total')).toBe(0);
    expect(metrics.get('pg_replicate_changes_applied_total{op="insert"}')).toBe(101);
    expect(metrics.get('pg_replicate_changes_applied_total{op="update"}')).toBe(20);
    expect(await second.stop('SIGINT')).toBe(0);
    expect(second.logs().some((line) => line.msg === 'every table is already copied')).toBe(true);

    expect(materialize(stdoutFile)).toEqual(await tablesInPostgres());
  });

  it('stops with exit 4 and a clear message on a permanent failure (bad password), never logging it', async () => {
    const port = await freePort();
    const wrong = 'Wr0ng-passw0rd-never-logged';
    const service = startService({
      args: ['--config', writeConfig(dir, config(port), 'wrong.yaml')],
      env: { PG_REPLICATE_SOURCE_PASSWORD: wrong },
      port,
      stdoutFile: join(dir, 'wrong.jsonl'),
    });
    expect(await service.exited).toBe(4);
    const failure = service.logs().find((line) => line.level === 'error')!;
    expect(failure.msg).toContain(
      'permanent failure, stopping: password authentication failed for svc_user@',
    );
    expect(failure['code']).toBe('AUTHENTICATION_FAILED');
    expect(service.stderr()).not.toContain(wrong);
  });

  it('lists every configuration problem at once and exits 3 before connecting', async () => {
    const port = await freePort();
    const bad = {
      mode: 'stream',
      source: {
        host: db.options.host,
        port: 70000,
        publication: [],
        slot: 'Not-A-Slot',
        sslrootcert: '/no/such/ca.pem',
      },
      sink: { type: 'duckdb', paht: '/tmp/x.duckdb' },
      batch: { max_rows: 10, maxDelayMs: -1 },
      log: { level: 'loud' },
    };
    const service = startService({
      args: ['--config', writeConfig(dir, bad, 'bad.yaml')],
      env: {
        PG_REPLICATE_HTTP_PORT: 'eighty',
        PG_REPLICATE_RETRY_MAX_ATTEMTS: '3',
        PG_REPLICATE_SOURCE_PASSWORD_FILE: join(dir, 'missing-secret'),
      },
      port,
      stdoutFile: join(dir, 'bad.jsonl'),
    });
    expect(await service.exited).toBe(3);
    const [line, ...rest] = service.logs();
    expect(rest).toEqual([]);
    expect(line!.level).toBe('fatal');
    expect(line!.pipeline).toBe('Not-A-Slot');
    const issues = (line!['issues'] as { path: string; message: string; from?: string }[]).map(
      (issue) => `${issue.path}: ${issue.message}${issue.from ? ` (from ${issue.from})` : ''}`,
    );
    expect(issues).toEqual([
      'PG_REPLICATE_RETRY_MAX_ATTEMTS: unknown environment variable (did you mean PG_REPLICATE_RETRY_MAX_ATTEMPTS?)',
      `source.password: cannot read ${join(dir, 'missing-secret')}: ENOENT (from PG_REPLICATE_SOURCE_PASSWORD_FILE)`,
      'mode: expected one of copy, cdc, both, got "stream"',
      'source.port: expected a value ≤ 65535, got 70000',
      'source.sslrootcert: cannot read file "/no/such/ca.pem"',
      'source.publication: must not be empty',
      'source.slot: expected a slot name: 1 to 63 lower-case letters, digits and underscores, got "Not-A-Slot"',
      'sink.path: required',
      'sink.paht: unknown field (did you mean "path"?); expected one of type, stateFile, path, memoryLimit, copyMemoryLimit, deleteMemory, project, dataset, keyFile, location, maxStaleness, maxBatchBytes, unrepresentable',
      'batch.maxDelayMs: expected a value ≥ 0, got -1',
      'batch.max_rows: unknown field (did you mean "maxRows"?); expected one of maxRows, maxBytes, maxDelayMs, copyRows, copyWorkers',
      'http.port: expected a number, got "eighty" (from PG_REPLICATE_HTTP_PORT)',
      'log.level: expected one of trace, debug, info, warn, error, fatal, silent, got "loud"',
    ]);
    expect(line!.msg).toContain('(13 problems)');
  });

  it('in copy mode, backfills once and exits 0', async () => {
    const port = await freePort();
    const service = startService({
      args: ['--config', writeConfig(dir, config(port), 'copy.yaml')],
      env: {
        PG_REPLICATE_SOURCE_PASSWORD: PASSWORD,
        PG_REPLICATE_MODE: 'copy',
        PG_REPLICATE_SINK_TYPE: 'null',
      },
      port,
      stdoutFile: join(dir, 'copy.jsonl'),
    });
    expect(await service.exited).toBe(0);
    const copied = service
      .logs()
      .filter((line) => /^copied "public"\."(items|notes)": \d+ rows/.test(line.msg));
    expect(copied).toHaveLength(2);
    expect(service.logs().at(-1)!.msg).toBe('finished');
  });

  it('gives up with exit 5 after retry.maxAttempts transient failures in a row', async () => {
    const port = await freePort();
    const nobody = await freePort();
    const service = startService({
      args: [],
      env: {
        PG_REPLICATE_SOURCE_URL: `postgres://svc_user@127.0.0.1:${nobody}/app`,
        PG_REPLICATE_SOURCE_PUBLICATION: 'svc_pub',
        PG_REPLICATE_SOURCE_SLOT: 'svc_slot',
        PG_REPLICATE_SINK_TYPE: 'null',
        PG_REPLICATE_HTTP_HOST: '127.0.0.1',
        PG_REPLICATE_HTTP_PORT: String(port),
        PG_REPLICATE_RETRY_INITIAL_DELAY_MS: '20',
        PG_REPLICATE_RETRY_MAX_ATTEMPTS: '3',
      },
      port,
      stdoutFile: join(dir, 'gives-up.jsonl'),
    });
    expect(await service.exited).toBe(5);
    const warnings = service.logs().filter((line) => line.msg.startsWith('transient failure'));
    expect(warnings.map((line) => line.msg.replace(/[\d.]+ s:.*/, 'N s'))).toEqual([
      'transient failure, retrying in N s',
      'transient failure, retrying in N s',
    ]);
    expect(service.logs().at(-1)!.msg).toMatch(
      /^giving up after 3 failed attempts in a row: connection refused by/,
    );
  });

  it('exits 6 when a stop does not finish within shutdown.timeoutMs', async () => {
    const port = await freePort();
    const service = startService({
      args: ['--config', writeConfig(dir, config(port, { shutdown: { timeoutMs: 0 } }), 'timeout.yaml')],
      // The file's sink is stdout with a state file: switching the type drops its options.
      env: {
        PG_REPLICATE_SOURCE_PASSWORD: PASSWORD,
        PG_REPLICATE_SINK_TYPE: 'null',
        PG_REPLICATE_SOURCE_SLOT: 'timeout_slot',
      },
      port,
      stdoutFile: join(dir, 'timeout.jsonl'),
    });
    await until(async () => (await service.get('/readyz')).status === 200, 'ready');
    expect(await service.stop('SIGTERM')).toBe(6);
    expect(service.logs().at(-1)!.msg).toMatch(/shutdown did not finish within 0 ms/);
  });
});
