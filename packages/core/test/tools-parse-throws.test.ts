/**
 * A tool's zod schema may run code on what the model sent: a refinement that calls
 * `new URL(...)` or `JSON.parse(...)`. When that code throws on bad
 * input, the call must end as an error result the model can read and correct, with
 * `execute` never run — not as an exception that fails the whole run.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BasicToolRunner, defineTool, type ToolContext } from "../src/index.js";

function context(): ToolContext {
  return {
    signal: new AbortController().signal,
    sessionKey: "agent:main:main",
    agentId: "main",
    runId: "run-1",
    toolCallId: "call-1",
    emit: () => {},
  };
}

describe("defineTool argument validation that throws", () => {
  const executed: unknown[] = [];
  const fetchPage = defineTool({
    name: "fetch_page",
    description: "Fetches an https page",
    parameters: z.object({
      url: z.string().refine((u) => new URL(u).protocol === "https:", "must be https"),
    }),
    execute: (args) => {
      executed.push(args);
      return "fetched";
    },
  });
  const loadJson = defineTool({
    name: "load_json",
    description: "Parses JSON text",
    parameters: z.object({
      text: z.string().refine((t) => typeof JSON.parse(t) === "object", "must be a JSON object"),
    }),
    execute: (args) => {
      executed.push(args);
      return "loaded";
    },
  });
  const asyncCheck = defineTool({
    name: "async_check",
    description: "Has an async refinement",
    parameters: z.object({ name: z.string().refine(async () => true) }),
    execute: (args) => {
      executed.push(args);
      return "checked";
    },
  });
  const runner = new BasicToolRunner({ tools: [fetchPage, loadJson, asyncCheck] });

  it.each([
    [
      "a refinement that throws",
      "fetch_page",
      { url: "not a url" },
      /invalid arguments for fetch_page: .*Invalid URL/,
    ],
    [
      "a JSON check that throws",
      "load_json",
      { text: "{bad" },
      /invalid arguments for load_json: .*JSON/,
    ],
    ["an async refinement", "async_check", { name: "x" }, /invalid arguments for async_check: /],
  ])(
    "%s gives an error result, and execute never runs",
    async (_label, toolName, input, message) => {
      const result = await runner.execute(
        { type: "tool-call", toolCallId: "call-1", toolName, input },
        context(),
      );
      expect(result.isError).toBe(true);
      expect(result.output).toMatch(message);
      expect(executed).toEqual([]);
    },
  );

  it("still passes good arguments through the same schema", async () => {
    const result = await runner.execute(
      {
        type: "tool-call",
        toolCallId: "call-2",
        toolName: "load_json",
        input: { text: '{"a":1}' },
      },
      context(),
    );
    expect(result).toEqual({ output: "loaded", isError: false });
    expect(executed.splice(0)).toEqual([{ text: '{"a":1}' }]);
  });

  it("parse reports the failure instead of throwing", () => {
    expect(fetchPage.parse({ url: "::" })).toMatchObject({ ok: false });
    expect(fetchPage.parse({ url: "http://example.com" })).toEqual({
      ok: false,
      message: "invalid arguments for fetch_page: url: must be https",
    });
  });
});
