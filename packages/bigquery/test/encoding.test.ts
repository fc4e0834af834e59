/**
 * The sink's encoders on their own: sequence numbers ordered as BigQuery compares them (checked
 * with the fake's independent comparison), row messages decoded back by protobufjs, BigQuery's
 * interval literal, the numeric decision, and column naming.
 */
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import type { ColumnSchema, TableSchema } from '../../pg-replicate/src/schema.js';
import { TypeRegistry } from '../../pg-replicate/src/types/type-registry.js';
import { PgInterval } from '../../pg-replicate/src/types/values.js';
import { encodeChangeSequence } from '../src/change-sequence.js';
import { columnNames, isVersionOf, newVersionName, viewName } from '../src/naming.js';
import { ProtoWriter } from '../src/proto-writer.js';
import { RowConverter, writeRow } from '../src/row-encoder.js';
import { planTable } from '../src/table-plan.js';
import { formatInterval, numericScalar } from '../src/type-mapping.js';
import { compareSequences, parseSequence } from './fake/fake-table.js';

describe('change sequence numbers', () => {
  it('order like (commit LSN, position) under the comparison BigQuery documents', () => {
    const random = () =>
      BigInt(Math.floor(Math.random() * 2 ** 32)) * BigInt(Math.floor(Math.random() * 2 ** 32));
    const pairs: [bigint, number][] = [
      [0n, 0],
      [0n, 1],
      [(1n << 64n) - 1n, 0xffffffff],
      [1n << 32n, 5],
    ];
    for (let i = 0; i < 500; i++) pairs.push([random(), Math.floor(Math.random() * 1000)]);
    for (let i = 1; i < pairs.length; i++) {
      const [a, b] = [pairs[i - 1]!, pairs[i]!];
      const expected = a[0] === b[0] ? Math.sign(a[1] - b[1]) : a[0] < b[0] ? -1 : 1;
      const got = compareSequences(
        parseSequence(encodeChangeSequence(a[0], a[1]))!,
        parseSequence(encodeChangeSequence(b[0], b[1]))!,
      );
      expect(got).toBe(expected);
    }
    expect(encodeChangeSequence(0x16b3748n, 3)).toBe('00000000016B3748/3');
  });
});

const INT4 = 23;
const INT8 = 20;
const TEXT = 25;
const FLOAT8 = 701;
const BYTEA = 17;
const TEXT_ARRAY = 1009;

function column(name: string, typeOid: number, isKey = false): ColumnSchema {
  return { name, typeOid, typeMod: -1, typeName: String(typeOid), nullable: !isKey, isKey };
}

const TABLE: TableSchema = {
  relationId: 1,
  schema: 'public',
  name: 'encoded',
  columns: [
    column('id', INT8, true),
    column('small', INT4),
    column('label', TEXT),
    column('score', FLOAT8),
    column('blob', BYTEA),
    column('tags', TEXT_ARRAY),
  ],
  primaryKey: ['id'],
  replicaIdentity: 'default',
};

/** A message type built from the plan's descriptor, for protobufjs to decode with. */
function decoderFor(descriptor: ReturnType<typeof planTable>['descriptor']): protobuf.Type {
  const names: Record<number, string> = {
    1: 'double',
    3: 'int64',
    5: 'int32',
    8: 'bool',
    9: 'string',
    12: 'bytes',
  };
  const type = new protobuf.Type('Row');
  for (const field of descriptor.field ?? []) {
    const rule = field.label === 3 ? 'repeated' : field.label === 2 ? 'required' : 'optional';
    type.add(new protobuf.Field(field.name!, field.number!, names[Number(field.type)]!, rule));
  }
  new protobuf.Root().add(type);
  return type;
}

/** A row from Postgres text values, as pgoutput or COPY would hand it over. */
function row(texts: (string | null)[]) {
  return {
    length: texts.length,
    isNull: (i: number) => texts[i] === null,
    isUnchangedToast: () => false,
    text: (i: number) => texts[i] ?? null,
  };
}

