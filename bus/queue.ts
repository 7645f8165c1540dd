// A push-to-pull queue: producers push, one consumer iterates. Ends on close() or abort, or fails
// with an error the consumer sees on its next read (e.g. a resume cursor the bus no longer retains).
export class PushQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private waiting:
    | { resolve: (result: IteratorResult<T>) => void; reject: (error: unknown) => void }
    | undefined;
  private done = false;
  private error: unknown;

  constructor(
    private readonly onEnd: () => void = () => {},
    signal?: AbortSignal,
  ) {
    signal?.addEventListener("abort", () => this.end(), { once: true });
  }

  push(item: T): void {
    if (this.done) return;
    if (this.waiting) {
      const { resolve } = this.waiting;
      this.waiting = undefined;
      resolve({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    this.items.length = 0;
    this.onEnd();
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.resolve({ value: undefined, done: true });
  }

  /** Ends the queue with an error: undelivered items are dropped and the next read throws it. */
  fail(error: unknown): void {
    if (this.done) return;
    this.error = error;
    const waiting = this.waiting;
    this.waiting = undefined;
    this.end();
    if (waiting) {
      this.error = undefined;
      waiting.reject(error);
    }
  }

  get ended(): boolean {
    return this.done;
  }

  get size(): number {
    return this.items.length;
  }

  next(): Promise<IteratorResult<T>> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.error !== undefined) {
      const error = this.error;
      this.error = undefined;
      return Promise.reject(error);
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.error = undefined;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
