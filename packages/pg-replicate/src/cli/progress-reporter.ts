/**
 * Human-facing progress on stderr: a live progress bar (rows, rows/s, ETA from reltuples) when
 * stderr is a terminal, and a periodic one-line status otherwise (logs, CI). stdout stays data-only.
 */
import type { Writable } from 'node:stream';
import { formatLsn } from '../lsn.js';
import type { Logger, ProgressEvent } from '../pipeline/progress.js';

export interface ReporterOptions {
  stream?: Writable & { isTTY?: boolean; columns?: number };
  /** Seconds between status lines when not on a terminal (default 5). */
  intervalSeconds?: number;
  quiet?: boolean;
  verbose?: boolean;
}

interface CopyState {
  /** `[2/5] "public"."orders"`: the table and where it stands in the backfill. */
  table: string;
  estimated: number;
  rows: number;
  started: number;
}

/** A backfill of several tables: rows of the tables done, to show the whole copy's progress. */
interface BackfillState {
  tables: number;
  estimated: number;
  rowsDone: number;
  started: number;
}

export class ProgressReporter implements Logger {
  readonly #stream: Writable & { isTTY?: boolean; columns?: number };
  readonly #tty: boolean;
  readonly #intervalMs: number;
  readonly #quiet: boolean;
  readonly #verbose: boolean;
  #copy: CopyState | null = null;
  #backfill: BackfillState | null = null;
  #changes = 0;
  #transactions = 0;
  #streamStarted = 0;
  #lastLine = 0;
  #lagMs = 0;
  #lsn = '';
  #barShown = false;

  constructor(options: ReporterOptions = {}) {
    this.#stream = options.stream ?? process.stderr;
    this.#tty = this.#stream.isTTY === true;
    this.#intervalMs = (options.intervalSeconds ?? 5) * 1000;
    this.#quiet = options.quiet ?? false;
    this.#verbose = options.verbose ?? false;
  }

  debug(message: string): void {
    if (this.#verbose) this.#log(message);
  }

  info(message: string): void {
    if (!this.#quiet) this.#log(message);
  }

  warn(message: string): void {
    this.#log(`warning: ${message}`);
  }

  /** Pass as the pipeline's `onProgress`. */
  readonly onProgress = (event: ProgressEvent): void => {
    const now = performance.now();
    switch (event.type) {
      case 'backfill-start':
        this.#backfill = { tables: event.tables, estimated: event.estimatedRows, rowsDone: 0, started: now };
        break;
      case 'copy-start':
        this.#copy = {
          table: `[${event.index}/${event.count}] ${event.table}`,
          estimated: event.estimatedRows,
          rows: 0,
          started: now,
        };
        this.#render(now, true);
        break;
      case 'copy-progress':
        if (this.#copy) this.#copy.rows = event.rows;
        this.#render(now, false);
        break;
      case 'copy-done': {
        if (this.#backfill) this.#backfill.rowsDone += event.rows;
        this.#clearBar();
        const rate = event.ms > 0 ? Math.round((event.rows / event.ms) * 1000) : event.rows;
        this.info(
          `copied ${event.table}: ${count(event.rows)} rows in ${seconds(event.ms)} (${count(rate)} rows/s)`,
        );
        this.#copy = null;
        break;
      }
      case 'streaming':
        this.#streamStarted = now;
        this.#lsn = formatLsn(event.startLsn);
        break;
      case 'changes':
        this.#changes +=
          event.counts.insert + event.counts.update + event.counts.delete + event.counts.truncate;
        this.#transactions += event.transactions;
        this.#lagMs = event.lagMs;
        this.#lsn = formatLsn(event.lsn);
        this.#render(now, false);
        break;
      case 'advanced':
        this.#lsn = formatLsn(event.lsn);
        break;
      case 'slot':
        break;
    }
  };

  /** Removes the live bar before the process prints its summary. */
  finish(): void {
    this.#clearBar();
  }

  #render(now: number, force: boolean): void {
    if (this.#quiet) return;
    if (this.#tty) {
      if (!force && now - this.#lastLine < 100) return;
      this.#lastLine = now;
      const line = this.#statusLine(now, true);
      const width = this.#stream.columns ?? 100;
      this.#stream.write(`\r${line.slice(0, width - 1).padEnd(Math.min(width - 1, line.length + 2))}`);
      this.#barShown = true;
      return;
    }
    if (!force && now - this.#lastLine < this.#intervalMs) return;
    this.#lastLine = now;
    this.#stream.write(`pg-replicate: ${this.#statusLine(now, false)}\n`);
  }

  #statusLine(now: number, bar: boolean): string {
    const copy = this.#copy;
    if (copy !== null) {
      const table = `copying ${copy.table}${progress(copy.rows, copy.estimated, now - copy.started, bar)}`;
      const backfill = this.#backfill;
      if (backfill === null || backfill.tables < 2) return table;
      const rows = backfill.rowsDone + copy.rows;
      return `${table}; all tables${progress(rows, backfill.estimated, now - backfill.started, false)}`;
    }
    const elapsed = Math.max(1, now - this.#streamStarted);
    const rate = Math.round((this.#changes / elapsed) * 1000);
    return `streaming: ${count(this.#changes)} changes in ${count(this.#transactions)} transactions (${count(rate)}/s), lag ${this.#lagMs} ms, at ${this.#lsn}`;
  }

  #clearBar(): void {
    if (this.#barShown) {
      this.#stream.write('\r\x1b[K');
      this.#barShown = false;
    }
  }

  #log(message: string): void {
    this.#clearBar();
    this.#stream.write(`pg-replicate: ${message}\n`);
  }
}

/**
 * ` 45% 4,500/~10,000 rows, 9,000 rows/s, ETA 0.6 s` (with a bar if asked), or `: 4,500 rows,
 * 9,000 rows/s` without an estimate.
 */
function progress(rows: number, estimated: number, elapsedMs: number, bar: boolean): string {
  const rate = (rows / Math.max(1, elapsedMs)) * 1000;
  if (estimated <= 0) return `: ${count(rows)} rows, ${count(rate)} rows/s`;
  const fraction = Math.min(1, rows / estimated);
  // No ETA before the first rows are in: "ETA 0 ms" at 0% would be a promise.
  const eta = rate > 0 ? `, ETA ${seconds(Math.max(0, ((estimated - rows) / rate) * 1000))}` : '';
  const graphic = bar ? ` ${progressBar(fraction, 24)}` : '';
  return `${graphic} ${Math.floor(fraction * 100)}% ${count(rows)}/~${count(estimated)} rows, ${count(rate)} rows/s${eta}`;
}

function progressBar(fraction: number, width: number): string {
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** `1234567` → `1,234,567` (`toLocaleString` loads ICU's number data: 15 ms on its first call). */
function count(value: number): string {
  return String(Math.round(value)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function seconds(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}
