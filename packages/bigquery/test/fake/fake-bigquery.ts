/**
 * A local BigQuery for tests: the Storage Write API over gRPC and the v2 REST API over HTTP, on
 * loopback ports, sharing one in-memory store. Point the real Google clients at it with
 * {@link FakeBigQuery.clientOptions}; inspect what BigQuery would hold with {@link FakeBigQuery.rows}.
 *
 * ```ts
 * const fake = await FakeBigQuery.start();
 * const sink = new BigQuerySink({ projectId: 'p', datasetId: 'd', clientOptions: fake.clientOptions() });
 * ```
 */
import * as grpc from '@grpc/grpc-js';
import { GoogleAuth, OAuth2Client } from 'google-auth-library';
import type { BigQueryClientOptions, WriteClientOptions } from '../../src/clients.js';
import { FakeRestService, type RestFault } from './fake-rest-service.js';
import { FakeStore, type FakeStoreOptions } from './fake-store.js';
import type { FakeRow, FakeTable } from './fake-table.js';
import { FakeWriteService, type WriteFault, writeServiceDefinition } from './fake-write-service.js';

export type { FakeRow, RestFault, WriteFault };

/** google-gax pins its own google-auth-library version; the object is the same shape. */
type WriteAuth = WriteClientOptions['auth'];

export class FakeBigQuery {
  readonly store: FakeStore;
  readonly write: FakeWriteService;
  readonly rest: FakeRestService;
  readonly #grpc: grpc.Server;
  readonly grpcPort: number;
  readonly restPort: number;

  private constructor(
    store: FakeStore,
    write: FakeWriteService,
    rest: FakeRestService,
    server: grpc.Server,
    grpcPort: number,
    restPort: number,
  ) {
    this.store = store;
    this.write = write;
    this.rest = rest;
    this.#grpc = server;
    this.grpcPort = grpcPort;
    this.restPort = restPort;
  }

  static async start(options: FakeStoreOptions = {}): Promise<FakeBigQuery> {
    const store = new FakeStore(options);
    const write = new FakeWriteService(store);
    const rest = new FakeRestService(store);
    const server = new grpc.Server({
      // Above BigQuery's 10 MB request limit, so the fake itself answers oversize requests.
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
    server.addService(writeServiceDefinition(), write.implementation());
    const grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) =>
        error ? reject(error) : resolve(port),
      ),
    );
    const restPort = await rest.listen();
    return new FakeBigQuery(store, write, rest, server, grpcPort, restPort);
  }

  /** Options for both Google clients: endpoints on loopback, no TLS, a dummy bearer token. */
  clientOptions(): BigQueryClientOptions {
    const auth = new OAuth2Client();
    auth.setCredentials({ access_token: 'fake-token', expiry_date: Date.now() + 24 * 3_600_000 });
    return {
      bigquery: { apiEndpoint: `http://127.0.0.1:${this.restPort}`, authClient: auth },
      storageWrite: {
        // Credentials are not used over an insecure channel, but the client asks its auth object
        // for the universe domain: without one it would probe the GCE metadata server.
        auth: new GoogleAuth({ authClient: auth, universeDomain: 'googleapis.com' }) as unknown as WriteAuth,
        servicePath: '127.0.0.1',
        port: this.grpcPort,
        sslCreds: grpc.credentials.createInsecure(),
      },
    };
  }

  injectWriteFault(fault: WriteFault): void {
    this.write.inject(fault);
  }

  injectRestFault(fault: RestFault): void {
    this.rest.inject(fault);
  }

  table(project: string, dataset: string, table: string): FakeTable | undefined {
    return this.store.table(project, dataset, table);
  }

  /** What a fully fresh query of a table or view returns now (views followed to their table). */
  rows(project: string, dataset: string, name: string): FakeRow[] {
    let table = this.store.table(project, dataset, name);
    for (let depth = 0; table?.type === 'VIEW' && depth < 8; depth++) {
      const target = /`([^`.]+)\.([^`.]+)\.([^`]+)`/.exec(table.viewQuery ?? '');
      table = target === null ? undefined : this.store.table(target[1]!, target[2]!, target[3]!);
    }
    if (table === undefined) throw new Error(`no table ${project}.${dataset}.${name} in the fake`);
    return table.currentRows();
  }

  /** Names of the tables and views of a dataset. */
  tableNames(project: string, dataset: string): string[] {
    return [...(this.store.dataset(project, dataset)?.tables.keys() ?? [])].sort();
  }

  async stop(): Promise<void> {
    this.store.close();
    await this.rest.close();
    await new Promise<void>((resolve) => this.#grpc.tryShutdown(() => resolve()));
    this.#grpc.forceShutdown();
  }
}
