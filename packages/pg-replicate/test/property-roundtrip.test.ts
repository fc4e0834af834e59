/**
 * Property test: random schemas and random values of many types go from Postgres through the
 * whole pipeline (backfill and CDC) into the stdout sink and a strict in-memory sink, and come out
 * exactly as Postgres itself says they are. Postgres is the oracle: the raw text must equal the
 * column's `::text`, and each JSON value must equal what Postgres computes for it (`to_char` for
 * timestamps, `to_json` for JSON-native types), never what our own code computes.
 */
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CopiedRows } from '../src/copy-batch.js';
import type { ChangeBatch, Sink, SinkState } from '../src/index.js';
import { type Lsn, parseLsn } from '../src/lsn.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import type { TableSchema } from '../src/schema.js';
import type { SinkContext } from '../src/sink/sink.js';
import { StdoutSink } from '../src/sink/stdout-sink.js';
import { PostgresSource } from '../src/source/postgres-source.js';
import { freshDatabase, type TestDatabase } from './helpers.js';
import { MemorySink } from './memory-sink.js';

type Random = () => number;

function prng(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

/** How a type's JSON value is checked: against which Postgres expression of the column `c`. */
type JsonOracle = 'number' | 'string' | 'bool' | 'json' | 'timestamptz' | 'timestamp' | 'bytea' | 'text';

interface TypeSpec {
  type: string;
  oracle: JsonOracle;
  values: (random: Random) => string;
}

const int = (random: Random, max: number) => Math.floor(random() * 2 * max) - max;
const text = (random: Random) =>
  pick(random, [
    "''",
    "'plain'",
    "E'tab\\there'",
    "E'new\\nline'",
    "'quote '' \" \\ back'",
    "'🐘 ünï 中文'",
    `'${'x'.repeat(Math.floor(random() * 3000))}'`,
  ]);

const TYPES: TypeSpec[] = [
  { type: 'int2', oracle: 'number', values: (r) => String(pick(r, [-32768, 32767, 0, int(r, 30000)])) },
  { type: 'int4', oracle: 'number', values: (r) => String(pick(r, [-2147483648, 2147483647, int(r, 2e9)])) },
  {
    type: 'int8',
    oracle: 'string',
    values: (r) => pick(r, ['-9223372036854775808', '9223372036854775807', String(int(r, 1e15))]),
  },
  {
    type: 'numeric',
    oracle: 'string',
    values: (r) =>
      pick(r, [
        "'NaN'",
        '0.000000000000000000001',
        '-123456789012345678901234567890.5',
        `${int(r, 1e6)}.${Math.floor(r() * 1e4)}`,
      ]),
  },
  { type: 'numeric(12,3)', oracle: 'string', values: (r) => `${int(r, 1e8)}.${Math.floor(r() * 1000)}` },
  {
    type: 'float8',
    oracle: 'number',
    values: (r) =>
      pick(r, ["'NaN'", "'Infinity'", "'-Infinity'", '5e-324', '1.7976931348623157e308', String(r() * 1e10)]),
  },
  {
    type: 'float4',
    oracle: 'number',
    values: (r) => pick(r, ["'NaN'", '3.4028235e38', '1.17549435e-38', String(r())]),
  },
  { type: 'bool', oracle: 'bool', values: (r) => pick(r, ['true', 'false']) },
  { type: 'text', oracle: 'string', values: text },
  { type: 'varchar(40)', oracle: 'string', values: (r) => `left(${text(r)}, 40)` },
  {
    type: 'bytea',
    oracle: 'bytea',
    values: (r) => pick(r, ["'\\x'", "'\\x00ff'", `decode(md5('${r()}'), 'hex')`]),
  },
  { type: 'uuid', oracle: 'string', values: (r) => `md5('${r()}')::uuid` },
  {
    type: 'jsonb',
    oracle: 'json',
    values: (r) =>
      pick(r, [
        `'{"a": [1, 2.5, null], "b": {"c": "🐘"}}'`,
        `'12345678901234567890123'`,
        `'"str"'`,
        `'[]'`,
        `'{"n": 1e-7}'`,
      ]),
  },
  {
    type: 'json',
    oracle: 'json',
    values: (r) => pick(r, [`'{"dup": 1, "dup": 2}'`, `'  [1,  2 ]'`, `'null'`]),
  },
  {
    type: 'timestamptz',
    oracle: 'timestamptz',
    values: (r) =>
      pick(r, [
        "'2024-02-29 23:59:59.999999+00'",
        "'1970-01-01 00:00:00+00'",
        "'0044-03-15 12:00:00.5+00 BC'",
        `'2000-01-01'::timestamptz + ${Math.floor(r() * 1e15)} * interval '1 microsecond'`,
      ]),
  },
  {
    type: 'timestamp',
    oracle: 'timestamp',
    values: (r) =>
      pick(r, ["'2024-01-01 00:00:00.000001'", "'9999-12-31 23:59:59.999999'", "'1900-06-15 12:30:00'"]),
  },
  {
    type: 'date',
    oracle: 'text',
    values: (r) => pick(r, ["'2024-02-29'", "'0001-01-01 BC'", "'infinity'", "'5874897-12-31'"]),
  },
  { type: 'time', oracle: 'text', values: (r) => pick(r, ["'00:00:00'", "'23:59:59.999999'", "'24:00:00'"]) },
  {
    type: 'interval',
    oracle: 'text',
    values: (r) => pick(r, ["'1 year 2 mons 3 days 04:05:06.789'", "'-1 days +02:03:00'", "'0'"]),
  },
  {
    type: 'int4[]',
    oracle: 'json',
    values: (r) => pick(r, ["'{}'", "'{1,NULL,3}'", "'{{1,2},{3,4}}'", `ARRAY[${int(r, 100)}]`]),
  },
  {
    type: 'text[]',
    oracle: 'json',
    values: (r) => pick(r, ["'{}'", `ARRAY['a b', NULL, E'q"uote', 'back\\\\slash']`, '\'{""}\'']),
  },
  { type: 'int4range', oracle: 'text', values: (r) => pick(r, ["'empty'", "'[1,10)'", "'(,5]'"]) },
  { type: 'inet', oracle: 'text', values: (r) => pick(r, ["'192.168.0.1/24'", "'::1'"]) },
  { type: 'money', oracle: 'text', values: (r) => pick(r, ["'1234.56'", "'-0.01'"]) },
];

interface Table {
  name: string;
  columns: { name: string; spec: TypeSpec }[];
}

function randomTable(random: Random, index: number): Table {
  const count = 3 + Math.floor(random() * 8);
  const columns = Array.from({ length: count }, (_, i) => ({ name: `c${i}`, spec: pick(random, TYPES) }));
  return { name: `prop_${index}`, columns };
}

function randomRow(random: Random, table: Table, id: number): string {
  const values = table.columns.map((c) =>
    random() < 0.15 ? 'NULL' : `(${c.spec.values(random)})::${c.spec.type}`,
  );
  return `(${[id, ...values].join(', ')})`;
}

/** Sends every call to several sinks (stdout and memory here), as one sink. */
class FanOutSink implements Sink {
  readonly name = 'fan-out';
  readonly transactional = true;
  constructor(private readonly sinks: Sink[]) {}
  async open(context: SinkContext): Promise<SinkState> {
    const states = await Promise.all(this.sinks.map((s) => s.open(context)));
    return states[states.length - 1]!;
  }
  async prepare(tables: readonly TableSchema[]) {
    for (const s of this.sinks) await s.prepare(tables);
  }
  async beginCopy(table: TableSchema, lsn: Lsn | null) {
    for (const s of this.sinks) await s.beginCopy(table, lsn);
  }
  async writeRows(table: TableSchema, rows: CopiedRows) {
    for (const s of this.sinks) await s.writeRows(table, rows);
  }
  async endCopy(table: TableSchema, lsn: Lsn | null) {
    for (const s of this.sinks) await s.endCopy(table, lsn);
  }
  async writeChanges(batch: ChangeBatch) {
    for (const s of this.sinks) await s.writeChanges(batch);
  }
  async close() {
    for (const s of this.sinks) await s.close();
  }
}

/** What Postgres says each column is, as the JSON value the stdout format must carry. */
function oracleExpression(column: string, oracle: JsonOracle): string {
  switch (oracle) {
    case 'number':
      return `CASE WHEN ${column}::text IN ('NaN', 'Infinity', '-Infinity') THEN to_jsonb(${column}::text) ELSE to_jsonb(${column}) END`;
    case 'bool':
    case 'json':
      return `to_jsonb(${column})`;
    case 'timestamptz':
      return isoTimestamp(`${column} AT TIME ZONE 'UTC'`, 'Z');
    case 'timestamp':
      return isoTimestamp(column, '');
    case 'bytea':
    case 'string':
    case 'text':
      return `to_jsonb(${column}::text)`;
  }
}

/** ISO 8601 as Postgres computes it, astronomical years expanded to ±YYYYYY outside 0000–9999. */
function isoTimestamp(value: string, zone: string): string {
  const year = `extract(year from ${value})::int`;
  const rest = `to_char(${value}, '-MM-DD"T"HH24:MI:SS.US"${zone}"')`;
  return `to_jsonb(CASE
    WHEN NOT isfinite(${value}) THEN (${value})::text
    WHEN ${year} < 1 THEN '-' || lpad((-${year} - 1)::text, 6, '0') || ${rest}
    WHEN ${year} > 9999 THEN '+' || lpad(${year}::text, 6, '0') || ${rest}
    ELSE lpad(${year}::text, 4, '0') || ${rest} END)`;
}

let db: TestDatabase;

beforeAll(async () => {
  db = await freshDatabase('property');
});
afterAll(async () => db.close());

describe('random schemas and values round-trip exactly', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: backfill and CDC into stdout and memory equal Postgres`, async () => {
      const random = prng(seed);
      const tables = [randomTable(random, seed * 10), randomTable(random, seed * 10 + 1)];
      for (const table of tables) {
        const columns = table.columns.map((c) => `${c.name} ${c.spec.type}`).join(', ');
        await db.sql(`CREATE TABLE ${table.name} (id int PRIMARY KEY, ${columns})`);
        const rows = Array.from({ length: 20 }, (_, i) => randomRow(random, table, i));
        await db.sql(`INSERT INTO ${table.name} VALUES ${rows.join(', ')}`);
      }
      const publication = `prop_pub_${seed}`;
      await db.sql(`CREATE PUBLICATION ${publication} FOR TABLE ${tables.map((t) => t.name).join(', ')}`);

      const output = new PassThrough();
      let stdout = '';
      output.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      const memory = new MemorySink();
      const run = async () => {
        const [end] = await db.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
        const source = new PostgresSource({ connection: db.options, publication, slot: `prop_slot_${seed}` });
        const sink = new FanOutSink([new StdoutSink({ output }), memory]);
        await new Pipeline({
          source,
          sink,
          mode: 'both',
          endLsn: parseLsn(end!.lsn),
          batchMaxDelayMs: 10,
        }).run();
      };
      await run();
      // CDC: new rows, updates of random columns, deletes.
      for (const table of tables) {
        const rows = Array.from({ length: 15 }, (_, i) => randomRow(random, table, 100 + i));
        await db.sql(`INSERT INTO ${table.name} VALUES ${rows.join(', ')}`);
        for (let i = 0; i < 10; i++) {
          const column = pick(random, table.columns);
          await db.sql(
            `UPDATE ${table.name} SET ${column.name} = (${column.spec.values(random)})::${column.spec.type} WHERE id = ${pick(random, [1, 2, 3, 101, 102])}`,
          );
        }
        await db.sql(`DELETE FROM ${table.name} WHERE id IN (4, 103)`);
      }
      await run();

      for (const table of tables) {
        // 1. Raw text, byte for byte, in the strict memory sink. format('%s') prints with the type's
        // output function, as COPY and pgoutput do (a ::text cast differs, e.g. for bool).
        const names = ['id', ...table.columns.map((c) => c.name)];
        const expr = names
          .map((c) => `CASE WHEN ${c} IS NULL THEN '\\N' ELSE format('%s', ${c}) END`)
          .join(`, E'\\t', `);
        const expected = (await db.sql<{ line: string }>(`SELECT concat(${expr}) AS line FROM ${table.name}`))
          .map((r) => r.line)
          .sort();
        expect(memory.anomalies).toEqual([]);
        expect(memory.rows(`"public"."${table.name}"`)).toEqual(expected);

        // 2. The stdout JSON of the last event per row equals Postgres' own JSON of the value.
        const latest = new Map<string, Record<string, unknown> | null>();
        for (const line of stdout.split('\n').filter((l) => l.includes(`"table":"${table.name}"`))) {
          const event = JSON.parse(line) as {
            op: string;
            new: Record<string, unknown> | null;
            old: { id: number } | null;
          };
          if (event.op === 'delete') latest.set(String(event.old!.id), null);
          else {
            const id = String(event.new!['id']);
            // Unchanged TOAST columns are left out of "new": keep the earlier value.
            latest.set(id, { ...(latest.get(id) ?? {}), ...event.new });
          }
        }
        const oracle = table.columns
          .map((c) => `'${c.name}', ${oracleExpression(c.name, c.spec.oracle)}`)
          .join(', ');
        const pgJson = await db.sql<{ id: number; doc: Record<string, unknown> }>(
          `SELECT id, jsonb_build_object(${oracle}) AS doc FROM ${table.name}`,
        );
        const live = [...latest].filter(([, row]) => row !== null);
        expect(live.length).toBe(pgJson.length);
        for (const { id, doc } of pgJson) {
          const got = latest.get(String(id))!;
          for (const column of table.columns) {
            const where = { id, column: column.name, type: column.spec.type };
            expect({ ...where, value: got[column.name] }).toEqual({
              ...where,
              value: doc[column.name] ?? null,
            });
          }
        }
      }
    });
  }
});
