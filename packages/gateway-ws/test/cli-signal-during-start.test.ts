/**
 * SIGTERM / SIGINT while `beamclaw gateway` is still starting: the built `dist/cli.js` in a
 * child process, with the fs store and a stdio MCP server that is slow to answer
 * `initialize` (test/fixtures/slow-mcp-server.mjs). The signal comes while the gateway waits
 * for that server; what had started is stopped (the MCP server's process ended, the store
 * closed and its lock released, no port left bound) and the exit code is a signal's after
 * start: 0.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { canListen, freePort, waitFor } from "./support.js";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const SLOW_MCP = fileURLToPath(new URL("./fixtures/slow-mcp-server.mjs", import.meta.url));
const TOKEN = "cli-signal-start-token-0123456789";
const children: ChildProcess[] = [];
const pids: number[] = [];
const dirs: string[] = [];

beforeAll(() => {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: build first (pnpm --filter @beamclaw/gateway-ws build)`);
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  }
  // An MCP server a failed run left behind (never pid 0 or 1: kill(0) is this process group).
  for (const pid of pids.splice(0)) if (pid > 1 && alive(pid)) process.kill(pid, "SIGKILL");
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 1) throw new Error(`not a child's pid: ${pid}`);
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function slowStartConfig(
  port: number,
  delayMs = 1_500,
  connectTimeoutMs = 15_000,
): Promise<{ dir: string; pidFile: string }> {
  const dir = await mkdtemp(join(tmpdir(), "bc-cli-signal-"));
  dirs.push(dir);
  const pidFile = join(dir, "mcp.pid");
  await writeFile(
    join(dir, "beamclaw.yaml"),
    [
      `gateway: { host: 127.0.0.1, port: ${port}, auth: { mode: token, token: \${BEAMCLAW_GATEWAY_TOKEN} } }`,
      "store: { kind: fs, dir: ./.beamclaw }",
      'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
      'agents: { main: { model: local/m, tools: ["*"] } }',
      "tools:",
      "  mcpServers:",
      `    slow: { command: ${JSON.stringify(process.execPath)}, args: [${JSON.stringify(SLOW_MCP)}, ${JSON.stringify(pidFile)}, "${delayMs}"], connectTimeoutMs: ${connectTimeoutMs} }`,
      "",
    ].join("\n"),
  );
  return { dir, pidFile };
}

function run(dir: string): {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
} {
  const child = spawn(process.execPath, [CLI, "gateway", "--config", join(dir, "beamclaw.yaml")], {
    env: { ...process.env, BEAMCLAW_CONFIG: undefined, BEAMCLAW_GATEWAY_TOKEN: TOKEN },
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
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => out, stderr: () => err, exit };
}

describe("beamclaw gateway: a signal while starting", () => {
  it.each([
    ["SIGTERM", 1_500, 15_000],
    ["SIGINT", 1_500, 15_000],
    // A server that never answers, under a connect limit longer than the test's: the start
    // is cancelled, not waited out.
    ["SIGTERM", 600_000, 120_000],
  ] as const)(
    "%s while an MCP server starts (answering after %i ms) stops what had started and exits 0",
    async (signal, delayMs, connectTimeoutMs) => {
      const port = await freePort();
      const { dir, pidFile } = await slowStartConfig(port, delayMs, connectTimeoutMs);
      const gateway = run(dir);
      // The MCP server's process is up and waiting to answer `initialize`: the gateway is
      // past opening the store and still starting.
      const pid = await waitFor(
        `the MCP server to be spawned (stderr: ${gateway.stderr()})`,
        () => {
          if (gateway.child.exitCode !== null) {
            throw new Error(`the gateway exited: ${gateway.stderr()}`);
          }
          // A positive pid, never 0: signalling pid 0 reaches this whole process group.
          const text = existsSync(pidFile) ? readFileSync(pidFile, "utf8").trim() : "";
          return /^[1-9][0-9]*$/.test(text) ? Number(text) : undefined;
        },
        15_000,
      );
      pids.push(pid);
      expect(alive(pid)).toBe(true);
      expect(existsSync(join(dir, ".beamclaw", "store.lock"))).toBe(true);
      expect(gateway.stdout()).not.toContain("listening");
      gateway.child.kill(signal);
      expect(await gateway.exit).toEqual({ code: 0, signal: null });
      expect(gateway.stdout()).not.toContain("listening");
      expect(gateway.stdout()).toContain(`${signal} while starting`);
      expect(gateway.stdout()).toMatch(/stopped\n$/);
      expect(gateway.stderr()).not.toMatch(/^\s+at\s/m);
      // The MCP server's process was ended, the store closed (its lock released), and the
      // port is free.
      expect(alive(pid)).toBe(false);
      expect(existsSync(join(dir, ".beamclaw", "store.lock"))).toBe(false);
      expect(await canListen(port)).toBe(true);
    },
    30_000,
  );
});
