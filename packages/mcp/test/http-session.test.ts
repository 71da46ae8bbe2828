/**
 * `McpToolServer` against a stateful Streamable HTTP server on 127.0.0.1 (raw HTTP, no SDK): it
 * hands out an `Mcp-Session-Id` at `initialize`, answers calls as SSE streams (a notification,
 * then the result), answers 404 to a session it no longer knows (expired, or the server
 * restarted), and ends a session on DELETE. The client sends the session id, starts a new
 * session after a 404 (and the call still gets its answer), and ends its session on `stop()`.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { SupervisedToolRunner, ToolRegistry } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { McpToolServer } from "../src/index.js";
import { toolContext } from "./support.js";

interface Stateful {
  url: string;
  /** Live sessions; clearing it expires them. */
  sessions: Set<string>;
  /** Session ids ended by DELETE. */
  deleted: string[];
  /** The session id each `tools/call` came with (one it does not know too). */
  calls: Array<string | undefined>;
  /** Break the connection of every `tools/call` after it arrived. */
  breakCalls: boolean;
  /**
   * How a session it does not know is answered: 404 (as the protocol asks), or 400 with this
   * text (as the MCP Python SDK's session manager, and servers after the TypeScript SDK's
   * example, answer).
   */
  unknownSession: { status: 404 } | { status: 400; text: string };
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function body(req: IncomingMessage): Promise<string> {
  let text = "";
  for await (const chunk of req) text += String(chunk);
  return text;
}

async function statefulServer(): Promise<Stateful> {
  const state: Omit<Stateful, "url"> = {
    sessions: new Set(),
    deleted: [],
    calls: [],
    breakCalls: false,
    unknownSession: { status: 404 },
  };
  let next = 0;
  const http: Server = createServer(async (req, res) => {
    const session = req.headers["mcp-session-id"] as string | undefined;
    if (req.method === "DELETE") {
      if (session !== undefined) {
        state.sessions.delete(session);
        state.deleted.push(session);
      }
      res.writeHead(200).end();
      return;
    }
    if (req.method !== "POST") {
      res.writeHead(405).end();
      return;
    }
    const message = JSON.parse(await body(req));
    if (message.method === "initialize") {
      const id = `s${++next}`;
      state.sessions.add(id);
      res.writeHead(200, { "content-type": "application/json", "mcp-session-id": id });
      res.end(
        JSON.stringify({
          jsonrpc: "2.0",
          id: message.id,
          result: {
            protocolVersion: message.params.protocolVersion,
            capabilities: { tools: {} },
            serverInfo: { name: "stateful", version: "1" },
          },
        }),
      );
      return;
    }
    if (message.method === "tools/call") state.calls.push(session);
    if (session === undefined || !state.sessions.has(session)) {
      if (state.unknownSession.status === 400) {
        res.writeHead(400, { "content-type": "text/plain" }).end(state.unknownSession.text);
        return;
      }
      res.writeHead(404, { "content-type": "application/json" });
      res.end(
        JSON.stringify({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" } }),
      );
      return;
    }
    if (message.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    if (message.method === "tools/list") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          jsonrpc: "2.0",
          id: message.id,
          result: { tools: [{ name: "whoami", inputSchema: { type: "object" } }] },
        }),
      );
      return;
    }
    if (message.method === "tools/call") {
      if (state.breakCalls) {
        // The call arrived; the connection breaks before any answer.
        req.socket.destroy();
        return;
      }
      // An SSE stream with two messages: a log notification, then the result.
      res.writeHead(200, { "content-type": "text/event-stream" });
      const log = {
        jsonrpc: "2.0",
        method: "notifications/message",
        params: { level: "info", data: "working" },
      };
      const result = {
        jsonrpc: "2.0",
        id: message.id,
        result: { content: [{ type: "text", text: `session ${session}` }] },
      };
      res.write(`event: message\ndata: ${JSON.stringify(log)}\n\n`);
      res.end(`event: message\ndata: ${JSON.stringify(result)}\n\n`);
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ jsonrpc: "2.0", id: message.id, result: {} }));
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise((resolve) => {
        http.closeAllConnections();
        http.close(resolve);
      }),
  );
  const { port } = http.address() as { port: number };
  // The state itself (not a copy), so that a test can change `breakCalls`.
  return Object.assign(state, { url: `http://127.0.0.1:${port}/mcp` });
}

async function started(url: string) {
  const server = new McpToolServer({ name: "web", url, connectTimeoutMs: 5_000 });
  cleanups.push(() => server.stop());
  await server.start();
  const whoami = server.tools.find((t) => t.name === "web__whoami")!;
  return { server, call: () => whoami.execute({}, toolContext()) };
}

describe("a stateful Streamable HTTP server", () => {
  it("gets the session id with every call, and its SSE answer is read past a notification", async () => {
    const http = await statefulServer();
    const { call } = await started(http.url);
    expect(await call()).toBe("session s1");
    expect(http.calls).toEqual(["s1"]);
  });

  it("a session that expired (404) is started again, and the call gets its answer", async () => {
    const http = await statefulServer();
    const { call } = await started(http.url);
    expect(await call()).toBe("session s1");
    http.sessions.clear(); // expired on the server: it answers 404 to s1 from now on
    expect(await call()).toBe("session s2");
    expect(await call()).toBe("session s2");
  });

  it("a session it no longer knows, answered 400 naming the session, is started again too", async () => {
    // The MCP Python SDK's answer to a session id it does not know (a server restarted), and
    // the TypeScript SDK's transport's, new after a restart, to a request before `initialize`.
    for (const text of [
      "Bad Request: No valid session ID provided",
      "Bad Request: Server not initialized",
    ]) {
      const http = await statefulServer();
      const { call } = await started(http.url);
      expect(await call()).toBe("session s1");
      http.unknownSession = { status: 400, text };
      http.sessions.clear();
      expect(await call()).toBe("session s2");
      expect(await call()).toBe("session s2");
      expect(http.calls).toEqual(["s1", "s1", "s2", "s2"]);
    }
  });

  it("a 400 that says nothing of the session fails the call, which is not sent again", async () => {
    const http = await statefulServer();
    const { call } = await started(http.url);
    expect(await call()).toBe("session s1");
    http.unknownSession = { status: 400, text: "Bad Request: invalid JSON-RPC message" };
    http.sessions.clear();
    await expect(Promise.resolve(call())).rejects.toThrow(/HTTP 400: .*invalid JSON-RPC message/);
    expect(http.calls).toEqual(["s1", "s1"]);
  });

  it("stop() ends the session with a DELETE carrying its id", async () => {
    const http = await statefulServer();
    const { server, call } = await started(http.url);
    expect(await call()).toBe("session s1");
    await server.stop();
    expect(http.deleted).toEqual(["s1"]);
  });

  it("a call whose connection breaks after it was sent is not run again by the tool layer", async () => {
    const http = await statefulServer();
    const { server } = await started(http.url);
    const registry = new ToolRegistry(server.tools);
    const runner = new SupervisedToolRunner({
      registry,
      resolveAgent: () => ({ id: "main", model: "test/m", tools: ["*"] }),
      retryBaseDelayMs: 1,
      maxRetries: 3,
    });
    http.breakCalls = true;
    const result = await runner.execute(
      { type: "tool-call", toolCallId: "c", toolName: "web__whoami", input: {} },
      toolContext(),
    );
    expect(result.isError).toBe(true);
    expect(http.calls).toEqual(["s1"]);
  });
});
