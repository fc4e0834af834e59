/**
 * Parsers and value classes on hand-written edge cases, each checked both ways: the decoded
 * structure, and printing it back must give the server's exact text (the samples below are what
 * PostgreSQL 17 prints under our session settings).
 */
import { describe, expect, it } from 'vitest';
import { isPgReplicateError } from '../src/errors.js';
import { BUILTIN_TYPES } from '../src/types/builtin-types.js';
import { formatFloat4, formatFloat8 } from '../src/types/float-text.js';
import { formatJsonValue } from '../src/types/json-format.js';
import { parseMultirangeText, parseRangeText } from '../src/types/range-text.js';
import { parseRecordText } from '../src/types/record-text.js';
import { formatPgText } from '../src/types/text-format.js';
import { BUILTIN_TEXT_PARSERS, parseString } from '../src/types/text-parsers.js';
import { type PgType, TypeRegistry } from '../src/types/type-registry.js';
import {
  arrayLowerBounds,
  PgArray,
  PgDate,
  PgInterval,
  PgJson,
  PgMultirange,
  PgRange,
  PgTime,
  PgTimestamp,
  PgTimeTz,
  PgUnknown,
  type PgValue,
} from '../src/types/values.js';

const registry = new TypeRegistry();
const OID = {
  int2: 21,
  int4: 23,
  int8: 20,
  oid: 26,
  float4: 700,
  float8: 701,
  numeric: 1700,
  bool: 16,
  text: 25,
  bytea: 17,
  json: 114,
  jsonb: 3802,
  date: 1082,
  time: 1083,
  timetz: 1266,
  timestamp: 1114,
  timestamptz: 1184,
  interval: 1186,
  int4range: 3904,
  numrange: 3906,
  tstzrange: 3910,
  daterange: 3912,
  int4multirange: 4451,
  datemultirange: 4535,
  _int4: 1007,
  _text: 1009,
  _box: 1020,
  _float8: 1022,
  _timestamptz: 1185,
  _bytea: 1001,
  _jsonb: 3807,
  _int4range: 3905,
  _int4multirange: 6150,
  _numeric: 1231,
} as const;

function parse(typeName: keyof typeof OID, text: string): PgValue {
  return registry.parser(OID[typeName])(text);
}

/** Parses and prints back: the round trip must be exact. */
function roundTrip(typeName: keyof typeof OID, text: string): PgValue {
  const value = parse(typeName, text);
  expect(formatPgText(value, BUILTIN_TYPES.get(OID[typeName]))).toBe(text);
  return value;
}

function expectViolation(action: () => unknown, typeName: string): void {
  try {
    action();
  } catch (error) {
    expect(isPgReplicateError(error, 'PROTOCOL_VIOLATION')).toBe(true);
    expect((error as Error).message).toContain(typeName);
    return;
  }
  throw new Error(`expected a PROTOCOL_VIOLATION for ${typeName}`);
}

/** Expected epoch microseconds, from JS Date (shifted by whole 400-year cycles beyond its range). */
const utcMicros = (year: number, month: number, day: number, h = 0, m = 0, s = 0, micros = 0) => {
  const cycles = year > 200_000 ? 735 : 0;
  const date = new Date(0);
  date.setUTCFullYear(year - cycles * 400, month - 1, day);
  date.setUTCHours(h, m, s, 0);
  const shiftMillis = BigInt(cycles) * 146_097n * 86_400_000n;
  return (BigInt(date.getTime()) + shiftMillis) * 1000n + BigInt(micros);
};

