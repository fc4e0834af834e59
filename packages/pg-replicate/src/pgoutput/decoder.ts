/**
 * Decodes pgoutput messages (the payload of each XLogData frame) into {@link PgoutputMessage}s.
 *
 * Written by hand because it is the heart of the product and must be exact and fast: one reused
 * reader, one switch on the tag byte, tuple values left in place (see {@link TupleData}).
 * The decoder is stateful in two ways the protocol requires: it caches Relation messages by OID
 * (replaced whenever a new one arrives, e.g. after ALTER TABLE), and it knows whether it is inside a
 * streamed-transaction block, where change messages carry an extra xid field.
 */
import { PgReplicateError } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { BufferReader } from './buffer-reader.js';
import type {
  PgoutputMessage,
  RelationColumn,
  RelationMessage,
  ReplicaIdentity,
  StreamAbortMessage,
} from './messages.js';
import { ColumnKind, TupleData } from './tuple-data.js';

/** Microseconds between 1970-01-01 and 2000-01-01, the Postgres epoch. */
export const POSTGRES_EPOCH_OFFSET_MICROS = 946_684_800_000_000n;

enum Tag {
  Begin = 0x42, // B
  Commit = 0x43, // C
  Origin = 0x4f, // O
  Relation = 0x52, // R
  Type = 0x59, // Y
  Insert = 0x49, // I
  Update = 0x55, // U
  Delete = 0x44, // D
  Truncate = 0x54, // T
  Message = 0x4d, // M
  StreamStart = 0x53, // S
  StreamStop = 0x45, // E
  StreamCommit = 0x63, // c
  StreamAbort = 0x41, // A
  BeginPrepare = 0x62, // b
  Prepare = 0x50, // P
  CommitPrepared = 0x4b, // K
  RollbackPrepared = 0x72, // r
  StreamPrepare = 0x70, // p
}

enum TupleMarker {
  New = 0x4e, // N
  Key = 0x4b, // K
  Old = 0x4f, // O
}

const REPLICA_IDENTITY: Record<string, ReplicaIdentity> = {
  d: 'default',
  n: 'nothing',
  f: 'full',
  i: 'index',
};

export interface DecoderOptions {
  /**
   * Set when START_REPLICATION asked for `streaming 'parallel'` (protocol 4): Stream Abort then
   * carries the abort LSN and time.
   */
  parallelStreaming?: boolean;
}

export class PgoutputDecoder {
  readonly #relations = new Map<number, RelationMessage>();
  readonly #reader = new BufferReader();
  readonly #parallelStreaming: boolean;
  #inStreamBlock = false;

  constructor(options: DecoderOptions = {}) {
    this.#parallelStreaming = options.parallelStreaming ?? false;
  }

  /** The relation last described for `relationId`, if any. */
  relation(relationId: number): RelationMessage | undefined {
    return this.#relations.get(relationId);
  }

  /** Every cached relation. */
  relations(): IterableIterator<RelationMessage> {
    return this.#relations.values();
  }

  /**
   * Decodes one pgoutput message. Values in tuples stay views of `data`, so the caller must not
   * reuse `data`'s memory while the returned message is alive.
   *
   * @param lsn the XLogData start position, used only in error messages
   */
  decode(data: Buffer, lsn?: Lsn): PgoutputMessage {
    return this.decodeAt(data, 0, data.length, lsn);
  }

  /**
   * Decodes the message in `buffer[start, end)` — e.g. straight out of a socket chunk, without
   * allocating a view per message. Same retention rule as {@link decode}.
   */
  decodeAt(buffer: Buffer, start: number, end: number, lsn?: Lsn): PgoutputMessage {
    const reader = this.#reader;
    reader.reset(buffer, start, end, 'message');
    try {
      const tag = start < end ? buffer[start]! : -1;
      reader.offset = start + 1;
      return this.#decode(reader, tag);
    } catch (error) {
      if (error instanceof PgReplicateError && lsn !== undefined) {
        throw new PgReplicateError(error.code, error.message, {
          detail: `${error.detail ?? ''} in the message at LSN ${formatLsn(lsn)}`.trim(),
          hint: error.hint,
          cause: error,
        });
      }
      throw error;
    } finally {
      reader.reset();
    }
  }

