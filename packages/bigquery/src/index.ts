/**
 * @pg-replicate/bigquery: a pg-replicate sink that keeps Postgres tables current in BigQuery
 * through the Storage Write API's CDC upserts (`_CHANGE_TYPE`, `_CHANGE_SEQUENCE_NUMBER`).
 */
export { encodeChangeSequence } from './change-sequence.js';
