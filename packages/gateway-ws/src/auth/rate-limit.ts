/**
 * Failed logins per remote address: after `maxAttempts` wrong credentials within `windowMs`,
 * the address is locked out for `lockoutMs`, and every `connect` from it is refused before
 * its credentials are even looked at. Memory is bounded: entries expire, and past
 * `maxTrackedAddresses` the oldest are dropped. No timers: entries are pruned as the limiter
 * is used.
 */
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import { InvalidArgumentError } from "@beamclaw/core";
import { addressKey } from "./client-address.js";

/** How failed logins are limited (`gateway.auth.rateLimit`). */
export interface AuthRateLimitSettings {
  /** Wrong credentials an address may present within `windowMs`. Default 10. */
  maxAttempts?: number;
  /** The window failures are counted in. Default 60 000 ms. */
  windowMs?: number;
  /** How long an address is refused once it hit `maxAttempts`. Default 300 000 ms. */
  lockoutMs?: number;
  /** Never limit loopback addresses (`127.0.0.0/8`, `::1`). Default false. */
  exemptLoopback?: boolean;
  /** Addresses remembered at most (the oldest are forgotten first). Default 10 000. */
  maxTrackedAddresses?: number;
}

/** The defaults of {@link AuthRateLimitSettings}. */
export const DEFAULT_AUTH_RATE_LIMIT = {
  maxAttempts: 10,
  windowMs: 60_000,
  lockoutMs: 300_000,
  exemptLoopback: false,
  maxTrackedAddresses: 10_000,
} as const satisfies Required<AuthRateLimitSettings>;

interface Entry {
  /** When the current counting window began. */
  windowStart: number;
  failures: number;
  /** Refused until this epoch ms (0: not locked). */
  lockedUntil: number;
}

/** What {@link AuthRateLimiter.check} says about an address. */
export type AuthRateDecision = { allowed: true } | { allowed: false; retryAfterMs: number };

/** See the module comment. */
export class AuthRateLimiter {
  readonly maxAttempts: number;
  readonly windowMs: number;
  readonly lockoutMs: number;
  readonly exemptLoopback: boolean;
  readonly maxTrackedAddresses: number;
  readonly #entries = new Map<string, Entry>();
  readonly #now: () => number;
  #checks = 0;

  constructor(settings: AuthRateLimitSettings = {}, now: () => number = Date.now) {
    const pick = (name: keyof AuthRateLimitSettings, fallback: number): number => {
      const value = settings[name] ?? fallback;
      if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
        throw new InvalidArgumentError(
          `gateway auth rateLimit.${name} must be a positive integer, got ${String(value)}`,
        );
      }
      return value;
    };
    this.maxAttempts = pick("maxAttempts", DEFAULT_AUTH_RATE_LIMIT.maxAttempts);
    this.windowMs = pick("windowMs", DEFAULT_AUTH_RATE_LIMIT.windowMs);
    this.lockoutMs = pick("lockoutMs", DEFAULT_AUTH_RATE_LIMIT.lockoutMs);
    this.maxTrackedAddresses = pick(
      "maxTrackedAddresses",
      DEFAULT_AUTH_RATE_LIMIT.maxTrackedAddresses,
    );
    this.exemptLoopback = settings.exemptLoopback ?? DEFAULT_AUTH_RATE_LIMIT.exemptLoopback;
    this.#now = now;
  }

  /** How many addresses are remembered now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether `address` may try to log in now. */
  check(address: string | undefined, isLoopback: boolean): AuthRateDecision {
    if (this.#exempt(address, isLoopback)) return { allowed: true };
    const now = this.#now();
    if (++this.#checks % 256 === 0) this.#prune(now);
    const entry = this.#entries.get(keyOf(address));
    if (entry === undefined || entry.lockedUntil <= now) return { allowed: true };
    return { allowed: false, retryAfterMs: entry.lockedUntil - now };
  }

  /**
   * Counts a failed login from `address`. Returns the lockout when this failure started one
   * (or the address was locked already).
   */
  recordFailure(address: string | undefined, isLoopback: boolean): AuthRateDecision {
    if (this.#exempt(address, isLoopback)) return { allowed: true };
    const now = this.#now();
    const key = keyOf(address);
    let entry = this.#entries.get(key);
    if (entry !== undefined && entry.lockedUntil > now) {
      return { allowed: false, retryAfterMs: entry.lockedUntil - now };
    }
    if (entry === undefined || now - entry.windowStart >= this.windowMs) {
      entry = { windowStart: now, failures: 0, lockedUntil: 0 };
    }
    entry.failures++;
    if (entry.failures >= this.maxAttempts) entry.lockedUntil = now + this.lockoutMs;
    // Re-insert: the Map's order is the order of last change, oldest first.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    if (this.#entries.size > this.maxTrackedAddresses) this.#prune(now);
    return entry.lockedUntil > now
      ? { allowed: false, retryAfterMs: entry.lockedUntil - now }
      : { allowed: true };
  }

  /** A successful login from `address` clears its failures (and only its own). */
  recordSuccess(address: string | undefined): void {
    this.#entries.delete(keyOf(address));
  }

  #exempt(_address: string | undefined, isLoopback: boolean): boolean {
    return this.exemptLoopback && isLoopback;
  }

  /** Drops expired entries; past the cap, the least recently changed ones. */
  #prune(now: number): void {
    for (const [key, entry] of this.#entries) {
      const windowOver = now - entry.windowStart >= this.windowMs;
      if (windowOver && entry.lockedUntil <= now) this.#entries.delete(key);
    }
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.maxTrackedAddresses) break;
      this.#entries.delete(key);
    }
  }
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;

/** Whether a socket's remote address is loopback (`127.0.0.0/8`, `::1`, IPv4-mapped). */
export function isLoopbackAddress(address: string | undefined): boolean {
  return LOOPBACK.test(address ?? "");
}

/**
 * Whether a request came through a proxy (`X-Forwarded-For`, `X-Real-IP` or `Forwarded`):
 * such a request is not local, whatever address the proxy connects from.
 */
export function isProxiedRequest(req: { headers: IncomingHttpHeaders }): boolean {
  const { headers } = req;
  return (
    headers["x-forwarded-for"] !== undefined ||
    headers["x-real-ip"] !== undefined ||
    headers.forwarded !== undefined
  );
}

/** Whether a request is local: from a loopback address, and not relayed by a proxy. */
export function isLoopbackRequest(req: IncomingMessage): boolean {
  return !isProxiedRequest(req) && isLoopbackAddress(req.socket.remoteAddress);
}

/** One key per client: IPv4-mapped IPv6 addresses count as their IPv4 address. */
function keyOf(address: string | undefined): string {
  return address === undefined || address === "" ? "unknown" : addressKey(address);
}

const limiters = new WeakMap<object, AuthRateLimiter | null>();

/**
 * The limiter of a gateway's auth settings (one per settings object, made on first use):
 * `null` when `rateLimit` is `false`.
 *
 * @throws InvalidArgumentError for a limit that is not a positive integer.
 */
export function authRateLimiterOf(
  settings: { rateLimit?: AuthRateLimitSettings | false | undefined },
  now: () => number = Date.now,
): AuthRateLimiter | null {
  let limiter = limiters.get(settings);
  if (limiter === undefined) {
    limiter = settings.rateLimit === false ? null : new AuthRateLimiter(settings.rateLimit, now);
    limiters.set(settings, limiter);
  }
  return limiter;
}
