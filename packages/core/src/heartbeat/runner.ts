import { randomUUID } from "node:crypto";
import { open } from "node:fs/promises";
import { EventEmitter } from "eventemitter3";
import {
  type Clock,
  type ElapsedTime,
  elapsedTime,
  systemClock,
  type TimerHandle,
} from "../cron/clock.js";
import {
  BeamClawError,
  type BeamClawErrorOptions,
  describe,
  InvalidArgumentError,
  TimeoutError,
} from "../errors.js";
import { Actor, type NoReply, noReply, type ReplyTo } from "../runtime/actor.js";
import type { AgentRuntime } from "../sessions/runtime.js";
import { sessionKey as agentSessionKey, normalizeAgentId } from "../sessions/session-key.js";
import { loneSurrogateIndex } from "../unicode.js";
import { type ActiveHours, compileActiveHours } from "./active-hours.js";

/** The reply that means "nothing needs attention"; it is never delivered. */
export const HEARTBEAT_OK = "HEARTBEAT_OK";

/** The default heartbeat prompt (OpenClaw's). */
export const DEFAULT_HEARTBEAT_PROMPT =
  "Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. Do not infer or repeat old tasks from prior chats. If nothing needs attention, reply HEARTBEAT_OK.";

/** Default interval between heartbeat turns: 30 minutes. */
export const DEFAULT_HEARTBEAT_EVERY_MS = 30 * 60 * 1000;

/** Default largest `HEARTBEAT.md` read: 64 KiB. */
export const DEFAULT_MAX_HEARTBEAT_FILE_BYTES = 64 * 1024;

/**
 * Default `ackMaxChars` (OpenClaw's): a reply that starts or ends with `HEARTBEAT_OK` is
 * suppressed when at most this many characters are left once the token is taken off.
 */
export const DEFAULT_HEARTBEAT_ACK_MAX_CHARS = 300;

/** Markdown emphasis and code marks that may wrap the token (`**HEARTBEAT_OK**`). */
const ACK_AT_START = /^[\s*_`~]*HEARTBEAT_OK(?![A-Za-z0-9])[*_`~]*[\s.,:;!\-\u2013\u2014]*/;
const ACK_AT_END = /[\s*_`~]*HEARTBEAT_OK(?![A-Za-z0-9])[*_`~]*[\s.!]*$/;

/**
 * OpenClaw's rule for a heartbeat reply: `HEARTBEAT_OK` at the start or at the end of the reply
 * (markdown emphasis such as `**HEARTBEAT_OK**`, whitespace, and punctuation right after it
 * included) is taken off. `ack` is true when the token was found there and at most
 * `ackMaxChars` characters (code points) are left: the reply is an acknowledgement and is not
 * delivered. Otherwise `text` is what to deliver: the reply without the token (trimmed) when
 * it had one at an edge, the reply unchanged when it had none (a token in the middle of a
 * sentence is left alone).
 *
 * @example
 * ```ts
 * stripHeartbeatAck("**HEARTBEAT_OK**"); // { ack: true, text: "" }
 * stripHeartbeatAck("HEARTBEAT_OK, all quiet."); // { ack: true, text: "all quiet." }
 * stripHeartbeatAck("The backup failed.", 300); // { ack: false, text: "The backup failed." }
 * ```
 */
export function stripHeartbeatAck(
  text: string,
  ackMaxChars: number = DEFAULT_HEARTBEAT_ACK_MAX_CHARS,
): { ack: boolean; text: string } {
  if (typeof text !== "string") return { ack: false, text: "" };
  let rest = text.trim();
  let found = false;
  for (;;) {
    const next = rest.replace(ACK_AT_START, "").replace(ACK_AT_END, "").trim();
    if (next === rest) break;
    found = true;
    rest = next;
  }
  if (!found) return { ack: false, text };
  return { ack: codePointLength(rest) <= ackMaxChars, text: rest };
}

