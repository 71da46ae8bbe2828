/**
 * Leak audit of what the gateway holds while a client waits for a run (`agent`'s second
 * answer, `agent.wait`): a timer, a listener on the connection's abort signal and an entry
 * per run id. A wait for a run that will never end here must not hold them for days, and a
 * client that keeps asking must not pile them up on a connection that stays open for months.
 */
import { getEventListeners } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ExecApprovals } from "../src/approvals.js";
import { createGateway, type GatewayServer } from "../src/index.js";
import { MAX_WAITS_PER_CONNECTION, RunTracker } from "../src/runs.js";
import {
  closeClients,
  RpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  waitFor,
} from "./support.js";

useSchemaCheck();
const gateways: GatewayServer[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await closeClients();
  for (const gateway of gateways.splice(0)) await gateway.stop();
  await stopStacks();
});

/** The abort listeners the gateway's run waits left on the connections they were made for. */
function waitListenersLeft(calls: ReadonlyArray<Parameters<RunTracker["wait"]>>): number {
  const signals = new Set(calls.map((args) => args[2]));
  let left = 0;
  for (const signal of signals) {
    if (signal !== undefined) left += getEventListeners(signal, "abort").length;
  }
  return left;
}

describe("leak audit: waits for a run", () => {
  it("agent retried for a run that ended before this gateway saw it answers at once and keeps nothing", async () => {
    const stack = await startStack({ responses: [{ text: "done it" }] });
    const first = await TestClient.connect(stack.url, { token: TOKEN });
    await first.request("agent", { message: "do it", idempotencyKey: "agent-old" });
    await first.request("agent.wait", { runId: "agent-old", timeoutMs: 5_000 });

    // A gateway that did not see the run end (as after a restart, or once it fell out of the
    // finished runs kept): the runtime still knows the idempotency key, and runs nothing again.
    const later = createGateway({
      runtime: stack.runtime,
      host: "127.0.0.1",
      port: 0,
      auth: { mode: "token", token: TOKEN },
      tickIntervalMs: 60_000,
    });
    gateways.push(later);
    const { port } = await later.start();
    const wait = vi.spyOn(RunTracker.prototype, "wait");
    const client = await TestClient.connect(`ws://127.0.0.1:${port}`, { token: TOKEN });
    const RETRIES = 5;
    for (let i = 0; i < RETRIES; i++) {
      const before = client.frames.length;
      const accepted = await client.request("agent", {
        message: "do it",
        idempotencyKey: "agent-old",
      });
      expect(accepted.status).toBe("ok");
      const id = client.frames.slice(before).find((f) => f.type === "res")!.id as string;
      const answers = await waitFor("the second answer", () =>
        client.responses(id).length === 2 ? client.responses(id) : undefined,
      );
      expect(answers[1]!.payload).toMatchObject({
        runId: accepted.runId,
        status: "ok",
        result: { payloads: [] },
      });
    }
    expect(stack.provider.requests).toHaveLength(1);
    // Every wait is over: nothing of them is left on the connection.
    expect(wait).toHaveBeenCalledTimes(RETRIES);
    await Promise.all(wait.mock.results.map((r) => r.value));
    expect(waitListenersLeft(wait.mock.calls)).toBe(0);
  });

  it("agent.wait: a connection has at most MAX_WAITS_PER_CONNECTION waits at once, and a wait that ends frees its place", async () => {
    const stack = await startStack({
      responses: [{ text: "here" }],
      gateway: { requestsPerSecond: 10_000, requestBurst: 10_000 },
    });
    const wait = vi.spyOn(RunTracker.prototype, "wait");
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    // Runs that never come, waited for as long as a wait may last; the first one will come.
    const waits = Array.from({ length: MAX_WAITS_PER_CONNECTION }, (_, i) =>
      client.request("agent.wait", { runId: `never-${i}`, timeoutMs: 2 ** 31 - 1 }),
    );
    for (const waiting of waits) waiting.catch(() => undefined);
    await waitFor("every wait to be made", () => wait.mock.calls.length === waits.length);

    let refused: unknown;
    let answered = false;
    client.request("agent.wait", { runId: "one-too-many", timeoutMs: 2 ** 31 - 1 }).then(
      () => {
        answered = true;
      },
      (error: unknown) => {
        refused = error;
        answered = true;
      },
    );
    await waitFor(
      "one more wait to be refused (or made)",
      () => answered || wait.mock.calls.length > waits.length,
    );
    expect(wait).toHaveBeenCalledTimes(MAX_WAITS_PER_CONNECTION);
    expect(refused).toBeInstanceOf(RpcError);
    expect((refused as RpcError).code).toBe("UNAVAILABLE");
    expect((refused as RpcError).retryable).toBe(true);
    expect((refused as RpcError).details).toMatchObject({
      code: "TOO_MANY_WAITS",
      limit: MAX_WAITS_PER_CONNECTION,
    });

    // The run the first wait asked about comes and ends: that wait answers and frees its place.
    await client.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "hello",
      idempotencyKey: "never-0",
    });
    expect(await waits[0]).toMatchObject({ runId: "never-0", status: "ok" });
    expect(await client.request("agent.wait", { runId: "never-0", timeoutMs: 0 })).toMatchObject({
      runId: "never-0",
      status: "ok",
    });

    // The connection closes: every wait it made ends, and leaves nothing on it.
    await client.close();
    await Promise.all(wait.mock.results.map((r) => r.value));
    expect(waitListenersLeft(wait.mock.calls)).toBe(0);
  });

  it("exec.approval.waitDecision shares that budget: waits on an approval that is never decided are capped with agent.wait's", async () => {
    const stack = await startStack({
      gateway: { requestsPerSecond: 10_000, requestBurst: 10_000 },
    });
    const client = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.write", "operator.approvals"],
    });
    await client.request("exec.approval.request", {
      id: "ap-never",
      command: "make deploy",
      cwd: "/srv",
      twoPhase: true,
    });
    const decide = vi.spyOn(ExecApprovals.prototype, "waitDecision");
    // Half the budget on the approval, half on runs that never come.
    const half = MAX_WAITS_PER_CONNECTION / 2;
    const waits = [
      ...Array.from({ length: half }, () =>
        client.request("exec.approval.waitDecision", { id: "ap-never" }),
      ),
      ...Array.from({ length: half }, (_, i) =>
        client.request("agent.wait", { runId: `never-${i}`, timeoutMs: 2 ** 31 - 1 }),
      ),
    ];
    for (const waiting of waits) waiting.catch(() => undefined);
    await waitFor("the approval waits to be made", () => decide.mock.calls.length === half);
    await waitFor("the run waits to be made", async () => {
      const error = await client.request("exec.approval.waitDecision", { id: "ap-never" }).then(
        () => undefined,
        (e: unknown) => e,
      );
      return error instanceof RpcError && error.code === "UNAVAILABLE" ? error : undefined;
    }).then((refused) => {
      expect(refused.details).toMatchObject({ code: "TOO_MANY_WAITS" });
    });
    expect(decide).toHaveBeenCalledTimes(half);
    await client.close();
    await Promise.allSettled(waits);
  });
});
