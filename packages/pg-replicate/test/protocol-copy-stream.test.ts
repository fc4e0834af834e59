/**
 * `CopyStream` and `ReplicationStream` without a server: a fake `pg.Connection` whose socket is a
 * real Duplex, with one `'data'` listener attached first that plays pg's parser. Server bytes are
 * fed split at every position and in random chunk sizes; payloads must come out exactly, in order,
 * one per CopyData message, and what follows CopyDone or an ErrorResponse must reach pg's listener.
 * COPY sub-protocol: https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY
 * Replication frames: https://www.postgresql.org/docs/current/protocol-replication.html
 */
import { Duplex } from 'node:stream';
import type pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isPgReplicateError, PgReplicateError } from '../src/errors.js';
import { PgoutputDecoder, POSTGRES_EPOCH_OFFSET_MICROS } from '../src/pgoutput/decoder.js';
import { CopyStream } from '../src/protocol/copy-stream.js';
import {
  MAX_EVENTS_PER_READ,
  type ReplicationEvent,
  ReplicationStream,
} from '../src/protocol/replication-stream.js';
import {
  bytes,
  commandComplete,
  copyData,
  copyResponse,
  errorOrNotice,
  keepalive,
  message,
  readyForQuery,
  xlogData,
} from './wire/buffer-builder.js';

// --- a fake pg connection -------------------------------------------------------------------------

/** The server end of the socket: `serverSends` feeds the readable side, writes are recorded. */
class FakeSocket extends Duplex {
  readonly written: Buffer[] = [];

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.written.push(chunk);
    callback();
  }

  /** Queues bytes as one socket chunk; returns false once past the high-water mark. */
  serverSends(...parts: Buffer[]): boolean {
    return this.push(Buffer.concat(parts));
  }
}

type Handlers = Pick<CopyStream, 'handleCommandComplete' | 'handleReadyForQuery' | 'handleError'>;

/**
 * Plays pg's parser: frames what reaches its data listener and calls the active query's handlers
 * for CommandComplete, ErrorResponse (after which pg drops the active query) and ReadyForQuery.
 */
class FakePgParser {
  readonly received: Buffer[] = [];
  active: Handlers | null = null;
  #pending = Buffer.alloc(0);

  readonly listener = (chunk: Buffer): void => {
    this.received.push(Buffer.from(chunk));
    this.#pending = Buffer.concat([this.#pending, chunk]);
    while (this.#pending.length >= 5) {
      const end = 1 + this.#pending.readUInt32BE(1);
      if (this.#pending.length < end) break;
      this.#handle(String.fromCharCode(this.#pending[0]!), this.#pending.subarray(5, end));
      this.#pending = this.#pending.subarray(end);
    }
  };

  get receivedBytes(): Buffer {
    return Buffer.concat(this.received);
  }

  #handle(code: string, body: Buffer): void {
    const active = this.active;
    if (code === 'C') active?.handleCommandComplete({ text: body.toString('utf8', 0, body.length - 1) });
    else if (code === 'Z') {
      this.active = null;
      active?.handleReadyForQuery();
    } else if (code === 'E') {
      this.active = null;
      const text = /M([^\0]*)\0/.exec(body.toString('utf8'))?.[1] ?? '';
      active?.handleError(Object.assign(new Error(text), { severity: 'ERROR', code: 'XX000' }));
    } else {
      throw new Error(`pg would not expect ${JSON.stringify(code)} here`);
    }
  }
}

class FakeConnection {
  readonly queries: string[] = [];
  constructor(readonly stream: FakeSocket) {}
  query(sql: string): void {
    this.queries.push(sql);
  }
}

interface Harness {
  socket: FakeSocket;
  pgParser: FakePgParser;
  connection: FakeConnection;
  copy: CopyStream;
}

function submitCopy(sql = 'COPY items TO STDOUT'): Harness {
  const socket = new FakeSocket();
  const pgParser = new FakePgParser();
  socket.on('data', pgParser.listener);
  const connection = new FakeConnection(socket);
  const copy = new CopyStream(sql);
  pgParser.active = copy;
  copy.submit(connection as unknown as pg.Connection);
  return { socket, pgParser, connection, copy };
}

const nextMacrotask = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Pushes each chunk as its own socket read, letting the consumer run in between. */
async function feed(socket: FakeSocket, chunks: readonly Buffer[]): Promise<void> {
  for (const chunk of chunks) {
    socket.serverSends(chunk);
    await nextMacrotask();
  }
}