/**
 * True when a heartbeat reply is the acknowledgement and must be suppressed, by OpenClaw's
 * rule ({@link stripHeartbeatAck}): `HEARTBEAT_OK` at its start or end, with at most
 * `ackMaxChars` characters (default 300) besides. A reply without the token at an edge is
 * never an acknowledgement.
 *
 * @example
 * ```ts
 * isHeartbeatAck("  HEARTBEAT_OK\n"); // true
 * isHeartbeatAck("HEARTBEAT_OK: all quiet"); // true (short remainder)
 * isHeartbeatAck("Disk is 91% full."); // false
 * isHeartbeatAck("HEARTBEAT_OK, all quiet", 0); // false: strict, only the token alone
 * ```
 */
export function isHeartbeatAck(
  text: string,
  ackMaxChars: number = DEFAULT_HEARTBEAT_ACK_MAX_CHARS,
): boolean {
  return stripHeartbeatAck(text, ackMaxChars).ack;
}

/**
 * At most `maxChars` UTF-16 units of `text`, cut on a code point boundary: a surrogate pair
 * (an emoji, say) is never split into a lone half, which model APIs and JSON parsers refuse.
 *
 * @example
 * ```ts
 * heartbeatPreview("ok 😀", 4); // "ok " (not "ok \ud83d")
 * ```
 */
export function heartbeatPreview(text: string, maxChars = 200): string {
  if (text.length <= maxChars) return text;
  const cut = text.slice(0, Math.max(0, maxChars));
  return loneSurrogateIndex(cut) === cut.length - 1 ? cut.slice(0, -1) : cut;
}

function codePointLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * `HEARTBEAT.md` could not be used, so the beat did not run (no model call): it is larger
 * than `maxHeartbeatFileBytes` (`HEARTBEAT_FILE_TOO_LARGE`), or not valid UTF-8 and without a
 * UTF-16 byte order mark, e.g. saved as Latin-1 (`HEARTBEAT_FILE_NOT_UTF8`). Reported as the
 * beat's `error` outcome with this `code`; the next beat reads the file again.
 */
export class HeartbeatFileError extends BeamClawError {
  constructor(
    code: "HEARTBEAT_FILE_TOO_LARGE" | "HEARTBEAT_FILE_NOT_UTF8",
    message: string,
    readonly path: string,
    options?: BeamClawErrorOptions,
  ) {
    super(code, message, options);
  }
  static override isInstance(value: unknown): value is HeartbeatFileError {
    return (
      BeamClawError.isInstance(value) &&
      (value.code === "HEARTBEAT_FILE_TOO_LARGE" || value.code === "HEARTBEAT_FILE_NOT_UTF8")
    );
  }
}

/** What a heartbeat turn reports. `skipped` means it did not run (e.g. the session was busy). */
export interface HeartbeatTurnResult {
  status: "ok" | "error" | "skipped";
  text?: string;
  error?: string;
}

/** Runs one heartbeat turn in the agent's main session. */
export type HeartbeatTurn = (input: {
  agentId: string;
  sessionKey: string;
  prompt: string;
  signal: AbortSignal;
}) => Promise<HeartbeatTurnResult>;

/** What happened at one heartbeat. */
export type HeartbeatOutcome =
  | {
      type: "skipped";
      at: number;
      reason: "outside-active-hours" | "busy" | "empty-heartbeat-file";
    }
  | { type: "suppressed"; at: number; durationMs: number }
  | { type: "delivered"; at: number; durationMs: number; text: string }
  | {
      type: "error";
      at: number;
      durationMs: number;
      error: string;
      /** The reply, when it was the delivery that failed: kept so that it is not lost. */
      text?: string;
      /**
       * The code of a typed error: `HEARTBEAT_FILE_TOO_LARGE` or `HEARTBEAT_FILE_NOT_UTF8`
       * ({@link HeartbeatFileError}) when `HEARTBEAT.md` could not be used and the beat did
       * not run.
       */
      code?: string;
    };

/** Events of a {@link HeartbeatRunner}. */
export interface HeartbeatRunnerEvents {
  heartbeat: (outcome: HeartbeatOutcome) => void;
}

/** Counters of a {@link HeartbeatRunner}. */
export interface HeartbeatRunnerStats {
  ticks: number;
  runs: number;
  suppressed: number;
  delivered: number;
  skipped: number;
  errors: number;
  running: boolean;
  lastRunAt?: number;
  nextTickAt?: number;
}

