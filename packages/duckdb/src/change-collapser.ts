/**
 * Collapses a run of row changes to one table into their net effect, so that a batch is applied
 * set-wise (delete the affected keys, insert the final rows) instead of statement by statement.
 * Pure logic over Postgres text values; `change-applier.ts` turns the result into SQL.
 *
 * Keyed tables: per key, in commit order, the last state wins — but three things must survive
 * the collapse:
 * - Unchanged TOAST columns (not sent by Postgres) take the value the row had: from an earlier
 *   change in the run when there is one, from the old row under REPLICA IDENTITY FULL, otherwise
 *   from the row in DuckDB as it was before the run (its "origin", found by the key it had then —
 *   which a chain of key updates can make different from its final key).
 * - A key update removes the row under the old key.
 * - A key first seen in an insert cannot be in DuckDB yet (keys are unique and every change is
 *   applied exactly once), so it needs no delete: insert-only batches become pure appends —
 *   except changes replayed over a resumed copy, whose keys may be there already. While a run
 *   holds nothing but such inserts, their rows are only listed (no key is read or looked up);
 *   the first other change enters them by key.
 *
 * Tables identified by the whole row (REPLICA IDENTITY FULL without a key) are multisets: each
 * distinct row gets a net count (+1 per insert, −1 per delete, an update is both), applied as
 * "delete that many copies" or "insert that many copies" — order does not matter for multisets.
 */
import type { RowChangeEvent, RowData, UpdateEvent } from 'pg-replicate';
import type { Identity } from './table-plan.js';

export type Texts = (string | null)[];

/** A row whose values were merged from several changes, as a {@link RowData}. */
export class MergedRow implements RowData {
  constructor(readonly values: Texts) {}

  get length(): number {
    return this.values.length;
  }

  isNull(index: number): boolean {
    return this.values[index] === null;
  }

  isUnchangedToast(): boolean {
    return false;
  }

  text(index: number): string | null {
    return this.values[index] ?? null;
  }
}

/** The net effect on one key. */
export interface KeyedEntry {
  /** Key column texts (in identity order). */
  readonly key: Texts;
  /** Whether a row with this key may exist in DuckDB from before the run (delete it first). */
  readonly deleteExisting: boolean;
  /**
   * The final row (every column; unchanged TOAST values it could not resolve read as NULL and are
   * flagged in `unchanged`), or null when the key ends up deleted. Rows that needed no merging
   * are the event's own, unparsed.
   */
  row: RowData | null;
  /** Per column, 1 where the value is an unchanged TOAST value to take from the origin row. */
  unchanged: Uint8Array | null;
  /** Key texts of the row in DuckDB providing the unchanged values. */
  origin: Texts | null;
  /**
   * Whether the run's first change of this key read the row DuckDB has under it: an update that
   * kept unchanged TOAST values, under this key or moving the row to another. Then that row must
   * be there when the run is applied — any other first change replaces or deletes it unread.
   */
  readonly readsExisting: boolean;
}

/** A distinct row and how many copies of it the run adds (> 0) or removes (< 0). */
export interface RowCount {
  readonly row: Texts;
  count: number;
}

/** Thrown for a change that cannot be applied to the table as identified. */
export class UnappliableChangeError extends Error {
  override readonly name = 'UnappliableChangeError';
}

function keyOf(row: RowData, keyColumns: readonly number[]): Texts {
  const key: Texts = new Array(keyColumns.length);
  for (let j = 0; j < keyColumns.length; j++) key[j] = row.text(keyColumns[j]!);
  return key;
}

function texts(row: RowData): Texts {
  const values: Texts = new Array(row.length);
  for (let i = 0; i < row.length; i++) values[i] = row.text(i);
  return values;
}

/** A string identifying a list of texts (NUL cannot occur in Postgres text). */
function join(values: Texts): string {
  if (values.length === 1) return values[0] ?? '\u0001';
  let joined = '';
  for (const value of values) joined += value === null ? '\u0001\u0000' : `${value}\u0000`;
  return joined;
}

/** Collapses row changes of one table, fed in commit order. */
export class ChangeCollapser {
  readonly #identity: Identity;
  readonly #keyed = new Map<string, KeyedEntry>();
  readonly #counts = new Map<string, RowCount>();
  readonly #inserts: RowData[] = [];
  /** Changes fed. */
  size = 0;

  constructor(identity: Identity) {
    this.#identity = identity;
  }

  get keyedEntries(): IterableIterator<KeyedEntry> {
    return this.#keyed.values();
  }

  get rowCounts(): IterableIterator<RowCount> {
    return this.#counts.values();
  }

  /**
   * Rows to append: every insert of a table without identity; for keyed tables, the inserts that
   * came before any other change of the run (see the module comment), not in `keyedEntries`.
   */
  get inserts(): readonly RowData[] {
    return this.#inserts;
  }

  /**
   * Adds a change. `replayed`: the change may already be in DuckDB (replayed after a resumed
   * copy), so a key it inserts may exist and is replaced rather than appended.
   */
  add(event: RowChangeEvent, replayed = false): void {
    this.size++;
    const identity = this.#identity;
    if (identity.kind === 'key') this.#addKeyed(event, identity.columns, replayed);
    else if (identity.kind === 'row') this.#addCounted(event);
    else if (event.op === 'insert') this.#inserts.push(event.new);
    else
      throw new UnappliableChangeError(`an ${event.op} arrived for a table without identity (append-only)`);
  }

