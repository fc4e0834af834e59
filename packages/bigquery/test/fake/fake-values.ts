/**
 * What the fake accepts in appended rows, per BigQuery column type, and how it stores the value:
 * the protobuf types the Storage Write API documents for each BigQuery type
 * (https://cloud.google.com/bigquery/docs/supported-data-types), BigQuery's value ranges, and the
 * REST API's output form (what tables and queries return). A value outside them is a row error,
 * as on the real service.
 */
import type { Cell, FakeField } from './fake-table.js';

/** Protobuf scalar type names, as protobufjs spells them. */
export type ProtoTypeName =
  | 'double'
  | 'float'
  | 'int32'
  | 'int64'
  | 'uint32'
  | 'uint64'
  | 'bool'
  | 'string'
  | 'bytes';

/** Protobuf types accepted for each BigQuery type (the documented table; wrapper and message types left out). */
const ACCEPTED: Readonly<Record<string, readonly ProtoTypeName[]>> = {
  BOOL: ['bool', 'int32', 'int64', 'uint32', 'uint64'],
  BYTES: ['bytes', 'string'],
  DATE: ['int32', 'int64', 'string'],
  DATETIME: ['string', 'int64'],
  TIME: ['string', 'int64'],
  FLOAT64: ['double', 'float'],
  INT64: ['int32', 'int64', 'uint32'],
  JSON: ['string'],
  NUMERIC: ['int32', 'int64', 'uint32', 'uint64', 'double', 'float', 'string', 'bytes'],
  BIGNUMERIC: ['int32', 'int64', 'uint32', 'uint64', 'double', 'float', 'string', 'bytes'],
  STRING: ['string'],
  TIMESTAMP: ['int64', 'int32', 'uint32'],
  INTERVAL: ['string'],
};

/** Standard SQL names for the legacy type names the REST API also accepts. */
const ALIASES: Readonly<Record<string, string>> = {
  INTEGER: 'INT64',
  FLOAT: 'FLOAT64',
  BOOLEAN: 'BOOL',
  BIGDECIMAL: 'BIGNUMERIC',
  DECIMAL: 'NUMERIC',
};

export function standardType(type: string): string {
  const upper = type.toUpperCase();
  return ALIASES[upper] ?? upper;
}

export function isKnownType(type: string): boolean {
  return standardType(type) in ACCEPTED;
}

