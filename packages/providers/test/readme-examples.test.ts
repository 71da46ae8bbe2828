import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createAnthropicProvider } from "../src/index.js";
import { fixture, sseResponse } from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => {
  server.resetHandlers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});
afterAll(() => server.close());

// The example printed in this package's README, kept runnable.
describe("README example", () => {
  it("streams an answer and prints its usage", async () => {
    vi.stubEnv("ANTHROPIC_API_KEY", "sk-ant-readme");
    server.use(
      http.post("https://api.anthropic.com/v1/messages", () =>
        sseResponse(fixture("anthropic-text.sse.txt")),
      ),
    );
    // Touching the real process.stdout would open a pipe handle in this worker; the example
    // writes to a stand-in instead.
    const written: string[] = [];
    const stdout = {
      write: (chunk: string) => {
        written.push(chunk);
        return true;
      },
    };
    const realProcess = process;
    vi.stubGlobal(
      "process",
      new Proxy(realProcess, {
        get: (target, key) => (key === "stdout" ? stdout : Reflect.get(target, key)),
      }),
    );
    const logged: unknown[][] = [];
    vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
      logged.push(args);
    });

    const anthropic = createAnthropicProvider(); // reads ANTHROPIC_API_KEY
    const stream = anthropic.stream({
      model: "claude-sonnet-4-5",
      system: "Answer in one sentence.",
      messages: [{ role: "user", content: [{ type: "text", text: "Why is the sky blue?" }] }],
    });
    for await (const event of stream) {
      if (event.type === "text-delta") process.stdout.write(event.text);
      if (event.type === "usage") console.log("\n", event.usage);
    }

    expect(written.join("")).toBe("Hello!");
    expect(logged).toEqual([
      ["\n", { inputTokens: 2025, outputTokens: 15, cacheReadTokens: 1800, cacheWriteTokens: 200 }],
    ]);
  });
});
