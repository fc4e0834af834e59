/**
 * Watches the replication slot while streaming: how much WAL it keeps the server from recycling,
 * whether it is about to be invalidated, and whether the publications still exist (Postgres 18
 * streams past a dropped publication without a word, so nobody else would notice). A slot is a promise to keep WAL until it is
 * confirmed; when a pipeline falls behind (or a long transaction pins `restart_lsn`), that WAL
 * grows until the disk fills or `max_slot_wal_keep_size` invalidates the slot. Operators need to
 * hear about it early, with the size and the likely cause.
 */
import { PgReplicateError } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { SlotInfo } from '../source/catalog.js';
import type { PostgresSource } from '../source/postgres-source.js';
import type { Logger, ProgressEvent } from './progress.js';

export interface SlotMonitorOptions {
  /** Warn when the slot retains more WAL than this (default 1 GiB). */
  maxRetainedWalBytes: number;
  /** How often to look (default 30 s). */
  intervalMs: number;
  logger: Logger;
  onProgress: (event: ProgressEvent) => void;
  /** Called with an error that must stop the pipeline (a publication was dropped). */
  onFatal: (error: PgReplicateError) => void;
}

export class SlotMonitor {
  readonly #source: PostgresSource;
  readonly #options: SlotMonitorOptions;
  #timer: NodeJS.Timeout | null = null;
  #checking: Promise<unknown> | null = null;
  #warnedSize = false;
  #warnedStatus: string | null = null;

  constructor(source: PostgresSource, options: SlotMonitorOptions) {
    this.#source = source;
    this.#options = options;
  }

  start(): void {
    this.#timer = setInterval(() => {
      // One look at a time; a slow catalog query must not pile up checks.
      this.#checking ??= this.check().finally(() => {
        this.#checking = null;
      });
    }, this.#options.intervalMs);
    this.#timer.unref();
  }

  /** Stops looking; resolves once a look in progress is over (nothing runs after the pipeline). */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#checking;
  }

  /** One look at the slot; never throws (a failed look is a warning, not a pipeline failure). */
  async check(): Promise<SlotInfo | null> {
    try {
      const slot = await this.#source.refreshSlot();
      if (slot === null) return null;
      const serverLsn = await this.#source.currentWalLsn();
      this.#options.onProgress({
        type: 'slot',
        retainedWalBytes: slot.retainedWalBytes ?? 0,
        lagBytes: slot.confirmedFlushLsn === null ? 0 : Number(serverLsn - slot.confirmedFlushLsn),
        walStatus: slot.walStatus,
      });
      this.#judge(slot, serverLsn);
      const missing = await this.#source.missingPublications();
      if (missing.length > 0) {
        this.#options.onFatal(
          new PgReplicateError(
            'PUBLICATION_NOT_FOUND',
            `publication "${missing[0]}" was dropped while streaming`,
            {
              hint: `recreate it (CREATE PUBLICATION "${missing[0]}" FOR TABLE …;), then drop slot "${slot.name}" and run "both" to copy the tables again`,
            },
          ),
        );
      }
      return slot;
    } catch (error) {
      this.#options.logger.warn(`could not check slot ${this.#source.slot}: ${(error as Error).message}`);
      return null;
    }
  }

  #judge(slot: SlotInfo, serverLsn: Lsn): void {
    const { logger, maxRetainedWalBytes } = this.#options;
    const retained = slot.retainedWalBytes ?? 0;
    if (retained > maxRetainedWalBytes && !this.#warnedSize) {
      this.#warnedSize = true;
      const behind = slot.confirmedFlushLsn === null ? 0 : Number(serverLsn - slot.confirmedFlushLsn);
      const cause =
        behind > maxRetainedWalBytes / 2
          ? `the sink is ${bytes(behind)} behind the server (confirmed ${formatLsn(slot.confirmedFlushLsn!)}, server at ${formatLsn(serverLsn)}): it cannot keep up`
          : `restart_lsn ${slot.restartLsn === null ? '?' : formatLsn(slot.restartLsn)} is held back, usually by a long-running transaction on the server (see pg_stat_activity.xact_start)`;
      logger.warn(
        `slot ${slot.name} retains ${bytes(retained)} of WAL (threshold ${bytes(maxRetainedWalBytes)}): ${cause}`,
      );
    } else if (retained <= maxRetainedWalBytes / 2) {
      this.#warnedSize = false;
    }
    const status = slot.walStatus;
    if ((status === 'unreserved' || status === 'lost') && this.#warnedStatus !== status) {
      logger.warn(
        status === 'lost'
          ? `slot ${slot.name} was invalidated (wal_status = lost): the WAL it needs is gone`
          : `slot ${slot.name} is past max_wal_size and about to be invalidated (wal_status = unreserved): the pipeline must catch up now`,
      );
    }
    this.#warnedStatus = status;
  }
}

function bytes(value: number): string {
  if (value >= 2 ** 30) return `${(value / 2 ** 30).toFixed(1)} GB`;
  if (value >= 2 ** 20) return `${(value / 2 ** 20).toFixed(0)} MB`;
  return `${Math.round(value / 1024)} kB`;
}
