/**
 * Client-side limits of a provider chain: requests and tokens per minute over a sliding
 * window, and concurrent calls. Waiting is done with the chain's (injectable) clock and sleep,
 * and every wait gives up as soon as the call's signal aborts. Nothing runs while nobody waits.
 */

import { estimateFileTokens } from "../sessions/context-window.js";
import { abortedBy, raceAbort, type SleepFunction } from "./backoff.js";
import type { ModelMessage, ModelRequest } from "./types.js";

/** Limits for one `provider/model` ref or one whole provider. */
export interface RateLimits {
  /** Requests per minute (sliding 60 s window). */
  rpm?: number;
  /**
   * Tokens per minute (sliding 60 s window). A call counts its estimate up front (see
   * `estimateTokens`), corrected to the usage the provider reports (input + output tokens).
   * A single request larger than `tpm` waits for an empty window instead of forever.
   *
   * Calls that wait for room are served in the order they came (for `rpm` too): a call
   * arriving while another waits queues behind it even if it would fit now, so a large
   * request is not starved by a steady flow of small ones that each fit.
   */
  tpm?: number;
  /** Calls streaming at the same time. Waiters are served first come, first served. */
  concurrency?: number;
}

const WINDOW_MS = 60_000;

interface WindowEntry {
  at: number;
  tokens: number;
}

/** A call waiting in line for room in per-minute windows (see `acquireLimits`). */
interface Ticket {
  /** Wakes the call when a ticket ahead of it leaves a line. */
  wake: (() => void) | undefined;
}

/** The limits of one key (a ref or a provider id) and their current use. */
export class Limiter {
  readonly key: string;
  readonly #limits: RateLimits;
  readonly #window: WindowEntry[] = [];
  #active = 0;
  readonly #waiting: Array<() => void> = [];
  /** Calls waiting for room in the per-minute window, first come first served. */
  readonly #line: Ticket[] = [];

  constructor(key: string, limits: RateLimits) {
    this.key = key;
    this.#limits = limits;
  }

  /** Milliseconds until a request of `tokens` fits the per-minute limits; 0 when it fits now. */
  waitMs(tokens: number, now: number): number {
    const window = this.#window;
    while (window.length > 0 && (window[0] as WindowEntry).at <= now - WINDOW_MS) window.shift();
    let wait = 0;
    const { rpm, tpm } = this.#limits;
    if (rpm !== undefined && window.length >= rpm) {
      wait = (window[window.length - rpm] as WindowEntry).at + WINDOW_MS - now;
    }
    if (tpm !== undefined && window.length > 0) {
      let used = 0;
      for (const entry of window) used += entry.tokens;
      // Entries leave oldest first; find the one whose leaving makes room.
      let index = 0;
      while (index < window.length && used + tokens > tpm) {
        used -= (window[index] as WindowEntry).tokens;
        index++;
      }
      if (index > 0) {
        wait = Math.max(wait, (window[index - 1] as WindowEntry).at + WINDOW_MS - now);
      }
    }
    return wait;
  }

  /** Whether another call waits for window room ahead of `ticket` (any, if it has none). */
  lineAhead(ticket: Ticket | undefined): boolean {
    const line = this.#line;
    return line.length > 0 && line[0] !== ticket;
  }

  /** Puts `ticket` at the end of the line for window room. */
  joinLine(ticket: Ticket): void {
    this.#line.push(ticket);
  }

  /** Takes `ticket` out of the line; the call now first in line, if any, looks again. */
  leaveLine(ticket: Ticket): void {
    const index = this.#line.indexOf(ticket);
    if (index < 0) return;
    this.#line.splice(index, 1);
    if (index === 0) this.#line[0]?.wake?.();
  }

  /**
   * Room was made in the window before its time (a request taken back, or a usage smaller
   * than its estimate): the call first in line, if any, looks again instead of sleeping on.
   */
  roomMade(): void {
    this.#line[0]?.wake?.();
  }

