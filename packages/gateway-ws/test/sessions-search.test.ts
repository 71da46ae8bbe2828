/**
 * `sessions.search` and `sessions.preview` over a real socket: sessions filled by real
 * `chat.send` turns, and written to the store directly for volume and for the bounds. A hit
 * names its message by the id `chat.history` gives it, so `chat.message.get` opens it; both
 * methods leave out what `chat.history` leaves out (discarded runs).
 */
import { defineTool, type JsonObject } from "@beamclaw/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import {
  PREVIEW_MAX_CHARS,
  PREVIEW_MAX_KEYS,
  SEARCH_MAX_ENTRIES,
  SEARCH_MAX_SESSIONS,
  SEARCH_MAX_WORDS,
  SNIPPET_CHARS,
} from "../src/methods/session-search.js";
import {
  closeClients,
  rpcError,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  vi.restoreAllMocks();
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";

interface SearchHit {
  sessionKey: string;
  sessionId: string;
  messageId: string;
  role: "user" | "assistant";
  timestamp: number;
  snippet: string;
  score: number;
}

interface Shown {
  role: string;
  timestamp: number;
  content?: Array<{ type: string; text?: string }>;
  __openclaw: { id: string; seq: number };
}

async function send(client: TestClient, message: string, runId: string, sessionKey = KEY) {
  await client.request("chat.send", { sessionKey, message, idempotencyKey: runId });
  await client.waitEvent("chat", (p) => p.runId === runId && p.state === "final");
}

async function search(
  client: TestClient,
  params: Record<string, unknown>,
): Promise<{ results: SearchHit[]; truncated?: boolean }> {
  return client.request("sessions.search", params);
}

const user = (text: string) => ({ role: "user", content: [{ type: "text", text }] });
const assistant = (text: string) => ({ role: "assistant", content: [{ type: "text", text }] });

/** A session written to the store directly: its record, then its transcript entries. */
async function writeSession(
  stack: Stack,
  key: string,
  updatedAt: number,
  entries: JsonObject[],
): Promise<void> {
  const agentId = key.split(":")[1]!;
  await stack.store.sessions.put({ key, agentId, createdAt: updatedAt, updatedAt });
  if (entries.length > 0) await stack.store.transcripts.append(key, entries);
}

const lookup = defineTool({
  name: "lookup",
  description: "Looks a word up",
  parameters: z.object({ word: z.string() }),
  execute: ({ word }) => `meaning of ${word}`,
});

const withTool = {
  agents: [{ id: "main", model: "scripted/m1", tools: ["lookup"] }],
  runtime: { tools: [lookup] },
};

describe("sessions.search", () => {
  it("finds the user and assistant messages holding every word of the query, case and accents aside, never tool calls or results", async () => {
    const stack = await startStack({
      ...withTool,
      responses: [
        { text: "Booked: CAFE ROUGE, Friday at 8." },
        { toolCalls: [{ toolCallId: "c1", toolName: "lookup", input: { word: "rouge" } }] },
        { text: "Rouge means red." },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "Please book the Café Rouge for Friday", "r1");
    await send(client, "look up rouge", "r2");
    const reader = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });
    const history = (await client.request("chat.history", { sessionKey: KEY })).messages as Shown[];
    const byId = new Map(history.map((m) => [m.__openclaw.id, m]));

    const both = await search(reader, { query: "café rouge" });
    expect(both.truncated).toBe(false);
    expect(both.results.map((h) => [h.role, byId.get(h.messageId)?.content?.[0]?.text])).toEqual(
      expect.arrayContaining([
        ["user", "Please book the Café Rouge for Friday"],
        ["assistant", "Booked: CAFE ROUGE, Friday at 8."],
      ]),
    );
    expect(both.results).toHaveLength(2);
    for (const hit of both.results) {
      expect(hit.sessionKey).toBe(KEY);
      expect(hit.sessionId).toBe(KEY);
      expect(hit.timestamp).toBe(byId.get(hit.messageId)!.timestamp);
    }

    // The tool call (its arguments name "rouge") and the tool result are not searched.
    const rouge = await search(reader, { query: "ROUGE" });
    expect(rouge.results.map((h) => byId.get(h.messageId)?.content?.[0]?.text).sort()).toEqual([
      "Booked: CAFE ROUGE, Friday at 8.",
      "Please book the Café Rouge for Friday",
      "Rouge means red.",
      "look up rouge",
    ]);
    expect((await search(reader, { query: "meaning" })).results).toEqual([]);
    expect((await search(reader, { query: "pizza" })).results).toEqual([]);
    // Every word must be there: "rouge" is, "pizza" is not.
    expect((await search(reader, { query: "rouge pizza" })).results).toEqual([]);
  });

  it("gives each hit the message id chat.history shows; chat.message.get opens it", async () => {
    const stack = await startStack({ responses: [{ text: "The launch code is orange." }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "what is the launch code?", "r1");
    const [hit] = (await search(client, { query: "orange" })).results;
    expect(hit).toMatchObject({ role: "assistant", snippet: "The launch code is orange." });
    const opened = await client.request("chat.message.get", {
      sessionKey: hit!.sessionKey,
      messageId: hit!.messageId,
    });
    expect(opened.ok).toBe(true);
    expect(opened.message.content[0].text).toBe("The launch code is orange.");
    const history = (await client.request("chat.history", { sessionKey: KEY })).messages as Shown[];
    expect(history.at(-1)).toEqual(opened.message);
  });

  it("ranks by score (whole words, then the query's words together as a phrase), newer first on ties", async () => {
    const stack = await startStack();
    await writeSession(stack, KEY, 10, [
      { runId: "a", at: 1, message: user("the red car is fast") },
      { runId: "b", at: 2, message: user("a car that is red") },
      { runId: "c", at: 3, message: user("cardinal bored") },
      { runId: "d", at: 4, message: user("Red Car!") },
      { runId: "e", at: 5, message: user("nothing to see") },
    ]);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const { results } = await search(client, { query: "red car" });
    expect(results.map((h) => [h.snippet, h.score, h.timestamp])).toEqual([
      ["Red Car!", 2, 4],
      ["the red car is fast", 2, 1],
      ["a car that is red", 1, 2],
      // Both words only inside longer ones: found, but last.
      ["cardinal bored", 0, 3],
    ]);
  });

  it("narrows the search to an agent's sessions with agentId, or to sessionKeys", async () => {
    const stack = await startStack({
      agents: [
        { id: "main", model: "scripted/m1" },
        { id: "ops", model: "scripted/m1" },
      ],
      responses: [{ text: "ok one" }, { text: "ok two" }, { text: "ok three" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "deploy the kiwi build", "r1", "agent:main:main");
    await send(client, "deploy the kiwi build", "r2", "agent:main:other");
    await send(client, "deploy the kiwi build", "r3", "agent:ops:main");
    const keysOf = async (params: Record<string, unknown>) =>
      [
        ...new Set(
          (await search(client, { query: "kiwi", ...params })).results.map((h) => h.sessionKey),
        ),
      ].sort();

    expect(await keysOf({})).toEqual(["agent:main:main", "agent:main:other", "agent:ops:main"]);
    expect(await keysOf({ agentId: "ops" })).toEqual(["agent:ops:main"]);
    expect(await keysOf({ agentId: "main" })).toEqual(["agent:main:main", "agent:main:other"]);
    expect(await keysOf({ agentId: "nobody" })).toEqual([]);
    // Keys as sessions.resolve takes them (case aside); one that names no session adds nothing.
    expect(
      await keysOf({ sessionKeys: ["AGENT:OPS:MAIN", "agent:main:other", "agent:main:nobody"] }),
    ).toEqual(["agent:main:other", "agent:ops:main"]);
    expect(
      await keysOf({ agentId: "main", sessionKeys: ["agent:ops:main", "agent:main:other"] }),
    ).toEqual(["agent:main:other"]);
  });

  it("answers at most limit hits (10 unless told), best first, truncated when more matched", async () => {
    const stack = await startStack();
    await writeSession(
      stack,
      KEY,
      10,
      Array.from({ length: 12 }, (_, i) => ({
        runId: `r${i}`,
        at: 100 + i,
        message: user(`note ${i} about plums`),
      })),
    );
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const all = await search(client, { query: "plums" });
    expect(all.results).toHaveLength(10);
    expect(all.truncated).toBe(true);
    expect(all.results.map((h) => h.timestamp)).toEqual(
      Array.from({ length: 10 }, (_, i) => 111 - i),
    );
    const two = await search(client, { query: "plums", limit: 2 });
    expect(two.results.map((h) => h.snippet)).toEqual([
      "note 11 about plums",
      "note 10 about plums",
    ]);
    expect(two.truncated).toBe(true);
    const exact = await search(client, { query: "plums", limit: 25 });
    expect(exact.results).toHaveLength(12);
    expect(exact.truncated).toBe(false);
  });

  it("shows the text around the first match as the snippet: bounded, on one line, with ellipses where cut", async () => {
    const stack = await startStack();
    const filler = (word: string, n: number) => Array.from({ length: n }, () => word).join(" ");
    const long = `${filler("alpha", 100)}\n\nthe needle is here\n${filler("omega", 100)}`;
    // "cafe" + a combining accent: five characters that fold to four, so the folded text
    // is shorter than the text and the snippet must map the match back to where it was.
    const decomposed = "cafe\u0301";
    const accented = `${filler(decomposed, 200)} NAÏVE target ${filler("ëñd", 60)}`;
    await writeSession(stack, KEY, 10, [
      { runId: "a", at: 1, message: user(long) },
      { runId: "b", at: 2, message: assistant("short\n\n  and   spaced  Haystack") },
      { runId: "c", at: 3, message: assistant(accented) },
    ]);
    const client = await TestClient.connect(stack.url, { token: TOKEN });

    const [cut] = (await search(client, { query: "NEEDLE" })).results;
    expect(cut!.snippet).toMatch(/^…alpha( alpha)* the needle is here omega( omega)*…$/);
    expect(cut!.snippet.length).toBeLessThanOrEqual(SNIPPET_CHARS + 2);
    expect(cut!.snippet.indexOf("needle")).toBeLessThanOrEqual(61);

    const [whole] = (await search(client, { query: "haystack" })).results;
    expect(whole!.snippet).toBe("short and spaced Haystack");

    // Found case and accents aside; shown as written, cut between words.
    const [naive] = (await search(client, { query: "naive" })).results;
    expect(naive!.snippet).toMatch(
      new RegExp(`^…${decomposed}( ${decomposed})* NAÏVE target ëñd( ëñd)*…$`, "u"),
    );
    expect(naive!.snippet.length).toBeLessThanOrEqual(SNIPPET_CHARS + 2);
  });

  it("leaves out the messages of discarded runs: a rewound run and an attempt cut short by a crash", async () => {
    const stack = await startStack({
      responses: [{ text: "first mango answer" }, { text: "second mango answer" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "first mango question", "r1");
    await send(client, "second mango question", "r2");
    await client.request("sessions.rewind", { sessionKey: KEY, entryId: "r2" });
    const texts = async (query: string) =>
      (await search(client, { query, limit: 25 })).results.map((h) => h.snippet).sort();
    expect(await texts("mango")).toEqual(["first mango answer", "first mango question"]);

    const crashed = "agent:main:crashed";
    await writeSession(stack, crashed, 5, [
      { runId: "cut", at: 3, message: user("papaya again") },
      { runId: "cut", at: 4, discarded: true },
      { runId: "cut", at: 5, message: user("papaya again, replayed") },
      { runId: "cut", at: 6, message: assistant("papaya answer after the replay") },
    ]);
    expect(await texts("papaya")).toEqual([
      "papaya again, replayed",
      "papaya answer after the replay",
    ]);
  });

  it(`reads only the ${SEARCH_MAX_SESSIONS} most recently updated sessions, and says truncated`, async () => {
    const stack = await startStack();
    for (let i = 0; i <= SEARCH_MAX_SESSIONS; i++) {
      const word = i === 0 ? "zebra" : "horse";
      await writeSession(stack, `agent:main:s${i}`, 1000 + i, [
        { runId: `r${i}`, at: 1000 + i, message: user(`a ${word} in session ${i}`) },
      ]);
    }
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    // The least recently updated session is past the bound.
    expect(await search(client, { query: "zebra" })).toEqual({ results: [], truncated: true });
    const newest = await search(client, { query: `session ${SEARCH_MAX_SESSIONS}` });
    expect(newest.results[0]!.sessionKey).toBe(`agent:main:s${SEARCH_MAX_SESSIONS}`);
    expect(newest.truncated).toBe(true);
    // Named, it is read.
    const named = await search(client, { query: "zebra", sessionKeys: ["agent:main:s0"] });
    expect(named.results.map((h) => h.sessionKey)).toEqual(["agent:main:s0"]);
    expect(named.truncated).toBe(false);
    // Within the bound, nothing is cut.
    await stack.store.sessions.delete("agent:main:s1");
    expect(await search(client, { query: "zebra" })).toMatchObject({ truncated: false });
  });

  it(`reads only the newest ${SEARCH_MAX_ENTRIES} transcript entries of a session, and says truncated`, async () => {
    const stack = await startStack();
    const entries = (n: number) =>
      Array.from({ length: n }, (_, i) => ({
        runId: `r${i}`,
        at: i + 1,
        message: user(i === 0 ? "the ancient scroll" : `entry ${i + 1} of the log`),
      }));
    await writeSession(stack, "agent:main:long", 20, entries(SEARCH_MAX_ENTRIES + 1));
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(await search(client, { query: "ancient" })).toEqual({ results: [], truncated: true });
    const recent = await search(client, { query: `entry ${SEARCH_MAX_ENTRIES + 1}` });
    expect(recent.results.map((h) => h.snippet)).toEqual([
      `entry ${SEARCH_MAX_ENTRIES + 1} of the log`,
    ]);
    expect(recent.truncated).toBe(true);

    await writeSession(stack, "agent:main:exact", 10, entries(SEARCH_MAX_ENTRIES));
    const exact = await search(client, {
      query: "ancient scroll",
      sessionKeys: ["agent:main:exact"],
    });
    expect(exact.results.map((h) => h.snippet)).toEqual(["the ancient scroll"]);
    expect(exact.truncated).toBe(false);
  });

  it("refuses bad params with INVALID_REQUEST naming the field", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const words = Array.from({ length: SEARCH_MAX_WORDS + 1 }, (_, i) => `w${i}`).join(" ");
    const cases: Array<[Record<string, unknown>, string]> = [
      [{}, "query"],
      [{ query: "" }, "query"],
      [{ query: "   " }, "query"],
      [{ query: "x".repeat(4097) }, "query"],
      [{ query: 42 }, "query"],
      [{ query: words }, "query"],
      [{ query: "a", limit: 0 }, "limit"],
      [{ query: "a", limit: 26 }, "limit"],
      [{ query: "a", limit: 1.5 }, "limit"],
      [{ query: "a", agentId: "" }, "agentId"],
      [{ query: "a", sessionKeys: [] }, "sessionKeys"],
      [{ query: "a", sessionKeys: "agent:main:main" }, "sessionKeys"],
      [{ query: "a", sessionKeys: [""] }, "sessionKeys"],
      [{ query: "a", sessionKeys: ["not a session key"] }, "sessionKeys"],
      [
        {
          query: "a",
          sessionKeys: Array.from(
            { length: SEARCH_MAX_SESSIONS + 1 },
            (_, i) => `agent:main:k${i}`,
          ),
        },
        "sessionKeys",
      ],
    ];
    for (const [params, field] of cases) {
      const error = await rpcError(client.requestUnchecked("sessions.search", params));
      expect([params, error.code, (error.details as { field?: string }).field]).toEqual([
        params,
        "INVALID_REQUEST",
        field,
      ]);
    }
  });
});

describe("sessions.preview", () => {
  it("answers each key's last limit user and assistant messages with text, oldest first, in the order of the keys", async () => {
    const stack = await startStack({
      ...withTool,
      responses: [
        { text: "one back" },
        { toolCalls: [{ toolCallId: "c1", toolName: "lookup", input: { word: "x" } }] },
        { text: "x looked up" },
        { text: "other back" },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "one", "r1");
    await send(client, "look up x", "r2");
    await send(client, "other", "r3", "agent:main:other");
    const reader = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });

    const answer = await reader.request("sessions.preview", {
      keys: ["agent:main:other", KEY],
      limit: 3,
    });
    expect(answer.ts).toEqual(expect.any(Number));
    expect(answer.previews).toEqual([
      {
        key: "agent:main:other",
        status: "ok",
        items: [
          { role: "user", text: "other" },
          { role: "assistant", text: "other back" },
        ],
      },
      {
        // The tool call (no text) and the tool result are not shown.
        key: KEY,
        status: "ok",
        items: [
          { role: "assistant", text: "one back" },
          { role: "user", text: "look up x" },
          { role: "assistant", text: "x looked up" },
        ],
      },
    ]);
    const all = await reader.request("sessions.preview", { keys: [KEY] });
    expect(all.previews[0].items.map((i: { text: string }) => i.text)).toEqual([
      "one",
      "one back",
      "look up x",
      "x looked up",
    ]);
  });

  it("cuts each text to maxChars (240 unless told, at most 2000), ending in ...", async () => {
    const long = "word ".repeat(1000).trim();
    const stack = await startStack({ responses: [{ text: long }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "say a lot", "r1");
    const textOf = async (params: Record<string, unknown>) =>
      (await client.request("sessions.preview", { keys: [KEY], limit: 1, ...params })).previews[0]
        .items[0].text as string;
    const short = await textOf({ maxChars: 20 });
    expect(short).toBe(`${long.slice(0, 17)}...`);
    expect(await textOf({})).toHaveLength(240);
    const capped = await textOf({ maxChars: 1_000_000 });
    expect(capped).toBe(`${long.slice(0, PREVIEW_MAX_CHARS - 3)}...`);
    // Short texts are whole.
    const first = await client.request("sessions.preview", { keys: [KEY], maxChars: 20 });
    expect(first.previews[0].items[0]).toEqual({ role: "user", text: "say a lot" });
  });

  it("answers per key: missing for an unknown or malformed key, empty without messages, error when the store fails; never fails the call", async () => {
    const stack = await startStack({ responses: [{ text: "hello" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "hi", "r1");
    await writeSession(stack, "agent:main:quiet", 5, []);
    await writeSession(stack, "agent:main:broken", 5, [
      { runId: "b", at: 1, message: user("unreadable") },
    ]);
    const read = stack.store.transcripts.read.bind(stack.store.transcripts);
    vi.spyOn(stack.store.transcripts, "read").mockImplementation((key, options) =>
      key === "agent:main:broken" ? Promise.reject(new Error("disk on fire")) : read(key, options),
    );
    const answer = await client.request("sessions.preview", {
      keys: [
        "agent:main:nobody",
        "not a key",
        "AGENT:MAIN:MAIN",
        "agent:main:quiet",
        "agent:main:broken",
      ],
    });
    expect(answer.previews).toEqual([
      { key: "agent:main:nobody", status: "missing", items: [] },
      { key: "not a key", status: "missing", items: [] },
      {
        key: "AGENT:MAIN:MAIN",
        status: "ok",
        items: [
          { role: "user", text: "hi" },
          { role: "assistant", text: "hello" },
        ],
      },
      { key: "agent:main:quiet", status: "empty", items: [] },
      { key: "agent:main:broken", status: "error", items: [] },
    ]);
  });

  it("leaves out the messages of discarded runs", async () => {
    const stack = await startStack({ responses: [{ text: "kept" }, { text: "undone" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await send(client, "first", "r1");
    await send(client, "second", "r2");
    await client.request("sessions.rewind", { sessionKey: KEY, entryId: "r2" });
    const answer = await client.request("sessions.preview", { keys: [KEY] });
    expect(answer.previews[0].items).toEqual([
      { role: "user", text: "first" },
      { role: "assistant", text: "kept" },
    ]);
  });

  it("refuses bad params with INVALID_REQUEST naming the field", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const tooMany = Array.from({ length: PREVIEW_MAX_KEYS + 1 }, (_, i) => `agent:main:k${i}`);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{}, "keys"],
      [{ keys: [] }, "keys"],
      [{ keys: "agent:main:main" }, "keys"],
      [{ keys: [""] }, "keys"],
      [{ keys: [7] }, "keys"],
      [{ keys: tooMany }, "keys"],
      [{ keys: [KEY], limit: 0 }, "limit"],
      [{ keys: [KEY], limit: 2.5 }, "limit"],
      [{ keys: [KEY], maxChars: 19 }, "maxChars"],
      [{ keys: [KEY], maxChars: "20" }, "maxChars"],
    ];
    for (const [params, field] of cases) {
      const error = await rpcError(client.requestUnchecked("sessions.preview", params));
      expect([params, error.code, (error.details as { field?: string }).field]).toEqual([
        params,
        "INVALID_REQUEST",
        field,
      ]);
    }
  });
});
