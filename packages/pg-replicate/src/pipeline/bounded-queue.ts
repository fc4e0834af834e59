/**
 * An async queue with a capacity, between several producers (copy connections) and one consumer
 * (the sink). A full queue makes producers wait, so memory stays bounded however fast Postgres
 * sends; closing it with an error wakes everybody so a failure on either side stops the other.
 */
export class BoundedQueue<T> {
  readonly #capacity: number;
  readonly #items: T[] = [];
  #closed = false;
  #error: unknown = null;
  #takers: (() => void)[] = [];
  #putters: (() => void)[] = [];

  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity);
  }

  /** Waits for room, then adds. Throws if the queue was closed (the consumer gave up). */
  async push(item: T): Promise<void> {
    while (this.#items.length >= this.#capacity && !this.#closed) {
      await new Promise<void>((resolve) => this.#putters.push(resolve));
    }
    if (this.#closed) throw this.#error ?? new Error('queue closed');
    this.#items.push(item);
    this.#wake(this.#takers);
  }

  /** The next item, or `undefined` once the queue is closed and drained. Throws a close error. */
  async take(): Promise<T | undefined> {
    for (;;) {
      if (this.#error !== null) throw this.#error;
      if (this.#items.length > 0) {
        const item = this.#items.shift()!;
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
