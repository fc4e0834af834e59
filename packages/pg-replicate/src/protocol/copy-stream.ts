/**
 * Runs a statement that answers with COPY OUT (`COPY … TO STDOUT`) or COPY BOTH
 * (`START_REPLICATION`) on a `pg` client, and hands the CopyData payloads to the caller as
 * pull-based batches.
 *
 * Why by hand: `pg` parses every message into an event (and its copy-data chunks are views over a
 * buffer it reuses), and `pg-copy-streams` concatenates payloads into a byte stream, losing the
 * message boundaries the replication protocol needs. We take the socket over for the duration of
 * the copy — the same public `Submittable` mechanism pg-copy-streams uses — and frame messages
 * ourselves:
 * - zero copy: a payload is a view of the socket chunk it arrived in (socket chunks are never
 *   reused), copied only when a message spans chunks;
 * - bounded buffering: the socket flows until `highWaterBytes` (4 MiB) of payloads wait for the
 *   consumer, then pauses until the consumer takes them — a slow sink closes the TCP window instead
 *   of filling a queue. (Paused-mode `read()` would cap every read at the socket's 16 KiB
 *   high-water mark: an event-loop turn per 16 KiB, measurably slower than libpq.)
 * - on CopyDone or an ErrorResponse the socket goes back to `pg`, which parses the rest
 *   (CommandComplete, ErrorResponse, ReadyForQuery) and calls our `handle*` methods.
 */
import type { Duplex } from 'node:stream';
import type pg from 'pg';

enum Code {
  CopyData = 0x64, // d
  CopyDone = 0x63, // c
  CopyOutResponse = 0x48, // H
  CopyBothResponse = 0x57, // W
  NoticeResponse = 0x4e, // N
  ParameterStatus = 0x53, // S
  NotificationResponse = 0x41, // A
}

/** Code byte plus Int32 length. */
const HEADER_LENGTH = 5;
const COPY_DONE = Buffer.from([Code.CopyDone, 0, 0, 0, 4]);

type DataListener = (chunk: Buffer) => void;

/**
 * CopyData payloads as (buffer, start, end) triples instead of a view each: on the replication
 * hot path that saves one Buffer allocation per message.
 */
export interface FrameBatch {
  /** The buffer of each payload (consecutive payloads usually share one socket chunk). */
  readonly buffers: Buffer[];
  /** `[start0, end0, start1, end1, …]` into the matching buffers. */
  readonly bounds: number[];
}

export interface CopyStreamOptions {
  /** Pause the socket once this many payload bytes wait for the consumer (default 4 MiB). */
  highWaterBytes?: number;
}

export class CopyStream implements pg.Submittable {
  readonly #sql: string;
  readonly #highWaterBytes: number;
  /** Bytes received since the consumer last took the frames. */
  #bufferedBytes = 0;
  #socket: Duplex | null = null;
  #pgDataListener: DataListener | null = null;
  #attached = false;

  /** Bytes of an incomplete message carried over to the next chunk. */
  #carry: Buffer[] = [];
  #carryBytes = 0;
  #carryNeeded = HEADER_LENGTH;

  #frames: FrameBatch = { buffers: [], bounds: [] };
  #copyDone = false;
  #finished = false;
  #error: Error | null = null;
  #commandTag: string | undefined;
  #wake: (() => void) | null = null;
  readonly #onData = (chunk: Buffer) => {
    this.#bufferedBytes += chunk.length;
    this.#ingest(chunk);
    if (this.#attached && this.#bufferedBytes >= this.#highWaterBytes) this.#socket!.pause();
    this.#notify();
  };

  constructor(sql: string, options: CopyStreamOptions = {}) {
    this.#sql = sql;
    this.#highWaterBytes = options.highWaterBytes ?? 4 * 1024 * 1024;
  }

  /** The CommandComplete tag once the statement finished (e.g. `COPY 42`). */
  get commandTag(): string | undefined {
    return this.#commandTag;
  }

