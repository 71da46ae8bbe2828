import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  bindCommand,
  createExecTool,
  createProcessTool,
  DEFAULT_EXEC_PATH,
  ExecAllowlist,
  type ExecApprovalDecision,
  type ExecBinding,
  ExecRefusedError,
  GatewayHost,
  InvalidArgumentError,
  NODE_TIMEOUT_MARGIN_MS,
  NodeHost,
  type NodeHostOptions,
  type NodeRunRequest,
  type NodeRunResult,
} from "./fixtures/exec/api.js";
import { toolContext, useGatewayExec } from "./fixtures/exec/support.js";

/** The node's file system: a real directory, where the fake node really runs what it gets. */
const { root: nodeDisk, registry } = useGatewayExec({
  prefix: "beamclaw-node-",
  killGraceMs: 200,
  stopGraceMs: 200,
});
const context = toolContext();

/** A transport to a "node" that runs each request as a real process on this machine. */
function realNode() {
  const requests: NodeRunRequest[] = [];
  const invoke = (_nodeId: string, request: NodeRunRequest) => {
    requests.push(request);
    return new Promise<NodeRunResult>((resolve) => {
      execFile(
        request.argv[0]!,
        request.argv.slice(1),
        { cwd: request.cwd, env: request.env, timeout: request.timeoutMs },
        (error, stdout, stderr) =>
          resolve({
            exitCode: error === null ? 0 : typeof error.code === "number" ? error.code : null,
            stdout,
            stderr,
          }),
      );
    });
  };
  return { invoke, requests };
}

function nodeExec(
  options: Partial<NodeHostOptions> = {},
  answers: ExecApprovalDecision[] = [],
  allowlist?: ExecAllowlist,
) {
  const asked: ExecBinding[] = [];
  const transport = realNode();
  const node = new NodeHost({
    nodeId: "build-box",
    workdir: nodeDisk.dir,
    invoke: transport.invoke,
    ...options,
  });
  const exec = createExecTool({
    registry,
    hosts: { node },
    ...(allowlist === undefined ? {} : { allowlist }),
    approve: (binding) => {
      asked.push(binding);
      return answers.shift() ?? "deny";
    },
  });
  return { node, exec, asked, requests: transport.requests };
}

type Result = Record<string, unknown>;

class NodeNotConnected extends Error {
  readonly code = "NODE_NOT_CONNECTED";
}