  /** Counts one request of `tokens` at `now`; the entry's tokens may be corrected later. */
  record(tokens: number, now: number): WindowEntry {
    const entry = { at: now, tokens };
    this.#window.push(entry);
    return entry;
  }

  /** Takes back a request counted by {@link Limiter.record} that was never made. */
  unrecord(entry: WindowEntry): void {
    const index = this.#window.indexOf(entry);
    if (index >= 0) this.#window.splice(index, 1);
  }

  /** Takes a concurrency slot, waiting in line for one; rejects with `AbortedError` on abort. */
  takeSlot(signal: AbortSignal): Promise<void> | undefined {
    const limit = this.#limits.concurrency;
    if (limit === undefined) return undefined;
    if (this.#active < limit && this.#waiting.length === 0) {
      this.#active++;
      return undefined;
    }
    if (signal.aborted) return Promise.reject(abortedBy(signal));
    return new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const index = this.#waiting.indexOf(grant);
        if (index >= 0) this.#waiting.splice(index, 1);
        reject(abortedBy(signal));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(grant);
    });
  }

  /** Gives a concurrency slot back, to the next in line if any. */
  releaseSlot(): void {
    if (this.#limits.concurrency === undefined) return;
    const next = this.#waiting.shift();
    if (next === undefined) this.#active--;
    else next(); // the slot passes on; the count stays
  }
}

/** What a call holds while it runs: released once, with the usage it reported if any. */
export interface LimiterLease {
  /** `actualTokens`: the reported usage, replacing the estimate when it is a count >= 0. */
  release(actualTokens: number | undefined): void;
  /**
   * Releases the lease of a request that was never made (its circuit refused it after the
   * wait, or the call was aborted before its provider was called): it leaves the per-minute
   * windows as if it had never been counted.
   */
  cancel(): void;
}

/**
 * Waits until every limiter has a concurrency slot and room in its per-minute window, then
 * counts the call in all of them at once. Calls that wait for window room are served in the
 * order they came: one that arrives while others wait queues behind them.
 */
export async function acquireLimits(
  limiters: readonly Limiter[],
  tokens: number,
  signal: AbortSignal,
  now: () => number,
  sleep: SleepFunction,
): Promise<LimiterLease> {
  const slots: Limiter[] = [];
  const releaseSlots = () => {
    for (const limiter of slots.splice(0)) limiter.releaseSlot();
  };
  /** This call's place in the limiters' lines, once it had to wait for window room. */
  let ticket: Ticket | undefined;
  const leaveLines = () => {
    if (ticket === undefined) return;
    for (const limiter of limiters) limiter.leaveLine(ticket);
    ticket = undefined;
  };
  try {
    // Always in the same order (provider before ref), so two calls cannot deadlock.
    for (const limiter of limiters) {
      // Not raced against the signal: takeSlot rejects on abort itself, and a slot granted in
      // the same turn as an abort must still be counted here so that it is released.
      const waiting = limiter.takeSlot(signal);
      if (waiting !== undefined) await waiting;
      slots.push(limiter);
    }
    for (;;) {
      if (signal.aborted) throw abortedBy(signal);
      const at = now();
      let wait = 0;
      let behind = false;
      for (const limiter of limiters) {
        wait = Math.max(wait, limiter.waitMs(tokens, at));
        if (limiter.lineAhead(ticket)) behind = true;
      }
      if (wait <= 0 && !behind) {
        const entries = limiters.map((limiter) => limiter.record(tokens, at));
        leaveLines();
        let released = false;
        return {
          release(actualTokens) {
            if (released) return;
            released = true;
            // A count that is not one (a provider's usage without output tokens: NaN) keeps
            // the estimate, which would otherwise switch the TPM limit off for a minute.
            if (actualTokens !== undefined && actualTokens >= 0 && actualTokens !== Infinity) {
              for (const entry of entries) entry.tokens = actualTokens;
              if (actualTokens < tokens) for (const limiter of limiters) limiter.roomMade();
            }
            releaseSlots();
          },
          cancel() {
            if (released) return;
            released = true;
            for (let index = 0; index < limiters.length; index++) {
              (limiters[index] as Limiter).unrecord(entries[index] as WindowEntry);
            }
            for (const limiter of limiters) limiter.roomMade();
            releaseSlots();
          },
        };
      }
      if (ticket === undefined) {
        // Every limiter's line, at once: the order of arrival is the same in all of them.
        ticket = { wake: undefined };
        for (const limiter of limiters) limiter.joinLine(ticket);
        continue;
      }
      if (behind) {
        // Until a call ahead leaves a line (it got its room, or gave up).
        const mine = ticket;
        await raceAbort(
          new Promise<void>((resolve) => {
            mine.wake = resolve;
          }),
          signal,
        );
        mine.wake = undefined;
      } else {
        await sleepUntilRoom(ticket, wait, signal, sleep);
      }
    }
  } catch (error) {
    leaveLines();
    releaseSlots();
    throw error;
  }
}

