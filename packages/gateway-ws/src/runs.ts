/**
 * Follows every run of the runtime (through `events:global`) and turns its events into the
 * protocol's `chat` and `agent` events; keeps the outcome of finished runs for `agent.wait`.
 *
 * A run started by `chat.send` or `agent` is shown under the client's id (its idempotency
 * key), as OpenClaw clients expect. The runtime assigns its own run id only when the message
 * is accepted, and the run may already be publishing by then; so while a send to a session is
 * in flight, events of new runs of that session are held back until the send says which run
 * is its own.
 */
import type { JsonObject, RunEvent, RunResult } from "@beamclaw/core";
import { assistantText, type ChatMessage, finalAssistantMessage } from "./chat-format.js";
import { recordMessages } from "./methods/session-helpers.js";

/** How a finished run ended, as `agent.wait` reports it. */
export interface RunSnapshot {
  runId: string;
  sessionKey: string;
  agentId?: string;
  status: "ok" | "error" | "aborted";
  startedAt: number;
  endedAt: number;
  stopReason: string;
  text: string;
  error?: { code: string; message: string };
  result?: RunResult;
}

/** A run being followed. */
export interface TrackedRun {
  coreRunId: string;
  runId: string;
  sessionKey: string;
  agentId?: string;
  startedAt: number;
  text: string;
  resetNext: boolean;
  chatSeq: number;
  agentSeq: number;
  done: boolean;
  /** Text deltas held back by {@link RunTrackerOptions.coalesceMs}, not yet sent. */
  pendingText?: string;
  /** Whether the held text replaces what came before it (the first delta after a reset). */
  pendingReplace?: boolean;
  /** Sends the held text when the window closes. */
  flushTimer?: NodeJS.Timeout;
}

/** Options of a {@link RunTracker}. */
export interface RunTrackerOptions {
  /** The clock of snapshots and events. Default `Date.now`. */
  now?: () => number;
  /**
   * How long, in ms, a run's streamed text may be held back so that its deltas go out
   * together: the first delta opens a window of this length, every delta within it joins it,
   * and the joined text leaves as one `chat` delta and one `agent` `assistant` event when the
   * window closes or as soon as the run has any other event (a tool call, a reset, its end),
   * so the order of events never changes. 0 (the default): every delta is sent as it comes.
   */
  coalesceMs?: number;
}

/** Where the tracker sends what it produces. */
export interface RunTrackerSink {
  chat(payload: Record<string, unknown>): void;
  agent(payload: Record<string, unknown>): void;
  runStarted(run: TrackedRun): void;
  runEvent(run: TrackedRun, event: RunEvent): void;
  runEnded(run: TrackedRun, snapshot: RunSnapshot): void;
}

const FINISHED_KEPT = 1000;
const ALIASES_KEPT = 10_000;

/**
 * `agent.wait` and `exec.approval.waitDecision` calls one connection may have waiting at once
 * (together): each holds a timer or a listener on the connection until its run ends, its
 * approval is decided or its `timeoutMs` (up to 24.8 days) passes. One more is a retryable
 * `UNAVAILABLE` (`TOO_MANY_WAITS`).
 */
export const MAX_WAITS_PER_CONNECTION = 1_000;

/** Whether a message published on `events:global` is a run event. */
export function isRunEvent(value: unknown): value is RunEvent {
  const v = value as { type?: unknown; runId?: unknown; sessionKey?: unknown } | null;
  return (
    typeof v === "object" &&
    v !== null &&
    typeof v.type === "string" &&
    typeof v.runId === "string" &&
    typeof v.sessionKey === "string"
  );
}

/** Classifies a failed run for the `chat` error event. */
function errorKind(error: { code: string; message: string } | undefined) {
  const text = `${error?.code ?? ""} ${error?.message ?? ""}`.toLowerCase();
  if (text.includes("rate_limit") || text.includes("rate limit") || text.includes("429"))
    return "rate_limit";
  if (text.includes("timeout") || text.includes("timed out")) return "timeout";
  if (text.includes("context") && text.includes("length")) return "context_length";
  return "unknown";
}

/** Which provider/model a failure names (`all providers failed: local/llama3#1: ...`). */
function errorDetail(error: { code: string; message: string } | undefined) {
  const match = /failed: ([a-z0-9][a-z0-9_-]*)\/(\S+?)#\d+/.exec(error?.message ?? "");
  if (match === null) return undefined;
  return {
    provider: match[1]!,
    model: match[2]!,
    providerErrorMessagePreview: (error?.message ?? "").slice(0, 300),
  };
}

