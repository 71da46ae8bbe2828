/**
 * Three refusals of OpenAI's that the adapters now handle, faked with OpenAI's documented error
 * bodies (`{"error": {"message", "type", "param", "code"}}`):
 *
 * - HTTP 400 `invalid_encrypted_content` ("The encrypted content for item rs_… could not be
 *   verified."): reasoning sent back whose encrypted content no longer verifies (another
 *   organization, project or key; another model). The whole history was refused on every
 *   later turn; now the call is sent again without that reasoning, once, and the provider
 *   leaves it out of later calls at once.
 * - `store: false` without `include: ["reasoning.encrypted_content"]`: reasoning was lost
 *   between turns; the include is now added for the models that reason.
 * - A reasoning effort the model does not take ("minimal" on o3: HTTP 400 `unsupported_value`,
 *   "Supported values are: 'low', 'medium', and 'high'.") goes to the nearest one it lists;
 *   `temperature` on a reasoning model (`unsupported_parameter`) is a plain, non-retryable
 *   error naming the option.
 */
import {
  AbortedError,
  createProviderChain,
  type ModelRequest,
  type ModelStreamEvent,
  ProviderError,
} from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import { createOpenAIProvider } from "../src/index.js";
import {
  collect,
  collectFailure,
  errorResponse,
  expectWellFormed,
  fixture,
  mswFakes,
  sseResponse,
  textOf,
  untilAborted,
  userText,
} from "./support.js";

const API = "https://api.openai.com/v1";
const { server } = mswFakes();

type Item = { type?: string; id?: string; encrypted_content?: string; [key: string]: unknown };
type Body = {
  model: string;
  input: Item[];
  store?: boolean;
  include?: string[];
  reasoning?: { effort?: string };
  reasoning_effort?: string;
  temperature?: number;
};

function openAIError(status: number, message: string, param: string | null, code: string | null) {
  return errorResponse(status, {
    error: { message, type: "invalid_request_error", param, code },
  });
}

/**
 * OpenAI's Responses API for an organization whose key verifies only the encrypted contents in
 * `valid`: any other is refused with `invalid_encrypted_content`. Like OpenAI, it refuses a
 * `function_call` sent with its id (`fc_…`) without the reasoning item before it. Answers
 * with the recorded text stream; returns the bodies it saw.
 */
function serveOrganization(valid: string[], answer = () => sseResponse(text())): Body[] {
  const seen: Body[] = [];
  server.use(
    http.post(`${API}/responses`, async ({ request }) => {
      const body = (await request.json()) as Body;
      seen.push(body);
      const stale = body.input.find(
        (item) =>
          item.type === "reasoning" &&
          item.encrypted_content !== undefined &&
          !valid.includes(item.encrypted_content),
      );
      if (stale !== undefined) {
        return openAIError(
          400,
          `The encrypted content for item ${stale.id ?? "rs_unknown"} could not be verified.`,
          null,
          "invalid_encrypted_content",
        );
      }
      for (const [i, item] of body.input.entries()) {
        if (item.type === "function_call" && item.id !== undefined) {
          if (body.input[i - 1]?.type !== "reasoning") {
            return openAIError(
              400,
              `Item '${item.id}' of type 'function_call' was provided without its required 'reasoning' item: 'rs_1'.`,
              "input",
              null,
            );
          }
        }
      }
      return answer();
    }),
  );
  return seen;
}

const text = () => fixture("openai-responses-text.sse.txt");

/** A tool loop whose reasoning carries `encrypted`, as the adapter kept it (store: true). */
function toolLoop(encrypted: string, extra: ModelRequest["messages"] = []): ModelRequest {
  return {
    model: "o4-mini",
    thinking: "medium",
    messages: [
      userText("Weather in Oslo?"),
      {
        role: "assistant",
        content: [
          {
            type: "thinking",
            text: "Need the tool.",
            signature: "rs_1|fc_1|call_1",
            redacted: encrypted,
          },
          { type: "tool-call", toolCallId: "call_1", toolName: "weather", input: { city: "Oslo" } },
        ],
      },
      {
        role: "tool",
        content: [
          { type: "tool-result", toolCallId: "call_1", toolName: "weather", output: "-3 C" },
        ],
      },
      ...extra,
    ],
  };
}

