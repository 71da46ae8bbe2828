/**
 * `chat.history` cursors (delta / reset), paging and `maxChars`; `chat.send`'s `deliver` and
 * `originating*` fields through a real `ChannelManager` and the in-memory chat platform;
 * non-image attachments; `sessions.list` orders with stable paging. Over real sockets, every
 * frame checked against the protocol schema.
 */
import { ChannelManager } from "@beamclaw/core";
import { createMemoryPlatform, type MemoryPlatform } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import type { GatewayChannelDelivery } from "../src/index.js";
import {
  closeClients,
  recordingTranscriber,
  rpcError,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  validatorOf,
  type Wire,
  waitFor,
} from "./support.js";

useSchemaCheck();
const managers: ChannelManager[] = [];
afterEach(async () => {
  await closeClients();
  for (const manager of managers.splice(0)) await manager.stop();
  await stopStacks();
});

function expectSchema(def: string, value: unknown): void {
  const validate = validatorOf(def);
  const ok = validate(value);
  expect(ok, `${def}: ${JSON.stringify(validate.errors)}\n${JSON.stringify(value)}`).toBe(true);
}

async function chat(client: TestClient, sessionKey: string, message: string, runId: string) {
  await client.request("chat.send", { sessionKey, message, idempotencyKey: runId });
  return client.waitEvent("chat", (p) => p.runId === runId && p.state === "final");
}

const text = (m: Wire) => m.content.find((c: Wire) => c.type === "text")?.text;

