/**
 * Lone surrogates (half of a UTF-16 pair): every model API refuses a request holding one, so a
 * session whose history held one would fail every call after it. `send` and `inject` refuse
 * such text with nothing saved; a tool's result has them replaced by U+FFFD; and the helpers
 * the gateway and the channels use to check client JSON find them.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  defineTool,
  InvalidArgumentError,
  type JsonValue,
  loneSurrogateIndex,
  loneSurrogatePath,
  type ModelMessage,
  wellFormedJson,
} from "../src/index.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { type CronFixture, startCron } from "./cron-support.js";
import { failureOf, scriptedRuntime } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
const crons: CronFixture[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const fixture of crons.splice(0)) await fixture.service.stop();
});

describe("loneSurrogateIndex", () => {
  it("is -1 for well-formed text, pairs included, and the index of the first lone half", () => {
    expect(loneSurrogateIndex("")).toBe(-1);
    expect(loneSurrogateIndex("plain, café, 😀 and 𝄞")).toBe(-1);
    expect(loneSurrogateIndex("cut \ud83d")).toBe(4);
    expect(loneSurrogateIndex("\ude00 first")).toBe(0);
    // A low half after a whole pair, then a high half not followed by a low one.
    expect(loneSurrogateIndex("😀\ude00")).toBe(2);
    expect(loneSurrogateIndex("a\ud800b\udc00")).toBe(1);
  });
});

describe("loneSurrogatePath", () => {
  it("names the string or key holding one, and is undefined when every string is well-formed", () => {
    expect(loneSurrogatePath({ a: ["ok", "😀"], b: { c: 1, d: null, e: true } })).toBeUndefined();
    expect(loneSurrogatePath({ messages: [{ content: "ok" }, { content: "x\ud800" }] })).toBe(
      "messages[1].content",
    );
    expect(loneSurrogatePath({ outer: { "k\udc00": 1 } })).toBe("outer.k\udc00");
    expect(loneSurrogatePath("\ud800")).toBe("");
    expect(loneSurrogatePath(["ok", ["\ud800"]])).toBe("[1][0]");
  });

  it("walks a deeply nested value without overflowing the stack", () => {
    let value: unknown = "\ud800";
    for (let i = 0; i < 100_000; i++) value = [value];
    expect(loneSurrogatePath(value)).toBe("[0]".repeat(100_000));
  });

  it("given the JSON text, finds one from an escape and skips text that cannot hold one", () => {
    const text = '{"messages":[{"content":"\\ud800"}]}';
    expect(loneSurrogatePath(JSON.parse(text), text)).toBe("messages[0].content");
    const upper = '{"k":"\\uDBFF"}';
    expect(loneSurrogatePath(JSON.parse(upper), upper)).toBe("k");
    // An escaped pair is whole; a literal backslash before "ud800" is no escape.
    for (const fine of ['{"k":"\\ud83d\\ude00"}', '{"k":"\\\\ud800"}', '{"k":"😀"}']) {
      expect(loneSurrogatePath(JSON.parse(fine), fine)).toBeUndefined();
    }
    // The text says no surrogate escape, so the value is not walked.
    expect(loneSurrogatePath({ k: "\ud800" }, '{"k":"x"}')).toBeUndefined();
  });
});

describe("wellFormedJson", () => {
  it("is JSON.stringify for well-formed data", () => {
    const data = { text: "café 😀", list: [1, null, "\\ud800 is not an escape here"], n: 1.5 };
    expect(wellFormedJson(data)).toBe(JSON.stringify(data));
  });

  it("replaces lone surrogates in strings and keys with U+FFFD, keeping pairs", () => {
    const text = wellFormedJson({ a: "cut \ud83d", b: ["\ude00", "😀"], "k\ud800": 1 });
    expect(text).not.toMatch(/\\ud[89a-f]/);
    expect(JSON.parse(text)).toEqual({ a: "cut \ufffd", b: ["\ufffd", "😀"], "k\ufffd": 1 });
  });
});

describe("send and inject refuse text holding a lone surrogate, saving nothing", () => {
  const cases: Array<[string, Parameters<import("../src/index.js").SessionHandle["send"]>[0]]> = [
    ["message text", "cut \ud83d"],
    ["message sender", { text: "hi", sender: "\udc00bob" }],
    [
      "message files[0].filename",
      { text: "hi", files: [{ mediaType: "text/plain", data: "aGk=", filename: "a\ud800.txt" }] },
    ],
  ];
  for (const [what, message] of cases) {
    it(`send: ${what}`, async () => {
      const { session, provider, store } = await scriptedRuntime(["hello"], cleanups);
      const error = await failureOf(() => session.send(message));
      expect(InvalidArgumentError.isInstance(error)).toBe(true);
      expect((error as Error).message).toContain(`${what} holds a lone surrogate`);
      expect(provider.requests).toHaveLength(0);
      expect(await store.queue.pending({ sessionKey: session.key })).toEqual([]);
      expect(await session.history()).toEqual([]);
      // The session is untouched: a well-formed message runs as usual.
      expect((await (await session.send("fine 😀")).result).status).toBe("completed");
    });
  }

  it("inject: the text and the label", async () => {
    const { session } = await scriptedRuntime([], cleanups);
    for (const [text, label, what] of [
      ["x\ud800", undefined, "inject text"],
      ["fine", "shop\udc00", "inject label"],
    ] as const) {
      const error = await failureOf(() =>
        session.inject(text, label === undefined ? undefined : { label }),
      );
      expect(InvalidArgumentError.isInstance(error)).toBe(true);
      expect((error as Error).message).toContain(`${what} holds a lone surrogate`);
    }
    expect(await session.history()).toEqual([]);
  });
});

describe("a cron job whose prompt holds a lone surrogate", () => {
  it("is refused by add and update (every run's message would be refused), nothing stored", async () => {
    const fixture = await startCron();
    crons.push(fixture);
    const error = await failureOf(() =>
      fixture.service.add({ id: "cut", schedule: { every: 60_000 }, prompt: "report \ud83d" }),
    );
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("prompt: holds a lone surrogate");
    expect(await fixture.store.cron.getJob("cut")).toBeUndefined();
    await fixture.service.add({ id: "ok", schedule: { every: 60_000 }, prompt: "report 😀" });
    const patch = await failureOf(() => fixture.service.update("ok", { prompt: "\udc00" }));
    expect(InvalidArgumentError.isInstance(patch)).toBe(true);
    expect((await fixture.store.cron.getJob("ok"))?.prompt).toBe("report 😀");
  });
});

describe("a tool result holding a lone surrogate", () => {
  it("is kept and sent to the model with U+FFFD in its place, so the session keeps working", async () => {
    const seen: ModelMessage[][] = [];
    const answer: ScriptEntry = (request) => {
      seen.push(request.messages);
      return request.messages.at(-1)?.role === "tool"
        ? "done"
        : {
            toolCalls: [
              { toolName: "excerpt", input: {} },
              { toolName: "meta", input: {} },
            ],
          };
    };
    // Plain data cut mid-emoji by `slice`, as tools often cut their output...
    const excerpt = defineTool({
      name: "excerpt",
      description: "The page's first characters",
      parameters: z.object({}),
      execute: async () => ({ text: "see 😀😀".slice(0, 5) }),
    });
    // ...and a result that takes the JSON round trip (a Date is not plain data), with a cut
    // key and a cut value.
    const meta = defineTool({
      name: "meta",
      description: "The page's metadata",
      parameters: z.object({}),
      // A JavaScript tool may return any value; JSON defines what the model reads.
      execute: async () =>
        ({ at: new Date(0), "k\udc00": ["tail \ud83d"] }) as unknown as JsonValue,
    });
    const { session } = await scriptedRuntime([answer, answer, answer, answer], cleanups, {
      options: {
        agents: [{ id: "main", model: "scripted/model-1", tools: ["excerpt", "meta"] }],
        tools: [excerpt, meta],
      },
    });
    const result = await (await session.send("read it")).result;
    expect(result.status).toBe("completed");
    const toolMessage = seen[1]?.at(-1);
    expect(toolMessage?.role).toBe("tool");
    const sent = JSON.stringify(toolMessage);
    expect(sent).not.toMatch(/\\ud[89a-f]/);
    expect(sent).toContain("see \ufffd");
    expect(sent).toContain("k\ufffd");
    expect(sent).toContain("tail \ufffd");
    expect(sent).toContain("1970-01-01T00:00:00.000Z");
    // The saved history is well-formed too: a later run sends it as it is.
    const history = JSON.stringify(await session.history());
    expect(history).not.toMatch(/\\ud[89a-f]/);
    expect((await (await session.send("again")).result).status).toBe("completed");
  });
});
