/**
 * A staging file in COPY's text format (tab-separated, `\N` for NULL, backslash escapes), which
 * DuckDB reads with `read_csv` in one vectorized pass.
 *
 * Why a file: handing DuckDB rows value by value (appender, data chunks) costs one native call
 * per value and is 2–3× slower than letting DuckDB's CSV reader parse a file of the same rows.
 * Backfill rows arrive in exactly this format from `COPY … TO STDOUT`, so their bytes are written
 * through untouched; change rows are escaped the way COPY escapes them. The file is rewritten for
 * every batch, so it holds one batch at a time (bounded by the batch size, not the table).
 */
import { closeSync, ftruncateSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { CopyTextBatch } from 'pg-replicate';
import { literal } from './sql.js';

const CAPACITY = 1 << 20;
const TAB = 0x09;
const NEWLINE = 0x0a;
const NULL_FIELD = Buffer.from('\\N');

/** COPY TO escapes exactly these (and the delimiter, which is the tab). */
const NEEDS_ESCAPE = /[\\\t\n\r\b\f\v]/;
const ESCAPABLE = /[\\\t\n\r\b\f\v]/g;
const ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\\\',
  '\t': '\\t',
  '\n': '\\n',
  '\r': '\\r',
  '\b': '\\b',
  '\f': '\\f',
  '\v': '\\v',
};

/** Whether COPY escapes this byte (backslash, \b \t \n \v \f \r). */
function escaped(byte: number): boolean {
  return byte === 0x5c || (byte < 0x0e && byte >= 0x08);
}

/** Whether `buffer[start, end)` holds a byte COPY escapes. */
function needsEscape(buffer: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (escaped(buffer[i]!)) return true;
  return false;
}

/** Escapes a value the way `COPY … TO` does in text format. */
export function escapeCopyText(text: string): string {
  return NEEDS_ESCAPE.test(text) ? text.replace(ESCAPABLE, (char) => ESCAPES[char]!) : text;
}

/**
 * One staging file, rewritten for every batch; written through a 1 MiB buffer that is only held
 * while the batch is written (a transaction's parts wait staged on disk, up to 16 files of them).
 */
export class StageFile {
  readonly path: string;
  #fd: number | null = null;
  /** Where the next write goes (the file is overwritten, not reopened, for each batch). */
  #position = 0;
  /** How long the file is: a batch shorter than the last one cuts off the rest at `flush`. */
  #fileLength = 0;
  /** Null between a {@link flush} and the next write. */
  #buffer: Buffer | null = null;
  #used = 0;
  #fieldsInRow = 0;
  #lineBytes = 0;
  /** Rows written since the last {@link reset}. */
  rows = 0;
  /** Bytes written since the last {@link reset}. */
  bytes = 0;
  /** Length of the longest line, for `read_csv`'s `max_line_size`. */
  longestLine = 0;

  constructor(path: string) {
    this.path = path;
  }

  /**
   * Starts the next batch at the beginning of the file. The old bytes are overwritten rather than
   * truncated first: on ext4, truncating a file to zero and writing it again makes the kernel
   * write it out early (`auto_da_alloc`) — 6 ms per 10,000-row batch, 6% of a CDC run.
   */
  reset(): void {
    this.#fd ??= openSync(this.path, 'w');
    this.#position = 0;
    this.#used = 0;
    this.#fieldsInRow = 0;
    this.#lineBytes = 0;
    this.rows = 0;
    this.bytes = 0;
    this.longestLine = 0;
  }

  /** A whole row already in COPY text form (without its newline), e.g. straight from `COPY TO`. */
  copyRow(bytes: Buffer): void {
    this.#put(bytes);
    this.#fieldsInRow = 1;
  }

