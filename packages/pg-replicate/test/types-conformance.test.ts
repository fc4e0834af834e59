/**
 * Conformance of the type system against a live server: a table with every kind of column
 * (scalars, enum, domains, composites, arrays, ranges, multiranges, extension types), rows of
 * edge values, streamed through a real pgoutput slot. Each decoded column, printed back with
 * `formatPgText`, must equal the server's own text for that column from a regular query on a
 * session with the same settings — so a parser that drops a microsecond, a digit or a quote
 * fails here. Temporal values and bytea are also checked against numbers the server computes
 * (`extract(epoch …)`, `encode(…, 'hex')`), which does not go through our formatting at all.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/connection/connect.js';
import type { PgoutputMessage, RelationMessage } from '../src/pgoutput/messages.js';
import type { TupleData } from '../src/pgoutput/tuple-data.js';
import { ReplicationConnection } from '../src/protocol/replication-connection.js';
import { formatJsonValue } from '../src/types/json-format.js';
import { formatPgText } from '../src/types/text-format.js';
import { TypeRegistry } from '../src/types/type-registry.js';
import {
  isPgRecord,
  PgDate,
  PgInterval,
  PgJson,
  PgMultirange,
  PgRange,
  PgTime,
  PgTimestamp,
  PgUnknown,
  type PgValue,
} from '../src/types/values.js';
import { freshDatabase, type TestDatabase } from './helpers.js';

const SCHEMA = `
CREATE EXTENSION citext;
CREATE EXTENSION hstore;
CREATE TYPE mood AS ENUM ('sad', 'happy', 'with space', 'quote"d');
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE DOMAIN email AS citext;
CREATE TYPE address AS (street text, zip varchar(10), tags text[], n int4, ts timestamptz);
CREATE TYPE person AS (name text, addr address, mood mood);
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TYPE with_dropped AS (a int4, gone text, b text);
ALTER TYPE with_dropped DROP ATTRIBUTE gone;
CREATE DOMAIN int_list AS int4[] CHECK (cardinality(VALUE) < 10);
CREATE TABLE all_types (
  id int PRIMARY KEY,
  c_int2 int2, c_int4 int4, c_int8 int8, c_oid oid, c_xid xid, c_numeric numeric, c_numeric_scaled numeric(20,5),
  c_float4 float4, c_float8 float8, c_bool bool, c_text text, c_varchar varchar(20), c_bpchar char(5), c_name name,
  c_char "char", c_citext citext, c_bytea bytea, c_uuid uuid, c_json json, c_jsonb jsonb, c_date date, c_time time,
  c_timetz timetz, c_timestamp timestamp, c_timestamptz timestamptz, c_timestamp3 timestamp(3), c_interval interval,
  c_inet inet, c_cidr cidr, c_macaddr macaddr, c_macaddr8 macaddr8, c_bit bit(8), c_varbit varbit, c_money money,
  c_xml xml, c_tsvector tsvector, c_tsquery tsquery, c_point point, c_line line, c_lseg lseg, c_box box, c_path path,
  c_polygon polygon, c_circle circle, c_pg_lsn pg_lsn, c_txid_snapshot txid_snapshot, c_xid8 xid8, c_regclass regclass,
  c_mood mood, c_posint posint, c_email email, c_address address, c_addresses address[], c_person person,
  c_hstore hstore, c_int4_arr int4[], c_int4_2d int4[][], c_int4_bounds int4[], c_text_arr text[], c_box_arr box[],
  c_tstz_arr timestamptz[], c_numeric_arr numeric[], c_bytea_arr bytea[], c_jsonb_arr jsonb[], c_mood_arr mood[],
  c_float4_arr float4[], c_float8_arr float8[], c_interval_arr interval[], c_int4range int4range, c_int8range int8range,
  c_numrange numrange, c_tsrange tsrange, c_tstzrange tstzrange, c_daterange daterange, c_datemultirange datemultirange,
  c_int4multirange int4multirange, c_floatrange floatrange, c_range_arr int4range[], c_multirange_arr datemultirange[],
  c_dropped with_dropped, c_posint_arr posint[], c_int_list int_list, c_big_compressed text, c_big_external text
);
ALTER TABLE all_types ALTER c_big_external SET STORAGE EXTERNAL;
CREATE PUBLICATION pub FOR TABLE all_types;
`;

/** Rows as column → SQL expression; columns left out are NULL. */
const ROWS: Record<string, string>[] = [
  {
    // everyday values
    c_int2: '12',
    c_int4: '123456',
    c_int8: '1234567890123',
    c_oid: '1259',
    c_xid: "'12345'",
    c_numeric: '3.14159265358979323846264338327950288',
    c_numeric_scaled: '123.45',
    c_float4: '3.14159',
    c_float8: '2.718281828459045',
    c_bool: 'true',
    c_text: "'hello, world'",
    c_varchar: "'varchar'",
    c_bpchar: "'ab'",
    c_name: "'a_name'",
    c_char: "'x'",
    c_citext: "'MiXeD'",
    c_bytea: "'\\x00ff10'",
    c_uuid: "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
    c_json: `'{"b": 2, "a": [1, 2.50, 1e400], "a": 12345678901234567890}'`,
    c_jsonb: `'{"n": 12345678901234567890.123, "s": "x"}'`,
    c_date: "'2024-02-29'",
    c_time: "'13:45:00.123456'",
    c_timetz: "'12:00:00.1+05:30:15'",
    c_timestamp: "'2024-02-29 12:34:56.789012'",
    c_timestamptz: "'2024-02-29 12:34:56.000001+00'",
    c_timestamp3: "'2024-01-01 00:00:00.1239'",
    c_interval: "'1 year 2 months 3 days 04:05:06.789'",
    c_inet: "'192.168.0.1/24'",
    c_cidr: "'10.0.0.0/8'",
    c_macaddr: "'08:00:2b:01:02:03'",
    c_macaddr8: "'08:00:2b:01:02:03:04:05'",
    c_bit: "B'10101010'",
    c_varbit: "B'101'",
    c_money: '1234.56',
    c_xml: `'<a b="1">x &amp; y</a>'`,
    c_tsvector: "'a fat cat sat'",
    c_tsquery: "'fat & (rat | cat)'",
    c_point: "'(1.5,-2)'",
    c_line: "'{1,2,3}'",
    c_lseg: "'[(0,0),(1,1)]'",
    c_box: "'((0,0),(1,1))'",
    c_path: "'[(0,0),(1,1),(2,0)]'",
    c_polygon: "'((0,0),(1,1),(1,0))'",
    c_circle: "'<(0,0),1.5>'",
    c_pg_lsn: "'16/B374D848'",
    c_txid_snapshot: "'10:20:10,14,15'",
    c_xid8: "'18446744073709551615'",
    c_regclass: "'pg_class'",
    c_mood: "'happy'",
    c_posint: '42',
    c_email: "'Someone@Example.com'",
    c_address: "ROW('1 Main St', '12345', ARRAY['a', 'b c'], 7, '2024-01-01 00:00:00.654321+00')",
    c_addresses:
      "ARRAY[ROW('x', NULL, NULL, NULL, NULL)::address, NULL, ROW('', '', '{}', 0, 'infinity')::address]",
    c_person: `ROW('Ann', ROW('2 "Quoted" \\ St', '9', ARRAY[NULL, 'NULL'], -1, NULL)::address, 'with space')`,
    c_hstore: `'"a"=>"1", "b c"=>NULL'`,
    c_int4_arr: "'{1,NULL,3}'",
    c_int4_2d: "'{{1,2},{3,4}}'",
    c_int4_bounds: "'[0:2]={7,8,9}'",
    c_text_arr: `ARRAY['a b', '', NULL, 'NULL', 'x"y', 'back\\slash', '{}', ',', E'tab\\there']`,
    c_box_arr: "ARRAY['((0,0),(1,1))'::box, '((2,2),(3,3))']",
    c_tstz_arr: "ARRAY['2024-01-01 00:00:00.123456+00'::timestamptz, NULL, 'infinity']",
    c_numeric_arr: "'{1.10,NaN,-0.5}'",
    c_bytea_arr: "ARRAY['\\x0102'::bytea, '\\x'::bytea, NULL]",
    c_jsonb_arr: `ARRAY['{"a": [1, "b"]}'::jsonb, 'null'::jsonb, '"str"']`,
    c_mood_arr: `'{sad,"with space","quote\\"d"}'`,
    c_float4_arr: "'{0.1,NaN,-Infinity,3.4028235e38}'",
    c_float8_arr: "'{0.1,1e-300,-0}'",
    c_interval_arr: "ARRAY['1 day'::interval, '-1 days +02:03:00']",
    c_int4range: "'[1,10)'",
    c_int8range: "'[-9223372036854775808,9223372036854775807)'",
    c_numrange: "'(1.5,2.25]'",
    c_tsrange: `'["2024-01-01 00:00:00","2024-12-31 23:59:59.999999"]'`,
    c_tstzrange: "'[2024-01-01 00:00:00+00,)'",
    c_daterange: "'[2024-01-01,2024-02-01)'",
    c_datemultirange: "'{[2024-01-01,2024-02-01),[2024-03-01,)}'",
    c_int4multirange: "'{[1,3),[5,7)}'",
    c_floatrange: "'[1.5,2.5e30)'",
    c_range_arr: "ARRAY['[1,2)'::int4range, 'empty']",
    c_multirange_arr: "ARRAY['{[2024-01-01,2024-01-05)}'::datemultirange, '{}']",
    c_dropped: "ROW(1, 'b, after a dropped field')",
    c_posint_arr: "'{1,NULL,3}'",
    c_int_list: "'{4,5}'",
  },
  {
    // minimums, negatives, empties, BC and -infinity
    c_int2: '-32768',
    c_int4: '-2147483648',
    c_int8: '-9223372036854775808',
    c_oid: '0',
    c_xid: "'0'",
    c_numeric: '-0.000000000000000000001',
    c_numeric_scaled: '-99999999999999.99999',
    c_float4: "'-3.4028235e38'",
    c_float8: "'-1.7976931348623157e308'",
    c_bool: 'false',
    c_text: "' leading and trailing '",
    c_varchar: "''",
    c_bpchar: "''",
    c_name: "''",
    c_char: "''",
    c_citext: "''",
    c_bytea: "'\\x'",
    c_uuid: "'00000000-0000-0000-0000-000000000000'",
    c_json: "'[]'",
    c_jsonb: "'{}'",
    c_date: "'4713-11-24 BC'",
    c_time: "'00:00:00'",
    c_timetz: "'00:00:00-15:59'",
    c_timestamp: "'4713-11-24 00:00:00 BC'",
    c_timestamptz: "'0044-03-15 12:00:00.5+00 BC'",
    c_timestamp3: "'-infinity'",
    c_interval: "'-178956970 years -7 mons -2147483647 days -2562047788:00:54.775807'",
    c_inet: "'::1'",
    c_cidr: "'2001:db8::/32'",
    c_macaddr: "'00:00:00:00:00:00'",
    c_macaddr8: "'00:00:00:00:00:00:00:00'",
    c_bit: "B'00000000'",
    c_varbit: "B''",
    c_money: "'-92233720368547758.08'",
    c_xml: "''",
    c_tsvector: "''",
    c_point: "'(0,0)'",
    c_pg_lsn: "'0/0'",
    c_xid8: "'0'",
    c_mood: "'sad'",
    c_posint: '1',
    c_email: "''",
    c_address: 'ROW(NULL, NULL, NULL, NULL, NULL)',
    c_addresses: "'{}'",
    c_person: 'ROW(NULL, NULL, NULL)',
    c_hstore: "''",
    c_int4_arr: "'{}'",
    c_text_arr: "'{}'",
    c_box_arr: "'{}'",
    c_tstz_arr: "ARRAY['-infinity'::timestamptz, '0044-03-15 12:00:00+00 BC']",
    c_numeric_arr: "'{}'",
    c_int4range: "'empty'",
    c_numrange: "'(,)'",
    c_tstzrange: `'(,"2024-01-01 00:00:00+00")'`,
    c_datemultirange: "'{}'",
    c_interval_arr: "'{}'",
    c_floatrange: "'empty'",
  },
  {
    // maximums, NaN and infinities
    c_int2: '32767',
    c_int4: '2147483647',
    c_int8: '9223372036854775807',
    c_oid: '4294967295',
    c_xid: "'4294967295'",
    c_numeric: "'Infinity'",
    c_numeric_scaled: "'NaN'",
    c_float4: "'Infinity'",
    c_float8: "'NaN'",
    c_date: "'5874897-12-31'",
    c_time: "'24:00:00'",
    c_timetz: "'24:00:00+15:59'",
    c_timestamp: "'294276-12-31 23:59:59.999999'",
    c_timestamptz: "'infinity'",
    c_timestamp3: "'infinity'",
    c_interval: "'178956970 years 6 mons 2147483647 days 2562047788:00:54.775807'",
    c_money: "'92233720368547758.07'",
    c_pg_lsn: "'FFFFFFFF/FFFFFFFF'",
    c_posint: '2147483647',
    c_int4range: "'[-2147483648,2147483647)'",
    c_daterange: "'[-infinity,infinity)'",
    c_numrange: "'[-Infinity,Infinity]'",
    c_float8_arr: "'{NaN,Infinity,-Infinity}'",
    c_floatrange: "'(-Infinity,Infinity)'",
    c_tstz_arr: "ARRAY['infinity'::timestamptz]",
    c_interval_arr: "ARRAY['infinity'::interval, '-infinity']",
    c_int4_2d: "'[-5:-4][1:1][0:0]={{{1}},{{2}}}'",
  },
  {}, // every column NULL
  {
    // unicode, control characters and quoting hazards
    c_text: `E'emoji 🐘🎉 ünïcödé 中文 \\x01\\x1f\\t\\n\\r "quotes" \\\\back'`,
    c_varchar: "'ÄÖÜ'",
    c_bpchar: "'é'",
    c_name: "'🐘'",
    c_char: "'é'",
    c_citext: "'🐘 Ünï'",
    c_json: `'{"k": "\\u0000", "e": "🐘"}'`,
    c_jsonb: `'{"e": "🐘", "tiny": 1e-40, "esc": "a\\"b"}'`,
    c_xml: "'<a>🐘</a>'",
    c_tsvector: "'🐘 ünï'",
    c_hstore: `'"é"=>"🐘", "q\\"uote"=>"a,b"'`,
    c_mood: "'quote\"d'",
    c_text_arr: `ARRAY[E'new\\nline', '🐘', E'back\\\\', ' ', '"']`,
    c_addresses: `ARRAY[ROW('🐘 "street"', E'\\t', ARRAY['(', ')', ','], 1, '2000-01-01 00:00:00+00')::address]`,
    c_int4_2d: "'{{{1}},{{2}}}'",
  },
  {
    // TOASTed values: one compressed, one stored out of line uncompressed
    c_int4: '1',
    c_big_compressed: "repeat('compressible ', 80000)",
    c_big_external: "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 32768) i)",
    c_bytea: "decode(repeat('0123456789abcdef', 65536), 'hex')",
  },
];

