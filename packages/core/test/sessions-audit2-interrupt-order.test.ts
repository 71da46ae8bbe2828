/**
 * Messages sent with `interrupt` one after the other, while the run they interrupt is still
 * ending: they run in the order they were sent, never the later one first.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { ScriptEntry } from "../src/testing/index.js";
import { deferred, lastUserText, scriptedRuntime, waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("interrupt", () => {
  it("two interrupts sent while the interrupted run is still ending run in the order they were sent", async () => {
    const hold = deferred<void>();
    const asked: string[] = [];
    const answer: ScriptEntry = (request) => {
      const last = lastUserText(request.messages);
      asked.push(last);
      if (last !== "A") return `answer: ${last}`;
      return {
        events: [
          { type: "wait", until: hold.promise },
          { type: "text-delta", text: "answer: A" },
          { type: "finish", reason: "stop" },
        ],
      };
    };
    const { session } = await scriptedRuntime(Array<ScriptEntry>(10).fill(answer), cleanups);
    const a = await session.send("A");
    await waitFor("A's model call", () => asked.includes("A"));
    // Sent together: both reach the session before the interrupted run has ended.
    const [b, c] = await Promise.all([
      session.send("B", { queueMode: "interrupt" }),
      session.send("C", { queueMode: "interrupt" }),
    ]);
    expect([b.disposition, c.disposition]).toEqual(["interrupted", "interrupted"]);
    const [ra, rb, rc] = await Promise.all([a.result, b.result, c.result]);
    expect(ra.status).toBe("aborted");
    expect(rb).toMatchObject({ status: "completed", text: "answer: B" });
    expect(rc).toMatchObject({ status: "completed", text: "answer: C" });
    expect(asked).toEqual(["A", "B", "C"]);
    const users = (await session.history())
      .map((r) => r.entry.message as { role: string; content: Array<{ text?: string }> })
      .filter((m) => m?.role === "user")
      .map((m) => m.content[0]?.text);
    expect(users).toEqual(["A", "B", "C"]);
  });
});
