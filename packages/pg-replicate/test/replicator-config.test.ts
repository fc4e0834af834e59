/**
 * The replicator's pieces that need no database: configuration loading (file, environment,
 * `_FILE` secrets, precedence), the environment naming scheme, the generated reference being up
 * to date, the error policy, the backoff, log redaction and the sink wrapper.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SINK_NAMES } from '../src/cli/sinks.js';
import { PgReplicateError } from '../src/errors.js';
import { configFields, envName } from '../src/replicator/config-fields.js';
import { ConfigError } from '../src/replicator/config-issues.js';
import { loadConfig } from '../src/replicator/config-loader.js';
import { configReference } from '../src/replicator/config-reference.js';
import { EXIT } from '../src/replicator/exit-codes.js';
import { InstrumentedSink } from '../src/replicator/instrumented-sink.js';
import { redactor } from '../src/replicator/logger.js';
import { ReplicatorMetrics } from '../src/replicator/metrics.js';
import { backoffDelay } from '../src/retry/backoff.js';
import { classifyFailure } from '../src/retry/failure-policy.js';
import { NullSink } from '../src/sink/null-sink.js';
import { tempDir, writeConfig } from './replicator-harness.js';

const REFERENCE = fileURLToPath(new URL('../../../docs/config-reference.md', import.meta.url));
const GUIDE = fileURLToPath(new URL('../../../docs/replicator.md', import.meta.url));
const dir = tempDir('config');
const minimal = { source: { publication: 'pub', slot: 'my_slot' }, sink: { type: 'null' } };

function issuesOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map((issue) => `${issue.path}: ${issue.message}`);
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('fills in defaults and names the pipeline after the slot', () => {
    const { config, warnings } = loadConfig({ path: writeConfig(dir, minimal), env: {} });
    expect(config).toMatchObject({
      name: 'my_slot',
      mode: 'both',
      batch: { maxRows: 10_000, maxDelayMs: 1_000, copyRows: 10_000 },
      http: { host: '0.0.0.0', port: 9898 },
      log: { level: 'info', format: 'auto' },
      retry: { initialDelayMs: 1_000, maxDelayMs: 60_000, multiplier: 2, maxAttempts: 0 },
      shutdown: { timeoutMs: 30_000 },
    });
    expect(warnings).toEqual([]);
  });

  it('lets every variable win over the file, reads _FILE secrets, and splits lists', () => {
    const secret = join(dir, 'password');
    writeFileSync(secret, 'from-a-file\n');
    const file = writeConfig(dir, {
      ...minimal,
      batch: { maxRows: 5 },
      sink: { type: 'stdout', stateFile: '/s.json' },
    });
    const { config, secrets } = loadConfig({
      path: file,
      env: {
        PG_REPLICATE_BATCH_MAX_ROWS: '250',
        PG_REPLICATE_SOURCE_PUBLICATION: 'a, b',
        PG_REPLICATE_SOURCE_PASSWORD_FILE: secret,
        PG_REPLICATE_LOG_LEVEL: 'debug',
        // Switching the sink drops the file's stdout options.
        PG_REPLICATE_SINK_TYPE: 'duckdb',
        PG_REPLICATE_SINK_PATH: '/data/r.duckdb',
        PG_REPLICATE_HTTP_PORT: '',
        UNRELATED: 'x',
      },
    });
    expect(config.batch.maxRows).toBe(250);
    expect(config.source.publication).toEqual(['a', 'b']);
    expect(config.source.password).toBe('from-a-file');
    expect(config.log.level).toBe('debug');
    expect(config.sink).toEqual({ type: 'duckdb', path: '/data/r.duckdb' });
    expect(config.http.port).toBe(9898);
    expect(secrets).toEqual(['from-a-file']);
  });

  it('reads the environment alone, from PG_REPLICATE_CONFIG or without a file', () => {
    const env = {
      PG_REPLICATE_SOURCE_PUBLICATION: 'pub',
      PG_REPLICATE_SINK_TYPE: 'null',
      PG_REPLICATE_MODE: 'copy',
    };
    expect(loadConfig({ env }).config).toMatchObject({ name: 'pub', mode: 'copy', sink: { type: 'null' } });
    const file = writeConfig(dir, minimal, 'from-env.yaml');
    expect(loadConfig({ env: { PG_REPLICATE_CONFIG: file } }).file).toBe(file);
  });

  it('warns about secrets in the file and hides the URL and its password', () => {
    const file = writeConfig(dir, {
      ...minimal,
      source: { ...minimal.source, url: 'postgres://u:p%40ss@h/db', password: 'pw' },
    });
    const { warnings, secrets } = loadConfig({ path: file, env: {} });
    expect(warnings.map((w) => w.split(' is written')[0])).toEqual(['source.url', 'source.password']);
    expect(secrets).toEqual(['pw', 'postgres://u:p%40ss@h/db', 'p@ss']);
  });

  it('reports YAML errors, unreadable files, cross-field rules and conflicting variables', () => {
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'source:\n  slot: [unclosed\n');
    expect(issuesOf(() => loadConfig({ path: broken, env: {} }))[0]).toMatch(
      /^\(file\): .*broken\.yaml:\d+:\d+: /,
    );
    expect(issuesOf(() => loadConfig({ path: join(dir, 'nope.yaml'), env: {} }))[0]).toMatch(/ENOENT/);
    const noSlot = writeConfig(dir, { mode: 'cdc', source: { publication: 'p' }, sink: { type: 'null' } });
    expect(issuesOf(() => loadConfig({ path: noSlot, env: {} }))).toEqual([
      'source.slot: required when mode is cdc or both (mode is cdc)',
    ]);
    expect(
      issuesOf(() =>
        loadConfig({
          path: writeConfig(dir, minimal),
          env: { PG_REPLICATE_SOURCE_PASSWORD: 'a', PG_REPLICATE_SOURCE_PASSWORD_FILE: '/x' },
        }),
      ),
    ).toEqual([
      'source.password: set either PG_REPLICATE_SOURCE_PASSWORD or PG_REPLICATE_SOURCE_PASSWORD_FILE, not both',
    ]);
    // A secret's value is never echoed, even when it is wrong.
    const url = writeConfig(dir, {
      ...minimal,
      source: { ...minimal.source, url: 'mysql://u:hunter2@h/db' },
    });
    const [issue] = issuesOf(() => loadConfig({ path: url, env: {} }));
    expect(issue).toBe('source.url: expected a postgres://user:password@host:port/database URL');
  });

  it('resolves the connection like psql (PG* variables under the fields) and hides those secrets too', () => {
    const file = writeConfig(dir, { ...minimal, source: { ...minimal.source, host: 'db.internal' } });
    const { connection, secrets } = loadConfig({
      path: file,
      env: { PGHOST: 'ignored', PGPORT: '6543', PGPASSWORD: 'from-pgpassword' },
    });
    expect(connection).toMatchObject({ host: 'db.internal', port: 6543, password: 'from-pgpassword' });
    expect(connection.applicationName).toBe('pg-replicate:my_slot');
    expect(secrets).toEqual(['from-pgpassword']);
    expect(issuesOf(() => loadConfig({ path: file, env: { PGSSLMODE: 'sometimes' } }))).toEqual([
      'source: unknown sslmode "sometimes" — use one of disable, allow, prefer, require, verify-ca, verify-full',
    ]);
  });

  it('gives every field a description and a distinct environment variable', () => {
    const fields = configFields();
    expect(fields.length).toBeGreaterThan(30);
    expect(new Set(fields.map((f) => f.env)).size).toBe(fields.length);
    expect(fields.filter((f) => f.description === '').map((f) => f.dotted)).toEqual([]);
    expect(envName(['source', 'connectTimeoutMs'])).toBe('PG_REPLICATE_SOURCE_CONNECT_TIMEOUT_MS');
    expect(fields.filter((f) => f.secret).map((f) => f.dotted)).toEqual(['source.url', 'source.password']);
  });

  it('knows every sink the CLI knows', () => {
    expect(configFields().find((f) => f.dotted === 'sink.type')!.values).toEqual([...SINK_NAMES]);
  });

  it('docs/replicator.md documents every metric and every exit code', async () => {
    const guide = readFileSync(GUIDE, 'utf8');
    const metrics = new ReplicatorMetrics({ pipeline: 'p', mode: 'both', sink: 'null', version: '0' });
    const names = (await metrics.registry.getMetricsAsJSON()).map((metric) => metric.name);
    const ours = names.filter((name) => name.startsWith('pg_replicate_'));
    expect(ours.length).toBeGreaterThan(15);
    for (const name of ours) expect(guide, name).toContain(`\`${name}`);
    for (const code of Object.values(EXIT)) expect(guide).toContain(`\n| ${code} | `);
  });

  it('docs/config-reference.md is the generated reference', () => {
    // To update: npx tsc -b && node packages/pg-replicate/bin/pg-replicate.js run --print-config-reference > docs/config-reference.md
    expect(readFileSync(REFERENCE, 'utf8')).toBe(configReference());
  });
});

describe('supervision', () => {
  const retry = {
    initialDelayMs: 1000,
    maxDelayMs: 60_000,
    multiplier: 2,
    maxAttempts: 0,
    resetAfterMs: 60_000,
  };

  it('backs off exponentially, capped, with jitter between half and all of it', () => {
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, retry, () => 1))).toEqual([1000, 2000, 4000, 8000]);
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, retry, () => 0))).toEqual([500, 1000, 2000, 4000]);
    expect(backoffDelay(30, retry, () => 1)).toBe(60_000);
    expect(backoffDelay(30, retry, () => 0)).toBe(30_000);
  });

  it('retries what goes away by itself and stops on what needs a person', () => {
    const kind = (error: unknown) => `${classifyFailure(error).kind} ${classifyFailure(error).code}`;
    const serverError = (code: string) =>
      Object.assign(new Error('server says no'), { code, severity: 'FATAL' });
    expect(kind(new PgReplicateError('CONNECTION_LOST', 'gone'))).toBe('transient CONNECTION_LOST');
    expect(kind(new PgReplicateError('SLOT_IN_USE', 'busy'))).toBe('transient SLOT_IN_USE');
    expect(kind(new PgReplicateError('SINK_LOCKED', 'locked'))).toBe('transient SINK_LOCKED');
    expect(kind(new PgReplicateError('SLOT_INVALIDATED', 'lost'))).toBe('permanent SLOT_INVALIDATED');
    expect(kind(new PgReplicateError('AUTHENTICATION_FAILED', 'no'))).toBe('permanent AUTHENTICATION_FAILED');
    expect(kind(new PgReplicateError('SCHEMA_UNSUPPORTED', 'no'))).toBe('permanent SCHEMA_UNSUPPORTED');
    expect(kind(serverError('57P01'))).toBe('transient 57P01');
    expect(kind(serverError('08006'))).toBe('transient 08006');
    expect(kind(serverError('42P01'))).toBe('permanent 42P01');
    expect(kind(new Error('Connection terminated unexpectedly'))).toBe('transient CONNECTION_LOST');
    expect(kind(Object.assign(new Error('read'), { code: 'ECONNRESET' }))).toBe('transient ECONNRESET');
    expect(kind(new TypeError('x is undefined'))).toBe('unexpected UNEXPECTED');
  });

  it('wraps a sink driver error so the policy knows it came from the sink', async () => {
    const failing = (error: Error) =>
      new InstrumentedSink(
        Object.assign(new NullSink(), { writeChanges: () => Promise.reject(error) }),
        () => {},
      );
    await expect(failing(new Error('disk on fire')).writeChanges({ events: [] })).rejects.toMatchObject({
      code: 'SINK_ERROR',
      message: 'the null sink failed writing changes: disk on fire',
    });
    const reset = Object.assign(new Error('socket'), { code: 'ECONNRESET' });
    await expect(failing(reset).writeChanges({ events: [] })).rejects.toMatchObject({
      code: 'SINK_UNAVAILABLE',
    });
  });
});

describe('logs', () => {
  it('mask every form of a secret', () => {
    const redact = redactor(['p"a ss', 'postgres://u:p%22a%20ss@h/db']);
    expect(redact('url postgres://u:p%22a%20ss@h/db, raw p"a ss, json p\\"a ss, encoded p%22a%20ss')).toBe(
      'url ********, raw ********, json ********, encoded ********',
    );
  });
});
