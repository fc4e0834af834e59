/**
 * The columns of one row as pgoutput sent them, decoded lazily.
 *
 * The decoder only walks the column headers (kind and length) and records where each value
 * lies; the bytes stay in the message buffer and turn into strings or typed values only when a
 * consumer asks. A sink that counts rows or forwards them as text never pays for parsing.
 *
 * The three states of a column stay apart: NULL, unchanged TOAST (the value was not sent
 * because it did not change — it is NOT null) and a value in text or binary form.
 */

/** Column kinds, as the byte pgoutput uses for them. */
export enum ColumnKind {
  Null = 0x6e, // n
  UnchangedToast = 0x75, // u
  Text = 0x74, // t
  Binary = 0x62, // b
}

export class TupleData {
  /**
   * @param buffer the message the row came in (its values are views into it)
   * @param layout per column: kind, start offset, byte length (three Int32 each)
   */
  constructor(
    readonly buffer: Buffer,
    private readonly layout: Int32Array,
  ) {}

  get length(): number {
    return this.layout.length / 3;
  }

  kind(index: number): ColumnKind {
    return this.layout[index * 3] as ColumnKind;
  }

  isNull(index: number): boolean {
    return this.layout[index * 3] === ColumnKind.Null;
  }

  isUnchangedToast(index: number): boolean {
    return this.layout[index * 3] === ColumnKind.UnchangedToast;
  }

  /** True when the column carries a value (text or binary). */
  hasValue(index: number): boolean {
    const kind = this.layout[index * 3];
    return kind === ColumnKind.Text || kind === ColumnKind.Binary;
  }

  /** The value's text (UTF-8), or `null` for NULL / unchanged TOAST / binary columns. */
  text(index: number): string | null {
    const base = index * 3;
    if (this.layout[base] !== ColumnKind.Text) return null;
    const start = this.layout[base + 1]!;
    return this.buffer.toString('utf8', start, start + this.layout[base + 2]!);
  }

  /** A view of the raw value bytes (text or binary), or `null` when the column has no value. */
  raw(index: number): Buffer | null {
    const base = index * 3;
    const kind = this.layout[base];
    if (kind !== ColumnKind.Text && kind !== ColumnKind.Binary) return null;
    const start = this.layout[base + 1]!;
    return this.buffer.subarray(start, start + this.layout[base + 2]!);
  }

  /** Byte size of the values, for batching by bytes. */
  get byteLength(): number {
    let total = 0;
    for (let base = 2; base < this.layout.length; base += 3) total += Math.max(0, this.layout[base]!);
    return total;
  }
}
