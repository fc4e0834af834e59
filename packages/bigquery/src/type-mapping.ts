/**
 * How each Postgres type is held in BigQuery, and how a value gets there: the BigQuery column type,
 * the protobuf field type it is appended as (https://cloud.google.com/bigquery/docs/supported-data-types),
 * and the conversion from the Postgres text form (TimeZone=UTC, DateStyle=ISO). The README's type
 * table is the contract; this module is its implementation.
 *
 * Values are exact: integers as int64, numerics as decimal strings, timestamps as microseconds,
 * float4 as the exact float (`Math.fround`), JSON as its text. A value BigQuery's type cannot hold
 * (a numeric NaN, a date before year 1, `infinity`, 24:00:00, an interval beyond BigQuery's range,
 * an array with NULL elements or several dimensions) throws {@link UnrepresentableValueError}: the
 * sink then fails the write naming table, column and row, or writes NULL if told to.
 *
 * The same mapping reads values back from BigQuery's REST rows (`fromRest`), which is how an
 * unchanged TOAST value is merged from the row BigQuery holds.
 */
import {
  type ColumnSchema,
  formatJsonValue,
  formatPgText,
  PgArray,
  type PgDate,
  type PgInterval,
  PgJson,
  PgMultirange,
  type PgTime,
  type PgTimestamp,
  type PgType,
  type PgValue,
  type TypeRegistry,
} from 'pg-replicate';

/** Standard SQL type names, as tables are created with. */
export type BigQueryType =
  | 'BOOL'
  | 'INT64'
  | 'FLOAT64'
  | 'NUMERIC'
  | 'BIGNUMERIC'
  | 'STRING'
  | 'BYTES'
  | 'JSON'
  | 'DATE'
  | 'DATETIME'
  | 'TIME'
  | 'TIMESTAMP'
  | 'INTERVAL';

/** The protobuf field type a BigQuery type is appended as. */
export type ProtoKind = 'bool' | 'int64' | 'int32' | 'double' | 'string' | 'bytes';

/** One value as the row encoder writes it. */
export type ProtoScalar = boolean | number | bigint | string | Buffer;
/** A column value: a scalar, the elements of a REPEATED column, or null (field left out). */
export type ProtoValue = ProtoScalar | readonly ProtoScalar[] | null;

/** A value the column's BigQuery type cannot hold. */
export class UnrepresentableValueError extends Error {
  override readonly name = 'UnrepresentableValueError';
}

/** How the values of one Postgres column are held in BigQuery. */
export interface TypeMapping {
  readonly bqType: BigQueryType;
  /** Arrays become REPEATED columns of their element's mapping. */
  readonly repeated: boolean;
  readonly proto: ProtoKind;
  /** Fixed-length Postgres type: its values are never TOASTed. */
  readonly fixedLength: boolean;
  /** Postgres text → value to append. Throws {@link UnrepresentableValueError}. */
  fromText(text: string): ProtoValue;
  /** A cell of a BigQuery REST row (`v`: string, `[{v}]` for REPEATED, null) → value to append. */
  fromRest(cell: unknown): ProtoValue;
}

/** The scalar part of a mapping: one value, without the array handling. */
interface Scalar {
  readonly bqType: BigQueryType;
  readonly proto: ProtoKind;
  readonly fixedLength: boolean;
  fromValue(value: Exclude<PgValue, null>): ProtoScalar;
  fromRest(v: string): ProtoScalar;
  /** Faster than parse + fromValue where the text is the value (or nearly). */
  fromText?(text: string): ProtoScalar;
}

// BigQuery's ranges (https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types).
const MIN_DATE_DAYS = -719_162; // 0001-01-01
const MAX_DATE_DAYS = 2_932_896; // 9999-12-31
const MIN_TIMESTAMP_MICROS = -62_135_596_800_000_000n; // 0001-01-01 00:00:00 UTC
const MAX_TIMESTAMP_MICROS = 253_402_300_799_999_999n; // 9999-12-31 23:59:59.999999 UTC
const MICROS_PER_DAY = 86_400_000_000;
const MAX_INTERVAL_MONTHS = 10_000 * 12;
const MAX_INTERVAL_DAYS = 3_660_000;
const MAX_INTERVAL_MICROS = 87_840_000n * 3_600_000_000n;
/** NUMERIC: 29 integer digits, 9 fractional; BIGNUMERIC: 38 and 38 (the 77th digit is partial). */
const NUMERIC_LIMITS = { integer: 29, scale: 9 };
const BIGNUMERIC_LIMITS = { integer: 38, scale: 38 };

