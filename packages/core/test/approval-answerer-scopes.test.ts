/**
 * Who answers an approval is checked by their scopes, a list. A malformed answerer — no
 * scopes, or scopes as one string (an OAuth-style `"scope"` claim) in which
 * `"operator.approvals"` is only a substring of another scope — is a typed error; the request
 * stays pending for a proper answer.
 */
import { describe, expect, it } from "vitest";
import {
  type ApprovalAnswerer,
  ApprovalGate,
  InvalidArgumentError,
  type RunEvent,
} from "../src/index.js";
import { deploySubject, useApprovalStores } from "./fixtures/approvals.js";

const approvals = useApprovalStores();

async function waiting() {
  const gate = new ApprovalGate({ store: await approvals(), mode: "always", timeoutMs: 60_000 });
  const events: RunEvent[] = [];
  const decision = gate.check(deploySubject, (event) => events.push(event));
  await Promise.resolve();
  const request = events.find((event) => event.type === "tool-approval-request");
  if (request?.type !== "tool-approval-request") throw new Error("no approval request");
  return { gate, decision, requestId: request.requestId };
}

describe("ApprovalGate.answer: a malformed answerer", () => {
  it.each([
    ["scopes as one string holding the scope name", { scopes: "operator.approvals.viewer" }],
    ["no scopes", {}],
    ["no answerer at all", undefined],
  ])("%s is an InvalidArgumentError and the request stays pending", async (_label, by) => {
    const { gate, decision, requestId } = await waiting();
    expect(() => gate.answer(requestId, "allow-once", by as unknown as ApprovalAnswerer)).toThrow(
      InvalidArgumentError,
    );
    expect(gate.pending().map((p) => p.requestId)).toEqual([requestId]);
    expect(gate.answer(requestId, "allow-once", { scopes: ["operator.approvals"] })).toBe(true);
    await expect(decision).resolves.toBe("allow-once");
  });
});
