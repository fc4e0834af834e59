/**
 * The fake Storage Write API: `BigQueryWrite.AppendRows` on a table's `_default` stream, served
 * with @grpc/grpc-js from the service definition Google publishes in @google-cloud/bigquery-storage
 * (`build/protos/protos.json`), so the real client talks to it unchanged.
 *
 * Each request's rows are decoded with the writer schema the client sent (protobufjs), checked
 * against the table (field names, protobuf types, REQUIRED and key columns, value ranges) and
 * applied with the CDC semantics of `fake-table.ts`. What BigQuery rejects, the fake rejects the
 * same way: an in-band `error` (plus `rowErrors` for bad rows, nothing applied), e.g. for a field
 * the table lacks, `_CHANGE_TYPE` on a table without a primary key, a malformed
 * `_CHANGE_SEQUENCE_NUMBER`, or a request over 10 MB. Faults can be injected per table.
 */
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import type { FakeStore } from './fake-store.js';
import { type Cell, type FakeField, type FakeRow, type FakeTable, parseSequence } from './fake-table.js';
import { type Decoded, type ProtoTypeName, protoMismatch, toCell, ValueError } from './fake-values.js';

const require = createRequire(import.meta.url);

/** The published service definition, loaded once. */
export function writeServiceDefinition(): grpc.ServiceDefinition {
  const json = require('@google-cloud/bigquery-storage/build/protos/protos.json') as protobuf.INamespace;
  const definition = loader.fromJSON(json, {
    keepCase: false, // the published JSON descriptors use camelCase names
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: false,
    oneofs: true,
  });
  return definition['google.cloud.bigquery.storage.v1.BigQueryWrite'] as grpc.ServiceDefinition;
}

/** BigQuery's limit on one AppendRows request. */
export const MAX_REQUEST_BYTES = 10 * 1024 * 1024;

/** A failure the fake produces on purpose. */
export interface WriteFault {
  /** Only appends to tables whose name starts with this (a view's versions: `public_t__v`; default: any). */
  table?: string;
  /**
   * `status`: the call ends with this status (the connection breaks); `response`: an in-band
   * error; `silence`: the connection hangs: neither this request nor later ones on it are answered.
   */
  as: 'status' | 'response' | 'silence';
  /** gRPC status code, e.g. 14 UNAVAILABLE, 8 RESOURCE_EXHAUSTED, 3 INVALID_ARGUMENT. */
  code: number;
  message?: string;
  /** How many appends it hits (default 1). */
  times?: number;
  /** Appends to let through before it hits (default 0). */
  after?: number;
}

interface AppendRequest {
  writeStream?: string;
  protoRows?: {
    writerSchema?: { protoDescriptor?: DescriptorJson };
    rows?: { serializedRows?: Buffer[] };
  };
  arrowRows?: unknown;
  offset?: unknown;
}

interface DescriptorJson {
  name?: string;
  field?: { name: string; number: number; label?: string; type?: string; typeName?: string }[];
  nestedType?: unknown[];
}

interface WriterSchema {
  readonly type: protobuf.Type;
  readonly fields: readonly { name: string; proto: ProtoTypeName | null; repeated: boolean }[];
}

interface Connection {
  stream: string | null;
  schema: WriterSchema | null;
  mode: 'cdc' | 'plain' | null;
  silenced: boolean;
}

const PROTO_TYPES: Readonly<Record<string, ProtoTypeName>> = {
  TYPE_DOUBLE: 'double',
  TYPE_FLOAT: 'float',
  TYPE_INT64: 'int64',
  TYPE_UINT64: 'uint64',
  TYPE_INT32: 'int32',
  TYPE_UINT32: 'uint32',
  TYPE_BOOL: 'bool',
  TYPE_STRING: 'string',
  TYPE_BYTES: 'bytes',
};

const STREAM_NAME = /^projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/]+)\/streams\/(.+)$/;

class AppendError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly rowErrors: { index: number; message: string }[] = [],
  ) {
    super(message);
  }
}

