/**
 * `sessions.messages.subscribe` over a real socket: a connection following a session is sent
 * every message added to its transcript as a `session.message` event, whoever added it (a
 * channel through the runtime, `chat.inject`), after a reset too; others are not, and
 * `sessions.messages.unsubscribe` stops it.
 */
import { afterEach, describe, expect, it } from "vitest";
import { MAX_FOLLOWED_SESSIONS } from "../src/session-messages.js";
import {
  closeClients,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:telegram:direct:ada";

/** The `session.message` payloads a client has been sent so far, for `key`. */
function messagesOf(client: TestClient, key = KEY): Wire[] {
  return client.events
    .filter((e) => e.event === "session.message" && e.payload.sessionKey === key)
    .map((e) => e.payload);
}

const textOf = (payload: Wire) => `${payload.message.role}:${payload.message.content[0].text}`;

describe("sessions.messages.subscribe", () => {
  it("sends a follower every message added to the session, a channel's user message included", async () => {
    const stack = await startStack({ responses: [{ text: "Hello Ada!" }, { text: "Again?" }] });
    const follower = await TestClient.connect(stack.url, { token: TOKEN });
    const other = await TestClient.connect(stack.url, { token: TOKEN });
    expect(await follower.request("sessions.messages.subscribe", { key: KEY })).toEqual({
      subscribed: true,
      key: KEY,
    });
    // A message from a channel: straight into the runtime, not through this gateway's methods.
    const run = await stack.runtime.session(KEY).send("hi, it's Ada");
    await run.result;
    await follower.waitEvent(
      "session.message",
      (p) => p.sessionKey === KEY && p.message.role === "assistant",
    );
    const sent = messagesOf(follower);
    expect(sent.map(textOf)).toEqual(["user:hi, it's Ada", "assistant:Hello Ada!"]);
    expect(sent[0].messageSeq).toBeLessThan(sent[1].messageSeq);
    expect(sent[1]).toMatchObject({
      hasActiveRun: expect.any(Boolean),
      activeRunIds: expect.any(Array),
    });
    // Each one's id opens it.
    for (const payload of sent) {
      expect(payload.message.__openclaw).toEqual({
        id: payload.messageId,
        seq: payload.messageSeq,
      });
      const got = await follower.request("chat.message.get", {
        sessionKey: KEY,
        messageId: payload.messageId,
      });
      expect(got).toEqual({ ok: true, message: payload.message });
    }
    // A message sent through chat.send names the client's run id (its idempotency key).
    await follower.request("chat.send", {
      sessionKey: KEY,
      message: "through chat",
      idempotencyKey: "c-1",
    });
    const own = await follower.waitEvent(
      "session.message",
      (p) => p.message.role === "user" && p.message.content[0].text === "through chat",
    );
    expect(own.payload.clientRunId).toBe("c-1");
    await follower.waitEvent("chat", (p) => p.runId === "c-1" && p.state === "final");
    // A connection that does not follow the session is sent none (its answer comes after any
    // event sent before it on the same socket).
    await other.request("health", {});
    expect(messagesOf(other)).toEqual([]);

    // chat.inject's note too.
    const injected = await follower.request("chat.inject", { sessionKey: KEY, message: "a note" });
    const note = await follower.waitEvent(
      "session.message",
      (p) => p.messageId === injected.messageId,
    );
    expect(textOf(note.payload)).toBe("assistant:a note");
  });

  it("goes on after a reset, and stops after sessions.messages.unsubscribe", async () => {
    const stack = await startStack({
      responses: [{ text: "one" }, { text: "two" }, { text: "three" }],
    });
    const follower = await TestClient.connect(stack.url, { token: TOKEN });
    await (await stack.runtime.session(KEY).send("before")).result;
    await follower.request("sessions.messages.subscribe", { key: KEY });
    await stack.runtime.session(KEY).reset();
    await (await stack.runtime.session(KEY).send("after the reset")).result;
    await follower.waitEvent("session.message", (p) => p.message.role === "assistant");
    // Only what came after following began: not "before", nor its answer.
    expect(messagesOf(follower).map(textOf)).toEqual(["user:after the reset", "assistant:two"]);

    expect(await follower.request("sessions.messages.unsubscribe", { key: KEY })).toEqual({
      subscribed: false,
      key: KEY,
    });
    await (await stack.runtime.session(KEY).send("unheard")).result;
    await follower.request("health", {});
    expect(messagesOf(follower).map(textOf)).not.toContain("user:unheard");
  });

  it(`follows at most ${MAX_FOLLOWED_SESSIONS} sessions per connection; a bad key is refused`, async () => {
    const stack = await startStack({ gateway: { requestsPerSecond: 1000 } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    for (let i = 0; i < MAX_FOLLOWED_SESSIONS; i++) {
      await client.request("sessions.messages.subscribe", { key: `agent:main:s${i}` });
    }
    // Again the same one: still fine.
    await client.request("sessions.messages.subscribe", { key: "agent:main:s0" });
    const error = await rpcError(
      client.request("sessions.messages.subscribe", { key: "agent:main:one-too-many" }),
    );
    expect(error.details).toMatchObject({ code: "TOO_MANY_SUBSCRIPTIONS" });
    await client.request("sessions.messages.unsubscribe", { key: "agent:main:s0" });
    await client.request("sessions.messages.subscribe", { key: "agent:main:one-too-many" });
    expect(
      (await rpcError(client.requestUnchecked("sessions.messages.subscribe", { key: "not a key" })))
        .code,
    ).toBe("INVALID_REQUEST");
  });
});