  /** Every row of a COPY batch, byte for byte (COPY text is the staging format). */
  copyBatch(batch: CopyTextBatch): void {
    batch.forEachSegment(this.#appendSegment);
    this.rows += batch.length;
    if (batch.longestRow > this.longestLine) this.longestLine = batch.longestRow;
  }

  /** {@link #append}, bound once (whole lines, newlines included). */
  readonly #appendSegment = (buffer: Buffer, start: number, end: number): void =>
    this.#append(buffer, start, end);

  /** Appends one field: NULL, or text escaped as COPY would. */
  field(text: string | null): void {
    if (this.#fieldsInRow++ > 0) this.#byte(TAB);
    if (text === null) this.#put(NULL_FIELD);
    else this.#text(escapeCopyText(text));
  }

  /**
   * Appends one field from the UTF-8 bytes of its text (`buffer[start, end)`), escaping only if it
   * holds a character COPY escapes (most values do not, and are copied without ever becoming a string).
   */
  bytesField(buffer: Buffer, start = 0, end = buffer.length): void {
    if (this.#fieldsInRow++ > 0) this.#byte(TAB);
    const length = end - start;
    if (length > CAPACITY - this.#used) {
      if (needsEscape(buffer, start, end)) this.#text(escapeCopyText(buffer.toString('utf8', start, end)));
      else this.#put(buffer.subarray(start, end));
      return;
    }
    // Checked and copied in one pass: most values are short, and a native copy per value costs
    // more than the loop (it was a fifth of a CDC run's main thread).
    const target = this.#target();
    let at = this.#used;
    for (let i = start; i < end; i++) {
      const byte = buffer[i]!;
      if (escaped(byte)) {
        // What was copied lies beyond `#used`: the escaped text is written over it.
        this.#text(escapeCopyText(buffer.toString('utf8', start, end)));
        return;
      }
      target[at++] = byte;
    }
    this.#used = at;
    this.#lineBytes += length;
    this.bytes += length;
  }

  /** Appends one field whose text needs no escaping (digits, flags). */
  plainField(text: string): void {
    if (this.#fieldsInRow++ > 0) this.#byte(TAB);
    this.#text(text);
  }

  endRow(): void {
    this.#byte(NEWLINE);
    if (this.#lineBytes > this.longestLine) this.longestLine = this.#lineBytes;
    this.#lineBytes = 0;
    this.#fieldsInRow = 0;
    this.rows++;
  }

  /**
   * Writes out what is buffered and cuts off what an earlier, longer batch left: DuckDB sees this
   * batch. The buffer goes too, until the next write.
   */
  flush(): void {
    this.#drain();
    this.#buffer = null;
    if (this.#fileLength > this.#position) {
      ftruncateSync(this.#fd!, this.#position);
      this.#fileLength = this.#position;
    }
  }

  /** Empties the file on disk (its space is not kept for the next batch); creates none. */
  discard(): void {
    if (this.#fd === null) return;
    this.reset();
    this.flush();
  }

  /**
   * The `read_csv` call reading this file, every column as VARCHAR (converted by the caller's SQL).
   * Empty lines are skipped by DuckDB, so callers give one-column tables a second column.
   */
  readSql(columns: readonly string[]): string {
    const names = columns.map((name) => `${literal(name)}: 'VARCHAR'`).join(', ');
    const maxLine = Math.max(2_097_152, this.longestLine + 1024);
    return `read_csv(${literal(this.path)}, delim='\\t', quote='', escape='', header=false, nullstr='\\N', new_line='\\n', auto_detect=false, columns={${names}}, max_line_size=${maxLine}, buffer_size=${Math.max(maxLine * 2, 4_194_304)})`;
  }

  /** Closes and deletes the file. */
  close(): void {
    if (this.#fd !== null) {
      closeSync(this.#fd);
      this.#fd = null;
      this.#fileLength = 0;
    }
    rmSync(this.path, { force: true });
  }

  #text(text: string): void {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    if (text.length * 3 > CAPACITY - this.#used) {
      if (text.length * 3 > CAPACITY) {
        this.#put(Buffer.from(text, 'utf8'));
        return;
      }
      this.#drain();
    }
    const written = this.#target().write(text, this.#used, 'utf8');
    this.#used += written;
    this.#lineBytes += written;
    this.bytes += written;
  }

  /** Appends bytes of the line being written. */
  #put(bytes: Buffer): void {
    this.#append(bytes, 0, bytes.length);
    this.#lineBytes += bytes.length;
  }

  /** `buffer[start, end)` through the write buffer (straight to the file when larger than it). */
  #append(buffer: Buffer, start: number, end: number): void {
    const length = end - start;
    if (length > CAPACITY - this.#used) {
      this.#drain();
      if (length > CAPACITY) {
        this.#write(buffer.subarray(start, end));
        this.bytes += length;
        return;
      }
    }
    buffer.copy(this.#target(), this.#used, start, end);
    this.#used += length;
    this.bytes += length;
  }

  #byte(byte: number): void {
    if (this.#used === CAPACITY) this.#drain();
    this.#target()[this.#used++] = byte;
    this.#lineBytes++;
    this.bytes++;
  }

  /** Writes the buffer out. */
  #drain(): void {
    if (this.#used === 0 || this.#buffer === null) return;
    this.#write(this.#buffer.subarray(0, this.#used));
    this.#used = 0;
  }

  /** The buffer to write into, taken again after a {@link flush} let it go. */
  #target(): Buffer {
    this.#buffer ??= Buffer.allocUnsafe(CAPACITY);
    return this.#buffer;
  }

  #write(bytes: Buffer): void {
    this.#fd ??= openSync(this.path, 'w');
    let offset = 0;
    while (offset < bytes.length) {
      const written = writeSync(this.#fd, bytes, offset, bytes.length - offset, this.#position);
      offset += written;
      this.#position += written;
    }
    if (this.#position > this.#fileLength) this.#fileLength = this.#position;
  }
}

/**
 * The staging files of one sink, in its own directory: a change batch takes a file per table and
 * gives them back once applied, so a batch can be staged while the one before is still being
 * read by DuckDB.
 */
export class StageFilePool {
  readonly #dir: string;
  readonly #all: StageFile[] = [];
  readonly #spare: StageFile[] = [];

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** A file, emptied for the next batch. */
  take(): StageFile {
    let file = this.#spare.pop();
    if (file === undefined) {
      file = new StageFile(join(this.#dir, `stage-${this.#all.length}.tsv`));
      this.#all.push(file);
    }
    file.reset();
    return file;
  }

  release(file: StageFile): void {
    this.#spare.push(file);
  }

  /** Closes and deletes every file. */
  close(): void {
    for (const file of this.#all) file.close();
    this.#all.length = 0;
    this.#spare.length = 0;
  }
}
