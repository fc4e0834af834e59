/**
 * The JS values change events carry, chosen so that nothing Postgres sent is lost: 64-bit
 * integers as `bigint`, numeric as its exact digits, timestamps to the microsecond with BC years
 * and ±infinity, JSON as its original text. Every value can print itself back as the server's
 * own text form (`toPostgres()`), which is how the conformance tests prove nothing was lost.
 *
 * | Postgres | JS |
 * |---|---|
 * | int2, int4, oid, xid, cid, float4, float8 | `number` (NaN/±Infinity included) |
 * | int8, xid8 | `bigint` |
 * | numeric | `string` (exact digits, `NaN`, `Infinity`, `-Infinity`) |
 * | bool | `boolean` |
 * | bytea | `Buffer` |
 * | json, jsonb | {@link PgJson} |
 * | date, time, timetz, timestamp(tz), interval | {@link PgDate}, {@link PgTime}, {@link PgTimeTz}, {@link PgTimestamp}, {@link PgInterval} |
 * | text-like, uuid, enums, inet, money, geometric, bit strings, xml, tsvector… | `string` (the server's text) |
 * | arrays | JS arrays (nested per dimension, `null` elements); {@link PgArray} when a lower bound ≠ 1 |
 * | ranges, multiranges | {@link PgRange}, {@link PgMultirange} |
 * | composite types | a plain object, field name → value ({@link PgRecord}) |
 * | domains | the base type's value |
 * | anything we cannot interpret | {@link PgUnknown} |
 */
import { formatScalarText } from './scalar-text.js';
import type { PgDate, PgInterval, PgTime, PgTimestamp, PgTimeTz } from './temporal-values.js';
import { isRangeSpecial, quoteIfNeeded } from './text-quoting.js';

export {
  DATE_INFINITY_DAYS,
  DATE_MINUS_INFINITY_DAYS,
  PgDate,
  type PgInfinity,
  PgInterval,
  PgTime,
  PgTimestamp,
  PgTimeTz,
  TIMESTAMP_INFINITY_MICROS,
  TIMESTAMP_MINUS_INFINITY_MICROS,
} from './temporal-values.js';

/** A decoded column value. `null` is SQL NULL. */
export type PgValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Buffer
  | PgTimestamp
  | PgDate
  | PgTime
  | PgTimeTz
  | PgInterval
  | PgJson
  | PgUnknown
  | PgRange<PgValue>
  | PgMultirange<PgValue>
  | PgValue[]
  | PgRecord;

/**
 * A composite (row) value: field name → value, in the type's field order. A plain object, so
 * that `record.street` just works; fields named like `__proto__` are own properties too.
 */
export interface PgRecord {
  [field: string]: PgValue;
}

