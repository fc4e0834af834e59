/**
 * Unchanged TOAST values: Postgres leaves a large value out of an update when it did not change,
 * and BigQuery's UPSERT replaces whole rows, so the sink must write the value it already holds.
 * We merge it from the existing value, looked for in this order:
 *
 * 1. the old row of the update, when Postgres sent it whole (REPLICA IDENTITY FULL: exact, free);
 * 2. what this sink wrote for the row lately (the same batch, then `RecentValues`);
 * 3. BigQuery itself: one query per table and batch for the rows still missing a value.
 *
 * Step 3 must not read a stale table: with `max_staleness`, a query returns the table as of its
 * last background apply (`upsert_stream_apply_watermark`) as long as that is within
 * `max_staleness`, and merges every change at run time otherwise. Every row missing from the cache
 * was last written no later than the cache's `untrackedUntil`, so the answer is exact once the
 * watermark passed that time, or once `max_staleness` has gone by since it (then BigQuery merges
 * at run time). The resolver waits for the first of the two; with `max_staleness` 0 it never waits.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type Lsn, PgReplicateError } from 'pg-replicate';
import type { RecentValues } from './recent-values.js';
import { type RowValues, UNCHANGED } from './row-encoder.js';
import { keyParam, rowKey } from './row-keys.js';
import type { QueryParam, TableAdmin } from './table-admin.js';
import type { TablePlan } from './table-plan.js';
import type { ProtoValue } from './type-mapping.js';

/** A row whose update left values out that neither the old row nor the cache had. */
export interface PendingRow {
  readonly values: RowValues;
  /**
   * Where BigQuery may hold the row's values, in order of preference: for a key change, the new
   * key first (a replay after a crash finds the change already applied there, and the old key
   * possibly reused), unless this batch touched it before; then the key before the update.
   */
  readonly candidates: readonly { readonly keyValues: RowValues; readonly key: string }[];
  /** `row (id=42) (update at …)`, for messages. */
  readonly describe: () => string;
  /** Commit LSN of the update's transaction. */
  readonly commitLsn: Lsn;
}

export interface ResolverOptions {
  /** The tables' `max_staleness` in milliseconds (0: queries are always fresh). */
  readonly maxStalenessMs: number;
  /** Allowance for clock differences between this host and BigQuery. */
  readonly marginMs: number;
  /** How often the watermark is asked for while waiting. */
  readonly pollMs: number;
  readonly log: (message: string) => void;
  readonly signal?: AbortSignal | undefined;
  /**
   * An earlier run may have appended changes committed up to here (beyond the stored position):
   * a row missing for a change up to here was deleted by a later change that already landed.
   */
  readonly replayUpTo: Lsn | null;
}

/** Keys per lookup query (parameters per query stay in the low thousands). */
const KEYS_PER_QUERY = 200;

export class ToastResolver {
  readonly #admin: TableAdmin;
  readonly #cache: RecentValues;
  readonly #options: ResolverOptions;

  constructor(admin: TableAdmin, cache: RecentValues, options: ResolverOptions) {
    this.#admin = admin;
    this.#cache = cache;
    this.#options = options;
  }

  /**
   * Fills unchanged values of `values` from `old` (a whole old row), from the row's latest values
   * earlier in this batch (`batchRow`; undefined when the batch has not touched the row), or from
   * the cache. Says what is left to do: nothing, a BigQuery lookup (of the row's key before the
   * update), or — when the batch's earlier row is itself still waiting for its value — following
   * that row once it is resolved (its key before the batch may differ: a key change).
   */
  fillLocally(
    plan: TablePlan,
    key: string,
    values: RowValues,
    old: RowValues | null,
    batchRow: RowValues | null | undefined,
  ): 'done' | 'lookup' | 'follow' {
    if (batchRow === null) {
      throw new PgReplicateError('SINK_ERROR', `${plan.key}: an update of a row this batch deleted`, {
        hint: 'Postgres sent changes out of order; please report this',
      });
    }
    let outcome: 'done' | 'lookup' | 'follow' = 'done';
    for (const column of plan.toastable) {
      const i = column.index;
      if (values[i] !== UNCHANGED) continue;
      const fromOld = old?.[i];
      if (fromOld !== undefined && fromOld !== UNCHANGED) {
        values[i] = fromOld;
        continue;
      }
      const known = batchRow !== undefined ? batchRow[i] : this.#cache.lookup(plan.key, key, i);
      if (known !== undefined && known !== UNCHANGED) values[i] = known;
      else outcome = batchRow !== undefined ? 'follow' : 'lookup';
    }
    return outcome;
  }

  /** Takes the values `row` still misses from `source`, an earlier row of the batch now resolved. */
  follow(plan: TablePlan, row: RowValues, source: RowValues): void {
    for (const column of plan.toastable) {
      if (row[column.index] === UNCHANGED) row[column.index] = source[column.index]!;
    }
  }

