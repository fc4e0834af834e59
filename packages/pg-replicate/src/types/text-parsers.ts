/**
 * One parser per builtin base type, from the server's text output form to a {@link PgValue}.
 * Integers and text are by far the most common columns, so their paths are a plain character
 * scan (no regular expressions, no `Number()` that would accept `0x1f` or blanks). Containers
 * (arrays, ranges, composites) are built by the type registry from these.
 */
import {
  parseDate,
  parseInterval,
  parseTime,
  parseTimestamp,
  parseTimestampTz,
  parseTimeTz,
} from './datetime-text.js';
import { malformed } from './parse-error.js';
import { PgJson, type PgValue } from './values.js';

/** Turns one value's text form into its JS value. */
export type TextParser = (text: string) => PgValue;

/** Text types and every type whose natural JS form is the server's text (inet, money, geometry…). */
export function parseString(text: string): string {
  return text;
}

/** Reads an optionally negative decimal integer of at most `maxDigits` digits; NaN if malformed. */
function scanInteger(text: string, maxDigits: number): number {
  const length = text.length;
  let i = text.charCodeAt(0) === 0x2d ? 1 : 0;
  if (i === length || length - i > maxDigits) return Number.NaN;
  let value = 0;
  for (; i < length; i++) {
    const d = text.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return Number.NaN;
    value = value * 10 + d;
  }
  // `0 - 0` is +0: "-0" never yields a negative zero.
  return text.charCodeAt(0) === 0x2d ? 0 - value : value;
}

function integerParser(
  typeName: string,
  min: number,
  max: number,
  maxDigits: number,
): (text: string) => number {
  return (text) => {
    const value = scanInteger(text, maxDigits);
    if (!(value >= min && value <= max))
      throw malformed(typeName, text, Number.isNaN(value) ? undefined : 'out of range');
    return value;
  };
}

/** `int2` → number. */
export const parseInt2 = integerParser('int2', -32768, 32767, 5);
/** `int4` → number. */
export const parseInt4 = integerParser('int4', -2147483648, 2147483647, 10);
/** `oid` (and the other unsigned 32-bit ids: xid, cid) → number. */
export const parseOid = integerParser('oid', 0, 4294967295, 10);

const INT8_MIN = -9223372036854775808n;
const INT8_MAX = 9223372036854775807n;

/** `int8` → bigint (every digit kept). */
export function parseInt8(text: string): bigint {
  // Up to 15 digits a double is exact: skip the validating scan BigInt would need.
  if (text.length <= 15) {
    const value = scanInteger(text, 15);
    if (Number.isNaN(value)) throw malformed('int8', text);
    return BigInt(value);
  }
  return parseBigIntText(text, 'int8', INT8_MIN, INT8_MAX);
}

/** `xid8` → bigint (unsigned 64-bit). */
export function parseXid8(text: string): bigint {
  return parseBigIntText(text, 'xid8', 0n, 18446744073709551615n);
}

function parseBigIntText(text: string, typeName: string, min: bigint, max: bigint): bigint {
  // BigInt() alone accepts blanks, `0x…` and the empty string: check the digits first.
  let i = text.charCodeAt(0) === 0x2d ? 1 : 0;
  if (i === text.length || text.length > 21) throw malformed(typeName, text);
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) throw malformed(typeName, text);
  }
  const value = BigInt(text);
  if (value < min || value > max) throw malformed(typeName, text, 'out of range');
  return value;
}

/** Whether `text` is a plain decimal: `-`, digits, at most one `.`, digits (as numeric_out prints). */
function isDecimal(text: string, allowExponent: boolean): boolean {
  let i = text.charCodeAt(0) === 0x2d ? 1 : 0;
  let digitsSeen = 0;
  let dot = false;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) digitsSeen++;
    else if (c === 0x2e && !dot) dot = true;
    else if ((c === 0x65 || c === 0x45) && allowExponent && digitsSeen > 0) return isExponent(text, i + 1);
    else return false;
  }
  return digitsSeen > 0;
}

