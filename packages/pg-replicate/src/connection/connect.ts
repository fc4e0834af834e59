/**
 * Opens `pg` clients — ordinary ones for catalog queries and COPY, and `replication=database`
 * ones for the walsender — with the session settings our text decoding relies on, libpq's
 * `sslmode` semantics, and connection failures turned into one actionable {@link PgReplicateError}.
 *
 * `pg` does the wire work we do not want to own (startup, SCRAM/md5/password auth, TLS upgrade).
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import pg from 'pg';
import { isServerError, PgReplicateError } from '../errors.js';
import { type ConnectionOptions, describeConnection } from './connection-options.js';

/**
 * Pinned on every connection because values are decoded from their text form: timestamptz in
 * UTC, ISO dates, hex bytea, shortest-exact floats, the default interval style.
 */
const SESSION_SETTINGS =
  '-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex';

/** pg's type parsers would turn timestamps into millisecond Dates; we want the server's text. */
const RAW_TEXT_TYPES = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

/** How to open a connection, beyond where to (see {@link ConnectionOptions}). */
export interface ConnectOptions {
  /** Open a walsender connection (`replication=database`) instead of a regular backend. */
  replication?: boolean;
}

/**
 * Connects and returns a ready `pg.Client`. Errors after connection (e.g. the server going away)
 * are left to the caller's own handling, but an 'error' listener is installed so that they never
 * crash the process as unhandled events.
 */
export async function connect(
  options: ConnectionOptions,
  connectOptions: ConnectOptions = {},
): Promise<pg.Client> {
  const attempts = sslAttempts(options);
  let lastError: unknown;
  for (const ssl of attempts) {
    try {
      return await connectOnce(options, ssl, connectOptions);
    } catch (error) {
      lastError = error;
      // prefer: fall back to plain text only if the server refused TLS; allow: the other way round.
      if (!isSslNegotiationFailure(error, ssl)) break;
    }
  }
  throw connectionError(lastError, options, connectOptions);
}

async function connectOnce(
  options: ConnectionOptions,
  ssl: TlsOptions | false,
  connectOptions: ConnectOptions,
): Promise<pg.Client> {
  const config: pg.ClientConfig & { replication?: string } = {
    host: options.host,
    port: options.port,
    database: options.database,
    user: options.user,
    password: options.password,
    ssl,
    application_name: options.applicationName,
    connectionTimeoutMillis: options.connectTimeoutMs,
    options: SESSION_SETTINGS,
    types: RAW_TEXT_TYPES,
    keepAlive: true,
  };
  if (connectOptions.replication) config.replication = 'database';
  const client = new pg.Client(config);
  client.on('error', () => {
    // Reported through the active query or the next call; never an unhandled 'error' event.
  });
  await client.connect();
  return client;
}

/** The TLS settings to try, in order, for the sslmode. */
function sslAttempts(options: ConnectionOptions): (TlsOptions | false)[] {
  switch (options.sslmode) {
    case 'disable':
      return [false];
    case 'allow':
      return [false, tlsOptions(options, false, false)];
    case 'prefer':
      return [tlsOptions(options, false, false), false];
    case 'require':
      // libpq: with a root certificate present, require behaves like verify-ca.
      return [tlsOptions(options, options.sslrootcert !== undefined, false)];
    case 'verify-ca':
      return [tlsOptions(options, true, false)];
    case 'verify-full':
      return [tlsOptions(options, true, true)];
  }
}

function tlsOptions(options: ConnectionOptions, verifyChain: boolean, verifyHost: boolean): TlsOptions {
  const tls: TlsOptions = { rejectUnauthorized: verifyChain };
  if (verifyChain && options.sslrootcert !== undefined && options.sslrootcert !== 'system') {
    tls.ca = readPem(options.sslrootcert, 'sslrootcert');
  }
  if (!verifyHost) tls.checkServerIdentity = () => undefined;
  if (options.sslcert !== undefined) tls.cert = readPem(options.sslcert, 'sslcert');
  if (options.sslkey !== undefined) tls.key = readPem(options.sslkey, 'sslkey');
  return tls;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new PgReplicateError('INVALID_ARGUMENT', `cannot read ${what} file ${path}`, {
      detail: (error as Error).message,
      hint: `point ${what} at a readable PEM file`,
    });
  }
}

