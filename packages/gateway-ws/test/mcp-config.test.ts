/**
 * `tools.mcpServers` in `beamclaw.yaml`, started by the CLI's own bootstrap (`startFromConfig`)
 * in this process: a real MCP server (the @beamclaw/mcp test fixture, a child process over
 * stdio) whose tools an agent calls through a scripted OpenAI-compatible model on 127.0.0.1.
 */
import { realpathSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import { type ChatBody, closeModelServers, modelServer, toolResults } from "./tools-support.js";

// Starting a stdio MCP server (spawning it) makes this process's own stdin, stdout and stderr
// streams, which live as long as the process: made here, before the open-handle check takes
// its baseline, they are not counted as left behind by a test.
void process.stdout;
void process.stderr;
void process.stdin;

const FIXTURE = fileURLToPath(new URL("../../mcp/test/fixtures/server.mjs", import.meta.url));
const started: StartedGateway[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const gateway of started.splice(0)) await gateway.stop();
  await closeModelServers();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function configFile(baseUrl: string, mcpServers: string): Promise<string> {
  const dir = realpathSync(await mkdtemp(join(tmpdir(), "bc-mcp-")));
  dirs.push(dir);
  const file = join(dir, "beamclaw.yaml");
  await writeFile(
    file,
    [
      "store: { kind: memory }",
      "gateway: { host: 127.0.0.1, auth: { mode: token, token: mcp-test-token-0123456789 } }",
      `providers: { local: { kind: openai-compatible, baseUrl: "${baseUrl}", apiKey: none } }`,
      'agents: { main: { model: local/m, tools: ["*"] } }',
      "tools:",
      "  mcpServers:",
      mcpServers,
      "",
    ].join("\n"),
  );
  return file;
}

describe("tools.mcpServers", () => {
  it("starts each server with the gateway; an agent calls its tools as <name>__<tool>", async () => {
    const model = await modelServer((body: ChatBody) =>
      body.messages.at(-1)?.role === "tool"
        ? { text: "done" }
        : { toolCalls: [{ name: "fx__add", input: { a: 20, b: 22 } }] },
    );
    const logs: string[] = [];
    const gateway = await startFromConfig({
      configPath: await configFile(
        model.baseUrl,
        `    fx: { command: "${process.execPath}", args: ["${FIXTURE}", "--stdio"], include: [add, echo, ech0], approval: never }`,
      ),
      port: 0,
      logSink: (line) => logs.push(line),
    });
    started.push(gateway);
    expect(logs.some((l) => l.endsWith(" info mcp: fx: 2 tools (fx__add, fx__echo)"))).toBe(true);
    // A name of `include` the server has no tool of (a typo) is said, not passed over.
    expect(
      logs.some((l) =>
        l.endsWith(
          ' warn mcp: fx: tool "ech0" left out: named in include, but the server has no such tool',
        ),
      ),
    ).toBe(true);
    // Approvals are on (the default, on-miss); `approval: never` lets these tools run unasked.
    expect(gateway.runtime.approvals?.mode).toBe("on-miss");
    const run = await gateway.runtime.session("agent:main:main").send("add them");
    const result = await run.result;
    expect(result).toMatchObject({ status: "completed", text: "done" });
    expect(model.bodies[0]!.tools?.map((t) => t.function.name).sort()).toEqual([
      "fx__add",
      "fx__echo",
    ]);
    expect(toolResults(model.bodies[1]!)).toEqual([{ sum: 42 }]);
  });

  it("warns of a tool whose description was cut (over 4 KiB), and registers it", async () => {
    const model = await modelServer(() => ({ text: "unused" }));
    // A raw JSON-RPC stdio server (the SDK's own would not list such a tool).
    const dir = realpathSync(await mkdtemp(join(tmpdir(), "bc-mcp-long-")));
    dirs.push(dir);
    const script = join(dir, "long.mjs");
    await writeFile(
      script,
      [
        'import { createInterface } from "node:readline";',
        "const out = (m) => process.stdout.write(JSON.stringify(m) + '\\n');",
        "const lines = createInterface({ input: process.stdin });",
        "lines.on('close', () => process.exit(0));",
        "lines.on('line', (line) => {",
        "  const m = JSON.parse(line);",
        "  if (m.method === 'initialize') out({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'long', version: '1' } } });",
        "  else if (m.method === 'tools/list') out({ jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'essay', description: 'E'.repeat(10000), inputSchema: { type: 'object' } }] } });",
        "});",
      ].join("\n"),
    );
    const logs: string[] = [];
    const gateway = await startFromConfig({
      configPath: await configFile(
        model.baseUrl,
        `    lg: { command: "${process.execPath}", args: ["${script}"] }`,
      ),
      port: 0,
      logSink: (line) => logs.push(line),
    });
    started.push(gateway);
    expect(logs.some((l) => l.endsWith(" info mcp: lg: 1 tools (lg__essay)"))).toBe(true);
    expect(
      logs.some((l) =>
        l.endsWith(
          ' warn mcp: lg: tool "essay" description truncated: its description of 10000 bytes was cut to 4096',
        ),
      ),
    ).toBe(true);
  });

  it("a server that cannot start stops the gateway's start with an error naming it", async () => {
    const model = await modelServer(() => ({ text: "unused" }));
    const error = await startFromConfig({
      configPath: await configFile(
        model.baseUrl,
        [
          `    fx: { command: "${process.execPath}", args: ["${FIXTURE}", "--stdio"] }`,
          "    gone: { command: /nonexistent/mcp-server }",
        ].join("\n"),
      ),
      port: 0,
    }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(
      /^tools\.mcpServers\.gone: could not connect to MCP server "gone"/,
    );
  });

  it("refuses a server with both a command and a url, or neither", async () => {
    for (const server of [
      '    x: { command: a, url: "http://127.0.0.1:1/mcp" }',
      "    x: { args: [a] }",
    ]) {
      const error = await startFromConfig({
        configPath: await configFile("http://127.0.0.1:1/v1", server),
        port: 0,
      }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(error?.message).toMatch(/tools\.mcpServers\.x/);
      expect(error?.message).toMatch(/either a command \(stdio\) or a url/);
    }
  });
});