const reasoningItems = (body: Body | undefined) =>
  body?.input.filter((item) => item.type === "reasoning") ?? [];

const usages = (events: ModelStreamEvent[]) => events.filter((event) => event.type === "usage");

describe("Responses API: encrypted reasoning that no longer verifies", () => {
  it("is left out of a second try, once, and the answer streams with its usage counted once", async () => {
    const seen = serveOrganization(["gAAAA-current"]);
    const events = await collect(
      createOpenAIProvider({ apiKey: "sk-new-org" }).stream(toolLoop("gAAAA-other-org")),
    );
    expectWellFormed(events);
    expect(textOf(events)).toBe("Hi there!");
    expect(usages(events)).toEqual([
      {
        type: "usage",
        usage: { inputTokens: 2100, outputTokens: 11, cacheReadTokens: 2048, reasoningTokens: 0 },
      },
    ]);
    expect(events.filter((event) => event.type === "response-start")).toHaveLength(1);
    expect(seen).toHaveLength(2);
    expect(reasoningItems(seen[0])).toHaveLength(1);
    expect(reasoningItems(seen[1])).toEqual([]);
    // Without its reasoning, the call goes without its id (OpenAI would refuse the pair half).
    expect(seen[1]?.input.find((item) => item.type === "function_call")).toEqual({
      type: "function_call",
      call_id: "call_1",
      name: "weather",
      arguments: '{"city":"Oslo"}',
    });
  });

  it("later calls of the provider leave the refused reasoning out at once, and still send reasoning that verifies", async () => {
    const seen = serveOrganization(["gAAAA-current"]);
    const provider = createOpenAIProvider({ apiKey: "sk-new-org" });
    await collect(provider.stream(toolLoop("gAAAA-other-org")));
    expect(seen).toHaveLength(2);
    const next = toolLoop("gAAAA-other-org", [
      {
        role: "assistant",
        content: [
          { type: "thinking", text: "Say it.", signature: "rs_2|msg_2", redacted: "gAAAA-current" },
          { type: "text", text: "It is -3 C in Oslo." },
        ],
      },
      userText("And tomorrow?"),
    ]);
    const events = await collect(provider.stream(next));
    expect(textOf(events)).toBe("Hi there!");
    expect(seen).toHaveLength(3);
    expect(reasoningItems(seen[2])).toEqual([
      {
        type: "reasoning",
        id: "rs_2",
        summary: [{ type: "summary_text", text: "Say it." }],
        encrypted_content: "gAAAA-current",
      },
    ]);
  });

  it("a failure of the second try surfaces as it is, typed", async () => {
    let calls = 0;
    const seen = serveOrganization(["gAAAA-current"], () => {
      calls++;
      return errorResponse(500, {
        error: {
          message: "The server had an error while processing your request.",
          type: "server_error",
          param: null,
          code: null,
        },
      });
    });
    const { events, error } = await collectFailure(
      createOpenAIProvider({ apiKey: "sk-new-org" }).stream(toolLoop("gAAAA-other-org")),
    );
    expect(events).toEqual([]);
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.kind).toBe("server");
    expect(error.statusCode).toBe(500);
    expect(seen).toHaveLength(2);
    expect(calls).toBe(1);
  });

  it("a refusal with no encrypted content in the request is not tried again", async () => {
    const seen: Body[] = [];
    server.use(
      http.post(`${API}/responses`, async ({ request }) => {
        seen.push((await request.json()) as Body);
        return openAIError(
          400,
          "The encrypted content for item rs_9 could not be verified.",
          null,
          "invalid_encrypted_content",
        );
      }),
    );
    const { error } = await collectFailure(
      createOpenAIProvider({ apiKey: "sk-test" }).stream({
        model: "o4-mini",
        messages: [userText("Hello")],
      }),
    );
    expect(error.kind).toBe("invalid_request");
    expect(error.isRetryable).toBe(false);
    expect(error.message).toContain("invalid_encrypted_content");
    expect(seen).toHaveLength(1);
  });

  it("the second try follows the call's signal", async () => {
    const signals: AbortSignal[] = [];
    const seen = serveOrganization(["gAAAA-current"]);
    server.use(
      http.post(`${API}/responses`, async ({ request }) => {
        const body = (await request.clone().json()) as Body;
        if (reasoningItems(body).length > 0) return undefined; // the organization answers
        seen.push(body);
        signals.push(request.signal);
        await untilAborted(request.signal);
        return sseResponse(text());
      }),
    );
    const controller = new AbortController();
    const failure = collectFailure(
      createOpenAIProvider({ apiKey: "sk-new-org" }).stream(toolLoop("gAAAA-other-org"), {
        signal: controller.signal,
      }),
    );
    await expect.poll(() => seen.length, { timeout: 30_000 }).toBe(2);
    controller.abort();
    const { events, error } = await failure;
    expect(events).toEqual([]);
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(signals[0]?.aborted).toBe(true);
  });
});

