/**
 * Per-key mutual exclusion for async work: operations on one key run one after another, in
 * call order; operations on different keys run concurrently.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  /**
   * Runs `fn` once every earlier `run` with the same key has settled. Given several keys, it
   * takes its place in the queue of each at once (so it is ordered, by call, with every
   * operation on any of them) and runs once all of them are its turn.
   */
  run<T>(key: string | readonly string[], fn: () => Promise<T>): Promise<T> {
    const keys = typeof key === "string" ? [key] : key;
    const previous: Promise<void>[] = [];
    for (const k of keys) {
      const tail = this.#tails.get(k);
      if (tail !== undefined) previous.push(tail);
    }
    const result =
      previous.length === 0
        ? fn()
        : (previous.length === 1 ? previous[0]! : Promise.all(previous)).then(fn);
    const tail = result.then(
      () => {},
      () => {},
    );
    for (const k of keys) {
      this.#tails.set(k, tail);
      void tail.then(() => {
        if (this.#tails.get(k) === tail) this.#tails.delete(k);
      });
    }
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
