/**
 * Every preflight failure as users meet it: the built CLI in a separate process against a real
 * Postgres. Each must print one actionable line (what is wrong and the exact fix), exit non-zero,
 * print no stack trace and no password, and leave the sink (stdout and its state file) untouched.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCluster } from '@pg-replicate/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/connection/connect.js';
import { resolveConnection } from '../src/connection/connection-options.js';
import { PgReplicateError } from '../src/errors.js';
import { ReplicationConnection } from '../src/protocol/replication-connection.js';
import type { ReplicationStream } from '../src/protocol/replication-stream.js';
import { serverInfo } from '../src/source/catalog.js';
import { runCli } from './cli-process.js';
import { freshDatabase, type TestDatabase, waitFor } from './helpers.js';

const PASSWORD = 'Pf-s3cret-never-printed';
const STATE = '{\n  "version": 1,\n  "lastLsn": null,\n  "copiedTables": {}\n}\n';

let db: TestDatabase;
let dir: string;
/** Started in the background while the shared-cluster cases run. */
let clusters: Promise<[TestCluster, TestCluster]>;
let elsewhere: TestDatabase;
let holder: ReplicationConnection;
let holding: ReplicationStream;

function flags(user = 'pf_user', password = PASSWORD, database = db.name): string[] {
  const { host, port } = db.options;
  return ['--db-host', host, '--db-port', String(port), '--db-name', database, '--db-username', user].concat([
    '--db-password',
    password,
    '--sslmode',
    'disable',
  ]);
}

beforeAll(async () => {
  clusters = Promise.all([
    // Physical replication only: logical decoding is impossible.
    TestCluster.start({ password: 'Own-cluster-s3cret', settings: { wal_level: 'replica' } }),
    // Slots lose their WAL after 1 MB, and there are two slots and one WAL sender in all.
    TestCluster.start({
      password: 'Own-cluster-s3cret',
      settings: {
        max_slot_wal_keep_size: '1MB',
        wal_keep_size: 0,
        max_wal_size: '32MB',
        min_wal_size: '32MB',
        max_replication_slots: 2,
        max_wal_senders: 1,
      },
    }),
  ]);
  clusters.catch(() => {}); // awaited (and reported) by the tests that use them
  db = await freshDatabase('preflight');
  dir = mkdtempSync(join(tmpdir(), 'pgr-preflight-'));
  await db.sql(`
    CREATE ROLE pf_user LOGIN REPLICATION PASSWORD '${PASSWORD}';
    CREATE ROLE pf_plain LOGIN PASSWORD '${PASSWORD}';
    CREATE ROLE pf_outsider LOGIN REPLICATION PASSWORD '${PASSWORD}';
    REVOKE CONNECT ON DATABASE ${db.name} FROM PUBLIC;
    GRANT CONNECT ON DATABASE ${db.name} TO pf_user, pf_plain;
    CREATE TABLE items (id int PRIMARY KEY, v text);
    CREATE TABLE nokey (v text);
    CREATE TABLE keyed_nothing (id int PRIMARY KEY);
    ALTER TABLE keyed_nothing REPLICA IDENTITY NOTHING;
    CREATE TABLE hidden (id int PRIMARY KEY);
    GRANT SELECT ON items, nokey, keyed_nothing TO pf_user, pf_plain;
    CREATE PUBLICATION pub FOR TABLE items;
    CREATE PUBLICATION empty_pub;
    CREATE PUBLICATION nokey_pub FOR TABLE nokey;
    CREATE PUBLICATION nothing_pub FOR TABLE keyed_nothing;
    CREATE PUBLICATION hidden_pub FOR TABLE hidden;
  `);
  await db.sql(`SELECT pg_create_logical_replication_slot('decoding_slot', 'test_decoding')`);
  // A pgoutput slot of another database (slot names are cluster-wide).
  elsewhere = await freshDatabase('preflight_other');
  await elsewhere.sql(`SELECT pg_create_logical_replication_slot('elsewhere_slot', 'pgoutput')`);
  // A slot another consumer is streaming from.
  holder = await ReplicationConnection.open(db.options);
  await holder.createSlot('busy_slot');
  holding = holder.startReplication('busy_slot', 0n, { publications: ['pub'] });
  await waitFor(
    async () =>
      (await db.sql(`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'busy_slot' AND active`)).length,
    10_000,
    'busy_slot to be active',
  );
});

afterAll(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  await Promise.all((await clusters.catch(() => [])).map((cluster) => cluster.destroy()));
  holding?.dispose();
  await holder?.close();
  await Promise.all([db?.close(), elsewhere?.close()]);
});

