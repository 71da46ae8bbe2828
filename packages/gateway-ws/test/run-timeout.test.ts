/**
 * Run time limits over the wire: `chat.send` / `sessions.send` `timeoutMs`, `agent` `timeout`
 * (seconds) and an agent's `timeoutMs` from the config file (with its `contextTokens`). A run
 * past its limit streams an `aborted` chat state with stopReason `timeout`, and `agent.wait`
 * reports it.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import {
  closeClients,
  MAIN,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  waitFor,
} from "./support.js";

useSchemaCheck();
const started: StartedGateway[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await closeClients();
  await stopStacks();
  for (const gateway of started.splice(0)) await gateway.stop();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const KEY = "agent:main:main";

/** A model answer that streams "partial" and then never ends (until the run is cancelled). */
const HANGS = {
  events: [
    { type: "response-start" as const, model: "m1" },
    { type: "text-delta" as const, text: "partial" },
    { type: "wait" as const, until: new Promise<never>(() => {}) },
  ],
};

describe("run time limits", () => {
  it("chat.send timeoutMs cuts the run: an aborted chat state with stopReason timeout, and agent.wait says so", async () => {
    const stack = await startStack({ responses: [HANGS] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const ack = await client.request("chat.send", {
      sessionKey: KEY,
      message: "take your time",
      idempotencyKey: "slow-1",
      timeoutMs: 80,
    });
    expect(ack).toEqual({ runId: "slow-1", status: "started" });
    const end = await client.waitEvent("chat", (p) => p.runId === "slow-1" && p.state !== "delta");
    expect(end.payload).toMatchObject({
      state: "aborted",
      stopReason: "timeout",
      message: { content: [{ text: "partial" }] },
    });
    expect(end.payload.errorMessage).toContain("time limit of 80 ms");
    expect(await client.request("agent.wait", { runId: "slow-1", timeoutMs: 5000 })).toMatchObject({
      runId: "slow-1",
      status: "aborted",
      stopReason: "timeout",
      errorCode: "RUN_TIMEOUT",
    });
    const lifecycle = await client.waitEvent(
      "agent",
      (p) => p.runId === "slow-1" && p.stream === "lifecycle" && p.data?.phase === "aborted",
    );
    expect(lifecycle.payload.data).toMatchObject({
      stopReason: "timeout",
      error: { code: "RUN_TIMEOUT" },
    });
    // The session is free again: its next message runs.
    stack.provider.push({ text: "next" });
    await client.request("chat.send", { sessionKey: KEY, message: "next", idempotencyKey: "n-1" });
    expect(await client.request("agent.wait", { runId: "n-1", timeoutMs: 5000 })).toMatchObject({
      status: "ok",
    });
  });

  it("sessions.send timeoutMs cuts the run too; timeoutMs 0 sets no limit of its own", async () => {
    const stack = await startStack({
      responses: [HANGS, { text: "in time" }],
      agents: [{ ...MAIN, timeoutMs: 2_000 }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const sent = await client.request("sessions.send", {
      key: KEY,
      message: "hang",
      idempotencyKey: "s-1",
      timeoutMs: 60,
    });
    expect(sent).toMatchObject({ ok: true, runId: "s-1" });
    expect(await client.request("agent.wait", { runId: "s-1", timeoutMs: 5000 })).toMatchObject({
      status: "aborted",
      stopReason: "timeout",
    });
    await client.request("sessions.send", {
      key: KEY,
      message: "quick",
      idempotencyKey: "s-2",
      timeoutMs: 0,
    });
    expect(await client.request("agent.wait", { runId: "s-2", timeoutMs: 5000 })).toMatchObject({
      status: "ok",
      stopReason: "stop",
    });
  });

  it("agent's timeout (seconds) is the run's limit, and its second answer reports the cut", async () => {
    const stack = await startStack({ responses: [HANGS] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const started = performance.now();
    const first = await client.request("agent", {
      message: "slow",
      idempotencyKey: "agent-slow",
      timeout: 1,
    });
    expect(first).toMatchObject({ runId: "agent-slow", status: "accepted" });
    const id = client.frames.find(
      (f) => f.type === "res" && (f.payload as { runId?: string })?.runId === "agent-slow",
    )!.id as string;
    const responses = await waitFor("the second response", () =>
      client.responses(id).length === 2 ? client.responses(id) : undefined,
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
    expect(responses[1]!.payload).toMatchObject({
      runId: "agent-slow",
      status: "aborted",
      stopReason: "timeout",
      errorCode: "RUN_TIMEOUT",
    });
  });

  it("refuses a timeout that is not a whole number in range, before anything runs", async () => {
    const stack = await startStack({ responses: [{ text: "never" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    for (const timeoutMs of [-1, 1.5, "10", 2 ** 31]) {
      const error = await rpcError(
        client.requestUnchecked("chat.send", {
          sessionKey: KEY,
          message: "x",
          idempotencyKey: `bad-${String(timeoutMs)}`,
          timeoutMs,
        }),
      );
      expect(error.code).toBe("INVALID_REQUEST");
      expect(error.details).toMatchObject({ code: "INVALID_PARAMS", field: "timeoutMs" });
    }
    const error = await rpcError(
      client.requestUnchecked("agent", {
        message: "x",
        idempotencyKey: "bad-agent",
        timeout: 3_000_000,
      }),
    );
    expect(error.details).toMatchObject({ code: "INVALID_PARAMS", field: "timeout" });
    expect(stack.provider.calls).toHaveLength(0);
    expect(await stack.store.queue.pending()).toEqual([]);
  });

  it("an agent's timeoutMs and contextTokens in the config file reach the runtime", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-run-timeout-"));
    dirs.push(dir);
    const configPath = join(dir, "beamclaw.yaml");
    await writeFile(
      configPath,
      [
        "store: { kind: memory }",
        'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
        "agents: { main: { model: local/m1, timeoutMs: 45000, contextTokens: 120000 }, ops: { model: local/m1 } }",
        "gateway: { host: 127.0.0.1, auth: { mode: token, token: ${GW_TOKEN} } }",
        "",
      ].join("\n"),
    );
    const gateway = await startFromConfig({ configPath, env: { GW_TOKEN: TOKEN }, port: 0 });
    started.push(gateway);
    const agents = new Map(gateway.runtime.agents.map((a) => [a.id, a]));
    expect(agents.get("main")?.timeoutMs).toBe(45_000);
    expect(agents.get("main")?.contextTokens).toBe(120_000);
    expect(agents.get("ops")?.timeoutMs).toBeUndefined();
    expect(agents.get("ops")?.contextTokens).toBeUndefined();
  });
});
