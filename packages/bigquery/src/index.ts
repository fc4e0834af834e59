/**
 * @pg-replicate/bigquery: a pg-replicate sink that keeps Postgres tables current in BigQuery
 * through the Storage Write API's CDC upserts (`_CHANGE_TYPE`, `_CHANGE_SEQUENCE_NUMBER`), with
 * its resumption state in the dataset itself.
 *
 * ```ts
 * import { Pipeline, PostgresSource } from 'pg-replicate';
 * import { BigQuerySink } from '@pg-replicate/bigquery';
 *
 * const source = new PostgresSource({ publication: 'my_publication', slot: 'my_slot' });
 * const sink = new BigQuerySink({ projectId: 'my-project', datasetId: 'replica' });
 * await new Pipeline({ source, sink, mode: 'both' }).run();
 * ```
 */
export { BigQuerySink } from './bigquery-sink.js';
export { encodeChangeSequence } from './change-sequence.js';
export type { BigQueryClientOptions, WriteClientOptions } from './clients.js';
export { type BigQuerySinkOptions, parseDuration, type SinkLogger } from './options.js';
export type { UnrepresentablePolicy } from './row-encoder.js';
export { STATE_TABLE } from './state-table.js';
export { type BigQueryType, mapColumn, type TypeMapping } from './type-mapping.js';
