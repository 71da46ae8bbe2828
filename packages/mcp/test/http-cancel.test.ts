/**
 * A call cancelled over Streamable HTTP, against the MCP SDK's own stateful server on
 * 127.0.0.1: the server gets `notifications/cancelled` and, as the protocol asks, sends no
 * answer; the call's POST is then closed by the client, not left open (a connection on each
 * side) until the session ends.
 */
import { randomUUID } from "node:crypto";
import { createServer as createHttpServer } from "node:http";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { afterEach, describe, expect, it } from "vitest";
import { McpToolServer } from "../src/index.js";
import { createServer } from "./fixtures/server.mjs";
import { toolContext } from "./support.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A stateful server; `events` tells what arrived and when a `tools/call`'s response closed. */
async function statefulSdkServer() {
  const server = createServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID() });
  await server.connect(transport);
  const events: string[] = [];
  const http = createHttpServer(async (req, res) => {
    let text = "";
    for await (const chunk of req) text += String(chunk);
    const message = text === "" ? undefined : JSON.parse(text);
    if (message?.method === "notifications/cancelled") events.push("cancelled");
    if (message?.method === "tools/call") {
      events.push(`call ${message.params.name}`);
      res.on("close", () => events.push(`closed ${message.params.name}`));
    }
    await transport.handleRequest(req, res, message);
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    await transport.close();
    await server.close();
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });
  const { port } = http.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/mcp`, events };
}

describe("a call cancelled over Streamable HTTP", () => {
  it("reaches the server as notifications/cancelled, then its unanswered response is closed", async () => {
    const { url, events } = await statefulSdkServer();
    const mcp = new McpToolServer({ name: "web", url, connectTimeoutMs: 5_000 });
    cleanups.push(() => mcp.stop());
    await mcp.start();
    const tool = (name: string) => mcp.tools.find((t) => t.name === `web__${name}`)!;
    const controller = new AbortController();
    const call = tool("slow").execute({}, { ...toolContext(), signal: controller.signal });
    const failed = expect(call).rejects.toBeDefined();
    await expect.poll(() => events).toContain("call slow");
    controller.abort(new Error("the user stopped it"));
    await failed;
    // Closed while the session goes on (before stop()), after the cancellation arrived.
    await expect.poll(() => events).toContain("closed slow");
    expect(events.indexOf("cancelled")).toBeGreaterThan(-1);
    expect(events.indexOf("cancelled")).toBeLessThan(events.indexOf("closed slow"));
    // The session goes on.
    expect(await tool("add").execute({ a: 1, b: 2 }, toolContext())).toEqual({ sum: 3 });
  });
});
