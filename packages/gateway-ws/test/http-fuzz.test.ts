/**
 * Bad bodies for the OpenAI-compatible `POST /v1/chat/completions`, over a real socket: each
 * is answered with a 4xx in OpenAI's error shape (or succeeds), never a 5xx from a handler
 * that met a value of a type it did not expect, and the gateway keeps serving.
 *
 * The model always has an answer ready, so a 5xx can only be the gateway's own failure.
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeClients, httpCall, type Reply, startStack, stopStacks, TOKEN } from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const BAD_VALUES: Json[] = [
  null,
  "",
  "x".repeat(5_000),
  -1,
  0,
  1.5,
  1e308,
  true,
  [],
  [null, 1, "a"],
  {},
  { nested: { deeper: [{ x: 1 }] } },
];

const TOOL = {
  type: "function",
  function: {
    name: "lookup",
    description: "Looks a word up",
    parameters: { type: "object", properties: { word: { type: "string" } } },
  },
};

/** A valid request of each kind the endpoint serves: a session turn and a client-tools call. */
const BASES: Record<string, Record<string, Json>> = {
  session: { model: "beamclaw", messages: [{ role: "user", content: "hi" }] },
  tools: {
    model: "beamclaw",
    messages: [
      { role: "system", content: "be brief" },
      { role: "user", content: [{ type: "text", text: "define it" }] },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "lookup", arguments: "{}" } },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: "a word" },
    ],
    tools: [TOOL],
  },
};

const TOP_FIELDS = [
  "model",
  "messages",
  "stream",
  "stream_options",
  "tools",
  "tool_choice",
  "temperature",
  "max_tokens",
  "max_completion_tokens",
  "user",
  "response_format",
];

interface Case {
  what: string;
  body: Json | string;
}

function cases(): Case[] {
  const out: Case[] = [
    { what: "not JSON", body: "{nope" },
    { what: "a JSON array", body: [] },
    { what: "a JSON string", body: '"hi"' },
  ];
  for (const [name, base] of Object.entries(BASES)) {
    out.push({ what: `${name}: the base`, body: base });
    for (const field of TOP_FIELDS) {
      for (const bad of BAD_VALUES) {
        out.push({
          what: `${name}: ${field} = ${JSON.stringify(bad).slice(0, 30)}`,
          body: { ...base, [field]: bad },
        });
      }
    }
    // Inside each message: every field of it, in turn.
    const messages = base.messages as Array<Record<string, Json>>;
    messages.forEach((_message, i) => {
      for (const field of ["role", "content", "tool_calls", "tool_call_id", "name"]) {
        for (const bad of BAD_VALUES) {
          const changed = messages.map((m, j) => (j === i ? { ...m, [field]: bad } : m));
          out.push({
            what: `${name}: messages[${i}].${field} = ${JSON.stringify(bad).slice(0, 30)}`,
            body: { ...base, messages: changed },
          });
        }
      }
      for (const bad of BAD_VALUES) {
        const changed = messages.map((m, j) => (j === i ? bad : m));
        out.push({
          what: `${name}: messages[${i}] = ${JSON.stringify(bad).slice(0, 30)}`,
          body: { ...base, messages: changed },
        });
      }
    });
    // Parts of a content array, a tool call and a tool definition, each broken in turn.
    for (const bad of BAD_VALUES) {
      out.push({
        what: `${name}: a content part = ${JSON.stringify(bad).slice(0, 30)}`,
        body: { ...base, messages: [{ role: "user", content: [bad] }] },
      });
      out.push({
        what: `${name}: an image_url = ${JSON.stringify(bad).slice(0, 30)}`,
        body: {
          ...base,
          messages: [{ role: "user", content: [{ type: "image_url", image_url: bad }] }],
        },
      });
      out.push({
        what: `${name}: a tool call = ${JSON.stringify(bad).slice(0, 30)}`,
        body: {
          ...base,
          messages: [
            { role: "user", content: "x" },
            { role: "assistant", content: "", tool_calls: [bad] },
          ],
        },
      });
      out.push({
        what: `${name}: a tool call's function = ${JSON.stringify(bad).slice(0, 30)}`,
        body: {
          ...base,
          messages: [
            { role: "user", content: "x" },
            { role: "assistant", content: "", tool_calls: [{ id: "c", function: bad }] },
          ],
        },
      });
      out.push({
        what: `tools: a tool = ${JSON.stringify(bad).slice(0, 30)}`,
        body: { ...BASES.tools!, tools: [bad] },
      });
      out.push({
        what: `tools: a tool's function = ${JSON.stringify(bad).slice(0, 30)}`,
        body: { ...BASES.tools!, tools: [{ type: "function", function: bad }] },
      });
      out.push({
        what: `tools: a tool's name = ${JSON.stringify(bad).slice(0, 30)}`,
        body: {
          ...BASES.tools!,
          tools: [{ type: "function", function: { ...TOOL.function, name: bad } }],
        },
      });
      out.push({
        what: `tools: a tool's parameters = ${JSON.stringify(bad).slice(0, 30)}`,
        body: {
          ...BASES.tools!,
          tools: [{ type: "function", function: { ...TOOL.function, parameters: bad } }],
        },
      });
    }
  }
  return out;
}