describe('row messages', () => {
  it('decode back to the values, whatever their size', () => {
    const plan = planTable(TABLE, new TypeRegistry());
    const converter = new RowConverter(plan, 'error', () => {});
    const decode = decoderFor(plan.descriptor);
    const cases: (string | null)[][] = [
      ['-9223372036854775808', '-2147483648', '', '-0', '\\x', '{}'],
      [
        '9223372036854775807',
        '2147483647',
        'ü€😀'.repeat(30),
        '1e308',
        '\\x00ff',
        '{"a,b",NULL,""}'.replace(',NULL', ''),
      ],
      ['1', null, 'x'.repeat(100_000), 'NaN', null, null],
    ];
    const writer = new ProtoWriter(16);
    for (const texts of cases) {
      writer.reset();
      writeRow(writer, plan, converter.values(row(texts)), 'UPSERT', encodeChangeSequence(1n, 2));
      const message = decode.toObject(decode.decode(writer.copy(0)), {
        longs: String,
        bytes: Buffer,
      }) as Record<string, unknown>;
      expect(message.id).toBe(texts[0]);
      expect(message.small).toBe(texts[1] === null ? undefined : texts[1]);
      expect(message.label).toBe(texts[2] ?? undefined);
      if (texts[3] === null) expect(message.score).toBeUndefined();
      else expect(Object.is(message.score, Number(texts[3]))).toBe(true);
      expect(message.blob === undefined ? null : (message.blob as Buffer).toString('hex')).toBe(
        texts[4] === null ? null : texts[4].slice(2),
      );
      expect(message._CHANGE_TYPE).toBe('UPSERT');
      expect(message._CHANGE_SEQUENCE_NUMBER).toBe('0000000000000001/2');
    }
  });
});

describe('type mapping details', () => {
  it("writes BigQuery's canonical interval literal", () => {
    expect(formatInterval(new PgInterval(14, 3, 14_706_789_000n))).toBe('1-2 3 4:5:6.789000');
    expect(formatInterval(new PgInterval(-14, -3, -14_706_000_000n))).toBe('-1-2 -3 -4:5:6');
    expect(formatInterval(new PgInterval(0, 0, 0n))).toBe('0-0 0 0:0:0');
    expect(() => formatInterval(new PgInterval(10_001 * 12, 0, 0n))).toThrow(/INTERVAL/);
    expect(() => formatInterval(PgInterval.infinity(1))).toThrow(/INTERVAL/);
  });

  it('chooses NUMERIC, BIGNUMERIC or STRING by what the column can hold', () => {
    const typmod = (precision: number, scale: number) => ((precision << 16) | (scale & 0x7ff)) + 4;
    expect(numericScalar(typmod(38, 9)).bqType).toBe('NUMERIC');
    expect(numericScalar(typmod(29, 0)).bqType).toBe('NUMERIC');
    expect(numericScalar(typmod(30, 0)).bqType).toBe('BIGNUMERIC');
    expect(numericScalar(typmod(10, 10)).bqType).toBe('BIGNUMERIC');
    expect(numericScalar(typmod(76, 38)).bqType).toBe('BIGNUMERIC');
    expect(numericScalar(typmod(77, 38)).bqType).toBe('STRING');
    expect(numericScalar(typmod(5, -2)).bqType).toBe('NUMERIC');
    expect(numericScalar(-1).bqType).toBe('STRING');
  });

  it('names columns, views and versions within the rules of BigQuery', () => {
    expect(columnNames(['id', 'Weird Name!', '1st', '_CHANGE_TYPE', 'ID', 'a-b', 'a_b', 'é'])).toEqual([
      'id',
      'Weird_Name_',
      '_1st',
      'pg_CHANGE_TYPE',
      'ID_2',
      'a_b',
      'a_b_2',
      '_',
    ]);
    expect(viewName({ schema: 'my schema', name: 'Orders' })).toBe('my_schema_Orders');
    const version = newVersionName('public_t');
    expect(isVersionOf(version, 'public_t')).toBe(true);
    expect(isVersionOf(version, 'public')).toBe(false);
    expect(isVersionOf('public_t__vX', 'public_t')).toBe(false);
  });
});