/** Counters the throughput script and tests read. */
export interface WriteStats {
  requests: number;
  rows: number;
  bytes: number;
  rejected: number;
  /** Time spent decoding, checking and applying requests (the fake's own share of a run). */
  busyMs: number;
}

export class FakeWriteService {
  readonly stats: WriteStats = { requests: 0, rows: 0, bytes: 0, rejected: 0, busyMs: 0 };
  readonly #store: FakeStore;
  readonly #faults: WriteFault[] = [];
  /** Every request's table, in arrival order (tests check ordering and retries with it). */
  readonly log: { table: string; rows: number; outcome: string }[] = [];

  constructor(store: FakeStore) {
    this.#store = store;
  }

  inject(fault: WriteFault): void {
    this.#faults.push({ ...fault, times: fault.times ?? 1 });
  }

  clearFaults(): void {
    this.#faults.length = 0;
  }

  implementation(): grpc.UntypedServiceImplementation {
    const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
      callback({ code: grpc.status.UNIMPLEMENTED, details: 'the fake models the _default stream only' });
    return {
      AppendRows: (call: grpc.ServerDuplexStream<AppendRequest, unknown>) => this.#appendRows(call),
      CreateWriteStream: unimplemented,
      GetWriteStream: unimplemented,
      FinalizeWriteStream: unimplemented,
      BatchCommitWriteStreams: unimplemented,
      FlushRows: unimplemented,
    };
  }

  #appendRows(call: grpc.ServerDuplexStream<AppendRequest, unknown>): void {
    const connection: Connection = { stream: null, schema: null, mode: null, silenced: false };
    call.on('data', (request: AppendRequest) => {
      this.stats.requests++;
      const stream = request.writeStream || connection.stream || '';
      const table = STREAM_NAME.exec(stream)?.[3] ?? '?';
      const rowCount = request.protoRows?.rows?.serializedRows?.length ?? 0;
      const fault = this.#takeFault(table);
      if (connection.silenced || fault?.as === 'silence') {
        // A hung connection: this request and every later one on it stay unanswered.
        connection.silenced = true;
        this.log.push({ table, rows: rowCount, outcome: 'silence' });
        return;
      }
      if (fault?.as === 'status') {
        this.log.push({ table, rows: rowCount, outcome: `status ${fault.code}` });
        call.emit('error', { code: fault.code, details: fault.message ?? `injected status ${fault.code}` });
        return;
      }
      if (fault !== undefined) {
        this.log.push({ table, rows: rowCount, outcome: `error ${fault.code}` });
        call.write({ error: { code: fault.code, message: fault.message ?? `injected error ${fault.code}` } });
        return;
      }
      const started = performance.now();
      try {
        this.#append(request, connection);
        this.stats.busyMs += performance.now() - started;
        this.log.push({ table, rows: rowCount, outcome: 'ok' });
        call.write({ appendResult: {}, writeStream: stream });
      } catch (error) {
        if (!(error instanceof AppendError)) throw error;
        this.stats.rejected++;
        this.log.push({ table, rows: rowCount, outcome: `rejected ${error.code}: ${error.message}` });
        call.write({
          error: { code: error.code, message: error.message },
          rowErrors: error.rowErrors.map((row) => ({
            index: String(row.index),
            code: 'FIELDS_ERROR',
            message: row.message,
          })),
          writeStream: stream,
        });
      }
    });
    call.on('end', () => call.end());
    call.on('error', () => {});
  }

  #takeFault(table: string): WriteFault | undefined {
    const index = this.#faults.findIndex(
      (fault) => fault.table === undefined || table.startsWith(fault.table),
    );
    if (index === -1) return undefined;
    const fault = this.#faults[index]!;
    if ((fault.after ?? 0) > 0) {
      fault.after = fault.after! - 1;
      return undefined;
    }
    fault.times = (fault.times ?? 1) - 1;
    if (fault.times <= 0) this.#faults.splice(index, 1);
    return fault;
  }

  #append(request: AppendRequest, connection: Connection): void {
    if (request.writeStream) connection.stream = request.writeStream;
    const match = STREAM_NAME.exec(connection.stream ?? '');
    if (match === null) throw new AppendError(grpc.status.INVALID_ARGUMENT, 'write_stream is required');
    const [, project, dataset, tableId, streamId] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
    ];
    if (streamId !== '_default')
      throw new AppendError(
        grpc.status.NOT_FOUND,
        `stream ${streamId} not found (the fake models _default only)`,
      );
    if (request.arrowRows !== undefined)
      throw new AppendError(grpc.status.INVALID_ARGUMENT, 'the fake models protobuf rows only');
    if (request.offset !== undefined && request.offset !== null)
      throw new AppendError(
        grpc.status.INVALID_ARGUMENT,
        'offset cannot be specified for the _default stream',
      );
    const table = this.#store.table(project, dataset, tableId);
    if (table === undefined || table.type !== 'TABLE')
      throw new AppendError(
        grpc.status.NOT_FOUND,
        `Requested entity was not found: table ${project}.${dataset}.${tableId}`,
      );
    const descriptor = request.protoRows?.writerSchema?.protoDescriptor;
    if (descriptor !== undefined) connection.schema = writerSchema(descriptor);
    if (connection.schema === null)
      throw new AppendError(
        grpc.status.INVALID_ARGUMENT,
        'the first request of a connection must carry writer_schema',
      );
    const rows = request.protoRows?.rows?.serializedRows ?? [];
    const bytes = rows.reduce((sum, row) => sum + row.length, 0) + JSON.stringify(descriptor ?? {}).length;
    if (bytes > MAX_REQUEST_BYTES)
      throw new AppendError(
        grpc.status.INVALID_ARGUMENT,
        `AppendRows request too large: ${bytes} bytes, limit ${MAX_REQUEST_BYTES}`,
      );
    const schema = table.currentWriteSchema();
    const plan = columnPlan(connection.schema, schema);
    const cdc = plan.changeType !== null;
    if (connection.mode !== null && connection.mode !== (cdc ? 'cdc' : 'plain'))
      throw new AppendError(grpc.status.INVALID_ARGUMENT, 'The given value is not a valid CHANGE_TYPE');
    connection.mode = cdc ? 'cdc' : 'plain';
    if (cdc && table.primaryKey.length === 0)
      throw new AppendError(
        grpc.status.INVALID_ARGUMENT,
        `table ${tableId} has no primary key: UPSERT and DELETE (_CHANGE_TYPE) need one`,
      );
    const decoded = decodeRows(connection.schema.type, rows, plan, table);
    if (cdc) table.applyChanges(decoded, this.#store.appliesImmediately);
    else table.appendRows(decoded.map((row) => row.row));
    this.stats.rows += rows.length;
    this.stats.bytes += bytes;
  }
}

