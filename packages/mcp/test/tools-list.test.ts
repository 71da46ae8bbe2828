/**
 * How `McpToolServer` reads and registers a server's tool list, against small stdio servers
 * written to a temp directory (raw JSON-RPC lines, no SDK): every page of `tools/list` is
 * followed, a server whose cursor never ends fails `start()` instead of hanging it, and a tool
 * whose name is already taken in the registry fails `start()` with an `McpError` that registers
 * nothing (and leaves the registry's own tool alone). And the MCP SDK's private method that
 * checks output schemas (`cacheToolMetadata`) is only used when it is there.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentTool, ToolRegistry } from "@beamclaw/core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { McpError, McpToolServer } from "../src/index.js";
import { toolContext } from "./support.js";

/**
 * A stdio MCP server: `tools/list` answers from `PAGES` (keyed by cursor, "" for the first
 * page), each page `{ tools: [names or whole tools], next?: cursor }`; `tools/call` answers a
 * whole tool's `answer`, else the tool's name as text. With `PAGES` null it
 * offers no tools: no `tools` capability (resources only), and no `tools/list` method.
 */
const SERVER = `
import { createInterface } from "node:readline";
const PAGES = JSON.parse(process.argv[2]);
const out = (m) => process.stdout.write(JSON.stringify(m) + "\\n");
createInterface({ input: process.stdin }).on("line", (line) => {
  const m = JSON.parse(line);
  if (m.method === "initialize") {
    out({ jsonrpc: "2.0", id: m.id, result: { protocolVersion: m.params.protocolVersion,
      capabilities: PAGES === null ? { resources: {} } : { tools: {} },
      serverInfo: { name: "paged", version: "1" } } });
  } else if (m.method === "tools/list" && PAGES === null) {
    out({ jsonrpc: "2.0", id: m.id, error: { code: -32601, message: "Method not found" } });
  } else if (m.method === "tools/list") {
    const page = PAGES[m.params?.cursor ?? ""];
    const result = { tools: page.tools.map((t) =>
      typeof t === "string" ? { name: t, inputSchema: { type: "object" } } : t) };
    if (page.next !== undefined) result.nextCursor = page.next;
    out({ jsonrpc: "2.0", id: m.id, result });
  } else if (m.method === "tools/call") {
    const tool = Object.values(PAGES ?? {}).flatMap((p) => p.tools)
      .find((t) => typeof t === "object" && t.name === m.params.name);
    out({ jsonrpc: "2.0", id: m.id,
      result: tool?.answer ?? { content: [{ type: "text", text: m.params.name }] } });
  }
});
`;

let dir: string;
let script: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "beamclaw-mcp-list-"));
  script = join(dir, "server.mjs");
  await writeFile(script, SERVER);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const servers: McpToolServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

function paged(pages: Record<string, { tools: Array<string | object>; next?: string }> | null) {
  const server = new McpToolServer({
    name: "paged",
    command: process.execPath,
    args: [script, JSON.stringify(pages)],
    connectTimeoutMs: 5_000,
  });
  servers.push(server);
  return server;
}