let db: TestDatabase;
let query: pg.Client;
let serverVersion = 0;

/**
 * Before Postgres 17, intervals cannot be infinite and the input parser rejects hour fields past
 * int32 seconds: use the largest values those versions accept instead.
 */
function adaptToServer(): void {
  if (serverVersion >= 170000) return;
  for (const row of ROWS) {
    if (row['c_interval']?.startsWith("'-178956970")) {
      row['c_interval'] = "'-178956970 years -7 mons -2147483647 days -596523:14:07.999999'";
    } else if (row['c_interval']?.startsWith("'178956970")) {
      row['c_interval'] = "'178956970 years 6 mons 2147483647 days 596523:14:07.999999'";
    }
    if (row['c_interval_arr']?.includes("'infinity'::interval")) {
      row['c_interval_arr'] = "ARRAY['178956970 years'::interval, '-1 microsecond']";
    }
  }
}

beforeAll(async () => {
  db = await freshDatabase('types');
  const [version] = await db.sql<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  serverVersion = Number(version!.v);
  adaptToServer();
  await db.sql(SCHEMA);
  // Same session settings as every connection that decodes (TimeZone=UTC, DateStyle=ISO, …).
  query = await connect(db.options);
});
afterAll(async () => {
  await query?.end();
  await db?.close();
});