/**
 * The most of a tool result an `agent` event carries, in UTF-16 units of its JSON. A bigger
 * result (a tool that floods output) goes out as a preview: sent whole to every operator it
 * would exceed their outbound buffer limit and disconnect them all as slow consumers. The
 * whole result stays in the session's transcript.
 */
export const TOOL_RESULT_EVENT_MAX_CHARS = 64 * 1024;

function boundedToolResult(output: unknown): Record<string, unknown> {
  if (typeof output === "string" && output.length <= TOOL_RESULT_EVENT_MAX_CHARS) {
    return { result: output };
  }
  let text: string | undefined;
  try {
    text = typeof output === "string" ? output : JSON.stringify(output);
  } catch {
    text = undefined;
  }
  if (text === undefined || text.length <= TOOL_RESULT_EVENT_MAX_CHARS) return { result: output };
  return {
    result: text.slice(0, TOOL_RESULT_EVENT_MAX_CHARS),
    resultTruncated: true,
    resultChars: text.length,
  };
}

/** Maps the runtime's run events to protocol events; see the module comment. */
export class RunTracker {
  readonly #sink: RunTrackerSink;
  readonly #now: () => number;
  readonly #coalesceMs: number;
  readonly #runs = new Map<string, TrackedRun>();
  readonly #byDisplayId = new Map<string, TrackedRun>();
  readonly #aliases = new Map<string, string>();
  readonly #claims = new Map<string, number>();
  readonly #held = new Map<string, RunEvent[]>();
  readonly #finished = new Map<string, RunSnapshot>();
  readonly #waiters = new Map<string, Set<(snapshot: RunSnapshot) => void>>();
  /** Runtime ids of the runs `endSession` ended (the most recent ones). */
  readonly #endedHere = new Set<string>();

  constructor(sink: RunTrackerSink, options: RunTrackerOptions = {}) {
    const coalesceMs = options.coalesceMs ?? 0;
    if (!Number.isInteger(coalesceMs) || coalesceMs < 0) {
      throw new RangeError(`coalesceMs must be an integer of 0 or more, got ${String(coalesceMs)}`);
    }
    this.#sink = sink;
    this.#now = options.now ?? Date.now;
    this.#coalesceMs = coalesceMs;
  }

  /**
   * Forgets all but the `keep` most recent finished runs (memory pressure); `agent.wait` for a
   * forgotten run answers `timeout`. Returns how many snapshots were dropped.
   */
  trimFinished(keep: number): number {
    let dropped = 0;
    while (this.#finished.size > keep * 2) {
      const oldest = this.#finished.keys().next().value;
      if (oldest === undefined) break;
      this.#finished.delete(oldest);
      dropped++;
    }
    return dropped;
  }

