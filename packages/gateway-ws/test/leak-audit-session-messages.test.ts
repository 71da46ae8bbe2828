/**
 * Leak audit of `sessions.messages.subscribe` (`SessionMessageFeed`): what the feed keeps for
 * a followed session, and for a run whose streamed text triggered a read, must go once the
 * follower has left (disconnected or unsubscribed) and the run has ended. A gateway whose
 * dashboard clients follow sessions and close their tabs mid-answer for months must not keep
 * one entry per session or per run.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { SessionMessageFeed } from "../src/session-messages.js";
import {
  closeClients,
  deferred,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  waitFor,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  vi.restoreAllMocks();
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:telegram:direct:ada";

/** The feed of the gateway started next (caught on its first `follow`). */
function catchFeed(): () => SessionMessageFeed {
  const follow = vi.spyOn(SessionMessageFeed.prototype, "follow");
  return () => {
    const feed = follow.mock.contexts[0] as SessionMessageFeed | undefined;
    if (feed === undefined) throw new Error("no session was followed yet");
    return feed;
  };
}

/** A response that streams some text, holds until `gate` settles, then reports usage and ends. */
function heldAnswer(gate: Promise<unknown>) {
  return {
    events: [
      { type: "response-start" as const, model: "m1" },
      { type: "text-delta" as const, text: "Let me think" },
      { type: "wait" as const, until: gate },
      { type: "text-delta" as const, text: " ... done." },
      { type: "usage" as const, usage: { inputTokens: 3, outputTokens: 4 } },
      { type: "finish" as const, reason: "stop" as const },
    ],
  };
}

describe("leak audit: session.message feed", () => {
  it("forgets a followed session once its only follower disconnects", async () => {
    const feedOf = catchFeed();
    const stack = await startStack();
    const follower = await TestClient.connect(stack.url, { token: TOKEN });
    const connId = follower.hello.server.connId as string;
    await follower.request("sessions.messages.subscribe", { key: KEY });
    expect(feedOf().stats().sessions).toBe(1);
    await follower.close();
    await waitFor(
      "the gateway to see the follower leave",
      () => !stack.gateway.connections().some((c) => c.connId === connId),
    );
    expect(feedOf().stats()).toEqual({ sessions: 0, streamingRuns: 0 });
  });

  it("keeps nothing of a subscription whose connection closed while it was being set up", async () => {
    const feedOf = catchFeed();
    const stack = await startStack();
    // The transcript's end is read slowly: the follower leaves meanwhile.
    const reading = deferred();
    const release = deferred();
    const transcripts = stack.store.transcripts;
    const lastSeq = transcripts.lastSeq.bind(transcripts);
    vi.spyOn(transcripts, "lastSeq").mockImplementation(async (key) => {
      reading.resolve();
      await release.promise;
      return lastSeq(key);
    });
    const follower = await TestClient.connect(stack.url, { token: TOKEN });
    const connId = follower.hello.server.connId as string;
    const subscribed = follower.request("sessions.messages.subscribe", { key: KEY });
    subscribed.catch(() => undefined);
    await reading.promise;
    await follower.close();
    await waitFor(
      "the gateway to see the follower leave",
      () => !stack.gateway.connections().some((c) => c.connId === connId),
    );
    release.resolve();
    // Every `follow` the gateway started has finished.
    await Promise.allSettled(
      vi.mocked(SessionMessageFeed.prototype.follow).mock.results.map((r) => r.value),
    );
    expect(feedOf().stats()).toEqual({ sessions: 0, streamingRuns: 0 });
  });

  it("forgets a streaming run whose follower disconnected before the run ended", async () => {
    const feedOf = catchFeed();
    const gate = deferred();
    const stack = await startStack({ responses: [heldAnswer(gate.promise)] });
    const follower = await TestClient.connect(stack.url, { token: TOKEN });
    const connId = follower.hello.server.connId as string;
    await follower.request("sessions.messages.subscribe", { key: KEY });
    await follower.request("chat.send", {
      sessionKey: KEY,
      message: "think about it",
      idempotencyKey: "leak-1",
    });
    await follower.waitEvent("chat", (p) => p.runId === "leak-1" && p.state === "delta");
    expect(feedOf().stats().streamingRuns).toBe(1);
    await follower.close();
    await waitFor(
      "the gateway to see the follower leave",
      () => !stack.gateway.connections().some((c) => c.connId === connId),
    );
    const watcher = await TestClient.connect(stack.url, { token: TOKEN });
    gate.resolve();
    await watcher.waitEvent("chat", (p) => p.runId === "leak-1" && p.state === "final");
    expect(feedOf().stats()).toEqual({ sessions: 0, streamingRuns: 0 });
  });

  it("forgets a streaming run whose follower unsubscribed before the run ended", async () => {
    const feedOf = catchFeed();
    const gate = deferred();
    const stack = await startStack({ responses: [heldAnswer(gate.promise)] });
    const follower = await TestClient.connect(stack.url, { token: TOKEN });
    await follower.request("sessions.messages.subscribe", { key: KEY });
    await follower.request("chat.send", {
      sessionKey: KEY,
      message: "think about it",
      idempotencyKey: "leak-2",
    });
    await follower.waitEvent("chat", (p) => p.runId === "leak-2" && p.state === "delta");
    expect(feedOf().stats().streamingRuns).toBe(1);
    await follower.request("sessions.messages.unsubscribe", { key: KEY });
    gate.resolve();
    await follower.waitEvent("chat", (p) => p.runId === "leak-2" && p.state === "final");
    expect(feedOf().stats()).toEqual({ sessions: 0, streamingRuns: 0 });
  });
});