/** What is wrong with one answer, or `undefined` when it is a proper answer. */
function problemWith(reply: Reply): string | undefined {
  if (reply.status >= 500) return `HTTP ${reply.status}: ${reply.text.slice(0, 200)}`;
  if (reply.status >= 400) {
    const error = reply.json?.error;
    if (typeof error?.message !== "string" || typeof error?.type !== "string") {
      return `HTTP ${reply.status} without OpenAI's error shape: ${reply.text.slice(0, 200)}`;
    }
    return undefined;
  }
  if (reply.status !== 200) return `HTTP ${reply.status}`;
  const type = String(reply.headers["content-type"] ?? "");
  if (type.startsWith("text/event-stream")) {
    return reply.text.trimEnd().endsWith("data: [DONE]") ? undefined : "a stream without [DONE]";
  }
  return reply.json?.object === "chat.completion"
    ? undefined
    : `not a completion: ${reply.text.slice(0, 200)}`;
}

describe("POST /v1/chat/completions with bad bodies", () => {
  it("answers each with a 4xx in OpenAI's shape or a completion; never a 5xx", async () => {
    const all = cases();
    const stack = await startStack({
      // More answers than requests: a 5xx can only be the gateway's own.
      responses: Array.from({ length: all.length + 10 }, () => ({ text: "ok" })),
    });
    const problems: string[] = [];
    let ok = 0;
    let refused = 0;
    for (const c of all) {
      const reply = await httpCall(stack.port, "/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
        body: c.body,
      });
      const problem = problemWith(reply);
      if (problem !== undefined) problems.push(`${c.what}: ${problem}`);
      else if (reply.status === 200) ok++;
      else refused++;
    }
    expect(problems, problems.join("\n")).toEqual([]);
    // Both kinds of answer were exercised, and the gateway still serves a good request.
    expect(ok).toBeGreaterThan(10);
    expect(refused).toBeGreaterThan(100);
    const good = await httpCall(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: BASES.session,
    });
    expect(good.status).toBe(200);
    expect(good.json.choices[0].message.content).toBe("ok");
  }, 120_000);

  it("names the field at fault in `param`, with code invalid_type; fields it does not read are left alone", async () => {
    const stack = await startStack({ responses: [{ text: "fine" }] });
    const post = (body: Json) =>
      httpCall(stack.port, "/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
        body,
      });
    const user = { role: "user", content: "hi" };
    for (const [body, param] of [
      [{ model: 7, messages: [user] }, "model"],
      [
        { model: "beamclaw", messages: [user, { role: "assistant", tool_calls: "x" }] },
        "messages[1].tool_calls",
      ],
      [
        { model: "beamclaw", messages: [user, { role: "assistant", tool_calls: [null] }] },
        "messages[1].tool_calls[0]",
      ],
      [
        { model: "beamclaw", messages: [{ role: "user", content: [{ type: "text", text: 1 }] }] },
        "messages[0].content[0].text",
      ],
      [{ model: "beamclaw", messages: [{ role: "user", content: 5 }] }, "messages[0].content"],
      [{ model: "beamclaw", messages: [user], tools: [null] }, "tools[0]"],
      [
        {
          model: "beamclaw",
          messages: [user],
          tools: [{ type: "function", function: { name: "f", parameters: [] } }],
        },
        "tools[0].function.parameters",
      ],
      [{ model: "beamclaw", messages: [user], temperature: 3 }, "temperature"],
      [{ model: "beamclaw", messages: [user], max_tokens: 1.5 }, "max_tokens"],
      [{ model: "beamclaw", messages: [user], stream: "yes" }, "stream"],
      [{ model: "beamclaw", messages: [user], tool_choice: "sometimes" }, "tool_choice"],
    ] as Array<[Json, string]>) {
      const reply = await post(body);
      expect(reply.status, param).toBe(400);
      expect(reply.json.error, param).toMatchObject({
        type: "invalid_request_error",
        code: "invalid_type",
        param,
      });
    }
    // OpenAI fields this endpoint does not read do not stop a request.
    const ok = await post({ model: "beamclaw", messages: [user], n: 1, seed: 42, logprobs: false });
    expect(ok.status).toBe(200);
    expect(ok.json.choices[0].message.content).toBe("fine");
  });
});