describe("chat.history cursors", () => {
  it("answers only what is new after a cursor, and reset after the session was reset", async () => {
    const stack = await startStack({ responses: [{ text: "one" }, { text: "two" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const key = "agent:main:main";
    await chat(client, key, "first", "r1");
    const full = await client.request("chat.history", { sessionKey: key });
    expect(full.messages.map(text)).toEqual(["first", "one"]);
    expect(typeof full.deltaCursor).toBe("string");

    const none = await client.request("chat.history", {
      sessionKey: key,
      cursor: full.deltaCursor,
    });
    expectSchema("ChatHistoryCursorResult", none);
    expect(none).toMatchObject({ kind: "delta", messages: [], deltaCursor: full.deltaCursor });
    expect(none.sessionInfo).toMatchObject({ key });

    await chat(client, key, "second", "r2");
    const delta = await client.request("chat.history", {
      sessionKey: key,
      cursor: none.deltaCursor,
    });
    expectSchema("ChatHistoryDeltaResult", delta);
    expect(delta.messages.map(text)).toEqual(["second", "two"]);
    expect(delta.messages.every((m: Wire) => m.runId !== undefined)).toBe(true);
    expect(delta.deltaCursor).not.toBe(none.deltaCursor);
    // Delta paging: one transcript entry at a time, then nothing.
    const firstHalf = await client.request("chat.history", {
      sessionKey: key,
      cursor: none.deltaCursor,
      limit: 1,
    });
    expect(firstHalf.messages.map(text)).toEqual(["second"]);
    const secondHalf = await client.request("chat.history", {
      sessionKey: key,
      cursor: firstHalf.deltaCursor,
    });
    expect(secondHalf.messages.map(text)).toEqual(["two"]);
    expect(secondHalf.deltaCursor).toBe(delta.deltaCursor);

    await client.request("sessions.reset", { key });
    const reset = await client.request("chat.history", {
      sessionKey: key,
      cursor: delta.deltaCursor,
    });
    expectSchema("ChatHistoryResetResult", reset);
    expect(reset).toEqual({ kind: "reset" });
    // The cursor of the (now empty) session starts over.
    const after = await client.request("chat.history", { sessionKey: key });
    expect(after.messages).toEqual([]);
    expect(
      (await client.request("chat.history", { sessionKey: key, cursor: after.deltaCursor })).kind,
    ).toBe("delta");
  });

  it("after a rewind in the embedding app, the undone run is gone from chat.history and a cursor says reset", async () => {
    const stack = await startStack({
      responses: [{ text: "one" }, { text: "a bad two" }, { text: "a better two" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const key = "agent:main:main";
    await chat(client, key, "first", "w1");
    await chat(client, key, "second", "w2");
    const before = await client.request("chat.history", { sessionKey: key });
    expect(before.messages.map(text)).toEqual(["first", "one", "second", "a bad two"]);

    const { inputs } = await stack.runtime.session(key).rewind();
    expect(inputs).toEqual([{ text: "second" }]);
    const reset = await client.request("chat.history", {
      sessionKey: key,
      cursor: before.deltaCursor,
    });
    expect(reset).toEqual({ kind: "reset" });
    const after = await client.request("chat.history", { sessionKey: key });
    expect(after.messages.map(text)).toEqual(["first", "one"]);

    // Regenerated over the gateway: the history reads as if the bad answer never was.
    await chat(client, key, inputs[0]!.text, "w3");
    const regenerated = await client.request("chat.history", { sessionKey: key });
    expect(regenerated.messages.map(text)).toEqual(["first", "one", "second", "a better two"]);
  });

  it("pages back with offset, caps characters, and refuses foreign or broken cursors", async () => {
    const stack = await startStack({
      responses: [{ text: "alpha reply" }, { text: "beta reply" }, { text: "other" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const key = "agent:main:main";
    await chat(client, key, "alpha", "p1");
    await chat(client, key, "beta", "p2");
    const older = await client.request("chat.history", { sessionKey: key, limit: 2, offset: 2 });
    expect(older.messages.map(text)).toEqual(["alpha", "alpha reply"]);
    const newest = await client.request("chat.history", { sessionKey: key, limit: 2 });
    expect(newest.messages.map(text)).toEqual(["beta", "beta reply"]);
    const capped = await client.request("chat.history", { sessionKey: key, maxChars: 14 });
    expect(capped.messages.map(text)).toEqual(["beta", "beta reply"]);
    const cut = await client.request("chat.history", { sessionKey: key, maxChars: 4 });
    expect(cut.messages).toHaveLength(1);
    expect(cut.messages[0]).toMatchObject({ truncated: true });
    expect(text(cut.messages[0])).toBe("beta");

    const otherKey = "agent:main:other";
    await chat(client, otherKey, "elsewhere", "p3");
    const otherCursor = (await client.request("chat.history", { sessionKey: otherKey }))
      .deltaCursor;
    const foreign = await rpcError(
      client.request("chat.history", { sessionKey: key, cursor: otherCursor }),
    );
    expect(foreign).toMatchObject({
      code: "INVALID_REQUEST",
      details: { code: "CURSOR_SESSION_MISMATCH" },
    });
    const broken = await rpcError(
      client.request("chat.history", { sessionKey: key, cursor: "not-a-cursor" }),
    );
    expect(broken.details).toMatchObject({ code: "INVALID_CURSOR" });
    const mixed = await rpcError(
      client.request("chat.history", { sessionKey: key, cursor: otherCursor, offset: 1 }),
    );
    expect(mixed.details).toMatchObject({ field: "offset" });
    const reader = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.approvals"],
    });
    const denied = await rpcError(reader.request("chat.history", { sessionKey: key }));
    expect(denied).toMatchObject({ code: "FORBIDDEN", details: { missingScope: "operator.read" } });
  });
});

/** A gateway whose `chat.send` delivers through a real ChannelManager on the memory platform. */
async function stackWithChannels(
  responses: string[],
): Promise<{ stack: Stack; platform: MemoryPlatform; manager: ChannelManager }> {
  let manager: ChannelManager | undefined;
  const delivery: GatewayChannelDelivery = {
    get channelIds() {
      return manager?.channelIds ?? [];
    },
    deliver: (channelId, target, message, options) =>
      manager!.deliver(channelId, target, message, options),
  };
  const stack = await startStack({
    responses: responses.map((t) => ({ text: t })),
    gateway: { channels: delivery },
  });
  const platform = createMemoryPlatform();
  manager = new ChannelManager({
    runtime: stack.runtime,
    channels: [{ plugin: platform.createChannel(), dmPolicy: "open" }],
  });
  await manager.start();
  managers.push(manager);
  return { stack, platform, manager };
}

describe("chat.send delivery and origin", () => {
  it("delivers the reply to the originating chat, then to the session's last route", async () => {
    const { stack, platform } = await stackWithChannels(["Delivered!", "Again!"]);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const key = "agent:main:phone";
    await client.request("chat.send", {
      sessionKey: key,
      message: "hello from the phone",
      idempotencyKey: "d1",
      deliver: true,
      originatingChannel: "memory",
      originatingTo: "chat-42",
      originatingAccountId: "default",
      originatingThreadId: "t-7",
    });
    await client.waitEvent("chat", (p) => p.runId === "d1" && p.state === "final");
    const sent = await waitFor("the reply on the platform", () =>
      platform.outbound().find((o) => o.kind === "text" && o.text === "Delivered!"),
    );
    expect(sent.target).toMatchObject({ chatId: "chat-42", chatType: "direct", threadId: "t-7" });
    // The origin is recorded on the session: its row names the channel and the account.
    const { sessions } = await client.request("sessions.list", {});
    expect(sessions.find((s: Wire) => s.key === key)).toMatchObject({
      channel: "memory",
      accountId: "default",
    });
    expect((await client.request("sessions.describe", { key })).session).toMatchObject({
      channel: "memory",
      accountId: "default",
    });

    // No originating fields: the reply goes where the session was last reached.
    await client.request("chat.send", {
      sessionKey: key,
      message: "again",
      idempotencyKey: "d2",
      deliver: true,
    });
    await waitFor("the second reply", () =>
      platform.outbound().find((o) => o.kind === "text" && o.text === "Again!"),
    );
  });

  it("mirrors the reply into the conversation of the chat it lands in, unless that is the session that wrote it", async () => {
    const { stack, platform, manager } = await stackWithChannels([
      "Hi Pat",
      "Sent from the phone",
      "Said in the chat's own session",
    ]);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    // Pat wrote to the bot: the chat's messages go to the main session (dmScope main).
    expect(
      await platform.inject({
        chatType: "direct",
        chatId: "chat-42",
        peer: { id: "pat" },
        text: "hi from the chat",
        messageId: "p1",
      }),
    ).toMatchObject({ sessionKey: "agent:main:main" });
    await waitFor("the reply in the chat", () =>
      platform.outbound().find((o) => o.kind === "text" && o.text === "Hi Pat"),
    );
    const route = { originatingChannel: "memory", originatingTo: "chat-42" };

    // Written in another session: the chat's conversation gets it too.
    await client.request("chat.send", {
      sessionKey: "agent:main:phone",
      message: "tell Pat",
      idempotencyKey: "m1",
      deliver: true,
      ...route,
    });
    const history = (key: string) =>
      client
        .request("chat.history", { sessionKey: key })
        .then((h) => (h.messages as Wire[]).map(text));
    await waitFor("the mirror in the main session", async () =>
      (await history("agent:main:main")).includes("Sent from the phone"),
    );

    // Written in the chat's own session: it has the answer already, once.
    await client.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "and from here",
      idempotencyKey: "m2",
      deliver: true,
      ...route,
    });
    await waitFor("the second reply in the chat", () =>
      platform
        .outbound()
        .find((o) => o.kind === "text" && o.text === "Said in the chat's own session"),
    );
    await manager.stop();
    expect(await history("agent:main:main")).toEqual([
      "hi from the chat",
      "Hi Pat",
      "Sent from the phone",
      "and from here",
      "Said in the chat's own session",
    ]);
    expect(await history("agent:main:phone")).toEqual(["tell Pat", "Sent from the phone"]);
  });

  it("refuses a delivery it cannot make before running anything", async () => {
    const { stack, platform } = await stackWithChannels([]);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const noTarget = await rpcError(
      client.request("chat.send", {
        sessionKey: "agent:main:fresh",
        message: "hi",
        idempotencyKey: "n1",
        deliver: true,
      }),
    );
    expect(noTarget).toMatchObject({
      code: "INVALID_REQUEST",
      details: { code: "DELIVERY_TARGET_MISSING" },
    });
    const unknown = await rpcError(
      client.request("chat.send", {
        sessionKey: "agent:main:fresh",
        message: "hi",
        idempotencyKey: "n2",
        deliver: true,
        originatingChannel: "carrier-pigeon",
        originatingTo: "roof",
      }),
    );
    expect(unknown.details).toMatchObject({ code: "CHANNEL_NOT_FOUND", channel: "carrier-pigeon" });
    const orphan = await rpcError(
      client.request("chat.send", {
        sessionKey: "agent:main:fresh",
        message: "hi",
        idempotencyKey: "n3",
        originatingTo: "chat-1",
      }),
    );
    expect(orphan.details).toMatchObject({ field: "originatingChannel" });
    expect(await stack.store.transcripts.lastSeq("agent:main:fresh")).toBe(0);
    expect(stack.provider.requests).toHaveLength(0);
    expect(platform.outbound()).toEqual([]);
    const reader = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });
    const denied = await rpcError(
      reader.request("chat.send", {
        sessionKey: "agent:main:x",
        message: "hi",
        idempotencyKey: "n4",
      }),
    );
    expect(denied.details).toMatchObject({ missingScope: "operator.write" });
  });

  it("answers UNAVAILABLE for deliver on a gateway without channels", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const error = await rpcError(
      client.request("chat.send", {
        sessionKey: "agent:main:main",
        message: "hi",
        idempotencyKey: "u1",
        deliver: true,
        originatingChannel: "memory",
        originatingTo: "chat-1",
      }),
    );
    expect(error).toMatchObject({
      code: "UNAVAILABLE",
      retryable: false,
      details: { code: "SUBSYSTEM_UNAVAILABLE", subsystem: "channels" },
    });
  });
});

const PNG_1X1 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");

describe("chat.send attachments", () => {
  it("gives text files to the model with the message, images as images, and PDFs as file parts", async () => {
    const stack = await startStack({ responses: [{ text: "read it" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(client.hello.policy.attachments).toEqual({
      maxBytes: 512 * 1024,
      maxImageBytes: Math.floor((1_048_576 * 3) / 4),
    });
    await client.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "summarize",
      idempotencyKey: "a1",
      attachments: [
        {
          type: "file",
          mimeType: "text/markdown",
          fileName: "notes.md",
          content: b64("# Plan\nship it"),
        },
        { fileName: "data.json", content: `data:application/json;base64,${b64('{"a":1}')}` },
        { type: "image", mimeType: "image/png", content: PNG_1X1 },
        { type: "file", fileName: "invoice.pdf", content: b64("%PDF-1.7\n%fake but well-started") },
      ],
    });
    await client.waitEvent("chat", (p) => p.runId === "a1" && p.state === "final");
    const request = stack.provider.requests[0]!;
    const user = request.messages.find((m) => m.role === "user")!;
    const parts = user.content as Array<{ type: string; text?: string; mediaType?: string }>;
    const textPart = parts.find((p) => p.type === "text")!.text!;
    expect(textPart).toContain("summarize");
    expect(textPart).toContain(
      '<attachment name="notes.md" type="text/markdown">\n# Plan\nship it',
    );
    expect(textPart).toContain('<attachment name="data.json" type="application/json">\n{"a":1}');
    expect(parts.find((p) => p.type === "image")).toMatchObject({ mediaType: "image/png" });
    // A PDF goes to the model as a file part, named, not into the message's text.
    expect(parts.find((p) => p.type === "file")).toEqual({
      type: "file",
      mediaType: "application/pdf",
      data: b64("%PDF-1.7\n%fake but well-started"),
      filename: "invoice.pdf",
    });
    expect(textPart).not.toContain("invoice.pdf");
    // chat.history shows it as a file block, its bytes left out as an image's are.
    const history = await client.request("chat.history", { sessionKey: "agent:main:main" });
    expect(history.messages[0].content).toContainEqual({
      type: "file",
      mimeType: "application/pdf",
      fileName: "invoice.pdf",
      omitted: true,
      bytes: b64("%PDF-1.7\n%fake but well-started").length,
    });
  });

  it("transcribes audio attachments with the gateway's transcriber; a failed transcription sends nothing", async () => {
    const { transcriber, heard } = recordingTranscriber(
      (bytes) => ` you said: ${bytes} `,
      "garbled",
    );
    const stack = await startStack({ responses: [{ text: "on it" }], gateway: { transcriber } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "see my voice note",
      idempotencyKey: "v1",
      attachments: [
        { type: "file", mimeType: "audio/ogg", fileName: "memo.ogg", content: b64("book a table") },
      ],
    });
    await client.waitEvent("chat", (p) => p.runId === "v1" && p.state === "final");
    expect(heard).toEqual([
      { bytes: "book a table", mediaType: "audio/ogg", filename: "memo.ogg" },
    ]);
    const user = stack.provider.requests[0]!.messages.find((m) => m.role === "user")!;
    expect(user.content).toEqual([
      {
        type: "text",
        text: "see my voice note\n\n[audio: memo.ogg, transcribed]\nyou said: book a table",
      },
    ]);
    const error = await rpcError(
      client.request("chat.send", {
        sessionKey: "agent:main:main",
        message: "",
        idempotencyKey: "v2",
        attachments: [{ mimeType: "audio/webm", content: b64("garbled") }],
      }),
    );
    expect(error).toMatchObject({
      code: "UNAVAILABLE",
      retryable: true,
      details: { code: "TRANSCRIPTION_FAILED", transcriber: "test-stt" },
    });
    expect(stack.provider.requests).toHaveLength(1);
  });

  it("refuses unsupported, oversized and malformed attachments with typed errors", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const send = (attachments: unknown[]) =>
      rpcError(
        client.request("chat.send", {
          sessionKey: "agent:main:main",
          message: "look",
          idempotencyKey: `bad-${Math.random()}`,
          attachments,
        }),
      );
    const cases: Array<[unknown[], Record<string, unknown>]> = [
      [
        [{ mimeType: "audio/mpeg", content: b64("ID3....") }],
        { code: "UNSUPPORTED_ATTACHMENT", mimeType: "audio/mpeg" },
      ],
      [
        [{ mimeType: "application/pdf", content: b64("<html>not a pdf</html>") }],
        { code: "ATTACHMENT_INVALID", mimeType: "application/pdf" },
      ],
      [
        [{ mimeType: "application/msword", content: b64("\u00d0\u00cf\u0011\u00e0") }],
        { code: "UNSUPPORTED_ATTACHMENT", mimeType: "application/msword" },
      ],
      [
        [{ mimeType: "image/png", content: b64("not really a png") }],
        { code: "ATTACHMENT_INVALID" },
      ],
      [[{ mimeType: "image/tiff", content: b64("II*\u0000") }], { code: "UNSUPPORTED_ATTACHMENT" }],
      [[{ mimeType: "text/plain", content: "%%% not base64 %%%" }], { code: "ATTACHMENT_INVALID" }],
      [
        [{ mimeType: "text/plain", content: b64(Buffer.from([0xff, 0xfe, 0xfd])) }],
        { code: "ATTACHMENT_INVALID" },
      ],
      [[{ content: b64("who knows") }], { code: "UNSUPPORTED_ATTACHMENT" }],
      [
        [{ mimeType: "text/plain", content: b64("x".repeat(600 * 1024)) }],
        { code: "ATTACHMENT_TOO_LARGE", maxBytes: 512 * 1024 },
      ],
      [
        [
          { mimeType: "text/plain", content: b64("ok") },
          { mimeType: "video/mp4", content: b64("....") },
        ],
        { code: "UNSUPPORTED_ATTACHMENT", index: 1 },
      ],
    ];
    for (const [attachments, details] of cases) {
      const error = await send(attachments);
      expect(error.code, JSON.stringify(details)).toBe("INVALID_REQUEST");
      expect(error.details).toMatchObject(details);
    }
    // Nothing was sent to the model or written to the session.
    expect(stack.provider.requests).toHaveLength(0);
    expect(await stack.store.transcripts.lastSeq("agent:main:main")).toBe(0);
  });
});

describe("sessions.list orders", () => {
  it("sorts by last interaction or by update, with pages that neither overlap nor skip", async () => {
    const stack = await startStack({
      responses: [{ text: "a" }, { text: "b" }, { text: "c" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    for (const name of ["a", "b", "c"]) {
      await chat(client, `agent:main:${name}`, `hi ${name}`, `s-${name}`);
      // Apart in time, so the order of interactions is plain.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await client.request("sessions.create", { key: "agent:main:d", label: "quiet" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await client.request("sessions.patch", { key: "agent:main:a", label: "touched" });

    const byUpdate = (await client.request("sessions.list", { sortBy: "updatedAt" })).sessions;
    expect(byUpdate.map((s: Wire) => s.key)).toEqual([
      "agent:main:a",
      "agent:main:d",
      "agent:main:c",
      "agent:main:b",
    ]);
    const byInteraction = (await client.request("sessions.list", { sortBy: "lastInteractionAt" }))
      .sessions;
    expect(byInteraction.map((s: Wire) => s.key)).toEqual([
      "agent:main:c",
      "agent:main:b",
      "agent:main:a",
      "agent:main:d",
    ]);
    const interacted = await client.request("sessions.list", {
      sortBy: "lastInteractionAt",
      requireLastInteraction: true,
    });
    expect(interacted.sessions.map((s: Wire) => s.key)).toEqual([
      "agent:main:c",
      "agent:main:b",
      "agent:main:a",
    ]);

    for (const sortBy of ["updatedAt", "lastInteractionAt"]) {
      const seen: string[] = [];
      let offset = 0;
      for (;;) {
        const page = await client.request("sessions.list", { sortBy, limit: 3, offset });
        seen.push(...page.sessions.map((s: Wire) => s.key));
        if (!page.hasMore) break;
        expect(page.nextOffset).toBe(offset + 3);
        offset = page.nextOffset;
      }
      const whole = (await client.request("sessions.list", { sortBy })).sessions.map(
        (s: Wire) => s.key,
      );
      expect(seen, sortBy).toEqual(whole);
    }
    const bad = await rpcError(client.requestUnchecked("sessions.list", { sortBy: "name" }));
    expect(bad.details).toMatchObject({ field: "sortBy" });
  });
});
