/**
 * A Streamable HTTP server's messages are held to the stdio transport's limit (10 MiB): a JSON
 * answer or an SSE event past it fails its call, naming the limit, and the response is closed
 * there (the server sees its connection go before it has written all); a stream of many small
 * events, larger than the limit in all, is read whole. A real HTTP server on 127.0.0.1.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { STDIO_DEFAULT_MAX_BUFFER_SIZE } from "@modelcontextprotocol/sdk/shared/stdio.js";
import { afterEach, describe, expect, it } from "vitest";
import { McpError, McpToolServer } from "../src/index.js";
import { toolContext } from "./support.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const MAX = STDIO_DEFAULT_MAX_BUFFER_SIZE;
/** What an oversized answer would be in all, were it read to its end: three times the limit. */
const HUGE = 3 * MAX;
const CHUNK = "a".repeat(64 * 1024);

async function body(req: IncomingMessage): Promise<string> {
  let text = "";
  for await (const chunk of req) text += String(chunk);
  return text;
}

/**
 * Writes `head`, then `HUGE` bytes of `a`, then `tail`, as the client reads them; resolves
 * true when all was written, false when the client closed the connection first.
 */
async function stream(res: ServerResponse, head: string, tail: string): Promise<boolean> {
  res.write(head);
  for (let sent = 0; sent < HUGE; sent += CHUNK.length) {
    if (res.destroyed) return false;
    if (!res.write(CHUNK)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off("drain", done);
          res.off("close", done);
          resolve();
        };
        res.on("drain", done);
        res.on("close", done);
      });
    }
  }
  if (res.destroyed) return false;
  await new Promise<void>((resolve) => res.end(tail, resolve));
  return true;
}

function answer(id: unknown, text: string): string {
  return JSON.stringify({ jsonrpc: "2.0", id, result: { content: [{ type: "text", text }] } });
}

/** A stateless MCP server, in raw JSON-RPC over HTTP; `ends` tells how each big answer ended. */
async function rawHttpServer() {
  const ends: string[] = [];
  const http = createServer(async (req, res) => {
    if (req.method !== "POST") {
      res.writeHead(405).end();
      return;
    }
    const message = JSON.parse(await body(req));
    if (message.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    const json = (result: unknown) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: message.id, result }));
    };
    if (message.method === "initialize") {
      json({
        protocolVersion: message.params.protocolVersion,
        capabilities: { tools: {} },
        serverInfo: { name: "raw-http", version: "1" },
      });
      return;
    }
    if (message.method === "tools/list") {
      const names = ["ok", "big-json", "big-event", "many-small"];
      json({ tools: names.map((name) => ({ name, inputSchema: { type: "object" } })) });
      return;
    }
    const name = message.params?.name;
    if (name === "ok") {
      json({ content: [{ type: "text", text: "fine" }] });
      return;
    }
    const [head, tail] = answer(message.id, "\u0000").split("\\u0000") as [string, string];
    if (name === "big-json") {
      res.writeHead(200, { "content-type": "application/json" });
      ends.push(`big-json ${(await stream(res, head, tail)) ? "written" : "cut"}`);
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    const log = { jsonrpc: "2.0", method: "notifications/message", params: { level: "info" } };
    if (name === "big-event") {
      res.write(`event: message\ndata: ${JSON.stringify({ ...log, params: { data: "x" } })}\n\n`);
      const written = await stream(res, `event: message\ndata: ${head}`, `${tail}\n\n`);
      ends.push(`big-event ${written ? "written" : "cut"}`);
      return;
    }
    if (name === "many-small") {
      // 1.5 times the limit in all, in events of 16 KiB, with CRLF line ends.
      const event = `data: ${JSON.stringify({ ...log, params: { level: "info", data: "b".repeat(16 * 1024) } })}\r\n\r\n`;
      let sent = 0;
      while (sent < 1.5 * MAX) {
        if (!res.write(event)) await new Promise((resolve) => res.once("drain", resolve));
        sent += event.length;
      }
      res.end(`data: ${answer(message.id, `after ${sent} bytes`)}\r\n\r\n`);
    }
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });
  const { port } = http.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/mcp`, ends };
}

async function connect() {
  const server = await rawHttpServer();
  const mcp = new McpToolServer({ name: "web", url: server.url, connectTimeoutMs: 5_000 });
  cleanups.push(() => mcp.stop());
  await mcp.start();
  const call = async (name: string) =>
    mcp.tools.find((tool) => tool.name === `web__${name}`)!.execute({}, toolContext());
  return { ...server, call };
}

describe("a Streamable HTTP server's messages past 10 MiB", () => {
  it.each([
    ["a JSON answer", "big-json", "its response body"],
    ["an SSE event", "big-event", "an SSE event"],
  ])(
    "%s past the limit fails its call, naming it, and its response is closed there",
    async (_, tool, what) => {
      const { call, ends } = await connect();
      const error = await call(tool).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(McpError.isInstance(error)).toBe(true);
      expect((error as McpError).message).toContain(
        `a message of the server exceeded ${MAX} bytes: ${what} was left unread`,
      );
      await expect.poll(() => ends).toEqual([`${tool} cut`]);
      // The connection to the server is fine: the next call works.
      await expect(call("ok")).resolves.toBe("fine");
    },
  );

  it("a stream of many small events, past the limit in all, is read to its answer", async () => {
    const { call } = await connect();
    const result = await call("many-small");
    expect(result).toMatch(/^after \d+ bytes$/);
  });
});
