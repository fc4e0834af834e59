/**
 * How each Postgres type is held in DuckDB, and how a value gets there from the Postgres text form
 * (TimeZone=UTC, DateStyle=ISO, IntervalStyle=postgres, bytea_output=hex).
 *
 * Values are staged as text in COPY's escaped TSV form and converted by DuckDB in bulk, with one
 * SQL expression per column (`fromText`); DuckDB's own casts are exact for nearly every type, so
 * JavaScript touches a value only where the text forms differ (`prepare`: intervals, arrays).
 * Where DuckDB cannot hold a value (numeric NaN in a DECIMAL, a timestamp past DuckDB's range,
 * an infinite interval, a multi-dimensional array) the write fails with the table and column
 * named — it is never stored as something else. The README's type table is the contract.
 */
import type { ColumnSchema, PgType, TypeRegistry } from 'pg-replicate';
import { splitArrayText } from './array-text.js';

/** How the values of one column are held in DuckDB and converted on the way in. */
export interface TypeMapping {
  /** The DuckDB column type, spelled as `duckdb_columns().data_type` reports it. */
  readonly duckType: string;
  /** SQL turning `expr` (VARCHAR: the value's Postgres text, after `prepare`) into the column's value. */
  fromText(expr: string): string;
  /**
   * Rewrites a value's text before staging, for types whose Postgres text DuckDB cannot cast.
   * Throws {@link UnrepresentableValueError} for values DuckDB cannot hold. Null: staged as is.
   */
  readonly prepare: ((text: string) => string) | null;
  /** True when the staged text never contains COPY escapes (digits, dates, UUIDs…). */
  readonly plain: boolean;
}

/** A value DuckDB has no way to hold in the column's type. */
export class UnrepresentableValueError extends Error {
  override readonly name = 'UnrepresentableValueError';
}

/**
 * SQL undoing COPY text escapes (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v` — all that `COPY TO`
 * writes) in `expr`. Splitting on `\\` first keeps an escaped backslash from pairing with the
 * character after it; values without a backslash (nearly all) skip the work.
 */
export function unescapeCopySql(expr: string): string {
  let part = 'p';
  for (const [letter, code] of [
    ['n', 10],
    ['t', 9],
    ['r', 13],
    ['b', 8],
    ['f', 12],
    ['v', 11],
  ] as const) {
    part = `replace(${part}, '\\${letter}', chr(${code}))`;
  }
  return `CASE WHEN contains(${expr}, '\\') THEN array_to_string(list_transform(string_split(${expr}, '\\\\'), lambda p: ${part}), '\\') ELSE ${expr} END`;
}

/** SQL for a staged (COPY-escaped) field converted to the column's value. */
export function fromStaged(mapping: TypeMapping, raw: string): string {
  return mapping.fromText(mapping.plain ? raw : unescapeCopySql(raw));
}

function cast(duckType: string, plain = true): TypeMapping {
  return { duckType, fromText: (expr) => `CAST(${expr} AS ${duckType})`, prepare: null, plain };
}

/** Text kept as Postgres printed it: text types, and every type DuckDB has no equivalent for. */
export const TEXT: TypeMapping = {
  duckType: 'VARCHAR',
  fromText: (expr) => expr,
  prepare: null,
  plain: false,
};

const BOOLEAN = cast('BOOLEAN');

/** BC dates end in ` BC` in Postgres and `(BC)` in DuckDB; ` BC` alone would be read as AD. */
const DATE: TypeMapping = {
  duckType: 'DATE',
  fromText: (e) =>
    `CASE WHEN ends_with(${e}, ' BC') THEN CAST(replace(${e}, ' BC', ' (BC)') AS DATE) ELSE CAST(${e} AS DATE) END`,
  prepare: null,
  plain: true,
};

