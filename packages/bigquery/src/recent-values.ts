/**
 * The values this sink wrote lately into columns Postgres may leave out of an update (unchanged
 * TOAST), per row, so most unchanged values are filled in without asking BigQuery. Bounded by
 * bytes, least recently written first out.
 *
 * The cache also says when it cannot be trusted: per table, the latest time a write happened that
 * the cache does not hold (rows written before this process started, by a copy, or evicted). A
 * row missing from the cache was last written no later than that, which is what decides whether
 * BigQuery can already be asked for it (see `toast-resolver.ts`).
 */
import type { ProtoValue } from './type-mapping.js';

interface Entry {
  readonly table: string;
  /** Values by column index (toastable columns only; others undefined). */
  readonly values: ReadonlyMap<number, ProtoValue>;
  readonly bytes: number;
  readonly writtenAt: number;
}

const ENTRY_OVERHEAD = 96;

export class RecentValues {
  readonly #maxBytes: number;
  readonly #entries = new Map<string, Entry>();
  readonly #untrackedUntil = new Map<string, number>();
  #cursor: MapIterator<[string, Entry]> = this.#entries.entries();
  #bytes = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Marks writes to `table` until `time` (ms) as not held here. */
  untracked(table: string, time: number): void {
    this.#untrackedUntil.set(table, Math.max(this.#untrackedUntil.get(table) ?? 0, time));
  }

  /** The latest write to `table` this cache cannot answer for (0: none). */
  untrackedUntil(table: string): number {
    return this.#untrackedUntil.get(table) ?? 0;
  }

  /** Remembers the values the row `rowKey` of `table` now has. */
  remember(table: string, rowKey: string, values: ReadonlyMap<number, ProtoValue>, now: number): void {
    if (this.#maxBytes <= 0) {
      this.untracked(table, now);
      return;
    }
    const id = `${table}\u0000${rowKey}`;
    this.#remove(id);
    let bytes = ENTRY_OVERHEAD + id.length * 2;
    for (const value of values.values()) bytes += sizeOf(value);
    if (bytes > this.#maxBytes) {
      this.untracked(table, now);
      return;
    }
    this.#entries.set(id, { table, values, bytes, writtenAt: now });
    this.#bytes += bytes;
    while (this.#bytes > this.#maxBytes) {
      // One iterator kept across calls: a fresh one would step over every deleted slot at the
      // front of the map each time (quadratic once the cache churns).
      let oldest = this.#cursor.next();
      if (oldest.done) {
        this.#cursor = this.#entries.entries();
        oldest = this.#cursor.next();
      }
      const [oldestId, entry] = oldest.value as [string, Entry];
      this.#remove(oldestId);
      this.untracked(entry.table, entry.writtenAt);
    }
  }

  /** The value of column `index` the row had when this sink last wrote it; undefined if unknown. */
  lookup(table: string, rowKey: string, index: number): ProtoValue | undefined {
    return this.#entries.get(`${table}\u0000${rowKey}`)?.values.get(index);
  }

  /** The row is gone (deleted, or its key changed). */
  forget(table: string, rowKey: string): void {
    this.#remove(`${table}\u0000${rowKey}`);
  }

  /** Drops every row of `table` (its contents were replaced: truncate, new copy). */
  clearTable(table: string, untrackedUntil: number): void {
    for (const [id, entry] of this.#entries) if (entry.table === table) this.#remove(id);
    this.#untrackedUntil.set(table, untrackedUntil);
  }

  #remove(id: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    this.#entries.delete(id);
    this.#bytes -= entry.bytes;
  }
}

function sizeOf(value: ProtoValue): number {
  if (value === null) return 8;
  if (typeof value === 'string') return 40 + value.length * 2;
  if (Buffer.isBuffer(value)) return 80 + value.length;
  if (Array.isArray(value)) {
    let bytes = 32;
    for (const item of value as readonly ProtoValue[]) bytes += sizeOf(item);
    return bytes;
  }
  return 16;
}
