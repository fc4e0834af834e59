/**
 * Resumption state, kept in BigQuery itself: the table `_pg_replicate_state` (primary key
 * `pipeline, entry`), written like the data, as CDC upserts through the Storage Write API, so a
 * state write costs one small append and no DML. One row per pipeline holds the position
 * (`lastLsn`); one row per replicated table holds its current version table and copy status.
 *
 * A state row is appended only after the data it covers was acknowledged, and state writes are
 * sent one at a time, so BigQuery's default ordering (the later ingestion wins) keeps the newest.
 *
 * The position row also says how far appends may have gone beyond it (`appendingUpTo`, written
 * before a batch's rows are sent): after a crash, changes up to there may already be in BigQuery,
 * which the unchanged-TOAST lookup must know (a row it looks for may be deleted by a later change
 * that already landed).
 * The table has no `max_staleness`: reading it at start is always fresh (it is a few rows).
 */
import type { protos } from '@google-cloud/bigquery-storage';
import { formatLsn, type Lsn, PgReplicateError, parseLsn } from 'pg-replicate';
import { ProtoWriter, WireType } from './proto-writer.js';
import type { TableAdmin } from './table-admin.js';
import type { TableAppender } from './table-appender.js';
import type { FieldSchema } from './table-plan.js';

export const STATE_TABLE = '_pg_replicate_state';

const FIELDS: readonly FieldSchema[] = [
  { name: 'pipeline', type: 'STRING', mode: 'REQUIRED' },
  { name: 'entry', type: 'STRING', mode: 'REQUIRED' },
  { name: 'payload', type: 'STRING', mode: 'NULLABLE' },
  { name: 'updated_at', type: 'TIMESTAMP', mode: 'NULLABLE' },
];

const POSITION = 'position';
const TABLE_PREFIX = 'table:';

/** What the state says about one replicated table. */
export interface TableState {
  /** The version table the view currently selects from. */
  readonly version: string;
  /** The copy into `version` completed. */
  readonly copied: boolean;
  /** The snapshot LSN of that copy (null: copied without a slot). */
  readonly snapshotLsn: Lsn | null;
}

export interface StoredState {
  readonly lastLsn: Lsn | null;
  /** Changes committed up to here may have been appended (by an earlier run) beyond `lastLsn`. */
  readonly appendingUpTo: Lsn | null;
  readonly tables: ReadonlyMap<string, TableState>;
}

/** The row message: the four columns, then `_CHANGE_TYPE` (no sequence number: ingestion order). */
export const STATE_DESCRIPTOR: protos.google.protobuf.IDescriptorProto = {
  name: 'PgReplicateState',
  field: [
    { name: 'pipeline', number: 1, type: 9, label: 2 },
    { name: 'entry', number: 2, type: 9, label: 2 },
    { name: 'payload', number: 3, type: 9, label: 1 },
    { name: 'updated_at', number: 4, type: 3, label: 1 },
    { name: '_CHANGE_TYPE', number: 5, type: 9, label: 1 },
  ],
};

export class StateTable {
  readonly #admin: TableAdmin;
  readonly #pipeline: string;
  #appender: TableAppender | null = null;

  constructor(admin: TableAdmin, pipeline: string) {
    this.#admin = admin;
    this.#pipeline = pipeline;
  }

  /** Creates the table if missing; then appends go through `appender`. */
  async ensure(appender: TableAppender): Promise<void> {
    await this.#admin.createTable(STATE_TABLE, FIELDS, {
      primaryKey: ['pipeline', 'entry'],
      clustering: ['pipeline'],
      maxStaleness: undefined,
    });
    this.#appender = appender;
  }

  async load(): Promise<StoredState> {
    const rows = await this.#admin.query(
      `SELECT entry, payload FROM ${this.#admin.qualified(STATE_TABLE)} WHERE pipeline = @pipeline`,
      [{ name: 'pipeline', type: 'STRING', value: this.#pipeline }],
      'reading the resumption state from',
    );
    let lastLsn: Lsn | null = null;
    let appendingUpTo: Lsn | null = null;
    const tables = new Map<string, TableState>();
    for (const row of rows) {
      const entry = String(row.f[0]?.v);
      const payload = parsePayload(entry, row.f[1]?.v);
      if (entry === POSITION) {
        lastLsn = typeof payload.lastLsn === 'string' ? parseLsn(payload.lastLsn) : null;
        appendingUpTo = typeof payload.appendingUpTo === 'string' ? parseLsn(payload.appendingUpTo) : null;
      } else if (entry.startsWith(TABLE_PREFIX) && typeof payload.version === 'string') {
        tables.set(entry.slice(TABLE_PREFIX.length), {
          version: payload.version,
          copied: payload.copied === true,
          snapshotLsn: typeof payload.snapshotLsn === 'string' ? parseLsn(payload.snapshotLsn) : null,
        });
      }
    }
    return { lastLsn, appendingUpTo, tables };
  }

  /** Records the position (`lastLsn`) and how far appends may go beyond it. */
  async setPosition(lastLsn: Lsn | null, appendingUpTo: Lsn | null): Promise<void> {
    await this.#write(POSITION, {
      lastLsn: lastLsn === null ? null : formatLsn(lastLsn),
      appendingUpTo: appendingUpTo === null ? null : formatLsn(appendingUpTo),
    });
  }

  async setTable(key: string, state: TableState): Promise<void> {
    await this.#write(TABLE_PREFIX + key, {
      version: state.version,
      copied: state.copied,
      snapshotLsn: state.snapshotLsn === null ? null : formatLsn(state.snapshotLsn),
    });
  }

  async #write(entry: string, payload: Record<string, unknown>): Promise<void> {
    const appender = this.#appender;
    if (appender === null) throw new PgReplicateError('SINK_ERROR', 'the state table is not ready');
    const writer = new ProtoWriter(256);
    writer.tag(1, WireType.LengthDelimited);
    writer.string(this.#pipeline);
    writer.tag(2, WireType.LengthDelimited);
    writer.string(entry);
    writer.tag(3, WireType.LengthDelimited);
    writer.string(JSON.stringify(payload));
    writer.tag(4, WireType.Varint);
    writer.int64(BigInt(Date.now()) * 1000n);
    writer.tag(5, WireType.LengthDelimited);
    writer.string('UPSERT');
    await appender.append([writer.copy(0)], () => `state entry ${entry}`);
  }
}

function parsePayload(entry: string, value: unknown): Record<string, unknown> {
  try {
    const parsed = JSON.parse(String(value)) as unknown;
    if (typeof parsed === 'object' && parsed !== null) return parsed as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new PgReplicateError(
    'SINK_STATE_INVALID',
    `the state entry ${entry} is not valid JSON: ${String(value)}`,
    {
      hint: `delete the rows of this pipeline from ${STATE_TABLE} to start over (the tables are copied again)`,
    },
  );
}