/** Options of {@link HeartbeatRunner}. */
export interface HeartbeatRunnerOptions {
  agentId: string;
  /** Runs the turn; default: through `runtime`. One of the two is required. */
  runTurn?: HeartbeatTurn;
  /** An `AgentRuntime`; the turn is a message from `heartbeat` to the main session. */
  runtime?: Pick<AgentRuntime, "session">;
  /**
   * Default 30 min. The configuration's `heartbeat.everyMs` must be at least one minute (each
   * beat is a model call); here any finite number from 1 up is taken, for tests and embedders
   * that drive the runner on their own clock.
   */
  everyMs?: number;
  /**
   * Time limit of one turn, ms. A turn still running then has its signal aborted and is
   * reported as an `error` outcome (its late reply is dropped, never delivered), so that
   * the next tick can run. Default: no limit (a turn that never ends keeps every later tick
   * `busy`).
   */
  turnTimeoutMs?: number;
  /** Only run inside this daily window; ticks outside it are skipped. */
  activeHours?: ActiveHours;
  /** Default {@link DEFAULT_HEARTBEAT_PROMPT}. */
  prompt?: string;
  /**
   * Path of a `HEARTBEAT.md` checklist, read at every tick (UTF-8, or UTF-16 with a byte order
   * mark): its text is appended to the prompt. A missing file leaves the prompt alone; a file
   * with nothing but blank lines and headings skips the tick (no model call for an empty
   * checklist), unless `hasPendingEvents` says events wait for it.
   */
  heartbeatFile?: string;
  /**
   * Largest `heartbeatFile` read, bytes (default {@link DEFAULT_MAX_HEARTBEAT_FILE_BYTES}, 64
   * KiB). A larger file is not sent, not even in part: the beat is skipped and reported as an
   * `error` outcome with code `HEARTBEAT_FILE_TOO_LARGE`.
   */
  maxHeartbeatFileBytes?: number;
  /**
   * A reply with `HEARTBEAT_OK` at its start or end is suppressed when at most this many
   * characters are left besides (OpenClaw's rule, see {@link stripHeartbeatAck}); a longer
   * rest is delivered without the token. Default {@link DEFAULT_HEARTBEAT_ACK_MAX_CHARS}
   * (300); `0` suppresses only the token alone.
   */
  ackMaxChars?: number;
  /**
   * Whether events wait for the session's next beat (the gateway's wake lines, say): asked
   * when `heartbeatFile` is effectively empty, and when it answers `true` the beat runs with the prompt alone instead of being skipped, since the events
   * need the turn whatever the checklist says. Default: never (an empty checklist skips).
   */
  hasPendingEvents?: (sessionKey: string) => boolean | Promise<boolean>;
  /**
   * Receives every reply that is not an acknowledgement ({@link isHeartbeatAck}), without a
   * `HEARTBEAT_OK` at its edges (to a channel, a log, ...).
   */
  deliver?: (text: string, info: { agentId: string; sessionKey: string }) => void | Promise<void>;
  /** Default `agent:<agentId>:main`. */
  sessionKey?: string;
  /**
   * Default the system clock. Beats and `turnTimeoutMs` count elapsed time (the clock's
   * monotonic timers, {@link Clock.setMonotonicTimer}, when it has them): setting the wall
   * clock back or forward neither delays nor hastens the next beat. Active hours are read on
   * the wall clock at each beat.
   */
  clock?: Clock;
  name?: string;
}

type HeartbeatCall = { op: "run-now" };
type HeartbeatInfo =
  | { type: "tick" }
  | { type: "done"; controller: AbortController; outcome: HeartbeatOutcome };

/**
 * The periodic heartbeat turn of one agent: every `everyMs` (30 min by default) inside
 * `activeHours`, the agent gets the heartbeat prompt (plus `HEARTBEAT.md`) in its main
 * session. A reply with `HEARTBEAT_OK` at its start or end and at most `ackMaxChars` (300)
 * characters besides is suppressed (OpenClaw's rule, {@link stripHeartbeatAck}); any other
 * reply is handed to `deliver`. Ticks that come while the previous turn still runs
 * are skipped. One timer, cleared on stop.
 *
 * @example
 * ```ts
 * const heartbeat = await new HeartbeatRunner({
 *   agentId: "main",
 *   runtime,
 *   activeHours: { start: "08:00", end: "22:00", timezone: "Europe/Berlin" },
 *   heartbeatFile: "./HEARTBEAT.md",
 *   deliver: (text) => discord.send(ownerChannel, text),
 * }).start();
 * heartbeat.events.on("heartbeat", (outcome) => console.log(outcome.type));
 * await heartbeat.stop();
 * ```
 */
