/**
 * The cache of recently written values: least recently written out first, evictions remembered
 * as the time from which BigQuery must be asked instead, and no slowdown as it churns.
 */
import { describe, expect, it } from 'vitest';
import { RecentValues } from '../src/recent-values.js';

describe('RecentValues', () => {
  it('evicts the least recently written rows and remembers when', () => {
    const cache = new RecentValues(1_100); // room for three entries of about 342 bytes
    const value = 'x'.repeat(100);
    cache.remember('t', 'a', new Map([[1, value]]), 10);
    cache.remember('t', 'b', new Map([[1, value]]), 20);
    cache.remember('t', 'a', new Map([[1, `${value}!`]]), 30); // a is now the most recent
    cache.remember('t', 'c', new Map([[1, value]]), 40);
    cache.remember('t', 'd', new Map([[1, value]]), 50);
    expect(cache.lookup('t', 'b', 1)).toBeUndefined();
    expect(cache.lookup('t', 'a', 1)).toBe(`${value}!`);
    expect(cache.lookup('t', 'd', 1)).toBe(value);
    expect(cache.untrackedUntil('t')).toBe(20);
    expect(cache.untrackedUntil('other')).toBe(0);
    cache.forget('t', 'a');
    expect(cache.lookup('t', 'a', 1)).toBeUndefined();
    cache.clearTable('t', 99);
    expect(cache.lookup('t', 'd', 1)).toBeUndefined();
    expect(cache.untrackedUntil('t')).toBe(99);
  });

  it('stays fast while churning (no quadratic eviction)', () => {
    const cache = new RecentValues(64 * 1024);
    const started = performance.now();
    for (let i = 0; i < 300_000; i++) cache.remember('t', String(i), new Map([[1, 'value']]), i);
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(cache.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(cache.lookup('t', '299999', 1)).toBe('value');
  });
});