function isExponent(text: string, start: number): boolean {
  let i = start;
  const sign = text.charCodeAt(i);
  if (sign === 0x2b || sign === 0x2d) i++;
  if (i === text.length) return false;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** `numeric` → its exact decimal string (`NaN`, `Infinity`, `-Infinity` included). */
export function parseNumeric(text: string): string {
  if (isDecimal(text, false) || text === 'NaN' || text === 'Infinity' || text === '-Infinity') return text;
  throw malformed('numeric', text);
}

function floatParser(typeName: string): (text: string) => number {
  return (text) => {
    if (isDecimal(text, true)) return Number(text);
    if (text === 'NaN') return Number.NaN;
    if (text === 'Infinity') return Number.POSITIVE_INFINITY;
    if (text === '-Infinity') return Number.NEGATIVE_INFINITY;
    throw malformed(typeName, text);
  };
}

/**
 * `float4` → number: the double nearest the printed digits (`0.1`), not the widened float
 * (`0.10000000149011612`); `Math.fround` of it is exactly the stored float4, so nothing is lost.
 */
export const parseFloat4 = floatParser('float4');
/** `float8` → number. */
export const parseFloat8 = floatParser('float8');

/** `bool` → boolean (`t`/`f`). */
export function parseBool(text: string): boolean {
  if (text === 't') return true;
  if (text === 'f') return false;
  throw malformed('bool', text);
}

/** `bytea` → Buffer, from the hex form (`\x0102`) or, for text from elsewhere, the escape form. */
export function parseBytea(text: string): Buffer {
  if (text.charCodeAt(0) === 0x5c && text.charCodeAt(1) === 0x78) {
    const hexLength = text.length - 2;
    const bytes = Buffer.from(text.slice(2), 'hex');
    // Buffer.from stops silently at the first bad digit: a short result means bad input.
    if (hexLength % 2 !== 0 || bytes.length * 2 !== hexLength) throw malformed('bytea', text);
    return bytes;
  }
  return parseEscapedBytea(text);
}

/** bytea_output=escape: printable ASCII as is, `\\` for a backslash, `\ooo` octal for the rest. */
function parseEscapedBytea(text: string): Buffer {
  const bytes = Buffer.allocUnsafe(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) throw malformed('bytea', text);
    if (c !== 0x5c) {
      bytes[n++] = c;
    } else if (text.charCodeAt(i + 1) === 0x5c) {
      bytes[n++] = 0x5c;
      i++;
    } else {
      const octal = text.slice(i + 1, i + 4);
      const value = octal.length === 3 && /^[0-3][0-7]{2}$/.test(octal) ? Number.parseInt(octal, 8) : -1;
      if (value < 0) throw malformed('bytea', text);
      bytes[n++] = value;
      i += 3;
    }
  }
  return bytes.subarray(0, n);
}

/** `json`/`jsonb` → {@link PgJson} with the exact text. */
export function parseJson(text: string): PgJson {
  return new PgJson(text);
}

/**
 * Parsers of the builtin base types that are not plain text, by type name. Every other builtin
 * base type (text-like, uuid, inet, money, geometry, bit strings, xml, tsvector, pg_lsn…) reads as
 * its string.
 */
export const BUILTIN_TEXT_PARSERS: Readonly<Record<string, TextParser>> = {
  bool: parseBool,
  int2: parseInt2,
  int4: parseInt4,
  int8: parseInt8,
  oid: parseOid,
  xid: integerParser('xid', 0, 4294967295, 10),
  cid: integerParser('cid', 0, 4294967295, 10),
  xid8: parseXid8,
  float4: parseFloat4,
  float8: parseFloat8,
  numeric: parseNumeric,
  bytea: parseBytea,
  json: parseJson,
  jsonb: parseJson,
  date: parseDate,
  time: parseTime,
  timetz: parseTimeTz,
  timestamp: parseTimestamp,
  timestamptz: parseTimestampTz,
  interval: parseInterval,
};