describe("NodeHost with a transport", () => {
  it("runs an approved command on the node and reports its output and exit status", async () => {
    const { exec, asked, requests } = nodeExec({}, ["allow-once"]);
    const result = (await exec.execute(
      { command: "echo made > made.txt; cat made.txt; echo oops >&2; exit 3", env: { CI: "1" } },
      context,
    )) as Result;
    expect(result).toMatchObject({
      status: "exited",
      exitCode: 3,
      stdout: "made\n",
      stderr: "oops\n",
      timedOut: false,
    });
    expect(readFileSync(path.join(nodeDisk.dir, "made.txt"), "utf8")).toBe("made\n");
    expect(asked).toHaveLength(1);
    expect(requests).toHaveLength(1);
  });

  it("sends exactly what was approved: the binding's script, cwd, caller env and PATH, on host node:<id>", async () => {
    const { exec, asked, requests } = nodeExec({}, ["allow-once"]);
    await exec.execute({ command: "ls -a", cwd: "sub/../.", env: { CI: "1" } }, context);
    const binding = asked[0]!;
    expect(binding.host).toBe("node:build-box");
    expect(binding.cwd).toBe(nodeDisk.dir);
    expect(binding.invocations).toEqual([
      expect.objectContaining({ argv: ["ls", "-a"], kind: "unresolved", executable: null }),
    ]);
    expect(requests[0]).toMatchObject({
      argv: ["/bin/sh", "-c", binding.script],
      command: binding.script,
      cwd: binding.cwd,
      env: { CI: "1", PATH: DEFAULT_EXEC_PATH },
    });
    expect(requests[0]!.timeoutMs).toBe(30 * 60_000 + NODE_TIMEOUT_MARGIN_MS);
  });

  it("gives the same command another approval key on another node and on the gateway", () => {
    const on = (nodeId: string) =>
      new NodeHost({ nodeId, workdir: "/srv", invoke: realNode().invoke });
    const bind = (host: NodeHost | GatewayHost) =>
      bindCommand("make test", {
        cwd: "/srv",
        host: host.id,
        path: host.path,
        resolveExecutable: host.resolveExecutable,
      }).key;
    expect(bind(on("a"))).toBe(bind(on("a")));
    expect(bind(on("a"))).not.toBe(bind(on("b")));
    expect(bind(on("a"))).not.toBe(bind(new GatewayHost({ roots: ["/srv"] })));
  });

  it("never sends a denied command, and no allowlist entry lets a program on the node run unasked", async () => {
    const allowlist = new ExecAllowlist([{ executable: "ls" }, { executable: "/bin/ls" }]);
    const { exec, asked, requests } = nodeExec({}, ["deny"], allowlist);
    await expect(exec.execute({ command: "ls" }, context)).rejects.toBeInstanceOf(ExecRefusedError);
    expect(asked).toHaveLength(1);
    expect(requests).toEqual([]);
  });

  it("fails the call before asking anyone or sending anything when the node is not ready", async () => {
    const { exec, asked, requests } = nodeExec(
      {
        ready: (nodeId) => {
          throw new NodeNotConnected(`node ${nodeId} is not connected`);
        },
      },
      ["allow-once"],
    );
    await expect(exec.execute({ command: "true" }, context)).rejects.toMatchObject({
      code: "NODE_NOT_CONNECTED",
      message: "node build-box is not connected",
    });
    expect(asked).toEqual([]);
    expect(requests).toEqual([]);
    expect(registry.list()).toEqual([]);
  });

  it("checks again after the approval: a node that left meanwhile gets nothing", async () => {
    let checks = 0;
    const { exec, asked, requests } = nodeExec(
      {
        ready: (nodeId) => {
          if (++checks > 1) throw new NodeNotConnected(`node ${nodeId} disconnected`);
        },
      },
      ["allow-once"],
    );
    await expect(exec.execute({ command: "true" }, context)).rejects.toMatchObject({
      code: "NODE_NOT_CONNECTED",
    });
    expect(asked).toHaveLength(1);
    expect(requests).toEqual([]);
    expect(registry.list()).toEqual([]);
  });

  it("ends the command with exit code null and the reason on stderr when the transport fails", async () => {
    const node = new NodeHost({
      nodeId: "flaky",
      workdir: "/srv",
      invoke: () => Promise.reject(new Error("the node disconnected")),
    });
    const exec = createExecTool({ registry, hosts: { node }, approve: () => "allow-once" });
    expect(await exec.execute({ command: "true" }, context)).toMatchObject({
      status: "exited",
      exitCode: null,
      stdout: "",
      stderr: "node flaky: the node disconnected\n",
    });
  });

  it("explains on stderr a command the node timed out or refused", async () => {
    const node = new NodeHost({
      nodeId: "strict",
      workdir: "/srv",
      invoke: async () => ({
        exitCode: null,
        stdout: "partial",
        stderr: "working",
        timedOut: true,
        error: "SYSTEM_RUN_DENIED: not on the node's allowlist",
      }),
    });
    const exec = createExecTool({ registry, hosts: { node }, approve: () => "allow-once" });
    expect(await exec.execute({ command: "sleep 9" }, context)).toMatchObject({
      exitCode: null,
      stdout: "partial",
      stderr:
        "working\nnode strict: SYSTEM_RUN_DENIED: not on the node's allowlist; the node ended the command at its time limit\n",
    });
  });

  it("kills a backgrounded command here at once and aborts the transport's signal", async () => {
    let seen: AbortSignal | undefined;
    const node = new NodeHost({
      nodeId: "slow",
      workdir: "/srv",
      invoke: (_id, request) => {
        seen = request.signal;
        return new Promise(() => {}); // the node never answers
      },
    });
    const exec = createExecTool({
      registry,
      hosts: { node },
      approve: () => "allow-once",
      yieldAfterMs: 50,
    });
    const started = (await exec.execute({ command: "sleep 600" }, context)) as Result;
    expect(started).toMatchObject({ status: "running", backgrounded: true, pid: 0 });
    const process = createProcessTool(registry);
    const killed = (await process.execute(
      { action: "kill", slug: started.slug as string },
      context,
    )) as { process: Result };
    expect(killed.process).toMatchObject({ status: "exited", killed: true, signal: "SIGTERM" });
    expect(seen?.aborted).toBe(true);
  });

  it("ends a command at the registry's time limit even when the node keeps it", async () => {
    const node = new NodeHost({
      nodeId: "slow",
      workdir: "/srv",
      invoke: () => new Promise(() => {}),
    });
    const exec = createExecTool({ registry, hosts: { node }, approve: () => "allow-once" });
    const result = (await exec.execute(
      { command: "sleep 600", timeoutMs: 100 },
      context,
    )) as Result;
    expect(result).toMatchObject({ status: "exited", timedOut: true, exitCode: null });
  });

  it("refuses stdin, which a node cannot take, before asking or sending anything", async () => {
    const { exec, asked, requests } = nodeExec({}, ["allow-once"]);
    await expect(exec.execute({ command: "cat", stdin: "data" }, context)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(asked).toEqual([]);
    expect(requests).toEqual([]);
  });

  it("resolves the working directory on the node: workdir by default, relative to it, absolute as given", () => {
    const node = new NodeHost({ nodeId: "n", workdir: "/srv/work", invoke: realNode().invoke });
    expect(node.resolveCwd()).toBe("/srv/work");
    expect(node.resolveCwd("repo/../src")).toBe("/srv/work/src");
    expect(node.resolveCwd("/opt/x/")).toBe("/opt/x");
    const bare = new NodeHost({ nodeId: "n", invoke: realNode().invoke });
    expect(() => bare.resolveCwd()).toThrow(expect.objectContaining({ reason: "cwd" }));
    expect(() => bare.resolveCwd("relative")).toThrow(ExecRefusedError);
    expect(bare.resolveCwd("/abs")).toBe("/abs");
  });

  it("refuses an unusable node id, workdir or shell with InvalidArgumentError", () => {
    const invoke = realNode().invoke;
    expect(() => new NodeHost({ nodeId: "", invoke })).toThrow(InvalidArgumentError);
    expect(() => new NodeHost({ nodeId: "a b", invoke })).toThrow(InvalidArgumentError);
    expect(() => new NodeHost({ nodeId: "n", workdir: "relative", invoke })).toThrow(
      InvalidArgumentError,
    );
    expect(() => new NodeHost({ nodeId: "n", shell: "sh", invoke })).toThrow(InvalidArgumentError);
  });
});