/** True for a composite value (a plain object), as opposed to arrays and the value classes. */
export function isPgRecord(value: unknown): value is PgRecord {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

/**
 * The text of a `json` or `jsonb` value, kept exactly as the server sent it: `JSON.parse` would
 * round big numbers (`1e400`, 20-digit ids) and `json` keeps duplicate keys and spacing.
 */
export class PgJson {
  constructor(readonly text: string) {}

  /** The parsed JSON — lossy for numbers beyond double precision; use `text` to keep them. */
  parse<T = unknown>(reviver?: (key: string, value: unknown) => unknown): T {
    return JSON.parse(this.text, reviver) as T;
  }

  toPostgres(): string {
    return this.text;
  }

  toString(): string {
    return this.text;
  }

  /** So `JSON.stringify` nests the document (lossy, as {@link parse}); `formatJsonValue` splices the exact text. */
  toJSON(): unknown {
    return this.parse();
  }
}

/**
 * A value of a type we do not interpret (a user-defined base type, an extension type such as
 * hstore or PostGIS geometry): its exact text, flagged by its class so consumers can tell it
 * from a known string type. Register a parser for the OID to get something richer.
 */
export class PgUnknown {
  constructor(
    /** The type's name (`hstore`), or `oid <n>` when the type was never loaded. */
    readonly typeName: string,
    /** The server's text form of the value. */
    readonly text: string,
    readonly typeOid: number,
  ) {}

  toPostgres(): string {
    return this.text;
  }

  toString(): string {
    return this.text;
  }

  toJSON(): string {
    return this.text;
  }
}

/** Formats a range bound (or an element) as the server would; defaults to the value's own text. */
export type BoundFormatter<T> = (value: T) => string;

/**
 * A range value. `lower`/`upper` are `null` when unbounded (Postgres then always reports the
 * bound exclusive); an empty range has `empty` set and no bounds.
 */
export class PgRange<T extends PgValue = PgValue> {
  constructor(
    readonly lower: T | null,
    readonly upper: T | null,
    readonly lowerInclusive: boolean,
    readonly upperInclusive: boolean,
    readonly empty = false,
  ) {}

  /** The empty range (`'empty'`). */
  static empty<T extends PgValue = PgValue>(): PgRange<T> {
    return new PgRange<T>(null, null, false, false, true);
  }

  /**
   * `[1,5)`, `["2020-01-01 00:00:00+00",)`, `empty`. Bounds are quoted as range_out quotes them.
   * @param formatBound the subtype's text form; the default suits every builtin subtype
   */
  toPostgres(formatBound: BoundFormatter<T> = formatScalarText): string {
    if (this.empty) return 'empty';
    const lower = this.lower === null ? '' : quoteIfNeeded(formatBound(this.lower), isRangeSpecial, 'double');
    const upper = this.upper === null ? '' : quoteIfNeeded(formatBound(this.upper), isRangeSpecial, 'double');
    return `${this.lowerInclusive ? '[' : '('}${lower},${upper}${this.upperInclusive ? ']' : ')'}`;
  }

  toString(): string {
    return this.toPostgres();
  }

  toJSON(): string {
    return this.toPostgres();
  }
}

/**
 * A multirange: an array of its (non-empty, ordered, non-overlapping) ranges. A class of its own
 * only so that it can tell itself from an array of ranges when printed; it is a real `Array`.
 */
export class PgMultirange<T extends PgValue = PgValue> extends Array<PgRange<T>> {
  // map/filter/slice return plain arrays: the result is no longer a multirange.
  static override get [Symbol.species](): ArrayConstructor {
    return Array;
  }

  constructor(ranges: Iterable<PgRange<T>> = []) {
    super();
    for (const range of ranges) this.push(range);
  }

  /** `{[1,3),[5,7)}`, `{}`. */
  toPostgres(formatBound: BoundFormatter<T> = formatScalarText): string {
    let text = '{';
    for (let i = 0; i < this.length; i++) text += (i === 0 ? '' : ',') + this[i]!.toPostgres(formatBound);
    return `${text}}`;
  }

  override toString(): string {
    return this.toPostgres();
  }

  toJSON(): string {
    return this.toPostgres();
  }
}

/**
 * An array whose lower bounds are not all 1 (`'[0:2]={a,b,c}'`). Arrays with the default bounds
 * — nearly all of them — are plain JS arrays; this subclass keeps the bounds (one per dimension,
 * outermost first) without changing how elements are read. Its bounds are not enumerable, so it
 * compares equal to a plain array of the same elements in deep-equality checks.
 */
export class PgArray<T extends PgValue = PgValue> extends Array<T> {
  static override get [Symbol.species](): ArrayConstructor {
    return Array;
  }

  readonly #lowerBounds: readonly number[];

  constructor(elements: Iterable<T>, lowerBounds: readonly number[]) {
    super();
    for (const element of elements) this.push(element);
    this.#lowerBounds = Object.freeze([...lowerBounds]);
  }

  /** The lower bound of each dimension, outermost first. */
  get lowerBounds(): readonly number[] {
    return this.#lowerBounds;
  }
}

/** The lower bound of each dimension of a decoded array: all 1 unless it is a {@link PgArray}. */
export function arrayLowerBounds(value: readonly PgValue[]): readonly number[] | undefined {
  return value instanceof PgArray ? value.lowerBounds : undefined;
}