function isSslNegotiationFailure(error: unknown, ssl: TlsOptions | false): boolean {
  if (!(error instanceof Error)) return false;
  // prefer: libpq also retries without TLS when pg_hba.conf refuses this user over TLS (hostnossl).
  if (ssl !== false) {
    return (
      /does not support SSL/i.test(error.message) ||
      (isServerError(error) && error.code === '28000' && /SSL encryption/i.test(error.message))
    );
  }
  // The server demands TLS (hostssl-only pg_hba): "no pg_hba.conf entry … no encryption".
  return isServerError(error) && error.code === '28000' && /no encryption/i.test(error.message);
}

/** What to do when max_wal_senders is reached (shared with the preflight check). */
export const WAL_SENDERS_HINT =
  "raise max_wal_senders (needs a restart), or end an unused replication connection: SELECT pid, application_name FROM pg_stat_activity WHERE backend_type = 'walsender';";

/** Turns whatever `pg` or the socket threw while connecting into one actionable error. */
export function connectionError(
  error: unknown,
  options: ConnectionOptions,
  connectOptions: ConnectOptions = {},
) {
  if (error instanceof PgReplicateError) return error;
  const where = describeConnection(options);
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  if (isServerError(error)) {
    switch (error.code) {
      case '28P01':
        return new PgReplicateError('AUTHENTICATION_FAILED', `password authentication failed for ${where}`, {
          hint: 'check the user and password (--db-username/--db-password, the URL, or PGUSER/PGPASSWORD)',
          cause: error,
        });
      case '28000':
        return rejectedError(error, options, connectOptions);
      case '3D000':
        return new PgReplicateError(
          'DATABASE_NOT_FOUND',
          `database "${options.database}" does not exist on ${where}`,
          {
            hint: 'check --db-name (or the URL path); list databases with: psql -l',
            cause: error,
          },
        );
      case '42501':
        // "permission denied for database …" (no CONNECT privilege) or, on a walsender, no REPLICATION.
        if (/for database|CONNECT privilege/i.test(`${message} ${error.detail ?? ''}`)) {
          return new PgReplicateError(
            'AUTHENTICATION_FAILED',
            `role "${options.user}" may not connect to database "${options.database}"`,
            {
              hint: `run GRANT CONNECT ON DATABASE ${quoteIdent(options.database)} TO ${quoteIdent(options.user)};`,
              cause: error,
            },
          );
        }
        return new PgReplicateError(
          'MISSING_REPLICATION_PRIVILEGE',
          `role "${options.user}" may not open a replication connection`,
          {
            detail: message,
            hint: `run ALTER ROLE ${quoteIdent(options.user)} WITH REPLICATION; as a superuser`,
            cause: error,
          },
        );
      case '53300':
        if (/wal_senders|walsender|standby connections/i.test(message)) {
          return new PgReplicateError('WAL_SENDERS_EXHAUSTED', `every WAL sender is in use on ${where}`, {
            detail: message,
            hint: WAL_SENDERS_HINT,
            cause: error,
          });
        }
        return new PgReplicateError('TOO_MANY_CONNECTIONS', `too many connections on ${where}`, {
          detail: message,
          hint: 'raise max_connections or close idle connections, then retry',
          cause: error,
        });
      case '57P03':
        return new PgReplicateError('HOST_UNREACHABLE', `${where} is starting up or shutting down`, {
          hint: 'retry in a moment',
          cause: error,
        });
      default:
        return new PgReplicateError('SERVER_ERROR', `cannot connect to ${where}: ${message}`, {
          cause: error,
        });
    }
  }
  if (code === 'ECONNREFUSED') {
    return new PgReplicateError('HOST_UNREACHABLE', `connection refused by ${options.host}:${options.port}`, {
      hint: 'check that Postgres is running there and listening on that port (listen_addresses, port, firewall)',
      cause: error,
    });
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new PgReplicateError('HOST_UNREACHABLE', `host "${options.host}" not found`, {
      hint: 'check --db-host (or PGHOST / the URL) for typos and that DNS resolves it',
      cause: error,
    });
  }
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ECONNRESET') {
    return new PgReplicateError(
      'HOST_UNREACHABLE',
      `cannot reach ${options.host}:${options.port} (${code})`,
      {
        hint: 'check the network path to the server',
        cause: error,
      },
    );
  }
  if (code === 'ETIMEDOUT' || /timeout/i.test(message)) {
    return new PgReplicateError(
      'CONNECTION_TIMEOUT',
      `timed out connecting to ${options.host}:${options.port}`,
      {
        hint: 'check that the host is reachable and not firewalled',
        cause: error,
      },
    );
  }
  if (/SSL|TLS|certificate|self[- ]signed/i.test(message) || /CERT|SSL|TLS/.test(code ?? '')) {
    return tlsError(error as Error, options);
  }
  if (/client password must be/i.test(message)) {
    return new PgReplicateError(
      'AUTHENTICATION_FAILED',
      `the server asks ${where} for a password, and none was given`,
      {
        hint: 'set PGPASSWORD, --db-password or the password in the URL (or add it to ~/.pgpass)',
        cause: error,
      },
    );
  }
  if (/terminated|closed|ended/i.test(message)) {
    return new PgReplicateError('CONNECTION_LOST', `connection to ${where} was closed: ${message}`, {
      hint: 'check the server log for why it closed the connection',
      cause: error,
    });
  }
  return new PgReplicateError('SERVER_ERROR', `cannot connect to ${where}: ${message}`, { cause: error });
}

