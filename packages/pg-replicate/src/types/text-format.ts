/**
 * Prints a decoded value back as the server's text output form, given its type. This is the
 * inverse of the text parsers: `formatPgText(parser(text), type) === text` for every value
 * Postgres prints, which is what the conformance tests check against a live server — and what a
 * sink that writes text back into Postgres (`COPY … FROM`) needs.
 *
 * The type matters where the JS value alone is ambiguous: float4 prints fewer digits than the
 * double it widened to, box arrays separate elements with `;`, composites need field types.
 */
import { formatArrayText } from './array-text.js';
import { formatFloat4 } from './float-text.js';
import { formatRecordText } from './record-text.js';
import { formatScalarText } from './scalar-text.js';
import type { PgType } from './type-registry.js';
import { isPgRecord, PgMultirange, PgRange, type PgValue } from './values.js';

/**
 * The server's text form of `value` (of type `type`, when known); `null` for SQL NULL. Without a
 * type, containers use the defaults (`,` delimiters, float8 digits for numbers).
 */
export function formatPgText(value: null, type?: PgType): null;
export function formatPgText(value: NonNullable<PgValue>, type?: PgType): string;
export function formatPgText(value: PgValue, type?: PgType): string | null;
export function formatPgText(value: PgValue, type?: PgType): string | null {
  if (value === null) return null;
  let t = type;
  while (t?.category === 'domain') t = t.baseType;
  if (value instanceof PgRange || value instanceof PgMultirange) {
    const subtype = t?.category === 'multirange' ? t.subtype?.subtype : t?.subtype;
    return value.toPostgres((bound) => formatPgText(bound, subtype) ?? '');
  }
  if (Array.isArray(value)) {
    const element = t?.category === 'array' ? t.element : undefined;
    return formatArrayText(value, element?.delimiter ?? ',', (item) => formatPgText(item, element) ?? 'NULL');
  }
  if (isPgRecord(value)) {
    const fields = t?.category === 'composite' ? t.fields : undefined;
    const names = fields ? fields.map((field) => field.name) : Object.keys(value);
    return formatRecordText(
      names.map((name) => value[name] ?? null),
      (item, index) => formatPgText(item, fields?.[index]?.type) ?? '',
    );
  }
  if (typeof value === 'number' && t?.name === 'float4' && t.schema === 'pg_catalog')
    return formatFloat4(value);
  return formatScalarText(value);
}
