/**
 * The durable outbox: every outbound message of a channel is written to the store before it
 * is sent, sent in order within its conversation, and removed only once the platform confirmed
 * it. A restart resumes where it stopped: nothing is lost, and a part the platform confirmed
 * (or a message of a part that takes several) is not sent again.
 */
import { randomBytes } from "node:crypto";
import { ChannelSendError, InvalidArgumentError, isBeamClawError } from "../errors.js";
import { sleep } from "../providers/backoff.js";
import type { JsonObject } from "../providers/types.js";
import type { UserMessageInput } from "../sessions/types.js";
import { iterateKvKeys, KV_SCAN_MAX_LIMIT } from "../store/kv-paging.js";
import type { KeyValueStore } from "../store/types.js";
import { emitTelemetry } from "../telemetry.js";
import type {
  ChannelLogger,
  ChannelSendProgress,
  ChannelTarget,
  OutboundMedia,
  SentMessage,
} from "./types.js";

/**
 * One message of an outbox entry: a text or a file to send, or the new text of a message the
 * channel sent before (the final text of a reply streamed by editing).
 */
export type OutboxPart =
  | { kind: "text"; text: string }
  | { kind: "media"; media: OutboundMedia }
  | { kind: "edit"; messageId: string; text: string };

/** The message a reply entry answers, kept so that a restart can pick its run up again. */
export interface OutboxRun {
  sessionKey: string;
  /** The inbound message's idempotency key in the session's durable queue. */
  idempotencyKey: string;
  /** The message as sent to the session (resent with the same key after a restart). */
  input: UserMessageInput;
  queueMode?: string;
}

/** An outbox entry as stored under `outbox:<channel>:<id>`. */
export interface OutboxEntry {
  /** Ordered: ids sort in the order entries were added. */
  id: string;
  channel: string;
  target: ChannelTarget;
  /** `pending-run`: a reply whose run has not ended (no parts yet). `ready`: to be sent. */
  state: "pending-run" | "ready";
  parts: OutboxPart[];
  /** How many parts the platform confirmed. */
  sent: number;
  /** The platform ids of the confirmed parts. */
  messageIds: string[];
  /**
   * The platform ids of the messages of the current part confirmed so far, when its send
   * takes several (a file and the caption that did not fit in it; see
   * `ChannelSendOptions.progress`): a retry resumes after them. Cleared once the part is
   * confirmed.
   */
  progress?: string[];
  /** The first part quotes this platform message. */
  replyToMessageId?: string;
  /** Failed attempts at the current part (rate limits not counted). */
  attempts: number;
  /**
   * How long the current part has been told to wait by rate limits so far, in ms (bounded by
   * `maxRateLimitWaitMs`). Cleared once the part is confirmed.
   */
  rateLimitedMs?: number;
  /** How many rate limits the current part met (spaces out waits without a `retryAfterMs`). */
  rateLimits?: number;
  /** Epoch ms. */
  createdAt: number;
  run?: OutboxRun;
  /** What the host added it for, e.g. `approval:<requestId>`. */
  tag?: string;
}

/**
 * A set-aside entry under `outbox-dead:<channel>:<id>`. Its `attempts` counts every failed try
 * of the part that was set aside that was not a rate limit, plus the last one; its
 * `rateLimitedMs` how long rate limits made it wait.
 */
export interface DeadLetter extends OutboxEntry {
  /**
   * Why: the last error's `code` and message, the platform's HTTP `statusCode` when the
   * error had one (403 for a bot blocked by the user, 429 for a rate limit that outlasted
   * `maxRateLimitWaitMs`, ...), and the platform's own error code (`platformCode`, see
   * `ChannelSendError.platformCode`: `channel_not_found`, `10003`, ...) when it answered one.
   */
  error: { code: string; message: string; statusCode?: number; platformCode?: string };
  droppedAt: number;
}

