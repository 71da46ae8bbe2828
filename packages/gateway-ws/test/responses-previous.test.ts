/**
 * `POST /v1/responses` with `previous_response_id`, and `GET`/`DELETE /v1/responses/{id}`,
 * over real sockets against a real gateway and a scripted provider: a stateless response's
 * conversation is kept in the store and a later request continues it (chained, forked,
 * streamed, with client tools), unless `store` is false, the turn is a kept session's, or the
 * answer failed; OpenAI's `previous_response_not_found` otherwise, and after the 30-day TTL.
 * A kept response can be read back as the client got it, and deleted.
 */
import { ProviderError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway } from "../src/index.js";
import { OSLO_CALL_SENT, post, startResponses, WEATHER_TOOL } from "./responses-support.js";
import {
  AUTH,
  httpCall as call,
  closeClients,
  type Reply,
  type Stack,
  sseEvents,
  startStack,
  stopStacks,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const DAY_MS = 24 * 60 * 60 * 1000;

/** The text the model was sent as the last user message of its `n`th request. */
function sentText(stack: Stack, n: number): string {
  const messages = stack.provider.requests[n]!.messages;
  const last = messages.at(-1)!;
  return (last.content[0] as { text: string }).text;
}

/** Expects OpenAI's answer to an id it does not keep. */
function expectNotFound(reply: Reply, id: string): void {
  expect(reply.status).toBe(400);
  expect(reply.json.error).toEqual({
    message: `Previous response with id '${id}' not found.`,
    type: "invalid_request_error",
    param: "previous_response_id",
    code: "previous_response_not_found",
  });
}

/** Makes the store take `ms` to keep a response (other keys as usual). */
function slowKeep(stack: Stack, ms: number): void {
  const kv = stack.store.kv;
  const set = kv.set.bind(kv);
  kv.set = async (key, value, options) => {
    if (key.startsWith("openai-responses:")) await new Promise((r) => setTimeout(r, ms));
    return set(key, value, options);
  };
}

/** `POST /v1/responses` continuing the response `id` with `input`. */
function continueFrom(stack: Stack, id: unknown, input: unknown, extra: object = {}) {
  return post(stack, { model: "beamclaw", input, previous_response_id: id, ...extra });
}

describe("POST /v1/responses with previous_response_id", () => {
  it("continues a kept response: its input and answer come before the new input, chained and forked", async () => {
    const stack = await startResponses([
      { text: "Hello Ada." },
      { text: "You are Ada." },
      { text: "Ada has 3 letters." },
      { text: "No, you said Ada." },
    ]);
    slowKeep(stack, 100);
    const first = await post(stack, { model: "beamclaw", input: "My name is Ada." });
    expect(first.json).toMatchObject({ status: "completed", store: true });
    expect(first.json.previous_response_id).toBeNull();
    const second = await continueFrom(stack, first.json.id, "What is my name?");
    expect(second.status).toBe(200);
    expect(second.json).toMatchObject({
      previous_response_id: first.json.id,
      store: true,
      output: [{ content: [{ text: "You are Ada." }] }],
    });
    expect(second.json.id).not.toBe(first.json.id);
    expect(sentText(stack, 1)).toBe(
      "User: My name is Ada.\n\nAssistant: Hello Ada.\n\nUser: What is my name?",
    );
    // A chain: the third request continues the second, which continued the first.
    await continueFrom(stack, second.json.id, "How long is it?");
    expect(sentText(stack, 2)).toBe(
      "User: My name is Ada.\n\nAssistant: Hello Ada.\n\nUser: What is my name?\n\n" +
        "Assistant: You are Ada.\n\nUser: How long is it?",
    );
    // A fork: the first response continued again knows nothing of the other branch.
    await continueFrom(stack, first.json.id, "Did I say Bob?");
    expect(sentText(stack, 3)).toBe(
      "User: My name is Ada.\n\nAssistant: Hello Ada.\n\nUser: Did I say Bob?",
    );
  });

  it("does not carry a response's instructions into the next one", async () => {
    const stack = await startResponses([{ text: "Hi." }, { text: "Fine." }]);
    const first = await post(stack, {
      model: "beamclaw",
      input: "Hello",
      instructions: "Answer in French.",
    });
    expect(sentText(stack, 0)).toBe("System: Answer in French.\n\nUser: Hello");
    await continueFrom(stack, first.json.id, "How are you?", { instructions: "Be brief." });
    expect(sentText(stack, 1)).toBe(
      "System: Be brief.\n\nUser: Hello\n\nAssistant: Hi.\n\nUser: How are you?",
    );
  });

  it("keeps a streamed response before its response.completed event, so a follow-up sent at once finds it", async () => {
    const stack = await startResponses([{ text: ["Hel", "lo"] }, { text: "Again." }]);
    // A slow store: the follow-up finds the response only if it was kept before the end.
    slowKeep(stack, 150);
    const first = await post(stack, { model: "beamclaw", input: "Hi", stream: true });
    const completed = sseEvents(first.text).find((e) => e.event === "response.completed")!;
    expect(completed.data.response).toMatchObject({ store: true, status: "completed" });
    const id = completed.data.response.id as string;
    const second = await continueFrom(stack, id, "Say it again", { stream: true });
    const created = sseEvents(second.text).find((e) => e.event === "response.created")!;
    expect(created.data.response.previous_response_id).toBe(id);
    expect(sentText(stack, 1)).toBe("User: Hi\n\nAssistant: Hello\n\nUser: Say it again");
  });

  it("continues a client-tools response with only the function_call_output, then without tools", async () => {
    const stack = await startResponses([
      { toolCalls: [{ toolCallId: "call_1", toolName: "get_weather", input: { city: "Oslo" } }] },
      { text: "It is 4 °C in Oslo." },
      { text: "You asked about Oslo." },
    ]);
    const first = await post(stack, {
      model: "beamclaw",
      input: "Weather in Oslo?",
      tools: [WEATHER_TOOL],
    });
    expect(first.json).toMatchObject({
      store: true,
      output: [{ type: "function_call", call_id: "call_1" }],
    });
    const second = await post(stack, {
      model: "beamclaw",
      tools: [WEATHER_TOOL],
      previous_response_id: first.json.id,
      input: [{ type: "function_call_output", call_id: "call_1", output: '{"celsius":4}' }],
    });
    expect(second.status).toBe(200);
    expect(second.json.output[0].content[0].text).toBe("It is 4 °C in Oslo.");
    expect(stack.provider.requests[1]!.messages).toEqual(OSLO_CALL_SENT);
    // Without tools, the continued conversation runs as a fresh session's turn, as text.
    const third = await continueFrom(stack, second.json.id, "Which city was it?");
    expect(third.status).toBe(200);
    expect(sentText(stack, 2)).toBe(
      'User: Weather in Oslo?\n\nTool: {"celsius":4}\n\nAssistant: It is 4 °C in Oslo.\n\n' +
        "User: Which city was it?",
    );
  });

  it("keeps nothing with store: false, for a kept session's turn, or for a failed answer", async () => {
    const stack = await startResponses([
      { text: "not kept" },
      { text: "session" },
      {
        text: ["partial"],
        error: new ProviderError("connect ECONNRESET", { kind: "network", provider: "scripted" }),
      },
    ]);
    const unstored = await post(stack, { model: "beamclaw", input: "one", store: false });
    expect(unstored.json).toMatchObject({ status: "completed", store: false });
    const session = await post(stack, { model: "beamclaw", input: "two", user: "alice" });
    expect(session.json).toMatchObject({ status: "completed", store: false });
    const failed = await post(stack, { model: "beamclaw", input: "three", stream: true });
    const last = sseEvents(failed.text).at(-1)!;
    expect(last.event).toBe("response.failed");
    for (const id of [unstored.json.id, session.json.id, last.data.response.id]) {
      expectNotFound(await continueFrom(stack, id, "more"), id);
    }
    expect(await stack.store.kv.keys("openai-responses:")).toEqual([]);
    expect(stack.provider.requests).toHaveLength(3);
  });

  it("refuses an unknown id, a malformed one, and one sent with a kept session, before any model call", async () => {
    const stack = await startResponses([{ text: "kept" }]);
    const kept = await post(stack, { model: "beamclaw", input: "hi" });
    expectNotFound(await continueFrom(stack, "resp_unknown", "hi"), "resp_unknown");
    for (const id of [42, "", "msg_123", "resp_../../etc"]) {
      const reply = await continueFrom(stack, id, "hi");
      expect(reply.status).toBe(400);
      expect(reply.json.error).toMatchObject({
        type: "invalid_request_error",
        param: "previous_response_id",
      });
    }
    const withUser = await continueFrom(stack, kept.json.id, "hi", { user: "alice" });
    const withHeader = await post(
      stack,
      { model: "beamclaw", input: "hi", previous_response_id: kept.json.id },
      { ...AUTH, "x-beamclaw-session-key": "agent:main:kept" },
    );
    for (const reply of [withUser, withHeader]) {
      expect(reply.status).toBe(400);
      expect(reply.json.error).toMatchObject({
        param: "previous_response_id",
        code: "conflicting_parameters",
      });
    }
    expect(stack.provider.requests).toHaveLength(1);
  });

  it("forgets a kept response after 30 days", async () => {
    let now = Date.now();
    const stack = await startResponses([{ text: "one" }, { text: "two" }], { now: () => now });
    const first = await post(stack, { model: "beamclaw", input: "hi" });
    now += 30 * DAY_MS - 1_000;
    const second = await continueFrom(stack, first.json.id, "still there?");
    expect(second.status).toBe(200);
    now += 2_000;
    // The second response is still kept, but the first, which holds the start of its
    // conversation, is gone: it cannot be continued either.
    expect(await stack.store.kv.get(`openai-responses:${second.json.id}`)).toBeDefined();
    expectNotFound(await continueFrom(stack, second.json.id, "and the second?"), second.json.id);
    expectNotFound(await continueFrom(stack, first.json.id, "and now?"), first.json.id);
  });

  it("keeps responses for http.responsesKeepMs, and none with 0", async () => {
    let now = Date.now();
    const hour = await startResponses([{ text: "one" }, { text: "two" }], {
      now: () => now,
      keepMs: 3_600_000,
    });
    const first = await post(hour, { model: "beamclaw", input: "hi" });
    expect(first.json.store).toBe(true);
    now += 3_599_000;
    expect((await continueFrom(hour, first.json.id, "still there?")).status).toBe(200);
    now += 2_000;
    expectNotFound(await continueFrom(hour, first.json.id, "and now?"), first.json.id);
    const none = await startResponses([{ text: "not kept" }], { keepMs: 0 });
    const unkept = await post(none, { model: "beamclaw", input: "hi" });
    expect(unkept.json).toMatchObject({ status: "completed", store: false });
    expectNotFound(await continueFrom(none, unkept.json.id, "more"), unkept.json.id);
    expect(await none.store.kv.keys("openai-responses:")).toEqual([]);
  });

  it("refuses an http.responsesKeepMs that is not an integer from 0 to 365 days", async () => {
    const stack = await startResponses();
    for (const keepMs of [-1, 1.5, 365 * DAY_MS + 1, Number.NaN]) {
      expect(() =>
        createGateway({
          runtime: stack.runtime,
          port: 0,
          auth: { mode: "token", token: "t" },
          http: { responses: true, responsesKeepMs: keepMs },
        }),
      ).toThrow(/http\.responsesKeepMs must be an integer from 0 to 31536000000/);
    }
  });

  it("keeps what each response added, with a whole copy every 32nd of a chain, and rebuilds a long chain in order", async () => {
    const turns = 40;
    const stack = await startResponses(
      Array.from({ length: turns }, (_, i) => ({ text: `answer ${i}` })),
    );
    let id: string | undefined;
    for (let i = 0; i < turns; i++) {
      const reply: Reply =
        id === undefined
          ? await post(stack, { model: "beamclaw", input: `question ${i}` })
          : await continueFrom(stack, id, `question ${i}`);
      expect(reply.status).toBe(200);
      id = reply.json.id;
    }
    const expected = Array.from(
      { length: turns - 1 },
      (_, i) => `User: question ${i}\n\nAssistant: answer ${i}`,
    ).join("\n\n");
    expect(sentText(stack, turns - 1)).toBe(`${expected}\n\nUser: question ${turns - 1}`);
    const records = await Promise.all(
      (await stack.store.kv.keys("openai-responses:")).map((key) => stack.store.kv.get(key)),
    );
    const kept = records as Array<{ previous: string | null; depth: number; messages: unknown[] }>;
    expect(kept).toHaveLength(turns);
    // Whole copies: the first response and the 33rd (after 31 links); the others hold only
    // their question and answer.
    const whole = kept.filter((r) => r.previous === null);
    expect(whole.map((r) => r.messages.length).sort((a, b) => a - b)).toEqual([2, 66]);
    expect(kept.filter((r) => r.previous !== null).every((r) => r.messages.length === 2)).toBe(
      true,
    );
    expect(Math.max(...kept.map((r) => r.depth))).toBe(31);
  });

  it("still answers when the store refuses to keep the response, and says so in the log", async () => {
    const logs: string[] = [];
    const stack = await startResponses([{ text: "answered" }], { logs });
    const kv = stack.store.kv;
    const set = kv.set.bind(kv);
    kv.set = async (key, value, options) => {
      if (key.startsWith("openai-responses:")) throw new Error("disk full");
      return set(key, value, options);
    };
    const reply = await post(stack, { model: "beamclaw", input: "hi" });
    expect(reply.status).toBe(200);
    expect(reply.json.output[0].content[0].text).toBe("answered");
    expect(logs.join("\n")).toContain(`response ${reply.json.id} was not kept`);
    expect(logs.join("\n")).toContain("disk full");
    expectNotFound(await continueFrom(stack, reply.json.id, "more"), reply.json.id);
  });
});

/** `GET` (or another method) of `/v1/responses/{id}`. */
function item(stack: Stack, id: string, method = "GET", headers: Record<string, string> = AUTH) {
  return call(stack.port, `/v1/responses/${id}`, { method, headers });
}

describe("GET and DELETE /v1/responses/{id}", () => {
  it("reads a kept response back exactly as the client got it, streamed or not", async () => {
    const stack = await startResponses([
      { text: "plain", usage: { inputTokens: 3, outputTokens: 1 } },
      { text: ["stre", "amed"] },
    ]);
    const plain = await post(stack, { model: "beamclaw", input: "one", metadata: { k: "v" } });
    expect((await item(stack, plain.json.id)).json).toEqual(plain.json);
    const streamed = await post(stack, { model: "beamclaw", input: "two", stream: true });
    const completed = sseEvents(streamed.text).find((e) => e.event === "response.completed")!;
    const read = await item(stack, completed.data.response.id);
    expect(read.status).toBe(200);
    expect(read.json).toEqual(completed.data.response);
    expect(read.json.output[0].content[0].text).toBe("streamed");
  });

  it("answers 404 in OpenAI's shape for a response that is not kept", async () => {
    const stack = await startResponses([{ text: "unkept" }]);
    const unkept = await post(stack, { model: "beamclaw", input: "hi", store: false });
    for (const id of ["resp_unknown", unkept.json.id]) {
      const reply = await item(stack, id);
      expect(reply.status).toBe(404);
      expect(reply.json.error).toEqual({
        message: `No response found with id '${id}'.`,
        type: "invalid_request_error",
        param: null,
        code: "not_found",
      });
    }
  });

  it("deletes a kept response: it is gone, and so are the chains that continue it", async () => {
    const stack = await startResponses([{ text: "one" }, { text: "two" }, { text: "other" }]);
    const first = await post(stack, { model: "beamclaw", input: "hi" });
    const second = await continueFrom(stack, first.json.id, "more");
    const other = await post(stack, { model: "beamclaw", input: "unrelated" });
    const deleted = await item(stack, first.json.id, "DELETE");
    expect(deleted.status).toBe(200);
    expect(deleted.json).toEqual({ id: first.json.id, object: "response", deleted: true });
    expect((await item(stack, first.json.id)).status).toBe(404);
    expect((await item(stack, first.json.id, "DELETE")).status).toBe(404);
    expectNotFound(await continueFrom(stack, first.json.id, "again"), first.json.id);
    // The second response can still be read, but not continued: its start is gone.
    expect((await item(stack, second.json.id)).status).toBe(200);
    expectNotFound(await continueFrom(stack, second.json.id, "again"), second.json.id);
    expect((await item(stack, other.json.id)).json).toEqual(other.json);
    expect(stack.provider.requests).toHaveLength(3);
  });

  it("needs the token, the endpoint turned on, and GET or DELETE", async () => {
    const stack = await startResponses([{ text: "kept" }]);
    const kept = await post(stack, { model: "beamclaw", input: "hi" });
    expect((await item(stack, kept.json.id, "GET", {})).status).toBe(401);
    const wrong = await item(stack, kept.json.id, "PUT");
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe("GET, DELETE");
    const foreign = await item(stack, kept.json.id, "DELETE", {
      ...AUTH,
      origin: "https://evil.example",
    });
    expect(foreign.status).toBe(403);
    expect((await item(stack, kept.json.id)).status).toBe(200);
    const off = await startStack({ responses: [] });
    const offReply = await item(off, kept.json.id);
    expect(offReply.status).toBe(404);
    expect(offReply.json.error.message).toMatch(/turned off/);
  });
});
