/**
 * Debounce of message bursts: people type "hi", "can you", "check the build?" as three
 * messages; the agent should see one.
 */
import { InvalidArgumentError } from "../errors.js";

interface Burst<T, R> {
  items: T[];
  waiters: Array<{ resolve: (value: R) => void; reject: (error: unknown) => void }>;
  timer: NodeJS.Timeout;
  firstAt: number;
}

/**
 * Collects items pushed under one key until `windowMs` passes without a new one (or
 * `maxWaitMs` since the first), then hands them to `flush` together. Every `push` of a burst
 * resolves with that one flush's result (or rejects with its error).
 *
 * @example
 * ```ts
 * const debouncer = new Debouncer<string, number>(1_500, async (key, texts) => send(texts.join("\n")));
 * await Promise.all([debouncer.push("alice", "hi"), debouncer.push("alice", "there")]); // one send
 * await debouncer.flushAll(); // on shutdown
 * ```
 */
export class Debouncer<T, R> {
  readonly windowMs: number;
  readonly maxWaitMs: number;
  readonly #flush: (key: string, items: T[]) => Promise<R>;
  readonly #bursts = new Map<string, Burst<T, R>>();
  readonly #now: () => number;

  constructor(
    windowMs: number,
    flush: (key: string, items: T[]) => Promise<R>,
    options: { maxWaitMs?: number; now?: () => number } = {},
  ) {
    if (!Number.isFinite(windowMs) || windowMs <= 0) {
      throw new InvalidArgumentError(`debounce windowMs must be > 0, got ${windowMs}`);
    }
    this.windowMs = windowMs;
    this.maxWaitMs = options.maxWaitMs ?? windowMs * 4;
    this.#flush = flush;
    this.#now = options.now ?? Date.now;
  }

  /** Bursts waiting. */
  get size(): number {
    return this.#bursts.size;
  }

  /** Adds an item to its key's burst; resolves with the burst's flush result. */
  push(key: string, item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let burst = this.#bursts.get(key);
      const now = this.#now();
      if (burst === undefined) {
        burst = { items: [], waiters: [], timer: undefined as never, firstAt: now };
        this.#bursts.set(key, burst);
      } else {
        clearTimeout(burst.timer);
      }
      burst.items.push(item);
      burst.waiters.push({ resolve, reject });
      const delay = Math.max(0, Math.min(this.windowMs, burst.firstAt + this.maxWaitMs - now));
      burst.timer = setTimeout(() => void this.#fire(key), delay);
    });
  }

  /** Flushes every waiting burst now (on shutdown) and waits for the flushes. */
  async flushAll(): Promise<void> {
    await Promise.allSettled([...this.#bursts.keys()].map((key) => this.#fire(key)));
  }

  async #fire(key: string): Promise<void> {
    const burst = this.#bursts.get(key);
    if (burst === undefined) return;
    this.#bursts.delete(key);
    clearTimeout(burst.timer);
    try {
      const result = await this.#flush(key, burst.items);
      for (const waiter of burst.waiters) waiter.resolve(result);
    } catch (error) {
      for (const waiter of burst.waiters) waiter.reject(error);
    }
  }
}