describe('timestamps', () => {
  it('keeps every microsecond and prints the server text and ISO forms', () => {
    const ts = roundTrip('timestamptz', '2024-02-29 12:34:56.789012+00') as PgTimestamp;
    expect(ts).toBeInstanceOf(PgTimestamp);
    expect(ts.epochMicros).toBe(utcMicros(2024, 2, 29, 12, 34, 56, 789012));
    expect(ts.withTimeZone).toBe(true);
    expect(ts.toISOString()).toBe('2024-02-29T12:34:56.789012Z');
    expect(ts.toJSON()).toBe('2024-02-29T12:34:56.789012Z');
    expect(String(ts)).toBe('2024-02-29 12:34:56.789012+00');
    expect(ts.toDate().toISOString()).toBe('2024-02-29T12:34:56.789Z');
    const plain = roundTrip('timestamp', '2024-02-29 12:34:56.5') as PgTimestamp;
    expect(plain.withTimeZone).toBe(false);
    expect(plain.toISOString()).toBe('2024-02-29T12:34:56.500000');
    expect(roundTrip('timestamp', '1970-01-01 00:00:00')).toEqual(new PgTimestamp(0n, false));
  });

  it('floors before the epoch', () => {
    const ts = roundTrip('timestamptz', '1969-12-31 23:59:59.999999+00') as PgTimestamp;
    expect(ts.epochMicros).toBe(-1n);
    expect(ts.toDate().getTime()).toBe(-1);
    expect(ts.toISOString()).toBe('1969-12-31T23:59:59.999999Z');
  });

  it('handles BC years and years beyond 9999 in both directions', () => {
    const caesar = roundTrip('timestamptz', '0044-03-15 12:00:00+00 BC') as PgTimestamp;
    expect(caesar.epochMicros).toBe(utcMicros(-43, 3, 15, 12));
    expect(caesar.toISOString()).toBe('-000043-03-15T12:00:00.000000Z');
    expect((roundTrip('timestamp', '0001-01-01 00:00:00 BC') as PgTimestamp).toISOString()).toBe(
      '0000-01-01T00:00:00.000000',
    );
    expect((roundTrip('timestamp', '4713-11-24 00:00:00 BC') as PgTimestamp).toISOString()).toBe(
      '-004712-11-24T00:00:00.000000',
    );
    const last = roundTrip('timestamp', '294276-12-31 23:59:59.999999') as PgTimestamp;
    expect(last.toISOString()).toBe('+294276-12-31T23:59:59.999999');
    expect(last.epochMicros).toBe(utcMicros(294276, 12, 31, 23, 59, 59, 999999));
    expect(Number.isNaN(last.toDate().getTime())).toBe(true);
    expect((roundTrip('timestamp', '10000-01-01 00:00:00') as PgTimestamp).toISOString()).toBe(
      '+010000-01-01T00:00:00.000000',
    );
  });

  it('keeps infinity apart and sorts it beyond every finite value', () => {
    const inf = roundTrip('timestamptz', 'infinity') as PgTimestamp;
    const minus = roundTrip('timestamp', '-infinity') as PgTimestamp;
    expect(inf.special).toBe('infinity');
    expect(minus.special).toBe('-infinity');
    expect(inf.toISOString()).toBe('infinity');
    expect(inf.epochMicros > utcMicros(294276, 12, 31, 23, 59, 59, 999999)).toBe(true);
    expect(minus.epochMicros < utcMicros(-4712, 11, 24)).toBe(true);
    expect(Number.isNaN(inf.toDate().getTime())).toBe(true);
    expect(formatJsonValue(minus)).toBe('"-infinity"');
  });

  it('applies offsets other than UTC (text from a session with another TimeZone)', () => {
    const ts = parse('timestamptz', '2024-01-01 05:30:00+05:30') as PgTimestamp;
    expect(ts.epochMicros).toBe(utcMicros(2024, 1, 1));
    expect(ts.toPostgres()).toBe('2024-01-01 00:00:00+00');
  });

  it('rejects malformed text', () => {
    for (const text of [
      '',
      '2024-01-01',
      '2024-13-01 00:00:00+00',
      '2024-01-01 00:00:00',
      '2024-01-01T00:00:00+00',
    ]) {
      expectViolation(() => parse('timestamptz', text), 'timestamptz');
    }
    expectViolation(() => parse('timestamp', '2024-01-01 00:00:00+00'), 'timestamp');
    expectViolation(() => parse('timestamp', '2024-01-01 00:00:00.1234567'), 'timestamp');
  });
});

