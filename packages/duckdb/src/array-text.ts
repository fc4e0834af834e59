/**
 * Splits Postgres array text (`array_out`: `{1,2,NULL}`, `{"a b","c\"d"}`, `[0:1]={x,y}`) into
 * the text of each element, without interpreting the elements: the DuckDB sink converts element
 * text with the same SQL it uses for a column of the element type, so only the array's own
 * syntax matters here. The core's array parser returns typed values instead, which would have to
 * be printed back to text.
 */

/** Element texts of one array level; nested levels are nested arrays; `null` is SQL NULL. */
export type ArrayElements = (string | null | ArrayElements)[];

export interface SplitArray {
  readonly elements: ArrayElements;
  /** Lower bound of each dimension when the text had a `[lo:hi]=` prefix (`null`: all 1). */
  readonly lowerBounds: readonly number[] | null;
}

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * @param text the array's text form as the server prints it
 * @param delimiter the element type's delimiter (`,`; `;` for box)
 */
export function splitArrayText(text: string, delimiter = ','): SplitArray {
  let at = 0;
  let lowerBounds: number[] | null = null;
  if (text.charCodeAt(0) === 0x5b) {
    const equals = text.indexOf('=');
    if (equals === -1) throw malformed(text, 'a dimension prefix without "="');
    lowerBounds = [...text.slice(0, equals).matchAll(/\[(-?\d+):-?\d+\]/g)].map((match) => Number(match[1]));
    at = equals + 1;
  }
  const delim = delimiter.charCodeAt(0);

  const readLevel = (): ArrayElements => {
    if (text.charCodeAt(at) !== LBRACE) throw malformed(text, `"{" expected at ${at}`);
    at++;
    const elements: ArrayElements = [];
    if (text.charCodeAt(at) === RBRACE) {
      at++;
      return elements;
    }
    for (;;) {
      const code = text.charCodeAt(at);
      if (code === LBRACE) elements.push(readLevel());
      else if (code === QUOTE) elements.push(readQuoted());
      else elements.push(readUnquoted());
      const next = text.charCodeAt(at++);
      if (next === RBRACE) return elements;
      if (next !== delim) throw malformed(text, `delimiter or "}" expected at ${at - 1}`);
    }
  };

  const readQuoted = (): string => {
    at++;
    let value = '';
    let start = at;
    for (;;) {
      const code = text.charCodeAt(at);
      if (Number.isNaN(code)) throw malformed(text, 'unterminated quoted element');
      if (code === BACKSLASH) {
        value += text.slice(start, at);
        start = at + 1;
        at += 2;
      } else if (code === QUOTE) {
        value += text.slice(start, at);
        at++;
        return value;
      } else at++;
    }
  };

  const readUnquoted = (): string | null => {
    const start = at;
    while (at < text.length) {
      const code = text.charCodeAt(at);
      if (code === delim || code === RBRACE) break;
      at++;
    }
    const value = text.slice(start, at);
    // array_out quotes an element spelled NULL, so an unquoted NULL is always SQL NULL.
    return value === 'NULL' ? null : value;
  };

  const elements = readLevel();
  if (at !== text.length) throw malformed(text, 'text after the closing brace');
  return { elements, lowerBounds };
}

function malformed(text: string, problem: string): Error {
  return new Error(`malformed array text (${problem}): ${text.length > 80 ? `${text.slice(0, 80)}…` : text}`);
}
