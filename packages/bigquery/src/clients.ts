/**
 * The two Google clients the sink uses, built one way: @google-cloud/bigquery for the REST API
 * (datasets, tables, views, queries) and the Storage Write API's managed writer from
 * @google-cloud/bigquery-storage for rows. Both authenticate with Application Default Credentials
 * unless given a service-account key file, and both accept endpoint overrides (an emulator, the
 * test fake, a private endpoint) through {@link BigQueryClientOptions}.
 */
import { BigQuery, type BigQueryOptions } from '@google-cloud/bigquery';
import { managedwriter } from '@google-cloud/bigquery-storage';

/** Options of the managed writer's client (google-gax `ClientOptions`). */
export type WriteClientOptions = NonNullable<ConstructorParameters<typeof managedwriter.WriterClient>[0]>;

/** Extra options passed to each client as is (endpoints, credentials, retries…). */
export interface BigQueryClientOptions {
  /** For `new BigQuery(…)`, e.g. `{ apiEndpoint: 'http://localhost:9050' }`. */
  readonly bigquery?: BigQueryOptions;
  /** For `new managedwriter.WriterClient(…)`, e.g. `{ servicePath, port, sslCreds }`. */
  readonly storageWrite?: WriteClientOptions;
}

export interface ClientSettings {
  readonly projectId: string;
  readonly location?: string | undefined;
  readonly keyFilename?: string | undefined;
  /** Retries of REST calls by the client itself (429, 5xx, rateLimitExceeded). */
  readonly maxRetries: number;
  /** Longest pause between two of those retries. */
  readonly maxRetryDelayMs: number;
  readonly clientOptions?: BigQueryClientOptions | undefined;
}

export interface Clients {
  readonly bigquery: BigQuery;
  readonly writer: managedwriter.WriterClient;
}

export function createClients(settings: ClientSettings): Clients {
  const auth = {
    projectId: settings.projectId,
    ...(settings.keyFilename === undefined ? {} : { keyFilename: settings.keyFilename }),
  };
  const bigquery = new BigQuery({
    ...auth,
    ...(settings.location === undefined ? {} : { location: settings.location }),
    retryOptions: {
      autoRetry: true,
      maxRetries: settings.maxRetries,
      maxRetryDelay: settings.maxRetryDelayMs / 1000,
    },
    ...settings.clientOptions?.bigquery,
  });
  const writer = new managedwriter.WriterClient({ ...auth, ...settings.clientOptions?.storageWrite });
  return { bigquery, writer };
}
