/**
 * Streamable HTTP gaps: a 404 to a request that carried no `Mcp-Session-Id` is no expired
 * session (a wrong URL): the call fails naming the status and URL, and is not sent again; an
 * SSE stream cancelled at the 10 MiB limit is not fetched again by the MCP SDK's reconnection
 * (a GET with its `Last-Event-ID`). Real HTTP servers on 127.0.0.1.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { STDIO_DEFAULT_MAX_BUFFER_SIZE } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";
import { afterEach, describe, expect, it } from "vitest";
import { closingCancelledFetch } from "../src/http-fetch.js";
import { McpError, McpToolServer } from "../src/index.js";
import { listen, toolContext } from "./support.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const MAX = STDIO_DEFAULT_MAX_BUFFER_SIZE;

async function body(req: IncomingMessage): Promise<string> {
  let text = "";
  for await (const chunk of req) text += String(chunk);
  return text;
}

function json(res: ServerResponse, message: unknown): void {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(message));
}

function initialized(message: { id: unknown; params: { protocolVersion: string } }) {
  return {
    jsonrpc: "2.0",
    id: message.id,
    result: {
      protocolVersion: message.params.protocolVersion,
      capabilities: { tools: {} },
      serverInfo: { name: "gaps", version: "1" },
    },
  };
}

describe("an HTTP 404 to a request that carried no session id", () => {
  /**
   * A stateless server (no session ids) whose `gone` tool's calls get 404 (its route moved);
   * `seen` counts the requests by method.
   */
  async function stateless() {
    const seen: Record<string, number> = {};
    const base = await listen(cleanups, async (req, res) => {
      if (req.method !== "POST") {
        res.writeHead(405).end();
        return;
      }
      const message = JSON.parse(await body(req));
      const what = message.method === "tools/call" ? `call ${message.params.name}` : message.method;
      seen[what] = (seen[what] ?? 0) + 1;
      if (message.id === undefined) res.writeHead(202).end();
      else if (message.method === "initialize") json(res, initialized(message));
      else if (message.method === "tools/list") {
        const tools = ["gone", "ok"].map((name) => ({ name, inputSchema: { type: "object" } }));
        json(res, { jsonrpc: "2.0", id: message.id, result: { tools } });
      } else if (message.params?.name === "gone") {
        res.writeHead(404, { "content-type": "text/plain" }).end("Cannot POST /mcp");
      } else {
        json(res, {
          jsonrpc: "2.0",
          id: message.id,
          result: { content: [{ type: "text", text: "ok" }] },
        });
      }
    });
    return { base, seen };
  }

  it("fails the call naming the status and the URL (no query), and does not send it again", async () => {
    const { base, seen } = await stateless();
    const server = new McpToolServer({
      name: "web",
      url: `${base}/mcp?key=s3cret`,
      connectTimeoutMs: 5_000,
    });
    cleanups.push(() => server.stop());
    await server.start();
    const gone = server.tools.find((t) => t.name === "web__gone")!;
    const error = await Promise.resolve(gone.execute({}, toolContext())).then(
      () => undefined,
      (e: unknown) => e,
    );
    // Sent once; no new connection (no second initialize).
    expect(seen["call gone"]).toBe(1);
    expect(seen.initialize).toBe(1);
    expect(McpError.isInstance(error)).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain(`HTTP 404 Not Found from ${base}/mcp:`);
    expect(message).toContain("no session id");
    expect(message).not.toContain("s3cret");
    // The connection is fine: the next call works on it.
    await expect(
      server.tools.find((t) => t.name === "web__ok")!.execute({}, toolContext()),
    ).resolves.toBe("ok");
    expect(seen.initialize).toBe(1);
  });

  it("a wrong URL: start() fails naming the status and the URL", async () => {
    // Nothing there answers MCP: 404 to every request.
    const wrong = await listen(cleanups, (_req, res) => {
      res.writeHead(404, { "content-type": "text/plain" }).end("Not Found");
    });
    const server = new McpToolServer({ name: "web", url: `${wrong}/mpc`, connectTimeoutMs: 5_000 });
    cleanups.push(() => server.stop());
    const error = await server.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(McpError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain(`HTTP 404 Not Found from ${wrong}/mpc:`);
  });
});

