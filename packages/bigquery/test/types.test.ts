/**
 * Every type the README's mapping table lists, through the copy and as changes, compared with
 * what Postgres itself computes as BigQuery's value (see `harness.ts`); then the values BigQuery's
 * types cannot hold, with both policies.
 */
import { describe, expect, it } from 'vitest';
import { expectSameRows, PROJECT, replicate, setupSuite, sinkOptions } from './harness.js';

const suite = setupSuite('bq_types');

const TYPES_TABLE = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE TYPE pair AS (a int, b text);
  CREATE DOMAIN positive AS int CHECK (VALUE > 0);
  CREATE TABLE types (
    id int PRIMARY KEY,
    i2 int2, i4 int4, i8 int8, n numeric(12,3), nbig numeric(40,10), nwide numeric(60,2), nu numeric,
    f4 float4, f8 float8, b bool, t text, vc varchar(20), bp char(5),
    by bytea, d date, ts timestamp, tstz timestamptz, tm time, tmtz timetz, iv interval,
    u uuid, j json, jb jsonb, ia int[], ta text[], tsa timestamp[], na numeric(10,2)[],
    m mood, pr pair, pos positive, inet_col inet, pt point, r int4range, money_col money
  );
  CREATE PUBLICATION pub_types FOR TABLE types;`;

function typeRows(offset: number): string {
  return `
  INSERT INTO types VALUES
   (${offset + 1}, -32768, -2147483648, -9223372036854775808, -123456789.125, '123456789012345678901234567890.0123456789',
    '1234567890123456789012345678901234567890123456789012345678.99', 'NaN',
    1.1, 'Infinity', true, E'tab\\there\\nnew line \\\\ backslash', '', 'ab',
    '\\x00ff10', '0001-01-01', '0001-01-01 00:00:00', '2024-02-29 23:59:59.999999+05:30', '00:00:00', '10:11:12.5+05:30',
    '-1 years -2 mons +3 days -04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{ "a" : [1, 2.50, 1e10] }',
    '{"z": 1, "a": "é\\n", "big": 12345678901234567}', '{1,2,3}', '{"a,b","c\\"d","NULL",""}', '{"2024-01-01 10:00:00.5","1999-12-31 23:59:59"}',
    '{1.50,-2}', 'happy', ROW(1, 'x,y'), 7, '192.168.0.1/24', '(1.5,2)', '[1,10)', 12.34),
   (${offset + 2}, 32767, 2147483647, 9223372036854775807, 0, '-0.5', '0', 'Infinity',
    '-Infinity', '-0', false, 'ü€😀 \\N', 'x', NULL,
    '\\x', '9999-12-31', '9999-12-31 23:59:59.999999', '0001-01-01 00:00:00+00', '23:59:59.999999', '00:00:00-15:59',
    '00:00:00', '00000000-0000-0000-0000-000000000000', 'null', '[]', '{}', '{}', '{}', '{}', 'sad', ROW(NULL, NULL), 1,
    NULL, NULL, 'empty', -1),
   (${offset + 3}, NULL, NULL, NULL, NULL, NULL, NULL, '-Infinity', '1.17549435e-38', '2.2250738585072014e-308', NULL, NULL,
    NULL, NULL, NULL, '1970-01-01', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999+00', NULL, NULL, '10000 years',
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
   (${offset + 4}, 1, 2, 3, 0.001, '0.0000000001', '0', '123456789012345678901234567890.123456789', '3.4028235e+38', '1e-320', true,
    repeat('long text ', 1000), 'y', 'abcde', decode(repeat('ab', 5000), 'hex'), '2000-02-29', '1999-12-31 23:59:59.000001',
    '1970-01-01 00:00:00+00', '12:34:56.789012', '23:59:59.999999+14', '-3660000 days -87840000 hours', gen_random_uuid(),
    '"just a string"', '12345678901234567890', '{-1,0,1}', '{"\\\\","\\t"}', '{}', '{0.01}', 'ok', ROW(-5, ''), 2, '::1', '(0,0)', '(,5]', 0);`;
}

describe('type mapping', () => {
  it('copies and streams every type exactly', async () => {
    await suite.db.sql(TYPES_TABLE);
    await suite.db.sql(typeRows(0));
    const options = sinkOptions(suite.fake, 'types');
    await replicate(suite.db, { publication: 'pub_types', slot: 'slot_types', sink: options });
    await expectSameRows(suite.db, suite.fake, 'types', 'types');
    // The same values again, this time as changes.
    await suite.db.sql(typeRows(10));
    await suite.db.sql(
      `UPDATE types SET t = t || '!', ta = ta || '{x}'::text[] WHERE id IN (1, 11); DELETE FROM types WHERE id = 2`,
    );
    await replicate(suite.db, { publication: 'pub_types', slot: 'slot_types', sink: options });
    expect(await expectSameRows(suite.db, suite.fake, 'types', 'types')).toBe(7);
    const table = suite.fake.rows(PROJECT, 'types', 'public_types');
    expect(table.length).toBe(7);
  });

  it('creates the table with its key, clustering, max_staleness and BigQuery types', async () => {
    await suite.db.sql(`
      CREATE TABLE keyed (region text, id bigint, at date, payload jsonb, PRIMARY KEY (region, id, at));
      CREATE PUBLICATION pub_keyed FOR TABLE keyed;`);
    await replicate(suite.db, {
      publication: 'pub_keyed',
      mode: 'copy',
      sink: sinkOptions(suite.fake, 'layout', { maxStaleness: '15m' }),
    });
    const view = suite.fake.table(PROJECT, 'layout', 'public_keyed');
    expect(view?.type).toBe('VIEW');
    const target = /`[^`]*\.([^`.]+)`/.exec(view?.viewQuery ?? '')?.[1] ?? '';
    const table = suite.fake.table(PROJECT, 'layout', target)!;
    expect(table.primaryKey).toEqual(['region', 'id', 'at']);
    expect(table.clustering).toEqual(['region', 'id', 'at']);
    expect(table.maxStaleness).toBe('0-0 0 0:15:0');
    // A changed option is applied to the existing table on the next start.
    await replicate(suite.db, {
      publication: 'pub_keyed',
      mode: 'copy',
      sink: sinkOptions(suite.fake, 'layout', { maxStaleness: 90 }),
    });
    expect(suite.fake.table(PROJECT, 'layout', target)?.maxStaleness).toBe('0-0 0 0:1:30');
    expect(table.schema).toEqual([
      { name: 'region', type: 'STRING', mode: 'REQUIRED' },
      { name: 'id', type: 'INT64', mode: 'REQUIRED' },
      { name: 'at', type: 'DATE', mode: 'REQUIRED' },
      { name: 'payload', type: 'JSON', mode: 'NULLABLE' },
    ]);
  });
});

describe('values BigQuery cannot hold', () => {
  const setup = `
    CREATE TABLE odd (id int PRIMARY KEY, n numeric(10,2), d date, ts timestamptz, tm time, iv interval, ia int[], note text);
    CREATE PUBLICATION pub_odd FOR TABLE odd;
    INSERT INTO odd VALUES (1, 1, '2024-01-01', now(), '12:00', '1 day', '{1}', 'fine');`;

  it('stop the pipeline naming table, column and row (policy error)', async () => {
    await suite.db.sql(setup);
    const options = sinkOptions(suite.fake, 'odd_error');
    await replicate(suite.db, { publication: 'pub_odd', slot: 'slot_odd', sink: options });
    await suite.db.sql(`INSERT INTO odd VALUES (2, 'NaN', NULL, NULL, NULL, NULL, NULL, 'nan')`);
    await expect(
      replicate(suite.db, { publication: 'pub_odd', slot: 'slot_odd', sink: options }),
    ).rejects.toThrow(/"public"."odd".n of row \(id=2\): NaN does not fit in BigQuery's NUMERIC/);
    await suite.db.sql(`DELETE FROM odd WHERE id = 2; SELECT pg_drop_replication_slot('slot_odd')`);
  });

  it('become NULL with a warning under policy null', async () => {
    const warnings: string[] = [];
    const options = sinkOptions(suite.fake, 'odd_null', {
      unrepresentable: 'null',
      logger: { info: () => {}, warn: (message) => warnings.push(message) },
    });
    await replicate(suite.db, { publication: 'pub_odd', slot: 'slot_odd_null', sink: options });
    await suite.db.sql(`
      INSERT INTO odd VALUES
        (3, 'NaN', '0044-03-15 BC', 'infinity', '24:00:00', '200000 years', '{1,NULL}', 'odd'),
        (4, 'NaN', 'infinity', '10000-01-01 00:00:00+00', '24:00', '-200000 years', '{{1,2},{3,4}}', 'odd');`);
    await replicate(suite.db, { publication: 'pub_odd', slot: 'slot_odd_null', sink: options });
    const rows = suite.fake.rows(PROJECT, 'odd_null', 'public_odd').filter((row) => Number(row.id) >= 3);
    expect(rows).toHaveLength(2);
    for (const row of rows)
      expect([row.n, row.d, row.ts, row.tm, row.iv, row.ia, row.note]).toEqual([
        null,
        null,
        null,
        null,
        null,
        [],
        'odd',
      ]);
    expect(warnings.join('\n')).toMatch(
      /"public"."odd".n: NaN does not fit in BigQuery's NUMERIC; written as NULL \(row \(id=3\)\)/,
    );
    expect(warnings).toHaveLength(6);
  });
});
