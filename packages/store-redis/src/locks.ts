/**
 * Leased locks with fencing tokens. A held lock is one string key, `token:expiresAt:owner`,
 * that Redis expires with the lease (`SET ... PX`); its fencing token comes from a counter
 * key, incremented in the same script that takes the lock, so tokens only grow across every
 * acquisition, whichever process makes it. The counter expires
 * {@link LOCK_TOKEN_RETENTION_MS} after the lease (a lease per session would otherwise leave
 * one counter per session ever run); one started afresh begins at the server time in
 * microseconds, above every token handed out before. Times come from the Redis server's
 * clock, so every process agrees on them.
 */
import type { Lease, LockStore } from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import type { RedisConnection } from "./connection.js";
import type { KeySpace } from "./keys.js";
import { LOCK_ACQUIRE, LOCK_RELEASE, LOCK_RENEW } from "./scripts.js";
import { requireId, requireTtl } from "./validate.js";

const LOCK_VALUE = /^(\d+):(\d+):([\s\S]*)$/;

/**
 * How long a lock's fencing-token counter is kept after its lease runs out (renewals push
 * it back): 24 hours. Within that time the last holder's fenced writes still go through
 * when nobody has acquired the lock since; after it they are refused with `FencedError`.
 */
export const LOCK_TOKEN_RETENTION_MS = 24 * 60 * 60 * 1000;

export class RedisLockStore implements LockStore {
  readonly #conn: RedisConnection;
  readonly #keys: KeySpace;

  constructor(conn: RedisConnection, keys: KeySpace) {
    this.#conn = conn;
    this.#keys = keys;
  }

  async acquire(
    name: string,
    options: { owner: string; ttlMs: number },
  ): Promise<Lease | undefined> {
    const lock = requireId(name, "lock name");
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError("acquire options must be { owner, ttlMs }");
    }
    const owner = requireId(options.owner, "lock owner");
    const ttl = requireTtl(options.ttlMs, "ttlMs");
    const reply = await this.#conn.script<number[]>(
      LOCK_ACQUIRE,
      [this.#keys.lock(lock), this.#keys.lockToken(lock)],
      [owner, String(ttl), String(LOCK_TOKEN_RETENTION_MS)],
    );
    return toLease(lock, owner, reply);
  }

  async renew(lease: Lease, ttlMs: number): Promise<Lease | undefined> {
    const { name, owner, token } = checkLease(lease);
    const ttl = requireTtl(ttlMs, "ttlMs");
    const reply = await this.#conn.script<number[]>(
      LOCK_RENEW,
      [this.#keys.lock(name), this.#keys.lockToken(name)],
      [owner, String(token), String(ttl), String(LOCK_TOKEN_RETENTION_MS)],
    );
    return toLease(name, owner, reply);
  }

  async release(lease: Lease): Promise<boolean> {
    const { name, owner, token } = checkLease(lease);
    const n = await this.#conn.script<number>(
      LOCK_RELEASE,
      [this.#keys.lock(name)],
      [owner, String(token)],
    );
    return n === 1;
  }

  async holder(name: string): Promise<Lease | undefined> {
    const lock = requireId(name, "lock name");
    const key = this.#keys.lock(lock);
    const value = await this.#conn.send<string | null>("get", [key]);
    const match = value === null ? null : LOCK_VALUE.exec(value);
    if (match === null) return undefined;
    return {
      name: lock,
      owner: match[3] as string,
      token: Number(match[1]),
      expiresAt: Number(match[2]),
    };
  }
}

function toLease(name: string, owner: string, reply: readonly number[]): Lease | undefined {
  if (reply.length < 2) return undefined;
  return { name, owner, token: Number(reply[0]), expiresAt: Number(reply[1]) };
}

function checkLease(lease: Lease): Lease {
  if (typeof lease !== "object" || lease === null) {
    throw new InvalidArgumentError("lease must be a Lease returned by acquire or renew");
  }
  requireId(lease.name, "lease name");
  requireId(lease.owner, "lease owner");
  if (!Number.isSafeInteger(lease.token)) {
    throw new InvalidArgumentError("lease token must be an integer");
  }
  return lease;
}
