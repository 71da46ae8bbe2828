/**
 * Whatever a tool does wrong — throws something that is not an `Error`, fails with a message
 * no model API accepts, or has an `approvalKey` that throws — the call ends as an error
 * result the model can read, and the run goes on: nothing throws into the agent loop.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  type AgentDefinition,
  ApprovalGate,
  defineTool,
  SupervisedToolRunner,
  TimeoutError,
  ToolRegistry,
} from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { toolContext } from "./fixtures/exec/support.js";

const agent: AgentDefinition = { id: "main", model: "test/m", tools: ["*"] };

async function call(
  tool: ReturnType<typeof defineTool>,
  input: Record<string, unknown> = {},
  approvals?: ApprovalGate,
) {
  const runner = new SupervisedToolRunner({
    registry: new ToolRegistry([tool]),
    resolveAgent: () => agent,
    retryBaseDelayMs: 1,
    ...(approvals === undefined ? {} : { approvals }),
  });
  return runner.execute(
    { type: "tool-call", toolCallId: "c", toolName: tool.name, input: input as never },
    toolContext(),
  );
}

function throwing(name: string, thrown: () => unknown) {
  return defineTool({
    name,
    description: "d",
    parameters: z.object({}),
    execute: () => {
      throw thrown();
    },
  });
}

describe("a tool that throws something odd", () => {
  it("an object that has no string form and no JSON form is an error result", async () => {
    const result = await call(
      throwing("odd", () => {
        const odd: Record<string, unknown> = Object.create(null);
        odd.self = odd;
        return odd;
      }),
    );
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(/^tool "odd" failed: /);
  });

  it("an Error whose message getter throws is an error result", async () => {
    const result = await call(
      throwing("getter", () => {
        const error = new Error("x");
        Object.defineProperty(error, "message", {
          get() {
            throw new Error("no message");
          },
        });
        return error;
      }),
    );
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(/^tool "getter" failed: /);
  });

  it("a message cut mid-emoji reaches the model as well-formed text", async () => {
    const emoji = "😀";
    const result = await call(throwing("cut", () => new Error(`bad ${emoji.slice(0, 1)}`)));
    expect(result.isError).toBe(true);
    expect(typeof result.output).toBe("string");
    expect((result.output as string).isWellFormed()).toBe(true);
    expect(result.output).toBe('tool "cut" failed: bad \ufffd');
  });

  it("an invalid-arguments message naming a key with a lone surrogate is well-formed", async () => {
    const strict = defineTool({
      name: "strict",
      description: "d",
      parameters: z.strictObject({ a: z.string().optional() }),
      execute: () => "ran",
    });
    const result = await call(strict, { "k\ud800": 1 });
    expect(result.isError).toBe(true);
    expect((result.output as string).isWellFormed()).toBe(true);
    expect(result.output).toMatch(/^invalid arguments for strict: /);
  });

  it("an invalid-arguments message is capped like any result", async () => {
    const strict = defineTool({
      name: "strict",
      description: "d",
      parameters: z.strictObject({}),
      execute: () => "ran",
    });
    const result = await call(strict, { ["k".repeat(200_000)]: 1 });
    expect(result.isError).toBe(true);
    expect(Buffer.byteLength(result.output as string)).toBeLessThanOrEqual(64 * 1024);
    expect(result.output).toMatch(/tool output truncated/);
  });
});

describe("a tool whose approvalKey fails", () => {
  async function gate() {
    const store = new MemoryStore();
    await store.open();
    return { store, gate: new ApprovalGate({ store: store.approvals, mode: "always" }) };
  }

  it("a throwing approvalKey is an error result; nothing is asked and nothing runs", async () => {
    const { store, gate: approvals } = await gate();
    const ran: unknown[] = [];
    const tool = defineTool({
      name: "keyed",
      description: "d",
      parameters: z.object({ path: z.string() }),
      approvalKey: () => {
        throw new Error("cannot bind");
      },
      execute: (args) => {
        ran.push(args);
        return "ran";
      },
    });
    const result = await call(tool, { path: "/x" }, approvals);
    expect(result).toEqual({
      output: 'tool "keyed" cannot be approved: its approvalKey threw: cannot bind',
      isError: true,
    });
    expect(approvals.pending()).toEqual([]);
    expect(ran).toEqual([]);
    await store.close();
  });

  it("an approvalKey that returns no key is an error result", async () => {
    const { store, gate: approvals } = await gate();
    const tool = defineTool({
      name: "keyless",
      description: "d",
      parameters: z.object({}),
      approvalKey: () => undefined as never,
      execute: () => "ran",
    });
    const result = await call(tool, {}, approvals);
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(/^tool "keyless" cannot be approved: /);
    expect(approvals.pending()).toEqual([]);
    await store.close();
  });
});

describe("a tool that never settles, run without a task supervisor", () => {
  it("times out with a typed TimeoutError naming the tool and the limit, and aborts its signal", async () => {
    let seen: AbortSignal | undefined;
    const tool = defineTool({
      name: "stuck",
      description: "d",
      parameters: z.object({}),
      timeoutMs: 20,
      execute: (_args, { signal }) => {
        seen = signal;
        return new Promise<string>(() => {});
      },
    });
    const result = await call(tool);
    expect(result).toEqual({
      output: 'tool "stuck" failed: TIMEOUT: tool stuck timed out after 20 ms',
      isError: true,
    });
    expect(seen?.aborted).toBe(true);
    expect(TimeoutError.isInstance(seen?.reason)).toBe(true);
  });
});

describe("a tool that throws an object whose properties throw when read", () => {
  it("is an error result, not retried, and the run goes on", async () => {
    let calls = 0;
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error("no reading");
        },
        getPrototypeOf() {
          throw new Error("no prototype");
        },
      },
    );
    const tool = defineTool({
      name: "hostile",
      description: "d",
      parameters: z.object({}),
      execute: () => {
        calls++;
        throw hostile;
      },
    });
    const result = await call(tool);
    expect(result).toEqual({
      output: 'tool "hostile" failed: a value that cannot be described',
      isError: true,
    });
    expect(calls).toBe(1);
  });
});

describe("a tool that asks approval on every call, with no approval gate", () => {
  it("is refused with an error result naming why, and never runs", async () => {
    let ran = 0;
    const deploy = defineTool({
      name: "deploy",
      description: "d",
      parameters: z.object({}),
      approval: "always",
      execute: () => {
        ran++;
        return "deployed";
      },
    });
    const result = await call(deploy);
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(
      /^tool "deploy" needs approval on every call, and no approval gate is configured; nothing ran/,
    );
    expect(ran).toBe(0);
  });

  it("a tool that inherits the gate's mode runs when there is no gate", async () => {
    const tool = defineTool({
      name: "plain",
      description: "d",
      parameters: z.object({}),
      execute: () => "ran",
    });
    expect(await call(tool)).toEqual({ output: "ran", isError: false });
  });
});

describe("arguments a model sent as text that is not JSON", () => {
  // A provider hands over arguments it cannot parse as the raw text (nothing is lost).
  const weather = defineTool({
    name: "weather",
    description: "d",
    parameters: z.object({ city: z.string() }),
    execute: ({ city }) => city,
  });

  it("say the arguments are not valid JSON, and where", () => {
    const parsed = weather.parse('{"city": "Paris"');
    expect(parsed.ok).toBe(false);
    expect(!parsed.ok && parsed.message).toMatch(
      /^invalid arguments for weather: the arguments are not valid JSON \(.*\); send one JSON object$/,
    );
  });

  it("JSON text that is not an object says what it is", () => {
    const parsed = weather.parse("[1, 2]");
    expect(!parsed.ok && parsed.message).toBe(
      "invalid arguments for weather: the arguments must be one JSON object, got an array",
    );
  });
});
