/**
 * The tools `beamclaw gateway` builds from `beamclaw.yaml`, started in this process with
 * `startFromConfig` (the CLI's own bootstrap) over real sockets on 127.0.0.1: a scripted
 * OpenAI-compatible model, operators and a paired node as `ws` clients.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createDeviceIdentity } from "../src/auth/device-identity.js";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import { closeClients, TestClient, useSchemaCheck, type Wire } from "./support.js";
import {
  type ChatBody,
  closeModelServers,
  killNodeChildren,
  type ModelReply,
  modelServer,
  pairedNode,
  toolResults,
} from "./tools-support.js";

useSchemaCheck();

const TOKEN = "tools-test-token-0123456789";
const started: StartedGateway[] = [];
const dirs: string[] = [];
const pages: Server[] = [];

afterEach(async () => {
  await closeClients();
  for (const gateway of started.splice(0)) await gateway.stop();
  await killNodeChildren();
  await closeModelServers();
  for (const page of pages.splice(0)) {
    page.closeAllConnections();
    await new Promise((resolve) => page.close(resolve));
  }
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(prefix: string): Promise<string> {
  const dir = realpathSync(await mkdtemp(join(tmpdir(), prefix)));
  dirs.push(dir);
  return dir;
}

/** Writes `beamclaw.yaml` (gateway on port 0, memory store, the scripted model) plus `yaml`. */
async function writeConfig(dir: string, baseUrl: string, yaml: string): Promise<string> {
  const file = join(dir, "beamclaw.yaml");
  await writeFile(
    file,
    [
      "store: { kind: memory }",
      `providers: { local: { kind: openai-compatible, baseUrl: "${baseUrl}", apiKey: none } }`,
      yaml,
      "",
    ].join("\n"),
  );
  return file;
}

const GATEWAY = (extra = "") =>
  `gateway: { host: 127.0.0.1, auth: { mode: token, token: \${GW_TOKEN}, autoApproveLoopback: false }${extra} }`;

async function start(configPath: string): Promise<StartedGateway & { logs: string[] }> {
  const logs: string[] = [];
  const gateway = await startFromConfig({
    configPath,
    env: { GW_TOKEN: TOKEN },
    port: 0,
    logSink: (line) => logs.push(line),
  });
  started.push(gateway);
  return Object.assign(gateway, { logs });
}

async function operator(gateway: StartedGateway): Promise<TestClient> {
  return TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, { token: TOKEN });
}

/** Sends a chat message and waits for the run's end; resolves with the final chat event. */
async function chat(
  client: TestClient,
  message: string,
  runId: string,
  sessionKey = "agent:main:main",
): Promise<Wire> {
  await client.request("chat.send", { sessionKey, message, idempotencyKey: runId });
  const end = await client.waitEvent(
    "chat",
    (p) => p.runId === runId && p.state !== "delta",
    15_000,
  );
  expect(end.payload.state).toBe("final");
  return end.payload;
}

/** The model calls `calls` on its first turn of every run, then answers "done". */
function callsThenDone(calls: ModelReply["toolCalls"][]) {
  let run = 0;
  return (body: ChatBody): ModelReply => {
    const last = body.messages.at(-1);
    if (last?.role === "tool") return { text: "done" };
    return { toolCalls: calls[run++] ?? [] };
  };
}

