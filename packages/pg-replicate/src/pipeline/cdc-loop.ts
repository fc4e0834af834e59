/**
 * The streaming half of a pipeline: reads pgoutput from the slot, assembles whole transactions
 * into batches, hands them to the sink, and confirms to Postgres only what the sink made durable.
 *
 * Guarantees, and how:
 * - Exactly-once with a transactional sink: a transaction whose commit is at or before the sink's
 *   stored position is skipped (Postgres re-sends unconfirmed transactions after a restart), and
 *   a table copied at snapshot LSN S skips transactions that committed before S (they are in the copy).
 * - Bounded memory: a transaction larger than a batch is written in parts inside one sink
 *   transaction; the socket is not read while the sink is behind (one batch in flight — or as many
 *   as the sink's `maxChangeBatchesInFlight` — and one filling).
 * - Commit order: batches are handed over in order, and the sink applies them in that order; a
 *   position is confirmed only once its batch and every one before it are durable.
 * - Idle slots move: when nothing is pending, the server's position (asked for with a status
 *   update, never waited for on the keepalive timer) is recorded in the sink and confirmed.
 */
import { PgReplicateError } from '../errors.js';
import type { ChangeEvent, TransactionInfo } from '../events.js';
import { formatLsn, type Lsn, maxLsn } from '../lsn.js';
import type { PgoutputMessage, RelationMessage } from '../pgoutput/messages.js';
import type { ReplicationEvent, ReplicationStream } from '../protocol/replication-stream.js';
import { schemaChanged, type TableSchema, tableKey } from '../schema.js';
import type { Sink } from '../sink/sink.js';
import type { PostgresSource } from '../source/postgres-source.js';
import type { Logger, PipelineStats, ProgressEvent } from './progress.js';

export interface CdcOptions {
  /** Rows per sink batch; also the size of the parts a large transaction is written in. */
  batchMaxRows: number;
  /** Wire bytes of the rows of a sink batch, likewise: wide rows make smaller batches. */
  batchMaxBytes: number;
  /** A batch is written at the first commit after it is this old. */
  batchMaxDelayMs: number;
  /** Position the sink has durably applied (transactions ending at or before it are skipped). */
  durableLsn: Lsn | null;
  /** `both` mode: tables with the LSN of the snapshot they were copied at; others are not applied. */
  copiedTables: ReadonlyMap<string, Lsn | null> | null;
  /** Stop once everything up to here is durable. */
  endLsn: Lsn | undefined;
  /** How long the stream may be quiet before we ask the server where it is (default 250 ms). */
  idleProbeMs?: number;
  heartbeatIntervalMs: number | undefined;
  signal: AbortSignal | undefined;
  onProgress: (event: ProgressEvent) => void;
  logger: Logger;
  stats: PipelineStats;
}

type Counts = Record<'insert' | 'update' | 'delete' | 'truncate', number>;

/** Commit times (µs since the Unix epoch) of a batch's first and last transaction. */
interface CommitTimes {
  readonly first: bigint;
  readonly last: bigint;
}

const NO_COMMIT_TIMES: CommitTimes = { first: 0n, last: 0n };

function emptyCounts(): Counts {
  return { insert: 0, update: 0, delete: 0, truncate: 0 };
}

function countInto(counts: Counts, events: readonly ChangeEvent[]): void {
  for (const event of events) if (event.op !== 'schema') counts[event.op]++;
}

function addCounts(into: Counts, counts: Counts): void {
  into.insert += counts.insert;
  into.update += counts.update;
  into.delete += counts.delete;
  into.truncate += counts.truncate;
}

const TIMEOUT = Symbol('timeout');

export class CdcLoop {
  readonly #source: PostgresSource;
  readonly #sink: Sink;
  readonly #stream: ReplicationStream;
  readonly #options: CdcOptions;
  readonly #tables = new Map<number, TableSchema>();
  /** Tables whose changes are skipped (not copied yet in `both` mode), warned about once. */
  readonly #skippedTables = new Set<number>();
  readonly #alreadyApplied: Lsn | null;

  #tx: TransactionInfo | null = null;
  #skipTx = false;