function unrepresentable(what: string, type: string): UnrepresentableValueError {
  return new UnrepresentableValueError(`${what} does not fit in BigQuery's ${type}`);
}

const STRING_TEXT: Scalar = {
  bqType: 'STRING',
  proto: 'string',
  fixedLength: false,
  fromValue: (value) => (typeof value === 'string' ? value : String(formatPgText(value))),
  fromRest: (v) => v,
  fromText: (text) => text,
};

/** A string-valued type that is fixed-length in Postgres (uuid, money, macaddr…): never TOASTed. */
const FIXED_STRING: Scalar = { ...STRING_TEXT, fixedLength: true };

const BOOL: Scalar = {
  bqType: 'BOOL',
  proto: 'bool',
  fixedLength: true,
  fromValue: (value) => value === true,
  fromRest: (v) => v === 'true',
  fromText: (text) => text === 't',
};

const INT64: Scalar = {
  bqType: 'INT64',
  proto: 'int64',
  fixedLength: true,
  fromValue: (value) => (typeof value === 'bigint' ? value : Number(value)),
  fromRest: (v) => BigInt(v),
};

const FLOAT64: Scalar = {
  bqType: 'FLOAT64',
  proto: 'double',
  fixedLength: true,
  fromValue: (value) => Number(value),
  fromRest: (v) => Number(v),
};

/** float4 widened exactly: the double holding the very float Postgres stored. */
const FLOAT4: Scalar = { ...FLOAT64, fromValue: (value) => Math.fround(Number(value)) };

function decimal(bqType: 'NUMERIC' | 'BIGNUMERIC', fixedLength = false): Scalar {
  return {
    bqType,
    proto: 'string',
    fixedLength,
    fromValue: (value) => {
      const text = String(value);
      if (text === 'NaN' || text === 'Infinity' || text === '-Infinity') throw unrepresentable(text, bqType);
      return text;
    },
    fromRest: (v) => v,
  };
}

const BYTES: Scalar = {
  bqType: 'BYTES',
  proto: 'bytes',
  fixedLength: false,
  fromValue: (value) => value as Buffer,
  fromRest: (v) => Buffer.from(v, 'base64'),
};

const JSON_TEXT: Scalar = {
  bqType: 'JSON',
  proto: 'string',
  fixedLength: false,
  fromValue: (value) => (value instanceof PgJson ? value.text : formatJsonValue(value)),
  fromRest: (v) => v,
  fromText: (text) => text,
};

/** Composite values as JSON objects (field → value), nested values as `formatJsonValue` writes them. */
const RECORD_JSON: Scalar = {
  ...JSON_TEXT,
  fromText: undefined,
  fromValue: (value) => formatJsonValue(value),
};

const DATE: Scalar = {
  bqType: 'DATE',
  proto: 'int32',
  fixedLength: true,
  fromValue: (value) => {
    const date = value as PgDate;
    if (date.special !== null || date.epochDays < MIN_DATE_DAYS || date.epochDays > MAX_DATE_DAYS)
      throw unrepresentable(date.toPostgres(), 'DATE');
    return date.epochDays;
  },
  fromRest: (v) => Math.round(Date.parse(`${v}T00:00:00Z`) / 86_400_000),
};

function checkTimestamp(value: PgTimestamp, type: string): bigint {
  if (
    value.special !== null ||
    value.epochMicros < MIN_TIMESTAMP_MICROS ||
    value.epochMicros > MAX_TIMESTAMP_MICROS
  )
    throw unrepresentable(value.toPostgres(), type);
  return value.epochMicros;
}

const TIMESTAMP: Scalar = {
  bqType: 'TIMESTAMP',
  proto: 'int64',
  fixedLength: true,
  fromValue: (value) => checkTimestamp(value as PgTimestamp, 'TIMESTAMP'),
  // Rows are read with formatOptions.useInt64Timestamp: microseconds as an integer string.
  fromRest: (v) => BigInt(v),
};

