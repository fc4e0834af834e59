/**
 * Turns change batches into CDC rows: each insert and update becomes an UPSERT, each delete a
 * DELETE, an update that changed the key both, all stamped with the sequence number of (commit
 * LSN, position in the transaction) so BigQuery keeps the latest change per key whatever order
 * requests land in, and a replay is a no-op.
 *
 * A batch is written in segments: a TRUNCATE or a schema change ends one, so rows before it reach
 * the old version table (or schema) and rows after it the new. Within a segment, unchanged TOAST
 * values are resolved first (`ToastResolver`), then every table's rows are appended in parallel.
 */
import {
  type ChangeEvent,
  formatLsn,
  type Lsn,
  PgReplicateError,
  type RowChangeEvent,
  type RowData,
  tableKey,
} from 'pg-replicate';
import { encodeChangeSequence } from './change-sequence.js';
import { ProtoWriter } from './proto-writer.js';
import type { RecentValues } from './recent-values.js';
import { type ChangeType, describeKey, type RowValues, UNCHANGED, writeRow } from './row-encoder.js';
import { rowKey } from './row-keys.js';
import type { LiveTable, TableCatalog } from './table-catalog.js';
import type { PendingRow, ToastResolver } from './toast-resolver.js';
import type { ProtoValue } from './type-mapping.js';

interface OutRow {
  readonly values: RowValues;
  readonly type: ChangeType;
  readonly sequence: string;
  readonly describe: () => string;
}

/** One table's share of a segment. */
interface TableRows {
  readonly live: LiveTable;
  readonly rows: OutRow[];
  readonly pending: PendingRow[];
  /**
   * Rows taking unchanged values from an earlier row of the segment, in order — and, if that row
   * could not get them either (see `ToastResolver.fetch`), looking for them under their own key.
   */
  readonly follows: { readonly values: RowValues; readonly source: RowValues; readonly own: PendingRow }[];
  /** Each key's latest values in this segment (null: deleted). */
  readonly latest: Map<string, RowValues | null>;
}

export class ChangeWriter {
  readonly #catalog: TableCatalog;
  readonly #resolver: ToastResolver;
  readonly #cache: RecentValues;
  readonly #writer = new ProtoWriter(1024 * 1024);
  /** The transaction being numbered and the position of its last change. */
  #txLsn: Lsn | null = null;
  #position = 0;

  constructor(catalog: TableCatalog, resolver: ToastResolver, cache: RecentValues) {
    this.#catalog = catalog;
    this.#resolver = resolver;
    this.#cache = cache;
  }

  /** Forgets the transaction in progress (its parts are sent again after a restart). */
  reset(): void {
    this.#txLsn = null;
    this.#position = 0;
  }

  async write(events: readonly ChangeEvent[]): Promise<void> {
    let segment = new Map<string, TableRows>();
    for (const event of events) {
      switch (event.op) {
        case 'insert':
        case 'update':
        case 'delete':
          this.#add(segment, event, this.#sequence(event.tx.commitLsn));
          break;
        case 'truncate':
          this.#sequence(event.tx.commitLsn);
          await this.#flush(segment);
          segment = new Map();
          for (const table of event.tables) await this.#catalog.truncate(tableKey(table));
          break;
        case 'schema':
          // Not numbered: whether a Relation message shows up as a change differs between runs.
          await this.#flush(segment);
          segment = new Map();
          await this.#catalog.applySchema(event.table);
          break;
      }
    }
    await this.#flush(segment);
  }

  /** The sequence number of the next change of the transaction committed at `commitLsn`. */
  #sequence(commitLsn: Lsn): string {
    if (commitLsn !== this.#txLsn) {
      this.#txLsn = commitLsn;
      this.#position = 0;
    }
    return encodeChangeSequence(commitLsn, ++this.#position);
  }

