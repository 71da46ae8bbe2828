/**
 * The tools as a user runs them: the built `dist/cli.js` in a child process with a
 * `beamclaw.yaml` that enables them, a scripted OpenAI-compatible model, an operator over a
 * real socket, and the process table read through /proc.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, realpathSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { closeClients, TestClient, useSchemaCheck, waitFor } from "./support.js";
import { closeModelServers, groupMembers, modelServer, toolResults } from "./tools-support.js";

useSchemaCheck();

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const TOKEN = "cli-tools-token-0123456789";
const children: ChildProcess[] = [];
const dirs: string[] = [];
const leftovers: number[] = [];

beforeAll(() => {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: build first (pnpm --filter @beamclaw/gateway-ws build)`);
});

afterEach(async () => {
  await closeClients();
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  }
  // A safety net for a failing test: a passing one leaves nothing to kill.
  for (const pid of leftovers.splice(0)) {
    for (const member of groupMembers(pid)) process.kill(member, "SIGKILL");
  }
  await closeModelServers();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, BEAMCLAW_CONFIG: undefined, BEAMCLAW_GATEWAY_TOKEN: TOKEN, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString("utf8");
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString("utf8");
  });
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exit };
}

async function configDir(yaml: string): Promise<string> {
  const dir = realpathSync(await mkdtemp(join(tmpdir(), "bc-cli-tools-")));
  dirs.push(dir);
  await writeFile(
    join(dir, "beamclaw.yaml"),
    `gateway: { host: 127.0.0.1, auth: { mode: token, token: \${BEAMCLAW_GATEWAY_TOKEN} } }\nstore: { kind: memory }\n${yaml}\n`,
  );
  return dir;
}

describe("beamclaw gateway with tools.exec", () => {
  it("asks before running a command, and leaves no process behind after SIGTERM", async () => {
    const model = await modelServer((body) =>
      body.messages.at(-1)?.role === "tool"
        ? { text: "started" }
        : {
            toolCalls: [
              { name: "exec", input: { command: "sleep 301 & sleep 300", background: true } },
            ],
          },
    );
    const dir = await configDir(
      [
        `providers: { local: { kind: openai-compatible, baseUrl: "${model.baseUrl}", apiKey: none } }`,
        "agents: { main: { model: local/m, tools: [exec, process] } }",
        "tools: { exec: { enabled: true, host: gateway, roots: [./work] } }",
      ].join("\n"),
    );
    mkdirSync(join(dir, "work"));
    const gateway = run(["gateway", "--port", "0", "--config", join(dir, "beamclaw.yaml")]);
    const port = await waitFor(
      `the gateway to listen (stderr: ${gateway.stderr()})`,
      () => {
        if (gateway.child.exitCode !== null)
          throw new Error(`the gateway exited: ${gateway.stderr()}`);
        const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stdout());
        return match === null ? undefined : Number(match[1]);
      },
      15_000,
    );
    expect(gateway.stderr()).toContain(
      "exec: hosts gateway; commands need approval (on-miss) unless allowlisted",
    );
    const operator = await TestClient.connect(`ws://127.0.0.1:${port}`, { token: TOKEN });
    await operator.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "start the sleepers",
      idempotencyKey: "cli-exec-1",
    });
    const asked = await operator.waitEvent("exec.approval.requested", () => true, 10_000);
    expect(asked.payload.request.input).toMatchObject({
      command: "sleep 301 & sleep 300",
      host: "gateway",
      cwd: join(dir, "work"),
    });
    expect(model.bodies).toHaveLength(1); // nothing ran: the tool call waits for the answer
    await operator.request("exec.approval.resolve", {
      id: asked.payload.id,
      decision: "allow-once",
    });
    await operator.waitEvent(
      "chat",
      (p) => p.runId === "cli-exec-1" && p.state === "final",
      15_000,
    );
    const [result] = toolResults(model.bodies[1]!);
    expect(result).toMatchObject({ status: "running", backgrounded: true });
    const pgid = result.pid as number;
    leftovers.push(pgid);
    expect(await waitFor("both sleepers", () => groupMembers(pgid).length >= 2)).toBe(true);

    gateway.child.kill("SIGTERM");
    expect(await gateway.exit).toBe(0);
    expect(groupMembers(pgid)).toEqual([]);
  });
});

describe("beamclaw doctor with tools and skills", () => {
  it("reports gated skills, skills an agent will not get, and an exec root that does not exist", async () => {
    const dir = await configDir(
      [
        'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
        "skills: { dirs: [./skills] }",
        "agents: { main: { model: local/m, skills: [greet, nope], tools: [exec] } }",
        "tools: { exec: { enabled: true, host: gateway, roots: [./missing] }, approvals: { mode: off } }",
      ].join("\n"),
    );
    for (const [name, extra] of [
      ["greet", ""],
      ["needs-tool", "requires:\n  bins: [definitely-not-installed-xyz]\n"],
    ] as const) {
      mkdirSync(join(dir, "skills", name), { recursive: true });
      await writeFile(
        join(dir, "skills", name, "SKILL.md"),
        `---\nname: ${name}\ndescription: ${name}\n${extra}---\nBody.\n`,
      );
    }
    const doctor = run(["doctor", "--config", join(dir, "beamclaw.yaml")]);
    expect(await doctor.exit).toBe(1);
    const out = doctor.stdout();
    expect(out).toContain(`ok    skills: 1 eligible (greet) in ${join(dir, "skills")}`);
    expect(out).toContain(
      "warn  skill needs-tool is gated off: missing binary definitely-not-installed-xyz",
    );
    expect(out).toContain("warn  agents.main: skill nope is not in any skills directory");
    expect(out).toMatch(
      /ERROR tools\.exec\.roots: working-directory root .*missing does not exist/,
    );
    expect(out).toContain(
      "warn  tools.exec is enabled and tools.approvals.mode is off: only allowlisted commands run",
    );
  });

  it("passes exec in a real bubblewrap sandbox and web_fetch, and says which agents cannot use them", async () => {
    const dir = await configDir(
      [
        'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
        "agents: { main: { model: local/m } }",
        "tools:",
        "  exec: { enabled: true, host: sandbox, roots: [./work], allowlist: [{ executable: git, argv: [status] }] }",
        "  webFetch: { enabled: true, allow: [10.0.0.0/8] }",
      ].join("\n"),
    );
    mkdirSync(join(dir, "work"));
    const doctor = run(["doctor", "--config", join(dir, "beamclaw.yaml")]);
    expect(await doctor.exit).toBe(0);
    const out = doctor.stdout();
    expect(out).toContain(
      "ok    tools.exec: hosts sandbox:bubblewrap (default sandbox), 1 allowlist entry",
    );
    expect(out).toContain('warn  tools.exec is enabled but no agent lists "exec"');
    expect(out).toContain("ok    tools.webFetch: on, internal hosts allowed: 10.0.0.0/8");
  });
});