interface Decoded {
  relation: RelationMessage;
  inserts: TupleData[];
  update: TupleData;
}

async function streamChanges(): Promise<Decoded> {
  const conn = await ReplicationConnection.open(db.options);
  try {
    await conn.createSlot('s_types');
    for (const [index, row] of ROWS.entries()) {
      const columns = ['id', ...Object.keys(row)];
      await db.sql(
        `INSERT INTO all_types (${columns.join(', ')}) VALUES (${[index + 1, ...Object.values(row)].join(', ')})`,
      );
    }
    const stream = conn.startReplication('s_types', 0n, { publications: ['pub'] });
    const messages: PgoutputMessage[] = [];
    let updated = false;
    while (!messages.some((m) => m.tag === 'update') || messages.at(-1)?.tag !== 'commit') {
      if (!updated) {
        // Snapshot the server's text before the update changes the TOAST row.
        await snapshotRows();
        await db.sql(`UPDATE all_types SET c_int4 = 2 WHERE id = ${ROWS.length}`);
        updated = true;
      }
      const events = await stream.next();
      if (events === null) break;
      for (const event of events) if (event.type === 'xlog') messages.push(event.message);
    }
    await stream.stop();
    const relation = messages.find((m) => m.tag === 'relation')!;
    const inserts = messages.flatMap((m) => (m.tag === 'insert' ? [m.new] : []));
    const update = messages.find((m) => m.tag === 'update')!;
    return { relation, inserts, update: update.new };
  } finally {
    await conn.close();
  }
}

