/**
 * `POST /v1/chat/completions` fields OpenAI's clients send that this gateway cannot honour,
 * over a real socket: the legacy `functions` / `function_call` (superseded by `tools` /
 * `tool_choice`), `stop` sequences, `parallel_tool_calls: false` and audio output
 * (`modalities`, `audio`). Each was dropped without a word: the model answered in text where
 * the client waited for a `function_call` or `message.audio`, wrote past the stop sequence,
 * or called several tools at once. Each is
 * now a 400 `unsupported_parameter` naming the field before the model is called (as OpenAI
 * answers `stop` on a model that cannot take it, and `/v1/responses` answers
 * `parallel_tool_calls: false`); their empty or default values are still accepted.
 */
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { AUTH, httpCall as call, closeClients, startStack, stopStacks, TOKEN } from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const LOOKUP = { type: "function", function: { name: "lookup", parameters: { type: "object" } } };
const MESSAGES = [{ role: "user", content: "what is x?" }];

function complete(port: number, body: unknown) {
  return call(port, "/v1/chat/completions", { method: "POST", headers: AUTH, body });
}

describe("fields the gateway cannot honour", () => {
  const REFUSED: Array<[string, Array<[Record<string, unknown>, string]>]> = [
    [
      "the legacy functions and function_call",
      [
        [{ functions: [{ name: "lookup", parameters: { type: "object" } }] }, "functions"],
        [{ function_call: "auto" }, "function_call"],
        [{ function_call: { name: "lookup" }, tools: [LOOKUP] }, "function_call"],
      ],
    ],
    [
      "stop sequences",
      [
        [{ stop: "\n" }, "stop"],
        [{ stop: ["Observation:", "END"] }, "stop"],
        [{ stream: true, stop: ["END"] }, "stop"],
      ],
    ],
    [
      "parallel_tool_calls: false",
      [[{ parallel_tool_calls: false, tools: [LOOKUP] }, "parallel_tool_calls"]],
    ],
    [
      "audio output",
      [
        [{ modalities: ["text", "audio"], audio: { voice: "alloy", format: "wav" } }, "modalities"],
        [{ audio: { voice: "alloy", format: "wav" } }, "audio"],
      ],
    ],
  ];
  for (const [what, cases] of REFUSED) {
    it(`${what}: a 400 unsupported_parameter naming the field, before the model is called`, async () => {
      const stack = await startStack({ responses: [{ text: "unused" }] });
      for (const [extra, param] of cases) {
        const reply = await complete(stack.port, {
          model: "beamclaw",
          messages: MESSAGES,
          ...extra,
        });
        expect(reply.status, JSON.stringify(extra)).toBe(400);
        expect(reply.json.error).toMatchObject({
          type: "invalid_request_error",
          code: "unsupported_parameter",
          param,
        });
        expect(reply.json.error.message).toContain(param);
      }
      expect(stack.provider.requests).toHaveLength(0);
    });
  }

  it("of the wrong type are a 400 invalid_type naming the field", async () => {
    const stack = await startStack({ responses: [{ text: "unused" }] });
    for (const [extra, param] of [
      [{ stop: 3 }, "stop"],
      [{ stop: ["END", 4] }, "stop"],
      [{ parallel_tool_calls: "no" }, "parallel_tool_calls"],
      [{ modalities: "audio" }, "modalities"],
      [{ audio: "alloy" }, "audio"],
    ] as Array<[Record<string, unknown>, string]>) {
      const reply = await complete(stack.port, { model: "beamclaw", messages: MESSAGES, ...extra });
      expect(reply.status, JSON.stringify(extra)).toBe(400);
      expect(reply.json.error).toMatchObject({ code: "invalid_type", param });
    }
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("are accepted when they ask for nothing: null, empty, parallel_tool_calls: true", async () => {
    const stack = await startStack({ responses: [{ text: "x is 4" }, { text: "x is 4" }] });
    const reply = await complete(stack.port, {
      model: "beamclaw",
      messages: MESSAGES,
      functions: null,
      function_call: null,
      stop: [],
      parallel_tool_calls: true,
      modalities: ["text"],
      audio: null,
    });
    expect(reply.status).toBe(200);
    expect(reply.json.choices[0].message.content).toBe("x is 4");
    const nulls = await complete(stack.port, {
      model: "beamclaw",
      messages: MESSAGES,
      functions: [],
      stop: null,
      parallel_tool_calls: null,
    });
    expect(nulls.status).toBe(200);
  });

  it("reach the openai SDK as a BadRequestError naming the field", async () => {
    const stack = await startStack({ responses: [{ text: "unused" }] });
    const client = new OpenAI({
      apiKey: TOKEN,
      baseURL: `http://127.0.0.1:${stack.port}/v1`,
      maxRetries: 0,
    });
    const error = await client.chat.completions
      .create({ model: "beamclaw", messages: [{ role: "user", content: "hi" }], stop: ["END"] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, code: "unsupported_parameter", param: "stop" });
    expect(stack.provider.requests).toHaveLength(0);
  });
});
