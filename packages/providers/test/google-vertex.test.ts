/**
 * The Google adapter on Vertex AI (`vertex` option): the regional and global endpoints, the
 * publisher model path under a project and location, express mode with an API key, a full
 * resource name, and OAuth access tokens (a string, or a function called for each request),
 * against msw answering with Vertex's `GenerateContentResponse` chunks and error bodies.
 */
import { InvalidArgumentError, type ModelRequest, ProviderError } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createGoogleProvider, type GoogleProviderOptions } from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  collectFailure,
  errorResponse,
  sseResponse,
  textOf,
  userText,
} from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => {
  server.resetHandlers();
  vi.unstubAllEnvs();
});
afterAll(() => server.close());

const hello: ModelRequest = { model: "gemini-2.5-flash", messages: [userText("Hello")] };

/** A Vertex AI answer: two chunks, the last with its finish reason and usage. */
const ANSWER = [
  {
    candidates: [{ content: { role: "model", parts: [{ text: "Hello from " }] } }],
    modelVersion: "gemini-2.5-flash",
    createTime: "2026-11-24T17:40:00.123456Z",
    responseId: "vtx-1",
  },
  {
    candidates: [
      { content: { role: "model", parts: [{ text: "Vertex." }] }, finishReason: "STOP" },
    ],
    usageMetadata: {
      promptTokenCount: 3,
      candidatesTokenCount: 4,
      totalTokenCount: 7,
      trafficType: "ON_DEMAND",
    },
    modelVersion: "gemini-2.5-flash",
    createTime: "2026-11-24T17:40:00.123456Z",
    responseId: "vtx-1",
  },
]
  .map((chunk) => `data: ${JSON.stringify(chunk)}\r\n\r\n`)
  .join("");

/** Answers every POST to a `:streamGenerateContent` URL on `host`, recording the requests. */
function vertexServer(host: string): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(
      new RegExp(`^https://${host.replace(/\./g, "\\.")}/.*:streamGenerateContent$`),
      async ({ request }) => {
        seen.push(await capture(request));
        return sseResponse(ANSWER);
      },
    ),
  );
  return seen;
}

const vertex = (options: GoogleProviderOptions) => createGoogleProvider(options);

