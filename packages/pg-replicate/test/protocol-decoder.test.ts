/**
 * The pgoutput decoder on hand-built messages of protocol versions 1–4, one per message type, laid
 * out field by field as in "Logical Replication Message Formats":
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 *
 * Also: the three states of a tuple column, the relation cache, the xid prefix inside streamed
 * blocks, and that every malformed or truncated message is a `PROTOCOL_VIOLATION` (never a bare
 * RangeError) while the reader lets go of the message after each decode.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PgReplicateError } from '../src/errors.js';
import { BufferReader } from '../src/pgoutput/buffer-reader.js';
import { PgoutputDecoder, POSTGRES_EPOCH_OFFSET_MICROS } from '../src/pgoutput/decoder.js';
import type {
  DeleteMessage,
  InsertMessage,
  PgoutputMessage,
  RelationMessage,
  UpdateMessage,
} from '../src/pgoutput/messages.js';
import { ColumnKind, TupleData } from '../src/pgoutput/tuple-data.js';
import { type BufferBuilder, bytes } from './wire/buffer-builder.js';

// --- building messages --------------------------------------------------------------------------

/** A large LSN (above 2^63, so it only survives as an unsigned 64-bit read). */
const BIG_LSN = 0xfedcba98_76543210n;
/** An xid above 2^31 (xids and OIDs are unsigned 32-bit). */
const BIG_XID = 0xfffffffe;
/** 2024-05-06 07:08:09.123456 UTC, as microseconds since the Unix epoch and the Postgres epoch. */
const UNIX_MICROS = BigInt(Date.parse('2024-05-06T07:08:09.123Z')) * 1000n + 456n;
const PG_MICROS = UNIX_MICROS - POSTGRES_EPOCH_OFFSET_MICROS;

const ITEMS_OID = 16_384;
const TEXT_OID = 25;
const INT4_OID = 23;
const NUMERIC_OID = 1700;
const BYTEA_OID = 17;

interface ColumnSpec {
  name: string;
  typeOid: number;
  typeMod?: number;
  /** The raw flags byte (1 = part of the key). */
  flags?: number;
}

/** `items (id int4 key, name text, price numeric(10,2), data bytea)`. */
const ITEMS_COLUMNS: readonly ColumnSpec[] = [
  { name: 'id', typeOid: INT4_OID, flags: 1 },
  { name: 'name', typeOid: TEXT_OID },
  { name: 'price', typeOid: NUMERIC_OID, typeMod: ((10 << 16) | 2) + 4 },
  { name: 'data', typeOid: BYTEA_OID },
];

/** Starts a message; inside a streamed block, changes carry the xid right after the tag. */
function start(tag: string, xid?: number): BufferBuilder {
  const b = bytes().int8(tag);
  if (xid !== undefined) b.int32(xid);
  return b;
}

function relationMessage(
  options: {
    oid?: number;
    namespace?: string;
    name?: string;
    identity?: string;
    columns?: readonly ColumnSpec[];
  } = {},
  xid?: number,
): Buffer {
  const columns = options.columns ?? ITEMS_COLUMNS;
  const b = start('R', xid)
    .int32(options.oid ?? ITEMS_OID)
    .cstring(options.namespace ?? 'public')
    .cstring(options.name ?? 'items')
    .int8(options.identity ?? 'd')
    .int16(columns.length);
  for (const column of columns) {
    b.int8(column.flags ?? 0)
      .cstring(column.name)
      .int32(column.typeOid)
      .int32(column.typeMod ?? -1);
  }
  return b.build();
}

const UNCHANGED = Symbol('unchanged TOAST');
/** One tuple column: NULL, unchanged TOAST, text (string) or binary (Buffer). */
type Cell = null | typeof UNCHANGED | string | Buffer;

function tupleData(b: BufferBuilder, cells: readonly Cell[]): BufferBuilder {
  b.int16(cells.length);
  for (const cell of cells) {
    if (cell === null) b.int8('n');
    else if (cell === UNCHANGED) b.int8('u');
    else if (typeof cell === 'string') b.int8('t').int32(Buffer.byteLength(cell)).bytes(cell);
    else b.int8('b').int32(cell.length).bytes(cell);
  }
  return b;
}

function insertMessage(cells: readonly Cell[], xid?: number, oid = ITEMS_OID): Buffer {
  return tupleData(start('I', xid).int32(oid).int8('N'), cells).build();
}

function updateMessage(
  old: { marker: 'K' | 'O'; cells: readonly Cell[] } | undefined,
  cells: readonly Cell[],
  xid?: number,
): Buffer {
  const b = start('U', xid).int32(ITEMS_OID);
  if (old !== undefined) tupleData(b.int8(old.marker), old.cells);
  return tupleData(b.int8('N'), cells).build();
}

function deleteMessage(marker: 'K' | 'O', cells: readonly Cell[], xid?: number): Buffer {
  return tupleData(start('D', xid).int32(ITEMS_OID).int8(marker), cells).build();
}

function truncateMessage(options: number, oids: readonly number[], xid?: number): Buffer {
  const b = start('T', xid).int32(oids.length).int8(options);
  for (const oid of oids) b.int32(oid);
  return b.build();
}

function logicalMessage(flags: number, prefix: string, content: Buffer, xid?: number): Buffer {
  return start('M', xid)
    .int8(flags)
    .int64(BIG_LSN)
    .cstring(prefix)
    .int32(content.length)
    .bytes(content)
    .build();
}

