/**
 * The end-to-end scenarios against a real BigQuery project, read back through queries as a user
 * would. Runs when credentials are given, and is skipped otherwise:
 *
 *   BIGQUERY_PROJECT=my-project GOOGLE_APPLICATION_CREDENTIALS=./key.json \
 *     npx vitest run packages/bigquery/test/real-bigquery.test.ts
 *
 * (BIGQUERY_LOCATION picks the location, default US.) Each run creates a dataset
 * `pg_replicate_it_<random>` and deletes it at the end. BQ_REAL_SUITE_ON_FAKE=1 runs the same
 * file against the fake's REST and gRPC faces instead, which keeps the suite itself working.
 */
import { BigQuery } from '@google-cloud/bigquery';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BigQuerySinkOptions } from '../src/index.js';
import { TYPES_TABLE, typeRows } from './fixtures/types-table.js';
import {
  expectSameRows,
  FakeBigQuery,
  freshDatabase,
  PROJECT,
  type RowSource,
  replicate,
  restSource,
  sinkOptions,
  type TestDatabase,
} from './harness.js';

const realProject = process.env.BIGQUERY_PROJECT;
const real = realProject !== undefined && process.env.GOOGLE_APPLICATION_CREDENTIALS !== undefined;
const onFake = process.env.BQ_REAL_SUITE_ON_FAKE === '1';

describe.skipIf(!real && !onFake)(
  `against ${real ? `BigQuery project ${realProject}` : 'the fake, through REST'}`,
  () => {
    const dataset = `pg_replicate_it_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    let db: TestDatabase;
    let fake: FakeBigQuery | undefined;
    let bigquery: BigQuery;
    let source: RowSource;
    let options: BigQuerySinkOptions;

    beforeAll(async () => {
      db = await freshDatabase('bq_real');
      if (real) {
        options = {
          projectId: realProject!,
          datasetId: dataset,
          location: process.env.BIGQUERY_LOCATION ?? 'US',
          maxStaleness: 0,
          logger: { info: () => {}, warn: (message) => process.stderr.write(`${message}\n`) },
        };
        bigquery = new BigQuery({ projectId: realProject!, location: options.location });
        source = restSource(bigquery, realProject!);
      } else {
        fake = await FakeBigQuery.start();
        options = sinkOptions(fake, dataset);
        bigquery = new BigQuery({ projectId: PROJECT, ...fake.clientOptions().bigquery });
        source = restSource(bigquery, PROJECT);
      }
    });
    afterAll(async () => {
      if (real)
        await bigquery
          .dataset(dataset)
          .delete({ force: true })
          .catch(() => {});
      await fake?.stop();
      await db?.close();
    });

    it('copies and streams every type', async () => {
      await db.sql(TYPES_TABLE);
      await db.sql(typeRows(0));
      await replicate(db, { publication: 'pub_types', slot: 'slot_real_types', sink: options });
      await expectSameRows(db, source, dataset, 'types');
      await db.sql(typeRows(10));
      await db.sql(
        `UPDATE types SET t = t || '!' WHERE id IN (1, 11); DELETE FROM types WHERE id = 2; UPDATE types SET id = 99 WHERE id = 3`,
      );
      await replicate(db, { publication: 'pub_types', slot: 'slot_real_types', sink: options });
      expect(await expectSameRows(db, source, dataset, 'types')).toBe(7);
    });

    it('keeps unchanged TOAST values, truncates, adds columns', async () => {
      await db.sql(`
      CREATE TABLE docs (id int PRIMARY KEY, body text, n int);
      INSERT INTO docs SELECT g, (SELECT string_agg(md5(random()::text || i), '') FROM generate_series(1, 400) i), 0 FROM generate_series(1, 5) g;
      CREATE PUBLICATION pub_docs FOR TABLE docs;`);
      await replicate(db, { publication: 'pub_docs', slot: 'slot_real_docs', sink: options });
      await db.sql(`UPDATE docs SET n = 1`);
      await replicate(db, { publication: 'pub_docs', slot: 'slot_real_docs', sink: options });
      await expectSameRows(db, source, dataset, 'docs');
      await db.sql(`
      TRUNCATE docs;
      INSERT INTO docs VALUES (7, 'after the truncate', 7);
      ALTER TABLE docs ADD COLUMN extra jsonb;
      INSERT INTO docs VALUES (8, 'with the new column', 8, '{"x": 1}');`);
      await replicate(db, { publication: 'pub_docs', slot: 'slot_real_docs', sink: options });
      expect(await expectSameRows(db, source, dataset, 'docs')).toBe(2);
    });
  },
);
