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
import { PgReplicateError } from 'pg-replicate';
import type { RecentValues } from './recent-values.js';
import { type RowValues, UNCHANGED } from './row-encoder.js';
import { keyParam, rowKey } from './row-keys.js';
import type { QueryParam, TableAdmin } from './table-admin.js';
import type { TablePlan } from './table-plan.js';
import type { ProtoValue } from './type-mapping.js';

/** A row whose update left values out that neither the old row nor the cache had. */
export interface PendingRow {
  readonly values: RowValues;
  /** The row's key before the update (where the unchanged values are) and its string form. */
  readonly keyValues: RowValues;
  readonly key: string;
  /** `(id=42)`, for messages. */
  readonly describe: () => string;
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
   * in this batch (`batch`: null when deleted), or from the cache. True when some remain; a value
   * still pending in the batch is the one before the batch, so BigQuery is asked for it too.
   */
  fillLocally(
    plan: TablePlan,
    key: string,
    values: RowValues,
    old: RowValues | null,
    batch: ReadonlyMap<string, RowValues | null>,
  ): boolean {
    let missing = false;
    const inBatch = batch.has(key);
    const batchRow = batch.get(key) ?? null;
    for (const column of plan.toastable) {
      const i = column.index;
      if (values[i] !== UNCHANGED) continue;
      const fromOld = old?.[i];
      if (fromOld !== undefined && fromOld !== UNCHANGED) {
        values[i] = fromOld;
        continue;
      }
      const known = inBatch ? batchRow?.[i] : this.#cache.lookup(plan.key, key, i);
      if (known !== undefined && known !== UNCHANGED) values[i] = known;
      else missing = true;
    }
    return missing;
  }

  /** Reads the values still missing in `rows` from the table `version`. */
  async fetch(plan: TablePlan, version: string, rows: readonly PendingRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#waitUntilFresh(plan, version);
    const needed = plan.toastable.filter((column) =>
      rows.some((row) => row.values[column.index] === UNCHANGED),
    );
    const selected = [...plan.keyColumns, ...needed];
    const found = new Map<string, readonly { v: unknown }[]>();
    const unique = [...new Map(rows.map((row) => [row.key, row])).values()];
    for (let start = 0; start < unique.length; start += KEYS_PER_QUERY) {
      const chunk = unique.slice(start, start + KEYS_PER_QUERY);
      const params: QueryParam[] = [];
      const conditions = chunk.map((row, r) =>
        plan.keyColumns
          .map((column, k) => {
            const name = `k${k}_${r}`;
            params.push(keyParam(name, column, row.keyValues[column.index] as ProtoValue));
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
      const cells = found.get(row.key);
      if (cells === undefined) {
        throw new PgReplicateError(
          'SINK_ERROR',
          `${plan.key}: row ${row.describe()} was updated without its unchanged TOAST values, and BigQuery has no such row to take them from`,
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