  #events: ChangeEvent[] = [];
  #committedCount = 0;
  /** Wire bytes of the row messages in `#events`, and of those up to `#committedCount`. */
  #bytes = 0;
  #committedBytes = 0;
  #commitLsn: Lsn | null = null;
  #firstCommitTime = 0n;
  #lastCommitTime = 0n;
  #batchStarted = 0;
  #batchTransactions = 0;

  /** Batches handed to the sink and not settled yet, oldest first (each settles after the one before). */
  readonly #writing: Promise<void>[] = [];
  readonly #maxInFlight: number;
  /** The first error a batch's write rejected with: nothing more is handed over after it. */
  #writeError: { readonly error: unknown } | null = null;
  /** Changes written in parts of a transaction that is not committed yet. */
  #partCounts: Counts = emptyCounts();
  #durable: Lsn | null;
  #serverPosition: Lsn = 0n;
  #lastActivity = performance.now();
  #lastProbe = 0;
  #lastHeartbeat = performance.now();

  constructor(source: PostgresSource, sink: Sink, stream: ReplicationStream, options: CdcOptions) {
    this.#source = source;
    this.#sink = sink;
    this.#stream = stream;
    this.#options = options;
    this.#durable = options.durableLsn;
    this.#alreadyApplied = options.durableLsn;
    this.#maxInFlight = Math.max(1, Math.floor(sink.maxChangeBatchesInFlight ?? 1));
    for (const table of source.tables) this.#tables.set(table.relationId, table);
  }

  get durableLsn(): Lsn | null {
    return this.#durable;
  }

  #failure: Error | null = null;

  /** Stops the loop with `error` (from a watcher outside it): nothing more is written. */
  fail(error: Error): void {
    this.#failure ??= error;
    this.#wakeUp?.();
  }

