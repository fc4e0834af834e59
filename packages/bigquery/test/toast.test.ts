/**
 * Unchanged TOAST values: an update that leaves a large value alone does not send it, and
 * BigQuery's UPSERT replaces whole rows, so the sink merges the value it already holds — from the
 * old row (REPLICA IDENTITY FULL), from what it wrote lately, or from BigQuery, read only once
 * BigQuery is known to have applied every earlier change (the fake models max_staleness).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameRows, FakeBigQuery, PROJECT, replicate, setupSuite, sinkOptions } from './harness.js';

const suite = setupSuite('bq_toast');

/** ~12 kB of random hex: compresses to more than TOAST's 2 kB threshold, so it is stored out of line. */
const BIG = `(SELECT string_agg(md5(random()::text || i), '') FROM generate_series(1, 400) i)`;

async function createDocs(name: string, identity: 'default' | 'full'): Promise<void> {
  await suite.db.sql(`
    CREATE TABLE ${name} (id int PRIMARY KEY, body text, meta jsonb, n int);
    ALTER TABLE ${name} REPLICA IDENTITY ${identity === 'full' ? 'FULL' : 'DEFAULT'};
    INSERT INTO ${name} SELECT g, ${BIG}, jsonb_build_object('blob', ${BIG}), 0 FROM generate_series(1, 5) g;
    CREATE PUBLICATION pub_${name} FOR TABLE ${name};`);
}

function queries(): number {
  return suite.fake.rest.calls.get('POST /queries') ?? 0;
}

describe('unchanged TOAST values', () => {
  it('are read from BigQuery when this process never wrote the row', async () => {
    await createDocs('docs', 'default');
    const options = sinkOptions(suite.fake, 'toast');
    await replicate(suite.db, { publication: 'pub_docs', slot: 'slot_docs', sink: options });
    await suite.db.sql(`UPDATE docs SET n = n + 1`);
    const before = queries();
    await replicate(suite.db, { publication: 'pub_docs', slot: 'slot_docs', sink: options });
    // The state, then one lookup of the five rows.
    expect(queries() - before).toBe(2);
    await expectSameRows(suite.db, suite.fake, 'toast', 'docs');
  });

  it('come from what the sink wrote lately, without asking BigQuery', async () => {
    const options = sinkOptions(suite.fake, 'toast');
    await suite.db.sql(`
      INSERT INTO docs VALUES (100, ${BIG}, '{"small": true}', 0);
      UPDATE docs SET body = ${BIG}, meta = '{}' WHERE id = 1;
      UPDATE docs SET n = 7 WHERE id IN (1, 100);
      UPDATE docs SET n = 8 WHERE id IN (1, 100);`);
    const before = queries();
    await replicate(suite.db, { publication: 'pub_docs', slot: 'slot_docs', sink: options });
    expect(queries() - before).toBe(1);
    await expectSameRows(suite.db, suite.fake, 'toast', 'docs');
  });

  it('come from the old row under REPLICA IDENTITY FULL', async () => {
    await createDocs('full_docs', 'full');
    const options = sinkOptions(suite.fake, 'toast');
    await replicate(suite.db, { publication: 'pub_full_docs', slot: 'slot_full_docs', sink: options });
    await suite.db.sql(`UPDATE full_docs SET n = n + 1; UPDATE full_docs SET id = id + 10 WHERE id = 1`);
    const before = queries();
    await replicate(suite.db, { publication: 'pub_full_docs', slot: 'slot_full_docs', sink: options });
    expect(queries() - before).toBe(1);
    await expectSameRows(suite.db, suite.fake, 'toast', 'full_docs', 'public_full_docs');
  });

  it('survive a key change under REPLICA IDENTITY DEFAULT', async () => {
    const options = sinkOptions(suite.fake, 'toast');
    await suite.db.sql(`UPDATE docs SET id = 50, n = 1 WHERE id = 2`);
    await replicate(suite.db, { publication: 'pub_docs', slot: 'slot_docs', sink: options });
    await expectSameRows(suite.db, suite.fake, 'toast', 'docs');
  });
});

describe('with max_staleness', () => {
  let stale: FakeBigQuery;
  beforeAll(async () => {
    // The background apply runs only when the test says so.
    stale = await FakeBigQuery.start({ applyIntervalMs: 600_000 });
  });
  afterAll(async () => stale?.stop());

  it('are read only once BigQuery applied the earlier changes', async () => {
    await createDocs('stale_docs', 'default');
    const options = sinkOptions(stale, 'stale', { maxStaleness: '10s', clockMarginMs: 200 });
    await replicate(suite.db, { publication: 'pub_stale_docs', slot: 'slot_stale_docs', sink: options });
    stale.store.applyAll();
    await suite.db.sql(`UPDATE stale_docs SET body = 'v2 ' || ${BIG}, meta = '{}' WHERE id = 1`);
    await replicate(suite.db, { publication: 'pub_stale_docs', slot: 'slot_stale_docs', sink: options });
    // A query now would read the table as of the last apply: body is still v1 there.
    const view = stale.table(PROJECT, 'stale', 'public_stale_docs')!;
    const version = stale.table(PROJECT, 'stale', /\.([^.`]+)`$/.exec(view.viewQuery!)![1]!)!;
    expect(version.queryRows().find((row) => row.id === '1')?.body).not.toMatch(/^v2 /);

    await suite.db.sql(`UPDATE stale_docs SET n = 42`);
    const warnings: string[] = [];
    const timer = setTimeout(() => stale.store.applyAll(), 1_000);
    await replicate(suite.db, {
      publication: 'pub_stale_docs',
      slot: 'slot_stale_docs',
      sink: { ...options, logger: { info: () => {}, warn: (message) => warnings.push(message) } },
    });
    clearTimeout(timer);
    expect(warnings.join('\n')).toMatch(/waiting up to \d+ s for BigQuery to apply recent changes/);
    expect(stale.rows(PROJECT, 'stale', 'public_stale_docs').find((row) => row.id === '1')?.body).toMatch(
      /^v2 /,
    );
    await expectSameRows(suite.db, stale, 'stale', 'stale_docs');
  });
});
