/**
 * What an MCP server hears of cancellations and of `stop()`, against a raw stdio server that
 * keeps every message it received (test/fixtures/raw-server.mjs): an aborted call reaches it
 * as `notifications/cancelled` for that request; a call that has already answered never does,
 * whenever the caller's signal aborts later, and leaves nothing on that signal; and a listing
 * that a list change queued does not start the server again once `stop()` has ended it.
 */
import { getEventListeners } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { McpToolServer } from "../src/index.js";
import { toolContext } from "./support.js";

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

/** Child processes of this one that still have a handle (spawned and not yet exited). */
function childProcesses(): number {
  return process.getActiveResourcesInfo().filter((type) => type === "ProcessWrap").length;
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
    // Two changes: the first listing stays under way (no answer), the second waits behind it.
    expect(await tool("change").execute({}, toolContext())).toBe("changed");
    await expect
      .poll(async () => (await seen()).filter((m) => m.method === "tools/list").length)
      .toBe(2);
    await server.stop();
    // The listing under way failed with the connection; the one behind it must not connect.
    await new Promise((resolve) => setImmediate(resolve));
    expect(childProcesses()).toBe(before);
  });
});