export class HeartbeatRunner extends Actor<HeartbeatCall, HeartbeatOutcome, never, HeartbeatInfo> {
  readonly agentId: string;
  readonly sessionKey: string;
  /**
   * `heartbeat` is emitted after every tick and every `runNow` (before the `runNow` caller
   * gets the outcome). A listener may call the runner, `runNow()` included.
   */
  readonly events = new EventEmitter<HeartbeatRunnerEvents>();
  readonly #runTurn: HeartbeatTurn;
  readonly #everyMs: number;
  readonly #turnTimeoutMs: number | undefined;
  readonly #inWindow: ((epochMs: number) => boolean) | undefined;
  readonly #prompt: string;
  readonly #heartbeatFile: string | undefined;
  readonly #maxFileBytes: number;
  readonly #ackMaxChars: number;
  readonly #hasPendingEvents: HeartbeatRunnerOptions["hasPendingEvents"];
  readonly #deliver: HeartbeatRunnerOptions["deliver"];
  readonly #clock: Clock;
  /** The clock's elapsed time, which beats and the turn timeout are counted on. */
  readonly #elapsed: ElapsedTime;
  #timer: TimerHandle | undefined;
  /** The `turnTimeoutMs` timer of the turn in progress. */
  #turnTimer: TimerHandle | undefined;
  /** When the next tick is due, in `#elapsed` time. */
  #nextTick: number | undefined;
  #controller: AbortController | null = null;
  /** The `runNow` callers waiting for the turn in progress. */
  #waiters: Array<(outcome: HeartbeatOutcome) => void> = [];
  readonly #stats = { ticks: 0, runs: 0, suppressed: 0, delivered: 0, skipped: 0, errors: 0 };
  #lastRunAt: number | undefined;