/** The server's text of every column, by row id (raw strings: `connect()` parses nothing). */
let serverText: Map<string, Record<string, string | null>>;

async function snapshotRows(): Promise<void> {
  const { rows } = await query.query<Record<string, string | null>>('SELECT * FROM all_types ORDER BY id');
  serverText = new Map(rows.map((row) => [row.id!, row]));
}

/** Decodes each column and compares its printed form with the server's text; returns the differences. */
function mismatches(registry: TypeRegistry, relation: RelationMessage, tuples: TupleData[]): string[] {
  const found: string[] = [];
  for (const tuple of tuples) {
    const id = tuple.text(0)!;
    const expected = serverText.get(id)!;
    relation.columns.forEach((column, i) => {
      const want = expected[column.name] ?? null;
      if (tuple.isNull(i)) {
        if (want !== null)
          found.push(`row ${id} ${column.name}: decoded NULL, server has ${want.slice(0, 80)}`);
        return;
      }
      const value = registry.parser(column.typeOid)(tuple.text(i)!);
      const got = formatPgText(value, registry.get(column.typeOid));
      if (got !== want)
        found.push(`row ${id} ${column.name}: ${got?.slice(0, 120)} ≠ ${want?.slice(0, 120)}`);
    });
  }
  return found;
}

describe('type conformance with a live server', () => {
  let decoded: Decoded;
  let registry: TypeRegistry;
  const decodedValue = (id: number, column: string): PgValue => {
    const i = decoded.relation.columns.findIndex((c) => c.name === column);
    const tuple = decoded.inserts.find((t) => t.text(0) === String(id))!;
    const text = tuple.text(i);
    return text === null ? null : registry.parser(decoded.relation.columns[i]!.typeOid)(text);
  };

  beforeAll(async () => {
    decoded = await streamChanges();
    registry = new TypeRegistry();
    await registry.load(
      query,
      decoded.relation.columns.map((c) => c.typeOid),
    );
  });

  it('covers at least 40 column types', () => {
    const types = new Set(decoded.relation.columns.map((c) => c.typeOid));
    expect(types.size).toBeGreaterThanOrEqual(40);
    expect(decoded.inserts).toHaveLength(ROWS.length);
  });

  it('decodes every column of every row to exactly the text Postgres prints', () => {
    expect(mismatches(registry, decoded.relation, decoded.inserts)).toEqual([]);
  });

  it('would notice a parser that drops microseconds', () => {
    const lossy = new TypeRegistry();
    lossy.register(1184, (text) => {
      const exact = registry.parser(1184)(text) as PgTimestamp;
      return exact.special ? exact : new PgTimestamp((exact.epochMicros / 1000n) * 1000n, true);
    });
    return lossy
      .load(
        query,
        decoded.relation.columns.map((c) => c.typeOid),
      )
      .then(() => {
        const found = mismatches(lossy, decoded.relation, decoded.inserts);
        expect(found.some((m) => m.includes('c_timestamptz'))).toBe(true);
        expect(found.some((m) => m.includes('c_tstz_arr'))).toBe(true);
        expect(found.some((m) => m.includes('c_address'))).toBe(true);
      });
  });

  it('agrees with the server on instants, day counts, interval fields and bytes', async () => {
    const temporal = decoded.relation.columns.filter((c) =>
      ['timestamp', 'timestamptz', 'date', 'time', 'interval', 'bytea'].includes(
        registry.get(c.typeOid)!.name,
      ),
    );
    const select = temporal.map(({ name }) => {
      const type = registry.get(temporal.find((c) => c.name === name)!.typeOid)!.name;
      switch (type) {
        case 'date':
          return `CASE WHEN isfinite(${name}) THEN (${name} - date '1970-01-01')::text END AS ${name}`;
        case 'interval':
          return `CASE WHEN isfinite(${name}) THEN concat_ws(' ', extract(year from ${name}) * 12 + extract(month from ${name}), extract(day from ${name}), extract(hour from ${name}) * 3600000000 + extract(minute from ${name}) * 60000000 + extract(microseconds from ${name})) END AS ${name}`;
        case 'bytea':
          return `encode(${name}, 'hex') AS ${name}`;
        case 'time':
          return `(extract(epoch from ${name}) * 1000000)::numeric(30,0)::text AS ${name}`;
        default:
          // Days and time of day apart: extract(epoch) itself rounds near the end of the range.
          return `CASE WHEN isfinite(${name}) THEN ((${name}::date - date '1970-01-01')::numeric * 86400000000 + extract(epoch from ${name}::time) * 1000000)::numeric(30,0)::text END AS ${name}`;
      }
    });
    const { rows } = await query.query<Record<string, string | null>>(
      `SELECT id, ${select.join(', ')} FROM all_types ORDER BY id`,
    );
    let checked = 0;
    for (const row of rows) {
      for (const { name } of temporal) {
        const value = decodedValue(Number(row.id), name);
        const expected = row[name] ?? null;
        if (value === null || expected === null) continue;
        let actual: string;
        if (value instanceof PgTimestamp) actual = String(value.epochMicros);
        else if (value instanceof PgDate) actual = String(value.epochDays);
        else if (value instanceof PgTime) actual = String(value.micros);
        else if (value instanceof PgInterval) actual = `${value.months} ${value.days} ${value.micros}`;
        else actual = (value as Buffer).toString('hex');
        expect(`${name}=${actual}`).toBe(`${name}=${expected}`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(15);
  });

  it('maps each kind of type to the documented JS value', () => {
    expect(decodedValue(1, 'c_int4')).toBe(123456);
    expect(decodedValue(3, 'c_int8')).toBe(9223372036854775807n);
    expect(decodedValue(3, 'c_xid8')).toBeNull();
    expect(decodedValue(1, 'c_xid8')).toBe(18446744073709551615n);
    expect(decodedValue(1, 'c_numeric')).toBe('3.14159265358979323846264338327950288');
    expect(decodedValue(3, 'c_numeric')).toBe('Infinity');
    expect(Number.isNaN(decodedValue(3, 'c_float8'))).toBe(true);
    expect(decodedValue(1, 'c_bool')).toBe(true);
    expect(decodedValue(1, 'c_bytea')).toEqual(Buffer.from([0, 0xff, 0x10]));
    expect(decodedValue(1, 'c_json')).toBeInstanceOf(PgJson);
    expect(decodedValue(1, 'c_citext')).toBe('MiXeD');
    expect(decodedValue(1, 'c_email')).toBe('Someone@Example.com');
    expect(decodedValue(1, 'c_posint')).toBe(42);
    expect(decodedValue(1, 'c_mood')).toBe('happy');
    expect(decodedValue(1, 'c_inet')).toBe('192.168.0.1/24');
    expect(decodedValue(1, 'c_money')).toBe('$1,234.56');
    const hstore = decodedValue(1, 'c_hstore');
    expect(hstore).toBeInstanceOf(PgUnknown);
    expect(hstore).toMatchObject({ typeName: 'hstore', text: '"a"=>"1", "b c"=>NULL' });
    expect(decodedValue(1, 'c_address')).toEqual({
      street: '1 Main St',
      zip: '12345',
      tags: ['a', 'b c'],
      n: 7,
      ts: new PgTimestamp(1_704_067_200_654_321n, true),
    });
    const person = decodedValue(1, 'c_person');
    expect(isPgRecord(person) && isPgRecord(person.addr) && person.addr.street).toBe('2 "Quoted" \\ St');
    const addresses = decodedValue(1, 'c_addresses') as PgValue[];
    expect(addresses[1]).toBeNull();
    expect(addresses[2]).toMatchObject({ street: '', zip: '', tags: [], n: 0 });
    expect(decodedValue(2, 'c_address')).toEqual({ street: null, zip: null, tags: null, n: null, ts: null });
    expect(decodedValue(1, 'c_int4_2d')).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(decodedValue(1, 'c_mood_arr')).toEqual(['sad', 'with space', 'quote"d']);
    const range = decodedValue(1, 'c_tstzrange') as PgRange<PgTimestamp>;
    expect(range.lower).toEqual(new PgTimestamp(1_704_067_200_000_000n, true));
    expect(decodedValue(1, 'c_floatrange')).toEqual(new PgRange(1.5, 2.5e30, true, false));
    expect(decodedValue(1, 'c_datemultirange')).toBeInstanceOf(PgMultirange);
    expect(decodedValue(1, 'c_dropped')).toEqual({ a: 1, b: 'b, after a dropped field' });
    expect(decodedValue(1, 'c_posint_arr')).toEqual([1, null, 3]);
    expect(decodedValue(1, 'c_int_list')).toEqual([4, 5]);
    const caesar = decodedValue(2, 'c_timestamptz') as PgTimestamp;
    expect(caesar.toISOString()).toBe('-000043-03-15T12:00:00.500000Z');
    expect((decodedValue(3, 'c_timestamp') as PgTimestamp).toISOString()).toBe(
      '+294276-12-31T23:59:59.999999',
    );
    expect((decodedValue(3, 'c_interval') as PgInterval).special).toBeNull();
    if (serverVersion >= 170000) {
      expect((decodedValue(3, 'c_interval_arr') as PgInterval[])[0]!.special).toBe('infinity');
    }
    expect(decodedValue(5, 'c_text')).toBe('emoji 🐘🎉 ünïcödé 中文 \x01\x1f\t\n\r "quotes" \\back');
    // Postgres 14 prints a non-ASCII "char" as the raw byte (not UTF-8); 15+ prints it as octal.
    expect(decodedValue(5, 'c_char')).toBe(serverVersion >= 150000 ? '\\303' : '\ufffd');
    expect(decodedValue(6, 'c_big_compressed')).toHaveLength(13 * 80000);
  });

  it('formats the stdout JSON exactly', () => {
    const golden: [number, string, string][] = [
      [3, 'c_int8', '"9223372036854775807"'],
      [1, 'c_int2', '12'],
      [1, 'c_numeric', '"3.14159265358979323846264338327950288"'],
      [3, 'c_float8', '"NaN"'],
      [3, 'c_float4', '"Infinity"'],
      [1, 'c_bool', 'true'],
      [1, 'c_timestamptz', '"2024-02-29T12:34:56.000001Z"'],
      [1, 'c_timestamp', '"2024-02-29T12:34:56.789012"'],
      [2, 'c_timestamptz', '"-000043-03-15T12:00:00.500000Z"'],
      [3, 'c_timestamptz', '"infinity"'],
      [1, 'c_bytea', '"\\\\x00ff10"'],
      [1, 'c_json', '{"b": 2, "a": [1, 2.50, 1e400], "a": 12345678901234567890}'],
      [1, 'c_jsonb', '{"n": 12345678901234567890.123, "s": "x"}'],
      [1, 'c_int4_arr', '[1,null,3]'],
      [1, 'c_text_arr', '["a b","",null,"NULL","x\\"y","back\\\\slash","{}",",","tab\\there"]'],
      [
        1,
        'c_address',
        '{"street":"1 Main St","zip":"12345","tags":["a","b c"],"n":7,"ts":"2024-01-01T00:00:00.654321Z"}',
      ],
      [1, 'c_hstore', '"\\"a\\"=>\\"1\\", \\"b c\\"=>NULL"'],
      [1, 'c_int4range', '"[1,10)"'],
      [1, 'c_interval', '"1 year 2 mons 3 days 04:05:06.789"'],
      [1, 'c_date', '"2024-02-29"'],
      [1, 'c_uuid', '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"'],
      [1, 'c_posint', '42'],
      [4, 'c_text', 'null'],
      [5, 'c_name', '"🐘"'],
    ];
    for (const [id, column, json] of golden)
      expect(`${column}=${formatJsonValue(decodedValue(id, column))}`).toBe(`${column}=${json}`);
  });

  it('keeps TOASTed columns an UPDATE left alone as unchanged, never NULL', async () => {
    const { rows } = await query.query<{ c: string | null; e: string | null }>(
      'SELECT pg_column_compression(c_big_compressed) AS c, pg_column_compression(c_big_external) AS e FROM all_types WHERE id = $1',
      [ROWS.length],
    );
    expect(rows[0]).toEqual({ c: expect.any(String), e: null });
    const columns = decoded.relation.columns.map((c) => c.name);
    for (const name of ['c_big_compressed', 'c_big_external', 'c_bytea']) {
      const i = columns.indexOf(name);
      expect(decoded.update.isUnchangedToast(i), name).toBe(true);
      expect(decoded.update.isNull(i), name).toBe(false);
    }
    expect(decoded.update.text(columns.indexOf('c_int4'))).toBe('2');
    expect(decoded.update.isNull(columns.indexOf('c_text'))).toBe(true);
  });
});
