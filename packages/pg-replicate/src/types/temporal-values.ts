/**
 * Exact date/time values. Postgres keeps microseconds and years far outside what a JS `Date`
 * can hold (4713 BC to 294 276 AD for timestamps, 5 874 897 AD for dates) plus ±infinity, so a
 * `Date` would silently lose data: these classes keep the server's integers instead and print
 * them back exactly as the server does (`toPostgres()`), or as ISO 8601 (`toISOString()`).
 *
 * ±infinity is kept as the server's own sentinel integers (shifted to the Unix epoch), so the
 * numeric fields still sort infinite values after (before) every finite one; `special` says so.
 */
import {
  civilFromDays,
  formatFraction,
  formatIsoDate,
  formatOffset,
  formatPgDate,
  formatTimeOfDay,
  MICROS_PER_DAY,
  pad2,
} from './calendar.js';

/** An infinite date/time value, as Postgres spells it. */
export type PgInfinity = 'infinity' | '-infinity';

/** Postgres counts from 2000-01-01; we count from 1970-01-01. */
const PG_EPOCH_DAYS = 10_957;
const PG_EPOCH_MICROS = 946_684_800_000_000n;
const INT64_MAX = 9_223_372_036_854_775_807n;
const INT64_MIN = -9_223_372_036_854_775_808n;
const INT32_MAX = 2_147_483_647;
const INT32_MIN = -2_147_483_648;

/** `epochMicros` of `'infinity'::timestamp` (Postgres' DT_NOEND shifted to the Unix epoch). */
export const TIMESTAMP_INFINITY_MICROS = INT64_MAX + PG_EPOCH_MICROS;
/** `epochMicros` of `'-infinity'::timestamp` (DT_NOBEGIN shifted to the Unix epoch). */
export const TIMESTAMP_MINUS_INFINITY_MICROS = INT64_MIN + PG_EPOCH_MICROS;
/** `epochDays` of `'infinity'::date`. */
export const DATE_INFINITY_DAYS = INT32_MAX + PG_EPOCH_DAYS;
/** `epochDays` of `'-infinity'::date`. */
export const DATE_MINUS_INFINITY_DAYS = INT32_MIN + PG_EPOCH_DAYS;

const DAY = BigInt(MICROS_PER_DAY);
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** Splits microseconds since the epoch into whole days and microseconds into the day (floored). */
function splitDays(epochMicros: bigint): [number, number] {
  if (epochMicros >= SAFE_MIN && epochMicros <= SAFE_MAX) {
    const micros = Number(epochMicros);
    let days = Math.floor(micros / MICROS_PER_DAY);
    let rest = micros - days * MICROS_PER_DAY;
    // The float division can land one off next to a day boundary; the remainder is exact.
    if (rest < 0) {
      days--;
      rest += MICROS_PER_DAY;
    } else if (rest >= MICROS_PER_DAY) {
      days++;
      rest -= MICROS_PER_DAY;
    }
    return [days, rest];
  }
  let days = epochMicros / DAY;
  let rest = epochMicros % DAY;
  if (rest < 0n) {
    days--;
    rest += DAY;
  }
  return [Number(days), Number(rest)];
}

/**
 * A `timestamp` or `timestamptz`: exact microseconds since 1970-01-01 00:00:00 UTC. For
 * `timestamp` (without time zone) the wall-clock reading is taken as if it were UTC.
 */
export class PgTimestamp {
  /** `'infinity'`/`'-infinity'` for the infinite values, else `null`. */
  readonly special: PgInfinity | null;

  constructor(
    /** Microseconds since the Unix epoch; {@link TIMESTAMP_INFINITY_MICROS} and its negative twin for ±infinity. */
    readonly epochMicros: bigint,
    /** `timestamptz` (true) or `timestamp` (false). */
    readonly withTimeZone: boolean,
  ) {
    this.special =
      epochMicros >= TIMESTAMP_INFINITY_MICROS
        ? 'infinity'
        : epochMicros <= TIMESTAMP_MINUS_INFINITY_MICROS
          ? '-infinity'
          : null;
  }

  /** `infinity` or `-infinity` of either kind. */
  static infinity(sign: 1 | -1, withTimeZone: boolean): PgTimestamp {
    return new PgTimestamp(
      sign > 0 ? TIMESTAMP_INFINITY_MICROS : TIMESTAMP_MINUS_INFINITY_MICROS,
      withTimeZone,
    );
  }

  /** From a JS `Date` (millisecond precision). */
  static fromDate(date: Date, withTimeZone = true): PgTimestamp {
    return new PgTimestamp(BigInt(date.getTime()) * 1000n, withTimeZone);
  }

