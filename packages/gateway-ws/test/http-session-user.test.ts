/**
 * The `user` of an OpenAI-compatible request keeps a session per user: two different users
 * never share one (session keys are case-insensitive, so `Bob` and `bob` would), a user id
 * already in a session key's form keeps its key as it was, and a user named only in another
 * script keeps a session too. Over real sockets against a started gateway.
 */
import { afterEach, describe, expect, it } from "vitest";
import { sessionUser } from "../src/http/openai-common.js";
import { AUTH, httpCall as call, startStack, stopStacks } from "./support.js";

afterEach(stopStacks);

describe("sessions by user", () => {
  it("gives users whose ids differ only in case or in punctuation sessions of their own", async () => {
    const users = ["Bob", "bob", "a b", "a-b", "ユーザー", "ユーザー2"];
    const stack = await startStack({
      responses: [...users, ...users].map((_, i) => ({ text: `answer ${i}` })),
    });
    const ask = (user: string, content: string) =>
      call(stack.port, "/v1/chat/completions", {
        method: "POST",
        headers: AUTH,
        body: { model: "beamclaw", user, messages: [{ role: "user", content }] },
      });
    for (const user of users) expect((await ask(user, `hello from ${user}`)).status).toBe(200);
    // Each second message sees only its own user's first one.
    for (const user of users) {
      expect((await ask(user, `again from ${user}`)).status).toBe(200);
      const request = stack.provider.requests.at(-1)!;
      const texts = request.messages
        .filter((m) => m.role === "user")
        .map((m) => (m.content[0] as { text?: string }).text);
      expect(texts, user).toEqual([`hello from ${user}`, `again from ${user}`]);
    }
    const keys = (await stack.store.sessions.list({ limit: 100 })).items.map((r) => r.key);
    expect(new Set(keys).size).toBe(users.length);
    // An id already in a key's form keeps the key it always had.
    expect(keys).toContain("agent:main:openai-user:bob");
    expect(keys).toContain("agent:main:openai-user:a-b");
  });

  it("keeps a canonical id as it is and gives any other a hash of itself", () => {
    expect(sessionUser("alice")).toBe("alice");
    expect(sessionUser("user-42@example.com")).toBe("user-42@example.com");
    expect(sessionUser("Alice")).toMatch(/^alice~[0-9a-f]{16}$/);
    expect(sessionUser("Alice")).not.toBe(sessionUser("ALICE"));
    expect(sessionUser("  ")).toBeUndefined();
    expect(sessionUser(undefined)).toBeUndefined();
    expect(sessionUser("ユーザー")).toMatch(/^user~[0-9a-f]{16}$/);
    // A canonical id that looks hashed is hashed too: no id can take another's session.
    const hashed = sessionUser("Alice")!;
    expect(sessionUser(hashed)).not.toBe(hashed);
    // Long ids stay within the key's limits and distinct.
    const long = "X".repeat(300);
    expect(sessionUser(long)!.length).toBeLessThanOrEqual(128);
    expect(sessionUser(long)).not.toBe(sessionUser(`${long}Y`));
  });
});