/**
 * How the outbox retries a part the platform did not take. A rate limit (a failure with
 * `statusCode` 429 or a `retryAfterMs`) is not a failed attempt: the part waits as long as
 * the platform asked (or backs off, when it did not say) and goes again, without using up
 * `maxAttempts`; these waits are bounded by `maxRateLimitWaitMs` instead.
 */
export interface OutboxRetryOptions {
  /** Failed tries of one part (rate limits not counted) before it is set aside. Default 8. */
  maxAttempts?: number;
  /** First retry waits up to this; it doubles per try. Default 1000. */
  baseDelayMs?: number;
  /** Longest wait between tries, unless the platform asked for a longer one. Default 60 000. */
  maxDelayMs?: number;
  /**
   * Longest total time one part may wait out rate limits: a part whose next wait would take
   * it past this is set aside (with the 429), so a platform that rate-limits it forever does
   * not hold it forever. Default 900 000 (15 minutes); a finite number >= 0, else the
   * outbox throws `InvalidArgumentError`.
   */
  maxRateLimitWaitMs?: number;
}

/**
 * Sends one part; provided by the host. `progress` records the messages of a part that takes
 * several (pass it to the plugin as `ChannelSendOptions.progress`).
 */
export type OutboxSender = (
  entry: OutboxEntry,
  part: OutboxPart,
  index: number,
  signal: AbortSignal,
  progress: ChannelSendProgress,
) => Promise<SentMessage>;

/** Options of {@link ChannelOutbox}. */
export interface ChannelOutboxOptions extends OutboxRetryOptions {
  kv: KeyValueStore;
  channel: string;
  send: OutboxSender;
  /** Called after an entry's last part was confirmed. */
  onDelivered?: (entry: OutboxEntry) => void;
  logger?: ChannelLogger;
  now?: () => number;
  random?: () => number;
}

/** How long set-aside entries are kept for inspection. */
const DEAD_LETTER_TTL_MS = 7 * 24 * 60 * 60 * 1000;
let sequence = 0;

function asJson(entry: OutboxEntry): JsonObject {
  return entry as unknown as JsonObject;
}

/** The conversation an entry goes to: its order is kept within it, and a wait holds only it. */
function conversationOf(target: ChannelTarget): string {
  return JSON.stringify([target?.accountId, target?.chatType, target?.chatId, target?.threadId]);
}

/** A failure that is the platform asking us to slow down rather than the message failing. */
function isRateLimit(error: unknown): boolean {
  const { statusCode, retryAfterMs } = (error ?? {}) as {
    statusCode?: unknown;
    retryAfterMs?: unknown;
  };
  return statusCode === 429 || (typeof retryAfterMs === "number" && retryAfterMs > 0);
}

/**
 * One channel's durable outbox over `store.kv`. `add` writes an entry; the drain loop —
 * running between `resume()` (the channel connected) and `pause()` — sends ready entries one
 * part at a time, recording each confirmed part before the next, in id order within each
 * conversation (the entry's target: account, chat and thread). A retryable failure is retried
 * with exponential backoff and jitter (or after the platform's `retryAfterMs`); while it waits,
 * only its conversation waits and the others' entries keep going, unless the error's `scope`
 * is `channel` (a global rate limit), which holds the whole channel. Rate limits do not count
 * as failed attempts (see {@link OutboxRetryOptions}). A permanent failure (or too many tries)
 * moves the entry to `outbox-dead:<channel>:` with the error, and the next entry goes on.
 *
 * Delivery is at least once: a crash between the platform's confirmation and the store write
 * resends that one part, with the same `idempotencyKey` (`<entry id>:<part>`), which a
 * platform that deduplicates uses to drop it. A part whose send takes several platform
 * messages records each confirmed one through the sender's `progress` (stored with the
 * entry), and its retries — after a failure, or a restart — resume after them.
 *
 * @example
 * ```ts
 * const outbox = new ChannelOutbox({ kv: store.kv, channel: "discord",
 *   send: (entry, part, i, signal) => plugin.sendText(entry.target, part.text, { signal }) });
 * await outbox.add({ target, parts: [{ kind: "text", text: "hi" }] });
 * outbox.resume();
 * await outbox.idle();
 * await outbox.stop();
 * ```
 */
