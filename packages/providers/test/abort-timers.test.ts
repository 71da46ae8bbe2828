/**
 * An abort ends a call's timers at once, not only its request: a caller that aborts and
 * then leaves the stream (a CLI on Ctrl-C that stops iterating) must not keep the process
 * alive for the idle limit (five minutes by default).
 */
import type { ModelProvider } from "@beamclaw/core";
import { describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
  type FetchFunction,
} from "../src/index.js";
import { fixture, userText } from "./support.js";

/** Timers that hold the event loop open. */
function liveTimers(): number {
  return process.getActiveResourcesInfo().filter((type) => type === "Timeout").length;
}

/** A fetch whose body sends the first event of `stream` and then stays open. */
function firstEventThenSilence(stream: string, cancelled: () => void): FetchFunction {
  const first = stream.slice(0, stream.indexOf("\n\n") + 2);
  return async () =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(first));
        },
        cancel() {
          cancelled();
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
}

const adapters: Array<[string, string, (fetch: FetchFunction) => ModelProvider]> = [
  [
    "anthropic",
    "anthropic-text.sse.txt",
    (fetch) => createAnthropicProvider({ apiKey: "sk-ant-test", fetch }),
  ],
  [
    "openai responses",
    "openai-responses-text.sse.txt",
    (fetch) => createOpenAIProvider({ apiKey: "sk-test", fetch }),
  ],
  [
    "openai chat",
    "openai-chat-text.sse.txt",
    (fetch) => createOpenAIProvider({ apiKey: "sk-test", api: "chat", fetch }),
  ],
  [
    "openai-compatible",
    "ollama-chat.sse.txt",
    (fetch) => createOpenAICompatibleProvider({ baseUrl: "http://127.0.0.1:11434/v1", fetch }),
  ],
];

describe("abort mid-stream, then the caller stops iterating", () => {
  it.each(adapters)("%s: the body is cancelled and no timer is left", async (_, name, make) => {
    const before = liveTimers();
    let onCancel: () => void = () => {};
    const cancelled = new Promise<void>((resolve) => {
      onCancel = resolve;
    });
    const controller = new AbortController();
    const provider = make(firstEventThenSilence(fixture(name), () => onCancel()));
    const iterator = provider
      .stream({ model: "m", messages: [userText("Hi")] }, { signal: controller.signal })
      [Symbol.asyncIterator]();
    try {
      expect((await iterator.next()).value?.type).toBe("response-start");
      controller.abort(new Error("Ctrl-C"));
      await cancelled;
      expect(liveTimers()).toBe(before);
    } finally {
      // Only now does the caller let go of the iterator (the test's own cleanup).
      await iterator.return?.();
    }
  });
});
