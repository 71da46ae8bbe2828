/**
 * Mistral accepts tool call ids of exactly 9 characters of `a-z`, `A-Z`, `0-9` only: its API
 * answers any other with HTTP 400 `{"object":"error","message":"Tool call id was
 * toolu_01… but must be a-z, A-Z, 0-9, with a length of 9.","type":
 * "invalid_request_message_error","param":null,"code":null}`, and Mistral models' chat
 * templates on vLLM, llama.cpp or MLX refuse them the same way (reported in langchain-ai/
 * langchain#24668, anomalyco/opencode#1680, ml-explore/mlx-lm#1375). A conversation holding
 * another vendor's call ids (after a failover, or a session that changed models), or the
 * ids a server like vLLM makes up (`chatcmpl-tool-…`), could not go on. The fake server here
 * enforces that rule.
 */
import type { ModelMessage, ModelRequest } from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider } from "../src/index.js";
import { mistralToolCallIds } from "../src/openai-chat.js";
import {
  type CapturedRequest,
  capture,
  chatAnswer,
  chatChunk,
  collect,
  collectFailure,
  errorResponse,
  mswFakes,
  runtimeOver,
  sseResponse,
  textOf,
  userText,
  weatherTool,
} from "./support.js";

const { server, cleanups } = mswFakes();

const MISTRAL = "https://api.mistral.ai/v1";
const VLLM = "http://127.0.0.1:8000/v1";
const OLLAMA = "http://127.0.0.1:11434/v1";
const ANTHROPIC_ID = "toolu_01A09q90qw90lq917835lq9";
const MISTRAL_FORM = /^[a-zA-Z0-9]{9}$/;

/** Every tool call id of a Chat Completions body: the calls' and the results'. */
function idsOf(body: Record<string, unknown>) {
  const messages = body.messages as Array<Record<string, unknown>>;
  const calls = messages.flatMap((m) =>
    ((m.tool_calls as Array<{ id: string }> | undefined) ?? []).map((c) => c.id),
  );
  const results = messages.filter((m) => m.role === "tool").map((m) => m.tool_call_id as string);
  return { calls, results };
}

/** Mistral's check of a request's tool call ids: its 400, or undefined when they pass. */
function mistralRefusal(body: Record<string, unknown>) {
  const { calls, results } = idsOf(body);
  const bad = [...calls, ...results].find((id) => !MISTRAL_FORM.test(id));
  if (bad === undefined) return undefined;
  return errorResponse(400, {
    object: "error",
    message: `Tool call id was ${bad} but must be a-z, A-Z, 0-9, with a length of 9.`,
    type: "invalid_request_message_error",
    param: null,
    code: null,
  });
}

/** A fake Mistral-serving endpoint at `base` that enforces the id rule; records requests. */
function mistralServer(base: string, model: string, reply = "It is 21 °C in Paris.") {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(`${base}/chat/completions`, async ({ request }) => {
      const captured = await capture(request);
      seen.push(captured);
      return mistralRefusal(captured.body) ?? chatAnswer(model, reply);
    }),
  );
  return seen;
}

/** A conversation whose tool call `id` came from another vendor, with its result. */
function afterToolCall(id: string, model: string): ModelRequest {
  const messages: ModelMessage[] = [
    userText("Weather in Paris?"),
    {
      role: "assistant",
      content: [
        { type: "text", text: "Let me check." },
        { type: "tool-call", toolCallId: id, toolName: "get_weather", input: { city: "Paris" } },
      ],
    },
    {
      role: "tool",
      content: [{ type: "tool-result", toolCallId: id, toolName: "get_weather", output: 21 }],
    },
  ];
  return { model, messages };
}

