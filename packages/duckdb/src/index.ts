/**
 * @pg-replicate/duckdb: a pg-replicate sink that keeps a DuckDB file equal to the replicated
 * Postgres tables, exactly once, with an optional changelog of every change.
 *
 * ```ts
 * import { Pipeline, PostgresSource } from 'pg-replicate';
 * import { DuckDbSink } from '@pg-replicate/duckdb';
 *
 * const source = new PostgresSource({ publication: 'my_publication', slot: 'my_slot' });
 * await new Pipeline({ source, sink: new DuckDbSink({ path: './replica.duckdb' }), mode: 'both' }).run();
 * ```
 */
export type { ChangelogMode } from './changelog.js';
export { DuckDbSink, type DuckDbSinkOptions } from './duckdb-sink.js';
export { STATE_SCHEMA } from './state-store.js';
export { mapColumn, type TypeMapping } from './type-mapping.js';