describe("Responses API: store: false asks for the encrypted reasoning", () => {
  function serveBodies(): Body[] {
    const seen: Body[] = [];
    server.use(
      http.post(`${API}/responses`, async ({ request }) => {
        const body = (await request.json()) as Body;
        seen.push(body);
        // OpenAI refuses the include for a model that does not reason.
        if (body.include?.includes("reasoning.encrypted_content") && body.model === "gpt-4.1") {
          return openAIError(
            400,
            "Encrypted content is not supported with this model.",
            "include",
            null,
          );
        }
        return sseResponse(text());
      }),
    );
    return seen;
  }

  const unstored = (model: string, options: { include?: string[] } = {}): ModelRequest => ({
    model,
    thinking: "medium",
    messages: [userText("Hello")],
    providerOptions: { openai: { store: false, ...options } },
  });

  it("adds include reasoning.encrypted_content for a reasoning model", async () => {
    const seen = serveBodies();
    await collect(createOpenAIProvider({ apiKey: "sk-test" }).stream(unstored("o4-mini")));
    expect(seen[0]?.include).toEqual(["reasoning.encrypted_content"]);
    expect(seen[0]?.store).toBe(false);
  });

  it("keeps the caller's includes, without a duplicate", async () => {
    const seen = serveBodies();
    const provider = createOpenAIProvider({ apiKey: "sk-test" });
    await collect(
      provider.stream(unstored("gpt-5", { include: ["web_search_call.action.sources"] })),
    );
    await collect(provider.stream(unstored("gpt-5", { include: ["reasoning.encrypted_content"] })));
    expect(seen.map((body) => body.include)).toEqual([
      ["web_search_call.action.sources", "reasoning.encrypted_content"],
      ["reasoning.encrypted_content"],
    ]);
  });

  it("adds nothing for a model that does not reason, nor when OpenAI stores the output", async () => {
    const seen = serveBodies();
    const provider = createOpenAIProvider({ apiKey: "sk-test" });
    const events = await collect(provider.stream(unstored("gpt-4.1")));
    expect(textOf(events)).toBe("Hi there!");
    await collect(provider.stream({ model: "o4-mini", messages: [userText("Hello")] }));
    expect(seen.map((body) => body.include)).toEqual([undefined, undefined]);
  });
});

/**
 * OpenAI for reasoning models, on both endpoints: o3 refuses `temperature` and the effort
 * `minimal`; gpt-5.1 refuses `minimal` too (it lists `none`); gpt-5-chat-latest takes no
 * effort at all; gpt-4.1 takes a temperature.
 */
function serveReasoningModels(): Body[] {
  const seen: Body[] = [];
  const check = (body: Body, effortParam: string) => {
    const effort = body.reasoning?.effort ?? body.reasoning_effort;
    if (body.temperature !== undefined && body.model !== "gpt-4.1") {
      return openAIError(
        400,
        "Unsupported parameter: 'temperature' is not supported with this model.",
        "temperature",
        "unsupported_parameter",
      );
    }
    if (effort !== undefined && body.model === "gpt-5-chat-latest") {
      return openAIError(
        400,
        `Unsupported parameter: '${effortParam}' is not supported with this model.`,
        effortParam,
        "unsupported_parameter",
      );
    }
    if (effort === "minimal" && body.model === "o3") {
      return openAIError(
        400,
        `Unsupported value: '${effortParam}' does not support 'minimal' with this model. Supported values are: 'low', 'medium', and 'high'.`,
        effortParam,
        "unsupported_value",
      );
    }
    if (effort === "minimal" && body.model === "gpt-5.1") {
      return openAIError(
        400,
        "Unsupported value: 'minimal' is not supported with the 'gpt-5.1' model. Supported values are: 'none', 'low', 'medium', and 'high'.",
        effortParam,
        "unsupported_value",
      );
    }
    return undefined;
  };
  server.use(
    http.post(`${API}/responses`, async ({ request }) => {
      const body = (await request.json()) as Body;
      seen.push(body);
      return check(body, "reasoning.effort") ?? sseResponse(text());
    }),
    http.post(`${API}/chat/completions`, async ({ request }) => {
      const body = (await request.json()) as Body;
      seen.push(body);
      return check(body, "reasoning_effort") ?? sseResponse(fixture("openai-chat-text.sse.txt"));
    }),
  );
  return seen;
}

