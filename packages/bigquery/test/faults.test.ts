/**
 * Failures: the ones BigQuery documents as passing (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED,
 * INTERNAL, a broken or hung connection, HTTP 429/503) are retried with backoff and change
 * nothing in the result; the others stop the pipeline with the table and the row that caused
 * them; a crash at any point is repaired by running again (replays are harmless).
 */
import { describe, expect, it } from 'vitest';
import { isPgReplicateError } from '../../pg-replicate/src/errors.js';
import { expectSameRows, PROJECT, replicate, setupSuite, sinkOptions } from './harness.js';

const suite = setupSuite('bq_faults');

async function table(name: string, rows = 30): Promise<void> {
  await suite.db.sql(`
    CREATE TABLE ${name} (id int PRIMARY KEY, v text, doc jsonb);
    INSERT INTO ${name} SELECT g, 'v' || g, jsonb_build_object('g', g) FROM generate_series(1, ${rows}) g;
    CREATE PUBLICATION pub_${name} FOR TABLE ${name};`);
}

describe('retryable failures', () => {
  it('are retried until the rows land', async () => {
    await table('flaky');
    const warnings: string[] = [];
    const options = sinkOptions(suite.fake, 'faults', {
      logger: { info: () => {}, warn: (message) => warnings.push(message) },
      requestTimeoutMs: 300,
    });
    const fake = suite.fake;
    fake.injectWriteFault({
      table: 'public_flaky',
      as: 'status',
      code: 14,
      message: 'connection reset',
      times: 2,
    });
    fake.injectWriteFault({
      table: 'public_flaky',
      as: 'response',
      code: 8,
      message: 'Exceeds quota',
      times: 2,
    });
    fake.injectRestFault({ route: 'POST /tables', status: 503, reason: 'backendError' });
    await replicate(suite.db, { publication: 'pub_flaky', slot: 'slot_flaky', sink: options });
    await expectSameRows(suite.db, fake, 'faults', 'flaky');

    await suite.db.sql(`UPDATE flaky SET v = v || '!' WHERE id % 3 = 0; DELETE FROM flaky WHERE id > 25`);
    fake.injectWriteFault({ table: 'public_flaky', as: 'response', code: 13, message: 'internal', times: 1 });
    fake.injectWriteFault({ table: 'public_flaky', as: 'response', code: 10, message: 'aborted', times: 1 });
    fake.injectWriteFault({ table: 'public_flaky', as: 'silence', code: 0 });
    fake.injectWriteFault({ table: '_pg_replicate_state', as: 'status', code: 14, times: 1 });
    fake.injectRestFault({ route: 'POST /queries', status: 429, reason: 'rateLimitExceeded' });
    await replicate(suite.db, { publication: 'pub_flaky', slot: 'slot_flaky', sink: options });
    await expectSameRows(suite.db, fake, 'faults', 'flaky');
    const failures = fake.write.log.filter(
      (entry) => entry.table.startsWith('public_flaky') && entry.outcome !== 'ok',
    );
    expect(failures.map((entry) => entry.outcome)).toEqual(
      expect.arrayContaining(['status 14', 'error 8', 'error 13', 'error 10', 'silence']),
    );
    expect(warnings.some((message) => /RESOURCE_EXHAUSTED: Exceeds quota\); retrying/.test(message))).toBe(
      true,
    );
    expect(
      warnings.some((message) => /DEADLINE_EXCEEDED: no answer in 300 ms\); retrying/.test(message)),
    ).toBe(true);
  });

  it('that do not pass end in a transient error after the last attempt', async () => {
    await table('down', 3);
    suite.fake.injectWriteFault({ table: 'public_down', as: 'status', code: 14, times: 100 });
    const error = await replicate(suite.db, {
      publication: 'pub_down',
      slot: 'slot_down',
      sink: sinkOptions(suite.fake, 'faults', {
        retry: { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5 },
      }),
    }).catch((caught: unknown) => caught);
    suite.fake.write.clearFaults();
    expect(isPgReplicateError(error, 'SINK_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toMatch(
      /appending to "public"."down" .* kept failing: UNAVAILABLE.*\(3 attempts\)/,
    );
    expect((error as { transient: boolean }).transient).toBe(true);
  });
});