describe('dates and times', () => {
  it('reads dates, BC dates, the last date and infinity', () => {
    expect(roundTrip('date', '1970-01-01')).toEqual(new PgDate(0));
    expect((roundTrip('date', '2000-01-01') as PgDate).epochDays).toBe(10957);
    expect((roundTrip('date', '0044-03-15 BC') as PgDate).toISOString()).toBe('-000043-03-15');
    expect((roundTrip('date', '4713-11-24 BC') as PgDate).toISOString()).toBe('-004712-11-24');
    expect((roundTrip('date', '5874897-12-31') as PgDate).toISOString()).toBe('+5874897-12-31');
    expect((roundTrip('date', 'infinity') as PgDate).special).toBe('infinity');
    expect((roundTrip('date', '-infinity') as PgDate).special).toBe('-infinity');
    expectViolation(() => parse('date', '2024-02-30x'), 'date');
  });

  it('reads times including 24:00:00 and fractions', () => {
    expect(roundTrip('time', '24:00:00')).toEqual(new PgTime(86_400_000_000));
    const t = roundTrip('time', '13:45:00.25') as PgTime;
    expect(t.micros).toBe((13 * 3600 + 45 * 60) * 1e6 + 250_000);
    expect(t.toISOString()).toBe('13:45:00.250000');
    expect(roundTrip('time', '00:00:00.000001')).toEqual(new PgTime(1));
    expectViolation(() => parse('time', '24:00:00.000001'), 'time');
    expectViolation(() => parse('time', '12:60:00'), 'time');
  });

  it('reads timetz offsets with minutes and seconds', () => {
    const t = roundTrip('timetz', '12:00:00.1+05:30:15') as PgTimeTz;
    expect(t).toEqual(new PgTimeTz(12 * 3600e6 + 100_000, 5 * 3600 + 30 * 60 + 15));
    expect(t.toISOString()).toBe('12:00:00.100000+05:30:15');
    expect((roundTrip('timetz', '12:00:00-08') as PgTimeTz).offsetSeconds).toBe(-8 * 3600);
    expect((roundTrip('timetz', '23:59:59.999999+00') as PgTimeTz).toISOString()).toBe('23:59:59.999999Z');
    expect((roundTrip('timetz', '00:00:00-03:30') as PgTimeTz).toISOString()).toBe('00:00:00.000000-03:30');
    expectViolation(() => parse('timetz', '12:00:00'), 'timetz');
  });
});

describe('intervals', () => {
  it.each([
    ['-1 days +02:03:00', 0, -1, 7_380_000_000n],
    ['1 year 2 mons', 14, 0, 0n],
    ['-1 years -2 mons +3 days -04:05:06.7', -14, 3, -14_706_700_000n],
    ['1 mon -1 days', 1, -1, 0n],
    ['-00:00:01', 0, 0, -1_000_000n],
    ['00:00:00', 0, 0, 0n],
    ['1 day -00:00:01', 0, 1, -1_000_000n],
    ['-1 mons +1 day', -1, 1, 0n],
    ['3 days 04:00:00', 0, 3, 14_400_000_000n],
    ['-1 years', -12, 0, 0n],
    ['11 mons', 11, 0, 0n],
    ['1 mon 15 days', 1, 15, 0n],
    ['100:00:00.000001', 0, 0, 360_000_000_001n],
    ['-2562047788:00:00', 0, 0, -9_223_372_036_800_000_000n],
  ])('%s', (text, months, days, micros) => {
    expect(roundTrip('interval', text)).toEqual(new PgInterval(months, days, micros));
  });

  it('reads PG 17 infinity and prints ISO 8601 durations', () => {
    expect((roundTrip('interval', 'infinity') as PgInterval).special).toBe('infinity');
    expect((roundTrip('interval', '-infinity') as PgInterval).special).toBe('-infinity');
    expect((parse('interval', '1 year 2 mons 3 days 04:05:06.5') as PgInterval).toISOString()).toBe(
      'P1Y2M3DT4H5M6.5S',
    );
    expect((parse('interval', '00:00:00') as PgInterval).toISOString()).toBe('PT0S');
    expect((parse('interval', '-1 days +02:03:00') as PgInterval).toISOString()).toBe('P-1DT2H3M');
    expect((parse('interval', '-00:00:01.5') as PgInterval).toISOString()).toBe('PT-1.5S');
  });

  it('rejects other interval styles and garbage', () => {
    for (const text of ['', 'P1D', '1 day 2 years', '1 fortnight', '1 day 01:02', '1:02:03']) {
      expectViolation(() => parse('interval', text), 'interval');
    }
  });
});

