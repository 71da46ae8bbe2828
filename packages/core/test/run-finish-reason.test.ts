/**
 * A run says why its last model call ended (`RunResult.finishReason`), so that a caller can
 * tell an answer cut at the output token limit, or withheld by the provider, from a whole one:
 * all of them end the run `completed`.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { RunEvent } from "../src/index.js";
import { scriptedRuntime } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("RunResult.finishReason", () => {
  it("is the last model call's reason: stop, length, content-filter, refusal", async () => {
    const { session } = await scriptedRuntime(
      [
        { text: "A whole answer." },
        { text: "An answer cut at the out", finishReason: "length" },
        { text: "", finishReason: "content-filter" },
        { text: "I can't help with that.", finishReason: "refusal" },
      ],
      cleanups,
    );
    const reasons: Array<[string, string | undefined]> = [];
    for (const text of ["one", "two", "three", "four"]) {
      const result = await (await session.send(text)).result;
      reasons.push([result.status, result.finishReason]);
    }
    expect(reasons).toEqual([
      ["completed", "stop"],
      ["completed", "length"],
      ["completed", "content-filter"],
      ["completed", "refusal"],
    ]);
  });

  it("follows the last step after tool calls, reaches run-end, and is absent when no call finished", async () => {
    const { session } = await scriptedRuntime(
      [
        { toolCalls: [{ toolName: "lookup", input: { q: "x" } }] },
        { text: "Found it, but the answer was cu", finishReason: "length" },
        { error: new Error("the provider is down") },
      ],
      cleanups,
    );
    const run = await session.send("look it up");
    const events: RunEvent[] = [];
    for await (const event of run) events.push(event);
    const result = await run.result;
    expect([result.status, result.steps, result.finishReason]).toEqual(["completed", 2, "length"]);
    const end = events.at(-1);
    expect(end?.type === "run-end" ? end.result.finishReason : undefined).toBe("length");
    const failed = await (await session.send("again")).result;
    expect(failed.status).toBe("failed");
    expect(failed.finishReason).toBeUndefined();
  });
});
