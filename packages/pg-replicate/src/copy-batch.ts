/**
 * Copied rows as they came off the socket: a batch of `COPY … TO STDOUT` text rows kept as runs
 * of bytes (in reused slabs, see {@link CopyTextBatcher}), with no object per row.
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
/** Rows are kept in slabs of this size (see {@link CopyTextBatcher}). */
const SLAB_BYTES = 1 << 20;
/**
 * Spare slabs a batcher keeps for reuse (more in flight at once are left to the GC). Each copy
 * worker has its own batcher, and the copy queue bounds what is in flight, so a few suffice.
 */
const MAX_SPARE_SLABS = 4;

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
  /** Gives the batch's buffers back for reuse (see {@link release}); null once released. */
  #release: (() => void) | null;

  constructor(
    columnCount: number,
    segments: Segments,
    rowStarts: readonly number[],
    longestRow: number,
    release: () => void = () => {},
  ) {
    this.columnCount = columnCount;
    this.#segments = segments;
    this.#rowStarts = rowStarts;
    this.longestRow = longestRow;
    this.#release = release;
    let bytes = 0;
    for (let k = 0; k < segments.buffers.length; k++)
      bytes += segments.bounds[2 * k + 1]! - segments.bounds[2 * k]!;
    this.byteLength = bytes;
  }

  get length(): number {
    return this.#rowStarts.length;
  }

  /** The memory the batch holds until released: its slabs (and any oversized row's buffer). */
  get retainedBytes(): number {
    let bytes = 0;
    for (const buffer of new Set(this.#segments.buffers)) bytes += buffer.length;
    return bytes;
  }

  /** Row `index` as a {@link CopyTextRow}. */
  row(index: number): CopyTextRow {
    this.#checkNotReleased();
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
    this.#checkNotReleased();
    const { firstRows } = this.#segments;
    for (let k = 0; k < firstRows.length; k++) {
      const end = this.#rowsEnd(k);
      for (let i = firstRows[k]!; i < end; i++) yield this.#row(k, i);
    }
  }

  /**
   * Calls `visit` with runs of whole rows, `buffer[start, end)` with every row's newline, in
   * order — a few per socket read, not one per row. The buffers are reused once the batch is
   * released: read them, do not keep them.
   */
  forEachSegment(visit: (buffer: Buffer, start: number, end: number) => void): void {
    this.#checkNotReleased();
    const { buffers, bounds } = this.#segments;
    for (let k = 0; k < buffers.length; k++) visit(buffers[k]!, bounds[2 * k]!, bounds[2 * k + 1]!);
  }

  /** The same rows in memory of their own, for a sink that keeps rows past `writeRows`. */
  detach(): CopyTextBatch {
    this.#checkNotReleased();
    const { buffers, bounds, firstRows } = this.#segments;
    const copies: Buffer[] = [];
    const starts = this.#rowStarts.slice();
    for (let k = 0; k < buffers.length; k++) {
      const start = bounds[2 * k]!;
      copies.push(Buffer.from(buffers[k]!.subarray(start, bounds[2 * k + 1]!)));
      const end = this.#rowsEnd(k);
      for (let i = firstRows[k]!; i < end; i++) starts[i] = starts[i]! - start;
    }
    const copiedBounds = copies.flatMap((copy) => [0, copy.length]);
    const segments = { buffers: copies, bounds: copiedBounds, firstRows: firstRows.slice() };
    return new CopyTextBatch(this.columnCount, segments, starts, this.longestRow);
  }

  /**
   * The rows have been consumed: their memory may hold other rows from now on. The pipeline calls
   * this once `Sink.writeRows` has settled; any later use of the batch throws.
   */
  release(): void {
    const release = this.#release;
    this.#release = null;
    release?.();
  }

  #checkNotReleased(): void {
    if (this.#release === null)
      throw new Error('CopyTextBatch used after release(): copy rows kept past writeRows (detach())');
  }

  #row(segment: number, index: number): CopyTextRow {
    const { buffers, bounds } = this.#segments;
    // A row ends before the next row's start, the last of a segment before the segment's end.
    const end =
      index + 1 < this.#rowsEnd(segment) ? this.#rowStarts[index + 1]! - 1 : bounds[2 * segment + 1]! - 1;
    return new CopyTextRow(buffers[segment]!.subarray(this.#rowStarts[index]!, end), this.columnCount);
  }

  /** The index just past the last row of `segment`. */
  #rowsEnd(segment: number): number {
    const { firstRows } = this.#segments;
    return segment + 1 < firstRows.length ? firstRows[segment + 1]! : this.#rowStarts.length;
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
 * overwritten), then copied in one call into a slab of 1 MiB that batches hand back when
 * released — per-row `Buffer.copy` was a tenth of the copy's CPU, and socket chunks kept by
 * queued batches lived long enough to reach V8's old generation, where ~100 MB of dead chunks
 * waited for a full collection.
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
  /** The slab the next run goes to, the slabs of the batch being gathered, and spare slabs. */
  #slab: Buffer | null = null;
  #slabUsed = 0;
  #batchSlabs: Buffer[] = [];
  readonly #spareSlabs: Buffer[] = [];

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
    this.#trimSmallBatch();
    const slabs = this.#batchSlabs;
    const release = () => {
      if (this.#spareSlabs.length + slabs.length <= MAX_SPARE_SLABS) this.#spareSlabs.push(...slabs);
    };
    const batch = new CopyTextBatch(
      this.#columnCount,
      this.#segments,
      this.#rowStarts,
      this.#longestRow,
      release,
    );
    // A slab belongs to one batch, so that releasing it frees nothing a later batch still uses.
    this.#batchSlabs = [];
    this.#slab = null;
    this.#segments = { buffers: [], bounds: [], firstRows: [] };
    this.#rowStarts = [];
    this.#bytes = 0;
    this.#longestRow = 0;
    return batch;
  }

  /**
   * A batch that fills little of its only slab (a small table, a copy's last rows) gets a buffer
   * of its own size, and the slab stays for the next rows: batches of small tables wait for the
   * sink while the tables before them are written, and a 1 MiB slab each would hold far more
   * memory than their rows.
   */
  #trimSmallBatch(): void {
    if (this.#batchSlabs.length !== 1 || this.#slabUsed > SLAB_BYTES / 4) return;
    const slab = this.#batchSlabs[0]!;
    const { buffers } = this.#segments;
    if (buffers.some((buffer) => buffer !== slab)) return;
    const own = Buffer.allocUnsafeSlow(this.#slabUsed);
    slab.copy(own, 0, 0, this.#slabUsed);
    buffers.fill(own);
    this.#batchSlabs = [];
    if (this.#spareSlabs.length < MAX_SPARE_SLABS) this.#spareSlabs.push(slab);
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

  /** Ends the segment being extended: its rows, now together, move to a slab. */
  #closeRun(): void {
    const buffer = this.#runBuffer;
    if (buffer === null) return;
    this.#runBuffer = null;
    const segments = this.#segments;
    const first = segments.firstRows[segments.firstRows.length - 1]!;
    const start = this.#rowStarts[first]!;
    const length = this.#runEnd - start;
    if (length > SLAB_BYTES) {
      // Longer than a slab (a huge row, joined from many chunks): kept where it is.
      segments.buffers.push(buffer);
      segments.bounds.push(start, this.#runEnd);
      return;
    }
    if (this.#slab === null || SLAB_BYTES - this.#slabUsed < length) {
      this.#slab = this.#spareSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.#slabUsed = 0;
      this.#batchSlabs.push(this.#slab);
    }
    buffer.copy(this.#slab, this.#slabUsed, start, this.#runEnd);
    const shift = this.#slabUsed - start;
    const starts = this.#rowStarts;
    for (let i = first; i < starts.length; i++) starts[i] = starts[i]! + shift;
    segments.buffers.push(this.#slab);
    segments.bounds.push(this.#slabUsed, this.#slabUsed + length);
    this.#slabUsed += length;
  }
}
