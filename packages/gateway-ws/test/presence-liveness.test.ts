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

    // The live client answers every ping: after more rounds than it would take to drop it
    // (counted in its answered pings, not in time, which a loaded machine stretches) it is
    // still there. Its pongs are the only beats with a latency now.
    const samplesAtClose = (await watcher.request("status")).presence.latencyMs.samples;
    await waitFor(
      "five more rounds of pings answered",
      () => pingsAnsweredSince(watcher, samplesAtClose, 5),
      10_000,
    );
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
    // Reads the counters while the client is away.
    const observer = await TestClient.connect(stack.url, { token: TOKEN });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const id = client.hello.server.connId as string;
    // A frame is a beat: the connection is watched from here on.
    await client.request("status");
    const missedBefore = (await observer.request("status")).presence.missedBeats;
    // Away until it has missed a beat, well under eight. (Until the tracker counts one, not
    // for a fixed time: a deadline that passes while the gateway's own process stalls, as on
    // a loaded machine, is put off rather than counted.)
    client.ws.pause();
    await waitFor(
      "a missed beat",
      async () => {
        const { presence } = await observer.request("status");
        if (presence.missedBeats > missedBefore) return true;
        await pause(50); // well under the request rate limit
        return undefined;
      },
      10_000,
    );
    client.ws.resume();
    // Back: it answers the pings it left unread and the next ones, and is still connected
    // several rounds later.
    const samplesBack = (await client.request("status")).presence.latencyMs.samples;
    await waitFor(
      "several rounds of pings answered",
      () => pingsAnsweredSince(client, samplesBack, 8),
      10_000,
    );
    expect(closes.some((c) => c.connId === id)).toBe(false);
    const { presence } = await client.request("status");
    expect(presence.online).toBe(2);
    expect(presence.offline).toBe(0);
    expect(presence.missedBeats).toBeGreaterThan(missedBefore);
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
    // Any other node event is not handled here.
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
    // Its one latency sample (no pings in a 60 s interval): the event was a beat with `sentAtMs`.
    // (The frames themselves may count as beats too, once a second: more than a second may pass
    // between them on a loaded machine.)
    expect(after.latencyMs.samples).toBe(before.latencyMs.samples + 1);
    expect(after.beats).toBeGreaterThanOrEqual(before.beats + 1);
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

/** Waits `ms`. */
function pause(ms: number): Promise<void> {
  return new Promise<void>((resolve) => setTimeout(resolve, ms));
}

/**
 * Whether `count` more pongs (the only beats with a latency in these tests) were counted
 * since the status counters showed `samples`; asks at most every 50 ms.
 */
async function pingsAnsweredSince(
  client: TestClient,
  samples: number,
  count: number,
): Promise<true | undefined> {
  const { presence } = await client.request("status");
  if (presence.latencyMs.samples >= samples + count) return true;
  await pause(50);
  return undefined;
}
