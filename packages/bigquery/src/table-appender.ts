/**
 * Appends serialized rows to one table's `_default` stream with the managed writer of
 * @google-cloud/bigquery-storage, and makes sure they land:
 *
 * - rows are cut into AppendRows requests of at most `maxBatchBytes` (BigQuery refuses requests
 *   over 10 MB), a few in flight at once on one connection (responses come back in order);
 * - a retryable failure (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, a broken or silent
 *   connection) is sent again after a backoff; rows carry their `_CHANGE_SEQUENCE_NUMBER`, so a
 *   duplicate is harmless. Right after a schema change, "extra fields" rejections are retried too:
 *   the Storage Write API sees added columns some time after tables.patch;
 * - anything else fails with the table and, from the response's row errors, the row to blame.
 *
 * The managed writer's own retries are left off: they re-send on the same connection, which
 * mixes up responses after a timeout, and they leave quota errors out.
 */
import { managedwriter, type protos } from '@google-cloud/bigquery-storage';
import { PgReplicateError } from 'pg-replicate';
import { Backoff, type BackoffOptions, GrpcStatus, isRetryableStatus, statusName } from './retry.js';

type DescriptorProto = protos.google.protobuf.IDescriptorProto;
type AppendRowsResponse = protos.google.cloud.bigquery.storage.v1.IAppendRowsResponse;
type StreamConnection = Awaited<ReturnType<managedwriter.WriterClient['createStreamConnection']>>;

export interface AppenderOptions {
  /** Largest AppendRows request (bytes of rows). */
  readonly maxBatchBytes: number;
  /** Requests in flight at once on the table's connection. */
  readonly maxInFlight: number;
  readonly backoff: BackoffOptions;
  /** A request without an answer after this long is given up and sent again on a new connection. */
  readonly requestTimeoutMs: number;
  /** How long after a schema change rejections for unknown fields are retried. */
  readonly schemaPropagationMs: number;
  readonly signal?: AbortSignal | undefined;
  readonly log: (message: string) => void;
}

/** Counters over the appender's life (throughput reports). */
export interface AppendStats {
  requests: number;
  rows: number;
  bytes: number;
  retries: number;
}

interface Failure {
  readonly code: number;
  readonly message: string;
  readonly rowErrors: readonly { index: number; message: string }[];
}

/** A connection gone bad is closed this long after its last failure (its writes settle first). */
const BROKEN_GRACE_MS = 5_000;
const REQUEST_OVERHEAD_BYTES = 3;

