/**
 * Where and how to connect: resolved from explicit options, a `postgres://` URL, `DATABASE_URL`
 * and the libpq `PG*` environment variables, in that order of precedence — the way `psql` users
 * expect. Passwords live only here; {@link describeConnection} is what logs and errors may show.
 */
import { userInfo } from 'node:os';
import { PgReplicateError } from '../errors.js';

/** libpq's `sslmode` values, weakest first. */
export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** Everything needed to connect, resolved; `password` must never be logged (use {@link describeConnection}). */
export interface ConnectionOptions {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string | undefined;
  /** libpq semantics; default `prefer`. */
  sslmode: SslMode;
  /** PEM file with the CA certificate(s) that sign the server's certificate (or `system`). */
  sslrootcert?: string | undefined;
  /** Client certificate and key files, for `cert` authentication. */
  sslcert?: string | undefined;
  sslkey?: string | undefined;
  applicationName: string;
  connectTimeoutMs: number;
}

/** What callers may give; unset fields come from the URL, the environment and libpq defaults. */
export type ConnectionInput = Partial<ConnectionOptions> & {
  /** `postgres://user:password@host:port/database?sslmode=…`; fields given separately win. */
  url?: string | undefined;
};

type Env = Record<string, string | undefined>;

/**
 * Resolves a full {@link ConnectionOptions}: explicit fields, then `input.url`, then
 * `DATABASE_URL`, then `PGHOST`/`PGPORT`/`PGDATABASE`/`PGUSER`/`PGPASSWORD`/`PGSSLMODE`/
 * `PGSSLROOTCERT`/`PGSSLCERT`/`PGSSLKEY`/`PGAPPNAME`/`PGCONNECT_TIMEOUT`, then libpq's defaults
 * (localhost, 5432, the OS user, sslmode prefer).
 */
export function resolveConnection(input: ConnectionInput = {}, env: Env = process.env): ConnectionOptions {
  const fromUrl = parseUrl(input.url ?? env['DATABASE_URL']);
  const defined = <T>(...values: (T | undefined)[]): T | undefined => values.find((v) => v !== undefined);
  const user = defined(input.user, fromUrl.user, env['PGUSER']) ?? osUser();
  const portText = defined(
    input.port === undefined ? undefined : String(input.port),
    fromUrl.port === undefined ? undefined : String(fromUrl.port),
    env['PGPORT'],
  );
  const sslmode =
    defined(input.sslmode, fromUrl.sslmode, env['PGSSLMODE'] as SslMode | undefined) ?? 'prefer';
  if (!SSL_MODES.includes(sslmode)) {
    throw new PgReplicateError('INVALID_ARGUMENT', `unknown sslmode "${sslmode}"`, {
      hint: `use one of ${SSL_MODES.join(', ')}`,
    });
  }
  return {
    host: defined(input.host, fromUrl.host, env['PGHOST']) ?? 'localhost',
    port: parsePort(portText ?? '5432'),
    database: defined(input.database, fromUrl.database, env['PGDATABASE']) ?? user,
    user,
    password: defined(input.password, fromUrl.password, env['PGPASSWORD']),
    sslmode,
    sslrootcert: defined(input.sslrootcert, fromUrl.sslrootcert, env['PGSSLROOTCERT']),
    sslcert: defined(input.sslcert, fromUrl.sslcert, env['PGSSLCERT']),
    sslkey: defined(input.sslkey, fromUrl.sslkey, env['PGSSLKEY']),
    applicationName:
      defined(input.applicationName, fromUrl.applicationName, env['PGAPPNAME']) ?? 'pg-replicate',
    connectTimeoutMs:
      input.connectTimeoutMs ??
      fromUrl.connectTimeoutMs ??
      parseConnectTimeout(env['PGCONNECT_TIMEOUT'], 'PGCONNECT_TIMEOUT') ??
      10_000,
  };
}

const PERCENT_ENCODING_HINT =
  'percent-encode special characters in the user, password and database name: % as %25, @ as %40, / as %2F, : as %3A, # as %23, ? as %3F (encodeURIComponent does it)';

/** A %-decoded URL part, or undefined when empty. Never echoes the part: it may be a password. */
function decode(value: string): string | undefined {
  if (value === '') return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    throw new PgReplicateError('INVALID_ARGUMENT', 'the connection URL has a malformed %-escape', {
      hint: PERCENT_ENCODING_HINT,
    });
  }
}

/** `user@host:port/database` — safe to log: never the password. */
export function describeConnection(options: ConnectionOptions): string {
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return `${options.user}@${host}:${options.port}/${options.database}`;
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'postgres';
  }
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new PgReplicateError('INVALID_ARGUMENT', `"${text}" is not a valid port`, {
      hint: 'give a number between 1 and 65535',
    });
  }
  return port;
}

function parseUrl(url: string | undefined): Partial<ConnectionOptions> {
  if (url === undefined || url === '') return {};
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Never echo the URL: it may hold a password.
    throw new PgReplicateError('INVALID_ARGUMENT', 'the connection URL is not a valid URL', {
      hint: 'write it as postgres://user:password@host:5432/database',
    });
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new PgReplicateError('INVALID_ARGUMENT', `unsupported URL scheme "${parsed.protocol}"`, {
      hint: 'connection URLs start with postgres:// or postgresql://',
    });
  }
  const query = parsed.searchParams;
  const database = parsed.pathname.replace(/^\//, '');
  // A raw "/", "@" or "#" there means the password (or user) held one unescaped and the URL split
  // it into host, path and fragment: refuse, rather than show a piece of the password as a name.
  if (/[/@]/.test(database) || parsed.hash !== '') {
    throw new PgReplicateError(
      'INVALID_ARGUMENT',
      'the connection URL has a "/", "@" or "#" after the host: a special character in the user or password is probably not percent-encoded',
      { hint: PERCENT_ENCODING_HINT },
    );
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    host: host === '' ? (query.get('host') ?? undefined) : host,
    port: parsed.port === '' ? undefined : parsePort(parsed.port),
    database: decode(database),
    user: decode(parsed.username),
    password: decode(parsed.password),
    sslmode: (query.get('sslmode') ?? undefined) as SslMode | undefined,
    sslrootcert: query.get('sslrootcert') ?? undefined,
    sslcert: query.get('sslcert') ?? undefined,
    sslkey: query.get('sslkey') ?? undefined,
    applicationName: query.get('application_name') ?? undefined,
    connectTimeoutMs: parseConnectTimeout(query.get('connect_timeout') ?? undefined, 'connect_timeout'),
  };
}

/** libpq's connect_timeout: whole seconds, 0 (or unset) for its default; we then wait 10 s. */
function parseConnectTimeout(text: string | undefined, name: string): number | undefined {
  if (text === undefined || text === '') return undefined;
  const seconds = Number(text);
  if (!Number.isInteger(seconds) || seconds < 0) {
    throw new PgReplicateError('INVALID_ARGUMENT', `${name} "${text}" is not a whole number of seconds`, {
      hint: `set ${name} to the seconds to wait for a connection, e.g. 10`,
    });
  }
  // libpq waits at least 2 s, and 0 means no limit; we keep a limit, so that a dead host is reported.
  return seconds === 0 ? undefined : Math.max(seconds, 2) * 1000;
}
