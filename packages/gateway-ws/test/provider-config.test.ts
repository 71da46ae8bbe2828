/**
 * The `providers` section of `beamclaw.yaml` as the standalone gateway builds it: the
 * adapters it makes talk to a local HTTP server standing in for the vendors, which records
 * what they send. Here: `promptCache`, `pricing` of one-hour cache writes, an agent's
 * structured `output` with a compatible server's `structuredOutputs`, and the `google` kind
 * (the Gemini API).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentRuntime, createProviderChain, MemoryStore, parseConfig } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  agentDefinitions,
  configuredSkills,
  costFunction,
  createProviders,
} from "../src/cli/bootstrap.js";
import { doctor } from "../src/cli/doctor.js";

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

const ANTHROPIC_REPLY = [
  'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":5,"output_tokens":1}}}\n\n',
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}\n\n',
  'event: message_stop\ndata: {"type":"message_stop"}\n\n',
].join("");

/** A streamed Chat Completions answer of `content`. */
const chatReply = (content: string) =>
  [
    `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { role: "assistant", content }, finish_reason: "stop" }] })}\n\n`,
    "data: [DONE]\n\n",
  ].join("");

/** A streamed Gemini API answer: one `GenerateContentResponse` chunk with its finish reason. */
const GEMINI_REPLY = `data: ${JSON.stringify({
  candidates: [
    { content: { role: "model", parts: [{ text: "ok" }] }, finishReason: "STOP", index: 0 },
  ],
  usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 1, totalTokenCount: 6 },
  modelVersion: "gemini-2.5-flash",
  responseId: "r1",
})}\r\n\r\n`;

/** What the local vendor saw of one request. */
interface Seen {
  url: string;
  apiKey: string | undefined;
}

/**
 * A local server that records request bodies and answers Anthropic, the Gemini API or Chat
 * Completions (with `chatContent`).
 */
async function vendor(
  chatContent = "ok",
): Promise<{ baseUrl: string; bodies: Array<Record<string, unknown>>; seen: Seen[] }> {
  const bodies: Array<Record<string, unknown>> = [];
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      const url = req.url ?? "";
      const key = req.headers["x-goog-api-key"];
      seen.push({ url, apiKey: typeof key === "string" ? key : undefined });
      res.writeHead(200, { "content-type": "text/event-stream" });
      if (url.endsWith("/messages")) res.end(ANTHROPIC_REPLY);
      else if (url.includes(":streamGenerateContent")) res.end(GEMINI_REPLY);
      else res.end(chatReply(chatContent));
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { baseUrl: `http://127.0.0.1:${port}/v1`, bodies, seen };
}

const request = {
  model: "m",
  system: "Be brief.",
  cacheKey: "digest-of-a-session",
  messages: [{ role: "user" as const, content: [{ type: "text" as const, text: "Hi" }] }],
};

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    // Only the request matters here.
  }
}

