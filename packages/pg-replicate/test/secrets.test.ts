/**
 * Passwords never leave the process: not in help, logs, errors (even with --verbose and its stack
 * traces), data, or the state file. The built CLI runs as users run it, with the password in each
 * place it can come from (flag, URL, DATABASE_URL, PGPASSWORD), and everything it wrote is searched
 * for the password, raw and URL-encoded.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteLiteral } from '../src/connection/connect.js';
import { runCli } from './cli-process.js';
import { freshDatabase, type TestDatabase } from './helpers.js';

/** Characters a URL must escape, and one outside ASCII. */
const PASSWORD = 'Pa55:w@rd/%é-secret';
const WRONG = 'Wr0ng:p@ss-secret';

let db: TestDatabase;
let dir: string;

/** Runs the CLI with only `env` (and a HOME without ~/.pgpass); all it wrote, and stdout. */
async function cli(args: readonly string[], env: Record<string, string> = {}) {
  const run = await runCli(args, { HOME: tmpdir(), ...env });
  return { code: run.code, output: run.stdout + run.stderr, stdout: run.stdout };
}

/** Fails if `text` holds a secret in any spelling a URL or a log might give it. */
function expectNoSecret(text: string): void {
  for (const secret of [PASSWORD, WRONG]) {
    expect(text).not.toContain(secret);
    expect(text).not.toContain(encodeURIComponent(secret));
  }
}

function url(password: string, database = db.name, port = db.options.port): string {
  return `postgres://sec_user:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}?sslmode=disable`;
}

function flags(password: string): string[] {
  return ['--db-host', '127.0.0.1', '--db-port', String(db.options.port), '--db-name', db.name].concat([
    '--db-username',
    'sec_user',
    '--db-password',
    password,
    '--sslmode',
    'disable',
  ]);
}

async function currentLsn(): Promise<string> {
  const [row] = await db.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return row!.lsn;
}

beforeAll(async () => {
  db = await freshDatabase('secrets');
  dir = mkdtempSync(join(tmpdir(), 'pgr-secrets-'));
  await db.sql(`
    CREATE ROLE sec_user LOGIN REPLICATION PASSWORD ${quoteLiteral(PASSWORD)};
    CREATE TABLE accounts (id int PRIMARY KEY, name text);
    INSERT INTO accounts SELECT g, 'account ' || g FROM generate_series(1, 20) g;
    GRANT SELECT ON accounts TO sec_user;
    CREATE PUBLICATION sec_pub FOR TABLE accounts;
  `);
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await db.close();
});

describe('the password never shows', () => {
  it('in --help, with the password given every way at once', async () => {
    const env = { PGPASSWORD: PASSWORD, DATABASE_URL: url(PASSWORD) };
    for (const args of [
      ['--help'],
      [...flags(PASSWORD), '--help'],
      ['--url', url(PASSWORD), 'cdc', '--help'],
    ]) {
      const run = await cli(args, env);
      expect(run.code).toBe(0);
      expect(run.output).toContain('Usage: pg-replicate');
      expectNoSecret(run.output);
    }
  });

  it('in a succeeding verbose run (logs, data, state file), from --url, then PGPASSWORD', async () => {
    const stateFile = join(dir, 'both.json');
    const both = await cli([
      ...['--url', url(PASSWORD), '--state-file', stateFile, '--verbose'],
      ...['both', 'sec_pub', 'sec_slot', '--end-lsn', await currentLsn()],
    ]);
    expect(both.code).toBe(0);
    expect(both.stdout.split('\n').filter((line) => line.includes('"op":"copy"'))).toHaveLength(20);
    expect(both.output).toContain(`connected to sec_user@127.0.0.1:${db.options.port}/${db.name}`);
    expectNoSecret(both.output);
    expectNoSecret(readFileSync(stateFile, 'utf8'));

    const noFlag = flags(PASSWORD).filter((flag) => flag !== '--db-password' && flag !== PASSWORD);
    const copy = await cli([...noFlag, '--verbose', 'copy', 'sec_pub'], { PGPASSWORD: PASSWORD });
    expect(copy.code).toBe(0);
    expectNoSecret(copy.output);
  });

  it.each<[string, () => string[], Record<string, string>, number]>([
    ['a wrong password (--db-password)', () => [...flags(WRONG), 'copy', 'sec_pub'], {}, 1],
    ['a wrong password (PGPASSWORD)', () => ['--url', url(''), 'copy', 'sec_pub'], { PGPASSWORD: WRONG }, 1],
    ['a preflight failure after logging in', () => [...flags(PASSWORD), 'cdc', 'no_such_pub', 's'], {}, 1],
    ['a missing database', () => ['--url', url(PASSWORD, 'no_such_db'), 'copy', 'sec_pub'], {}, 1],
    ['nothing listening (DATABASE_URL)', () => ['copy', 'sec_pub'], { DATABASE_URL: 'port 1' }, 1],
    [
      'a URL that does not parse',
      () => ['--url', url(PASSWORD).replace('127.0.0.1', '[bad'), 'copy', 'p'],
      {},
      2,
    ],
    [
      'a password not %-encoded in the URL',
      () => ['--url', url(PASSWORD).replace(encodeURIComponent(PASSWORD), PASSWORD), 'copy', 'p'],
      {},
      2,
    ],
    [
      'a malformed %-escape in the URL',
      () => ['--url', `postgres://sec_user:${WRONG}%zz@h/db`, 'copy', 'p'],
      {},
      2,
    ],
    [
      'a bad argument after the password',
      () => [...flags(PASSWORD), 'cdc', 'p', 's', '--end-lsn', 'x'],
      {},
      2,
    ],
  ])('in a failing verbose run: %s', async (_name, args, env, code) => {
    const environment = { ...env };
    if (environment['DATABASE_URL'] === 'port 1') environment['DATABASE_URL'] = url(PASSWORD, db.name, 1);
    const stateFile = join(dir, `failing-${Math.random().toString(36).slice(2)}.json`);
    const run = await cli([...args(), '--verbose', '--state-file', stateFile], environment);
    expect(run.output).toMatch(/error/);
    expect(run.code).toBe(code);
    expectNoSecret(run.output);
    expect(existsSync(stateFile)).toBe(false);
  });
});