  #addKeyed(event: RowChangeEvent, keyColumns: readonly number[], replayed: boolean): void {
    if (this.#keyed.size === 0) {
      if (event.op === 'insert' && !replayed) {
        this.#inserts.push(event.new);
        return;
      }
      this.#enterInserts(keyColumns);
    }
    if (event.op === 'delete') {
      const key = keyOf(event.old, keyColumns);
      const id = join(key);
      const previous = this.#keyed.get(id);
      this.#keyed.set(id, {
        key,
        deleteExisting: previous?.deleteExisting ?? true,
        row: null,
        unchanged: null,
        origin: null,
        readsExisting: previous?.readsExisting ?? false,
      });
      return;
    }
    const key = keyOf(event.new, keyColumns);
    const id = join(key);
    if (event.op === 'insert') {
      const previous = this.#keyed.get(id);
      this.#keyed.set(id, {
        key,
        deleteExisting: previous?.deleteExisting ?? replayed,
        row: event.new,
        unchanged: null,
        origin: null,
        readsExisting: previous?.readsExisting ?? false,
      });
      return;
    }
    const oldKey = event.old === undefined ? key : keyOf(event.old, keyColumns);
    const oldId = event.old === undefined ? id : join(oldKey);
    const before = this.#keyed.get(oldId);
    const merged = this.#resolveToast(event, before, oldKey);
    // First seen here, and some values come from its row in DuckDB (`before` would have had them).
    const readsExisting = before?.readsExisting ?? merged.unchanged !== null;
    if (oldId !== id) {
      this.#keyed.set(oldId, {
        key: oldKey,
        deleteExisting: before?.deleteExisting ?? true,
        row: null,
        unchanged: null,
        origin: null,
        readsExisting,
      });
      const target = this.#keyed.get(id);
      this.#keyed.set(id, {
        key,
        deleteExisting: target?.deleteExisting ?? replayed,
        ...merged,
        readsExisting: target?.readsExisting ?? false,
      });
    } else {
      this.#keyed.set(id, { key, deleteExisting: before?.deleteExisting ?? true, ...merged, readsExisting });
    }
  }

  /** A change other than a plain insert came: the inserts listed so far are entered by key. */
  #enterInserts(keyColumns: readonly number[]): void {
    for (const row of this.#inserts) {
      const key = keyOf(row, keyColumns);
      this.#keyed.set(join(key), {
        key,
        deleteExisting: false,
        row,
        unchanged: null,
        origin: null,
        readsExisting: false,
      });
    }
    this.#inserts.length = 0;
  }

  /** An update's row with its unchanged TOAST values resolved where the run knows them. */
  #resolveToast(
    event: UpdateEvent,
    before: KeyedEntry | undefined,
    oldKey: Texts,
  ): Pick<KeyedEntry, 'row' | 'unchanged' | 'origin'> {
    const next = event.new;
    let first = -1;
    for (let i = 0; i < next.length; i++) {
      if (next.isUnchangedToast(i)) {
        first = i;
        break;
      }
    }
    if (first === -1) return { row: next, unchanged: null, origin: null };
    const row = texts(next);
    const old = event.old !== undefined && !event.oldIsKey ? event.old : undefined;
    let unchanged: Uint8Array | null = null;
    let origin: Texts | null = null;
    for (let i = first; i < row.length; i++) {
      if (!next.isUnchangedToast(i)) continue;
      if (before?.row) {
        // The value was set (or inherited) earlier in this run.
        row[i] = before.row.text(i);
        if (before.unchanged?.[i] === 1) {
          unchanged ??= new Uint8Array(row.length);
          unchanged[i] = 1;
          origin = before.origin;
        }
      } else if (old !== undefined && !old.isUnchangedToast(i)) {
        row[i] = old.text(i); // REPLICA IDENTITY FULL: the old row has it
      } else {
        unchanged ??= new Uint8Array(row.length);
        unchanged[i] = 1;
        origin = oldKey;
      }
    }
    return { row: new MergedRow(row), unchanged, origin };
  }

  #addCounted(event: RowChangeEvent): void {
    if (event.op === 'insert') {
      this.#count(texts(event.new), 1);
      return;
    }
    if (event.oldIsKey)
      throw new UnappliableChangeError(
        'an old row arrived as a key, but the table is identified by its whole row',
      );
    const old = texts(event.old!);
    if (event.op === 'update') {
      const row = texts(event.new);
      for (let i = 0; i < row.length; i++) if (event.new.isUnchangedToast(i)) row[i] = old[i] ?? null;
      this.#count(old, -1);
      this.#count(row, 1);
    } else {
      this.#count(old, -1);
    }
  }

  #count(row: Texts, delta: number): void {
    const id = join(row);
    const entry = this.#counts.get(id);
    if (entry === undefined) this.#counts.set(id, { row, count: delta });
    else entry.count += delta;
  }
}