describe("exec on a paired node (tools.exec.host: node)", () => {
  async function nodeStack() {
    const device = createDeviceIdentity();
    const nodeRoot = await tempDir("bc-node-");
    const configDir = await tempDir("bc-cfg-");
    return { device, nodeRoot, configDir };
  }

  it("runs a command on the node after an operator approves it, bound to host node:<id>", async () => {
    const { device, nodeRoot, configDir } = await nodeStack();
    const model = await modelServer(
      callsThenDone([
        [{ name: "exec", input: { command: "echo hello > greeting.txt && cat greeting.txt" } }],
      ]),
    );
    const gateway = await start(
      await writeConfig(
        configDir,
        model.baseUrl,
        `${GATEWAY()}
agents: { main: { model: local/m, tools: [exec, process] } }
tools:
  approvals: { mode: on-miss }
  exec: { enabled: true, host: node, node: { nodeId: ${device.deviceId}, workdir: "${nodeRoot}" } }`,
      ),
    );
    const admin = await operator(gateway);
    const { runs } = await pairedNode(
      `ws://127.0.0.1:${gateway.address.port}`,
      TOKEN,
      device,
      admin,
      nodeRoot,
    );
    const done = chat(admin, "greet", "run-node-1");
    const asked = await admin.waitEvent("exec.approval.requested", () => true, 10_000);
    expect(asked.payload.request).toMatchObject({
      toolName: "exec",
      input: {
        command: "echo hello > greeting.txt && cat greeting.txt",
        cwd: nodeRoot,
        host: `node:${device.deviceId}`,
      },
    });
    expect(asked.payload.request.display).toContain(
      `host node:${device.deviceId}, cwd ${nodeRoot}`,
    );
    expect(runs).toEqual([]);
    await admin.request("exec.approval.resolve", {
      id: asked.payload.id,
      decision: "allow-once",
    });
    await done;
    expect(model.bodies[0]!.tools?.map((t) => t.function.name).sort()).toEqual(["exec", "process"]);
    expect(toolResults(model.bodies[1]!)).toEqual([
      expect.objectContaining({ status: "exited", exitCode: 0, stdout: "hello\n" }),
    ]);
    expect(runs).toEqual([
      expect.objectContaining({
        command: ["/bin/sh", "-c", expect.stringContaining("greeting.txt")],
        cwd: nodeRoot,
        approved: true,
        approvalDecision: "allow-once",
        env: { PATH: expect.stringContaining("/usr/bin") },
      }),
    ]);
    expect(runs[0]!.rawCommand).toBe(runs[0]!.command[2]);
    expect(readFileSync(join(nodeRoot, "greeting.txt"), "utf8")).toBe("hello\n");
  });

  it("sends nothing to the node when the operator denies the command", async () => {
    const { device, nodeRoot, configDir } = await nodeStack();
    const model = await modelServer(
      callsThenDone([[{ name: "exec", input: { command: "touch denied.txt" } }]]),
    );
    const gateway = await start(
      await writeConfig(
        configDir,
        model.baseUrl,
        `${GATEWAY()}
agents: { main: { model: local/m, tools: ["*"] } }
tools:
  exec: { enabled: true, host: node, node: { nodeId: ${device.deviceId}, workdir: "${nodeRoot}" } }`,
      ),
    );
    const admin = await operator(gateway);
    const { runs } = await pairedNode(
      `ws://127.0.0.1:${gateway.address.port}`,
      TOKEN,
      device,
      admin,
      nodeRoot,
    );
    const done = chat(admin, "touch it", "run-node-2");
    const asked = await admin.waitEvent("exec.approval.requested", () => true, 10_000);
    await admin.request("exec.approval.resolve", { id: asked.payload.id, decision: "deny" });
    await done;
    expect(String(toolResults(model.bodies[1]!)[0])).toContain("denied");
    expect(runs).toEqual([]);
    expect(existsSync(join(nodeRoot, "denied.txt"))).toBe(false);
  });

  it("fails the call before asking anyone when the node is not connected", async () => {
    const { device, nodeRoot, configDir } = await nodeStack();
    const model = await modelServer(
      callsThenDone([[{ name: "exec", input: { command: "true" } }]]),
    );
    const gateway = await start(
      await writeConfig(
        configDir,
        model.baseUrl,
        `${GATEWAY()}
agents: { main: { model: local/m, tools: [exec] } }
tools:
  exec: { enabled: true, host: node, node: { nodeId: ${device.deviceId}, workdir: "${nodeRoot}" } }`,
      ),
    );
    const admin = await operator(gateway);
    await chat(admin, "run", "run-node-3");
    expect(String(toolResults(model.bodies[1]!)[0])).toContain(
      `node ${device.deviceId} is not connected`,
    );
    expect(admin.events.filter((e) => e.event === "exec.approval.requested")).toEqual([]);
  });
});

