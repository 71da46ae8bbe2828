/**
 * A long page: `web_fetch` keeps the start of its content, and its result must fit the tool
 * runner's default cap on a result (64 KiB of UTF-8). `maxChars` alone (50 000 characters)
 * does not: 50 000 CJK characters are 150 KB, and the runner then cuts the result's JSON text,
 * so the model reads a fragment of JSON instead of the page. A cut never splits a character.
 * (Real servers on 127.0.0.1, as in web-fetch.test.ts: the SSRF guard and pinned connection
 * are part of what runs.)
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  BasicToolRunner,
  createWebFetchTool,
  InvalidArgumentError,
  type JsonObject,
  type ToolContext,
} from "../src/index.js";

const servers: Server[] = [];

async function serve(type: string, body: string): Promise<string> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": type });
    res.end(body);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
});

const context: ToolContext = {
  signal: new AbortController().signal,
  sessionKey: "agent:test:main",
  agentId: "test",
  runId: "run-1",
  toolCallId: "call-1",
  emit() {},
};

/** Bytes of `text` as a JSON string's content. */
const serialized = (text: string) => Buffer.byteLength(JSON.stringify(text)) - 2;

describe("web_fetch content within the runner's result cap", () => {
  it("a long multi-byte page keeps its start, says truncated, and fits the cap", async () => {
    const url = await serve("text/plain; charset=utf-8", "日本語".repeat(30_000));
    const runner = new BasicToolRunner({ tools: [createWebFetchTool({ allow: ["127.0.0.1"] })] });
    const result = await runner.execute(
      { type: "tool-call", toolCallId: "call-1", toolName: "web_fetch", input: { url } },
      context,
    );
    expect(result.isError).toBe(false);
    const output = result.output as JsonObject;
    expect(typeof output).toBe("object");
    expect(output).toMatchObject({ status: 200, truncated: true, format: "text" });
    expect((output.content as string).startsWith("日本語日本語")).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(output))).toBeLessThanOrEqual(64 * 1024);
  });

  it("a long address (a redirect's query) comes off the content's share: the result still fits the cap", async () => {
    const base = await serve("text/plain", "x".repeat(200_000));
    const url = `${base}?q=${"a".repeat(12_000)}`;
    const runner = new BasicToolRunner({ tools: [createWebFetchTool({ allow: ["127.0.0.1"] })] });
    const result = await runner.execute(
      { type: "tool-call", toolCallId: "call-1", toolName: "web_fetch", input: { url } },
      context,
    );
    const output = result.output as JsonObject;
    // A whole result (not the runner's cut text), its content cut instead.
    expect(typeof output).toBe("object");
    expect(output).toMatchObject({ status: 200, truncated: true, url, finalUrl: url });
    expect((output.content as string).startsWith("xxxx")).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(output))).toBeLessThanOrEqual(64 * 1024);
  });

  it("maxOutputBytes bounds the content as serialized", async () => {
    const url = await serve("text/plain", "a\u0001".repeat(1000));
    const tool = createWebFetchTool({ allow: ["127.0.0.1"], maxOutputBytes: 700 });
    const output = (await tool.execute({ url }, context)) as JsonObject;
    expect(output.truncated).toBe(true);
    // "a" is 1 byte as JSON, "\u0001" 6: the longest start within 700 bytes is 100 pairs.
    expect(output.content).toBe("a\u0001".repeat(100));
    expect(serialized(output.content as string)).toBeLessThanOrEqual(700);
  });

  it("a maxChars cut inside a surrogate pair keeps none of it", async () => {
    const url = await serve("text/plain; charset=utf-8", "😀😀😀");
    const tool = createWebFetchTool({ allow: ["127.0.0.1"], maxChars: 5 });
    const output = (await tool.execute({ url }, context)) as JsonObject;
    expect(output).toMatchObject({ content: "😀😀", truncated: true });
  });

  it("maxOutputBytes is checked", () => {
    expect(() => createWebFetchTool({ maxOutputBytes: 0 })).toThrow(InvalidArgumentError);
  });
});

describe("web_fetch title", () => {
  it("a huge <title> is cut to its first KiB, and the result fits the cap", async () => {
    const url = await serve(
      "text/html",
      `<html><head><title>${"T".repeat(200_000)}</title></head><body><p>body</p></body></html>`,
    );
    const runner = new BasicToolRunner({ tools: [createWebFetchTool({ allow: ["127.0.0.1"] })] });
    const result = await runner.execute(
      { type: "tool-call", toolCallId: "call-1", toolName: "web_fetch", input: { url } },
      context,
    );
    const output = result.output as JsonObject;
    expect(typeof output).toBe("object");
    expect(output.title).toBe("T".repeat(1024));
    expect(output.content).toBe("body");
  });
});
