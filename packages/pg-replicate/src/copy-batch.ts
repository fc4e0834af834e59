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
  /** The length of the longest row, without its newline. */
  readonly longestRow: number;
  /** Runs of whole rows: `buffers[k][bounds[2k], bounds[2k + 1])`, newlines included. */
  readonly #segments: Segments;
  /** Where each row starts in its segment's buffer. */
  readonly #rowStarts: readonly number[];

  constructor(columnCount: number, segments: Segments, rowStarts: readonly number[], longestRow: number) {
    this.columnCount = columnCount;
    this.#segments = segments;
    this.#rowStarts = rowStarts;
    this.longestRow = longestRow;
    let bytes = 0;
    for (let k = 0; k < segments.buffers.length; k++)
      bytes += segments.bounds[2 * k + 1]! - segments.bounds[2 * k]!;
    this.byteLength = bytes;
  }

  get length(): number {
    return this.#rowStarts.length;
  }

  /** Row `index` as a {@link CopyTextRow}. */
  row(index: number): CopyTextRow {
    const { firstRows } = this.#segments;
    let low = 0;
    let high = firstRows.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (firstRows[middle]! <= index) low = middle;
      else high = middle - 1;
    }
    return this.#row(low, index);
  }

  *[Symbol.iterator](): Iterator<CopyTextRow> {
    const { firstRows } = this.#segments;
    for (let k = 0; k < firstRows.length; k++) {
      const last = k + 1 < firstRows.length ? firstRows[k + 1]! : this.#rowStarts.length;
      for (let i = firstRows[k]!; i < last; i++) yield this.#row(k, i);
    }
  }

  /**
   * Calls `visit` with runs of whole rows, `buffer[start, end)` with every row's newline, in
   * order — a few per socket read, not one per row. The buffers are the socket's: read them, do
   * not keep them past the call.
   */
  forEachSegment(visit: (buffer: Buffer, start: number, end: number) => void): void {
    const { buffers, bounds } = this.#segments;
    for (let k = 0; k < buffers.length; k++) visit(buffers[k]!, bounds[2 * k]!, bounds[2 * k + 1]!);
  }

  #row(segment: number, index: number): CopyTextRow {
    const { buffers, bounds, firstRows } = this.#segments;
    const lastOfSegment =
      segment + 1 < firstRows.length ? firstRows[segment + 1]! - 1 : this.#rowStarts.length - 1;
    const end = index < lastOfSegment ? this.#rowStarts[index + 1]! - 1 : bounds[2 * segment + 1]! - 1;
    return new CopyTextRow(buffers[segment]!.subarray(this.#rowStarts[index]!, end), this.columnCount);
  }
}

interface Segments {
  readonly buffers: Buffer[];
  readonly bounds: number[];
  /** The index of the first row of each segment. */
  readonly firstRows: number[];
}

/**
 * Gathers COPY OUT payloads into {@link CopyTextBatch}es. The server sends one row per CopyData
 * message, but that is not a protocol promise, so rows split across messages (or several in one)
 * are handled too.
 *
 * Rows that arrived in one socket chunk are moved together over the 5-byte message headers
 * between them (`copyWithin`, in place: the chunk is ours, and only bytes already parsed are
 * overwritten), so a sink copies a chunk's rows in one call instead of one per row — per-row
 * `Buffer.copy` was a tenth of the copy's CPU.
 */
export class CopyTextBatcher {
  readonly #columnCount: number;
  #segments: Segments = { buffers: [], bounds: [], firstRows: [] };
  #rowStarts: number[] = [];
  #bytes = 0;
  #longestRow = 0;
  /** The buffer of the segment being extended, and where its next row goes. */
  #runBuffer: Buffer | null = null;
  #runEnd = 0;
  /** The start of a row whose end has not arrived yet. */
  #carry: Buffer | null = null;

  constructor(columnCount: number) {
    this.#columnCount = columnCount;
  }

  /** Rows gathered since the last {@link take}. */
  get rows(): number {
    return this.#rowStarts.length;
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
        this.#add(buffer, start, end);
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
      this.#add(data, from, newline + 1);
      from = newline + 1;
    }
    if (from < data.length) this.#carry = data.subarray(from);
  }

  /** The rows gathered so far, as a batch; the next rows start a new one. */
  take(): CopyTextBatch {
    this.#closeRun();
    const batch = new CopyTextBatch(this.#columnCount, this.#segments, this.#rowStarts, this.#longestRow);
    this.#segments = { buffers: [], bounds: [], firstRows: [] };
    this.#rowStarts = [];
    this.#bytes = 0;
    this.#longestRow = 0;
    return batch;
  }

  /** Throws if the copy ended in the middle of a row. */
  finish(): void {
    if (this.#carry !== null) throw copyFormatError('the data ended in the middle of a row', this.#carry);
  }

  /** Adds the row `buffer[start, end)`, its newline at `end - 1`. */
  #add(buffer: Buffer, start: number, end: number): void {
    const length = end - start;
    if (buffer !== this.#runBuffer || start < this.#runEnd) {
      this.#closeRun();
      this.#runBuffer = buffer;
      this.#runEnd = start;
      this.#segments.firstRows.push(this.#rowStarts.length);
    } else if (start > this.#runEnd) {
      buffer.copyWithin(this.#runEnd, start, end);
    }
    this.#rowStarts.push(this.#runEnd);
    this.#runEnd += length;
    this.#bytes += length;
    if (length - 1 > this.#longestRow) this.#longestRow = length - 1;
  }

  /** Ends the segment being extended (its rows are all in place). */
  #closeRun(): void {
    const buffer = this.#runBuffer;
    if (buffer === null) return;
    const segments = this.#segments;
    const first = segments.firstRows[segments.firstRows.length - 1]!;
    segments.buffers.push(buffer);
    segments.bounds.push(this.#rowStarts[first]!, this.#runEnd);
    this.#runBuffer = null;
  }
}
