/**
 * A response that on its own is larger than `maxBufferedBytes` (a long history read whole)
 * is not a slow consumer: the client, which reads as fast as it can, gets a typed error
 * saying so and keeps its connection. Over real sockets, every frame checked against the
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

describe("a response over maxBufferedBytes", () => {
  it("answers chat.history with RESPONSE_TOO_LARGE instead of disconnecting a client that reads", async () => {
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
    const session = stack.runtime.session(KEY);
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
});
