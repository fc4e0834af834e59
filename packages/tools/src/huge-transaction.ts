/**
 * `npm run bench:huge-tx`: proves memory stays bounded through huge transactions. It streams, with
 * the CLI as users run it, three transactions — one loading a table of about `--table-gb` GB
 * (default 2), one inserting `--rows` rows (default 5 million), one updating every row of the big
 * table — into the null sink and into DuckDB, and reports wall time and peak RSS of each run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TestCluster } from '@pg-replicate/testkit';
import { runMeasured } from './measure.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '5000000' },
    'table-gb': { type: 'string', default: '2' },
    sinks: { type: 'string', default: 'null,duckdb' },
  },
});
const BIN = fileURLToPath(new URL('../../pg-replicate/bin/pg-replicate.js', import.meta.url));
const log = (message: string) => process.stderr.write(`huge-tx: ${message}\n`);

async function main(): Promise<void> {
  const rows = Number(args.rows);
  const tableBytes = Number(args['table-gb']) * 2 ** 30;
  const sinks = args.sinks.split(',');
  const cluster = await TestCluster.start({
    settings: {
      shared_buffers: '512MB',
      max_wal_size: '32GB',
      checkpoint_timeout: '1h',
      wal_sender_timeout: '0',
    },
  });
  const work = mkdtempSync(join(tmpdir(), 'pg-replicate-huge-'));
  const results: string[] = [];
  try {
    await cluster.query(`
      CREATE TABLE big_insert (id bigint PRIMARY KEY, n int, t text, ts timestamptz);
      CREATE TABLE big_update (id bigint PRIMARY KEY, n int, payload text);
      CREATE PUBLICATION huge FOR TABLE big_insert, big_update;
    `);
    // The slots exist before anything is written: the sink sees every row of every table.
    for (const sink of sinks) {
      await cluster.query(`SELECT pg_create_logical_replication_slot('huge_${sink}', 'pgoutput')`);
    }
    // ~2 KB per row, stored uncompressed so the table really has the size asked for.
    const updateRows = Math.round(tableBytes / 2100);
    log(`one transaction loading big_update: ${updateRows.toLocaleString('en-US')} rows of ~2 KB`);
    await cluster.query('ALTER TABLE big_update ALTER payload SET STORAGE EXTERNAL');
    await cluster.query(
      `INSERT INTO big_update SELECT g, 0, repeat(md5(g::text), 64) FROM generate_series(1, ${updateRows}) g`,
    );
    const [size] = await cluster.query<{ size: string }>(
      `SELECT pg_size_pretty(pg_total_relation_size('big_update')) AS size`,
    );
    log(`one transaction inserting ${rows.toLocaleString('en-US')} rows`);
    await cluster.query(
      `INSERT INTO big_insert SELECT g, g % 1000, 'row ' || g, now() FROM generate_series(1, ${rows}) g`,
    );
    log(`one transaction updating all of big_update (${size!.size})`);
    await cluster.query(`UPDATE big_update SET n = n + 1`);
    const [end] = await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    for (const sink of sinks) {
      const extra = sink === 'duckdb' ? ['--duckdb-path', join(work, 'huge.duckdb')] : [];
      log(`streaming the three transactions into ${sink}`);
      const run = await runMeasured(process.execPath, [
        BIN,
        '--url',
        cluster.url(),
        '--sink',
        sink,
        ...extra,
        'cdc',
        'huge',
        `huge_${sink}`,
        '--end-lsn',
        end!.lsn,
      ]);
      const applied = /applied (\d+) changes/.exec(run.stderr)?.[1] ?? '?';
      const row = `| ${sink} | ${Number(applied).toLocaleString('en-US')} | ${run.seconds.toFixed(1)} s | ${Math.round(run.peakRssMb)} MB |`;
      log(row);
      results.push(row);
    }
    process.stdout.write(
      [
        `huge transactions, each one transaction: a load of a ${size!.size} table, a ${rows.toLocaleString('en-US')}-row insert, an update of every row of the ${size!.size} table`,
        '',
        '| sink | changes applied | wall time | peak RSS |',
        '|---|---:|---:|---:|',
        ...results,
        '',
      ].join('\n'),
    );
  } finally {
    await cluster.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`huge-tx: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