/** Why `proto` cannot carry values of `field`, or null when it can. */
export function protoMismatch(field: FakeField, proto: ProtoTypeName, repeated: boolean): string | null {
  const accepted = ACCEPTED[standardType(field.type)];
  if (accepted === undefined)
    return `column ${field.name} has type ${field.type}, which the fake does not model`;
  if (!accepted.includes(proto))
    return `field ${field.name}: protobuf type ${proto} cannot be written to a ${standardType(field.type)} column`;
  if (repeated !== (field.mode === 'REPEATED'))
    return `field ${field.name}: ${repeated ? 'a repeated' : 'a singular'} protobuf field for a ${field.mode} column`;
  return null;
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const MIN_DATE_DAYS = -719_162;
const MAX_DATE_DAYS = 2_932_896;
const MIN_TIMESTAMP = -62_135_596_800_000_000n;
const MAX_TIMESTAMP = 253_402_300_799_999_999n;

/** A value BigQuery rejects; becomes a row error naming the field. */
export class ValueError extends Error {}

/** One decoded protobuf value (protobufjs `toObject` with longs and enums as strings, bytes as Buffer). */
export type Decoded = string | number | boolean | Buffer;

/** Converts a decoded value to the stored (REST output) form of the column's type, or throws {@link ValueError}. */
export function toCell(field: FakeField, value: Decoded): Cell {
  const type = standardType(field.type);
  switch (type) {
    case 'BOOL':
      return typeof value === 'boolean' ? String(value) : String(BigInt(String(value)) !== 0n);
    case 'INT64': {
      const n = BigInt(String(value));
      if (n < INT64_MIN || n > INT64_MAX) throw new ValueError(`${n} is out of INT64 range`);
      return n.toString();
    }
    case 'FLOAT64':
      return formatFloat(Number(value));
    case 'NUMERIC':
    case 'BIGNUMERIC':
      return canonicalDecimal(typeof value === 'string' ? value : String(value), type);
    case 'STRING':
      return String(value);
    case 'BYTES':
      return (Buffer.isBuffer(value) ? value : Buffer.from(String(value), 'utf8')).toString('base64');
    case 'JSON':
      return canonicalJson(String(value));
    case 'DATE': {
      if (typeof value === 'string') return checkDateText(value);
      const days = Number(value);
      if (!Number.isInteger(days) || days < MIN_DATE_DAYS || days > MAX_DATE_DAYS)
        throw new ValueError(`DATE ${value} is out of range`);
      return new Date(days * 86_400_000).toISOString().slice(0, 10);
    }
    case 'TIMESTAMP': {
      const micros = BigInt(String(value));
      if (micros < MIN_TIMESTAMP || micros > MAX_TIMESTAMP)
        throw new ValueError(`TIMESTAMP ${micros} is out of range`);
      return micros.toString();
    }
    case 'DATETIME':
      return canonicalDatetime(String(value));
    case 'TIME':
      return canonicalTime(String(value));
    case 'INTERVAL':
      return canonicalInterval(String(value));
    default:
      throw new ValueError(`type ${field.type} is not modeled`);
  }
}

/** FLOAT64 as the REST API prints it: the shortest round-trip form, `NaN`, `Infinity`. */
export function formatFloat(value: number): string {
  return String(value);
}

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?$/;

/** NUMERIC: 29 integer and 9 fractional digits; BIGNUMERIC: 38 and 38. Canonical: no trailing zeros. */
export function canonicalDecimal(text: string, type: 'NUMERIC' | 'BIGNUMERIC'): string {
  const match = DECIMAL.exec(text.trim());
  if (match === null || (match[2] === '' && (match[3] ?? '') === ''))
    throw new ValueError(`${JSON.stringify(text)} is not a valid ${type}`);
  const integer = match[2]!.replace(/^0+/, '');
  const fraction = (match[3] ?? '').replace(/0+$/, '');
  const [maxInteger, maxScale] = type === 'NUMERIC' ? [29, 9] : [38, 38];
  if (integer.length > maxInteger || fraction.length > maxScale)
    throw new ValueError(`${text} is out of ${type} range or precision`);
  const digits = `${integer === '' ? '0' : integer}${fraction === '' ? '' : `.${fraction}`}`;
  return match[1] === '-' && digits !== '0' ? `-${digits}` : digits;
}

function checkDateText(text: string): string {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text) || Number.isNaN(Date.parse(`${text}T00:00:00Z`)))
    throw new ValueError(`${JSON.stringify(text)} is not a valid DATE`);
  return text;
}

function canonicalFraction(fraction: string | undefined): string {
  const trimmed = (fraction ?? '').replace(/0+$/, '');
  return trimmed === '' ? '' : `.${trimmed}`;
}

function canonicalDatetime(text: string): string {
  const match = /^(\d{4}-\d{1,2}-\d{1,2})(?:[ T](\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,6}))?)?$/.exec(text);
  if (match === null) throw new ValueError(`${JSON.stringify(text)} is not a valid DATETIME`);
  const [year, month, day] = match[1]!.split('-').map(Number) as [number, number, number];
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > 31 || Number(match[2] ?? 0) > 23)
    throw new ValueError(`${JSON.stringify(text)} is out of DATETIME range`);
  const date = `${String(year).padStart(4, '0')}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`;
  const time = [match[2], match[3], match[4]]
    .map((part) => String(Number(part ?? 0)).padStart(2, '0'))
    .join(':');
  return `${date}T${time}${canonicalFraction(match[5])}`;
}

function canonicalTime(text: string): string {
  const match = /^(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,6}))?$/.exec(text);
  if (match === null || Number(match[1]) > 23 || Number(match[2]) > 59 || Number(match[3]) > 59)
    throw new ValueError(`${JSON.stringify(text)} is not a valid TIME`);
  const time = [match[1], match[2], match[3]].map((part) => String(Number(part)).padStart(2, '0')).join(':');
  return `${time}${canonicalFraction(match[4])}`;
}