  #decode(r: BufferReader, tag: number): PgoutputMessage {
    switch (tag) {
      case Tag.Begin:
        r.context = 'Begin';
        return { tag: 'begin', finalLsn: r.uint64(), commitTime: time(r), xid: r.uint32('xid') };
      case Tag.Commit:
        r.context = 'Commit';
        return {
          tag: 'commit',
          flags: r.uint8('flags'),
          commitLsn: r.uint64('commit LSN'),
          endLsn: r.uint64('end LSN'),
          commitTime: time(r),
        };
      case Tag.Origin:
        r.context = 'Origin';
        return { tag: 'origin', originLsn: r.uint64(), name: r.cstring('origin name') };
      case Tag.Relation:
        r.context = 'Relation';
        return this.#relation(r);
      case Tag.Type: {
        r.context = 'Type';
        const xid = this.#streamXid(r);
        const typeOid = r.uint32('type OID');
        const schema = r.cstring('namespace') || 'pg_catalog';
        return { tag: 'type', xid, typeOid, schema, name: r.cstring('type name') };
      }
      case Tag.Insert: {
        r.context = 'Insert';
        const xid = this.#streamXid(r);
        const relation = this.#knownRelation(r);
        if (r.uint8('tuple marker') !== TupleMarker.New) r.fail("expected 'N' before the new tuple");
        return { tag: 'insert', xid, relation, new: tuple(r, relation) };
      }
      case Tag.Update: {
        r.context = 'Update';
        const xid = this.#streamXid(r);
        const relation = this.#knownRelation(r);
        let marker = r.uint8('tuple marker');
        let key: TupleData | undefined;
        let old: TupleData | undefined;
        if (marker === TupleMarker.Key) key = tuple(r, relation);
        else if (marker === TupleMarker.Old) old = tuple(r, relation);
        if (key !== undefined || old !== undefined) marker = r.uint8('tuple marker');
        if (marker !== TupleMarker.New) r.fail("expected 'N' before the new tuple");
        return { tag: 'update', xid, relation, key, old, new: tuple(r, relation) };
      }
      case Tag.Delete: {
        r.context = 'Delete';
        const xid = this.#streamXid(r);
        const relation = this.#knownRelation(r);
        const marker = r.uint8('tuple marker');
        if (marker === TupleMarker.Key) {
          return { tag: 'delete', xid, relation, key: tuple(r, relation), old: undefined };
        }
        if (marker === TupleMarker.Old) {
          return { tag: 'delete', xid, relation, key: undefined, old: tuple(r, relation) };
        }
        return r.fail("expected 'K' or 'O' before the old tuple");
      }
      case Tag.Truncate: {
        r.context = 'Truncate';
        const xid = this.#streamXid(r);
        const count = r.int32('relation count');
        if (count < 0) r.fail(`negative relation count ${count}`);
        const options = r.uint8('options');
        const relations: RelationMessage[] = [];
        for (let i = 0; i < count; i++) relations.push(this.#knownRelation(r));
        return {
          tag: 'truncate',
          xid,
          cascade: (options & 1) !== 0,
          restartIdentity: (options & 2) !== 0,
          relations,
        };
      }
      case Tag.Message: {
        r.context = 'Message';
        const xid = this.#streamXid(r);
        const transactional = (r.uint8('flags') & 1) !== 0;
        const lsn = r.uint64('LSN');
        const prefix = r.cstring('prefix');
        const content = r.bytes(r.int32('content length'), 'content');
        return { tag: 'message', xid, transactional, lsn, prefix, content };
      }
      case Tag.StreamStart:
        r.context = 'Stream Start';
        this.#inStreamBlock = true;
        return { tag: 'stream_start', xid: r.uint32('xid'), firstSegment: r.uint8('first segment') === 1 };
      case Tag.StreamStop:
        this.#inStreamBlock = false;
        return { tag: 'stream_stop' };
      case Tag.StreamCommit:
        r.context = 'Stream Commit';
        return {
          tag: 'stream_commit',
          xid: r.uint32('xid'),
          flags: r.uint8('flags'),
          commitLsn: r.uint64('commit LSN'),
          endLsn: r.uint64('end LSN'),
          commitTime: time(r),
        };
      case Tag.StreamAbort:
        r.context = 'Stream Abort';
        return this.#streamAbort(r);
      case Tag.BeginPrepare:
        r.context = 'Begin Prepare';
        return {
          tag: 'begin_prepare',
          prepareLsn: r.uint64('prepare LSN'),
          endLsn: r.uint64('end LSN'),
          prepareTime: time(r),
          xid: r.uint32('xid'),
          gid: r.cstring('gid'),
        };
      case Tag.Prepare:
      case Tag.StreamPrepare:
        r.context = tag === Tag.Prepare ? 'Prepare' : 'Stream Prepare';
        return {
          tag: tag === Tag.Prepare ? 'prepare' : 'stream_prepare',
          flags: r.uint8('flags'),
          prepareLsn: r.uint64('prepare LSN'),
          endLsn: r.uint64('end LSN'),
          prepareTime: time(r),
          xid: r.uint32('xid'),
          gid: r.cstring('gid'),
        };
      case Tag.CommitPrepared:
        r.context = 'Commit Prepared';
        return {
          tag: 'commit_prepared',
          flags: r.uint8('flags'),
          commitLsn: r.uint64('commit LSN'),
          endLsn: r.uint64('end LSN'),
          commitTime: time(r),
          xid: r.uint32('xid'),
          gid: r.cstring('gid'),
        };
      case Tag.RollbackPrepared:
        r.context = 'Rollback Prepared';
        return {
          tag: 'rollback_prepared',
          flags: r.uint8('flags'),
          prepareEndLsn: r.uint64('prepare end LSN'),
          rollbackEndLsn: r.uint64('rollback end LSN'),
          prepareTime: time(r),
          rollbackTime: time(r),
          xid: r.uint32('xid'),
          gid: r.cstring('gid'),
        };
      default:
        r.offset = r.start;
        return r.fail(
          tag < 0
            ? 'empty message'
            : `unknown message type 0x${tag.toString(16).padStart(2, '0')} (${JSON.stringify(String.fromCharCode(tag))})`,
        );
    }
  }

