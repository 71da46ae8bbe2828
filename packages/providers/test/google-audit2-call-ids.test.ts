/**
 * Function call ids. Gemini 3 gives every `functionCall` an `id`, and Google's function calling
 * guide asks for that exact id back on the matching `functionResponse` ("Always map function
 * IDs"), the call itself going back unchanged in the history. Ids Gemini did not give (the
 * made-up `gemini_call_N` of Gemini 2.5 calls, another provider's call ids) are not sent.
 */
import type { ModelMessage, ModelRequest, ModelStreamEvent, ToolResultPart } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import { createGoogleProvider } from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  fixture,
  mswFakes,
  sseResponse,
  userText,
} from "./support.js";

const BASE = "https://generativelanguage.googleapis.com/v1beta";
const urlOf = (model: string) => `${BASE}/models/${model}\\:streamGenerateContent`;

const { server } = mswFakes();

const provider = () => createGoogleProvider({ apiKey: "AIzaSyTest-audit2" });

function serve(model: string, text: string): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(urlOf(model), async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(text);
    }),
  );
  return seen;
}

/** The assistant message the agent loop builds: thinking parts, text, then the calls. */
function assistantFrom(events: ModelStreamEvent[]): ModelMessage {
  const content: Extract<ModelMessage, { role: "assistant" }>["content"] = [];
  for (const event of events) {
    if (event.type === "thinking-end") {
      content.push({
        type: "thinking",
        text: "",
        ...(event.signature === undefined ? {} : { signature: event.signature }),
        ...(event.format === undefined ? {} : { format: event.format }),
      });
    }
  }
  for (const event of events) {
    if (event.type === "tool-call") {
      content.push({
        type: "tool-call",
        toolCallId: event.toolCallId,
        toolName: event.toolName,
        input: event.input,
      });
    }
  }
  return { role: "assistant", content };
}

/** A `get_weather` result for call `toolCallId`. */
function weather(toolCallId: string, celsius: number): ToolResultPart {
  return { type: "tool-result", toolCallId, toolName: "get_weather", output: { celsius } };
}

/**
 * Asks `model` `question` (answered by `stream`), then sends the question, the assistant
 * message built from that answer and `results` back; returns the `contents` Gemini was sent.
 */
async function followUp(
  model: string,
  stream: string,
  question: string,
  results: ToolResultPart[],
): Promise<Array<{ role: string; parts: unknown[] }>> {
  serve(model, stream);
  const hello: ModelRequest = { model, messages: [userText(question)] };
  const assistant = assistantFrom(await collect(provider().stream(hello)));
  const seen = serve(model, fixture("google-text.sse.txt"));
  await collect(
    provider().stream({
      model,
      messages: [userText(question), assistant, { role: "tool", content: results }],
    }),
  );
  return seen[0]!.body.contents as Array<{ role: string; parts: unknown[] }>;
}

const PARALLEL_G3 = [
  {
    candidates: [
      {
        content: {
          role: "model",
          parts: [
            {
              functionCall: { id: "fc_paris", name: "get_weather", args: { city: "Paris" } },
              thoughtSignature: "EqoDCqcDAdHtim9uXb0mX-parallel",
            },
            { functionCall: { id: "fc_london", name: "get_weather", args: { city: "London" } } },
          ],
        },
        finishReason: "STOP",
        index: 0,
      },
    ],
    usageMetadata: { promptTokenCount: 40, candidatesTokenCount: 20, totalTokenCount: 60 },
    modelVersion: "gemini-3-flash-preview",
    responseId: "g3par",
  },
]
  .map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`)
  .join("");

describe("google: Gemini 3's function call ids go back on the call and its response", () => {
  it("a streamed Gemini 3 call with an id: the history's functionCall and its functionResponse carry it", async () => {
    const contents = await followUp(
      "gemini-3-pro-preview",
      fixture("google-function-call-id.sse.txt"),
      "Weather in Tokyo?",
      [weather("c1q2w3e4", 18)],
    );
    expect(contents[1]).toEqual({
      role: "model",
      parts: [
        {
          functionCall: { id: "c1q2w3e4", name: "get_weather", args: { city: "Tokyo" } },
          thoughtSignature: expect.stringMatching(/^EqoD/),
        },
      ],
    });
    expect(contents[2]).toEqual({
      role: "user",
      parts: [
        {
          functionResponse: { id: "c1q2w3e4", name: "get_weather", response: { celsius: 18 } },
        },
      ],
    });
  });

  it("parallel calls to one function: each response carries the id of its own call", async () => {
    // Results in another order than the calls: the ids keep them apart.
    const contents = await followUp("gemini-3-flash-preview", PARALLEL_G3, "Paris and London?", [
      weather("fc_london", 14),
      weather("fc_paris", 21),
    ]);
    expect(contents[1]!.parts).toEqual([
      {
        functionCall: { id: "fc_paris", name: "get_weather", args: { city: "Paris" } },
        thoughtSignature: "EqoDCqcDAdHtim9uXb0mX-parallel",
      },
      { functionCall: { id: "fc_london", name: "get_weather", args: { city: "London" } } },
    ]);
    expect(contents[2]!.parts).toEqual([
      { functionResponse: { id: "fc_london", name: "get_weather", response: { celsius: 14 } } },
      { functionResponse: { id: "fc_paris", name: "get_weather", response: { celsius: 21 } } },
    ]);
  });

  it("made-up ids of Gemini 2.5 calls, and another provider's call ids, are not sent, even to Gemini 3", async () => {
    const hello: ModelRequest = {
      model: "gemini-2.5-flash",
      messages: [userText("Weather in Paris?")],
    };
    serve("gemini-2.5-flash", fixture("google-function-call.sse.txt"));
    const gemini25 = assistantFrom(await collect(provider().stream(hello)));
    expect(JSON.stringify(gemini25)).toContain("gemini_call_1");
    const model = "gemini-3-flash-preview";
    const seen = serve(model, fixture("google-text.sse.txt"));
    await collect(
      provider().stream({
        model,
        messages: [
          userText("Weather in Paris?"),
          gemini25,
          { role: "tool", content: [weather("gemini_call_1", 21)] },
          userText("And London?"),
          {
            role: "assistant",
            content: [
              { type: "thinking", text: "r", signature: "EqQB-anthropic" },
              {
                type: "tool-call",
                toolCallId: "toolu_01",
                toolName: "get_weather",
                input: { city: "London" },
              },
            ],
          },
          { role: "tool", content: [weather("toolu_01", 14)] },
        ],
      }),
    );
    const sent = JSON.stringify(seen[0]!.body.contents);
    expect(sent).not.toContain('"id"');
    expect(sent).not.toContain("gemini_call_1");
    expect(sent).not.toContain("toolu_01");
  });
});
