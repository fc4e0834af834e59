/**
 * `copyTable` against a real server: batches hold exactly the table's rows, bounded by rows and by
 * bytes (a batch of wide rows must not grow to `batchRows` × row size).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CopyTextBatch } from '../src/copy-batch.js';
import type { TableSchema } from '../src/schema.js';
import { copyTable } from '../src/source/table-copy.js';
import { freshDatabase, type TestDatabase } from './helpers.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await freshDatabase('table_copy');
  await db.sql(`
    CREATE TABLE narrow (id int PRIMARY KEY, t text);
    INSERT INTO narrow SELECT g, 'row ' || g FROM generate_series(1, 25000) g;
    CREATE TABLE wide (id int PRIMARY KEY, t text);
    -- 1 MB values (md5 keeps them from compressing away; COPY sends them whole anyway)
    INSERT INTO wide SELECT g, repeat(md5(g::text), 32768) FROM generate_series(1, 24) g;
  `);
});

afterAll(async () => {
  await db?.close();
});

function schema(name: string): TableSchema {
  return {
    relationId: 0,
    schema: 'public',
    name,
    columns: [
      { name: 'id', typeOid: 23, typeMod: -1, typeName: 'integer', nullable: false, isKey: true },
      { name: 't', typeOid: 25, typeMod: -1, typeName: 'text', nullable: true, isKey: false },
    ],
    primaryKey: ['id'],
    replicaIdentity: 'default',
  };
}

async function copyAll(name: string, batchRows: number): Promise<CopyTextBatch[]> {
  const client = await db.client();
  try {
    const batches: CopyTextBatch[] = [];
    for await (const batch of copyTable(client, schema(name), { batchRows })) batches.push(batch);
    return batches;
  } finally {
    await client.end();
  }
}

describe('copyTable', () => {
  it('hands over batches of batchRows rows, every row once', async () => {
    const batches = await copyAll('narrow', 10_000);
    expect(batches.map((b) => b.length)).toEqual([10_000, 10_000, 5_000]);
    const ids = batches.flatMap((b) => [...b].map((row) => Number(row.text(0))));
    expect(ids).toEqual(Array.from({ length: 25_000 }, (_, i) => i + 1));
    expect([...batches[2]!].at(-1)!.text(1)).toBe('row 25000');
  });

  it('cuts batches of wide rows at about 4 MiB, whatever batchRows says', async () => {
    const batches = await copyAll('wide', 10_000);
    expect(batches.reduce((n, b) => n + b.length, 0)).toBe(24);
    for (const batch of batches) expect(batch.byteLength).toBeLessThan(4 * 1024 * 1024 + 1024 * 1024 + 64);
    expect(batches.length).toBeGreaterThanOrEqual(5);
    const [first] = [...batches[0]!];
    expect(first!.text(1)).toHaveLength(1024 * 1024);
  });
});
