/**
 * The CLI survives a Postgres restart mid-stream: it reconnects with backoff, resumes from the
 * sink's durable position, and nothing is lost or printed twice. A cluster of its own, since the
 * test stops the server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCluster } from '@pg-replicate/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCli } from './cli-process.js';
import { waitFor } from './helpers.js';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.start();
  await cluster.query(
    `CREATE TABLE events (id int PRIMARY KEY, note text); CREATE PUBLICATION pub FOR TABLE events;`,
  );
});
const scratch = mkdtempSync(join(tmpdir(), 'pgr-restart-'));
afterAll(async () => {
  rmSync(scratch, { recursive: true, force: true });
  await cluster?.destroy();
});

describe('pg-replicate after a server restart', () => {
  it('reconnects with backoff and resumes exactly where it stopped', async () => {
    const state = join(mkdtempSync(join(scratch, 'run-')), 'state.json');
    const args = [
      '--url',
      cluster.url(),
      '--state-file',
      state,
      '--batch-max-delay',
      '10',
      'cdc',
      'pub',
      'slot',
    ];
    const running = startCli(args);
    const lines = () =>
      running
        .stdout()
        .split('\n')
        .filter((l) => l !== '');
    await waitFor(() => running.stderr().includes('streaming from slot'), 20_000, 'streaming');
    await cluster.query(`INSERT INTO events SELECT g, 'before' FROM generate_series(1, 100) g`);
    await waitFor(() => lines().length === 100, 20_000, 'the first rows');

    await cluster.restart();
    await cluster.query(`INSERT INTO events SELECT g, 'after' FROM generate_series(101, 200) g`);
    await waitFor(() => lines().length >= 200, 60_000, 'the rows written after the restart');
    expect(running.stderr()).toMatch(/retrying in \d+\.\d s \(attempt 1/);

    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
    const ids = lines().map((line) => Number((JSON.parse(line) as { new: { id: number } }).new.id));
    expect(ids).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  });
});