describe('rejected rows', () => {
  it('stop the pipeline with the table and the row, and leave the position before them', async () => {
    await table('strict', 3);
    const options = sinkOptions(suite.fake, 'faults');
    await replicate(suite.db, { publication: 'pub_strict', slot: 'slot_strict', sink: options });
    // jsonb keeps 1e400 exactly; BigQuery's JSON refuses a number it cannot store exactly.
    await suite.db.sql(`
      INSERT INTO strict VALUES (10, 'ok', '{"n": 1}');
      INSERT INTO strict VALUES (11, 'wide', '{"n": 1e400}');`);
    const error = await replicate(suite.db, {
      publication: 'pub_strict',
      slot: 'slot_strict',
      sink: options,
    }).catch((caught: unknown) => caught);
    expect(isPgReplicateError(error, 'SINK_ERROR')).toBe(true);
    expect((error as Error).message).toMatch(
      /BigQuery rejected rows of "public"."strict" \(public_strict__v\w+\): INVALID_ARGUMENT: .* — row \(id=11\) \(insert at [0-9A-F]+\/[0-9A-F]+\): field doc: JSON number 10+ cannot be stored exactly/,
    );
    // The position stayed before the rejected change: fixing the row at the source does not skip
    // it, the same change is sent again (and rejected again) rather than lost.
    await suite.db.sql(`UPDATE strict SET doc = '{"n": "1e400"}' WHERE id = 11`);
    await expect(
      replicate(suite.db, { publication: 'pub_strict', slot: 'slot_strict', sink: options }),
    ).rejects.toThrow(/id=11/);
  });
});

describe('a crash', () => {
  it('at any append is repaired by running again', async () => {
    await table('crashy', 10);
    const options = sinkOptions(suite.fake, 'crash');
    await replicate(suite.db, { publication: 'pub_crashy', slot: 'slot_crashy', sink: options });
    for (let round = 0; round < 4; round++) {
      await suite.db.sql(`
        BEGIN;
        INSERT INTO crashy SELECT g, 'r${round}', '{}' FROM generate_series(${100 + round * 50}, ${139 + round * 50}) g;
        UPDATE crashy SET v = v || '.${round}' WHERE id % 2 = ${round % 2};
        DELETE FROM crashy WHERE id % 7 = ${round};
        COMMIT;
        UPDATE crashy SET id = id + 1000 WHERE id = ${100 + round * 50};
        ${round === 2 ? "TRUNCATE crashy; INSERT INTO crashy VALUES (1, 'after truncate', '{}');" : ''}
        INSERT INTO crashy VALUES (${5000 + round}, 'last', '{}');`);
      // PERMISSION_DENIED is not retried: the pipeline stops after `after` appends went through.
      suite.fake.injectWriteFault({ as: 'status', code: 7, message: 'crash', after: 1 + round });
      await expect(
        replicate(suite.db, {
          publication: 'pub_crashy',
          slot: 'slot_crashy',
          sink: options,
          batchMaxRows: 16,
        }),
      ).rejects.toThrow(/PERMISSION_DENIED: crash/);
      suite.fake.write.clearFaults();
      await replicate(suite.db, {
        publication: 'pub_crashy',
        slot: 'slot_crashy',
        sink: options,
        batchMaxRows: 16,
      });
      await expectSameRows(suite.db, suite.fake, 'crash', 'crashy');
    }
    expect(
      suite.fake.tableNames(PROJECT, 'crash').filter((name) => name.startsWith('public_crashy__v')),
    ).toHaveLength(1);
  });
});
