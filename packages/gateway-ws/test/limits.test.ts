import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionCloseInfo } from "../src/index.js";
import {
  closeClients,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  waitFor,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

describe("slow consumers", () => {
  it("disconnects a client that stops reading with 1008 'slow consumer', its buffer never past the limit", async () => {
    const limit = 256 * 1024;
    const closes: ConnectionCloseInfo[] = [];
    const stack = await startStack({
      gateway: { maxBufferedBytes: limit, onConnectionClose: (info) => closes.push(info) },
    });
    const victim = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });
    const reader = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });
    const victimId = victim.hello.server.connId as string;
    victim.ws.pause();
    const chunk = "x".repeat(64 * 1024);
    const run = { runId: "flood-run", sessionKey: "agent:main:main" };
    await stack.runtime.pubsub.publish("events:global", {
      ...run,
      type: "run-start",
      agentId: "main",
      at: Date.now(),
      input: [],
    });
    let sent = 0;
    // One event per turn of the loop, so a client that reads keeps up. Bounded: at most 64 MiB,
    // far more than the kernel's socket buffers hold.
    while (sent < 1024 && stack.gateway.connections().some((c) => c.connId === victimId)) {
      await stack.runtime.pubsub.publish("events:global", {
        ...run,
        type: "text-delta",
        text: chunk,
      });
      sent++;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    expect(stack.gateway.connections().some((c) => c.connId === victimId)).toBe(false);
    victim.ws.resume();
    expect(await victim.closed).toEqual({ code: 1008, reason: "slow consumer" });
    const info = await waitFor("the close report", () => closes.find((c) => c.connId === victimId));
    expect(info.peakBufferedBytes).toBeLessThanOrEqual(limit);
    // Everyone else is unaffected.
    await waitFor(
      "the reader to get every delta",
      () =>
        reader.events.filter((e) => e.event === "chat" && e.payload.runId === "flood-run").length >=
        sent,
      20_000,
    );
    expect((await reader.request("health")).ok).toBe(true);
    await stack.runtime.pubsub.publish("events:global", {
      ...run,
      type: "run-end",
      result: {
        ...run,
        status: "aborted",
        text: "",
        messages: [],
        steps: 0,
        usage: { inputTokens: 0, outputTokens: 0 },
        costUsd: 0,
      },
    });
  });

  it("drops droppable events for a client that stops reading instead of disconnecting it", async () => {
    const closes: ConnectionCloseInfo[] = [];
    const stack = await startStack({
      gateway: { maxBufferedBytes: 256 * 1024, onConnectionClose: (info) => closes.push(info) },
    });
    const victim = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });
    const victimId = victim.hello.server.connId as string;
    victim.ws.pause();
    const chunk = "y".repeat(64 * 1024);
    let delivered = 0;
    for (let i = 0; i < 400; i++) {
      delivered += stack.gateway.broadcast("digest", { chunk }, { dropIfSlow: true });
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    expect(delivered).toBeLessThan(400);
    expect(stack.gateway.connections().map((c) => c.connId)).toEqual([victimId]);
    victim.ws.resume();
    const seqs = await waitFor("the buffered digests", () => {
      const got = victim.events.filter((e) => e.event === "digest").map((e) => e.seq!);
      return got.length === delivered ? got : undefined;
    });
    // The dropped events used their sequence numbers: the next event shows the gap.
    stack.gateway.broadcast("digest", { chunk: "after" });
    const after = await victim.waitEvent("digest", (p) => p.chunk === "after");
    expect(after.seq! - seqs.at(-1)!).toBe(400 - delivered + 1);
    expect((await victim.request("health")).ok).toBe(true);
    await victim.close();
    expect(
      (await waitFor("the close report", () => closes.find((c) => c.connId === victimId)))
        .droppedEvents,
    ).toBe(400 - delivered);
  });
});

