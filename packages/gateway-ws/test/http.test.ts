import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProviderError, StoreError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import {
  AUTH,
  httpCall as call,
  closeClients,
  HANGING_ANSWER,
  leaveMidStream,
  recordingTranscriber,
  runEnds,
  sseData,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  waitFor,
} from "./support.js";

useSchemaCheck();
const dirs: string[] = [];
afterEach(async () => {
  await closeClients();
  await stopStacks();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("health probes", () => {
  it("answer without auth: /health, /healthz, /readyz and /startupz", async () => {
    const { port } = await startStack();
    for (const path of ["/health", "/healthz"]) {
      expect(await call(port, path)).toMatchObject({
        status: 200,
        json: { ok: true, status: "live" },
      });
    }
    expect(await call(port, "/readyz")).toMatchObject({ status: 200, json: { ready: true } });
    expect(await call(port, "/startupz")).toMatchObject({ status: 200, json: { started: true } });
    expect((await call(port, "/no-such-thing")).status).toBe(404);
  });

  it("/readyz answers 503 while the store fails (the process stays live), and 200 once it is back", async () => {
    const { port, store } = await startStack();
    const kv = store.kv;
    const get = kv.get.bind(kv);
    kv.get = async () => {
      throw new StoreError("STORE_UNAVAILABLE", "store-fs stopped after a failed write (EROFS)");
    };
    try {
      expect(await call(port, "/readyz")).toMatchObject({
        status: 503,
        json: { ready: false, status: "store-unavailable", code: "STORE_UNAVAILABLE" },
      });
      expect(await call(port, "/healthz")).toMatchObject({ status: 200, json: { ok: true } });
    } finally {
      kv.get = get;
    }
    expect(await call(port, "/readyz")).toMatchObject({ status: 200, json: { ready: true } });
  });
});

describe("OpenAI-compatible API", () => {
  it("GET /v1/models lists the agents as models, behind bearer auth", async () => {
    const { port } = await startStack({
      agents: [
        { id: "main", model: "scripted/m1" },
        { id: "ops", model: "scripted/m1" },
      ],
    });
    const refused = await call(port, "/v1/models");
    expect(refused.status).toBe(401);
    expect(refused.headers["www-authenticate"]).toBe("Bearer");
    expect(
      (await call(port, "/v1/models", { headers: { authorization: "Bearer wrong" } })).status,
    ).toBe(401);
    const models = await call(port, "/v1/models", { headers: AUTH });
    expect(models.json.data.map((m: { id: string }) => m.id)).toEqual([
      "beamclaw",
      "beamclaw/main",
      "beamclaw/ops",
    ]);
  });

  it("answers a non-streaming completion with the agent's reply and usage", async () => {
    const stack = await startStack({
      responses: [{ text: "Hi there", usage: { inputTokens: 9, outputTokens: 2 } }],
    });
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: { model: "beamclaw", messages: [{ role: "user", content: "hello" }] },
    });
    expect(reply.status).toBe(200);
    expect(reply.json).toMatchObject({
      object: "chat.completion",
      model: "beamclaw",
      choices: [
        { index: 0, message: { role: "assistant", content: "Hi there" }, finish_reason: "stop" },
      ],
      usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 },
    });
    // Without `user` or a session header each request is stateless.
    expect(await stack.store.sessions.count()).toBe(0);
  });

  it("passes OpenAI-style file parts (base64 data URLs) to the model as documents, and refuses others", async () => {
    const stack = await startStack({ responses: [{ text: "You owe 42." }] });
    const pdf = Buffer.from("%PDF-1.7\n%invoice").toString("base64");
    const post = (content: unknown[]) =>
      call(stack.port, "/v1/chat/completions", {
        method: "POST",
        headers: AUTH,
        body: { model: "beamclaw", messages: [{ role: "user", content }] },
      });
    const reply = await post([
      { type: "text", text: "What do I owe?" },
      {
        type: "file",
        file: { filename: "invoice.pdf", file_data: `data:application/pdf;base64,${pdf}` },
      },
    ]);
    expect(reply.status).toBe(200);
    expect(reply.json.choices[0].message.content).toBe("You owe 42.");
    expect(stack.provider.requests[0]!.messages.at(-1)).toEqual({
      role: "user",
      content: [
        { type: "text", text: "What do I owe?" },
        { type: "file", mediaType: "application/pdf", data: pdf, filename: "invoice.pdf" },
      ],
    });
    // A file uploaded to OpenAI (file_id) is not something this gateway has; a bare base64
    // string is not a data URL.
    for (const file of [{ file_id: "file-abc123" }, { file_data: pdf }]) {
      const refused = await post([
        { type: "text", text: "x" },
        { type: "file", file },
      ]);
      expect(refused.status).toBe(400);
      expect(refused.json.error.message).toMatch(/messages\[0\]\.content\[1\]\.file/);
    }
    expect(stack.provider.requests).toHaveLength(1);
  });

  it("a stateless conversation keeps the images and documents of its earlier user messages", async () => {
    const stack = await startStack({ responses: [{ text: "Both are cats." }] });
    const png = "iVBORw0KGgo=";
    const pdf = Buffer.from("%PDF-1.7\n%notes").toString("base64");
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "Here is the first." },
              { type: "image_url", image_url: { url: `data:image/png;base64,${png}` } },
              {
                type: "file",
                file: { filename: "notes.pdf", file_data: `data:application/pdf;base64,${pdf}` },
              },
            ],
          },
          { role: "assistant", content: "A cat." },
          { role: "user", content: "And is this one a cat too?" },
        ],
      },
    });
    expect(reply.status).toBe(200);
    const sent = stack.provider.requests[0]!.messages.at(-1)!;
    expect(sent.role).toBe("user");
    const parts = sent.content as Array<{ type: string; mediaType?: string; data?: string }>;
    expect(parts.filter((p) => p.type !== "text")).toEqual([
      expect.objectContaining({ type: "image", mediaType: "image/png", data: png }),
      expect.objectContaining({ type: "file", mediaType: "application/pdf", data: pdf }),
    ]);
    const text = parts.find((p) => p.type === "text") as { text: string } | undefined;
    expect(text?.text).toContain("User: Here is the first.");
    expect(text?.text).toContain("User: And is this one a cat too?");
  });

  it("transcribes input_audio parts with the gateway's transcriber, and refuses them without one", async () => {
    const { transcriber, heard } = recordingTranscriber(() => "a table for two at eight", "noise");
    const stack = await startStack({ responses: [{ text: "Booked." }], gateway: { transcriber } });
    const post = (port: number, content: unknown[]) =>
      call(port, "/v1/chat/completions", {
        method: "POST",
        headers: AUTH,
        body: { model: "beamclaw", messages: [{ role: "user", content }] },
      });
    const clip = (text: string, format = "mp3") => ({
      type: "input_audio",
      input_audio: { data: Buffer.from(text).toString("base64"), format },
    });
    const reply = await post(stack.port, [{ type: "text", text: "please" }, clip("book it")]);
    expect(reply.status).toBe(200);
    expect(heard).toEqual([{ bytes: "book it", mediaType: "audio/mpeg", filename: "audio.mp3" }]);
    expect(stack.provider.requests[0]!.messages.at(-1)).toEqual({
      role: "user",
      content: [
        {
          type: "text",
          text: "please\n\n[audio: audio.mp3, transcribed]\na table for two at eight",
        },
      ],
    });
    const failed = await post(stack.port, [clip("noise", "wav")]);
    expect(failed.status).toBe(503);
    expect(failed.json.error).toMatchObject({ type: "server_error", code: "transcription_failed" });
    const malformed = await post(stack.port, [
      { type: "input_audio", input_audio: { data: "%%" } },
    ]);
    expect(malformed.status).toBe(400);
    expect(malformed.json.error.message).toMatch(/messages\[0\]\.content\[0\]\.input_audio/);
    expect(stack.provider.requests).toHaveLength(1);

    // Without a transcriber the audio is refused, not silently dropped.
    const plain = await startStack();
    const refused = await post(plain.port, [{ type: "text", text: "hi" }, clip("x")]);
    expect(refused.status).toBe(400);
    expect(refused.json.error).toMatchObject({ code: "unsupported_content" });
    expect(plain.provider.requests).toHaveLength(0);
  });

  it("streams a completion as SSE chunks ending in [DONE]", async () => {
    const stack = await startStack({ responses: [{ text: ["Hel", "lo"] }] });
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw/main",
        stream: true,
        messages: [{ role: "user", content: "hello" }],
      },
    });
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toMatch(/^text\/event-stream/);
    const events = sseData(reply.text);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1);
    expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true);
    expect(chunks.map((c) => c.choices[0].delta.content ?? "").join("")).toBe("Hello");
    expect(chunks.at(-1).choices[0].finish_reason).toBe("stop");
  });

  it("keeps a conversation per `user`, and the x-beamclaw-session-key header names the session", async () => {
    const stack = await startStack({
      responses: [{ text: "one" }, { text: "two" }, { text: "three" }],
    });
    const ask = (
      content: string,
      extra: Record<string, unknown> = {},
      headers: Record<string, string> = {},
    ) =>
      call(stack.port, "/v1/chat/completions", {
        method: "POST",
        headers: { ...AUTH, ...headers },
        body: { model: "beamclaw", messages: [{ role: "user", content }], ...extra },
      });
    await ask("first", { user: "alice" });
    await ask("second", { user: "alice" });
    const texts = stack.provider.requests[1]!.messages.map(
      (m) => (m.content[0] as { text?: string }).text,
    );
    expect(texts).toEqual(["first", "one", "second"]);
    await ask("third", {}, { "x-beamclaw-session-key": "agent:main:from-http" });
    expect(await stack.store.sessions.get("agent:main:from-http")).toBeDefined();
    expect(await stack.store.sessions.get("agent:main:openai-user:alice")).toBeDefined();
  });

  it("aborts the run of a streaming client that goes away", async () => {
    const stack = await startStack({ responses: [HANGING_ANSWER] });
    const ends = runEnds(stack);
    await leaveMidStream(stack.port, "/v1/chat/completions", {
      model: "beamclaw",
      stream: true,
      user: "leaver",
      messages: [{ role: "user", content: "go" }],
    });
    const end = await waitFor("the run to end", () => ends[0]);
    expect(end.status).toBe("aborted");
  });

  it("gives a stateless request the whole conversation it sent", async () => {
    const stack = await startStack({ responses: [{ text: "ok" }] });
    await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw",
        messages: [
          { role: "system", content: "Be brief." },
          { role: "user", content: "What is 2+2?" },
          { role: "assistant", content: "4" },
          { role: "user", content: "And 3+3?" },
        ],
      },
    });
    const sent = (stack.provider.requests[0]!.messages[0]!.content[0] as { text: string }).text;
    expect(sent).toBe("System: Be brief.\n\nUser: What is 2+2?\n\nAssistant: 4\n\nUser: And 3+3?");
  });

  it("returns calls of client-supplied function tools as tool_calls", async () => {
    const stack = await startStack({
      responses: [
        { toolCalls: [{ toolCallId: "call_1", toolName: "get_weather", input: { city: "Oslo" } }] },
      ],
    });
    const reply = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw",
        messages: [{ role: "user", content: "Weather in Oslo?" }],
        tools: [
          {
            type: "function",
            function: {
              name: "get_weather",
              description: "Weather",
              parameters: { type: "object", properties: { city: { type: "string" } } },
            },
          },
        ],
      },
    });
    expect(reply.status).toBe(200);
    expect(reply.json.choices[0]).toEqual({
      index: 0,
      message: {
        role: "assistant",
        content: null,
        refusal: null,
        tool_calls: [
          {
            id: "call_1",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Oslo"}' },
          },
        ],
      },
      logprobs: null,
      finish_reason: "tool_calls",
    });
    expect(stack.provider.requests[0]!.tools).toEqual([
      {
        name: "get_weather",
        description: "Weather",
        inputSchema: { type: "object", properties: { city: { type: "string" } } },
      },
    ]);
  });

  it("streams tool calls and sends the client's tool results back to the model", async () => {
    const stack = await startStack({
      responses: [
        { toolCalls: [{ toolCallId: "call_9", toolName: "lookup", input: { q: "x" } }] },
        { text: "found it" },
      ],
    });
    const tools = [
      { type: "function", function: { name: "lookup", parameters: { type: "object" } } },
    ];
    const first = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw",
        stream: true,
        tools,
        messages: [{ role: "user", content: "find x" }],
      },
    });
    const chunks = sseData(first.text).slice(0, -1);
    const call9 = chunks.find((c) => c.choices[0].delta.tool_calls)!.choices[0].delta.tool_calls[0];
    expect(call9).toEqual({
      index: 0,
      id: "call_9",
      type: "function",
      function: { name: "lookup", arguments: '{"q":"x"}' },
    });
    expect(chunks.at(-1).choices[0].finish_reason).toBe("tool_calls");
    const second = await call(stack.port, "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: {
        model: "beamclaw",
        tools,
        messages: [
          { role: "user", content: "find x" },
          {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: "call_9",
                type: "function",
                function: { name: "lookup", arguments: '{"q":"x"}' },
              },
            ],
          },
          { role: "tool", tool_call_id: "call_9", content: "x is here" },
        ],
      },
    });
    expect(second.json.choices[0].message.content).toBe("found it");
    expect(stack.provider.requests[1]!.messages.at(-1)).toEqual({
      role: "tool",
      content: [
        { type: "tool-result", toolCallId: "call_9", toolName: "lookup", output: "x is here" },
      ],
    });
  });

  it("answers errors in OpenAI's shape: unknown model, bad JSON, wrong method, provider failure", async () => {
    const stack = await startStack({
      responses: [
        {
          error: new ProviderError("connect ECONNREFUSED", {
            kind: "network",
            provider: "scripted",
          }),
        },
      ],
    });
    const post = (body: unknown) =>
      call(stack.port, "/v1/chat/completions", { method: "POST", headers: AUTH, body });
    const unknown = await post({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] });
    expect(unknown).toMatchObject({ status: 404, json: { error: { code: "model_not_found" } } });
    expect((await post("{not json")).status).toBe(400);
    expect((await post({ model: "beamclaw", messages: [] })).status).toBe(400);
    expect((await call(stack.port, "/v1/chat/completions", { headers: AUTH })).status).toBe(405);
    const failed = await post({ model: "beamclaw", messages: [{ role: "user", content: "x" }] });
    expect(failed.status).toBe(502);
    expect(failed.json.error.message).toContain("scripted/m1");
    expect(failed.json.error.message).toContain("ECONNREFUSED");
  });

  it("turns the endpoints off when gateway.http says so", async () => {
    const stack = await startStack({
      gateway: { http: { chatCompletions: false, models: false } },
    });
    expect((await call(stack.port, "/v1/models", { headers: AUTH })).status).toBe(404);
    expect(
      (await call(stack.port, "/v1/chat/completions", { method: "POST", headers: AUTH, body: {} }))
        .status,
    ).toBe(404);
  });
});

