/**
 * Test harness for the BigQuery sink: a fresh Postgres database per file (the run's shared
 * server), the fake BigQuery reached through the real Google clients, the real Pipeline and
 * PostgresSource, and a comparison of every table on both sides that fails with the differing rows.
 *
 * Postgres values are turned into BigQuery's REST form by Postgres itself (SQL per column type),
 * not by the sink's code, so the comparison checks the sink rather than repeating it.
 */

import type { BigQuery } from '@google-cloud/bigquery';
import { afterAll, beforeAll, expect } from 'vitest';
import { type Lsn, parseLsn } from '../../pg-replicate/src/lsn.js';
import {
  Pipeline,
  type PipelineOptions,
  type PipelineResult,
} from '../../pg-replicate/src/pipeline/pipeline.js';
import { PostgresSource } from '../../pg-replicate/src/source/postgres-source.js';
import { freshDatabase, type TestDatabase } from '../../pg-replicate/test/helpers.js';
import { BigQuerySink, type BigQuerySinkOptions } from '../src/index.js';
import { columnNames } from '../src/naming.js';
import { FakeBigQuery, type FakeRow } from './fake/fake-bigquery.js';
import type { FakeStoreOptions } from './fake/fake-store.js';
import type { Cell } from './fake/fake-table.js';

export { FakeBigQuery, freshDatabase, type TestDatabase };

export const PROJECT = 'test-project';

/** What a test file works with: its own database and a fake BigQuery. */
export interface Suite {
  readonly db: TestDatabase;
  readonly fake: FakeBigQuery;
}

/** A fresh database and a fake BigQuery for the test file, set up before and torn down after it. */
export function setupSuite(prefix: string, fakeOptions?: FakeStoreOptions): Suite {
  const suite = {} as { db: TestDatabase; fake: FakeBigQuery };
  beforeAll(async () => {
    suite.db = await freshDatabase(prefix);
    suite.fake = await FakeBigQuery.start(fakeOptions);
  });
  afterAll(async () => {
    await suite.fake?.stop();
    await suite.db?.close();
  });
  return suite;
}

/** Sink options against `fake`, quiet, with short retries. */
export function sinkOptions(
  fake: FakeBigQuery,
  dataset: string,
  extra: Partial<BigQuerySinkOptions> = {},
): BigQuerySinkOptions {
  return {
    projectId: PROJECT,
    datasetId: dataset,
    maxStaleness: 0,
    retry: { maxAttempts: 6, initialDelayMs: 20, maxDelayMs: 200 },
    clientOptions: fake.clientOptions(),
    logger: { info: () => {}, warn: () => {} },
    ...extra,
  };
}

export async function currentLsn(db: TestDatabase): Promise<Lsn> {
  const [row] = await db.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return parseLsn(row!.lsn);
}

export interface ReplicateOptions extends Partial<Omit<PipelineOptions, 'source' | 'sink'>> {
  publication: string;
  slot?: string;
  sink: BigQuerySinkOptions | BigQuerySink;
  /** Run until everything up to the current WAL position is applied (default for cdc/both). */
  catchUp?: boolean;
}

/** Runs a pipeline into the fake; `both`/`cdc` stop once everything written so far is applied. */
export async function replicate(db: TestDatabase, options: ReplicateOptions): Promise<PipelineResult> {
  const { publication, slot, sink, catchUp = true, ...rest } = options;
  const mode = rest.mode ?? 'both';
  const source = new PostgresSource({
    connection: db.options,
    publication,
    slot: mode === 'copy' ? undefined : slot,
  });
  const endLsn = mode !== 'copy' && catchUp && rest.endLsn === undefined ? await currentLsn(db) : rest.endLsn;
  return new Pipeline({
    source,
    sink: sink instanceof BigQuerySink ? sink : new BigQuerySink(sink),
    batchMaxDelayMs: 20,
    ...rest,
    mode,
    endLsn,
  }).run();
}

/**
 * SQL turning a Postgres column into BigQuery's REST cell text for the type the sink maps it to
 * (see the README's type table): what the fake must hold if the sink is right.
 */
