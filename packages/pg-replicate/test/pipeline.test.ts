import { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CopiedRows } from '../src/copy-batch.js';
import { formatLsn, type Lsn, parseLsn } from '../src/lsn.js';
import { Pipeline, type PipelineOptions } from '../src/pipeline/pipeline.js';
import type { TableSchema } from '../src/schema.js';
import { PostgresSource } from '../src/source/postgres-source.js';
import { freshDatabase, type TestDatabase, waitFor } from './helpers.js';
import { MemorySink, PipelinedMemorySink } from './memory-sink.js';

let db: TestDatabase;

const COLUMNS = ['id', 'name', 'qty', 'updated', 'payload'];

beforeAll(async () => {
  db = await freshDatabase('pipeline');
});
afterAll(async () => db.close());

async function setup(table: string, rows: number): Promise<void> {
  await db.sql(`
    CREATE TABLE ${table} (id int PRIMARY KEY, name text, qty int, updated timestamptz, payload text);
    INSERT INTO ${table} SELECT g, 'name ' || g, g % 100, '2024-01-01'::timestamptz + g * interval '1 microsecond', NULL
      FROM generate_series(1, ${rows}) g;
    CREATE PUBLICATION pub_${table} FOR TABLE ${table};
  `);
}

/** The table as sorted tab-joined text rows, exactly as Postgres prints each value. */
async function pgRows(table: string): Promise<string[]> {
  const expr = COLUMNS.map((c) => `coalesce(${c}::text, '\\N')`).join(`, E'\\t', `);
  const rows = await db.sql<{ line: string }>(`SELECT concat(${expr}) AS line FROM ${table}`);
  return rows.map((r) => r.line).sort();
}

async function currentLsn(): Promise<Lsn> {
  const [row] = await db.sql<{ lsn: string }>('SELECT pg_current_wal_lsn() AS lsn');
  return parseLsn(row!.lsn);
}

/** Waits until the sink holds everything written so far, then stops the pipeline gracefully. */
async function catchUp(sink: MemorySink, controller: AbortController): Promise<void> {
  const end = await currentLsn();
  await waitFor(
    () => sink.durable.lastLsn !== null && sink.durable.lastLsn >= end,
    30_000,
    'the sink to catch up',
  );
  controller.abort();
}

function pipeline(table: string, sink: MemorySink, extra: Partial<PipelineOptions> = {}): Pipeline {
  const source = new PostgresSource({
    connection: db.options,
    publication: `pub_${table}`,
    slot: `slot_${table}`,
  });
  return new Pipeline({ source, sink, mode: 'both', batchMaxDelayMs: 20, ...extra });
}

/** The number of chunks of each table `source` plans, as it plans them. */
function recordChunkCounts(source: PostgresSource): number[] {
  const counts: number[] = [];
  const plan = source.planChunks.bind(source);
  source.planChunks = async (...args) => {
    const plans = await plan(...args);
    counts.push(...plans.map((p) => p.chunks.length));
    return plans;
  };
  return counts;
}

/** Random inserts, updates (incl. key changes), deletes, each in its own transaction. */
async function randomWrites(table: string, count: number, seed: number): Promise<void> {
  let state = seed;
  const random = (n: number) => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % n;
  };
  for (let i = 0; i < count; i++) {
    const id = random(2000) + 1;
    switch (random(5)) {
      case 0:
        await db.sql(`INSERT INTO ${table} VALUES ($1, $2, 1, now(), NULL) ON CONFLICT (id) DO NOTHING`, [
          id,
          `w${id}`,
        ]);
        break;
      case 1:
        await db.sql(`UPDATE ${table} SET qty = qty + 1, updated = clock_timestamp() WHERE id = $1`, [id]);
        break;
      case 2:
        await db.sql(`DELETE FROM ${table} WHERE id = $1`, [id]);
        break;
      case 3:
        await db.sql(
          `UPDATE ${table} SET id = id + 100000 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM ${table} WHERE id = $1 + 100000)`,
          [id],
        );
        break;
      default:
        await db.sql(`UPDATE ${table} SET name = name || 'x' WHERE id BETWEEN $1 AND $1 + 5`, [id]);
    }
  }
}

