/**
 * ApprovalGate options a person can get wrong: a timeout no timer can hold (Infinity, NaN,
 * negative, beyond 2^31-1 ms) used to deny every request at once, and an unknown default
 * decision used to let a timed-out request run. Both are refused up front with a typed error.
 */
import { describe, expect, it } from "vitest";
import { ApprovalGate, InvalidArgumentError, type RunEvent } from "../src/index.js";
import { deploySubject as subject, useApprovalStores } from "./fixtures/approvals.js";

const approvals = useApprovalStores();

describe("ApprovalGate options", () => {
  it.each([Number.POSITIVE_INFINITY, Number.NaN, -1, 0, 2 ** 31, "60000"])(
    "refuses timeoutMs %s with InvalidArgumentError",
    async (timeoutMs) => {
      const store = await approvals();
      expect(() => new ApprovalGate({ store, timeoutMs: timeoutMs as number })).toThrow(
        InvalidArgumentError,
      );
      const gate = new ApprovalGate({ store });
      expect(() => gate.configure({ timeoutMs: timeoutMs as number })).toThrow(
        InvalidArgumentError,
      );
      expect(gate.timeoutMs).toBe(120_000);
    },
  );

  it("refuses an unknown defaultDecision, so that a timeout can never become an allow by typo", async () => {
    const store = await approvals();
    expect(() => new ApprovalGate({ store, defaultDecision: "allow" as "allow-once" })).toThrow(
      InvalidArgumentError,
    );
    const gate = new ApprovalGate({ store });
    expect(() => gate.configure({ defaultDecision: "yes" as "deny" })).toThrow(
      InvalidArgumentError,
    );
    expect(gate.defaultDecision).toBe("deny");
  });

  it("waits for the answer for the largest timeout a timer can hold", async () => {
    const gate = new ApprovalGate({
      store: await approvals(),
      mode: "always",
      timeoutMs: 2 ** 31 - 1,
    });
    const events: RunEvent[] = [];
    const decision = gate.check(subject, (event) => events.push(event));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const request = events.find((e) => e.type === "tool-approval-request");
    expect(request?.type).toBe("tool-approval-request");
    if (request?.type !== "tool-approval-request") return;
    expect(gate.answer(request.requestId, "allow-once", { scopes: ["operator.approvals"] })).toBe(
      true,
    );
    await expect(decision).resolves.toBe("allow-once");
  });
});
