/**
 * How `McpToolServer` follows `notifications/tools/list_changed`, against a small stdio server
 * (test/fixtures/changing-server.mjs, raw JSON-RPC lines): the notification is honoured from a
 * server that did not declare `tools.listChanged` (many send it all the same), a flood of them
 * lists the tools once more rather than once each, and a server that says its list changed at
 * every listing is listed at most four times a second, not back to back.
 */
import { fileURLToPath } from "node:url";
import { ToolRegistry } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { McpToolServer } from "../src/index.js";
import { childProcesses, toolContext } from "./support.js";

const CHANGING = fileURLToPath(new URL("./fixtures/changing-server.mjs", import.meta.url));

const servers: McpToolServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

async function changing(...flags: string[]) {
  const registry = new ToolRegistry();
  const server = new McpToolServer({
    name: "changing",
    command: process.execPath,
    args: [CHANGING, ...flags],
    connectTimeoutMs: 5_000,
  });
  servers.push(server);
  await server.start({ registry });
  const call = async (tool: string, input: Record<string, number> = {}) =>
    String(
      await server.tools.find((t) => t.name === `changing__${tool}`)!.execute(input, toolContext()),
    );
  return { server, registry, call };
}

describe("notifications/tools/list_changed", () => {
  it("is honoured from a server that did not declare tools.listChanged: the new tool is registered", async () => {
    const { registry, call } = await changing();
    expect(await call("grow")).toBe("grown");
    await expect.poll(() => registry.names(), { timeout: 5_000 }).toContain("changing__extra3");
    expect(await call("extra3")).toBe("extra3");
  });

  it("a new tool whose name the registry already holds is in leftOut(), not dropped unseen", async () => {
    const registry = new ToolRegistry();
    // Another source's tool, of the name the server's next tool will have.
    registry.register({
      name: "changing__extra3",
      description: "someone else's",
      inputSchema: { type: "object" },
      execute: () => "theirs",
    });
    const server = new McpToolServer({
      name: "changing",
      command: process.execPath,
      args: [CHANGING],
      connectTimeoutMs: 5_000,
    });
    servers.push(server);
    await server.start({ registry });
    expect(server.leftOut()).toEqual([]);
    await server.tools.find((t) => t.name === "changing__grow")!.execute({}, toolContext());
    await expect
      .poll(() => server.leftOut(), { timeout: 5_000 })
      .toEqual([
        { tool: "extra3", reason: "the registry already has a tool named changing__extra3" },
      ]);
    expect(server.toolNames()).not.toContain("changing__extra3");
    // The other source's tool stays registered.
    expect(registry.names()).toContain("changing__extra3");
  });

  it("a flood of them lists the tools once more, not once each", async () => {
    const { server, call } = await changing("--declared");
    expect(await call("flood", { n: 100 })).toBe("flooded");
    // A change after the flood is still seen.
    expect(await call("grow")).toBe("grown");
    await expect.poll(() => server.toolNames(), { timeout: 5_000 }).toContain("changing__extra3");
    // Nothing more is asked for, however long one waits: start()'s listing, then one or two
    // for 101 changes (a listing a change would be 102, one after the other).
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(Number(await call("lists"))).toBeLessThanOrEqual(3);
  });

  it("a server that says its list changed at every listing is listed again, but not back to back; stop() ends it all", async () => {
    const before = childProcesses();
    const began = Date.now();
    const { server, call } = await changing("--declared", "--echo");
    // Honoured, again and again ...
    let lists = 0;
    await expect
      .poll(
        async () => {
          lists = Number(await call("lists"));
          return lists;
        },
        { timeout: 5_000, interval: 50 },
      )
      .toBeGreaterThanOrEqual(3);
    // ... each listing at least 250 ms after the one before it (start()'s, then one a pause).
    expect(lists).toBeLessThanOrEqual(2 + (Date.now() - began) / 250);
    // A listing waiting out its pause neither holds stop() nor starts the server again.
    await server.stop();
    await new Promise((resolve) => setImmediate(resolve));
    expect(childProcesses()).toBe(before);
  });
});
