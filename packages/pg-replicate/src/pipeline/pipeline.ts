/**
 * Drives a source into a sink: `copy` (backfill, then exit), `cdc` (stream changes) or `both`
 * (backfill consistently with the slot, then stream), resuming from the state the sink stored.
 *
 * Resumption, in short:
 * - Tables the sink reports copied are not copied again; any other table is (its partial rows are
 *   cleared by `beginCopy`). When the slot already exists, missing tables are copied in the
 *   snapshot of a temporary slot, and changes committed before that snapshot are skipped for them.
 * - A copy the sink recorded chunk by chunk resumes with the chunks it lacks (see `backfill.ts`),
 *   when streaming will replay every change since the copy began: `both` mode, with the slot and
 *   the sink not past the copy's first snapshot.
 * - A new slot starts a new lineage: in `both` mode every table is copied again.
 * - Streaming resumes at the sink's position; Postgres re-sends unconfirmed transactions and the
 *   ones at or before the sink's position are skipped.
 * - The sink's state is checked against the server first: a sink behind the slot's confirmed
 *   position (changes would be missing) or ahead of the server's WAL refuses to start.
 */
import { PgReplicateError } from '../errors.js';
import { formatLsn, type Lsn, maxLsn } from '../lsn.js';
import { tableKey } from '../schema.js';
import type { PartialCopy, Sink, SinkState } from '../sink/sink.js';
import type { PublishedTable } from '../source/catalog.js';
import type { PostgresSource } from '../source/postgres-source.js';
import type { ReplicationMode } from '../source/preflight.js';
import { backfill, throwIfAborted } from './backfill.js';
import { CdcLoop } from './cdc-loop.js';
import {
  emptyStats,
  type Logger,
  type PipelineStats,
  type ProgressEvent,
  SILENT_LOGGER,
} from './progress.js';
import { SlotMonitor } from './slot-monitor.js';

/**
 * Rows of a batch keep the socket chunks they came in alive until the sink is done with them, and
 * a sink may hold two batches besides the one filling: by rows alone, batches of 2 KB rows held
 * ~60 MB. 8 MiB leaves narrow rows (~200 bytes) at 10,000 per batch.
 */
export const DEFAULT_BATCH_MAX_BYTES = 8 * 1024 * 1024;

export interface PipelineOptions {
  source: PostgresSource;
  sink: Sink;
  mode: ReplicationMode;
  /** Max changes per sink batch (default 10 000). */
  batchMaxRows?: number;
  /**
   * Max bytes of changes per sink batch, as pgoutput sent them (default 8 MiB): rows of 2 KB make
   * batches of ~4,000 changes, so memory follows bytes, not row counts.
   */
  batchMaxBytes?: number;
  /** Max time a committed change waits before its batch is written (default 1 000 ms). */
  batchMaxDelayMs?: number;
  /** Rows per backfill batch (default 10 000). */
  copyBatchRows?: number;
  /**
   * Connections copying at once (default 4): a big table in ranges of its pages, and the tables
   * after it on the connections its ranges do not need — all in one snapshot.
   */
  copyWorkers?: number;
  /** Smallest page range worth a connection of its own (default 1024 pages, 8 MiB). */
  copyChunkPages?: number;
  /** Stop streaming once everything up to this LSN is durable in the sink. */
  endLsn?: Lsn;
  /** Emit a logical message this often so an idle database's slot keeps advancing. */
  heartbeatIntervalMs?: number;
  /** Warn when the slot retains more WAL than this (default 1 GiB); checked every 30 s. */
  maxRetainedWalBytes?: number;
  /** How often the slot is checked while streaming (default 30 s). */
  slotCheckIntervalMs?: number;
  /** Aborting stops the pipeline gracefully: committed work is flushed and confirmed. */
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
  logger?: Logger;
}

export interface PipelineResult {
  stats: PipelineStats;
  /** True when stopped by the signal rather than by finishing (copy done / end LSN reached). */
  stopped: boolean;
}

