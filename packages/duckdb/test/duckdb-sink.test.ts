/**
 * The DuckDB sink end to end: real Postgres, the real pipeline, a real DuckDB file; every test
 * ends by comparing the tables on both sides value for value.
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RowData, TableSchema } from '../../pg-replicate/src/index.js';
import { Pipeline } from '../../pg-replicate/src/pipeline/pipeline.js';
import { PostgresSource } from '../../pg-replicate/src/source/postgres-source.js';
import { TypeRegistry } from '../../pg-replicate/src/types/type-registry.js';
import { DuckDbDatabase } from '../src/duckdb-database.js';
import { DuckDbSink } from '../src/index.js';
import {
  currentLsn,
  expectEqualTables,
  freshDatabase,
  queryDuckDb,
  replicate,
  scratchDir,
  type TestDatabase,
} from './harness.js';

let db: TestDatabase;
/** Before Postgres 17 the interval input rejects more hours than int32 seconds hold. */
let longestInterval = '2562047788 hours';
let scratch: ReturnType<typeof scratchDir>;

beforeAll(async () => {
  db = await freshDatabase('duckdb_sink');
  scratch = scratchDir();
  const [version] = await db.sql<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  if (Number(version!.v) < 170000) longestInterval = '596523 hours 14 mins 7.999999 secs';
});
afterAll(async () => {
  await db?.close();
  scratch?.remove();
});