/**
 * Runs the CLI with a state file that already holds state, and checks the failure is clean: the
 * exit status, one line on stderr matching `line`, no stack trace, no password, nothing on
 * stdout, and the state file byte-for-byte and timestamp unchanged.
 */
async function failsCleanly(args: readonly string[], code: number, line: RegExp, secret = PASSWORD) {
  const stateFile = join(dir, `state-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(stateFile, STATE);
  const before = statSync(stateFile).mtimeMs;
  // HOME without a ~/.pgpass: only the password given here may be used.
  const run = await runCli([...args, '--state-file', stateFile], { HOME: tmpdir() });
  expect(run.stderr).toMatch(line);
  expect(run.code).toBe(code);
  expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  expect(run.stderr + run.stdout).not.toContain(secret);
  expect(run.stdout).toBe('');
  expect(readFileSync(stateFile, 'utf8')).toBe(STATE);
  expect(statSync(stateFile).mtimeMs).toBe(before);
}

/** `pg-replicate: error: <message> — <fix> [CODE]`, the whole of stderr. */
function oneLine(body: string): RegExp {
  return new RegExp(`^pg-replicate: error: ${body}\n$`);
}

describe('preflight errors through the CLI', () => {
  it.each<[string, () => string[], number, RegExp]>([
    [
      'missing publication',
      () => [...flags(), 'cdc', 'no_such_pub', 's1'],
      1,
      oneLine(
        'publication "no_such_pub" does not exist in database "preflight_\\w+" \\(existing publications: empty_pub, hidden_pub, nokey_pub, nothing_pub, pub\\) — create it with CREATE PUBLICATION "no_such_pub" FOR TABLE <tables>; \\(or FOR ALL TABLES\\) \\[PUBLICATION_NOT_FOUND\\]',
      ),
    ],
    [
      'publication without tables',
      () => [...flags(), 'cdc', 'empty_pub', 's1'],
      1,
      oneLine(
        'publication "empty_pub" has no tables — add tables with ALTER PUBLICATION "empty_pub" ADD TABLE <table>; \\[PUBLICATION_EMPTY\\]',
      ),
    ],
    [
      'role without REPLICATION',
      () => [...flags('pf_plain'), 'cdc', 'pub', 's1'],
      1,
      oneLine(
        'role "pf_plain" lacks the REPLICATION attribute — run ALTER ROLE "pf_plain" WITH REPLICATION; as a superuser \\(on Amazon RDS: GRANT rds_replication TO "pf_plain";\\) \\[MISSING_REPLICATION_PRIVILEGE\\]',
      ),
    ],
    [
      'role without SELECT on a published table',
      () => [...flags(), 'both', 'hidden_pub', 's1'],
      1,
      oneLine(
        'role "pf_user" cannot read "public"."hidden" — run GRANT SELECT ON "public"."hidden" TO "pf_user"; \\[MISSING_SELECT_PRIVILEGE\\]',
      ),
    ],
    [
      'slot in use by another process',
      () => [...flags(), 'cdc', 'pub', 'busy_slot'],
      1,
      oneLine(
        'slot "busy_slot" is in use by another process \\(PID (\\d+)\\) — stop the other consumer, or if it is stuck: SELECT pg_terminate_backend\\(\\1\\); \\[SLOT_IN_USE\\]',
      ),
    ],
    [
      'slot made for another plugin',
      () => [...flags(), 'cdc', 'pub', 'decoding_slot'],
      1,
      oneLine(
        'slot "decoding_slot" exists but uses plugin test_decoding, not pgoutput — use another slot name, or drop it with SELECT pg_drop_replication_slot\\(\'decoding_slot\'\\); if nothing uses it \\[SLOT_WRONG_PLUGIN\\]',
      ),
    ],
    [
      'slot of another database',
      () => [...flags(), 'cdc', 'pub', 'elsewhere_slot'],
      1,
      oneLine(
        'slot "elsewhere_slot" belongs to database "preflight_other_\\w+", not "preflight_\\w+" — connect to database "(preflight_other_\\w+)" \\(--db-name \\1\\), or use another slot name \\[SLOT_WRONG_DATABASE\\]',
      ),
    ],
    [
      'role without CONNECT on the database',
      () => [...flags('pf_outsider'), 'cdc', 'pub', 's1'],
      1,
      oneLine(
        'role "pf_outsider" may not connect to database "preflight_\\w+" — run GRANT CONNECT ON DATABASE "preflight_\\w+" TO "pf_outsider"; \\[AUTHENTICATION_FAILED\\]',
      ),
    ],
    [
      'table without primary key',
      () => [...flags(), 'cdc', 'nokey_pub', 's1'],
      1,
      oneLine(
        'table "public"."nokey" has no primary key \\(and REPLICA IDENTITY DEFAULT\\), so its updates and deletes cannot be applied — add a primary key \\(ALTER TABLE "public"."nokey" ADD PRIMARY KEY \\(…\\);\\) or run ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL; \\[NO_REPLICA_IDENTITY\\]',
      ),
    ],
    [
      'table with a primary key but REPLICA IDENTITY NOTHING',
      () => [...flags(), 'cdc', 'nothing_pub', 's1'],
      1,
      oneLine(
        'table "public"."keyed_nothing" has REPLICA IDENTITY NOTHING, so its updates and deletes cannot be applied — run ALTER TABLE "public"."keyed_nothing" REPLICA IDENTITY DEFAULT; \\(it has a primary key\\) \\[NO_REPLICA_IDENTITY\\]',
      ),
    ],
    [
      'wrong password',
      () => [...flags('pf_user', 'not-the-password'), 'cdc', 'pub', 's1'],
      1,
      oneLine(
        'password authentication failed for pf_user@127\\.0\\.0\\.1:\\d+/preflight_\\w+ — check the user and password \\(--db-username/--db-password, the URL, or PGUSER/PGPASSWORD\\) \\[AUTHENTICATION_FAILED\\]',
      ),
    ],
    [
      'missing database',
      () => [...flags('pf_user', PASSWORD, 'no_such_db'), 'cdc', 'pub', 's1'],
      1,
      oneLine(
        'database "no_such_db" does not exist on pf_user@127\\.0\\.0\\.1:\\d+/no_such_db — check --db-name \\(or the URL path\\); list databases with: psql -l \\[DATABASE_NOT_FOUND\\]',
      ),
    ],
    [
      'nothing listening on the port',
      () => [...flags(), '--db-port', '1', 'cdc', 'pub', 's1'],
      1,
      oneLine(
        'connection refused by 127\\.0\\.0\\.1:1 — check that Postgres is running there and listening on that port \\(listen_addresses, port, firewall\\) \\[HOST_UNREACHABLE\\]',
      ),
    ],
    [
      'unknown host name',
      () => [...flags(), '--db-host', 'no-such-host.invalid', 'cdc', 'pub', 's1'],
      1,
      oneLine(
        'host "no-such-host\\.invalid" not found — check --db-host \\(or PGHOST / the URL\\) for typos and that DNS resolves it \\[HOST_UNREACHABLE\\]',
      ),
    ],
    [
      'malformed --end-lsn',
      () => [...flags(), 'cdc', 'pub', 's1', '--end-lsn', '0/XYZ'],
      2,
      /^pg-replicate: error: option '--end-lsn <X\/Y>' argument '0\/XYZ' is invalid\. "0\/XYZ" is not an LSN; write it like 0\/16B3748\n$/,
    ],
    [
      'malformed URL',
      () => ['--url', `postgres://u:${PASSWORD}@[bad/db`, 'cdc', 'pub', 's1'],
      2,
      oneLine(
        'the connection URL is not a valid URL — write it as postgres://user:password@host:5432/database \\[INVALID_ARGUMENT\\]',
      ),
    ],
    [
      'unknown sslmode',
      () => ['--url', `postgres://u:${PASSWORD}@h/db?sslmode=on`, 'cdc', 'pub', 's1'],
      2,
      oneLine(
        'unknown sslmode "on" — use one of disable, allow, prefer, require, verify-ca, verify-full \\[INVALID_ARGUMENT\\]',
      ),
    ],
  ])('%s', async (_name, args, code, line) => failsCleanly(args(), code, line));
});

