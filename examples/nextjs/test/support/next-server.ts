/**
 * Runs a real Next.js server (`next start` or `next dev`) as a child process on 127.0.0.1,
 * in its own process group so that stopping it also stops every process it started.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import type { RuntimeHealth } from "../../lib/runtime";

const require = createRequire(import.meta.url);
/** The `next` command, run with the Node.js that runs the tests. */
const NEXT_BIN = require.resolve("next/dist/bin/next");

export interface NextServer {
  readonly url: string;
  readonly pid: number;
  /** Everything the server printed so far (for failure messages). */
  output(): string;
  /** Resolves when the server's process (the group's leader) has exited. */
  readonly exited: Promise<void>;
  /** Stops the process group (SIGTERM, then SIGKILL) and waits until no process of it is left. */
  stop(): Promise<void>;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The environment of the server: the test runner's, without what marks it as a test. */
function serverEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key === "NODE_ENV" || key === "TEST" || key.startsWith("VITEST")) delete env[key];
  }
  return { ...env, NEXT_TELEMETRY_DISABLED: "1", ...extra };
}

const live = new Set<ChildProcess>();
// Last resort if the test process dies without its afterAll: no server outlives it.
process.once("exit", () => {
  for (const child of live) killGroup(child, "SIGKILL");
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** True while any process of the group `pgid` exists. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Starts `next <command>` in `cwd` and resolves once `/api/health` answers (which also starts
 * the app's runtime).
 */
export async function startNext(options: {
  command: "start" | "dev";
  cwd: string;
  env?: Record<string, string>;
  readyTimeoutMs: number;
}): Promise<NextServer> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [NEXT_BIN, options.command, "--hostname", "127.0.0.1", "--port", String(port)],
    {
      cwd: options.cwd,
      env: serverEnv(options.env ?? {}),
      detached: true, // its own process group
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  live.add(child);
  let output = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const pid = child.pid!;
  const url = `http://127.0.0.1:${port}`;

  const server: NextServer = {
    url,
    pid,
    output: () => output,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        killGroup(child, "SIGTERM");
        const gone = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
        if (!gone) killGroup(child, "SIGKILL");
        await exited;
      }
      // The leader is gone; its children (next dev's server process) must be too.
      for (let i = 0; i < 50 && groupAlive(pid); i++) {
        if (i === 10) killGroup(child, "SIGKILL");
        await sleep(100);
      }
      live.delete(child);
      if (groupAlive(pid)) throw new Error(`processes of group ${pid} are still running`);
    },
  };

  const deadline = Date.now() + options.readyTimeoutMs;
  while (true) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await server.stop();
      throw new Error(`next ${options.command} exited before it was ready:\n${output}`);
    }
    try {
      const response = await fetch(`${url}/api/health`);
      if (response.ok) {
        await response.body?.cancel();
        return server;
      }
      await response.body?.cancel();
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(
        `next ${options.command} was not ready in ${options.readyTimeoutMs} ms:\n${output}`,
      );
    }
    await sleep(150);
  }
}

/** `GET /api/health`. */
export async function health(server: NextServer): Promise<RuntimeHealth> {
  const response = await fetch(`${server.url}/api/health`);
  if (!response.ok) throw new Error(`/api/health answered ${response.status}`);
  return (await response.json()) as RuntimeHealth;
}

/** Polls `read` until `done` holds for its value, or fails after `timeoutMs`. */
export async function waitFor<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T = await read();
  while (!done(last)) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(last)}`,
      );
    }
    await sleep(100);
    last = await read();
  }
  return last;
}