/**
 * DuckDB's timestamp parser has no BC form: a BC value is rebuilt as its date (which DuckDB reads
 * as `… (BC)`) plus its time of day: for a timestamptz, the same day and time in the leap year
 * 2000 parsed with its UTC offset, less midnight of that day. Postgres years never exceed 4 digits
 * before Christ, so the date is always the first 10 characters. No regular expressions: DuckDB
 * compiles each one as it binds a statement, and the five this took before cost ~2 ms per
 * timestamp column in every load and change batch.
 */
function timestampFromText(e: string, withTimeZone: boolean): string {
  const date = `CAST(left(${e}, 10) || ' (BC)' AS DATE)`;
  // After the date's 10 characters and before the trailing ' BC': `HH:MM:SS[.ffffff][±HH[:MM[:SS]]]`.
  const bc = withTimeZone
    ? `CAST(${date} AS TIMESTAMPTZ) + (CAST('2000' || substr(${e}, 5, length(${e}) - 7) AS TIMESTAMPTZ) - CAST(CAST('2000' || substr(${e}, 5, 6) AS DATE) AS TIMESTAMPTZ))`
    : `CAST(${date} + CAST(substr(${e}, 12, length(${e}) - 14) AS TIME) AS TIMESTAMP)`;
  const type = withTimeZone ? 'TIMESTAMPTZ' : 'TIMESTAMP';
  return `CASE WHEN ends_with(${e}, ' BC') THEN ${bc} ELSE CAST(${e} AS ${type}) END`;
}

const TIMESTAMP: TypeMapping = {
  duckType: 'TIMESTAMP',
  fromText: (e) => timestampFromText(e, false),
  prepare: null,
  plain: true,
};

const TIMESTAMPTZ: TypeMapping = {
  duckType: 'TIMESTAMP WITH TIME ZONE',
  fromText: (e) => timestampFromText(e, true),
  prepare: null,
  plain: true,
};

/** `bytea_output=hex`: `\x0a0b…`; the staged field has its backslash doubled by COPY. */
const BLOB: TypeMapping = {
  duckType: 'BLOB',
  fromText: (e) => `from_hex(substr(${e}, 3))`,
  prepare: null,
  plain: false,
};

const JSON_TYPE: TypeMapping = {
  duckType: 'JSON',
  fromText: (e) => `CAST(${e} AS JSON)`,
  prepare: null,
  plain: false,
};

/**
 * `numeric(p,s)` fits DECIMAL(p,s) when 0 ≤ s ≤ p ≤ 38; otherwise (and unconstrained numeric,
 * which also holds NaN and ±Infinity) it stays exact text. DECIMAL refuses NaN with an error.
 */
function numericMapping(typeMod: number): TypeMapping {
  if (typeMod < 4) return TEXT;
  const precision = ((typeMod - 4) >> 16) & 0xffff;
  const scale = ((((typeMod - 4) & 0x7ff) ^ 1024) - 1024) | 0;
  if (precision < 1 || precision > 38 || scale < 0 || scale > precision) return TEXT;
  return cast(`DECIMAL(${precision},${scale})`);
}

/** Staged as `months days micros` (see {@link intervalPreparer}). */
function intervalMapping(types: TypeRegistry): TypeMapping {
  const parse = types.parser(1186);
  return {
    duckType: 'INTERVAL',
    fromText: (e) =>
      `(to_months(CAST(split_part(${e}, ' ', 1) AS INTEGER)) + to_days(CAST(split_part(${e}, ' ', 2) AS INTEGER)) + to_microseconds(CAST(split_part(${e}, ' ', 3) AS BIGINT)))`,
    prepare: (text) => {
      const value = parse(text) as { months: number; days: number; micros: bigint; special: string | null };
      if (value.special !== null) {
        throw new UnrepresentableValueError(`interval '${value.special}' has no DuckDB INTERVAL equivalent`);
      }
      return `${value.months} ${value.days} ${value.micros}`;
    },
    plain: true,
  };
}

/**
 * One-dimensional arrays become LISTs of the element mapping. The array text is rewritten as a
 * JSON array of element texts, which DuckDB reads with `from_json` and converts element-wise.
 */
