/**
 * The server's text form of a scalar value when its exact type is not at hand (range bounds
 * printed by the value itself): every builtin subtype is recoverable from the JS value alone.
 * Kept apart from the value classes so they can use it without importing each other.
 */
import { formatFloat8 } from './float-text.js';

interface PrintsItself {
  toPostgres(): string;
}

/**
 * `t`/`f` for booleans, `\x…` for bytea, float8 layout for numbers (which prints integers as
 * integers), the value's own `toPostgres()` for the value classes, strings as they are.
 */
export function formatScalarText(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
      return formatFloat8(value);
    case 'bigint':
      return String(value);
    case 'boolean':
      return value ? 't' : 'f';
    case 'object':
      if (value === null) return 'NULL';
      if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
      if (typeof (value as Partial<PrintsItself>).toPostgres === 'function')
        return (value as PrintsItself).toPostgres();
      return String(value);
    default:
      return String(value);
  }
}