export class ChannelOutbox {
  readonly channel: string;
  readonly #kv: KeyValueStore;
  readonly #send: OutboxSender;
  readonly #onDelivered: ((entry: OutboxEntry) => void) | undefined;
  readonly #logger: ChannelLogger | undefined;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #maxAttempts: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #maxRateLimitWaitMs: number;
  readonly #prefix: string;
  /** Conversations waiting to retry: until when (`Date.now()` ms). */
  readonly #holds = new Map<string, number>();
  /** The whole channel waits until then (a `scope: "channel"` failure). */
  #channelHold = 0;
  /** The loop sleeps only until a wait ends: there is work, so not idle. */
  #holding = false;
  #active = false;
  #stopped = false;
  #loop: Promise<void> | null = null;
  #pause: AbortController | null = null;
  #wake: (() => void) | null = null;
  #dirty = false;
  #idleWaiters: Array<() => void> = [];

  constructor(options: ChannelOutboxOptions) {
    this.channel = options.channel;
    this.#kv = options.kv;
    this.#send = options.send;
    this.#onDelivered = options.onDelivered;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#maxAttempts = options.maxAttempts ?? 8;
    this.#baseDelayMs = options.baseDelayMs ?? 1_000;
    this.#maxDelayMs = options.maxDelayMs ?? 60_000;
    const maxWait = options.maxRateLimitWaitMs ?? 900_000;
    if (typeof maxWait !== "number" || !Number.isFinite(maxWait) || maxWait < 0) {
      throw new InvalidArgumentError(
        `outbox maxRateLimitWaitMs must be a finite number >= 0, got ${String(maxWait)}`,
      );
    }
    this.#maxRateLimitWaitMs = maxWait;
    this.#prefix = `outbox:${this.channel}:`;
  }

  /** Adds an entry (ready unless `state` says otherwise) and wakes the drain loop. */
  async add(
    fields: Pick<OutboxEntry, "target"> &
      Partial<Pick<OutboxEntry, "state" | "parts" | "replyToMessageId" | "run" | "tag">>,
  ): Promise<OutboxEntry> {
    const now = this.#now();
    const entry: OutboxEntry = {
      id: `${String(now).padStart(15, "0")}-${String(++sequence % 1e9).padStart(9, "0")}-${randomBytes(3).toString("hex")}`,
      channel: this.channel,
      target: fields.target,
      state: fields.state ?? "ready",
      parts: fields.parts ?? [],
      sent: 0,
      messageIds: [],
      attempts: 0,
      createdAt: now,
    };
    if (fields.replyToMessageId !== undefined) entry.replyToMessageId = fields.replyToMessageId;
    if (fields.run !== undefined) entry.run = fields.run;
    if (fields.tag !== undefined) entry.tag = fields.tag;
    await this.#kv.set(this.#prefix + entry.id, asJson(entry));
    if (entry.state === "ready") this.kick();
    return entry;
  }

  /** Turns a `pending-run` entry into a ready one with these parts (none: removes it). */
  async ready(id: string, parts: OutboxPart[]): Promise<void> {
    const entry = await this.get(id);
    if (entry === undefined || entry.state !== "pending-run") return;
    if (parts.length === 0) {
      await this.remove(id);
      return;
    }
    await this.#kv.set(this.#prefix + id, asJson({ ...entry, state: "ready", parts }));
    this.kick();
  }

