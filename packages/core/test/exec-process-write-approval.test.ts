/**
 * The `process` tool's `write` feeds input to a command exec started after an approval.
 * Approving `sh` or `python3 -i` must not approve whatever the model types into it later:
 * every write to such a command is approved on its own, through the same gate, showing the
 * process, the command approved before and the exact data. Real processes, on the gateway
 * host and in a real bubblewrap sandbox.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunEvent } from "../src/sessions/types.js";
import { MemoryStore } from "../src/store/memory-store.js";
import {
  type ApprovalDecision,
  ApprovalDeniedError,
  ApprovalGate,
  type ApprovalMode,
} from "../src/tools/approval.js";
import {
  approveWithGate,
  BubblewrapSandbox,
  createExecTool,
  createProcessTool,
  ExecAllowlist,
  type ExecApprovalDecision,
  type ExecHost,
  type ExecWriteRequest,
  InvalidArgumentError,
} from "./fixtures/exec/api.js";
import { tempRoot, toolContext, useGatewayExec } from "./fixtures/exec/support.js";

const { root, host, registry } = useGatewayExec({ prefix: "beamclaw-write-" });

type ApprovalRequest = Extract<RunEvent, { type: "tool-approval-request" }>;
type Result = Record<string, unknown>;

/**
 * An exec tool and a process tool behind a real `ApprovalGate`; the person answers each
 * request with the next of `answers` (then `deny`), and every request is recorded.
 */
async function gated(mode: ApprovalMode, hosts: { gateway?: ExecHost; sandbox?: ExecHost } = {}) {
  const store = new MemoryStore();
  await store.open();
  const gate = new ApprovalGate({ store: store.approvals, mode });
  const answers: ApprovalDecision[] = [];
  const requests: ApprovalRequest[] = [];
  const context = toolContext({
    emit: (event) => {
      if (event.type !== "tool-approval-request") return;
      requests.push(event);
      gate.answer(event.requestId, answers.shift() ?? "deny", { scopes: ["operator.approvals"] });
    },
  });
  const exec = createExecTool({
    registry,
    hosts: hosts.gateway === undefined && hosts.sandbox === undefined ? { gateway: host } : hosts,
    approve: approveWithGate(gate),
  });
  const proc = createProcessTool(registry);
  /** Starts `command` in the background (answering its approval with allow-once). */
  const start = async (command: string): Promise<string> => {
    answers.push("allow-once");
    const started = (await exec.execute({ command, background: true }, context)) as Result;
    return started.slug as string;
  };
  const write = async (slug: string, data: string, eof?: boolean) =>
    proc.execute({ action: "write", slug, data, ...(eof === undefined ? {} : { eof }) }, context);
  return { answers, requests, start, write, store };
}

