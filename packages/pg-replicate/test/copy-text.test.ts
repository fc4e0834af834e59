/**
 * `COPY … TO STDOUT` text format: `CopyTextRow` (tab-separated fields, `\N` for NULL, backslash
 * escapes) and `CopyTextBatcher` (batches of rows out of CopyData payloads, whatever their
 * boundaries).
 * https://www.postgresql.org/docs/current/sql-copy.html#SQL-COPY-FILE-FORMATS (Text Format)
 */
import { describe, expect, it } from 'vitest';
import { type CopyTextBatch, CopyTextBatcher } from '../src/copy-batch.js';
import { PgReplicateError } from '../src/errors.js';
import { CopyTextRow, type RowData, unescapeCopyText } from '../src/row.js';

/** A row from its COPY text as written in the server's output (a JS string, UTF-8 encoded). */
function row(text: string, columns: number): CopyTextRow {
  return new CopyTextRow(Buffer.from(text, 'utf8'), columns);
}

function values(r: RowData): (string | null)[] {
  return Array.from({ length: r.length }, (_, i) => r.text(i));
}

function copyError(read: () => unknown): PgReplicateError {
  let caught: unknown;
  try {
    read();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(PgReplicateError);
  expect((caught as PgReplicateError).code).toBe('PROTOCOL_VIOLATION');
  return caught as PgReplicateError;
}

describe('CopyTextRow: fields', () => {
  it('splits on tabs, in column order', () => {
    const r = row('1\tone\t2024-01-01', 3);
    expect(r.length).toBe(3);
    expect(values(r)).toEqual(['1', 'one', '2024-01-01']);
  });

  it('\\N alone is NULL; the escaped backslash \\\\N is the two characters \\N', () => {
    const r = row('\\N\t\\\\N\tN\t\\\\\\N', 4);
    expect([r.isNull(0), r.isNull(1), r.isNull(2), r.isNull(3)]).toEqual([true, false, false, false]);
    expect(values(r)).toEqual([null, '\\N', 'N', '\\N']);
  });

  it('keeps empty strings apart from NULL, at the start, middle and end', () => {
    const r = row('\t\\N\t\t', 4);
    expect(values(r)).toEqual(['', null, '', '']);
    expect([r.isNull(0), r.isNull(1), r.isNull(2), r.isNull(3)]).toEqual([false, true, false, false]);
    const one = row('', 1);
    expect(one.text(0)).toBe('');
    expect(one.isNull(0)).toBe(false);
    expect(values(row('\\N', 1))).toEqual([null]);
  });

  it('is never unchanged TOAST (COPY sends every value)', () => {
    const r: RowData = row('a\t\\N', 2);
    expect([r.isUnchangedToast(0), r.isUnchangedToast(1)]).toEqual([false, false]);
  });

  it('reads multi-byte UTF-8 as is', () => {
    expect(values(row('caf\u00e9\t\u4e2d\u6587\t\u{1f418}\t\u00e9\\t\u{1f600}', 4))).toEqual([
      'caf\u00e9',
      '\u4e2d\u6587',
      '\u{1f418}',
      '\u00e9\t\u{1f600}',
    ]);
  });

  it('an escaped tab (\\t) is data, not a field separator', () => {
    const r = row('a\\tb\tc', 2);
    expect(values(r)).toEqual(['a\tb', 'c']);
  });

  it('keeps a view of the row bytes and splits it only when first read', () => {
    const bytes = Buffer.from('a\tb\tc');
    const r = new CopyTextRow(bytes, 2); // one field too many, not noticed yet
    expect(r.bytes).toBe(bytes);
    copyError(() => r.text(0));
  });
});

describe('CopyTextRow: escapes', () => {
  it.each([
    ['\\b', '\b'],
    ['\\f', '\f'],
    ['\\n', '\n'],
    ['\\r', '\r'],
    ['\\t', '\t'],
    ['\\v', '\v'],
    ['\\\\', '\\'],
  ])('%s', (escaped, value) => {
    expect(row(`x${escaped}y`, 1).text(0)).toBe(`x${value}y`);
    expect(row(escaped, 1).text(0)).toBe(value);
  });

  it('all of them in one field, next to plain text', () => {
    expect(row('a\\bb\\fc\\nd\\re\\tf\\vg\\\\h', 1).text(0)).toBe('a\bb\fc\nd\re\tf\vg\\h');
  });

  it.each([
    ['\\101', 'A'],
    ['\\0', '\0'],
    ['\\7', '\x07'],
    ['\\12', '\n'],
    ['\\1014', 'A4'], // at most three digits
    ['\\18', '\x018'], // 8 is not an octal digit
    ['\\303\\251', '\u00e9'], // bytes of a multi-byte character
    ['\\360\\237\\220\\230', '\u{1f418}'],
    ['\\703\\251', '\u00e9'], // 0o703 keeps its low byte, 0xC3
  ])('octal %s', (escaped, value) => {
    expect(row(escaped, 1).text(0)).toBe(value);
  });

  it.each([
    ['\\x41', 'A'],
    ['\\x4a\\x4A', 'JJ'],
    ['\\x9', '\t'], // one digit
    ['\\x414', 'A4'], // at most two digits
    ['\\x4g', '\x04g'],
    ['\\xg', 'xg'], // no digit: the x stands for itself
    ['\\xc3\\xA9', '\u00e9'],
  ])('hex %s', (escaped, value) => {
    expect(row(escaped, 1).text(0)).toBe(value);
  });

  it('any other escaped character stands for itself; a trailing backslash is kept', () => {
    expect(row('\\a\\N\\.\\"', 1).text(0)).toBe('aN."');
    expect(row('ab\\', 1).text(0)).toBe('ab\\');
  });

  it('unescapes only the requested range', () => {
    const bytes = Buffer.from('\\t\\n|x\\ty|\\\\');
    expect(unescapeCopyText(bytes, 5, 9)).toBe('x\ty');
    expect(unescapeCopyText(bytes, 0, 4)).toBe('\t\n');
    expect(unescapeCopyText(bytes, 10, 12)).toBe('\\');
    expect(unescapeCopyText(bytes, 3, 3)).toBe('');
  });

  it('escapes in one field do not leak into the next', () => {
    expect(values(row('plain\t\\\\\tplain too\t\\101', 4))).toEqual(['plain', '\\', 'plain too', 'A']);
  });
});

describe('CopyTextRow: wrong shapes', () => {
  it.each([
    ['a\tb\tc', 2, 'more than 2 fields'],
    ['a\tb\t', 2, 'more than 2 fields'],
    ['a', 2, '1 fields where 2 were expected'],
    ['', 3, '1 fields where 3 were expected'],
    ['a\tb', 3, '2 fields where 3 were expected'],
  ])('%j with %i columns is a PROTOCOL_VIOLATION', (text, columns, problem) => {
    const error = copyError(() => row(text, columns).isNull(0));
    expect(error.message).toBe(`malformed COPY row: ${problem}`);
    expect(error.detail).toBe(`row starts with ${JSON.stringify(text)}`);
  });

  it('the detail shows at most the first 80 characters', () => {
    const long = 'x'.repeat(200);
    expect(copyError(() => row(`${long}\t${long}`, 1).text(0)).detail).toBe(
      `row starts with ${JSON.stringify('x'.repeat(80))}`,
    );
  });
});

// --- splitting payloads into rows -------------------------------------------------------------------

const STREAM_ROWS = ['1\tone\t\\N', '2\tcaf\u00e9 \u{1f418}\t\\\\N', '3\t\t\\t\\n\\\\', '4\t\u4e2d\u6587\tx'];
const STREAM = Buffer.from(STREAM_ROWS.map((r) => `${r}\n`).join(''), 'utf8');
const STREAM_VALUES = [
  ['1', 'one', null],
  ['2', 'caf\u00e9 \u{1f418}', '\\N'],
  ['3', '', '\t\n\\'],
  ['4', '\u4e2d\u6587', 'x'],
];

/** Pushes each payload through one batcher and returns the rows' values. */
function split(payloads: readonly Buffer[], columns = 3): (string | null)[][] {
  const batcher = new CopyTextBatcher(columns);
  for (const payload of payloads) batcher.push(payload, 0, payload.length);
  batcher.finish();
  return [...batcher.take()].map(values);
}

/** The bytes a batch hands to raw readers (whole lines, newlines included). */
function rawLines(batch: CopyTextBatch): string[] {
  const segments: string[] = [];
  batch.forEachSegment((buffer, start, end) => {
    expect(buffer[end - 1]).toBe(0x0a);
    segments.push(buffer.toString('utf8', start, end));
  });
  return segments;
}

describe('CopyTextBatcher', () => {
  it('one row per payload, as the server sends them', () => {
    const payloads = STREAM_ROWS.map((r) => Buffer.from(`${r}\n`, 'utf8'));
    expect(split(payloads)).toEqual(STREAM_VALUES);
  });

  it('payloads inside larger buffers (socket chunks with message headers around them)', () => {
    const chunk = Buffer.concat(STREAM_ROWS.flatMap((r) => [Buffer.from('HDR##'), Buffer.from(`${r}\n`)]));
    const batcher = new CopyTextBatcher(3);
    let offset = 0;
    for (const r of STREAM_ROWS) {
      const length = Buffer.byteLength(`${r}\n`);
      batcher.push(chunk, offset + 5, offset + 5 + length);
      offset += 5 + length;
    }
    const batch = batcher.take();
    expect(batch.length).toBe(4);
    expect(batch.byteLength).toBe(STREAM.length);
    expect([...batch].map(values)).toEqual(STREAM_VALUES);
    expect(values(batch.row(2))).toEqual(STREAM_VALUES[2]);
    // The rows were moved together over the headers: one run for a raw reader.
    expect(rawLines(batch)).toEqual([STREAM.toString('utf8')]);
    expect(batch.longestRow).toBe(Math.max(...STREAM_ROWS.map((r) => Buffer.byteLength(r))));
  });

  it('a batch taken in the middle of a chunk keeps its rows while later rows of the chunk move', () => {
    const chunk = Buffer.concat(STREAM_ROWS.flatMap((r) => [Buffer.from('HDR##'), Buffer.from(`${r}\n`)]));
    const batcher = new CopyTextBatcher(3);
    const batches: CopyTextBatch[] = [];
    let offset = 0;
    for (const r of STREAM_ROWS) {
      const length = Buffer.byteLength(`${r}\n`);
      batcher.push(chunk, offset + 5, offset + 5 + length);
      offset += 5 + length;
      if (batches.length === 0 && batcher.rows === 2) batches.push(batcher.take());
    }
    batches.push(batcher.take());
    expect(batches.map((b) => b.length)).toEqual([2, 2]);
    expect(batches.flatMap((b) => [...b].map(values))).toEqual(STREAM_VALUES);
    expect(batches.flatMap(rawLines).join('')).toBe(STREAM.toString('utf8'));
  });

  it('release() hands the memory to later rows; detach() keeps a copy that outlives it', () => {
    const batcher = new CopyTextBatcher(3);
    const payload = (r: string) => Buffer.from(`${r}\n`, 'utf8');
    batcher.push(payload(STREAM_ROWS[0]!), 0, payload(STREAM_ROWS[0]!).length);
    const first = batcher.take();
    const kept = first.detach();
    first.release();
    expect(() => [...first]).toThrow(/after release/);
    expect(() => first.forEachSegment(() => {})).toThrow(/after release/);
    // The next batch reuses the released slab: the detached copy must not change.
    for (const r of STREAM_ROWS.slice(1)) batcher.push(payload(r), 0, payload(r).length);
    const second = batcher.take();
    expect([...kept].map(values)).toEqual(STREAM_VALUES.slice(0, 1));
    expect([...second].map(values)).toEqual(STREAM_VALUES.slice(1));
    expect(rawLines(kept).join('')).toBe(`${STREAM_ROWS[0]}\n`);
  });

  it('a batch that fills little of its slab holds only its own bytes (small tables wait in queues)', () => {
    const batcher = new CopyTextBatcher(3);
    batcher.push(STREAM, 0, STREAM.length);
    const small = batcher.take();
    expect(small.retainedBytes).toBe(STREAM.length);
    expect([...small].map(values)).toEqual(STREAM_VALUES);
    // 600 KB of rows fill more than a quarter of a 1 MiB slab: the batch keeps the slab.
    const row = Buffer.from(`1\t${'x'.repeat(1000)}\t\\N\n`);
    for (let i = 0; i < 600; i++) batcher.push(row, 0, row.length);
    const large = batcher.take();
    expect(large.byteLength).toBe(600 * row.length);
    expect(large.retainedBytes).toBe(1 << 20);
  });

  it('several rows in one payload', () => {
    expect(split([STREAM])).toEqual(STREAM_VALUES);
  });

  it('rows split across payloads at every byte position (also inside multi-byte characters)', () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      expect(split([STREAM.subarray(0, cut), STREAM.subarray(cut)]), `cut at ${cut}`).toEqual(STREAM_VALUES);
    }
  });

  it('rows split across payloads at every pair of positions; raw lines and byte count stay exact', () => {
    for (let a = 1; a < STREAM.length; a += 3) {
      for (let b = a; b < STREAM.length; b += 2) {
        const batcher = new CopyTextBatcher(3);
        for (const payload of [STREAM.subarray(0, a), STREAM.subarray(a, b), STREAM.subarray(b)]) {
          batcher.push(payload, 0, payload.length);
        }
        batcher.finish();
        const batch = batcher.take();
        expect([...batch].map(values), `cuts at ${a}, ${b}`).toEqual(STREAM_VALUES);
        expect(rawLines(batch).join(''), `cuts at ${a}, ${b}`).toBe(STREAM.toString('utf8'));
        expect(batch.byteLength).toBe(STREAM.length);
      }
    }
  });

  it('one byte at a time', () => {
    const payloads = Array.from({ length: STREAM.length }, (_, i) => STREAM.subarray(i, i + 1));
    expect(split(payloads)).toEqual(STREAM_VALUES);
  });

  it('empty payloads in between change nothing', () => {
    const empty = Buffer.alloc(0);
    expect(split([empty, STREAM.subarray(0, 5), empty, STREAM.subarray(5), empty])).toEqual(STREAM_VALUES);
  });

  it('an empty line is a row (one empty field)', () => {
    expect(split([Buffer.from('\n\n')], 1)).toEqual([[''], ['']]);
    expect(split([Buffer.from('\\N\n\n')], 1)).toEqual([[null], ['']]);
  });

  it('take() hands over the rows so far; a row cut between two batches lands whole in the second', () => {
    const batcher = new CopyTextBatcher(3);
    batcher.push(STREAM, 0, 20);
    expect(batcher.rows).toBe(1);
    const first = batcher.take();
    expect(batcher.rows).toBe(0);
    expect(batcher.bytes).toBe(0);
    batcher.push(STREAM, 20, STREAM.length);
    batcher.finish();
    const second = batcher.take();
    expect([...first].map(values)).toEqual(STREAM_VALUES.slice(0, 1));
    expect([...second].map(values)).toEqual(STREAM_VALUES.slice(1));
    expect(first.byteLength + second.byteLength).toBe(STREAM.length);
  });

  it('data ending in the middle of a row is a PROTOCOL_VIOLATION', () => {
    for (const cut of [1, 5, STREAM.length - 1]) {
      const batcher = new CopyTextBatcher(3);
      batcher.push(STREAM, 0, cut);
      const error = copyError(() => batcher.finish());
      expect(error.message).toBe('malformed COPY row: the data ended in the middle of a row');
    }
  });

  it('a row with the wrong field count fails when read, not when split', () => {
    const batcher = new CopyTextBatcher(3);
    const payload = Buffer.from('1\ta\tb\n2\ta\n3\ta\tb\tc\n');
    batcher.push(payload, 0, payload.length);
    batcher.finish();
    const rows = [...batcher.take()];
    expect(rows).toHaveLength(3);
    expect(values(rows[0]!)).toEqual(['1', 'a', 'b']);
    expect(copyError(() => rows[1]!.text(0)).message).toContain('2 fields where 3 were expected');
    expect(copyError(() => rows[2]!.isNull(2)).message).toContain('more than 3 fields');
  });
});
