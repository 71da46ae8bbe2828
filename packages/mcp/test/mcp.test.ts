/**
 * `McpToolServer` against a real MCP server (test/fixtures/server.mjs, built on the MCP SDK's
 * own server): as a child process over stdio, and over Streamable HTTP on 127.0.0.1. Its
 * tools reach the model through an `AgentRuntime` like any other tool: structured and text
 * results, tool errors, the tool layer's time limit, a list that changes, a server that
 * exits and is connected again, and what `stop()` leaves behind (nothing).
 */
import { createServer as createHttpServer, type Server } from "node:http";
import { fileURLToPath } from "node:url";
import {
  AgentRuntime,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
  type RunEvent,
  ToolRegistry,
} from "@beamclaw/core";
import { createScriptedProvider, type ScriptEntry } from "@beamclaw/core/testing";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { afterEach, describe, expect, it } from "vitest";
import { McpError, McpToolServer } from "../src/index.js";
import { createServer } from "./fixtures/server.mjs";
import { toolContext } from "./support.js";

const SERVER = fileURLToPath(new URL("./fixtures/server.mjs", import.meta.url));
const stdio = { command: process.execPath, args: [SERVER, "--stdio"] };

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function started(options: Partial<ConstructorParameters<typeof McpToolServer>[0]> = {}) {
  const registry = new ToolRegistry();
  const server = new McpToolServer({ name: "test", ...stdio, ...options } as never);
  cleanups.push(() => server.stop());
  await server.start({ registry });
  return { server, registry };
}

/** A runtime whose model calls `calls` in turn (one tool call a step), then says "done". */
async function runtimeCalling(server: McpToolServer, calls: Array<[string, unknown]>) {
  const script: ScriptEntry[] = calls.map(([toolName, input]) => ({
    toolCalls: [{ toolName, input: input as never }],
  }));
  script.push({ text: "done" });
  const provider = createScriptedProvider(script);
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: [] }),
    agents: [{ id: "main", model: "scripted/m", tools: ["*"] }],
    toolTimeoutMs: 2_000,
  });
  await runtime.start();
  cleanups.push(async () => {
    await runtime.stop();
    await store.close();
  });
  await server.stop();
  const again = new McpToolServer({ name: "test", ...stdio, timeoutMs: 500 });
  cleanups.push(() => again.stop());
  await again.start({ registry: runtime.tools });
  return { runtime, provider, server: again };
}

async function toolResults(runtime: AgentRuntime, text = "go") {
  const run = await runtime.session("agent:main:main").send(text);
  const results: Array<Extract<RunEvent, { type: "tool-result" }>> = [];
  for await (const event of run) if (event.type === "tool-result") results.push(event);
  return { results, result: await run.result };
}