  #streamXid(r: BufferReader): number | undefined {
    return this.#inStreamBlock ? r.uint32('xid') : undefined;
  }

  #knownRelation(r: BufferReader): RelationMessage {
    const relationId = r.uint32('relation OID');
    const relation = this.#relations.get(relationId);
    if (relation === undefined) {
      r.fail(`relation OID ${relationId} was never described by a Relation message`);
    }
    return relation;
  }

  #relation(r: BufferReader): RelationMessage {
    const xid = this.#streamXid(r);
    const relationId = r.uint32('relation OID');
    const schema = r.cstring('namespace') || 'pg_catalog';
    const name = r.cstring('relation name');
    const identityByte = String.fromCharCode(r.uint8('replica identity'));
    const replicaIdentity = REPLICA_IDENTITY[identityByte];
    if (replicaIdentity === undefined) r.fail(`unknown replica identity ${JSON.stringify(identityByte)}`);
    const count = r.int16('column count');
    if (count < 0) r.fail(`negative column count ${count}`);
    const columns: RelationColumn[] = [];
    for (let i = 0; i < count; i++) {
      const flags = r.uint8('column flags');
      columns.push({
        isKey: (flags & 1) !== 0,
        name: r.cstring('column name'),
        typeOid: r.uint32('column type OID'),
        typeMod: r.int32('column type modifier'),
      });
    }
    const relation: RelationMessage = {
      tag: 'relation',
      xid,
      relationId,
      schema,
      name,
      replicaIdentity,
      columns,
    };
    this.#relations.set(relationId, relation);
    return relation;
  }

  #streamAbort(r: BufferReader): StreamAbortMessage {
    const xid = r.uint32('xid');
    const subXid = r.uint32('subtransaction xid');
    // Protocol 4 with parallel streaming always appends the abort LSN and time (a shorter message
    // is truncated, not an older layout).
    if (this.#parallelStreaming) {
      return { tag: 'stream_abort', xid, subXid, abortLsn: r.uint64('abort LSN'), abortTime: time(r) };
    }
    return { tag: 'stream_abort', xid, subXid, abortLsn: undefined, abortTime: undefined };
  }
}

function time(r: BufferReader): bigint {
  return r.int64('timestamp') + POSTGRES_EPOCH_OFFSET_MICROS;
}

/**
 * Checks a TupleData's column headers and skips past it. Nothing is allocated but the TupleData:
 * where each value lies is worked out again only if a consumer reads the row.
 */
function tuple(r: BufferReader, relation: RelationMessage): TupleData {
  const count = r.int16('tuple column count');
  if (count !== relation.columns.length) {
    r.fail(
      `tuple has ${count} columns but relation ${relation.schema}.${relation.name} has ${relation.columns.length}`,
    );
  }
  const start = r.offset;
  for (let i = 0; i < count; i++) {
    const kind = r.uint8('column kind');
    if (kind === ColumnKind.Text || kind === ColumnKind.Binary) {
      const length = r.int32('value length');
      if (length < 0) r.fail(`column ${i} has negative length ${length}`);
      r.skip(length, `value of column ${i}`);
    } else if (kind !== ColumnKind.Null && kind !== ColumnKind.UnchangedToast) {
      r.offset--;
      r.fail(`unknown column kind 0x${kind.toString(16)} in column ${i}`);
    }
  }
  return new TupleData(r.buffer, start, count);
}
