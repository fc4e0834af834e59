/**
 * Crash safety: the pipeline process is SIGKILLed during the backfill and while streaming, under
 * a random workload, restarted, and its tables compared with Postgres. A few trials here (CI);
 * `scripts/fault-trials.mjs` runs many. Runs the built packages: `npm test` builds first.
 */
import { existsSync } from 'node:fs';
import { expect, inject, it } from 'vitest';
// @ts-expect-error plain JS shared with the fault-trial script
import { runTrial } from './fixtures/fault-trial.mjs';
import { scratchDir, type TableDiff } from './harness.js';

interface TrialResult {
  transactions: number;
  kills: { phase: string }[];
  diffs: TableDiff[];
}

const built = ['../dist/index.js', '../../pg-replicate/dist/index.js'].every((file) =>
  existsSync(new URL(file, import.meta.url)),
);

it.skipIf(!built)(
  'loses and duplicates nothing when the pipeline is SIGKILLed and restarted',
  { timeout: 120_000 },
  async () => {
    const scratch = scratchDir('duckdb-fault-');
    try {
      const server = inject('postgres');
      let kills = 0;
      for (const seed of [101, 202]) {
        const result = (await runTrial({
          server,
          seed,
          dir: scratch.dir,
          kills: 3,
          items: 2000,
        })) as TrialResult;
        kills += result.kills.length;
        expect(result.transactions).toBeGreaterThan(10);
        for (const diff of result.diffs) {
          expect(
            diff.examples,
            `seed ${seed}, ${diff.table}: ${diff.missing} lost, ${diff.extra} extra`,
          ).toEqual([]);
          expect(diff.duckRows).toBe(diff.pgRows);
        }
        // A table may end empty (the workload truncates), but the comparison is never vacuous.
        expect(result.diffs.reduce((rows, diff) => rows + diff.pgRows, 0)).toBeGreaterThan(1000);
        expect(result.kills[0]?.phase).toBeDefined();
      }
      expect(kills).toBe(6);
    } finally {
      scratch.remove();
    }
  },
);
