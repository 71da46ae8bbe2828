/**
 * A tool result that JSON cannot carry (a cycle, a BigInt) must not reach the model as a
 * successful "[object Object]": the model would take a meaningless string for the tool's
 * answer. It is an error result that says why, and the run goes on.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  type AgentDefinition,
  defineTool,
  type JsonValue,
  SupervisedToolRunner,
  type ToolContext,
  ToolRegistry,
} from "../src/index.js";

const agent: AgentDefinition = { id: "main", model: "test/m", tools: ["*"] };

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

function toolReturning(name: string, value: () => unknown) {
  return defineTool({
    name,
    description: "d",
    parameters: z.object({}),
    execute: () => value() as JsonValue,
  });
}

async function call(tool: ReturnType<typeof toolReturning>) {
  const runner = new SupervisedToolRunner({
    registry: new ToolRegistry([tool]),
    resolveAgent: () => agent,
  });
  return runner.execute(
    { type: "tool-call", toolCallId: "c", toolName: tool.name, input: {} },
    context(),
  );
}

describe("a tool result JSON cannot carry", () => {
  it("a cyclic object is an error result naming the tool and the reason", async () => {
    const result = await call(
      toolReturning("cyclic", () => {
        const node: Record<string, unknown> = { id: 1 };
        node.self = node;
        return node;
      }),
    );
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(/^tool "cyclic" returned a result that is not JSON: .*circular/i);
  });

  it("a BigInt is an error result naming the tool and the reason", async () => {
    const result = await call(toolReturning("big", () => ({ count: 10n })));
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(/^tool "big" returned a result that is not JSON: .*BigInt/);
  });

  it("values JSON changes but can carry still become their JSON form", async () => {
    const when = new Date(Date.UTC(2024, 0, 2));
    const result = await call(
      toolReturning("dated", () => ({ when, missing: undefined, list: [undefined, Number.NaN] })),
    );
    expect(result).toEqual({
      output: { when: "2024-01-02T00:00:00.000Z", list: [null, null] },
      isError: false,
    });
  });
});