function writerSchema(descriptor: DescriptorJson): WriterSchema {
  if ((descriptor.nestedType?.length ?? 0) > 0)
    throw new AppendError(
      grpc.status.INVALID_ARGUMENT,
      'the fake models flat rows only (no nested messages)',
    );
  const type = new protobuf.Type(descriptor.name || 'Row');
  const fields = (descriptor.field ?? []).map((field) => {
    const proto = PROTO_TYPES[field.type ?? ''] ?? null;
    if (proto === null)
      throw new AppendError(
        grpc.status.INVALID_ARGUMENT,
        `field ${field.name}: type ${field.type} is not modeled by the fake`,
      );
    const repeated = field.label === 'LABEL_REPEATED';
    const rule = repeated ? 'repeated' : field.label === 'LABEL_REQUIRED' ? 'required' : 'optional';
    type.add(new protobuf.Field(field.name, field.number, proto, rule));
    return { name: field.name, proto, repeated };
  });
  new protobuf.Root().add(type);
  return { type, fields };
}

interface ColumnPlan {
  /** Writer field name → table column. */
  readonly columns: ReadonlyMap<string, FakeField>;
  readonly changeType: string | null;
  readonly sequence: string | null;
}

function columnPlan(writer: WriterSchema, schema: readonly FakeField[]): ColumnPlan {
  const byName = new Map(schema.map((field) => [field.name.toLowerCase(), field]));
  const columns = new Map<string, FakeField>();
  let changeType: string | null = null;
  let sequence: string | null = null;
  const extra: string[] = [];
  for (const field of writer.fields) {
    const upper = field.name.toUpperCase();
    if (upper === '_CHANGE_TYPE' || upper === '_CHANGE_SEQUENCE_NUMBER') {
      if (field.proto !== 'string' || field.repeated)
        throw new AppendError(grpc.status.INVALID_ARGUMENT, `${field.name} must be a singular string field`);
      if (upper === '_CHANGE_TYPE') changeType = field.name;
      else sequence = field.name;
      continue;
    }
    const column = byName.get(field.name.toLowerCase());
    if (column === undefined) {
      extra.push(field.name);
      continue;
    }
    const mismatch = protoMismatch(column, field.proto!, field.repeated);
    if (mismatch !== null) throw new AppendError(grpc.status.INVALID_ARGUMENT, mismatch);
    columns.set(field.name, column);
  }
  if (extra.length > 0) {
    throw new AppendError(
      grpc.status.INVALID_ARGUMENT,
      `Input schema has more fields than BigQuery schema, extra fields: '${extra.join("', '")}'`,
    );
  }
  return { columns, changeType, sequence };
}