describe("dashboard", () => {
  it("serves the dashboard's files at / and nothing outside its directory", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-dash-"));
    dirs.push(dir);
    await writeFile(join(dir, "index.html"), "<!doctype html><title>dash</title>");
    await writeFile(join(dir, "app.js"), "console.log(1)");
    const { port } = await startStack({ gateway: { dashboardDir: dir } });
    const index = await call(port, "/");
    expect(index.status).toBe(200);
    expect(index.headers["content-type"]).toMatch(/^text\/html/);
    expect(index.headers["content-security-policy"]).toContain("default-src 'self'");
    expect(index.text).toContain("<title>dash</title>");
    // Its WebSocket may reach its own host only, never any host (`ws: wss:`).
    const connectSrc = (reply: { headers: Record<string, unknown> }) =>
      String(reply.headers["content-security-policy"]).match(/connect-src ([^;]*);/)?.[1];
    expect(connectSrc(index)).toBe(`'self' ws://127.0.0.1:${port} wss://127.0.0.1:${port}`);
    const named = await call(port, "/", { headers: { host: `gw.example.com:${port}` } });
    expect(connectSrc(named)).toBe(
      `'self' ws://gw.example.com:${port} wss://gw.example.com:${port}`,
    );
    const v6 = await call(port, "/", { headers: { host: `[::1]:${port}` } });
    expect(connectSrc(v6)).toBe(`'self' ws://[::1]:${port} wss://[::1]:${port}`);
    // A Host that is not a plain host[:port] is not copied into the policy.
    for (const host of ["evil.example * 'unsafe-inline'", "a.example;script-src *", "*"]) {
      const reply = await call(port, "/", { headers: { host } });
      expect(reply.status).toBe(200);
      expect(connectSrc(reply)).toBe("'self'");
    }
    expect((await call(port, "/app.js")).headers["content-type"]).toMatch(/^text\/javascript/);
    expect((await call(port, "/../package.json")).status).toBe(404);
    expect((await call(port, "/%2e%2e/%2e%2e/etc/passwd")).status).toBe(404);
  });

  it("serves the package's own dashboard by default", async () => {
    const { port } = await startStack();
    const index = await call(port, "/");
    expect(index.status).toBe(200);
    expect(index.text).toContain("BeamClaw");
  });
});

