/**
 * Google's error bodies as its streaming endpoints send them: the `google.rpc.Status` wrapped
 * in a one-element JSON array (`[{"error":{...}}]`), which Google's own Gemini CLI unwraps
 * (`packages/core/src/utils/googleErrors.ts`), and Vertex's REST clients have tripped on
 * (googleapis/python-aiplatform#5010). The status, message, `RetryInfo` and `ErrorInfo` inside
 * must be read as they are from the plain object.
 */
import type { JsonObject, ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseGoogleError } from "../src/google.js";
import { createGoogleProvider } from "../src/index.js";
import { collectFailure, errorResponse, userText } from "./support.js";

const BASE = "https://generativelanguage.googleapis.com/v1beta";
const FLASH_URL = `${BASE}/models/gemini-2.5-flash\\:streamGenerateContent`;

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const provider = () => createGoogleProvider({ apiKey: "AIzaSyTest-audit2" });
const hello: ModelRequest = { model: "gemini-2.5-flash", messages: [userText("Hello")] };

function googleError(code: number, status: string, message: string, details?: JsonObject[]) {
  return { error: { code, message, status, ...(details === undefined ? {} : { details }) } };
}

const RATE_LIMITED = googleError(
  429,
  "RESOURCE_EXHAUSTED",
  "You exceeded your current quota, please check your plan and billing details.",
  [
    {
      "@type": "type.googleapis.com/google.rpc.QuotaFailure",
      violations: [
        {
          quotaMetric: "generativelanguage.googleapis.com/generate_content_free_tier_requests",
          quotaId: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
          quotaValue: "10",
        },
      ],
    },
    { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "40s" },
  ],
);
const INVALID_KEY = googleError(
  400,
  "INVALID_ARGUMENT",
  "API key not valid. Please pass a valid API key.",
  [
    {
      "@type": "type.googleapis.com/google.rpc.ErrorInfo",
      reason: "API_KEY_INVALID",
      domain: "googleapis.com",
      metadata: { service: "generativelanguage.googleapis.com" },
    },
  ],
);
const DEADLINE = googleError(
  504,
  "DEADLINE_EXCEEDED",
  "The request timed out. Please try again with a shorter prompt or a smaller output.",
);

describe("google: an error body wrapped in a JSON array, as the streaming endpoints send it", () => {
  it("HTTP 429 [{error}] keeps its RetryInfo retryDelay and its status and message", async () => {
    server.use(http.post(FLASH_URL, () => errorResponse(429, [RATE_LIMITED])));
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("rate_limit");
    expect(error.isRetryable).toBe(true);
    expect(error.retryAfterMs).toBe(40_000);
    expect(error.message).toContain("RESOURCE_EXHAUSTED: You exceeded your current quota");
  });

  it("HTTP 400 [{error}] with ErrorInfo API_KEY_INVALID is auth, not a retry-less invalid_request", async () => {
    server.use(http.post(FLASH_URL, () => errorResponse(400, [INVALID_KEY])));
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("auth");
    expect(error.isRetryable).toBe(false);
    expect(error.message).toContain("API key not valid");
  });

  it("HTTP 504 [{error}] DEADLINE_EXCEEDED is a timeout, as its status says", async () => {
    server.use(http.post(FLASH_URL, () => errorResponse(504, [DEADLINE])));
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("timeout");
    expect(error.isRetryable).toBe(true);
  });

  it("parseGoogleError reads the wrapped body as the plain one", () => {
    expect(parseGoogleError([RATE_LIMITED])).toEqual(parseGoogleError(RATE_LIMITED));
    expect(parseGoogleError([])).toEqual({});
    expect(parseGoogleError(["not an error"])).toEqual({});
  });
});

describe("google: an error event inside the stream", () => {
  it("a 429 RESOURCE_EXHAUSTED event after the 200 keeps its RetryInfo retryDelay", async () => {
    const sse = [
      {
        candidates: [{ content: { parts: [{ text: "The" }], role: "model" }, index: 0 }],
        modelVersion: "gemini-2.5-flash",
      },
      RATE_LIMITED,
    ]
      .map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`)
      .join("");
    server.use(
      http.post(
        FLASH_URL,
        () => new Response(sse, { headers: { "content-type": "text/event-stream" } }),
      ),
    );
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("rate_limit");
    expect(error.retryAfterMs).toBe(40_000);
    expect(error.message).toContain("error in stream");
  });
});
