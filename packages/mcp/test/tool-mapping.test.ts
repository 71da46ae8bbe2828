/**
 * How `McpToolServer` turns a server's tools into BeamClaw tools, and their calls' results
 * into what the model reads, against a raw JSON-RPC stdio server (no SDK, so it can list what
 * the SDK's own server would not): a description past 4 KiB is cut, with a marker, and said
 * in `truncated()`; an input schema past 64 KiB, or an empty name, leaves the tool out (in
 * `leftOut()`); arguments that are not an object fail the call with a typed error (nothing
 * sent); and a result's text reaches the model beside its structured content, unless the text
 * is only that content's JSON.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  InvalidArgumentError,
  type JsonValue,
  SupervisedToolRunner,
  ToolRegistry,
} from "@beamclaw/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_DESCRIPTION_BYTES, MAX_INPUT_SCHEMA_BYTES, McpToolServer } from "../src/index.js";
import { toolContext } from "./support.js";

/**
 * Tools: `long` (a 10 KB description), `wide` (a 2-byte character per position: cut at a
 * character's boundary), `huge` (an input schema over 64 KiB), `""` (an empty name), `both`
 * (text and other structured content), `same` (structured content and its JSON as text),
 * `plain` (text only). Each call's arguments are appended to the file `argv[2]`.
 */
const SERVER = `
import { appendFileSync } from "node:fs";
import { createInterface } from "node:readline";
const LOG = process.argv[2];
const out = (m) => process.stdout.write(JSON.stringify(m) + "\\n");
const obj = { type: "object" };
const props = {};
for (let i = 0; i < 2000; i++) props["field_" + i] = { type: "string", description: "x".repeat(30) };
const TOOLS = [
  { name: "long", description: "L".repeat(10000), inputSchema: obj },
  { name: "wide", description: "é".repeat(3000), inputSchema: obj },
  { name: "huge", description: "big", inputSchema: { type: "object", properties: props } },
  { name: "", description: "nameless", inputSchema: obj },
  { name: "both", description: "both", inputSchema: obj },
  { name: "same", description: "same", inputSchema: obj },
  { name: "plain", description: "plain", inputSchema: obj },
];
const lines = createInterface({ input: process.stdin });
lines.on("close", () => process.exit(0));
lines.on("line", (line) => {
  const m = JSON.parse(line);
  const answer = (result) => out({ jsonrpc: "2.0", id: m.id, result });
  if (m.method === "initialize") {
    answer({ protocolVersion: m.params.protocolVersion, capabilities: { tools: {} },
      serverInfo: { name: "mapping", version: "1" } });
  } else if (m.method === "tools/list") {
    answer({ tools: TOOLS });
  } else if (m.method === "tools/call") {
    appendFileSync(LOG, JSON.stringify(m.params.arguments ?? null) + "\\n");
    const structured = { rows: 2, items: ["a", "b"] };
    if (m.params.name === "both") {
      answer({ content: [{ type: "text", text: "2 rows found" }, { type: "text", text: JSON.stringify(structured) }],
        structuredContent: structured });
    } else if (m.params.name === "same") {
      answer({ content: [{ type: "text", text: JSON.stringify({ items: ["a", "b"], rows: 2 }, null, 2) }],
        structuredContent: structured });
    } else {
      answer({ content: [{ type: "text", text: "plain text" }] });
    }
  }
});
`;

let dir: string;
let log: string;
let server: McpToolServer;
let registry: ToolRegistry;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "beamclaw-mcp-mapping-"));
  const script = join(dir, "server.mjs");
  log = join(dir, "calls.log");
  await writeFile(script, SERVER);
  await writeFile(log, "");
  registry = new ToolRegistry();
  server = new McpToolServer({
    name: "map",
    command: process.execPath,
    args: [script, log],
    connectTimeoutMs: 10_000,
  });
  await server.start({ registry });
});
afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

const tool = (name: string) => server.tools.find((t) => t.name === `map__${name}`)!;
const calls = async () => (await readFile(log, "utf8")).split("\n").filter(Boolean);

describe("descriptions", () => {
  it("past 4 KiB are cut there, end with a marker, and are said in truncated()", () => {
    for (const name of ["long", "wide"]) {
      const description = tool(name).description;
      expect(Buffer.byteLength(description)).toBeLessThanOrEqual(4096);
      expect(description).toMatch(/… \[description truncated\]$/);
      expect(description).not.toContain("\uFFFD");
    }
    expect(tool("long").description.startsWith("L".repeat(4000))).toBe(true);
    expect(server.truncated()).toEqual([
      { tool: "long", reason: expect.stringMatching(/10000 bytes was cut to 4096/) },
      { tool: "wide", reason: expect.stringMatching(/6000 bytes was cut to 4096/) },
    ]);
    // The rest are as the server wrote them.
    expect(tool("plain").description).toBe("plain");
    expect(MAX_DESCRIPTION_BYTES).toBe(4096);
  });
});

describe("left out", () => {
  it("a tool whose input schema is over 64 KiB, and one with an empty name, with why", () => {
    expect(server.toolNames().sort()).toEqual(
      ["both", "long", "plain", "same", "wide"].map((t) => `map__${t}`),
    );
    expect(registry.names()).not.toContain("map__");
    expect(server.leftOut()).toEqual([
      { tool: "huge", reason: expect.stringMatching(/input schema is \d+ bytes.*over the 65536/) },
      { tool: "", reason: expect.stringMatching(/name is empty/) },
    ]);
    expect(MAX_INPUT_SCHEMA_BYTES).toBe(65_536);
  });
});

describe("arguments", () => {
  it("that are not an object fail the call with a typed error the model reads; nothing is sent", async () => {
    const before = await calls();
    for (const [input, got] of [
      [["a", "b"], "an array"],
      ["{not json", "a string"],
      [null, "null"],
      [42, "a number"],
    ] as Array<[JsonValue, string]>) {
      const error = await Promise.resolve(tool("plain").execute(input, toolContext())).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(InvalidArgumentError.isInstance(error), String(error)).toBe(true);
      expect((error as Error).message).toContain(
        `takes its arguments as a JSON object, got ${got}`,
      );
      expect((error as Error).message).toContain("plain");
    }
    // Through the tool layer, the model reads it as the call's error result.
    const runner = new SupervisedToolRunner({
      registry,
      resolveAgent: () => ({ id: "main", model: "test/m", tools: ["*"] }),
      retryBaseDelayMs: 1,
    });
    const result = await runner.execute(
      { type: "tool-call", toolCallId: "c", toolName: "map__plain", input: ["a"] },
      toolContext(),
    );
    expect(result.isError).toBe(true);
    expect(JSON.stringify(result.output)).toContain("got an array");
    expect(await calls()).toEqual(before);
    // An object is sent as it is.
    expect(await tool("plain").execute({ q: 1 }, toolContext())).toBe("plain text");
    expect((await calls()).at(-1)).toBe('{"q":1}');
  });
});

describe("results with structured content", () => {
  it("keep their text for the model beside the structured content", async () => {
    expect(await tool("both").execute({}, toolContext())).toEqual({
      content: "2 rows found",
      structuredContent: { rows: 2, items: ["a", "b"] },
    });
  });

  it("are the structured content alone when the text is only its JSON (however spaced or ordered)", async () => {
    expect(await tool("same").execute({}, toolContext())).toEqual({ rows: 2, items: ["a", "b"] });
  });
});
