/**
 * `beamclaw gateway` (its `main`, in this process, with the real bootstrap, fs store and
 * server) when the runtime's supervision tree gives up: /healthz and /readyz answer 503
 * `runtime-failed`, the gateway stops as on a signal, and the command exits 1 for a process
 * manager to restart it. The only test hook: the started gateway is captured on its way out
 * of the real `startFromConfig`, so that the test can crash its supervision tree.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentRuntime } from "@beamclaw/core";
import { afterEach, describe, expect, it, vi } from "vitest";

const captured: Array<{ runtime: AgentRuntime; address: { port: number } }> = [];
/** The captured gateway's stop waits for this, so that the test can probe it while failed. */
let stopGate: Promise<void> = Promise.resolve();

vi.mock("../src/cli/bootstrap.js", async (importOriginal) => {
  const real = await importOriginal<typeof import("../src/cli/bootstrap.js")>();
  return {
    ...real,
    startFromConfig: async (...args: Parameters<typeof real.startFromConfig>) => {
      const started = await real.startFromConfig(...args);
      const stop = started.stop.bind(started);
      started.stop = async (...stopArgs: Parameters<typeof stop>) => {
        await stopGate;
        return stop(...stopArgs);
      };
      captured.push(started);
      return started;
    },
  };
});

const { main } = await import("../src/cli/main.js");

const dirs: string[] = [];
afterEach(async () => {
  captured.length = 0;
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function probe(port: number, path: string) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { connection: "close" } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe("beamclaw gateway when the runtime fails", () => {
  it("answers 503 runtime-failed on /healthz and /readyz, stops, and exits 1", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-cli-failed-"));
    dirs.push(dir);
    const config = join(dir, "beamclaw.yaml");
    await writeFile(
      config,
      [
        "gateway: { host: 127.0.0.1, port: 0, auth: { mode: token, token: t0123456789abcdef0123 } }",
        `store: { kind: fs, dir: ${JSON.stringify(join(dir, "store"))} }`,
        'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
        "agents: { main: { model: local/llama3 } }",
        "",
      ].join("\n"),
    );
    const out: string[] = [];
    const err: string[] = [];
    const exit = main(["gateway", "--config", config, "--drain-timeout-ms", "1000"], {
      out: (line) => out.push(line),
      err: (line) => err.push(line),
      env: {},
      waitForStop: () => new Promise<string>(() => {}), // no signal comes
      onForce: () => {},
    });
    const started = await waitFor("the gateway started", () => captured[0]);
    const { runtime } = started;
    const port = started.address.port;
    expect(await probe(port, "/healthz")).toMatchObject({ status: 200, json: { ok: true } });
    expect(await probe(port, "/readyz")).toMatchObject({ status: 200, json: { ready: true } });

    // Hold the gateway's stop until the probes are checked.
    let release!: () => void;
    stopGate = new Promise<void>((resolve) => {
      release = resolve;
    });

    // Crash the `sessions` supervisor until the root gives up (3 restarts in 5 s).
    const root = runtime.supervisor!;
    for (let kill = 1; kill <= 4; kill++) {
      const sessions = await waitFor(`sessions supervisor before kill ${kill}`, async () => {
        if (!root.alive) return undefined;
        return (await root.whichChildren()).find((c) => c.id === "sessions")?.process;
      });
      sessions.kill();
      await waitFor(`kill ${kill}`, () => sessions.status === "stopped" || undefined);
    }

    await waitFor("the runtime failed", () => runtime.status === "failed" || undefined);
    await waitFor("the CLI heard of it", () =>
      err.some((line) => line.includes("gave up")) ? true : undefined,
    );
    const seen = [await probe(port, "/healthz"), await probe(port, "/readyz")];
    release();
    expect(await exit).toBe(1);
    expect(runtime.status).toBe("stopped");
    expect(err.join("\n")).toMatch(/supervision tree gave up \(MaxRestartIntensityError/);
    expect(out.join("\n")).toMatch(/runtime failed: shutting down/);
    expect(out.at(-1)).toBe("stopped");
    expect(seen[0]).toMatchObject({
      status: 503,
      json: { ok: false, status: "runtime-failed", reason: expect.stringMatching(/MaxRestart/) },
    });
    expect(seen[1]).toMatchObject({
      status: 503,
      json: { ready: false, status: "runtime-failed" },
    });
  });
});
