/**
 * Removals from Redis that failed (Redis could not be reached) after the local state already
 * let go: a registered name or a presence entry this node no longer has, which Redis would
 * otherwise keep for as long as the node lives (its heartbeats keep it alive, and only a
 * node declared down or leaving is cleaned up). They are tried again at every heartbeat
 * until they go through or the key is taken up here again.
 * @internal
 */
export class PendingRemovals {
  /** Each key with a marker of the failure that put it here (a later one replaces it). */
  readonly #pending = new Map<string, object>();
  readonly #remove: (key: string) => Promise<boolean>;

  /** `remove` deletes one key of this node from Redis; true when it was there. */
  constructor(remove: (key: string) => Promise<boolean>) {
    this.#remove = remove;
  }

  /** Removes `key` from Redis; when that fails, rejects as it did and keeps it for `retry`. */
  async remove(key: string): Promise<boolean> {
    this.#pending.delete(key);
    try {
      return await this.#remove(key);
    } catch (error) {
      this.#pending.set(key, {});
      throw error;
    }
  }

  /**
   * Runs `write`, which makes `key` this node's again (registers or tracks it anew): a
   * pending removal of it is dropped before the write's command leaves, so no retried removal
   * can follow it to Redis; if the write fails, the removal is pending again.
   */
  async takeUp<T>(key: string, write: () => Promise<T>): Promise<T> {
    const wasPending = this.#pending.delete(key);
    try {
      return await write();
    } catch (error) {
      if (wasPending) this.#pending.set(key, {});
      throw error;
    }
  }

  clear(): void {
    this.#pending.clear();
  }

  /**
   * Tries each pending removal again, one at a time, forgetting each that went through.
   * Rejects with the first failure (the rest wait for the next heartbeat). A key taken up
   * while its removal is on its way is safe: the new write's command follows on the same
   * connection.
   */
  async retry(): Promise<void> {
    for (const [key, marker] of [...this.#pending]) {
      if (this.#pending.get(key) !== marker) continue;
      await this.#remove(key);
      if (this.#pending.get(key) === marker) this.#pending.delete(key);
    }
  }
}