interface Drained {
  payloads: Buffer[];
  batches: number;
  error: unknown;
}

/** Calls `next()` until it returns null or throws. */
async function drain(copy: CopyStream): Promise<Drained> {
  const result: Drained = { payloads: [], batches: 0, error: undefined };
  try {
    for (let batch = await copy.next(); batch !== null; batch = await copy.next()) {
      result.batches++;
      result.payloads.push(...batch);
    }
  } catch (error) {
    result.error = error;
  }
  return result;
}

async function run(chunks: readonly Buffer[], harness = submitCopy()): Promise<Drained & Harness> {
  const [drained] = await Promise.all([drain(harness.copy), feed(harness.socket, chunks)]);
  return { ...drained, ...harness };
}

/** Cuts `data` at each offset in `cuts` (ascending). */
function cutAt(data: Buffer, cuts: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let start = 0;
  for (const cut of [...cuts, data.length]) {
    if (cut > start) chunks.push(data.subarray(start, cut));
    start = Math.max(start, cut);
  }
  return chunks;
}

/** A small deterministic PRNG (mulberry32), so a failing split can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomChunks(data: Buffer, maxChunk: number, next: () => number): Buffer[] {
  const cuts: number[] = [];
  for (
    let at = 1 + Math.floor(next() * maxChunk);
    at < data.length;
    at += 1 + Math.floor(next() * maxChunk)
  ) {
    cuts.push(at);
  }
  return cutAt(data, cuts);
}

function expectPayloads(actual: readonly Buffer[], expected: readonly Buffer[]): void {
  expect(actual.map((p) => p.toString('hex'))).toEqual(expected.map((p) => p.toString('hex')));
}

/** After the copy, the socket is pg's again: its data listener back, ours gone. */
function expectHandedBack(h: Harness): void {
  expect(h.socket.listeners('data')).toEqual([h.pgParser.listener]);
  expect(h.socket.listenerCount('readable')).toBe(0);
}

// --- COPY OUT -------------------------------------------------------------------------------------

const ROWS = [
  Buffer.from('1\tone\n'),
  Buffer.alloc(0), // an empty CopyData is still a message
  Buffer.from('2\tcaf\u00e9 \u{1f418}\n'),
  Buffer.from([0x64, 0, 0, 0, 4, 0x63]), // payload bytes that look like frames
];
const AFTER_COPY = Buffer.concat([commandComplete('COPY 4'), readyForQuery()]);
const COPY_OUT = Buffer.concat([
  copyResponse('H', 2),
  copyData(ROWS[0]!),
  errorOrNotice('N', '00000', 'a notice in between'),
  copyData(ROWS[1]!),
  message('S', bytes().cstring('TimeZone').cstring('UTC').build()),
  copyData(ROWS[2]!),
  message('A', bytes().int32(42).cstring('channel').cstring('payload').build()),
  copyData(ROWS[3]!),
  message('c'),
  AFTER_COPY,
]);

