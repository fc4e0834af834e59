/**
 * Every BigQuery REST call the sink makes, through @google-cloud/bigquery: the dataset, version
 * tables (created with their primary key `NOT ENFORCED`, clustering and `max_staleness`), the views
 * over them, added columns, and the few queries (state, unchanged TOAST values). The client
 * retries 429/5xx and `rateLimitExceeded` itself; what still fails is reported as a
 * PgReplicateError naming the call and the table.
 */
import type { BigQuery, Query } from '@google-cloud/bigquery';
import { PgReplicateError } from 'pg-replicate';
import type { FieldSchema } from './table-plan.js';
import { legacyTypeName } from './type-mapping.js';

/** A table as tables.get describes it (the parts we read). */
export interface TableInfo {
  readonly type: 'TABLE' | 'VIEW' | string;
  readonly fields: readonly { name: string; type: string; mode?: string }[];
  readonly primaryKey: readonly string[];
  readonly viewQuery: string | undefined;
  /** `max_staleness` as the REST API reports it (`0-0 0 0:15:0`), if set. */
  readonly maxStaleness: string | undefined;
}

export interface CreateTableOptions {
  readonly primaryKey: readonly string[];
  readonly clustering: readonly string[];
  /** `max_staleness` as an IntervalValue string (`0-0 0 0:15:0`), or none. */
  readonly maxStaleness: string | undefined;
}

/** A query parameter: name, standard SQL type, value as BigQuery's REST API spells it. */
export interface QueryParam {
  readonly name: string;
  readonly type: string;
  readonly value: string | null;
}

/** A REST row: one `{ v }` cell per selected column. */
export interface RestRow {
  readonly f: readonly { readonly v: unknown }[];
}

interface ApiErrorLike {
  code?: number;
  message?: string;
  errors?: { reason?: string; message?: string }[];
}

export class TableAdmin {
  readonly #bigquery: BigQuery;
  readonly projectId: string;
  readonly datasetId: string;
  readonly #location: string | undefined;

  constructor(bigquery: BigQuery, projectId: string, datasetId: string, location: string | undefined) {
    this.#bigquery = bigquery;
    this.projectId = projectId;
    this.datasetId = datasetId;
    this.#location = location;
  }

  /** `` `project.dataset.name` `` for SQL. */
  qualified(name: string): string {
    return `\`${this.projectId}.${this.datasetId}.${name}\``;
  }

  /** `projects/…/datasets/…/tables/…`, the Storage Write API's table reference. */
  writePath(name: string): string {
    return `projects/${this.projectId}/datasets/${this.datasetId}/tables/${name}`;
  }

