/**
 * A walsender connection (`replication=database`) and the replication commands we use:
 * IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT, DROP_REPLICATION_SLOT and START_REPLICATION.
 * https://www.postgresql.org/docs/current/protocol-replication.html
 */
import type pg from 'pg';
import { connect, quoteIdent, quoteLiteral } from '../connection/connect.js';
import type { ConnectionOptions } from '../connection/connection-options.js';
import { isServerError, PgReplicateError } from '../errors.js';
import { formatLsn, type Lsn, parseLsn } from '../lsn.js';
import { PgoutputDecoder } from '../pgoutput/decoder.js';
import { CopyStream } from './copy-stream.js';
import { ReplicationStream, type ReplicationStreamOptions } from './replication-stream.js';

export interface SystemIdentity {
  systemId: string;
  timeline: number;
  /** The server's current WAL flush position. */
  xlogPos: Lsn;
  database: string | null;
}

export interface CreateSlotOptions {
  /** Dropped automatically when this connection closes. */
  temporary?: boolean;
  /**
   * `export`: export a snapshot other connections can import with SET TRANSACTION SNAPSHOT — it
   * lives until the next command on this connection or until it closes. `use`: the snapshot
   * applies to this connection's own transaction. `nothing`: no snapshot (default).
   */
  snapshot?: 'export' | 'use' | 'nothing';
}

export interface CreatedSlot {
  slotName: string;
  /** WAL position from which the slot streams: changes committed before it are in the snapshot. */
  consistentPoint: Lsn;
  snapshotName: string | null;
  outputPlugin: string;
}

export interface StartReplicationOptions extends ReplicationStreamOptions {
  publications: readonly string[];
  /** Defaults to the highest this server supports (see {@link protocolVersionFor}). */
  protoVersion?: number;
  /** Values in binary send/recv format (PG 14+). Default false: text. */
  binary?: boolean;
  /** Deliver pg_logical_emit_message messages (PG 14+). Default true where supported. */
  messages?: boolean;
  /** Stream large in-progress transactions (proto ≥ 2): `true`, or `parallel` (proto 4). */
  streaming?: boolean | 'parallel';
  /** `none`: only changes without a replication origin (PG 16+). */
  origin?: 'none' | 'any';
}

/** The highest pgoutput protocol version a server of this `server_version_num` speaks. */
export function protocolVersionFor(serverVersion: number): number {
  if (serverVersion >= 160000) return 4;
  if (serverVersion >= 150000) return 3;
  if (serverVersion >= 140000) return 2;
  return 1;
}

export class ReplicationConnection {
  readonly #client: pg.Client;
  readonly serverVersion: number;
  #stream: ReplicationStream | null = null;
  #closed = false;

  private constructor(client: pg.Client, serverVersion: number) {
    this.#client = client;
    this.serverVersion = serverVersion;
  }

  static async open(options: ConnectionOptions): Promise<ReplicationConnection> {
    const client = await connect(options, { replication: true });
    try {
      const result = await client.query<{ server_version_num: string }>('SHOW server_version_num');
      return new ReplicationConnection(client, Number(result.rows[0]!.server_version_num));
    } catch (error) {
      await client.end().catch(() => {});
      throw replicationError(error);
    }
  }

