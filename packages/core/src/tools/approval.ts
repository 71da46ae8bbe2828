import { randomUUID } from "node:crypto";
import { AbortedError, BeamClawError, describe, InvalidArgumentError } from "../errors.js";
import type { JsonValue } from "../providers/types.js";
import { describeArg } from "../runtime/validate.js";
import type { RunEvent } from "../sessions/types.js";
import type { ApprovalRecord, ApprovalStore } from "../store/types.js";
import { currentTelemetryIdentity, emitTelemetry, traceTelemetry } from "../telemetry.js";

/**
 * - `off`: nothing is asked.
 * - `on-miss`: ask the first time; an `allow-always` answer is remembered for the session.
 * - `always`: ask every time, whatever was remembered.
 */
export type ApprovalMode = "off" | "on-miss" | "always";

/** An answer to an approval request. */
export type ApprovalDecision = "allow-once" | "allow-always" | "deny";

/** The longest delay a Node.js timer can hold. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The scope a client needs to answer approval requests. */
export const APPROVALS_SCOPE = "operator.approvals";

/** Options of {@link ApprovalGate}. */
export interface ApprovalGateOptions {
  /** Default `on-miss`. */
  mode?: ApprovalMode;
  /** How long a request waits for an answer, in ms: > 0 and at most 2^31-1. Default 120 000. */
  timeoutMs?: number;
  /** What a request that times out becomes. Default `deny`. */
  defaultDecision?: ApprovalDecision;
  /** Where `allow-always` decisions are remembered per session. */
  store: ApprovalStore;
  now?: () => number;
}

/** What is being approved. */
export interface ApprovalSubject {
  sessionKey: string;
  runId: string;
  toolCallId: string;
  toolName: string;
  input: JsonValue;
  /** What the decision binds to: the tool name, or an exec command's canonical form. */
  key: string;
  /** A human-readable form of `key` for the person deciding. */
  display: string;
  /** Ask even when the gate's mode is `off` or `on-miss` remembered an allow. */
  force?: boolean;
}

/** A request waiting for an answer. */
export interface PendingApproval extends ApprovalSubject {
  requestId: string;
  /** Epoch ms. */
  expiresAt: number;
}

/** Who is answering, as the gateway or host authenticated them. */
export interface ApprovalAnswerer {
  /** Client scopes; answering needs `operator.approvals`. */
  scopes: readonly string[];
  /** For the audit trail. */
  id?: string;
}

/** An approval was denied (or timed out into a deny). */
export class ApprovalDeniedError extends BeamClawError {
  readonly toolName: string;
  readonly reason: "denied" | "timeout";
  constructor(toolName: string, reason: "denied" | "timeout") {
    super(
      "APPROVAL_DENIED",
      reason === "timeout"
        ? `approval for ${toolName} timed out and defaulted to deny`
        : `approval for ${toolName} was denied`,
    );
    this.toolName = toolName;
    this.reason = reason;
  }
  static override isInstance = (value: unknown): value is ApprovalDeniedError =>
    BeamClawError.isInstance(value) && value.code === "APPROVAL_DENIED";
}

/** A client without the `operator.approvals` scope tried to answer. */
export class ApprovalScopeError extends BeamClawError {
  constructor() {
    super("FORBIDDEN", `answering approvals needs the "${APPROVALS_SCOPE}" scope`);
  }
}

/**
 * A failed read or write of the approval store, reported (as `beamclaw:approval.store-error`
 * telemetry and a `BeamClawWarning` process warning) instead of failing the run. Also used by
 * the exec tool for its own `allow-always` memory. Internal: not exported from the package.
 */