  /** Creates the dataset (in `location`) unless it exists. */
  async ensureDataset(): Promise<void> {
    const dataset = this.#bigquery.dataset(this.datasetId, { projectId: this.projectId });
    const [exists] = await this.#call('checking dataset', this.datasetId, () => dataset.exists());
    if (exists) return;
    await this.#call('creating dataset', this.datasetId, async () => {
      try {
        await this.#bigquery.createDataset(this.datasetId, {
          projectId: this.projectId,
          ...(this.#location === undefined ? {} : { location: this.#location }),
        });
      } catch (error) {
        if ((error as ApiErrorLike).code !== 409) throw error; // created meanwhile
      }
    });
  }

  async getTable(name: string): Promise<TableInfo | undefined> {
    return this.#call('reading table', name, async () => {
      try {
        const [metadata] = await this.#table(name).getMetadata();
        const resource = metadata as {
          type?: string;
          schema?: { fields?: { name: string; type: string; mode?: string }[] };
          tableConstraints?: { primaryKey?: { columns?: string[] } };
          view?: { query?: string };
          maxStaleness?: string;
        };
        return {
          type: resource.type ?? 'TABLE',
          fields: resource.schema?.fields ?? [],
          primaryKey: resource.tableConstraints?.primaryKey?.columns ?? [],
          viewQuery: resource.view?.query,
          maxStaleness: resource.maxStaleness,
        };
      } catch (error) {
        if ((error as ApiErrorLike).code === 404) return undefined;
        throw error;
      }
    });
  }

  /** Creates a table; an existing one of the same name is left as it is. */
  async createTable(
    name: string,
    fields: readonly FieldSchema[],
    options: CreateTableOptions,
  ): Promise<void> {
    await this.#call('creating table', name, async () => {
      try {
        await this.#dataset().createTable(name, {
          schema: { fields: fields.map((field) => ({ ...field })) },
          ...(options.primaryKey.length > 0
            ? { tableConstraints: { primaryKey: { columns: [...options.primaryKey] } } }
            : {}),
          ...(options.clustering.length > 0 ? { clustering: { fields: [...options.clustering] } } : {}),
          ...(options.maxStaleness === undefined ? {} : { maxStaleness: options.maxStaleness }),
        });
      } catch (error) {
        if ((error as ApiErrorLike).code !== 409) throw error;
      }
    });
  }

  /** Appends the `fields` the table lacks (NULLABLE or REPEATED), keeping the rest as they are. */
  async addColumns(name: string, fields: readonly FieldSchema[]): Promise<FieldSchema[]> {
    const info = await this.getTable(name);
    if (info === undefined)
      throw new PgReplicateError('SINK_ERROR', `table ${this.qualified(name)} disappeared`);
    const present = new Set(info.fields.map((field) => field.name.toLowerCase()));
    const added = fields.filter((field) => !present.has(field.name.toLowerCase()));
    if (added.length === 0) return [];
    const schema = [
      ...info.fields,
      ...added.map((field) => ({ ...field, mode: field.mode === 'REQUIRED' ? 'NULLABLE' : field.mode })),
    ];
    await this.#call('adding columns to', name, () =>
      this.#table(name).setMetadata({ schema: { fields: schema } }),
    );
    return added;
  }

  /** Sets the table's `max_staleness` (`0-0 0 0:0:0` for none). */
  async setMaxStaleness(name: string, interval: string): Promise<void> {
    await this.#call('setting max_staleness of', name, () =>
      this.#table(name).setMetadata({ maxStaleness: interval }),
    );
  }

  /**
   * Makes `view` select everything from `target` (created, or repointed if it selects elsewhere);
   * `refresh` rewrites it anyway, so BigQuery updates the view's schema after columns were added.
   */
  async ensureView(view: string, target: string, refresh = false): Promise<void> {
    const query = `SELECT * FROM ${this.qualified(target)}`;
    const info = await this.getTable(view);
    if (info !== undefined && info.type !== 'VIEW') {
      throw new PgReplicateError('SINK_ERROR', `${this.qualified(view)} exists and is not a view`, {
        hint: 'the sink keeps a view of that name over its own tables: drop or rename the table, or use another dataset',
      });
    }
    if (info?.viewQuery === query && !refresh) return;
    await this.#call(info === undefined ? 'creating view' : 'repointing view', view, async () => {
      if (info !== undefined) {
        await this.#table(view).setMetadata({ view: { query, useLegacySql: false } });
        return;
      }
      try {
        await this.#dataset().createTable(view, { view: { query, useLegacySql: false } });
      } catch (error) {
        if ((error as ApiErrorLike).code !== 409) throw error;
        await this.#table(view).setMetadata({ view: { query, useLegacySql: false } });
      }
    });
  }

  async deleteTable(name: string): Promise<void> {
    await this.#call('deleting table', name, async () => {
      try {
        await this.#table(name).delete();
      } catch (error) {
        if ((error as ApiErrorLike).code !== 404) throw error;
      }
    });
  }

  /** Names of every table and view in the dataset. */
  async listTables(): Promise<string[]> {
    return this.#call('listing tables of', this.datasetId, async () => {
      const [tables] = await this.#dataset().getTables({ autoPaginate: true });
      return tables.map((table) => String(table.id));
    });
  }

  /** Runs a query; rows come back raw (`{ f: [{ v }] }`), timestamps as integer microseconds. */
  async query(sql: string, params: readonly QueryParam[], what: string): Promise<RestRow[]> {
    return this.#call(what, this.datasetId, async () => {
      const query: Query = {
        query: sql,
        params: Object.fromEntries(params.map((param) => [param.name, param.value])),
        types: Object.fromEntries(params.map((param) => [param.name, param.type])),
        ...(this.#location === undefined ? {} : { location: this.#location }),
        useQueryCache: false,
      };
      const [rows] = await this.#bigquery.query(query, { skipParsing: true });
      return rows as RestRow[];
    });
  }

  #dataset() {
    return this.#bigquery.dataset(this.datasetId, { projectId: this.projectId });
  }

  #table(name: string) {
    return this.#dataset().table(name);
  }

  async #call<T>(what: string, name: string, step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (error) {
      throw restError(
        what,
        `${this.projectId}.${this.datasetId}${name === this.datasetId ? '' : `.${name}`}`,
        error,
      );
    }
  }
}

/** A REST failure as a PgReplicateError: transient for 429/5xx (after the client's own retries). */
export function restError(what: string, target: string, error: unknown): PgReplicateError {
  if (error instanceof PgReplicateError) return error;
  const api = error as ApiErrorLike;
  const status = api.code;
  const reason = api.errors?.[0]?.reason;
  const message = `${what} ${target} failed: ${api.message ?? String(error)}${reason === undefined ? '' : ` (${reason})`}`;
  if (status === 429 || (status !== undefined && status >= 500) || reason === 'rateLimitExceeded') {
    return new PgReplicateError('SINK_UNAVAILABLE', message, {
      hint: 'BigQuery is overloaded or over quota; the pipeline can be restarted and resumes where it stopped',
      cause: error,
    });
  }
  const hint =
    status === 401 || status === 403
      ? 'check the credentials (GOOGLE_APPLICATION_CREDENTIALS or --bq-key-file) and that the account has roles/bigquery.dataEditor and roles/bigquery.jobUser'
      : status === 404
        ? 'check the project and dataset names'
        : undefined;
  return new PgReplicateError('SINK_ERROR', message, {
    ...(hint === undefined ? {} : { hint }),
    cause: error,
  });
}

/** The REST type name of a field, for comparing with tables.get. */
export function sameType(reported: string, wanted: FieldSchema['type']): boolean {
  return reported === wanted || reported === legacyTypeName(wanted);
}
