/**
 * Documents attached to a user message (`FilePart`): each adapter sends them in its vendor's
 * documented shape (Anthropic `document` blocks, Chat Completions `file` parts, Responses
 * `input_file`, Gemini `inlineData` / `fileData`), and refuses, before anything is sent, what
 * its vendor cannot take.
 */
import type { ModelMessage, ModelProvider, ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createGoogleProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  collectFailure,
  fixture,
  sseResponse,
} from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

/** `%PDF-1.4` and a little more, as base64. */
const PDF = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K";
/** "Total: 42 €\n" in UTF-8, as base64. */
const TEXT = Buffer.from("Total: 42 €\n", "utf8").toString("base64");

const withFiles = (
  ...content: Extract<ModelMessage, { role: "user" }>["content"]
): ModelRequest => ({
  model: "m",
  messages: [{ role: "user", content: [{ type: "text", text: "Summarize these." }, ...content] }],
});

/** Serves `answer` at `url` and records the requests. */
function record(url: string | RegExp, answer: string): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(answer);
    }),
  );
  return seen;
}

/** The first user message's content as the vendor received it. */
async function sentContent(
  provider: ModelProvider,
  url: string | RegExp,
  answer: string,
  request: ModelRequest,
  read: (body: Record<string, unknown>) => unknown,
): Promise<unknown> {
  const seen = record(url, answer);
  await collect(provider.stream(request));
  expect(seen).toHaveLength(1);
  return read(seen[0]!.body);
}

const ANTHROPIC = "https://api.anthropic.com/v1/messages";
const CHAT = "https://api.openai.com/v1/chat/completions";
const RESPONSES = "https://api.openai.com/v1/responses";
const GEMINI =
  /^https:\/\/generativelanguage\.googleapis\.com\/v1beta\/models\/m:streamGenerateContent$/;

const anthropic = () => createAnthropicProvider({ apiKey: "sk-ant-test", promptCache: false });
const chat = () => createOpenAIProvider({ api: "chat", apiKey: "sk-test" });
const responses = () => createOpenAIProvider({ api: "responses", apiKey: "sk-test" });
const gemini = () => createGoogleProvider({ apiKey: "AIza-test" });

type Body = {
  messages?: Array<{ content: unknown }>;
  input?: Array<{ content: unknown }>;
  contents?: Array<{ parts: unknown }>;
};

