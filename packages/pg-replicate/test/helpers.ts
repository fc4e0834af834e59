/**
 * Test helpers: a fresh database per test file on the run's shared Postgres, and small utilities.
 */
import pg from 'pg';
import { inject } from 'vitest';
import { type ConnectionOptions, resolveConnection } from '../src/connection/connection-options.js';

export interface TestDatabase {
  name: string;
  options: ConnectionOptions;
  url: string;
  /** Runs SQL (several statements allowed) and returns the last statement's rows. */
  sql<Row extends Record<string, unknown> = Record<string, unknown>>(
    text: string,
    values?: unknown[],
  ): Promise<Row[]>;
  /** A client of its own (for holding transactions open); the caller ends it. */
  client(): Promise<pg.Client>;
  close(): Promise<void>;
}

export async function freshDatabase(prefix = 'test'): Promise<TestDatabase> {
  const base = inject('postgres');
  const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 7)}`.toLowerCase();
  const admin = new pg.Client(base);
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const client = async () => {
    const c = new pg.Client({ ...base, database: name, options: '-c TimeZone=UTC' });
    c.on('error', () => {});
    await c.connect();
    return c;
  };
  const shared = await client();
  return {
    name,
    options: resolveConnection({ ...base, database: name, sslmode: 'disable' }, {}),
    url: `postgres://${base.user}:${base.password}@${base.host}:${base.port}/${name}?sslmode=disable`,
    async sql(text, values) {
      const result = await shared.query(text, values);
      const last = Array.isArray(result) ? result[result.length - 1] : result;
      return (last?.rows ?? []) as never;
    },
    client,
    async close() {
      await shared.end();
      // Slots pin the database: drop them first so the database can go.
      const cleanup = new pg.Client(base);
      await cleanup.connect();
      await cleanup
        .query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [name],
        )
        .catch(() => {});
      await cleanup
        .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, [
          name,
        ])
        .catch(() => {});
      await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      await cleanup.end();
    },
  };
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(
  check: () => Promise<T> | T,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
