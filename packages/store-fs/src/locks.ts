/**
 * Leased locks with fencing tokens, in one append-only log, `locks.jsonl`:
 *
 * ```jsonl
 * {"op":"lease","name":"cron:nightly","owner":"node-1","token":7,"expiresAt":1700000030000}
 * {"op":"release","name":"cron:nightly","token":7}
 * ```
 *
 * The token of a lock name only ever grows, across restarts too (it is in the log, and
 * compaction keeps the last one of every name). Within one process this is exact; the store
 * is single-writer, so it makes no promise across processes (`distributedLocks: false`).
 */
import type { Lease, LockStore } from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import { type AppendLog, shouldCompact } from "./append-log.js";
import type { StoreContext } from "./context.js";
import { describeValue, isPlainObject, requireKey, storedLine, stringifyStored } from "./json.js";
import { badLine } from "./jsonl.js";
import { loadLog } from "./log-table.js";

/** File name of the lock log. */
export const LOCKS_FILE = "locks.jsonl";

interface LockState {
  /** The last token handed out for this name. */
  token: number;
  /** The current lease, if it was not released (it may have expired). */
  lease: Lease | undefined;
}

function requireTtl(ttlMs: unknown): number {
  if (typeof ttlMs !== "number" || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new InvalidArgumentError(`ttlMs must be a positive number, got ${describeValue(ttlMs)}`);
  }
  return ttlMs;
}

function checkLease(lease: unknown): Lease {
  if (
    !isPlainObject(lease) ||
    typeof lease.name !== "string" ||
    typeof lease.owner !== "string" ||
    typeof lease.token !== "number"
  ) {
    throw new InvalidArgumentError(
      `lease must be a Lease returned by acquire, got ${describeValue(lease)}`,
    );
  }
  return lease as unknown as Lease;
}

/** The log line of a lease. @throws InvalidArgumentError if it is too large to store. */
function leaseLine(lease: Lease): string {
  return storedLine("lock lease", [stringifyStored({ op: "lease", ...lease }, "lock lease"), "\n"]);
}

/** The locks of one open store. */
export class Locks implements LockStore {
  readonly #context: StoreContext;
  readonly #locks = new Map<string, LockState>();
  #log!: AppendLog;

  private constructor(context: StoreContext) {
    this.#context = context;
  }

  /** Replays the log. */
  static async load(context: StoreContext): Promise<Locks> {
    const locks = new Locks(context);
    locks.#log = await loadLog(context, LOCKS_FILE, (line, name) => {
      const op = line.value as Record<string, unknown> | null;
      if (typeof op?.name !== "string" || typeof op.token !== "number") {
        throw badLine(name, line, "a lease, release or token operation");
      }
      const state = locks.#state(op.name);
      state.token = Math.max(state.token, op.token);
      if (op.op === "lease") {
        if (typeof op.owner !== "string" || typeof op.expiresAt !== "number") {
          throw badLine(
            name,
            line,
            '{"op":"lease","name":..,"owner":..,"token":..,"expiresAt":..}',
          );
        }
        state.lease = { name: op.name, owner: op.owner, token: op.token, expiresAt: op.expiresAt };
      } else if (op.op === "release") {
        if (state.lease?.token === op.token) state.lease = undefined;
      } else if (op.op !== "token") {
        throw badLine(name, line, "a lease, release or token operation");
      }
    });
    return locks;
  }

  /** The current fencing token of `name` (0 if it was never acquired). */
  currentToken(name: string): number {
    return this.#locks.get(name)?.token ?? 0;
  }

  /** Resolves when every lock change so far is durable. */
  barrier(): Promise<void> {
    return this.#log.barrier();
  }

  async acquire(
    name: string,
    options: { owner: string; ttlMs: number },
  ): Promise<Lease | undefined> {
    requireKey(name, "lock name");
    if (!isPlainObject(options)) {
      throw new InvalidArgumentError(
        `acquire options must be an object, got ${describeValue(options)}`,
      );
    }
    const owner = requireKey(options.owner, "owner");
    const ttlMs = requireTtl(options.ttlMs);
    const now = this.#context.now();
    const held = this.#locks.get(name)?.lease;
    if (held !== undefined && held.expiresAt > now) {
      await this.#log.barrier();
      return undefined;
    }
    const token = (this.#locks.get(name)?.token ?? 0) + 1;
    const lease: Lease = { name, owner, token, expiresAt: now + ttlMs };
    // Built before anything changes: a name and owner too large to store change nothing.
    const line = leaseLine(lease);
    const state = this.#state(name);
    state.token = token;
    state.lease = lease;
    await this.#write(line);
    return { ...lease };
  }

  async renew(lease: Lease, ttlMs: number): Promise<Lease | undefined> {
    const held = checkLease(lease);
    requireTtl(ttlMs);
    const current = this.#held(held);
    if (current === undefined) {
      await this.#log.barrier();
      return undefined;
    }
    const expiresAt = this.#context.now() + ttlMs;
    const line = leaseLine({ ...current, expiresAt });
    current.expiresAt = expiresAt;
    await this.#write(line);
    return { ...current };
  }

  async release(lease: Lease): Promise<boolean> {
    const held = checkLease(lease);
    const current = this.#held(held);
    if (current === undefined) {
      await this.#log.barrier();
      return false;
    }
    const line = storedLine("lock release", [
      stringifyStored({ op: "release", name: held.name, token: held.token }, "lock release"),
      "\n",
    ]);
    this.#state(held.name).lease = undefined;
    await this.#write(line);
    return true;
  }

  async holder(name: string): Promise<Lease | undefined> {
    requireKey(name, "lock name");
    await this.#log.barrier();
    const lease = this.#locks.get(name)?.lease;
    return lease !== undefined && lease.expiresAt > this.#context.now() ? { ...lease } : undefined;
  }

  /** Closes the log (after pending writes). */
  async close(): Promise<void> {
    await this.#log.close();
  }

  /** The stored lease if `lease` is still it and unexpired. */
  #held(lease: Lease): Lease | undefined {
    const current = this.#locks.get(lease.name)?.lease;
    if (
      current === undefined ||
      current.token !== lease.token ||
      current.owner !== lease.owner ||
      current.expiresAt <= this.#context.now()
    ) {
      return undefined;
    }
    return current;
  }

  #state(name: string): LockState {
    let state = this.#locks.get(name);
    if (state === undefined) {
      state = { token: 0, lease: undefined };
      this.#locks.set(name, state);
    }
    return state;
  }

  async #write(line: string): Promise<void> {
    const written = this.#log.append(line);
    const live = this.#locks.size;
    if (shouldCompact(this.#log.lineCount, live)) {
      const snapshot: string[] = [];
      for (const [name, state] of this.#locks) {
        snapshot.push(
          state.lease !== undefined
            ? `${JSON.stringify({ op: "lease", ...state.lease })}\n`
            : `${JSON.stringify({ op: "token", name, token: state.token })}\n`,
        );
      }
      this.#log.rewrite(snapshot, live).catch(() => {});
    }
    await written;
  }
}
