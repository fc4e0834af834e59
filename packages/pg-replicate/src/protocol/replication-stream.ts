/**
 * The CopyBoth conversation after START_REPLICATION: XLogData (`w`) and primary keepalive (`k`)
 * frames in, standby status updates (`r`) out.
 * https://www.postgresql.org/docs/current/protocol-replication.html#PROTOCOL-REPLICATION-START-REPLICATION
 *
 * The stream never decides on its own what is durable: the caller reports it with
 * {@link ReplicationStream.confirm}, and only that position is sent as flushed (it becomes the
 * slot's `confirmed_flush_lsn`). Status updates go out when the server asks, whenever the confirmed
 * position moves, and on a timer well inside `wal_sender_timeout` — the timer runs even while the
 * consumer is busy, so a slow sink batch never gets the connection killed.
 */
import { PgReplicateError } from '../errors.js';
import { type Lsn, maxLsn } from '../lsn.js';
import type { PgoutputDecoder } from '../pgoutput/decoder.js';
import type { PgoutputMessage } from '../pgoutput/messages.js';
import type { CopyStream, FrameBatch } from './copy-stream.js';

enum Frame {
  XLogData = 0x77, // w
  Keepalive = 0x6b, // k
}

/** Microseconds between 1970-01-01 and 2000-01-01. */
const PG_EPOCH_MS = 946_684_800_000;
/** XLogData header: 'w', WAL start, WAL end, send time. */
const XLOG_HEADER = 25;
/** Primary keepalive: 'k', WAL end, send time, reply-requested flag. */
const KEEPALIVE_LENGTH = 18;
/** Events decoded per {@link ReplicationStream.next}: few enough to hold, many per promise. */
export const MAX_EVENTS_PER_READ = 2048;

export interface XLogDataEvent {
  readonly type: 'xlog';
  /** WAL position of this message. */
  readonly lsn: Lsn;
  readonly message: PgoutputMessage;
  /** Bytes of the frame on the wire (what the message keeps alive), for batching by bytes. */
  readonly size: number;
}

export interface KeepaliveEvent {
  readonly type: 'keepalive';
  /** The server's current WAL end: everything before it has been sent. */
  readonly walEnd: Lsn;
}

export type ReplicationEvent = XLogDataEvent | KeepaliveEvent;

export interface ReplicationStreamOptions {
  /** Interval of unsolicited status updates (default 10 s; wal_sender_timeout defaults to 60 s). */
  statusIntervalMs?: number;
  /** Turns server errors into domain errors (e.g. slot in use) before they are thrown. */
  mapError?: (error: unknown) => unknown;
}

export class ReplicationStream {
  readonly #copy: CopyStream;
  readonly #decoder: PgoutputDecoder;
  readonly #timer: NodeJS.Timeout;
  readonly #mapError: (error: unknown) => unknown;
  #received: Lsn;
  #confirmed: Lsn;
  #lastSentConfirmed: Lsn = -1n;
  #stopping = false;
  /** Frames taken from the socket and not decoded yet (from `#pendingIndex` on). */
  #pending: FrameBatch | null = null;
  #pendingIndex = 0;

  constructor(
    copy: CopyStream,
    decoder: PgoutputDecoder,
    startLsn: Lsn,
    options: ReplicationStreamOptions = {},
  ) {
    this.#copy = copy;
    this.#decoder = decoder;
    this.#received = startLsn;
    this.#confirmed = startLsn;
    this.#timer = setInterval(() => this.#sendStatus(false), options.statusIntervalMs ?? 10_000);
    this.#timer.unref();
    this.#mapError = options.mapError ?? ((error) => error);
  }

  get decoder(): PgoutputDecoder {
    return this.#decoder;
  }

  /** Highest WAL position received so far. */
  get receivedLsn(): Lsn {
    return this.#received;
  }

  /** Highest position reported durable. */
  get confirmedLsn(): Lsn {
    return this.#confirmed;
  }

  /**
   * The next events — at most {@link MAX_EVENTS_PER_READ}, in order — or `null` when the server
   * ended the stream. Decoding errors and server errors are thrown.
   */
  async next(): Promise<ReplicationEvent[] | null> {
    try {
      return await this.#next();
    } catch (error) {
      throw this.#mapError(error);
    }
  }

