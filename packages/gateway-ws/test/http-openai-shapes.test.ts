/**
 * `POST /v1/chat/completions` against OpenAI's documented shapes, over a real socket: the usage
 * chunk `stream_options.include_usage` asks for, `n`, content parts this gateway cannot use,
 * and errors in OpenAI's `{ error: { message, type, param, code } }` shape everywhere.
 */
import { ProviderError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  AUTH,
  httpCall as call,
  closeClients,
  sseData,
  startStack,
  stopStacks,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

describe("OpenAI shapes of /v1/chat/completions", () => {
  it("with stream_options.include_usage, ends with a chunk of empty choices carrying the usage", async () => {
    const stack = await startStack({
      responses: [{ text: ["Hel", "lo"], usage: { inputTokens: 7, outputTokens: 3 } }],
    });
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw",
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "hello" }],
      },
    });
    expect(reply.status).toBe(200);
    const events = sseData(reply.text);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1);
    const last = chunks.at(-1);
    expect(last).toMatchObject({ object: "chat.completion.chunk", choices: [] });
    expect(last.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    // Every other chunk has `usage: null`, the finish chunk included.
    const others = chunks.slice(0, -1);
    expect(others.every((c) => c.usage === null)).toBe(true);
    expect(others.at(-1).choices[0].finish_reason).toBe("stop");
    expect(others.map((c) => c.choices[0].delta.content ?? "").join("")).toBe("Hello");
  });

  it("with client tools and include_usage, ends with the same usage chunk", async () => {
    const stack = await startStack({
      responses: [{ text: "sure", usage: { inputTokens: 4, outputTokens: 1 } }],
    });
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw",
        stream: true,
        stream_options: { include_usage: true },
        tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }],
        messages: [{ role: "user", content: "hello" }],
      },
    });
    const chunks = sseData(reply.text).slice(0, -1);
    expect(chunks.at(-1)).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 4, completion_tokens: 1, total_tokens: 5 },
    });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(chunks.at(-2).choices[0].finish_reason).toBe("stop");
  });

  it("says finish_reason length or content_filter when the model's answer was cut or withheld, streamed or not", async () => {
    const stack = await startStack({
      responses: [
        { text: "It is", finishReason: "length" },
        { text: ["It ", "is"], finishReason: "length" },
        { text: "", finishReason: "content-filter" },
      ],
    });
    const ask = (stream: boolean) =>
      call(stack.port, "/v1/chat/completions", {
        method: "POST",
        headers: AUTH,
        body: { model: "beamclaw", stream, messages: [{ role: "user", content: "Weather?" }] },
      });
    const whole = await ask(false);
    expect(whole.json.choices[0]).toMatchObject({
      finish_reason: "length",
      message: { content: "It is" },
    });
    const chunks = sseData((await ask(true)).text).slice(0, -1);
    expect(chunks.at(-1).choices[0].finish_reason).toBe("length");
    expect((await ask(false)).json.choices[0].finish_reason).toBe("content_filter");
  });

  it("refuses n other than 1 instead of answering with fewer choices than asked", async () => {
    const stack = await startStack({ responses: [{ text: "one" }] });
    const post = (n: unknown) =>
      call(stack.port, "/v1/chat/completions", {
        method: "POST",
        headers: AUTH,
        body: { model: "beamclaw", n, messages: [{ role: "user", content: "hi" }] },
      });
    for (const n of [2, 0, "2", 1.5]) {
      const refused = await post(n);
      expect(refused.status).toBe(400);
      expect(refused.json.error).toMatchObject({ type: "invalid_request_error", param: "n" });
    }
    expect(stack.provider.requests).toHaveLength(0);
    const one = await post(1);
    expect(one.status).toBe(200);
    expect(one.json.choices).toHaveLength(1);
  });

  it("refuses a content part of a type it cannot use instead of dropping it", async () => {
    const stack = await startStack({ responses: [{ text: "seen" }] });
    const refused = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "what is in this clip?" },
              { type: "video_url", video_url: { url: "https://example.com/a.mp4" } },
            ],
          },
        ],
      },
    });
    expect(refused.status).toBe(400);
    expect(refused.json.error).toMatchObject({
      type: "invalid_request_error",
      param: "messages[0].content[1].type",
    });
    expect(stack.provider.requests).toHaveLength(0);
    // An assistant's refusal part is OpenAI's own shape: accepted.
    const ok = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw",
        messages: [
          { role: "user", content: "a" },
          { role: "assistant", content: [{ type: "refusal", refusal: "no" }] },
          { role: "user", content: "b" },
        ],
      },
    });
    expect(ok.status).toBe(200);
  });

  it("answers every error in OpenAI's shape, with type and param", async () => {
    const stack = await startStack();
    const unknownRoute = await call(stack.port, "/v1/embeddings", {
      method: "POST",
      headers: AUTH,
      body: { model: "beamclaw", input: "hi" },
    });
    expect(unknownRoute.status).toBe(404);
    expect(unknownRoute.json.error).toEqual({
      message: expect.any(String),
      type: "invalid_request_error",
      param: null,
      code: "not_found",
    });
  });

  it("sends a failure mid-stream as an error in OpenAI's shape", async () => {
    const stack = await startStack({
      responses: [
        {
          error: new ProviderError("connect ECONNREFUSED", {
            kind: "network",
            provider: "scripted",
          }),
        },
      ],
    });
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: { model: "beamclaw", stream: true, messages: [{ role: "user", content: "x" }] },
    });
    const events = sseData(reply.text);
    expect(events.at(-1)).toBe("[DONE]");
    const error = events.find((e) => e !== "[DONE]" && e.error !== undefined);
    expect(error.error).toEqual({
      message: expect.stringContaining("ECONNREFUSED"),
      type: "server_error",
      param: null,
      code: expect.anything(),
    });
  });
});
