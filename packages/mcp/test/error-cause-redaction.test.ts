/**
 * An `McpError` is safe to log whole: not only its message but its `cause` chain (a redacted
 * copy of the error that caused it) shows no URL's userinfo or query values and no configured
 * header's value, however it is logged (`util.inspect`, JSON of each link). The copy keeps what
 * the error said otherwise: its class, its code, its nested causes. Real HTTP servers and a
 * closed port on 127.0.0.1, and Node's own fetch.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { inspect } from "node:util";
import { isTransientError } from "@beamclaw/core";
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterEach, describe, expect, it } from "vitest";
import { McpError, McpToolServer } from "../src/index.js";
import { listen, toolContext } from "./support.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const QUERY_SECRET = "secret-query-7f3a";
const HEADER_SECRET = "secret-header-91bc";
const USERINFO_SECRET = "secret-userinfo-55d2";
const SECRETS = new RegExp(`${QUERY_SECRET}|${HEADER_SECRET}|${USERINFO_SECRET}`);

/**
 * A server of `base` (`http://127.0.0.1:<port>`) whose URL has a token in its query and whose
 * `Authorization` header has another; stopped after the test.
 */
function withSecrets(base: string): McpToolServer {
  const server = new McpToolServer({
    name: "web",
    url: `${base}/mcp?token=${QUERY_SECRET}`,
    headers: { Authorization: `Bearer ${HEADER_SECRET}` },
    connectTimeoutMs: 5_000,
  });
  cleanups.push(() => server.stop());
  return server;
}

/** A port of 127.0.0.1 nothing listens on (one just listened on and closed). */
async function closedPort(): Promise<number> {
  const http = createServer();
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const { port } = http.address() as AddressInfo;
  await new Promise((resolve) => http.close(resolve));
  return port;
}

/** What a server that quotes everything it got says: the URL, the header, a link with a login. */
function quoting(req: IncomingMessage): string {
  return `refused POST ${req.url} (Authorization: ${req.headers.authorization}); sign in at http://admin:${USERINFO_SECRET}@127.0.0.1/login?next=${QUERY_SECRET}`;
}

/**
 * Every way a logger shows an error: `util.inspect` deep (what `console.error` prints, cause
 * chain included), and JSON of each link of the chain (its name, message, stack and own
 * enumerable fields, as an error serializer writes them; `JSON.stringify` of the link itself).
 */
function logged(error: unknown): string {
  const texts = [inspect(error, { depth: 10 }), inspect(error, { depth: 10, showHidden: true })];
  for (let link = error; link instanceof Error; link = link.cause) {
    texts.push(
      JSON.stringify({ ...link, name: link.name, message: link.message, stack: link.stack }),
      JSON.stringify(link),
    );
  }
  return texts.join("\n");
}

async function failure(promise: Promise<unknown>): Promise<McpError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(McpError.isInstance(error)).toBe(true);
  return error as McpError;
}