describe("exec on this machine (host gateway or sandbox)", () => {
  it("runs an approved command in a real bubblewrap sandbox, writable only in its root", async () => {
    const configDir = await tempDir("bc-cfg-");
    mkdirSync(join(configDir, "work"));
    // Writable for this process, read-only inside the sandbox.
    const outside = join("/var/tmp", `bc-escaped-${process.pid}-${Date.now()}.txt`);
    const model = await modelServer(
      callsThenDone([
        [{ name: "exec", input: { command: `echo inside > made.txt; touch ${outside}` } }],
      ]),
    );
    const gateway = await start(
      await writeConfig(
        configDir,
        model.baseUrl,
        `${GATEWAY()}
agents: { main: { model: local/m, tools: [exec] } }
tools: { exec: { enabled: true, host: sandbox, sandbox: { driver: bubblewrap }, roots: [./work] } }`,
      ),
    );
    const admin = await operator(gateway);
    const done = chat(admin, "write", "run-sb-1");
    const asked = await admin.waitEvent("exec.approval.requested", () => true, 10_000);
    expect(asked.payload.request.input).toMatchObject({
      host: "sandbox:bubblewrap",
      cwd: join(configDir, "work"),
    });
    await admin.request("exec.approval.resolve", { id: asked.payload.id, decision: "allow-once" });
    await done;
    const [result] = toolResults(model.bodies[1]!);
    expect(result).toMatchObject({ status: "exited" });
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toMatch(/Read-only file system/);
    expect(readFileSync(join(configDir, "work", "made.txt"), "utf8")).toBe("inside\n");
    expect(existsSync(outside)).toBe(false);
  });

  it("asks the operator again before the process tool types into an approved sandboxed shell", async () => {
    const configDir = await tempDir("bc-cfg-");
    mkdirSync(join(configDir, "work"));
    // exec `sh` in the background, then write a command into it.
    const model = await modelServer((body) => {
      const results = toolResults(body);
      if (results.length === 0) {
        return { toolCalls: [{ name: "exec", input: { command: "sh", background: true } }] };
      }
      if (results.length === 1) {
        const slug = results[0]!.slug as string;
        const input = { action: "write", slug, data: "touch planted.txt\n", eof: true };
        return { toolCalls: [{ name: "process", input }] };
      }
      return { text: "done" };
    });
    const gateway = await start(
      await writeConfig(
        configDir,
        model.baseUrl,
        `${GATEWAY()}
agents: { main: { model: local/m, tools: [exec, process] } }
tools: { exec: { enabled: true, host: sandbox, sandbox: { driver: bubblewrap }, roots: [./work] } }`,
      ),
    );
    const admin = await operator(gateway);
    const done = chat(admin, "type", "run-write-1");
    const command = await admin.waitEvent("exec.approval.requested", () => true, 10_000);
    expect(command.payload.request).toMatchObject({ toolName: "exec", input: { command: "sh" } });
    await admin.request("exec.approval.resolve", {
      id: command.payload.id,
      decision: "allow-once",
    });
    const write = await admin.waitEvent(
      "exec.approval.requested",
      (p) => p.request.toolName === "process",
      10_000,
    );
    const slug = toolResults(model.bodies[1]!)[0]!.slug;
    expect(write.payload.request.input).toMatchObject({
      slug,
      command: "sh",
      data: "touch planted.txt\n",
      eof: true,
    });
    expect(write.payload.request.display).toContain("command approved before: sh");
    await admin.request("exec.approval.resolve", { id: write.payload.id, decision: "deny" });
    await done;
    expect(JSON.stringify(toolResults(model.bodies[2]!)[1])).toMatch(/denied/);
    expect(existsSync(join(configDir, "work", "planted.txt"))).toBe(false);
  });

  it("runs only allowlisted commands when approvals are off, and follows allowlist changes live", async () => {
    const configDir = await tempDir("bc-cfg-");
    mkdirSync(join(configDir, "work"));
    const model = await modelServer(
      callsThenDone([
        [
          { name: "exec", input: { command: "ls -a" } },
          { name: "exec", input: { command: "touch made.txt" } },
        ],
        [{ name: "exec", input: { command: "ls -a" } }],
      ]),
    );
    const yaml = (allowlist: string) => `${GATEWAY()}
agents: { main: { model: local/m, tools: [exec] } }
tools:
  approvals: { mode: off }
  exec: { enabled: true, host: gateway, roots: [./work], allowlist: ${allowlist} }`;
    const configPath = await writeConfig(configDir, model.baseUrl, yaml("[{ executable: ls }]"));
    const gateway = await start(configPath);
    expect(gateway.logs.join("\n")).toContain("only allowlisted commands run");
    const admin = await operator(gateway);
    await chat(admin, "look", "run-gw-1");
    const [listed, touched] = toolResults(model.bodies[1]!);
    expect(listed).toMatchObject({ status: "exited", exitCode: 0 });
    expect(listed.stdout).toContain("..");
    expect(String(touched)).toContain("needs approval and no approver is configured");
    expect(existsSync(join(configDir, "work", "made.txt"))).toBe(false);

    await writeConfig(configDir, model.baseUrl, yaml("[]"));
    const diff = await gateway.configService.reload();
    expect(diff).toMatchObject({ applied: ["tools.exec.allowlist"], restartRequired: [] });
    await chat(admin, "look again", "run-gw-2");
    expect(String(toolResults(model.bodies[3]!).at(-1))).toContain("needs approval");
  });

  it("keeps a long output within tools.maxOutputBytes itself (its end kept), live, so the result is never cut mid-JSON", async () => {
    const configDir = await tempDir("bc-cfg-");
    mkdirSync(join(configDir, "work"));
    // About 24 KB of output: over a cap of 8 KiB, under the default 64 KiB.
    const model = await modelServer(
      callsThenDone([
        [{ name: "exec", input: { command: "seq 1 5000" } }],
        [{ name: "exec", input: { command: "seq 1 5000" } }],
      ]),
    );
    const yaml = (cap: number) => `${GATEWAY()}
agents: { main: { model: local/m, tools: [exec] } }
tools:
  maxOutputBytes: ${cap}
  approvals: { mode: off }
  exec: { enabled: true, host: gateway, roots: [./work], allowlist: [{ executable: seq }] }`;
    const configPath = await writeConfig(configDir, model.baseUrl, yaml(8192));
    const gateway = await start(configPath);
    const admin = await operator(gateway);
    await chat(admin, "count", "run-cap-1");
    const [small] = toolResults(model.bodies[1]!);
    // A whole result (not the runner's cut text), with the end of the output.
    expect(small).toMatchObject({ status: "exited", exitCode: 0 });
    expect(small.stdout.endsWith("4999\n5000\n")).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(small))).toBeLessThanOrEqual(8192);
    // The cap follows the file live: the same output now fits whole.
    await writeConfig(configDir, model.baseUrl, yaml(65_536));
    await gateway.configService.reload();
    await chat(admin, "count again", "run-cap-2");
    // The run's own result: the last of the history sent.
    const large = toolResults(model.bodies[3]!).at(-1)!;
    expect(large.stdout.startsWith("1\n2\n3\n")).toBe(true);
    expect(large.stdout.endsWith("4999\n5000\n")).toBe(true);
  });

  it("refuses to start when a root does not exist, naming tools.exec.roots", async () => {
    const configDir = await tempDir("bc-cfg-");
    const configPath = await writeConfig(
      configDir,
      "http://127.0.0.1:9/v1",
      `${GATEWAY()}
agents: { main: { model: local/m } }
tools: { exec: { enabled: true, host: gateway, roots: [./missing] } }`,
    );
    await expect(
      startFromConfig({ configPath, env: { GW_TOKEN: TOKEN }, port: 0 }),
    ).rejects.toThrow(/tools\.exec\.roots: .*missing does not exist/);
  });

  it("keeps background commands in the registry the gateway stops: nothing survives stop()", async () => {
    const configDir = await tempDir("bc-cfg-");
    mkdirSync(join(configDir, "work"));
    const model = await modelServer(
      callsThenDone([[{ name: "exec", input: { command: "sleep 300", background: true } }]]),
    );
    const gateway = await start(
      await writeConfig(
        configDir,
        model.baseUrl,
        `${GATEWAY()}
agents: { main: { model: local/m, tools: [exec, process] } }
tools:
  exec: { enabled: true, host: gateway, roots: [./work], allowlist: [{ executable: sleep }] }`,
      ),
    );
    const admin = await operator(gateway);
    await chat(admin, "sleep", "run-gw-3");
    const [result] = toolResults(model.bodies[1]!);
    expect(result).toMatchObject({ status: "running", backgrounded: true });
    const pid = result.pid as number;
    expect(gateway.tools.processes?.list()).toEqual([expect.objectContaining({ pid })]);
    await gateway.stop();
    started.splice(started.indexOf(gateway), 1);
    expect(isAlive(pid)).toBe(false);
  });
});