  /**
   * Reads the values still missing in `rows` from the table `version`. Returns the rows a replay
   * after a crash finds deleted by a later change that already landed: their values are nowhere
   * and do not matter (the later delete outranks them) — unless a later row of the batch takes its
   * values from them, so they are left for {@link giveUp} once those rows had their chance.
   */
  async fetch(plan: TablePlan, version: string, rows: readonly PendingRow[]): Promise<PendingRow[]> {
    const deletedLater: PendingRow[] = [];
    if (rows.length === 0) return deletedLater;
    await this.#waitUntilFresh(plan, version);
    const needed = plan.toastable.filter((column) =>
      rows.some((row) => row.values[column.index] === UNCHANGED),
    );
    const selected = [...plan.keyColumns, ...needed];
    // One query per few hundred keys; a row found under two candidate keys counts under each.
    const found = new Map<string, readonly { v: unknown }[]>();
    const unique = new Map<string, RowValues>();
    for (const row of rows) for (const { key, keyValues } of row.candidates) unique.set(key, keyValues);
    const keys = [...unique.values()];
    for (let start = 0; start < keys.length; start += KEYS_PER_QUERY) {
      const chunk = keys.slice(start, start + KEYS_PER_QUERY);
      const params: QueryParam[] = [];
      const conditions = chunk.map((keyValues, r) =>
        plan.keyColumns
          .map((column, k) => {
            const name = `k${k}_${r}`;
            params.push(keyParam(name, column, keyValues[column.index] as ProtoValue));
            return `${column.name} = @${name}`;
          })
          .join(' AND '),
      );
      const sql = `SELECT ${selected.map((column) => column.name).join(', ')} FROM ${this.#admin.qualified(version)} WHERE (${conditions.join(') OR (')})`;
      const result = await this.#admin.query(sql, params, 'reading unchanged TOAST values from');
      for (const row of result) {
        const cells = row.f;
        const keyValues: ProtoValue[] = new Array(plan.columns.length).fill(null);
        plan.keyColumns.forEach((column, k) => {
          keyValues[column.index] = column.mapping.fromRest(cells[k]?.v);
        });
        found.set(rowKey(plan, keyValues), cells.slice(plan.keyColumns.length));
      }
    }
    for (const row of rows) {
      const cells = row.candidates
        .map((candidate) => found.get(candidate.key))
        .find((hit) => hit !== undefined);
      const replayUpTo = this.#options.replayUpTo;
      if (cells === undefined && replayUpTo !== null && row.commitLsn <= replayUpTo) {
        // Replayed after a crash: a later change that deleted the row already landed, and its
        // tombstone outranks this upsert whatever it holds.
        deletedLater.push(row);
        continue;
      }
      if (cells === undefined) {
        throw new PgReplicateError(
          'SINK_ERROR',
          `${plan.key}: ${row.describe()} left unchanged TOAST values out, and BigQuery has no such row to take them from`,
          {
            hint: `the BigQuery table is missing rows Postgres has: copy ${plan.key} again (drop its view and state row), and consider REPLICA IDENTITY FULL for tables with large values`,
          },
        );
      }
      needed.forEach((column, n) => {
        if (row.values[column.index] === UNCHANGED)
          row.values[column.index] = column.mapping.fromRest(cells[n]?.v);
      });
    }
    return deletedLater;
  }

  /** Fills what `rows` still miss with empty values (see {@link fetch}). */
  giveUp(plan: TablePlan, rows: readonly PendingRow[]): void {
    for (const row of rows) {
      for (const column of plan.toastable) {
        if (row.values[column.index] === UNCHANGED)
          row.values[column.index] = column.mapping.repeated ? [] : null;
      }
    }
  }

  async #waitUntilFresh(plan: TablePlan, version: string): Promise<void> {
    const { maxStalenessMs, marginMs, pollMs } = this.#options;
    const lastUntracked = this.#cache.untrackedUntil(plan.key);
    if (maxStalenessMs === 0 || lastUntracked === 0) return;
    const deadline = lastUntracked + maxStalenessMs + marginMs;
    let logged = false;
    while (Date.now() < deadline && !this.#options.signal?.aborted) {
      const watermark = await this.#watermark(version);
      if (watermark !== null && watermark >= lastUntracked + marginMs) return;
      if (!logged) {
        logged = true;
        this.#options.log(
          `${plan.key}: waiting up to ${Math.ceil((deadline - Date.now()) / 1000)} s for BigQuery to apply recent changes (max_staleness) before reading unchanged TOAST values; REPLICA IDENTITY FULL avoids this`,
        );
      }
      await sleep(Math.max(10, Math.min(pollMs, deadline - Date.now())), undefined, {
        signal: this.#options.signal,
      }).catch(() => {});
    }
  }

  /** The table's `upsert_stream_apply_watermark` in ms, or null if BigQuery reports none. */
  async #watermark(version: string): Promise<number | null> {
    const rows = await this.#admin.query(
      `SELECT upsert_stream_apply_watermark FROM ${this.#admin.qualified('INFORMATION_SCHEMA.TABLES')} WHERE table_name = @table`,
      [{ name: 'table', type: 'STRING', value: version }],
      'reading the apply watermark of',
    );
    const value = rows[0]?.f[0]?.v;
    return value === null || value === undefined ? null : Number(BigInt(String(value)) / 1000n);
  }
}
