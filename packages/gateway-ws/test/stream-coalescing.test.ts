/**
 * `streamCoalesceMs`: a run's streamed text held back for a window so that its deltas reach
 * every client as one `chat` delta and one `agent` `assistant` event; flushed before any other
 * event of the run so that nothing changes order; the `deltaText`s still add up to the reply.
 * Over real sockets, every frame checked against the protocol schema.
 */
import { defineTool, InvalidArgumentError, parseConfig } from "@beamclaw/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { createGateway } from "../src/index.js";
import { RunTracker } from "../src/runs.js";
import {
  closeClients,
  deferred,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
  waitFor,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";

/** The run's `chat` and `agent` events as one client saw them, in order. */
function runEvents(client: TestClient, runId: string): Array<{ event: string; payload: Wire }> {
  return client.events
    .filter((e) => (e.event === "chat" || e.event === "agent") && e.payload.runId === runId)
    .map((e) => ({ event: e.event, payload: e.payload }));
}

const deltasOf = (events: Array<{ event: string; payload: Wire }>) =>
  events.filter((e) => e.event === "chat" && e.payload.state === "delta").map((e) => e.payload);

const assistantOf = (events: Array<{ event: string; payload: Wire }>) =>
  events
    .filter((e) => e.event === "agent" && e.payload.stream === "assistant")
    .map((e) => e.payload.data.delta);

async function chat(client: TestClient, runId: string): Promise<Wire> {
  await client.request("chat.send", { sessionKey: KEY, message: "go", idempotencyKey: runId });
  return (await client.waitEvent("chat", (p) => p.runId === runId && p.state === "final")).payload;
}

describe("streamCoalesceMs", () => {
  it("sends the deltas of one window as one chat delta and one agent event, before the final", async () => {
    const stack = await startStack({
      responses: [{ text: ["Hel", "lo ", "there"] }],
      gateway: { streamCoalesceMs: 1_000 },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const final = await chat(client, "c-1");
    const events = runEvents(client, "c-1");
    expect(deltasOf(events).map((d) => d.deltaText)).toEqual(["Hello there"]);
    expect(deltasOf(events)[0].replace).toBeUndefined();
    expect(assistantOf(events)).toEqual(["Hello there"]);
    // The delta is sent before the final, not dropped by it.
    const deltaAt = events.findIndex((e) => e.event === "chat" && e.payload.state === "delta");
    const finalAt = events.findIndex((e) => e.event === "chat" && e.payload.state === "final");
    expect(deltaAt).toBeGreaterThanOrEqual(0);
    expect(deltaAt).toBeLessThan(finalAt);
    expect(final.message.content[0].text).toBe("Hello there");
    // Each stream's sequence numbers stay consecutive.
    const chatSeqs = events.filter((e) => e.event === "chat").map((e) => e.payload.seq);
    expect(chatSeqs).toEqual(chatSeqs.map((_, i) => chatSeqs[0] + i));
  });

  it("flushes held text before a tool call, and the text after it replaces what came before", async () => {
    const tools = [
      defineTool({
        name: "lookup",
        description: "lookup",
        parameters: z.object({}),
        execute: () => "found",
      }),
    ];
    const stack = await startStack({
      agents: [{ id: "main", model: "scripted/m1", tools: ["*"] }],
      runtime: { tools },
      responses: [
        { text: ["Let me ", "check."], toolCalls: [{ toolName: "lookup", input: {} }] },
        { text: ["It is ", "found."] },
      ],
      gateway: { streamCoalesceMs: 5_000 },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const final = await chat(client, "c-2");
    const events = runEvents(client, "c-2");
    const deltas = deltasOf(events);
    expect(deltas.map((d) => d.deltaText)).toEqual(["Let me check.", "It is found."]);
    expect(deltas.map((d) => d.replace === true)).toEqual([false, true]);
    expect(assistantOf(events)).toEqual(["Let me check.", "It is found."]);
    // Order: first text, then the tool's start, then the second text, then the final.
    const order = events
      .map((e) =>
        e.event === "chat"
          ? `chat:${e.payload.state}`
          : e.payload.stream === "tool"
            ? `tool:${e.payload.data.phase}`
            : e.payload.stream === "assistant"
              ? "assistant"
              : undefined,
      )
      .filter((x) => x !== undefined);
    expect(order).toEqual([
      "chat:delta",
      "assistant",
      "tool:start",
      "tool:result",
      "chat:delta",
      "assistant",
      "chat:final",
    ]);
    expect(final.message.content[0].text).toBe("It is found.");
  });

  it("closes a window by time: deltas slower than the window go out in several, adding up to the reply", async () => {
    const chunks = ["a", "b", "c", "d", "e", "f", "g", "h"];
    const stack = await startStack({
      responses: [{ text: chunks, chunkDelayMs: 20 }],
      gateway: { streamCoalesceMs: 100 },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const other = await TestClient.connect(stack.url, { token: TOKEN });
    await chat(client, "c-3");
    for (const c of [client, other]) {
      const deltas = deltasOf(runEvents(c, "c-3")).map((d) => d.deltaText as string);
      // At least 20 ms between chunks (140 ms in all) and a 100 ms window: more than one
      // window, fewer than one delta per chunk, and nothing lost or reordered.
      expect(deltas.length).toBeGreaterThan(1);
      expect(deltas.length).toBeLessThan(chunks.length);
      expect(deltas.join("")).toBe(chunks.join(""));
    }
  });

  it("sends every delta as it comes by default", async () => {
    const stack = await startStack({ responses: [{ text: ["Hel", "lo"] }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await chat(client, "c-4");
    expect(deltasOf(runEvents(client, "c-4")).map((d) => d.deltaText)).toEqual(["Hel", "lo"]);
  });

  it("takes its default from config.gateway.streamCoalesceMs", async () => {
    const config = parseConfig({
      agents: { main: { model: "scripted/m1" } },
      gateway: { streamCoalesceMs: 1_000 },
    });
    const stack = await startStack({
      responses: [{ text: ["Hel", "lo"] }],
      gateway: { config },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await chat(client, "c-5");
    expect(deltasOf(runEvents(client, "c-5")).map((d) => d.deltaText)).toEqual(["Hello"]);
    expect(() =>
      parseConfig({
        agents: { main: { model: "scripted/m1" } },
        gateway: { streamCoalesceMs: -1 },
      }),
    ).toThrow();
  });

  it("refuses a window that is not a whole number of ms from 0 to 10,000", async () => {
    const stack = await startStack();
    for (const bad of [-1, 1.5, 10_001, Number.NaN]) {
      expect(() =>
        createGateway({ runtime: stack.runtime, streamCoalesceMs: bad, port: 0 }),
      ).toThrow(InvalidArgumentError);
    }
  });

  it("drops held text and its timer when the gateway stops mid-run", async () => {
    // The answer streams "one", then waits for the test: the run is mid-run for as long as
    // the test needs, however slowly a loaded machine gets there.
    const rest = deferred();
    const stack = await startStack({
      responses: [
        {
          events: [
            { type: "response-start", model: "m1" },
            { type: "text-delta", text: "one" },
            { type: "wait", until: rest.promise },
            { type: "text-delta", text: "two" },
            { type: "finish", reason: "stop" },
          ],
        },
      ],
      gateway: { streamCoalesceMs: 10_000 },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "go", idempotencyKey: "c-6" });
    // The run has started streaming: its first text reached the gateway and is held (no
    // delta sent yet).
    const { deltaCursor } = await client.request("chat.history", { sessionKey: KEY });
    await waitFor("the gateway to hold the run's first text", async () => {
      const delta = await client.request("chat.history", { sessionKey: KEY, cursor: deltaCursor });
      if (delta.inFlightRun?.text === "one") return true;
      // Asks every 50 ms at most: well under the gateway's request rate limit.
      await new Promise((resolve) => setTimeout(resolve, 50));
      return undefined;
    });
    expect(deltasOf(runEvents(client, "c-6"))).toEqual([]);
    // Stopping mid-window: the run's end (the runtime stops after) cannot reach a stopped
    // gateway, so the gateway's own stop must clear the window (checked on its own below).
    await stack.gateway.stop();
    rest.resolve();
  });
});

/** A tracker sink that keeps the `chat` payloads and drops the rest. */
function chatSink(chats: Wire[] = []) {
  return {
    chat: (p: Wire) => {
      chats.push(p);
    },
    agent: () => undefined,
    runStarted: () => undefined,
    runEvent: () => undefined,
    runEnded: () => undefined,
  };
}

describe("RunTracker with a window", () => {
  it("close() drops held text and clears its timer", () => {
    vi.useFakeTimers();
    try {
      const chats: Wire[] = [];
      const tracker = new RunTracker(chatSink(chats), { coalesceMs: 1_000, now: () => 0 });
      tracker.onGlobalEvent({
        type: "run-start",
        runId: "r",
        sessionKey: KEY,
        agentId: "main",
        at: 0,
      });
      tracker.onGlobalEvent({ type: "text-delta", runId: "r", sessionKey: KEY, text: "held" });
      expect(vi.getTimerCount()).toBe(1);
      tracker.close();
      expect(vi.getTimerCount()).toBe(0);
      vi.advanceTimersByTime(2_000);
      expect(chats.filter((c) => c.state === "delta")).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("refuses a window that is negative or not whole", () => {
    const sink = chatSink();
    expect(() => new RunTracker(sink, { coalesceMs: -5 })).toThrow(RangeError);
    expect(() => new RunTracker(sink, { coalesceMs: 0.5 })).toThrow(RangeError);
  });
});