describe('CopyStream: COPY OUT', () => {
  it('sends the statement and takes the socket over from pg', async () => {
    const h = submitCopy('COPY items TO STDOUT');
    expect(h.connection.queries).toEqual(['COPY items TO STDOUT']);
    expect(h.socket.listeners('data')).not.toContain(h.pgParser.listener);
    h.socket.serverSends(copyResponse('H', 1), copyData('1\n'));
    expectPayloads((await h.copy.next())!, [Buffer.from('1\n')]);
    expect(h.pgParser.received).toEqual([]);
  });

  it('refuses a connection whose socket does not have exactly one data listener', () => {
    const socket = new FakeSocket();
    const connection = new FakeConnection(socket);
    expect(() => new CopyStream('x').submit(connection as unknown as pg.Connection)).toThrow(/found 0/);
    socket.on('data', () => {});
    socket.on('data', () => {});
    expect(() => new CopyStream('x').submit(connection as unknown as pg.Connection)).toThrow(/found 2/);
    expect(connection.queries).toEqual([]);
  });

  it('delivers every payload in one piece, skipping notices, and hands the rest to pg', async () => {
    const r = await run([COPY_OUT]);
    expect(r.error).toBeUndefined();
    expectPayloads(r.payloads, ROWS);
    expect(r.copy.commandTag).toBe('COPY 4');
    expect(r.pgParser.receivedBytes.equals(AFTER_COPY)).toBe(true);
    expectHandedBack(r);
    // Done for good: later calls keep saying so.
    expect(await r.copy.next()).toBeNull();
  });

  it('gives the same result split at every byte position', async () => {
    for (let cut = 1; cut < COPY_OUT.length; cut++) {
      const r = await run(cutAt(COPY_OUT, [cut]));
      expect(r.error, `cut at ${cut}`).toBeUndefined();
      expectPayloads(r.payloads, ROWS);
      expect(r.copy.commandTag, `cut at ${cut}`).toBe('COPY 4');
      expect(r.pgParser.receivedBytes.equals(AFTER_COPY), `cut at ${cut}`).toBe(true);
      expectHandedBack(r);
    }
  });

  it('gives the same result one byte at a time', async () => {
    const r = await run(
      cutAt(
        COPY_OUT,
        Array.from({ length: COPY_OUT.length }, (_, i) => i),
      ),
    );
    expectPayloads(r.payloads, ROWS);
    expect(r.pgParser.receivedBytes.equals(AFTER_COPY)).toBe(true);
  });

  it('gives the same result in random chunk sizes', async () => {
    const next = random(0x5eed);
    for (let round = 0; round < 60; round++) {
      const chunks = randomChunks(COPY_OUT, 1 + (round % 20), next);
      const r = await run(chunks);
      const sizes = chunks.map((c) => c.length).join(',');
      expect(r.error, sizes).toBeUndefined();
      expectPayloads(r.payloads, ROWS);
      expect(r.pgParser.receivedBytes.equals(AFTER_COPY), sizes).toBe(true);
    }
  });

  it('reassembles large messages that span many chunks, next to small ones', async () => {
    const next = random(42);
    const large = Buffer.alloc(300_000);
    for (let i = 0; i < large.length; i++) large[i] = (i * 7919) & 0xff;
    const payloads = [
      Buffer.from('a\n'),
      large,
      Buffer.from('b\n'),
      large.subarray(0, 70_000),
      Buffer.from('c\n'),
    ];
    const server = Buffer.concat([
      copyResponse('H', 1),
      ...payloads.map((p) => copyData(p)),
      message('c'),
      AFTER_COPY,
    ]);
    for (const maxChunk of [1_000, 16_384, 65_536]) {
      const chunks = randomChunks(server, maxChunk, next);
      const r = await run(chunks);
      expect(r.error).toBeUndefined();
      expect(r.payloads.length).toBe(payloads.length);
      r.payloads.forEach((p, i) => {
        expect(p.equals(payloads[i]!), `payload ${i} with chunks up to ${maxChunk}`).toBe(true);
      });
      expect(r.pgParser.receivedBytes.equals(AFTER_COPY)).toBe(true);
    }
  });

  it('returns the frames of one socket read as one batch, in order', async () => {
    const h = submitCopy();
    h.socket.serverSends(copyResponse('H', 1), copyData('1\n'), copyData('2\n'), copyData('3\n'));
    const batch = await h.copy.next();
    expect(batch?.map((p) => p.toString())).toEqual(['1\n', '2\n', '3\n']);
    h.socket.serverSends(copyData('4\n'), message('c'), AFTER_COPY);
    expect((await h.copy.next())?.map((p) => p.toString())).toEqual(['4\n']);
    expect(await h.copy.next()).toBeNull();
  });
});

// --- errors ----------------------------------------------------------------------------------------

