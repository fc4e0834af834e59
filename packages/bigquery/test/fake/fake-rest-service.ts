/**
 * The fake BigQuery v2 REST API, on node:http: the calls the sink makes through
 * @google-cloud/bigquery and nothing else —
 *
 *   datasets.get / datasets.insert
 *   tables.get / tables.insert / tables.patch (and update) / tables.delete / tables.list
 *   jobs.query (POST /queries) and jobs.getQueryResults (GET /queries/{id})
 *
 * Resources are answered in the REST shape (tableReference, schema.fields, tableConstraints,
 * clustering, view.query, maxStaleness), errors in Google's error JSON with BigQuery's reasons
 * (notFound, duplicate, invalid, backendError, rateLimitExceeded), so the client's own retry rules
 * apply. A bearer token is required, as on the real service. Faults can be injected per route.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { QueryError, type QueryParameter, runQuery } from './fake-query.js';
import type { FakeStore } from './fake-store.js';
import { type FakeField, type FakeRow, FakeTable } from './fake-table.js';
import { isKnownType, standardType } from './fake-values.js';

/** A failure the fake answers with on purpose. */
export interface RestFault {
  /** e.g. `POST /queries`, `PATCH /tables`, `POST /tables`, `GET /datasets` (method and resource). */
  route: string;
  status: number;
  reason: string;
  times?: number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

interface TableResource {
  tableReference?: { projectId?: string; datasetId?: string; tableId?: string };
  schema?: { fields?: FakeField[] };
  tableConstraints?: { primaryKey?: { columns?: string[] } };
  clustering?: { fields?: string[] };
  view?: { query?: string; useLegacySql?: boolean };
  maxStaleness?: string;
}

const BASE = '/bigquery/v2/projects/';
const MAX_CLUSTERING = 4;

/** `0-0 0 0:10:0` (IntervalValue text) → milliseconds. */
export function stalenessMillis(text: string): number {
  const match = /^(\d+)-(\d+) (\d+) (\d+):(\d+):(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (match === null) throw new HttpError(400, 'invalid', `invalid maxStaleness ${JSON.stringify(text)}`);
  const [years, months, days, hours, minutes, seconds] = match.slice(1, 7).map(Number) as number[];
  if (years! > 0 || months! > 0) return Number.POSITIVE_INFINITY;
  return (
    ((days! * 24 + hours!) * 60 + minutes!) * 60_000 + seconds! * 1000 + Number(`0.${match[7] ?? 0}`) * 1000
  );
}

export class FakeRestService {
  readonly #store: FakeStore;
  readonly #faults: RestFault[] = [];
  readonly #results = new Map<string, { schema: FakeField[]; rows: FakeRow[] }>();
  /** Requests served, by route (e.g. `POST /queries`). */
  readonly calls = new Map<string, number>();
  #server: Server | null = null;

  constructor(store: FakeStore) {
    this.#store = store;
  }

  inject(fault: RestFault): void {
    this.#faults.push({ ...fault, times: fault.times ?? 1 });
  }

  async listen(): Promise<number> {
    const server = createServer((request, response) => void this.#handle(request, response));
    this.#server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const url = new URL(request.url ?? '/', 'http://fake');
    const method = request.method ?? 'GET';
    try {
      if (!/^Bearer \S+/.test(request.headers.authorization ?? ''))
        throw new HttpError(401, 'unauthorized', 'Request is missing required authentication credential.');
      if (!url.pathname.startsWith(BASE)) throw new HttpError(404, 'notFound', `no route ${url.pathname}`);
      const parts = url.pathname.slice(BASE.length).split('/').map(decodeURIComponent);
      const body =
        chunks.length === 0
          ? {}
          : (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>);
      const route = `${method} /${parts.length >= 4 ? parts[3] : parts[1]}`;
      this.calls.set(route, (this.calls.get(route) ?? 0) + 1);
      this.#fault(route);
      const result = this.#route(method, parts, body, url.searchParams);
      this.#send(response, result === undefined ? 204 : 200, result);
    } catch (error) {
      const status = error instanceof HttpError || error instanceof QueryError ? error.status : 500;
      const reason =
        error instanceof HttpError || error instanceof QueryError ? error.reason : 'backendError';
      const message = (error as Error).message;
      this.#send(response, status, {
        error: { code: status, message, errors: [{ message, domain: 'global', reason }], status: reason },
      });
    }
  }

  #fault(route: string): void {
    const index = this.#faults.findIndex((fault) => fault.route === route);
    if (index === -1) return;
    const fault = this.#faults[index]!;
    fault.times = (fault.times ?? 1) - 1;
    if (fault.times <= 0) this.#faults.splice(index, 1);
    throw new HttpError(fault.status, fault.reason, `injected ${fault.reason}`);
  }

