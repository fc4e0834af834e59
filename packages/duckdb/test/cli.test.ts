/**
 * The DuckDB sink through the CLI, run as a process the way users run it (issue: `pg-replicate
 * --sink duckdb --duckdb-path ./replica.duckdb both my_publication my_slot`), including its
 * memory flags reaching DuckDB.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLsn } from '../../pg-replicate/src/lsn.js';
import { runCli } from '../../pg-replicate/test/cli-process.js';
import { currentLsn, expectEqualTables, freshDatabase, scratchDir, type TestDatabase } from './harness.js';

let db: TestDatabase;
const scratch = scratchDir('duckdb-cli-');

beforeAll(async () => {
  db = await freshDatabase('duckdb_cli');
  await db.sql(`
    CREATE TABLE items (id int8 PRIMARY KEY, name text, price numeric(10,2), seen timestamptz);
    INSERT INTO items SELECT g, 'item ' || g, g / 7.0, '2026-01-01'::timestamptz + g * interval '1 minute'
      FROM generate_series(1, 20000) g;
    CREATE PUBLICATION cli_pub FOR TABLE items;
  `);
});
afterAll(async () => {
  scratch.remove();
  await db.close();
});

describe('pg-replicate --sink duckdb', () => {
  it('both: copies, then streams up to --end-lsn; the DuckDB table equals Postgres', async () => {
    const path = join(scratch.dir, 'both.duckdb');
    const slot = 'duckdb_cli_both';
    // The slot exists before the changes, so that they are streamed rather than copied.
    await db.sql(`SELECT pg_create_logical_replication_slot('${slot}', 'pgoutput')`);
    await db.sql(`
      UPDATE items SET price = price + 1 WHERE id % 10 = 0;
      DELETE FROM items WHERE id % 100 = 1;
      INSERT INTO items VALUES (30000, 'new', 1.5, now());
    `);
    const end = formatLsn(await currentLsn(db));
    const run = await runCli([
      ...['--url', db.url, '--quiet', '--sink', 'duckdb', '--duckdb-path', path],
      ...['both', 'cli_pub', slot, '--end-lsn', end],
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    await expectEqualTables(db, path, ['public.items']);
  });

  it('--duckdb-copy-memory-limit reaches DuckDB: too little fails naming the flag, a rerun resumes', async () => {
    const path = join(scratch.dir, 'tight.duckdb');
    const args = ['--url', db.url, '--quiet', '--sink', 'duckdb', '--duckdb-path', path];
    const tight = await runCli([...args, '--duckdb-copy-memory-limit', '1MB', 'copy', 'cli_pub']);
    expect(tight.code).toBe(1);
    // DuckDB reports its limit (976.5 KiB is 1 MB) and the hint names the flag that raises it.
    expect(tight.stderr).toMatch(/Out of Memory Error: .*\/976\.5 KiB used/);
    expect(tight.stderr).toContain('--duckdb-copy-memory-limit');
    expect(tight.stderr).toContain('[SINK_ERROR]');
    const rerun = await runCli([...args, 'copy', 'cli_pub']);
    expect(rerun.stderr).toBe('');
    expect(rerun.code).toBe(0);
    await expectEqualTables(db, path, ['public.items']);
  });

  it('a memory flag that is not a size is a usage error (exit 2) before anything runs', async () => {
    for (const flag of ['--duckdb-memory-limit', '--duckdb-copy-memory-limit', '--duckdb-delete-memory']) {
      const run = await runCli(['--url', db.url, '--sink', 'duckdb', flag, 'lots', 'copy', 'cli_pub']);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(`${flag} must be a size like 128MB or 1GB`);
    }
  });
});