describe("the cause of an McpError", () => {
  it("a connect refused (closed port): nothing of the URL's query or the headers, the cause's code kept", async () => {
    const server = withSecrets(`http://127.0.0.1:${await closedPort()}`);
    const error = await failure(server.start());
    expect(error.message).toContain("ECONNREFUSED");
    expect(logged(error)).not.toMatch(SECRETS);
    // Still what it was: fetch's TypeError, its cause's network code (a transient error).
    expect(error.cause).toBeInstanceOf(TypeError);
    expect((error.cause as Error).message).toBe("fetch failed");
    expect(((error.cause as Error).cause as { code?: unknown }).code).toBe("ECONNREFUSED");
    expect(isTransientError(error.cause)).toBe(true);
  });

  it("a server that refuses the connect quoting the URL, the header and a URL with credentials", async () => {
    const base = await listen(cleanups, (req, res) => {
      res.writeHead(401, { "content-type": "text/plain" }).end(quoting(req));
    });
    const server = withSecrets(base);
    const error = await failure(server.start());
    expect(error.message).toContain("HTTP 401");
    expect(error.message).toContain("sign in at http://***@127.0.0.1/login?next=***");
    expect(logged(error)).not.toMatch(SECRETS);
    // The SDK's error, its status and its message (redacted) kept.
    expect(error.cause).toBeInstanceOf(StreamableHTTPError);
    expect((error.cause as StreamableHTTPError).code).toBe(401);
    expect((error.cause as Error).message).toContain(
      "refused POST /mcp?token=*** (Authorization: ***)",
    );
  });

  it("a tool call that fails with the server quoting the URL and the header", async () => {
    const base = await listen(cleanups, async (req, res) => {
      let body = "";
      for await (const chunk of req) body += String(chunk);
      const message = JSON.parse(body || "{}");
      const answer = (result: unknown) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ jsonrpc: "2.0", id: message.id, result }));
      };
      if (req.method !== "POST") res.writeHead(405).end();
      else if (message.id === undefined) res.writeHead(202).end();
      else if (message.method === "initialize") {
        answer({
          protocolVersion: message.params.protocolVersion,
          capabilities: { tools: {} },
          serverInfo: { name: "quoting", version: "1" },
        });
      } else if (message.method === "tools/list") {
        answer({ tools: [{ name: "echo", inputSchema: { type: "object" } }] });
      } else res.writeHead(500, { "content-type": "text/plain" }).end(quoting(req));
    });
    const server = withSecrets(base);
    await server.start();
    const echo = server.tools.find((tool) => tool.name === "web__echo")!;
    const error = await failure(Promise.resolve(echo.execute({}, toolContext())));
    expect(error.message).toContain('MCP tool echo of server "web" failed: HTTP 500');
    expect(error.isRetryable).toBe(false);
    expect(logged(error)).not.toMatch(SECRETS);
    expect(error.cause).toBeInstanceOf(StreamableHTTPError);
    expect((error.cause as StreamableHTTPError).code).toBe(500);
  });

  it("any McpError: fetch's own error naming a URL with credentials, nested, is copied redacted", async () => {
    const url = `http://admin:${USERINFO_SECRET}@127.0.0.1:${await closedPort()}/mcp?token=${QUERY_SECRET}`;
    // Node's fetch refuses a URL with credentials, naming it whole.
    const refused = await fetch(url).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(refused).toBeInstanceOf(TypeError);
    expect(String(refused?.message)).toContain(USERINFO_SECRET);
    const outer = Object.assign(new Error("request failed", { cause: refused }), {
      request: { url, attempts: [url] },
    });
    const error = new McpError("web", `could not reach ${url}`, { cause: outer });
    expect(logged(error)).not.toMatch(SECRETS);
    expect(error.message).toContain("http://***@127.0.0.1:");
    const cause = error.cause as Error & { request: { url: string; attempts: string[] } };
    expect(cause.message).toBe("request failed");
    expect(cause.request.url).toContain("token=***");
    expect(cause.request.attempts).toEqual([cause.request.url]);
    expect(cause.cause).toBeInstanceOf(TypeError);
    expect((cause.cause as Error).message).toContain("http://***@127.0.0.1:");
    expect((cause.cause as Error).stack).toContain("http://***@127.0.0.1:");
    // The originals are left as they were.
    expect(String(refused?.message)).toContain(USERINFO_SECRET);
  });

  it("a cause that is a DOMException or refers to itself is copied without throwing", async () => {
    const abort = new DOMException(
      `aborted at http://127.0.0.1/x?token=${QUERY_SECRET}`,
      "AbortError",
    );
    const looping = new Error(`loop http://a:${USERINFO_SECRET}@h/`);
    looping.cause = looping;
    const error = new McpError("web", "stopped", {
      cause: new AggregateError([abort, looping], "both"),
    });
    expect(logged(error)).not.toMatch(SECRETS);
    const [copied, loop] = (error.cause as AggregateError).errors as [DOMException, Error];
    expect(copied).toBeInstanceOf(DOMException);
    expect(copied.name).toBe("AbortError");
    expect(copied.code).toBe(20);
    expect(loop.cause).toBe(loop);
  });
});