describe("tools/list", () => {
  it("follows nextCursor through every page", async () => {
    const server = paged({
      "": { tools: ["a"], next: "p2" },
      p2: { tools: ["b"], next: "p3" },
      p3: { tools: ["c"] },
    });
    await server.start();
    expect(server.toolNames().sort()).toEqual(["paged__a", "paged__b", "paged__c"]);
  });

  it("a server whose nextCursor repeats fails start() with an McpError instead of listing forever", async () => {
    const registry = new ToolRegistry();
    const server = paged({
      "": { tools: ["a"], next: "again" },
      again: { tools: ["b"], next: "again" },
    });
    const error = await server.start({ registry }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(McpError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/cursor/);
    expect(registry.names()).toEqual([]);
  });
});

describe("what a listing leaves out", () => {
  it("a tool whose name no model could call, and an include name the server lacks, are in leftOut()", async () => {
    const server = new McpToolServer({
      name: "paged",
      command: process.execPath,
      args: [script, JSON.stringify({ "": { tools: ["ok", "bad name", "other"] } })],
      include: ["ok", "bad name", "typo"],
      connectTimeoutMs: 5_000,
    });
    servers.push(server);
    expect(server.leftOut()).toEqual([]);
    await server.start();
    expect(server.toolNames()).toEqual(["paged__ok"]);
    expect(server.leftOut()).toEqual([
      {
        tool: "bad name",
        reason:
          'its name "paged__bad name" does not match ^[a-zA-Z0-9_-]{1,64}$, so no model could call it',
      },
      { tool: "typo", reason: "named in include, but the server has no such tool" },
    ]);
  });

  it("a tool named with . or / (as MCP allows) is called as _ by the model, under its own name on the server", async () => {
    const registry = new ToolRegistry();
    const server = paged({
      "": { tools: ["admin.tools.list", "user-profile/update", "a.b", "a_b", "c.d", "c/d"] },
    });
    await server.start({ registry });
    expect(registry.names()).toEqual(server.toolNames());
    expect(server.toolNames()).toEqual([
      "paged__admin_tools_list",
      "paged__user-profile_update",
      "paged__a_b",
      "paged__c_d",
    ]);
    // The server is called by the tool's own name (this server answers with the name it got).
    const call = async (name: string) =>
      server.tools.find((tool) => tool.name === name)?.execute({}, toolContext());
    expect(await call("paged__admin_tools_list")).toBe("admin.tools.list");
    expect(await call("paged__user-profile_update")).toBe("user-profile/update");
    expect(await call("paged__a_b")).toBe("a_b");
    expect(await call("paged__c_d")).toBe("c.d");
    // Two tools one name for the model: the server's own name wins, else the first listed.
    expect(server.leftOut()).toEqual([
      {
        tool: "a.b",
        reason: 'its name becomes "paged__a_b" for a model, as the server\'s tool "a_b" does',
      },
      {
        tool: "c/d",
        reason: 'its name becomes "paged__c_d" for a model, as the server\'s tool "c.d" does',
      },
    ]);
  });

  it("a tool the SDK's schema refuses is in leftOut() with why, not taken for one the server lacks", async () => {
    const server = new McpToolServer({
      name: "paged",
      command: process.execPath,
      args: [
        script,
        JSON.stringify({
          "": {
            tools: [
              "ok",
              { name: "scalar", inputSchema: { type: "string" } },
              { name: "missing" },
              { name: "skipped", inputSchema: { type: "array" } },
            ],
          },
        }),
      ],
      include: ["ok", "scalar", "missing"],
      connectTimeoutMs: 5_000,
    });
    servers.push(server);
    await server.start();
    expect(server.toolNames()).toEqual(["paged__ok"]);
    const leftOut = server.leftOut();
    // Only the included ones; each said to be refused by the schema, naming what is wrong.
    expect(leftOut.map((entry) => entry.tool)).toEqual(["scalar", "missing"]);
    expect(leftOut[0]?.reason).toMatch(/^the MCP SDK's schema refuses it \(inputSchema\.type: /);
    expect(leftOut[1]?.reason).toMatch(/^the MCP SDK's schema refuses it \(inputSchema: /);
    expect(leftOut.some((entry) => entry.reason.includes("no such tool"))).toBe(false);
  });
});

describe("a tool that must run as an MCP task", () => {
  it("(execution.taskSupport required) is in leftOut() with why, not offered to fail every call", async () => {
    const server = paged({
      "": {
        tools: [
          "plain",
          {
            name: "optional",
            inputSchema: { type: "object" },
            execution: { taskSupport: "optional" },
          },
          {
            name: "batch",
            inputSchema: { type: "object" },
            execution: { taskSupport: "required" },
          },
        ],
      },
    });
    await server.start();
    expect(server.toolNames().sort()).toEqual(["paged__optional", "paged__plain"]);
    expect(server.leftOut()).toEqual([
      {
        tool: "batch",
        reason:
          'it runs only as an MCP task (execution.taskSupport "required"), which this client does not run',
      },
    ]);
    const optional = server.tools.find((t) => t.name === "paged__optional")!;
    expect(await optional.execute({}, toolContext())).toBe("optional");
  });
});

describe("a server that offers no tools", () => {
  it("(no tools capability, tools/list not found) starts with none, rather than failing", async () => {
    const registry = new ToolRegistry();
    const server = paged(null);
    await server.start({ registry });
    expect(server.toolNames()).toEqual([]);
    expect(registry.names()).toEqual([]);
  });

  it("a server that declares tools and then cannot list them still fails start()", async () => {
    const server = new McpToolServer({
      name: "broken",
      command: process.execPath,
      args: [
        "-e",
        `require("node:readline").createInterface({ input: process.stdin }).on("line", (line) => {
          const m = JSON.parse(line);
          const out = (x) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", id: m.id, ...x }) + "\\n");
          if (m.method === "initialize") out({ result: { protocolVersion: m.params.protocolVersion,
            capabilities: { tools: {} }, serverInfo: { name: "broken", version: "1" } } });
          else if (m.method === "tools/list") out({ error: { code: -32601, message: "Method not found" } });
        });`,
      ],
      connectTimeoutMs: 5_000,
    });
    servers.push(server);
    const error = await server.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(McpError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/did not list its tools: .*Method not found/);
  });
});

describe("a tool the SDK's schema refuses", () => {
  it("is normalized or left out, not the end of the whole listing", async () => {
    const server = paged({
      "": {
        tools: [
          "good",
          // No `type`: an object schema all the same (a server that left it out).
          { name: "untyped", inputSchema: { properties: { q: { type: "string" } } } },
          // Not an object's schema: a provider's function takes no string: left out.
          { name: "scalar", inputSchema: { type: "string" } },
          { name: "missing" },
          { inputSchema: { type: "object" } },
          // An output schema that does not compile: the tool stays, its output unchecked.
          {
            name: "badout",
            inputSchema: { type: "object" },
            outputSchema: { type: "object", properties: { a: { $ref: "#/$defs/nope" } } },
          },
          // An output schema not of an object: dropped, the tool stays.
          { name: "oddout", inputSchema: { type: "object" }, outputSchema: { type: "string" } },
        ],
        next: "p2",
      },
      p2: { tools: ["later"] },
    });
    await server.start();
    expect(server.toolNames().sort()).toEqual([
      "paged__badout",
      "paged__good",
      "paged__later",
      "paged__oddout",
      "paged__untyped",
    ]);
    const untyped = server.tools.find((t) => t.name === "paged__untyped")!;
    expect(untyped.inputSchema).toEqual({
      type: "object",
      properties: { q: { type: "string" } },
    });
    const later = server.tools.find((t) => t.name === "paged__later")!;
    expect(await later.execute({}, toolContext())).toBe("later");
    const oddout = server.tools.find((t) => t.name === "paged__oddout")!;
    expect(await oddout.execute({}, toolContext())).toBe("oddout");
  });
});

/** Two pages: a tool with an output schema (its answers are text only), then one without. */
const TYPED_THEN_PLAIN = {
  "": {
    tools: [
      {
        name: "typed",
        inputSchema: { type: "object" },
        outputSchema: { type: "object", properties: { n: { type: "number" } } },
      },
    ],
    next: "p2",
  },
  p2: { tools: ["plain"] },
};

/** A tool whose output is `{ sum: number }`, answering `answer`. */
function summing(name: string, answer: object) {
  return {
    name,
    inputSchema: { type: "object" },
    outputSchema: { type: "object", properties: { sum: { type: "number" } }, required: ["sum"] },
    answer,
  };
}

describe("output schemas", () => {
  it("are checked for the tools of every page, not only the last page's", async () => {
    const server = paged(TYPED_THEN_PLAIN);
    await server.start();
    // The server answers with text only: a tool with an output schema must give structured content.
    const typed = server.tools.find((t) => t.name === "paged__typed")!;
    await expect(Promise.resolve(typed.execute({}, toolContext()))).rejects.toThrow(
      /structured content/,
    );
  });

  it("check a result's structured content, but not a tool error's: the model reads the tool's own error", async () => {
    const server = paged({
      "": {
        tools: [
          summing("good", {
            content: [{ type: "text", text: '{"sum":3}' }],
            structuredContent: { sum: 3 },
          }),
          summing("wrong", {
            content: [{ type: "text", text: "three" }],
            structuredContent: { sum: "three" },
          }),
          // A tool error with structured content of its own shape, not the output schema's.
          summing("failing", {
            isError: true,
            content: [{ type: "text", text: "division by zero" }],
            structuredContent: { error: "DIV_ZERO" },
          }),
        ],
      },
    });
    await server.start();
    const tool = (name: string) => server.tools.find((t) => t.name === `paged__${name}`)!;
    expect(await tool("good").execute({}, toolContext())).toEqual({ sum: 3 });
    await expect(Promise.resolve(tool("wrong").execute({}, toolContext()))).rejects.toThrow(
      /does not match the tool's output schema/,
    );
    const error = await Promise.resolve(tool("failing").execute({}, toolContext())).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe("division by zero");
  });
});

describe("without the MCP SDK's private cacheToolMetadata", () => {
  it("(a later SDK that drops or renames it) the tools still list and answer, their output unchecked", async () => {
    const prototype = Client.prototype as unknown as { cacheToolMetadata?: unknown };
    const original = prototype.cacheToolMetadata;
    expect(typeof original).toBe("function");
    delete prototype.cacheToolMetadata;
    try {
      const server = paged(TYPED_THEN_PLAIN);
      await server.start();
      expect(server.toolNames().sort()).toEqual(["paged__plain", "paged__typed"]);
      const typed = server.tools.find((t) => t.name === "paged__typed")!;
      expect(await typed.execute({}, toolContext())).toBe("typed");
    } finally {
      prototype.cacheToolMetadata = original;
    }
  });
});

describe("a tool name already in the registry", () => {
  it("fails start() with an McpError naming it; nothing of the server's is left registered", async () => {
    const builtIn: AgentTool = {
      name: "paged__b",
      description: "the registry's own",
      inputSchema: { type: "object" },
      execute: () => "built-in",
    };
    const registry = new ToolRegistry([builtIn]);
    const server = paged({ "": { tools: ["a", "b", "c"] } });
    const error = await server.start({ registry }).then(
      () => undefined,
      (e: unknown) => e,
    );
    // Only the registry's own tool: none of the server's tools stays behind.
    expect(registry.names()).toEqual(["paged__b"]);
    expect(server.toolNames()).toEqual([]);
    expect(McpError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("paged__b");
  });
});
