/**
 * The exec tool's own `allow-always` memory (`ExecApprovalMemory`) that fails — a disk full
 * when a decision is remembered, a store that cannot be read — does not cost the approved
 * command: it runs, and the failure is published as `beamclaw:approval.store-error` and a
 * `BeamClawWarning`, as the approval gate's store failures are.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { subscribeTelemetry, type TelemetryEvents } from "../src/index.js";
import {
  createExecTool,
  type ExecApprovalDecision,
  type ExecApprovalMemory,
  InMemoryExecApprovals,
} from "./fixtures/exec/api.js";
import { toolContext, useGatewayExec } from "./fixtures/exec/support.js";

const { root, host, registry } = useGatewayExec();

const full = () => Object.assign(new Error("no space left on device"), { code: "ENOSPC" });

const seen: Array<TelemetryEvents["beamclaw:approval.store-error"]> = [];
const off = subscribeTelemetry("beamclaw:approval.store-error", (event) => seen.push(event));
const warnings: string[] = [];
const onWarning = (warning: Error) => {
  if (warning.name === "BeamClawWarning") warnings.push(warning.message);
};
process.on("warning", onWarning);
afterAll(() => {
  off();
  process.off("warning", onWarning);
});
afterEach(() => {
  seen.length = 0;
  warnings.length = 0;
});

function execWith(memory: ExecApprovalMemory, answers: ExecApprovalDecision[]) {
  const asked: string[] = [];
  const exec = createExecTool({
    registry,
    hosts: { gateway: host },
    approvals: memory,
    approve: (binding) => {
      asked.push(binding.command);
      return answers.shift() ?? "deny";
    },
  });
  return { exec, asked };
}

describe("exec with a failing approval memory", () => {
  it("an allow-always that cannot be remembered still runs the command", async () => {
    const memory = new InMemoryExecApprovals();
    const { exec, asked } = execWith(
      {
        has: (binding, context) => memory.has(binding, context),
        remember: () => {
          throw full();
        },
      },
      ["allow-always", "allow-once"],
    );
    const result = (await exec.execute({ command: "touch remembered-not" }, toolContext())) as {
      exitCode: number;
    };
    expect(result.exitCode).toBe(0);
    expect(existsSync(path.join(root.dir, "remembered-not"))).toBe(true);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ session: "agent:ops:main", tool: "exec", operation: "put" });
    expect(seen[0]!.error).toMatchObject({ code: "ENOSPC" });
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings.join("\n")).toContain("could not remember");
    // Not remembered: the next run of it is asked again.
    await exec.execute({ command: "touch remembered-not" }, toolContext());
    expect(asked).toEqual(["touch remembered-not", "touch remembered-not"]);
  });

  it("a memory that cannot be read asks the person instead of refusing the command", async () => {
    const { exec, asked } = execWith(
      {
        has: () => Promise.reject(full()),
        remember: () => {},
      },
      ["allow-once"],
    );
    const result = (await exec.execute({ command: "touch asked-instead" }, toolContext())) as {
      exitCode: number;
    };
    expect(result.exitCode).toBe(0);
    expect(asked).toEqual(["touch asked-instead"]);
    expect(seen.map((event) => event.operation)).toEqual(["list"]);
  });
});
