/**
 * What an MCP server hears of cancellations and of `stop()`, against a raw stdio server that
 * keeps every message it received (test/fixtures/raw-server.mjs): an aborted call reaches it
 * as `notifications/cancelled` for that request; a call that has already answered never does,
 * whenever the caller's signal aborts later, and leaves nothing on that signal; and a listing
 * that a list change queued does not start the server again once `stop()` has ended it. And
 * what the raw server can say that the SDK's would not: tool errors without text or with
 * structured content, answers over the 10 MiB limit, lines on stdout that are no JSON-RPC.
 */
import { getEventListeners } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { McpToolServer } from "../src/index.js";
import { childProcesses, toolContext } from "./support.js";

const RAW = fileURLToPath(new URL("./fixtures/raw-server.mjs", import.meta.url));

const servers: McpToolServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

async function raw(...flags: string[]) {
  const server = new McpToolServer({
    name: "raw",
    command: process.execPath,
    args: [RAW, ...flags],
    connectTimeoutMs: 5_000,
  });
  servers.push(server);
  await server.start();
  const tool = (name: string) => server.tools.find((t) => t.name === `raw__${name}`)!;
  /** The messages the server received so far. */
  const seen = async () =>
    JSON.parse(String(await tool("seen").execute({}, toolContext()))) as Array<{
      method: string;
      id?: number;
      requestId?: number;
    }>;
  return { server, tool, seen };
}

describe("cancellation", () => {
  it("an aborted call reaches the server as notifications/cancelled for that request", async () => {
    const { tool, seen } = await raw();
    const controller = new AbortController();
    const call = tool("slow").execute({}, { ...toolContext(), signal: controller.signal });
    const failed = expect(call).rejects.toBeDefined();
    await expect.poll(async () => (await seen()).some((m) => m.method === "tools/call")).toBe(true);
    controller.abort(new Error("the user stopped it"));
    await failed;
    const messages = await seen();
    const slow = messages.find((m) => m.method === "tools/call")!;
    expect(messages).toContainEqual({ method: "notifications/cancelled", requestId: slow.id });
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("a call that has answered is never cancelled when the caller's signal aborts later, and leaves no listener on it", async () => {
    const { tool, seen } = await raw();
    // One signal for many calls, as a host's session or run signal is.
    const controller = new AbortController();
    const context = { ...toolContext(), signal: controller.signal };
    expect(await tool("add").execute({}, context)).toBe("added");
    expect(await tool("add").execute({}, context)).toBe("added");
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
    controller.abort(new Error("the run ended"));
    // Messages on stdio arrive in order: a cancellation sent at the abort precedes this call.
    const messages = await seen();
    expect(messages.filter((m) => m.method === "notifications/cancelled")).toEqual([]);
  });
});

describe("stop()", () => {
  it("a listing queued by a list change does not start the server again after stop()", async () => {
    const before = childProcesses();
    const { server, tool, seen } = await raw("--hold-relist");
    // A change: its listing stays under way (no answer) ...
    expect(await tool("change").execute({}, toolContext())).toBe("changed");
    await expect
      .poll(async () => (await seen()).filter((m) => m.method === "tools/list").length)
      .toBe(2);
    // ... and a change meanwhile queues another behind it.
    expect(await tool("change").execute({}, toolContext())).toBe("changed");
    await server.stop();
    // The listing under way failed with the connection; the one behind it must not connect.
    await new Promise((resolve) => setImmediate(resolve));
    expect(childProcesses()).toBe(before);
  });
});

describe("a tool error (isError)", () => {
  it("reaches the model with its text, or a message saying which tool failed when it has none", async () => {
    const { tool } = await raw();
    await expect(Promise.resolve(tool("coded-error").execute({}, toolContext()))).rejects.toThrow(
      /quota exceeded/,
    );
    await expect(Promise.resolve(tool("mute-error").execute({}, toolContext()))).rejects.toThrow(
      'MCP tool mute-error of server "raw" reported an error (with no message)',
    );
  });
});

describe("an answer over the 10 MiB a message may have", () => {
  it("fails that call with an McpError saying so; the server goes on answering, the same process", async () => {
    const { tool, seen } = await raw();
    for (const name of ["huge", "huge-sdk"]) {
      await expect(Promise.resolve(tool(name).execute({}, toolContext()))).rejects.toThrow(
        /exceeded 10485760 bytes/,
      );
    }
    expect(await tool("add").execute({}, toolContext())).toBe("added");
    // The same process: it has seen both calls.
    const calls = (await seen()).filter((m) => m.method === "tools/call");
    expect(calls.length).toBe(4);
  });
});

describe("a message over the 10 MiB that is no answer", () => {
  it("ends the connection, and the calls under way fail with an McpError saying why", async () => {
    const { tool } = await raw();
    await expect(Promise.resolve(tool("huge-note").execute({}, toolContext()))).rejects.toThrow(
      /its process was stopped: a message of the server exceeded 10485760 bytes/,
    );
  });
});

describe("a server that prints more than JSON-RPC on stdout", () => {
  it("has its other lines skipped (banners, logs, empty lines, CRLF)", async () => {
    const { tool } = await raw("--noisy");
    expect(await tool("add").execute({}, toolContext())).toBe("added");
  });
});