describe('CopyStream: errors', () => {
  const ERROR = errorOrNotice('E', '57014', 'canceling statement due to user request');
  const SERVER = Buffer.concat([
    copyResponse('H', 1),
    copyData('1\n'),
    copyData('2\n'),
    ERROR,
    readyForQuery(),
  ]);

  it('delivers the payloads received before an ErrorResponse, then throws it; pg parses the rest', async () => {
    for (let cut = 1; cut < SERVER.length; cut++) {
      const r = await run(cutAt(SERVER, [cut]));
      expectPayloads(r.payloads, [Buffer.from('1\n'), Buffer.from('2\n')]);
      expect((r.error as Error | undefined)?.message, `cut at ${cut}`).toBe(
        'canceling statement due to user request',
      );
      expect(r.pgParser.receivedBytes.equals(Buffer.concat([ERROR, readyForQuery()])), `cut at ${cut}`).toBe(
        true,
      );
      expectHandedBack(r);
    }
  });

  it('an error before any data (e.g. the table does not exist)', async () => {
    const failed = Buffer.concat([
      errorOrNotice('E', '42P01', 'relation "nope" does not exist'),
      readyForQuery(),
    ]);
    const r = await run([failed]);
    expect(r.payloads).toEqual([]);
    expect((r.error as Error).message).toBe('relation "nope" does not exist');
    expect(r.pgParser.receivedBytes.equals(failed)).toBe(true);
    await expect(r.copy.next()).rejects.toThrow('does not exist');
  });

  it('a connection lost while the copy owns the socket gives the socket back and fails after the data', async () => {
    const h = submitCopy();
    h.socket.serverSends(copyResponse('H', 1), copyData('1\n'), copyData('2\n').subarray(0, 4));
    expectPayloads((await h.copy.next())!, [Buffer.from('1\n')]);
    h.copy.handleError(new Error('Connection terminated unexpectedly'));
    expectHandedBack(h);
    await expect(h.copy.next()).rejects.toThrow('Connection terminated unexpectedly');
    // The first error is the one reported.
    h.copy.handleError(new Error('later'));
    await expect(h.copy.next()).rejects.toThrow('Connection terminated unexpectedly');
  });

  it('wakes a pending next() when the connection is lost', async () => {
    const h = submitCopy();
    const pending = h.copy.next();
    await nextMacrotask();
    h.copy.handleError(new Error('Connection terminated'));
    await expect(pending).rejects.toThrow('Connection terminated');
  });
});

// --- backpressure and writing -----------------------------------------------------------------------

describe('CopyStream: backpressure and writes', () => {
  it('stops reading the socket while next() is not called, after a bounded read-ahead', async () => {
    const h = submitCopy();
    const row = Buffer.alloc(64 * 1024 - 5, 0x61);
    const frames = 160; // 10 MiB: well past any read-ahead
    let accepted = h.socket.serverSends(copyResponse('H', 1));
    for (let i = 0; i < frames; i++) accepted = h.socket.serverSends(copyData(row)) && accepted;
    // Past the socket's high-water mark: a real socket stops reading from TCP.
    expect(accepted).toBe(false);
    for (let i = 0; i < 5; i++) await nextMacrotask();
    const total = frames * 64 * 1024 + copyResponse('H', 1).length;
    const left = h.socket.readableLength;
    expect(left).toBeGreaterThan(0);
    expect(total - left).toBeLessThanOrEqual(4 * 1024 * 1024 + 64 * 1024);
    for (let i = 0; i < 5; i++) await nextMacrotask();
    expect(h.socket.readableLength).toBe(left);
    expect(h.pgParser.received).toEqual([]);

    h.socket.serverSends(message('c'), AFTER_COPY);
    const r = await drain(h.copy);
    expect(r.error).toBeUndefined();
    expect(r.payloads).toHaveLength(frames);
    expect(r.payloads.every((p) => p.equals(row))).toBe(true);
    expect(h.socket.readableLength).toBe(0);
    expect(h.pgParser.receivedBytes.equals(AFTER_COPY)).toBe(true);
  });

  it('write() and sendCopyDone() go to the server; no CopyDone once the copy is done', async () => {
    const h = submitCopy('START_REPLICATION SLOT s LOGICAL 0/0');
    h.copy.write(Buffer.from('hello'));
    h.copy.sendCopyDone();
    expect(h.socket.written.map((b) => b.toString('hex'))).toEqual([
      Buffer.from('hello').toString('hex'),
      message('c').toString('hex'),
    ]);
    h.socket.serverSends(
      copyResponse('W'),
      copyData('x'),
      message('c'),
      commandComplete('START_REPLICATION'),
    );
    expectPayloads((await h.copy.next())!, [Buffer.from('x')]);
    h.copy.sendCopyDone();
    expect(h.socket.written).toHaveLength(2);
    h.socket.serverSends(readyForQuery());
    expect(await h.copy.next()).toBeNull();
    expect(h.copy.commandTag).toBe('START_REPLICATION');
    h.copy.sendCopyDone();
    expect(h.socket.written).toHaveLength(2);
  });
});

// --- ReplicationStream ------------------------------------------------------------------------------

const PG_EPOCH_MS = 946_684_800_000;
const NOW = Date.parse('2024-05-06T07:08:09.123Z');
const START_LSN = 0x1_0000_0000n;