  /** Feeds one message published on `events:global`; anything that is not a run event is ignored. */
  onGlobalEvent(message: unknown): void {
    if (!isRunEvent(message)) return;
    const event = message;
    const run = this.#runs.get(event.runId);
    if (run !== undefined) {
      this.#apply(run, event);
      return;
    }
    // A run ended here for its stopped session (`endSession`): nothing of it is shown again.
    if (this.#endedHere.has(event.runId)) return;
    const held = this.#held.get(event.runId);
    if (held !== undefined) {
      held.push(event);
      return;
    }
    if ((this.#claims.get(event.sessionKey) ?? 0) > 0) {
      this.#held.set(event.runId, [event]);
      return;
    }
    this.#apply(this.#start(event.runId, event.sessionKey), event);
  }

  /**
   * Announces a send to `sessionKey` that is about to happen. Call `settle(coreRunId)` with the
   * run it joined (or `settle(undefined)` if it failed) once the send resolves.
   */
  claim(sessionKey: string, displayRunId: string): { settle(coreRunId: string | undefined): void } {
    this.#claims.set(sessionKey, (this.#claims.get(sessionKey) ?? 0) + 1);
    let settled = false;
    return {
      settle: (coreRunId) => {
        if (settled) return;
        settled = true;
        const left = (this.#claims.get(sessionKey) ?? 1) - 1;
        if (left <= 0) this.#claims.delete(sessionKey);
        else this.#claims.set(sessionKey, left);
        if (
          coreRunId !== undefined &&
          !this.#runs.has(coreRunId) &&
          !this.#finished.has(coreRunId)
        ) {
          this.#aliases.set(coreRunId, displayRunId);
          // An alias whose run never starts (a message dropped before running) must not pile up.
          if (this.#aliases.size > ALIASES_KEPT) {
            const oldest = this.#aliases.keys().next().value;
            if (oldest !== undefined) this.#aliases.delete(oldest);
          }
        }
        this.#release(sessionKey);
      },
    };
  }

  /** The run shown as `runId` (a client id or the runtime's id), finished or not. */
  find(runId: string): TrackedRun | undefined {
    return this.#byDisplayId.get(runId) ?? this.#runs.get(runId);
  }

  /**
   * The runtime's id of a run a send accepted as `runId` that has not started yet (queued
   * behind the session's active run), or `undefined`.
   */
  queuedCoreId(runId: string): string | undefined {
    for (const [coreRunId, displayRunId] of this.#aliases) {
      if (displayRunId === runId) return coreRunId;
    }
    return undefined;
  }

  /** The outcome of a finished run, by either id. */
  finished(runId: string): RunSnapshot | undefined {
    return this.#finished.get(runId);
  }

  /** Runs still going, optionally of one session. */
  active(sessionKey?: string): TrackedRun[] {
    return [...this.#runs.values()].filter(
      (r) => !r.done && (sessionKey === undefined || r.sessionKey === sessionKey),
    );
  }

  /**
   * The runtime's id of the run a client knows as `runId` (running, or among the last
   * finished ones); `runId` itself when it is not known here (it may be the runtime's own).
   */
  coreId(runId: string): string {
    return (
      this.#byDisplayId.get(runId)?.coreRunId ?? this.#finished.get(runId)?.result?.runId ?? runId
    );
  }

  /** The display id a client will see for a runtime run id. */
  displayId(coreRunId: string): string {
    return (
      this.#runs.get(coreRunId)?.runId ??
      this.#aliases.get(coreRunId) ??
      this.#finished.get(coreRunId)?.runId ??
      coreRunId
    );
  }

  /**
   * Waits until the run ends (resolves with its snapshot) or `timeoutMs` passes (resolves
   * `undefined`). A run that already ended resolves at once.
   */
  wait(runId: string, timeoutMs: number, signal?: AbortSignal): Promise<RunSnapshot | undefined> {
    const done = this.#finished.get(runId);
    if (done !== undefined) return Promise.resolve(done);
    return new Promise((resolve) => {
      let waiters = this.#waiters.get(runId);
      if (waiters === undefined) {
        waiters = new Set();
        this.#waiters.set(runId, waiters);
      }
      const finish = (snapshot: RunSnapshot | undefined) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        waiters!.delete(onEnd);
        if (waiters!.size === 0) this.#waiters.delete(runId);
        resolve(snapshot);
      };
      const onEnd = (snapshot: RunSnapshot) => finish(snapshot);
      const onAbort = () => finish(undefined);
      const timer = setTimeout(() => finish(undefined), Math.max(0, timeoutMs));
      waiters.add(onEnd);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Ends, as aborted with `error`, the runs of `sessionKey` still going here, for a session
   * that stopped without ending them (deleted while a run was active): their clients get the
   * `chat` `aborted` and `agent.wait` the outcome, instead of a run that never ends. Returns
   * the ids of the runs ended.
   */
  endSession(sessionKey: string, error: { code: string; message: string }): string[] {
    const ended: string[] = [];
    for (const run of this.active(sessionKey)) {
      const result: RunResult = {
        runId: run.coreRunId,
        sessionKey,
        status: "aborted",
        text: run.text,
        messages: [],
        steps: 0,
        usage: { inputTokens: 0, outputTokens: 0 },
        costUsd: 0,
        error,
      };
      this.#apply(run, { type: "run-end", runId: run.coreRunId, sessionKey, result });
      this.#endedHere.add(run.coreRunId);
      if (this.#endedHere.size > FINISHED_KEPT) {
        const oldest = this.#endedHere.values().next().value;
        if (oldest !== undefined) this.#endedHere.delete(oldest);
      }
      ended.push(run.runId);
    }
    return ended;
  }

  /** Ends every wait and drops held text (the gateway is stopping). */
  close(): void {
    for (const run of this.#runs.values()) {
      clearTimeout(run.flushTimer);
      run.flushTimer = undefined;
      run.pendingText = undefined;
    }
    for (const waiters of this.#waiters.values()) {
      for (const waiter of [...waiters])
        waiter({
          runId: "",
          sessionKey: "",
          status: "aborted",
          startedAt: 0,
          endedAt: this.#now(),
          stopReason: "shutdown",
          text: "",
        });
    }
    this.#waiters.clear();
  }

  #release(sessionKey: string): void {
    const pending = (this.#claims.get(sessionKey) ?? 0) > 0;
    for (const [coreRunId, events] of [...this.#held]) {
      if (events[0]?.sessionKey !== sessionKey) continue;
      if (pending && !this.#aliases.has(coreRunId)) continue;
      this.#held.delete(coreRunId);
      const run = this.#start(coreRunId, sessionKey);
      for (const event of events) this.#apply(run, event);
    }
  }

  #start(coreRunId: string, sessionKey: string): TrackedRun {
    const runId = this.#aliases.get(coreRunId) ?? coreRunId;
    this.#aliases.delete(coreRunId);
    const run: TrackedRun = {
      coreRunId,
      runId,
      sessionKey,
      startedAt: this.#now(),
      text: "",
      resetNext: false,
      chatSeq: 0,
      agentSeq: 0,
      done: false,
    };
    this.#runs.set(coreRunId, run);
    this.#byDisplayId.set(runId, run);
    return run;
  }

  #agent(run: TrackedRun, stream: string, data: Record<string, unknown>): void {
    this.#sink.agent({
      runId: run.runId,
      seq: ++run.agentSeq,
      stream,
      ts: this.#now(),
      data: { sessionKey: run.sessionKey, ...data },
    });
  }

  #chat(run: TrackedRun, payload: Record<string, unknown>): void {
    this.#sink.chat({
      runId: run.runId,
      sessionKey: run.sessionKey,
      ...(run.agentId === undefined ? {} : { agentId: run.agentId }),
      seq: ++run.chatSeq,
      ...payload,
    });
  }