describe('numbers, booleans, bytes and JSON', () => {
  it('reads integers exactly and rejects what Number() would let through', () => {
    expect(roundTrip('int2', '-32768')).toBe(-32768);
    expect(roundTrip('int4', '2147483647')).toBe(2147483647);
    expect(roundTrip('int4', '-2147483648')).toBe(-2147483648);
    expect(Object.is(parse('int4', '-0'), 0)).toBe(true);
    expect(roundTrip('int8', '9223372036854775807')).toBe(9223372036854775807n);
    expect(roundTrip('int8', '-9223372036854775808')).toBe(-9223372036854775808n);
    expect(roundTrip('int8', '42')).toBe(42n);
    expect(roundTrip('oid', '4294967295')).toBe(4294967295);
    for (const text of ['', ' 1', '1 ', '0x1f', '1.5', '1e3', '-', '+1', '2147483648']) {
      expectViolation(() => parse('int4', text), 'int4');
    }
    expectViolation(() => parse('int2', '32768'), 'int2');
    expectViolation(() => parse('int8', '9223372036854775808'), 'int8');
    expectViolation(() => parse('int8', '0x10'), 'int8');
  });

  it('keeps numeric digits as text, NaN and infinities included', () => {
    for (const text of [
      '1.10',
      '-0.000001',
      '123456789012345678901234567890.123456789',
      'NaN',
      'Infinity',
      '-Infinity',
      '0',
    ]) {
      expect(roundTrip('numeric', text)).toBe(text);
    }
    for (const text of ['1e5', '', '1.2.3', 'nan', '--1'])
      expectViolation(() => parse('numeric', text), 'numeric');
  });

  it('reads floats and prints them with the server digits', () => {
    expect(roundTrip('float8', '1e+20')).toBe(1e20);
    expect(roundTrip('float8', '1.5e-07')).toBe(1.5e-7);
    expect(roundTrip('float8', '1.2345678901234568e+17')).toBe(123456789012345680);
    expect(Object.is(roundTrip('float8', '-0'), -0)).toBe(true);
    expect(Number.isNaN(roundTrip('float8', 'NaN'))).toBe(true);
    expect(roundTrip('float8', '-Infinity')).toBe(Number.NEGATIVE_INFINITY);
    expect(roundTrip('float8', '0.0001')).toBe(0.0001);
    expect(roundTrip('float8', '1e-05')).toBe(1e-5);
    expect(roundTrip('float8', '123456789012345')).toBe(123456789012345);
    expect(roundTrip('float8', '1e+15')).toBe(1e15);
    // float4 reads as the double nearest its digits; Math.fround of it is the stored float4.
    expect(roundTrip('float4', '0.1')).toBe(0.1);
    expect(formatFloat4(Math.fround(0.1))).toBe('0.1');
    expect(Math.fround(roundTrip('float4', '3.4028235e+38') as number)).toBe(Math.fround(3.4028235e38));
    expect(roundTrip('float4', '1e-45')).toBe(1e-45);
    expect(roundTrip('float4', '100000')).toBe(100000);
    expect(roundTrip('float4', '1e+06')).toBe(1e6);
    expect(formatFloat8(0.1 + 0.2)).toBe('0.30000000000000004');
    expect(formatFloat4(Math.fround(16777217))).toBe('1.6777216e+07');
    for (const text of ['', 'inf', '0x10', '1e', ' 1'])
      expectViolation(() => parse('float8', text), 'float8');
  });

  it('reads booleans, bytea in hex and escape form, and JSON as exact text', () => {
    expect(roundTrip('bool', 't')).toBe(true);
    expect(roundTrip('bool', 'f')).toBe(false);
    expectViolation(() => parse('bool', 'true'), 'bool');
    expect(roundTrip('bytea', '\\x0102ff')).toEqual(Buffer.from([1, 2, 255]));
    expect(roundTrip('bytea', '\\x')).toEqual(Buffer.alloc(0));
    expect(parse('bytea', 'a\\\\b\\001')).toEqual(Buffer.from([0x61, 0x5c, 0x62, 1]));
    for (const text of ['\\x0g', '\\x012', 'a\\9']) expectViolation(() => parse('bytea', text), 'bytea');
    const json = roundTrip('json', '{"a": 1e400, "b": [1,2], "a": 12345678901234567890}') as PgJson;
    expect(json).toBeInstanceOf(PgJson);
    expect(json.parse<{ b: number[] }>().b).toEqual([1, 2]);
    expect(formatJsonValue(json)).toBe('{"a": 1e400, "b": [1,2], "a": 12345678901234567890}');
  });

  it('passes text through untouched', () => {
    const text = 'tab\there, "quotes", \\backslash, emoji 🐘, ünïcödé';
    expect(registry.parser(OID.text)(text)).toBe(text);
    expect(registry.parser(2950)('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')).toBe(
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    );
  });
});

