/**
 * Parsers for the date/time text forms our sessions produce (DateStyle=ISO, TimeZone=UTC,
 * IntervalStyle=postgres). Timestamps are the hottest values after integers, so these read the
 * fixed layout with a character cursor instead of regular expressions.
 *
 * Layouts: `YYYY-MM-DD[ BC]`, `HH:MM:SS[.f]`, `…±HH[:MM[:SS]]` (other offsets than +00 are
 * accepted and applied, for text produced under another TimeZone), years of 4 or more digits.
 */
import { daysFromCivil, MICROS_PER_SECOND, SECONDS_PER_DAY } from './calendar.js';
import { malformed } from './parse-error.js';
import { PgDate, PgInterval, PgTime, PgTimestamp, PgTimeTz } from './temporal-values.js';

/** Reading position in the text being parsed; the parsers here never call each other re-entrantly. */
let at = 0;

/** Reads `min`–`max` decimal digits at `at`; -1 if there are fewer than `min`. */
function digits(text: string, min: number, max: number): number {
  let value = 0;
  let count = 0;
  while (count < max && at < text.length) {
    const d = text.charCodeAt(at) - 0x30;
    if (d < 0 || d > 9) break;
    value = value * 10 + d;
    at++;
    count++;
  }
  return count < min ? -1 : value;
}

function expect(text: string, code: number): boolean {
  if (text.charCodeAt(at) !== code) return false;
  at++;
  return true;
}

/** `YYYY-MM-DD` at `at` → `[year of era, month, day]` (the caller applies ` BC`), or null. */
function readDate(text: string): [number, number, number] | null {
  const year = digits(text, 1, 9);
  if (year < 0 || !expect(text, 0x2d)) return null;
  const month = digits(text, 2, 2);
  if (month < 1 || month > 12 || !expect(text, 0x2d)) return null;
  const day = digits(text, 2, 2);
  if (day < 1 || day > 31) return null;
  return [year, month, day];
}

/** `HH:MM:SS[.ffffff]` at `at` → microseconds since midnight, or -1. */
function readTime(text: string): number {
  const hours = digits(text, 2, 2);
  if (hours < 0 || hours > 24 || !expect(text, 0x3a)) return -1;
  const rest = readMinutesSeconds(text);
  if (rest < 0) return -1;
  const micros = hours * 3_600_000_000 + rest;
  return micros > 86_400_000_000 ? -1 : micros;
}

/** `MM:SS[.ffffff]` at `at` → microseconds, or -1. */
function readMinutesSeconds(text: string): number {
  const minutes = digits(text, 2, 2);
  if (minutes < 0 || minutes > 59 || !expect(text, 0x3a)) return -1;
  const seconds = digits(text, 2, 2);
  if (seconds < 0 || seconds > 60) return -1;
  let fraction = 0;
  if (text.charCodeAt(at) === 0x2e) {
    const start = ++at;
    fraction = digits(text, 1, 6);
    if (fraction < 0) return -1;
    for (let scale = at - start; scale < 6; scale++) fraction *= 10;
  }
  return (minutes * 60 + seconds) * MICROS_PER_SECOND + fraction;
}

/** `±HH[:MM[:SS]]` at `at` → seconds east of UTC, or NaN. */
function readOffset(text: string): number {
  const sign = text.charCodeAt(at);
  if (sign !== 0x2b && sign !== 0x2d) return Number.NaN;
  at++;
  const hours = digits(text, 2, 2);
  if (hours < 0) return Number.NaN;
  let minutes = 0;
  let seconds = 0;
  if (expect(text, 0x3a)) {
    minutes = digits(text, 2, 2);
    if (minutes < 0 || minutes > 59) return Number.NaN;
    if (expect(text, 0x3a)) {
      seconds = digits(text, 2, 2);
      if (seconds < 0 || seconds > 59) return Number.NaN;
    }
  }
  const total = hours * 3600 + minutes * 60 + seconds;
  return sign === 0x2d ? -total : total;
}

/** Reads an optional ` BC` and requires the end of the text; null when something else follows. */
function readEra(text: string): boolean | null {
  if (at === text.length) return false;
  if (text.length - at === 3 && text.endsWith(' BC')) return true;
  return null;
}

/** `infinity` / `-infinity` → +1 / -1, else 0. */
function infinitySign(text: string): 1 | -1 | 0 {
  if (text === 'infinity') return 1;
  if (text === '-infinity') return -1;
  return 0;
}

