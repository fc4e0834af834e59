/**
 * The composite (row) text form (record_in/record_out): `(1,"a b",,"")` — an empty field is
 * NULL, `""` is the empty string; inside quotes `""` is a literal quote and `\` escapes the next
 * character anywhere. Fields come back as a plain object keyed by the type's field names.
 */
import { malformed, parseNested } from './parse-error.js';
import type { TextParser } from './text-parsers.js';
import { isRecordSpecial, quoteIfNeeded, readQuotable } from './text-quoting.js';
import type { PgRecord, PgValue } from './values.js';

/** A composite type's field as the parser needs it. */
export interface RecordField {
  readonly name: string;
  readonly parse: TextParser;
}

const COMMA = 0x2c;
const RPAREN = 0x29;

function isFieldEnd(code: number): boolean {
  return code === COMMA || code === RPAREN;
}

/** Parses a composite value; `fields` are the type's live (not dropped) attributes in order. */
export function parseRecordText(text: string, fields: readonly RecordField[], typeName: string): PgRecord {
  if (text.charCodeAt(0) !== 0x28) throw malformed(typeName, text, 'expected "("');
  const record: PgRecord = {};
  let at = 1;
  for (let index = 0; index < fields.length; index++) {
    const field = fields[index]!;
    const c = text.charCodeAt(at);
    let value: PgValue = null;
    if (c !== COMMA && c !== RPAREN) {
      const token = readQuotable(text, at, isFieldEnd);
      if (token === null) throw malformed(typeName, text, 'unterminated record');
      value = parseNested(field.parse, token[0], typeName, text);
      at = token[1];
    }
    setField(record, field.name, value);
    const separator = text.charCodeAt(at++);
    const last = index === fields.length - 1;
    if (separator !== (last ? RPAREN : COMMA)) {
      throw malformed(
        typeName,
        text,
        `expected ${fields.length} fields, "${last ? ')' : ','}" at offset ${at - 1}`,
      );
    }
  }
  if (fields.length === 0 && text.charCodeAt(at++) !== RPAREN)
    throw malformed(typeName, text, 'expected ")"');
  if (at !== text.length) throw malformed(typeName, text, 'text after the record');
  return record;
}

/** Assigns a field even when it is named `__proto__` (plain assignment would set the prototype). */
function setField(record: PgRecord, name: string, value: PgValue): void {
  if (name === '__proto__') {
    Object.defineProperty(record, name, { value, enumerable: true, writable: true, configurable: true });
  } else {
    record[name] = value;
  }
}

/**
 * Prints a composite as record_out does: NULL as nothing, fields quoted when empty or holding
 * `(`, `)`, `,`, `"`, `\` or blanks, quotes and backslashes doubled inside.
 * @param formatField the text form of each field's value, by field index
 */
export function formatRecordText(
  values: readonly PgValue[],
  formatField: (value: PgValue, index: number) => string,
): string {
  let text = '(';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) text += ',';
    const value = values[i]!;
    if (value !== null) text += quoteIfNeeded(formatField(value, i), isRecordSpecial, 'double');
  }
  return `${text})`;
}
