/**
 * Copied rows as they came off the socket: a batch of `COPY … TO STDOUT` text rows kept as byte
 * ranges of the socket chunks they arrived in, with no object per row.
 *
 * Why: at 700k rows/s, an object and a Buffer view per row cost more than the copy itself — a
 * quarter of the CPU went to garbage collection, and rows queued for the sink were promoted to
 * the old generation, growing the heap with the table. Sinks that store COPY text (DuckDB) take
 * the bytes as they are, sinks that count rows (null) never look at them, and the others iterate
 * {@link CopyTextRow}s made on demand.
 */
import { CopyTextRow, copyFormatError, type RowData } from './row.js';

/** What `Sink.writeRows` receives: copied rows, with their count (an array of rows will do). */
export interface CopiedRows extends Iterable<RowData> {
  readonly length: number;
}

const NEWLINE = 0x0a;

/** A batch of COPY text rows (see the module comment); made by {@link CopyTextBatcher}. */
export class CopyTextBatch implements CopiedRows {
  readonly columnCount: number;
  /** The bytes of all rows, newlines included. */
  readonly byteLength: number;
  /** The buffer of each row (consecutive rows usually share one socket chunk). */
  readonly #buffers: readonly Buffer[];
  /** `[start0, end0, start1, end1, …]`: each row without its newline, which is at `end`. */
  readonly #bounds: readonly number[];

  constructor(
    columnCount: number,
    buffers: readonly Buffer[],
    bounds: readonly number[],
    byteLength: number,
  ) {
    this.columnCount = columnCount;
    this.#buffers = buffers;
    this.#bounds = bounds;
    this.byteLength = byteLength;
  }

  get length(): number {
    return this.#buffers.length;
  }

  /** Row `index` as a {@link CopyTextRow}. */
  row(index: number): CopyTextRow {
    const start = this.#bounds[2 * index]!;
    const end = this.#bounds[2 * index + 1]!;
    return new CopyTextRow(this.#buffers[index]!.subarray(start, end), this.columnCount);
  }

  *[Symbol.iterator](): Iterator<CopyTextRow> {
    for (let i = 0; i < this.#buffers.length; i++) yield this.row(i);
  }

  /**
   * Calls `visit` with each row's bytes, `buffer[start, end)`, in order; `buffer[end]` is the
   * row's newline. The buffers are the socket's: read them, do not keep them past the call.
   */
  forEachRow(visit: (buffer: Buffer, start: number, end: number) => void): void {
    const buffers = this.#buffers;
    const bounds = this.#bounds;
    for (let i = 0; i < buffers.length; i++) visit(buffers[i]!, bounds[2 * i]!, bounds[2 * i + 1]!);
  }
}

/**
 * Gathers COPY OUT payloads into {@link CopyTextBatch}es. The server sends one row per CopyData
 * message, but that is not a protocol promise, so rows split across messages (or several in one)
 * are handled too.
 */
export class CopyTextBatcher {
  readonly #columnCount: number;
  #buffers: Buffer[] = [];
  #bounds: number[] = [];
  #bytes = 0;
  /** The start of a row whose end has not arrived yet. */
  #carry: Buffer | null = null;

  constructor(columnCount: number) {
    this.#columnCount = columnCount;
  }

  /** Rows gathered since the last {@link take}. */
  get rows(): number {
    return this.#buffers.length;
  }

  /** Bytes of those rows. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Adds the rows completed by the payload `buffer[start, end)`. */
  push(buffer: Buffer, start: number, end: number): void {
    // One row, ending at the end of the message: how the server sends them.
    if (this.#carry === null && end > start && buffer[end - 1] === NEWLINE) {
      const newline = buffer.indexOf(NEWLINE, start);
      if (newline === end - 1) {
        this.#add(buffer, start, newline);
        return;
      }
    }
    let data = buffer.subarray(start, end);
    if (this.#carry !== null) {
      data = Buffer.concat([this.#carry, data]);
      this.#carry = null;
    }
    let from = 0;
    for (;;) {
      const newline = data.indexOf(NEWLINE, from);
      if (newline === -1) break;
      this.#add(data, from, newline);
      from = newline + 1;
    }
    if (from < data.length) this.#carry = data.subarray(from);
  }

  /** The rows gathered so far, as a batch; the next rows start a new one. */
  take(): CopyTextBatch {
    const batch = new CopyTextBatch(this.#columnCount, this.#buffers, this.#bounds, this.#bytes);
    this.#buffers = [];
    this.#bounds = [];
    this.#bytes = 0;
    return batch;
  }

  /** Throws if the copy ended in the middle of a row. */
  finish(): void {
    if (this.#carry !== null) throw copyFormatError('the data ended in the middle of a row', this.#carry);
  }

  #add(buffer: Buffer, start: number, end: number): void {
    this.#buffers.push(buffer);
    this.#bounds.push(start, end);
    this.#bytes += end + 1 - start;
  }
}