function typeMessage(namespace: string, xid?: number): Buffer {
  return start('Y', xid).int32(70_000).cstring(namespace).cstring('mood').build();
}

/** Prepare, Stream Prepare and Commit Prepared share a layout: flags, two LSNs, a time, xid, GID. */
function twoPhaseMessage(tag: string, firstLsn: bigint, gid: string): Buffer {
  return bytes()
    .int8(tag)
    .int8(0)
    .int64(firstLsn)
    .int64(BIG_LSN)
    .int64(PG_MICROS)
    .int32(BIG_XID)
    .cstring(gid)
    .build();
}

const streamStart = (xid: number, first: boolean) =>
  bytes()
    .int8('S')
    .int32(xid)
    .int8(first ? 1 : 0)
    .build();
const streamStop = () => bytes().int8('E').build();

/** A decoder that already knows `items`. */
function decoderWithItems(options: { parallelStreaming?: boolean } = {}): PgoutputDecoder {
  const decoder = new PgoutputDecoder(options);
  decoder.decode(relationMessage());
  return decoder;
}

/** A decoder that knows `items` and is inside a streamed block of `xid`. */
function decoderInStream(xid: number): PgoutputDecoder {
  const decoder = decoderWithItems();
  decoder.decode(streamStart(xid, true));
  return decoder;
}

// --- checking results ---------------------------------------------------------------------------

function expectTag<T extends PgoutputMessage['tag']>(
  message: PgoutputMessage,
  tag: T,
): Extract<PgoutputMessage, { tag: T }> {
  expect(message.tag).toBe(tag);
  return message as Extract<PgoutputMessage, { tag: T }>;
}

/** Checks every accessor of every column against the cells it was built from. */
function expectCells(tuple: TupleData | undefined, cells: readonly Cell[]): void {
  expect(tuple).toBeDefined();
  const t = tuple!;
  expect(t.length).toBe(cells.length);
  let byteLength = 0;
  const bytesAt = (i: number) => t.buffer.subarray(t.valueStart(i), t.valueStart(i) + t.valueLength(i));
  cells.forEach((cell, i) => {
    if (cell === null) {
      expect(t.kind(i)).toBe(ColumnKind.Null);
      expect([t.isNull(i), t.isUnchangedToast(i), t.hasValue(i)]).toEqual([true, false, false]);
      expect(t.text(i)).toBeNull();
      expect(t.raw(i)).toBeNull();
      expect(t.valueStart(i)).toBe(-1);
    } else if (cell === UNCHANGED) {
      expect(t.kind(i)).toBe(ColumnKind.UnchangedToast);
      expect([t.isNull(i), t.isUnchangedToast(i), t.hasValue(i)]).toEqual([false, true, false]);
      expect(t.text(i)).toBeNull();
      expect(t.raw(i)).toBeNull();
      expect(t.valueStart(i)).toBe(-1);
    } else if (typeof cell === 'string') {
      expect(t.kind(i)).toBe(ColumnKind.Text);
      expect([t.isNull(i), t.isUnchangedToast(i), t.hasValue(i)]).toEqual([false, false, true]);
      expect(t.text(i)).toBe(cell);
      expect(t.raw(i)!.equals(Buffer.from(cell, 'utf8'))).toBe(true);
      expect(bytesAt(i).equals(Buffer.from(cell, 'utf8'))).toBe(true);
      byteLength += Buffer.byteLength(cell);
    } else {
      expect(t.kind(i)).toBe(ColumnKind.Binary);
      expect([t.isNull(i), t.isUnchangedToast(i), t.hasValue(i)]).toEqual([false, false, true]);
      expect(t.text(i)).toBeNull();
      expect(t.raw(i)!.equals(cell)).toBe(true);
      expect(bytesAt(i).equals(cell)).toBe(true);
      byteLength += cell.length;
    }
  });
  expect(t.byteLength).toBe(byteLength);
}

