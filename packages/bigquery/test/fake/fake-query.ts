/**
 * The fake's query engine: not SQL, only the statement shapes the sink issues, recognized exactly
 * and refused otherwise (a query the sink starts to send that the fake does not know fails the
 * tests, instead of silently returning something):
 *
 *   SELECT * | col, … FROM `project.dataset.table_or_view`
 *     [WHERE cond [OR cond]…]          cond: col = @param [AND col = @param]…, parenthesized
 *
 * plus `project.dataset.INFORMATION_SCHEMA.TABLES` (table_name, upsert_stream_apply_watermark).
 * Views are expanded through their own (same-shaped) query. Parameters are compared after
 * canonicalizing them like stored values.
 */
import type { FakeStore } from './fake-store.js';
import type { Cell, FakeField, FakeRow } from './fake-table.js';
import { standardType, toCell, ValueError } from './fake-values.js';

export interface QueryParameter {
  name?: string;
  parameterType: { type: string; arrayType?: { type: string } };
  parameterValue: { value?: string; arrayValues?: { value?: string }[] };
}

export interface QueryResult {
  schema: FakeField[];
  rows: FakeRow[];
}

/** A query the fake cannot run, or that BigQuery would reject (HTTP 400 / 404). */
export class QueryError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const SELECT =
  /^\s*SELECT\s+(\*|[A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)\s+FROM\s+`([^`.]+)\.([^`.]+)\.([^`]+)`\s*(?:WHERE\s+([\s\S]+?))?\s*;?\s*$/i;

type Condition = readonly (readonly [string, string])[];

export function runQuery(store: FakeStore, sql: string, params: readonly QueryParameter[]): QueryResult {
  const match = SELECT.exec(sql);
  if (match === null) throw new QueryError(400, 'invalidQuery', `the fake does not know this query: ${sql}`);
  const [, projection, project, dataset, tableName, where] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
    string | undefined,
  ];
  const source = readSource(store, project, dataset, tableName, new Set());
  const conditions = where === undefined ? null : parseWhere(where);
  const byName = new Map(params.map((param) => [param.name ?? '', param]));
  const fields = new Map(source.schema.map((field) => [field.name.toLowerCase(), field]));
  const resolveField = (name: string): FakeField => {
    const field = fields.get(name.toLowerCase());
    if (field === undefined) throw new QueryError(400, 'invalidQuery', `Unrecognized name: ${name}`);
    return field;
  };
  const compiled = conditions?.map((condition) =>
    condition.map(([column, param]) => {
      const field = resolveField(column);
      const parameter = byName.get(param);
      if (parameter === undefined)
        throw new QueryError(400, 'invalidQuery', `Query parameter '${param}' not found`);
      return [field.name, parameterCell(field, parameter)] as const;
    }),
  );
  const rows =
    compiled === undefined
      ? source.rows
      : source.rows.filter((row) =>
          compiled.some((and) => and.every(([name, value]) => row[name] === value)),
        );
  const schema =
    projection.trim() === '*'
      ? source.schema
      : projection.split(',').map((name) => resolveField(name.trim()));
  return {
    schema,
    rows: rows.map((row) => Object.fromEntries(schema.map((field) => [field.name, row[field.name] ?? null]))),
  };
}

function readSource(
  store: FakeStore,
  project: string,
  dataset: string,
  name: string,
  seen: Set<string>,
): QueryResult {
  if (name.toUpperCase() === 'INFORMATION_SCHEMA.TABLES') {
    const tables = store.dataset(project, dataset)?.tables;
    if (tables === undefined)
      throw new QueryError(404, 'notFound', `Not found: Dataset ${project}:${dataset}`);
    return {
      schema: [
        { name: 'table_name', type: 'STRING', mode: 'NULLABLE' },
        { name: 'upsert_stream_apply_watermark', type: 'TIMESTAMP', mode: 'NULLABLE' },
      ],
      rows: [...tables.values()].map((table) => ({
        table_name: table.id,
        upsert_stream_apply_watermark: table.cdcActive ? String(BigInt(table.watermark) * 1000n) : null,
      })),
    };
  }
  const table = store.table(project, dataset, name);
  if (table === undefined)
    throw new QueryError(404, 'notFound', `Not found: Table ${project}:${dataset}.${name}`);
  if (table.type === 'TABLE') return { schema: table.schema, rows: table.queryRows() };
  const key = `${project}.${dataset}.${name}`;
  if (seen.has(key)) throw new QueryError(400, 'invalidQuery', `view ${key} refers to itself`);
  seen.add(key);
  const inner = SELECT.exec(table.viewQuery ?? '');
  if (inner === null || inner[1]!.trim() !== '*' || inner[5] !== undefined)
    throw new QueryError(400, 'invalidQuery', `the fake expands only SELECT * views: ${table.viewQuery}`);
  return readSource(store, inner[2]!, inner[3]!, inner[4]!, seen);
}

/** `a = @p AND b = @q OR (c = @r)` → [[a,p],[b,q]], [[c,r]]. */
function parseWhere(where: string): Condition[] {
  const text = where.trim();
  return splitTop(text, 'OR').map((part) => {
    let conjunction = part.trim();
    while (conjunction.startsWith('(') && conjunction.endsWith(')'))
      conjunction = conjunction.slice(1, -1).trim();
    return splitTop(conjunction, 'AND').map((comparison) => {
      const match = /^\(?\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*@([A-Za-z_][A-Za-z0-9_]*)\s*\)?$/.exec(
        comparison.trim(),
      );
      if (match === null)
        throw new QueryError(400, 'invalidQuery', `the fake does not know this condition: ${comparison}`);
      return [match[1]!, match[2]!] as const;
    });
  });
}

function splitTop(text: string, word: 'AND' | 'OR'): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  const pattern = new RegExp(`^\\s${word}\\s`, 'i');
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (depth === 0 && pattern.test(text.slice(i, i + word.length + 2))) {
      parts.push(text.slice(start, i));
      start = i + word.length + 2;
      i = start - 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/** A parameter's value in the stored (REST) form of the column it is compared with. */
function parameterCell(field: FakeField, parameter: QueryParameter): Cell {
  const value = parameter.parameterValue.value;
  if (value === undefined) return null;
  const type = standardType(parameter.parameterType.type);
  try {
    switch (type) {
      case 'TIMESTAMP':
        return toCell(field, String(timestampMicros(value)));
      case 'DATE':
      case 'DATETIME':
      case 'TIME':
      case 'INTERVAL':
      case 'NUMERIC':
      case 'BIGNUMERIC':
      case 'STRING':
      case 'JSON':
        return toCell(field, value);
      case 'BYTES':
        return toCell(field, Buffer.from(value, 'base64'));
      case 'BOOL':
        return toCell(field, value.toLowerCase() === 'true');
      case 'INT64':
      case 'FLOAT64':
        return toCell(field, type === 'FLOAT64' ? Number(value) : value);
      default:
        throw new QueryError(400, 'invalidQuery', `parameter type ${type} is not modeled`);
    }
  } catch (error) {
    if (error instanceof ValueError) throw new QueryError(400, 'invalidQuery', error.message);
    throw error;
  }
}

/** `2024-01-02 03:04:05.123456+00` (or `UTC`) → microseconds since the epoch. */
function timestampMicros(text: string): bigint {
  const match =
    /^(-?\d{4,})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s*(?:\+00(?::?00)?|Z|UTC)?$/.exec(
      text,
    );
  if (match === null) throw new ValueError(`${JSON.stringify(text)} is not a TIMESTAMP`);
  const millis = Date.UTC(
    Number(match[1]),
    Number(match[2]) - 1,
    Number(match[3]),
    Number(match[4]),
    Number(match[5]),
    Number(match[6]),
  );
  const date = new Date(millis);
  date.setUTCFullYear(Number(match[1]));
  return BigInt(date.getTime()) * 1000n + BigInt((match[7] ?? '').padEnd(6, '0') || '0');
}