describe('preflight errors that need a server of their own', () => {
  const SECRET = 'Own-cluster-s3cret';
  let replica: TestCluster;
  let small: TestCluster;
  const on = (cluster: TestCluster) => [
    ...['--db-host', '127.0.0.1', '--db-port', String(cluster.port), '--db-name', 'postgres'],
    ...['--db-username', 'postgres', '--db-password', SECRET, '--sslmode', 'disable'],
  ];

  beforeAll(async () => {
    [replica, small] = await clusters;
    const setup = 'CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE t';
    await Promise.all([replica.query(setup), small.query(setup)]);
    await small.query(`SELECT pg_create_logical_replication_slot('lost_slot', 'pgoutput')`);
    // Write and recycle WAL until the checkpoint invalidates the slot that holds it back.
    await waitFor(
      async () => {
        await small.query(
          `INSERT INTO t SELECT coalesce(max(id), 0) + 1 FROM t; SELECT pg_switch_wal(); CHECKPOINT`,
        );
        const [slot] = await small.query(
          `SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'`,
        );
        return slot?.['wal_status'] === 'lost';
      },
      20_000,
      'lost_slot to be invalidated',
    );
    // The second (and last) slot, made after the WAL churn so that it stays valid.
    await small.query(`SELECT pg_create_logical_replication_slot('spare_slot', 'pgoutput')`);
  });

  it('wal_level is not logical (and copy, which needs no slot, still works)', async () => {
    await failsCleanly(
      [...on(replica), 'cdc', 'pub', 's1'],
      1,
      oneLine(
        'wal_level is "replica", not "logical" — run ALTER SYSTEM SET wal_level = \'logical\'; then restart Postgres \\[WAL_LEVEL_NOT_LOGICAL\\]',
      ),
      SECRET,
    );
    const copy = await runCli([...on(replica), '--sink', 'null', 'copy', 'pub']);
    expect(copy.code).toBe(0);
  });

  it('a member of rds_replication (Amazon RDS) counts as able to replicate', async () => {
    await replica.query(`
      CREATE ROLE rds_replication NOLOGIN;
      CREATE ROLE rds_user LOGIN PASSWORD '${SECRET}' IN ROLE rds_replication;
      CREATE ROLE plain_user LOGIN PASSWORD '${SECRET}'`);
    const can = async (user: string) => {
      const client = await connect(
        resolveConnection({ ...replica.connection(), user, sslmode: 'disable' }, {}),
      );
      try {
        return (await serverInfo(client)).canReplicate;
      } finally {
        await client.end();
      }
    };
    expect([await can('rds_user'), await can('plain_user')]).toEqual([true, false]);
  });

  it('the slot was invalidated (its WAL was removed)', async () => {
    await failsCleanly(
      [...on(small), 'cdc', 'pub', 'lost_slot'],
      1,
      oneLine(
        'slot "lost_slot" was invalidated and can no longer stream \\(wal_removed: it fell more than max_slot_wal_keep_size behind and the WAL it needed was removed; raise that setting if the consumer can be down that long\\) — drop it with SELECT pg_drop_replication_slot\\(\'lost_slot\'\\); then run "both" to copy the tables again \\[SLOT_INVALIDATED\\]',
      ),
      SECRET,
    );
  });

  // Each version words it differently: PG 14/15 "cannot read from", 16/17 "can no longer get
  // changes", 18 "can no longer access"; all are SLOT_INVALIDATED.
  it('the server refuses to stream from the invalidated slot (preflight raced)', async () => {
    const options = resolveConnection({ ...small.connection(), sslmode: 'disable' }, {});
    const connection = await ReplicationConnection.open(options);
    try {
      const stream = connection.startReplication('lost_slot', 0n, { publications: ['pub'] });
      const error = await stream.next().then(
        () => null,
        (e: unknown) => e,
      );
      expect((error as PgReplicateError).toOneLine()).toMatch(
        /^replication slot "lost_slot" was invalidated and cannot stream any more \(.*"lost_slot".*\) — .* \[SLOT_INVALIDATED\]$/,
      );
    } finally {
      await connection.close();
    }
  });

  it('every replication slot is taken', async () => {
    await failsCleanly(
      [...on(small), 'cdc', 'pub', 'new_slot'],
      1,
      oneLine(
        'cannot create slot "new_slot": all 2 replication slots \\(max_replication_slots\\) are in use \\(inactive slots: lost_slot, spare_slot\\) — drop a slot nothing uses \\(SELECT pg_drop_replication_slot\\(\'lost_slot\'\\);\\) or raise max_replication_slots \\(needs a restart\\) \\[SLOTS_EXHAUSTED\\]',
      ),
      SECRET,
    );
  });

  it('every WAL sender is taken', async () => {
    const walsender = new pg.Client({ ...small.connection(), replication: 'database' } as pg.ClientConfig);
    await walsender.connect();
    try {
      const hint =
        "raise max_wal_senders \\(needs a restart\\), or end an unused replication connection: SELECT pid, application_name FROM pg_stat_activity WHERE backend_type = 'walsender'; \\[WAL_SENDERS_EXHAUSTED\\]";
      await failsCleanly(
        [...on(small), 'cdc', 'pub', 'spare_slot'],
        1,
        oneLine(`every WAL sender is in use \\(max_wal_senders = 1\\) — ${hint}`),
        SECRET,
      );
      // Past the check (another client took the last one meanwhile): the server's refusal.
      const options = resolveConnection({ ...small.connection(), sslmode: 'disable' }, {});
      const refused = await ReplicationConnection.open(options).then(
        () => null,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(PgReplicateError);
      expect((refused as PgReplicateError).toOneLine()).toMatch(
        new RegExp(
          `^every WAL sender is in use on postgres@127\\.0\\.0\\.1:\\d+/postgres \\(number of requested standby connections exceeds "?max_wal_senders"? \\(currently 1\\)\\) — ${hint}$`,
        ),
      );
    } finally {
      await walsender.end();
    }
  });
});
