/**
 * `POST /v1/chat/completions` and `POST /v1/responses` against OpenAI's documented request
 * rules, over a real socket: content parts a message of that role cannot carry, roles,
 * `tool_choice` without tools, and a session header naming an agent that does not exist.
 * Each is a 400 in OpenAI's shape naming the field, before anything reaches the model.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AUTH, httpCall as call, closeClients, startStack, stopStacks } from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const PNG = "data:image/png;base64,iVBORw0KGgo=";
const PDF = `data:application/pdf;base64,${Buffer.from("%PDF-1.7").toString("base64")}`;

function chat(port: number, body: unknown, headers: Record<string, string> = {}) {
  return call(port, "/v1/chat/completions", {
    method: "POST",
    headers: { ...AUTH, ...headers },
    body,
  });
}

describe("/v1/chat/completions content parts by role", () => {
  it("refuses a part the message's role cannot carry (OpenAI: text only for system, developer and tool; text and refusal for assistant) instead of dropping it", async () => {
    const stack = await startStack({ responses: [{ text: "fine" }] });
    const image = { type: "image_url", image_url: { url: PNG } };
    const file = { type: "file", file: { filename: "a.pdf", file_data: PDF } };
    const audio = { type: "input_audio", input_audio: { data: "AAAA", format: "wav" } };
    const refusal = { type: "refusal", refusal: "no" };
    const user = { role: "user", content: "hi" };
    const cases: Array<[unknown[], string]> = [
      [
        [{ role: "system", content: [{ type: "text", text: "look:" }, image] }, user],
        "messages[0].content[1].type",
      ],
      [[{ role: "developer", content: [file] }, user], "messages[0].content[0].type"],
      [[user, { role: "assistant", content: [image] }, user], "messages[1].content[0].type"],
      [[user, { role: "assistant", content: [audio] }, user], "messages[1].content[0].type"],
      [
        [{ role: "user", content: [{ type: "text", text: "hi" }, refusal] }],
        "messages[0].content[1].type",
      ],
      [
        [
          user,
          {
            role: "assistant",
            content: null,
            tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
          },
          { role: "tool", tool_call_id: "c1", content: [image] },
        ],
        "messages[2].content[0].type",
      ],
    ];
    for (const [messages, param] of cases) {
      const reply = await chat(stack.port, { model: "beamclaw", messages });
      expect(reply.status, param).toBe(400);
      expect(reply.json.error, param).toMatchObject({
        type: "invalid_request_error",
        code: "unsupported_content",
        param,
      });
    }
    expect(stack.provider.requests).toHaveLength(0);
    // The parts each role does carry are still accepted.
    const ok = await chat(stack.port, {
      model: "beamclaw",
      messages: [
        { role: "system", content: [{ type: "text", text: "be brief" }] },
        { role: "user", content: [{ type: "text", text: "what is this?" }, image, file] },
        { role: "assistant", content: [{ type: "text", text: "a cat" }, refusal] },
        { role: "user", content: "sure?" },
      ],
    });
    expect(ok.status).toBe(200);
    expect(ok.json.choices[0].message.content).toBe("fine");
  });

  it("names the message's role in `param` when it is not one OpenAI defines", async () => {
    const stack = await startStack();
    const reply = await chat(stack.port, {
      model: "beamclaw",
      messages: [
        { role: "user", content: "hi" },
        { role: "narrator", content: "meanwhile" },
      ],
    });
    expect(reply.status).toBe(400);
    expect(reply.json.error).toMatchObject({
      type: "invalid_request_error",
      param: "messages[1].role",
    });
  });

  it("refuses a tool_choice that asks for a tool call when the request gives no tools, as OpenAI does", async () => {
    const stack = await startStack({ responses: [{ text: "a" }, { text: "b" }] });
    const user = { role: "user", content: "hi" };
    for (const toolChoice of ["required", { type: "function", function: { name: "lookup" } }]) {
      const reply = await chat(stack.port, {
        model: "beamclaw",
        messages: [user],
        tool_choice: toolChoice,
      });
      expect(reply.status).toBe(400);
      expect(reply.json.error).toMatchObject({
        type: "invalid_request_error",
        param: "tool_choice",
      });
    }
    expect(stack.provider.requests).toHaveLength(0);
    // "auto" and "none" ask for nothing a request without tools cannot give.
    for (const toolChoice of ["auto", "none"]) {
      const reply = await chat(stack.port, {
        model: "beamclaw",
        messages: [user],
        tool_choice: toolChoice,
      });
      expect(reply.status).toBe(200);
    }
  });
});

describe("a session header naming an agent that does not exist", () => {
  it("is a 400 invalid_request_error on both endpoints, not a server error", async () => {
    const stack = await startStack({ gateway: { http: { responses: true } } });
    const headers = { "x-beamclaw-session-key": "agent:ghost:main" };
    const replies = [
      await chat(
        stack.port,
        { model: "beamclaw", messages: [{ role: "user", content: "hi" }] },
        headers,
      ),
      await call(stack.port, "/v1/responses", {
        method: "POST",
        headers: { ...AUTH, ...headers },
        body: { model: "beamclaw", input: "hi" },
      }),
    ];
    for (const reply of replies) {
      expect(reply.status).toBe(400);
      expect(reply.json.error).toMatchObject({ type: "invalid_request_error" });
      expect(reply.json.error.message).toContain("ghost");
    }
    expect(stack.provider.requests).toHaveLength(0);
  });
});

describe("a named tool_choice that matches none of the request's tools", () => {
  it("is a 400 naming tool_choice on both endpoints, before the model is called", async () => {
    const stack = await startStack({ gateway: { http: { responses: true } } });
    const parameters = { type: "object", properties: {} };
    const user = { role: "user", content: "weather?" };
    const replies = [
      await chat(stack.port, {
        model: "beamclaw",
        messages: [user],
        tools: [{ type: "function", function: { name: "get_weather", parameters } }],
        tool_choice: { type: "function", function: { name: "get_time" } },
      }),
      await call(stack.port, "/v1/responses", {
        method: "POST",
        headers: AUTH,
        body: {
          model: "beamclaw",
          input: "weather?",
          tools: [{ type: "function", name: "get_weather", parameters }],
          tool_choice: { type: "function", name: "get_time" },
        },
      }),
    ];
    for (const reply of replies) {
      expect(reply.status).toBe(400);
      expect(reply.json.error).toMatchObject({
        type: "invalid_request_error",
        param: "tool_choice",
      });
      expect(reply.json.error.message).toContain("get_time");
    }
    expect(stack.provider.requests).toHaveLength(0);
  });
});