/** A standby status update as the client wrote it: 'd', Int32 38, 'r', three LSNs, time, flag. */
function parseStatus(frame: Buffer) {
  expect(frame.length).toBe(39);
  expect(frame[0]).toBe(0x64);
  expect(frame.readUInt32BE(1)).toBe(38);
  expect(frame[5]).toBe(0x72);
  return {
    written: frame.readBigUInt64BE(6),
    flushed: frame.readBigUInt64BE(14),
    applied: frame.readBigUInt64BE(22),
    time: frame.readBigInt64BE(30),
    replyRequested: frame[38],
  };
}

const pgoutputBegin = bytes().int8('B').int64(0x1_0000_0200n).int64(1n).int32(700).build();
const pgoutputRelation = bytes()
  .int8('R')
  .int32(16_384)
  .cstring('public')
  .cstring('items')
  .int8('d')
  .int16(1)
  .int8(1)
  .cstring('id')
  .int32(23)
  .int32(-1)
  .build();
const pgoutputInsert = bytes()
  .int8('I')
  .int32(16_384)
  .int8('N')
  .int16(1)
  .int8('t')
  .int32(2)
  .bytes('42')
  .build();
const pgoutputCommit = bytes()
  .int8('C')
  .int8(0)
  .int64(0x1_0000_0200n)
  .int64(0x1_0000_0230n)
  .int64(1n)
  .build();

interface ReplicationHarness extends Harness {
  stream: ReplicationStream;
  /** Status updates the client wrote, decoded. */
  statuses(): ReturnType<typeof parseStatus>[];
}

function startReplication(
  options: { statusIntervalMs?: number; mapError?: (error: unknown) => unknown; parallel?: boolean } = {},
): ReplicationHarness {
  const h = submitCopy('START_REPLICATION SLOT "s" LOGICAL 1/0 (proto_version \'4\')');
  const stream = new ReplicationStream(
    h.copy,
    new PgoutputDecoder({ parallelStreaming: options.parallel ?? false }),
    START_LSN,
    options,
  );
  h.socket.serverSends(copyResponse('W'));
  return { ...h, stream, statuses: () => h.socket.written.map(parseStatus) };
}

function xlogEvents(events: ReplicationEvent[] | null) {
  return (events ?? []).map((e) => (e.type === 'xlog' ? [e.lsn, e.message.tag] : [e.walEnd, e.type]));
}