  async get(id: string): Promise<OutboxEntry | undefined> {
    return (await this.#kv.get(this.#prefix + id)) as OutboxEntry | undefined;
  }

  async remove(id: string): Promise<boolean> {
    return this.#kv.delete(this.#prefix + id);
  }

  /** Every entry, in order. */
  async list(): Promise<OutboxEntry[]> {
    const out: OutboxEntry[] = [];
    for await (const key of iterateKvKeys(this.#kv, this.#prefix)) {
      const entry = (await this.#kv.get(key)) as OutboxEntry | undefined;
      if (entry !== undefined) out.push(entry);
    }
    return out;
  }

  /** Entries set aside after a permanent failure or too many tries (kept 7 days). */
  async deadLetters(): Promise<DeadLetter[]> {
    const out: DeadLetter[] = [];
    for await (const key of iterateKvKeys(this.#kv, `outbox-dead:${this.channel}:`)) {
      const entry = (await this.#kv.get(key)) as DeadLetter | undefined;
      if (entry !== undefined) out.push(entry);
    }
    return out;
  }

  /** Starts (or continues) draining: the channel is connected. */
  resume(): void {
    if (this.#stopped || this.#active) return;
    this.#active = true;
    this.#pause = new AbortController();
    this.#loop ??= this.#run();
    this.kick();
  }

  /** Stops draining after the part in flight (whose send is aborted): the channel is down. */
  pause(): void {
    if (!this.#active) return;
    this.#active = false;
    this.#pause?.abort();
    this.#wake?.();
  }

  /** Tells the loop there may be work. */
  kick(): void {
    this.#dirty = true;
    this.#wake?.();
  }

  /** Resolves once no ready entry is left to send (or the outbox is paused or stopped). */
  idle(): Promise<void> {
    // Not draining, or waiting for work with none announced (not for a retry): idle now.
    if (this.#loop === null || (this.#wake !== null && !this.#dirty && !this.#holding)) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Stops the loop for good and waits for it. Entries stay stored for the next start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.pause();
    await this.#loop;
    this.#loop = null;
    this.#releaseIdle();
  }

  async #run(): Promise<void> {
    while (this.#active && !this.#stopped) {
      const signal = this.#pause!.signal;
      try {
        this.#dirty = false;
        const { entry, wakeAt } = await this.#nextReady();
        if (entry !== undefined) {
          await this.#deliver(entry, signal);
          continue;
        }
        if (this.#dirty) continue;
        this.#holding = wakeAt !== undefined;
        if (!this.#holding) this.#releaseIdle();
        await new Promise<void>((resolve) => {
          const timer =
            wakeAt === undefined
              ? undefined
              : setTimeout(resolve, Math.max(0, wakeAt - Date.now()));
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
          if (signal.aborted || this.#dirty) this.#wake();
        });
        this.#wake = null;
        this.#holding = false;
      } catch (error) {
        // The store failed: nothing was lost (entries are only removed after a write); try
        // again after a pause.
        this.#logger?.error("outbox store access failed; retrying", {
          channel: this.channel,
          error,
        });
        await sleep(this.#baseDelayMs, signal).catch(() => undefined);
      }
    }
    this.#loop = null;
    this.#releaseIdle();
  }

  #releaseIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /**
   * The first ready entry of a conversation that is not waiting, with no earlier ready entry
   * of its own conversation; else when the first wait ends (`undefined`: nothing is ready).
   * The entries are read page by page in id order (`kv.scan`), stopping at the one found, so
   * a long outbox is never listed whole on every turn of the loop. An entry written during
   * the pass may be missed; its write kicks the loop, so the next pass sees it.
   */
  async #nextReady(): Promise<{ entry?: OutboxEntry; wakeAt?: number }> {
    const now = Date.now();
    const seen = new Set<string>();
    let wakeAt: number | undefined;
    // Paged by hand rather than with `iterateKvKeys`: an async generator adds microtask ticks
    // to every key, and this pass runs before every send.
    let cursor: string | undefined;
    do {
      const page = await this.#kv.scan(this.#prefix, { limit: KV_SCAN_MAX_LIMIT, cursor });
      for (const key of page.items) {
        const entry = (await this.#kv.get(key)) as OutboxEntry | undefined;
        if (entry?.state !== "ready") continue;
        const conversation = conversationOf(entry.target);
        if (seen.has(conversation)) continue; // behind an earlier entry of its conversation
        seen.add(conversation);
        let until = this.#holds.get(conversation) ?? 0;
        if (until <= now) this.#holds.delete(conversation);
        until = Math.max(until, this.#channelHold);
        if (until <= now) return { entry };
        wakeAt = Math.min(wakeAt ?? until, until);
      }
      cursor = page.cursor;
    } while (cursor !== undefined);
    return wakeAt === undefined ? {} : { wakeAt };
  }

  /** Holds the entry's conversation (or, for a `channel` scope, the channel) for `delayMs`. */
  #hold(entry: OutboxEntry, error: unknown, delayMs: number): void {
    const until = Date.now() + delayMs;
    if ((error as { scope?: unknown } | undefined)?.scope === "channel") {
      this.#channelHold = Math.max(this.#channelHold, until);
    } else {
      const conversation = conversationOf(entry.target);
      this.#holds.set(conversation, Math.max(this.#holds.get(conversation) ?? 0, until));
    }
  }

  /** The backoff before try `n` (1-based): exponential, capped, with jitter. */
  #backoff(n: number): number {
    const ceiling = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (n - 1));
    return Math.floor(ceiling / 2 + this.#random() * (ceiling / 2));
  }

  /**
   * Sends the entry's remaining parts; returns after it is done, set aside, or must wait (its
   * conversation, or the channel, then held until the retry is due).
   */
  async #deliver(entry: OutboxEntry, signal: AbortSignal): Promise<void> {
    const key = this.#prefix + entry.id;
    while (entry.sent < entry.parts.length) {
      if (signal.aborted) return;
      const index = entry.sent;
      const progress = this.#progress(entry, key);
      let sent: SentMessage;
      try {
        try {
          sent = await this.#send(entry, entry.parts[index]!, index, signal, progress.handle);
        } finally {
          // Records the plugin did not wait for are stored before anything else is.
          await progress.close();
        }
        if (typeof sent?.messageId !== "string") {
          throw new ChannelSendError(
            this.channel,
            "the plugin's send resolved without a messageId",
            {
              isRetryable: false,
            },
          );
        }
      } catch (error) {
        if (signal.aborted) return; // paused or stopped mid-send: the part goes again later
        if (isBeamClawError(error, "ABORTED")) {
          // The connection went away under the send: not the message's fault, so no attempt
          // is counted; the pause that follows a lost connection ends the wait.
          await sleep(this.#baseDelayMs, signal).catch(() => undefined);
          return;
        }
        const flag = (error as { isRetryable?: unknown } | undefined)?.isRetryable;
        // Bad input does not get better by trying again.
        const retryable =
          flag === undefined
            ? !isBeamClawError(error, "INVALID_ARGUMENT") &&
              !isBeamClawError(error, "NOT_SUPPORTED")
            : flag !== false;
        const retryAfterMs = (error as { retryAfterMs?: unknown }).retryAfterMs;
        const asked = typeof retryAfterMs === "number" && retryAfterMs > 0 ? retryAfterMs : 0;
        const rateLimited = retryable && isRateLimit(error);
        let delay: number;
        let giveUp: boolean;
        if (rateLimited) {
          // The platform asked us to slow down: not a failed attempt, but the waits are bounded.
          const rateLimits = (entry.rateLimits ?? 0) + 1;
          delay = asked > 0 ? asked : this.#backoff(rateLimits);
          const waited = (entry.rateLimitedMs ?? 0) + delay;
          giveUp = waited > this.#maxRateLimitWaitMs;
          if (!giveUp) {
            entry.rateLimits = rateLimits;
            entry.rateLimitedMs = waited;
          }
        } else {
          const attempts = entry.attempts + 1;
          delay = Math.max(this.#backoff(attempts), asked);
          giveUp = !retryable || attempts >= this.#maxAttempts;
          if (!giveUp) entry.attempts = attempts;
        }
        if (giveUp) {
          const attempts = entry.attempts + 1;
          entry.attempts = attempts;
          await this.#setAside(entry, error);
          emitTelemetry("beamclaw:channel.outbound", () => ({
            channel: this.channel,
            outboxId: entry.id,
            outcome: "dropped",
            attempts,
            error,
          }));
          return;
        }
        const attempts = entry.attempts;
        await this.#kv.set(key, asJson(entry));
        emitTelemetry("beamclaw:channel.outbound", () => ({
          channel: this.channel,
          outboxId: entry.id,
          outcome: "retry",
          attempts,
          retryInMs: delay,
          error,
        }));
        this.#logger?.warn(
          rateLimited
            ? "outbound message rate limited; waiting"
            : "outbound message failed; retrying",
          {
            channel: this.channel,
            outboxId: entry.id,
            attempts,
            retryInMs: delay,
            error,
          },
        );
        this.#hold(entry, error, delay);
        return;
      }
      const attempts = entry.attempts + 1;
      entry.sent = index + 1;
      entry.messageIds = [...entry.messageIds, sent.messageId];
      entry.attempts = 0;
      delete entry.progress;
      delete entry.rateLimitedMs;
      delete entry.rateLimits;
      if (entry.sent < entry.parts.length) await this.#kv.set(key, asJson(entry));
      else await this.#kv.delete(key);
      emitTelemetry("beamclaw:channel.outbound", () => ({
        channel: this.channel,
        outboxId: entry.id,
        outcome: "sent",
        attempts,
      }));
    }
    try {
      this.#onDelivered?.(entry);
    } catch (error) {
      this.#logger?.warn("onDelivered threw", { channel: this.channel, error });
    }
  }

  /**
   * The progress handle of one attempt at the entry's current part: `record` adds a confirmed
   * message to `entry.progress` and stores the entry (in order); `close` ends the attempt
   * (later records are ignored) once the pending writes are done.
   */
  #progress(
    entry: OutboxEntry,
    key: string,
  ): { handle: ChannelSendProgress; close(): Promise<void> } {
    let open = true;
    let writes = Promise.resolve();
    const handle: ChannelSendProgress = {
      sent: [...(entry.progress ?? [])],
      record: (messageId: string) => {
        if (!open || typeof messageId !== "string") return writes;
        entry.progress = [...(entry.progress ?? []), messageId];
        writes = writes
          .then(async () => {
            await this.#kv.set(key, asJson(entry));
          })
          .catch((error: unknown) => {
            // Kept in memory: this process's retries still skip it; the entry is written
            // again with the attempt's outcome.
            this.#logger?.error("outbox could not store a part's progress", {
              channel: this.channel,
              outboxId: entry.id,
              error,
            });
          });
        return writes;
      },
    };
    return {
      handle,
      close: async () => {
        open = false;
        await writes;
      },
    };
  }

  async #setAside(entry: OutboxEntry, error: unknown): Promise<void> {
    const { statusCode, platformCode } = (error ?? {}) as {
      statusCode?: unknown;
      platformCode?: unknown;
    };
    const info: DeadLetter["error"] = {
      code: isBeamClawError(error) ? error.code : "INTERNAL",
      message: error instanceof Error ? error.message : String(error),
      ...(typeof statusCode === "number" ? { statusCode } : {}),
      ...(typeof platformCode === "string" ? { platformCode } : {}),
    };
    this.#logger?.error("outbound message set aside", {
      channel: this.channel,
      outboxId: entry.id,
      error,
    });
    const dead: DeadLetter = { ...entry, error: info, droppedAt: this.#now() };
    await this.#kv.set(`outbox-dead:${this.channel}:${entry.id}`, dead as unknown as JsonObject, {
      ttlMs: DEAD_LETTER_TTL_MS,
    });
    await this.#kv.delete(this.#prefix + entry.id);
  }
}
