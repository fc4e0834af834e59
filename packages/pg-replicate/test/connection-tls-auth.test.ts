/**
 * Connecting as users do: SCRAM-SHA-256, md5 and cleartext password authentication, and TLS with
 * every libpq `sslmode`, against a Postgres started with `ssl=on` and a certificate signed by a CA
 * made here with openssl (SAN `localhost` and `127.0.0.1`, so verify-full passes for those names
 * and fails for `127.0.0.2`, an address the same server also listens on).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPostgresVersion, TestCluster } from '@pg-replicate/testkit';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connect } from '../src/connection/connect.js';
import { type ConnectionInput, resolveConnection } from '../src/connection/connection-options.js';
import { PgReplicateError } from '../src/errors.js';
import { ReplicationConnection } from '../src/protocol/replication-connection.js';

const PASSWORD = 'Tls-auth-s3cret';
let dir: string;
let cluster: TestCluster;

/** Makes a CA, a server certificate it signs, and an unrelated CA; returns their file paths. */
function makeCertificates(into: string) {
  const file = (name: string) => join(into, name);
  const openssl = (...args: string[]) => execFileSync('/usr/bin/openssl', args, { stdio: 'pipe' });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=keyCertSign,cRLSign'];
  for (const name of ['ca', 'other-ca']) {
    openssl(
      'req',
      '-x509',
      ...key,
      ...ca,
      '-days',
      '2',
      '-subj',
      `/CN=pg-replicate test ${name}`,
      '-keyout',
      file(`${name}.key`),
      '-out',
      file(`${name}.crt`),
    );
  }
  openssl('req', ...key, '-subj', '/CN=localhost', '-keyout', file('server.key'), '-out', file('server.csr'));
  writeFileSync(file('san.ext'), 'subjectAltName = DNS:localhost, IP:127.0.0.1\n');
  openssl(
    'x509',
    '-req',
    '-in',
    file('server.csr'),
    '-CA',
    file('ca.crt'),
    '-CAkey',
    file('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    file('san.ext'),
    '-out',
    file('server.crt'),
  );
  return {
    ca: file('ca.crt'),
    otherCa: file('other-ca.crt'),
    cert: file('server.crt'),
    key: file('server.key'),
  };
}

let certs: ReturnType<typeof makeCertificates>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgr-tls-'));
  certs = makeCertificates(dir);
  cluster = await TestCluster.start({
    password: PASSWORD,
    files: { 'server.crt': readFileSync(certs.cert), 'server.key': readFileSync(certs.key) },
    settings: {
      ssl: 'on',
      ssl_cert_file: 'server.crt',
      ssl_key_file: 'server.key',
      listen_addresses: '127.0.0.1,127.0.0.2',
    },
    // First match wins: ssl_only must use TLS; md5_user and pw_user get their own methods.
    hba: [
      'hostnossl all ssl_only 127.0.0.0/8 reject',
      'hostssl all plain_only 127.0.0.0/8 reject',
      'host all denied_user 127.0.0.0/8 reject',
      'host all md5_user 127.0.0.0/8 md5',
      'host all pw_user 127.0.0.0/8 password',
      'host all all 127.0.0.0/8 scram-sha-256',
    ].join('\n'),
  });
  await cluster.query(`
    SET password_encryption = 'md5';
    CREATE ROLE md5_user LOGIN REPLICATION PASSWORD '${PASSWORD}';
    RESET password_encryption;
    CREATE ROLE scram_user LOGIN REPLICATION PASSWORD '${PASSWORD}';
    CREATE ROLE pw_user LOGIN REPLICATION PASSWORD '${PASSWORD}';
    CREATE ROLE ssl_only LOGIN REPLICATION PASSWORD '${PASSWORD}';
    CREATE ROLE plain_only LOGIN PASSWORD '${PASSWORD}';
    CREATE ROLE denied_user LOGIN PASSWORD '${PASSWORD}';
    CREATE ROLE nologin_user PASSWORD '${PASSWORD}';
  `);
});
afterAll(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  await cluster?.destroy();
});

function options(input: ConnectionInput) {
  return resolveConnection(
    { host: '127.0.0.1', port: cluster.port, database: 'postgres', password: PASSWORD, ...input },
    {},
  );
}

/** `system_user` (`<auth method>:<user>`) exists from PG 16; before, only the user is known. */
const SYSTEM_USER = defaultPostgresVersion() >= 16 ? 'system_user' : "'?:' || current_user";

/** What {@link session} reports for `<method>:<user>` on this server version. */
function method(how: string): string {
  return SYSTEM_USER === 'system_user' ? how : how.replace(/^[^:]+/, '?');
}