  #apply(run: TrackedRun, event: RunEvent): void {
    if (run.done) return;
    // Held text goes out before anything else of the run, so that the order never changes.
    if (run.pendingText !== undefined && event.type !== "text-delta") this.#flush(run);
    switch (event.type) {
      case "run-start":
        run.agentId = event.agentId;
        run.startedAt = event.at;
        this.#sink.runStarted(run);
        this.#agent(run, "lifecycle", {
          phase: "start",
          agentId: event.agentId,
          startedAt: event.at,
        });
        break;
      case "text-delta": {
        const replace = run.resetNext;
        run.resetNext = false;
        run.text = replace ? event.text : run.text + event.text;
        if (this.#coalesceMs === 0) {
          this.#sendDelta(run, event.text, replace);
        } else if (run.pendingText === undefined) {
          run.pendingText = event.text;
          run.pendingReplace = replace;
          run.flushTimer = setTimeout(() => this.#flush(run), this.#coalesceMs);
        } else {
          run.pendingText += event.text;
        }
        break;
      }
      case "text-reset":
        run.text = "";
        run.resetNext = true;
        this.#agent(run, "assistant", { reset: true, reason: event.reason });
        break;
      case "thinking-delta":
        this.#agent(run, "thinking", { delta: event.text });
        break;
      case "tool-call":
        run.resetNext = true;
        this.#agent(run, "tool", {
          phase: "start",
          toolCallId: event.toolCallId,
          name: event.toolName,
          args: event.input,
        });
        break;
      case "tool-result":
        this.#agent(run, "tool", {
          phase: "result",
          toolCallId: event.toolCallId,
          name: event.toolName,
          ...boundedToolResult(event.output),
          isError: event.isError,
        });
        break;
      case "tool-approval-request":
        this.#agent(run, "approval", {
          phase: "requested",
          requestId: event.requestId,
          toolCallId: event.toolCallId,
          name: event.toolName,
          expiresAt: event.expiresAt,
        });
        break;
      case "steer":
        this.#agent(run, "input", { phase: "steer", text: event.input.text });
        break;
      case "usage":
        this.#agent(run, "usage", {
          provider: event.provider,
          model: event.model,
          usage: event.usage,
          costUsd: event.costUsd,
        });
        break;
      case "error":
        this.#agent(run, "error", { code: event.error.code, message: event.error.message });
        break;
      case "run-end":
        this.#end(run, event.result);
        break;
    }
    this.#sink.runEvent(run, event);
  }

  #sendDelta(run: TrackedRun, text: string, replace: boolean): void {
    this.#chat(run, {
      state: "delta",
      deltaText: text,
      ...(replace ? { replace: true } : {}),
    });
    this.#agent(run, "assistant", { delta: text });
  }

  /** Sends the run's held text now. */
  #flush(run: TrackedRun): void {
    clearTimeout(run.flushTimer);
    run.flushTimer = undefined;
    const text = run.pendingText;
    run.pendingText = undefined;
    if (text === undefined || run.done) return;
    this.#sendDelta(run, text, run.pendingReplace === true);
  }

  #end(run: TrackedRun, result: RunResult): void {
    run.done = true;
    const endedAt = this.#now();
    const usage = {
      input: result.usage.inputTokens,
      output: result.usage.outputTokens,
      cacheRead: result.usage.cacheReadTokens ?? 0,
      cacheWrite: result.usage.cacheWriteTokens ?? 0,
      totalTokens: result.usage.inputTokens + result.usage.outputTokens,
      costUsd: result.costUsd,
    };
    const message: ChatMessage | undefined =
      savedFinalMessage(result) ??
      finalAssistantMessage(result.messages, endedAt) ??
      (result.text.length > 0 ? assistantText(result.text, endedAt) : undefined);
    let status: RunSnapshot["status"];
    let stopReason: string;
    if (result.status === "completed" || result.status === "max-steps") {
      status = "ok";
      stopReason = result.status === "completed" ? "stop" : "max_steps";
      this.#chat(run, {
        state: "final",
        ...(message === undefined ? {} : { message }),
        usage,
        stopReason,
      });
    } else if (result.status === "aborted") {
      status = "aborted";
      // Cut by its time limit (`timeoutMs`), or aborted by someone.
      stopReason = result.error?.code === "RUN_TIMEOUT" ? "timeout" : "aborted";
      const partial = run.text.length > 0 ? assistantText(run.text, endedAt) : undefined;
      this.#chat(run, {
        state: "aborted",
        ...(partial === undefined ? {} : { message: partial }),
        ...(result.error === undefined ? {} : { errorMessage: result.error.message }),
        stopReason,
      });
    } else {
      status = "error";
      stopReason = "error";
      const detail = errorDetail(result.error);
      this.#chat(run, {
        state: "error",
        errorMessage: result.error?.message ?? "the run failed",
        errorKind: errorKind(result.error),
        ...(detail === undefined ? {} : { errorDetail: detail }),
        usage,
        stopReason,
      });
    }
    this.#agent(run, "lifecycle", {
      phase: status === "ok" ? "end" : status === "aborted" ? "aborted" : "error",
      status: result.status,
      stopReason,
      endedAt,
      ...(result.error === undefined ? {} : { error: result.error }),
    });
    const snapshot: RunSnapshot = {
      runId: run.runId,
      sessionKey: run.sessionKey,
      ...(run.agentId === undefined ? {} : { agentId: run.agentId }),
      status,
      startedAt: run.startedAt,
      endedAt,
      stopReason,
      text: result.text,
      ...(result.error === undefined ? {} : { error: result.error }),
      result,
    };
    this.#runs.delete(run.coreRunId);
    this.#byDisplayId.delete(run.runId);
    this.#finished.set(run.runId, snapshot);
    if (run.coreRunId !== run.runId) this.#finished.set(run.coreRunId, snapshot);
    while (this.#finished.size > FINISHED_KEPT * 2) {
      const oldest = this.#finished.keys().next().value;
      if (oldest === undefined) break;
      this.#finished.delete(oldest);
    }
    for (const id of new Set([run.runId, run.coreRunId])) {
      for (const waiter of [...(this.#waiters.get(id) ?? [])]) waiter(snapshot);
    }
    this.#sink.runEnded(run, snapshot);
  }
}

/**
 * The run's last assistant message as `chat.history` shows it, with its message id
 * (`__openclaw: { id, seq }`), when the session said where it saved it (`finalMessage`): a
 * client can fork, rewind or quote the answer of a `final` event without reading the history.
 */
function savedFinalMessage(result: RunResult): ChatMessage | undefined {
  const saved = result.finalMessage;
  if (saved === undefined) return undefined;
  const message = result.messages.findLast((m) => m.role === "assistant");
  if (message === undefined) return undefined;
  const parts = recordMessages({
    seq: saved.seq,
    entry: { runId: result.runId, at: saved.at, message: message as unknown as JsonObject },
  });
  return parts.at(-1);
}
