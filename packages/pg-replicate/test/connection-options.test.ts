/**
 * Where connection settings come from (flags over URL over DATABASE_URL over PG* variables over
 * libpq's defaults), and that what may be shown of them never holds the password.
 */
import { describe, expect, it } from 'vitest';
import { describeConnection, resolveConnection } from '../src/connection/connection-options.js';
import { PgReplicateError } from '../src/errors.js';

const SECRET = 'p@ss:w/rd%';

describe('resolveConnection', () => {
  it('takes explicit fields over the URL, the URL over DATABASE_URL, and that over PG* variables', () => {
    const env = {
      DATABASE_URL: 'postgres://env_user@env-host:6000/env_db?sslmode=require',
      PGHOST: 'pg-host',
      PGPORT: '7000',
      PGUSER: 'pg_user',
      PGPASSWORD: 'from-env',
      PGCONNECT_TIMEOUT: '4',
    };
    expect(resolveConnection({}, env)).toMatchObject({
      host: 'env-host',
      port: 6000,
      user: 'env_user',
      database: 'env_db',
      password: 'from-env',
      sslmode: 'require',
      connectTimeoutMs: 4000,
    });
    const url = `postgres://u:${encodeURIComponent(SECRET)}@url-host/url_db?connect_timeout=7&sslmode=verify-full`;
    expect(resolveConnection({ url, host: 'flag-host' }, env)).toMatchObject({
      host: 'flag-host',
      port: 7000, // not in the URL: PGPORT fills the gap, as in libpq
      user: 'u',
      database: 'url_db',
      password: SECRET,
      sslmode: 'verify-full',
      connectTimeoutMs: 7000,
    });
    expect(resolveConnection({}, { PGUSER: 'someone' })).toMatchObject({
      host: 'localhost',
      port: 5432,
      database: 'someone',
      sslmode: 'prefer',
      connectTimeoutMs: 10_000,
    });
  });

  it.each([
    ['postgres://u:p@[bad/db', 'the connection URL is not a valid URL'],
    ['postgres://u:12/p@ss@host/db', 'the connection URL has a "/", "@" or "#" after the host'],
    ['postgres://u:12#p@ss@host/db', 'the connection URL has a "/", "@" or "#" after the host'],
    ['postgres://u:50%zz@host/db', 'the connection URL has a malformed %-escape'],
    ['mysql://u:p@host/db', 'unsupported URL scheme "mysql:"'],
    ['postgres://host/db?connect_timeout=soon', 'connect_timeout "soon" is not a whole number of seconds'],
    ['postgres://host/db?sslmode=on', 'unknown sslmode "on"'],
  ])('refuses %s as a usage error that does not echo the URL', (url, message) => {
    let thrown: unknown;
    try {
      resolveConnection({ url }, {});
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(PgReplicateError);
    const error = thrown as PgReplicateError;
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain(message);
    expect(error.toOneLine()).not.toContain(url);
    expect(error.toOneLine()).not.toMatch(/p@ss|50%zz/);
  });

  it('describes a connection without its password', () => {
    const options = resolveConnection({ url: `postgres://u:${encodeURIComponent(SECRET)}@h:1/d` }, {});
    expect(describeConnection(options)).toBe('u@h:1/d');
    expect(describeConnection({ ...options, host: '::1' })).toBe('u@[::1]:1/d');
  });
});
