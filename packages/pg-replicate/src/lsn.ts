/**
 * Log sequence numbers: unsigned 64-bit WAL positions, written `X/Y` (two hex halves).
 *
 * They are kept as `bigint` everywhere: a JS number loses them above 2^53, and a wrong LSN
 * confirmed to Postgres releases WAL that was never applied.
 */
import { PgReplicateError } from './errors.js';

/** A WAL position. Compare with `<`, `===`; add with `+` (the result stays a `bigint`). */
export type Lsn = bigint;

const MAX = (1n << 64n) - 1n;
const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses `X/Y` (e.g. `0/16B3748`); throws `INVALID_LSN` with the offending text otherwise. */
export function parseLsn(text: string): Lsn {
  const match = LSN_TEXT.exec(text.trim());
  if (match === null) {
    throw new PgReplicateError('INVALID_LSN', `"${text}" is not an LSN`, {
      hint: 'write it as two hexadecimal halves separated by a slash, e.g. 0/16B3748',
    });
  }
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Formats as Postgres does: upper-case hex, no leading zeros in either half. */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function isValidLsn(lsn: bigint): boolean {
  return lsn >= 0n && lsn <= MAX;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}

export function minLsn(a: Lsn, b: Lsn): Lsn {
  return a < b ? a : b;
}

export const ZERO_LSN: Lsn = 0n;
