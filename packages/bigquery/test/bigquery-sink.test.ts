/**
 * The BigQuery sink end to end: real Postgres, the real pipeline and Google clients, the fake
 * BigQuery; every test compares the tables on both sides value for value.
 */
import { describe, expect, it } from 'vitest';
import { expectSameRows, PROJECT, replicate, setupSuite, sinkOptions } from './harness.js';

const suite = setupSuite('bq_sink');

describe('BigQuery sink', () => {
  it('copies, then streams inserts, updates and deletes', async () => {
    await suite.db.sql(`
      CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), tags text[], at timestamptz);
      INSERT INTO items SELECT g, 'item ' || g, g * 1.5, ARRAY['a', 'b'], '2024-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 50) g;
      CREATE PUBLICATION pub_items FOR TABLE items;`);
    const options = sinkOptions(suite.fake, 'smoke');
    await replicate(suite.db, { publication: 'pub_items', slot: 'slot_items', sink: options });
    expect(await expectSameRows(suite.db, suite.fake, 'smoke', 'items')).toBe(50);
    await suite.db.sql(`
      UPDATE items SET name = 'renamed', tags = '{}' WHERE id <= 10;
      DELETE FROM items WHERE id BETWEEN 40 AND 45;
      INSERT INTO items VALUES (100, NULL, NULL, NULL, NULL);
      UPDATE items SET id = 200 WHERE id = 20;`);
    await replicate(suite.db, { publication: 'pub_items', slot: 'slot_items', sink: options });
    expect(await expectSameRows(suite.db, suite.fake, 'smoke', 'items')).toBe(45);
    expect(suite.fake.tableNames(PROJECT, 'smoke')).toContain('public_items');
  });
});