describe("providers.*.promptCache", () => {
  it("anthropic: breakpoints by default, none with false, one-hour lifetimes when asked", async () => {
    const { baseUrl, bodies } = await vendor();
    const providers = await createProviders(
      parseConfig({
        agents: [{ id: "main", model: "a/claude-sonnet-4-5" }],
        providers: {
          a: { kind: "anthropic", apiKey: "k", baseUrl },
          off: { kind: "anthropic", apiKey: "k", baseUrl, promptCache: false },
          long: { kind: "anthropic", apiKey: "k", baseUrl, promptCache: { prefixTtl: "1h" } },
        },
      }),
    );
    for (const name of ["a", "off", "long"]) await drain(providers[name]!.stream(request));
    expect(bodies.map((body) => body.system)).toEqual([
      [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
      "Be brief.",
      [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral", ttl: "1h" } }],
    ]);
    expect(JSON.stringify(bodies[1])).not.toContain("cache_control");
  });

  it("openai kinds: prompt_cache_key by default for openai, on request for a compatible server", async () => {
    const { baseUrl, bodies } = await vendor();
    const providers = await createProviders(
      parseConfig({
        agents: [{ id: "main", model: "o/gpt-4.1" }],
        providers: {
          o: { kind: "openai", apiKey: "k", baseUrl },
          quiet: { kind: "openai", apiKey: "k", baseUrl, promptCache: false },
          local: { kind: "openai-compatible", baseUrl },
          routed: { kind: "openai-compatible", baseUrl, promptCache: true },
        },
      }),
    );
    for (const name of ["o", "quiet", "local", "routed"]) {
      await drain(providers[name]!.stream(request));
    }
    expect(bodies.map((body) => body.prompt_cache_key)).toEqual([
      "digest-of-a-session",
      undefined,
      undefined,
      "digest-of-a-session",
    ]);
  });

  it("refuses cache lifetimes for a kind that has none, and a conversation outliving its prefix", () => {
    const parse = (provider: Record<string, unknown>) => () =>
      parseConfig({ agents: [{ id: "main", model: "p/m" }], providers: { p: provider } });
    expect(parse({ kind: "openai", promptCache: { prefixTtl: "1h" } })).toThrow(
      /providers\.p\.promptCache: cache lifetimes are Anthropic's/,
    );
    expect(parse({ kind: "anthropic", promptCache: { conversationTtl: "1h" } })).toThrow(
      /providers\.p\.promptCache\.conversationTtl: conversationTtl "1h" needs prefixTtl "1h"/,
    );
    expect(parse({ kind: "anthropic", promptCache: { prefixTtl: "2h" } })).toThrow(
      /providers\.p\.promptCache/,
    );
  });
});

describe("pricing.*.cacheWrite1hPerMTok", () => {
  it("prices writes to the one-hour cache at their own price", () => {
    const cost = costFunction(
      parseConfig({
        agents: [{ id: "main", model: "a/m" }],
        pricing: {
          "a/m": {
            inputPerMTok: 3,
            outputPerMTok: 15,
            cacheWritePerMTok: 3.75,
            cacheWrite1hPerMTok: 6,
          },
        },
      }),
    )!;
    const usd = cost("a/m", {
      inputTokens: 3_000,
      outputTokens: 0,
      cacheWriteTokens: 3_000,
      cacheWrite1hTokens: 1_000,
    });
    expect(usd).toBeCloseTo((2_000 * 3.75 + 1_000 * 6) / 1e6, 12);
  });

  it("prices a ref pricing does not list from the providers' own price lists", async () => {
    const config = parseConfig({
      agents: [{ id: "main", model: "a/claude-sonnet-4-5" }],
      providers: { a: { kind: "anthropic", apiKey: "k" }, g: { kind: "google", apiKey: "k" } },
      pricing: { "a/claude-sonnet-4-5": { inputPerMTok: 1, outputPerMTok: 1 } },
    });
    const chain = createProviderChain({ providers: await createProviders(config) });
    const cost = costFunction(config, chain)!;
    const usage = { inputTokens: 1_000_000, outputTokens: 0 };
    // Listed in `pricing`: that price, not the built-in $3.
    expect(cost("a/claude-sonnet-4-5", usage)).toBe(1);
    // Not listed: the Google adapter's list price of Gemini 2.5 Flash ($0.30).
    expect(cost("g/gemini-2.5-flash", usage)).toBeCloseTo(0.3, 12);
    expect(cost("g/unknown-model", usage)).toBe(0);
    // Without `pricing`, the runtime asks the chain itself.
    expect(costFunction(parseConfig({ agents: [{ id: "main", model: "a/m" }] }), chain)).toBe(
      undefined,
    );
  });
});

describe("agents.*.output and providers.*.structuredOutputs", () => {
  const schema = {
    type: "object",
    properties: { sentiment: { type: "string", enum: ["positive", "negative"] } },
    required: ["sentiment"],
    additionalProperties: false,
  };

  it("a configured agent's runs ask the server for its JSON Schema and give the validated answer", async () => {
    const { baseUrl, bodies } = await vendor('{"sentiment":"positive"}');
    const config = parseConfig({
      agents: [
        { id: "main", model: "local/m", output: { schema, name: "sentiment" } },
        { id: "plain", model: "bare/m", output: { schema } },
      ],
      providers: {
        local: { kind: "openai-compatible", baseUrl },
        bare: { kind: "openai-compatible", baseUrl, structuredOutputs: false },
      },
    });
    const providers = await createProviders(config);
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: Object.values(providers) }),
      agents: agentDefinitions(config, await configuredSkills(config, process.cwd())),
    });
    await runtime.start();
    try {
      for (const key of ["agent:main:main", "agent:plain:main"]) {
        const result = await (await runtime.session(key).send("Great product")).result;
        expect(result).toMatchObject({ status: "completed", output: { sentiment: "positive" } });
      }
    } finally {
      await runtime.stop();
      await store.close();
    }
    expect(bodies[0]!.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "sentiment", schema, strict: true },
    });
    // structuredOutputs: false sends no format; the answer is validated all the same.
    expect(bodies[1]).not.toHaveProperty("response_format");
  });

  it("an agent's identity reaches its definition, and never the model", async () => {
    const { baseUrl, bodies } = await vendor("Hello.");
    const identity = { name: "Clawd", emoji: "🦞", theme: "space lobster" };
    const config = parseConfig({
      agents: [{ id: "main", model: "local/m", identity }],
      providers: { local: { kind: "openai-compatible", baseUrl } },
    });
    const agents = agentDefinitions(config, await configuredSkills(config, process.cwd()));
    expect(agents[0]?.identity).toEqual(identity);
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: Object.values(await createProviders(config)) }),
      agents,
    });
    await runtime.start();
    try {
      const result = await (await runtime.session("agent:main:main").send("Hi")).result;
      expect(result.status).toBe("completed");
    } finally {
      await runtime.stop();
      await store.close();
    }
    expect(bodies).toHaveLength(1);
    expect(JSON.stringify(bodies[0])).not.toMatch(/Clawd|lobster|🦞/);
  });

  it("refuses structuredOutputs for a kind other than openai-compatible", () => {
    expect(() =>
      parseConfig({
        agents: [{ id: "main", model: "p/m" }],
        providers: { p: { kind: "openai", structuredOutputs: false } },
      }),
    ).toThrow(/providers\.p\.structuredOutputs: only an openai-compatible provider/);
  });
});