  /**
   * Postgres' own text (`::text` with TimeZone=UTC, DateStyle=ISO): `2024-01-02 03:04:05.5+00`,
   * `0044-03-15 12:00:00 BC`, `infinity`. Fractions lose trailing zeros, as the server prints them.
   */
  toPostgres(): string {
    if (this.special !== null) return this.special;
    const [days, micros] = splitDays(this.epochMicros);
    const [year, month, day] = civilFromDays(days);
    const text = `${formatPgDate(year, month, day)} ${formatTimeOfDay(micros, false)}`;
    const zoned = this.withTimeZone ? `${text}+00` : text;
    return year <= 0 ? `${zoned} BC` : zoned;
  }

  /**
   * ISO 8601, one canonical form: always six fractional digits (`2024-01-02T03:04:05.500000Z`),
   * `Z` for timestamptz and no suffix for timestamp, astronomical years (1 BC is `0000`), and the
   * expanded `+010000-…`/`-000043-…` form outside 0000–9999; `infinity`/`-infinity` as is.
   */
  toISOString(): string {
    if (this.special !== null) return this.special;
    const [days, micros] = splitDays(this.epochMicros);
    const [year, month, day] = civilFromDays(days);
    return `${formatIsoDate(year, month, day)}T${formatTimeOfDay(micros, true)}${this.withTimeZone ? 'Z' : ''}`;
  }

  /**
   * A JS `Date` — lossy: microseconds are floored to milliseconds, and infinite values or years
   * beyond ±275 760 give an Invalid Date.
   */
  toDate(): Date {
    if (this.special !== null) return new Date(Number.NaN);
    const micros = this.epochMicros;
    const millis = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
    return new Date(Number(millis));
  }

  toString(): string {
    return this.toPostgres();
  }

  toJSON(): string {
    return this.toISOString();
  }
}

/** A `date`: days since 1970-01-01 (negative before), or ±infinity. */
export class PgDate {
  readonly special: PgInfinity | null;

  constructor(
    /** Days since the Unix epoch; {@link DATE_INFINITY_DAYS}/{@link DATE_MINUS_INFINITY_DAYS} for ±infinity. */
    readonly epochDays: number,
  ) {
    this.special =
      epochDays >= DATE_INFINITY_DAYS
        ? 'infinity'
        : epochDays <= DATE_MINUS_INFINITY_DAYS
          ? '-infinity'
          : null;
  }

  static infinity(sign: 1 | -1): PgDate {
    return new PgDate(sign > 0 ? DATE_INFINITY_DAYS : DATE_MINUS_INFINITY_DAYS);
  }

  /** `2024-01-02`, `0044-03-15 BC`, `infinity`. */
  toPostgres(): string {
    if (this.special !== null) return this.special;
    const [year, month, day] = civilFromDays(this.epochDays);
    const text = formatPgDate(year, month, day);
    return year <= 0 ? `${text} BC` : text;
  }

  /** ISO 8601 with astronomical, expanded years (see {@link PgTimestamp.toISOString}). */
  toISOString(): string {
    if (this.special !== null) return this.special;
    const [year, month, day] = civilFromDays(this.epochDays);
    return formatIsoDate(year, month, day);
  }

  /** Midnight UTC of the day as a JS `Date` (Invalid Date when infinite or out of `Date`'s range). */
  toDate(): Date {
    return new Date(this.special !== null ? Number.NaN : this.epochDays * 86_400_000);
  }

  toString(): string {
    return this.toPostgres();
  }

  toJSON(): string {
    return this.toPostgres();
  }
}

/** A `time` (without time zone): microseconds since midnight, `24:00:00` included. */
export class PgTime {
  constructor(readonly micros: number) {}

  /** `13:45:00`, `13:45:00.25`, `24:00:00`. */
  toPostgres(): string {
    return formatTimeOfDay(this.micros, false);
  }

  /** `13:45:00.250000`: always six fractional digits. */
  toISOString(): string {
    return formatTimeOfDay(this.micros, true);
  }

  toString(): string {
    return this.toPostgres();
  }

  toJSON(): string {
    return this.toPostgres();
  }
}

/** A `timetz`: a time of day and the UTC offset it was written with. */
export class PgTimeTz {
  constructor(
    /** Microseconds since midnight, local to the offset. */
    readonly micros: number,
    /** Seconds east of UTC (ISO sign convention: `+05:30` is 19800). Postgres allows ±15:59:59. */
    readonly offsetSeconds: number,
  ) {}

  /** `12:00:00.1+05:30:15`, `12:00:00-08`. */
  toPostgres(): string {
    return formatTimeOfDay(this.micros, false) + formatOffset(this.offsetSeconds, false);
  }

