/**
 * One queue per key: tasks of a key run one after another, in the order they were given;
 * tasks of different keys do not wait for each other. What keeps one conversation's messages
 * in order without holding the others behind a slow one.
 */
export class KeyedChains {
  /** Per key: settles (never rejects) once its last task so far has settled. */
  readonly #tails = new Map<string, Promise<void>>();

  /**
   * Runs `task` once the previous task of `key` has settled (and, for the first task of a
   * key, once `after` has: a gate all keys wait behind); its own promise. A task that fails
   * does not stop the ones after it. A key's entry is dropped once its last task settled.
   */
  run<T>(
    key: string,
    task: () => Promise<T>,
    after: Promise<unknown> = Promise.resolve(),
  ): Promise<T> {
    const step = (this.#tails.get(key) ?? after).then(task);
    // One reaction away from `step`: whatever the caller chains on `step` right away (the
    // hand-over of its result) runs before the next task of the key starts.
    const tail = step.then(
      () => undefined,
      () => undefined,
    );
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return step;
  }

  /** Settles once every task given so far has. */
  async drained(): Promise<void> {
    await Promise.all(this.#tails.values());
  }

  /** Keys with a task not settled yet. */
  get size(): number {
    return this.#tails.size;
  }

  /** Forgets every key (a new start): tasks still running are not waited for. */
  clear(): void {
    this.#tails.clear();
  }
}
