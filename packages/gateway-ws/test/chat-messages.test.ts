/**
 * Message ids over a real socket: `chat.history` gives every message an id (`__openclaw.id`,
 * with its transcript `seq`), `chat.message.get` reads one message by it (whole, where the
 * history cut it), and `chat.inject` adds an assistant note without a run, answered with its
 * id and shown to every client as a `chat` final.
 */
import { defineTool } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
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

interface Shown {
  role: string;
  content?: Array<{ type: string; text?: string }>;
  toolCallId?: string;
  truncated?: boolean;
  __openclaw: { id: string; seq: number };
}

async function send(client: TestClient, message: string, idempotencyKey: string) {
  await client.request("chat.send", { sessionKey: KEY, message, idempotencyKey });
  await client.waitEvent("chat", (p) => p.runId === idempotencyKey && p.state === "final");
}

async function historyOf(client: TestClient, params: Record<string, unknown> = {}) {
  return (await client.request("chat.history", { sessionKey: KEY, ...params })).messages as Shown[];
}

const twoLookups = {
  toolCalls: [
    { toolCallId: "c1", toolName: "lookup", input: { word: "a" } },
    { toolCallId: "c2", toolName: "lookup", input: { word: "b" } },
  ],
};
const lookup = defineTool({
  name: "lookup",
  description: "Looks a word up",
  parameters: z.object({ word: z.string() }),
  execute: ({ word }) => `meaning of ${word}`,
});

