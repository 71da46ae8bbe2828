/**
 * The OpenAI-compatible provider against a real HTTP server on 127.0.0.1 (no msw): real
 * sockets, real chunking, a real cancelled connection.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { AbortedError } from "@beamclaw/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider, type FetchFunction } from "../src/index.js";
import {
  collect,
  collectFailure,
  expectWellFormed,
  fixture,
  textOf,
  thinkingOf,
  userText,
} from "./support.js";

interface Received {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingMessage["headers"];
  body: Record<string, unknown>;
}

const received: Received[] = [];
let closedConnections: Array<() => void> = [];
let server: Server;
let baseUrl: string;

async function readBody(req: IncomingMessage): Promise<string> {
  let text = "";
  for await (const chunk of req) text += chunk;
  return text;
}

/** Writes `text` in small pieces across event-loop turns, as a model server does. */
async function writeSlowly(res: ServerResponse, text: string): Promise<void> {
  for (let i = 0; i < text.length; i += 37) {
    res.write(text.slice(i, i + 37));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = JSON.parse(await readBody(req)) as Record<string, unknown>;
  received.push({ method: req.method, url: req.url, headers: req.headers, body });
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const stream = fixture("ollama-chat.sse.txt");
  if (body.model === "stalls") {
    // First event only, then silence until the client goes away.
    res.write(stream.slice(0, stream.indexOf("\n\n") + 2));
    res.on("close", () => {
      for (const notify of closedConnections) notify();
    });
    return;
  }
  await writeSlowly(res, stream);
  if (body.model === "late-end") {
    // The end of the response comes in a later packet than `data: [DONE]`, as it often does
    // from a vendor behind a proxy.
    await new Promise((resolve) => setTimeout(resolve, 10));
    res.end();
    return;
  }
  res.end();
}

beforeAll(async () => {
  server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      res.destroy(error as Error);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe("createOpenAICompatibleProvider against a local Ollama-style server", () => {
  it("streams reasoning, text, usage and finish over a real socket", async () => {
    const ollama = createOpenAICompatibleProvider({ id: "ollama", baseUrl });
    const events = await collect(
      ollama.stream({ model: "qwen3:8b", system: "Be kind.", messages: [userText("Hi")] }),
    );
    expectWellFormed(events);
    expect(thinkingOf(events)).toBe("The user greets me. I should greet back.");
    expect(textOf(events)).toBe("Hello there!");
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "stop" });
    const request = received.at(-1)!;
    expect(request.method).toBe("POST");
    expect(request.url).toBe("/v1/chat/completions");
    expect(request.headers["content-type"]).toBe("application/json");
    expect(request.headers.authorization).toBeUndefined();
    expect(request.body).toMatchObject({
      model: "qwen3:8b",
      stream: true,
      messages: [
        { role: "system", content: "Be kind." },
        { role: "user", content: "Hi" },
      ],
    });
  });

  it("aborting mid-stream closes the connection on the server", async () => {
    const serverSawClose = new Promise<void>((resolve) => {
      closedConnections = [resolve];
    });
    const controller = new AbortController();
    const ollama = createOpenAICompatibleProvider({ baseUrl });
    const failure = await (async () => {
      for await (const event of ollama.stream(
        { model: "stalls", messages: [userText("Hi")] },
        { signal: controller.signal },
      )) {
        if (event.type === "response-start") controller.abort();
      }
    })().catch((e: unknown) => e);
    expect(AbortedError.isInstance(failure)).toBe(true);
    await expect(serverSawClose).resolves.toBeUndefined();
  });

  it("sequential calls reuse one keep-alive connection, even when the response ends after [DONE]", async () => {
    // A server of its own: no connection that earlier tests left in the client's pool counts.
    const own = createServer((req, res) => {
      handle(req, res).catch((error: unknown) => res.destroy(error as Error));
    });
    let ownConnections = 0;
    own.on("connection", () => {
      ownConnections++;
    });
    await new Promise<void>((resolve) => own.listen(0, "127.0.0.1", resolve));
    try {
      // Tells when the client has read each response to its end: the connection is then back
      // in the pool, ready for the next call.
      let bodyRead: () => void = () => {};
      const fetchWatched: FetchFunction = async (input, init) => {
        const response = await fetch(input, init);
        if (response.body === null) return response;
        const watched = response.body.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({ flush: () => bodyRead() }),
        );
        return new Response(watched, response);
      };
      const ollama = createOpenAICompatibleProvider({
        baseUrl: `http://127.0.0.1:${(own.address() as AddressInfo).port}/v1`,
        fetch: fetchWatched,
      });
      for (let i = 0; i < 5; i++) {
        const read = new Promise<void>((resolve) => {
          bodyRead = resolve;
        });
        const events = await collect(
          ollama.stream({ model: "late-end", messages: [userText(`Hi ${i}`)] }),
        );
        expect(textOf(events)).toBe("Hello there!");
        // The end of the response comes after [DONE]; the provider reads it in the background.
        await read;
        // undici hands the connection out again from a setImmediate that it queues as the
        // response completes, before the body's end reaches us: this one runs after it.
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(ownConnections).toBe(1);
    } finally {
      own.closeAllConnections();
      await new Promise<void>((resolve) => own.close(() => resolve()));
    }
  });

  it("a refused connection is a retryable network error", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const ollama = createOpenAICompatibleProvider({ baseUrl: `http://127.0.0.1:${port}/v1` });
    const { error } = await collectFailure(
      ollama.stream({ model: "qwen3:8b", messages: [userText("Hi")] }),
    );
    expect(error.kind).toBe("network");
    expect(error.isRetryable).toBe(true);
    expect(error.message).toMatch(/ECONNREFUSED|fetch failed/);
  });
});
