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
   * A plain array, not an Int32Array: a typed array of more than 64 bytes (six columns) gets its
   * own off-heap buffer, and allocating one per row was 5% of a CDC run into DuckDB.
   */
  #layout: number[] | null = null;

  /**
   * @param buffer the message (or socket chunk) the row came in; values are read from it in place
   * @param start offset of the first column header (after the Int16 column count)
   * @param length number of columns
   */
  constructor(
    readonly buffer: Buffer,
    private readonly start: number,
    readonly length: number,
  ) {}

  /** Per column: kind, start offset, byte length — worked out on first use (already validated). */
  private get layout(): number[] {
    if (this.#layout !== null) return this.#layout;
    const layout: number[] = new Array(this.length * 3).fill(0);
    const buffer = this.buffer;
    let offset = this.start;
    for (let base = 0; base < layout.length; base += 3) {
      const kind = buffer[offset++]!;
      layout[base] = kind;
      if (kind === ColumnKind.Text || kind === ColumnKind.Binary) {
        const length = buffer.readInt32BE(offset);
        layout[base + 1] = offset + 4;
        layout[base + 2] = length;
        offset += 4 + length;
      }
    }
    this.#layout = layout;
    return layout;
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
    const layout = this.layout;
    const base = index * 3;
    if (layout[base] !== ColumnKind.Text) return null;
    const start = layout[base + 1]!;
    return this.buffer.toString('utf8', start, start + layout[base + 2]!);
  }

  /** A view of the raw value bytes (text or binary), or `null` when the column has no value. */
  raw(index: number): Buffer | null {
    const start = this.valueStart(index);
    return start === -1 ? null : this.buffer.subarray(start, start + this.valueLength(index));
  }

  /**
   * Where the value's bytes start in {@link buffer} (they run for {@link valueLength} bytes), or
   * -1 when the column has no value. For consumers that copy bytes without a `Buffer` view per
   * value (one allocation per value was a visible share of a CDC run's garbage collection).
   */
  valueStart(index: number): number {
    return this.hasValue(index) ? this.layout[index * 3 + 1]! : -1;
  }

  /** Byte length of the value (0 when the column has none). */
  valueLength(index: number): number {
    return this.layout[index * 3 + 2]!;
  }

  /** Byte size of the values, for batching by bytes. */
  get byteLength(): number {
    const layout = this.layout;
    let total = 0;
    for (let base = 2; base < layout.length; base += 3) total += layout[base]!;
    return total;
  }
}