  async run(): Promise<void> {
    const { signal } = this.#options;
    let next: Promise<ReplicationEvent[] | null> | null = null;
    const onAbort = () => this.#wakeUp?.();
    signal?.addEventListener('abort', onAbort);
    try {
      while (!signal?.aborted && !this.#reachedEnd()) {
        next ??= this.#stream.next();
        const events = await this.#nextOrTimeout(next, this.#waitMs());
        if (this.#failure !== null) throw this.#failure;
        if (this.#writeError !== null) throw this.#writeError.error;
        if (events === TIMEOUT) {
          await this.#onQuiet();
          continue;
        }
        next = null;
        if (events === null) {
          throw new PgReplicateError('CONNECTION_LOST', 'the server ended the replication stream', {
            hint: 'check the server log; the pipeline resumes from the last durable position when restarted',
          });
        }
        // Keepalives are not activity: WAL written elsewhere brings one each time the server has
        // read it, and counted as activity they kept the idle advance (and the checks) from running.
        if (events.some((event) => event.type !== 'keepalive')) this.#lastActivity = performance.now();
        for (const event of events) {
          if (event.type === 'keepalive') this.#serverPosition = maxLsn(this.#serverPosition, event.walEnd);
          else {
            // Most messages (rows) need no waiting: awaiting them all cost a promise per row.
            const pending = this.#onMessage(event.message, event.lsn, event.size);
            if (pending !== undefined) await pending;
          }
        }
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // A read still in flight must not surface later as an unhandled rejection.
      next?.catch(() => {});
    }
    // Stop: write what is committed; an open transaction is abandoned and will be sent again.
    await this.#flushCommitted();
    await this.#settle();
  }

  #wakeUp: (() => void) | null = null;

  /**
   * The next events, or TIMEOUT after `ms` (or on abort). Deliberately not a Promise.race with a
   * long-lived promise: every race would leave a reaction on it that keeps the resolved events
   * (and their buffers) alive for as long as that promise lives.
   */
  #nextOrTimeout(
    next: Promise<ReplicationEvent[] | null>,
    ms: number,
  ): Promise<ReplicationEvent[] | null | typeof TIMEOUT> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#wakeUp = null;
        resolve(TIMEOUT);
      }, ms);
      this.#wakeUp = () => {
        clearTimeout(timer);
        this.#wakeUp = null;
        resolve(TIMEOUT);
      };
      next.then(
        (events) => {
          clearTimeout(timer);
          this.#wakeUp = null;
          resolve(events);
        },
        (error: unknown) => {
          clearTimeout(timer);
          this.#wakeUp = null;
          reject(error);
        },
      );
    });
  }

  #waitMs(): number {
    const now = performance.now();
    const probe = this.#options.idleProbeMs ?? 250;
    let wait = Math.max(0, this.#lastActivity + probe - now);
    if (this.#commitLsn !== null)
      wait = Math.min(wait, Math.max(0, this.#batchStarted + this.#options.batchMaxDelayMs - now));
    if (this.#options.heartbeatIntervalMs !== undefined) {
      wait = Math.min(wait, Math.max(0, this.#lastHeartbeat + this.#options.heartbeatIntervalMs - now));
    }
    return wait;
  }

  /** Nothing arrived for a while: write a due batch, ask the server where it is, advance if idle. */
  async #onQuiet(): Promise<void> {
    const now = performance.now();
    if (this.#commitLsn !== null && now - this.#batchStarted >= this.#options.batchMaxDelayMs) {
      await this.#flushCommitted();
    }
    if (
      this.#options.heartbeatIntervalMs !== undefined &&
      now - this.#lastHeartbeat >= this.#options.heartbeatIntervalMs
    ) {
      this.#lastHeartbeat = now;
      await this.#source
        .heartbeat()
        .catch((error: Error) => this.#options.logger.warn(`heartbeat failed: ${error.message}`));
    }
    const idle = this.#tx === null && this.#events.length === 0;
    if (!idle) return;
    await this.#settle();
    if (this.#serverPosition > (this.#durable ?? 0n)) {
      // A commit whose changes all went out as parts may still wait for its batch: written after
      // the advance, its older position would replace the newer one the slot is confirmed at.
      await this.#flushCommitted();
      await this.#advance(this.#serverPosition);
    } else if (now - this.#lastProbe >= (this.#options.idleProbeMs ?? 250)) {
      // Ask for a keepalive now instead of waiting for the server's own (wal_sender_timeout / 2).
      this.#lastProbe = now;
      this.#stream.sendStatus(true);
    }
    this.#lastActivity = now;
  }

  /** Takes one message; returns a promise only when it has to wait (a batch written, a relation applied). */
  #onMessage(message: PgoutputMessage, lsn: Lsn, size: number): Promise<void> | undefined {
    switch (message.tag) {
      case 'begin':
        this.#tx = { xid: message.xid, commitLsn: message.finalLsn, commitTime: message.commitTime };
        this.#skipTx = this.#alreadyApplied !== null && message.finalLsn < this.#alreadyApplied;
        return;
      case 'commit':
        if (!this.#skipTx) {
          this.#commitLsn = message.endLsn;
          this.#committedCount = this.#events.length;
          this.#committedBytes = this.#bytes;
          this.#lastCommitTime = message.commitTime;
          this.#batchTransactions++;
          if (this.#batchTransactions === 1) {
            this.#batchStarted = performance.now();
            this.#firstCommitTime = message.commitTime;
          }
        }
        this.#tx = null;
        this.#serverPosition = maxLsn(this.#serverPosition, message.endLsn);
        if (
          this.#events.length >= this.#options.batchMaxRows ||
          this.#bytes >= this.#options.batchMaxBytes ||
          performance.now() - this.#batchStarted >= this.#options.batchMaxDelayMs ||
          this.#reachesEnd(message.endLsn)
        ) {
          return this.#flushCommitted();
        }
        return;
      case 'relation':
        return this.#onRelation(message, lsn);
      case 'insert':
      case 'update':
      case 'delete': {
        const table = this.#applicable(message.relation.relationId);
        if (table === undefined) return;
        const tx = this.#tx!;
        this.#bytes += size;
        if (message.tag === 'insert') this.#push({ op: 'insert', table, new: message.new, lsn, tx });
        else if (message.tag === 'update') {
          const old = message.key ?? message.old;
          this.#push({
            op: 'update',
            table,
            new: message.new,
            old,
            oldIsKey: message.key !== undefined,
            lsn,
            tx,
          });
        } else {
          const old = (message.key ?? message.old)!;
          this.#push({ op: 'delete', table, old, oldIsKey: message.key !== undefined, lsn, tx });
        }
        if (
          this.#events.length - this.#committedCount >= this.#options.batchMaxRows ||
          this.#bytes - this.#committedBytes >= this.#options.batchMaxBytes
        ) {
          return this.#flushPart();
        }
        return;
      }
      case 'truncate': {
        const tables = message.relations
          .map((relation) => this.#applicable(relation.relationId))
          .filter((table): table is TableSchema => table !== undefined);
        if (tables.length > 0) {
          this.#push({
            op: 'truncate',
            tables,
            cascade: message.cascade,
            restartIdentity: message.restartIdentity,
            lsn,
            tx: this.#tx!,
          });
        }
        return;
      }
      case 'message':
        // Our heartbeats (and other non-transactional messages) mark a position with nothing to apply.
        if (!message.transactional && this.#tx === null)
          this.#serverPosition = maxLsn(this.#serverPosition, message.lsn);
        return;
      case 'origin':
      case 'type':
        return;
      default:
        throw new PgReplicateError(
          'PROTOCOL_VIOLATION',
          `unexpected ${message.tag} message at ${formatLsn(lsn)}`,
          {
            hint: 'streaming and two-phase options were not requested; please report this with the server version',
          },
        );
    }
  }

  /** The table's schema if its changes in the current transaction are to be applied. */
  #applicable(relationId: number): TableSchema | undefined {
    if (this.#skipTx || this.#skippedTables.has(relationId)) return undefined;
    const table = this.#tables.get(relationId);
    if (table === undefined || this.#inCopy(table, this.#tx!.commitLsn)) return undefined;
    return table;
  }

  /** Whether the table's copy already contains what a transaction committed at `commitLsn` did. */
  #inCopy(table: TableSchema, commitLsn: Lsn): boolean {
    const snapshotLsn = this.#options.copiedTables?.get(tableKey(table));
    return snapshotLsn !== undefined && snapshotLsn !== null && commitLsn < snapshotLsn;
  }

  async #onRelation(relation: RelationMessage, lsn: Lsn): Promise<void> {
    const previous = this.#tables.get(relation.relationId);
    const schema = await this.#source.schemaFromRelation(relation, previous);
    if (previous !== undefined && !schemaChanged(previous, schema)) return;
    this.#tables.set(relation.relationId, schema);
    const copied = this.#options.copiedTables;
    if (previous === undefined && copied !== null && !copied.has(tableKey(schema))) {
      this.#skippedTables.add(relation.relationId);
      this.#options.logger.warn(
        `table ${tableKey(schema)} joined the publication while streaming; its changes are skipped until a restart copies it`,
      );
      return;
    }
    if (previous === undefined) {
      // A table that joined the publication (cdc mode): create it in the sink, in stream order.
      await this.#flushCommitted();
      await this.#settle();
      await this.#sink.prepare([schema]);
      return;
    }
    if (this.#skipTx) return;
    // A schema the table's copy is already past (its copy was taken later, in a later shape).
    if (this.#tx !== null && this.#inCopy(schema, this.#tx.commitLsn)) return;
    this.#options.logger.info(`schema of ${tableKey(schema)} changed at ${formatLsn(lsn)}`);
    this.#push({ op: 'schema', table: schema, previous, lsn, tx: this.#tx ?? emptyTx(lsn) });
  }

  #push(event: ChangeEvent): void {
    this.#events.push(event);
  }

  /** Writes every fully committed transaction in the batch, with its commit position. */
  async #flushCommitted(): Promise<void> {
    if (this.#commitLsn === null) return;
    const events =
      this.#committedCount === this.#events.length
        ? this.#events
        : this.#events.slice(0, this.#committedCount);
    this.#events =
      this.#committedCount === this.#events.length ? [] : this.#events.slice(this.#committedCount);
    const lsn = this.#commitLsn;
    const commitTimes = { first: this.#firstCommitTime, last: this.#lastCommitTime };
    const transactions = this.#batchTransactions;
    this.#commitLsn = null;
    this.#committedCount = 0;
    this.#bytes -= this.#committedBytes;
    this.#committedBytes = 0;
    this.#batchTransactions = 0;
    await this.#write(events, lsn, commitTimes, transactions);
  }

  /** A transaction outgrew the batch: commit what came before it, then write this part of it. */
  async #flushPart(): Promise<void> {
    await this.#flushCommitted();
    const events = this.#events;
    this.#events = [];
    this.#bytes = 0;
    await this.#write(events, null, NO_COMMIT_TIMES, 0);
  }

  /** Records a position with nothing to apply (idle WAL), then confirms it. */
  async #advance(lsn: Lsn): Promise<void> {
    await this.#write([], lsn, NO_COMMIT_TIMES, 0);
    await this.#settle();
    this.#options.onProgress({ type: 'advanced', lsn });
  }

  async #write(
    events: ChangeEvent[],
    lsn: Lsn | null,
    commitTimes: CommitTimes,
    transactions: number,
  ): Promise<void> {
    await this.#settle(this.#maxInFlight - 1);
    // A batch still in flight already failed: the next one must not be applied without it. (The
    // sink fails it too, but a wrapper that rejects a call itself may not tell the sink.)
    if (this.#writeError !== null) throw this.#writeError.error;
    // Counted now, so that the events are not kept alive by the bookkeeping below.
    const counts = emptyCounts();
    countInto(counts, events);
    const empty = events.length === 0;
    const previous = this.#writing.at(-1);
    const applied = this.#sink.writeChanges({ events, commit: lsn === null ? undefined : { lsn } });
    applied.catch((error: unknown) => {
      this.#writeError ??= { error };
      // The loop may be reading, with no batch to write that would notice: stop it now.
      this.#wakeUp?.();
    });
    const write = (previous === undefined ? applied : Promise.all([previous, applied])).then(() => {
      if (lsn === null) {
        // Part of a transaction: counted once its commit makes it durable.
        addCounts(this.#partCounts, counts);
        return;
      }
      this.#durable = maxLsn(this.#durable ?? 0n, lsn);
      this.#stream.confirm(lsn);
      this.#record(counts, empty, lsn, commitTimes, transactions);
    });
    write.catch(() => {});
    this.#writing.push(write);
  }

  /** Waits until at most `keep` batches are in flight; rethrows the first error. */
  async #settle(keep = 0): Promise<void> {
    while (this.#writing.length > keep) {
      const oldest = this.#writing[0]!;
      await oldest;
      if (this.#writing[0] === oldest) this.#writing.shift();
    }
  }

  #record(batch: Counts, empty: boolean, lsn: Lsn, commitTimes: CommitTimes, transactions: number): void {
    const stats = this.#options.stats;
    stats.durableLsn = lsn;
    if (transactions === 0 && empty) return;
    const counts = this.#partCounts;
    this.#partCounts = emptyCounts();
    addCounts(counts, batch);
    stats.inserts += counts.insert;
    stats.updates += counts.update;
    stats.deletes += counts.delete;
    stats.truncates += counts.truncate;
    stats.transactions += transactions;
    stats.batches++;
    const now = Date.now();
    const lag = (time: bigint) => (time === 0n ? 0 : Math.max(0, now - Number(time / 1000n)));
    const lagMs = lag(commitTimes.last);
    stats.lastLagMs = lagMs;
    this.#options.onProgress({
      type: 'changes',
      counts,
      transactions,
      lsn,
      lagMs,
      maxLagMs: lag(commitTimes.first),
    });
  }

  #reachesEnd(lsn: Lsn): boolean {
    return this.#options.endLsn !== undefined && lsn >= this.#options.endLsn;
  }

  #reachedEnd(): boolean {
    return this.#durable !== null && this.#reachesEnd(this.#durable);
  }
}

function emptyTx(lsn: Lsn): TransactionInfo {
  return { xid: 0, commitLsn: lsn, commitTime: 0n };
}