  #send(response: ServerResponse, status: number, body: unknown): void {
    if (body === undefined) {
      response.writeHead(status).end();
      return;
    }
    const text = JSON.stringify(body);
    response.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' }).end(text);
  }

  #route(method: string, parts: string[], body: Record<string, unknown>, query: URLSearchParams): unknown {
    const [project, collection, dataset, sub, table] = parts as [string, string, string?, string?, string?];
    if (collection === 'queries') {
      if (method === 'POST' && dataset === undefined) return this.#query(project, body);
      if (method === 'GET' && dataset !== undefined) return this.#queryResults(project, dataset);
    }
    if (collection === 'datasets') {
      if (dataset === undefined && method === 'POST') return this.#insertDataset(project, body);
      if (dataset !== undefined && sub === undefined && method === 'GET')
        return this.#getDataset(project, dataset);
      if (dataset !== undefined && sub === 'tables') {
        if (table === undefined && method === 'POST')
          return this.#insertTable(project, dataset, body as TableResource);
        if (table === undefined && method === 'GET') return this.#listTables(project, dataset, query);
        if (table !== undefined && method === 'GET')
          return tableResource(project, dataset, this.#table(project, dataset, table));
        if (table !== undefined && (method === 'PATCH' || method === 'PUT'))
          return this.#patchTable(project, dataset, table, body as TableResource);
        if (table !== undefined && method === 'DELETE') {
          this.#table(project, dataset, table);
          this.#store.dataset(project, dataset)!.tables.delete(table);
          return undefined;
        }
      }
    }
    throw new HttpError(404, 'notFound', `the fake has no ${method} ${parts.join('/')}`);
  }

  #getDataset(project: string, dataset: string): unknown {
    const found = this.#store.dataset(project, dataset);
    if (found === undefined) throw new HttpError(404, 'notFound', `Not found: Dataset ${project}:${dataset}`);
    return {
      kind: 'bigquery#dataset',
      id: `${project}:${dataset}`,
      datasetReference: { projectId: project, datasetId: dataset },
      location: found.location,
      creationTime: String(found.creationTime),
    };
  }

  #insertDataset(project: string, body: Record<string, unknown>): unknown {
    const reference = body.datasetReference as { datasetId?: string } | undefined;
    const id = reference?.datasetId;
    if (id === undefined || !/^[A-Za-z0-9_]{1,1024}$/.test(id))
      throw new HttpError(400, 'invalid', `invalid dataset id ${id}`);
    if (this.#store.dataset(project, id) !== undefined)
      throw new HttpError(409, 'duplicate', `Already Exists: Dataset ${project}:${id}`);
    this.#store.createDataset(project, id, String(body.location ?? 'US'));
    return this.#getDataset(project, id);
  }

  #table(project: string, dataset: string, table: string): FakeTable {
    if (this.#store.dataset(project, dataset) === undefined)
      throw new HttpError(404, 'notFound', `Not found: Dataset ${project}:${dataset}`);
    const found = this.#store.table(project, dataset, table);
    if (found === undefined)
      throw new HttpError(404, 'notFound', `Not found: Table ${project}:${dataset}.${table}`);
    return found;
  }

  #insertTable(project: string, dataset: string, body: TableResource): unknown {
    const found = this.#store.dataset(project, dataset);
    if (found === undefined) throw new HttpError(404, 'notFound', `Not found: Dataset ${project}:${dataset}`);
    const id = body.tableReference?.tableId ?? '';
    if (!/^[A-Za-z0-9_-]{1,1024}$/.test(id))
      throw new HttpError(400, 'invalid', `invalid table id ${JSON.stringify(id)}`);
    if (found.tables.has(id))
      throw new HttpError(409, 'duplicate', `Already Exists: Table ${project}:${dataset}.${id}`);
    let table: FakeTable;
    if (body.view?.query !== undefined) {
      if (body.view.useLegacySql !== false)
        throw new HttpError(400, 'invalid', 'views must set useLegacySql: false');
      const { schema } = runQuery(this.#store, body.view.query, []);
      table = new FakeTable(id, 'VIEW', schema);
      table.viewQuery = body.view.query;
    } else {
      const schema = checkSchema(body.schema?.fields ?? []);
      const primaryKey = body.tableConstraints?.primaryKey?.columns ?? [];
      checkKey(schema, primaryKey);
      const clustering = body.clustering?.fields ?? [];
      checkClustering(schema, clustering);
      table = new FakeTable(id, 'TABLE', schema, primaryKey, clustering);
      if (body.maxStaleness !== undefined) {
        table.maxStalenessMs = stalenessMillis(body.maxStaleness);
        table.maxStaleness = body.maxStaleness;
      }
    }
    found.tables.set(id, table);
    return tableResource(project, dataset, table);
  }

  #patchTable(project: string, dataset: string, id: string, body: TableResource): unknown {
    const table = this.#table(project, dataset, id);
    if (body.view?.query !== undefined) {
      if (table.type !== 'VIEW') throw new HttpError(400, 'invalid', `${id} is not a view`);
      table.schema = runQuery(this.#store, body.view.query, []).schema;
      table.viewQuery = body.view.query;
    }
    if (body.schema?.fields !== undefined && table.type === 'TABLE') {
      const fields = checkSchema(body.schema.fields);
      // Columns can be added (NULLABLE or REPEATED), never dropped, retyped or made REQUIRED.
      for (const old of table.schema) {
        const next = fields.find((field) => field.name.toLowerCase() === old.name.toLowerCase());
        if (
          next === undefined ||
          standardType(next.type) !== standardType(old.type) ||
          next.mode !== old.mode
        )
          throw new HttpError(
            400,
            'invalid',
            `Provided Schema does not match Table ${project}:${dataset}.${id}. Field ${old.name} is missing or changed.`,
          );
      }
      for (const field of fields.slice(table.schema.length)) {
        if (field.mode === 'REQUIRED')
          throw new HttpError(
            400,
            'invalid',
            `Cannot add required field ${field.name} to an existing schema`,
          );
      }
      if (fields.length > table.schema.length) {
        table.writeApiSchema = table.schema;
        table.schemaVisibleAt = Date.now() + (this.#store.options.schemaPropagationMs ?? 0);
      }
      table.schema = fields;
    }
    if (body.maxStaleness !== undefined) {
      table.maxStalenessMs = stalenessMillis(body.maxStaleness);
      table.maxStaleness = body.maxStaleness;
    }
    table.lastModifiedTime = Date.now();
    return tableResource(project, dataset, table);
  }

  #listTables(project: string, dataset: string, query: URLSearchParams): unknown {
    const found = this.#store.dataset(project, dataset);
    if (found === undefined) throw new HttpError(404, 'notFound', `Not found: Dataset ${project}:${dataset}`);
    const all = [...found.tables.values()];
    const start = Number(query.get('pageToken') ?? 0);
    const size = Number(query.get('maxResults') ?? 50);
    const page = all.slice(start, start + size);
    return {
      kind: 'bigquery#tableList',
      tables: page.map((table) => ({
        kind: 'bigquery#table',
        id: `${project}:${dataset}.${table.id}`,
        tableReference: { projectId: project, datasetId: dataset, tableId: table.id },
        type: table.type,
      })),
      totalItems: all.length,
      ...(start + size < all.length ? { nextPageToken: String(start + size) } : {}),
    };
  }

  #query(project: string, body: Record<string, unknown>): unknown {
    if (body.useLegacySql !== false) throw new HttpError(400, 'invalid', 'the fake runs standard SQL only');
    const result = runQuery(
      this.#store,
      String(body.query ?? ''),
      (body.queryParameters ?? []) as QueryParameter[],
    );
    const jobId = `job_${randomUUID().replace(/-/g, '')}`;
    const format = body.formatOptions as { useInt64Timestamp?: boolean } | undefined;
    this.#results.set(jobId, result);
    return this.#resultBody(project, jobId, result, format?.useInt64Timestamp !== false);
  }

  #queryResults(project: string, jobId: string): unknown {
    const result = this.#results.get(jobId);
    if (result === undefined) throw new HttpError(404, 'notFound', `Not found: Job ${project}:${jobId}`);
    return this.#resultBody(project, jobId, result, true);
  }

  #resultBody(
    project: string,
    jobId: string,
    result: { schema: FakeField[]; rows: FakeRow[] },
    int64Timestamps: boolean,
  ): unknown {
    const timestamp = (cell: unknown): unknown =>
      int64Timestamps || typeof cell !== 'string' ? cell : String(Number(BigInt(cell)) / 1e6);
    return {
      kind: 'bigquery#queryResponse',
      jobReference: { projectId: project, jobId, location: 'US' },
      schema: { fields: result.schema },
      totalRows: String(result.rows.length),
      rows: result.rows.map((row) => ({
        f: result.schema.map((field) => {
          const cell = row[field.name] ?? null;
          if (standardType(field.type) !== 'TIMESTAMP') return { v: cell };
          return {
            v: Array.isArray(cell) ? cell.map((item) => ({ v: timestamp(item.v) })) : timestamp(cell),
          };
        }),
      })),
      jobComplete: true,
      cacheHit: false,
    };
  }
}