  #add(segment: Map<string, TableRows>, event: RowChangeEvent, sequence: string): void {
    const key = tableKey(event.table);
    let target = segment.get(key);
    if (target === undefined) {
      target = { live: this.#catalog.get(key), rows: [], pending: [], follows: [], latest: new Map() };
      segment.set(key, target);
    }
    const { live, rows, latest } = target;
    const { plan, converter } = live;
    const at = `${event.op} at ${formatLsn(event.lsn)}`;
    const describe = (row: RowData) => () => `row ${describeKey(plan, row)} (${at})`;
    if (event.op === 'insert') {
      const values = converter.values(event.new);
      const rk = rowKey(plan, values);
      rows.push({ values, type: 'UPSERT', sequence, describe: describe(event.new) });
      latest.set(rk, values);
      return;
    }
    if (event.op === 'delete') {
      const values = converter.keyValues(event.old);
      const rk = rowKey(plan, values);
      rows.push({ values, type: 'DELETE', sequence, describe: describe(event.old) });
      latest.set(rk, null);
      return;
    }
    const values = converter.values(event.new);
    const old = event.old;
    const oldValues =
      old === undefined ? null : event.oldIsKey ? converter.keyValues(old) : converter.values(old);
    for (const column of plan.keyColumns) {
      // A key value stored out of line and unchanged: the old row has it, else nothing does.
      if (values[column.index] !== UNCHANGED) continue;
      const fromOld = oldValues?.[column.index];
      if (fromOld === undefined || fromOld === UNCHANGED) {
        throw new PgReplicateError(
          'SINK_ERROR',
          `${plan.key}: ${describe(event.new)()} left its key column ${column.pgName} out (an unchanged TOAST value)`,
          { hint: `set REPLICA IDENTITY FULL on ${plan.key} so Postgres sends the whole old row` },
        );
      }
      values[column.index] = fromOld;
    }
    const newKey = rowKey(plan, values);
    const oldKeyValues = oldValues ?? values;
    const oldKey = oldValues === null ? newKey : rowKey(plan, oldValues);
    if (values.includes(UNCHANGED)) {
      const wholeOld = event.oldIsKey ? null : oldValues;
      const batchRow = latest.get(oldKey);
      const left = this.#resolver.fillLocally(
        plan,
        oldKey,
        values,
        wholeOld,
        latest.has(oldKey) ? batchRow : undefined,
      );
      if (left === 'lookup') {
        const candidates = [{ keyValues: oldKeyValues, key: oldKey }];
        if (oldKey !== newKey && !latest.has(newKey)) candidates.unshift({ keyValues: values, key: newKey });
        target.pending.push({
          values,
          candidates,
          describe: describe(event.new),
          commitLsn: event.tx.commitLsn,
        });
      } else if (left === 'follow') {
        target.follows.push({
          values,
          source: batchRow!,
          own: {
            values,
            candidates: [{ keyValues: values, key: newKey }],
            describe: describe(event.new),
            commitLsn: event.tx.commitLsn,
          },
        });
      }
    }
    // A key change: the new row before the old key's delete. After a crash BigQuery holds a
    // prefix of the rows, so a replay finds the row under one key or the other, never neither.
    rows.push({ values, type: 'UPSERT', sequence, describe: describe(event.new) });
    latest.set(newKey, values);
    if (oldKey !== newKey) {
      const keyOnly: RowValues = new Array(values.length).fill(null);
      for (const column of plan.keyColumns) keyOnly[column.index] = oldKeyValues[column.index]!;
      rows.push({ values: keyOnly, type: 'DELETE', sequence, describe: describe(old!) });
      latest.set(oldKey, null);
    }
  }

  async #flush(segment: Map<string, TableRows>): Promise<void> {
    if (segment.size === 0) return;
    await Promise.all([...segment.values()].map((target) => this.#flushTable(target)));
  }

  async #flushTable({ live, rows, pending, follows, latest }: TableRows): Promise<void> {
    const { plan, appender } = live;
    const version = live.state.version;
    const unresolved = await this.#resolver.fetch(plan, version, pending);
    // A row following one that BigQuery no longer has (replayed after a crash) may still be there
    // under its own key, e.g. after a key change that landed before the crash.
    const orphans: PendingRow[] = [];
    for (const { values, source, own } of follows) {
      this.#resolver.follow(plan, values, source);
      if (values.includes(UNCHANGED)) orphans.push(own);
    }
    unresolved.push(...(await this.#resolver.fetch(plan, version, orphans)));
    this.#resolver.giveUp(plan, unresolved);
    const encoded = this.#encode(live, rows);
    // In order: after a crash, BigQuery holds a prefix of a table's changes (see ToastResolver).
    await appender.append(encoded, (index) => rows[index]!.describe(), { ordered: true });
    if (plan.toastable.length === 0) return;
    const now = Date.now();
    // Values given up on are placeholders, not what the row holds: never serve them later.
    const givenUp = new Set(unresolved.map((row) => row.values));
    for (const [key, values] of latest) {
      if (values === null || givenUp.has(values)) {
        this.#cache.forget(plan.key, key);
        continue;
      }
      const kept = new Map<number, ProtoValue>();
      for (const column of plan.toastable) {
        const value = values[column.index];
        if (value !== undefined && value !== UNCHANGED) kept.set(column.index, value);
      }
      this.#cache.remember(plan.key, key, kept, now);
    }
  }

  /** The rows' messages, in one buffer sliced per row. */
  #encode(live: LiveTable, rows: readonly OutRow[]): Buffer[] {
    const writer = this.#writer;
    writer.reset();
    const ends: number[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      writeRow(writer, live.plan, row.values, row.type, row.sequence);
      ends[i] = writer.length;
    }
    const all = writer.copy(0);
    const out: Buffer[] = new Array(rows.length);
    let start = 0;
    for (let i = 0; i < rows.length; i++) {
      out[i] = all.subarray(start, ends[i]);
      start = ends[i]!;
    }
    return out;
  }
}