const DATETIME: Scalar = {
  bqType: 'DATETIME',
  proto: 'string',
  fixedLength: true,
  fromValue: (value) => {
    const timestamp = value as PgTimestamp;
    checkTimestamp(timestamp, 'DATETIME');
    return timestamp.toISOString().replace('T', ' ');
  },
  fromRest: (v) => v.replace('T', ' '),
};

const TIME: Scalar = {
  bqType: 'TIME',
  proto: 'string',
  fixedLength: true,
  fromValue: (value) => {
    const time = value as PgTime;
    if (time.micros >= MICROS_PER_DAY) throw unrepresentable(time.toPostgres(), 'TIME');
    return time.toISOString();
  },
  fromRest: (v) => v,
};

const INTERVAL: Scalar = {
  bqType: 'INTERVAL',
  proto: 'string',
  fixedLength: true,
  fromValue: (value) => formatInterval(value as PgInterval),
  fromRest: (v) => v,
};

/**
 * BigQuery's canonical interval literal, `Y-M D H:M:S.F` with a sign on each part: months, days
 * and microseconds stay apart, as in Postgres, so the value is exact.
 */
export function formatInterval(interval: PgInterval): string {
  const { months, days, micros } = interval;
  if (
    interval.special !== null ||
    Math.abs(months) > MAX_INTERVAL_MONTHS ||
    Math.abs(days) > MAX_INTERVAL_DAYS ||
    (micros < 0n ? -micros : micros) > MAX_INTERVAL_MICROS
  ) {
    throw unrepresentable(interval.toPostgres(), 'INTERVAL');
  }
  const yearMonth = `${months < 0 ? '-' : ''}${Math.floor(Math.abs(months) / 12)}-${Math.abs(months) % 12}`;
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  const hours = abs / 3_600_000_000n;
  const rest = Number(abs % 3_600_000_000n);
  const minutes = Math.floor(rest / 60_000_000);
  const seconds = Math.floor((rest % 60_000_000) / 1_000_000);
  const fraction = rest % 1_000_000;
  const time = `${negative ? '-' : ''}${hours}:${minutes}:${seconds}${fraction === 0 ? '' : `.${String(fraction).padStart(6, '0')}`}`;
  return `${yearMonth} ${days} ${time}`;
}

/** Builtin types by name (arrays and domains are resolved before this table is read). */
const BUILTIN: Readonly<Record<string, Scalar>> = {
  bool: BOOL,
  int2: INT64,
  int4: INT64,
  int8: INT64,
  oid: INT64,
  xid: INT64,
  cid: INT64,
  xid8: decimal('NUMERIC', true),
  float4: FLOAT4,
  float8: FLOAT64,
  bytea: BYTES,
  json: JSON_TEXT,
  jsonb: JSON_TEXT,
  date: DATE,
  time: TIME,
  timestamp: DATETIME,
  timestamptz: TIMESTAMP,
  interval: INTERVAL,
  uuid: FIXED_STRING,
  money: FIXED_STRING,
  timetz: FIXED_STRING,
  macaddr: FIXED_STRING,
  macaddr8: FIXED_STRING,
  pg_lsn: FIXED_STRING,
  char: FIXED_STRING,
  name: FIXED_STRING,
  tid: FIXED_STRING,
  point: FIXED_STRING,
  lseg: FIXED_STRING,
  box: FIXED_STRING,
  line: FIXED_STRING,
  circle: FIXED_STRING,
};

/** `numeric(p,s)` → NUMERIC or BIGNUMERIC when every value of the column fits, else STRING. */
export function numericScalar(typeMod: number): Scalar {
  if (typeMod < 4) return STRING_TEXT; // unconstrained: up to 131072 digits
  const precision = ((typeMod - 4) >> 16) & 0xffff;
  const scale = ((((typeMod - 4) & 0x7ff) ^ 1024) - 1024) as number; // 11-bit signed since PG 15
  const integerDigits = precision - scale;
  const fractional = Math.max(0, scale);
  if (integerDigits <= NUMERIC_LIMITS.integer && fractional <= NUMERIC_LIMITS.scale)
    return decimal('NUMERIC');
  if (integerDigits <= BIGNUMERIC_LIMITS.integer && fractional <= BIGNUMERIC_LIMITS.scale)
    return decimal('BIGNUMERIC');
  return STRING_TEXT;
}