  async identifySystem(): Promise<SystemIdentity> {
    const row = (await this.#command<Record<string, string | null>>('IDENTIFY_SYSTEM'))[0]!;
    return {
      systemId: String(row['systemid']),
      timeline: Number(row['timeline']),
      xlogPos: parseLsn(String(row['xlogpos'])),
      database: row['dbname'] ?? null,
    };
  }

  async createSlot(name: string, options: CreateSlotOptions = {}): Promise<CreatedSlot> {
    const snapshot = options.snapshot ?? 'nothing';
    const temporary = options.temporary ? ' TEMPORARY' : '';
    // The parenthesised option syntax exists from PG 15; the keywords work on every version.
    const sql =
      this.serverVersion >= 150000
        ? `CREATE_REPLICATION_SLOT ${quoteIdent(name)}${temporary} LOGICAL pgoutput (SNAPSHOT '${snapshot}')`
        : `CREATE_REPLICATION_SLOT ${quoteIdent(name)}${temporary} LOGICAL pgoutput ${
            { export: 'EXPORT_SNAPSHOT', use: 'USE_SNAPSHOT', nothing: 'NOEXPORT_SNAPSHOT' }[snapshot]
          }`;
    const row = (await this.#command<Record<string, string | null>>(sql, name))[0]!;
    return {
      slotName: String(row['slot_name']),
      consistentPoint: parseLsn(String(row['consistent_point'])),
      snapshotName: row['snapshot_name'] ?? null,
      outputPlugin: String(row['output_plugin']),
    };
  }

  async dropSlot(name: string, options: { wait?: boolean } = {}): Promise<void> {
    await this.#command(`DROP_REPLICATION_SLOT ${quoteIdent(name)}${options.wait ? ' WAIT' : ''}`, name);
  }

  /**
   * Starts streaming from the slot. The server resumes at max(`startLsn`, the slot's
   * confirmed_flush_lsn); transactions that were sent before but not confirmed are sent again.
   * Errors found when streaming starts (slot busy, missing publication…) surface from the
   * stream's first `next()`.
   */
  startReplication(slot: string, startLsn: Lsn, options: StartReplicationOptions): ReplicationStream {
    if (this.#stream !== null) throw new Error('this connection is already streaming');
    const protoVersion = options.protoVersion ?? protocolVersionFor(this.serverVersion);
    const params: string[] = [
      `proto_version '${protoVersion}'`,
      `publication_names ${quoteLiteral(options.publications.map(quoteIdent).join(','))}`,
    ];
    if (this.serverVersion >= 140000) {
      params.push(`messages '${options.messages ?? true}'`);
      if (options.binary) params.push(`binary 'true'`);
    }
    if (options.streaming && protoVersion >= 2) {
      params.push(
        `streaming '${options.streaming === 'parallel' && protoVersion >= 4 ? 'parallel' : 'true'}'`,
      );
    }
    if (options.origin !== undefined && this.serverVersion >= 160000)
      params.push(`origin '${options.origin}'`);
    const sql = `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL ${formatLsn(startLsn)} (${params.join(', ')})`;
    const copy = new CopyStream(sql);
    this.#client.query(copy);
    const decoder = new PgoutputDecoder({
      parallelStreaming: options.streaming === 'parallel' && protoVersion >= 4,
    });
    const stream = new ReplicationStream(copy, decoder, startLsn, {
      ...options,
      mapError: (error) => replicationError(error, slot),
    });
    this.#stream = stream;
    return stream;
  }

  /** Ends streaming (if any) and closes the connection. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stream?.dispose();
    await this.#client.end().catch(() => {});
  }

  async #command<Row extends Record<string, unknown>>(sql: string, slot?: string): Promise<Row[]> {
    try {
      return (await this.#client.query<Row>(sql)).rows;
    } catch (error) {
      throw replicationError(error, slot);
    }
  }
}

/** Server errors from replication commands, as actionable {@link PgReplicateError}s. */
export function replicationError(error: unknown, slot?: string): unknown {
  if (error instanceof PgReplicateError) return error;
  if (!isServerError(error)) {
    if (error instanceof Error && /terminated|closed|ECONNRESET|EPIPE/i.test(error.message)) {
      return new PgReplicateError(
        'CONNECTION_LOST',
        `the replication connection was lost: ${error.message}`,
        {
          hint: 'it is retried automatically by the replicator; check the server log if it keeps happening',
          cause: error,
        },
      );
    }
    return error;
  }
  const message = error.message;
  const named = slot === undefined ? 'the replication slot' : `replication slot "${slot}"`;
  if (error.code === '55006' || /is active for PID/i.test(message)) {
    const pid = /PID (\d+)/i.exec(message)?.[1];
    return new PgReplicateError(
      'SLOT_IN_USE',
      `${named} is in use by another process${pid === undefined ? '' : ` (PID ${pid})`}`,
      {
        hint: `stop the other consumer, or if it is stuck: SELECT pg_terminate_backend(${pid ?? 'active_pid'});`,
        cause: error,
      },
    );
  }
  if (error.code === '42710') {
    return new PgReplicateError('SERVER_ERROR', `${named} already exists`, { detail: message, cause: error });
  }
  if (error.code === '42704' && /publication/i.test(message)) {
    const publication = /publication "([^"]+)"/.exec(message)?.[1] ?? '<name>';
    return new PgReplicateError('PUBLICATION_NOT_FOUND', `${message} (it was dropped while streaming)`, {
      // The slot decodes later WAL with the catalog of its time: recreating the publication is
      // not enough, the slot must start over after it.
      hint: `recreate it (CREATE PUBLICATION "${publication}" FOR TABLE …;), then drop ${named} and run "both" to copy the tables again`,
      cause: error,
    });
  }
  if (error.code === '42704') {
    return new PgReplicateError('SLOT_NOT_FOUND', `${named} does not exist`, {
      hint: 'it was dropped, and the changes it held are gone: run "both" to create it and copy the tables again',
      cause: error,
    });
  }
  // PG 14/15: "cannot read from logical replication slot"; 16/17: "can no longer get changes";
  // 18: "can no longer access replication slot"; the detail says "invalidated".
  if (
    /can no longer (get changes|access)|cannot read from logical replication slot|invalidated|wal_status/i.test(
      `${message} ${error.detail ?? ''}`,
    )
  ) {
    return new PgReplicateError('SLOT_INVALIDATED', `${named} was invalidated and cannot stream any more`, {
      detail: message,
      hint: 'the WAL it needed is gone (max_slot_wal_keep_size?): drop the slot and re-run with both to copy the tables again',
      cause: error,
    });
  }
  if (error.code === '53400' || /all replication slots are in use/i.test(message)) {
    return new PgReplicateError('SLOTS_EXHAUSTED', 'all replication slots are in use', {
      detail: message,
      hint: 'raise max_replication_slots (needs a restart) or drop an unused slot (pg_drop_replication_slot)',
      cause: error,
    });
  }
  if (error.code === '55000' && /wal_level/i.test(message)) {
    return new PgReplicateError('WAL_LEVEL_NOT_LOGICAL', 'logical decoding requires wal_level = logical', {
      detail: message,
      hint: "run ALTER SYSTEM SET wal_level = 'logical'; then restart Postgres",
      cause: error,
    });
  }
  if (error.code === '42501') {
    return new PgReplicateError('MISSING_REPLICATION_PRIVILEGE', message, {
      hint: 'grant it with: ALTER ROLE <user> WITH REPLICATION;',
      cause: error,
    });
  }
  if (error.code === '57P01' || error.code === '57P02' || error.code === '57P03') {
    return new PgReplicateError(
      'CONNECTION_LOST',
      'the replication connection was terminated (pg_terminate_backend, or the server shutting down)',
      {
        detail: message,
        hint: 'the pipeline resumes from its durable position when restarted',
        cause: error,
      },
    );
  }
  return new PgReplicateError('SERVER_ERROR', message, {
    detail: error.detail,
    hint: error.hint,
    cause: error,
  });
}