function restExpression(column: string, type: string): string {
  const c = `"${column}"`;
  if (type.endsWith('[]')) {
    const element = restExpression('e', type.slice(0, -2)).replaceAll('"e"', 'e');
    return `(SELECT coalesce(json_agg(${element} ORDER BY o), '[]'::json)::text FROM unnest(${c}) WITH ORDINALITY AS u(e, o))`;
  }
  const numeric = /^numeric\((\d+),(-?\d+)\)$/.exec(type);
  if (numeric !== null) {
    const [precision, scale] = [Number(numeric[1]), Number(numeric[2])];
    const decimal = precision - scale <= 38 && scale <= 38;
    return decimal ? `trim_scale(${c})::text` : `${c}::text`;
  }
  switch (type.replace(/\(.*\)/, '')) {
    case 'boolean':
      return `CASE WHEN ${c} THEN 'true' WHEN NOT ${c} THEN 'false' END`;
    case 'real':
      return `${c}::float8::text`;
    case 'bytea':
      return `replace(encode(${c}, 'base64'), E'\\n', '')`;
    case 'date':
      return `to_char(${c}, 'YYYY-MM-DD')`;
    case 'timestamp with time zone':
      return `((extract(epoch FROM ${c}) * 1000000)::numeric(30,0))::text`;
    case 'timestamp without time zone':
      return `rtrim(rtrim(to_char(${c}, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.')`;
    case 'time without time zone':
      return `rtrim(rtrim(to_char(${c}, 'HH24:MI:SS.US'), '0'), '.')`;
    case 'interval':
      return intervalExpression(c);
    default:
      // Composites are JSON objects; everything else keeps the Postgres text (output function).
      return `CASE WHEN num_nulls(${c}) = 1 THEN NULL WHEN pg_typeof(${c})::regtype::oid IN (SELECT reltype FROM pg_class) THEN to_json(${c})::text ELSE format('%s', ${c}) END`;
  }
}

/** BigQuery's canonical `Y-M D H:M:S[.F]` of a Postgres interval, computed by Postgres. */
function intervalExpression(c: string): string {
  const months = `(extract(year FROM ${c})::bigint * 12 + extract(month FROM ${c})::bigint)`;
  const micros = `(extract(hour FROM ${c})::bigint * 3600000000 + extract(minute FROM ${c})::bigint * 60000000 + extract(microseconds FROM ${c})::bigint)`;
  return `CASE WHEN ${c} IS NOT NULL THEN
    (CASE WHEN ${months} < 0 THEN '-' ELSE '' END) || abs(${months}) / 12 || '-' || abs(${months}) % 12 || ' '
    || extract(day FROM ${c})::bigint || ' '
    || (CASE WHEN ${micros} < 0 THEN '-' ELSE '' END) || abs(${micros}) / 3600000000 || ':'
    || abs(${micros}) % 3600000000 / 60000000 || ':' || abs(${micros}) % 60000000 / 1000000
    || CASE WHEN abs(${micros}) % 1000000 = 0 THEN '' ELSE '.' || lpad((abs(${micros}) % 1000000)::text, 6, '0') END
  END`;
}

/** Postgres rows of `table` as REST cells (text), keyed by their primary key, like {@link fakeRows}. */
export async function pgRows(
  db: TestDatabase,
  table: string,
): Promise<{ key: string[]; rows: Map<string, Record<string, string | null>> }> {
  const [schema, name] = table.includes('.') ? table.split('.') : ['public', table];
  const relation = `"${schema}"."${name}"`;
  const columns = await db.sql<{ name: string; type: string; key: boolean }>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type,
       attnum = ANY (SELECT unnest(indkey) FROM pg_index WHERE indrelid = $1::regclass AND indisprimary) AS key
     FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [relation],
  );
  // BigQuery's column names (the naming rule is checked on its own in changes.test.ts).
  const names = columnNames(columns.map((column) => column.name));
  const select = columns
    .map((column, i) => `${restExpression(column.name, column.type)} AS "${names[i]}"`)
    .join(', ');
  const key = names.filter((_, i) => columns[i]!.key);
  const rows = await db.sql<Record<string, string | null>>(`SELECT ${select} FROM ${relation}`);
  return { key, rows: new Map(rows.map((row) => [keyOf(row, key), row])) };
}

function keyOf(row: Record<string, unknown>, key: readonly string[]): string {
  return key.map((column) => `${column}=${String(row[column])}`).join(' ');
}

/** Where the replicated rows are read from: the fake's store, or BigQuery's REST API. */
export interface RowSource {
  rows(dataset: string, view: string): Promise<FakeRow[]>;
}

