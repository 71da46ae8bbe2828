/**
 * What the person approving an exec command is shown must be everything that decides what
 * it does: the values of the caller's environment variables and the input given on stdin
 * (for `sh` or `python3 -` that input is the program), and nobody is asked to approve a
 * command on a sandbox that cannot run it.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryStore } from "../src/store/memory-store.js";
import { ApprovalGate } from "../src/tools/approval.js";
import {
  approveWithGate,
  BubblewrapSandbox,
  bindCommand,
  createExecTool,
  describeBinding,
  type ExecApprovalDecision,
  type ExecBinding,
  ExecRefusedError,
  GatewayHost,
  SandboxUnavailableError,
} from "./fixtures/exec/api.js";
import { eventually, toolContext, useGatewayExec } from "./fixtures/exec/support.js";

const { root, host, registry } = useGatewayExec();

/** An exec tool whose approver answers `answers` in turn (then `deny`) and records what it saw. */
function execWith(answers: ExecApprovalDecision[]) {
  const asked: ExecBinding[] = [];
  const exec = createExecTool({
    registry,
    hosts: { gateway: host },
    approve: (binding) => {
      asked.push(binding);
      return answers.shift() ?? "deny";
    },
  });
  return { exec, asked };
}

/** What `result` rejects with; fails the test when it resolves. */
async function failure(result: unknown): Promise<unknown> {
  try {
    await result;
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to fail");
}

describe("exec approval shows what the command runs with", () => {
  it("describes the caller's environment variables with their values, escaped", () => {
    const text = describeBinding(
      bindCommand("curl https://example.com/", {
        cwd: root.dir,
        env: { HTTPS_PROXY: "http://collector.example:8080", NOTE: "two\n  /usr/bin/true" },
      }),
    );
    expect(text).toContain("HTTPS_PROXY=http://collector.example:8080");
    // A newline in a value cannot fake another line of the description.
    expect(text).toContain("NOTE='two\\u{a}  /usr/bin/true'");
    expect(text.split("\n").filter((line) => line.includes("/usr/bin/true"))).toHaveLength(1);
  });

  it("binds and describes the input given on stdin; a command without one keeps its key", () => {
    const plain = bindCommand("sh", { cwd: root.dir });
    const fed = bindCommand("sh", { cwd: root.dir, stdin: "rm -rf ./data\n" });
    const other = bindCommand("sh", { cwd: root.dir, stdin: "echo hello\n" });
    expect(bindCommand("sh", { cwd: root.dir, stdin: undefined }).key).toBe(plain.key);
    expect(new Set([plain.key, fed.key, other.key]).size).toBe(3);
    expect(fed.stdin).toBe("rm -rf ./data\n");
    expect(describeBinding(fed)).toContain("stdin (14 characters): 'rm -rf ./data\\u{a}'");
    const long = describeBinding(bindCommand("sh", { cwd: root.dir, stdin: "x".repeat(5_000) }));
    const line = long.split("\n").find((l) => l.startsWith("stdin "));
    expect(line).toBe(
      `stdin (5000 characters): ${"x".repeat(4_000)} ... (1000 more characters not shown)`,
    );
  });

  it("an allow-always of `sh` with one input does not run another input unasked", async () => {
    const { exec, asked } = execWith(["allow-always", "deny"]);
    const first = await exec.execute({ command: "sh", stdin: "echo hello\n" }, toolContext());
    expect(first).toMatchObject({ status: "exited", exitCode: 0, stdout: "hello\n" });
    expect(asked[0]!.stdin).toBe("echo hello\n");
    await expect(
      exec.execute({ command: "sh", stdin: "touch pwned\n" }, toolContext()),
    ).rejects.toMatchObject({ code: "EXEC_REFUSED" });
    expect(asked.map((b) => b.stdin)).toEqual(["echo hello\n", "touch pwned\n"]);
    expect(existsSync(path.join(root.dir, "pwned"))).toBe(false);
  });

  it("an ApprovalGate request carries the env values and the stdin", async () => {
    const store = new MemoryStore();
    await store.open();
    const gate = new ApprovalGate({ store: store.approvals, mode: "on-miss", timeoutMs: 5_000 });
    const exec = createExecTool({
      registry,
      hosts: { gateway: host },
      approve: approveWithGate(gate),
    });
    const call = Promise.resolve(
      exec.execute(
        { command: "sh", env: { TARGET: "/srv/data" }, stdin: 'echo "$TARGET"\n' },
        toolContext(),
      ),
    );
    try {
      expect(await eventually(() => gate.pending().length === 1)).toBe(true);
      const [request] = gate.pending();
      expect(request!.input).toMatchObject({
        command: "sh",
        env: { TARGET: "/srv/data" },
        stdin: 'echo "$TARGET"\n',
      });
      expect(request!.display).toContain("env: TARGET=/srv/data");
      expect(request!.display).toContain(`stdin (15 characters): 'echo "$TARGET"\\u{a}'`);
      gate.answer(request!.requestId, "allow-once", { scopes: ["operator.approvals"] });
      expect(await call).toMatchObject({ exitCode: 0, stdout: "/srv/data\n" });
    } finally {
      // A failed check must not leave the request (and its timer) pending.
      gate.close();
      await call.catch(() => {});
      await store.close();
    }
  });
});

describe("exec on a bubblewrap sandbox that cannot run", () => {
  it("fails with SANDBOX_UNAVAILABLE before anyone is asked to approve", async () => {
    const sandbox = new BubblewrapSandbox({ roots: [root.dir], bwrapPath: "/nonexistent/bwrap" });
    const asked: ExecBinding[] = [];
    const exec = createExecTool({
      registry,
      hosts: { sandbox },
      approve: (binding) => {
        asked.push(binding);
        return "allow-once";
      },
    });
    const error = await failure(exec.execute({ command: "true" }, toolContext()));
    expect(error).toBeInstanceOf(SandboxUnavailableError);
    expect(error).toMatchObject({ code: "SANDBOX_UNAVAILABLE", driver: "bubblewrap" });
    expect(asked).toEqual([]);
    expect(registry.list()).toEqual([]);
  });

  it("refuses a bubblewrap without --bind-fd (an old release) as unavailable", async () => {
    // The real bwrap behind a wrapper that answers as a release before --bind-fd does.
    const old = path.join(root.dir, "old-bwrap");
    writeFileSync(
      old,
      '#!/bin/sh\nfor a in "$@"; do case "$a" in --bind-fd|--ro-bind-fd) echo "bwrap: Unknown option $a" >&2; exit 1;; esac; done\nexec /usr/bin/bwrap "$@"\n',
    );
    chmodSync(old, 0o755);
    const sandbox = new BubblewrapSandbox({ roots: [root.dir], bwrapPath: old });
    const error = await failure(sandbox.ready());
    expect(error).toBeInstanceOf(SandboxUnavailableError);
    expect((error as Error).message).toContain("Unknown option --ro-bind-fd");
  });

  it("a working sandbox is ready and runs the command once approved", async () => {
    const sandbox = new BubblewrapSandbox({ roots: [root.dir] });
    await expect(sandbox.ready()).resolves.toBeUndefined();
    const asked: string[] = [];
    const exec = createExecTool({
      registry,
      hosts: { sandbox },
      approve: (binding) => {
        asked.push(binding.host);
        return "allow-once";
      },
    });
    expect(await exec.execute({ command: "echo boxed" }, toolContext())).toMatchObject({
      exitCode: 0,
      stdout: "boxed\n",
    });
    expect(asked).toEqual(["sandbox:bubblewrap"]);
  });
});

/**
 * Runs `touch escaped` in `<name>/sub` on a host made by `hostFor`, while the approval of it
 * waits: meanwhile another command on the same host swaps `sub` for a symlink to a directory
 * outside the roots. Returns what the call failed with and what the outside directory holds.
 */
async function repointWhileApproving(
  name: string,
  hostFor: (work: string) => BubblewrapSandbox | GatewayHost,
): Promise<{ error: unknown; outside: string[] }> {
  const work = path.join(root.dir, name);
  const outside = path.join(root.dir, `${name}-outside`);
  mkdirSync(path.join(work, "sub"), { recursive: true });
  mkdirSync(outside);
  const target = hostFor(work);
  const swap = `mv sub sub2 && ln -s '${outside}' sub`;
  const exec = createExecTool({
    registry,
    hosts: target instanceof BubblewrapSandbox ? { sandbox: target } : { gateway: target },
    approve: async (): Promise<ExecApprovalDecision> => {
      const { slug } = await registry.spawn(target, {
        command: swap,
        script: swap,
        cwd: work,
        env: target.environment(),
      });
      expect(await registry.wait(slug)).toMatchObject({ exitCode: 0 });
      return "allow-once";
    },
  });
  const error = await failure(
    exec.execute({ command: "touch escaped", cwd: "sub" }, toolContext()),
  );
  return { error, outside: readdirSync(outside) };
}

describe("exec whose working directory is re-pointed while the approval waits", () => {
  it("never binds the place a symlink left in the directory's stead names", async () => {
    const { error, outside } = await repointWhileApproving(
      "boxed",
      (work) => new BubblewrapSandbox({ roots: [work] }),
    );
    expect(error).toBeInstanceOf(ExecRefusedError);
    expect(error).toMatchObject({ reason: "cwd" });
    expect(outside).toEqual([]);
  });

  it("on the gateway host too, the command is refused rather than started through the symlink", async () => {
    const { error, outside } = await repointWhileApproving(
      "direct",
      (work) => new GatewayHost({ roots: [work] }),
    );
    expect(error).toMatchObject({ code: "EXEC_REFUSED", reason: "cwd" });
    expect(outside).toEqual([]);
  });

  it("leaves the command no descriptor of the directory from outside the sandbox", async () => {
    const sandbox = new BubblewrapSandbox({ roots: [root.dir] });
    const exec = createExecTool({ registry, hosts: { sandbox }, approve: () => "allow-once" });
    const result = (await exec.execute({ command: "ls -l /proc/$$/fd" }, toolContext())) as Record<
      string,
      unknown
    >;
    expect(result).toMatchObject({ exitCode: 0 });
    expect(String(result.stdout)).not.toContain(root.dir);
  });
});