describe("tool call ids sent to Mistral", () => {
  it("api.mistral.ai: another vendor's ids become 9 characters, the same on the call and its result", async () => {
    const seen = mistralServer(MISTRAL, "mistral-large-latest");
    const mistral = createOpenAICompatibleProvider({
      id: "mistral",
      baseUrl: MISTRAL,
      apiKey: "test-key",
    });
    const events = await collect(
      mistral.stream(afterToolCall(ANTHROPIC_ID, "mistral-large-latest")),
    );
    expect(textOf(events)).toBe("It is 21 °C in Paris.");
    const { calls, results } = idsOf(seen[0]!.body);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(MISTRAL_FORM);
    expect(results).toEqual(calls);

    // The next request maps it the same way: the prompt's prefix stays the same (cacheable).
    await collect(mistral.stream(afterToolCall(ANTHROPIC_ID, "mistral-large-latest")));
    expect(idsOf(seen[1]!.body).calls).toEqual(calls);
  });

  it("keeps an id already in Mistral's form as it is", async () => {
    const seen = mistralServer(MISTRAL, "mistral-small-latest");
    const mistral = createOpenAICompatibleProvider({ baseUrl: MISTRAL, apiKey: "k" });
    await collect(mistral.stream(afterToolCall("D681PevKs", "mistral-small-latest")));
    expect(idsOf(seen[0]!.body)).toEqual({ calls: ["D681PevKs"], results: ["D681PevKs"] });
  });

  it("keeps two calls of one request apart, each paired with its own result", async () => {
    const seen = mistralServer(MISTRAL, "mistral-large-latest");
    const mistral = createOpenAICompatibleProvider({ baseUrl: MISTRAL, apiKey: "k" });
    const request: ModelRequest = {
      model: "mistral-large-latest",
      messages: [
        userText("Weather in Paris and Rome?"),
        {
          role: "assistant",
          content: [
            { type: "tool-call", toolCallId: "call_0", toolName: "w", input: { city: "Paris" } },
            { type: "tool-call", toolCallId: "call_1", toolName: "w", input: { city: "Rome" } },
          ],
        },
        {
          role: "tool",
          content: [
            { type: "tool-result", toolCallId: "call_1", toolName: "w", output: 25 },
            { type: "tool-result", toolCallId: "call_0", toolName: "w", output: 21 },
          ],
        },
      ],
    };
    await collect(mistral.stream(request));
    const { calls, results } = idsOf(seen[0]!.body);
    expect(new Set(calls).size).toBe(2);
    expect(results).toEqual([calls[1], calls[0]]);
  });

  it("a Mistral model on vLLM: an agent's tool loop over vLLM's own `chatcmpl-tool-` ids goes on", async () => {
    const model = "mistralai/Mistral-Small-3.1-24B-Instruct-2503";
    const seen: CapturedRequest[] = [];
    server.use(
      http.post(`${VLLM}/chat/completions`, async ({ request }) => {
        const captured = await capture(request);
        seen.push(captured);
        const refusal = mistralRefusal(captured.body);
        if (refusal !== undefined) return refusal;
        if (seen.length > 1) return chatAnswer(model, "It is 21 °C in Paris.");
        // vLLM names the call itself, in a form its Mistral template then refuses.
        return sseResponse(
          chatChunk(model, {
            role: "assistant",
            tool_calls: [
              {
                index: 0,
                id: "chatcmpl-tool-5a9d3f0c1b2e4d6f8a7b9c0d1e2f3a4b",
                type: "function",
                function: { name: "get_weather", arguments: '{"city": "Paris"}' },
              },
            ],
          }) +
            chatChunk(model, {}, "tool_calls") +
            "data: [DONE]\n\n",
        );
      }),
    );
    const vllm = createOpenAICompatibleProvider({ id: "vllm", baseUrl: VLLM });
    const runtime = await runtimeOver(
      [vllm],
      {
        agents: [{ id: "main", model: `vllm/${model}`, tools: ["*"] }],
        tools: [weatherTool],
      },
      cleanups,
    );
    const run = await runtime.session("agent:main:main").send("Weather in Paris?");
    const result = await run.result;
    expect(result).toMatchObject({ status: "completed", text: "It is 21 °C in Paris." });
    expect(seen).toHaveLength(2);
    const { calls, results } = idsOf(seen[1]!.body);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(MISTRAL_FORM);
    expect(results).toEqual(calls);
  });

  it("other models' ids are sent as they are", async () => {
    const seen: CapturedRequest[] = [];
    server.use(
      http.post(`${OLLAMA}/chat/completions`, async ({ request }) => {
        seen.push(await capture(request));
        return chatAnswer("llama3.2", "21 °C.");
      }),
    );
    const ollama = createOpenAICompatibleProvider({ id: "ollama", baseUrl: OLLAMA });
    await collect(ollama.stream(afterToolCall(ANTHROPIC_ID, "llama3.2")));
    expect(idsOf(seen[0]!.body)).toEqual({ calls: [ANTHROPIC_ID], results: [ANTHROPIC_ID] });
  });

  it("`mistralToolCallIds` decides for every model: true rewrites, false sends ids as they are", async () => {
    const seen = mistralServer(OLLAMA, "my-finetune");
    const forced = createOpenAICompatibleProvider({ baseUrl: OLLAMA, mistralToolCallIds: true });
    await collect(forced.stream(afterToolCall(ANTHROPIC_ID, "my-finetune")));
    expect(idsOf(seen[0]!.body).calls[0]).toMatch(MISTRAL_FORM);

    mistralServer(MISTRAL, "mistral-large-latest");
    const off = createOpenAICompatibleProvider({
      id: "mistral",
      baseUrl: MISTRAL,
      apiKey: "k",
      mistralToolCallIds: false,
    });
    // Mistral's refusal then reaches the caller as the request's fault, naming the id.
    const { error } = await collectFailure(
      off.stream(afterToolCall(ANTHROPIC_ID, "mistral-large-latest")),
    );
    expect(error).toMatchObject({ kind: "invalid_request", statusCode: 400, isRetryable: false });
    expect(error.message).toContain(`Tool call id was ${ANTHROPIC_ID}`);
  });

  it("refuses a `mistralToolCallIds` that is not a boolean", () => {
    expect(() =>
      createOpenAICompatibleProvider({
        baseUrl: MISTRAL,
        mistralToolCallIds: "yes" as unknown as boolean,
      }),
    ).toThrow(InvalidArgumentError);
  });
});

describe("mistralToolCallIds()", () => {
  it("maps many distinct ids to distinct 9-character ids, each the same every time", () => {
    const map = mistralToolCallIds();
    const out = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const id = `toolu_${i.toString(36)}_${"x".repeat(i % 7)}`;
      const mapped = map(id);
      expect(mapped).toMatch(MISTRAL_FORM);
      expect(map(id)).toBe(mapped);
      out.add(mapped);
    }
    expect(out.size).toBe(20_000);
    // A fresh mapper (the next request) gives the same ids.
    expect(mistralToolCallIds()("toolu_0_")).toBe(map("toolu_0_"));
  });

  it("an id in Mistral's form that another id already maps to is moved aside, not merged", () => {
    const map = mistralToolCallIds();
    const derived = map("call_0");
    // A conversation that also holds, as its own id, exactly what call_0 maps to.
    const own = map(derived);
    expect(own).toMatch(MISTRAL_FORM);
    expect(own).not.toBe(derived);
    expect(map("call_0")).toBe(derived);
  });
});
