/**
 * A minimal protocol-buffers wire writer for the row messages we append. Rows are the hot path
 * (every replicated value passes through here), and the schema is ours, flat and known up front,
 * so a dozen lines of varint and length-delimited writing beat building a protobufjs message
 * object per row: no intermediate objects, 64-bit integers straight from `bigint`, and many rows
 * encoded back to back into one growing buffer that the request then slices.
 *
 * Wire format: https://protobuf.dev/programming-guides/encoding/
 */

/** Wire types of the fields we write. */
export enum WireType {
  Varint = 0,
  Fixed64 = 1,
  LengthDelimited = 2,
}

const INT64_MIN = -(1n << 63n);
const UINT64_MOD = 1n << 64n;

/** Appends fields to one buffer that grows by about 1.5x, as many messages as wanted in a row. */
export class ProtoWriter {
  #buffer: Buffer;
  #length = 0;

  constructor(initialSize = 64 * 1024) {
    this.#buffer = Buffer.allocUnsafe(initialSize);
  }

  /** Bytes written since the last {@link reset}. */
  get length(): number {
    return this.#length;
  }

  /** Forgets what was written (the buffer is kept for reuse). */
  reset(): void {
    this.#length = 0;
  }

  /** A copy of the bytes from `start` to the current end. */
  copy(start: number, end: number = this.#length): Buffer {
    return Buffer.from(this.#buffer.subarray(start, end));
  }

  /** A view (not a copy) of the bytes from `start` to `end`; valid until the next write or reset. */
  view(start: number, end: number = this.#length): Buffer {
    return this.#buffer.subarray(start, end);
  }

  /** Appends bytes verbatim (a field encoded earlier). */
  raw(bytes: Uint8Array): void {
    this.#ensure(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  tag(fieldNumber: number, wireType: WireType): void {
    this.varint(fieldNumber * 8 + wireType);
  }

  /** A non-negative integer below 2^53 as a varint. */
  varint(value: number): void {
    this.#ensure(10);
    const buffer = this.#buffer;
    let at = this.#length;
    while (value >= 0x80) {
      buffer[at++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    buffer[at++] = value;
    this.#length = at;
  }

  /** A signed 64-bit integer (`int64`/`int32` field): negative values take ten bytes, as the spec says. */
  int64(value: number | bigint): void {
    if (typeof value === 'number') {
      if (value >= 0 && value <= Number.MAX_SAFE_INTEGER) {
        this.varint(value);
        return;
      }
      value = BigInt(value);
    }
    if (value < INT64_MIN || value >= 1n << 63n) throw new RangeError(`${value} does not fit in an int64`);
    let unsigned = value < 0n ? value + UINT64_MOD : value;
    this.#ensure(10);
    const buffer = this.#buffer;
    let at = this.#length;
    while (unsigned >= 0x80n) {
      buffer[at++] = Number(unsigned & 0x7fn) | 0x80;
      unsigned >>= 7n;
    }
    buffer[at++] = Number(unsigned);
    this.#length = at;
  }

  double(value: number): void {
    this.#ensure(8);
    this.#buffer.writeDoubleLE(value, this.#length);
    this.#length += 8;
  }

  bool(value: boolean): void {
    this.#ensure(1);
    this.#buffer[this.#length++] = value ? 1 : 0;
  }

  /** A length-delimited UTF-8 string. */
  string(value: string): void {
    // One byte of UTF-8 per UTF-16 unit for ASCII; at most three otherwise.
    const maxBytes = value.length * 3;
    this.#ensure(maxBytes + 5);
    if (maxBytes < 128) {
      // The length fits one varint byte whatever the encoding: write it after the text.
      const written = this.#buffer.write(value, this.#length + 1, 'utf8');
      this.#buffer[this.#length] = written;
      this.#length += written + 1;
      return;
    }
    const byteLength = Buffer.byteLength(value, 'utf8');
    this.varint(byteLength);
    this.#buffer.write(value, this.#length, byteLength, 'utf8');
    this.#length += byteLength;
  }

  /** A length-delimited byte string. */
  bytes(value: Uint8Array): void {
    this.varint(value.length);
    this.raw(value);
  }

  #ensure(extra: number): void {
    const needed = this.#length + extra;
    if (needed <= this.#buffer.length) return;
    let size = Math.max(64, Math.ceil(this.#buffer.length * 1.5));
    while (size < needed) size = Math.ceil(size * 1.5);
    const grown = Buffer.allocUnsafe(size);
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }
}