export class Pipeline {
  readonly #options: PipelineOptions;
  readonly #logger: Logger;
  readonly stats: PipelineStats = emptyStats();

  constructor(options: PipelineOptions) {
    this.#options = options;
    this.#logger = options.logger ?? SILENT_LOGGER;
  }

  async run(): Promise<PipelineResult> {
    const { source, sink, mode, signal } = this.#options;
    const onProgress = this.#options.onProgress ?? (() => {});
    try {
      // A backfill needs connections for its snapshot (copy mode), table lock and COPY: open them
      // while the preflight runs rather than one after another later.
      if (mode !== 'cdc') source.warmUp(mode === 'copy' ? 3 : 2);
      const preflight = await source.open(mode);
      this.#logger.info(
        `connected to ${source.description} (Postgres ${Math.floor(preflight.server.versionNum / 10000)}), ${preflight.tables.length} table(s) in ${source.publications.join(', ')}`,
      );
      const state = await sink.open({
        types: source.types,
        pipelineId: source.slot ?? source.publications.join(','),
        mode,
      });
      await this.#checkState(state);
      await sink.prepare(source.tables);

      const copied = new Map(state.copiedTables);
      let startLsn = state.lastLsn ?? 0n;
      if (mode !== 'cdc') {
        const slotIsNew = mode === 'both' && source.slotInfo === null;
        if (slotIsNew && copied.size > 0) {
          this.#logger.warn(
            `slot ${source.slot} is new: copying every table again so the sink matches its start`,
          );
          copied.clear();
        }
        const pending = source.tables.filter((table) => !copied.has(tableKey(table)));
        if (pending.length > 0 || slotIsNew) {
          const resumable = slotIsNew ? new Map() : this.#resumableCopies(state);
          const snapshotLsn = await this.#backfill(pending, copied, resumable);
          if (slotIsNew && snapshotLsn !== null) startLsn = snapshotLsn;
        } else {
          this.#logger.info('every table is already copied');
        }
        await source.closeIdleConnections();
      }
      if (mode === 'copy') return { stats: this.stats, stopped: signal?.aborted ?? false };