describe("message ids", () => {
  it("chat.history names every message; chat.message.get reads each one back by its id", async () => {
    const stack = await startStack({
      responses: [{ text: "Hello!" }, twoLookups, { text: "Both looked up." }],
      agents: [{ id: "main", model: "scripted/m1", tools: ["lookup"] }],
      runtime: { tools: [lookup] },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "hi", "r1");
    await send(client, "look up a and b", "r2");
    const messages = await historyOf(client);
    // user, assistant, user, tool calls, two tool results (one transcript entry), answer
    expect(messages.map((m) => m.role)).toEqual([
      "user",
      "assistant",
      "user",
      "assistant",
      "toolResult",
      "toolResult",
      "assistant",
    ]);
    const ids = messages.map((m) => m.__openclaw.id);
    expect(new Set(ids).size).toBe(ids.length);
    // The two results of one entry share its seq and are told apart by their ids.
    expect(messages[4]!.__openclaw.seq).toBe(messages[5]!.__openclaw.seq);
    expect(messages.map((m) => m.toolCallId).slice(4, 6)).toEqual(["c1", "c2"]);
    for (const message of messages) {
      const got = await client.request("chat.message.get", {
        sessionKey: KEY,
        messageId: message.__openclaw.id,
      });
      expect(got).toEqual({ ok: true, message });
    }
    // Ids stay the same from one read to the next.
    expect((await historyOf(client)).map((m) => m.__openclaw.id)).toEqual(ids);
  });

  it("a run's chat final carries its answer as chat.history shows it, id included", async () => {
    const stack = await startStack({
      responses: [twoLookups, { text: "Both looked up." }, { text: "Hello again." }],
      agents: [{ id: "main", model: "scripted/m1", tools: ["lookup"] }],
      runtime: { tools: [lookup] },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const finals: Shown[] = [];
    for (const [text, id] of [
      ["look up a and b", "f1"],
      ["hi", "f2"],
    ] as const) {
      await client.request("chat.send", { sessionKey: KEY, message: text, idempotencyKey: id });
      const final = await client.waitEvent("chat", (p) => p.runId === id && p.state === "final");
      finals.push(final.payload.message as Shown);
    }
    const messages = await historyOf(client);
    // The answers, at the places the history has them: the same message, the same id.
    expect(finals[0]).toEqual(messages[4]);
    expect(finals[1]).toEqual(messages[6]);
    expect(finals[0]!.__openclaw.id).toMatch(/^\d+-[0-9a-z]+$/);
    // The id works at once: the message is read back by it.
    const got = await client.request("chat.message.get", {
      sessionKey: KEY,
      messageId: finals[1]!.__openclaw.id,
    });
    expect(got).toEqual({ ok: true, message: finals[1] });
  });

  it("gives the whole text of a message chat.history cut; oversized past the caller's maxChars", async () => {
    const long = `${"All work and no play. ".repeat(50)}The end.`;
    const stack = await startStack({ responses: [{ text: long }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "tell me a story", "r1");
    const [cut] = await historyOf(client, { maxChars: 100 });
    expect(cut!.truncated).toBe(true);
    expect(cut!.content![0]!.text).toHaveLength(100);
    const whole = await client.request("chat.message.get", {
      sessionKey: KEY,
      messageId: cut!.__openclaw.id,
    });
    expect(whole.ok).toBe(true);
    expect(whole.message.content[0].text).toBe(long);
    expect(whole.message.truncated).toBeUndefined();
    expect(
      await client.request("chat.message.get", {
        sessionKey: KEY,
        messageId: cut!.__openclaw.id,
        maxChars: long.length - 1,
      }),
    ).toEqual({ ok: false, unavailableReason: "oversized" });
  });

  it("not_found for a malformed id, another session's, or one the session lost to a reset; not_visible once rewound", async () => {
    const stack = await startStack({
      responses: [{ text: "one" }, { text: "two" }, { text: "after reset" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "first", "r1");
    await send(client, "second", "r2");
    const before = await historyOf(client);
    const get = (messageId: string, sessionKey = KEY) =>
      client.request("chat.message.get", { sessionKey, messageId });
    const notFound = { ok: false, unavailableReason: "not_found" };
    for (const bad of ["nope", "0-abc", "1-", "-1-abc", "1-abc.0", "99-abc", "1-ABC"]) {
      expect(await get(bad)).toEqual(notFound);
    }
    expect(await get(before[0]!.__openclaw.id, "agent:main:other")).toEqual(notFound);

    // The last run undone: its messages are still in the transcript, but not to be shown.
    await client.request("sessions.rewind", { sessionKey: KEY, entryId: "r2" });
    expect(await get(before[3]!.__openclaw.id)).toEqual({
      ok: false,
      unavailableReason: "not_visible",
    });
    expect((await get(before[1]!.__openclaw.id)).ok).toBe(true);

    // After a reset the transcript's seqs start again: the old ids find nothing.
    await client.request("sessions.reset", { key: KEY });
    await send(client, "new start", "r3");
    const after = await historyOf(client);
    expect(after[0]!.__openclaw.seq).toBe(before[0]!.__openclaw.seq);
    expect(after[0]!.__openclaw.id).not.toBe(before[0]!.__openclaw.id);
    expect(await get(before[0]!.__openclaw.id)).toEqual(notFound);
    expect((await get(after[0]!.__openclaw.id)).message.content[0].text).toBe("new start");
  });
});

describe("chat.history around a message", () => {
  it("answers the page with the message in the middle, offset telling how many are newer; fewer on one side fill from the other", async () => {
    const turns = 10;
    const stack = await startStack({
      responses: Array.from({ length: turns }, (_, i) => ({ text: `answer ${i}` })),
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    for (let i = 0; i < turns; i++) await send(client, `question ${i}`, `r${i}`);
    const all = await historyOf(client);
    expect(all).toHaveLength(2 * turns);
    const texts = (messages: Shown[]) => messages.map((m) => m.content![0]!.text);

    const middle = await client.request("chat.history", {
      sessionKey: KEY,
      messageId: all[6]!.__openclaw.id,
      limit: 5,
    });
    expect(texts(middle.messages)).toEqual(texts(all.slice(4, 9)));
    expect(middle.offset).toBe(all.length - 9);
    expect(middle.deltaCursor).toBeUndefined();
    // The offset continues it: the same page as chat.history with that offset.
    const same = await historyOf(client, { limit: 5, offset: middle.offset });
    expect(texts(same)).toEqual(texts(middle.messages));

    // Near the newest end: fewer newer messages, more older ones.
    const late = await client.request("chat.history", {
      sessionKey: KEY,
      messageId: all.at(-1)!.__openclaw.id,
      limit: 5,
    });
    expect(texts(late.messages)).toEqual(texts(all.slice(-5)));
    expect(late.offset).toBeUndefined();
    // Near the oldest end: more newer ones.
    const early = await client.request("chat.history", {
      sessionKey: KEY,
      messageId: all[0]!.__openclaw.id,
      limit: 4,
    });
    expect(texts(early.messages)).toEqual(texts(all.slice(0, 4)));
    expect(early.offset).toBe(all.length - 4);
  });

  it("refuses an id it cannot show (unknown, undone) with MESSAGE_NOT_FOUND, and cursor or offset beside it", async () => {
    const stack = await startStack({ responses: [{ text: "one" }, { text: "two" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "first", "r1");
    await send(client, "second", "r2");
    const all = await historyOf(client);
    await client.request("sessions.rewind", { sessionKey: KEY, entryId: "r2" });
    for (const messageId of ["1-zzz", "m".repeat(70_000), all[3]!.__openclaw.id]) {
      expect(
        (await rpcError(client.request("chat.history", { sessionKey: KEY, messageId }))).details,
      ).toMatchObject({ code: "MESSAGE_NOT_FOUND" });
    }
    const id = all[0]!.__openclaw.id;
    for (const extra of [{ offset: 1 }, { cursor: "abc" }]) {
      expect(
        (
          await rpcError(
            client.request("chat.history", { sessionKey: KEY, messageId: id, ...extra }),
          )
        ).details,
      ).toMatchObject({ code: "INVALID_PARAMS" });
    }
  });
});

describe("chat.history inputRunIds", () => {
  it("says which sent messages the session took (with the message that took each) and which wait, listing those", async () => {
    const gate = deferred();
    const stack = await startStack({
      responses: [
        { text: "first answer" },
        {
          events: [
            { type: "response-start", model: "m1" },
            { type: "wait", until: gate.promise },
            { type: "text-delta", text: "slow answer" },
            { type: "finish", reason: "stop" },
          ],
        },
        { text: "third answer" },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "first", "r1");
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "slow one",
      idempotencyKey: "r2",
    });
    await client.waitEvent("agent", (p) => p.runId === "r2" && p.stream === "lifecycle");
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "waiting",
      idempotencyKey: "r3",
    });
    const page = await client.request("chat.history", {
      sessionKey: KEY,
      inputRunIds: ["r1", "r2", "r3", "never-sent"],
    });
    const idOf = (text: string) =>
      (page.messages as Shown[]).find((m) => m.role === "user" && m.content![0]!.text === text)!
        .__openclaw.id;
    expect(page.inputReceipts).toEqual([
      { runId: "r1", state: "consumed", consumedByEventId: idOf("first") },
      { runId: "r2", state: "consumed", consumedByEventId: idOf("slow one") },
      { runId: "r3", state: "pending" },
    ]);
    expect(page.inputConsumptions).toEqual([
      { runId: "r1", consumedByEventId: idOf("first") },
      { runId: "r2", consumedByEventId: idOf("slow one") },
    ]);
    // The queued one is listed as waiting, in chat form.
    expect(page.pendingInputs).toEqual({
      items: [
        {
          runId: "r3",
          acceptedAt: expect.any(Number),
          message: {
            role: "user",
            content: [{ type: "text", text: "waiting" }],
            timestamp: expect.any(Number),
          },
        },
      ],
      total: 1,
    });
    gate.resolve();
    await client.waitEvent("chat", (p) => p.runId === "r3" && p.state === "final");
    expect((await client.request("chat.history", { sessionKey: KEY })).pendingInputs).toEqual({
      items: [],
      total: 0,
    });
    // A delta read says so too; a page around one message answers none.
    const delta = await client.request("chat.history", {
      sessionKey: KEY,
      cursor: page.deltaCursor,
      inputRunIds: ["r3"],
    });
    const taken = (delta.messages as Shown[]).find((m) => m.role === "user")!;
    expect(delta.inputReceipts).toEqual([
      { runId: "r3", state: "consumed", consumedByEventId: taken.__openclaw.id },
    ]);
    const around = await client.request("chat.history", {
      sessionKey: KEY,
      messageId: idOf("first"),
      inputRunIds: ["r1"],
    });
    expect(around.inputReceipts).toEqual([]);
  });

  it("refuses no ids, more than 50 ids, repeated ids and ids over 256 characters", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    for (const inputRunIds of [
      [],
      Array.from({ length: 51 }, (_, i) => `r${i}`),
      ["a", "a"],
      ["r".repeat(257)],
    ]) {
      const error = await rpcError(
        client.requestUnchecked("chat.history", { sessionKey: KEY, inputRunIds }),
      );
      expect(error.details).toMatchObject({ code: "INVALID_PARAMS", field: "inputRunIds" });
    }
  });
});

describe("chat.inject", () => {
  it("adds an assistant note: answered with its id, shown to every client, in the history and the next request", async () => {
    const stack = await startStack({ responses: [{ text: "Hello!" }, { text: "Good news." }] });
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const reader = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.read"],
    });
    await send(admin, "hi", "r1");
    await admin.request("sessions.subscribe", {});

    const answer = await admin.request("chat.inject", {
      sessionKey: KEY,
      message: "Your order #1234 has shipped.",
      label: "shop",
    });
    expect(answer).toEqual({ ok: true, messageId: expect.any(String) });
    const text = "[shop]\n\nYour order #1234 has shipped.";
    const shown = await reader.waitEvent("chat", (p) => p.runId === `inject-${answer.messageId}`);
    expect(shown.payload).toMatchObject({
      sessionKey: KEY,
      seq: 0,
      state: "final",
      message: {
        role: "assistant",
        content: [{ type: "text", text }],
        __openclaw: { id: answer.messageId },
      },
    });
    await admin.waitEvent(
      "sessions.changed",
      (p) => p.sessionKey === KEY && p.reason === "injected",
    );
    const history = await historyOf(reader);
    expect(history.at(-1)).toMatchObject({
      role: "assistant",
      content: [{ type: "text", text }],
      __openclaw: { id: answer.messageId },
    });
    expect(
      await reader.request("chat.message.get", { sessionKey: KEY, messageId: answer.messageId }),
    ).toEqual({ ok: true, message: history.at(-1) });
    // No model call for the note; the next run's request carries it.
    expect(stack.provider.requests).toHaveLength(1);
    await send(admin, "any news?", "r2");
    const asked = stack.provider.requests[1]!.messages;
    expect(asked.map((m) => m.role)).toEqual(["user", "assistant", "assistant", "user"]);
    expect(asked[2]!.content).toEqual([{ type: "text", text }]);
  });

  it("shows every client a note injected elsewhere (the host's session.inject, a channel's delivery mirror), once", async () => {
    const stack = await startStack({ responses: [{ text: "Hello!" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "hi", "r1");
    await client.request("sessions.subscribe", {});
    await client.request("sessions.messages.subscribe", { key: KEY });
    const injected = await stack.runtime.session(KEY).inject("Your order shipped.", {
      label: "shop",
    });
    const final = await client.waitEvent(
      "chat",
      (p) => p.state === "final" && p.runId.startsWith("inject-"),
    );
    const messageId = final.payload.runId.slice("inject-".length);
    expect(final.payload.message).toMatchObject({
      role: "assistant",
      content: [{ type: "text", text: "[shop]\n\nYour order shipped." }],
      __openclaw: { id: messageId, seq: injected.seq },
    });
    await client.waitEvent("sessions.changed", (p) => p.reason === "injected");
    const followed = await client.waitEvent("session.message", (p) => p.messageId === messageId);
    expect(followed.payload.message.__openclaw.seq).toBe(injected.seq);
    // chat.inject's own note is shown once too.
    const answer = await client.request("chat.inject", { sessionKey: KEY, message: "second" });
    await client.request("health", {});
    const finals = client.events.filter(
      (e) => e.event === "chat" && e.payload.runId === `inject-${answer.messageId}`,
    );
    expect(finals).toHaveLength(1);
  });

  it("needs operator.admin; refuses a session that does not exist, an empty message or a two-line label, saving nothing", async () => {
    const stack = await startStack({ responses: [{ text: "Hello!" }] });
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const writer = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.write"],
    });
    await send(admin, "hi", "r1");
    const before = await stack.store.transcripts.lastSeq(KEY);

    const denied = await rpcError(
      writer.request("chat.inject", { sessionKey: KEY, message: "sneaky" }),
    );
    expect(denied.message).toMatch(/operator\.admin/);
    expect(
      await rpcError(
        admin.request("chat.inject", { sessionKey: "agent:main:nobody", message: "hello?" }),
      ),
    ).toMatchObject({ details: { code: "SESSION_NOT_FOUND" } });
    expect(await stack.store.sessions.get("agent:main:nobody")).toBeUndefined();
    for (const params of [
      { sessionKey: KEY, message: "   " },
      { sessionKey: KEY, message: "ok", label: "two\nlines" },
    ]) {
      expect((await rpcError(admin.requestUnchecked("chat.inject", params))).code).toBe(
        "INVALID_REQUEST",
      );
    }
    expect(await stack.store.transcripts.lastSeq(KEY)).toBe(before);
  });
});

describe("sessions.compaction.list", () => {
  it("lists a session's compactions, manual and automatic, with their summary, tokens and first kept message", async () => {
    const stack = await startStack({
      responses: [
        { text: `one ${"and on ".repeat(100)}` },
        { text: "two" },
        { text: "three" },
        { text: "the summary" },
        { text: "four" },
        { text: "the automatic summary" },
      ],
      agents: [
        {
          id: "main",
          model: "scripted/m1",
          // Far above what three short turns make: only the fourth's runs past it.
          autoCompact: { thresholdTokens: 1_000_000, keepTurns: 1 },
        },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(await client.request("sessions.compaction.list", { key: KEY })).toEqual({
      ok: true,
      key: KEY,
      checkpoints: [],
    });
    await send(client, "first", "r1");
    await send(client, "second", "r2");
    await send(client, "third", "r3");
    await client.request("sessions.compact", { key: KEY });
    const listed = await client.request("sessions.compaction.list", { key: KEY });
    expect(listed.checkpoints).toHaveLength(1);
    const [manual] = listed.checkpoints;
    expect(manual).toMatchObject({
      sessionKey: KEY,
      sessionId: KEY,
      reason: "manual",
      summary: "the summary",
      tokensVersion: 1,
      preCompaction: { sessionId: KEY },
      postCompaction: { sessionId: KEY },
    });
    expect(manual.createdAt).toBeGreaterThan(0);
    expect(manual.tokensAfter).toBeLessThan(manual.tokensBefore);
    // The first message it kept is the second turn's question (keepTurns 2 by default).
    const kept = await client.request("chat.message.get", {
      sessionKey: KEY,
      messageId: manual.firstKeptEntryId,
    });
    expect(kept.message.content[0].text).toBe("second");

    // An automatic one: the agent's threshold lowered so that the next turn passes it.
    stack.runtime.reconfigure({
      agents: [
        {
          id: "main",
          model: "scripted/m1",
          autoCompact: { thresholdTokens: 1, keepTurns: 1 },
        },
      ],
    });
    await send(client, "fourth", "r4");
    const later = await waitFor("the automatic compaction", async () => {
      const { checkpoints } = await client.request("sessions.compaction.list", { key: KEY });
      return checkpoints.length === 2 ? checkpoints : undefined;
    });
    expect(later[0]).toEqual(manual);
    expect(later[1]).toMatchObject({ reason: "auto-threshold", summary: "the automatic summary" });
    expect(later[1].checkpointId).not.toBe(manual.checkpointId);
  });
});
