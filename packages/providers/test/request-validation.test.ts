/**
 * A malformed request fails with a typed `ProviderError` of kind `invalid_request`
 * (not retryable) before anything is sent, whatever part of it is malformed; never with a
 * `TypeError` from inside an adapter's mapping.
 */
import {
  createProviderChain,
  type ModelProvider,
  type ModelRequest,
  ProviderError,
} from "@beamclaw/core";
import { describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createGoogleProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
  type FetchFunction,
} from "../src/index.js";
import { collectFailure, userText } from "./support.js";

/** Every adapter, each with a fetch that counts the requests it would have sent. */
function adapters(sent: { count: number }): Array<[string, ModelProvider]> {
  const fetch: FetchFunction = async () => {
    sent.count++;
    return new Response("{}", { status: 500, headers: { "content-type": "application/json" } });
  };
  return [
    ["anthropic", createAnthropicProvider({ apiKey: "sk-ant-test", fetch })],
    ["openai responses", createOpenAIProvider({ apiKey: "sk-test", fetch })],
    ["openai chat", createOpenAIProvider({ apiKey: "sk-test", api: "chat", fetch })],
    [
      "openai-compatible",
      createOpenAICompatibleProvider({ baseUrl: "http://127.0.0.1:1/v1", fetch }),
    ],
    ["google", createGoogleProvider({ apiKey: "gm-test", fetch })],
  ];
}

const tool = { name: "lookup", description: "Looks up.", inputSchema: { type: "object" } };

const malformed: Array<[string, unknown, RegExp]> = [
  [
    "a user part that is null",
    { model: "m", messages: [{ role: "user", content: [null] }] },
    /messages\[0\]\.content\[0\]/,
  ],
  [
    "an assistant part that is null",
    { model: "m", messages: [userText("Hi"), { role: "assistant", content: [null] }] },
    /messages\[1\]\.content\[0\]/,
  ],
  [
    "a tool result that is null",
    { model: "m", messages: [userText("Hi"), { role: "tool", content: [null] }] },
    /messages\[1\]\.content\[0\]/,
  ],
  [
    "an assistant part of a type assistants do not send",
    { model: "m", messages: [userText("Hi"), { role: "assistant", content: [{ type: "image" }] }] },
    /messages\[1\]\.content\[0\]\.type/,
  ],
  [
    "a file part without a mediaType",
    { model: "m", messages: [{ role: "user", content: [{ type: "file", data: "aGk=" }] }] },
    /messages\[0\]\.content\[0\]\.mediaType/,
  ],
  [
    "a toolChoice of null",
    { model: "m", messages: [userText("Hi")], tools: [tool], toolChoice: null },
    /toolChoice/,
  ],
  [
    "a toolChoice naming no tool",
    { model: "m", messages: [userText("Hi")], tools: [tool], toolChoice: { tool: "lookup" } },
    /toolChoice/,
  ],
];

describe("malformed requests are refused with invalid_request before anything is sent", () => {
  for (const [what, request, names] of malformed) {
    it(what, async () => {
      const sent = { count: 0 };
      for (const [name, provider] of adapters(sent)) {
        const { events, error } = await collectFailure(provider.stream(request as ModelRequest));
        expect(events, name).toEqual([]);
        expect(ProviderError.isInstance(error), `${name}: ${String(error)}`).toBe(true);
        expect(error.kind, name).toBe("invalid_request");
        expect(error.isRetryable, name).toBe(false);
        expect(error.message, name).toMatch(names);
      }
      expect(sent.count).toBe(0);
    });
  }

  it("still accepts every well-formed part and tool choice", async () => {
    const sent = { count: 0 };
    const request: ModelRequest = {
      model: "m",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Hi" },
            { type: "image", mediaType: "image/png", data: "iVBORw0KGgo=" },
            { type: "file", mediaType: "application/pdf", data: "JVBERi0=" },
          ],
        },
        {
          role: "assistant",
          content: [
            { type: "thinking", text: "Hm.", signature: "sig" },
            { type: "text", text: "Let me look." },
            { type: "tool-call", toolCallId: "call_1", toolName: "lookup", input: {} },
          ],
        },
        {
          role: "tool",
          content: [
            { type: "tool-result", toolCallId: "call_1", toolName: "lookup", output: "42" },
          ],
        },
      ],
      tools: [tool],
      toolChoice: { toolName: "lookup" },
    };
    for (const [name, provider] of adapters(sent)) {
      const { error } = await collectFailure(provider.stream(request));
      // The fake server's 500: the request was sent.
      expect(error.kind, name).toBe("server");
    }
    expect(sent.count).toBe(5);
  });

  it("Anthropic: refuses a forced tool choice together with thinking (only auto or none)", async () => {
    let sent = 0;
    const provider = createAnthropicProvider({
      apiKey: "sk-ant-test",
      fetch: async () => {
        sent++;
        return new Response("{}", { status: 500, headers: { "content-type": "application/json" } });
      },
    });
    for (const toolChoice of ["required", { toolName: "lookup" }] as const) {
      const { error } = await collectFailure(
        provider.stream({
          model: "claude-sonnet-4-5",
          messages: [userText("Hi")],
          tools: [tool],
          toolChoice,
          thinking: "low",
        }),
      );
      expect(ProviderError.isInstance(error)).toBe(true);
      expect(error.kind).toBe("invalid_request");
      expect(error.message).toMatch(/forced tool choice.*thinking/);
    }
    expect(sent).toBe(0);
    // `auto` with thinking goes out.
    const { error } = await collectFailure(
      provider.stream({
        model: "claude-sonnet-4-5",
        messages: [userText("Hi")],
        tools: [tool],
        toolChoice: "auto",
        thinking: "low",
      }),
    );
    expect(error.kind).toBe("server");
    expect(sent).toBe(1);
  });

  it("through a chain with a TPM limit, a null part is still the provider's invalid_request", async () => {
    const sent = { count: 0 };
    const [, provider] = adapters(sent)[0]!;
    const chain = createProviderChain({
      providers: [provider],
      models: ["anthropic/claude-sonnet-4-5"],
      limits: { anthropic: { tpm: 100_000 } },
    });
    const { error } = await collectFailure(
      chain.stream({
        messages: [{ role: "user", content: [null] }],
      } as never) as AsyncIterable<never>,
    );
    // The chain's error names the attempt; the attempt's error is the typed refusal.
    const attempt = (error as { attempts?: Array<{ error: unknown }> }).attempts?.[0]?.error;
    expect(ProviderError.isInstance(attempt), String(error)).toBe(true);
    expect((attempt as ProviderError).kind).toBe("invalid_request");
    expect(sent.count).toBe(0);
  });
});
