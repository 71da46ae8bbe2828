/**
 * Gemini's documented `finishReason` values beyond the first ones (the `FinishReason` enum of
 * the Gemini API and of Google's Gen AI SDKs): image-safety stops are content filters, and the
 * function-calling failures are errors, as `MALFORMED_FUNCTION_CALL` already is.
 */
import type { ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mapGoogleFinishReason } from "../src/google.js";
import { createGoogleProvider } from "../src/index.js";
import { collect, expectWellFormed, sseResponse, userText } from "./support.js";

const FLASH_URL =
  "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash\\:streamGenerateContent";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const hello: ModelRequest = { model: "gemini-2.5-flash", messages: [userText("Hello")] };

describe("google: the later documented finish reasons", () => {
  it.each([
    ["IMAGE_PROHIBITED_CONTENT", "content-filter"],
    ["IMAGE_RECITATION", "content-filter"],
    ["UNEXPECTED_TOOL_CALL", "error"],
    ["TOO_MANY_TOOL_CALLS", "error"],
    ["MALFORMED_RESPONSE", "error"],
    ["MISSING_THOUGHT_SIGNATURE", "error"],
    ["LANGUAGE", "other"],
    ["NO_IMAGE", "other"],
  ])("finishReason %s is %s", async (raw, mapped) => {
    const chunk = {
      candidates: [{ content: { role: "model", parts: [] }, finishReason: raw, index: 0 }],
      usageMetadata: { promptTokenCount: 9, totalTokenCount: 9 },
      modelVersion: "gemini-2.5-flash",
      responseId: "fR2la",
    };
    server.use(http.post(FLASH_URL, () => sseResponse(`data: ${JSON.stringify(chunk)}\n\n`)));
    const events = await collect(createGoogleProvider({ apiKey: "AIza-t" }).stream(hello));
    expectWellFormed(events);
    expect(events.at(-1)).toEqual({ type: "finish", reason: mapped, rawReason: raw });
  });

  it("a function call that ends with UNEXPECTED_TOOL_CALL is an error, not tool-calls", () => {
    expect(mapGoogleFinishReason("UNEXPECTED_TOOL_CALL", true)).toBe("error");
  });
});
