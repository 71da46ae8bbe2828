/**
 * `createExecTool({ approvalTimeoutMs })` past what a timer holds (Infinity: wait for the
 * person however long it takes; or more than 2^31-1 ms) used to refuse every command at
 * once with "no approval within Infinity ms", before anyone could answer.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryStore } from "../src/store/memory-store.js";
import { ApprovalGate } from "../src/tools/approval.js";
import {
  approveWithGate,
  createExecTool,
  type ExecApprovalDecision,
  InvalidArgumentError,
} from "./fixtures/exec/api.js";
import { toolContext, useGatewayExec } from "./fixtures/exec/support.js";

const { root, host, registry } = useGatewayExec();

describe("exec approval with a long approvalTimeoutMs", () => {
  it.each([Number.POSITIVE_INFINITY, 2 ** 31 + 30_000])(
    "approvalTimeoutMs %s waits for the answer and runs the approved command",
    async (approvalTimeoutMs) => {
      const file = `approved-${String(approvalTimeoutMs).replace(/\W/g, "")}`;
      const exec = createExecTool({
        registry,
        hosts: { gateway: host },
        approvalTimeoutMs,
        approve: () =>
          new Promise<ExecApprovalDecision>((resolve) =>
            setTimeout(() => resolve("allow-once"), 30),
          ),
      });
      const result = (await exec.execute({ command: `touch ${file}` }, toolContext())) as {
        exitCode: number;
      };
      expect(result.exitCode).toBe(0);
      expect(existsSync(path.join(root.dir, file))).toBe(true);
    },
  );

  it.each([Number.NaN, 0, -5])("refuses approvalTimeoutMs %s with InvalidArgumentError", (ms) => {
    expect(() =>
      createExecTool({ registry, hosts: { gateway: host }, approvalTimeoutMs: ms }),
    ).toThrow(InvalidArgumentError);
  });
});

describe("exec approval that times out in the exec tool before the gate does", () => {
  it("withdraws the gate's request: nothing stays pending that an answer could no longer act on", async () => {
    const store = new MemoryStore();
    await store.open();
    const gate = new ApprovalGate({ store: store.approvals, mode: "always", timeoutMs: 60_000 });
    const exec = createExecTool({
      registry,
      hosts: { gateway: host },
      approvalTimeoutMs: 30,
      approve: approveWithGate(gate),
    });
    const asked: string[] = [];
    await expect(
      Promise.resolve(
        exec.execute(
          { command: "touch never-approved" },
          toolContext({ emit: (event) => asked.push(event.type) }),
        ),
      ),
    ).rejects.toMatchObject({ code: "EXEC_REFUSED", reason: "approval-timeout" });
    expect(asked).toEqual(["tool-approval-request"]);
    expect(gate.pending()).toEqual([]);
    expect(existsSync(path.join(root.dir, "never-approved"))).toBe(false);
    await store.close();
  });
});