const effortOf = (body: Body | undefined) => body?.reasoning?.effort ?? body?.reasoning_effort;

for (const api of ["responses", "chat"] as const) {
  describe(`OpenAI ${api}: options a reasoning model refuses`, () => {
    const provider = () => createOpenAIProvider({ apiKey: "sk-test", api });

    it("thinking minimal goes to o3 as low, the nearest effort it lists; later calls send low at once", async () => {
      const seen = serveReasoningModels();
      const openai = provider();
      const request: ModelRequest = {
        model: "o3",
        thinking: "minimal",
        messages: [userText("Hi")],
      };
      const first = await collect(openai.stream(request));
      expectWellFormed(first);
      expect(usages(first)).toHaveLength(1);
      expect(seen.map(effortOf)).toEqual(["minimal", "low"]);
      await collect(openai.stream(request));
      expect(seen.map(effortOf)).toEqual(["minimal", "low", "low"]);
    });

    it("thinking minimal goes to gpt-5.1 as low (not none: thinking was asked for)", async () => {
      const seen = serveReasoningModels();
      const events = await collect(
        provider().stream({ model: "gpt-5.1", thinking: "minimal", messages: [userText("Hi")] }),
      );
      expectWellFormed(events);
      expect(seen.map(effortOf)).toEqual(["minimal", "low"]);
    });

    it("a model that takes no effort at all gets none, from then on", async () => {
      const seen = serveReasoningModels();
      const openai = provider();
      const request: ModelRequest = {
        model: "gpt-5-chat-latest",
        thinking: "high",
        messages: [userText("Hi")],
      };
      await collect(openai.stream(request));
      await collect(openai.stream(request));
      expect(seen.map(effortOf)).toEqual(["high", undefined, undefined]);
    });

    it("temperature on o3 is a plain, non-retryable error naming the option; a chain moves on at once", async () => {
      const seen = serveReasoningModels();
      const { error } = await collectFailure(
        provider().stream({ model: "o3", temperature: 0.2, messages: [userText("Hi")] }),
      );
      expect(ProviderError.isInstance(error)).toBe(true);
      expect(error.kind).toBe("invalid_request");
      expect(error.isRetryable).toBe(false);
      expect(error.statusCode).toBe(400);
      expect(error.message).toBe(
        "openai/o3: HTTP 400 o3 does not take `temperature` (0.2): leave it unset for this model (unsupported_parameter: Unsupported parameter: 'temperature' is not supported with this model.)",
      );
      expect(seen).toHaveLength(1);

      const chain = createProviderChain({
        providers: [provider()],
        models: ["openai/o3", "openai/gpt-4.1"],
        retry: { maxAttempts: 3, baseDelayMs: 0 },
      });
      const types: string[] = [];
      for await (const event of chain.stream({ temperature: 0.2, messages: [userText("Hi")] })) {
        types.push(event.type);
      }
      expect(seen.slice(1).map((body) => body.model)).toEqual(["o3", "gpt-4.1"]);
      expect(types.at(-1)).toBe("finish");
    });

    it("an effort the caller set in providerOptions is not changed: its refusal says so plainly", async () => {
      const seen = serveReasoningModels();
      const own =
        api === "chat" ? { reasoning_effort: "minimal" } : { reasoning: { effort: "minimal" } };
      const { error } = await collectFailure(
        provider().stream({
          model: "o3",
          messages: [userText("Hi")],
          providerOptions: { openai: own },
        }),
      );
      expect(error.kind).toBe("invalid_request");
      expect(error.isRetryable).toBe(false);
      expect(error.message).toContain('o3 does not take the reasoning effort "minimal"');
      expect(seen).toHaveLength(1);
    });
  });
}
