/**
 * What leaves the gateway's sockets: the frames a client is sent in one event-loop turn go out
 * in one socket write (a streamed text delta is a `chat` and an `agent` event), in order and
 * byte for byte as `JSON.stringify` makes them; and a broadcast serializes its payload once,
 * whatever the number of clients. Over real sockets: the server side's writes are recorded
 * where the stream hands them to the kernel (`_write` / `_writev` of its `net.Socket`).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  closeClients,
  framesIn,
  recordServerWrites,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  vi.restoreAllMocks();
  await closeClients();
  await stopStacks();
});

const CHUNKS = ["Once ", "upon ", "a ", "time"];

describe("socket writes", () => {
  it("sends a streamed delta's chat and agent events in one write, in order, as JSON.stringify makes them", async () => {
    // 30 ms between chunks: every delta comes in an event-loop turn of its own.
    const stack = await startStack({ responses: [{ text: CHUNKS, chunkDelayMs: 30 }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const recorder = recordServerWrites(stack.port);
    try {
      await client.request("chat.send", {
        sessionKey: "agent:main:main",
        message: "a story",
        idempotencyKey: "run-1",
      });
      await client.waitEvent("chat", (p) => p.runId === "run-1" && p.state === "final");
    } finally {
      recorder.restore();
    }
    const writes = recorder.writes.map(framesIn);
    const texts = writes.flat();
    const frames: Wire[] = texts.map((t) => JSON.parse(t));
    // Byte for byte what JSON.stringify makes of the frame (key order included).
    for (const text of texts) expect(JSON.stringify(JSON.parse(text))).toBe(text);
    // In order: event sequence numbers only go up.
    const seqs = frames.filter((f) => f.type === "event").map((f) => f.seq as number);
    expect(seqs.length).toBeGreaterThan(0);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe(seqs[i - 1]! + 1);
    for (const delta of CHUNKS) {
      const write = writes.find((w) =>
        w.some((t) => {
          const f = JSON.parse(t);
          return f.event === "chat" && f.payload.state === "delta" && f.payload.deltaText === delta;
        }),
      );
      expect(write, `the chat delta "${delta}"`).toBeDefined();
      const agent = write!
        .map((t) => JSON.parse(t))
        .find(
          (f) =>
            f.event === "agent" &&
            f.payload.stream === "assistant" &&
            f.payload.data.delta === delta,
        );
      expect(agent, `the agent event of "${delta}" in the same write`).toBeDefined();
    }
    // Fewer writes than frames: at least each delta's two frames shared one.
    expect(recorder.writes.length).toBeLessThanOrEqual(frames.length - CHUNKS.length);
    // What the client read is what was written.
    const received = client.events.filter((e) => e.event === "chat" || e.event === "agent");
    expect(received.length).toBe(
      frames.filter((f) => f.event === "chat" || f.event === "agent").length,
    );
  });

  it("serializes a broadcast payload once for every client, each client with its own sequence", async () => {
    const stack = await startStack({ responses: [{ text: CHUNKS, chunkDelayMs: 5 }] });
    const clients = await Promise.all(
      [0, 1, 2].map(() => TestClient.connect(stack.url, { token: TOKEN })),
    );
    const stringify = vi.spyOn(JSON, "stringify");
    await clients[0]!.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "a story",
      idempotencyKey: "run-2",
    });
    const finals = await Promise.all(
      clients.map((c) => c.waitEvent("chat", (p) => p.runId === "run-2" && p.state === "final")),
    );
    const payloadsOf = (delta: string) =>
      stringify.mock.calls.filter(([value]) => {
        const v = value as Wire;
        return v?.runId === "run-2" && v?.state === "delta" && v?.deltaText === delta;
      });
    for (const delta of CHUNKS) expect(payloadsOf(delta)).toHaveLength(1);
    stringify.mockRestore();
    // Every client got every delta, with sequence numbers of its own connection.
    for (const [i, client] of clients.entries()) {
      const deltas = client.events
        .filter(
          (e) => e.event === "chat" && e.payload.runId === "run-2" && e.payload.state === "delta",
        )
        .map((e) => e.payload.deltaText);
      expect(deltas, `client ${i}`).toEqual(CHUNKS);
      const seqs = client.events.map((e) => e.seq as number);
      for (let j = 1; j < seqs.length; j++) expect(seqs[j]).toBe(seqs[j - 1]! + 1);
      expect(finals[i]!.payload.message.content[0].text).toBe(CHUNKS.join(""));
    }
  });

  it("keeps streaming to the other clients when one disconnects with frames held back", async () => {
    const stack = await startStack({ responses: [{ text: CHUNKS, chunkDelayMs: 20 }] });
    const [a, b] = await Promise.all(
      [0, 1].map(() => TestClient.connect(stack.url, { token: TOKEN })),
    );
    await a!.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "a story",
      idempotencyKey: "run-3",
    });
    await b!.waitEvent("chat", (p) => p.runId === "run-3" && p.state === "delta");
    // Cut without a close handshake, while the run still streams to both.
    a!.ws.terminate();
    const final = await b!.waitEvent("chat", (p) => p.runId === "run-3" && p.state === "final");
    expect(final.payload.message.content[0].text).toBe(CHUNKS.join(""));
    await vi.waitFor(() => expect(stack.gateway.connections()).toHaveLength(1));
  });
});