/** Values that stress every conversion: specials, limits, escapes, BC, NULLs. */
const TYPES_TABLE = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE TABLE types (
    id int PRIMARY KEY,
    i2 int2, i4 int4, i8 int8, n numeric(12,3), nu numeric, nbig numeric(50,10),
    f4 float4, f8 float8, b bool, t text, vc varchar(20), bp char(5),
    by bytea, d date, ts timestamp, tstz timestamptz(3), tm time, tmtz timetz, iv interval,
    u uuid, j json, jb jsonb, ia int[], ta text[], m mood, inet_col inet, pt point, r int4range
  );
  CREATE PUBLICATION pub_types FOR TABLE types;`;

function typeRows(offset: number): string {
  return `
  INSERT INTO types VALUES
   (${offset + 1}, -32768, -2147483648, -9223372036854775808, -123456789.125, 'NaN', '12345678901234567890123456789012345678.0123456789',
    'NaN', 'Infinity', true, E'tab\\there\\nnew line \\\\ backslash', '', 'ab',
    '\\x00ff10', '0044-03-15 BC', '0001-01-01 00:00:00 BC', '2024-02-29 23:59:59.999+05:30', '24:00:00', '10:11:12.5+05:30',
    '-1 years -2 mons +3 days -04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{ "a" : [1, 2.50, 1e400], "a": "dup" }',
    '{"z": 1, "a": "é\\n"}', '{1,NULL,3}', '{"a,b","c\\"d",NULL,"NULL",""}', 'happy', '192.168.0.1/24', '(1.5,2)', '[1,10)'),
   (${offset + 2}, 32767, 2147483647, 9223372036854775807, 0, 'Infinity', '-0.5',
    '-Infinity', '-0', false, 'ü€😀 \\N', 'x', NULL,
    '\\x', 'infinity', '-infinity', 'infinity', '00:00:00', '00:00:00-15:59', '00:00:00',
    '00000000-0000-0000-0000-000000000000', 'null', '[]', '{}', '{}', 'sad', NULL, NULL, 'empty'),
   (${offset + 3}, NULL, NULL, NULL, NULL, '-Infinity', NULL, '1.17549435e-38', '2.2250738585072014e-308', NULL, NULL, NULL, NULL,
    NULL, '-infinity', '294246-12-31 23:59:59.999999', '4713-11-24 00:00:00+00 BC', NULL, NULL, '178000000 years',
    NULL, NULL, NULL, NULL, '{NULL}', NULL, NULL, NULL, NULL),
   (${offset + 4}, 1, 2, 3, 0.001, '123456789012345678901234567890.123456789', '0', '3.4028235e+38', '1e-320', true,
    repeat('long text ', 1000), 'y', 'abcde', decode(repeat('ab', 5000), 'hex'), '2000-01-01', '1999-12-31 23:59:59.000001',
    '1970-01-01 00:00:00+00', '12:34:56.789012', '23:59:59.999999+14', '${longestInterval}', gen_random_uuid(),
    '"just a string"', '12345678901234567890', '{-1,0,1}', '{"\\\\","\\t"}', 'ok', '::1', '(0,0)', '(,5]');`;
}

/** A keyed two-column table (`id int`, second column of `valueType`) for driving the sink by hand. */
function twoColumnTable(name: string, valueColumn: string, valueType: 'integer' | 'text'): TableSchema {
  return {
    relationId: 1,
    schema: 'public',
    name,
    columns: [
      { name: 'id', typeOid: 23, typeMod: -1, typeName: 'integer', nullable: false, isKey: true },
      {
        name: valueColumn,
        typeOid: valueType === 'integer' ? 23 : 25,
        typeMod: -1,
        typeName: valueType,
        nullable: true,
        isKey: false,
      },
    ],
    primaryKey: ['id'],
    replicaIdentity: 'default',
  };
}

/** A row of that table: its id and the text of its second column. */
function twoColumnRow(id: number, value: string): RowData {
  return {
    length: 2,
    isNull: () => false,
    isUnchangedToast: () => false,
    text: (i: number) => (i === 0 ? String(id) : value),
  };
}

describe('DuckDB sink', () => {
  it('copies and streams every type exactly', async () => {
    await db.sql(TYPES_TABLE);
    await db.sql(typeRows(0));
    const path = join(scratch.dir, 'types.duckdb');
    await replicate(db, { publication: 'pub_types', slot: 'slot_types', sink: { path } });
    await expectEqualTables(db, path, ['public.types']);
    // The same values again, this time as changes.
    await db.sql(typeRows(10));
    await db.sql(
      `UPDATE types SET t = t || '!', ta = ta || '{x}'::text[] WHERE id IN (1, 11); DELETE FROM types WHERE id = 2`,
    );
    await replicate(db, { publication: 'pub_types', slot: 'slot_types', sink: { path } });
    await expectEqualTables(db, path, ['public.types']);
  });

  it('refuses a DuckDB file another process holds, with SINK_LOCKED', async () => {
    const path = join(scratch.dir, 'locked.duckdb');
    const other = await DuckDBInstance.create(path);
    try {
      // The lock is per process; another process is needed to see it.
      const { spawnSync } = await import('node:child_process');
      const child = spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { DuckDbSink } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
           const sink = new DuckDbSink({ path: ${JSON.stringify(path)} });
           try { await sink.open({ types: null, pipelineId: 'x' }); console.log('opened'); }
           catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, hint: e.hint })); }`,
        ],
        { encoding: 'utf8' },
      );
      expect(child.stderr).toBe('');
      const result = JSON.parse(child.stdout) as { code: string; message: string; hint: string };
      expect(result.code).toBe('SINK_LOCKED');
      expect(result.message).toContain(path);
      expect(result.hint).toMatch(/another/);
    } finally {
      other.closeSync();
    }
  });

  it('opens a file it closed cleanly and resumes where it stopped', async () => {
    const path = join(scratch.dir, 'restart.duckdb');
    await db.sql(`CREATE TABLE restart (id int PRIMARY KEY, v text);
      INSERT INTO restart SELECT g, 'v' || g FROM generate_series(1, 100) g;
      CREATE PUBLICATION pub_restart FOR TABLE restart;`);
    const first = await replicate(db, { publication: 'pub_restart', slot: 'slot_restart', sink: { path } });
    expect(first.stats.rowsCopied).toBe(100);
    await db.sql(`UPDATE restart SET v = v || '+' WHERE id % 3 = 0; DELETE FROM restart WHERE id > 90;`);
    const second = await replicate(db, { publication: 'pub_restart', slot: 'slot_restart', sink: { path } });
    expect(second.stats.rowsCopied).toBe(0);
    expect(second.stats.updates).toBe(33);
    await expectEqualTables(db, path, ['public.restart']);
    // A third run with nothing new applies nothing and changes nothing.
    const third = await replicate(db, { publication: 'pub_restart', slot: 'slot_restart', sink: { path } });
    expect(third.stats.updates + third.stats.inserts + third.stats.deletes).toBe(0);
    await expectEqualTables(db, path, ['public.restart']);
    const sink = new DuckDbSink({ path });
    await expect(sink.prepare([])).rejects.toThrow(/not open/);
  });

  it('copies a table without key; streams it only when told it is append-only', async () => {
    await db.sql(`
      CREATE TABLE keyless (v text, n int);
      INSERT INTO keyless VALUES ('a', 1), ('a', 1), ('b', 2);
      CREATE PUBLICATION pub_keyless FOR TABLE keyless WITH (publish = 'insert, truncate');`);
    const copyPath = join(scratch.dir, 'keyless-copy.duckdb');
    await replicate(db, { publication: 'pub_keyless', sink: { path: copyPath }, mode: 'copy' });
    await expectEqualTables(db, copyPath, ['public.keyless']);

    const path = join(scratch.dir, 'keyless.duckdb');
    const source = () =>
      new PostgresSource({
        connection: db.options,
        publication: 'pub_keyless',
        slot: 'slot_keyless',
        requireReplicaIdentity: false,
      });
    const refused = new Pipeline({
      source: source(),
      sink: new DuckDbSink({ path }),
      mode: 'both',
      endLsn: await currentLsn(db),
    });
    await expect(refused.run()).rejects.toMatchObject({
      code: 'NO_REPLICA_IDENTITY',
      hint: expect.stringMatching(/appendOnlyWithoutKey/),
    });
    await db.sql(
      `INSERT INTO keyless VALUES ('c', 3), ('a', 1); TRUNCATE keyless; INSERT INTO keyless VALUES ('d', 4), ('d', 4);`,
    );
    const sink = new DuckDbSink({ path, appendOnlyWithoutKey: true });
    await new Pipeline({
      source: source(),
      sink,
      mode: 'both',
      batchMaxDelayMs: 20,
      endLsn: await currentLsn(db),
    }).run();
    await expectEqualTables(db, path, ['public.keyless']);
  });

  it('refuses values DuckDB cannot hold, naming the column, until the column is made VARCHAR', async () => {
    await db.sql(`
      CREATE TABLE odd (id int PRIMARY KEY, n numeric(6,2), grid int[]);
      INSERT INTO odd VALUES (1, 1.5, '{1,2}');
      CREATE PUBLICATION pub_odd FOR TABLE odd;`);
    const path = join(scratch.dir, 'odd.duckdb');
    await replicate(db, { publication: 'pub_odd', slot: 'slot_odd', sink: { path } });
    await db.sql(`UPDATE odd SET n = 'NaN' WHERE id = 1`);
    const nan = replicate(db, { publication: 'pub_odd', slot: 'slot_odd', sink: { path } });
    await expect(nan).rejects.toMatchObject({
      code: 'SINK_ERROR',
      message: expect.stringMatching(/column "n" of "public"."odd" .*DECIMAL\(6,2\): NaN/),
    });
    await expect(nan).rejects.toMatchObject({ hint: expect.stringMatching(/VARCHAR/) });
    // The way out the hint names: DuckDB keeps the Postgres text from then on.
    const duck = await DuckDBInstance.create(path);
    const connection = await duck.connect();
    await connection.run('ALTER TABLE public.odd ALTER COLUMN n TYPE VARCHAR');
    connection.closeSync();
    duck.closeSync();
    await replicate(db, { publication: 'pub_odd', slot: 'slot_odd', sink: { path } });
    await expectEqualTables(db, path, ['public.odd']);

    await db.sql(`UPDATE odd SET grid = '{{1,2},{3,4}}' WHERE id = 1`);
    await expect(
      replicate(db, { publication: 'pub_odd', slot: 'slot_odd', sink: { path } }),
    ).rejects.toMatchObject({
      code: 'SINK_ERROR',
      message: expect.stringMatching(/column "grid" of "public"."odd".*multi-dimensional/),
    });
  });

  it('copies and bulk-loads under copyMemoryLimit, and applies other changes under memoryLimit', async () => {
    // 8MB holds a load of a few rows, not 20 MB of rows (checked below).
    const limits = { copyMemoryLimit: '8MB', memoryLimit: '256MB' };
    await db.sql(`
      CREATE TABLE roomy (id int PRIMARY KEY, t text);
      CREATE TABLE later (id int PRIMARY KEY);
      INSERT INTO roomy VALUES (1, 'a'), (2, 'b');
      INSERT INTO later VALUES (1);
      CREATE PUBLICATION pub_roomy FOR TABLE roomy;`);
    const path = join(scratch.dir, 'roomy.duckdb');
    const options = { publication: 'pub_roomy', slot: 'slot_roomy', batchMaxRows: 10_000 };
    await replicate(db, { ...options, sink: { path, ...limits } });
    // A bulk load: 20 MB of inserts in one transaction, in parts.
    await db.sql(`
      INSERT INTO roomy SELECT g, repeat(md5(g::text), 32) FROM generate_series(3, 20000) g;
      ALTER PUBLICATION pub_roomy ADD TABLE later;`);

    // This run copies "later" first (under 8MB), then meets the bulk load (under 8MB too).
    const tight = join(scratch.dir, 'roomy-tight.duckdb');
    await copyFile(path, tight);
    // DuckDB runs out of memory either as an Out of Memory Error or, in a checkpoint, failing to pin a block.
    await expect(
      replicate(db, { ...options, sink: { path: tight, memoryLimit: '8MB' } }),
    ).rejects.toMatchObject({
      code: 'SINK_ERROR',
      message: expect.stringMatching(/Out of Memory|failed to pin block/),
    });
    await expect(replicate(db, { ...options, sink: { path, ...limits } })).rejects.toMatchObject({
      code: 'SINK_ERROR',
      message: expect.stringMatching(/Out of Memory/),
      hint: expect.stringMatching(/bulk load .* copyMemoryLimit/),
    });
    await replicate(db, { ...options, sink: { path, ...limits, copyMemoryLimit: '64MB' } });
    await expectEqualTables(db, path, ['public.roomy', 'public.later']);
    // 20 MB of updates in one transaction are not a bulk load: applied under memoryLimit.
    await db.sql(`UPDATE roomy SET t = t || 'x'`);
    await replicate(db, { ...options, sink: { path, ...limits } });
    await expectEqualTables(db, path, ['public.roomy', 'public.later']);
    // And copies are held to copyMemoryLimit: 20 MB of rows do not load under 8MB.
    await expect(
      replicate(db, { publication: 'pub_roomy', mode: 'copy', sink: { path: tight, ...limits } }),
    ).rejects.toMatchObject({ code: 'SINK_ERROR', message: expect.stringMatching(/Out of Memory/) });
  });

  it('gives each copied table row groups sized by the width of its rows', async () => {
    // ~2.9 KB rows get 4,096 rows per group (12 MiB of text at most), narrow rows 65,536.
    await db.sql(`
      CREATE TABLE rg_wide (id int PRIMARY KEY, t text);
      CREATE TABLE rg_narrow (id int PRIMARY KEY, t text);
      INSERT INTO rg_wide SELECT g, repeat(md5(g::text), 90) FROM generate_series(1, 5000) g;
      INSERT INTO rg_narrow SELECT g, 'n' || g FROM generate_series(1, 70000) g;
      CREATE PUBLICATION pub_rg FOR TABLE rg_wide, rg_narrow;`);
    const path = join(scratch.dir, 'row-groups.duckdb');
    await replicate(db, { publication: 'pub_rg', mode: 'copy', sink: { path } });
    await expectEqualTables(db, path, ['public.rg_wide', 'public.rg_narrow']);
    const groups = async (table: string) => {
      const rows = await queryDuckDb(
        path,
        `SELECT row_group_id, max(count)::int AS n FROM pragma_storage_info('public.${table}')
          WHERE column_id = 0 GROUP BY 1 ORDER BY 1`,
      );
      return rows.map((row) => row['n']);
    };
    expect(await groups('rg_wide')).toEqual([4096, 904]);
    expect(await groups('rg_narrow')).toEqual([65_536, 4464]);
  });

  it("records each table's key and columns in its state row, rewriting only what changed", async () => {
    await db.sql(`
      CREATE TABLE doc_a (id int PRIMARY KEY, v text);
      CREATE TABLE doc_b (k1 int, k2 text, n numeric, PRIMARY KEY (k1, k2));
      CREATE TABLE doc_c (id int PRIMARY KEY);
      INSERT INTO doc_a VALUES (1, 'a');
      CREATE PUBLICATION pub_doc FOR TABLE doc_a, doc_b;`);
    const path = join(scratch.dir, 'described.duckdb');
    const options = { publication: 'pub_doc', slot: 'slot_doc', sink: { path } };
    const described = async () => {
      const rows = await queryDuckDb(
        path,
        `SELECT table_key, copied, key_columns, CAST(pg_columns AS VARCHAR) AS pg_columns, epoch_us(updated_at) AS at
           FROM _pg_replicate.tables WHERE pipeline_id = 'slot_doc' ORDER BY table_key`,
      );
      return new Map(rows.map(({ table_key, ...row }) => [table_key, row]));
    };
    const columns = (...names: [string, string][]) =>
      JSON.stringify(names.map(([name, type]) => ({ name, type })));
    const [a, b, c] = ['"public"."doc_a"', '"public"."doc_b"', '"public"."doc_c"'];

    await replicate(db, options);
    const first = await described();
    expect(first.get(a)).toMatchObject({
      copied: true,
      key_columns: ['id'],
      pg_columns: columns(['id', 'integer'], ['v', 'text']),
    });
    expect(first.get(b)).toMatchObject({
      key_columns: ['k1', 'k2'],
      pg_columns: columns(['k1', 'integer'], ['k2', 'text'], ['n', 'numeric']),
    });
    // A restart with nothing changed writes none of them.
    await replicate(db, options);
    expect(await described()).toEqual(first);

    // A changed table is described again; a table new to the publication gets its row.
    await db.sql(`
      ALTER TABLE doc_b ADD COLUMN flag bool;
      INSERT INTO doc_b VALUES (1, 'x', 2.5, true);
      ALTER PUBLICATION pub_doc ADD TABLE doc_c;`);
    await replicate(db, options);
    const second = await described();
    expect(second.get(a)).toEqual(first.get(a));
    expect(second.get(b)).toMatchObject({
      pg_columns: columns(['k1', 'integer'], ['k2', 'text'], ['n', 'numeric'], ['flag', 'boolean']),
    });
    expect(second.get(b)!['at']).toBeGreaterThan(first.get(b)!['at'] as bigint);
    expect(second.get(c)).toMatchObject({ copied: true, key_columns: ['id'] });
    await expectEqualTables(db, path, ['public.doc_a', 'public.doc_b', 'public.doc_c']);
  });

  it('checkpoints while copying many small tables, whose rows DuckDB holds in memory until then', async () => {
    // ~62 KiB each in memory until a checkpoint (16 KiB a column and more): 300 of them are ~18 MB,
    // over the 8MB copy limit; DuckDB's own checkpoint waits for 16 MB of WAL.
    const names = Array.from({ length: 300 }, (_, i) => `small_${i}`);
    await db.sql(
      `${names.map((name) => `CREATE TABLE ${name} (id int PRIMARY KEY, v text, at timestamptz); INSERT INTO ${name} VALUES (1, 'x', now());`).join('\n')}
       CREATE PUBLICATION pub_small FOR TABLE ${names.join(', ')};`,
    );
    const path = join(scratch.dir, 'small.duckdb');
    await replicate(db, { publication: 'pub_small', mode: 'copy', sink: { path, copyMemoryLimit: '8MB' } });
    const [copied] = await queryDuckDb(
      path,
      `SELECT count(*)::INT AS n FROM _pg_replicate.tables WHERE copied AND table_key LIKE '"public"."small_%'`,
    );
    expect(copied!['n']).toBe(300);
    await expectEqualTables(db, path, ['public.small_0', 'public.small_150', 'public.small_299']);
  });

  it('hands back the blocks DuckDB keeps cached, between transactions only', async () => {
    const database = await DuckDbDatabase.open(join(scratch.dir, 'cache.duckdb'), { memoryLimit: '256MB' });
    const cached = async () => {
      const [row] = await database.rows(
        'SELECT sum(memory_usage_bytes)::DOUBLE AS bytes FROM duckdb_memory()',
        'reading memory use',
      );
      return Number(row!['bytes']);
    };
    try {
      await database.run(
        `CREATE TABLE cached AS SELECT range AS id, md5(range::VARCHAR) || md5((range + 1)::VARCHAR) AS s FROM range(2000000)`,
        'loading',
      );
      await database.rows('SELECT sum(length(s)) AS n FROM cached', 'reading');
      expect(await cached()).toBeGreaterThan(40e6);
      await database.begin();
      await database.releaseCache('16MB');
      expect(await cached()).toBeGreaterThan(40e6);
      await database.commit();
      await database.releaseCache('16MB');
      expect(await cached()).toBeLessThanOrEqual(16e6);
      const [limit] = await database.rows(`SELECT current_setting('memory_limit') AS v`, 'reading the limit');
      expect(limit!['v']).toBe('244.1 MiB');
    } finally {
      await database.close();
    }
  });

  it('merges row groups at checkpoints only in phases that ask for it, and keeps the setting when a phase leaves it out', async () => {
    const database = await DuckDbDatabase.open(join(scratch.dir, 'merge.duckdb'), { memoryLimit: '256MB' });
    const vacuumTasks = async () => {
      const [row] = await database.rows(
        `SELECT current_setting('max_vacuum_tasks')::INT AS n`,
        'reading the setting',
      );
      return row!['n'];
    };
    try {
      expect(await vacuumTasks()).toBe(100);
      await database.configure({ memoryLimit: '64MB', preserveInsertionOrder: false, mergeRowGroups: false });
      expect(await vacuumTasks()).toBe(0);
      await database.configure({ memoryLimit: '64MB', preserveInsertionOrder: true });
      expect(await vacuumTasks()).toBe(0);
      await database.configure({ memoryLimit: '256MB', preserveInsertionOrder: true, mergeRowGroups: true });
      expect(await vacuumTasks()).toBe(100);
    } finally {
      await database.close();
    }
  });

  it('rolls back a transaction left open by a batch without commit when closed', async () => {
    const path = join(scratch.dir, 'open-tx.duckdb');
    const schema = twoColumnTable('opentx', 'v', 'text');
    const row = twoColumnRow;
    const tx = { xid: 7, commitLsn: 0x2000n, commitTime: 0n };
    const inserts = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, k) => ({
        op: 'insert' as const,
        table: schema,
        new: row(from + k, `v${from + k}`),
        lsn: 0x1000n + BigInt(k),
        tx,
      }));
    const context = { types: new TypeRegistry(), pipelineId: 'opentx', mode: 'cdc' as const };

    const sink = new DuckDbSink({ path });
    expect(await sink.open(context)).toEqual({
      copiedTables: new Map(),
      lastLsn: null,
      partialCopies: new Map(),
    });
    await sink.prepare([schema]);
    await sink.writeChanges({ events: inserts(1, 50) }); // the first part of a transaction
    await sink.writeChanges({ events: inserts(51, 60) });
    await sink.close(); // stopped before its commit arrived

    const again = new DuckDbSink({ path });
    expect((await again.open(context)).lastLsn).toBeNull();
    await again.prepare([schema]);
    await again.writeChanges({ events: inserts(1, 50) }); // delivered again, in full
    await again.writeChanges({ events: inserts(51, 60), commit: { lsn: 0x2010n } });
    await again.close();
    expect(
      await queryDuckDb(path, 'SELECT count(*)::INTEGER AS n, max(id) AS top FROM public.opentx'),
    ).toEqual([{ n: 60, top: 60 }]);
    const reopened = new DuckDbSink({ path });
    expect((await reopened.open(context)).lastLsn).toBe(0x2010n);
    await reopened.close();
  });

  it('runs a bulk load that arrives in parts under the copy limit, and gives updates the whole limit back', async () => {
    const path = join(scratch.dir, 'bulk.duckdb');
    const schema = twoColumnTable('bulk', 'v', 'text');
    const tx = (commitLsn: bigint) => ({ xid: 9, commitLsn, commitTime: 0n });
    const insert = (id: number, commitLsn: bigint) => ({
      op: 'insert' as const,
      table: schema,
      new: twoColumnRow(id, `v${id}`),
      lsn: 1n,
      tx: tx(commitLsn),
    });
    const update = (id: number, commitLsn: bigint) => ({
      op: 'update' as const,
      table: schema,
      new: twoColumnRow(id, `u${id}`),
      old: undefined,
      oldIsKey: false,
      lsn: 1n,
      tx: tx(commitLsn),
    });
    const limits: string[] = [];
    const run = DuckDbDatabase.prototype.run;
    const spy = vi.spyOn(DuckDbDatabase.prototype, 'run').mockImplementation(function (
      this: DuckDbDatabase,
      sql: string,
      what: string,
    ) {
      const set = /^SET memory_limit = '(.*)'$/.exec(sql);
      if (set) limits.push(`${set[1]}${this.inTransaction ? ' inside' : ''}`);
      return run.call(this, sql, what);
    });
    const sink = new DuckDbSink({ path, memoryLimit: '200MB', copyMemoryLimit: '48MB' });
    try {
      await sink.open({ types: new TypeRegistry(), pipelineId: 'bulk', mode: 'cdc' });
      await sink.prepare([schema]);
      limits.length = 0;
      // A transaction in three parts: inserts, inserts, then an update.
      await sink.writeChanges({ events: [insert(1, 0x100n), insert(2, 0x100n)] });
      await sink.writeChanges({ events: [insert(3, 0x100n)] });
      expect(limits).toEqual(['48MB']);
      await sink.writeChanges({ events: [update(1, 0x100n)], commit: { lsn: 0x100n } });
      // Raised inside the transaction for the update; after the commit, the cache is released.
      expect(limits).toEqual(['48MB', '200MB inside', '48MB', '200MB']);
      // A transaction in one batch, and one in parts that begins with an update: the whole limit.
      limits.length = 0;
      await sink.writeChanges({ events: [insert(4, 0x200n)], commit: { lsn: 0x200n } });
      await sink.writeChanges({ events: [update(2, 0x300n)] });
      await sink.writeChanges({ events: [insert(5, 0x300n)], commit: { lsn: 0x300n } });
      // Only the cache releases after the two commits: neither transaction ran under the copy limit.
      expect(limits).toEqual(['48MB', '200MB', '48MB', '200MB']);
    } finally {
      spy.mockRestore();
      await sink.close();
    }
    expect(await queryDuckDb(path, 'SELECT id, v FROM public.bulk ORDER BY id')).toEqual([
      { id: 1, v: 'u1' },
      { id: 2, v: 'u2' },
      { id: 3, v: 'v3' },
      { id: 4, v: 'v4' },
      { id: 5, v: 'v5' },
    ]);
  });

  it('applies batches handed over together in order; one after a failed batch fails with it, unapplied', async () => {
    const path = join(scratch.dir, 'in-flight.duckdb');
    const schema = twoColumnTable('inflight', 'n', 'integer');
    const row = twoColumnRow;
    const tx = { xid: 7, commitLsn: 0x2000n, commitTime: 0n };
    const insert = (id: number, n: string) => ({
      op: 'insert' as const,
      table: schema,
      new: row(id, n),
      lsn: 1n,
      tx,
    });
    const update = (id: number, n: string) => ({
      op: 'update' as const,
      table: schema,
      new: row(id, n),
      old: undefined,
      oldIsKey: false,
      lsn: 1n,
      tx,
    });
    const context = { types: new TypeRegistry(), pipelineId: 'inflight', mode: 'cdc' as const };
    const sink = new DuckDbSink({ path });
    await sink.open(context);
    await sink.prepare([schema]);
    expect(sink.maxChangeBatchesInFlight).toBe(2);
    // The second batch is staged before the first is applied, and must still land after it.
    const first = sink.writeChanges({ events: [insert(1, '1'), insert(2, '2')], commit: { lsn: 0x2000n } });
    const second = sink.writeChanges({ events: [update(1, '10'), insert(3, '3')], commit: { lsn: 0x2100n } });
    await Promise.all([first, second]);
    const failing = sink.writeChanges({ events: [insert(4, 'four')], commit: { lsn: 0x2200n } });
    const after = sink.writeChanges({ events: [update(2, '20'), insert(5, '5')], commit: { lsn: 0x2300n } });
    const error = await failing.catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'SINK_ERROR', message: expect.stringMatching(/column "n"/) });
    await expect(after).rejects.toBe(error);
    await sink.close();
    expect(await queryDuckDb(path, 'SELECT id, n FROM public.inflight ORDER BY id')).toEqual([
      { id: 1, n: 10 },
      { id: 2, n: 2 },
      { id: 3, n: 3 },
    ]);
    const reopened = new DuckDbSink({ path });
    expect((await reopened.open(context)).lastLsn).toBe(0x2100n);
    await reopened.close();
  });
});
