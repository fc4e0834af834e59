/**
 * The CLI as users run it: a separate process (the built bin), real Postgres, stdout parsed.
 * `npm test` builds first, so `bin/pg-replicate.js` runs the current `dist/`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli as cli, startCli } from './cli-process.js';
import { freshDatabase, type TestDatabase, waitFor } from './helpers.js';

let db: TestDatabase;
let flags: string[];
const PASSWORD = 'Sw0rdf1sh-cli-secret';

async function currentLsn(): Promise<string> {
  const [row] = await db.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return row!.lsn;
}

beforeAll(async () => {
  db = await freshDatabase('cli');
  const o = db.options;
  // A non-superuser with REPLICATION and a password that must never show up in any output.
  await db.sql(`CREATE ROLE cli_user LOGIN REPLICATION PASSWORD '${PASSWORD}'`);
  // The seed's flag spelling, exactly.
  flags = ['--db-host', o.host, '--db-port', String(o.port), '--db-name', o.database];
  flags.push('--db-username', 'cli_user', '--db-password', PASSWORD);
  await db.sql(`
    CREATE TABLE golden (
      id int8 PRIMARY KEY, n numeric, f float8, t timestamptz, ts timestamp, j jsonb, b bytea,
      a int4[], s text, big text
    );
    ALTER TABLE golden ALTER COLUMN big SET STORAGE EXTERNAL;
    CREATE PUBLICATION my_publication FOR TABLE golden;
    GRANT SELECT ON golden TO cli_user;
  `);
});
const scratch = mkdtempSync(join(tmpdir(), 'pgr-cli-'));
afterAll(async () => {
  rmSync(scratch, { recursive: true, force: true });
  await db.close();
});

describe('pg-replicate CLI', () => {
  it('--help teaches every command with an example, and exits 0', async () => {
    const run = await cli(['--help']);
    expect(run.code).toBe(0);
    for (const word of [
      'cdc <publication> <slot>',
      'copy <publication>',
      'both <publication> <slot>',
      'drop',
      '--end-lsn',
      '--sink',
    ]) {
      expect(run.stdout).toContain(word);
    }
    expect(run.stdout).toContain('cdc my_publication stdout_slot');
  });

  it('starts without loading undici (pg probes for Cloudflare Workers by the navigator the launcher gives Node 20)', async () => {
    // Reports from inside the CLI's process, at exit, which of node's own modules it loaded.
    const probe = `process.on('exit', () => process.stderr.write('undici loaded: ' + process.moduleLoadList.some((m) => m.includes('undici')) + '\\n'))`;
    const run = await cli(['--help'], {
      NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(probe)}`,
    });
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('undici loaded: false');
  });

  it("runs the seed's example (cdc with --db-* flags) and prints every change as a JSON line", async () => {
    // First run creates the slot and returns at once; the changes come after it.
    const first = await cli([
      ...flags,
      'cdc',
      'my_publication',
      'stdout_slot',
      '--end-lsn',
      await currentLsn(),
    ]);
    expect(first.stderr + first.stdout).not.toContain(PASSWORD);
    expect(first.code).toBe(0);
    expect(first.lines).toEqual([]);
    await db.sql(`INSERT INTO golden VALUES (
      9223372036854775807, 123456789012345678901234567890.000000000000000001, 'NaN',
      '2024-02-29 23:59:59.999999+00', '0044-03-15 12:00:00.000001 BC', '{"big": 12345678901234567890, "s": "é"}',
      '\\x00ff', '{1,NULL,3}', E'tab\\tnewline\\n"quote"', repeat('x', 100000))`);
    await db.sql(`UPDATE golden SET s = 'changed' WHERE id = 9223372036854775807`);
    await db.sql(`DELETE FROM golden`);
    await db.sql(`TRUNCATE golden`);
    const run = await cli([
      ...flags,
      'cdc',
      'my_publication',
      'stdout_slot',
      '--end-lsn',
      await currentLsn(),
    ]);
    expect(run.code).toBe(0);
    expect(run.stderr + run.stdout).not.toContain(PASSWORD);
    expect(run.lines.map((l) => l['op'])).toEqual(['insert', 'update', 'delete', 'truncate']);
    const [insert, update, del, truncate] = run.lines as [
      Record<string, unknown>,
      Record<string, unknown>,
      Record<string, unknown>,
      Record<string, unknown>,
    ];
    const insertLine = run.stdout.split('\n')[0]!;
    expect(insertLine).toContain('"id":"9223372036854775807"');
    expect(insertLine).toContain('"n":"123456789012345678901234567890.000000000000000001"');
    expect(insertLine).toContain('"f":"NaN"');
    expect(insertLine).toContain('"t":"2024-02-29T23:59:59.999999Z"');
    // jsonb keeps every digit: spliced in as JSON, never through a float.
    expect(insertLine).toContain('"big": 12345678901234567890');
    expect(insertLine).toContain('"b":"\\\\x00ff"');
    expect(insertLine).toContain('"a":[1,null,3]');
    expect(insert).toMatchObject({ schema: 'public', table: 'golden', old: null });
    expect((insert['new'] as Record<string, unknown>)['s']).toBe('tab\tnewline\n"quote"');
    expect((insert['new'] as Record<string, unknown>)['big']).toHaveLength(100000);
    expect(insert['lsn']).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(insert['commit_lsn']).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(insert['commit_time']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(typeof insert['xid']).toBe('number');
    // The TOASTed column did not change: left out of "new" and named, never null.
    expect(update['unchanged_toast']).toEqual(['big']);
    expect(update['new']).not.toHaveProperty('big');
    expect((update['new'] as Record<string, unknown>)['s']).toBe('changed');
    expect(del['old']).toMatchObject({ id: '9223372036854775807' });
    expect(del['new']).toBeNull();
    expect(truncate).toMatchObject({ op: 'truncate', schema: 'public', table: 'golden' });
  });

  it('both: copies existing rows as op "copy", then streams; a second run resumes (state file)', async () => {
    await db.sql(`INSERT INTO golden (id, s) SELECT g, 'row ' || g FROM generate_series(1, 50) g`);
    const stateFile = join(scratch, 'both.json');
    const args = ['--url', db.url, '--state-file', stateFile, 'both', 'my_publication', 'both_slot'];
    const first = await cli([...args, '--end-lsn', await currentLsn()]);
    expect(first.code).toBe(0);
    expect(first.lines).toHaveLength(50);
    expect(first.lines.every((l) => l['op'] === 'copy')).toBe(true);
    await db.sql(`INSERT INTO golden (id, s) VALUES (51, 'after')`);
    const second = await cli([...args, '--end-lsn', await currentLsn()]);
    expect(second.code).toBe(0);
    expect(second.lines.map((l) => [l['op'], (l['new'] as Record<string, unknown>)['id']])).toEqual([
      ['insert', '51'],
    ]);
  });

  it('takes the connection from DATABASE_URL', async () => {
    const run = await cli(['copy', 'my_publication'], { DATABASE_URL: db.url });
    expect(run.code).toBe(0);
    expect(run.lines.length).toBeGreaterThan(0);
    expect(run.stderr).toMatch(/copied \d+ rows/);
  });

  it.each([
    [['cdc', 'my_publication', 's', '--end-lsn', 'nonsense'], 2, /not an LSN/],
    [['cdc', 'my_publication'], 2, /missing required argument 'slot'/],
    [
      ['--batch-max-bytes', '0', 'cdc', 'my_publication', 's'],
      2,
      /--batch-max-bytes must be a whole number of at least 1/,
    ],
    [
      ['copy', 'no_such_publication'],
      1,
      /publication "no_such_publication" does not exist.*CREATE PUBLICATION.*\[PUBLICATION_NOT_FOUND\]/,
    ],
    [
      ['--db-name', 'no_such_db', 'copy', 'my_publication'],
      1,
      /database "no_such_db" does not exist.*\[DATABASE_NOT_FOUND\]/,
    ],
    [
      ['--db-password', 'wrong-secret', 'copy', 'my_publication'],
      1,
      /password authentication failed.*\[AUTHENTICATION_FAILED\]/,
    ],
    [['--db-port', '1', 'copy', 'my_publication'], 1, /connection refused.*\[HOST_UNREACHABLE\]/],
  ])('bad input %j → exit %i with one actionable line', async (args, code, pattern) => {
    const run = await cli([...flags, ...args]);
    expect(run.code).toBe(code);
    expect(run.stderr).toMatch(pattern);
    expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(run.stderr).not.toContain('wrong-secret');
    expect(run.stderr).not.toContain(PASSWORD);
    expect(run.stdout).toBe('');
  });

  it('stops gracefully on SIGTERM (exit 0); the next run resumes with the next change', async () => {
    const stateFile = join(scratch, 'sigterm.json');
    const args = [
      '--url',
      db.url,
      '--state-file',
      stateFile,
      '--batch-max-delay',
      '10',
      'cdc',
      'my_publication',
      'sigterm_slot',
    ];
    expect((await cli([...args, '--end-lsn', await currentLsn()])).code).toBe(0);
    const running = startCli(args);
    await waitFor(() => running.stderr().includes('streaming from slot'), 20_000, 'the CLI to stream');
    await db.sql(`INSERT INTO golden (id, s) VALUES (2001, 'a'), (2002, 'b')`);
    await waitFor(() => running.lines().length === 2, 20_000, 'two lines on stdout');
    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
    expect(running.stderr()).toMatch(/stopping/);
    expect(running.stderr()).toMatch(/stopped; run the same command to resume/);
    await db.sql(`INSERT INTO golden (id, s) VALUES (2003, 'c')`);
    const next = await cli([...args, '--end-lsn', await currentLsn()]);
    expect(next.code).toBe(0);
    expect(next.lines.map((l) => (l['new'] as Record<string, unknown>)['id'])).toEqual(['2003']);
  });

  it('stops quietly with 141 (SIGPIPE) when the reader of stdout goes away, as `| head` does', async () => {
    await db.sql(`INSERT INTO golden (id, s) SELECT g, 'pipe ' || g FROM generate_series(900000, 929999) g`);
    const run = startCli([...flags, 'copy', 'my_publication']);
    await waitFor(() => run.stdout().includes('\n'), 10_000, 'the first line');
    run.child.stdout.destroy(); // the reader is gone
    expect(await run.exited).toBe(141);
    expect(run.stderr()).not.toMatch(/EPIPE|Error|at /);
    await db.sql('DELETE FROM golden WHERE id BETWEEN 900000 AND 929999');
    const help = startCli(['--help']);
    help.child.stdout.destroy();
    expect(await help.exited).toBe(141);
    expect(help.stderr()).toBe('');
  });

  it('drop asks for --yes, then drops the slot', async () => {
    await cli([...flags, 'cdc', 'my_publication', 'drop_me', '--end-lsn', await currentLsn()]);
    const dry = await cli([...flags, 'drop', 'drop_me']);
    expect(dry.code).toBe(2);
    expect(dry.stderr).toMatch(/would drop slot "drop_me".*--yes/);
    const done = await cli([...flags, 'drop', 'drop_me', '--yes']);
    expect(done.code).toBe(0);
    const slots = await db.sql(`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'drop_me'`);
    expect(slots).toHaveLength(0);
  });
});
