/**
 * An abort while the Vertex AI access token is being fetched (a token function that waits on
 * a metadata server, or a refresh that hangs) ends the call at once with `AbortedError`, and
 * nothing is sent once the token does come.
 */
import { AbortedError, type ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createGoogleProvider } from "../src/index.js";
import { sseResponse, userText } from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const hello: ModelRequest = { model: "gemini-2.5-flash", messages: [userText("Hello")] };

const ANSWER = `data: ${JSON.stringify({
  candidates: [{ content: { role: "model", parts: [{ text: "Hi." }] }, finishReason: "STOP" }],
  usageMetadata: { promptTokenCount: 1, candidatesTokenCount: 1, totalTokenCount: 2 },
  modelVersion: "gemini-2.5-flash",
  responseId: "vtx-abort",
})}\r\n\r\n`;

describe("google on Vertex AI: an abort while the access token is awaited", () => {
  it("fails the call with AbortedError at once, and sends nothing when the token comes later", async () => {
    let requests = 0;
    server.use(
      http.post(/^https:\/\/aiplatform\.googleapis\.com\/.*:streamGenerateContent$/, () => {
        requests++;
        return sseResponse(ANSWER);
      }),
    );
    let giveToken: (token: string) => void = () => {};
    let asked: () => void = () => {};
    const tokenAsked = new Promise<void>((resolve) => {
      asked = resolve;
    });
    const provider = createGoogleProvider({
      vertex: { project: "p-1" },
      accessToken: () =>
        new Promise<string>((resolve) => {
          giveToken = resolve;
          asked();
        }),
    });
    const controller = new AbortController();
    const stream = provider.stream(hello, { signal: controller.signal })[Symbol.asyncIterator]();
    const first = stream.next();
    await tokenAsked;
    controller.abort(new Error("user cancelled"));
    const error = await first.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(AbortedError.isInstance(error)).toBe(true);
    // The token arrives after the abort: the request must not go out.
    giveToken("ya29.late");
    await new Promise((resolve) => setImmediate(resolve));
    expect(requests).toBe(0);
    await expect(stream.next()).resolves.toEqual({ done: true, value: undefined });
  });

  it("an already-aborted signal does not call the token function", async () => {
    let calls = 0;
    const provider = createGoogleProvider({
      vertex: { project: "p-1" },
      accessToken: () => {
        calls++;
        return "ya29.t";
      },
    });
    const controller = new AbortController();
    controller.abort();
    const error = await provider
      .stream(hello, { signal: controller.signal })
      [Symbol.asyncIterator]()
      .next()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(calls).toBe(0);
  });
});
