import { describe, expect, it } from 'vitest';
import { CopyQueues } from '../src/pipeline/copy-queues.js';

/** Whether `promise` settles within a few turns of the event loop. */
async function settles(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

describe('CopyQueues', () => {
  it('gives each table its own items, in order, and ends each on its own', async () => {
    const queues = new CopyQueues<number>(2, 100, () => 1);
    await queues.push(1, 10);
    await queues.push(0, 1);
    await queues.push(1, 11);
    queues.end(1);
    await queues.push(0, 2);
    queues.end(0);
    expect([await queues.take(0), await queues.take(0), await queues.take(0)]).toEqual([1, 2, undefined]);
    expect([await queues.take(1), await queues.take(1), await queues.take(1)]).toEqual([10, 11, undefined]);
  });

  it('lets the tables ahead fill half the budget, and the current table the rest', async () => {
    const queues = new CopyQueues<number>(3, 8, (item) => item);
    await queues.push(1, 2);
    await queues.push(2, 2);
    const third = queues.push(1, 1); // 5 of 8 would be ahead: more than half
    expect(await settles(third)).toBe(false);
    await queues.push(0, 4); // the current table: 8 of 8
    const over = queues.push(0, 1);
    expect(await settles(over)).toBe(false);
    expect(await queues.take(0)).toBe(4);
    expect(await settles(over)).toBe(true);
    queues.end(0);
    await queues.take(0);
    expect(await queues.take(0)).toBeUndefined();
    // Table 1 is now the current one: its items no longer count as ahead.
    expect(await queues.take(1)).toBe(2);
    expect(await settles(third)).toBe(true);
  });

  it('lets an item heavier than the budget into an empty queue, so nothing waits forever', async () => {
    const queues = new CopyQueues<number>(2, 8, (item) => item);
    await queues.push(1, 20); // nothing ahead yet
    await queues.push(0, 30); // the current table's queue is empty
    const blocked = queues.push(1, 1);
    expect(await settles(blocked)).toBe(false);
    expect(await queues.take(0)).toBe(30);
  });

  it('fails every waiting producer and consumer with the error', async () => {
    const queues = new CopyQueues<number>(2, 1, () => 1);
    await queues.push(1, 1);
    const producer = queues.push(1, 2);
    const consumer = queues.take(0);
    const error = new Error('stop');
    queues.fail(error);
    await expect(producer).rejects.toBe(error);
    await expect(consumer).rejects.toBe(error);
    await expect(queues.push(0, 1)).rejects.toBe(error);
  });
});