  async #next(): Promise<ReplicationEvent[] | null> {
    for (;;) {
      if (this.#stopping) this.#pending = null;
      if (this.#pending === null) {
        const frames = await this.#copy.nextFrames();
        if (frames === null) return null;
        if (this.#stopping) continue;
        this.#take(frames);
      }
      const events = this.#decodePending();
      if (events.length > 0) return events;
    }
  }

  /**
   * Takes the frames one socket read delivered. They are decoded a slice at a time, as the
   * consumer asks: a paused socket hands over up to 4 MiB at once, and decoding all of it up front
   * held ~80,000 decoded messages (~25 MB of heap) while the sink wrote the batch before them.
   * What the server needs at once — the position received, replies it asked for — is read here.
   */
  #take(frames: FrameBatch): void {
    const { buffers, bounds } = frames;
    let replyRequested = false;
    for (let i = 0; i < buffers.length; i++) {
      const frame = buffers[i]!;
      const start = bounds[2 * i]!;
      const end = bounds[2 * i + 1]!;
      const kind = start < end ? frame[start] : undefined;
      if (kind === Frame.XLogData) {
        if (end - start < XLOG_HEADER) throw shortFrame('XLogData', end - start, XLOG_HEADER);
        this.#received = maxLsn(this.#received, frame.readBigUInt64BE(start + 9));
      } else if (kind === Frame.Keepalive) {
        if (end - start < KEEPALIVE_LENGTH) throw shortFrame('keepalive', end - start, KEEPALIVE_LENGTH);
        this.#received = maxLsn(this.#received, frame.readBigUInt64BE(start + 1));
        if (frame[start + 17] === 1) replyRequested = true;
      }
    }
    if (replyRequested) this.#sendStatus(false);
    this.#pending = frames;
    this.#pendingIndex = 0;
  }

  /** Decodes the next frames taken, up to {@link MAX_EVENTS_PER_READ} events. */
  #decodePending(): ReplicationEvent[] {
    const { buffers, bounds } = this.#pending!;
    const events: ReplicationEvent[] = [];
    let i = this.#pendingIndex;
    for (; i < buffers.length && events.length < MAX_EVENTS_PER_READ; i++) {
      const frame = buffers[i]!;
      // Frames are read in place from the socket chunk: never look past `end`.
      const start = bounds[2 * i]!;
      const end = bounds[2 * i + 1]!;
      const kind = start < end ? frame[start] : undefined;
      if (kind === Frame.XLogData) {
        const lsn = frame.readBigUInt64BE(start + 1);
        const message = this.#decoder.decodeAt(frame, start + XLOG_HEADER, end, lsn);
        events.push({ type: 'xlog', lsn, message, size: end - start });
      } else if (kind === Frame.Keepalive) {
        events.push({ type: 'keepalive', walEnd: frame.readBigUInt64BE(start + 1) });
      }
    }
    this.#pendingIndex = i;
    if (i === buffers.length) this.#pending = null;
    return events;
  }

  /**
   * Reports everything before `lsn` as durable in the sink; Postgres may then recycle that WAL.
   * Never moves backwards.
   */
  confirm(lsn: Lsn): void {
    if (lsn <= this.#confirmed) return;
    this.#confirmed = lsn;
    this.#sendStatus(false);
  }

  /** Sends a status update now (optionally asking the server to answer with a keepalive). */
  sendStatus(requestReply = false): void {
    this.#sendStatus(requestReply, true);
  }

  #sendStatus(requestReply: boolean, force = true): void {
    if (!force && this.#confirmed === this.#lastSentConfirmed) return;
    const frame = Buffer.allocUnsafe(39);
    frame[0] = 0x64; // CopyData
    frame.writeUInt32BE(38, 1);
    frame[5] = 0x72; // r
    frame.writeBigUInt64BE(maxLsn(this.#received, this.#confirmed), 6); // written
    frame.writeBigUInt64BE(this.#confirmed, 14); // flushed
    frame.writeBigUInt64BE(this.#confirmed, 22); // applied
    frame.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 30);
    frame[38] = requestReply ? 1 : 0;
    this.#lastSentConfirmed = this.#confirmed;
    this.#copy.write(frame);
  }

  /**
   * Ends streaming: sends the final confirmed position and CopyDone, then drains what the server
   * still sends until it completes the command. The connection can be used or closed afterwards.
   */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#stopping) return;
    this.#stopping = true;
    this.#sendStatus(false);
    this.#copy.sendCopyDone();
    try {
      while ((await this.#copy.nextFrames()) !== null) {
        // discard: anything after our CopyDone is past what we will apply
      }
    } catch (error) {
      throw this.#mapError(error);
    }
  }

  /** Stops the status timer without talking to the server (the connection is gone). */
  dispose(): void {
    clearInterval(this.#timer);
    this.#stopping = true;
  }
}

function shortFrame(name: string, length: number, needed: number): PgReplicateError {
  return new PgReplicateError(
    'PROTOCOL_VIOLATION',
    `malformed ${name} frame: ${length} byte(s), expected ${needed} or more`,
    {
      hint: 'the server sent data this version of pg-replicate cannot decode; please report it with the server version',
    },
  );
}