describe("file parts", () => {
  it("Anthropic: a PDF as a base64 or url document, a text file as a text document, titled by its name", async () => {
    const content = await sentContent(
      anthropic(),
      ANTHROPIC,
      fixture("anthropic-text.sse.txt"),
      withFiles(
        { type: "file", mediaType: "application/pdf", data: PDF, filename: "invoice.pdf" },
        { type: "file", mediaType: "application/pdf", url: "https://example.com/terms.pdf" },
        { type: "file", mediaType: "text/csv", data: TEXT, filename: "totals.csv" },
      ),
      (body) => (body as Body).messages![0]!.content,
    );
    expect(content).toEqual([
      { type: "text", text: "Summarize these." },
      {
        type: "document",
        source: { type: "base64", media_type: "application/pdf", data: PDF },
        title: "invoice.pdf",
      },
      { type: "document", source: { type: "url", url: "https://example.com/terms.pdf" } },
      {
        type: "document",
        source: { type: "text", media_type: "text/plain", data: "Total: 42 €\n" },
        title: "totals.csv",
      },
    ]);
  });

  it("Chat Completions (and compatible servers): a `file` part with a data URL and a file name", async () => {
    const request = withFiles(
      { type: "file", mediaType: "application/pdf", data: PDF, filename: "invoice.pdf" },
      { type: "file", mediaType: "application/pdf", data: PDF },
    );
    const expected = [
      { type: "text", text: "Summarize these." },
      {
        type: "file",
        file: { filename: "invoice.pdf", file_data: `data:application/pdf;base64,${PDF}` },
      },
      {
        type: "file",
        file: { filename: "document.pdf", file_data: `data:application/pdf;base64,${PDF}` },
      },
    ];
    const read = (body: Record<string, unknown>) => (body as Body).messages![0]!.content;
    const answer = fixture("openai-chat-text.sse.txt");
    expect(await sentContent(chat(), CHAT, answer, request, read)).toEqual(expected);
    const openrouter = createOpenAICompatibleProvider({
      id: "openrouter",
      baseUrl: "https://openrouter.ai/api/v1",
      apiKey: "sk-or-test",
    });
    expect(
      await sentContent(
        openrouter,
        "https://openrouter.ai/api/v1/chat/completions",
        answer,
        request,
        read,
      ),
    ).toEqual(expected);
  });

  it("Responses API: `input_file` with data and a file name, or a file_url", async () => {
    const content = await sentContent(
      responses(),
      RESPONSES,
      fixture("openai-responses-text.sse.txt"),
      withFiles(
        { type: "file", mediaType: "application/pdf", data: PDF, filename: "invoice.pdf" },
        { type: "file", mediaType: "application/pdf", url: "https://example.com/terms.pdf" },
      ),
      (body) => (body as Body).input![0]!.content,
    );
    expect(content).toEqual([
      { type: "input_text", text: "Summarize these." },
      {
        type: "input_file",
        filename: "invoice.pdf",
        file_data: `data:application/pdf;base64,${PDF}`,
      },
      { type: "input_file", file_url: "https://example.com/terms.pdf" },
    ]);
  });

  it("Gemini: inlineData for data, fileData for a URL, PDF and text alike", async () => {
    const content = await sentContent(
      gemini(),
      GEMINI,
      fixture("google-text.sse.txt"),
      withFiles(
        { type: "file", mediaType: "application/pdf", data: PDF, filename: "invoice.pdf" },
        { type: "file", mediaType: "text/plain", data: TEXT },
        {
          type: "file",
          mediaType: "application/pdf",
          url: "https://generativelanguage.googleapis.com/v1beta/files/abc-123",
        },
      ),
      (body) => (body as Body).contents![0]!.parts,
    );
    expect(content).toEqual([
      { text: "Summarize these." },
      { inlineData: { mimeType: "application/pdf", data: PDF } },
      { inlineData: { mimeType: "text/plain", data: TEXT } },
      {
        fileData: {
          mimeType: "application/pdf",
          fileUri: "https://generativelanguage.googleapis.com/v1beta/files/abc-123",
        },
      },
    ]);
  });

  it.each([
    [
      "Anthropic, a Word document",
      anthropic,
      ANTHROPIC,
      {
        type: "file" as const,
        mediaType: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        data: PDF,
      },
      /Anthropic takes a PDF .* or a text document .* not application\/vnd/,
    ],
    [
      "Anthropic, a text document by URL",
      anthropic,
      ANTHROPIC,
      { type: "file" as const, mediaType: "text/plain", url: "https://example.com/a.txt" },
      /not text\/plain by url/,
    ],
    [
      "Anthropic, text data that is not base64",
      anthropic,
      ANTHROPIC,
      { type: "file" as const, mediaType: "text/plain", data: "not base64!" },
      /not base64/,
    ],
    [
      "Chat Completions, a PDF by URL",
      chat,
      CHAT,
      { type: "file" as const, mediaType: "application/pdf", url: "https://example.com/a.pdf" },
      /Chat Completions takes a file part only as inline `data`/,
    ],
    [
      "the Responses API, neither data nor url",
      responses,
      RESPONSES,
      { type: "file" as const, mediaType: "application/pdf" },
      /a file part needs `data` or `url`/,
    ],
    [
      "Gemini, neither data nor url",
      gemini,
      GEMINI,
      { type: "file" as const, mediaType: "application/pdf" },
      /a file part needs `data` or `url`/,
    ],
  ])(
    "%s is refused as invalid_request before anything is sent",
    async (_what, make, url, part, message) => {
      const seen = record(url, "");
      const { error } = await collectFailure(make().stream(withFiles(part)));
      expect(error.kind).toBe("invalid_request");
      expect(error.isRetryable).toBe(false);
      expect(error.message).toMatch(message);
      expect(seen).toHaveLength(0);
    },
  );
});