      throwIfAborted(signal);
      const stream = await source.startStreaming(startLsn);
      onProgress({ type: 'streaming', startLsn });
      this.#logger.info(`streaming from slot ${source.slot} at ${formatLsn(startLsn)}`);
      const started = performance.now();
      const loop = new CdcLoop(source, sink, stream, {
        batchMaxRows: this.#options.batchMaxRows ?? 10_000,
        batchMaxBytes: this.#options.batchMaxBytes ?? DEFAULT_BATCH_MAX_BYTES,
        batchMaxDelayMs: this.#options.batchMaxDelayMs ?? 1_000,
        durableLsn: state.lastLsn,
        copiedTables: mode === 'both' ? copied : null,
        endLsn: this.#options.endLsn,
        heartbeatIntervalMs: this.#options.heartbeatIntervalMs,
        signal,
        onProgress,
        logger: this.#logger,
        stats: this.stats,
      });
      const monitor = new SlotMonitor(source, {
        maxRetainedWalBytes: this.#options.maxRetainedWalBytes ?? 2 ** 30,
        intervalMs: this.#options.slotCheckIntervalMs ?? 30_000,
        logger: this.#logger,
        onProgress,
        onFatal: (error) => loop.fail(error),
      });
      monitor.start();
      try {
        await loop.run();
        await stream.stop();
      } finally {
        await monitor.stop();
        stream.dispose();
        this.stats.streamMs += performance.now() - started;
      }
      return { stats: this.stats, stopped: signal?.aborted ?? false };
    } catch (error) {
      if (error instanceof PgReplicateError && error.code === 'ABORTED') {
        return { stats: this.stats, stopped: true };
      }
      throw error;
    } finally {
      await sink
        .close()
        .catch((error: Error) => this.#logger.warn(`closing the sink failed: ${error.message}`));
      await source.close();
    }
  }

  /**
   * The sink's partial copies that can resume: streaming must replay every change after the LSN
   * each copy began at, so neither the sink nor the slot may be past it (and only `both` streams).
   */
  #resumableCopies(state: SinkState): Map<string, PartialCopy> {
    const { source, sink, mode } = this.#options;
    const resumable = new Map<string, PartialCopy>();
    if (mode !== 'both' || sink.chunkCopied === undefined || state.partialCopies === undefined) {
      return resumable;
    }
    const streamFrom = maxLsn(state.lastLsn ?? 0n, source.slotInfo?.confirmedFlushLsn ?? 0n);
    for (const [key, partial] of state.partialCopies) {
      if (streamFrom <= partial.snapshotLsn) resumable.set(key, partial);
      else this.#logger.info(`the interrupted copy of ${key} is older than the stream: copying it again`);
    }
    return resumable;
  }

  /** Copies `tables` in one snapshot; returns the snapshot's LSN. Records them in `copied`. */
  async #backfill(
    tables: readonly PublishedTable[],
    copied: Map<string, Lsn | null>,
    resumable: ReadonlyMap<string, PartialCopy>,
  ): Promise<Lsn | null> {
    const { source, sink, mode, signal } = this.#options;
    const started = performance.now();
    const snapshot = await source.openSnapshot(mode);
    let unlock: (() => Promise<void>) | null = null;
    try {
      if (tables.length > 0) unlock = await source.lockForCopy(tables, snapshot);
      if (tables.length > 0) {
        this.#logger.info(
          `copying ${tables.length} table(s)${snapshot.lsn === null ? '' : ` at snapshot LSN ${formatLsn(snapshot.lsn)}`}`,
        );
      }
      const consistentAt = await backfill(source, sink, tables, snapshot, {
        batchRows: this.#options.copyBatchRows ?? 10_000,
        workers: this.#options.copyWorkers ?? 4,
        chunkPages: this.#options.copyChunkPages ?? 1024,
        resumable,
        signal,
        onProgress: this.#options.onProgress ?? (() => {}),
        logger: this.#logger,
        stats: this.stats,
      });
      for (const [key, lsn] of consistentAt) copied.set(key, lsn);
      return snapshot.lsn;
    } finally {
      await unlock?.();
      await snapshot.release();
      this.stats.copyMs += performance.now() - started;
    }
  }

  /** Refuses to start when the sink's stored position cannot be right for this server and slot. */
  async #checkState(state: SinkState): Promise<void> {
    const { source, mode } = this.#options;
    if (state.lastLsn === null || mode === 'copy') return;
    const serverLsn = await source.currentWalLsn();
    if (state.lastLsn > serverLsn) {
      throw new PgReplicateError(
        'SINK_AHEAD_OF_SERVER',
        `the sink says it applied changes up to ${formatLsn(state.lastLsn)}, but the server's WAL ends at ${formatLsn(serverLsn)}`,
        {
          hint: 'the sink belongs to another server (or its state was edited): point it at the right database, or start over with a new sink',
        },
      );
    }
    const slot = source.slotInfo;
    if (slot === null && mode === 'cdc') {
      throw new PgReplicateError(
        'SINK_BEHIND_SLOT',
        `slot ${source.slot} does not exist, but the sink holds changes up to ${formatLsn(state.lastLsn)} from an earlier slot`,
        { hint: 'changes since then are gone with the old slot: run "both" to copy the tables again' },
      );
    }
    if (slot?.confirmedFlushLsn != null && slot.confirmedFlushLsn > state.lastLsn) {
      throw new PgReplicateError(
        'SINK_BEHIND_SLOT',
        `slot ${source.slot} already confirmed ${formatLsn(slot.confirmedFlushLsn)}, but the sink only has changes up to ${formatLsn(state.lastLsn)}`,
        {
          hint: 'the changes in between are not in the sink (restored from an older backup, or shared with another pipeline?): use a new slot and sink, or drop the slot and run "both" to copy again',
        },
      );
    }
  }
}
