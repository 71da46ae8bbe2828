/**
 * A guard in front of `@discordjs/rest`'s wait for a rate limit it already knows of.
 *
 * When a bucket (or the global limit) is known to be exhausted, `@discordjs/rest` 2.x arms the
 * timer of the whole wait *before* it asks `rejectOnRateLimit`, and that timer cannot be
 * cancelled: a call refused because the wait is too long leaves a timer of the full
 * retry-after (for a global limit, a minute or more) holding the process open, and an aborted
 * call's wait runs on. So before a request reaches a rate-limit handler, the wait is computed
 * here from the same state (`globalRemaining`/`globalReset`, the handler's
 * `remaining`/`reset`, the `offset` option): longer than the channel allows, the call fails
 * at once with `@discordjs/rest`'s own `RateLimitError`; shorter, it is waited out here with a
 * timer the call's signal clears. `@discordjs/rest` then finds the bucket free and arms
 * nothing. Waits that come with a 429 answer (`retry_after`) are `@discordjs/rest`'s as
 * before: it asks `rejectOnRateLimit` first there.
 *
 * The guard also keeps `@discordjs/rest`'s handlers in check: it makes one per route bucket
 * *and* channel (or guild), and the channel turns the library's interval sweeps off (they
 * arm timers), so a bot that talks in ever more channels and DMs would keep one for each for
 * good. Once there are {@link HANDLER_SWEEP_THRESHOLD} or more, making a new one first drops
 * those with nothing queued and no limit in force, as the library's own sweep would.
 */
import type { RateLimitData, REST } from "@discordjs/rest";
import type { DiscordLibraries } from "./libraries.js";

/** The parts of `@discordjs/rest`'s SequentialHandler the guard reads (internal to it). */
interface SequentialHandlerLike {
  readonly hash: string;
  readonly majorParameter: string;
  limit: number;
  remaining: number;
  reset: number;
  runRequest(
    routeId: RouteDataLike,
    url: string,
    options: { method?: string },
    requestData: { signal?: AbortSignal | null },
    retries?: number,
  ): Promise<unknown>;
}

interface RouteDataLike {
  bucketRoute: string;
  majorParameter: string;
}

/** The parts of REST the guard reads and wraps (`createHandler` is internal to it). */
interface RestInternals {
  handlers: Map<string, { readonly inactive: boolean }>;
  globalRemaining: number;
  globalReset: number;
  options: { offset: number | ((route: string) => number); globalRequestsPerSecond: number };
  createHandler(hash: string, majorParameter: string): unknown;
  emit(event: "rateLimited", data: RateLimitData): unknown;
}

/**
 * How many rate-limit handlers `@discordjs/rest` may hold before the inactive ones are
 * dropped (see {@link guardRateLimits}).
 */
export const HANDLER_SWEEP_THRESHOLD = 1_000;

function isSequential(handler: unknown): handler is SequentialHandlerLike {
  const h = handler as Partial<SequentialHandlerLike> | null;
  return (
    typeof h?.runRequest === "function" &&
    typeof h.remaining === "number" &&
    typeof h.reset === "number"
  );
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
function abortableSleep(ms: number, signal: AbortSignal | null | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Puts the guard in front of every rate-limit handler `rest` creates. `maxWaitMs` is the
 * longest wait a call may sit out (the channel's `maxRateLimitWaitMs`).
 */
export function guardRateLimits(rest: REST, libraries: DiscordLibraries, maxWaitMs: number): void {
  const internals = rest as unknown as RestInternals;
  if (typeof internals.createHandler !== "function") return; // another @discordjs/rest: as it is
  const create = internals.createHandler.bind(rest);
  /** Handler count at which the next sweep runs: twice what survived the last one, at least. */
  let sweepAt = HANDLER_SWEEP_THRESHOLD;
  internals.createHandler = (hash, majorParameter) => {
    const handlers = internals.handlers;
    if (handlers instanceof Map && handlers.size >= sweepAt) {
      for (const [key, existing] of handlers) if (existing.inactive) handlers.delete(key);
      sweepAt = Math.max(HANDLER_SWEEP_THRESHOLD, handlers.size * 2);
    }
    const handler = create(hash, majorParameter);
    if (isSequential(handler)) guard(handler);
    return handler;
  };

  /** How long a request of `handler` would wait now, and whether for the global limit. */
  const waitOf = (handler: SequentialHandlerLike, routeId: RouteDataLike) => {
    const { offset } = internals.options;
    const margin = Math.max(0, typeof offset === "number" ? offset : offset(routeId.bucketRoute));
    const now = Date.now();
    if (internals.globalRemaining <= 0 && now < internals.globalReset) {
      return { ms: internals.globalReset + margin - now, global: true };
    }
    if (handler.remaining <= 0 && now < handler.reset) {
      return { ms: handler.reset + margin - now, global: false };
    }
    return { ms: 0, global: false };
  };

  const guard = (handler: SequentialHandlerLike) => {
    const run = handler.runRequest;
    handler.runRequest = function guarded(
      routeId,
      url,
      options,
      requestData,
      retries,
    ): Promise<unknown> {
      const wait = waitOf(handler, routeId);
      // Free: straight on, in the same turn (nothing can exhaust the bucket in between).
      if (wait.ms <= 0) return run.call(handler, routeId, url, options, requestData, retries);
      const data: RateLimitData = {
        global: wait.global,
        method: options.method ?? "get",
        url,
        route: routeId.bucketRoute,
        majorParameter: handler.majorParameter,
        hash: handler.hash,
        limit: wait.global ? internals.options.globalRequestsPerSecond : handler.limit,
        timeToReset: wait.ms,
        retryAfter: wait.ms,
        sublimitTimeout: 0,
        scope: "user",
      };
      internals.emit("rateLimited", data);
      if (wait.ms > maxWaitMs) return Promise.reject(new libraries.rest.RateLimitError(data));
      return abortableSleep(wait.ms, requestData.signal).then(() =>
        guarded(routeId, url, options, requestData, retries),
      );
    };
  };
}