describe("browser origins", () => {
  function upgradeStatus(
    url: string,
    origin: string,
    headers: Record<string, string> = {},
  ): Promise<number> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { origin, headers });
      ws.once("unexpected-response", (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.once("open", () => {
        resolve(101);
        ws.terminate();
      });
      ws.once("error", (error) => {
        if (!String(error.message).includes("Unexpected server response")) reject(error);
      });
    });
  }

  it("refuses a WebSocket opened by a page of another origin, and accepts its own and allowed ones", async () => {
    const stack = await startStack({ gateway: { allowedOrigins: ["https://ops.example.com"] } });
    expect(await upgradeStatus(stack.url, "https://evil.example")).toBe(403);
    expect(await upgradeStatus(stack.url, `http://127.0.0.1:${stack.port}`)).toBe(101);
    expect(await upgradeStatus(stack.url, "https://ops.example.com")).toBe(101);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect((await client.request("health")).ok).toBe(true);
  });

  it("without auth, refuses a Host that is not an address, localhost or an allowed origin's (DNS rebinding)", async () => {
    const stack = await startStack({
      gateway: { auth: { mode: "none" }, allowedOrigins: ["https://ops.example.com"] },
    });
    const { port } = stack;
    // A page at http://rebound.example:<port> whose name now resolves to 127.0.0.1: the browser
    // sends its own name as Host (and as Origin, for a WebSocket or a POST).
    const rebound = `rebound.example:${port}`;
    const api = await call(port, "/v1/models", { headers: { host: rebound } });
    expect(api).toMatchObject({ status: 403, json: { error: { code: "host_not_allowed" } } });
    expect((await call(port, "/", { headers: { host: rebound } })).status).toBe(403);
    const socket = (host: string, origin: string) => upgradeStatus(stack.url, origin, { host });
    expect(await socket(rebound, `http://${rebound}`)).toBe(403);
    // Health probes answer whatever the Host.
    expect((await call(port, "/healthz", { headers: { host: rebound } })).status).toBe(200);
    // Addresses, localhost and allowed origins' hosts are served.
    for (const host of [
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
      `localhost:${port}`,
      "ops.example.com",
    ]) {
      expect((await call(port, "/v1/models", { headers: { host } })).status, host).toBe(200);
    }
    expect(await socket(`localhost:${port}`, `http://localhost:${port}`)).toBe(101);
  });

  it("with a token, leaves the Host to the token: a rebound name still needs it", async () => {
    const { port } = await startStack();
    const host = `rebound.example:${port}`;
    expect((await call(port, "/v1/models", { headers: { host } })).status).toBe(401);
    expect((await call(port, "/v1/models", { headers: { host, ...AUTH } })).status).toBe(200);
  });

  it("refuses API calls from another origin and bodies that are not JSON", async () => {
    const { port } = await startStack();
    const foreign = await call(port, "/v1/models", {
      headers: { ...AUTH, origin: "https://evil.example" },
    });
    expect(foreign).toMatchObject({ status: 403, json: { error: { code: "origin_not_allowed" } } });
    const text = await call(port, "/v1/chat/completions", {
      method: "POST",
      headers: { ...AUTH, "content-type": "text/plain" },
      body: { model: "beamclaw", messages: [{ role: "user", content: "x" }] },
    });
    expect(text.status).toBe(415);
  });
});
