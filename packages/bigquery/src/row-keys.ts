/**
 * Primary keys outside Postgres: as one string per row (to match a row written from Postgres text
 * with the same row read back from BigQuery, whatever spelling each side uses for decimals and
 * fractions of seconds), and as query parameters in the form BigQuery's REST API takes them.
 */
import type { QueryParam } from './table-admin.js';
import type { ColumnPlan, TablePlan } from './table-plan.js';
import type { BigQueryType, ProtoValue } from './type-mapping.js';

/** One string per key: equal keys give equal strings, from Postgres values or BigQuery's. */
export function rowKey(plan: TablePlan, values: readonly unknown[]): string {
  let key = '';
  for (const column of plan.keyColumns)
    key += `${keyPart(column.mapping.bqType, values[column.index] as ProtoValue)}\u0001`;
  return key;
}

function keyPart(type: BigQueryType, value: ProtoValue): string {
  if (value === null) return '\u0000';
  if (Buffer.isBuffer(value)) return value.toString('hex');
  const text = String(value);
  switch (type) {
    case 'NUMERIC':
    case 'BIGNUMERIC':
      return canonicalDecimal(text);
    case 'DATETIME':
    case 'TIME':
      return text
        .replace('T', ' ')
        .replace(/(\.\d*?)0+$/, '$1')
        .replace(/\.$/, '');
    default:
      return text;
  }
}

/** `1.50` → `1.5`, `-0.0` → `0`, `10` → `10`. */
function canonicalDecimal(text: string): string {
  if (!text.includes('.')) return text === '-0' ? '0' : text;
  const trimmed = text.replace(/0+$/, '').replace(/\.$/, '');
  return trimmed === '-0' ? '0' : trimmed;
}

/** A query parameter comparing `column` with `value`. */
export function keyParam(name: string, column: ColumnPlan, value: ProtoValue): QueryParam {
  const type = column.mapping.bqType;
  if (value === null) return { name, type, value: null };
  let text: string;
  switch (type) {
    case 'BYTES':
      text = (value as Buffer).toString('base64');
      break;
    case 'DATE':
      text = new Date(Number(value) * 86_400_000).toISOString().slice(0, 10);
      break;
    case 'TIMESTAMP':
      text = formatTimestampMicros(BigInt(value as bigint));
      break;
    default:
      text = String(value);
  }
  return { name, type, value: text };
}

/** `2024-01-02 03:04:05.123456+00:00`, the TIMESTAMP parameter form. */
function formatTimestampMicros(micros: bigint): string {
  const millis = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
  const rest = Number(micros - millis * 1000n);
  const iso = new Date(Number(millis)).toISOString(); // 0001-… to 9999-…: always 4-digit years here
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}${String(rest).padStart(3, '0')}+00:00`;
}
