/**
 * The JSON a value becomes in the stdout sink's output — a user-facing contract, so every case
 * is spelled out here and nothing goes through `JSON.stringify` of a whole value (which would
 * throw on bigint, round big JSON numbers and print Buffers as byte lists).
 *
 * | value | JSON |
 * |---|---|
 * | null | `null` |
 * | boolean | `true` / `false` |
 * | number (int2, int4, oid, floats) | a JSON number; NaN/±Infinity as `"NaN"`, `"Infinity"`, `"-Infinity"` |
 * | bigint (int8), numeric string | a JSON string with every digit |
 * | json, jsonb | the document itself, its text spliced in unchanged |
 * | timestamp, timestamptz | ISO 8601 string, six fractional digits, `Z` for timestamptz; `"infinity"`/`"-infinity"` |
 * | bytea | the string `\x0102…` (hex, as Postgres prints it) |
 * | arrays | JSON arrays, recursively (non-default lower bounds are not represented) |
 * | composites | a JSON object of field → value, recursively: more useful to consumers than the row's text |
 * | everything else (date, time, interval, range, multirange, uuid, inet, money, PgUnknown…) | Postgres' text form as a string |
 */
import { isPgRecord, PgJson, PgMultirange, PgTimestamp, type PgValue } from './values.js';

/** The JSON text for one value in the stdout sink format (see the table above). */
export function formatJsonValue(value: PgValue): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? String(value) : `"${value}"`;
    case 'bigint':
      return `"${value}"`;
    case 'boolean':
      return value ? 'true' : 'false';
  }
  if (value === null) return 'null';
  if (value instanceof PgJson) return value.text;
  if (value instanceof PgTimestamp) return `"${value.toISOString()}"`;
  if (Buffer.isBuffer(value)) return `"\\\\x${value.toString('hex')}"`;
  // Multiranges are arrays too, but one value: they print as their text below.
  if (Array.isArray(value) && !(value instanceof PgMultirange)) {
    let json = '[';
    for (let i = 0; i < value.length; i++) json += (i === 0 ? '' : ',') + formatJsonValue(value[i]!);
    return `${json}]`;
  }
  if (isPgRecord(value)) {
    let json = '{';
    let first = true;
    for (const [field, fieldValue] of Object.entries(value)) {
      json += `${first ? '' : ','}${JSON.stringify(field)}:${formatJsonValue(fieldValue)}`;
      first = false;
    }
    return `${json}}`;
  }
  return JSON.stringify((value as { toPostgres(): string }).toPostgres());
}
