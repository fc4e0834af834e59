/**
 * `npm run bench`: pg-replicate against the physical limits, in one run, on one server.
 *
 * It starts its own embedded Postgres, builds the same workload every time (a table with bigint,
 * int, text, timestamptz, numeric, jsonb, bool and uuid columns; the same rows again as a CDC
 * backlog in transactions of 100k), and measures, each `--reps` times:
 * - the limits: `COPY … TO STDOUT` (text and binary) into /dev/null with psql, and
 *   `pg_recvlogical` (pgoutput) into /dev/null;
 * - ours: backfill and CDC into the null sink and into DuckDB, as the CLI runs them;
 * - the same rows as a publication of {@link PARTS} tables, copied by psql one after another in
 *   one session and by us (the tables after the one the sink writes are read on spare workers);
 * - CDC lag (commit → durable) at a steady 10k rows/s.
 * It prints one table: median and spread of rows/s, the ratio to the limit, and peak RSS.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TestCluster } from '@pg-replicate/testkit';
import { NullSink, Pipeline, PostgresSource, parseLsn, type Sink } from 'pg-replicate';
import { percentile, runMeasured, type Summary, summarize } from './measure.js';
import { COLUMNS, ROW_EXPR, SERVER_SETTINGS } from './workload.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    reps: { type: 'string', default: '3' },
    only: { type: 'string' },
    'lag-seconds': { type: 'string', default: '20' },
    'no-duckdb': { type: 'boolean', default: false },
    /** Extra CLI flags for the DuckDB runs, e.g. `--duckdb-memory-limit 128MB`. */
    'duckdb-flags': { type: 'string', default: '' },
  },
});
const ROWS = Number(args.rows);
const REPS = Number(args.reps);
const duckdbFlags = args['duckdb-flags'].split(' ').filter((flag) => flag !== '');
const BIN = fileURLToPath(new URL('../../pg-replicate/bin/pg-replicate.js', import.meta.url));
/** Tables of the many-table publication (the same rows, split evenly). */
const PARTS = 100;

interface Result {
  group: 'backfill' | 'tables' | 'cdc';
  name: string;
  rowsPerSecond: Summary;
  peakRssMb: number;
  limit?: boolean;
}

const results: Result[] = [];
const log = (message: string) => process.stderr.write(`bench: ${message}\n`);