describe('arrays', () => {
  it('reads NULL, quoted, escaped and empty elements', () => {
    const text = '{"a b","",NULL,"NULL","x\\"y","back\\\\slash","{",","}';
    expect(roundTrip('_text', text)).toEqual(['a b', '', null, 'NULL', 'x"y', 'back\\slash', '{', ',']);
    expect(roundTrip('_text', '{}')).toEqual([]);
    expect(roundTrip('_text', '{" ","\t",null2}')).toEqual([' ', '\t', 'null2']);
    expect(parse('_text', '{ a , b }')).toEqual(['a', 'b']);
  });

  it('reads multiple dimensions and keeps explicit lower bounds', () => {
    expect(roundTrip('_int4', '{{1,2},{3,4}}')).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(roundTrip('_int4', '{{{1},{NULL}}}')).toEqual([[[1], [null]]]);
    const shifted = roundTrip('_int4', '[0:1]={1,2}') as PgValue[];
    expect(shifted).toBeInstanceOf(PgArray);
    expect(arrayLowerBounds(shifted)).toEqual([0]);
    expect(shifted).toEqual([1, 2]);
    const grid = roundTrip('_int4', '[0:1][2:3]={{1,2},{3,4}}') as PgValue[];
    expect(arrayLowerBounds(grid)).toEqual([0, 2]);
    expect(arrayLowerBounds(parse('_int4', '{1}') as PgValue[])).toBeUndefined();
    expect(roundTrip('_int4', '[-3:-2]={7,8}')).toEqual([7, 8]);
  });

  it('types elements by the element type and uses box arrays\u2019 semicolon', () => {
    expect(roundTrip('_box', '{(3,4),(1,2);(1,1),(0,0)}')).toEqual(['(3,4),(1,2)', '(1,1),(0,0)']);
    const stamps = roundTrip('_timestamptz', '{"2024-01-01 00:00:00.5+00",NULL,infinity}') as PgValue[];
    expect(stamps[0]).toBeInstanceOf(PgTimestamp);
    expect(stamps[1]).toBeNull();
    expect(roundTrip('_bytea', '{"\\\\x0102",NULL}')).toEqual([Buffer.from([1, 2]), null]);
    expect(roundTrip('_jsonb', '{"{\\"a\\": 1}"}')).toEqual([new PgJson('{"a": 1}')]);
    expect(roundTrip('_float8', '{NaN,Infinity,-Infinity,1e+20}')).toEqual([
      Number.NaN,
      Infinity,
      -Infinity,
      1e20,
    ]);
    expect(roundTrip('_numeric', '{1.10,NaN}')).toEqual(['1.10', 'NaN']);
    expect(roundTrip('_int4range', '{"[1,3)",empty}')).toEqual([
      new PgRange(1, 3, true, false),
      PgRange.empty(),
    ]);
    const multis = roundTrip('_int4multirange', '{"{[1,2),[5,7)}","{}"}') as PgValue[];
    expect(multis[0]).toBeInstanceOf(PgMultirange);
    expect(multis[1]).toEqual([]);
  });

  it('rejects malformed arrays', () => {
    for (const text of [
      '{1,2',
      '{1,,2}',
      '1,2',
      '{"1}',
      '[0:5]={1,2}',
      '{1,2}x',
      '{{1},2',
      '[0:1]{1,2}',
      '{1;2}',
    ]) {
      expectViolation(() => parse('_int4', text), '_int4');
    }
  });
});

