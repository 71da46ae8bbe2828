/**
 * Images in tool results (`ToolResultPart.images`): each adapter sends them in its vendor's
 * documented shape (Anthropic image blocks in `tool_result.content`, Responses `input_image`
 * items in `function_call_output.output`, Chat Completions a user message after the tool
 * messages, Gemini 3 `functionResponse.parts`), instead of dropping them.
 */
import type { ImagePart, ModelProvider, ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createGoogleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import { type CapturedRequest, capture, collect, fixture, sseResponse } from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.alloc(24, 1),
]).toString("base64");
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(20, 2)]).toString(
  "base64",
);
const images: ImagePart[] = [
  { type: "image", mediaType: "image/png", data: PNG },
  { type: "image", mediaType: "image/jpeg", data: JPEG },
];

const request = (model = "m"): ModelRequest => ({
  model,
  messages: [
    { role: "user", content: [{ type: "text", text: "What is on the page?" }] },
    {
      role: "assistant",
      content: [
        { type: "tool-call", toolCallId: "call_1", toolName: "shot", input: {} },
        { type: "tool-call", toolCallId: "call_2", toolName: "ls", input: {} },
      ],
    },
    {
      role: "tool",
      content: [
        { type: "tool-result", toolCallId: "call_1", toolName: "shot", output: "the page", images },
        { type: "tool-result", toolCallId: "call_2", toolName: "ls", output: "a.txt" },
      ],
    },
  ],
});

/** The body `provider` sends for `body`, answered with `answer`. */
async function sent(
  provider: ModelProvider,
  url: string | RegExp,
  answer: string,
  body: ModelRequest,
): Promise<Record<string, unknown>> {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(answer);
    }),
  );
  await collect(provider.stream(body));
  expect(seen).toHaveLength(1);
  return seen[0]!.body;
}

describe("tool-result images", () => {
  it("Anthropic: text and base64 image blocks in the tool_result's content", async () => {
    const body = await sent(
      createAnthropicProvider({ apiKey: "sk-ant-test", promptCache: false }),
      "https://api.anthropic.com/v1/messages",
      fixture("anthropic-text.sse.txt"),
      request(),
    );
    const messages = body.messages as Array<{ role: string; content: unknown }>;
    expect(messages[2]).toEqual({
      role: "user",
      content: [
        {
          type: "tool_result",
          tool_use_id: "call_1",
          content: [
            { type: "text", text: "the page" },
            { type: "image", source: { type: "base64", media_type: "image/png", data: PNG } },
            { type: "image", source: { type: "base64", media_type: "image/jpeg", data: JPEG } },
          ],
        },
        { type: "tool_result", tool_use_id: "call_2", content: "a.txt" },
      ],
    });
  });

  it("Responses: input_text and input_image items (data URLs) in function_call_output.output", async () => {
    const body = await sent(
      createOpenAIProvider({ api: "responses", apiKey: "sk-test" }),
      "https://api.openai.com/v1/responses",
      fixture("openai-responses-text.sse.txt"),
      request(),
    );
    const outputs = (body.input as Array<Record<string, unknown>>).filter(
      (item) => item.type === "function_call_output",
    );
    expect(outputs).toEqual([
      {
        type: "function_call_output",
        call_id: "call_1",
        output: [
          { type: "input_text", text: "the page" },
          { type: "input_image", image_url: `data:image/png;base64,${PNG}` },
          { type: "input_image", image_url: `data:image/jpeg;base64,${JPEG}` },
        ],
      },
      { type: "function_call_output", call_id: "call_2", output: "a.txt" },
    ]);
  });

  it("Chat Completions: the images in a user message right after the step's tool messages, naming their call", async () => {
    const body = await sent(
      createOpenAIProvider({ api: "chat", apiKey: "sk-test" }),
      "https://api.openai.com/v1/chat/completions",
      fixture("openai-chat-text.sse.txt"),
      request(),
    );
    const messages = body.messages as Array<Record<string, unknown>>;
    expect(messages.slice(2)).toEqual([
      { role: "tool", tool_call_id: "call_1", content: "the page" },
      { role: "tool", tool_call_id: "call_2", content: "a.txt" },
      {
        role: "user",
        content: [
          { type: "text", text: "The images returned by tool call call_1 (shot):" },
          { type: "image_url", image_url: { url: `data:image/png;base64,${PNG}` } },
          { type: "image_url", image_url: { url: `data:image/jpeg;base64,${JPEG}` } },
        ],
      },
    ]);
  });

  it("Gemini 3: inlineData parts of the functionResponse; an earlier model is told what it misses", async () => {
    const gemini = createGoogleProvider({ apiKey: "AIza-test" });
    const url = (model: string) =>
      new RegExp(
        `^https://generativelanguage\\.googleapis\\.com/v1beta/models/${model.replaceAll(".", "\\.")}:streamGenerateContent`,
      );
    const three = await sent(
      gemini,
      url("gemini-3-pro-preview"),
      fixture("google-text.sse.txt"),
      request("gemini-3-pro-preview"),
    );
    const contents = three.contents as Array<{ role: string; parts: unknown[] }>;
    const responses = contents[2]!.parts as Array<{ functionResponse: Record<string, unknown> }>;
    expect(responses.map((p) => ({ ...p.functionResponse, id: undefined }))).toEqual([
      {
        id: undefined,
        name: "shot",
        response: { output: "the page" },
        parts: [
          { inlineData: { mimeType: "image/png", data: PNG } },
          { inlineData: { mimeType: "image/jpeg", data: JPEG } },
        ],
      },
      { id: undefined, name: "ls", response: { output: "a.txt" } },
    ]);

    const two = await sent(
      gemini,
      url("gemini-2.5-flash"),
      fixture("google-text.sse.txt"),
      request("gemini-2.5-flash"),
    );
    const older = (two.contents as Array<{ parts: Array<{ functionResponse: unknown }> }>)[2]!
      .parts[0]!.functionResponse;
    expect(older).toEqual({
      name: "shot",
      response: {
        output: "the page",
        images: [
          "[image image/png not shown: this model takes no images in tool results]",
          "[image image/jpeg not shown: this model takes no images in tool results]",
        ],
      },
    });
  });
});