function decodeRows(
  type: protobuf.Type,
  rows: readonly Buffer[],
  plan: ColumnPlan,
  table: FakeTable,
): { key: string; sequence: bigint[] | null; deleted: boolean; row: FakeRow }[] {
  const out: { key: string; sequence: bigint[] | null; deleted: boolean; row: FakeRow }[] = [];
  const rowErrors: { index: number; message: string }[] = [];
  rows.forEach((bytes, index) => {
    try {
      out.push(decodeRow(type, bytes, plan, table));
    } catch (error) {
      if (!(error instanceof ValueError || error instanceof Error)) throw error;
      rowErrors.push({ index, message: error.message });
    }
  });
  if (rowErrors.length > 0) {
    throw new AppendError(
      grpc.status.INVALID_ARGUMENT,
      `Errors found while processing rows. Please refer to the row_errors field for details. The list may not be complete because of the size limitations. Entity: ${table.id}`,
      rowErrors,
    );
  }
  return out;
}

function decodeRow(
  type: protobuf.Type,
  bytes: Buffer,
  plan: ColumnPlan,
  table: FakeTable,
): { key: string; sequence: bigint[] | null; deleted: boolean; row: FakeRow } {
  const message = type.toObject(type.decode(bytes), {
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: false,
  }) as Record<string, Decoded | Decoded[]>;
  const row: FakeRow = {};
  for (const [fieldName, column] of plan.columns) {
    const value = message[fieldName];
    if (value === undefined || value === null) continue;
    try {
      row[column.name] = Array.isArray(value)
        ? value.map((item): { v: Cell } => ({ v: toCell(column, item) }))
        : toCell(column, value);
    } catch (error) {
      throw new ValueError(`field ${column.name}: ${(error as Error).message}`);
    }
  }
  let deleted = false;
  let sequence: bigint[] | null = null;
  if (plan.changeType !== null) {
    const changeType = message[plan.changeType];
    if (changeType !== 'UPSERT' && changeType !== 'DELETE')
      throw new ValueError('The given value is not a valid CHANGE_TYPE');
    deleted = changeType === 'DELETE';
    if (plan.sequence !== null && message[plan.sequence] !== undefined) {
      sequence = parseSequence(String(message[plan.sequence]));
      if (sequence === null)
        throw new ValueError(
          `${JSON.stringify(message[plan.sequence])} is not a valid _CHANGE_SEQUENCE_NUMBER`,
        );
    }
  }
  const schema = table.currentWriteSchema();
  const required = deleted
    ? table.primaryKey
    : schema.filter((field) => field.mode === 'REQUIRED').map((field) => field.name);
  for (const name of required) {
    const value = row[name];
    if (value === undefined || value === null) throw new ValueError(`required field ${name} is missing`);
  }
  for (const field of schema)
    if (row[field.name] === undefined) row[field.name] = field.mode === 'REPEATED' ? [] : null;
  const key = JSON.stringify(table.primaryKey.map((name) => row[name]));
  return { key, sequence, deleted, row };
}
