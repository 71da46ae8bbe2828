/**
 * The standalone gateway as a real process: `beamclaw gateway --config <file>` (the CLI of
 * `@beamclaw/gateway-ws`), with a configuration written for the test (store-fs in a given
 * directory, one OpenAI-compatible provider, 127.0.0.1 and a free port). It can be killed
 * with any signal and started again on the same directory. `stopAllGateways()` kills whatever
 * is left (call from `afterEach`).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const CLI = join(dirname(require.resolve("@beamclaw/gateway-ws/package.json")), "dist", "cli.js");

export const PROCESS_TOKEN = "fault-process-token-0123456789";

export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** Everything it wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Sends `signal` and resolves with how it exited. */
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();

/** Kills every gateway process still running and waits for them. */
export async function stopAllGateways(): Promise<void> {
  await Promise.all(
    [...running].map(async (child) => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit");
        child.kill("SIGKILL");
        await exited;
      }
    }),
  );
  running.clear();
}

/** Writes `beamclaw.yaml` in `configDir` for a store in `storeDir` and a model at `modelBaseUrl`. */
export async function writeGatewayConfig(
  configDir: string,
  options: { storeDir: string; modelBaseUrl: string; providerTimeoutMs?: number },
): Promise<string> {
  const path = join(configDir, "beamclaw.yaml");
  await writeFile(
    path,
    [
      "gateway:",
      "  host: 127.0.0.1",
      "  port: 0",
      "  auth: { mode: token, token: ${BEAMCLAW_GATEWAY_TOKEN} }",
      `store: { kind: fs, dir: ${JSON.stringify(options.storeDir)} }`,
      "providers:",
      `  local: { kind: openai-compatible, baseUrl: ${JSON.stringify(options.modelBaseUrl)}, apiKey: none, timeoutMs: ${options.providerTimeoutMs ?? 10_000} }`,
      "agents:",
      "  main: { model: local/fault-model }",
      "",
    ].join("\n"),
  );
  return path;
}

/**
 * Starts `beamclaw gateway --config <configPath>` and resolves once it listens. Rejects with
 * its exit code and output if it exits first (see {@link runGatewayToExit} for that case).
 */
export async function startGatewayProcess(
  configPath: string,
  extraArgs: string[] = [],
): Promise<GatewayProcess> {
  const child = spawn(process.execPath, [CLI, "gateway", "--config", configPath, ...extraArgs], {
    env: { ...process.env, BEAMCLAW_GATEWAY_TOKEN: PROCESS_TOKEN },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (d: string) => {
    out += d;
  });
  child.stderr!.on("data", (d: string) => {
    err += d;
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  exited.then(() => running.delete(child)).catch(() => undefined);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not start: ${err}`)), 20_000);
    const onData = () => {
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (match !== null) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        resolve(Number(match[1]));
      }
    };
    child.stdout!.on("data", onData);
    exited.then(([code, signal]) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited (${signal ?? code}) before listening: ${err}${out}`));
    });
  });
  return {
    child,
    port,
    url: `ws://127.0.0.1:${port}`,
    stdout: () => out,
    stderr: () => err,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code, sig] = await exited;
      return { code, signal: sig };
    },
  };
}

/** Runs `beamclaw gateway --config <configPath>` expecting it to exit; resolves with the outcome. */
export async function runGatewayToExit(
  configPath: string,
  timeoutMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, "gateway", "--config", configPath], {
    env: { ...process.env, BEAMCLAW_GATEWAY_TOKEN: PROCESS_TOKEN },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
  });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  running.delete(child);
  return { code, stdout, stderr };
}
