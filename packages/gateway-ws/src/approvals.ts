/**
 * Exec and tool approvals as the protocol shows them (`exec.approval.*`): requests raised by
 * the runtime's `ApprovalGate` (a tool call waiting for an operator), and requests raised by
 * clients with `exec.approval.request` (a node host asking before it runs a command). Both are
 * announced with `exec.approval.requested` and settled with `exec.approval.resolved`.
 */
import { randomUUID } from "node:crypto";
import type { ApprovalDecision, ApprovalGate, RunEvent } from "@beamclaw/core";
import { ErrorCodes } from "./protocol/constants.js";
import { GatewayError } from "./protocol/errors.js";

/** Decisions an operator may give. */
export const APPROVAL_DECISIONS: readonly ApprovalDecision[] = [
  "allow-once",
  "allow-always",
  "deny",
];

/** A pending or settled approval. */
export interface ApprovalEntry {
  id: string;
  kind: "tool" | "exec";
  request: Record<string, unknown>;
  sessionKey?: string;
  createdAtMs: number;
  expiresAtMs: number;
  /** `null` once it expired unanswered; `undefined` while pending. */
  decision?: ApprovalDecision | null;
  resolvedAtMs?: number;
  resolvedBy?: string;
}

/** The `exec.approval.request` / `waitDecision` result. */
export interface ApprovalOutcome {
  id: string;
  decision: ApprovalDecision | null;
  createdAtMs: number;
  expiresAtMs: number;
}

/** Where approvals announce themselves. */
export interface ApprovalsSink {
  requested(entry: ApprovalEntry): void;
  resolved(entry: ApprovalEntry): void;
}

const SETTLED_KEPT = 500;

/** Client-raised approvals that may wait at once, by default (more than people can answer). */
export const DEFAULT_MAX_PENDING_REQUESTS = 1_000;

/** Pending approvals from the runtime and from clients; see the module comment. */
export class ExecApprovals {
  readonly #gate: ApprovalGate | undefined;
  readonly #sink: ApprovalsSink;
  readonly #now: () => number;
  readonly #defaultTimeoutMs: number;
  readonly #maxPendingRequests: number;
  /** How many of `#pending` were raised by clients (`kind: "exec"`). */
  #pendingRequests = 0;
  readonly #pending = new Map<string, ApprovalEntry>();
  readonly #settled = new Map<string, ApprovalEntry>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #waiters = new Map<string, Set<(entry: ApprovalEntry) => void>>();

  constructor(options: {
    gate: ApprovalGate | undefined;
    sink: ApprovalsSink;
    now?: () => number;
    defaultTimeoutMs?: number;
    /** Client-raised approvals that may wait at once (default {@link DEFAULT_MAX_PENDING_REQUESTS}). */
    maxPendingRequests?: number;
  }) {
    this.#gate = options.gate;
    this.#sink = options.sink;
    this.#now = options.now ?? Date.now;
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 120_000;
    this.#maxPendingRequests = options.maxPendingRequests ?? DEFAULT_MAX_PENDING_REQUESTS;
  }

