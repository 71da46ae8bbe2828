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
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

describe("sessions", () => {
  it("sessions.create makes a session (announced to subscribers), and starts a run when given a message", async () => {
    const stack = await startStack({ responses: [{ text: "hello back" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(await client.request("sessions.subscribe", {})).toEqual({ ok: true, subscribed: true });
    const created = await client.request("sessions.create", {
      key: "agent:main:work",
      label: "Work",
      message: "hello",
      idempotencyKey: "c1",
    });
    expect(created).toMatchObject({
      ok: true,
      key: "agent:main:work",
      created: true,
      runStarted: true,
      runId: "c1",
    });
    expect(created.entry).toMatchObject({
      key: "agent:main:work",
      displayName: "Work",
      agentId: "main",
    });
    await client.waitEvent(
      "sessions.changed",
      (p) => p.sessionKey === "agent:main:work" && p.reason === "created",
    );
    await client.waitEvent("chat", (p) => p.runId === "c1" && p.state === "final");
    const again = await client.request("sessions.create", { key: "agent:main:work" });
    expect(again).toMatchObject({ created: false, runStarted: false });
  });

  it("sessions.create keeps its label and settings when the session was already running (asked about first)", async () => {
    const stack = await startStack({ responses: [{ text: "hello back" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const key = "agent:main:asked-first";
    // A client asks about a run of the new key first: the session starts, with no record.
    expect(await client.request("chat.abort", { sessionKey: key, runId: "none" })).toMatchObject({
      aborted: false,
    });
    const created = await client.request("sessions.create", {
      key,
      label: "Asked first",
      thinkingLevel: "high",
      model: "scripted/m2",
    });
    expect(created).toMatchObject({ created: true });
    expect(created.entry).toMatchObject({ key, displayName: "Asked first", thinkingLevel: "high" });
    await client.request("chat.send", { sessionKey: key, message: "hi", idempotencyKey: "a1" });
    await client.waitEvent("chat", (p) => p.runId === "a1" && p.state === "final");
    // The run's end saved the session's record: the label and settings are in it.
    expect((await client.request("sessions.get", { key })).session).toMatchObject({
      displayName: "Asked first",
      thinkingLevel: "high",
      modelProvider: "scripted",
      model: "m2",
    });
    expect(await stack.runtime.store.sessions.get(key)).toMatchObject({
      displayName: "Asked first",
      modelOverride: "scripted/m2",
      runs: 1,
    });
  });

  it("sessions.create names a new key when none is given and refuses a bad model", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const created = await client.request("sessions.create", {});
    expect(created.key).toMatch(/^agent:main:s-/);
    const error = await rpcError(client.request("sessions.create", { model: "no-slash" }));
    expect(error.details).toMatchObject({ field: "model" });
  });

  it("sessions.resolve finds a session by key, label or short id; several matches are candidates", async () => {
    const stack = await startStack({
      agents: [
        { id: "main", model: "scripted/m1" },
        { id: "ops", model: "scripted/m1" },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("sessions.create", { key: "agent:main:work", label: "Work" });
    await client.request("sessions.create", { key: "agent:ops:work", label: "Work" });
    await client.request("sessions.create", { key: "agent:ops:pager", label: "Pager" });
    const made = await client.request("sessions.create", { label: "Scratch" });
    const uuid = (made.key as string).slice("agent:main:s-".length);

    expect(await client.request("sessions.resolve", { key: "Agent:Main:Work" })).toEqual({
      ok: true,
      key: "agent:main:work",
      agentId: "main",
      displayName: "Work",
    });
    expect(await client.request("sessions.resolve", { sessionId: "agent:ops:pager" })).toEqual({
      ok: true,
      key: "agent:ops:pager",
      agentId: "ops",
      displayName: "Pager",
    });
    expect(await client.request("sessions.resolve", { label: "Pager" })).toMatchObject({
      ok: true,
      key: "agent:ops:pager",
    });
    expect(await client.request("sessions.resolve", { shortId: uuid.slice(0, 8) })).toMatchObject({
      ok: true,
      key: made.key,
      displayName: "Scratch",
    });
    // Two sessions share the label: both are candidates; an agent picks one.
    const both = await client.request("sessions.resolve", { label: "Work" });
    expect(both.ok).toBe(false);
    expect(both.candidates.map((c: { key: string }) => c.key).sort()).toEqual([
      "agent:main:work",
      "agent:ops:work",
    ]);
    expect(await client.request("sessions.resolve", { label: "Work", agentId: "ops" })).toEqual({
      ok: true,
      key: "agent:ops:work",
      agentId: "ops",
      displayName: "Work",
    });
    // Missing: an error, or `{ ok: false }` with allowMissing.
    expect(
      await client.request("sessions.resolve", { key: "agent:main:nothing", allowMissing: true }),
    ).toEqual({ ok: false });
    expect(
      (await rpcError(client.request("sessions.resolve", { label: "Nobody" }))).details,
    ).toMatchObject({ code: "SESSION_NOT_FOUND" });
    expect(
      (
        await rpcError(
          client.request("sessions.resolve", { key: "agent:ops:work", agentId: "main" }),
        )
      ).details,
    ).toMatchObject({ code: "SESSION_NOT_FOUND" });
    // Exactly one way to name it; a slug hint only with a short id; no malformed keys.
    for (const params of [
      {},
      { key: "agent:main:work", label: "Work" },
      { label: "Work", slugHint: "work" },
      { key: "agent:main:../x" },
    ]) {
      const error = await rpcError(client.request("sessions.resolve", params));
      expect(error.code, JSON.stringify(params)).toBe("INVALID_REQUEST");
    }
  });

  it("sessions.list pages through sessions newest first, and filters by agent and text", async () => {
    // A clock that moves a second per reading, so no two sessions share an updatedAt.
    let clock = Date.now();
    const now = () => (clock += 1000);
    const stack = await startStack({
      agents: [
        { id: "main", model: "scripted/m1" },
        { id: "ops", model: "scripted/m1" },
      ],
      gateway: { now },
      runtime: { now },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    for (const name of ["a", "b", "c", "d", "e"]) {
      await client.request("sessions.create", { key: `agent:main:${name}` });
    }
    await client.request("sessions.create", { key: "agent:ops:x", label: "Ops room" });
    const page1 = await client.request("sessions.list", { limit: 2, agentId: "main" });
    expect(page1.sessions.map((s: { key: string }) => s.key)).toEqual([
      "agent:main:e",
      "agent:main:d",
    ]);
    expect(page1).toMatchObject({ hasMore: true, nextOffset: 2 });
    const page3 = await client.request("sessions.list", { limit: 2, offset: 4, agentId: "main" });
    expect(page3.sessions.map((s: { key: string }) => s.key)).toEqual(["agent:main:a"]);
    expect(page3.hasMore).toBe(false);
    const found = await client.request("sessions.list", { search: "ops room" });
    expect(found.sessions.map((s: { key: string }) => s.key)).toEqual(["agent:ops:x"]);
    expect((await rpcError(client.requestUnchecked("sessions.list", { limit: -1 }))).code).toBe(
      "INVALID_REQUEST",
    );
  });

  it("sessions.send sends into a session and sessions.get returns its row and messages", async () => {
    const stack = await startStack({ responses: [{ text: "got it" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const sent = await client.request("sessions.send", {
      key: "agent:main:box",
      message: "note this",
      idempotencyKey: "s1",
    });
    expect(sent).toEqual({ ok: true, key: "agent:main:box", runId: "s1", status: "started" });
    await client.waitEvent("chat", (p) => p.runId === "s1" && p.state === "final");
    const got = await client.request("sessions.get", { key: "agent:main:box" });
    expect(got.session).toMatchObject({ key: "agent:main:box", totalTokens: 0 });
    expect(got.messages.map((m: { role: string }) => m.role)).toEqual(["user", "assistant"]);
    expect(
      (await rpcError(client.requestUnchecked("sessions.send", { key: "agent:main:box" }))).details,
    ).toMatchObject({ field: "message" });
  });

  it("sessions.abort aborts a session's active runs; without key or runId it is INVALID_REQUEST", async () => {
    const hold = deferred();
    const stack = await startStack({
      responses: [
        {
          events: [
            { type: "response-start", model: "m1" },
            { type: "wait", until: hold.promise },
          ],
        },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("sessions.send", {
      key: "agent:main:busy",
      message: "go",
      idempotencyKey: "busy-1",
    });
    await client.waitEvent("agent", (p) => p.runId === "busy-1" && p.stream === "lifecycle");
    expect(await client.request("sessions.abort", { key: "agent:main:busy" })).toEqual({
      ok: true,
      aborted: true,
      runIds: ["busy-1"],
    });
    await client.waitEvent("chat", (p) => p.runId === "busy-1" && p.state === "aborted");
    expect(await client.request("sessions.abort", { key: "agent:main:busy" })).toEqual({
      ok: true,
      aborted: false,
      runIds: [],
    });
    expect((await rpcError(client.request("sessions.abort", {}))).code).toBe("INVALID_REQUEST");
    hold.resolve();
  });

  it("sessions.steer interrupts the active run with the new message; at rest it just sends", async () => {
    const hold = deferred();
    const stack = await startStack({
      responses: [
        { text: "calm answer" },
        {
          events: [
            { type: "response-start", model: "m1" },
            { type: "text-delta", text: "going on and on" },
            { type: "wait", until: hold.promise },
          ],
        },
        { text: "steered answer" },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("sessions.subscribe", {});
    const key = "agent:main:steer";
    const calm = await client.request("sessions.steer", {
      key,
      message: "hello",
      idempotencyKey: "s-0",
    });
    expect(calm).toEqual({ ok: true, key, runId: "s-0", status: "started" });
    await client.waitEvent("sessions.changed", (p) => p.sessionKey === key && p.reason === "send");
    await client.waitEvent("chat", (p) => p.runId === "s-0" && p.state === "final");

    await client.request("sessions.send", {
      key,
      message: "tell me everything",
      idempotencyKey: "s-1",
    });
    await client.waitEvent("chat", (p) => p.runId === "s-1" && p.state === "delta");
    const steered = await client.request("sessions.steer", {
      key,
      message: "stop, just the short version",
      idempotencyKey: "s-2",
    });
    expect(steered).toMatchObject({ ok: true, key, runId: "s-2", interruptedActiveRun: true });
    await client.waitEvent("sessions.changed", (p) => p.sessionKey === key && p.reason === "steer");
    await client.waitEvent("chat", (p) => p.runId === "s-1" && p.state === "aborted");
    const final = await client.waitEvent("chat", (p) => p.runId === "s-2" && p.state === "final");
    expect(final.payload.message.content[0].text).toBe("steered answer");
    // The steering message reached the model after the interrupted question.
    const asked = stack.provider.requests.at(-1)!.messages;
    expect(JSON.stringify(asked.at(-1))).toContain("stop, just the short version");
    hold.resolve();
  });

  it("sessions.patch changes label, thinking level and model, and reports fields it does not keep", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("sessions.create", { key: "agent:main:p" });
    const patched = await client.request("sessions.patch", {
      key: "agent:main:p",
      label: "Renamed",
      thinkingLevel: "high",
      model: "scripted/m9",
      pinned: true,
    });
    expect(patched.entry).toMatchObject({
      displayName: "Renamed",
      thinkingLevel: "high",
      model: "m9",
      modelProvider: "scripted",
    });
    expect(patched.ignored).toEqual(["pinned"]);
    const cleared = await client.request("sessions.patch", {
      key: "agent:main:p",
      label: null,
      model: null,
    });
    expect(cleared.entry.displayName).toBeUndefined();
    expect(cleared.entry.model).toBe("m1");
    expect(
      (await rpcError(client.request("sessions.patch", { key: "agent:main:nope", label: "x" })))
        .details,
    ).toMatchObject({ code: "SESSION_NOT_FOUND" });
    expect(
      (
        await rpcError(
          client.requestUnchecked("sessions.patch", { key: "agent:main:p", thinkingLevel: "max" }),
        )
      ).code,
    ).toBe("INVALID_REQUEST");
  });

  it("sessions.reset clears the transcript; sessions.delete removes the session", async () => {
    const stack = await startStack({ responses: [{ text: "one" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", {
      sessionKey: "agent:main:r",
      message: "hi",
      idempotencyKey: "r1",
    });
    await client.waitEvent("chat", (p) => p.runId === "r1" && p.state === "final");
    expect((await client.request("sessions.reset", { key: "agent:main:r" })).ok).toBe(true);
    expect((await client.request("chat.history", { sessionKey: "agent:main:r" })).messages).toEqual(
      [],
    );
    expect(await client.request("sessions.delete", { key: "agent:main:r" })).toEqual({
      ok: true,
      key: "agent:main:r",
      deleted: true,
      archived: [],
    });
    expect((await client.request("sessions.delete", { key: "agent:main:r" })).deleted).toBe(false);
    expect(await stack.store.sessions.get("agent:main:r")).toBeUndefined();
    expect(
      (await rpcError(client.request("sessions.reset", { key: "agent:main:r" }))).details,
    ).toMatchObject({ code: "SESSION_NOT_FOUND" });
  });

  it("sessions.delete with deleteTranscript: false keeps the transcript aside and reports where", async () => {
    const stack = await startStack({ responses: [{ text: "kept answer" }, { text: "fresh" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", {
      sessionKey: "agent:main:k",
      message: "hi",
      idempotencyKey: "k1",
    });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "final");
    const reply = await client.request("sessions.delete", {
      key: "agent:main:k",
      deleteTranscript: false,
    });
    expect(reply).toMatchObject({ ok: true, key: "agent:main:k", deleted: true });
    expect(reply.archived).toHaveLength(1);
    const archivedAs = reply.archived[0] as string;
    expect(archivedAs).toMatch(/^agent:main:k:deleted:\d+$/);
    // The conversation is where the reply says, whole; the key itself starts over.
    const kept = await stack.store.transcripts.read(archivedAs);
    expect(kept.map((r) => (r.entry.message as { role: string }).role)).toEqual([
      "user",
      "assistant",
    ]);
    expect(await stack.store.transcripts.read("agent:main:k")).toEqual([]);
    expect(await stack.store.sessions.get("agent:main:k")).toBeUndefined();
    await client.request("chat.send", {
      sessionKey: "agent:main:k",
      message: "again",
      idempotencyKey: "k2",
    });
    await client.waitEvent("chat", (p) => p.runId === "k2" && p.state === "final");
    const history = await client.request("chat.history", { sessionKey: "agent:main:k" });
    expect(history.messages).toHaveLength(2);
    expect(await stack.store.sessions.get("agent:main:k")).toBeDefined();
  });

  it("sessions.compact has the model summarize the older turns; chat.history keeps every message", async () => {
    const stack = await startStack({
      responses: [
        { text: "one" },
        { text: "two" },
        { text: "three" },
        { text: "the summary" },
        { text: "four" },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(
      await rpcError(client.request("sessions.compact", { key: "agent:main:c" })),
    ).toMatchObject({ details: { code: "SESSION_NOT_FOUND" } });
    for (const [i, message] of ["first", "second", "third"].entries()) {
      await client.request("chat.send", {
        sessionKey: "agent:main:c",
        message,
        idempotencyKey: `c${i}`,
      });
      await client.waitEvent("chat", (p) => p.runId === `c${i}` && p.state === "final");
    }
    expect(await client.request("sessions.subscribe", {})).toMatchObject({ subscribed: true });
    const compacted = await client.request("sessions.compact", {
      key: "agent:main:c",
      maxLines: 400,
    });
    expect(compacted).toMatchObject({
      ok: true,
      key: "agent:main:c",
      compacted: true,
      summarizedMessages: 2,
      keptMessages: 4,
      summary: "the summary",
      ignored: ["maxLines"],
      entry: { key: "agent:main:c" },
    });
    await client.waitEvent(
      "sessions.changed",
      (p) => p.sessionKey === "agent:main:c" && p.reason === "compacted",
    );
    await client.request("chat.send", {
      sessionKey: "agent:main:c",
      message: "fourth",
      idempotencyKey: "c3",
    });
    await client.waitEvent("chat", (p) => p.runId === "c3" && p.state === "final");
    const last = stack.provider.requests.at(-1)!;
    expect(JSON.stringify(last.messages[0])).toContain(
      "[Summary of the earlier conversation]\\nthe summary",
    );
    expect(last.messages).toHaveLength(6);
    const history = await client.request("chat.history", { sessionKey: "agent:main:c" });
    expect((history.messages as unknown[]).length).toBe(8);
  });

  it("sessions.rewind takes a user message back into the editor, with every later run; busy sessions say so", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const stack = await startStack({
      responses: [
        { text: "one" },
        { text: "two" },
        { text: "three" },
        { text: "three again" },
        {
          events: [
            { type: "response-start", model: "m" },
            { type: "text-delta", text: "late" },
            { type: "wait", until: gate },
            { type: "finish", reason: "stop" },
          ],
        },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const sessionKey = "agent:main:rw";
    expect(
      await rpcError(client.request("sessions.rewind", { sessionKey, entryId: "r0" })),
    ).toMatchObject({ details: { code: "SESSION_NOT_FOUND" } });
    const send = async (message: string, idempotencyKey: string) => {
      await client.request("chat.send", { sessionKey, message, idempotencyKey });
      await client.waitEvent("chat", (p) => p.runId === idempotencyKey && p.state === "final");
    };
    await send("first", "r0");
    await send("second", "r1");
    await send("third", "r2");
    await client.request("sessions.subscribe", {});
    // Regenerate: take the last question back (by its run id), then ask it again.
    const undone = await client.request("sessions.rewind", { sessionKey, entryId: "r2" });
    expect(undone).toEqual({ editorText: "third" });
    await client.waitEvent(
      "sessions.changed",
      (p) => p.sessionKey === sessionKey && p.reason === "rewound",
    );
    const shown = await client.request("chat.history", { sessionKey });
    expect((shown.messages as unknown[]).length).toBe(4);
    await send(undone.editorText as string, "r3");
    const asked = stack.provider.requests.at(-1)!;
    expect(asked.messages.map((m) => m.role)).toEqual([
      "user",
      "assistant",
      "user",
      "assistant",
      "user",
    ]);
    expect(JSON.stringify(asked.messages)).not.toContain('"three"');
    // Edit an earlier message: r1 and every run after it leave; r1's message goes to the editor.
    expect(await client.request("sessions.rewind", { sessionKey, entryId: "r1" })).toEqual({
      editorText: "second",
    });
    expect(
      ((await client.request("chat.history", { sessionKey })).messages as unknown[]).length,
    ).toBe(2);
    // An unknown entry changes nothing.
    expect(
      await rpcError(client.request("sessions.rewind", { sessionKey, entryId: "nope" })),
    ).toMatchObject({ code: "INVALID_REQUEST" });
    // A run in flight: the session is busy; nothing changes.
    await client.request("chat.send", { sessionKey, message: "slow", idempotencyKey: "r4" });
    await client.waitEvent("chat", (p) => p.runId === "r4");
    expect(
      await rpcError(client.request("sessions.rewind", { sessionKey, entryId: "r0" })),
    ).toMatchObject({
      code: "UNAVAILABLE",
      retryable: true,
      details: { code: "SESSION_BUSY" },
    });
    release();
    await client.waitEvent("chat", (p) => p.runId === "r4" && p.state === "final");
    const history = await client.request("chat.history", { sessionKey });
    expect((history.messages as unknown[]).length).toBe(4);
  });

  it("sessions.rewind hands a message's images back as editor attachments", async () => {
    const stack = await startStack({ responses: [{ text: "a red pixel" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const png = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      Buffer.from("IHDR pixel"),
    ]).toString("base64");
    await client.request("chat.send", {
      sessionKey: "agent:main:img",
      message: "what is this?",
      idempotencyKey: "i0",
      attachments: [{ type: "image", mimeType: "image/png", content: png }],
    });
    await client.waitEvent("chat", (p) => p.runId === "i0" && p.state === "final");
    expect(
      await client.request("sessions.rewind", { sessionKey: "agent:main:img", entryId: "i0" }),
    ).toEqual({
      editorText: "what is this?",
      editorAttachments: [{ mimeType: "image/png", data: png }],
    });
    // Taken back already: nothing to rewind to.
    expect(
      await rpcError(
        client.request("sessions.rewind", { sessionKey: "agent:main:img", entryId: "i0" }),
      ),
    ).toMatchObject({ code: "INVALID_REQUEST" });
  });

  it("sessions.fork branches before a user message into a new session; the original stays", async () => {
    const stack = await startStack({
      responses: [{ text: "Rome." }, { text: "Paris." }, { text: "Madrid, in the branch." }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const sessionKey = "agent:main:trip";
    expect(
      await rpcError(client.request("sessions.fork", { sessionKey, entryId: "f0" })),
    ).toMatchObject({ details: { code: "SESSION_NOT_FOUND" } });
    const send = async (key: string, message: string, idempotencyKey: string) => {
      await client.request("chat.send", { sessionKey: key, message, idempotencyKey });
      await client.waitEvent("chat", (p) => p.runId === idempotencyKey && p.state === "final");
    };
    await send(sessionKey, "Capital of Italy?", "f0");
    await send(sessionKey, "Capital of France?", "f1");
    const fork = await client.request("sessions.fork", { sessionKey, entryId: "f1" });
    expect(fork).toEqual({
      sessionKey: expect.stringMatching(/^agent:main:fork:/),
      editorText: "Capital of France?",
    });
    const branch = fork.sessionKey as string;
    const branchHistory = await client.request("chat.history", { sessionKey: branch });
    expect((branchHistory.messages as unknown[]).length).toBe(2);
    // Listed before its first message, as a session of its own with nothing run yet.
    const { sessions } = await client.request("sessions.list", {});
    expect(sessions.map((row: { key: string }) => row.key).sort()).toEqual(
      [sessionKey, branch].sort(),
    );
    expect((await client.request("sessions.describe", { key: branch })).session).toMatchObject({
      key: branch,
      runs: 0,
    });
    await send(branch, "Capital of Spain?", "f2");
    const asked = stack.provider.requests.at(-1)!;
    expect(JSON.stringify(asked.messages)).toContain("Capital of Italy?");
    expect(JSON.stringify(asked.messages)).not.toContain("France");
    // The original keeps all of its conversation.
    const original = await client.request("chat.history", { sessionKey });
    expect((original.messages as unknown[]).length).toBe(4);
    expect(
      await rpcError(client.request("sessions.fork", { sessionKey, entryId: "nope" })),
    ).toMatchObject({ code: "INVALID_REQUEST" });
  });

  it("refuses a malformed session key without touching the store", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const error = await rpcError(
      client.request("sessions.create", { key: "agent:main:../../etc" }),
    );
    expect(error.code).toBe("INVALID_REQUEST");
    expect(await stack.store.sessions.count()).toBe(0);
  });
});