describe('ranges and multiranges', () => {
  it('reads bounds, unbounded sides and empty ranges', () => {
    expect(roundTrip('int4range', '[1,5)')).toEqual(new PgRange(1, 5, true, false));
    expect(roundTrip('int4range', 'empty')).toEqual(PgRange.empty());
    expect(roundTrip('int4range', '(,)')).toEqual(new PgRange(null, null, false, false));
    expect(roundTrip('numrange', '[1.5,2.5]')).toEqual(new PgRange('1.5', '2.5', true, true));
    const since = roundTrip('tstzrange', '["2020-01-01 00:00:00+00",)') as PgRange<PgTimestamp>;
    expect(since.lower?.epochMicros).toBe(utcMicros(2020, 1, 1));
    expect(since.upper).toBeNull();
    expect(roundTrip('daterange', '[2020-01-01,2020-02-01)')).toEqual(
      new PgRange(new PgDate(18262), new PgDate(18293), true, false),
    );
  });

  it('unquotes bounds: "" inside quotes, backslashes, and a quoted empty string', () => {
    const range = parseRangeText('["a""b","c\\\\d,e"]', parseString, 'textrange');
    expect(range).toEqual(new PgRange('a"b', 'c\\d,e', true, true));
    expect(range.toPostgres()).toBe('["a""b","c\\\\d,e"]');
    const emptyBound = parseRangeText('["",z)', parseString, 'textrange');
    expect(emptyBound.lower).toBe('');
    expect(emptyBound.toPostgres()).toBe('["",z)');
  });

  it('reads multiranges', () => {
    const multi = roundTrip('datemultirange', '{[2020-01-01,2020-02-01),[2021-01-01,)}') as PgMultirange;
    expect(multi).toBeInstanceOf(PgMultirange);
    expect(multi).toHaveLength(2);
    expect(multi[1]!.upper).toBeNull();
    expect(roundTrip('int4multirange', '{}')).toEqual([]);
    expect(String(parseMultirangeText('{[1,2),[3,4]}', (t) => Number(t), 'm'))).toBe('{[1,2),[3,4]}');
  });

  it('rejects malformed ranges', () => {
    for (const text of ['[1,5', '1,5)', '[1;5)', '[1,5)x', ''])
      expectViolation(() => parse('int4range', text), 'int4range');
    for (const text of ['[1,2)', '{[1,2)', '{[1,2);[3,4)}']) {
      expectViolation(() => parse('int4multirange', text), 'int4multirange');
    }
  });
});

describe('composites', () => {
  const int4 = BUILTIN_TYPES.get(OID.int4)!;
  const text = BUILTIN_TYPES.get(OID.text)!;
  const composite = (oid: number, name: string, fields: [string, PgType][]): PgType => ({
    oid,
    schema: 'public',
    name,
    category: 'composite',
    delimiter: ',',
    fields: fields.map(([fieldName, type]) => ({ name: fieldName, type })),
  });
  const inner = composite(900001, 'inner_t', [
    ['n', int4],
    ['s', text],
    ['z', text],
  ]);
  const outer = composite(900002, 'outer_t', [
    ['inner', inner],
    ['label', text],
  ]);
  const innerFields = [
    { name: 'n', parse: registry.parser(OID.int4) },
    { name: 's', parse: parseString },
    { name: 'z', parse: parseString },
  ];

  it('tells an empty field (NULL) from "" (empty string)', () => {
    const record = parseRecordText('(,"",)', innerFields, 'inner_t');
    expect(record).toEqual({ n: null, s: '', z: null });
    expect(formatPgText(record, inner)).toBe('(,"",)');
  });

  it('unescapes quotes and backslashes and types each field', () => {
    const record = parseRecordText('(1,"a ""b"" \\\\c","(x,y)")', innerFields, 'inner_t');
    expect(record).toEqual({ n: 1, s: 'a "b" \\c', z: '(x,y)' });
    expect(formatPgText(record, inner)).toBe('(1,"a ""b"" \\\\c","(x,y)")');
  });

  it('nests composites', () => {
    const parseInner = (t: string) => parseRecordText(t, innerFields, 'inner_t');
    const record = parseRecordText(
      '("(1,x,)",y)',
      [
        { name: 'inner', parse: parseInner },
        { name: 'label', parse: parseString },
      ],
      'outer_t',
    );
    expect(record).toEqual({ inner: { n: 1, s: 'x', z: null }, label: 'y' });
    expect(formatPgText(record, outer)).toBe('("(1,x,)",y)');
    expect(formatJsonValue(record)).toBe('{"inner":{"n":1,"s":"x","z":null},"label":"y"}');
  });

  it('keeps a field named __proto__ as data', () => {
    const record = parseRecordText('(1)', [{ name: '__proto__', parse: parseString }], 'odd');
    expect(Object.keys(record)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(record)).toBe(Object.prototype);
  });

  it('rejects malformed records', () => {
    for (const t of ['1,2,3', '(1,2)', '(1,2,3,4)', '(1,"2,3)', '(1,2,3)x']) {
      expectViolation(() => parseRecordText(t, innerFields, 'inner_t'), 'inner_t');
    }
  });
});

