import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryStore } from "../src/store/memory-store.js";
import { ApprovalGate } from "../src/tools/approval.js";
import {
  approveWithGate,
  BasicToolRunner,
  createExecTool,
  createProcessTool,
  ExecAllowlist,
  type ExecApprovalDecision,
  type ExecBinding,
  type ExecToolOptions,
  InvalidArgumentError,
  ProcessNotFoundError,
} from "./fixtures/exec/api.js";
import { eventually, isAlive, toolContext, useGatewayExec } from "./fixtures/exec/support.js";

const { root, host, registry } = useGatewayExec();
const context = toolContext();

/** An exec tool whose approver answers `answers` in turn (then `deny`) and records what it saw. */
function execWith(answers: ExecApprovalDecision[] = [], options: Partial<ExecToolOptions> = {}) {
  const asked: ExecBinding[] = [];
  const exec = createExecTool({
    registry,
    hosts: { gateway: host },
    approve: (binding) => {
      asked.push(binding);
      return answers.shift() ?? "deny";
    },
    ...options,
  });
  return { exec, asked };
}

type Result = Record<string, unknown>;

describe("createExecTool", () => {
  it("runs an approved command and returns its exit status, output and duration", async () => {
    const { exec } = execWith(["allow-once"]);
    const result = (await exec.execute(
      { command: "echo out; echo err >&2; exit 4" },
      context,
    )) as Result;
    expect(result).toMatchObject({
      status: "exited",
      exitCode: 4,
      signal: null,
      stdout: "out\n",
      stderr: "err\n",
      truncated: false,
      timedOut: false,
    });
    expect(typeof result.durationMs).toBe("number");
    expect(registry.list()).toEqual([]);
  });

  it("asks again after allow-once, and after allow-always only for a different binding", async () => {
    const { exec, asked } = execWith(["allow-once", "allow-always"]);
    await exec.execute({ command: "true" }, context);
    await exec.execute({ command: "true" }, context);
    expect(asked).toHaveLength(2);
    await exec.execute({ command: "true" }, context);
    await exec.execute({ command: "'true'" }, context);
    expect(asked).toHaveLength(2);
    await expect(exec.execute({ command: "true; true" }, context)).rejects.toMatchObject({
      reason: "denied",
    });
    await expect(
      exec.execute({ command: "true", cwd: ".", env: { A: "1" } }, context),
    ).rejects.toMatchObject({
      reason: "denied",
    });
    expect(asked).toHaveLength(4);
  });

  it("remembers allow-always per agent", async () => {
    const { exec, asked } = execWith(["allow-always"]);
    await exec.execute({ command: "true" }, context);
    await expect(
      exec.execute({ command: "true" }, toolContext({ agentId: "other" })),
    ).rejects.toMatchObject({ reason: "denied" });
    expect(asked).toHaveLength(2);
  });

  it("runs nothing when denied, when the approver times out, or when the approver fails", async () => {
    const denied = execWith(["deny"]).exec;
    await expect(denied.execute({ command: "touch pwned" }, context)).rejects.toMatchObject({
      code: "EXEC_REFUSED",
      reason: "denied",
    });
    const silent = createExecTool({
      registry,
      hosts: { gateway: host },
      approvalTimeoutMs: 50,
      approve: () => new Promise<ExecApprovalDecision>(() => {}),
    });
    await expect(silent.execute({ command: "touch pwned" }, context)).rejects.toMatchObject({
      code: "EXEC_REFUSED",
      reason: "approval-timeout",
    });
    const broken = createExecTool({
      registry,
      hosts: { gateway: host },
      approve: () => {
        throw new Error("approval backend down");
      },
    });
    await expect(broken.execute({ command: "touch pwned" }, context)).rejects.toThrow(
      "approval backend down",
    );
    expect(existsSync(path.join(root.dir, "pwned"))).toBe(false);
  });

  it("without an approver, runs allowlisted commands only", async () => {
    const exec = createExecTool({
      registry,
      hosts: { gateway: host },
      allowlist: new ExecAllowlist([{ executable: "ls" }]),
    });
    expect(await exec.execute({ command: "ls" }, context)).toMatchObject({ exitCode: 0 });
    await expect(exec.execute({ command: "ls; touch pwned" }, context)).rejects.toMatchObject({
      reason: "denied",
    });
    expect(existsSync(path.join(root.dir, "pwned"))).toBe(false);
  });

  it("asks the approver when the allowlist covers only part of a command", async () => {
    const { exec, asked } = execWith(["allow-once"], {
      allowlist: new ExecAllowlist([{ executable: "ls" }]),
    });
    await exec.execute({ command: "ls" }, context);
    expect(asked).toHaveLength(0);
    await exec.execute({ command: "ls | wc -l" }, context);
    expect(asked.map((b) => b.invocations.map((i) => i.argv[0]))).toEqual([["ls", "wc"]]);
  });

  it("moves a command to the background after yieldAfterMs; the process tool drives it", async () => {
    // The write is input to an approved command: it is approved on its own.
    const { exec } = execWith(["allow-once"], {
      yieldAfterMs: 150,
      approveWrite: () => "allow-once",
    });
    const proc = createProcessTool(registry);
    const started = (await exec.execute(
      { command: 'echo start; read line; echo "got $line"; sleep 30' },
      context,
    )) as Result;
    expect(started).toMatchObject({ status: "running", backgrounded: true });
    // What it printed in its first 150 ms (on a loaded machine the shell may not have run yet).
    expect(["", "start\n"]).toContain(started.stdout);
    const slug = started.slug as string;
    expect(await eventually(() => registry.log(slug) === "start\n")).toBe(true);

    expect(await proc.execute({ action: "poll", slug }, context)).toMatchObject({
      process: { status: "running", backgrounded: true },
      output: "start\n",
    });
    expect(await proc.execute({ action: "write", slug, data: "hello\n" }, context)).toMatchObject({
      written: 6,
    });
    expect(await eventually(() => registry.log(slug, { lines: 1 }) === "got hello\n")).toBe(true);
    expect(await proc.execute({ action: "log", slug, lines: 1 }, context)).toEqual({
      slug,
      output: "got hello\n",
    });
    const listed = (await proc.execute({ action: "list" }, context)) as { processes: Result[] };
    expect(listed.processes.map((p) => p.slug)).toEqual([slug]);
    const pid = listed.processes[0]!.pid as number;
    expect(await proc.execute({ action: "kill", slug }, context)).toMatchObject({
      process: { status: "exited", killed: true, signal: "SIGTERM" },
    });
    expect(isAlive(pid)).toBe(false);
    expect(await proc.execute({ action: "remove", slug }, context)).toEqual({
      slug,
      removed: true,
    });
    expect(await proc.execute({ action: "list" }, context)).toEqual({ processes: [] });
  });

  it("returns at once with a slug when asked to run in the background", async () => {
    const { exec } = execWith(["allow-once"]);
    const result = (await exec.execute(
      { command: "sleep 30", background: true },
      context,
    )) as Result;
    expect(result).toMatchObject({ status: "running", backgrounded: true });
    expect(registry.get(result.slug as string).status).toBe("running");
  });

  it("kills a foreground command when the run is aborted", async () => {
    const { exec } = execWith(["allow-once"]);
    const controller = new AbortController();
    const running = exec.execute(
      { command: "sleep 30" },
      toolContext({ signal: controller.signal }),
    );
    expect(await eventually(() => registry.list().length === 1)).toBe(true);
    const { pid } = registry.list()[0]!;
    controller.abort(new Error("run aborted"));
    await expect(running).rejects.toThrow("run aborted");
    expect(isAlive(pid)).toBe(false);
    expect(registry.list()).toEqual([]);
  });

  it("stops a command at its time limit and reports timedOut", async () => {
    const { exec } = execWith(["allow-once"]);
    expect(await exec.execute({ command: "sleep 30", timeoutMs: 150 }, context)).toMatchObject({
      status: "exited",
      timedOut: true,
      signal: "SIGTERM",
    });
  });

  it("caps stdout and stderr in the result, keeping the end, and says so", async () => {
    const { exec } = execWith(["allow-once"], { maxOutputChars: 100 });
    const result = (await exec.execute({ command: "seq 1 1000" }, context)) as Result;
    expect(result.truncated).toBe(true);
    expect(result.stdout).toHaveLength(100);
    expect((result.stdout as string).endsWith("999\n1000\n")).toBe(true);
  });

  it("a cap that falls inside a character keeps none of it (no lone surrogate)", async () => {
    const { exec } = execWith(["allow-once"], { maxOutputChars: 5 });
    // "😀" is two UTF-16 units: the last 5 units of "😀😀😀" start in the middle of one.
    const result = (await exec.execute({ command: "printf '😀😀😀'" }, context)) as Result;
    expect(result.truncated).toBe(true);
    expect(result.stdout).toBe("😀😀");
  });

  it("writes the stdin input and closes it", async () => {
    const { exec } = execWith(["allow-once"]);
    expect(await exec.execute({ command: "cat", stdin: "to cat" }, context)).toMatchObject({
      exitCode: 0,
      stdout: "to cat",
    });
  });

  it.each([
    ["an input that is not an object", "ls"],
    ["an unknown field", { command: "ls", sudo: true }],
    ["a command that is not a string", { command: ["ls"] }],
    ["an env value that is not a string", { command: "ls", env: { A: 1 } }],
    ["an unknown host", { command: "ls", host: "mars" }],
    ["a host that is not configured", { command: "ls", host: "sandbox" }],
    ["a negative timeout", { command: "ls", timeoutMs: -1 }],
    ["a timeout past the maximum", { command: "ls", timeoutMs: 1e12 }],
    ["a background flag that is not a boolean", { command: "ls", background: "yes" }],
  ])("refuses %s with InvalidArgumentError", async (_name, input) => {
    const { exec, asked } = execWith(["allow-once"]);
    await expect(exec.execute(input as never, context)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(asked).toHaveLength(0);
  });

  it("reports a refusal to the model as a readable error result", async () => {
    const { exec } = execWith();
    const runner = new BasicToolRunner({ tools: [exec, createProcessTool(registry)] });
    const result = await runner.execute(
      { type: "tool-call", toolCallId: "c1", toolName: "exec", input: { command: "ls &> x" } },
      context,
    );
    expect(result.isError).toBe(true);
    expect(String(result.output)).toContain("EXEC_REFUSED");
    expect(String(result.output)).toContain("&>");
    const names = runner
      .definitions({ id: "ops", model: "m/x", tools: ["*"] }, context.sessionKey)
      .map((d) => d.name);
    expect(names).toEqual(["exec", "process"]);
  });

  it("asks an ApprovalGate with the binding's exact key and description", async () => {
    const store = new MemoryStore();
    await store.open();
    const gate = new ApprovalGate({ store: store.approvals, mode: "on-miss", timeoutMs: 5_000 });
    const exec = createExecTool({
      registry,
      hosts: { gateway: host },
      approve: approveWithGate(gate),
    });
    const answered = exec.execute({ command: "echo approved" }, context);
    expect(await eventually(() => gate.pending().length === 1)).toBe(true);
    const [request] = gate.pending();
    expect(request!.key).toMatch(/^exec:[0-9a-f]{64}$/);
    expect(request!.display).toContain("builtin echo approved");
    gate.answer(request!.requestId, "allow-always", { scopes: ["operator.approvals"] });
    expect(await answered).toMatchObject({ stdout: "approved\n" });
    // Remembered for exactly that binding: it runs again without a request...
    expect(await exec.execute({ command: "echo approved" }, context)).toMatchObject({
      exitCode: 0,
    });
    // ...while a variant is asked for, and a denial is an error.
    const variant = exec.execute({ command: "echo approved; touch pwned" }, context);
    expect(await eventually(() => gate.pending().length === 1)).toBe(true);
    gate.answer(gate.pending()[0]!.requestId, "deny", { scopes: ["operator.approvals"] });
    await expect(variant).rejects.toMatchObject({ code: "APPROVAL_DENIED" });
    expect(existsSync(path.join(root.dir, "pwned"))).toBe(false);
    gate.close();
    await store.close();
  });
});

describe("createProcessTool", () => {
  it("shows a session only the processes it started", async () => {
    const { exec } = execWith(["allow-once"]);
    const mine = (await exec.execute({ command: "sleep 30", background: true }, context)) as Result;
    const proc = createProcessTool(registry);
    const other = toolContext({ sessionKey: "agent:ops:other" });
    expect(await proc.execute({ action: "list" }, other)).toEqual({ processes: [] });
    await expect(
      proc.execute({ action: "kill", slug: mine.slug as string }, other),
    ).rejects.toBeInstanceOf(ProcessNotFoundError);
    const all = createProcessTool(registry, { scope: "all" });
    const listed = (await all.execute({ action: "list" }, other)) as { processes: Result[] };
    expect(listed.processes.map((p) => p.slug)).toEqual([mine.slug]);
  });

  it.each([
    ["an unknown action", { action: "explode", slug: "x" }],
    ["a missing slug", { action: "poll" }],
    ["negative lines", { action: "log", slug: "x", lines: -1 }],
    ["an unknown stream", { action: "log", slug: "x", stream: "stdin" }],
    ["data that is not a string", { action: "write", slug: "x", data: 5 }],
    ["an unknown field", { action: "list", pid: 1 }],
  ])("refuses %s with InvalidArgumentError", async (_name, input) => {
    const proc = createProcessTool(registry);
    await expect(proc.execute(input as never, context)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });
});
