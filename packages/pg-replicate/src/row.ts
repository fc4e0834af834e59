/**
 * A row as it arrived — from pgoutput (`TupleData`) or from COPY (`CopyTextRow`) — behind one small
 * interface, so sinks can take the raw text (cheapest), or typed values, without caring where the
 * row came from. Nothing is parsed until asked.
 */
import { PgReplicateError } from './errors.js';
import type { TableSchema } from './schema.js';
import type { TypeRegistry } from './types/type-registry.js';
import type { PgValue } from './types/values.js';

/** Read access to the columns of one row, in table column order. */
export interface RowData {
  readonly length: number;
  isNull(index: number): boolean;
  /** An unchanged TOASTed value (pgoutput `u`): not sent, NOT null — keep what the sink has. */
  isUnchangedToast(index: number): boolean;
  /** The value in Postgres text form, or `null` for NULL / unchanged TOAST. */
  text(index: number): string | null;
}

/** Marks an unchanged TOAST column in a typed row: the value was not sent and must be kept. */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged TOAST');

export type RowValue = PgValue | typeof UNCHANGED_TOAST;

/**
 * Parses a row into typed values, in column order, using the registry's parser for each column
 * type. Unchanged TOAST columns come back as {@link UNCHANGED_TOAST}.
 */
export function parseRow(row: RowData, table: TableSchema, types: TypeRegistry): RowValue[] {
  const values: RowValue[] = new Array(row.length);
  for (let i = 0; i < row.length; i++) {
    if (row.isUnchangedToast(i)) values[i] = UNCHANGED_TOAST;
    else {
      const text = row.text(i);
      values[i] = text === null ? null : types.parser(table.columns[i]!.typeOid)(text);
    }
  }
  return values;
}

enum Byte {
  Tab = 0x09,
  Newline = 0x0a,
  Backslash = 0x5c,
  N = 0x4e,
}

/**
 * One row of `COPY … TO STDOUT` text format: fields separated by tabs, `\N` for NULL, backslash
 * escapes for tab, newline, backslash and other control characters.
 * https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2
 *
 * The row is split into fields on first access only; a sink that just counts rows never pays.
 */
export class CopyTextRow implements RowData {
  #layout: Int32Array | null = null;

  /** @param bytes the row without its trailing newline (a view into the COPY data) */
  constructor(
    readonly bytes: Buffer,
    private readonly columnCount: number,
  ) {}

  get length(): number {
    return this.columnCount;
  }

  isNull(index: number): boolean {
    return this.#fields()[index * 2 + 1] === -1;
  }

  isUnchangedToast(): boolean {
    return false;
  }

  text(index: number): string | null {
    const layout = this.#fields();
    const start = layout[index * 2]!;
    const end = layout[index * 2 + 1]!;
    if (end === -1) return null;
    const bytes = this.bytes;
    const backslash = bytes.indexOf(Byte.Backslash, start);
    if (backslash === -1 || backslash >= end) return bytes.toString('utf8', start, end);
    return unescapeCopyText(bytes, start, end);
  }

  /** Field start/end offsets (end -1 for NULL). */
  #fields(): Int32Array {
    if (this.#layout !== null) return this.#layout;
    const bytes = this.bytes;
    const layout = new Int32Array(this.columnCount * 2);
    let start = 0;
    for (let i = 0; i < this.columnCount; i++) {
      let end = bytes.indexOf(Byte.Tab, start);
      if (end === -1) end = bytes.length;
      if (i === this.columnCount - 1 && end !== bytes.length) {
        throw copyFormatError(`more than ${this.columnCount} fields`, bytes);
      }
      if (end === bytes.length && i < this.columnCount - 1) {
        throw copyFormatError(`${i + 1} fields where ${this.columnCount} were expected`, bytes);
      }
      const isNull = end - start === 2 && bytes[start] === Byte.Backslash && bytes[start + 1] === Byte.N;
      layout[i * 2] = start;
      layout[i * 2 + 1] = isNull ? -1 : end;
      start = end + 1;
    }
    this.#layout = layout;
    return layout;
  }
}

const ESCAPES: Record<number, number> = {
  98: 0x08, // \b
  102: 0x0c, // \f
  110: 0x0a, // \n
  114: 0x0d, // \r
  116: 0x09, // \t
  118: 0x0b, // \v
};

/** Decodes COPY text escapes (`\\`, `\n`, `\t`, …, octal `\NNN`, hex `\xHH`) in a field. */
export function unescapeCopyText(bytes: Buffer, start: number, end: number): string {
  const out = Buffer.allocUnsafe(end - start);
  let length = 0;
  for (let i = start; i < end; i++) {
    const byte = bytes[i]!;
    if (byte !== Byte.Backslash || i + 1 >= end) {
      out[length++] = byte;
      continue;
    }
    const next = bytes[++i]!;
    const mapped = ESCAPES[next];
    if (mapped !== undefined) {
      out[length++] = mapped;
    } else if (next >= 0x30 && next <= 0x37) {
      let value = next - 0x30;
      for (let k = 0; k < 2 && i + 1 < end && bytes[i + 1]! >= 0x30 && bytes[i + 1]! <= 0x37; k++) {
        value = value * 8 + (bytes[++i]! - 0x30);
      }
      out[length++] = value & 0xff;
    } else if (next === 0x78 && i + 1 < end && isHex(bytes[i + 1]!)) {
      let value = hexValue(bytes[++i]!);
      if (i + 1 < end && isHex(bytes[i + 1]!)) value = value * 16 + hexValue(bytes[++i]!);
      out[length++] = value;
    } else {
      out[length++] = next; // \\ and any other escaped character stand for themselves
    }
  }
  return out.toString('utf8', 0, length);
}

function isHex(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

function hexValue(byte: number): number {
  return byte <= 0x39 ? byte - 0x30 : (byte & 0x5f) - 0x41 + 10;
}

export function copyFormatError(problem: string, bytes: Buffer): PgReplicateError {
  const preview = bytes.toString('utf8', 0, Math.min(bytes.length, 80));
  return new PgReplicateError('PROTOCOL_VIOLATION', `malformed COPY row: ${problem}`, {
    detail: `row starts with ${JSON.stringify(preview)}`,
    hint: 'the table changed shape during the copy, or the server sent unexpected data; retry the copy',
  });
}
