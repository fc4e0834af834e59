import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProgressReporter } from '../src/cli/progress-reporter.js';

function captured(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

describe('ProgressReporter', () => {
  it('prints counts with thousands separators, small and large', () => {
    const { stream, text } = captured();
    const reporter = new ProgressReporter({ stream });
    reporter.onProgress({ type: 'copy-done', table: '"public"."a"', rows: 1_234_567, ms: 2_000 });
    reporter.onProgress({ type: 'copy-done', table: '"public"."b"', rows: 999, ms: 1_000 });
    reporter.onProgress({ type: 'copy-done', table: '"public"."c"', rows: 1_000, ms: 0 });
    expect(text().split('\n')).toEqual([
      'pg-replicate: copied "public"."a": 1,234,567 rows in 2.0 s (617,284 rows/s)',
      'pg-replicate: copied "public"."b": 999 rows in 1.0 s (999 rows/s)',
      'pg-replicate: copied "public"."c": 1,000 rows in 0 ms (1,000 rows/s)',
      '',
    ]);
  });

  it('prints no ETA before the first rows of a copy are in, then one from the rate', () => {
    const { stream, text } = captured();
    const reporter = new ProgressReporter({ stream, intervalSeconds: 0 });
    reporter.onProgress({
      type: 'copy-start',
      table: '"public"."a"',
      estimatedRows: 1_000,
      index: 1,
      count: 1,
    });
    reporter.onProgress({ type: 'copy-progress', table: '"public"."a"', rows: 500 });
    const [first, second] = text().split('\n');
    expect(first).toMatch(/^pg-replicate: copying \[1\/1\] "public"\."a" 0% 0\/~1,000 rows, 0 rows\/s$/);
    expect(second).toMatch(
      /^pg-replicate: copying \[1\/1\] "public"\."a" 50% 500\/~1,000 rows, [\d,]+ rows\/s, ETA /,
    );
  });

  it("shows the progress of the whole backfill beside the table's when it copies several", () => {
    const { stream, text } = captured();
    const reporter = new ProgressReporter({ stream, intervalSeconds: 0 });
    reporter.onProgress({ type: 'backfill-start', tables: 2, estimatedRows: 4_000 });
    const start = (table: string, index: number) =>
      reporter.onProgress({ type: 'copy-start', table, estimatedRows: 2_000, index, count: 2 });
    start('"public"."a"', 1);
    reporter.onProgress({ type: 'copy-done', table: '"public"."a"', rows: 2_000, ms: 1_000 });
    start('"public"."b"', 2);
    reporter.onProgress({ type: 'copy-progress', table: '"public"."b"', rows: 1_000 });
    const lines = text().split('\n');
    expect(lines[2]).toMatch(
      /^pg-replicate: copying \[2\/2\] "public"\."b" 0% 0\/~2,000 rows, 0 rows\/s; all tables 50% 2,000\/~4,000 rows, [\d,]+ rows\/s, ETA /,
    );
    expect(lines[3]).toMatch(
      / 50% 1,000\/~2,000 rows, .*; all tables 75% 3,000\/~4,000 rows, [\d,]+ rows\/s, ETA /,
    );
  });

  it('without statistics, counts rows and their rate', () => {
    const { stream, text } = captured();
    const reporter = new ProgressReporter({ stream, intervalSeconds: 0 });
    reporter.onProgress({ type: 'backfill-start', tables: 2, estimatedRows: -1 });
    reporter.onProgress({ type: 'copy-start', table: '"public"."a"', estimatedRows: -1, index: 1, count: 2 });
    reporter.onProgress({ type: 'copy-progress', table: '"public"."a"', rows: 1_500 });
    expect(text().split('\n')[1]).toMatch(
      /^pg-replicate: copying \[1\/2\] "public"\."a": 1,500 rows, [\d,]+ rows\/s; all tables: 1,500 rows, [\d,]+ rows\/s$/,
    );
  });
});
