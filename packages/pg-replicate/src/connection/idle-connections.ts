/**
 * Ordinary connections kept for the next transaction of a backfill: the snapshot's holder, the
 * table lock and every COPY chunk each need one, and opening one costs a TCP handshake, a TLS
 * attempt under `sslmode=prefer` and authentication — 7–15 ms on one machine, a round trip or
 * three more across a network. Opened together ahead of need ({@link IdleConnections.warm}) they
 * cost one wait instead of one each, and a chunk's connection serves the next chunk.
 *
 * Not `pg.Pool`: connections here are made by `connect` (libpq's `sslmode` fallbacks, errors turned
 * into actionable ones), and a client is only ever given back after its transaction committed.
 */
import type pg from 'pg';
import { connect } from './connect.js';
import type { ConnectionOptions } from './connection-options.js';

export class IdleConnections {
  readonly #options: ConnectionOptions;
  #idle: Promise<pg.Client>[] = [];

  constructor(options: ConnectionOptions) {
    this.#options = options;
  }

  /** Starts opening connections until `count` are idle or on their way. */
  warm(count: number): void {
    while (this.#idle.length < count) {
      const client = connect(this.#options);
      client.catch(() => {}); // met again by `take`
      this.#idle.push(client);
    }
  }

  /**
   * An idle connection, or a new one. A connection that failed to open or closed while idle is
   * dropped and a new one opened in its place, so a failure is reported by the attempt that meets it.
   */
  async take(): Promise<pg.Client> {
    for (let idle = this.#idle.shift(); idle !== undefined; idle = this.#idle.shift()) {
      const client = await idle.catch(() => null);
      if (client !== null && !client.connection.stream.destroyed) return client;
      await client?.end().catch(() => {});
    }
    return connect(this.#options);
  }

  /** Takes back a client whose transaction is over (committed or rolled back), for the next one. */
  give(client: pg.Client): void {
    this.#idle.push(Promise.resolve(client));
  }

  /** Closes every idle connection. */
  async close(): Promise<void> {
    const idle = this.#idle;
    this.#idle = [];
    await Promise.all(
      idle.map(async (client) => {
        const opened = await client.catch(() => null);
        await opened?.end().catch(() => {});
      }),
    );
  }
}
