/**
 * What clients send must be UTF-8 and well-formed Unicode, over real sockets: a body in
 * another charset is refused rather than handed to the model with U+FFFD in place of its
 * letters, a lone surrogate (`"\ud800"`, which every provider refuses once it is in a
 * session's history) is refused before anything is stored, and a UTF-8 BOM is ignored.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  httpCall,
  RpcError,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";
const HOOK_TOKEN = "hook-token-0123456789abcdef";

function completion(content: string): string {
  return JSON.stringify({ model: "beamclaw", messages: [{ role: "user", content }] });
}

function post(port: number, path: string, body: Buffer | string, token = TOKEN) {
  return httpCall(port, path, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
    body,
  });
}

describe("POST /v1/chat/completions: the body's encoding", () => {
  it("refuses a body that is not UTF-8 (Latin-1) with 400 invalid_encoding; the model never sees U+FFFD", async () => {
    const stack = await startStack({ responses: [{ text: "ok" }] });
    const reply = await post(
      stack.port,
      "/v1/chat/completions",
      Buffer.from(completion("café"), "latin1"),
    );
    expect(reply.status).toBe(400);
    expect(reply.json.error).toMatchObject({
      type: "invalid_request_error",
      code: "invalid_encoding",
    });
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("refuses a lone surrogate with 400 invalid_unicode naming the field, before the session stores it", async () => {
    const stack = await startStack({ responses: [{ text: "ok" }] });
    const body =
      '{"model":"beamclaw","user":"u1","messages":[{"role":"user","content":"a\\ud800b"}]}';
    const reply = await post(stack.port, "/v1/chat/completions", body);
    expect(reply.status).toBe(400);
    expect(reply.json.error).toMatchObject({ code: "invalid_unicode" });
    expect(reply.json.error.message).toContain("messages[0].content");
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("takes a UTF-8 body with a BOM, and a surrogate pair written as escapes", async () => {
    const stack = await startStack({ responses: [{ text: "ok" }, { text: "ok" }] });
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(completion("héllo"))]);
    expect((await post(stack.port, "/v1/chat/completions", bom)).status).toBe(200);
    const pair = completion("\\ud83d\\ude00").replaceAll("\\\\", "\\");
    expect((await post(stack.port, "/v1/chat/completions", pair)).status).toBe(200);
    const texts = stack.provider.requests.map((r) => JSON.stringify(r.messages.at(-1)));
    expect(texts[0]).toContain("héllo");
    expect(texts[1]).toContain("😀");
  });
});

describe("hooks: the body's encoding", () => {
  it("refuses a Latin-1 body and a lone surrogate with 400 and a code saying which", async () => {
    const stack = await startStack({
      gateway: { hooks: { settings: { enabled: true, token: HOOK_TOKEN } as never } },
    });
    const latin1 = await post(
      stack.port,
      "/hooks/wake",
      Buffer.from(JSON.stringify({ text: "café" }), "latin1"),
      HOOK_TOKEN,
    );
    expect(latin1.status).toBe(400);
    expect(latin1.json).toMatchObject({ ok: false, error: { code: "invalid_encoding" } });
    const lone = await post(stack.port, "/hooks/wake", '{"text":"\\udc00"}', HOOK_TOKEN);
    expect(lone.status).toBe(400);
    expect(lone.json).toMatchObject({ ok: false, error: { code: "invalid_unicode" } });
  });
});

describe("WebSocket request frames: their encoding", () => {
  it("refuses chat.send with a lone surrogate in its message; nothing is stored or run", async () => {
    const stack = await startStack({ responses: [{ text: "ok" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const error = await rpcError(
      client.request("chat.send", { sessionKey: KEY, message: "hi \ud83d", idempotencyKey: "r1" }),
    );
    expect(error).toBeInstanceOf(RpcError);
    expect(error.code).toBe("INVALID_REQUEST");
    expect(error.message).toContain("params.message holds a lone surrogate");
    expect((await client.request("chat.history", { sessionKey: KEY })).messages).toEqual([]);
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("refuses a binary frame that is not UTF-8 rather than reading U+FFFD into it", async () => {
    const stack = await startStack({ responses: [{ text: "ok" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const frame = JSON.stringify({
      type: "req",
      id: "bin-1",
      method: "chat.send",
      params: { sessionKey: KEY, message: "café", idempotencyKey: "r2" },
    });
    client.sendRaw(Buffer.from(frame, "latin1"));
    const answer = await client.request("chat.history", { sessionKey: KEY });
    expect(answer.messages).toEqual([]);
    expect(client.responses("bin-1")).toEqual([]);
    const refused = client.frames.find(
      (f) =>
        f.type === "res" &&
        f.ok === false &&
        /not UTF-8/.test(String((f.error as { message?: string }).message)),
    );
    expect(refused).toBeDefined();
    expect(stack.provider.requests).toHaveLength(0);
  });
});
