/**
 * Copied rows waiting for the sink: one queue per table, filled by the copy connections and
 * drained by the sink one table at a time, in order. Connections the sink's current table does not
 * need read the next tables ahead, so a table's snapshot, COPY and round trips overlap the sink's
 * work on the one before.
 *
 * One budget bounds all queues, so memory stays flat whatever the tables: the current table may
 * fill it, the tables ahead together only half of it — they never take the room the sink waits
 * for. A producer with no room waits; an item heavier than its share still passes when nothing is
 * waiting in front of it, so nothing can block forever. Failing the queues wakes everybody, so a
 * failure on either side stops the other.
 */
export class CopyQueues<T> {
  readonly #capacity: number;
  readonly #weigh: (item: T) => number;
  readonly #queues: TableQueue<T>[];
  /** Weight of every queued item, of all tables. */
  #total = 0;
  /** The table the sink takes from. */
  #current = 0;
  #error: unknown = null;
  #takers: (() => void)[] = [];
  #putters: (() => void)[] = [];

  constructor(tables: number, capacity: number, weigh: (item: T) => number) {
    this.#capacity = Math.max(1, capacity);
    this.#weigh = weigh;
    this.#queues = Array.from({ length: tables }, () => ({
      items: [],
      weights: [],
      weight: 0,
      ended: false,
    }));
  }

  /** Waits for room, then adds `item` to `table`'s queue. Throws once the queues failed. */
  async push(table: number, item: T): Promise<void> {
    const weight = this.#weigh(item);
    while (this.#error === null && !this.#admits(table, weight)) {
      await new Promise<void>((resolve) => this.#putters.push(resolve));
    }
    if (this.#error !== null) throw this.#error;
    const queue = this.#queues[table]!;
    queue.items.push(item);
    queue.weights.push(weight);
    queue.weight += weight;
    this.#total += weight;
    if (table === this.#current) wake(this.#takers);
  }

  /** No more items for `table`. */
  end(table: number): void {
    this.#queues[table]!.ended = true;
    if (table === this.#current) wake(this.#takers);
  }

  /**
   * The next item of `table`, or `undefined` once it ended and is drained; `table` becomes the
   * current one (tables are taken in order). Throws once the queues failed.
   */
  async take(table: number): Promise<T | undefined> {
    if (table !== this.#current) {
      this.#current = table;
      wake(this.#putters); // the new current table may now fill the budget
    }
    const queue = this.#queues[table]!;
    for (;;) {
      if (this.#error !== null) throw this.#error;
      if (queue.items.length > 0) {
        const item = queue.items.shift()!;
        const weight = queue.weights.shift()!;
        queue.weight -= weight;
        this.#total -= weight;
        wake(this.#putters);
        return item;
      }
      if (queue.ended) return undefined;
      await new Promise<void>((resolve) => this.#takers.push(resolve));
    }
  }

  /** Stops everything: every waiting and later `push` and `take` throws `error`. */
  fail(error: unknown): void {
    this.#error ??= error;
    wake(this.#takers);
    wake(this.#putters);
  }

  #admits(table: number, weight: number): boolean {
    const current = this.#queues[this.#current]!;
    if (table === this.#current) return current.items.length === 0 || this.#total + weight <= this.#capacity;
    const ahead = this.#total - current.weight;
    return ahead === 0 || ahead + weight <= this.#capacity / 2;
  }
}

interface TableQueue<T> {
  readonly items: T[];
  readonly weights: number[];
  weight: number;
  ended: boolean;
}

function wake(waiters: (() => void)[]): void {
  for (const resolve of waiters.splice(0)) resolve();
}
