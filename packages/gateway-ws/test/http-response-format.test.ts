/**
 * `response_format` on the OpenAI-compatible endpoint, over real sockets: a `json_schema`
 * (or `json_object`) request makes the session turn ask for a structured `output`, which the
 * runtime sends to the provider as its response format and validates; the client gets the
 * validated JSON (streaming: whole, once validated), or an error in OpenAI's shape. With the
 * client's own tools, the format goes to the provider's one call.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AUTH,
  httpCall as call,
  closeClients,
  sseData,
  startStack,
  stopStacks,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const SCHEMA = {
  type: "object",
  properties: { city: { type: "string" }, celsius: { type: "number" } },
  required: ["city", "celsius"],
  additionalProperties: false,
};
const JSON_SCHEMA_FORMAT = {
  type: "json_schema",
  json_schema: { name: "weather", description: "A reading", schema: SCHEMA, strict: true },
};

async function complete(port: number, body: Record<string, unknown>) {
  return call(port, "/v1/chat/completions", {
    method: "POST",
    headers: AUTH,
    body: { model: "beamclaw", messages: [{ role: "user", content: "Oslo?" }], ...body },
  });
}

describe("response_format on /v1/chat/completions", () => {
  it("json_schema: the provider is asked for the schema; the client gets the validated JSON", async () => {
    const stack = await startStack({
      responses: [{ text: '```json\n{"city":"Oslo","celsius":4}\n```' }],
    });
    const reply = await complete(stack.port, { response_format: JSON_SCHEMA_FORMAT });
    expect(reply.status).toBe(200);
    expect(reply.json.choices[0]).toEqual({
      index: 0,
      message: { role: "assistant", content: '{"city":"Oslo","celsius":4}', refusal: null },
      logprobs: null,
      finish_reason: "stop",
    });
    expect(stack.provider.requests[0]!.responseFormat).toEqual({
      type: "json-schema",
      name: "weather",
      description: "A reading",
      schema: SCHEMA,
      strict: true,
    });
  });

  it("streaming: an answer that did not conform never reaches the client; the valid one comes whole", async () => {
    const stack = await startStack({
      responses: [{ text: ['{"city":', '"Oslo"}'] }, { text: ['{"city":"Oslo",', '"celsius":4}'] }],
    });
    const reply = await complete(stack.port, { response_format: JSON_SCHEMA_FORMAT, stream: true });
    expect(reply.status).toBe(200);
    const events = sseData(reply.text);
    expect(events.at(-1)).toBe("[DONE]");
    const contents = events
      .slice(0, -1)
      .map((c) => c.choices?.[0]?.delta?.content)
      .filter((c) => typeof c === "string" && c.length > 0);
    expect(contents).toEqual(['{"city":"Oslo","celsius":4}']);
    expect(events.at(-2).choices[0].finish_reason).toBe("stop");
    // The model was asked again with what was wrong.
    expect(stack.provider.requests).toHaveLength(2);
    const retry = stack.provider.requests[1]!.messages.at(-1)!;
    expect(retry.role).toBe("user");
    expect(JSON.stringify(retry.content)).toContain("celsius");
  });

  it("json_object: any JSON object; text: as without a format", async () => {
    const stack = await startStack({ responses: [{ text: '{"any":[1,2]}' }, { text: "plain" }] });
    const json = await complete(stack.port, { response_format: { type: "json_object" } });
    expect(json.json.choices[0].message.content).toBe('{"any":[1,2]}');
    expect(stack.provider.requests[0]!.responseFormat).toMatchObject({
      schema: { type: "object" },
      strict: false,
    });
    const text = await complete(stack.port, { response_format: { type: "text" } });
    expect(text.json.choices[0].message.content).toBe("plain");
    expect(stack.provider.requests[1]!.responseFormat).toBeUndefined();
  });

  it("an answer that never conforms is a 502 in OpenAI's shape with code OUTPUT_INVALID", async () => {
    const stack = await startStack({ responses: [{ text: "no" }, { text: "still no" }] });
    const reply = await complete(stack.port, { response_format: JSON_SCHEMA_FORMAT });
    expect(reply.status).toBe(502);
    expect(reply.json.error).toMatchObject({ type: "server_error", code: "OUTPUT_INVALID" });
    expect(reply.json.error.message).toMatch(/not JSON/);
  });

  it("refuses a malformed response_format with a 400 naming the field, before anything runs", async () => {
    const stack = await startStack({ responses: [] });
    const cases: Array<[unknown, string]> = [
      ["json", "response_format"],
      [{ type: "yaml" }, "response_format.type"],
      [{ type: "json_schema" }, "response_format.json_schema"],
      [
        { type: "json_schema", json_schema: { name: "a b", schema: SCHEMA } },
        "response_format.json_schema.name",
      ],
      [
        { type: "json_schema", json_schema: { name: "x", schema: { type: "array" } } },
        "response_format.json_schema.schema",
      ],
      [
        { type: "json_schema", json_schema: { name: "x", schema: SCHEMA, strict: "yes" } },
        "response_format.json_schema.strict",
      ],
    ];
    for (const [format, param] of cases) {
      const reply = await complete(stack.port, { response_format: format });
      expect(reply.status).toBe(400);
      expect(reply.json.error).toMatchObject({ type: "invalid_request_error", param });
    }
    expect(stack.provider.requests).toHaveLength(0);
    expect(await stack.store.queue.pending({})).toEqual([]);
  });

  it("with the client's own tools, the format goes to the provider's one call", async () => {
    const stack = await startStack({ responses: [{ text: '{"city":"Oslo","celsius":4}' }] });
    const reply = await complete(stack.port, {
      response_format: JSON_SCHEMA_FORMAT,
      tools: [
        {
          type: "function",
          function: { name: "lookup", parameters: { type: "object", properties: {} } },
        },
      ],
    });
    expect(reply.status).toBe(200);
    expect(reply.json.choices[0].message.content).toBe('{"city":"Oslo","celsius":4}');
    expect(stack.provider.requests[0]!.responseFormat?.name).toBe("weather");
  });
});