/** Connects, and reports how: the authentication method and user, and whether TLS is in use. */
async function session(input: ConnectionInput): Promise<{ systemUser: string; ssl: boolean }> {
  const client = await connect(options(input));
  try {
    const { rows } = await client.query<{ system_user: string; ssl: string }>(
      `SELECT ${SYSTEM_USER} AS system_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`,
    );
    return { systemUser: rows[0]!.system_user, ssl: rows[0]!.ssl === 't' };
  } finally {
    await client.end();
  }
}

/** The error a connection attempt fails with, as its one line. */
async function failure(input: ConnectionInput): Promise<string> {
  let client: pg.Client | undefined;
  try {
    client = await connect(options(input));
  } catch (error) {
    expect(error).toBeInstanceOf(PgReplicateError);
    return (error as PgReplicateError).toOneLine();
  }
  await client.end();
  throw new Error('connected, but should have failed');
}

describe('authentication', () => {
  it.each([
    ['scram_user', 'scram-sha-256:scram_user'],
    ['md5_user', 'md5:md5_user'],
    ['pw_user', 'password:pw_user'],
  ])('%s authenticates with its method, on ordinary and replication connections', async (user, how) => {
    expect(await session({ user, sslmode: 'disable' })).toEqual({ systemUser: method(how), ssl: false });
    const replication = await ReplicationConnection.open(options({ user, sslmode: 'disable' }));
    await replication.close();
  });

  it.each(['scram_user', 'md5_user', 'pw_user'])(
    '%s with a wrong password fails in one line',
    async (user) => {
      const line = await failure({ user, password: 'wrong', sslmode: 'disable' });
      expect(line).toMatch(
        new RegExp(
          `^password authentication failed for ${user}@127\\.0\\.0\\.1:\\d+/postgres — check the user and password \\(--db-username/--db-password, the URL, or PGUSER/PGPASSWORD\\) \\[AUTHENTICATION_FAILED\\]$`,
        ),
      );
    },
  );
});