export function storeFailed(
  subject: Pick<ApprovalSubject, "sessionKey" | "runId" | "toolName" | "key">,
  operation: "list" | "put",
  error: unknown,
): void {
  emitTelemetry("beamclaw:approval.store-error", () => ({
    session: subject.sessionKey,
    runId: subject.runId,
    tool: subject.toolName,
    key: subject.key,
    operation,
    error,
    tenant: currentTelemetryIdentity()?.tenant,
    agent: currentTelemetryIdentity()?.agent,
  }));
  process.emitWarning(
    operation === "put"
      ? `the approval store could not remember allow-always for ${subject.key} in ${subject.sessionKey} (the call was allowed; the next one asks again): ${describe(error)}`
      : `the approval store could not be read for ${subject.sessionKey} (the person is asked instead): ${describe(error)}`,
    "BeamClawWarning",
  );
}

interface Waiter extends PendingApproval {
  resolve(decision: ApprovalDecision): void;
  timer: NodeJS.Timeout;
}

/**
 * Decides whether a tool call may run. Requests are published as `tool-approval-request`
 * run events (through `emit`), so any client — gateway, channel, host code — can answer with
 * {@link ApprovalGate.answer}; answers from a client without the `operator.approvals` scope
 * are refused. An unanswered request becomes the default decision (deny) after the timeout.
 *
 * @example
 * ```ts
 * const gate = new ApprovalGate({ store: store.approvals, mode: "on-miss" });
 * runtime.pubsub.subscribe("events:global", (event) => {
 *   if (event.type === "tool-approval-request") {
 *     gate.answer(event.requestId, "allow-once", { scopes: ["operator.approvals"] });
 *   }
 * });
 * ```
 */
export class ApprovalGate {
  #mode: ApprovalMode;
  #timeoutMs: number;
  #defaultDecision: ApprovalDecision;
  readonly #store: ApprovalStore;
  readonly #now: () => number;
  readonly #waiting = new Map<string, Waiter>();

  /** @throws InvalidArgumentError for a bad mode, timeout or default decision. */
  constructor(options: ApprovalGateOptions) {
    this.#mode = ApprovalGate.#checkMode(options.mode ?? "on-miss");
    if (!["off", "on-miss", "always"].includes(this.mode)) {
      throw new InvalidArgumentError(
        `approval mode must be off, on-miss or always, got "${this.mode}"`,
      );
    }
    this.#timeoutMs = ApprovalGate.#checkTimeout(options.timeoutMs ?? 120_000);
    this.#defaultDecision = ApprovalGate.#checkDecision(options.defaultDecision ?? "deny");
    this.#store = options.store;
    this.#now = options.now ?? Date.now;
  }

  /** The ask mode. */
  get mode(): ApprovalMode {
    return this.#mode;
  }

  /** How long a request waits for an answer, in ms. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** What an unanswered request becomes. */
  get defaultDecision(): ApprovalDecision {
    return this.#defaultDecision;
  }

  /**
   * Changes mode, timeout or default decision while running (config hot reload). Pending
   * requests keep the timeout they were asked with.
   *
   * @throws InvalidArgumentError for a bad option; then nothing changes.
   */
  configure(options: {
    mode?: ApprovalMode;
    timeoutMs?: number;
    defaultDecision?: ApprovalDecision;
  }): void {
    // Checked together, so that a bad option changes nothing.
    const mode = options.mode === undefined ? this.#mode : ApprovalGate.#checkMode(options.mode);
    const timeoutMs =
      options.timeoutMs === undefined
        ? this.#timeoutMs
        : ApprovalGate.#checkTimeout(options.timeoutMs);
    const decision =
      options.defaultDecision === undefined
        ? this.#defaultDecision
        : ApprovalGate.#checkDecision(options.defaultDecision);
    this.#mode = mode;
    this.#timeoutMs = timeoutMs;
    this.#defaultDecision = decision;
  }

