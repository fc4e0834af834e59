/**
 * The fake itself, through the real Google clients and an encoder of its own (protobufjs, not the
 * sink's): BigQuery's CDC semantics as documented, the rejections the sink relies on being told
 * about, `max_staleness`, and the REST surface. If the fake is wrong, the sink's tests prove nothing.
 */
import { BigQuery } from '@google-cloud/bigquery';
import { managedwriter } from '@google-cloud/bigquery-storage';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeBigQuery } from './fake/fake-bigquery.js';
import { compareSequences, parseSequence } from './fake/fake-table.js';

const PROJECT = 'fake-project';
let fake: FakeBigQuery;
let bigquery: BigQuery;
let writer: managedwriter.WriterClient;

beforeAll(async () => {
  fake = await FakeBigQuery.start();
  const options = fake.clientOptions();
  bigquery = new BigQuery({ projectId: PROJECT, ...options.bigquery });
  writer = new managedwriter.WriterClient({ projectId: PROJECT, ...options.storageWrite });
  await bigquery.createDataset('d');
  await bigquery.dataset('d').createTable('kv', {
    schema: {
      fields: [
        { name: 'k', type: 'INT64', mode: 'REQUIRED' },
        { name: 'v', type: 'STRING' },
      ],
    },
    tableConstraints: { primaryKey: { columns: ['k'] } },
  });
  await bigquery.dataset('d').createTable('log', { schema: { fields: [{ name: 'line', type: 'STRING' }] } });
});
afterAll(async () => {
  writer?.close();
  await fake?.stop();
});

/** A row type of our own: `k`, `v` and the CDC pseudo-columns, encoded by protobufjs. */
const Row = new protobuf.Type('Row')
  .add(new protobuf.Field('k', 1, 'int64'))
  .add(new protobuf.Field('v', 2, 'string'))
  .add(new protobuf.Field('_CHANGE_TYPE', 3, 'string'))
  .add(new protobuf.Field('_CHANGE_SEQUENCE_NUMBER', 4, 'string'));
new protobuf.Root().add(Row);
const DESCRIPTOR = {
  name: 'Row',
  field: [
    { name: 'k', number: 1, type: 3, label: 1 },
    { name: 'v', number: 2, type: 9, label: 1 },
    { name: '_CHANGE_TYPE', number: 3, type: 9, label: 1 },
    { name: '_CHANGE_SEQUENCE_NUMBER', number: 4, type: 9, label: 1 },
  ],
};

type Change = { k: number; v?: string; type?: 'UPSERT' | 'DELETE'; seq?: string };

function encode(change: Change): Uint8Array {
  return Row.encode(
    Row.create({
      k: change.k,
      ...(change.v === undefined ? {} : { v: change.v }),
      ...(change.type === undefined ? {} : { _CHANGE_TYPE: change.type }),
      ...(change.seq === undefined ? {} : { _CHANGE_SEQUENCE_NUMBER: change.seq }),
    }),
  ).finish();
}

async function append(table: string, rows: Uint8Array[], descriptor: object = DESCRIPTOR) {
  const connection = await writer.createStreamConnection({
    streamId: managedwriter.DefaultStream,
    destinationTable: `projects/${PROJECT}/datasets/d/tables/${table}`,
  });
  connection.onConnectionError(() => {});
  try {
    return await new managedwriter.Writer({ connection, protoDescriptor: descriptor })
      .appendRows({ serializedRows: rows })
      .getResult();
  } finally {
    connection.close();
  }
}

function visible(): Record<string, string | null> {
  return Object.fromEntries(
    fake.rows(PROJECT, 'd', 'kv').map((row) => [String(row.k), row.v as string | null]),
  );
}