describe('sslmode', () => {
  it.each<[ConnectionInput, boolean]>([
    [{ sslmode: 'disable' }, false],
    [{ sslmode: 'allow' }, false],
    [{ sslmode: 'prefer' }, true],
    [{ sslmode: 'require' }, true],
    [{ sslmode: 'verify-ca', sslrootcert: 'ca' }, true],
    [{ sslmode: 'verify-full', sslrootcert: 'ca' }, true],
    [{ sslmode: 'verify-full', sslrootcert: 'ca', host: 'localhost' }, true],
    // libpq: require with a root certificate checks the chain like verify-ca.
    [{ sslmode: 'require', sslrootcert: 'ca' }, true],
  ])('%j connects (TLS: %s)', async (input, ssl) => {
    const sslrootcert = input.sslrootcert === 'ca' ? certs.ca : undefined;
    expect(await session({ user: 'scram_user', ...input, sslrootcert })).toEqual({
      systemUser: method('scram-sha-256:scram_user'),
      ssl,
    });
  });

  it.each<[string, ConnectionInput, RegExp]>([
    [
      'verify-full refuses a name the certificate does not carry',
      { sslmode: 'verify-full', sslrootcert: 'ca', host: '127.0.0.2' },
      /^the server certificate at 127\.0\.0\.2:\d+ is not issued for "127\.0\.0\.2" \(Hostname\/IP does not match certificate's altnames: IP: 127\.0\.0\.2 is not in the cert's list: 127\.0\.0\.1\) — connect by a host name the certificate lists \(--db-host\), or reissue it with this name in its subjectAltName \[TLS_ERROR\]$/,
    ],
    [
      'verify-ca refuses a certificate from another CA',
      { sslmode: 'verify-ca', sslrootcert: 'other' },
      /^the server certificate at 127\.0\.0\.1:\d+ cannot be verified \(unable to verify the first certificate\) — \/\S+\/other-ca\.crt does not hold the CA that signed it: point sslrootcert at the CA certificate that did \[TLS_ERROR\]$/,
    ],
    [
      'verify-ca without sslrootcert does not trust a private CA',
      { sslmode: 'verify-ca' },
      /^the server certificate at 127\.0\.0\.1:\d+ cannot be verified \(unable to verify the first certificate\) — set sslrootcert \(--sslrootcert, PGSSLROOTCERT or \?sslrootcert= in the URL\) to the CA certificate that signed it \[TLS_ERROR\]$/,
    ],
    [
      'require with another CA as sslrootcert checks the chain',
      { sslmode: 'require', sslrootcert: 'other' },
      /^the server certificate at 127\.0\.0\.1:\d+ cannot be verified .* \[TLS_ERROR\]$/,
    ],
    [
      'an sslrootcert file that does not exist',
      { sslmode: 'verify-full', sslrootcert: '/nonexistent/root.crt' },
      /^cannot read sslrootcert file \/nonexistent\/root\.crt \(ENOENT: no such file or directory, open '\/nonexistent\/root\.crt'\) — point sslrootcert at a readable PEM file \[INVALID_ARGUMENT\]$/,
    ],
    [
      'a user pg_hba admits only over TLS, with sslmode=disable',
      { user: 'ssl_only', sslmode: 'disable' },
      /^the server rejected ssl_only@127\.0\.0\.1:\d+\/postgres \(pg_hba\.conf rejects connection for host "127\.0\.0\.1", user "ssl_only", database "postgres", no encryption\) — if pg_hba\.conf admits this user only over TLS \(hostssl\), connect with sslmode=require \(better: verify-full with sslrootcert\); otherwise add a line like "host postgres ssl_only 127\.0\.0\.1\/32 scram-sha-256" to pg_hba\.conf \(above any line that rejects it\), then SELECT pg_reload_conf\(\); \[AUTHENTICATION_FAILED\]$/,
    ],
    [
      'a user pg_hba rejects',
      { user: 'denied_user', sslmode: 'require' },
      /^the server rejected denied_user@127\.0\.0\.1:\d+\/postgres \(pg_hba\.conf rejects connection for host "127\.0\.0\.1", user "denied_user", database "postgres", SSL encryption\) — add a line like "host postgres denied_user 127\.0\.0\.1\/32 scram-sha-256" to pg_hba\.conf \(above any line that rejects it\), then SELECT pg_reload_conf\(\); \[AUTHENTICATION_FAILED\]$/,
    ],
    [
      'a role without LOGIN',
      { user: 'nologin_user', sslmode: 'disable' },
      /^role "nologin_user" may not log in — run ALTER ROLE "nologin_user" LOGIN; \[AUTHENTICATION_FAILED\]$/,
    ],
    [
      'no password at all',
      { user: 'scram_user', password: undefined, sslmode: 'disable' },
      /^the server asks scram_user@127\.0\.0\.1:\d+\/postgres for a password, and none was given — set PGPASSWORD, --db-password or the password in the URL \(or add it to ~\/\.pgpass\) \[AUTHENTICATION_FAILED\]$/,
    ],
  ])('%s', async (_name, input, line) => {
    const named = { ca: certs.ca, other: certs.otherCa }[input.sslrootcert ?? ''];
    const sslrootcert = named ?? input.sslrootcert;
    expect(await failure({ user: 'scram_user', ...input, sslrootcert })).toMatch(line);
  });

  it('verify-full works for walsender (replication) connections too', async () => {
    const replication = await ReplicationConnection.open(
      options({ user: 'scram_user', sslmode: 'verify-full', sslrootcert: certs.ca }),
    );
    await replication.close();
  });

  it('allow falls back to TLS, and prefer to plain text, when pg_hba.conf wants the other', async () => {
    expect(await session({ user: 'ssl_only', sslmode: 'allow' })).toMatchObject({ ssl: true });
    expect(await session({ user: 'ssl_only', sslmode: 'prefer' })).toMatchObject({ ssl: true });
    expect(await session({ user: 'plain_only', sslmode: 'prefer' })).toMatchObject({ ssl: false });
    expect(await session({ user: 'plain_only', sslmode: 'allow' })).toMatchObject({ ssl: false });
  });

  it('a server without TLS: prefer falls back to plain text, require fails', async () => {
    const plain = inject('postgres');
    const input = { ...plain, user: plain.user, password: plain.password };
    const client = await connect(resolveConnection({ ...input, sslmode: 'prefer' }, {}));
    await client.end();
    const error = await connect(resolveConnection({ ...input, sslmode: 'require' }, {})).catch(
      (e: unknown) => e,
    );
    expect((error as PgReplicateError).toOneLine()).toMatch(
      /^the server at 127\.0\.0\.1:\d+ does not accept TLS connections, and sslmode=require requires TLS \(The server does not support SSL connections\) — turn TLS on in postgresql\.conf \(ssl = on, ssl_cert_file, ssl_key_file\) or connect with sslmode=prefer \[TLS_ERROR\]$/,
    );
  });
});

describe('unresponsive server', () => {
  let silent: Server;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    // Accepts connections and never answers.
    silent = createServer((socket) => {
      socket.on('error', () => {});
      sockets.push(socket);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => silent.close(() => resolve()));
  });

  it('times out after connectTimeoutMs with one line', async () => {
    const address = silent.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const started = Date.now();
    const error = await connect(
      resolveConnection({ host: '127.0.0.1', port, sslmode: 'disable', connectTimeoutMs: 300 }, {}),
    ).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((error as PgReplicateError).toOneLine()).toMatch(
      /^timed out connecting to 127\.0\.0\.1:\d+ — check that the host is reachable and not firewalled \[CONNECTION_TIMEOUT\]$/,
    );
  });
});