describe("an MCP server over stdio", () => {
  it("lists its tools as <name>__<tool>, with their descriptions and input schemas, in the registry", async () => {
    const { server, registry } = await started();
    expect(server.toolNames().sort()).toEqual(
      ["add", "echo", "exit", "fail", "grow", "pid", "shot", "slow"].map((t) => `test__${t}`),
    );
    expect(registry.names().sort()).toEqual(server.toolNames().sort());
    const add = server.tools.find((t) => t.name === "test__add")!;
    expect(add.description).toBe("Adds two numbers");
    expect(add.inputSchema).toMatchObject({
      type: "object",
      properties: { a: { type: "number" }, b: { type: "number" } },
      required: ["a", "b"],
    });
  });

  it("runs its tools for a model: structured and text results, and a tool error the model reads", async () => {
    const { server } = await started();
    const { runtime, provider } = await runtimeCalling(server, [
      ["test__add", { a: 2, b: 3 }],
      ["test__echo", { text: "hi" }],
      ["test__fail", {}],
    ]);
    const { results, result } = await toolResults(runtime);
    expect(result.status).toBe("completed");
    expect(results.map((r) => [r.toolName, r.output, r.isError])).toEqual([
      ["test__add", { sum: 5 }, false],
      ["test__echo", "echo: hi", false],
      ["test__fail", expect.stringContaining("the disk is full"), true],
    ]);
    // The echo's image (a PNG's signature) went to the model as an image.
    expect(results[1]!.images).toEqual([
      { type: "image", mediaType: "image/png", data: "iVBORw0KGgo=" },
    ]);
    // The model was offered the server's tools.
    expect(provider.requests[0]!.tools?.map((t) => t.name)).toContain("test__add");
  });

  it("a call past its time limit ends as a tool error, and the server goes on answering", async () => {
    const { server } = await started();
    const { runtime } = await runtimeCalling(server, [
      ["test__slow", {}],
      ["test__add", { a: 1, b: 1 }],
    ]);
    const { results } = await toolResults(runtime);
    expect(results[0]).toMatchObject({ toolName: "test__slow", isError: true });
    expect(JSON.stringify(results[0]!.output)).toMatch(/time|abort/i);
    expect(results[1]).toMatchObject({ toolName: "test__add", output: { sum: 2 }, isError: false });
  });

  it("follows the server's list when it changes", async () => {
    const { server, registry } = await started();
    const grow = server.tools.find((t) => t.name === "test__grow")!;
    const context = toolContext();
    expect(await grow.execute({}, context)).toBe("grown");
    await expect.poll(() => registry.names()).toContain("test__extra");
    const extra = server.tools.find((t) => t.name === "test__extra")!;
    expect(await extra.execute({ x: "y" }, context)).toBe("extra y");
  });

  it("a server that exits is connected again at the next call (a new process, its list read again), not before a second has passed", async () => {
    // No connection is made before this: a reconnect is allowed only a second after it.
    const connectingAt = Date.now();
    const { server } = await started();
    const context = toolContext();
    const tool = (name: string) => server.tools.find((t) => t.name === `test__${name}`)!;
    const firstPid = await tool("pid").execute({}, context);
    // A tool only this process has: the next one will not.
    expect(await tool("grow").execute({}, context)).toBe("grown");
    await expect.poll(() => server.toolNames()).toContain("test__extra");
    expect(await tool("exit").execute({}, context)).toBe("bye");
    // The process is gone: a call fails as an McpError (a tool error for the model), unless a
    // second has passed since the connection (a loaded machine): it then connects again at once.
    await expect
      .poll(async () => {
        try {
          const pid = await tool("pid").execute({}, context);
          if (pid === firstPid) return "answered by the old process";
          return Date.now() - connectingAt >= 1_000 ? "reconnected after a second" : "too early";
        } catch (error) {
          return McpError.isInstance(error) ? "mcp-error" : String(error);
        }
      })
      .toMatch(/^(mcp-error|reconnected after a second)$/);
    // Once a second has passed since the last connection, the next call connects again.
    await expect
      .poll(
        async () => {
          try {
            return await tool("pid").execute({}, context);
          } catch {
            return undefined;
          }
        },
        { timeout: 10_000, interval: 200 },
      )
      .toMatch(/^\d+$/);
    expect(await tool("pid").execute({}, context)).not.toBe(firstPid);
    // The new process's list was read again: the tool the old one had added is gone.
    await expect.poll(() => server.toolNames()).not.toContain("test__extra");
  });

  it("approval: a server's tools ask at every call (always), or never ask (never), whatever the gate's mode", async () => {
    const provider = createScriptedProvider([
      { toolCalls: [{ toolName: "ask__add", input: { a: 1, b: 2 } }] },
      { text: "after ask" },
      { toolCalls: [{ toolName: "free__add", input: { a: 3, b: 4 } }] },
      { text: "after free" },
    ]);
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider], models: [] }),
      agents: [{ id: "main", model: "scripted/m", tools: ["*"] }],
      approvals: { mode: "on-miss", timeoutMs: 10_000, defaultDecision: "deny" },
    });
    await runtime.start();
    cleanups.push(async () => {
      await runtime.stop();
      await store.close();
    });
    for (const [name, approval] of [
      ["ask", "always"],
      ["free", "never"],
    ] as const) {
      const server = new McpToolServer({ name, ...stdio, include: ["add"], approval });
      cleanups.push(() => server.stop());
      await server.start({ registry: runtime.tools });
      expect(server.tools.map((t) => t.approval)).toEqual([approval]);
    }
    const session = runtime.session("agent:main:main");
    const asked = await session.send("ask");
    const events: RunEvent[] = [];
    for await (const event of asked) {
      events.push(event);
      if (event.type === "tool-approval-request") {
        runtime.approvals!.answer(event.requestId, "deny", { scopes: ["operator.approvals"] });
      }
    }
    const denied = events.find((e) => e.type === "tool-result");
    expect(events.some((e) => e.type === "tool-approval-request")).toBe(true);
    expect(denied).toMatchObject({ toolName: "ask__add", isError: true });
    const free = await toolResults(runtime, "free");
    expect(free.results).toEqual([
      expect.objectContaining({ toolName: "free__add", output: { sum: 7 }, isError: false }),
    ]);
  });

  it("include keeps only the named tools", async () => {
    const { server, registry } = await started({ include: ["add", "echo"] });
    expect(server.toolNames().sort()).toEqual(["test__add", "test__echo"]);
    expect(registry.names().sort()).toEqual(["test__add", "test__echo"]);
  });

  it("stop() unregisters the tools, ends the process, and later calls fail", async () => {
    const { server, registry } = await started();
    const add = server.tools.find((t) => t.name === "test__add")!;
    await server.stop();
    expect(registry.names()).toEqual([]);
    expect(server.tools).toEqual([]);
    const context = toolContext();
    await expect(add.execute({ a: 1, b: 2 }, context)).rejects.toSatisfy(McpError.isInstance);
    await server.stop(); // again: nothing happens
  });

  it("a command that does not start, or does not speak MCP, is an McpError and registers nothing", async () => {
    for (const options of [
      { command: "/nonexistent/mcp-server" },
      {
        command: process.execPath,
        args: ["-e", "setTimeout(() => {}, 60000)"],
        connectTimeoutMs: 500,
      },
    ]) {
      const registry = new ToolRegistry();
      const server = new McpToolServer({ name: "bad", ...options });
      cleanups.push(() => server.stop());
      await expect(server.start({ registry })).rejects.toSatisfy(McpError.isInstance);
      expect(registry.names()).toEqual([]);
    }
  });

  it("a cwd that does not exist: the McpError says so (not only that node was not found)", async () => {
    const server = new McpToolServer({ name: "nowhere", ...stdio, cwd: "/nonexistent/mcp-dir" });
    cleanups.push(() => server.stop());
    await expect(server.start()).rejects.toThrow(/cwd \/nonexistent\/mcp-dir does not exist/);
  });

  it("a server that crashes at start: the McpError says how it exited and the end of its stderr", async () => {
    const server = new McpToolServer({
      name: "crashy",
      command: process.execPath,
      args: [
        "-e",
        // Much stderr (more than a pipe holds), then the line that says what went wrong.
        "process.stderr.write('noise\\n'.repeat(20000) + 'Error: GITHUB_TOKEN is not set\\n', () => process.exit(2))",
      ],
    });
    cleanups.push(() => server.stop());
    const error = await server.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(McpError.isInstance(error)).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain("exited with code 2");
    expect(message).toContain("Error: GITHUB_TOKEN is not set");
    expect(message.length).toBeLessThan(2_000);
  });

  it("a server that crashes during a call: the call's McpError says how it exited", async () => {
    const { server } = await started();
    const slow = server.tools.find((t) => t.name === "test__slow")!;
    const context = toolContext();
    const failed = Promise.resolve(slow.execute({}, context)).then(
      () => undefined,
      (e: unknown) => e,
    );
    // Another call ends the process while `slow` waits.
    await server.tools.find((t) => t.name === "test__exit")!.execute({}, context);
    const error = await failed;
    expect(McpError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("exited with code 3");
  });

  it("a server that closes its stdin and stays alive: the next call fails (not hangs), the process ends", async () => {
    // Raw JSON-RPC: `deaf` closes its stdin, answers its pid, and lives on.
    const script = `
      const rl = require("node:readline").createInterface({ input: process.stdin });
      const out = (m) => process.stdout.write(JSON.stringify(m) + "\\n");
      setInterval(() => {}, 1000);
      rl.on("line", (line) => {
        const m = JSON.parse(line);
        if (m.method === "initialize") out({ jsonrpc: "2.0", id: m.id, result: {
          protocolVersion: m.params.protocolVersion, capabilities: { tools: {} },
          serverInfo: { name: "deaf", version: "1" } } });
        else if (m.method === "tools/list") out({ jsonrpc: "2.0", id: m.id, result: { tools: [
          { name: "deaf", inputSchema: { type: "object" } },
          { name: "echo", inputSchema: { type: "object" } }] } });
        else if (m.method === "tools/call" && m.params.name === "deaf") {
          // Closed before the answer: the next request, sent after it, finds no reader.
          rl.close();
          process.stdin.destroy();
          require("node:fs").closeSync(0);
          out({ jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: String(process.pid) }] } });
        } else if (m.method === "tools/call") {
          out({ jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: "echo" }] } });
        }
      });`;
    const server = new McpToolServer({
      name: "deaf",
      command: process.execPath,
      args: ["-e", script],
    });
    cleanups.push(() => server.stop());
    await server.start();
    const tool = (name: string) => server.tools.find((t) => t.name === `deaf__${name}`)!;
    const pid = Number(await tool("deaf").execute({}, toolContext()));
    const error = await Promise.resolve(tool("echo").execute({}, toolContext())).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(McpError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/stdin/);
    // Its process was ended (the next call starts it again), not left to fail every call.
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it("stop() during a connect that gets no answer cancels it at once: start() fails, the process ends", async () => {
    // A process that never answers `initialize` and stays alive until a signal.
    const registry = new ToolRegistry();
    const server = new McpToolServer({
      name: "mute",
      command: process.execPath,
      args: ["-e", "setInterval(() => {}, 60000); process.stdout.write('')"],
      connectTimeoutMs: 60_000,
    });
    cleanups.push(() => server.stop());
    const starting = server.start({ registry });
    const failed = expect(starting).rejects.toSatisfy(McpError.isInstance);
    await new Promise((resolve) => setTimeout(resolve, 300)); // spawned, waiting for its answer
    // Without the cancel, stop() waits out the 60 s connect limit (past the test's time
    // limit); with it, the transport's close (stdin closed, 2 s, SIGTERM to its group) ends the process, which
    // the suite's leak check would otherwise find still running.
    await server.stop();
    await failed;
    expect(registry.names()).toEqual([]);
  });

  it("refuses bad options with a typed error", () => {
    for (const options of [
      {},
      { name: "has space", command: "x" },
      { name: "x" },
      { name: "x", command: "a", url: "http://127.0.0.1/mcp" },
      { name: "x", url: "ftp://example.com" },
      { name: "x", url: "not a url" },
      { name: "x", command: "a", args: [1] },
      { name: "x", command: "a", timeoutMs: 0 },
      { name: "x", command: "a", include: "add" },
      { name: "x", command: "a", approval: "sometimes" },
    ]) {
      expect(() => new McpToolServer(options as never)).toThrow(InvalidArgumentError);
    }
  });
});

describe("an MCP server over Streamable HTTP", () => {
  async function httpServer(): Promise<{ url: string; authorizations: string[] }> {
    const authorizations: string[] = [];
    const http: Server = createHttpServer(async (req, res) => {
      authorizations.push(String(req.headers.authorization));
      // Stateless: a server and a transport per request, as the SDK shows it.
      const server = createServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on("close", () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res);
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
    return { url: `http://127.0.0.1:${port}/mcp`, authorizations };
  }

  it("lists and calls its tools, with the configured headers", async () => {
    const { url, authorizations } = await httpServer();
    const server = new McpToolServer({
      name: "web",
      url,
      headers: { authorization: "Bearer s3cret" },
    });
    cleanups.push(() => server.stop());
    await server.start();
    expect(server.toolNames()).toContain("web__add");
    const add = server.tools.find((t) => t.name === "web__add")!;
    const context = toolContext();
    expect(await add.execute({ a: 20, b: 22 }, context)).toEqual({ sum: 42 });
    expect(authorizations.length).toBeGreaterThan(0);
    expect(authorizations.every((a) => a === "Bearer s3cret")).toBe(true);
  });

  it("an endpoint that refuses (HTTP 401, or no one listening): the McpError says so", async () => {
    const http: Server = createHttpServer((_req, res) => {
      res.writeHead(401, { "www-authenticate": 'Bearer realm="mcp"' }).end("invalid token");
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => http.close(resolve)));
    const { port } = http.address() as { port: number };
    const denied = new McpToolServer({
      name: "web",
      url: `http://127.0.0.1:${port}/mcp`,
      headers: { authorization: "Bearer expired" },
    });
    cleanups.push(() => denied.stop());
    await expect(denied.start()).rejects.toThrow(/HTTP 401.*invalid token/);
    // The port is free again: nothing listens there.
    await new Promise((resolve) => http.close(resolve));
    const refused = new McpToolServer({ name: "gone", url: `http://127.0.0.1:${port}/mcp` });
    cleanups.push(() => refused.stop());
    await expect(refused.start()).rejects.toThrow(/ECONNREFUSED/);
  });
});