describe('Pipeline (both)', () => {
  it('backfills while writers change the table, then streams: the sink equals Postgres', async () => {
    await setup('t_concurrent', 3000);
    const sink = new MemorySink();
    sink.rowDelayMs = 30;
    const controller = new AbortController();
    const running = pipeline('t_concurrent', sink, { copyBatchRows: 200, signal: controller.signal }).run();
    await randomWrites('t_concurrent', 300, 1);
    await catchUp(sink, controller);
    const result = await running;
    expect(result.stopped).toBe(true);
    // The writers ran before and during the snapshot, so the copy holds some of their changes.
    expect(result.stats.rowsCopied).toBeGreaterThan(2500);
    expect(sink.anomalies).toEqual([]);
    expect(sink.rows('"public"."t_concurrent"')).toEqual(await pgRows('t_concurrent'));
    const [slot] = await db.sql<{ confirmed_flush_lsn: string }>(
      `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'slot_t_concurrent'`,
    );
    expect(parseLsn(slot!.confirmed_flush_lsn)).toBe(sink.durable.lastLsn);
  });

  it('stopped during the copy while writers run, a restart copies what is missing and converges', async () => {
    await setup('t_interrupted', 20000);
    const sink = new MemorySink();
    sink.rowDelayMs = 50;
    const controller = new AbortController();
    const running = pipeline('t_interrupted', sink, { copyBatchRows: 200, signal: controller.signal }).run();
    const writer = randomWrites('t_interrupted', 200, 3);
    await waitFor(() => sink.durable.tables.size > 0, 10_000, 'the copy to start');
    await new Promise((resolve) => setTimeout(resolve, 100));
    controller.abort();
    expect((await running).stopped).toBe(true);
    expect(sink.durable.copied.size).toBe(0);
    await writer;
    sink.rowDelayMs = 0;
    const result = await pipeline('t_interrupted', sink, { endLsn: await currentLsn() }).run();
    expect(result.stats.tablesCopied).toBe(1);
    expect(sink.anomalies).toEqual([]);
    expect(sink.rows('"public"."t_interrupted"')).toEqual(await pgRows('t_interrupted'));
  });

  it('copies a big table in page ranges on several connections from one snapshot, while writers run', async () => {
    await setup('t_chunked', 150_000);
    await db.sql(`VACUUM ANALYZE t_chunked`);
    const sink = new MemorySink();
    const source = new PostgresSource({
      connection: db.options,
      publication: 'pub_t_chunked',
      slot: 'slot_t_chunked',
    });
    const plans = recordChunkCounts(source);
    const controller = new AbortController();
    const running = new Pipeline({
      source,
      sink,
      mode: 'both',
      copyWorkers: 4,
      copyChunkPages: 100,
      batchMaxDelayMs: 20,
      signal: controller.signal,
    }).run();
    await randomWrites('t_chunked', 200, 11);
    await catchUp(sink, controller);
    await running;
    expect(plans[0]).toBeGreaterThanOrEqual(2);
    expect(sink.anomalies).toEqual([]);
    expect(sink.rows('"public"."t_chunked"')).toEqual(await pgRows('t_chunked'));
  });

  it('copies many tables and chunks on a few connections, each reused for the next chunk, and leaves none open', async () => {
    const tables = ['t_many_1', 't_many_2', 't_many_3', 't_many_4'];
    for (const [i, table] of tables.entries()) {
      await db.sql(`
        CREATE TABLE ${table} (id int PRIMARY KEY, name text, qty int, updated timestamptz, payload text);
        INSERT INTO ${table} SELECT g, 'name ' || g, g % 100, '2024-01-01'::timestamptz + g * interval '1 second', NULL
          FROM generate_series(1, ${i === 0 ? 30_000 : 500}) g;`);
    }
    await db.sql(`CREATE PUBLICATION pub_t_many FOR TABLE ${tables.join(', ')}`);
    await db.sql(`VACUUM ANALYZE t_many_1`);
    const source = new PostgresSource({ connection: db.options, publication: 'pub_t_many' });
    const plans = recordChunkCounts(source);
    const connects = vi.spyOn(Socket.prototype, 'connect');
    const sink = new MemorySink();
    let sockets = 0;
    try {
      await new Pipeline({ source, sink, mode: 'copy', copyWorkers: 2, copyChunkPages: 20 }).run();
    } finally {
      sockets = connects.mock.calls.length;
      connects.mockRestore();
    }
    expect(plans).toEqual([2, 1, 1, 1]);
    // The preflight's, the snapshot's, the lock's and two COPY connections (a new one per chunk made 8).
    expect(sockets).toBe(5);
    for (const table of tables) expect(sink.rows(`"public"."${table}"`)).toEqual(await pgRows(table));
    expect(sink.anomalies).toEqual([]);
    await waitFor(
      async () =>
        Number(
          (
            await db.sql<{ n: string }>(
              `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pg-replicate'`,
            )
          )[0]!.n,
        ) === 0,
      10_000,
      'the copy connections to close',
    );
  });

  it('reads the tables after the one the sink is writing, on at most `workers` connections and within the budget', async () => {
    const tables = Array.from({ length: 11 }, (_, i) => `t_ahead_${i}`);
    for (const table of tables) {
      // ~0.7 MB of rows each: one batch, holding a 1 MiB slab while it waits.
      await db.sql(`
        CREATE TABLE ${table} (id int PRIMARY KEY, name text, qty int, updated timestamptz, payload text);
        INSERT INTO ${table} SELECT g, 'name ' || g, g % 100, now(), repeat('x', 80) FROM generate_series(1, 6000) g;`);
    }
    await db.sql(`CREATE PUBLICATION pub_t_ahead FOR TABLE ${tables.join(', ')}`);
    const source = new PostgresSource({ connection: db.options, publication: 'pub_t_ahead' });
    let copying = 0;
    let mostAtOnce = 0;
    const read: string[] = [];
    const copyTable = source.copyTable.bind(source);
    source.copyTable = async function* (table, ...rest) {
      mostAtOnce = Math.max(mostAtOnce, ++copying);
      try {
        yield* copyTable(table, ...rest);
        read.push(table.name);
      } finally {
        copying--;
      }
    };
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const order: string[] = [];
    const sink = new (class extends MemorySink {
      #open: string | null = null;
      override async beginCopy(table: TableSchema): Promise<void> {
        if (this.#open !== null) this.anomalies.push(`${table.name} began while ${this.#open} was open`);
        this.#open = table.name;
        order.push(table.name);
        return super.beginCopy(table);
      }
      override async writeRows(table: TableSchema, rows: CopiedRows): Promise<void> {
        if (table.name === 't_ahead_0') await gate;
        return super.writeRows(table, rows);
      }
      override async endCopy(table: TableSchema, lsn: Lsn | null): Promise<void> {
        this.#open = null;
        return super.endCopy(table, lsn);
      }
    })();
    const running = new Pipeline({ source, sink, mode: 'copy', copyWorkers: 3 }).run();
    try {
      await waitFor(() => read.length >= 3, 10_000, 'the tables after the first to be read');
      await new Promise((resolve) => setTimeout(resolve, 500));
      // Tables ahead may hold half of the 8 MiB budget: four 1 MiB batches, of ten tables.
      expect(read.length - 1).toBeLessThanOrEqual(4);
      expect(order).toEqual(['t_ahead_0']);
    } finally {
      release();
    }
    await running;
    expect(mostAtOnce).toBeLessThanOrEqual(3);
    expect(order).toEqual([...tables].sort()); // the catalog lists tables by name
    expect(sink.anomalies).toEqual([]);
    for (const table of tables) expect(sink.rows(`"public"."${table}"`)).toEqual(await pgRows(table));
  });

  it('holds TRUNCATE off while copying (it would empty the table under the snapshot), then streams it', async () => {
    await setup('t_truncate', 20_000);
    const sink = new MemorySink();
    sink.rowDelayMs = 50;
    const controller = new AbortController();
    const running = pipeline('t_truncate', sink, { copyBatchRows: 1000, signal: controller.signal }).run();
    const client = await db.client();
    try {
      await waitFor(
        async () =>
          (
            await db.sql<{ n: string }>(
              `SELECT count(*)::text AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                WHERE c.relname = 't_truncate' AND l.mode = 'AccessShareLock' AND l.granted`,
            )
          )[0]!.n !== '0',
        10_000,
        'the copy to lock the table',
      );
      await client.query(`SET lock_timeout = '300ms'`);
      await expect(client.query('TRUNCATE t_truncate')).rejects.toMatchObject({ code: '55P03' });
      await client.query(`SET lock_timeout = 0`);
      // Waits for the copy to finish, then commits: the stream carries it.
      await client.query('TRUNCATE t_truncate');
      await client.query(`INSERT INTO t_truncate VALUES (1, 'after', 1, now(), NULL)`);
    } finally {
      await client.end();
    }
    await catchUp(sink, controller);
    await running;
    expect(sink.anomalies).toEqual([]);
    expect(sink.rows('"public"."t_truncate"')).toEqual(await pgRows('t_truncate'));
  });

  it('refuses a copy snapshot older than a TRUNCATE of one of its tables (TABLE_REWRITTEN)', async () => {
    await setup('t_rewritten', 10);
    const holder = await db.client();
    const source = new PostgresSource({ connection: db.options, publication: 'pub_t_rewritten' });
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const [row] = (await holder.query<{ name: string }>('SELECT pg_export_snapshot() AS name')).rows;
      await db.sql('TRUNCATE t_rewritten');
      await source.open('copy');
      const snapshot = { name: row!.name, lsn: null, createdSlot: false, release: async () => {} };
      await expect(source.lockForCopy(source.tables, snapshot)).rejects.toMatchObject({
        code: 'TABLE_REWRITTEN',
      });
    } finally {
      await source.close();
      await holder.end();
    }
  });

  it('resumes after a crash in the middle of the copy: the table is copied again, nothing doubled', async () => {
    await setup('t_copycrash', 5000);
    const sink = new MemorySink();
    sink.failWhen = (call, n) => call === 'writeRows' && n === 4;
    await expect(pipeline('t_copycrash', sink, { copyBatchRows: 500, mode: 'copy' }).run()).rejects.toThrow(
      /simulated sink failure/,
    );
    expect(sink.durable.copied.size).toBe(0);
    sink.failWhen = null;
    await pipeline('t_copycrash', sink, { copyBatchRows: 500, mode: 'copy' }).run();
    expect(sink.anomalies).toEqual([]);
    expect(sink.rows('"public"."t_copycrash"')).toEqual(await pgRows('t_copycrash'));
  });

  it('resumes after a crash during CDC without losing or repeating a transaction', async () => {
    await setup('t_cdccrash', 100);
    const sink = new MemorySink();
    const end0 = await currentLsn();
    await pipeline('t_cdccrash', sink, { endLsn: end0 }).run();
    await randomWrites('t_cdccrash', 200, 7);
    const end = await currentLsn();
    let writes = 0;
    sink.failWhen = (call) => call === 'writeChanges' && ++writes === 3;
    await expect(
      pipeline('t_cdccrash', sink, { endLsn: end, batchMaxRows: 10, batchMaxDelayMs: 0 }).run(),
    ).rejects.toThrow(/simulated sink failure/);
    sink.failWhen = null;
    const result = await pipeline('t_cdccrash', sink, { endLsn: end }).run();
    expect(result.stats.rowsCopied).toBe(0);
    expect(sink.anomalies).toEqual([]);
    expect(sink.rows('"public"."t_cdccrash"')).toEqual(await pgRows('t_cdccrash'));
  });

  it('hands a sink that takes two batches the next one while it applies one; a failure stops both', async () => {
    await setup('t_pipelined', 100);
    const sink = new PipelinedMemorySink();
    await pipeline('t_pipelined', sink, { endLsn: await currentLsn() }).run();
    await randomWrites('t_pipelined', 300, 11);
    const end = await currentLsn();
    const options = { endLsn: end, batchMaxRows: 10, batchMaxDelayMs: 0 };
    sink.batches = [];
    sink.given = 0;
    let writes = 0;
    sink.failWhen = (call) => call === 'writeChanges' && ++writes === 5;
    await expect(pipeline('t_pipelined', sink, options).run()).rejects.toThrow(/simulated sink failure/);
    // The batch after the failed one was handed over while it was applying, and not applied.
    expect(sink.maxOutstanding).toBe(2);
    expect(sink.batches).toHaveLength(4);
    expect(sink.given).toBeGreaterThanOrEqual(6);
    expect(sink.durable.lastLsn).toBe(sink.batches[3]!.commit!.lsn);
    sink.failWhen = null;
    // A call rejected outside the sink (as by a wrapper): nothing after it is handed over.
    await randomWrites('t_pipelined', 100, 12);
    const options2 = { ...options, endLsn: await currentLsn() };
    sink.batches = [];
    sink.given = 0;
    sink.rejectCall = 3;
    await expect(pipeline('t_pipelined', sink, options2).run()).rejects.toThrow(/rejected before the sink/);
    expect(sink.batches).toHaveLength(2);
    sink.rejectCall = 0;
    await pipeline('t_pipelined', sink, options2).run();
    expect(sink.maxOutstanding).toBe(2);
    expect(sink.anomalies).toEqual([]);
    expect(sink.rows('"public"."t_pipelined"')).toEqual(await pgRows('t_pipelined'));
  });

  it('writes a transaction larger than a batch in parts, and a crash in the middle loses none of it', async () => {
    await setup('t_bigtx', 10);
    const sink = new MemorySink();
    await pipeline('t_bigtx', sink, { endLsn: await currentLsn() }).run();
    await db.sql(
      `INSERT INTO t_bigtx SELECT g, 'big', 1, now(), repeat('x', 100) FROM generate_series(1000, 6000) g`,
    );
    const end = await currentLsn();
    let parts = 0;
    sink.failWhen = (call) => call === 'writeChanges' && ++parts === 3;
    await expect(pipeline('t_bigtx', sink, { endLsn: end, batchMaxRows: 1000 }).run()).rejects.toThrow(
      /simulated/,
    );
    // Parts were written, but without a commit nothing of the transaction is durable.
    expect(sink.rows('"public"."t_bigtx"')).toHaveLength(10);
    sink.failWhen = null;
    sink.batches = [];
    await pipeline('t_bigtx', sink, { endLsn: end, batchMaxRows: 1000 }).run();
    expect(sink.batches.filter((b) => b.commit === undefined).length).toBeGreaterThanOrEqual(4);
    expect(sink.anomalies).toEqual([]);
    expect(sink.rows('"public"."t_bigtx"')).toEqual(await pgRows('t_bigtx'));
  });

  it('cuts batches by bytes too: wide rows make smaller batches, and smaller parts of a transaction', async () => {
    await setup('t_bytes', 0);
    const sink = new MemorySink();
    await pipeline('t_bytes', sink, { endLsn: await currentLsn() }).run();
    // 40 transactions of one ~10 KB row, then one transaction of 40 such rows.
    for (let id = 1; id <= 40; id++) {
      await db.sql(`INSERT INTO t_bytes VALUES ($1, 'w', 1, now(), repeat('x', 10000))`, [id]);
    }
    await db.sql(
      `INSERT INTO t_bytes SELECT g, 'w', 1, now(), repeat('y', 10000) FROM generate_series(41, 80) g`,
    );
    const end = await currentLsn();
    sink.batches = [];
    // Five rows pass 50,000 bytes; neither the row count nor the delay cuts a batch here.
    await pipeline('t_bytes', sink, { endLsn: end, batchMaxBytes: 50_000, batchMaxDelayMs: 60_000 }).run();
    const sizes = sink.batches.map((batch) => batch.events.length).filter((size) => size > 0);
    expect(sizes).toEqual(Array(16).fill(5));
    expect(
      sink.batches.filter((batch) => batch.commit === undefined && batch.events.length > 0),
    ).toHaveLength(8);
    expect(sink.anomalies).toEqual([]);
    expect(sink.rows('"public"."t_bytes"')).toEqual(await pgRows('t_bytes'));
  });

  it('moves an idle slot forward when only unpublished tables change', async () => {
    await setup('t_idle', 1);
    await db.sql('CREATE TABLE unpublished (id int PRIMARY KEY, v text)');
    const sink = new MemorySink();
    await pipeline('t_idle', sink, { endLsn: await currentLsn() }).run();
    const before = sink.durable.lastLsn!;
    await db.sql(`INSERT INTO unpublished SELECT g, 'x' FROM generate_series(1, 1000) g`);
    const end = await currentLsn();
    await pipeline('t_idle', sink, { endLsn: end }).run();
    expect(sink.durable.lastLsn! >= end).toBe(true);
    const [slot] = await db.sql<{ confirmed_flush_lsn: string }>(
      `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'slot_t_idle'`,
    );
    expect(parseLsn(slot!.confirmed_flush_lsn) > before).toBe(true);
    expect(parseLsn(slot!.confirmed_flush_lsn) >= end).toBe(true);
  });

  it('with unpublished tables changing all the time, an idle run still reaches its end, and a failed batch stops it', async () => {
    await setup('t_noise', 1);
    await db.sql('CREATE TABLE noise (id serial PRIMARY KEY, v text)');
    // WAL from elsewhere, more often than the loop's idle probe: the stream is never quiet.
    let writing = true;
    const noise = (async () => {
      while (writing) {
        await db.sql(`INSERT INTO noise (v) VALUES ('x')`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      const sink = new MemorySink();
      await pipeline('t_noise', sink, { endLsn: await currentLsn() }).run();
      await db.sql(`INSERT INTO noise (v) SELECT 'y' FROM generate_series(1, 100)`);
      const end = await currentLsn();
      const started = Date.now();
      await pipeline('t_noise', sink, { endLsn: end, mode: 'cdc' }).run();
      expect(sink.durable.lastLsn! >= end).toBe(true);
      expect(Date.now() - started).toBeLessThan(10_000);

      const controller = new AbortController();
      sink.failWhen = (call) => call === 'writeChanges';
      const running = pipeline('t_noise', sink, { mode: 'cdc', signal: controller.signal }).run();
      const timer = setTimeout(() => controller.abort(), 15_000);
      await db.sql(`INSERT INTO t_noise VALUES (2, 'fails', 1, now(), NULL)`);
      await expect(running).rejects.toThrow(/simulated sink failure/);
      clearTimeout(timer);
      expect(controller.signal.aborted).toBe(false);
      sink.failWhen = null;
      await pipeline('t_noise', sink, { endLsn: await currentLsn(), mode: 'cdc' }).run();
      expect(sink.anomalies).toEqual([]);
      expect(sink.rows('"public"."t_noise"')).toEqual(await pgRows('t_noise'));
    } finally {
      writing = false;
      await noise;
    }
  });

  it('heartbeats keep the slot moving on an idle database, and a slot holding WAL is reported', async () => {
    await setup('t_heartbeat', 1);
    const sink = new MemorySink();
    const warnings: string[] = [];
    const slotEvents: number[] = [];
    const controller = new AbortController();
    const running = pipeline('t_heartbeat', sink, {
      heartbeatIntervalMs: 50,
      slotCheckIntervalMs: 50,
      maxRetainedWalBytes: 1,
      signal: controller.signal,
      logger: { debug() {}, info() {}, warn: (message) => warnings.push(message) },
      onProgress: (event) => {
        if (event.type === 'slot') slotEvents.push(event.retainedWalBytes);
      },
    }).run();
    await waitFor(() => sink.durable.lastLsn !== null, 10_000, 'a first durable position');
    const first = sink.durable.lastLsn!;
    // Nothing is written by anyone: only the heartbeats' WAL can move the position.
    await waitFor(() => sink.durable.lastLsn! > first, 10_000, 'the heartbeat to advance the slot');
    await waitFor(
      () => warnings.some((w) => /retains .* of WAL/.test(w)),
      10_000,
      'the retained-WAL warning',
    );
    controller.abort();
    await running;
    expect(slotEvents.length).toBeGreaterThan(0);
    const [slot] = await db.sql<{ confirmed_flush_lsn: string }>(
      `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'slot_t_heartbeat'`,
    );
    expect(parseLsn(slot!.confirmed_flush_lsn) > first).toBe(true);
  });

  it('stops with PUBLICATION_NOT_FOUND when its publication is dropped while streaming', async () => {
    await setup('t_droppub', 1);
    const sink = new MemorySink();
    const running = pipeline('t_droppub', sink, { slotCheckIntervalMs: 50 }).run();
    await waitFor(() => sink.durable.lastLsn !== null, 10_000, 'streaming');
    await db.sql('DROP PUBLICATION pub_t_droppub');
    await expect(running).rejects.toMatchObject({ code: 'PUBLICATION_NOT_FOUND' });
  });

  it('refuses a sink whose state is behind the slot (changes would be missing)', async () => {
    await setup('t_behind', 5);
    const sink = new MemorySink();
    await pipeline('t_behind', sink, { endLsn: await currentLsn() }).run();
    const stale = structuredClone(sink.durable);
    await db.sql(`INSERT INTO t_behind VALUES (100, 'new', 1, now(), NULL)`);
    await pipeline('t_behind', sink, { endLsn: await currentLsn() }).run();
    sink.durable = stale;
    await expect(pipeline('t_behind', sink, { endLsn: await currentLsn() }).run()).rejects.toMatchObject({
      code: 'SINK_BEHIND_SLOT',
    });
    expect(formatLsn(stale.lastLsn!)).toMatch(/\//);
  });
});

describe('a TRUNCATE that waits for the copy', () => {
  it('makes the copy start over instead of waiting forever for its own lock', async () => {
    await db.sql(`
      CREATE TABLE t_first (id int PRIMARY KEY);
      CREATE TABLE t_second (id int PRIMARY KEY);
      INSERT INTO t_first SELECT generate_series(1, 100);
      INSERT INTO t_second SELECT generate_series(1, 100);
      CREATE PUBLICATION pub_waits FOR TABLE t_first, t_second;
    `);
    // The COPY of the second table starts only once a TRUNCATE of it is queued behind the copy's
    // lock: the COPY then waits behind the TRUNCATE.
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const sink = new MemorySink();
    const source = new PostgresSource({ connection: db.options, publication: 'pub_waits' });
    const copyTable = source.copyTable.bind(source);
    source.copyTable = async function* (table, ...rest) {
      if (table.name === 't_second') await gate;
      yield* copyTable(table, ...rest);
    };
    const running = new Pipeline({ source, sink, mode: 'copy', copyWorkers: 1 }).run();
    running.catch(() => {});
    const other = await db.client();
    try {
      await waitFor(
        async () => (await db.sql(`SELECT 1 FROM pg_locks WHERE relation = 't_second'::regclass`)).length > 0,
        10_000,
        'the copy to lock t_second',
      );
      const truncating = other.query('TRUNCATE t_second');
      truncating.catch(() => {});
      await waitFor(
        async () =>
          (
            await db.sql(
              `SELECT 1 FROM pg_stat_activity WHERE query = 'TRUNCATE t_second' AND wait_event_type = 'Lock'`,
            )
          ).length > 0,
        10_000,
        'the TRUNCATE to wait',
      );
      release();
      const started = Date.now();
      await expect(running).rejects.toMatchObject({ code: 'TABLE_REWRITTEN', transient: true });
      expect(Date.now() - started).toBeLessThan(20_000);
      await truncating; // done once the copy let go
    } finally {
      await other.end();
    }
    const again = new MemorySink();
    await new Pipeline({
      source: new PostgresSource({ connection: db.options, publication: 'pub_waits' }),
      sink: again,
      mode: 'copy',
    }).run();
    expect(again.rows('"public"."t_first"')).toHaveLength(100);
    expect(again.rows('"public"."t_second"')).toEqual([]);
  });
});