describe("providers.*.kind google", () => {
  it("builds a Gemini API provider that sends the key, the model's path and the request", async () => {
    const { baseUrl, bodies, seen } = await vendor();
    const providers = await createProviders(
      parseConfig({
        agents: [{ id: "main", model: "gemini/gemini-2.5-flash" }],
        providers: { gemini: { kind: "google", apiKey: "AIza-test", baseUrl } },
      }),
    );
    const events: Array<{ type: string }> = [];
    for await (const event of providers.gemini!.stream({ ...request, model: "gemini-2.5-flash" })) {
      events.push(event);
    }
    expect(providers.gemini!.id).toBe("gemini");
    expect(events.map((e) => e.type)).toEqual(["response-start", "text-delta", "usage", "finish"]);
    expect(seen).toEqual([
      { url: "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse", apiKey: "AIza-test" },
    ]);
    expect(bodies[0]).toEqual({
      contents: [{ role: "user", parts: [{ text: "Hi" }] }],
      systemInstruction: { parts: [{ text: "Be brief." }] },
    });
  });

  it("vertex: calls the publisher model under the project and location, with the key", async () => {
    const { baseUrl, seen } = await vendor();
    const providers = await createProviders(
      parseConfig({
        agents: [{ id: "main", model: "vertex/gemini-2.5-flash" }],
        providers: {
          vertex: {
            kind: "google",
            apiKey: "AQ.bound-key",
            baseUrl,
            vertex: { project: "my-project", location: "us-central1" },
          },
        },
      }),
    );
    await drain(providers.vertex!.stream({ ...request, model: "gemini-2.5-flash" }));
    expect(seen).toEqual([
      {
        url: "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        apiKey: "AQ.bound-key",
      },
    ]);
  });

  it("refuses vertex for another kind, a location without a project, and a project id that is not one", () => {
    const parse = (provider: Record<string, unknown>) => () =>
      parseConfig({ agents: [{ id: "main", model: "p/m" }], providers: { p: provider } });
    expect(parse({ kind: "openai", vertex: {} })).toThrow(
      /providers\.p\.vertex: only a google provider takes vertex/,
    );
    expect(parse({ kind: "google", vertex: { location: "us-central1" } })).toThrow(
      /providers\.p\.vertex\.location: a location needs a project/,
    );
    expect(parse({ kind: "google", vertex: { project: "../admin" } })).toThrow(
      /providers\.p\.vertex\.project: a Google Cloud project id/,
    );
  });

  it("refuses promptCache: Gemini caches repeated prefixes by itself", () => {
    expect(() =>
      parseConfig({
        agents: [{ id: "main", model: "g/gemini-2.5-flash" }],
        providers: { g: { kind: "google", promptCache: false } },
      }),
    ).toThrow(/providers\.g\.promptCache: a google provider takes no promptCache/);
  });

  it("doctor warns when neither apiKey, GEMINI_API_KEY nor GOOGLE_API_KEY is set", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-google-"));
    const path = join(dir, "beamclaw.yaml");
    await writeFile(
      path,
      [
        "agents:",
        "  - id: main",
        "    model: gemini/gemini-2.5-flash",
        "providers:",
        "  gemini:",
        "    kind: google",
        "store:",
        "  kind: memory",
        "",
      ].join("\n"),
    );
    try {
      const warning =
        "providers.gemini: no apiKey and GEMINI_API_KEY (or GOOGLE_API_KEY) is not set";
      const without = await doctor(path, { env: {} });
      expect(without).toContainEqual({ level: "warn", message: warning });
      const withGoogleKey = await doctor(path, { env: { GOOGLE_API_KEY: "AIza-test" } });
      expect(withGoogleKey.map((f) => f.message)).not.toContain(warning);
      expect(withGoogleKey).toContainEqual({ level: "ok", message: "providers: gemini" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
