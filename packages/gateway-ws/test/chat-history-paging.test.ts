/**
 * `chat.history` paging that must neither skip nor repeat: `offset` back through a
 * conversation longer than one store read, and a delta (`cursor`) cut by `maxChars`, whose
 * cursor must not move past messages it left out. Over real sockets, every frame checked
 * against the protocol schema.
 */
import type { JsonObject } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  type Stack,
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

const KEY = "agent:main:main";
const text = (m: Wire) => m.content.find((c: Wire) => c.type === "text")?.text as string;

/** A session of `count` user messages `m0`..`m<count-1>`, written to the store directly. */
async function longSession(stack: Stack, count: number): Promise<void> {
  await stack.store.sessions.put({ key: KEY, agentId: "main", createdAt: 1, updatedAt: 1 });
  const entries: JsonObject[] = [];
  for (let i = 0; i < count; i++) {
    entries.push({
      runId: `r${i}`,
      at: i + 1,
      message: { role: "user", content: [{ type: "text", text: `m${i}` }] },
    });
  }
  await stack.store.transcripts.append(KEY, entries);
}

describe("chat.history offset", () => {
  it("pages back through a conversation of more than 1,000 messages without losing any", async () => {
    const stack = await startStack();
    await longSession(stack, 1500);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const seen: string[] = [];
    for (let offset = 0; ; offset += 200) {
      const page = await client.request("chat.history", { sessionKey: KEY, limit: 200, offset });
      if (page.messages.length === 0) break;
      expect(page.messages.length).toBe(Math.min(200, 1500 - offset));
      seen.unshift(...page.messages.map(text));
    }
    expect(seen).toEqual(Array.from({ length: 1500 }, (_, i) => `m${i}`));
    const deep = await client.request("chat.history", { sessionKey: KEY, limit: 3, offset: 1400 });
    expect(deep.messages.map(text)).toEqual(["m97", "m98", "m99"]);
  });
});

describe("chat.history delta with maxChars", () => {
  it("leaves what did not fit for the next delta instead of skipping it", async () => {
    const stack = await startStack({
      responses: [{ text: "a".repeat(50) }, { text: "b".repeat(50) }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const start = await client.request("chat.history", { sessionKey: KEY });
    for (const [message, runId] of [
      ["q1", "k1"],
      ["q2", "k2"],
    ] as const) {
      await client.request("chat.send", { sessionKey: KEY, message, idempotencyKey: runId });
      await client.waitEvent("chat", (p) => p.runId === runId && p.state === "final");
    }
    // Read the new messages 60 characters at a time: each delta continues where the last ended.
    const got: string[] = [];
    let cursor = start.deltaCursor as string;
    for (let i = 0; i < 10; i++) {
      const delta = await client.request("chat.history", {
        sessionKey: KEY,
        cursor,
        maxChars: 60,
      });
      expect(delta.kind).toBe("delta");
      if (delta.messages.length === 0) break;
      got.push(...delta.messages.map(text));
      cursor = delta.deltaCursor;
    }
    expect(got).toEqual(["q1", "a".repeat(50), "q2", "b".repeat(50)]);
  });

  it("cuts a first message that alone is over maxChars, and goes on after it", async () => {
    const stack = await startStack({ responses: [{ text: "c".repeat(80) }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const start = await client.request("chat.history", { sessionKey: KEY });
    await client.request("chat.send", { sessionKey: KEY, message: "q", idempotencyKey: "k1" });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "final");
    const full = await client.request("chat.history", { sessionKey: KEY });
    // The user's "q" fits in 10 characters; the 80-character answer does not, even alone.
    const one = await client.request("chat.history", {
      sessionKey: KEY,
      cursor: start.deltaCursor,
      maxChars: 10,
    });
    expect(one.messages.map(text)).toEqual(["q"]);
    const two = await client.request("chat.history", {
      sessionKey: KEY,
      cursor: one.deltaCursor,
      maxChars: 10,
    });
    expect(two.messages).toHaveLength(1);
    expect(two.messages[0]).toMatchObject({ truncated: true });
    expect(text(two.messages[0])).toBe("c".repeat(10));
    const three = await client.request("chat.history", {
      sessionKey: KEY,
      cursor: two.deltaCursor,
      maxChars: 10,
    });
    expect(three.messages).toEqual([]);
    expect(three.deltaCursor).toBe(full.deltaCursor);
  });
});
