/**
 * The range and multirange text forms (range_in/range_out, multirange_in/out): `[1,5)`,
 * `(,"2020-01-01 00:00:00+00"]`, `empty`, `{[1,3),[5,7)}`. A missing bound is unbounded; a
 * quoted empty bound (`""`) is an empty-string value. Inside a bound, `"` quotes, `""` inside
 * quotes is a literal quote and `\` escapes the next character.
 */
import { malformed, parseNested } from './parse-error.js';
import type { TextParser } from './text-parsers.js';
import { readQuotable } from './text-quoting.js';
import { PgMultirange, PgRange, type PgValue } from './values.js';

/** Parses a range; `parseBound` is the subtype's parser. */
export function parseRangeText(text: string, parseBound: TextParser, typeName: string): PgRange {
  if (text === 'empty') return PgRange.empty();
  const [range, end] = readRange(text, 0, parseBound, typeName);
  if (end !== text.length) throw malformed(typeName, text, 'text after the range');
  return range;
}

/** Parses a multirange: `{` ranges separated by `,` `}`. */
export function parseMultirangeText(text: string, parseBound: TextParser, typeName: string): PgMultirange {
  const ranges = new PgMultirange();
  if (text.charCodeAt(0) !== 0x7b) throw malformed(typeName, text, 'expected "{"');
  let at = 1;
  if (text.charCodeAt(at) === 0x7d && text.length === 2) return ranges;
  for (;;) {
    let range: PgRange;
    if (text.startsWith('empty', at)) {
      // multirange_in accepts (and drops) empty ranges; the server never prints them.
      at += 5;
    } else {
      [range, at] = readRange(text, at, parseBound, typeName);
      ranges.push(range);
    }
    const c = text.charCodeAt(at++);
    if (c === 0x7d && at === text.length) return ranges;
    if (c !== 0x2c) throw malformed(typeName, text, `expected "," or "}" at offset ${at - 1}`);
  }
}

/** A non-empty range starting at `start` → the range and the offset after it. */
function readRange(text: string, start: number, parseBound: TextParser, typeName: string): [PgRange, number] {
  const open = text.charCodeAt(start);
  if (open !== 0x5b && open !== 0x28)
    throw malformed(typeName, text, `expected "[" or "(" at offset ${start}`);
  const [lower, afterLower] = readBound(text, start + 1, parseBound, typeName);
  if (text.charCodeAt(afterLower) !== 0x2c)
    throw malformed(typeName, text, `expected "," at offset ${afterLower}`);
  const [upper, afterUpper] = readBound(text, afterLower + 1, parseBound, typeName);
  const close = text.charCodeAt(afterUpper);
  if (close !== 0x5d && close !== 0x29)
    throw malformed(typeName, text, `expected "]" or ")" at offset ${afterUpper}`);
  return [new PgRange(lower, upper, open === 0x5b, close === 0x5d), afterUpper + 1];
}

/** One bound up to the next unquoted `,`, `)` or `]`; nothing there means unbounded (null). */
function readBound(text: string, start: number, parseBound: TextParser, typeName: string): [PgValue, number] {
  if (isBoundEnd(text.charCodeAt(start))) return [null, start];
  const token = readQuotable(text, start, isBoundEnd);
  if (token === null) throw malformed(typeName, text, 'unterminated bound');
  return [parseNested(parseBound, token[0], typeName, text), token[1]];
}

function isBoundEnd(code: number): boolean {
  return code === 0x2c || code === 0x29 || code === 0x5d;
}
