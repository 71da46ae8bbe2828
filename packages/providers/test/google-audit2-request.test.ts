/**
 * Request mappings Gemini refuses with HTTP 400 unless the adapter adapts them to the model:
 * thinking levels a Gemini 3 Pro model does not have ("Thinking level MEDIUM is not supported
 * for this model"), `thinking: "off"` on Gemini 2.5 Pro, which cannot stop thinking (its
 * budget is 128 to 32 768 tokens), and a JSON response format beside function declarations on
 * models before Gemini 3 ("Tool use with a response mime type: 'application/json' is
 * unsupported"), and any `thinkingConfig` to models that do not think, Gemini 2.0 and earlier
 * ("thinking is not supported by this model", googleapis/js-genai#681).
 */
import type { ModelRequest, ThinkingLevel } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createGoogleProvider } from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  fixture,
  sseResponse,
  userText,
} from "./support.js";

const BASE = "https://generativelanguage.googleapis.com/v1beta";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const provider = () => createGoogleProvider({ apiKey: "AIzaSyTest-audit2" });

/** Sends `request` to its model's URL and returns the body Gemini received. */
async function sentBody(request: ModelRequest): Promise<Record<string, unknown>> {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(`${BASE}/models/${request.model}\\:streamGenerateContent`, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(fixture("google-text.sse.txt"));
    }),
  );
  await collect(provider().stream(request));
  expect(seen).toHaveLength(1);
  return seen[0]!.body;
}

const ask = (model: string, extra: Partial<ModelRequest> = {}): ModelRequest => ({
  model,
  messages: [userText("Weather in Paris, as JSON?")],
  ...extra,
});

describe("google: thinking levels a model does not have are not sent", () => {
  it.each([
    // Gemini 3 Pro takes low and high only.
    ["gemini-3-pro-preview", "minimal", { thinkingLevel: "low", includeThoughts: true }],
    ["gemini-3-pro-preview", "medium", { thinkingLevel: "high", includeThoughts: true }],
    ["gemini-3-pro-preview", "low", { thinkingLevel: "low", includeThoughts: true }],
    ["gemini-3-pro-preview", "high", { thinkingLevel: "high", includeThoughts: true }],
    // Gemini 3.1 Pro added medium, but has no minimal.
    ["gemini-3.1-pro-preview", "minimal", { thinkingLevel: "low", includeThoughts: true }],
    ["gemini-3.1-pro-preview", "medium", { thinkingLevel: "medium", includeThoughts: true }],
    // Gemini 3 Flash has all four.
    ["gemini-3-flash-preview", "minimal", { thinkingLevel: "minimal", includeThoughts: true }],
    ["gemini-3-flash-preview", "medium", { thinkingLevel: "medium", includeThoughts: true }],
  ] as const)("%s with thinking %s sends %j", async (model, thinking, config) => {
    const body = await sentBody(ask(model, { thinking: thinking as ThinkingLevel }));
    expect(body.generationConfig).toEqual({ thinkingConfig: config });
  });

  it("thinking off on Gemini 2.5 Pro, which cannot stop thinking, asks for its least budget (128), not 0", async () => {
    const pro = await sentBody(ask("gemini-2.5-pro", { thinking: "off" }));
    expect(pro.generationConfig).toEqual({ thinkingConfig: { thinkingBudget: 128 } });
    const dated = await sentBody(ask("gemini-2.5-pro-preview-06-05", { thinking: "off" }));
    expect(dated.generationConfig).toEqual({ thinkingConfig: { thinkingBudget: 128 } });
    // Flash and Flash-Lite can stop: 0 as before.
    const flash = await sentBody(ask("gemini-2.5-flash", { thinking: "off" }));
    expect(flash.generationConfig).toEqual({ thinkingConfig: { thinkingBudget: 0 } });
  });
});

describe("google: models that do not think", () => {
  it.each(["gemini-2.0-flash", "gemini-2.0-flash-lite-001", "gemini-1.5-pro", "gemma-3-27b-it"])(
    "%s gets no thinkingConfig, whatever the level (Gemini refuses one)",
    async (model) => {
      for (const thinking of ["off", "minimal", "high"] as const) {
        const body = await sentBody(ask(model, { thinking, maxOutputTokens: 512 }));
        expect(body.generationConfig).toEqual({ maxOutputTokens: 512 });
      }
    },
  );
});

describe("google: a JSON response format beside function declarations", () => {
  const tools = [
    {
      name: "get_weather",
      description: "Current weather of a city",
      inputSchema: { type: "object", properties: { city: { type: "string" } } },
    },
  ];
  const schema = {
    type: "object",
    properties: { city: { type: "string" }, celsius: { type: "number" } },
    required: ["city", "celsius"],
  };
  const responseFormat = { type: "json-schema" as const, name: "weather", schema };

  it("is not sent to Gemini 2.5 with tools (Gemini refuses the pair); the tools are", async () => {
    const body = await sentBody(ask("gemini-2.5-flash", { tools, responseFormat }));
    expect(body.tools).toHaveLength(1);
    expect(body.generationConfig).toBeUndefined();
    const limited = await sentBody(
      ask("gemini-2.5-pro", { tools, responseFormat, maxOutputTokens: 500 }),
    );
    expect(limited.generationConfig).toEqual({ maxOutputTokens: 500 });
  });

  it("is still sent to Gemini 2.5 without tools, and to Gemini 3 with them", async () => {
    const plain = await sentBody(ask("gemini-2.5-flash", { tools: [], responseFormat }));
    expect(plain.generationConfig).toEqual({
      responseMimeType: "application/json",
      responseJsonSchema: schema,
    });
    const gemini3 = await sentBody(ask("gemini-3-flash-preview", { tools, responseFormat }));
    expect(gemini3.tools).toHaveLength(1);
    expect(gemini3.generationConfig).toEqual({
      responseMimeType: "application/json",
      responseJsonSchema: schema,
    });
  });
});
