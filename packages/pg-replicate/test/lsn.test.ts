/**
 * LSN text form (`X/Y`, two hexadecimal halves of an unsigned 64-bit WAL position): parsing,
 * formatting as Postgres prints it (upper case, no leading zeros), rejects, and exact ordering
 * beyond 2^53, where a JS number would already have lost the low bits.
 * https://www.postgresql.org/docs/current/datatype-pg-lsn.html
 */
import { describe, expect, it } from 'vitest';
import { isPgReplicateError } from '../src/errors.js';
import { formatLsn, isValidLsn, maxLsn, minLsn, parseLsn, ZERO_LSN } from '../src/lsn.js';

const MAX = (1n << 64n) - 1n;

describe('parseLsn / formatLsn', () => {
  it.each([
    ['0/0', 0n],
    ['0/1', 1n],
    ['0/16B3748', 0x16b3748n],
    ['1/0', 1n << 32n],
    ['16/B374D848', (0x16n << 32n) | 0xb374d848n],
    ['FFFFFFFF/FFFFFFFF', MAX],
    ['FFFFFFFF/0', 0xffffffffn << 32n],
    ['0/FFFFFFFF', 0xffffffffn],
  ])('round-trips %s', (text, value) => {
    expect(parseLsn(text)).toBe(value);
    expect(formatLsn(value)).toBe(text);
  });

  it('accepts lower-case and mixed-case hex and prints it upper case', () => {
    expect(parseLsn('ffffffff/ffffffff')).toBe(MAX);
    expect(parseLsn('aB/cD')).toBe((0xabn << 32n) | 0xcdn);
    expect(formatLsn(parseLsn('16/b374d848'))).toBe('16/B374D848');
  });

  it('accepts leading zeros (up to 8 digits a half) and drops them when printing', () => {
    expect(parseLsn('00000000/00000000')).toBe(0n);
    expect(parseLsn('00000001/0000000A')).toBe((1n << 32n) | 10n);
    expect(formatLsn(parseLsn('00000001/0000000A'))).toBe('1/A');
  });

  it('tolerates whitespace around the value (e.g. from a file or a flag), not inside it', () => {
    expect(parseLsn(' 1/2\n')).toBe((1n << 32n) | 2n);
  });

  it.each([
    '',
    '/',
    '1/',
    '/1',
    'G/1',
    '1/G',
    '123456789/0',
    '0/123456789',
    '1 /0',
    '1/ 0',
    '1/0 0',
    '1//0',
    '1/0/0',
    '10',
    '-1/0',
    '+1/0',
    '0x1/0',
  ])('rejects %j with INVALID_LSN naming the text', (text) => {
    let caught: unknown;
    try {
      parseLsn(text);
    } catch (error) {
      caught = error;
    }
    expect(isPgReplicateError(caught, 'INVALID_LSN')).toBe(true);
    expect((caught as Error).message).toContain(JSON.stringify(text));
  });
});

describe('ordering and helpers', () => {
  it('orders exactly beyond 2^53, where numbers collapse neighbours', () => {
    const a = parseLsn('FFFFFFFF/FFFFFFFE');
    const b = parseLsn('FFFFFFFF/FFFFFFFF');
    expect(Number(a)).toBe(Number(b)); // what a number-based LSN would see
    expect(a < b).toBe(true);
    expect(b - a).toBe(1n);
    expect(maxLsn(a, b)).toBe(b);
    expect(maxLsn(b, a)).toBe(b);
    expect(minLsn(a, b)).toBe(a);
    expect(minLsn(b, a)).toBe(a);

    const above = parseLsn('200000/1'); // 2^53 + 1
    expect(above).toBe((1n << 53n) + 1n);
    expect(above > parseLsn('200000/0')).toBe(true);
    expect(formatLsn(above)).toBe('200000/1');
  });

  it('compares across the halves, not as text', () => {
    const sorted = ['1/0', '0/FFFFFFFF', 'A/0', '9/FFFFFFFF', '0/0']
      .map(parseLsn)
      .sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    expect(sorted.map(formatLsn)).toEqual(['0/0', '0/FFFFFFFF', '1/0', '9/FFFFFFFF', 'A/0']);
  });

  it('knows the valid range', () => {
    expect(ZERO_LSN).toBe(0n);
    expect(isValidLsn(0n)).toBe(true);
    expect(isValidLsn(MAX)).toBe(true);
    expect(isValidLsn(MAX + 1n)).toBe(false);
    expect(isValidLsn(-1n)).toBe(false);
  });
});