describe('CDC semantics', () => {
  it('keeps the change with the largest sequence number per key, tombstones included', async () => {
    await append('kv', [encode({ k: 1, v: 'a', type: 'UPSERT', seq: '2/1' })]);
    await append('kv', [encode({ k: 1, v: 'older', type: 'UPSERT', seq: '1/FFFF' })]);
    expect(visible()).toEqual({ 1: 'a' });
    await append('kv', [encode({ k: 1, type: 'DELETE', seq: '3' })]);
    expect(visible()).toEqual({});
    await append('kv', [encode({ k: 1, v: 'before the delete', type: 'UPSERT', seq: '2/9' })]);
    expect(visible()).toEqual({});
    await append('kv', [encode({ k: 1, v: 'back', type: 'UPSERT', seq: '3/1' })]);
    expect(visible()).toEqual({ 1: 'back' });
  });

  it('lets the later ingestion win between equal sequence numbers', async () => {
    await append('kv', [
      encode({ k: 2, v: 'first', type: 'UPSERT', seq: 'A/1' }),
      encode({ k: 2, v: 'second', type: 'UPSERT', seq: 'a/1' }),
    ]);
    expect(visible()[2]).toBe('second');
  });

  it('compares sequence numbers as in the documented examples', () => {
    const cmp = (a: string, b: string) => compareSequences(parseSequence(a)!, parseSequence(b)!);
    expect(cmp('7B', '77')).toBe(1);
    expect(cmp('FFF/ABC', 'FFF/B')).toBe(1);
    expect(cmp('ABC', 'BA/FFFFFFFF')).toBe(1);
    expect(cmp('FFF/ABC', 'ABC')).toBe(1);
    expect(cmp('FFFFFFFFFFFFFFFF/0', 'FFFFFFFFFFFFFFFF')).toBe(0);
    expect(parseSequence('1/2/3/4/5')).toBeNull();
    expect(parseSequence('12345678901234567')).toBeNull();
    expect(parseSequence('G')).toBeNull();
  });
});

describe('rejections', () => {
  it('a field the table does not have', async () => {
    const descriptor = {
      ...DESCRIPTOR,
      field: [...DESCRIPTOR.field, { name: 'extra', number: 5, type: 9, label: 1 }],
    };
    const result = await append('kv', [encode({ k: 3, type: 'UPSERT', seq: '1' })], descriptor);
    expect(result.error).toMatchObject({ code: 3, message: expect.stringMatching(/extra fields: 'extra'/) });
  });

  it('a protobuf type the column cannot take', async () => {
    const descriptor = {
      ...DESCRIPTOR,
      field: DESCRIPTOR.field.map((f) => (f.name === 'k' ? { ...f, type: 9 } : f)),
    };
    const result = await append('kv', [encode({ k: 3, type: 'UPSERT', seq: '1' })], descriptor);
    expect(result.error?.message).toMatch(/protobuf type string cannot be written to a INT64 column/);
  });

  it('_CHANGE_TYPE on a table without a primary key', async () => {
    const result = await append('log', [Row.encode(Row.create({ _CHANGE_TYPE: 'UPSERT' })).finish()], {
      name: 'Log',
      field: [
        { name: 'line', number: 2, type: 9, label: 1 },
        { name: '_CHANGE_TYPE', number: 3, type: 9, label: 1 },
      ],
    });
    expect(result.error?.message).toMatch(/no primary key/);
  });

  it('bad rows, naming each one, and applies none of the request', async () => {
    const result = await append('kv', [
      encode({ k: 10, v: 'fine', type: 'UPSERT', seq: '1' }),
      encode({ k: 11, v: 'bad sequence', type: 'UPSERT', seq: 'not hex' }),
      encode({ k: 12, v: 'bad type', type: 'INSERT' as 'UPSERT', seq: '1' }),
    ]);
    expect(result.error?.code).toBe(3);
    expect(result.rowErrors?.map((row) => [Number(row.index), row.message])).toEqual([
      [1, '"not hex" is not a valid _CHANGE_SEQUENCE_NUMBER'],
      [2, 'The given value is not a valid CHANGE_TYPE'],
    ]);
    expect(visible()[10]).toBeUndefined();
  });

  it('a request over 10 MB', async () => {
    const big = encode({ k: 20, v: 'x'.repeat(1024 * 1024), type: 'UPSERT', seq: '1' });
    const result = await append(
      'kv',
      Array.from({ length: 11 }, () => big),
    );
    expect(result.error?.message).toMatch(/AppendRows request too large/);
  });

  it('a table that does not exist', async () => {
    const result = await append('nope', [encode({ k: 1, type: 'UPSERT', seq: '1' })]);
    expect(result.error).toMatchObject({ code: 5 });
  });

  it('REST calls without credentials', async () => {
    const response = await fetch(
      `http://127.0.0.1:${fake.restPort}/bigquery/v2/projects/${PROJECT}/datasets/d`,
    );
    expect(response.status).toBe(401);
  });
});

