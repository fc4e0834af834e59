/**
 * Quoting for the three container text forms. Arrays, records and ranges each decide on their
 * own which characters force double quotes and how a quote inside is escaped (array_out uses
 * backslashes, record_out and range_out double the character); one table-driven routine serves
 * all three so the rules sit side by side.
 */

/** C `isspace` in the C locale, which is what the server's output functions test. */
export function isPgSpace(code: number): boolean {
  return code === 0x20 || (code >= 0x09 && code <= 0x0d);
}

/** How a container marks a quote or backslash inside a quoted element. */
export type EscapeStyle = 'backslash' | 'double';

/**
 * Quotes `value` when it is empty or contains a character for which `special` is true (or
 * whitespace), escaping `"` and `\` the container's way; returns it unchanged otherwise.
 */
export function quoteIfNeeded(value: string, special: (code: number) => boolean, style: EscapeStyle): string {
  let needs = value.length === 0;
  let escapes = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) {
      needs = true;
      escapes = true;
      break;
    }
    if (!needs && (special(c) || isPgSpace(c))) needs = true;
  }
  if (!needs) return value;
  if (!escapes) return `"${value}"`;
  const escaped = style === 'backslash' ? value.replace(/["\\]/g, '\\$&') : value.replace(/["\\]/g, '$&$&');
  return `"${escaped}"`;
}

/** `(`, `)` and `,` delimit record fields. */
export function isRecordSpecial(code: number): boolean {
  return code === 0x28 || code === 0x29 || code === 0x2c;
}

/** Range bounds also stop at brackets. */
export function isRangeSpecial(code: number): boolean {
  return code === 0x28 || code === 0x29 || code === 0x2c || code === 0x5b || code === 0x5d;
}

/**
 * Reads one record field or range bound starting at `start`, up to the first unquoted character
 * for which `stop` is true: `"` toggles quoting, `""` inside quotes is one quote, `\` takes the
 * next character literally. Returns the unescaped text and the offset of the stop character,
 * or null when the text ends first.
 */
export function readQuotable(
  text: string,
  start: number,
  stop: (code: number) => boolean,
): [string, number] | null {
  let value = '';
  let from = start;
  let quoted = false;
  for (let at = start; at < text.length; at++) {
    const c = text.charCodeAt(at);
    if (!quoted && stop(c)) return [value + text.slice(from, at), at];
    if (c === 0x5c) {
      value += text.slice(from, at);
      from = ++at;
    } else if (c === 0x22) {
      value += text.slice(from, at);
      if (quoted && text.charCodeAt(at + 1) === 0x22) {
        from = ++at; // keep the second quote
      } else {
        quoted = !quoted;
        from = at + 1;
      }
    }
  }
  return null;
}
