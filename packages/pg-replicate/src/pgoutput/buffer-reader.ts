/**
 * A bounds-checked big-endian cursor over one message.
 *
 * Every read checks the remaining length first so that a short or corrupt message surfaces as a
 * `PROTOCOL_VIOLATION` naming the field and byte offset, never as a bare `RangeError` from Buffer.
 * One reader is reused for every message (no allocation per message); `reset()` drops the
 * reference to the last buffer so it can be collected.
 */
import { PgReplicateError } from '../errors.js';
import type { Lsn } from '../lsn.js';

const EMPTY = Buffer.alloc(0);

export class BufferReader {
  buffer: Buffer = EMPTY;
  offset = 0;
  /** Where the message ends (exclusive): a message may be a slice of a larger socket chunk. */
  end = 0;
  /** Where the message starts, so errors report offsets within the message. */
  start = 0;
  /** What is being decoded, for error messages (e.g. `Insert`). */
  context = '';

  /** Points the reader at `buffer[start, end)`; `reset()` alone releases the last buffer. */
  reset(buffer: Buffer = EMPTY, start = 0, end = buffer.length, context = ''): void {
    this.buffer = buffer;
    this.offset = start;
    this.start = start;
    this.end = end;
    this.context = context;
  }

  get remaining(): number {
    return this.end - this.offset;
  }

  fail(what: string, extra = ''): never {
    throw new PgReplicateError(
      'PROTOCOL_VIOLATION',
      `malformed pgoutput ${this.context || 'message'}: ${what}`,
      {
        detail: `at byte ${this.offset - this.start} of ${this.end - this.start}${extra}`,
        hint: 'the server sent data this version of pg-replicate cannot decode; please report it with the server version',
      },
    );
  }

  private need(bytes: number, what: string): void {
    if (this.offset + bytes > this.end) {
      this.fail(`${what} needs ${bytes} byte(s) but only ${this.remaining} remain`);
    }
  }

  uint8(what = 'byte'): number {
    this.need(1, what);
    return this.buffer[this.offset++]!;
  }

  int16(what = 'int16'): number {
    this.need(2, what);
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  int32(what = 'int32'): number {
    this.need(4, what);
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  uint32(what = 'uint32'): number {
    this.need(4, what);
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  /** Unsigned 64-bit, for LSNs. */
  uint64(what = 'uint64'): Lsn {
    this.need(8, what);
    const value = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return value;
  }

  /** Signed 64-bit, for timestamps (microseconds since 2000-01-01). */
  int64(what = 'int64'): bigint {
    this.need(8, what);
    const value = this.buffer.readBigInt64BE(this.offset);
    this.offset += 8;
    return value;
  }

  /** A NUL-terminated UTF-8 string. */
  cstring(what = 'string'): string {
    const end = this.buffer.indexOf(0, this.offset);
    if (end < 0 || end >= this.end) this.fail(`${what} is not NUL-terminated`);
    const value = this.buffer.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return value;
  }

  /** A view (not a copy) of the next `length` bytes. */
  bytes(length: number, what = 'bytes'): Buffer {
    if (length < 0) this.fail(`${what} has negative length ${length}`);
    this.need(length, what);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  skip(length: number, what = 'bytes'): void {
    this.need(length, what);
    this.offset += length;
  }
}
