/**
 * Per-key mutual exclusion for async work: operations on one key run one after another, in
 * call order; operations on different keys run concurrently.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier `run` with the same key has settled. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key);
    const result = previous === undefined ? fn() : previous.then(fn);
    const tail = result.then(
      () => {},
      () => {},
    );
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }

  /** Whether work for `key` is running or queued. */
  isBusy(key: string): boolean {
    return this.#tails.has(key);
  }

  /** Resolves when everything queued so far (on every key) has settled. */
  async idle(): Promise<void> {
    while (this.#tails.size > 0) await Promise.all(this.#tails.values());
  }
}