  /** Pending approvals, oldest first. */
  list(): ApprovalEntry[] {
    return [...this.#pending.values()].sort((a, b) => a.createdAtMs - b.createdAtMs);
  }

  /** Follows the runtime's run events: tool approval requests and what settles them. */
  onRunEvent(event: RunEvent): void {
    if (event.type === "tool-approval-request") {
      const shown = this.#gate?.pending().find((p) => p.requestId === event.requestId);
      const entry: ApprovalEntry = {
        id: event.requestId,
        kind: "tool",
        sessionKey: event.sessionKey,
        createdAtMs: this.#now(),
        expiresAtMs: event.expiresAt,
        request: {
          toolName: event.toolName,
          input: event.input,
          sessionKey: event.sessionKey,
          runId: event.runId,
          toolCallId: event.toolCallId,
          ...(shown === undefined ? {} : { display: shown.display, key: shown.key }),
        },
      };
      this.#pending.set(entry.id, entry);
      this.#sink.requested(entry);
      return;
    }
    if (event.type === "tool-result" || event.type === "run-end") {
      for (const entry of [...this.#pending.values()]) {
        if (entry.kind !== "tool" || entry.request.runId !== event.runId) continue;
        if (event.type === "tool-result" && entry.request.toolCallId !== event.toolCallId) continue;
        // Settled without an answer through this gateway: it timed out into the default.
        this.#settle(entry, null, undefined);
      }
    }
  }

  /** Registers a client's request; resolves with the decision (`null` when it expires). */
  async request(
    params: Record<string, unknown>,
    options: { id?: string; timeoutMs?: number; twoPhase: boolean },
  ): Promise<ApprovalOutcome | (Omit<ApprovalOutcome, "decision"> & { status: "accepted" })> {
    const id = options.id ?? randomUUID();
    if (this.#pending.has(id) || this.#settled.has(id)) {
      throw new GatewayError(ErrorCodes.INVALID_REQUEST, `approval ${id} already exists`, {
        details: { code: "APPROVAL_EXISTS", id },
      });
    }
    // A flood of requests nobody answers must not grow without bound (each holds a timer).
    if (this.#pendingRequests >= this.#maxPendingRequests) {
      throw new GatewayError(
        ErrorCodes.UNAVAILABLE,
        `too many approvals waiting: at most ${this.#maxPendingRequests} client requests may wait at once`,
        {
          details: { code: "TOO_MANY_PENDING_APPROVALS", limit: this.#maxPendingRequests },
          retryable: true,
        },
      );
    }
    const createdAtMs = this.#now();
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    const entry: ApprovalEntry = {
      id,
      kind: "exec",
      request: params,
      ...(typeof params.sessionKey === "string" ? { sessionKey: params.sessionKey } : {}),
      createdAtMs,
      expiresAtMs: createdAtMs + timeoutMs,
    };
    this.#pending.set(id, entry);
    this.#pendingRequests++;
    this.#timers.set(
      id,
      setTimeout(() => this.#settle(entry, null, undefined), timeoutMs),
    );
    this.#sink.requested(entry);
    if (options.twoPhase) {
      return { status: "accepted", id, createdAtMs, expiresAtMs: entry.expiresAtMs };
    }
    return this.waitDecision(id);
  }

  /** Waits for the decision of a pending approval (or returns the one already made). */
  waitDecision(id: string, signal?: AbortSignal): Promise<ApprovalOutcome> {
    const settled = this.#settled.get(id);
    if (settled !== undefined) return Promise.resolve(outcome(settled));
    if (!this.#pending.has(id)) {
      return Promise.reject(
        new GatewayError(ErrorCodes.APPROVAL_NOT_FOUND, `unknown approval ${id}`, {
          details: { id },
        }),
      );
    }
    return new Promise((resolve) => {
      let set = this.#waiters.get(id);
      if (set === undefined) {
        set = new Set();
        this.#waiters.set(id, set);
      }
      const onSettle = (entry: ApprovalEntry) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(outcome(entry));
      };
      const onAbort = () => {
        set!.delete(onSettle);
        const entry = this.#pending.get(id) ?? this.#settled.get(id);
        resolve({
          id,
          decision: null,
          createdAtMs: entry?.createdAtMs ?? 0,
          expiresAtMs: entry?.expiresAtMs ?? 0,
        });
      };
      set.add(onSettle);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Answers a pending approval.
   *
   * @throws GatewayError `APPROVAL_NOT_FOUND` when it is unknown or already settled.
   */
  resolve(
    id: string,
    decision: ApprovalDecision,
    by: { scopes: string[]; id: string },
  ): ApprovalEntry {
    const entry = this.#pending.get(id);
    if (entry?.kind === "exec") {
      this.#settle(entry, decision, by.id);
      return entry;
    }
    // A runtime request: the gate decides whether it is still waiting.
    const answered = this.#gate?.answer(id, decision, { scopes: by.scopes, id: by.id }) ?? false;
    if (!answered) {
      if (entry !== undefined) this.#settle(entry, null, undefined);
      throw new GatewayError(
        ErrorCodes.APPROVAL_NOT_FOUND,
        `approval ${id} is unknown or no longer pending`,
        { details: { id } },
      );
    }
    const settled: ApprovalEntry =
      entry ??
      ({
        id,
        kind: "tool",
        request: {},
        createdAtMs: this.#now(),
        expiresAtMs: this.#now(),
      } satisfies ApprovalEntry);
    this.#settle(settled, decision, by.id);
    return settled;
  }

  /** Expires everything pending (the gateway is stopping). */
  close(): void {
    for (const entry of [...this.#pending.values()]) {
      if (entry.kind === "exec") this.#settle(entry, null, undefined);
    }
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#pending.clear();
    this.#pendingRequests = 0;
  }

  #settle(entry: ApprovalEntry, decision: ApprovalDecision | null, by: string | undefined): void {
    if (entry.decision !== undefined) return;
    entry.decision = decision;
    entry.resolvedAtMs = this.#now();
    if (by !== undefined) entry.resolvedBy = by;
    if (this.#pending.delete(entry.id) && entry.kind === "exec") this.#pendingRequests--;
    clearTimeout(this.#timers.get(entry.id));
    this.#timers.delete(entry.id);
    this.#settled.set(entry.id, entry);
    while (this.#settled.size > SETTLED_KEPT) {
      const oldest = this.#settled.keys().next().value;
      if (oldest === undefined) break;
      this.#settled.delete(oldest);
    }
    for (const waiter of this.#waiters.get(entry.id) ?? []) waiter(entry);
    this.#waiters.delete(entry.id);
    this.#sink.resolved(entry);
  }
}

function outcome(entry: ApprovalEntry): ApprovalOutcome {
  return {
    id: entry.id,
    decision: entry.decision ?? null,
    createdAtMs: entry.createdAtMs,
    expiresAtMs: entry.expiresAtMs,
  };
}