async function main(): Promise<void> {
  if (!commandExists('psql') || !commandExists('pg_recvlogical')) {
    throw new Error(
      'the limits are measured with psql and pg_recvlogical: install them (Debian/Ubuntu: apt-get install postgresql-client)',
    );
  }
  log(`starting Postgres; workload: ${ROWS.toLocaleString('en-US')} rows, ${REPS} repetitions`);
  const cluster = await TestCluster.start({ settings: SERVER_SETTINGS });
  const work = mkdtempSync(join(tmpdir(), 'pg-replicate-bench-'));
  try {
    const [version] = await cluster.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    await cluster.query(`
      CREATE TABLE bench (${COLUMNS});
      CREATE TABLE bench_cdc (${COLUMNS});
      CREATE TABLE bench_empty (${COLUMNS});
      CREATE PUBLICATION bench_pub FOR TABLE bench;
      CREATE PUBLICATION cdc_pub FOR TABLE bench_cdc;
      CREATE PUBLICATION empty_pub FOR TABLE bench_empty;
    `);
    log('loading the backfill table');
    await cluster.query(`INSERT INTO bench ${ROW_EXPR(1, ROWS)}`);
    const parts = Array.from({ length: PARTS }, (_, i) => `bench_part_${i}`);
    const perPart = Math.ceil(ROWS / PARTS);
    for (const [i, part] of parts.entries()) {
      await cluster.query(
        `CREATE TABLE ${part} (${COLUMNS}); INSERT INTO ${part} ${ROW_EXPR(i * perPart + 1, Math.min(ROWS, (i + 1) * perPart))}`,
      );
    }
    await cluster.query(`CREATE PUBLICATION parts_pub FOR TABLE ${parts.join(', ')}`);
    await cluster.query('VACUUM ANALYZE');
    await cluster.query('CHECKPOINT');
    const pg = cluster.connection();
    const env = { PGPASSWORD: pg.password };
    const libpq = ['-h', pg.host, '-p', String(pg.port), '-U', pg.user, '-d', 'postgres'];
    const ours = ['--url', cluster.url(), '--quiet'];
    let copies = 0;
    /** The CLI copying `publication` into `sink` (a new DuckDB file each time). */
    const ourCopy = (sink: string, workers: number, publication: string) =>
      runMeasured(process.execPath, [
        BIN,
        ...ours,
        '--sink',
        sink,
        ...(sink === 'duckdb'
          ? ['--duckdb-path', join(work, `copy-${copies++}.duckdb`), ...duckdbFlags]
          : []),
        '--copy-workers',
        String(workers),
        'copy',
        publication,
      ]);

    if (!args.only || args.only === 'backfill') {
      await measure('backfill', 'COPY text → /dev/null (psql)', ROWS, true, () =>
        runMeasured('psql', [...libpq, '-c', 'COPY bench TO STDOUT'], env),
      );
      await measure('backfill', 'COPY binary → /dev/null (psql)', ROWS, true, () =>
        runMeasured('psql', [...libpq, '-c', 'COPY bench TO STDOUT (FORMAT binary)'], env),
      );
      const runs: [string, number][] = [
        ['null', 1],
        ['null', 2],
        ['null', 4],
      ];
      if (!args['no-duckdb']) runs.push(['duckdb', 1], ['duckdb', 4]);
      for (const [sink, workers] of runs) {
        await measure(
          'backfill',
          `pg-replicate copy → ${sink}, ${workers} ${workersWord(workers)}`,
          ROWS,
          false,
          () => ourCopy(sink, workers, 'bench_pub'),
        );
      }
    }

    if (!args.only || args.only === 'backfill' || args.only === 'tables') {
      const tables = `${PARTS} tables`;
      await measure('tables', `COPY of ${tables} → /dev/null (psql, one session)`, ROWS, true, () =>
        runMeasured('psql', [...libpq, ...parts.flatMap((part) => ['-c', `COPY ${part} TO STDOUT`])], env),
      );
      for (const sink of args['no-duckdb'] ? ['null'] : ['null', 'duckdb']) {
        for (const workers of [1, 4]) {
          await measure(
            'tables',
            `pg-replicate copy of ${tables} → ${sink}, ${workers} ${workersWord(workers)}`,
            ROWS,
            false,
            () => ourCopy(sink, workers, 'parts_pub'),
          );
        }
      }
    }

    let startup: string[] = [];
    if (!args.only || args.only === 'backfill') startup = await measureStartup(ours, work);

    if (!args.only || args.only === 'cdc') {
      const consumers = ['recvlogical', 'null', ...(args['no-duckdb'] ? [] : ['duckdb'])];
      // One slot per measurement, all created before the backlog, so each decodes the same WAL.
      const slots = consumers.flatMap((c) =>
        Array.from({ length: REPS + 1 }, (_, rep) => `bench_${c}_${rep}`),
      );
      for (const slot of slots)
        await cluster.query(`SELECT pg_create_logical_replication_slot('${slot}', 'pgoutput')`);
      log('writing the CDC backlog');
      for (let from = 1; from <= ROWS; from += 100_000) {
        await cluster.query(`INSERT INTO bench_cdc ${ROW_EXPR(from, Math.min(ROWS, from + 99_999))}`);
      }
      const [end] = await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      const endLsn = end!.lsn;
      const next = (consumer: string) => {
        let rep = 0;
        return () => `bench_${consumer}_${rep++}`;
      };
      const recvSlot = next('recvlogical');
      await measure('cdc', 'pg_recvlogical → /dev/null', ROWS, true, () =>
        runMeasured(
          'pg_recvlogical',
          [
            ...libpq,
            `--slot=${recvSlot()}`,
            '--start',
            `--endpos=${endLsn}`,
            '--no-loop',
            '-F',
            '0',
            '-f',
            '/dev/null',
            '-o',
            'proto_version=4',
            '-o',
            'publication_names=cdc_pub',
          ],
          env,
        ),
      );
      const nullSlot = next('null');
      await measure('cdc', 'pg-replicate cdc → null', ROWS, false, () =>
        runMeasured(process.execPath, [
          BIN,
          ...ours,
          '--sink',
          'null',
          'cdc',
          'cdc_pub',
          nullSlot(),
          '--end-lsn',
          endLsn,
        ]),
      );
      if (!args['no-duckdb']) {
        const duckSlot = next('duckdb');
        let i = 0;
        await measure('cdc', 'pg-replicate cdc → duckdb', ROWS, false, () =>
          runMeasured(process.execPath, [
            BIN,
            ...ours,
            '--sink',
            'duckdb',
            '--duckdb-path',
            join(work, `cdc-${i++}.duckdb`),
            ...duckdbFlags,
            'cdc',
            'cdc_pub',
            duckSlot(),
            '--end-lsn',
            endLsn,
          ]),
        );
      }
    }

    let lag: string[] = [];
    if (!args.only || args.only === 'lag') lag = await measureLag(cluster, work);

    printReport(version!.v, [...startup, ...lag]);
  } finally {
    await cluster.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Runs a warm-up, then `REPS` measured repetitions. */
async function measure(
  group: Result['group'],
  name: string,
  rows: number,
  limit: boolean,
  run: () => Promise<{ seconds: number; peakRssMb: number }>,
): Promise<void> {
  const rates: number[] = [];
  let peak = 0;
  for (let rep = 0; rep <= REPS; rep++) {
    const result = await run();
    if (rep === 0) continue; // warm-up: caches, JIT, first decoding of the WAL
    rates.push(rows / result.seconds);
    peak = Math.max(peak, result.peakRssMb);
    log(`${name}: ${Math.round(rows / result.seconds).toLocaleString('en-US')} rows/s`);
  }
  results.push({ group, name, rowsPerSecond: summarize(rates), peakRssMb: peak, limit });
}

/**
 * The fixed cost in every run above: the CLI copying an empty table (process start, modules,
 * connections, catalog, snapshot, and for DuckDB opening and closing the file).
 */
async function measureStartup(ours: readonly string[], work: string): Promise<string[]> {
  const sinks = args['no-duckdb'] ? ['null'] : ['null', 'duckdb'];
  const parts: string[] = [];
  for (const sink of sinks) {
    const seconds: number[] = [];
    for (let rep = 0; rep <= REPS; rep++) {
      const path = join(work, `empty-${rep}.duckdb`);
      const run = await runMeasured(process.execPath, [
        BIN,
        ...ours,
        '--sink',
        sink,
        '--duckdb-path',
        path,
        'copy',
        'empty_pub',
      ]);
      if (rep > 0) seconds.push(run.seconds);
    }
    parts.push(`${sink} ${summarize(seconds).median.toFixed(2)} s`);
  }
  const line = `Start-up (the CLI copying an empty table, start to exit; part of every run above): ${parts.join(', ')}`;
  log(line);
  return [line];
}

/** Lag from commit to durable, at a steady 10k rows/s (100 transactions of 100 rows a second). */
async function measureLag(cluster: TestCluster, work: string): Promise<string[]> {
  const seconds = Number(args['lag-seconds']);
  const lines: string[] = [];
  const sinks: [string, () => Promise<Sink>][] = [['null', async () => new NullSink()]];
  if (!args['no-duckdb']) {
    sinks.push([
      'duckdb',
      async () => {
        const specifier: string = '@pg-replicate/duckdb';
        const { DuckDbSink } = (await import(specifier)) as { DuckDbSink: new (o: { path: string }) => Sink };
        return new DuckDbSink({ path: join(work, 'lag.duckdb') });
      },
    ]);
  }
  for (const [name, makeSink] of sinks) {
    await cluster.query(`TRUNCATE bench_cdc`);
    const slot = `lag_${name}`;
    const lags: number[] = [];
    const controller = new AbortController();
    const pipeline = new Pipeline({
      source: new PostgresSource({ connection: { url: cluster.url() }, publication: 'cdc_pub', slot }),
      sink: await makeSink(),
      mode: 'cdc',
      batchMaxDelayMs: 100,
      signal: controller.signal,
      onProgress: (event) => {
        if (event.type === 'changes') lags.push(event.maxLagMs);
      },
    });
    const running = pipeline.run();
    const writer = await cluster.client();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const started = performance.now();
    let id = 10_000_000;
    for (let tick = 0; tick < seconds * 100; tick++) {
      await writer.query(`INSERT INTO bench_cdc ${ROW_EXPR(id, id + 99)}`);
      id += 100;
      const due = started + (tick + 1) * 10;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const achieved = ((id - 10_000_000) / (performance.now() - started)) * 1000;
    const [end] = await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const target = parseLsn(end!.lsn);
    while ((pipeline.stats.durableLsn ?? 0n) < target)
      await new Promise((resolve) => setTimeout(resolve, 20));
    controller.abort();
    await running;
    await writer.end();
    const line = `CDC lag → ${name} at ${Math.round(achieved).toLocaleString('en-US')} rows/s for ${seconds} s: p50 ${percentile(lags, 50)} ms, p99 ${percentile(lags, 99)} ms, max ${Math.max(...lags)} ms (${lags.length} batches; lag = first commit in batch → durable)`;
    log(line);
    lines.push(line);
  }
  return lines;
}

function printReport(serverVersion: string, lag: readonly string[]): void {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const out: string[] = [];
  out.push(
    `pg-replicate benchmark — ${ROWS.toLocaleString('en-US')} rows, median of ${REPS} (after a warm-up), Postgres ${serverVersion}, Node ${process.version}`,
  );
  out.push(`machine: ${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM`);
  out.push('');
  out.push('| measurement | rows/s (median) | spread (min–max) | × limit | peak RSS |');
  out.push('|---|---:|---:|---:|---:|');
  for (const group of ['backfill', 'tables', 'cdc'] as const) {
    const rows = results.filter((r) => r.group === group);
    const limit = rows.find((r) => r.limit)?.rowsPerSecond.median;
    for (const r of rows) {
      const ratio = limit === undefined ? '' : `${(r.rowsPerSecond.median / limit).toFixed(2)}×`;
      const spread = `${fmt(r.rowsPerSecond.min)}–${fmt(r.rowsPerSecond.max)}`;
      out.push(
        `| ${r.name} | ${fmt(r.rowsPerSecond.median)} | ${spread} | ${ratio} | ${Math.round(r.peakRssMb)} MB |`,
      );
    }
  }
  if (lag.length > 0) out.push('', ...lag);
  process.stdout.write(`${out.join('\n')}\n`);
}

function workersWord(workers: number): string {
  return workers > 1 ? 'workers' : 'worker';
}

function fmt(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function commandExists(command: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      return statSync(join(dir, command)).isFile();
    } catch {
      return false;
    }
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
