import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdleConnections } from '../src/connection/idle-connections.js';
import { PgReplicateError } from '../src/errors.js';
import { freshDatabase, type TestDatabase, waitFor } from './helpers.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await freshDatabase('idle');
});
afterAll(async () => db.close());

async function backendPid(client: pg.Client): Promise<number> {
  const result = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return result.rows[0]!.pid;
}

describe('IdleConnections', () => {
  it('hands out warmed connections, takes them back, and replaces one the server ended while idle', async () => {
    const idle = new IdleConnections(db.options);
    idle.warm(2);
    const first = await idle.take();
    const second = await idle.take();
    const [a, b] = [await backendPid(first), await backendPid(second)];
    expect(a).not.toBe(b);
    idle.give(first);
    expect(await backendPid(await idle.take())).toBe(a);
    idle.give(first);
    await db.sql('SELECT pg_terminate_backend($1)', [a]);
    await waitFor(() => first.connection.stream.destroyed, 5_000, 'the terminated connection to close');
    const replacement = await idle.take();
    expect(await backendPid(replacement)).not.toBe(a);
    idle.give(replacement);
    idle.give(second);
    await idle.close();
    await waitFor(
      async () => (await db.sql('SELECT pid FROM pg_stat_activity WHERE pid = $1', [b])).length === 0,
      5_000,
      'the idle connections to close',
    );
  });

  it('reports the error of a connection that could not be opened when it is taken', async () => {
    const idle = new IdleConnections({ ...db.options, password: 'wrong password' });
    idle.warm(1);
    const error = await idle.take().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PgReplicateError);
    expect((error as PgReplicateError).code).toBe('AUTHENTICATION_FAILED');
    await idle.close();
  });
});
