import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { EventEmitter } from "eventemitter3";
import { type Clock, systemClock, type TimerHandle } from "../cron/clock.js";
import { describe, InvalidArgumentError, TimeoutError } from "../errors.js";
import { Actor, type NoReply, noReply, type ReplyTo } from "../runtime/actor.js";
import type { AgentRuntime } from "../sessions/runtime.js";
import { sessionKey as agentSessionKey, normalizeAgentId } from "../sessions/session-key.js";
import { type ActiveHours, compileActiveHours } from "./active-hours.js";

/** The reply that means "nothing needs attention"; it is never delivered. */
export const HEARTBEAT_OK = "HEARTBEAT_OK";

/** The default heartbeat prompt (OpenClaw's). */
export const DEFAULT_HEARTBEAT_PROMPT =
  "Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. Do not infer or repeat old tasks from prior chats. If nothing needs attention, reply HEARTBEAT_OK.";

/** Default interval between heartbeat turns: 30 minutes. */
export const DEFAULT_HEARTBEAT_EVERY_MS = 30 * 60 * 1000;

/**
 * True when a heartbeat reply is the acknowledgement and must be suppressed: exactly
 * `HEARTBEAT_OK`, ignoring whitespace around it (spaces, tabs, newlines). Anything else,
 * even `HEARTBEAT_OK.` or `HEARTBEAT_OK, all quiet`, is a real reply and is delivered.
 *
 * @example
 * ```ts
 * isHeartbeatAck("  HEARTBEAT_OK\n"); // true
 * isHeartbeatAck("HEARTBEAT_OK: disk is 91% full"); // false
 * ```
 */
export function isHeartbeatAck(text: string): boolean {
  return typeof text === "string" && text.trim() === HEARTBEAT_OK;
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
  /** Default 30 min. */
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
   * Whether events wait for the session's next beat (the gateway's wake lines, say): asked
   * when `heartbeatFile` is effectively empty, and when it answers `true` the beat runs with the prompt alone instead of being skipped, since the events
   * need the turn whatever the checklist says. Default: never (an empty checklist skips).
   */
  hasPendingEvents?: (sessionKey: string) => boolean | Promise<boolean>;
  /** Receives every reply that is not {@link HEARTBEAT_OK} (to a channel, a log, ...). */
  deliver?: (text: string, info: { agentId: string; sessionKey: string }) => void | Promise<void>;
  /** Default `agent:<agentId>:main`. */
  sessionKey?: string;
  /** Default the system clock. */
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
 * session. A reply of exactly `HEARTBEAT_OK` (whitespace around it ignored) is suppressed;
 * any other reply is handed to `deliver`. Ticks that come while the previous turn still runs
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
  readonly #hasPendingEvents: HeartbeatRunnerOptions["hasPendingEvents"];
  readonly #deliver: HeartbeatRunnerOptions["deliver"];
  readonly #clock: Clock;
  #timer: TimerHandle | undefined;
  /** The `turnTimeoutMs` timer of the turn in progress. */
  #turnTimer: TimerHandle | undefined;
  #nextTickAt: number | undefined;
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
    this.monitor(() => {
      this.#clearTimer();
      this.#clearTurnTimer();
      this.#controller?.abort();
    });
  }

  /** Counters and the next tick. */
  stats(): HeartbeatRunnerStats {
    return {
      ...this.#stats,
      running: this.#controller !== null,
      ...(this.#lastRunAt === undefined ? {} : { lastRunAt: this.#lastRunAt }),
      ...(this.#nextTickAt === undefined ? {} : { nextTickAt: this.#nextTickAt }),
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
    this.#schedule(this.#clock.now() + this.#everyMs);
  }

  protected override handleCall(_message: HeartbeatCall, from: ReplyTo<HeartbeatOutcome>): NoReply {
    // Replied to when the turn ends: the mailbox stays free for the turn's own completion.
    this.#begin(this.#clock.now(), (outcome) => from.reply(outcome));
    return noReply;
  }

  protected override handleInfo(message: HeartbeatInfo): void {
    if (message.type === "tick") {
      const now = this.#clock.now();
      this.#stats.ticks++;
      // The next tick keeps the phase of the first; ticks missed while the loop was busy go.
      let next = (this.#nextTickAt ?? now) + this.#everyMs;
      if (next <= now) next = now + this.#everyMs - ((now - next) % this.#everyMs);
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
      this.#turnTimer = this.#clock.setTimer(() => {
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
      const text = result.text ?? "";
      if (isHeartbeatAck(text) || text.trim() === "") {
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
      return { type: "error", at: startedAt, durationMs: took(), error: describe(error) };
    }
  }

  /**
   * The prompt with HEARTBEAT.md appended; `undefined` when the file is effectively empty
   * and no events wait for the beat (with events waiting, the prompt alone).
   */
  async #composePrompt(): Promise<string | undefined> {
    if (this.#heartbeatFile === undefined) return this.#prompt;
    let text: string;
    try {
      text = decodeText(await readFile(this.#heartbeatFile));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return this.#prompt;
      throw error;
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

  #schedule(at: number): void {
    this.#clearTimer();
    this.#nextTickAt = at;
    this.#timer = this.#clock.setTimer(
      () => {
        this.#timer = undefined;
        try {
          this.send({ type: "tick" });
        } catch {
          // A full mailbox drops this tick; re-arm so the heartbeat is not lost for good.
          this.#schedule(this.#clock.now() + this.#everyMs);
        }
      },
      Math.max(0, at - this.#clock.now()),
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
 * save "Unicode" text), otherwise UTF-8 (a UTF-8 byte order mark is dropped).
 */
function decodeText(bytes: Buffer): string {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return new TextDecoder("utf-16le").decode(bytes);
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return new TextDecoder("utf-16be").decode(bytes);
  return new TextDecoder("utf-8").decode(bytes);
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
