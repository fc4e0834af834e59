/**
 * An async queue with a capacity, between several producers (copy connections) and one consumer
 * (the sink). A full queue makes producers wait, so memory stays bounded however fast Postgres
 * sends; closing it with an error wakes everybody so a failure on either side stops the other.
 * Capacity is in units of `weigh` (e.g. bytes); an item heavier than the whole capacity still
 * passes when the queue is empty, so nothing can block forever.
 */
export class BoundedQueue<T> {
  readonly #capacity: number;
  readonly #weigh: (item: T) => number;
  readonly #items: T[] = [];
  readonly #weights: number[] = [];
  #weight = 0;
  #closed = false;
  #error: unknown = null;
  #takers: (() => void)[] = [];
  #putters: (() => void)[] = [];

  constructor(capacity: number, weigh: (item: T) => number = () => 1) {
    this.#capacity = Math.max(1, capacity);
    this.#weigh = weigh;
  }

  /** Waits for room, then adds. Throws if the queue was closed (the consumer gave up). */
  async push(item: T): Promise<void> {
    const weight = this.#weigh(item);
    while (this.#items.length > 0 && this.#weight + weight > this.#capacity && !this.#closed) {
      await new Promise<void>((resolve) => this.#putters.push(resolve));
    }
    if (this.#closed) throw this.#error ?? new Error('queue closed');
    this.#items.push(item);
    this.#weights.push(weight);
    this.#weight += weight;
    this.#wake(this.#takers);
  }

  /** The next item, or `undefined` once the queue is closed and drained. Throws a close error. */
  async take(): Promise<T | undefined> {
    for (;;) {
      if (this.#error !== null) throw this.#error;
      if (this.#items.length > 0) {
        const item = this.#items.shift()!;
        this.#weight -= this.#weights.shift()!;
        this.#wake(this.#putters);
        return item;
      }
      if (this.#closed) return undefined;
      await new Promise<void>((resolve) => this.#takers.push(resolve));
    }
  }

  /** No more items (producers are done), or — with an error — stop everything now. */
  close(error: unknown = null): void {
    if (error !== null && this.#error === null) this.#error = error;
    this.#closed = true;
    this.#wake(this.#takers);
    this.#wake(this.#putters);
  }

  #wake(waiters: (() => void)[]): void {
    const all = waiters.splice(0);
    for (const wake of all) wake();
  }
}
