/**
 * A response that on its own is larger than `maxBufferedBytes` (a long history read whole)
 * is not a slow consumer: the client, which reads as fast as it can, gets a typed error
 * saying so and keeps its connection. An event that large is not sent: the client keeps its
 * connection and sees the gap in `seq`. Over real sockets, every frame checked against the
 * protocol schema.
 */
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
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";

/** A stack whose connections may buffer 1 MiB, one connected client, and its session. */
async function limitedStack() {
  const limit = 1024 * 1024;
  const closes: ConnectionCloseInfo[] = [];
  const stack = await startStack({
    gateway: {
      maxPayloadBytes: 256 * 1024,
      maxBufferedBytes: limit,
      onConnectionClose: (info) => closes.push(info),
    },
  });
  const client = await TestClient.connect(stack.url, { token: TOKEN });
  return { limit, closes, client, session: stack.runtime.session(KEY) };
}

describe("a response over maxBufferedBytes", () => {
  it("answers chat.history with RESPONSE_TOO_LARGE instead of disconnecting a client that reads", async () => {
    const { limit, closes, client, session } = await limitedStack();
    // Five notes of 300,000 characters: 1.5 MB of history, more than the limit.
    // Each waited for, so that the events announcing them never pile up in the buffer.
    for (let i = 0; i < 5; i++) {
      await session.inject(String(i).repeat(300_000));
      await client.waitEvent(
        "chat",
        (p) => p.state === "final" && p.message.content[0].text.startsWith(String(i)),
      );
    }
    const error = await rpcError(client.request("chat.history", { sessionKey: KEY }));
    expect(error.code).toBe("INVALID_REQUEST");
    expect(error.details).toMatchObject({ code: "RESPONSE_TOO_LARGE", maxBytes: limit });
    // The connection stays, and a smaller page comes through.
    const page = await client.request("chat.history", { sessionKey: KEY, limit: 2 });
    expect(page.messages).toHaveLength(2);
    expect(page.messages[1].content[0].text).toBe("4".repeat(300_000));
    expect(closes).toEqual([]);
  });

  it("does not send an event larger than the limit on its own, and keeps the client", async () => {
    const { closes, client, session } = await limitedStack();
    await session.inject("before");
    await client.waitEvent("chat", (p) => p.state === "final");
    const seqBefore = client.events.at(-1)?.seq ?? 0;
    // A note of 1,200,000 characters: its chat event alone is over the limit.
    await session.inject("x".repeat(1_200_000));
    await session.inject("after");
    const after = await client.waitEvent(
      "chat",
      (p) => p.state === "final" && p.message.content[0].text === "after",
    );
    // The large event never came, its seq was used (the gap), and the connection stayed.
    const finals = client.events.filter((e) => e.event === "chat" && e.payload?.state === "final");
    expect(finals.map((e) => e.payload?.message.content[0].text)).toEqual(["before", "after"]);
    const seqs = client.events.filter((e) => (e.seq ?? 0) > seqBefore).map((e) => e.seq ?? 0);
    expect(seqs.at(-1)).toBe(after.seq);
    expect(seqs.length).toBeLessThan((after.seq ?? 0) - seqBefore);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    await client.close();
    await expect.poll(() => closes.length).toBe(1);
    expect(closes[0]?.code).toBe(1000);
    expect(closes[0]?.droppedEvents).toBeGreaterThanOrEqual(1);
  });
});