/**
 * The wait of the call first in line: `ms`, or until room is made early (see
 * {@link Limiter.roomMade}), whichever comes first; the sleep is cancelled (its timer
 * cleared) when woken or aborted. Rejects with `AbortedError` when `signal` aborts.
 */
async function sleepUntilRoom(
  ticket: Ticket,
  ms: number,
  signal: AbortSignal,
  sleep: SleepFunction,
): Promise<void> {
  const stop = new AbortController();
  const end = () => stop.abort();
  signal.addEventListener("abort", end, { once: true });
  ticket.wake = end;
  try {
    // Raced: a sleep that ignores its signal must not hold the call.
    await raceAbort(sleep(ms, stop.signal), stop.signal);
  } catch (error) {
    if (!stop.signal.aborted) throw error;
    if (signal.aborted) throw abortedBy(signal);
    // Woken: the caller looks at the windows again.
  } finally {
    ticket.wake = undefined;
    signal.removeEventListener("abort", end);
  }
}

/** Rough characters per token of English text and code, for estimates only. */
const CHARS_PER_TOKEN = 4;
/** The length of `value` if it is a string, else 0. */
function lengthOf(value: unknown): number {
  return typeof value === "string" ? value.length : 0;
}

/** What an image is assumed to cost before the provider reports usage. */
const IMAGE_TOKENS = 1_000;

/**
 * A quick estimate of the tokens a request will use: about one token per 4 characters of
 * system prompt, messages and tool definitions, a flat 1000 per image (tool results' too), a document by its size
 * (`estimateFileTokens`), plus
 * `maxOutputTokens` when set. Used by TPM limits before the provider reports real usage.
 */
export function estimateRequestTokens(request: Omit<ModelRequest, "model">): number {
  let chars = typeof request.system === "string" ? request.system.length : 0;
  let images = 0;
  let fileTokens = 0;
  // A malformed request is estimated as well as it can be, never thrown on: the provider
  // checks the request and answers a typed `invalid_request`.
  for (const message of request.messages ?? []) {
    const content: unknown = message?.content;
    if (!Array.isArray(content)) continue;
    for (const part of content as Array<ModelMessage["content"][number] | null>) {
      switch (part?.type) {
        case "text":
        case "thinking":
          chars += lengthOf(part.text);
          break;
        case "image":
          images++;
          break;
        case "file":
          fileTokens +=
            typeof part.mediaType === "string" ? estimateFileTokens(part) : IMAGE_TOKENS;
          break;
        case "tool-call":
          chars += lengthOf(part.toolName) + lengthOf(JSON.stringify(part.input ?? null));
          break;
        case "tool-result":
          chars += lengthOf(JSON.stringify(part.output ?? null));
          if (Array.isArray(part.images)) images += part.images.length;
          break;
      }
    }
  }
  if (request.tools !== undefined) chars += JSON.stringify(request.tools).length;
  return (
    Math.ceil(chars / CHARS_PER_TOKEN) +
    images * IMAGE_TOKENS +
    fileTokens +
    (request.maxOutputTokens ?? 0)
  );
}