/** The canonical `Y-M D H:M:S[.F]` interval format, within BigQuery's ranges. */
function canonicalInterval(text: string): string {
  const match = /^(-?)(\d+)-(\d+) (-?\d+) (-?)(\d+):(\d+):(\d+)(?:\.(\d{1,6}))?$/.exec(text);
  if (match === null) throw new ValueError(`${JSON.stringify(text)} is not a canonical INTERVAL`);
  const months = Number(match[2]) * 12 + Number(match[3]);
  const hours = Number(match[6]);
  if (
    Number(match[3]) > 11 ||
    months > 120_000 ||
    Math.abs(Number(match[4])) > 3_660_000 ||
    hours > 87_840_000 ||
    Number(match[7]) > 59 ||
    Number(match[8]) > 59
  ) {
    throw new ValueError(`${JSON.stringify(text)} is out of INTERVAL range`);
  }
  return text;
}

/**
 * JSON as BigQuery stores it: validated, compact, first of duplicate keys kept, and numbers kept
 * as written but only if exact as an INT64, UINT64 or FLOAT64 (BigQuery's `wide_number_mode`
 * 'exact', which rejects the rest).
 */
export function canonicalJson(text: string): string {
  const parser = new JsonCanonicalizer(text);
  const out = parser.value();
  parser.end();
  return out;
}

class JsonCanonicalizer {
  #at = 0;
  constructor(private readonly text: string) {}

  end(): void {
    this.#space();
    if (this.#at !== this.text.length) this.#fail();
  }

  value(): string {
    this.#space();
    const c = this.text[this.#at];
    if (c === '{') return this.#object();
    if (c === '[') return this.#array();
    if (c === '"') return this.#string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.#number();
    for (const word of ['true', 'false', 'null']) {
      if (this.text.startsWith(word, this.#at)) {
        this.#at += word.length;
        return word;
      }
    }
    return this.#fail();
  }

  #object(): string {
    this.#at++;
    const seen = new Set<string>();
    const members: string[] = [];
    this.#space();
    if (this.text[this.#at] === '}') {
      this.#at++;
      return '{}';
    }
    for (;;) {
      this.#space();
      const key = this.#string();
      this.#space();
      if (this.text[this.#at++] !== ':') this.#fail();
      const value = this.value();
      if (!seen.has(key)) members.push(`${key}:${value}`);
      seen.add(key);
      this.#space();
      const next = this.text[this.#at++];
      if (next === '}') return `{${members.join(',')}}`;
      if (next !== ',') this.#fail();
    }
  }

  #array(): string {
    this.#at++;
    const items: string[] = [];
    this.#space();
    if (this.text[this.#at] === ']') {
      this.#at++;
      return '[]';
    }
    for (;;) {
      items.push(this.value());
      this.#space();
      const next = this.text[this.#at++];
      if (next === ']') return `[${items.join(',')}]`;
      if (next !== ',') this.#fail();
    }
  }

  #string(): string {
    const match = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*"/.exec(
      this.text.slice(this.#at),
    );
    if (match === null) return this.#fail();
    this.#at += match[0].length;
    return JSON.stringify(JSON.parse(match[0]));
  }

  #number(): string {
    const match = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(this.text.slice(this.#at));
    if (match === null) return this.#fail();
    this.#at += match[0].length;
    const literal = match[0];
    if (/^-?\d+$/.test(literal)) {
      const n = BigInt(literal);
      if (n >= INT64_MIN && n < 1n << 64n) return literal;
    }
    if (!sameDecimal(literal, String(Number(literal))))
      throw new ValueError(`JSON number ${literal} cannot be stored exactly (wide_number_mode=exact)`);
    return literal;
  }

  #space(): void {
    while (/\s/.test(this.text[this.#at] ?? '')) this.#at++;
  }

  #fail(): never {
    throw new ValueError(`invalid JSON at offset ${this.#at}`);
  }
}

/** Whether two decimal literals denote the same number (exactly, digits compared). */
function sameDecimal(a: string, b: string): boolean {
  const normalize = (text: string): string => {
    const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
    if (match === null) return text;
    const digits = `${match[2]}${match[3] ?? ''}`.replace(/^0+/, '');
    const exponent = Number(match[4] ?? 0) - (match[3] ?? '').length;
    const trimmed = digits.replace(/0+$/, '');
    if (trimmed === '') return '0';
    return `${match[1]}${trimmed}e${exponent + (digits.length - trimmed.length)}`;
  };
  return normalize(a) === normalize(b);
}