describe('max_staleness', () => {
  it('reads the table as of the last apply within max_staleness, fresh after it', async () => {
    const stale = await FakeBigQuery.start({ applyIntervalMs: 600_000 });
    try {
      const client = new BigQuery({ projectId: PROJECT, ...stale.clientOptions().bigquery });
      await client.createDataset('s');
      await client.dataset('s').createTable('kv', {
        schema: {
          fields: [
            { name: 'k', type: 'INT64', mode: 'REQUIRED' },
            { name: 'v', type: 'STRING' },
          ],
        },
        tableConstraints: { primaryKey: { columns: ['k'] } },
        maxStaleness: '0-0 0 0:0:1',
      });
      const table = stale.table(PROJECT, 's', 'kv')!;
      table.applyChanges([{ key: '[1]', sequence: [1n], deleted: false, row: { k: '1', v: 'x' } }], false);
      const query = async () => (await client.query('SELECT k, v FROM `fake-project.s.kv`'))[0];
      expect(await query()).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      expect(await query()).toEqual([{ k: 1, v: 'x' }]); // beyond max_staleness: merged at run time
      stale.store.applyAll();
      const [watermark] = await client.query({
        query:
          'SELECT upsert_stream_apply_watermark FROM `fake-project.s.INFORMATION_SCHEMA.TABLES` WHERE table_name = @t',
        params: { t: 'kv' },
      });
      const applied = Date.parse(String(watermark[0].upsert_stream_apply_watermark.value));
      expect(Date.now() - applied).toBeLessThan(5_000);
    } finally {
      await stale.stop();
    }
  });
});

describe('REST', () => {
  it('creates, reads, patches and drops tables and views; queries follow views', async () => {
    const dataset = bigquery.dataset('d');
    await dataset.createTable('base', {
      schema: { fields: [{ name: 'id', type: 'INT64', mode: 'REQUIRED' }] },
      tableConstraints: { primaryKey: { columns: ['id'] } },
      clustering: { fields: ['id'] },
    });
    await dataset.createTable('v', {
      view: { query: 'SELECT * FROM `fake-project.d.base`', useLegacySql: false },
    });
    await dataset.table('base').setMetadata({
      schema: {
        fields: [
          { name: 'id', type: 'INT64', mode: 'REQUIRED' },
          { name: 'note', type: 'STRING', mode: 'NULLABLE' },
        ],
      },
    });
    const [metadata] = await dataset.table('base').getMetadata();
    expect(metadata.schema.fields.map((field: { type: string }) => field.type)).toEqual([
      'INTEGER',
      'STRING',
    ]);
    await expect(
      dataset
        .table('base')
        .setMetadata({ schema: { fields: [{ name: 'id', type: 'STRING', mode: 'REQUIRED' }] } }),
    ).rejects.toMatchObject({ code: 400 });
    await expect(dataset.createTable('base', { schema: { fields: [] } })).rejects.toMatchObject({
      code: 409,
    });
    fake
      .table(PROJECT, 'd', 'base')!
      .applyChanges([{ key: '["7"]', sequence: null, deleted: false, row: { id: '7', note: 'n' } }], true);
    const [rows] = await bigquery.query({
      query: 'SELECT id, note FROM `fake-project.d.v` WHERE id = @id',
      params: { id: 7 },
    });
    expect(rows).toEqual([{ id: 7, note: 'n' }]);
    await dataset.table('base').delete();
    await expect(dataset.table('base').getMetadata()).rejects.toMatchObject({ code: 404 });
  });

  it('refuses queries it does not know instead of guessing', async () => {
    await expect(bigquery.query('SELECT COUNT(*) FROM `fake-project.d.kv`')).rejects.toThrow(
      /does not know this query/,
    );
  });
});
