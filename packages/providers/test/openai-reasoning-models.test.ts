/**
 * A reasoning effort sent to an OpenAI model that does not reason (GPT-4o, GPT-4.1, their
 * fine-tunes, chatgpt-4o) is refused with HTTP 400 "Unsupported parameter:
 * 'reasoning.effort' is not supported with this model" (`unsupported_parameter`): an agent
 * with `thinking` set fails every run on them. The fake API here refuses it as OpenAI does;
 * the adapters must leave the effort out for those models and keep it for the others.
 */
import type { ModelRequest, ThinkingLevel } from "@beamclaw/core";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider, createOpenAIProvider } from "../src/index.js";
import { openAIModelReasons } from "../src/openai-chat.js";
import { collect, fixture, sseResponse, textOf, userText } from "./support.js";

const API = "https://api.openai.com/v1";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const NON_REASONING = [
  "gpt-4o",
  "gpt-4.1-mini",
  "ft:gpt-4o-mini-2024-07-18:acme::9xYz",
  "chatgpt-4o-latest",
];
const REASONING = ["o3", "o4-mini", "gpt-5", "gpt-5.1", "gpt-5-mini"];

function unsupported(param: string) {
  return HttpResponse.json(
    {
      error: {
        message: `Unsupported parameter: '${param}' is not supported with this model.`,
        type: "invalid_request_error",
        param,
        code: "unsupported_parameter",
      },
    },
    { status: 400 },
  );
}

/** OpenAI's two endpoints, refusing an effort for a model that does not reason. */
function fakeOpenAI(seen: Array<Record<string, unknown>>) {
  server.use(
    http.post(`${API}/chat/completions`, async ({ request }) => {
      const body = (await request.json()) as Record<string, unknown>;
      seen.push(body);
      if (body.reasoning_effort !== undefined && !REASONING.includes(String(body.model)))
        return unsupported("reasoning_effort");
      return sseResponse(fixture("openai-chat-text.sse.txt"));
    }),
    http.post(`${API}/responses`, async ({ request }) => {
      const body = (await request.json()) as Record<string, unknown>;
      seen.push(body);
      if (body.reasoning !== undefined && !REASONING.includes(String(body.model)))
        return unsupported("reasoning.effort");
      return sseResponse(fixture("openai-responses-text.sse.txt"));
    }),
  );
}

const ask = (model: string, thinking: ThinkingLevel): ModelRequest => ({
  model,
  thinking,
  messages: [userText("Hello")],
});

describe("OpenAI: a reasoning effort goes only to the models that reason", () => {
  it.each(["responses", "chat"] as const)("%s API: every model answers", async (api) => {
    const seen: Array<Record<string, unknown>> = [];
    fakeOpenAI(seen);
    const provider = createOpenAIProvider({ api, apiKey: "sk-test" });
    for (const model of [...NON_REASONING, ...REASONING]) {
      const events = await collect(provider.stream(ask(model, "high")));
      expect(textOf(events).length).toBeGreaterThan(0);
    }
    const effort = (body: Record<string, unknown>) =>
      api === "chat" ? body.reasoning_effort : (body.reasoning as { effort?: string })?.effort;
    expect(seen.map((body) => [body.model, effort(body)])).toEqual([
      ...NON_REASONING.map((model) => [model, undefined]),
      ...REASONING.map((model) => [model, "high"]),
    ]);
  });

  it("openAIModelReasons names the families", () => {
    for (const model of NON_REASONING) expect(openAIModelReasons(model)).toBe(false);
    for (const model of REASONING) expect(openAIModelReasons(model)).toBe(true);
  });

  it("an OpenAI-compatible server still gets the effort, whatever the model is called", async () => {
    const seen: Array<Record<string, unknown>> = [];
    server.use(
      http.post("http://127.0.0.1:8000/v1/chat/completions", async ({ request }) => {
        seen.push((await request.json()) as Record<string, unknown>);
        return sseResponse(fixture("openai-chat-text.sse.txt"));
      }),
    );
    const provider = createOpenAICompatibleProvider({
      id: "vllm",
      baseUrl: "http://127.0.0.1:8000/v1",
    });
    await collect(provider.stream(ask("gpt-4-local-finetune", "low")));
    expect(seen[0]?.reasoning_effort).toBe("low");
  });
});