describe('type registry without a catalog', () => {
  it('knows every builtin array, range and multirange', () => {
    expect(registry.get(1007)).toMatchObject({ name: '_int4', category: 'array', element: { name: 'int4' } });
    expect(registry.get(1020)?.element?.delimiter).toBe(';');
    expect(registry.get(4535)).toMatchObject({
      category: 'multirange',
      subtype: { name: 'daterange', subtype: { name: 'date' } },
    });
    for (const name of Object.keys(BUILTIN_TEXT_PARSERS)) {
      expect([...BUILTIN_TYPES.values()].some((type) => type.name === name)).toBe(true);
    }
  });

  it('gives unknown OIDs a PgUnknown parser and caches parsers', () => {
    const value = registry.parser(987654)('some text');
    expect(value).toEqual(new PgUnknown('oid 987654', 'some text', 987654));
    expect(registry.parser(OID.int4)).toBe(registry.parser(OID.int4));
  });

  it('lets users register their own parsers, also for array elements', () => {
    const own = new TypeRegistry();
    own.register(OID.int4, (t) => `int:${t}`);
    expect(own.parser(OID.int4)('1')).toBe('int:1');
    expect(own.parser(OID._int4)('{1,2}')).toEqual(['int:1', 'int:2']);
  });

  it('cuts long malformed values in the error message', () => {
    try {
      parse('int4', 'x'.repeat(1_000_000));
      throw new Error('no error');
    } catch (error) {
      expect(isPgReplicateError(error, 'PROTOCOL_VIOLATION')).toBe(true);
      expect((error as Error).message.length).toBeLessThan(200);
      expect((error as Error).message).toContain('1000000 chars');
    }
  });
});

describe('JSON format', () => {
  it.each<[string, PgValue, string]>([
    ['null', null, 'null'],
    ['int4', 42, '42'],
    ['float', 1.5, '1.5'],
    ['NaN', Number.NaN, '"NaN"'],
    ['Infinity', Number.POSITIVE_INFINITY, '"Infinity"'],
    ['-Infinity', Number.NEGATIVE_INFINITY, '"-Infinity"'],
    ['int8', 9223372036854775807n, '"9223372036854775807"'],
    ['numeric', '12345678901234567890.000000001', '"12345678901234567890.000000001"'],
    ['bool', true, 'true'],
    ['string with escapes', 'a"b\\c\n\u0001🐘', '"a\\"b\\\\c\\n\\u0001🐘"'],
    ['bytea', Buffer.from([1, 2, 0xab]), '"\\\\x0102ab"'],
    [
      'jsonb',
      new PgJson('{"big": 123456789012345678901234567890}'),
      '{"big": 123456789012345678901234567890}',
    ],
    ['timestamptz', new PgTimestamp(1_700_000_000_000_001n, true), '"2023-11-14T22:13:20.000001Z"'],
    ['timestamp', new PgTimestamp(0n, false), '"1970-01-01T00:00:00.000000"'],
    ['infinite timestamptz', PgTimestamp.infinity(1, true), '"infinity"'],
    ['date', new PgDate(-1), '"1969-12-31"'],
    ['interval', new PgInterval(14, -1, 7_380_000_000n), '"1 year 2 mons -1 days +02:03:00"'],
    ['range', new PgRange(1, null, true, false), '"[1,)"'],
    ['multirange', new PgMultirange([new PgRange(1, 2, true, false)]), '"{[1,2)}"'],
    ['unknown', new PgUnknown('hstore', '"a"=>"1"', 1), '"\\"a\\"=>\\"1\\""'],
    [
      'array',
      [
        [1, null],
        [3, 4],
      ],
      '[[1,null],[3,4]]',
    ],
    ['array of int8', [1n, null], '["1",null]'],
    ['bounded array', new PgArray([1, 2], [0]), '[1,2]'],
    ['composite', { a: 1, b: [new PgJson('[1]')], c: null }, '{"a":1,"b":[[1]],"c":null}'],
  ])('%s', (_name, value, json) => {
    expect(formatJsonValue(value)).toBe(json);
    expect(() => JSON.parse(formatJsonValue(value))).not.toThrow();
  });
});
