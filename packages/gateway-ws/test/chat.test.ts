import { ProviderError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  deferred,
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

const KEY = "agent:main:main";

function chatEvents(client: TestClient, runId: string) {
  return client.events
    .filter((e) => e.event === "chat" && e.payload.runId === runId)
    .map((e) => e.payload);
}

describe("chat.send", () => {
  it("answers at once with the idempotency key as run id, then streams delta events and a final", async () => {
    const stack = await startStack({
      responses: [{ text: ["Hel", "lo ", "there"], usage: { inputTokens: 7, outputTokens: 3 } }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const ack = await client.request("chat.send", {
      sessionKey: KEY,
      message: "hi",
      idempotencyKey: "run-1",
    });
    expect(ack).toEqual({ runId: "run-1", status: "started" });
    await client.waitEvent("chat", (p) => p.runId === "run-1" && p.state === "final");
    const events = chatEvents(client, "run-1");
    expect(events.filter((e) => e.state === "delta").map((e) => e.deltaText)).toEqual([
      "Hel",
      "lo ",
      "there",
    ]);
    const final = events.at(-1)!;
    expect(final.state).toBe("final");
    expect(final.message).toMatchObject({
      role: "assistant",
      content: [{ type: "text", text: "Hello there" }],
    });
    expect(final.usage).toMatchObject({ input: 7, output: 3 });
    expect(events.map((e) => e.seq)).toEqual(events.map((_e, i) => i + 1));
  });

  it("carries out chat commands (/status, /think, /new, /compact) without sending them to the model", async () => {
    const stack = await startStack({ responses: [{ text: "Paris." }, { text: "Hi again." }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("sessions.subscribe", {});
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "Capital?",
      idempotencyKey: "q1",
    });
    await client.waitEvent("chat", (p) => p.runId === "q1" && p.state === "final");
    const command = async (message: string, idempotencyKey: string) => {
      const ack = await client.request("chat.send", { sessionKey: KEY, message, idempotencyKey });
      const { payload: final } = await client.waitEvent(
        "chat",
        (p) => p.runId === idempotencyKey && p.state === "final",
      );
      expect(final.stopReason).toBe("command");
      return { ack, text: final.message.content[0].text as string };
    };
    const status = await command("/status", "c1");
    expect(status.ack).toEqual({ runId: "c1", status: "ok", command: "status" });
    expect(status.text).toMatch(/scripted\/m1/);
    expect((await command("/think high", "c2")).text).toMatch(/high/);
    await client.waitEvent(
      "sessions.changed",
      (p) => p.sessionKey === KEY && p.reason === "patched",
    );
    expect((await client.request("sessions.get", { key: KEY })).session.thinkingLevel).toBe("high");
    expect((await command("/think loud", "c3")).text).toMatch(/loud/);
    // Nothing old enough to summarize yet: answered, nothing changed.
    expect((await command("/compact keep the capitals", "c4")).text.length).toBeGreaterThan(0);
    expect((await command("/new", "c5")).text).toMatch(/new conversation/i);
    await client.waitEvent("sessions.changed", (p) => p.sessionKey === KEY && p.reason === "reset");
    expect((await client.request("chat.history", { sessionKey: KEY })).messages).toEqual([]);
    // The model saw one question; the commands never reached it.
    expect(stack.provider.requests).toHaveLength(1);
    // A command with an attachment, or with other words, is a message like any other.
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "/new please",
      idempotencyKey: "m2",
    });
    await client.waitEvent("chat", (p) => p.runId === "m2" && p.state === "final");
    expect(stack.provider.requests).toHaveLength(2);
    expect(JSON.stringify(stack.provider.requests[1]!.messages)).toContain("/new please");
  });

  it("streams an aborted state when chat.abort stops the run", async () => {
    const hold = deferred();
    const stack = await startStack({
      responses: [
        {
          events: [
            { type: "response-start", model: "m1" },
            { type: "text-delta", text: "partial" },
            { type: "wait", until: hold.promise },
          ],
        },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "long job",
      idempotencyKey: "run-abort",
    });
    await client.waitEvent("chat", (p) => p.runId === "run-abort" && p.state === "delta");
    const aborted = await client.request("chat.abort", { sessionKey: KEY, runId: "run-abort" });
    expect(aborted).toEqual({ ok: true, aborted: true, runIds: ["run-abort"] });
    const end = await client.waitEvent(
      "chat",
      (p) => p.runId === "run-abort" && p.state !== "delta",
    );
    expect(end.payload).toMatchObject({
      state: "aborted",
      message: { content: [{ text: "partial" }] },
    });
    hold.resolve();
  });

  it("streams an error state naming the provider and model that failed", async () => {
    const stack = await startStack({
      responses: [
        {
          error: new ProviderError("connection refused", { kind: "network", provider: "scripted" }),
        },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "hi",
      idempotencyKey: "run-err",
    });
    const error = await client.waitEvent(
      "chat",
      (p) => p.runId === "run-err" && p.state === "error",
    );
    expect(error.payload.errorMessage).toContain("scripted/m1");
    expect(error.payload.errorMessage).toContain("connection refused");
    expect(error.payload.errorDetail).toMatchObject({ provider: "scripted", model: "m1" });
  });

  it("runs a message once per idempotency key: a repeat answers with the same run id", async () => {
    const stack = await startStack({ responses: [{ text: "once" }, { text: "twice" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const params = { sessionKey: KEY, message: "hi", idempotencyKey: "same-key" };
    const [a, b] = await Promise.all([
      client.request("chat.send", params),
      client.request("chat.send", params),
    ]);
    expect(a.runId).toBe("same-key");
    expect(b.runId).toBe("same-key");
    await client.waitEvent("chat", (p) => p.runId === "same-key" && p.state === "final");
    const c = await client.request("chat.send", params);
    expect(c).toEqual({ runId: "same-key", status: "ok" });
    expect(stack.provider.requests).toHaveLength(1);
  });

  it("requires an idempotency key", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const error = await rpcError(
      client.requestUnchecked("chat.send", { sessionKey: KEY, message: "hi" }),
    );
    expect(error.code).toBe("INVALID_REQUEST");
    expect(error.details).toMatchObject({ field: "idempotencyKey" });
  });

  it("refuses an empty message and a session key naming an unknown agent", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(
      (
        await rpcError(
          client.request("chat.send", { sessionKey: KEY, message: "  ", idempotencyKey: "e1" }),
        )
      ).code,
    ).toBe("INVALID_REQUEST");
    const unknown = await rpcError(
      client.request("chat.send", {
        sessionKey: "agent:ghost:main",
        message: "x",
        idempotencyKey: "e2",
      }),
    );
    expect(unknown.details).toMatchObject({ code: "UNKNOWN_AGENT_ID" });
  });

  it("shows every client the runs of every session (a second client sees the stream)", async () => {
    const stack = await startStack({ responses: [{ text: "shared" }] });
    const sender = await TestClient.connect(stack.url, { token: TOKEN });
    const watcher = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.read"],
    });
    await sender.request("chat.send", { sessionKey: KEY, message: "hi", idempotencyKey: "seen" });
    const final = await watcher.waitEvent("chat", (p) => p.runId === "seen" && p.state === "final");
    expect(final.payload.message.content[0].text).toBe("shared");
  });
});

describe("chat.history", () => {
  it("returns the conversation in OpenClaw's message shape, oldest first", async () => {
    const stack = await startStack({
      responses: [{ text: "first answer" }, { text: "second answer" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    for (const [i, message] of ["one", "two"].entries()) {
      await client.request("chat.send", { sessionKey: KEY, message, idempotencyKey: `h${i}` });
      await client.waitEvent("chat", (p) => p.runId === `h${i}` && p.state === "final");
    }
    const history = await client.request("chat.history", { sessionKey: KEY, limit: 10 });
    expect(history.sessionKey).toBe(KEY);
    expect(
      history.messages.map((m: { role: string; content: Array<{ text: string }> }) => [
        m.role,
        m.content[0]!.text,
      ]),
    ).toEqual([
      ["user", "one"],
      ["assistant", "first answer"],
      ["user", "two"],
      ["assistant", "second answer"],
    ]);
    const last = await client.request("chat.history", { sessionKey: KEY, limit: 1 });
    expect(last.messages).toHaveLength(1);
  });

  it("returns no messages for a session that does not exist yet", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });
    expect(
      (await client.request("chat.history", { sessionKey: "agent:main:empty" })).messages,
    ).toEqual([]);
  });
});

describe("agent and agent.wait", () => {
  it("agent answers accepted at once and again with the outcome when the run ends", async () => {
    const stack = await startStack({ responses: [{ text: "done it" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const first = await client.request("agent", { message: "do it", idempotencyKey: "agent-1" });
    expect(first).toMatchObject({ runId: "agent-1", status: "accepted", sessionKey: KEY });
    const id = client.frames.find(
      (f) => f.type === "res" && (f.payload as { runId?: string })?.runId === "agent-1",
    )!.id as string;
    const responses = await waitFor("the second response", () =>
      client.responses(id).length === 2 ? client.responses(id) : undefined,
    );
    expect(responses[1]!.payload).toMatchObject({
      runId: "agent-1",
      status: "ok",
      summary: "done it",
      result: { payloads: [{ text: "done it" }] },
    });
    const agentEvents = client.events.filter(
      (e) => e.event === "agent" && e.payload.runId === "agent-1",
    );
    expect(agentEvents.map((e) => e.payload.stream)).toEqual(
      expect.arrayContaining(["lifecycle", "assistant"]),
    );
  });

  it("agent retried after its run ended answers accepted first, then the outcome", async () => {
    const stack = await startStack({ responses: [{ text: "done it" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("agent", { message: "do it", idempotencyKey: "agent-2" });
    await client.request("agent.wait", { runId: "agent-2", timeoutMs: 5_000 });
    const before = client.frames.length;
    const again = await client.request("agent", { message: "do it", idempotencyKey: "agent-2" });
    expect(again).toMatchObject({ runId: "agent-2" });
    const id = client.frames.slice(before).find((f) => f.type === "res")!.id as string;
    const responses = await waitFor("both answers", () =>
      client.responses(id).length === 2 ? client.responses(id) : undefined,
    );
    // The first answer is the acceptance (no result), the second the outcome.
    expect(responses[0]!.payload).toHaveProperty("acceptedAt");
    expect(responses[0]!.payload).not.toHaveProperty("result");
    expect(responses[1]!.payload).toMatchObject({
      runId: "agent-2",
      status: "ok",
      result: { payloads: [{ text: "done it" }] },
    });
  });

  it("agent.wait returns the outcome of a finished run and times out on one still going", async () => {
    const hold = deferred();
    const stack = await startStack({
      responses: [
        { text: "quick" },
        {
          events: [
            { type: "response-start", model: "m1" },
            { type: "wait", until: hold.promise },
          ],
        },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "a", idempotencyKey: "w1" });
    expect(await client.request("agent.wait", { runId: "w1", timeoutMs: 5000 })).toMatchObject({
      runId: "w1",
      status: "ok",
    });
    await client.request("chat.send", {
      sessionKey: "agent:main:other",
      message: "b",
      idempotencyKey: "w2",
    });
    expect(await client.request("agent.wait", { runId: "w2", timeoutMs: 50 })).toEqual({
      runId: "w2",
      status: "timeout",
    });
    hold.resolve();
    expect(await client.request("agent.wait", { runId: "w2", timeoutMs: 5000 })).toMatchObject({
      status: "ok",
    });
  });
});
