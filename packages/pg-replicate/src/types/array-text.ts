/**
 * The array text form (array_in/array_out): `{1,2,NULL}`, nested braces per dimension,
 * double-quoted elements with backslash escapes, the element type's delimiter (`;` for box),
 * and a `[lo:hi]…=` prefix when a lower bound is not 1. Element text goes to the element type's
 * own parser, so arrays of anything (composites, ranges, JSON) come out typed.
 */
import { malformed, parseNested } from './parse-error.js';
import type { TextParser } from './text-parsers.js';
import { isPgSpace, quoteIfNeeded } from './text-quoting.js';
import { PgArray, PgMultirange, type PgValue } from './values.js';

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Parses an array's text form.
 * @param delimiter the element type's `typdelim` (`,`, or `;` for box)
 * @param parseElement the element type's parser; never called for NULL elements
 * @param typeName for error messages (`_int4`)
 */
export function parseArrayText(
  text: string,
  delimiter: string,
  parseElement: TextParser,
  typeName: string,
): PgValue[] {
  const reader = new ArrayReader(text, delimiter.charCodeAt(0), parseElement, typeName);
  return reader.read();
}

class ArrayReader {
  private at = 0;

  constructor(
    private readonly text: string,
    private readonly delimiter: number,
    private readonly parseElement: TextParser,
    private readonly typeName: string,
  ) {}

  read(): PgValue[] {
    const bounds = this.text.charCodeAt(0) === 0x5b ? this.readDimensions() : null;
    const values = this.readLevel();
    this.skipSpace();
    if (this.at !== this.text.length) throw this.fail('text after the closing brace');
    if (bounds === null) return values;
    this.checkDimensions(values, bounds);
    return bounds.every(([lower]) => lower === 1)
      ? values
      : new PgArray(
          values,
          bounds.map(([lower]) => lower),
        );
  }

  /** `[lo:hi][lo:hi]=` → `[lo, hi]` per dimension. */
  private readDimensions(): [number, number][] {
    const text = this.text;
    const bounds: [number, number][] = [];
    while (text.charCodeAt(this.at) === 0x5b) {
      const close = text.indexOf(']', this.at);
      const colon = text.indexOf(':', this.at);
      if (close < 0 || colon < 0 || colon > close) throw this.fail('bad dimension decoration');
      const lower = Number(text.slice(this.at + 1, colon));
      const upper = Number(text.slice(colon + 1, close));
      if (!Number.isInteger(lower) || !Number.isInteger(upper)) throw this.fail('bad dimension decoration');
      bounds.push([lower, upper]);
      this.at = close + 1;
    }
    if (text.charCodeAt(this.at) !== 0x3d) throw this.fail('expected "=" after the dimensions');
    this.at++;
    return bounds;
  }

  private checkDimensions(values: PgValue[], bounds: [number, number][]): void {
    let level: PgValue = values;
    for (const [lower, upper] of bounds) {
      if (!Array.isArray(level) || level.length !== upper - lower + 1) {
        throw this.fail('dimensions do not match the elements');
      }
      level = level[0] ?? null;
    }
  }

  /** One `{…}` level, recursing into sub-arrays. */
  private readLevel(): PgValue[] {
    const text = this.text;
    this.skipSpace();
    if (text.charCodeAt(this.at) !== LBRACE) throw this.fail('expected "{"');
    this.at++;
    const values: PgValue[] = [];
    this.skipSpace();
    if (text.charCodeAt(this.at) === RBRACE) {
      this.at++;
      return values;
    }
    for (;;) {
      this.skipSpace();
      const c = text.charCodeAt(this.at);
      if (c === LBRACE) values.push(this.readLevel());
      else if (c === QUOTE) values.push(this.element(this.readQuoted()));
      else values.push(this.readUnquoted());
      this.skipSpace();
      const next = text.charCodeAt(this.at++);
      if (next === RBRACE) return values;
      if (next !== this.delimiter)
        throw this.fail(`expected "${String.fromCharCode(this.delimiter)}" or "}"`);
    }
  }

  private readQuoted(): string {
    const text = this.text;
    let start = ++this.at;
    let out = '';
    for (;;) {
      const c = text.charCodeAt(this.at);
      if (Number.isNaN(c)) throw this.fail('unterminated quoted element');
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        out += text.slice(start, this.at);
        start = ++this.at;
        if (this.at === text.length) throw this.fail('unterminated quoted element');
      }
      this.at++;
    }
    out += text.slice(start, this.at++);
    return out;
  }

  /** An unquoted element: up to the delimiter or `}`, trailing blanks trimmed, `NULL` is null. */
  private readUnquoted(): PgValue {
    const text = this.text;
    const start = this.at;
    let escaped = false;
    for (;;) {
      const c = text.charCodeAt(this.at);
      if (Number.isNaN(c)) throw this.fail('unterminated array');
      if (c === this.delimiter || c === RBRACE) break;
      if (c === LBRACE || c === QUOTE) throw this.fail('unexpected character in an unquoted element');
      if (c === BACKSLASH) {
        escaped = true;
        this.at++;
      }
      this.at++;
    }
    let end = this.at;
    while (end > start && isPgSpace(text.charCodeAt(end - 1)) && text.charCodeAt(end - 2) !== BACKSLASH)
      end--;
    if (end === start) throw this.fail('empty unquoted element');
    const raw = text.slice(start, end);
    if (!escaped) {
      if (raw.length === 4 && raw.toUpperCase() === 'NULL') return null;
      return this.element(raw);
    }
    return this.element(raw.replace(/\\(.)/gs, '$1'));
  }

  private element(text: string): PgValue {
    return parseNested(this.parseElement, text, this.typeName, this.text);
  }

  private skipSpace(): void {
    while (isPgSpace(this.text.charCodeAt(this.at))) this.at++;
  }

  private fail(reason: string) {
    return malformed(this.typeName, this.text, `${reason} at offset ${this.at}`);
  }
}

/**
 * Prints an array as array_out does: elements quoted when empty, `NULL`-like, or containing
 * braces, quotes, backslashes, the delimiter or blanks; bounds decoration for a {@link PgArray}.
 * A nested JS array is a further dimension — except a {@link PgMultirange}, which is an element.
 * @param formatElement the element type's text form
 */
export function formatArrayText(
  values: readonly PgValue[],
  delimiter: string,
  formatElement: (value: PgValue) => string,
): string {
  const d = delimiter.charCodeAt(0);
  const special = (c: number) => c === LBRACE || c === RBRACE || c === d;
  const level = (items: readonly PgValue[]): string => {
    let text = '{';
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (i > 0) text += delimiter;
      if (item === null) text += 'NULL';
      else if (Array.isArray(item) && !(item instanceof PgMultirange)) text += level(item);
      else {
        const element = formatElement(item);
        text +=
          element.length === 4 && element.toUpperCase() === 'NULL'
            ? `"${element}"`
            : quoteIfNeeded(element, special, 'backslash');
      }
    }
    return `${text}}`;
  };
  const body = level(values);
  if (!(values instanceof PgArray)) return body;
  let prefix = '';
  let dimension: readonly PgValue[] = values;
  for (const lower of values.lowerBounds) {
    prefix += `[${lower}:${lower + dimension.length - 1}]`;
    dimension = (dimension[0] ?? []) as readonly PgValue[];
  }
  return `${prefix}=${body}`;
}