describe("an SSE stream cancelled at the limit", () => {
  /**
   * A resumable server: a call's answer is an SSE stream with a priming event (an id, and a
   * short `retry`), then an event of three times the limit; a GET with a `Last-Event-ID`
   * replays that event (as a server with an event store does). `resumes` counts those GETs.
   */
  async function resumable() {
    const counts = { resumes: 0 };
    const big = async (res: ServerResponse) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("id: e1\nretry: 10\ndata: \n\n");
      res.write("id: e2\nevent: message\ndata: ");
      const chunk = "a".repeat(64 * 1024);
      for (let sent = 0; sent < 3 * MAX && !res.destroyed; sent += chunk.length) {
        if (!res.write(chunk)) {
          await new Promise<void>((resolve) => {
            res.once("drain", resolve);
            res.once("close", resolve);
          });
        }
      }
      if (!res.destroyed) res.end("\n\n");
    };
    const base = await listen(cleanups, async (req, res) => {
      if (req.method === "GET") {
        if (req.headers["last-event-id"] === undefined) {
          res.writeHead(405).end(); // no stream of its own
          return;
        }
        counts.resumes++;
        await big(res);
        return;
      }
      if (req.method !== "POST") {
        res.writeHead(405).end();
        return;
      }
      const message = JSON.parse(await body(req));
      if (message.id === undefined) res.writeHead(202).end();
      else if (message.method === "initialize") json(res, initialized(message));
      else if (message.params?.name === "big") await big(res);
      else
        json(res, {
          jsonrpc: "2.0",
          id: message.id,
          result: { content: [{ type: "text", text: "ok" }] },
        });
    });
    return { url: `${base}/mcp`, counts };
  }

  it("the SDK's reconnection to it is answered here, and the server gets no request for it", async () => {
    const server = await resumable();
    // What the transport asks of the fetch: each resumption (a GET with a Last-Event-ID),
    // and the response it got.
    const resumptions: Array<Promise<Response>> = [];
    const limited = closingCancelledFetch();
    const observed: FetchLike = (url, init) => {
      const response = limited(url, init);
      if (init?.method === "GET" && new Headers(init.headers).has("last-event-id")) {
        resumptions.push(response);
      }
      return response;
    };
    const transport = new StreamableHTTPClientTransport(new URL(server.url), { fetch: observed });
    const client = new Client({ name: "test", version: "1" });
    cleanups.push(() => client.close());
    await client.connect(transport);
    const call = (name: string) =>
      client.callTool({ name, arguments: {} }, undefined, { timeout: 30_000 });
    await expect(call("big")).rejects.toThrow(
      `a message of the server exceeded ${MAX} bytes: an SSE event was left unread`,
    );
    // The SDK tries to resume the stream after its last event (e1)...
    await expect.poll(() => resumptions.length).toBeGreaterThan(0);
    // ...and is answered 405 (no stream: not retried) without asking the server.
    expect((await resumptions[0]!).status).toBe(405);
    expect(server.counts.resumes).toBe(0);
    // The connection is fine.
    await expect(call("ok")).resolves.toMatchObject({ content: [{ text: "ok" }] });
    expect(server.counts.resumes).toBe(0);
    expect(resumptions).toHaveLength(1);
  });
});

describe("the SSE limit's scan of event boundaries", () => {
  const encoder = new TextEncoder();
  /** Events with LF, CRLF and CR line ends, then one past the limit (40 bytes), then one more. */
  const small = ["data: a\n\n", "id: 7\r\ndata: bb\r\n\r\n", ": note\rdata: c\r\r"];
  const INPUT = `${small.join("")}data: ${"x".repeat(50)}\n\ndata: after\n\n`;
  const answer = `event: message\ndata: ${JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    error: {
      code: -32603,
      message: "a message of the server exceeded 40 bytes: an SSE event was left unread",
    },
  })}\n\n`;

  /**
   * What a request's SSE stream comes to through the limit of 40 bytes when its bytes come in
   * `chunks`, and whether a GET resuming after event `7` then reaches the server.
   */
  async function through(chunks: Uint8Array[]) {
    let resumedAtServer = false;
    const base: FetchLike = async (_url, init) => {
      if (init?.method === "GET") {
        resumedAtServer = true;
        return new Response(null, { status: 204 });
      }
      const parts = [...chunks];
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          const next = parts.shift();
          if (next === undefined) controller.close();
          else controller.enqueue(next);
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    };
    const limited = closingCancelledFetch(base, 40);
    const request = { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "x" } };
    const response = await limited("http://127.0.0.1:1/mcp", {
      method: "POST",
      body: JSON.stringify(request),
    });
    const text = await response.text();
    const resumed = await limited("http://127.0.0.1:1/mcp", {
      method: "GET",
      headers: { "last-event-id": "7" },
    });
    return { text, resumedStatus: resumed.status, resumedAtServer };
  }

  const bytes = encoder.encode(INPUT);
  const expected = `${small.join("")}${answer}`;
  /** `bytes` in two chunks, split at every place (through a CRLF, between two line ends). */
  const splits = Array.from({ length: bytes.length - 1 }, (_, i) => [
    bytes.subarray(0, i + 1),
    bytes.subarray(i + 1),
  ]);

  it("in one chunk: the events under the limit pass whole, the one past it becomes the error answer", async () => {
    expect((await through([bytes])).text).toBe(expected);
  });

  it("split anywhere in two chunks: the same", async () => {
    for (const [i, chunks] of splits.entries()) {
      expect((await through(chunks)).text, `split after byte ${i + 1}`).toBe(expected);
    }
  });

  it("a byte a chunk: the same", async () => {
    const chunks = [...bytes].map((byte) => Uint8Array.of(byte));
    expect((await through(chunks)).text).toBe(expected);
  });

  it("however it is split, a GET resuming it after its last event id is answered 405 here", async () => {
    const chunks = [...bytes].map((byte) => Uint8Array.of(byte));
    for (const [i, split] of [[bytes], chunks, ...splits].entries()) {
      const { resumedStatus, resumedAtServer } = await through(split);
      expect({ resumedStatus, resumedAtServer }, `case ${i}`).toEqual({
        resumedStatus: 405,
        resumedAtServer: false,
      });
    }
  });

  it("a stream of no request: events before the one past the limit, then its error", async () => {
    const parts = [bytes.subarray(0, 30), bytes.subarray(30)];
    const base: FetchLike = async () =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            const next = parts.shift();
            if (next === undefined) controller.close();
            else controller.enqueue(next);
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    const response = await closingCancelledFetch(base, 40)("http://127.0.0.1:1/mcp", {
      method: "GET",
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const error = await (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return undefined;
        text += value;
      }
    })().catch((e: unknown) => e);
    // What came before it, or a part of it (an error drops what its reader had not read yet).
    expect(small.join("").startsWith(text)).toBe(true);
    expect((error as Error).message).toBe(
      "a message of the server exceeded 40 bytes: an SSE event was left unread",
    );
  });
});
