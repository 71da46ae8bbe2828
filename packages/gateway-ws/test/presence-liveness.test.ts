import { AgentRuntime, InvalidArgumentError, MemoryStore } from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionCloseInfo } from "../src/index.js";
import { createDeviceIdentity, createGateway } from "../src/index.js";
import {
  closeClients,
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

describe("presence liveness (ping/pong beats)", () => {
  it("closes a client that stops answering, tells the others through `presence`, and keeps live ones", async () => {
    const closes: ConnectionCloseInfo[] = [];
    const stack = await startStack({
      gateway: {
        // Roomy for the live client: only a stall of about a second could drop it.
        presence: { intervalMs: 250, missedBeatsOffline: 4 },
        onConnectionClose: (info) => closes.push(info),
      },
    });
    const watcher = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.read"],
    });
    const frozen = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });
    const frozenId = frozen.hello.server.connId as string;
    const watcherId = watcher.hello.server.connId as string;
    const listed = await watcher.request("system-presence");
    expect(listed.map((e: { instanceId: string }) => e.instanceId)).toContain(frozenId);

    // Stops reading its socket: no pongs, no frames (a laptop asleep, a half-open connection).
    frozen.ws.pause();

    const gone = await watcher.waitEvent(
      "presence",
      (p) =>
        !p.presence.some((e: { instanceId: string }) => e.instanceId === frozenId) &&
        p.presence.some((e: { instanceId: string }) => e.instanceId === watcherId),
      10_000,
    );
    expect(gone.payload.presence.length).toBeGreaterThanOrEqual(1);
    const closed = await waitFor("the frozen connection's close", () =>
      closes.find((c) => c.connId === frozenId),
    );
    expect(closed.connId).toBe(frozenId);
    expect(stack.gateway.connections().map((c) => c.connId)).not.toContain(frozenId);

    // The live client answered every ping: after several more intervals it is still there.
    await new Promise<void>((resolve) => setTimeout(resolve, 1_000));
    expect(closes.some((c) => c.connId === watcherId)).toBe(false);
    const after = await watcher.request("system-presence");
    expect(after.map((e: { instanceId: string }) => e.instanceId)).toEqual([watcherId]);

    const { presence } = await watcher.request("status");
    expect(presence).toMatchObject({ intervalMs: 250, missedBeatsOffline: 4, online: 1 });
    expect(presence.missedBeats).toBeGreaterThanOrEqual(4);
    expect(presence.beats).toBeGreaterThan(0);
    expect(presence.beatsPerMinute).toBeGreaterThan(0);
    expect(presence.latencyMs.samples).toBeGreaterThan(0);
    expect(presence.latencyMs.p99).toBeGreaterThanOrEqual(0);
    expect(stack.gateway.log.tail({}).lines.join("\n")).toMatch(
      new RegExp(`conn=${frozenId} missed 4 beats .*offline, closing`),
    );
  });

  it("a client that comes back before the limit stays connected", async () => {
    const closes: ConnectionCloseInfo[] = [];
    const stack = await startStack({
      gateway: {
        presence: { intervalMs: 200, missedBeatsOffline: 8 },
        onConnectionClose: (info) => closes.push(info),
      },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const id = client.hello.server.connId as string;
    // A frame is a beat: the connection is watched from here on.
    await client.request("status");
    // Misses a beat or two, well under eight.
    client.ws.pause();
    await new Promise<void>((resolve) => setTimeout(resolve, 300));
    client.ws.resume();
    await new Promise<void>((resolve) => setTimeout(resolve, 800));
    expect(closes.some((c) => c.connId === id)).toBe(false);
    const { presence } = await client.request("status");
    expect(presence.online).toBe(1);
    expect(presence.offline).toBe(0);
    // The pause outlasted a beat and its grace (240 ms): it did miss one.
    expect(presence.missedBeats).toBeGreaterThanOrEqual(1);
  });

  it("a node's `node.presence.alive` is a beat whose `sentAtMs` gives its latency", async () => {
    const stack = await startStack({ gateway: { presence: { intervalMs: 60_000 } } });
    const node = await TestClient.connect(stack.url, {
      token: TOKEN,
      role: "node",
      scopes: [],
      device: createDeviceIdentity(),
      clientId: "node-host",
      mode: "node",
    });
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    // Any other node event is not handled here. (Its frame is the node's first beat; frames
    // count once a second, so the next beat counted is the alive event's own.)
    expect(await node.request("node.event", { event: "custom.thing" })).toMatchObject({
      handled: false,
    });
    const before = (await operator.request("status")).presence;
    const result = await node.request("node.event", {
      event: "node.presence.alive",
      payload: { trigger: "background", sentAtMs: Date.now() - 40 },
    });
    expect(result).toEqual({ ok: true, event: "node.presence.alive", handled: true });
    const after = (await operator.request("status")).presence;
    expect(after.beats).toBe(before.beats + 1);
    expect(after.latencyMs.samples).toBe(before.latencyMs.samples + 1);
    expect(after.latencyMs.p99).toBeGreaterThanOrEqual(40);
  });

  it("`presence: false` turns liveness off (no pings, no counters)", async () => {
    const closes: ConnectionCloseInfo[] = [];
    const stack = await startStack({
      gateway: { presence: false, onConnectionClose: (info) => closes.push(info) },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const status = await client.request("status");
    expect(status.presence).toBeUndefined();
    expect(closes).toEqual([]);
  });

  it("refuses bad settings with a typed error at construction", async () => {
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createScriptedProvider({ id: "scripted", responses: [] }),
      agents: [{ id: "main", model: "scripted/m1" }],
    });
    for (const presence of [{ intervalMs: 0 }, { missedBeatsOffline: 0.5 }, { intervalMs: -5 }]) {
      expect(() => createGateway({ runtime, auth: { mode: "none" }, port: 0, presence })).toThrow(
        InvalidArgumentError,
      );
    }
    await store.close();
  });
});