describe("createGoogleProvider on Vertex AI", () => {
  it("calls the regional endpoint's publisher model with a fresh access token per request", async () => {
    vi.stubEnv("GEMINI_API_KEY", "AIza-must-not-be-sent");
    const seen = vertexServer("us-central1-aiplatform.googleapis.com");
    let issued = 0;
    const provider = vertex({
      vertex: { project: "my-project", location: "us-central1" },
      accessToken: async () => `ya29.token-${++issued}`,
    });
    const first = await collect(provider.stream(hello));
    await collect(provider.stream(hello));
    expect(textOf(first)).toBe("Hello from Vertex.");
    expect(first.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "STOP" });
    expect(seen.map((r) => r.url)).toEqual(
      Array(2).fill(
        "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
      ),
    );
    expect(seen.map((r) => r.headers.authorization)).toEqual([
      "Bearer ya29.token-1",
      "Bearer ya29.token-2",
    ]);
    // The OAuth token is the credential: the environment's API key is not sent beside it.
    expect(seen.every((r) => r.headers["x-goog-api-key"] === undefined)).toBe(true);
    expect(seen[0]!.body).toEqual({ contents: [{ role: "user", parts: [{ text: "Hello" }] }] });
  });

  it("uses the global endpoint by default, and a token given as a string", async () => {
    const seen = vertexServer("aiplatform.googleapis.com");
    const provider = vertex({ vertex: { project: "my-project" }, accessToken: "ya29.static" });
    await collect(provider.stream({ ...hello, model: "models/gemini-2.5-flash" }));
    expect(seen[0]!.url).toBe(
      "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    );
    expect(seen[0]!.headers.authorization).toBe("Bearer ya29.static");
  });

  it("express mode: an API key alone, no project", async () => {
    const seen = vertexServer("aiplatform.googleapis.com");
    await collect(vertex({ vertex: {}, apiKey: "AQ.express-key" }).stream(hello));
    expect(seen[0]!.url).toBe(
      "https://aiplatform.googleapis.com/v1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    );
    expect(seen[0]!.headers["x-goog-api-key"]).toBe("AQ.express-key");
    expect(seen[0]!.headers.authorization).toBeUndefined();
  });

  it("calls a full resource name (a tuned model's endpoint) as it is", async () => {
    const seen = vertexServer("europe-west4-aiplatform.googleapis.com");
    const provider = vertex({
      vertex: { project: "my-project", location: "europe-west4" },
      accessToken: "ya29.t",
    });
    await collect(
      provider.stream({
        ...hello,
        model: "projects/my-project/locations/europe-west4/endpoints/1234567890",
      }),
    );
    expect(seen[0]!.url).toBe(
      "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/europe-west4/endpoints/1234567890:streamGenerateContent?alt=sse",
    );
  });

  it("a per-call authorization header wins over the token", async () => {
    const seen = vertexServer("aiplatform.googleapis.com");
    const provider = vertex({ vertex: { project: "p-1" }, accessToken: "ya29.default" });
    await collect(provider.stream(hello, { headers: { authorization: "Bearer ya29.caller" } }));
    expect(seen[0]!.headers.authorization).toBe("Bearer ya29.caller");
  });

  it("a token function that throws, or gives nothing, fails with kind auth and sends nothing", async () => {
    const seen = vertexServer("aiplatform.googleapis.com");
    const broken = new Error("metadata server unreachable");
    const thrown = await collectFailure(
      vertex({
        vertex: { project: "p-1" },
        accessToken: () => {
          throw broken;
        },
      }).stream(hello),
    );
    expect(ProviderError.isInstance(thrown.error)).toBe(true);
    expect(thrown.error.kind).toBe("auth");
    expect(thrown.error.isRetryable).toBe(false);
    expect(thrown.error.message).toContain("metadata server unreachable");
    expect(thrown.error.cause).toBe(broken);
    const empty = await collectFailure(
      vertex({ vertex: { project: "p-1" }, accessToken: async () => "" }).stream(hello),
    );
    expect(empty.error.kind).toBe("auth");
    expect(empty.error.message).toMatch(/gave no token/);
    expect(seen).toHaveLength(0);
  });

  it("without a token or a key, fails with kind auth naming what Vertex AI needs", async () => {
    vi.stubEnv("GEMINI_API_KEY", "");
    vi.stubEnv("GOOGLE_API_KEY", "");
    const { error } = await collectFailure(vertex({ vertex: { project: "p-1" } }).stream(hello));
    expect(error.kind).toBe("auth");
    expect(error.message).toMatch(/no credentials for Vertex AI: pass `accessToken`/);
  });

  it("Vertex's error bodies are read as the Gemini API's: 401 UNAUTHENTICATED is auth, 429 rate_limit", async () => {
    const url = /^https:\/\/aiplatform\.googleapis\.com\/.*:streamGenerateContent$/;
    server.use(
      http.post(url, () =>
        errorResponse(401, {
          error: {
            code: 401,
            message:
              "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            status: "UNAUTHENTICATED",
          },
        }),
      ),
    );
    const provider = vertex({ vertex: { project: "p-1" }, accessToken: "ya29.expired" });
    const unauthenticated = await collectFailure(provider.stream(hello));
    expect(unauthenticated.error.kind).toBe("auth");
    expect(unauthenticated.error.statusCode).toBe(401);
    server.use(
      http.post(url, () =>
        errorResponse(429, {
          error: {
            code: 429,
            message:
              "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
            status: "RESOURCE_EXHAUSTED",
          },
        }),
      ),
    );
    const limited = await collectFailure(provider.stream(hello));
    expect(limited.error.kind).toBe("rate_limit");
    expect(limited.error.isRetryable).toBe(true);
  });

  it.each([
    [{ vertex: { project: "../admin" } }, /vertex\.project must be a Google Cloud project name/],
    [{ vertex: { project: "p-1", location: "us-central1/x" } }, /vertex\.location/],
    [{ vertex: { location: "us-central1" } }, /vertex\.location needs vertex\.project/],
    [{ vertex: "my-project" }, /vertex must be an object/],
    [{ accessToken: 42 }, /accessToken must be a non-empty string or a function/],
    [{ accessToken: "" }, /accessToken must be a non-empty string or a function/],
  ])("refuses the options %j with InvalidArgumentError", (options, message) => {
    const create = () => createGoogleProvider(options as unknown as GoogleProviderOptions);
    expect(create).toThrow(InvalidArgumentError);
    expect(create).toThrow(message);
  });
});
