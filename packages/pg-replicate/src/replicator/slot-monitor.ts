/**
 * Reads the replication slot every few seconds on a small connection of its own: how much WAL it
 * retains on the server, and how far the sink's durable position is behind the server's current
 * WAL. These are the numbers that page someone before a disk fills up, so they are read even when
 * the pipeline is down or retrying — and a failure here only logs and counts, never stops anything.
 */
import type pg from 'pg';
import { connect } from '../connection/connect.js';
import type { ConnectionOptions } from '../connection/connection-options.js';
import type { Lsn } from '../lsn.js';
import { currentWalLsn, replicationSlot } from '../source/catalog.js';

/** One reading of the slot. */
export interface SlotSample {
  /** False until the pipeline has created the slot. */
  readonly exists: boolean;
  readonly retainedWalBytes: number | null;
  /** Server WAL position minus the sink's durable LSN (else the slot's confirmed position). */
  readonly lagBytes: number | null;
  readonly active: boolean;
  /** `reserved`, `extended`, `unreserved` or `lost`. */
  readonly walStatus: string | null;
}

export interface SlotMonitorOptions {
  connection: ConnectionOptions;
  slot: string;
  intervalMs: number;
  /** The sink's durable position as the pipeline last reported it. */
  durableLsn: () => Lsn | null;
  onSample: (sample: SlotSample) => void;
  /** A reading failed; `first` is true for the first failure after a success. */
  onError: (error: unknown, first: boolean) => void;
  /** Readings work again after failures. */
  onRecovered?: () => void;
}

export class SlotMonitor {
  readonly #options: SlotMonitorOptions;
  #client: pg.Client | null = null;
  #serverVersion = 0;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #stopped = false;
  #failing = false;

  constructor(options: SlotMonitorOptions) {
    this.#options = options;
  }

  /** Reads at once, then every `intervalMs`. The timer never keeps the process alive. */
  start(): void {
    this.#schedule(0);
  }

  /** Reads the slot now (also what each tick does). Never throws. */
  async sample(): Promise<SlotSample | null> {
    try {
      const client = await this.#connection();
      const slot = await replicationSlot(client, this.#options.slot, this.#serverVersion);
      const current = await currentWalLsn(client);
      const durable = this.#options.durableLsn() ?? slot?.confirmedFlushLsn ?? null;
      const sample: SlotSample = {
        exists: slot !== null,
        retainedWalBytes: slot?.retainedWalBytes ?? null,
        lagBytes: durable === null ? null : Number(current - durable),
        active: slot?.active ?? false,
        walStatus: slot?.walStatus ?? null,
      };
      if (this.#failing) this.#options.onRecovered?.();
      this.#failing = false;
      this.#options.onSample(sample);
      return sample;
    } catch (error) {
      this.#options.onError(error, !this.#failing);
      this.#failing = true;
      await this.#disconnect();
      return null;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
    await this.#disconnect();
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.sample().then(() => {
        this.#running = null;
        this.#schedule(this.#options.intervalMs);
      });
    }, delayMs);
    this.#timer.unref();
  }

  async #connection(): Promise<pg.Client> {
    if (this.#client === null) {
      const options = { ...this.#options.connection };
      options.applicationName = `${options.applicationName} (monitor)`.slice(0, 63);
      const client = await connect(options);
      try {
        const result = await client.query<{ server_version_num: string }>('SHOW server_version_num');
        this.#serverVersion = Number(result.rows[0]!.server_version_num);
      } catch (error) {
        await client.end().catch(() => {});
        throw error;
      }
      this.#client = client;
    }
    return this.#client;
  }

  async #disconnect(): Promise<void> {
    const client = this.#client;
    this.#client = null;
    await client?.end().catch(() => {});
  }
}