/** `date`: `2024-01-02`, `0044-03-15 BC`, `infinity`. */
export function parseDate(text: string): PgDate {
  const infinite = infinitySign(text);
  if (infinite !== 0) return PgDate.infinity(infinite);
  at = 0;
  const ymd = readDate(text);
  const bc = ymd === null ? null : readEra(text);
  if (ymd === null || bc === null) throw malformed('date', text);
  return new PgDate(daysFromCivil(bc ? 1 - ymd[0] : ymd[0], ymd[1], ymd[2]));
}

/** `time`: `13:45:00.25`, `24:00:00`. */
export function parseTime(text: string): PgTime {
  at = 0;
  const micros = readTime(text);
  if (micros < 0 || at !== text.length) throw malformed('time', text);
  return new PgTime(micros);
}

/** `timetz`: `12:00:00.1+05:30:15`. */
export function parseTimeTz(text: string): PgTimeTz {
  at = 0;
  const micros = readTime(text);
  const offset = micros < 0 ? Number.NaN : readOffset(text);
  if (Number.isNaN(offset) || at !== text.length) throw malformed('timetz', text);
  return new PgTimeTz(micros, offset);
}

/** `timestamp`: `2024-01-02 03:04:05.123456`, `… BC`, `±infinity`. */
export function parseTimestamp(text: string): PgTimestamp {
  return readTimestamp(text, false);
}

/** `timestamptz`: `2024-01-02 03:04:05.123456+00`, `… BC`, `±infinity`. */
export function parseTimestampTz(text: string): PgTimestamp {
  return readTimestamp(text, true);
}

function readTimestamp(text: string, withTimeZone: boolean): PgTimestamp {
  const infinite = infinitySign(text);
  if (infinite !== 0) return PgTimestamp.infinity(infinite, withTimeZone);
  at = 0;
  const ymd = readDate(text);
  const micros = ymd !== null && expect(text, 0x20) ? readTime(text) : -1;
  const offset = micros < 0 ? Number.NaN : withTimeZone ? readOffset(text) : 0;
  const bc = Number.isNaN(offset) ? null : readEra(text);
  if (ymd === null || bc === null) throw malformed(withTimeZone ? 'timestamptz' : 'timestamp', text);
  const days = daysFromCivil(bc ? 1 - ymd[0] : ymd[0], ymd[1], ymd[2]);
  const seconds = days * SECONDS_PER_DAY - offset;
  // Up to year ~2255 the microsecond count fits a double exactly: one BigInt conversion.
  const whole = seconds * MICROS_PER_SECOND;
  if (Number.isSafeInteger(whole + micros)) return new PgTimestamp(BigInt(whole + micros), withTimeZone);
  return new PgTimestamp(BigInt(seconds) * 1_000_000n + BigInt(micros), withTimeZone);
}

/** `interval` in IntervalStyle=postgres: `1 year 2 mons -3 days +04:05:06.7`, `infinity`. */
export function parseInterval(text: string): PgInterval {
  const infinite = infinitySign(text);
  if (infinite !== 0) return PgInterval.infinity(infinite);
  const result = readInterval(text);
  if (result === null) throw malformed('interval', text);
  return result;
}

const UNITS: Record<string, 0 | 1 | 2> = { year: 0, years: 0, mon: 1, mons: 1, day: 2, days: 2 };

function readInterval(text: string): PgInterval | null {
  at = 0;
  let months = 0;
  let days = 0;
  let micros = 0n;
  let lastUnit = -1;
  while (at < text.length) {
    if (lastUnit >= 0 && !expect(text, 0x20)) return null;
    const sign = text.charCodeAt(at);
    const negative = sign === 0x2d;
    if (negative || sign === 0x2b) at++;
    const start = at;
    const value = digits(text, 1, 20);
    if (value < 0) return null;
    if (text.charCodeAt(at) === 0x3a) {
      // The time part comes last: hours may exceed 24 and 2^53 microseconds.
      if (at - start < 2) return null;
      const hours = BigInt(text.slice(start, at));
      at++;
      const rest = readMinutesSeconds(text);
      if (rest < 0 || at !== text.length) return null;
      const total = hours * 3_600_000_000n + BigInt(rest);
      micros = negative ? -total : total;
      break;
    }
    if (!expect(text, 0x20)) return null;
    const end = text.indexOf(' ', at);
    const unit = UNITS[text.slice(at, end < 0 ? text.length : end)];
    if (unit === undefined || unit <= lastUnit || !Number.isSafeInteger(value)) return null;
    at = end < 0 ? text.length : end;
    const signed = negative ? -value : value;
    if (unit === 0) months += signed * 12;
    else if (unit === 1) months += signed;
    else days = signed;
    lastUnit = unit;
  }
  return at === 0 ? null : new PgInterval(months, days, micros);
}