/** pg_hba.conf or the role refused the connection (SQLSTATE 28000): say which, and the fix. */
function rejectedError(
  error: Error,
  options: ConnectionOptions,
  connectOptions: ConnectOptions,
): PgReplicateError {
  const where = describeConnection(options);
  if (/not permitted to log in/i.test(error.message)) {
    return new PgReplicateError('AUTHENTICATION_FAILED', `role "${options.user}" may not log in`, {
      hint: `run ALTER ROLE ${quoteIdent(options.user)} LOGIN;`,
      cause: error,
    });
  }
  // "no pg_hba.conf entry for host "10.0.0.5", user …" names the address the server saw.
  const address = /host "([^"]+)"/.exec(error.message)?.[1] ?? '<client address>';
  const entry = `host ${options.database} ${options.user} ${address}/${address.includes(':') ? 128 : 32} scram-sha-256`;
  const fix = `add a line like "${entry}" to pg_hba.conf (above any line that rejects it), then SELECT pg_reload_conf();`;
  return new PgReplicateError('AUTHENTICATION_FAILED', `the server rejected ${where}`, {
    detail: error.message,
    hint:
      // Over plain text the rejection may just mean that pg_hba.conf admits the user only with hostssl.
      /no encryption/i.test(error.message)
        ? `if pg_hba.conf admits this user only over TLS (hostssl), connect with sslmode=require (better: verify-full with sslrootcert); otherwise ${fix}`
        : `${fix}${connectOptions.replication ? ' (a logical replication connection matches on the database name)' : ''}`,
    cause: error,
  });
}

/** TLS failed: the server has none, its certificate is for another name, or it cannot be verified. */
function tlsError(error: Error & { code?: string }, options: ConnectionOptions): PgReplicateError {
  const at = `${options.host}:${options.port}`;
  const fail = (message: string, hint: string) =>
    new PgReplicateError('TLS_ERROR', message, { detail: error.message, hint, cause: error });
  if (/does not support SSL/i.test(error.message)) {
    return fail(
      `the server at ${at} does not accept TLS connections, and sslmode=${options.sslmode} requires TLS`,
      'turn TLS on in postgresql.conf (ssl = on, ssl_cert_file, ssl_key_file) or connect with sslmode=prefer',
    );
  }
  if (error.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return fail(
      `the server certificate at ${at} is not issued for "${options.host}"`,
      'connect by a host name the certificate lists (--db-host), or reissue it with this name in its subjectAltName',
    );
  }
  const verifying =
    options.sslmode === 'verify-ca' ||
    options.sslmode === 'verify-full' ||
    (options.sslmode === 'require' && options.sslrootcert !== undefined);
  if (verifying) {
    const root = options.sslrootcert;
    return fail(
      `the server certificate at ${at} cannot be verified`,
      root === undefined || root === 'system'
        ? 'set sslrootcert (--sslrootcert, PGSSLROOTCERT or ?sslrootcert= in the URL) to the CA certificate that signed it'
        : `${root} does not hold the CA that signed it: point sslrootcert at the CA certificate that did`,
    );
  }
  return fail(
    `TLS connection to ${at} failed`,
    'check the server TLS settings (ssl, ssl_cert_file, ssl_key_file in postgresql.conf), or use sslmode=prefer',
  );
}

/** Quotes an SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes an SQL string literal (standard_conforming_strings is on since 9.1). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
