/**
 * The pgoutput logical replication messages (protocol versions 1–4) as a discriminated union on
 * `tag`. Layouts: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 *
 * LSNs are `bigint`; times are microseconds since the Unix epoch as `bigint` (Postgres sends
 * microseconds since 2000-01-01; we shift them once here so no consumer has to).
 * `xid` on a change is set only inside a streamed transaction (between Stream Start and Stop),
 * where it names the (sub)transaction the change belongs to.
 */
import type { Lsn } from '../lsn.js';
import type { TupleData } from './tuple-data.js';

/** How Postgres identifies the old row of an update/delete (`pg_class.relreplident`). */
export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export interface RelationColumn {
  readonly name: string;
  /** Part of the replica identity key (flag bit 1 in the Relation message). */
  readonly isKey: boolean;
  readonly typeOid: number;
  /** Type modifier (`atttypmod`), e.g. numeric precision/scale or varchar length; -1 if none. */
  readonly typeMod: number;
}

export interface RelationMessage {
  readonly tag: 'relation';
  readonly xid: number | undefined;
  readonly relationId: number;
  /** Namespace; pgoutput sends "" for pg_catalog, which we report as `pg_catalog`. */
  readonly schema: string;
  readonly name: string;
  readonly replicaIdentity: ReplicaIdentity;
  readonly columns: readonly RelationColumn[];
}

export interface BeginMessage {
  readonly tag: 'begin';
  /** LSN of the commit record. */
  readonly finalLsn: Lsn;
  readonly commitTime: bigint;
  readonly xid: number;
}

export interface CommitMessage {
  readonly tag: 'commit';
  readonly flags: number;
  /** LSN of the commit record. */
  readonly commitLsn: Lsn;
  /** End of the commit record: the position to confirm once this transaction is durable. */
  readonly endLsn: Lsn;
  readonly commitTime: bigint;
}

export interface OriginMessage {
  readonly tag: 'origin';
  readonly originLsn: Lsn;
  readonly name: string;
}

export interface TypeMessage {
  readonly tag: 'type';
  readonly xid: number | undefined;
  readonly typeOid: number;
  readonly schema: string;
  readonly name: string;
}

export interface InsertMessage {
  readonly tag: 'insert';
  readonly xid: number | undefined;
  readonly relation: RelationMessage;
  readonly new: TupleData;
}

export interface UpdateMessage {
  readonly tag: 'update';
  readonly xid: number | undefined;
  readonly relation: RelationMessage;
  /** `K`: the old replica-identity key (non-key columns are null). Sent when the key changed. */
  readonly key: TupleData | undefined;
  /** `O`: the whole old row (REPLICA IDENTITY FULL). */
  readonly old: TupleData | undefined;
  readonly new: TupleData;
}

export interface DeleteMessage {
  readonly tag: 'delete';
  readonly xid: number | undefined;
  readonly relation: RelationMessage;
  readonly key: TupleData | undefined;
  readonly old: TupleData | undefined;
}

export interface TruncateMessage {
  readonly tag: 'truncate';
  readonly xid: number | undefined;
  readonly cascade: boolean;
  readonly restartIdentity: boolean;
  readonly relations: readonly RelationMessage[];
}

/** A `pg_logical_emit_message` payload. */
export interface LogicalMessage {
  readonly tag: 'message';
  readonly xid: number | undefined;
  readonly transactional: boolean;
  readonly lsn: Lsn;
  readonly prefix: string;
  readonly content: Buffer;
}

export interface StreamStartMessage {
  readonly tag: 'stream_start';
  readonly xid: number;
  readonly firstSegment: boolean;
}

export interface StreamStopMessage {
  readonly tag: 'stream_stop';
}

export interface StreamCommitMessage {
  readonly tag: 'stream_commit';
  readonly xid: number;
  readonly flags: number;
  readonly commitLsn: Lsn;
  readonly endLsn: Lsn;
  readonly commitTime: bigint;
}

export interface StreamAbortMessage {
  readonly tag: 'stream_abort';
  readonly xid: number;
  /** Equal to `xid` when the whole transaction aborted, else the aborted subtransaction. */
  readonly subXid: number;
  /** Only with `streaming 'parallel'` (protocol 4). */
  readonly abortLsn: Lsn | undefined;
  readonly abortTime: bigint | undefined;
}

export interface BeginPrepareMessage {
  readonly tag: 'begin_prepare';
  readonly prepareLsn: Lsn;
  readonly endLsn: Lsn;
  readonly prepareTime: bigint;
  readonly xid: number;
  readonly gid: string;
}

/** Prepare and Stream Prepare share a layout. */
export interface PrepareMessage {
  readonly tag: 'prepare' | 'stream_prepare';
  readonly flags: number;
  readonly prepareLsn: Lsn;
  readonly endLsn: Lsn;
  readonly prepareTime: bigint;
  readonly xid: number;
  readonly gid: string;
}

export interface CommitPreparedMessage {
  readonly tag: 'commit_prepared';
  readonly flags: number;
  readonly commitLsn: Lsn;
  readonly endLsn: Lsn;
  readonly commitTime: bigint;
  readonly xid: number;
  readonly gid: string;
}

export interface RollbackPreparedMessage {
  readonly tag: 'rollback_prepared';
  readonly flags: number;
  readonly prepareEndLsn: Lsn;
  readonly rollbackEndLsn: Lsn;
  readonly prepareTime: bigint;
  readonly rollbackTime: bigint;
  readonly xid: number;
  readonly gid: string;
}

export type ChangeMessage = InsertMessage | UpdateMessage | DeleteMessage | TruncateMessage;

export type PgoutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage
  | StreamStartMessage
  | StreamStopMessage
  | StreamCommitMessage
  | StreamAbortMessage
  | BeginPrepareMessage
  | PrepareMessage
  | CommitPreparedMessage
  | RollbackPreparedMessage;
