/**
 * `npm run bench:scattered`: memory and time of scattered updates over a big table, into DuckDB.
 * Builds a table of `--rows` rows of the benchmark's shape (default 10 million), copies it with the
 * CLI, makes `--transactions` transactions (default 20) of 10,000 random updates and 1,000 random
 * deletes, and streams them once per setting in `--settings` (`;`-separated extra CLI flags;
 * default: the sink's defaults, then `--duckdb-delete-memory 1TB`, which applies every change
 * inside its transaction: the sink before it deleted ahead), `--reps` times, alternating — each
 * run from the same start: the DuckDB file as copied, and a copy of the slot as it was then.
 * `--toast` adds a ~2 KB column stored out of line that the updates leave alone: the sink then
 * reads those values from DuckDB, and does not delete that table's rows ahead.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TestCluster } from '@pg-replicate/testkit';
import { runMeasured } from './measure.js';
import { COLUMNS, ROW_EXPR, SERVER_SETTINGS } from './workload.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '10000000' },
    transactions: { type: 'string', default: '20' },
    settings: { type: 'string', default: ';--duckdb-delete-memory 1TB' },
    reps: { type: 'string', default: '1' },
    toast: { type: 'boolean', default: false },
  },
});
const BIN = fileURLToPath(new URL('../../pg-replicate/bin/pg-replicate.js', import.meta.url));
const log = (message: string) => process.stderr.write(`scattered: ${message}\n`);

async function main(): Promise<void> {
  const rows = Number(args.rows);
  const settings = args.settings.split(';').map((flags) => flags.split(' ').filter((flag) => flag !== ''));
  const cluster = await TestCluster.start({ settings: SERVER_SETTINGS });
  const work = mkdtempSync(join(tmpdir(), 'pg-replicate-scattered-'));
  const file = join(work, 'replica.duckdb');
  const copied = join(work, 'copied.duckdb');
  const cli = (flags: string[], end: string) =>
    runMeasured(process.execPath, [
      BIN,
      '--url',
      cluster.url(),
      '--sink',
      'duckdb',
      '--duckdb-path',
      file,
      ...flags,
      '--end-lsn',
      end,
    ]);
  const lsn = async () =>
    (await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))[0]!.lsn;
  const results: string[] = [];
  try {
    log(`a table of ${rows.toLocaleString('en-US')} rows`);
    await cluster.query(`CREATE TABLE scattered (${COLUMNS}); INSERT INTO scattered ${ROW_EXPR(1, rows)}`);
    if (args.toast) {
      log('a ~2 KB column stored out of line');
      await cluster.query(`ALTER TABLE scattered ADD COLUMN note text; ALTER TABLE scattered ALTER COLUMN note SET STORAGE EXTERNAL;
        UPDATE scattered SET note = repeat(md5(id::text), 64)`);
    }
    await cluster.query('VACUUM ANALYZE scattered'); // not in a transaction: a query of its own
    await cluster.query('CREATE PUBLICATION scattered FOR TABLE scattered');
    log('copied into DuckDB');
    const copy = await cli(['both', 'scattered', 'scattered'], await lsn());
    copyFileSync(file, copied); // the CLI closed it: checkpointed, no WAL beside it
    await cluster.query(`SELECT pg_copy_logical_replication_slot('scattered', 'scattered_start')`);
    for (let t = 0; t < Number(args.transactions); t++) {
      await cluster.query(`BEGIN;
        UPDATE scattered SET n = n + 1, t = t || '!' WHERE id IN (SELECT (random() * ${rows})::bigint + 1 FROM generate_series(1, 10000));
        DELETE FROM scattered WHERE id IN (SELECT (random() * ${rows})::bigint + 1 FROM generate_series(1, 1000));
        COMMIT;`);
    }
    const end = await lsn();
    for (let rep = 0; rep < Number(args.reps); rep++) {
      for (const flags of settings) {
        await cluster.query(`SELECT pg_drop_replication_slot('scattered')`);
        await cluster.query(`SELECT pg_copy_logical_replication_slot('scattered_start', 'scattered')`);
        rmSync(`${file}.wal`, { force: true });
        copyFileSync(copied, file);
        const setting = flags.length > 0 ? flags.join(' ') : '(defaults)';
        log(`streaming with ${setting}`);
        const row = await cli([...flags, 'cdc', 'scattered', 'scattered'], end).then(
          (run) => `| ${setting} | ${run.seconds.toFixed(1)} s | ${Math.round(run.peakRssMb)} MB | |`,
          (error: Error) =>
            `| ${setting} | | | failed: ${/pg-replicate: error: (.*)/.exec(error.message)?.[1]?.slice(0, 160) ?? error.message} |`,
        );
        log(row);
        results.push(row);
      }
    }
    process.stdout.write(
      [
        `scattered updates: ${args.transactions} transactions of 10,000 random updates and 1,000 random deletes over ${rows.toLocaleString('en-US')} rows${args.toast ? ' with a ~2 KB TOASTed column the updates leave alone' : ''} (copied in ${copy.seconds.toFixed(1)} s, ${Math.round(copy.peakRssMb)} MB), streamed into DuckDB`,
        '',
        '| CLI flags | wall time | peak RSS | |',
        '|---|---:|---:|---|',
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
  process.stderr.write(`scattered: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