  /**
   * `12:00:00.100000+05:30`, `Z` for a zero offset. Offsets with seconds (not expressible in
   * ISO 8601) keep them: `+05:30:15`.
   */
  toISOString(): string {
    return formatTimeOfDay(this.micros, true) + formatOffset(this.offsetSeconds, true);
  }

  toString(): string {
    return this.toPostgres();
  }

  toJSON(): string {
    return this.toPostgres();
  }
}

const MICROS_PER_HOUR = 3_600_000_000n;

/**
 * An `interval`: Postgres keeps months, days and microseconds apart (a month is not a fixed
 * number of days, nor a day a fixed number of hours across DST), and so does this class.
 * PG 17's ±infinity is all three fields at their maximum (minimum).
 */
export class PgInterval {
  readonly special: PgInfinity | null;

  constructor(
    readonly months: number,
    readonly days: number,
    readonly micros: bigint,
  ) {
    this.special =
      months === INT32_MAX && days === INT32_MAX && micros === INT64_MAX
        ? 'infinity'
        : months === INT32_MIN && days === INT32_MIN && micros === INT64_MIN
          ? '-infinity'
          : null;
  }

  static infinity(sign: 1 | -1): PgInterval {
    return sign > 0
      ? new PgInterval(INT32_MAX, INT32_MAX, INT64_MAX)
      : new PgInterval(INT32_MIN, INT32_MIN, INT64_MIN);
  }

  /**
   * IntervalStyle=postgres, as the server prints it: `1 year 2 mons`, `-1 days +02:03:00`,
   * `00:00:00`, `infinity`.
   */
  toPostgres(): string {
    if (this.special !== null) return this.special;
    const parts = new PartWriter();
    parts.add(Math.trunc(this.months / 12), 'year');
    parts.add(this.months % 12, 'mon');
    parts.add(this.days, 'day');
    if (parts.isZero || this.micros !== 0n) {
      const minus = this.micros < 0n;
      const [hours, minutes, seconds, fraction] = splitTime(minus ? -this.micros : this.micros);
      const sign = minus ? '-' : parts.isBefore ? '+' : '';
      const hh = hours < 10n ? `0${hours}` : String(hours);
      parts.text += `${parts.isZero ? '' : ' '}${sign}${hh}:${pad2(minutes)}:${pad2(seconds)}`;
      parts.text += formatFraction(fraction, false);
    }
    return parts.text;
  }

  /** ISO 8601 duration, as IntervalStyle=iso_8601 prints it: `P1Y2M3DT4H5M6.5S`, `PT0S`, `P-1D`. */
  toISOString(): string {
    if (this.special !== null) return this.special;
    const minus = this.micros < 0n;
    const [hours, minutes, seconds, fraction] = splitTime(minus ? -this.micros : this.micros);
    const sign = minus ? '-' : '';
    const years = Math.trunc(this.months / 12);
    const months = this.months % 12;
    if (years === 0 && months === 0 && this.days === 0 && this.micros === 0n) return 'PT0S';
    let text = 'P';
    if (years !== 0) text += `${years}Y`;
    if (months !== 0) text += `${months}M`;
    if (this.days !== 0) text += `${this.days}D`;
    if (this.micros !== 0n) text += 'T';
    if (hours !== 0n) text += `${sign}${hours}H`;
    if (minutes !== 0) text += `${sign}${minutes}M`;
    if (seconds !== 0 || fraction !== 0) text += `${sign}${seconds}${formatFraction(fraction, false)}S`;
    return text;
  }

  toString(): string {
    return this.toPostgres();
  }

  toJSON(): string {
    return this.toPostgres();
  }
}

/** Hours (unbounded), minutes, seconds and microseconds of a non-negative microsecond count. */
function splitTime(micros: bigint): [bigint, number, number, number] {
  const hours = micros / MICROS_PER_HOUR;
  const rest = Number(micros % MICROS_PER_HOUR);
  const minutes = Math.floor(rest / 60_000_000);
  const inMinute = rest - minutes * 60_000_000;
  const seconds = Math.floor(inMinute / 1_000_000);
  return [hours, minutes, seconds, inMinute - seconds * 1_000_000];
}

/**
 * Writes `N unit(s)` parts the way the server's EncodeInterval does: a `+` marks a positive
 * part only right after a negative one (`-1 days +02:03:00`), a quirk kept for compatibility.
 */
class PartWriter {
  text = '';
  isZero = true;
  isBefore = false;

  add(value: number, unit: string): void {
    if (value === 0) return;
    this.text += `${this.isZero ? '' : ' '}${this.isBefore && value > 0 ? '+' : ''}${value} ${unit}${value !== 1 ? 's' : ''}`;
    this.isBefore = value < 0;
    this.isZero = false;
  }
}