export class TableAppender {
  readonly #client: managedwriter.WriterClient;
  readonly #path: string;
  /** What messages call the table, e.g. `"public"."orders" (dataset.public_orders__v…)`. */
  readonly #label: string;
  readonly #options: AppenderOptions;
  #descriptor: DescriptorProto;
  #schemaChangedAt = 0;
  #connection: Promise<StreamConnection> | null = null;
  #writer: {
    connection: StreamConnection;
    descriptor: DescriptorProto;
    writer: managedwriter.Writer;
  } | null = null;
  /** The status a connection failed with: the managed writer fails its other writes with a generic UNAVAILABLE. */
  readonly #connectionErrors = new WeakMap<StreamConnection, { code: number; message: string }>();
  readonly stats: AppendStats = { requests: 0, rows: 0, bytes: 0, retries: 0 };

  constructor(
    client: managedwriter.WriterClient,
    path: string,
    label: string,
    descriptor: DescriptorProto,
    options: AppenderOptions,
  ) {
    this.#client = client;
    this.#path = path;
    this.#label = label;
    this.#descriptor = descriptor;
    this.#options = options;
  }

  /** Rows appended from now on follow `descriptor` (after columns were added). */
  setDescriptor(descriptor: DescriptorProto): void {
    this.#descriptor = descriptor;
    this.#schemaChangedAt = Date.now();
  }

  /**
   * Appends `rows`; resolves once BigQuery acknowledged every one. `describe(i)` names row `i` in
   * error messages (its key and change). `ordered`: one request at a time (else `maxInFlight`).
   */
  async append(
    rows: readonly Uint8Array[],
    describe: (index: number) => string,
    { ordered = false }: { ordered?: boolean } = {},
  ): Promise<void> {
    const chunks = this.#chunks(rows, describe);
    if (ordered) {
      // Each request waits for the one before: whatever fails, BigQuery holds a prefix of the rows.
      for (const [start, end] of chunks) await this.#sendWithRetry(rows, start, end, describe);
      return;
    }
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const [start, end] = chunks[next++]!;
        await this.#sendWithRetry(rows, start, end, describe);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#options.maxInFlight, chunks.length) }, worker));
  }

  /** Closes the connection (rows in flight are abandoned). */
  async close(): Promise<void> {
    const connection = await this.#connection?.catch(() => null);
    this.#connection = null;
    this.#writer = null;
    if (connection) closeConnection(connection);
  }

  #chunks(rows: readonly Uint8Array[], describe: (index: number) => string): [number, number][] {
    const limit = this.#options.maxBatchBytes;
    const chunks: [number, number][] = [];
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < rows.length; i++) {
      const size = rows[i]!.length + REQUEST_OVERHEAD_BYTES;
      if (size > limit) {
        throw new PgReplicateError(
          'SINK_ERROR',
          `${this.#label}: ${describe(i)} takes ${size} bytes, more than one AppendRows request may carry (${limit})`,
          {
            hint: 'BigQuery refuses requests over 10 MB: raise maxBatchBytes up to 9.5 MB, or keep such values out of the publication',
          },
        );
      }
      if (bytes + size > limit && i > start) {
        chunks.push([start, i]);
        start = i;
        bytes = 0;
      }
      bytes += size;
    }
    if (rows.length > start) chunks.push([start, rows.length]);
    return chunks;
  }

  async #sendWithRetry(
    rows: readonly Uint8Array[],
    start: number,
    end: number,
    describe: (index: number) => string,
  ): Promise<void> {
    const batch = rows.slice(start, end);
    const bytes = batch.reduce((sum, row) => sum + row.length, 0);
    const backoff = new Backoff(this.#options.backoff);
    for (;;) {
      backoff.next();
      const failure = await this.#sendOnce(batch);
      this.stats.requests++;
      if (failure === null) {
        this.stats.rows += batch.length;
        this.stats.bytes += bytes;
        return;
      }
      // Until BigQuery sees added columns, retries are bounded by time (schemaPropagationMs), not attempts.
      const waitingForSchema = this.#schemaNotVisibleYet(failure);
      if (!waitingForSchema && !isRetryableStatus(failure.code))
        throw this.#rejection(failure, start, describe);
      if (
        (!waitingForSchema && backoff.attempts >= this.#options.backoff.maxAttempts) ||
        this.#options.signal?.aborted
      ) {
        throw new PgReplicateError(
          'SINK_UNAVAILABLE',
          `appending to ${this.#label} kept failing: ${statusName(failure.code)}: ${failure.message} (${backoff.attempts} attempts)`,
          {
            hint: 'BigQuery is unavailable or over quota; the pipeline resumes where it stopped when restarted',
          },
        );
      }
      this.stats.retries++;
      this.#options.log(
        `appending ${batch.length} row(s) to ${this.#label} failed (${statusName(failure.code)}: ${failure.message}); retrying`,
      );
      await backoff.pause(this.#options.signal);
    }
  }

  /** One attempt; null on success. */
  async #sendOnce(batch: readonly Uint8Array[]): Promise<Failure | null> {
    let connection: StreamConnection;
    try {
      connection = await this.#openConnection();
    } catch (error) {
      this.#connection = null;
      return {
        code: errorCode(error, GrpcStatus.UNAVAILABLE),
        message: (error as Error).message,
        rowErrors: [],
      };
    }
    const pending = this.#writerFor(connection).appendRows({ serializedRows: [...batch] });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#options.requestTimeoutMs);
    });
    try {
      const result = await Promise.race([pending.getResult(), timeout]);
      if (result === 'timeout') {
        pending.abort();
        this.#dropConnection(connection, true);
        return {
          code: GrpcStatus.DEADLINE_EXCEEDED,
          message: `no answer in ${this.#options.requestTimeoutMs} ms`,
          rowErrors: [],
        };
      }
      return responseFailure(result);
    } catch (error) {
      // Errors without a status come from the connection (closed, aborted, broken): start a new one.
      const code = errorCode(error, -1);
      if (code === -1) this.#dropConnection(connection, false);
      // A write failed because its connection ended: the connection's own status is the reason.
      const ended = this.#connectionErrors.get(connection);
      if (ended !== undefined && (code === -1 || code === GrpcStatus.UNAVAILABLE))
        return { ...ended, rowErrors: [] };
      const message = (error as Error).message;
      return { code: code === -1 ? GrpcStatus.UNAVAILABLE : code, message, rowErrors: [] };
    } finally {
      clearTimeout(timer);
    }
  }

  #schemaNotVisibleYet(failure: Failure): boolean {
    return (
      failure.code === GrpcStatus.INVALID_ARGUMENT &&
      /more fields than BigQuery schema|extra fields|SCHEMA_MISMATCH/i.test(failure.message) &&
      Date.now() - this.#schemaChangedAt < this.#options.schemaPropagationMs
    );
  }

  #openConnection(): Promise<StreamConnection> {
    if (this.#connection === null) {
      const opening = this.#client
        .createStreamConnection({ streamId: managedwriter.DefaultStream, destinationTable: this.#path })
        .then((connection) => {
          // Without a listener the managed writer throws its connection errors; ours retires the connection.
          connection.onConnectionError((error) => {
            this.#connectionErrors.set(connection, {
              code: errorCode(error, GrpcStatus.UNAVAILABLE),
              message: error.message,
            });
            this.#dropConnection(connection, false);
          });
          return connection;
        });
      this.#connection = opening;
    }
    return this.#connection;
  }

  #writerFor(connection: StreamConnection): managedwriter.Writer {
    const current = this.#writer;
    if (current !== null && current.connection === connection && current.descriptor === this.#descriptor)
      return current.writer;
    const writer = new managedwriter.Writer({ connection, protoDescriptor: this.#descriptor });
    this.#writer = { connection, descriptor: this.#descriptor, writer };
    return writer;
  }

  /** Stops using `connection`: later writes open a new one; it is closed once its writes settled. */
  #dropConnection(connection: StreamConnection, now: boolean): void {
    void this.#connection?.then((current) => {
      if (current === connection) this.#connection = null;
    });
    if (this.#writer?.connection === connection) this.#writer = null;
    if (now) closeConnection(connection);
    else setTimeout(() => closeConnection(connection), BROKEN_GRACE_MS).unref();
  }

  #rejection(failure: Failure, start: number, describe: (index: number) => string): PgReplicateError {
    const rows = failure.rowErrors.map((row) => `${describe(start + row.index)}: ${row.message}`);
    const blamed =
      rows.length > 0
        ? ` — ${rows.slice(0, 3).join('; ')}${rows.length > 3 ? `; and ${rows.length - 3} more` : ''}`
        : ` (first row of the request: ${describe(start)})`;
    const hint =
      failure.code === GrpcStatus.PERMISSION_DENIED || failure.code === GrpcStatus.UNAUTHENTICATED
        ? 'check the credentials and that the account has roles/bigquery.dataEditor on the dataset'
        : failure.code === GrpcStatus.NOT_FOUND
          ? 'the table was dropped behind the sink: drop its view and state row and restart to copy it again'
          : 'this row cannot be written as it is; see the type mapping in the README of @pg-replicate/bigquery';
    return new PgReplicateError(
      'SINK_ERROR',
      `BigQuery rejected rows of ${this.#label}: ${statusName(failure.code)}: ${failure.message}${blamed}`,
      { hint },
    );
  }
}

function responseFailure(response: AppendRowsResponse): Failure | null {
  const error = response.error;
  if (error === null || error === undefined || (error.code ?? 0) === 0) return null;
  return {
    code: error.code ?? GrpcStatus.UNKNOWN,
    message: error.message ?? '',
    rowErrors: (response.rowErrors ?? []).map((row) => ({
      index: Number(row.index ?? 0),
      message: row.message ?? '',
    })),
  };
}

function errorCode(error: unknown, fallback: number): number {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : fallback;
}

function closeConnection(connection: StreamConnection): void {
  for (const pending of connection.getPendingWrites()) pending.abort();
  try {
    connection.close();
  } catch {
    // already closed
  }
}