function checkSchema(fields: FakeField[]): FakeField[] {
  const seen = new Set<string>();
  return fields.map((field) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,299}$/.test(field.name))
      throw new HttpError(400, 'invalid', `Invalid field name "${field.name}"`);
    if (seen.has(field.name.toLowerCase()))
      throw new HttpError(400, 'invalid', `Field ${field.name} already exists in schema`);
    seen.add(field.name.toLowerCase());
    if (!isKnownType(field.type))
      throw new HttpError(400, 'invalid', `Invalid type ${field.type} for field ${field.name}`);
    return { name: field.name, type: standardType(field.type), mode: field.mode ?? 'NULLABLE' };
  });
}

function checkKey(schema: readonly FakeField[], key: readonly string[]): void {
  if (key.length > 16) throw new HttpError(400, 'invalid', 'a primary key has at most 16 columns');
  for (const name of key) {
    const field = schema.find((candidate) => candidate.name === name);
    if (field === undefined)
      throw new HttpError(400, 'invalid', `primary key column ${name} is not in the schema`);
    if (field.mode === 'REPEATED' || field.type === 'JSON')
      throw new HttpError(
        400,
        'invalid',
        `primary key column ${name} has type ${field.mode === 'REPEATED' ? 'ARRAY' : field.type}`,
      );
  }
}