describe("web_fetch, skills and allowed origins from the configuration", () => {
  it("offers web_fetch when enabled (reaching an allowed internal host) and withdraws it live", async () => {
    const page = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(
        "<html><head><title>Wiki</title></head><body><main><p>Internal page</p></main></body></html>",
      );
    });
    pages.push(page);
    await new Promise<void>((resolve) => page.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(page.address() as { port: number }).port}/`;
    const configDir = await tempDir("bc-cfg-");
    const model = await modelServer(callsThenDone([[{ name: "web_fetch", input: { url } }]]));
    const yaml = (enabled: boolean) => `${GATEWAY()}
agents: { main: { model: local/m, tools: ["*"] } }
tools:
  approvals: { mode: off }
  webFetch: { enabled: ${enabled}, allow: [127.0.0.1] }`;
    const configPath = await writeConfig(configDir, model.baseUrl, yaml(true));
    const gateway = await start(configPath);
    const admin = await operator(gateway);
    await chat(admin, "read", "run-wf-1");
    expect(toolResults(model.bodies[1]!)[0]).toMatchObject({
      status: 200,
      title: "Wiki",
      content: expect.stringContaining("Internal page"),
    });
    await writeConfig(configDir, model.baseUrl, yaml(false));
    expect(await gateway.configService.reload()).toMatchObject({
      applied: ["tools.webFetch.enabled"],
    });
    expect(gateway.tools.names()).toEqual([]);
    const catalog = await admin.request("tools.catalog", {});
    expect(catalog.groups).toEqual([]);
  });

  it("puts each agent's selected eligible skills in its prompt, and skills.status reports exactly that", async () => {
    const configDir = await tempDir("bc-cfg-");
    const skill = async (name: string, extra = "") => {
      mkdirSync(join(configDir, "skills", name), { recursive: true });
      await writeFile(
        join(configDir, "skills", name, "SKILL.md"),
        `---\nname: ${name}\ndescription: The ${name} skill\n${extra}---\nUse ${name} well.\n`,
      );
    };
    await skill("greet");
    await skill("summarize");
    await skill("needs-tool", "requires:\n  bins: [definitely-not-installed-xyz]\n");
    const model = await modelServer(() => ({ text: "hi" }));
    const gateway = await start(
      await writeConfig(
        configDir,
        model.baseUrl,
        `${GATEWAY()}
skills: { dirs: [./skills] }
agents:
  main: { model: local/m }
  ops: { model: local/m, skills: [greet, needs-tool] }`,
      ),
    );
    const gated = (l: string) =>
      l.endsWith(" info skill needs-tool is off: missing binary definitely-not-installed-xyz");
    expect(gateway.logs.some(gated)).toBe(true);
    // Logged before the gateway existed, it is in its log (`logs.tail`) too, once, ahead of
    // the gateway's own lines.
    const tail = gateway.gateway.log.tail({ limit: 2000 }).lines;
    expect(tail.filter(gated)).toHaveLength(1);
    expect(tail.findIndex(gated)).toBeLessThan(tail.findIndex((l) => l.includes("listening")));
    const admin = await operator(gateway);
    await chat(admin, "hi", "run-sk-1", "agent:main:main");
    await chat(admin, "hi", "run-sk-2", "agent:ops:main");
    const system = (body: ChatBody) =>
      body.messages.find((m) => m.role === "system")?.content ?? "";
    expect(system(model.bodies[0]!)).toContain("## Skill: greet");
    expect(system(model.bodies[0]!)).toContain("## Skill: summarize");
    expect(system(model.bodies[1]!)).toContain("## Skill: greet");
    expect(system(model.bodies[1]!)).not.toContain("summarize");
    for (const body of model.bodies) expect(system(body)).not.toContain("needs-tool");

    const status = await admin.request("skills.status", { agentId: "ops" });
    expect(status.dirs).toEqual([join(configDir, "skills")]);
    expect(status.skills).toEqual([
      expect.objectContaining({ name: "greet", eligible: true, enabled: true }),
      expect.objectContaining({ name: "summarize", eligible: true, enabled: false }),
      expect.objectContaining({
        name: "needs-tool",
        eligible: false,
        enabled: false,
        missing: ["missing binary definitely-not-installed-xyz"],
      }),
    ]);
    const main = await admin.request("skills.status", { agentId: "main" });
    expect(
      main.skills.filter((s: { enabled: boolean }) => s.enabled).map((s: Wire) => s.name),
    ).toEqual(["greet", "summarize"]);
  });

  it("allows the browser origins of gateway.allowedOrigins, and follows changes live", async () => {
    const configDir = await tempDir("bc-cfg-");
    const yaml = (origins: string) =>
      `${GATEWAY(`, allowedOrigins: ${origins}`)}\nagents: { main: { model: local/m } }`;
    const configPath = await writeConfig(
      configDir,
      "http://127.0.0.1:9/v1",
      yaml('["http://ops.example.test"]'),
    );
    const gateway = await start(configPath);
    const url = `ws://127.0.0.1:${gateway.address.port}`;
    expect(await upgrade(url, "http://ops.example.test")).toBe("open");
    expect(await upgrade(url, "http://evil.example.test")).toBe(403);
    await writeConfig(configDir, "http://127.0.0.1:9/v1", yaml("[]"));
    expect(await gateway.configService.reload()).toMatchObject({
      applied: ["gateway.allowedOrigins"],
    });
    expect(await upgrade(url, "http://ops.example.test")).toBe(403);
  });
});

/** Opens a WebSocket with an `Origin` header: `open`, or the HTTP status it was refused with. */
function upgrade(url: string, origin: string): Promise<"open" | number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { origin });
    ws.once("open", () => {
      ws.once("close", () => resolve("open"));
      ws.terminate();
    });
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      ws.terminate();
      resolve(res.statusCode ?? 0);
    });
    ws.once("error", (error) => {
      if (ws.readyState !== WebSocket.CLOSED) reject(error);
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}