/** The fake's store itself (what a fully fresh query would return). */
export function fakeSource(fake: FakeBigQuery, project = PROJECT): RowSource {
  return { rows: async (dataset, view) => fake.rows(project, dataset, view) };
}

/**
 * Rows read with a query through the REST API (`SELECT *` of the view, timestamps as integer
 * microseconds): how the suite reads a real project, and the fake when checking that path.
 */
export function restSource(bigquery: BigQuery, project: string): RowSource {
  return {
    rows: async (dataset, view) => {
      type QueryResponse = { schema: { fields: { name: string }[] }; rows?: { f: { v: Cell }[] }[] };
      const request = {
        method: 'POST',
        uri: '/queries',
        json: {
          query: `SELECT * FROM \`${project}.${dataset}.${view}\``,
          useLegacySql: false,
          formatOptions: { useInt64Timestamp: true },
          timeoutMs: 60_000,
        },
      };
      const response = await new Promise<QueryResponse>((resolve, reject) =>
        bigquery.request(request, (error: Error | null, body?: unknown) =>
          error ? reject(error) : resolve(body as QueryResponse),
        ),
      );
      const names = response.schema.fields.map((field) => field.name);
      return (response.rows ?? []).map((row) =>
        Object.fromEntries(names.map((name, i) => [name, row.f[i]!.v])),
      );
    },
  };
}

function keyed(rows: FakeRow[], key: readonly string[]): Map<string, Record<string, string | null>> {
  return new Map(rows.map((row) => [keyOf(row, key), flatten(row)]));
}

function flatten(row: FakeRow): Record<string, string | null> {
  return Object.fromEntries(
    Object.entries(row).map(([name, cell]) => [
      name,
      Array.isArray(cell) ? JSON.stringify(cell.map((item) => item.v)) : cell,
    ]),
  );
}

/**
 * Compares one table on both sides (`source`: the fake itself, or any {@link RowSource}); JSON
 * cells compare as parsed values, numbers as numbers, fractions of seconds without trailing zeros.
 */
export async function expectSameRows(
  db: TestDatabase,
  source: FakeBigQuery | RowSource,
  dataset: string,
  table: string,
  view = `public_${table}`,
): Promise<number> {
  const { key, rows: expected } = await pgRows(db, table);
  const reader = source instanceof FakeBigQuery ? fakeSource(source) : source;
  const actual = keyed(await reader.rows(dataset, view), key);
  const problems: string[] = [];
  for (const [id, row] of expected) {
    const got = actual.get(id);
    if (got === undefined) {
      problems.push(`missing ${id}`);
      continue;
    }
    for (const [column, value] of Object.entries(row)) {
      if (!sameCell(value, got[column] ?? null))
        problems.push(`${id} ${column}: expected ${short(value)}, got ${short(got[column] ?? null)}`);
    }
  }
  for (const id of actual.keys()) if (!expected.has(id)) problems.push(`extra ${id}`);
  expect(problems.slice(0, 20), `${table}: ${problems.length} difference(s)`).toEqual([]);
  return expected.size;
}

/** `…:05.500000` → `…:05.5`: BigQuery may print fractions of seconds with or without trailing zeros. */
const SECONDS_FRACTION = /(:\d\d\.\d*?)0+$/;

function sameCell(expected: string | null, actual: string | null): boolean {
  if (expected === actual) return true;
  if (expected === null || actual === null) return false;
  const trim = (text: string) => text.replace(SECONDS_FRACTION, '$1').replace(/\.$/, '');
  if (SECONDS_FRACTION.test(expected) || SECONDS_FRACTION.test(actual))
    return trim(expected) === trim(actual);
  try {
    const a = JSON.parse(expected) as unknown;
    const b = JSON.parse(actual) as unknown;
    return JSON.stringify(normalizeJson(a)) === JSON.stringify(normalizeJson(b));
  } catch {
    return Number(expected) === Number(actual) && !Number.isNaN(Number(expected));
  }
}

function normalizeJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalizeJson);
  if (typeof value === 'object' && value !== null)
    return Object.fromEntries(
      Object.entries(value)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, normalizeJson(v)]),
    );
  if (typeof value === 'string' && value !== '' && !Number.isNaN(Number(value))) return Number(value);
  return value;
}

function short(value: string | null): string {
  if (value === null) return 'NULL';
  return value.length > 80
    ? `${JSON.stringify(value.slice(0, 77))}…(${value.length})`
    : JSON.stringify(value);
}