  /** A timer can wait at most 2^31-1 ms; a longer (or non-positive) wait would end at once. */
  static #checkTimeout(timeoutMs: number): number {
    if (
      typeof timeoutMs !== "number" ||
      !Number.isFinite(timeoutMs) ||
      timeoutMs <= 0 ||
      timeoutMs > MAX_TIMER_MS
    ) {
      throw new InvalidArgumentError(
        `approval timeoutMs must be a number of ms > 0 and <= ${MAX_TIMER_MS}, got ${describeArg(timeoutMs)}`,
      );
    }
    return timeoutMs;
  }

  static #checkDecision(decision: ApprovalDecision): ApprovalDecision {
    if (decision !== "allow-once" && decision !== "allow-always" && decision !== "deny") {
      throw new InvalidArgumentError(
        `approval defaultDecision must be allow-once, allow-always or deny, got ${describeArg(decision)}`,
      );
    }
    return decision;
  }

  static #checkMode(mode: ApprovalMode): ApprovalMode {
    if (!["off", "on-miss", "always"].includes(mode)) {
      throw new InvalidArgumentError(`approval mode must be off, on-miss or always, got "${mode}"`);
    }
    return mode;
  }

  /**
   * Resolves when `subject` may run (`allow-once` / `allow-always`); rejects with
   * `ApprovalDeniedError` when denied or timed out into a deny, or with the signal's reason
   * when aborted (`AbortedError`, with the reason as its `cause`, when the reason is not an
   * `Error`).
   *
   * A failing approval store never fails the call: a remembered decision that cannot be read
   * is asked again, and an `allow-always` that cannot be stored still allows this call (it is
   * then not remembered). Either failure is published as `beamclaw:approval.store-error`
   * telemetry and a `BeamClawWarning` process warning.
   */
  async check(
    subject: ApprovalSubject,
    emit: (event: RunEvent) => void,
    signal?: AbortSignal,
  ): Promise<ApprovalDecision> {
    const mode = subject.force ? "always" : this.mode;
    const started = this.#now();
    const report = (
      decision: ApprovalDecision,
      source: "answer" | "remembered" | "timeout" | "off",
    ) =>
      emitTelemetry("beamclaw:approval.decision", () => ({
        session: subject.sessionKey,
        runId: subject.runId,
        tool: subject.toolName,
        key: subject.key,
        decision,
        source,
        waitedMs: this.#now() - started,
        tenant: currentTelemetryIdentity()?.tenant,
        agent: currentTelemetryIdentity()?.agent,
      }));
    if (mode === "off") {
      report("allow-once", "off");
      return "allow-once";
    }
    if (mode === "on-miss") {
      let remembered: readonly ApprovalRecord[] = [];
      try {
        remembered = await this.#store.list(subject.sessionKey);
      } catch (error) {
        // What cannot be read is asked again: the person decides, and the run goes on.
        storeFailed(subject, "list", error);
      }
      const hit = Array.isArray(remembered)
        ? remembered.find((r) => r?.pattern === subject.key)
        : undefined;
      if (hit?.decision === "allow") {
        report("allow-always", "remembered");
        return "allow-always";
      }
    }
    let decision: ApprovalDecision;
    try {
      decision = await traceTelemetry(
        "beamclaw:approval.wait",
        () => ({
          tool: subject.toolName,
          toolCallId: subject.toolCallId,
          runId: subject.runId,
          key: subject.key,
          session: subject.sessionKey,
        }),
        () => this.#ask(subject, emit, signal),
        (answer, trace) => {
          trace.decision = answer;
        },
      );
    } catch (error) {
      if (ApprovalDeniedError.isInstance(error))
        report("deny", error.reason === "timeout" ? "timeout" : "answer");
      throw error;
    }
    report(decision, "answer");
    if (decision === "allow-always") {
      try {
        await this.#store.put(subject.sessionKey, {
          pattern: subject.key,
          decision: "allow",
          decidedAt: this.#now(),
        });
      } catch (error) {
        // The answer holds for this call; only its memory is lost (the next call asks again).
        storeFailed(subject, "put", error);
      }
    }
    return decision;
  }

  /**
   * Answers a pending request. Returns false if it is unknown or already answered.
   *
   * @throws ApprovalScopeError if `by` lacks the `operator.approvals` scope.
   * @throws InvalidArgumentError if `by.scopes` is not an array of strings, or `decision` is
   *   not a decision; the request stays pending.
   */
  answer(requestId: string, decision: ApprovalDecision, by: ApprovalAnswerer): boolean {
    // A scope string ("operator.approvals.viewer") would pass a substring `includes`.
    const scopes: unknown = by?.scopes;
    if (!Array.isArray(scopes) || !scopes.every((scope) => typeof scope === "string")) {
      throw new InvalidArgumentError(
        `an approval answerer's scopes must be an array of strings, got ${describeArg(scopes)}`,
      );
    }
    if (!by.scopes.includes(APPROVALS_SCOPE) && !by.scopes.includes("operator.admin")) {
      throw new ApprovalScopeError();
    }
    if (decision !== "allow-once" && decision !== "allow-always" && decision !== "deny") {
      throw new InvalidArgumentError(`unknown approval decision "${String(decision)}"`);
    }
    const waiter = this.#waiting.get(requestId);
    if (waiter === undefined) return false;
    waiter.resolve(decision);
    return true;
  }

  /** Requests waiting for an answer. */
  pending(sessionKey?: string): PendingApproval[] {
    const out: PendingApproval[] = [];
    for (const { resolve: _r, timer: _t, ...request } of this.#waiting.values()) {
      if (sessionKey === undefined || request.sessionKey === sessionKey) out.push(request);
    }
    return out;
  }

  /** Forgets remembered `allow-always` decisions of a session. */
  async forget(sessionKey: string, key?: string): Promise<number> {
    return this.#store.clear(sessionKey, key);
  }

  /** Denies every pending request (used when the runtime stops). */
  close(): void {
    for (const waiter of [...this.#waiting.values()]) waiter.resolve("deny");
  }

  #ask(
    subject: ApprovalSubject,
    emit: (event: RunEvent) => void,
    signal?: AbortSignal,
  ): Promise<ApprovalDecision> {
    const requestId = randomUUID();
    const expiresAt = this.#now() + this.timeoutMs;
    return new Promise<ApprovalDecision>((resolve, reject) => {
      const finish = (decision: ApprovalDecision | Error) => {
        if (!this.#waiting.delete(requestId)) return;
        clearTimeout(waiter.timer);
        signal?.removeEventListener("abort", onAbort);
        if (decision instanceof Error) reject(decision);
        else if (decision === "deny")
          reject(new ApprovalDeniedError(subject.toolName, timedOut ? "timeout" : "denied"));
        else resolve(decision);
      };
      let timedOut = false;
      // A reason that is not an error (`abort("gone")`) is carried by a typed one.
      const onAbort = () =>
        finish(
          signal?.reason instanceof Error
            ? signal.reason
            : new AbortedError(`approval for ${subject.toolName} was aborted`, {
                cause: signal?.reason,
              }),
        );
      const waiter: Waiter = {
        ...subject,
        requestId,
        expiresAt,
        resolve: finish,
        timer: setTimeout(() => {
          timedOut = true;
          finish(this.defaultDecision);
        }, this.timeoutMs),
      };
      this.#waiting.set(requestId, waiter);
      emitTelemetry("beamclaw:approval.request", () => ({
        session: subject.sessionKey,
        runId: subject.runId,
        tool: subject.toolName,
        key: subject.key,
        requestId,
        tenant: currentTelemetryIdentity()?.tenant,
        agent: currentTelemetryIdentity()?.agent,
      }));
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      // A listener that throws leaves nothing pending: the request fails with its error.
      try {
        emit({
          type: "tool-approval-request",
          runId: subject.runId,
          sessionKey: subject.sessionKey,
          requestId,
          toolCallId: subject.toolCallId,
          toolName: subject.toolName,
          input: subject.input,
          key: subject.key,
          display: subject.display,
          expiresAt,
        });
      } catch (error) {
        finish(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }
}