/** The type behind any domains. */
function baseOf(type: PgType): PgType {
  let t = type;
  while (t.category === 'domain' && t.baseType !== undefined) t = t.baseType;
  return t;
}

function scalarFor(type: PgType | undefined, typeMod: number): Scalar {
  if (type === undefined) return STRING_TEXT;
  const base = baseOf(type);
  if (base.category === 'enum') return { ...STRING_TEXT, fixedLength: true };
  if (base.category === 'composite') return RECORD_JSON;
  if (base.category !== 'base' || base.schema !== 'pg_catalog') return STRING_TEXT;
  if (base.name === 'numeric') return numericScalar(base === type ? typeMod : -1);
  return BUILTIN[base.name] ?? STRING_TEXT;
}

/**
 * The mapping of a column. Arrays of one dimension become REPEATED columns of their element's
 * mapping; the registry resolves domains, enums and composites.
 */
export function mapColumn(column: ColumnSchema, types: TypeRegistry): TypeMapping {
  const type = types.get(column.typeOid);
  const base = type === undefined ? undefined : baseOf(type);
  if (base?.category === 'array' && base.element !== undefined) {
    const element = base.element;
    // numeric[] keeps the column's typmod for its elements.
    return arrayMapping(scalarFor(element, column.typeMod), types.parser(column.typeOid), element);
  }
  const scalar = scalarFor(type, column.typeMod);
  const parse = types.parser(column.typeOid);
  return {
    bqType: scalar.bqType,
    repeated: false,
    proto: scalar.proto,
    fixedLength: scalar.fixedLength,
    fromText: scalar.fromText ?? ((text) => scalar.fromValue(parse(text) as Exclude<PgValue, null>)),
    fromRest: (cell) => (cell === null || cell === undefined ? null : scalar.fromRest(String(cell))),
  };
}

/**
 * REPEATED columns: BigQuery arrays have one dimension, no NULL elements and no lower bounds, and
 * no NULL array either (a NULL array reads back as `[]`, the one difference no option avoids).
 */
function arrayMapping(scalar: Scalar, parse: (text: string) => PgValue, element: PgType): TypeMapping {
  const arrayType = `ARRAY<${scalar.bqType}>`;
  const convert = (item: PgValue): ProtoScalar => {
    if (item === null) throw unrepresentable('an array with NULL elements', arrayType);
    // Multiranges are arrays too, but one element each.
    if (Array.isArray(item) && !(item instanceof PgMultirange))
      throw unrepresentable('a multi-dimensional array', arrayType);
    return scalar === STRING_TEXT ? formatPgText(item, element) : scalar.fromValue(item);
  };
  return {
    bqType: scalar.bqType,
    repeated: true,
    proto: scalar.proto,
    fixedLength: false,
    fromText: (text) => {
      const value = parse(text);
      if (!Array.isArray(value)) throw unrepresentable(`array text ${JSON.stringify(text)}`, arrayType);
      if (value instanceof PgArray && value.lowerBounds.some((bound) => bound !== 1))
        throw unrepresentable(`an array with lower bounds ${value.lowerBounds.join(', ')}`, arrayType);
      const out: ProtoScalar[] = new Array(value.length);
      for (let i = 0; i < value.length; i++) out[i] = convert(value[i]!);
      return out;
    },
    fromRest: (cell) =>
      Array.isArray(cell) ? cell.map((item: { v: unknown }) => scalar.fromRest(String(item.v))) : [],
  };
}

/** The REST table-schema type name BigQuery reports for a standard SQL type (tables.get). */
export function legacyTypeName(type: BigQueryType): string {
  switch (type) {
    case 'BOOL':
      return 'BOOLEAN';
    case 'INT64':
      return 'INTEGER';
    case 'FLOAT64':
      return 'FLOAT';
    default:
      return type;
  }
}
