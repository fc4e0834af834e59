/**
 * The fake's tables: schema, constraints and options as the REST API describes them, and rows kept
 * with BigQuery's CDC semantics (https://cloud.google.com/bigquery/docs/change-data-capture):
 *
 * - every appended row with `_CHANGE_TYPE` is a change record for its primary key; per key, the
 *   record with the largest `_CHANGE_SEQUENCE_NUMBER` wins (sections compared as unsigned
 *   numbers, section by section), ties going to the later ingestion; DELETE records stay as
 *   tombstones, so an older UPSERT arriving after them loses;
 * - rows appended without `_CHANGE_TYPE` are plain appends;
 * - `max_staleness`: a background apply job folds changes into the table's baseline and moves
 *   its `upsert_stream_apply_watermark`; a query within `max_staleness` of the watermark reads the
 *   baseline (stale), a later one merges every change at run time.
 *
 * Cell values are stored as the REST API returns them (strings, `[{v}]` for REPEATED), already
 * validated and canonicalized by `fake-values.ts`.
 */

/** A REST `TableFieldSchema` (standard SQL type names, as tables.get returns them). */
export interface FakeField {
  name: string;
  type: string;
  mode: 'NULLABLE' | 'REQUIRED' | 'REPEATED';
}

/** A cell as the REST API returns it: a string, `[{v}]` for REPEATED, or null. */
export type Cell = string | { v: Cell }[] | null;
/** A row: column name (as in the schema) → cell. */
export type FakeRow = Record<string, Cell>;

interface ChangeRecord {
  readonly key: string;
  readonly sequence: readonly bigint[] | null;
  readonly ingestion: number;
  readonly ingestedAt: number;
  readonly deleted: boolean;
  readonly row: FakeRow;
}

let ingestionCounter = 0;

/** Parses a `_CHANGE_SEQUENCE_NUMBER`; null when malformed (the caller rejects the row). */
export function parseSequence(text: string): bigint[] | null {
  const sections = text.split('/');
  if (sections.length > 4) return null;
  const values: bigint[] = [];
  for (const section of sections) {
    if (!/^[0-9A-Fa-f]{1,16}$/.test(section)) return null;
    values.push(BigInt(`0x${section}`));
  }
  return values;
}

/** Section by section as unsigned numbers; a missing section counts as 0. */
export function compareSequences(a: readonly bigint[], b: readonly bigint[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0n;
    const y = b[i] ?? 0n;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** True when `candidate` replaces `current` as the key's winning record. */
function wins(candidate: ChangeRecord, current: ChangeRecord | undefined): boolean {
  if (current === undefined) return true;
  if (candidate.sequence !== null && current.sequence !== null) {
    const order = compareSequences(candidate.sequence, current.sequence);
    if (order !== 0) return order > 0;
  }
  return candidate.ingestion > current.ingestion;
}

export class FakeTable {
  readonly type: 'TABLE' | 'VIEW';
  readonly id: string;
  schema: FakeField[];
  primaryKey: string[];
  clustering: string[];
  /** `max_staleness` in milliseconds (0: none). */
  maxStalenessMs = 0;
  maxStaleness: string | undefined;
  viewQuery: string | undefined;
  readonly creationTime = Date.now();
  lastModifiedTime = Date.now();
  /** When the Storage Write API sees a schema change (it lags tables.patch on the real service). */
  schemaVisibleAt = 0;
  /** The schema the Storage Write API validates against until `schemaVisibleAt`. */
  writeApiSchema: FakeField[];

  readonly #baseline = new Map<string, ChangeRecord>();
  #pending: ChangeRecord[] = [];
  readonly #appended: FakeRow[] = [];
  #watermark = Date.now();
  /** Whether rows with `_CHANGE_TYPE` were ever written (a table with active CDC). */
  cdcActive = false;

  constructor(
    id: string,
    type: 'TABLE' | 'VIEW',
    schema: FakeField[],
    primaryKey: string[] = [],
    clustering: string[] = [],
  ) {
    this.id = id;
    this.type = type;
    this.schema = schema;
    this.writeApiSchema = schema;
    this.primaryKey = primaryKey;
    this.clustering = clustering;
  }

  /** The schema the Storage Write API validates appends against now. */
  currentWriteSchema(now = Date.now()): FakeField[] {
    return now >= this.schemaVisibleAt ? this.schema : this.writeApiSchema;
  }

  /** `upsert_stream_apply_watermark`, milliseconds since the epoch. */
  get watermark(): number {
    return this.#watermark;
  }

  /** Adds change records (already validated); `applyNow` folds them in at once (no staleness model). */
  applyChanges(
    changes: readonly { key: string; sequence: bigint[] | null; deleted: boolean; row: FakeRow }[],
    applyNow: boolean,
  ): void {
    const now = Date.now();
    this.cdcActive = true;
    for (const change of changes) {
      this.#pending.push({ ...change, ingestion: ++ingestionCounter, ingestedAt: now });
    }
    if (applyNow) this.backgroundApply(now);
  }

  appendRows(rows: readonly FakeRow[]): void {
    this.#appended.push(...rows);
  }

  /** The background apply job: folds every pending change in and moves the watermark. */
  backgroundApply(now = Date.now()): void {
    for (const record of this.#pending) {
      if (wins(record, this.#baseline.get(record.key))) this.#baseline.set(record.key, record);
    }
    this.#pending = [];
    this.#watermark = now;
  }

  /** The rows a query sees now: the baseline within `max_staleness` of the watermark, else fresh. */
  queryRows(now = Date.now()): FakeRow[] {
    const stale = this.maxStalenessMs > 0 && now - this.#watermark <= this.maxStalenessMs;
    return stale ? this.#visible(this.#baseline) : this.currentRows();
  }

  /** Every change applied (a runtime merge): what the table holds. */
  currentRows(): FakeRow[] {
    const merged = new Map(this.#baseline);
    for (const record of this.#pending) {
      if (wins(record, merged.get(record.key))) merged.set(record.key, record);
    }
    return this.#visible(merged);
  }

  /** Change records received, tombstones included (for tests). */
  get changeCount(): number {
    return this.#baseline.size + this.#pending.length;
  }

  /** Rows in the current schema: a column added later reads NULL, or `[]` when REPEATED (never NULL). */
  #visible(records: ReadonlyMap<string, ChangeRecord>): FakeRow[] {
    const rows = [...this.#appended];
    for (const record of records.values()) if (!record.deleted) rows.push(record.row);
    return rows.map((row) => {
      const shaped: FakeRow = {};
      for (const field of this.schema) {
        const cell = row[field.name] ?? null;
        shaped[field.name] = field.mode === 'REPEATED' && cell === null ? [] : cell;
      }
      return shaped;
    });
  }
}