function checkClustering(schema: readonly FakeField[], clustering: readonly string[]): void {
  if (clustering.length > MAX_CLUSTERING)
    throw new HttpError(400, 'invalid', `at most ${MAX_CLUSTERING} clustering fields`);
  for (const name of clustering) {
    const field = schema.find((candidate) => candidate.name === name);
    if (
      field === undefined ||
      field.mode === 'REPEATED' ||
      ['JSON', 'FLOAT64', 'BYTES', 'INTERVAL', 'TIME'].includes(field.type)
    )
      throw new HttpError(400, 'invalid', `cannot cluster on ${name}`);
  }
}

/** The REST Table resource (type names as the REST API reports them). */
function tableResource(project: string, dataset: string, table: FakeTable): unknown {
  return {
    kind: 'bigquery#table',
    id: `${project}:${dataset}.${table.id}`,
    tableReference: { projectId: project, datasetId: dataset, tableId: table.id },
    type: table.type,
    schema: { fields: table.schema.map((field) => ({ ...field, type: legacyName(field.type) })) },
    creationTime: String(table.creationTime),
    lastModifiedTime: String(table.lastModifiedTime),
    ...(table.primaryKey.length > 0
      ? { tableConstraints: { primaryKey: { columns: table.primaryKey } } }
      : {}),
    ...(table.clustering.length > 0 ? { clustering: { fields: table.clustering } } : {}),
    ...(table.viewQuery !== undefined ? { view: { query: table.viewQuery, useLegacySql: false } } : {}),
    ...(table.maxStaleness !== undefined ? { maxStaleness: table.maxStaleness } : {}),
  };
}

function legacyName(type: string): string {
  return ({ INT64: 'INTEGER', FLOAT64: 'FLOAT', BOOL: 'BOOLEAN' } as Record<string, string>)[type] ?? type;
}
