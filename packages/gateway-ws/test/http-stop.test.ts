/**
 * A gateway stopped while OpenAI-compatible answers run, over real sockets, as `beamclaw
 * gateway` runs: the fs store, a local OpenAI-compatible model server that streams a token
 * every few ms and never finishes, and the official `openai` SDK as the client.
 *
 * - Once `drainTimeoutMs` runs out the run is aborted, and its stream still ends cleanly (an
 *   error event, then the end of the response) before the sockets close: the SDK reports an
 *   `APIError` naming the abort (or the Responses API's `response.failed`), not a cut
 *   connection (`curl` exit 18).
 * - A gateway that goes without stopping (a forced exit, a crash) leaves its unfinished
 *   messages in the store's durable queue. The next start replays those of kept sessions
 *   (`user`, a session header), but not a stateless request's: nobody would read its answer.
 *   The forced exit is the store's directory copied while the answer streams (the store is
 *   crash-safe: what a kill leaves is what is on disk), its lock file left out.
 */
import { cp, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentRuntime, createProviderChain } from "@beamclaw/core";
import { createOpenAICompatibleProvider } from "@beamclaw/providers";
import { createFsStore, type FsStore } from "@beamclaw/store-fs";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, type GatewayServer } from "../src/index.js";
import { TOKEN, waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A local server answering `POST /v1/chat/completions` with a stream that never finishes: a
 * chunk every 20 ms (Chat Completions' streaming format) until the request is dropped.
 */
async function endlessModel(): Promise<{ baseUrl: string; calls: () => number }> {
  let calls = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      calls++;
      res.writeHead(200, { "content-type": "text/event-stream" });
      const base = { id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model: "m" };
      const timer = setInterval(() => {
        res.write(
          `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: "tok " }, finish_reason: null }] })}\n\n`,
        );
      }, 20);
      res.on("close", () => clearInterval(timer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as { port: number };
  return { baseUrl: `http://127.0.0.1:${port}/v1`, calls: () => calls };
}

/** A new temporary directory, removed after the test. */
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "bc-stop-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A runtime over an fs store in `dir` and a gateway in front of it, on `baseUrl`'s model. */
async function startGateway(
  baseUrl: string,
  dir?: string,
): Promise<{ gateway: GatewayServer; port: number; runtime: AgentRuntime; store: FsStore }> {
  const store = createFsStore({ dir: dir ?? (await tempDir()) });
  await store.open();
  const models = createProviderChain({
    providers: [createOpenAICompatibleProvider({ id: "local", baseUrl, apiKey: "none" })],
    retry: { maxAttempts: 1 },
    circuitBreaker: false,
  });
  const runtime = new AgentRuntime({
    store,
    models,
    agents: [{ id: "main", model: "local/llama3" }],
  });
  await runtime.start();
  const gateway = createGateway({
    runtime,
    models,
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    tickIntervalMs: 60_000,
    dashboardDir: false,
    http: { responses: true },
  });
  const { port } = await gateway.start();
  cleanups.push(async () => {
    await gateway.stop();
    await runtime.stop();
    await store.close();
  });
  return { gateway, port, runtime, store };
}

function sdk(port: number): OpenAI {
  return new OpenAI({ apiKey: TOKEN, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
}

/**
 * Reads `stream` to its end, stopping `gateway` (drain 100 ms) once some text came: what it
 * gave, its event types and the error it ended with.
 */
async function readWhileStopping(
  gateway: GatewayServer,
  stream: AsyncIterable<unknown>,
  textOf: (event: unknown) => string,
): Promise<{ text: string; types: string[]; error: unknown }> {
  let text = "";
  const types: string[] = [];
  let stopping: Promise<void> | undefined;
  let error: unknown;
  try {
    for await (const event of stream) {
      types.push(String((event as { type?: unknown }).type ?? "chunk"));
      text += textOf(event);
      if (text.length > 0) stopping ??= gateway.stop({ drainTimeoutMs: 100 });
    }
  } catch (e) {
    error = e;
  }
  await stopping;
  return { text, types, error };
}

describe("a gateway stopped past drainTimeoutMs while an answer streams", () => {
  for (const user of [undefined, "alice"]) {
    it(`ends a /v1/chat/completions stream with an error the SDK reads (user ${user ?? "none"})`, async () => {
      const model = await endlessModel();
      const { gateway, port } = await startGateway(model.baseUrl);
      const stream = await sdk(port).chat.completions.create({
        model: "beamclaw",
        stream: true,
        messages: [{ role: "user", content: "go" }],
        ...(user === undefined ? {} : { user }),
      });
      const read = await readWhileStopping(
        gateway,
        stream,
        (e) => (e as OpenAI.ChatCompletionChunk).choices[0]?.delta.content ?? "",
      );
      expect(read.text).toMatch(/^(tok )+$/);
      // An error event of the stream, not a cut connection (`APIConnectionError`, "terminated").
      expect(read.error).toBeInstanceOf(OpenAI.APIError);
      expect(read.error).not.toBeInstanceOf(OpenAI.APIConnectionError);
      expect((read.error as Error).message).toMatch(/abort/i);
    });
  }

  it("ends a stream of a request with its own tools (one model call, no session run) the same way", async () => {
    const model = await endlessModel();
    const { gateway, port } = await startGateway(model.baseUrl);
    const stream = await sdk(port).chat.completions.create({
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: "go" }],
      tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }],
    });
    const began = performance.now();
    const read = await readWhileStopping(
      gateway,
      stream,
      (e) => (e as OpenAI.ChatCompletionChunk).choices[0]?.delta.content ?? "",
    );
    expect(read.text).toMatch(/^(tok )+$/);
    expect(read.error).toBeInstanceOf(OpenAI.APIError);
    expect(read.error).not.toBeInstanceOf(OpenAI.APIConnectionError);
    expect((read.error as Error).message).toMatch(/shutting down/);
    // Ended at the drain's end, not held until the stop's wait for answers runs out (5 s).
    expect(performance.now() - began).toBeLessThan(3_000);
  });

  it("ends a /v1/responses stream with a response.failed the SDK reads", async () => {
    const model = await endlessModel();
    const { gateway, port } = await startGateway(model.baseUrl);
    const stream = await sdk(port).responses.create({
      model: "beamclaw",
      stream: true,
      input: "go",
    });
    const read = await readWhileStopping(gateway, stream, (e) => {
      const event = e as OpenAI.Responses.ResponseStreamEvent;
      return event.type === "response.output_text.delta" ? event.delta : "";
    });
    expect(read.text).toMatch(/^(tok )+$/);
    expect(read.error).toBeUndefined();
    expect(read.types.at(-1)).toBe("response.failed");
  });
});

describe("a gateway that went without stopping (a forced exit, a crash)", () => {
  /**
   * Starts a streaming chat completion on a gateway, and once its answer streams copies the
   * store's directory (the forced exit); starts a second gateway on the copy, on a model
   * server of its own. Returns that gateway and how often its model was called.
   */
  async function restartAfterForcedExit(body: Record<string, unknown>) {
    const first = await endlessModel();
    const dir = await tempDir();
    const { port } = await startGateway(first.baseUrl, dir);
    const stream = await sdk(port).chat.completions.create({
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: "go" }],
      ...body,
    });
    const copy = await tempDir();
    for await (const chunk of stream) {
      if ((chunk.choices[0]?.delta.content ?? "").length === 0) continue;
      await cp(dir, copy, {
        recursive: true,
        filter: (source) => !source.endsWith("store.lock"),
      });
      break;
    }
    const second = await endlessModel();
    const restarted = await startGateway(second.baseUrl, copy);
    return { ...restarted, calls: second.calls };
  }

  it("does not run a stateless chat (no user, no session header) again: nothing stays queued", async () => {
    const { store, calls } = await restartAfterForcedExit({});
    await waitFor("the unfinished message to leave the queue", async () =>
      (await store.queue.pending()).length === 0 ? true : undefined,
    );
    // Long enough for a replayed run to have reached the model.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(calls()).toBe(0);
    expect(await store.queue.pending()).toEqual([]);
  });

  it("replays a kept session's (user) unfinished turn, as before", async () => {
    const { store, calls } = await restartAfterForcedExit({ user: "alice" });
    await waitFor("the replayed run to call the model", () => (calls() === 1 ? true : undefined));
    const pending = await store.queue.pending();
    expect(pending.map((m) => m.sessionKey)).toEqual(["agent:main:openai-user:alice"]);
  });
});
