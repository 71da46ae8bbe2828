/**
 * A message of nothing (text empty or only whitespace, no image, no file): `send` refuses it
 * with `InvalidArgumentError` before anything is queued or saved, since it says nothing and
 * vendors refuse a message without content (Anthropic: "all messages must have non-empty
 * content"; OpenAI: an empty `content` array; Gemini: "contents.parts must not be empty").
 * A photo without a caption, as channels send one, has no text and is a message.
 */
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { failureOf, lastUserText, scriptedRuntime } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const PNG = "iVBORw0KGgo=";

describe("send of a message of nothing", () => {
  it.each([
    ["an empty string", ""],
    ["only whitespace", " \n\t "],
    ["an object with empty text", { text: "", sender: "alice" }],
    ["empty text and no images", { text: "  ", images: [], files: [] }],
  ])("refuses %s, queues and saves nothing, and the session goes on", async (_, message) => {
    const { session, provider, store } = await scriptedRuntime(["hello"], cleanups);
    const error = await failureOf(() => session.send(message));
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(
      /needs text \(not only whitespace\), an image or a file/,
    );
    expect(await store.queue.pending({ sessionKey: session.key })).toEqual([]);
    expect(await session.history()).toEqual([]);
    expect(provider.requests).toHaveLength(0);
    const run = await session.send("hi");
    expect(await run.result).toMatchObject({ status: "completed", text: "hello" });
    expect(provider.requests).toHaveLength(1);
  });

  it("sends a photo without a caption to the model as the image alone", async () => {
    const { session, provider } = await scriptedRuntime(["a cat"], cleanups);
    const run = await session.send({ text: "", images: [{ mediaType: "image/png", data: PNG }] });
    expect(await run.result).toMatchObject({ status: "completed", text: "a cat" });
    expect(provider.requests[0]!.messages).toEqual([
      { role: "user", content: [{ type: "image", mediaType: "image/png", data: PNG }] },
    ]);
  });

  it("a sub-agent's blank task is refused before the child's session is made", async () => {
    const seen: string[] = [];
    const answer: ScriptEntry = (request) => {
      seen.push(lastUserText(request.messages));
      if (request.messages.at(-1)?.role === "tool") return "parent done";
      return { toolCalls: [{ toolName: "spawn_subagent", input: { task: " \n" } }] };
    };
    const { session, provider, store } = await scriptedRuntime(
      Array<ScriptEntry>(3).fill(answer),
      cleanups,
      {
        key: "agent:boss:main",
        options: { agents: [{ id: "boss", model: "scripted/model-1", subagents: {} }] },
      },
    );
    const result = await (await session.send("go")).result;
    expect(result).toMatchObject({ status: "completed", text: "parent done" });
    const toolMessage = provider.requests[1]!.messages.at(-1)!;
    expect(toolMessage).toMatchObject({
      role: "tool",
      content: [{ output: "spawn_subagent needs a non-empty task string", isError: true }],
    });
    const sessions = await store.sessions.list({ limit: 100 });
    expect(sessions.items.filter((record) => record.parentKey !== undefined)).toEqual([]);
    expect(seen).toEqual(["go", "go"]);
  });
});