/** A message with its tuples and byte strings spelled out, to compare decodes of different buffers. */
function plain(value: unknown): unknown {
  if (value instanceof TupleData) {
    return Array.from({ length: value.length }, (_, i) => [value.kind(i), value.raw(i)?.toString('hex')]);
  }
  if (Buffer.isBuffer(value)) return value.toString('hex');
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function decodeError(decode: () => unknown): PgReplicateError {
  let caught: unknown;
  try {
    decode();
  } catch (error) {
    caught = error;
  }
  if (!(caught instanceof PgReplicateError)) {
    throw new Error(`expected a PgReplicateError, got ${String(caught)}`, { cause: caught });
  }
  expect(caught.code).toBe('PROTOCOL_VIOLATION');
  return caught;
}

const SAMPLE_ROW: readonly Cell[] = ['1', 'caf\u00e9 \u{1f418}', '12.50', Buffer.from([0, 0xff, 0x0a, 0])];

// --- protocol version 1 -------------------------------------------------------------------------

describe('protocol 1 messages', () => {
  it('Begin: final LSN (unsigned 64-bit), commit time shifted to the Unix epoch, unsigned xid', () => {
    const data = bytes().int8('B').int64(BIG_LSN).int64(PG_MICROS).int32(BIG_XID).build();
    expect(new PgoutputDecoder().decode(data)).toEqual({
      tag: 'begin',
      finalLsn: BIG_LSN,
      commitTime: UNIX_MICROS,
      xid: BIG_XID,
    });
  });

  it('Commit: flags, commit and end LSN, commit time (also before 2000, a negative Postgres time)', () => {
    const data = bytes().int8('C').int8(0).int64(0x16b3748n).int64(BIG_LSN).int64(-1_000_000n).build();
    expect(new PgoutputDecoder().decode(data)).toEqual({
      tag: 'commit',
      flags: 0,
      commitLsn: 0x16b3748n,
      endLsn: BIG_LSN,
      commitTime: POSTGRES_EPOCH_OFFSET_MICROS - 1_000_000n,
    });
    expect(new Date(Number(POSTGRES_EPOCH_OFFSET_MICROS / 1000n)).toISOString()).toBe(
      '2000-01-01T00:00:00.000Z',
    );
  });

  it('Origin: origin commit LSN and name', () => {
    const data = bytes().int8('O').int64(BIG_LSN).cstring('pg_16400').build();
    expect(new PgoutputDecoder().decode(data)).toEqual({
      tag: 'origin',
      originLsn: BIG_LSN,
      name: 'pg_16400',
    });
  });

  it('Relation: namespace, name, key flags, type OIDs and typmods; cached by OID', () => {
    const decoder = new PgoutputDecoder();
    const relation = expectTag(decoder.decode(relationMessage()), 'relation');
    expect(relation).toEqual({
      tag: 'relation',
      xid: undefined,
      relationId: ITEMS_OID,
      schema: 'public',
      name: 'items',
      replicaIdentity: 'default',
      columns: [
        { name: 'id', isKey: true, typeOid: INT4_OID, typeMod: -1 },
        { name: 'name', isKey: false, typeOid: TEXT_OID, typeMod: -1 },
        { name: 'price', isKey: false, typeOid: NUMERIC_OID, typeMod: 655_366 },
        { name: 'data', isKey: false, typeOid: BYTEA_OID, typeMod: -1 },
      ],
    });
    expect(decoder.relation(ITEMS_OID)).toBe(relation);
    expect([...decoder.relations()]).toEqual([relation]);
    expect(decoder.relation(ITEMS_OID + 1)).toBeUndefined();
  });

  it('Relation: "" namespace is pg_catalog; unsigned OIDs; multi-byte names; no columns', () => {
    const relation = expectTag(
      new PgoutputDecoder().decode(
        relationMessage({ oid: 0xfffffff0, namespace: '', name: 'Ünïcødé \u{1f418}', columns: [] }),
      ),
      'relation',
    );
    expect(relation.relationId).toBe(0xfffffff0);
    expect(relation.schema).toBe('pg_catalog');
    expect(relation.name).toBe('Ünïcødé \u{1f418}');
    expect(relation.columns).toEqual([]);
  });

  it('Relation: key flag is bit 1 of the flags byte; type OIDs above 2^31 stay unsigned', () => {
    const relation = expectTag(
      new PgoutputDecoder().decode(
        relationMessage({
          columns: [
            { name: 'a', typeOid: 0x80000001, flags: 0 },
            { name: 'b', typeOid: INT4_OID, flags: 1, typeMod: 0 },
            { name: 'c', typeOid: INT4_OID, flags: 3 },
            { name: 'd', typeOid: INT4_OID, flags: 2 },
          ],
        }),
      ),
      'relation',
    );
    expect(relation.columns.map((c) => c.isKey)).toEqual([false, true, true, false]);
    expect(relation.columns[0]!.typeOid).toBe(0x80000001);
    expect(relation.columns[1]!.typeMod).toBe(0);
  });

  it.each([
    ['d', 'default'],
    ['n', 'nothing'],
    ['f', 'full'],
    ['i', 'index'],
  ])('Relation: replica identity %j is %s', (byte, identity) => {
    const relation = expectTag(new PgoutputDecoder().decode(relationMessage({ identity: byte })), 'relation');
    expect(relation.replicaIdentity).toBe(identity);
  });

  it('Relation: an unknown replica identity is a protocol violation', () => {
    const error = decodeError(() => new PgoutputDecoder().decode(relationMessage({ identity: 'x' })));
    expect(error.message).toContain('replica identity "x"');
  });

  it('Relation: a second Relation for the same OID replaces the cached one (e.g. after ALTER TABLE)', () => {
    const decoder = decoderWithItems();
    const first = decoder.relation(ITEMS_OID)!;
    const altered = expectTag(
      decoder.decode(
        relationMessage({
          identity: 'f',
          name: 'items_renamed',
          columns: [
            { name: 'id', typeOid: INT4_OID, flags: 1 },
            { name: 'note', typeOid: TEXT_OID },
          ],
        }),
      ),
      'relation',
    );
    expect(decoder.relation(ITEMS_OID)).toBe(altered);
    expect([...decoder.relations()]).toEqual([altered]);
    // Changes now decode against the new shape…
    const insert = expectTag(decoder.decode(insertMessage(['7', 'hi'])), 'insert');
    expect(insert.relation).toBe(altered);
    expectCells(insert.new, ['7', 'hi']);
    // …and a tuple of the old shape no longer fits.
    decodeError(() => decoder.decode(insertMessage(SAMPLE_ROW)));
    // A message decoded earlier keeps the relation it was decoded with.
    expect(first.columns).toHaveLength(4);
  });

  it('Type: type OID, namespace and name ("" namespace is pg_catalog)', () => {
    const decoder = new PgoutputDecoder();
    expect(decoder.decode(typeMessage('public'))).toEqual({
      tag: 'type',
      xid: undefined,
      typeOid: 70_000,
      schema: 'public',
      name: 'mood',
    });
    expect(expectTag(decoder.decode(typeMessage('')), 'type').schema).toBe('pg_catalog');
  });

  it('Insert: every column kind, with empty and multi-byte text and binary values', () => {
    const decoder = decoderWithItems();
    const data = insertMessage(SAMPLE_ROW);
    const insert = expectTag(decoder.decode(data), 'insert');
    expect(insert.xid).toBeUndefined();
    expect(insert.relation).toBe(decoder.relation(ITEMS_OID));
    expectCells(insert.new, SAMPLE_ROW);
    // Values are views of the message, not copies.
    expect(insert.new.buffer).toBe(data);

    const cases: readonly (readonly Cell[])[] = [
      ['', '', '', Buffer.alloc(0)],
      [null, null, null, null],
      [UNCHANGED, UNCHANGED, null, UNCHANGED],
      ['2', '\u00e9\u4e2d\u{1f600}', null, Buffer.from('\\x00', 'latin1')],
    ];
    for (const cells of cases)
      expectCells(expectTag(decoder.decode(insertMessage(cells)), 'insert').new, cells);
  });

  it('Insert: unchanged TOAST, NULL and empty text are three different things', () => {
    const row = expectTag(
      decoderWithItems().decode(insertMessage(['', null, UNCHANGED, null])),
      'insert',
    ).new;
    expect([row.kind(0), row.kind(1), row.kind(2)]).toEqual([
      ColumnKind.Text,
      ColumnKind.Null,
      ColumnKind.UnchangedToast,
    ]);
    expect(row.text(0)).toBe('');
    expect(row.isNull(0)).toBe(false);
    expect(row.isNull(2)).toBe(false);
    expect(row.isUnchangedToast(1)).toBe(false);
  });

  it('Insert: a tuple marker other than N is a protocol violation', () => {
    const data = insertMessage(SAMPLE_ROW);
    data[5] = 'K'.charCodeAt(0);
    expect(decodeError(() => decoderWithItems().decode(data)).message).toContain("expected 'N'");
  });

  it('Update without an old tuple (REPLICA IDENTITY DEFAULT, key unchanged)', () => {
    const newRow: readonly Cell[] = ['1', 'new', '1.00', UNCHANGED];
    const update = expectTag(decoderWithItems().decode(updateMessage(undefined, newRow)), 'update');
    expect(update.key).toBeUndefined();
    expect(update.old).toBeUndefined();
    expect(update.xid).toBeUndefined();
    expectCells(update.new, newRow);
  });

  it('Update with K: the old replica-identity key (other columns NULL)', () => {
    const key: readonly Cell[] = ['1', null, null, null];
    const newRow: readonly Cell[] = ['2', 'x', null, UNCHANGED];
    const update = expectTag(
      decoderWithItems().decode(updateMessage({ marker: 'K', cells: key }, newRow)),
      'update',
    );
    expectCells(update.key, key);
    expect(update.old).toBeUndefined();
    expectCells(update.new, newRow);
  });

  it('Update with O: the whole old row (REPLICA IDENTITY FULL)', () => {
    const old: readonly Cell[] = ['1', 'old', '0.10', Buffer.from([1, 2])];
    const update = expectTag(
      decoderWithItems().decode(updateMessage({ marker: 'O', cells: old }, SAMPLE_ROW)),
      'update',
    );
    expect(update.key).toBeUndefined();
    expectCells(update.old, old);
    expectCells(update.new, SAMPLE_ROW);
  });

  it('Update: a missing N after the old tuple, or an unknown marker, is a protocol violation', () => {
    const afterOld = tupleData(bytes().int8('U').int32(ITEMS_OID).int8('O'), SAMPLE_ROW).int8('O').build();
    expect(decodeError(() => decoderWithItems().decode(afterOld)).message).toContain("expected 'N'");
    const unknown = tupleData(bytes().int8('U').int32(ITEMS_OID).int8('X'), SAMPLE_ROW).build();
    expect(decodeError(() => decoderWithItems().decode(unknown)).message).toContain("expected 'N'");
  });

  it('Delete with K (key) and with O (old row)', () => {
    const decoder = decoderWithItems();
    const key: readonly Cell[] = ['1', null, null, null];
    const byKey = expectTag(decoder.decode(deleteMessage('K', key)), 'delete');
    expectCells(byKey.key, key);
    expect(byKey.old).toBeUndefined();
    expect(byKey.xid).toBeUndefined();
    const byOld = expectTag(decoder.decode(deleteMessage('O', SAMPLE_ROW)), 'delete');
    expect(byOld.key).toBeUndefined();
    expectCells(byOld.old, SAMPLE_ROW);
  });

  it('Delete: a marker other than K or O is a protocol violation', () => {
    const data = tupleData(bytes().int8('D').int32(ITEMS_OID).int8('N'), SAMPLE_ROW).build();
    expect(decodeError(() => decoderWithItems().decode(data)).message).toContain("expected 'K' or 'O'");
  });

  it.each([
    [0, false, false],
    [1, true, false],
    [2, false, true],
    [3, true, true],
  ])('Truncate with options %i: cascade %s, restart identity %s', (options, cascade, restartIdentity) => {
    const decoder = decoderWithItems();
    const truncate = expectTag(decoder.decode(truncateMessage(options, [ITEMS_OID])), 'truncate');
    expect(truncate).toEqual({
      tag: 'truncate',
      xid: undefined,
      cascade,
      restartIdentity,
      relations: [decoder.relation(ITEMS_OID)],
    });
  });

  it('Truncate of several relations, in message order', () => {
    const decoder = decoderWithItems();
    decoder.decode(relationMessage({ oid: 20_000, name: 'orders', columns: [] }));
    decoder.decode(relationMessage({ oid: 0xfffffff0, name: 'lines', columns: [] }));
    const truncate = expectTag(
      decoder.decode(truncateMessage(1, [0xfffffff0, ITEMS_OID, 20_000])),
      'truncate',
    );
    expect(truncate.relations.map((r) => r.name)).toEqual(['lines', 'items', 'orders']);
    expect(truncate.cascade).toBe(true);
  });

  it('Truncate: a negative relation count is a protocol violation', () => {
    const data = bytes().int8('T').int32(-1).int8(0).build();
    expect(decodeError(() => decoderWithItems().decode(data)).message).toContain('negative relation count');
  });
});

// --- pg_logical_emit_message (protocol 1 with `messages 'true'`, PG 14+) ---------------------------

describe('logical decoding messages', () => {
  it('Message: transactional, with binary content (NUL and 0xFF bytes kept)', () => {
    const content = Buffer.from([0, 1, 0xff, 0x0a, 0, 0x80]);
    const message = new PgoutputDecoder().decode(logicalMessage(1, 'my.prefix', content));
    expect(message).toEqual({
      tag: 'message',
      xid: undefined,
      transactional: true,
      lsn: BIG_LSN,
      prefix: 'my.prefix',
      content,
    });
  });

  it('Message: not transactional, empty content, empty prefix; only bit 1 counts as transactional', () => {
    const decoder = new PgoutputDecoder();
    const message = expectTag(decoder.decode(logicalMessage(0, '', Buffer.alloc(0))), 'message');
    expect(message.transactional).toBe(false);
    expect(message.prefix).toBe('');
    expect(message.content.length).toBe(0);
    expect(expectTag(decoder.decode(logicalMessage(2, 'p', Buffer.from('x'))), 'message').transactional).toBe(
      false,
    );
  });

  it('Message: a negative content length is a protocol violation', () => {
    const data = bytes().int8('M').int8(1).int64(1n).cstring('p').int32(-5).build();
    expect(decodeError(() => new PgoutputDecoder().decode(data)).message).toContain('negative length');
  });
});

// --- protocol version 2: streamed transactions ----------------------------------------------------

describe('protocol 2: streamed transactions', () => {
  const XID = 0x80000010;

  it('Stream Start (first segment or not) and Stream Stop', () => {
    const decoder = new PgoutputDecoder();
    expect(decoder.decode(streamStart(XID, true))).toEqual({
      tag: 'stream_start',
      xid: XID,
      firstSegment: true,
    });
    expect(decoder.decode(streamStop())).toEqual({ tag: 'stream_stop' });
    expect(decoder.decode(streamStart(XID, false))).toEqual({
      tag: 'stream_start',
      xid: XID,
      firstSegment: false,
    });
  });

  it('changes inside a stream block carry the xid; the same messages outside it do not', () => {
    const decoder = new PgoutputDecoder();
    const sub = XID + 1; // a subtransaction's changes name the subtransaction
    decoder.decode(streamStart(XID, true));

    const relation = expectTag(decoder.decode(relationMessage({}, XID)), 'relation');
    expect(relation.xid).toBe(XID);
    expect(relation.schema).toBe('public');
    expect(relation.columns).toHaveLength(4);
    expect(expectTag(decoder.decode(typeMessage('public', XID)), 'type').xid).toBe(XID);

    const insert: InsertMessage = expectTag(decoder.decode(insertMessage(SAMPLE_ROW, sub)), 'insert');
    expect(insert.xid).toBe(sub);
    expectCells(insert.new, SAMPLE_ROW);
    const update: UpdateMessage = expectTag(
      decoder.decode(updateMessage({ marker: 'K', cells: ['1', null, null, null] }, SAMPLE_ROW, XID)),
      'update',
    );
    expect(update.xid).toBe(XID);
    expectCells(update.key, ['1', null, null, null]);
    expectCells(update.new, SAMPLE_ROW);
    const del: DeleteMessage = expectTag(decoder.decode(deleteMessage('O', SAMPLE_ROW, XID)), 'delete');
    expect(del.xid).toBe(XID);
    expectCells(del.old, SAMPLE_ROW);
    const truncate = expectTag(decoder.decode(truncateMessage(2, [ITEMS_OID], XID)), 'truncate');
    expect(truncate.xid).toBe(XID);
    expect(truncate.restartIdentity).toBe(true);
    const message = expectTag(decoder.decode(logicalMessage(1, 'p', Buffer.from('hi'), XID)), 'message');
    expect(message.xid).toBe(XID);
    expect(message.content.toString()).toBe('hi');

    decoder.decode(streamStop());

    expect(expectTag(decoder.decode(relationMessage()), 'relation').xid).toBeUndefined();
    expect(expectTag(decoder.decode(typeMessage('public')), 'type').xid).toBeUndefined();
    expect(expectTag(decoder.decode(insertMessage(SAMPLE_ROW)), 'insert').xid).toBeUndefined();
    expect(expectTag(decoder.decode(updateMessage(undefined, SAMPLE_ROW)), 'update').xid).toBeUndefined();
    expect(expectTag(decoder.decode(deleteMessage('K', SAMPLE_ROW)), 'delete').xid).toBeUndefined();
    expect(expectTag(decoder.decode(truncateMessage(0, [ITEMS_OID])), 'truncate').xid).toBeUndefined();
    expect(expectTag(decoder.decode(logicalMessage(0, 'p', Buffer.alloc(0))), 'message').xid).toBeUndefined();
  });

  it('a change without the xid inside a stream block does not decode as if it had one', () => {
    // Read with the xid, the OID becomes the xid and the tuple marker is misread: it must fail, not
    // silently produce a wrong row.
    const decoder = decoderInStream(XID);
    decodeError(() => decoder.decode(insertMessage(SAMPLE_ROW)));
  });

  it('Stream Commit: xid, flags, commit and end LSN, commit time', () => {
    const data = bytes().int8('c').int32(XID).int8(0).int64(0x100n).int64(BIG_LSN).int64(PG_MICROS).build();
    expect(new PgoutputDecoder().decode(data)).toEqual({
      tag: 'stream_commit',
      xid: XID,
      flags: 0,
      commitLsn: 0x100n,
      endLsn: BIG_LSN,
      commitTime: UNIX_MICROS,
    });
  });

  it('Stream Abort of the whole transaction and of a subtransaction (no parallel fields)', () => {
    const decoder = new PgoutputDecoder();
    expect(decoder.decode(bytes().int8('A').int32(XID).int32(XID).build())).toEqual({
      tag: 'stream_abort',
      xid: XID,
      subXid: XID,
      abortLsn: undefined,
      abortTime: undefined,
    });
    const sub = expectTag(
      decoder.decode(
        bytes()
          .int8('A')
          .int32(XID)
          .int32(XID + 5)
          .build(),
      ),
      'stream_abort',
    );
    expect(sub.subXid).toBe(XID + 5);
  });
});

// --- protocol version 3: two-phase commit ---------------------------------------------------------

describe('protocol 3: two-phase commit', () => {
  const GID = 'pg_gid_16390_741 \u00e9';

  it('Begin Prepare: prepare LSN, end LSN, prepare time, xid, GID', () => {
    const data = bytes()
      .int8('b')
      .int64(0x200n)
      .int64(BIG_LSN)
      .int64(PG_MICROS)
      .int32(BIG_XID)
      .cstring(GID)
      .build();
    expect(new PgoutputDecoder().decode(data)).toEqual({
      tag: 'begin_prepare',
      prepareLsn: 0x200n,
      endLsn: BIG_LSN,
      prepareTime: UNIX_MICROS,
      xid: BIG_XID,
      gid: GID,
    });
  });

  it.each([
    ['P', { tag: 'prepare', prepareLsn: 0x300n, endLsn: BIG_LSN, prepareTime: UNIX_MICROS }],
    ['p', { tag: 'stream_prepare', prepareLsn: 0x300n, endLsn: BIG_LSN, prepareTime: UNIX_MICROS }],
    ['K', { tag: 'commit_prepared', commitLsn: 0x300n, endLsn: BIG_LSN, commitTime: UNIX_MICROS }],
  ])('%s: flags, %o, xid, GID', (byte, fields) => {
    expect(new PgoutputDecoder().decode(twoPhaseMessage(byte, 0x300n, GID))).toEqual({
      ...fields,
      flags: 0,
      xid: BIG_XID,
      gid: GID,
    });
  });

  it('Rollback Prepared: flags, prepare end LSN, rollback end LSN, prepare and rollback times, xid, GID', () => {
    const data = bytes()
      .int8('r')
      .int8(0)
      .int64(0x500n)
      .int64(BIG_LSN)
      .int64(PG_MICROS)
      .int64(PG_MICROS + 1_000_000n)
      .int32(42)
      .cstring(GID)
      .build();
    expect(new PgoutputDecoder().decode(data)).toEqual({
      tag: 'rollback_prepared',
      flags: 0,
      prepareEndLsn: 0x500n,
      rollbackEndLsn: BIG_LSN,
      prepareTime: UNIX_MICROS,
      rollbackTime: UNIX_MICROS + 1_000_000n,
      xid: 42,
      gid: GID,
    });
  });
});

// --- protocol version 4: parallel streaming -------------------------------------------------------

describe("protocol 4: Stream Abort with streaming 'parallel'", () => {
  const abortWithInfo = bytes().int8('A').int32(7).int32(9).int64(BIG_LSN).int64(PG_MICROS).build();

  it('carries the abort LSN and abort time', () => {
    expect(new PgoutputDecoder({ parallelStreaming: true }).decode(abortWithInfo)).toEqual({
      tag: 'stream_abort',
      xid: 7,
      subXid: 9,
      abortLsn: BIG_LSN,
      abortTime: UNIX_MICROS,
    });
  });

  it('without parallel streaming the fields are not read', () => {
    const abort = expectTag(new PgoutputDecoder().decode(abortWithInfo.subarray(0, 9)), 'stream_abort');
    expect([abort.abortLsn, abort.abortTime]).toEqual([undefined, undefined]);
  });
});

// --- malformed input ------------------------------------------------------------------------------

interface ValidCase {
  name: string;
  decoder: () => PgoutputDecoder;
  data: Buffer;
}

const VALID: readonly ValidCase[] = [
  {
    name: 'Begin',
    decoder: () => new PgoutputDecoder(),
    data: bytes().int8('B').int64(1n).int64(2n).int32(3).build(),
  },
  {
    name: 'Commit',
    decoder: () => new PgoutputDecoder(),
    data: bytes().int8('C').int8(0).int64(1n).int64(2n).int64(3n).build(),
  },
  {
    name: 'Origin',
    decoder: () => new PgoutputDecoder(),
    data: bytes().int8('O').int64(1n).cstring('origin').build(),
  },
  { name: 'Relation', decoder: () => new PgoutputDecoder(), data: relationMessage() },
  { name: 'Relation (streamed)', decoder: () => decoderInStream(5), data: relationMessage({}, 5) },
  { name: 'Type', decoder: () => new PgoutputDecoder(), data: typeMessage('public') },
  { name: 'Insert', decoder: decoderWithItems, data: insertMessage(SAMPLE_ROW) },
  { name: 'Insert (streamed)', decoder: () => decoderInStream(5), data: insertMessage(SAMPLE_ROW, 5) },
  { name: 'Update', decoder: decoderWithItems, data: updateMessage(undefined, SAMPLE_ROW) },
  {
    name: 'Update with K',
    decoder: decoderWithItems,
    data: updateMessage({ marker: 'K', cells: ['1', null, null, null] }, SAMPLE_ROW),
  },
  {
    name: 'Update with O',
    decoder: decoderWithItems,
    data: updateMessage({ marker: 'O', cells: SAMPLE_ROW }, SAMPLE_ROW),
  },
  { name: 'Delete with K', decoder: decoderWithItems, data: deleteMessage('K', ['1', null, null, null]) },
  { name: 'Delete with O', decoder: decoderWithItems, data: deleteMessage('O', SAMPLE_ROW) },
  { name: 'Truncate', decoder: decoderWithItems, data: truncateMessage(3, [ITEMS_OID, ITEMS_OID]) },
  {
    name: 'Message',
    decoder: () => new PgoutputDecoder(),
    data: logicalMessage(1, 'p', Buffer.from([0, 1, 2])),
  },
  { name: 'Stream Start', decoder: () => new PgoutputDecoder(), data: streamStart(5, true) },
  { name: 'Stream Stop', decoder: () => decoderInStream(5), data: streamStop() },
  {
    name: 'Stream Commit',
    decoder: () => new PgoutputDecoder(),
    data: bytes().int8('c').int32(5).int8(0).int64(1n).int64(2n).int64(3n).build(),
  },
  {
    name: 'Stream Abort',
    decoder: () => new PgoutputDecoder(),
    data: bytes().int8('A').int32(5).int32(6).build(),
  },
  {
    name: 'Stream Abort (parallel)',
    decoder: () => new PgoutputDecoder({ parallelStreaming: true }),
    data: bytes().int8('A').int32(5).int32(6).int64(1n).int64(2n).build(),
  },
  {
    name: 'Begin Prepare',
    decoder: () => new PgoutputDecoder(),
    data: bytes().int8('b').int64(1n).int64(2n).int64(3n).int32(4).cstring('gid').build(),
  },
  { name: 'Prepare', decoder: () => new PgoutputDecoder(), data: twoPhaseMessage('P', 1n, 'gid') },
  { name: 'Stream Prepare', decoder: () => new PgoutputDecoder(), data: twoPhaseMessage('p', 1n, 'gid') },
  { name: 'Commit Prepared', decoder: () => new PgoutputDecoder(), data: twoPhaseMessage('K', 1n, 'gid') },
  {
    name: 'Rollback Prepared',
    decoder: () => new PgoutputDecoder(),
    data: bytes().int8('r').int8(0).int64(1n).int64(2n).int64(3n).int64(4n).int32(5).cstring('gid').build(),
  },
];

describe('malformed messages', () => {
  it.each(VALID.map((c) => [c.name, c] as const))(
    '%s cut at every length is a PROTOCOL_VIOLATION',
    (_, c) => {
      expect(() => c.decoder().decode(c.data)).not.toThrow();
      for (let cut = 0; cut < c.data.length; cut++) {
        // A copy, so nothing past the cut is reachable through the buffer's memory either.
        const truncated = Buffer.from(c.data.subarray(0, cut));
        const error = decodeError(() => c.decoder().decode(truncated));
        expect(error.message).toMatch(/^malformed pgoutput /);
        expect(error.detail).toMatch(/^at byte \d+ of \d+/);
      }
    },
  );

  it.each(VALID.map((c) => [c.name, c] as const))(
    '%s decoded in place from a larger buffer never reads past its end',
    (_, c) => {
      // As from a socket chunk: other bytes before the message, and the rest of it after the cut.
      const prefix = Buffer.from([0x77, 0, 0, 0, 0, 0, 0, 0]);
      const chunk = Buffer.concat([prefix, c.data, Buffer.from([0, 0, 0, 0])]);
      const start = prefix.length;
      expect(plain(c.decoder().decodeAt(chunk, start, start + c.data.length))).toEqual(
        plain(c.decoder().decode(c.data)),
      );
      for (let cut = 0; cut < c.data.length; cut++) {
        const error = decodeError(() => c.decoder().decodeAt(chunk, start, start + cut));
        // Offsets are within the message, not the chunk.
        expect(error.detail).toMatch(new RegExp(`^at byte \\d+ of ${cut}$`));
      }
    },
  );

  it('an empty message', () => {
    expect(decodeError(() => new PgoutputDecoder().decode(Buffer.alloc(0))).message).toContain(
      'empty message',
    );
  });

  it('an unknown message byte names it', () => {
    const error = decodeError(() => new PgoutputDecoder().decode(Buffer.from('Z\0\0\0\0', 'latin1')));
    expect(error.message).toContain('unknown message type 0x5a ("Z")');
    expect(error.detail).toBe('at byte 0 of 5');
  });

  it('an unknown column kind names the column and its offset', () => {
    const data = bytes()
      .int8('I')
      .int32(ITEMS_OID)
      .int8('N')
      .int16(4)
      .int8('t')
      .int32(1)
      .bytes('1')
      .int8('x')
      .build();
    const error = decodeError(() => decoderWithItems().decode(data));
    expect(error.message).toContain('unknown column kind 0x78 in column 1');
    expect(error.detail).toBe(`at byte 14 of ${data.length}`);
  });

  it('a negative value length', () => {
    const data = bytes().int8('I').int32(ITEMS_OID).int8('N').int16(4).int8('t').int32(-1).build();
    expect(decodeError(() => decoderWithItems().decode(data)).message).toContain('negative length');
  });

  it.each([
    ['fewer', ['1', 'a', null]],
    ['more', ['1', 'a', null, null, null]],
    ['no', []],
  ])('a tuple with %s columns than the relation', (_, cells) => {
    const error = decodeError(() => decoderWithItems().decode(insertMessage(cells)));
    expect(error.message).toContain(`tuple has ${cells.length} columns but relation public.items has 4`);
  });

  it('a negative column count in a Relation', () => {
    const data = bytes().int8('R').int32(1).cstring('s').cstring('t').int8('d').int16(-1).build();
    expect(decodeError(() => new PgoutputDecoder().decode(data)).message).toContain('negative column count');
  });

  it.each([
    ['Insert', insertMessage(SAMPLE_ROW, undefined, 99)],
    ['Update', bytes().int8('U').int32(99).int8('N').int16(0).build()],
    ['Delete', bytes().int8('D').int32(99).int8('K').int16(0).build()],
    ['Truncate', truncateMessage(0, [ITEMS_OID, 99])],
  ])('%s of a relation never described', (_, data) => {
    const error = decodeError(() => decoderWithItems().decode(data));
    expect(error.message).toContain('relation OID 99 was never described by a Relation message');
  });

  it('the error detail names the LSN when one is given, and keeps the original as the cause', () => {
    const data = insertMessage(SAMPLE_ROW, undefined, 99);
    const withLsn = decodeError(() => decoderWithItems().decode(data, 0x1_016b3748n));
    expect(withLsn.detail).toBe(`at byte 5 of ${data.length} in the message at LSN 1/16B3748`);
    expect(withLsn.hint).toBeDefined();
    expect(withLsn.cause).toBeInstanceOf(PgReplicateError);
    const without = decodeError(() => decoderWithItems().decode(data));
    expect(without.detail).toBe(`at byte 5 of ${data.length}`);
    expect(without.detail).not.toContain('LSN');
  });
});

// --- the reader lets go of each message -----------------------------------------------------------

describe('reader reuse', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** The decoder's (private) reader, caught through its `reset` calls. */
  function captureReader(decoder: PgoutputDecoder, data: Buffer): BufferReader {
    const reset = vi.spyOn(BufferReader.prototype, 'reset');
    try {
      decoder.decode(data);
    } catch {
      // the reader must be reset on failure too
    }
    const reader = reset.mock.contexts[0];
    expect(reader).toBeInstanceOf(BufferReader);
    // The last reset is the one after decoding, with no buffer.
    expect(reset.mock.lastCall).toEqual([]);
    return reader as BufferReader;
  }

  it('cleans up the reader after decoding a message', () => {
    const reader = captureReader(decoderWithItems(), insertMessage(SAMPLE_ROW));
    expect(reader.buffer.length).toBe(0);
    expect(reader.offset).toBe(0);
    expect(reader.context).toBe('');
  });

  it('cleans up the reader after a message fails to decode', () => {
    const reader = captureReader(decoderWithItems(), insertMessage(SAMPLE_ROW).subarray(0, 12));
    expect(reader.buffer.length).toBe(0);
    expect(reader.offset).toBe(0);
    expect(reader.context).toBe('');
  });

  it('decodes messages one after another with one reader (no state leaks between them)', () => {
    const decoder = decoderWithItems();
    const reset = vi.spyOn(BufferReader.prototype, 'reset');
    const messages = [insertMessage(['1', 'a', null, null]), deleteMessage('K', ['1', null, null, null])];
    const [insert, del] = messages.map((m) => decoder.decode(m)) as [PgoutputMessage, PgoutputMessage];
    expect(new Set(reset.mock.contexts).size).toBe(1);
    expectCells(expectTag(insert, 'insert').new, ['1', 'a', null, null]);
    expectCells(expectTag(del, 'delete').key, ['1', null, null, null]);
  });

  it('relations survive decoding errors', () => {
    const decoder = decoderWithItems();
    const relation: RelationMessage = decoder.relation(ITEMS_OID)!;
    decodeError(() => decoder.decode(Buffer.from('Z')));
    expect(decoder.relation(ITEMS_OID)).toBe(relation);
    expect(expectTag(decoder.decode(insertMessage(SAMPLE_ROW)), 'insert').relation).toBe(relation);
  });
});