describe('ReplicationStream', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('decodes XLogData frames into events with their LSNs, keeping the relation cache', async () => {
    const r = startReplication();
    r.socket.serverSends(
      copyData(xlogData(0x1_0000_0100n, 0x1_0000_0300n, 0n, pgoutputBegin)),
      copyData(xlogData(0x1_0000_0100n, 0x1_0000_0300n, 0n, pgoutputRelation)),
    );
    r.socket.serverSends(
      copyData(xlogData(0x1_0000_0110n, 0x1_0000_0300n, 0n, pgoutputInsert)),
      copyData(xlogData(0x1_0000_0200n, 0x1_0000_0400n, 0n, pgoutputCommit)),
    );
    const events = await r.stream.next();
    expect(xlogEvents(events)).toEqual([
      [0x1_0000_0100n, 'begin'],
      [0x1_0000_0100n, 'relation'],
      [0x1_0000_0110n, 'insert'],
      [0x1_0000_0200n, 'commit'],
    ]);
    const insert = events![2]!;
    expect(insert.type === 'xlog' && insert.message.tag === 'insert' && insert.message.new.text(0)).toBe(
      '42',
    );
    expect(r.stream.receivedLsn).toBe(0x1_0000_0400n);
    expect(r.stream.confirmedLsn).toBe(START_LSN);
    expect(r.socket.written).toEqual([]);
    r.stream.dispose();
  });

  it('decodes a large read a slice at a time, in order, and answers its keepalive when taking it', async () => {
    const r = startReplication();
    const inserts = 2 * MAX_EVENTS_PER_READ + 10;
    r.socket.serverSends(
      copyData(xlogData(0x1_0000_0100n, 0x1_0000_0300n, 0n, pgoutputBegin)),
      copyData(xlogData(0x1_0000_0100n, 0x1_0000_0300n, 0n, pgoutputRelation)),
      ...Array.from({ length: inserts }, (_, i) =>
        copyData(xlogData(0x1_0000_0110n + BigInt(i), 0x1_0000_0300n, 0n, pgoutputInsert)),
      ),
      copyData(keepalive(0x1_0000_0500n, 0n, true)),
      copyData(xlogData(0x1_0000_0200n, 0x1_0000_0400n, 0n, pgoutputCommit)),
    );
    const first = (await r.stream.next())!;
    expect(first).toHaveLength(MAX_EVENTS_PER_READ);
    // The whole read was taken: its keepalive is answered before its events are decoded.
    expect(r.statuses().map((status) => status.written)).toEqual([0x1_0000_0500n]);
    const all = [first];
    while (all.flat().length < inserts + 4) all.push((await r.stream.next())!);
    expect(all.map((events) => events.length)).toEqual([MAX_EVENTS_PER_READ, MAX_EVENTS_PER_READ, 14]);
    const lsns = xlogEvents(all.flat());
    expect(lsns.slice(0, 3)).toEqual([
      [0x1_0000_0100n, 'begin'],
      [0x1_0000_0100n, 'relation'],
      [0x1_0000_0110n, 'insert'],
    ]);
    expect(lsns.slice(-3)).toEqual([
      [0x1_0000_0110n + BigInt(inserts - 1), 'insert'],
      [0x1_0000_0500n, 'keepalive'],
      [0x1_0000_0200n, 'commit'],
    ]);
    r.stream.dispose();
  });

  it('answers a keepalive that requests a reply at once with a 39-byte status update', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW);
    const r = startReplication();
    r.socket.serverSends(copyData(keepalive(0x2_0000_0000n, 0n, false)));
    expect(xlogEvents(await r.stream.next())).toEqual([[0x2_0000_0000n, 'keepalive']]);
    expect(r.socket.written).toEqual([]);

    r.socket.serverSends(copyData(keepalive(0x2_0000_0010n, 0n, true)));
    expect(xlogEvents(await r.stream.next())).toEqual([[0x2_0000_0010n, 'keepalive']]);
    expect(r.statuses()).toEqual([
      {
        written: 0x2_0000_0010n,
        flushed: START_LSN,
        applied: START_LSN,
        time: BigInt(NOW - PG_EPOCH_MS) * 1000n,
        replyRequested: 0,
      },
    ]);
    expect(r.stream.receivedLsn).toBe(0x2_0000_0010n);
    // The status time is in the Postgres epoch, like the times the decoder shifts back.
    expect(r.statuses()[0]!.time + POSTGRES_EPOCH_OFFSET_MICROS).toBe(BigInt(NOW) * 1000n);
    r.stream.dispose();
  });

  it('confirm(lsn) reports it as flushed and applied, and never moves backwards', async () => {
    const r = startReplication();
    r.stream.confirm(0x1_0000_0230n);
    expect(r.stream.confirmedLsn).toBe(0x1_0000_0230n);
    r.stream.confirm(0x1_0000_0100n);
    r.stream.confirm(0x1_0000_0230n);
    r.stream.confirm(START_LSN - 1n);
    expect(r.stream.confirmedLsn).toBe(0x1_0000_0230n);
    expect(r.statuses().map((s) => [s.written, s.flushed, s.applied, s.replyRequested])).toEqual([
      [0x1_0000_0230n, 0x1_0000_0230n, 0x1_0000_0230n, 0],
    ]);

    // What was received stays the written position even when less is confirmed.
    r.socket.serverSends(copyData(keepalive(0x1_0000_9000n, 0n, true)));
    await r.stream.next();
    r.stream.confirm(0x1_0000_0400n);
    expect(r.statuses().map((s) => [s.written, s.flushed, s.applied])).toEqual([
      [0x1_0000_0230n, 0x1_0000_0230n, 0x1_0000_0230n],
      [0x1_0000_9000n, 0x1_0000_0230n, 0x1_0000_0230n],
      [0x1_0000_9000n, 0x1_0000_0400n, 0x1_0000_0400n],
    ]);
    r.stream.sendStatus(true);
    expect(r.statuses()[3]!.replyRequested).toBe(1);
    r.stream.dispose();
  });

  it('sends status updates on a timer, even when the consumer does not call next()', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    vi.setSystemTime(NOW);
    const r = startReplication({ statusIntervalMs: 1_000 });
    vi.advanceTimersByTime(999);
    expect(r.socket.written).toEqual([]);
    vi.advanceTimersByTime(1);
    r.stream.confirm(0x1_0000_0040n);
    vi.advanceTimersByTime(2_000);
    expect(r.statuses().map((s) => [s.flushed, s.time])).toEqual([
      [START_LSN, BigInt(NOW + 1_000 - PG_EPOCH_MS) * 1000n],
      [0x1_0000_0040n, BigInt(NOW + 1_000 - PG_EPOCH_MS) * 1000n],
      [0x1_0000_0040n, BigInt(NOW + 2_000 - PG_EPOCH_MS) * 1000n],
      [0x1_0000_0040n, BigInt(NOW + 3_000 - PG_EPOCH_MS) * 1000n],
    ]);
    r.stream.dispose();
    vi.advanceTimersByTime(10_000);
    expect(r.socket.written).toHaveLength(4);
  });

  it('stop() sends the confirmed position and CopyDone, then drains to the end of the command', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const r = startReplication({ statusIntervalMs: 1_000 });
    r.stream.confirm(0x1_0000_0080n);
    const stopped = r.stream.stop();
    expect(r.socket.written).toHaveLength(3);
    expect(r.socket.written.slice(0, 2).map((frame) => parseStatus(frame).flushed)).toEqual([
      0x1_0000_0080n,
      0x1_0000_0080n,
    ]);
    expect(r.socket.written[2]!.equals(message('c'))).toBe(true);
    r.socket.serverSends(
      copyData(xlogData(0x1_0000_0100n, 0x1_0000_0300n, 0n, pgoutputBegin)),
      message('c'),
      commandComplete('COPY 0'),
      readyForQuery(),
    );
    await stopped;
    expect(r.pgParser.receivedBytes.equals(Buffer.concat([commandComplete('COPY 0'), readyForQuery()]))).toBe(
      true,
    );
    vi.advanceTimersByTime(5_000);
    expect(r.socket.written).toHaveLength(3);
    await r.stream.stop();
  });

  it('names the LSN of an undecodable message and passes errors through mapError', async () => {
    const mapped: unknown[] = [];
    const r = startReplication({
      mapError: (error) => {
        mapped.push(error);
        return error;
      },
    });
    r.socket.serverSends(copyData(xlogData(0x1_0016_b374n, 0x1_0016_b374n, 0n, Buffer.from('Z'))));
    const error = await r.stream.next().catch((e: unknown) => e);
    expect(isPgReplicateError(error, 'PROTOCOL_VIOLATION')).toBe(true);
    expect((error as PgReplicateError).detail).toContain('in the message at LSN 1/16B374');
    expect(mapped).toEqual([error]);
    r.stream.dispose();
  });

  it.each([
    ['XLogData', xlogData(1n, 2n, 3n, pgoutputBegin), 25],
    ['keepalive', keepalive(1n, 2n, true), 18],
  ])('a %s frame cut short is a PROTOCOL_VIOLATION, never read past its end', async (_, frame, length) => {
    for (let cut = 1; cut < length; cut++) {
      const r = startReplication();
      // The next frame in the same socket chunk must not be read as the rest of this one.
      r.socket.serverSends(
        copyData(frame.subarray(0, cut)),
        copyData(keepalive(0xffff_ffff_0000_0000n, 0n, true)),
      );
      const error = await r.stream.next().catch((e: unknown) => e);
      r.stream.dispose();
      expect(error, `cut at ${cut}`).toBeInstanceOf(PgReplicateError);
      expect((error as PgReplicateError).code).toBe('PROTOCOL_VIOLATION');
      expect(r.stream.receivedLsn, `cut at ${cut}`).toBe(START_LSN);
      expect(r.socket.written, `cut at ${cut}`).toEqual([]);
    }
  });

  it('surfaces a server error from START_REPLICATION through mapError', async () => {
    const r = startReplication({
      mapError: (error) => new PgReplicateError('SLOT_IN_USE', 'mapped', { cause: error }),
    });
    r.socket.serverSends(
      errorOrNotice('E', '55006', 'replication slot "s" is active for PID 42'),
      readyForQuery(),
    );
    const error = await r.stream.next().catch((e: unknown) => e);
    expect(isPgReplicateError(error, 'SLOT_IN_USE')).toBe(true);
    expect(((error as Error).cause as Error).message).toContain('is active for PID 42');
    r.stream.dispose();
  });
});