  /** Called by `pg` when this statement reaches the front of the client's queue. */
  submit(connection: pg.Connection): void {
    const socket = connection.stream;
    const listeners = socket.listeners('data') as DataListener[];
    if (listeners.length !== 1) {
      throw new Error(`expected pg to have one socket data listener, found ${listeners.length}`);
    }
    this.#socket = socket;
    this.#pgDataListener = listeners[0]!;
    socket.removeListener('data', this.#pgDataListener);
    socket.on('data', this.#onData);
    this.#attached = true;
    connection.query(this.#sql);
  }

  /**
   * The next batch of CopyData payloads (each a view into socket memory), or `null` once the copy
   * is over and the statement completed. Throws the server's error if the statement failed.
   */
  async next(): Promise<Buffer[] | null> {
    const batch = await this.nextFrames();
    if (batch === null) return null;
    const payloads: Buffer[] = [];
    for (let i = 0; i < batch.buffers.length; i++) {
      payloads.push(batch.buffers[i]!.subarray(batch.bounds[2 * i]!, batch.bounds[2 * i + 1]!));
    }
    return payloads;
  }

  /** Like {@link next}, without a view per payload. */
  async nextFrames(): Promise<FrameBatch | null> {
    for (;;) {
      if (this.#frames.buffers.length > 0) {
        const frames = this.#frames;
        this.#frames = { buffers: [], bounds: [] };
        this.#bufferedBytes = 0;
        if (this.#attached && this.#socket!.isPaused()) this.#socket!.resume();
        return frames;
      }
      if (this.#error !== null) throw this.#error;
      if (this.#finished) return null;
      if (this.#attached && this.#socket!.isPaused()) this.#socket!.resume();
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** Writes raw protocol bytes (e.g. a standby status update) to the server. */
  write(message: Buffer): void {
    this.#socket?.write(message);
  }

  /** Ends our side of a COPY BOTH; keep calling {@link next} to drain until it returns `null`. */
  sendCopyDone(): void {
    if (!this.#copyDone && !this.#finished) this.write(COPY_DONE);
  }

  #ingest(chunk: Buffer): void {
    let offset = 0;
    // A message begun in an earlier chunk: only its own bytes are joined, never the whole chunk.
    while (this.#carryBytes > 0) {
      const take = Math.min(this.#carryNeeded - this.#carryBytes, chunk.length - offset);
      this.#carry.push(chunk.subarray(offset, offset + take));
      this.#carryBytes += take;
      offset += take;
      if (this.#carryBytes < this.#carryNeeded) return;
      const joined = Buffer.concat(this.#carry, this.#carryBytes);
      const length = 1 + joined.readUInt32BE(1);
      if (joined.length < length) {
        this.#carry = [joined]; // the header is complete: now the rest of the message
        this.#carryNeeded = length;
        continue;
      }
      this.#carry = [];
      this.#carryBytes = 0;
      if (joined[0] !== Code.CopyData) {
        // Rare (a header or an error cut by a chunk boundary): parse it with what follows.
        this.#parse(Buffer.concat([joined, chunk.subarray(offset)]), 0);
        return;
      }
      this.#frames.buffers.push(joined);
      this.#frames.bounds.push(HEADER_LENGTH, joined.length);
    }
    this.#parse(chunk, offset);
  }

  /** Takes the complete messages of `buffer` from `offset`; carries an incomplete last one. */
  #parse(buffer: Buffer, from: number): void {
    let offset = from;
    while (buffer.length - offset >= HEADER_LENGTH) {
      const code = buffer[offset]!;
      const end = offset + 1 + buffer.readUInt32BE(offset + 1);
      if (end > buffer.length) break;
      switch (code) {
        case Code.CopyData:
          this.#frames.buffers.push(buffer);
          this.#frames.bounds.push(offset + HEADER_LENGTH, end);
          break;
        case Code.CopyOutResponse:
        case Code.CopyBothResponse:
        case Code.NoticeResponse:
        case Code.ParameterStatus:
        case Code.NotificationResponse:
          break;
        case Code.CopyDone:
          this.#copyDone = true;
          this.#detach(buffer.subarray(end));
          return;
        default:
          // ErrorResponse, CommandComplete, …: pg parses those and calls our handlers.
          this.#detach(buffer.subarray(offset));
          return;
      }
      offset = end;
    }
    if (offset < buffer.length) {
      const rest = buffer.subarray(offset);
      this.#carry = [rest];
      this.#carryBytes = rest.length;
      this.#carryNeeded = rest.length >= HEADER_LENGTH ? 1 + rest.readUInt32BE(1) : HEADER_LENGTH;
    }
  }

  /** Gives the socket back to pg, with the bytes we read but that are pg's to parse. */
  #detach(rest: Buffer): void {
    if (!this.#attached) return;
    this.#attached = false;
    const socket = this.#socket!;
    socket.removeListener('data', this.#onData);
    socket.on('data', this.#pgDataListener!);
    if (rest.length > 0) this.#pgDataListener!(rest);
    // Resume on the next tick: pg's listener may itself pause the socket while handling `rest`.
    process.nextTick(() => socket.resume());
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  // --- pg's Submittable callbacks (after the socket went back to pg) -----------------------------

  handleCommandComplete(message: { text?: string }): void {
    this.#commandTag = message.text;
  }

  handleReadyForQuery(): void {
    this.#finished = true;
    this.#notify();
  }

  handleError(error: Error): void {
    // A connection that dies while we own the socket never reaches pg's parser: detach so pg
    // can clean up, and surface the error after the frames already received.
    if (this.#attached) this.#detach(Buffer.alloc(0));
    this.#error ??= error;
    this.#finished = true;
    this.#notify();
  }

  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
}