describe("process write: approved like a command", () => {
  it("asks the gate about every write to an approved shell, with the process, the command and the exact data; a denial writes nothing", async () => {
    const { answers, requests, start, write, store } = await gated("on-miss");
    const slug = await start("sh");
    expect(requests).toHaveLength(1);

    // Denied: the shell never sees it.
    const denied = await write(slug, "touch pwned; echo done\n").catch((e: unknown) => e);
    expect(ApprovalDeniedError.isInstance(denied)).toBe(true);
    expect(requests).toHaveLength(2);
    const asked = requests[1]!;
    expect(asked.toolName).toBe("process");
    expect(asked.input).toEqual({
      slug,
      command: "sh",
      cwd: root.dir,
      host: "gateway",
      data: "touch pwned; echo done\n",
      eof: false,
    });
    expect(asked.key).toMatch(/^exec-write:[0-9a-f]{64}$/);
    expect(asked.display).toContain(`process ${slug}`);
    expect(asked.display).toContain("command approved before: sh");
    expect(asked.display).toContain('"touch pwned; echo done\\n"');
    expect(registry.get(slug)).toMatchObject({ status: "running", stdinOpen: true });

    // Approved once: written, and the shell runs it.
    answers.push("allow-once");
    expect(await write(slug, "echo approved\n", true)).toEqual({ slug, written: 14, eof: true });
    expect((await registry.wait(slug, { timeoutMs: 10_000 })).status).toBe("exited");
    expect(registry.output(slug).stdout).toBe("approved\n");
    expect(existsSync(path.join(root.dir, "pwned"))).toBe(false);
    expect(requests).toHaveLength(3);
    await store.close();
  });

  it("allow-always of a write covers that exact data to that command only", async () => {
    const { answers, requests, start, write, store } = await gated("on-miss");
    const slug = await start("sh");
    answers.push("allow-always");
    await write(slug, "echo one\n");
    await write(slug, "echo one\n"); // remembered: not asked
    expect(requests).toHaveLength(2);
    // Other data is asked about (and denied here).
    const other = await write(slug, "echo two\n").catch((e: unknown) => e);
    expect(ApprovalDeniedError.isInstance(other)).toBe(true);
    expect(requests).toHaveLength(3);
    // The same data to another command is asked about too.
    const cat = await start("cat");
    expect(requests).toHaveLength(4);
    await expect(write(cat, "echo one\n")).rejects.toMatchObject({ code: "APPROVAL_DENIED" });
    expect(requests).toHaveLength(5);
    await write(slug, "", true);
    await registry.wait(slug, { timeoutMs: 10_000 });
    expect(registry.output(slug).stdout).toBe("one\none\n");
    await store.close();
  });

  it("under a gate in mode off (never ask) writes go through unasked, as before", async () => {
    const { requests, start, write, store } = await gated("off");
    const slug = await start("sh");
    await write(slug, "echo trusted\n", true);
    await registry.wait(slug, { timeoutMs: 10_000 });
    expect(registry.output(slug).stdout).toBe("trusted\n");
    expect(requests).toEqual([]);
    await store.close();
  });

  it("writes to an allowlisted command without an approver (mode off in the gateway), as before", async () => {
    const exec = createExecTool({
      registry,
      hosts: { gateway: host },
      allowlist: new ExecAllowlist([{ executable: "cat" }]),
    });
    const proc = createProcessTool(registry);
    const context = toolContext();
    const started = (await exec.execute({ command: "cat", background: true }, context)) as Result;
    const slug = started.slug as string;
    await proc.execute({ action: "write", slug, data: "typed\n", eof: true }, context);
    await registry.wait(slug, { timeoutMs: 10_000 });
    expect(registry.output(slug).stdout).toBe("typed\n");
  });

  it("refuses a write when the command's approver has no write approver, and times out like exec", async () => {
    const context = toolContext();
    const proc = createProcessTool(registry);
    const plain = createExecTool({
      registry,
      hosts: { gateway: host },
      approve: () => "allow-once",
    });
    const started = (await plain.execute({ command: "sh", background: true }, context)) as Result;
    const slug = started.slug as string;
    await expect(
      proc.execute({ action: "write", slug, data: "touch pwned\n", eof: true }, context),
    ).rejects.toMatchObject({ code: "EXEC_REFUSED", reason: "denied" });
    expect(registry.get(slug).stdinOpen).toBe(true);

    const seen: ExecWriteRequest[] = [];
    const silent = createExecTool({
      registry,
      hosts: { gateway: host },
      approve: () => "allow-once",
      approvalTimeoutMs: 50,
      approveWrite: (request) => {
        seen.push(request);
        return new Promise<ExecApprovalDecision>(() => {});
      },
    });
    const other = (await silent.execute({ command: "sh", background: true }, context)) as Result;
    await expect(
      proc.execute({ action: "write", slug: other.slug as string, data: "touch pwned\n" }, context),
    ).rejects.toMatchObject({ code: "EXEC_REFUSED", reason: "approval-timeout" });
    expect(seen.map((r) => [r.slug, r.binding.command, r.data, r.eof])).toEqual([
      [other.slug, "sh", "touch pwned\n", false],
    ]);
    expect(existsSync(path.join(root.dir, "pwned"))).toBe(false);
  });

  it("says a closed stdin is closed before asking anyone", async () => {
    const { requests, start, write, store } = await gated("always");
    const slug = await start("sleep 30");
    expect(requests).toHaveLength(1);
    await write(slug, "", true); // closing alone feeds nothing: not asked
    await expect(write(slug, "echo late\n")).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(requests).toHaveLength(1);
    await store.close();
  });

  it("gives the process tool time for the approval", () => {
    expect(createProcessTool(registry, { approvalTimeoutMs: 200_000 }).timeoutMs).toBe(230_000);
    expect(() => createProcessTool(registry, { approvalTimeoutMs: -1 })).toThrow(
      InvalidArgumentError,
    );
  });
});

describe("process write in a real bubblewrap sandbox", () => {
  const work = tempRoot("beamclaw-write-sandbox-");
  const sandbox = new BubblewrapSandbox({ roots: [work.dir] });
  beforeAll(async () => {
    await sandbox.probe();
  });
  afterAll(() => work.cleanup());

  it("a denied write to an approved sandboxed shell runs nothing in it", async () => {
    const { answers, requests, start, write, store } = await gated("on-miss", { sandbox });
    const slug = await start("sh");
    await expect(write(slug, "touch planted\n")).rejects.toMatchObject({
      code: "APPROVAL_DENIED",
    });
    expect(requests[1]!.input).toMatchObject({ slug, command: "sh", data: "touch planted\n" });
    answers.push("allow-once");
    await write(slug, "echo inside\n", true);
    await registry.wait(slug, { timeoutMs: 10_000 });
    expect(registry.output(slug).stdout).toBe("inside\n");
    expect(existsSync(path.join(work.dir, "planted"))).toBe(false);
    await store.close();
  });
});
