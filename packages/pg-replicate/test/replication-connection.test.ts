import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLsn } from '../src/lsn.js';
import type { PgoutputMessage } from '../src/pgoutput/messages.js';
import { ReplicationConnection } from '../src/protocol/replication-connection.js';
import type { ReplicationStream } from '../src/protocol/replication-stream.js';
import { freshDatabase, type TestDatabase } from './helpers.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await freshDatabase('replconn');
  await db.sql(`
    CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2));
    CREATE PUBLICATION pub FOR TABLE items;
  `);
});
afterAll(async () => db.close());

async function collect(stream: ReplicationStream, until: (m: PgoutputMessage[]) => boolean) {
  const messages: PgoutputMessage[] = [];
  while (!until(messages)) {
    const events = await stream.next();
    if (events === null) break;
    for (const event of events) if (event.type === 'xlog') messages.push(event.message);
  }
  return messages;
}

describe('ReplicationConnection', () => {
  it('identifies the system and creates a slot with an exported snapshot', async () => {
    const conn = await ReplicationConnection.open(db.options);
    try {
      expect(conn.serverVersion).toBeGreaterThanOrEqual(140000);
      const identity = await conn.identifySystem();
      expect(identity.database).toBe(db.name);
      expect(identity.timeline).toBeGreaterThanOrEqual(1);
      const slot = await conn.createSlot('s_export', { snapshot: 'export', temporary: true });
      expect(slot.snapshotName).toMatch(/^[0-9A-F-]+$/);
      expect(slot.consistentPoint).toBeGreaterThan(0n);
      expect(slot.outputPlugin).toBe('pgoutput');
      // The exported snapshot is importable while the replication connection stays idle.
      const other = await db.client();
      await other.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await other.query(`SET TRANSACTION SNAPSHOT '${slot.snapshotName}'`);
      await other.query('COMMIT');
      await other.end();
    } finally {
      await conn.close();
    }
  });

  it('streams decoded inserts, updates, deletes and truncates and confirms what it is told', async () => {
    const conn = await ReplicationConnection.open(db.options);
    try {
      const slot = await conn.createSlot('s_stream');
      // One statement per call: a multi-statement query is a single transaction.
      await db.sql(`INSERT INTO items VALUES (1, 'a', 1.50), (2, 'b', NULL)`);
      await db.sql(`UPDATE items SET name = 'bb' WHERE id = 2`);
      await db.sql(`DELETE FROM items WHERE id = 1`);
      await db.sql(`TRUNCATE items`);
      const stream = conn.startReplication('s_stream', 0n, { publications: ['pub'] });
      const messages = await collect(
        stream,
        (m) => m.some((x) => x.tag === 'truncate') && m.at(-1)?.tag === 'commit',
      );
      const tags = messages.map((m) => m.tag);
      // pgoutput re-sends Relation after invalidations (e.g. TRUNCATE), so only its presence is fixed.
      expect(tags.indexOf('relation')).toBe(1);
      expect(tags.filter((t) => t !== 'relation')).toEqual([
        'begin',
        'insert',
        'insert',
        'commit',
        'begin',
        'update',
        'commit',
        'begin',
        'delete',
        'commit',
        'begin',
        'truncate',
        'commit',
      ]);
      const inserts = messages.filter((m) => m.tag === 'insert');
      expect(inserts[0]!.new.text(0)).toBe('1');
      expect(inserts[0]!.new.text(2)).toBe('1.50');
      expect(inserts[1]!.new.isNull(2)).toBe(true);
      const relation = messages.find((m) => m.tag === 'relation')!;
      expect(relation).toMatchObject({ schema: 'public', name: 'items', replicaIdentity: 'default' });
      expect(relation.columns.map((c) => [c.name, c.isKey])).toEqual([
        ['id', true],
        ['name', false],
        ['price', false],
      ]);
      const del = messages.find((m) => m.tag === 'delete')!;
      expect(del.key?.text(0)).toBe('1');
      const lastCommit = messages.filter((m) => m.tag === 'commit').at(-1)!;
      expect(lastCommit.endLsn).toBeGreaterThan(slot.consistentPoint);
      stream.confirm(lastCommit.endLsn);
      await stream.stop();
      const [row] = await db.sql<{ confirmed_flush_lsn: string }>(
        `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 's_stream'`,
      );
      expect(row!.confirmed_flush_lsn).toBe(formatLsn(lastCommit.endLsn));
    } finally {
      await conn.close();
    }
  });

  it('reports a slot in use by another connection as SLOT_IN_USE', async () => {
    const first = await ReplicationConnection.open(db.options);
    const second = await ReplicationConnection.open(db.options);
    try {
      await first.createSlot('s_busy');
      const a = first.startReplication('s_busy', 0n, { publications: ['pub'] });
      await db.sql(`INSERT INTO items VALUES (100, 'x', 1)`);
      await a.next();
      const b = second.startReplication('s_busy', 0n, { publications: ['pub'] });
      await expect(b.next()).rejects.toMatchObject({ code: 'SLOT_IN_USE' });
    } finally {
      await first.close();
      await second.close();
    }
  });
});