  constructor(options: HeartbeatRunnerOptions) {
    const agentId = normalizeAgentId(options?.agentId);
    super({ name: options.name ?? `heartbeat:${agentId}` });
    this.agentId = agentId;
    this.sessionKey = options.sessionKey ?? agentSessionKey(agentId, "main");
    if (options.runTurn !== undefined) this.#runTurn = options.runTurn;
    else if (options.runtime !== undefined) this.#runTurn = runtimeTurn(options.runtime);
    else throw new InvalidArgumentError("HeartbeatRunner needs runTurn or runtime");
    this.#everyMs = options.everyMs ?? DEFAULT_HEARTBEAT_EVERY_MS;
    if (!(this.#everyMs >= 1) || !Number.isFinite(this.#everyMs)) {
      throw new InvalidArgumentError(
        `everyMs must be a finite number >= 1, got ${options.everyMs}`,
      );
    }
    this.#maxFileBytes = options.maxHeartbeatFileBytes ?? DEFAULT_MAX_HEARTBEAT_FILE_BYTES;
    if (!Number.isSafeInteger(this.#maxFileBytes) || this.#maxFileBytes < 1) {
      throw new InvalidArgumentError(
        `maxHeartbeatFileBytes must be a whole number >= 1, got ${String(options.maxHeartbeatFileBytes)}`,
      );
    }
    this.#ackMaxChars = options.ackMaxChars ?? DEFAULT_HEARTBEAT_ACK_MAX_CHARS;
    if (!Number.isSafeInteger(this.#ackMaxChars) || this.#ackMaxChars < 0) {
      throw new InvalidArgumentError(
        `ackMaxChars must be a whole number >= 0, got ${String(options.ackMaxChars)}`,
      );
    }
    this.#turnTimeoutMs = options.turnTimeoutMs;
    if (
      this.#turnTimeoutMs !== undefined &&
      (typeof this.#turnTimeoutMs !== "number" ||
        !(this.#turnTimeoutMs >= 1) ||
        !Number.isFinite(this.#turnTimeoutMs))
    ) {
      throw new InvalidArgumentError(
        `turnTimeoutMs must be a finite number >= 1, got ${String(options.turnTimeoutMs)}`,
      );
    }
    this.#inWindow =
      options.activeHours === undefined ? undefined : compileActiveHours(options.activeHours);
    this.#prompt = options.prompt ?? DEFAULT_HEARTBEAT_PROMPT;
    if (typeof this.#prompt !== "string" || this.#prompt.trim() === "") {
      throw new InvalidArgumentError("the heartbeat prompt must be a non-empty string");
    }
    this.#heartbeatFile = options.heartbeatFile;
    this.#hasPendingEvents = options.hasPendingEvents;
    this.#deliver = options.deliver;
    this.#clock = options.clock ?? systemClock;
    this.#elapsed = elapsedTime(this.#clock);
    this.monitor(() => {
      this.#clearTimer();
      this.#clearTurnTimer();
      this.#controller?.abort();
    });
  }

  /** Counters and the next tick (`nextTickAt`: the wall time it comes at, as of now). */
  stats(): HeartbeatRunnerStats {
    const next = this.#nextTick;
    return {
      ...this.#stats,
      running: this.#controller !== null,
      ...(this.#lastRunAt === undefined ? {} : { lastRunAt: this.#lastRunAt }),
      ...(next === undefined
        ? {}
        : { nextTickAt: this.#clock.now() + Math.max(0, next - this.#elapsed.now()) }),
    };
  }

  /**
   * Runs a heartbeat now, inside active hours or not, and resolves with what happened
   * (`skipped` with reason `busy` if one is already running). The regular ticks go on.
   */
  runNow(): Promise<HeartbeatOutcome> {
    return this.call({ op: "run-now" }, { timeoutMs: Infinity });
  }

  protected override init(): void {
    this.#schedule(this.#elapsed.now() + this.#everyMs);
  }

  protected override handleCall(_message: HeartbeatCall, from: ReplyTo<HeartbeatOutcome>): NoReply {
    // Replied to when the turn ends: the mailbox stays free for the turn's own completion.
    this.#begin(this.#clock.now(), (outcome) => from.reply(outcome));
    return noReply;
  }

  protected override handleInfo(message: HeartbeatInfo): void {
    if (message.type === "tick") {
      const now = this.#clock.now();
      const elapsed = this.#elapsed.now();
      this.#stats.ticks++;
      // The next tick keeps the phase of the first; ticks missed while the loop was busy go.
      let next = (this.#nextTick ?? elapsed) + this.#everyMs;
      if (next <= elapsed) next = elapsed + this.#everyMs - ((elapsed - next) % this.#everyMs);
      this.#schedule(next);
      this.#begin(now, undefined);
      return;
    }
    // The late end of a turn already reported as timed out.
    if (message.controller !== this.#controller) return;
    this.#clearTurnTimer();
    this.#controller = null;
    const waiters = this.#waiters;
    this.#waiters = [];
    this.#record(message.outcome);
    for (const resolve of waiters) resolve(message.outcome);
  }

  protected override terminate(): void {
    this.#clearTimer();
    this.#clearTurnTimer();
    this.#controller?.abort();
  }

  /** Starts a turn; `requested` is the `runNow` caller (which ignores active hours). */
  #begin(now: number, requested: ((outcome: HeartbeatOutcome) => void) | undefined): void {
    let skip: HeartbeatOutcome | undefined;
    if (this.#controller !== null) skip = { type: "skipped", at: now, reason: "busy" };
    else if (requested === undefined && this.#inWindow !== undefined && !this.#inWindow(now)) {
      skip = { type: "skipped", at: now, reason: "outside-active-hours" };
    }
    if (skip !== undefined) {
      this.#record(skip);
      requested?.(skip);
      return;
    }
    if (requested !== undefined) this.#waiters.push(requested);
    const controller = new AbortController();
    this.#controller = controller;
    const limit = this.#turnTimeoutMs;
    if (limit !== undefined) {
      this.#turnTimer = this.#elapsed.setTimer(() => {
        this.#turnTimer = undefined;
        const error = `the heartbeat turn took longer than ${limit} ms`;
        controller.abort(new TimeoutError(error, limit));
        const durationMs = Math.max(0, this.#clock.now() - now);
        this.#finished(controller, { type: "error", at: now, durationMs, error });
      }, limit);
    }
    void this.#turn(now, controller.signal).then((outcome) => this.#finished(controller, outcome));
  }

  /** Tells the mailbox that the turn of `controller` ended (or timed out) with `outcome`. */
  #finished(controller: AbortController, outcome: HeartbeatOutcome): void {
    try {
      if (this.alive) this.send({ type: "done", controller, outcome });
    } catch (error) {
      // A full mailbox (overloaded with runNow calls): reported, never thrown from a timer.
      process.emitWarning(`a heartbeat outcome was lost: ${describe(error)}`, "BeamClawWarning");
    }
  }

  /** One heartbeat turn, outside the mailbox; never rejects. */
  async #turn(startedAt: number, signal: AbortSignal): Promise<HeartbeatOutcome> {
    const took = () => Math.max(0, this.#clock.now() - startedAt);
    try {
      const prompt = await this.#composePrompt();
      if (prompt === undefined) {
        return { type: "skipped", at: startedAt, reason: "empty-heartbeat-file" };
      }
      // Stopped (or timed out) while HEARTBEAT.md or hasPendingEvents was read: no turn.
      if (signal.aborted) return stoppedOutcome(startedAt, took());
      this.#stats.runs++;
      this.#lastRunAt = startedAt;
      const result = await this.#runTurn({
        agentId: this.agentId,
        sessionKey: this.sessionKey,
        prompt,
        signal,
      });
      if (result.status === "skipped") return { type: "skipped", at: startedAt, reason: "busy" };
      if (result.status === "error") {
        return {
          type: "error",
          at: startedAt,
          durationMs: took(),
          error: result.error ?? "the heartbeat turn failed",
        };
      }
      const reply = stripHeartbeatAck(result.text ?? "", this.#ackMaxChars);
      const text = reply.text;
      if (reply.ack || text.trim() === "") {
        return { type: "suppressed", at: startedAt, durationMs: took() };
      }
      // Stopped (or timed out) while the turn ran, which did not heed its signal: nothing is
      // delivered after stop() or after the beat was reported as timed out.
      if (signal.aborted) return stoppedOutcome(startedAt, took(), text);
      try {
        await this.#deliver?.(text, { agentId: this.agentId, sessionKey: this.sessionKey });
      } catch (error) {
        return { type: "error", at: startedAt, durationMs: took(), error: describe(error), text };
      }
      return { type: "delivered", at: startedAt, durationMs: took(), text };
    } catch (error) {
      // A HEARTBEAT.md that cannot be used: reported with its code, the beat not run.
      const code = HeartbeatFileError.isInstance(error) ? error.code : undefined;
      return {
        type: "error",
        at: startedAt,
        durationMs: took(),
        error: describe(error),
        ...(code === undefined ? {} : { code }),
      };
    }
  }

  /**
   * The prompt with HEARTBEAT.md appended; `undefined` when the file is effectively empty
   * and no events wait for the beat (with events waiting, the prompt alone).
   */
  async #composePrompt(): Promise<string | undefined> {
    if (this.#heartbeatFile === undefined) return this.#prompt;
    const file = this.#heartbeatFile;
    let bytes: Buffer;
    try {
      bytes = await readAtMost(file, this.#maxFileBytes + 1);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return this.#prompt;
      throw error;
    }
    if (bytes.length > this.#maxFileBytes) {
      throw new HeartbeatFileError(
        "HEARTBEAT_FILE_TOO_LARGE",
        `${file} is larger than maxHeartbeatFileBytes (${this.#maxFileBytes} bytes): the beat is skipped; shorten the checklist or raise the limit`,
        file,
      );
    }
    let text: string;
    try {
      text = decodeText(bytes);
    } catch (error) {
      throw new HeartbeatFileError(
        "HEARTBEAT_FILE_NOT_UTF8",
        `${file} is not valid UTF-8 (saved as Latin-1 or another legacy encoding?): the beat is skipped; save it as UTF-8`,
        file,
        { cause: error },
      );
    }
    const meaningful = text.split(/\r?\n/).some((line) => {
      const trimmed = line.trim();
      return trimmed !== "" && !/^#+(\s|$)/.test(trimmed);
    });
    if (!meaningful) {
      return (await this.#hasPendingEvents?.(this.sessionKey)) === true ? this.#prompt : undefined;
    }
    return `${this.#prompt}\n\nHEARTBEAT.md:\n${text.trim()}`;
  }

  #record(outcome: HeartbeatOutcome): void {
    if (outcome.type === "skipped") this.#stats.skipped++;
    else if (outcome.type === "suppressed") this.#stats.suppressed++;
    else if (outcome.type === "delivered") this.#stats.delivered++;
    else this.#stats.errors++;
    // Told from a microtask, off the handler's stack (before a `runNow` caller hears of it): a
    // listener may call the runner, e.g. `runNow()`, which from the handler's own stack would
    // be refused as a call to self (`CALLING_SELF`).
    queueMicrotask(() => {
      try {
        this.events.emit("heartbeat", outcome);
      } catch (error) {
        // A listener's bug must not stop the heartbeat.
        process.emitWarning(`a heartbeat listener threw: ${describe(error)}`, "BeamClawWarning");
      }
    });
  }

  /** Arms the tick timer for `at`, in `#elapsed` time. */
  #schedule(at: number): void {
    this.#clearTimer();
    this.#nextTick = at;
    this.#timer = this.#elapsed.setTimer(
      () => {
        this.#timer = undefined;
        try {
          this.send({ type: "tick" });
        } catch {
          // A full mailbox drops this tick; re-arm so the heartbeat is not lost for good.
          this.#schedule(this.#elapsed.now() + this.#everyMs);
        }
      },
      Math.max(0, at - this.#elapsed.now()),
    );
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  #clearTurnTimer(): void {
    if (this.#turnTimer !== undefined) this.#clock.clearTimer(this.#turnTimer);
    this.#turnTimer = undefined;
  }
}

/**
 * The text of a file: UTF-16 when it starts with a UTF-16 byte order mark (as Windows editors
 * save "Unicode" text), otherwise UTF-8 (a UTF-8 byte order mark is dropped). Throws a
 * `TypeError` on bytes that are not valid in that encoding (never replacement characters).
 */
function decodeText(bytes: Buffer): string {
  let encoding = "utf-8";
  if (bytes[0] === 0xff && bytes[1] === 0xfe) encoding = "utf-16le";
  else if (bytes[0] === 0xfe && bytes[1] === 0xff) encoding = "utf-16be";
  return new TextDecoder(encoding, { fatal: true }).decode(bytes);
}

/** The first `limit` bytes of a file at most (all of it when it is shorter). */
async function readAtMost(file: string, limit: number): Promise<Buffer> {
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.alloc(limit);
    let length = 0;
    while (length < limit) {
      const { bytesRead } = await handle.read(buffer, length, limit - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** A turn whose signal aborted (by stop() or `turnTimeoutMs`): its outcome is not recorded. */
function stoppedOutcome(at: number, durationMs: number, text?: string): HeartbeatOutcome {
  const error = "the heartbeat turn was cut short";
  return text === undefined
    ? { type: "error", at, durationMs, error }
    : { type: "error", at, durationMs, error, text };
}

/** A heartbeat turn through an `AgentRuntime`: skipped while the session has a run going. */
function runtimeTurn(runtime: Pick<AgentRuntime, "session">): HeartbeatTurn {
  return async ({ sessionKey, prompt, signal }) => {
    const session = runtime.session(sessionKey);
    const info = await session.info();
    if (info.activeRunId !== undefined) return { status: "skipped" };
    const handle = await session.send(
      { text: prompt, sender: "heartbeat" },
      { signal, idempotencyKey: `heartbeat:${randomUUID()}` },
    );
    const result = await handle.result;
    if (result.status === "completed") return { status: "ok", text: result.text };
    return {
      status: "error",
      error: result.error?.message ?? `the heartbeat run ended with status ${result.status}`,
    };
  };
}