function listMapping(element: TypeMapping, delimiter: string): TypeMapping {
  const prepareElement = element.prepare;
  return {
    duckType: `${element.duckType}[]`,
    fromText: (e) =>
      `list_transform(from_json(${e}, '["VARCHAR"]'), lambda ${lambdaName(element)}: ${element.fromText(lambdaName(element))})`,
    prepare: (text) => {
      const { elements, lowerBounds } = splitArrayText(text, delimiter);
      if (lowerBounds?.some((bound) => bound !== 1)) {
        throw new UnrepresentableValueError(
          `array ${clip(text)} has lower bounds ${lowerBounds.join(', ')}; a LIST starts at 1`,
        );
      }
      for (let i = 0; i < elements.length; i++) {
        const item = elements[i];
        if (Array.isArray(item)) {
          throw new UnrepresentableValueError(
            `multi-dimensional array ${clip(text)} does not fit a one-level LIST`,
          );
        }
        if (prepareElement !== null && item !== null && item !== undefined)
          elements[i] = prepareElement(item);
      }
      return JSON.stringify(elements);
    },
    plain: false,
  };
}

/** Lambda parameter names must not shadow each other in nested lists (arrays of domains over arrays). */
function lambdaName(element: TypeMapping): string {
  return `el${element.duckType.split('[]').length}`;
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** Builtin base types by name; anything missing here is kept as text. */
function builtinMapping(name: string, typeMod: number, types: TypeRegistry): TypeMapping {
  switch (name) {
    case 'bool':
      return BOOLEAN;
    case 'int2':
      return cast('SMALLINT');
    case 'int4':
      return cast('INTEGER');
    case 'int8':
      return cast('BIGINT');
    case 'oid':
    case 'xid':
    case 'cid':
      return cast('UINTEGER');
    case 'xid8':
      return cast('UBIGINT');
    case 'float4':
      return cast('FLOAT');
    case 'float8':
      return cast('DOUBLE');
    case 'numeric':
      return numericMapping(typeMod);
    case 'bytea':
      return BLOB;
    case 'date':
      return DATE;
    case 'time':
      return cast('TIME');
    case 'timetz':
      return cast('TIME WITH TIME ZONE');
    case 'timestamp':
      return TIMESTAMP;
    case 'timestamptz':
      return TIMESTAMPTZ;
    case 'interval':
      return intervalMapping(types);
    case 'uuid':
      return cast('UUID');
    case 'json':
    case 'jsonb':
      return JSON_TYPE;
    default:
      return TEXT;
  }
}

function mapType(type: PgType | undefined, typeMod: number, types: TypeRegistry, depth: number): TypeMapping {
  if (type === undefined || depth > 8) return TEXT;
  switch (type.category) {
    case 'base':
      return type.schema === 'pg_catalog' ? builtinMapping(type.name, typeMod, types) : TEXT;
    case 'domain':
      // A domain's own typmod (numeric(10,2) in CREATE DOMAIN) is not in the column's atttypmod.
      return mapType(type.baseType, -1, types, depth + 1);
    case 'array': {
      if (type.element === undefined) return TEXT;
      return listMapping(mapType(type.element, typeMod, types, depth + 1), type.element.delimiter);
    }
    default:
      // enum, composite, range, multirange, unknown: the server's text, exactly.
      return TEXT;
  }
}

/** The mapping for a column, from its type (resolved through `types`) and type modifier. */
export function mapColumn(column: ColumnSchema, types: TypeRegistry): TypeMapping {
  return mapType(types.get(column.typeOid), column.typeMod, types, 0);
}

/**
 * The mapping to use for a column whose DuckDB type is `actualType`: the column's own mapping,
 * or text when the DuckDB column is VARCHAR (a text type, or a column an operator retyped to
 * VARCHAR to hold values DuckDB's type could not).
 */
export function mappingFor(expected: TypeMapping, actualType: string): TypeMapping {
  return actualType === 'VARCHAR' && expected.duckType !== 'VARCHAR' ? TEXT : expected;
}
