/**
 * An approval wait ended by a signal whose reason is not an `Error` (`abort("gone")`) rejects
 * with a typed `AbortedError` carrying the reason, not with an untyped `Error("aborted")`;
 * nothing is left pending either way.
 */
import { describe, expect, it } from "vitest";
import { AbortedError, ApprovalGate, type RunEvent } from "../src/index.js";
import { deploySubject as subject, useApprovalStores } from "./fixtures/approvals.js";
import { failureOf } from "./support.js";

const approvalStore = useApprovalStores();

async function gate() {
  return new ApprovalGate({ store: await approvalStore(), mode: "always", timeoutMs: 60_000 });
}

describe("ApprovalGate: aborted waits", () => {
  it("rejects with AbortedError when the signal was already aborted with a non-error reason", async () => {
    const approvals = await gate();
    const events: RunEvent[] = [];
    const error = await failureOf(() =>
      approvals.check(subject, (event) => events.push(event), AbortSignal.abort("gone")),
    );
    expect(AbortedError.isInstance(error)).toBe(true);
    expect((error as AbortedError).cause).toBe("gone");
    expect(events).toEqual([]);
    expect(approvals.pending()).toEqual([]);
  });

  it("rejects with AbortedError when the signal aborts with a non-error reason during the wait", async () => {
    const approvals = await gate();
    const controller = new AbortController();
    const events: RunEvent[] = [];
    const waiting = approvals.check(subject, (event) => events.push(event), controller.signal);
    await Promise.resolve();
    expect(events.map((event) => event.type)).toEqual(["tool-approval-request"]);
    controller.abort(42);
    const error = await failureOf(() => waiting);
    expect(AbortedError.isInstance(error)).toBe(true);
    expect((error as AbortedError).cause).toBe(42);
    expect(approvals.pending()).toEqual([]);
  });
});
