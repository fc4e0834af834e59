/**
 * pg-replicate: replicate Postgres tables with logical replication — a consistent backfill of the
 * tables in a publication, then every change after it, into a sink, resumed exactly where it
 * stopped.
 *
 * ```ts
 * import { Pipeline, PostgresSource, StdoutSink } from 'pg-replicate';
 *
 * const source = new PostgresSource({
 *   connection: { url: process.env.DATABASE_URL },
 *   publication: 'my_publication',
 *   slot: 'my_slot',
 * });
 * const pipeline = new Pipeline({ source, sink: new StdoutSink(), mode: 'both' });
 * await pipeline.run();
 * ```
 */

// Connections
export {
  type ConnectionInput,
  type ConnectionOptions,
  describeConnection,
  resolveConnection,
  SSL_MODES,
  type SslMode,
} from './connection/connection-options.js';
export { type CopiedRows, CopyTextBatch } from './copy-batch.js';
// Errors
export { type ErrorCode, isPgReplicateError, PgReplicateError } from './errors.js';
// Change events, rows, schemas
export type {
  ChangeEvent,
  DeleteEvent,
  InsertEvent,
  RowChangeEvent,
  SchemaEvent,
  TransactionInfo,
  TruncateEvent,
  UpdateEvent,
} from './events.js';
// LSNs
export { formatLsn, isValidLsn, type Lsn, maxLsn, minLsn, parseLsn, ZERO_LSN } from './lsn.js';
// The wire: pgoutput decoding and the replication protocol (for building your own consumers)
export { type DecoderOptions, PgoutputDecoder } from './pgoutput/decoder.js';
export type * from './pgoutput/messages.js';
export { ColumnKind, TupleData } from './pgoutput/tuple-data.js';
// Pipeline
export { Pipeline, type PipelineOptions, type PipelineResult } from './pipeline/pipeline.js';
export type { Logger, PipelineStats, ProgressEvent } from './pipeline/progress.js';
export {
  type CreatedSlot,
  type CreateSlotOptions,
  protocolVersionFor,
  ReplicationConnection,
  type StartReplicationOptions,
  type SystemIdentity,
} from './protocol/replication-connection.js';
export type {
  KeepaliveEvent,
  ReplicationEvent,
  ReplicationStream,
  XLogDataEvent,
} from './protocol/replication-stream.js';
export { CopyTextRow, parseRow, type RowData, type RowValue, UNCHANGED_TOAST } from './row.js';
export { type ColumnSchema, identityColumns, type TableSchema, tableKey } from './schema.js';
// Sinks
export { NullSink } from './sink/null-sink.js';
export {
  type ChangeBatch,
  type CopyChunk,
  type CopyPlan,
  EMPTY_SINK_STATE,
  type PartialCopy,
  type Sink,
  type SinkContext,
  type SinkState,
} from './sink/sink.js';
export { StateFile } from './sink/state-file.js';
export { StdoutSink, type StdoutSinkOptions } from './sink/stdout-sink.js';
// Source
export type { PublishedTable, SlotInfo } from './source/catalog.js';
export { PostgresSource, type PostgresSourceOptions, type Snapshot } from './source/postgres-source.js';
export { MIN_SERVER_VERSION, type ReplicationMode } from './source/preflight.js';
export { BUILTIN_TYPES } from './types/builtin-types.js';
// Types and values
export { formatJsonValue } from './types/json-format.js';
export {
  PgDate,
  type PgInfinity,
  PgInterval,
  PgTime,
  PgTimestamp,
  PgTimeTz,
  TIMESTAMP_INFINITY_MICROS,
  TIMESTAMP_MINUS_INFINITY_MICROS,
} from './types/temporal-values.js';
export { formatPgText } from './types/text-format.js';
export {
  type LoadOptions,
  type PgType,
  type PgTypeCategory,
  type Queryable,
  type TextParser,
  TypeRegistry,
} from './types/type-registry.js';
export {
  arrayLowerBounds,
  type BoundFormatter,
  isPgRecord,
  PgArray,
  PgJson,
  PgMultirange,
  PgRange,
  type PgRecord,
  PgUnknown,
  type PgValue,
} from './types/values.js';