describe("request limits", () => {
  it("answers requests over the per-connection rate with a retryable UNAVAILABLE and retryAfterMs", async () => {
    // One token a second (the lowest rate): reading the 20 frames would have to stall for a
    // second to let a sixth in.
    const stack = await startStack({ gateway: { requestsPerSecond: 1, requestBurst: 5 } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, () => client.request("status", {})),
    );
    const refused = results
      .filter((r) => r.status === "rejected")
      .map((r) => (r as PromiseRejectedResult).reason);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(5);
    expect(refused).toHaveLength(15);
    expect(refused[0]).toMatchObject({
      code: "UNAVAILABLE",
      retryable: true,
      details: { code: "RATE_LIMITED" },
    });
    expect(refused[0].retryAfterMs).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, refused[0].retryAfterMs + 20));
    expect((await client.request("status", {})).ok).toBe(true);
  });

  it("closes with 1009 on a frame over maxPayload after the handshake", async () => {
    const stack = await startStack({ gateway: { maxPayloadBytes: 100_000 } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    // A frame under the limit is served, however long one of its fields.
    expect(
      await client.request("sessions.list", { limit: 1, search: "m".repeat(70_000) }),
    ).toMatchObject({ sessions: [] });
    client.sendRaw(
      JSON.stringify({
        type: "req",
        id: "big",
        method: "health",
        params: { pad: "x".repeat(120_000) },
      }),
    );
    expect((await client.closed).code).toBe(1009);
  });
});

describe("bad frames after the handshake", () => {
  it("answers each malformed frame with INVALID_REQUEST and keeps serving", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const before = client.frames.length;
    client.sendRaw("not json at all");
    client.sendRaw(JSON.stringify({ type: "res", id: "x", ok: true }));
    client.sendRaw(JSON.stringify({ type: "req", id: "y", method: "health", extra: 1 }));
    client.sendRaw(JSON.stringify([1, 2, 3]));
    client.sendRaw(Buffer.from(JSON.stringify({ type: "req", id: "bin", method: "health" })));
    await waitFor("five answers", () => (client.frames.length - before >= 5 ? true : undefined));
    const answers = client.frames.slice(before) as unknown as Array<{
      id: string;
      ok: boolean;
      error?: { code: string };
    }>;
    expect(answers.filter((a) => !a.ok).map((a) => a.error!.code)).toEqual([
      "INVALID_REQUEST",
      "INVALID_REQUEST",
      "INVALID_REQUEST",
      "INVALID_REQUEST",
    ]);
    expect(answers.find((a) => a.id === "bin")?.ok).toBe(true);
    expect((await rpcError(client.requestUnchecked("sessions.list", "not an object"))).code).toBe(
      "INVALID_REQUEST",
    );
    expect((await rpcError(client.requestUnchecked("connect", {}))).message).toBe(
      "already connected",
    );
    expect((await client.request("health")).ok).toBe(true);
  });

  it("survives a burst of random frames without crashing or answering with anything but the protocol's shapes", async () => {
    const stack = await startStack({ gateway: { requestBurst: 1000, requestsPerSecond: 1000 } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const methods = [
      "health",
      "chat.send",
      "sessions.patch",
      "node.invoke",
      "x",
      "",
      "cron.add",
      "exec.approval.resolve",
      "device.token.rotate",
    ];
    const values = [
      null,
      1,
      -1,
      "",
      "a",
      [],
      {},
      { key: 5 },
      { sessionKey: "agent:main:main", message: 3 },
      true,
      "agent:..:x",
    ];
    const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)]!;
    for (let i = 0; i < 300; i++) {
      const frame =
        random() < 0.2
          ? pick(values)
          : {
              type: pick(["req", "req", "req", "event"]),
              id: pick(["a", "", 7]),
              method: pick(methods),
              params: pick(values),
            };
      client.sendRaw(JSON.stringify(frame));
    }
    expect((await client.request("health")).ok).toBe(true);
  });
});
