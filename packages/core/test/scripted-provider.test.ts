import { describe, expect, it } from "vitest";
import {
  AbortedError,
  createProviderChain,
  InvalidArgumentError,
  type ModelCallOptions,
  type ModelProvider,
  type ModelRequest,
  type ModelStreamEvent,
  ProviderError,
} from "../src/index.js";
import { createEchoProvider, createScriptedProvider } from "../src/testing/index.js";
import { activeTimeouts, deferred, failureOf } from "./support.js";

function requestFor(model: string, text = "hi"): ModelRequest {
  return { model, messages: [{ role: "user", content: [{ type: "text", text }] }] };
}

async function eventsOf(
  provider: ModelProvider,
  request: ModelRequest,
  options?: ModelCallOptions,
): Promise<ModelStreamEvent[]> {
  const events: ModelStreamEvent[] = [];
  for await (const event of provider.stream(request, options)) events.push(event);
  return events;
}

const busy = () => new ProviderError("busy", { kind: "overloaded", provider: "scripted" });

describe("createScriptedProvider", () => {
  it("streams text chunks, then usage and finish, as a provider does", async () => {
    const provider = createScriptedProvider([
      { text: ["Hel", "lo"], usage: { inputTokens: 3, outputTokens: 2 } },
    ]);
    expect(await eventsOf(provider, requestFor("m"))).toEqual([
      { type: "response-start", model: "m" },
      { type: "text-delta", text: "Hel" },
      { type: "text-delta", text: "lo" },
      { type: "usage", usage: { inputTokens: 3, outputTokens: 2 } },
      { type: "finish", reason: "stop" },
    ]);
  });

  it("streams a string entry as one text chunk", async () => {
    const provider = createScriptedProvider(["Hello"]);
    const events = await eventsOf(provider, requestFor("m"));
    expect(events.filter((e) => e.type === "text-delta")).toEqual([
      { type: "text-delta", text: "Hello" },
    ]);
  });

  it("streams tool calls as start, argument delta and call, and finishes with tool-calls", async () => {
    const provider = createScriptedProvider([
      { toolCalls: [{ toolName: "search", input: { q: "beam" } }] },
    ]);
    expect(await eventsOf(provider, requestFor("m"))).toEqual([
      { type: "response-start", model: "m" },
      { type: "tool-call-start", toolCallId: "call_1", toolName: "search" },
      { type: "tool-call-delta", toolCallId: "call_1", inputTextDelta: '{"q":"beam"}' },
      { type: "tool-call", toolCallId: "call_1", toolName: "search", input: { q: "beam" } },
      { type: "finish", reason: "tool-calls" },
    ]);
  });

  it("answers requests with the responses in order and records every request", async () => {
    const provider = createScriptedProvider(["first", "second"]);
    const texts: string[] = [];
    for (const text of ["one", "two"]) {
      for await (const event of provider.stream(requestFor("m", text))) {
        if (event.type === "text-delta") texts.push(event.text);
      }
    }
    expect(texts).toEqual(["first", "second"]);
    expect(provider.requests.map((r) => r.messages[0]?.content[0])).toEqual([
      { type: "text", text: "one" },
      { type: "text", text: "two" },
    ]);
    expect(provider.remaining).toBe(0);
  });

  it("records a copy of each request, unaffected by later changes to it", async () => {
    const provider = createScriptedProvider(["ok"]);
    const request = requestFor("m", "original");
    await eventsOf(provider, request, { headers: { "x-trace": "1" } });
    request.messages.push({ role: "user", content: [{ type: "text", text: "later" }] });
    expect(provider.requests[0]?.messages).toHaveLength(1);
    expect(provider.calls[0]?.headers).toEqual({ "x-trace": "1" });
  });

  it("answers a model from its own script before the shared responses", async () => {
    const provider = createScriptedProvider({
      responses: ["shared"],
      models: { special: ["special answer"] },
    });
    const text = async (model: string) =>
      (await eventsOf(provider, requestFor(model)))
        .map((e) => (e.type === "text-delta" ? e.text : ""))
        .join("");
    expect(await text("special")).toBe("special answer");
    expect(await text("special")).toBe("shared");
  });

  it("throws a scripted error before any event when the response has no content", async () => {
    const error = busy();
    const provider = createScriptedProvider([{ error }]);
    const seen: ModelStreamEvent[] = [];
    const thrown = await failureOf(async () => {
      for await (const event of provider.stream(requestFor("m"))) seen.push(event);
    });
    expect(thrown).toBe(error);
    expect(seen).toEqual([]);
  });

  it("throws a scripted error after the scripted chunks, without usage or finish", async () => {
    const error = busy();
    const provider = createScriptedProvider([{ text: ["a", "b"], error }]);
    const seen: ModelStreamEvent[] = [];
    const thrown = await failureOf(async () => {
      for await (const event of provider.stream(requestFor("m"))) seen.push(event);
    });
    expect(thrown).toBe(error);
    expect(seen.map((e) => e.type)).toEqual(["response-start", "text-delta", "text-delta"]);
  });

  it("plays explicit events verbatim, failing at the scripted point", async () => {
    const error = busy();
    const provider = createScriptedProvider([
      {
        events: [
          { type: "thinking-delta", text: "hmm" },
          { type: "error", error },
          { type: "text-delta", text: "never" },
        ],
      },
    ]);
    const seen: ModelStreamEvent[] = [];
    const thrown = await failureOf(async () => {
      for await (const event of provider.stream(requestFor("m"))) seen.push(event);
    });
    expect(thrown).toBe(error);
    expect(seen).toEqual([{ type: "thinking-delta", text: "hmm" }]);
  });

  it("holds a stream at a wait step until the test releases it", async () => {
    const gate = deferred();
    const provider = createScriptedProvider([
      {
        events: [
          { type: "text-delta", text: "before" },
          { type: "wait", until: gate.promise },
          { type: "text-delta", text: "after" },
        ],
      },
    ]);
    const iterator = provider.stream(requestFor("m"))[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toEqual({ type: "text-delta", text: "before" });
    let released = false;
    const pending = iterator.next().then((next) => {
      expect(released).toBe(true);
      return next;
    });
    await new Promise((resolve) => setImmediate(resolve));
    released = true;
    gate.resolve();
    expect((await pending).value).toEqual({ type: "text-delta", text: "after" });
  });

  it("builds a response from the request when the entry is a function", async () => {
    const provider = createScriptedProvider([(request, index) => `#${index} for ${request.model}`]);
    const events = await eventsOf(provider, requestFor("m7"));
    expect(events).toContainEqual({ type: "text-delta", text: "#0 for m7" });
  });

  it("fails with InvalidArgumentError naming the model when no response is left", async () => {
    const provider = createScriptedProvider({ id: "fake", responses: [] });
    const error = await failureOf(() => eventsOf(provider, requestFor("m")));
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain('"fake"');
    expect((error as Error).message).toContain('model "m"');
  });

  it("takes more responses pushed after creation", async () => {
    const provider = createScriptedProvider();
    provider.push("pushed");
    provider.pushFor("special", "special pushed");
    expect(provider.remaining).toBe(2);
    const events = await eventsOf(provider, requestFor("special"));
    expect(events).toContainEqual({ type: "text-delta", text: "special pushed" });
  });

  it("cancels a scripted delay with AbortedError when aborted, leaving no timer", async () => {
    const before = activeTimeouts();
    const provider = createScriptedProvider([{ text: "slow", delayMs: 600_000 }]);
    const controller = new AbortController();
    const result = failureOf(() =>
      eventsOf(provider, requestFor("m"), { signal: controller.signal }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(activeTimeouts()).toBe(before + 1);
    controller.abort();
    expect(AbortedError.isInstance(await result)).toBe(true);
    expect(activeTimeouts()).toBe(before);
  });

  it("lists the models it has scripts for", async () => {
    const provider = createScriptedProvider({ models: { a: [], b: [] } });
    expect(await provider.listModels?.()).toEqual([{ id: "a" }, { id: "b" }]);
  });

  it("serves as a provider of a ProviderChain, retries included", async () => {
    const provider = createScriptedProvider([{ error: busy() }, "recovered"]);
    const chain = createProviderChain({
      providers: [provider],
      models: ["scripted/m"],
      sleep: async () => {},
    });
    let text = "";
    for await (const event of chain.stream({ messages: requestFor("m").messages })) {
      if (event.type === "text-delta") text += event.text;
    }
    expect(text).toBe("recovered");
    expect(provider.requests).toHaveLength(2);
  });
});

describe("createEchoProvider", () => {
  it("streams back the text of the last user message with usage and finish", async () => {
    const provider = createEchoProvider();
    const request: ModelRequest = {
      model: "m",
      messages: [
        { role: "user", content: [{ type: "text", text: "first" }] },
        { role: "assistant", content: [{ type: "text", text: "reply" }] },
        { role: "user", content: [{ type: "text", text: "say this" }] },
      ],
    };
    expect(await eventsOf(provider, request)).toEqual([
      { type: "response-start", model: "m" },
      { type: "text-delta", text: "say this" },
      { type: "usage", usage: { inputTokens: 5, outputTokens: 2 } },
      { type: "finish", reason: "stop" },
    ]);
    expect(provider.requests).toEqual([request]);
  });

  it("answers without any timer", async () => {
    const before = activeTimeouts();
    const provider = createEchoProvider({ id: "e" });
    const iterator = provider.stream(requestFor("m"))[Symbol.asyncIterator]();
    const first = iterator.next();
    expect(activeTimeouts()).toBe(before);
    expect((await first).value).toEqual({ type: "response-start", model: "m" });
    await iterator.return?.();
  });
});
