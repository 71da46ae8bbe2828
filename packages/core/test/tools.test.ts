import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  type AgentDefinition,
  APPROVALS_SCOPE,
  ApprovalGate,
  ApprovalScopeError,
  defineTool,
  InvalidArgumentError,
  isTransientError,
  OverloadedError,
  type RunEvent,
  SupervisedToolRunner,
  TaskSupervisor,
  type ToolContext,
  ToolRegistry,
} from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";

const agent = (tools: string[]): AgentDefinition => ({ id: "main", model: "test/m", tools });

function context(overrides: Partial<ToolContext> = {}): ToolContext & { events: RunEvent[] } {
  const events: RunEvent[] = [];
  return {
    signal: new AbortController().signal,
    sessionKey: "agent:main:main",
    agentId: "main",
    runId: "run-1",
    toolCallId: "call-1",
    emit: (event) => events.push(event),
    events,
    ...overrides,
  };
}

const add = defineTool({
  name: "add",
  description: "Adds two numbers",
  parameters: z.object({ a: z.number(), b: z.number().describe("the second number") }),
  execute: ({ a, b }) => a + b,
});

const stores: MemoryStore[] = [];
async function openStore(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.open();
  stores.push(store);
  return store;
}

const supervisors: TaskSupervisor[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const t of supervisors.splice(0)) await t.stop();
});

function runner(
  registry: ToolRegistry,
  extra: Partial<ConstructorParameters<typeof SupervisedToolRunner>[0]> = {},
) {
  return new SupervisedToolRunner({
    registry,
    resolveAgent: () => agent(["*"]),
    retryBaseDelayMs: 1,
    ...extra,
  });
}

describe("defineTool", () => {
  it("generates the providers' JSON Schema from the zod schema", () => {
    expect(add.inputSchema).toEqual({
      type: "object",
      properties: {
        a: { type: "number" },
        b: { type: "number", description: "the second number" },
      },
      required: ["a", "b"],
      additionalProperties: false,
    });
  });

  it("refuses a bad name, a missing description, and parameters that are not an object", () => {
    const base = { description: "d", parameters: z.object({}), execute: () => null };
    expect(() => defineTool({ ...base, name: "has space" })).toThrow(InvalidArgumentError);
    expect(() => defineTool({ ...base, name: "ok", description: "" })).toThrow(
      InvalidArgumentError,
    );
    expect(() => defineTool({ ...base, name: "ok", parameters: z.string() })).toThrow(/z\.object/);
  });

  it("answers invalid arguments to the model as an error result naming each field, without running the tool", async () => {
    let ran = false;
    const tool = defineTool({
      name: "strict",
      description: "d",
      parameters: z.object({ city: z.string().min(2), days: z.number().int() }),
      execute: () => {
        ran = true;
        return null;
      },
    });
    const result = await runner(new ToolRegistry([tool])).execute(
      { type: "tool-call", toolCallId: "c", toolName: "strict", input: { city: "x", days: 1.5 } },
      context(),
    );
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(/city:/);
    expect(result.output).toMatch(/days:/);
    expect(ran).toBe(false);
  });
});

describe("ToolRegistry", () => {
  it("offers a session only the global tools its agent's allowlist names", () => {
    const other = defineTool({
      name: "other",
      description: "d",
      parameters: z.object({}),
      execute: () => 1,
    });
    const registry = new ToolRegistry([add, other]);
    expect([...registry.forSession(agent(["add"]), "agent:main:main").keys()]).toEqual(["add"]);
    expect([...registry.forSession(agent(["*"]), "agent:main:main").keys()]).toEqual([
      "add",
      "other",
    ]);
    expect([...registry.forSession(agent([]), "agent:main:main").keys()]).toEqual([]);
  });

  it("never lets one session's own tools leak into another session", () => {
    const registry = new ToolRegistry([add]);
    const secret = defineTool({
      name: "secret",
      description: "d",
      parameters: z.object({}),
      execute: () => "s",
    });
    registry.registerForSession("agent:main:a", secret);
    expect(registry.forSession(agent(["*"]), "agent:main:a").has("secret")).toBe(true);
    expect(registry.forSession(agent(["*"]), "agent:main:b").has("secret")).toBe(false);
    registry.clearSession("agent:main:a");
    expect(registry.forSession(agent(["*"]), "agent:main:a").has("secret")).toBe(false);
  });

  it("refuses duplicate names", () => {
    const registry = new ToolRegistry([add]);
    expect(() => registry.register(add)).toThrow(/already registered/);
  });
});

describe("SupervisedToolRunner", () => {
  it("runs a tool with validated arguments and returns its JSON result", async () => {
    const result = await runner(new ToolRegistry([add])).execute(
      { type: "tool-call", toolCallId: "c", toolName: "add", input: { a: 2, b: 3 } },
      context(),
    );
    expect(result).toEqual({ output: 5, isError: false });
  });

  it("retries a transient failure up to 3 times with backoff, then succeeds", async () => {
    let calls = 0;
    const flaky = defineTool({
      name: "flaky",
      description: "d",
      parameters: z.object({}),
      execute: () => {
        calls++;
        if (calls < 4) throw new OverloadedError("busy", 1);
        return "ok";
      },
    });
    const result = await runner(new ToolRegistry([flaky])).execute(
      { type: "tool-call", toolCallId: "c", toolName: "flaky", input: {} },
      context(),
    );
    expect(result).toEqual({ output: "ok", isError: false });
    expect(calls).toBe(4);
  });

  it("gives up after 3 retries and reports the failure to the model", async () => {
    let calls = 0;
    const down = defineTool({
      name: "down",
      description: "d",
      parameters: z.object({}),
      execute: () => {
        calls++;
        throw Object.assign(new Error("connection reset"), { code: "ECONNRESET" });
      },
    });
    const result = await runner(new ToolRegistry([down])).execute(
      { type: "tool-call", toolCallId: "c", toolName: "down", input: {} },
      context(),
    );
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(/after 4 attempts.*connection reset/);
    expect(calls).toBe(4);
  });

  it("does not retry a failure that is not transient", async () => {
    let calls = 0;
    const broken = defineTool({
      name: "broken",
      description: "d",
      parameters: z.object({}),
      execute: () => {
        calls++;
        throw new TypeError("bug");
      },
    });
    const result = await runner(new ToolRegistry([broken])).execute(
      { type: "tool-call", toolCallId: "c", toolName: "broken", input: {} },
      context(),
    );
    expect(result).toEqual({ output: 'tool "broken" failed: bug', isError: true });
    expect(calls).toBe(1);
  });

  it("times a tool out under the TaskSupervisor and aborts its signal", async () => {
    const tasks = await new TaskSupervisor().start();
    supervisors.push(tasks);
    let aborted = false;
    const slow = defineTool({
      name: "slow",
      description: "d",
      parameters: z.object({}),
      timeoutMs: 30,
      execute: (_args, { signal }) =>
        new Promise<string>((resolve) => {
          signal.addEventListener("abort", () => {
            aborted = true;
            resolve("late");
          });
        }),
    });
    const result = await runner(new ToolRegistry([slow]), { tasks: () => tasks }).execute(
      { type: "tool-call", toolCallId: "c", toolName: "slow", input: {} },
      context(),
    );
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(/TIMEOUT/);
    expect(aborted).toBe(true);
  });

  it("throws (instead of answering) when the run itself is aborted", async () => {
    const controller = new AbortController();
    const hang = defineTool({
      name: "hang",
      description: "d",
      parameters: z.object({}),
      execute: (_a, { signal }) =>
        new Promise<never>((_, reject) =>
          signal.addEventListener("abort", () => reject(signal.reason)),
        ),
    });
    const pending = runner(new ToolRegistry([hang])).execute(
      { type: "tool-call", toolCallId: "c", toolName: "hang", input: {} },
      context({ signal: controller.signal }),
    );
    controller.abort(new Error("run aborted"));
    await expect(pending).rejects.toThrow("run aborted");
  });

  it("answers a call to a tool the session cannot see as an error result", async () => {
    const result = await new SupervisedToolRunner({
      registry: new ToolRegistry([add]),
      resolveAgent: () => agent([]),
    }).execute(
      { type: "tool-call", toolCallId: "c", toolName: "add", input: { a: 1, b: 1 } },
      context(),
    );
    expect(result.isError).toBe(true);
  });
});

describe("approval", () => {
  const call = {
    type: "tool-call" as const,
    toolCallId: "c",
    toolName: "add",
    input: { a: 1, b: 2 },
  };

  async function answerNext(
    ctx: { events: RunEvent[] },
    gate: ApprovalGate,
    decision: "allow-once" | "allow-always" | "deny",
  ) {
    for (let i = 0; i < 100 && !ctx.events.some((e) => e.type === "tool-approval-request"); i++) {
      await new Promise((r) => setImmediate(r));
    }
    const request = ctx.events.find((e) => e.type === "tool-approval-request");
    if (request?.type !== "tool-approval-request")
      throw new Error("no approval request was published");
    ctx.events.length = 0;
    expect(gate.answer(request.requestId, decision, { scopes: [APPROVALS_SCOPE] })).toBe(true);
  }

  it("off: runs without asking", async () => {
    const gate = new ApprovalGate({ mode: "off", store: (await openStore()).approvals });
    const ctx = context();
    expect(
      (await runner(new ToolRegistry([add]), { approvals: gate }).execute(call, ctx)).output,
    ).toBe(3);
    expect(ctx.events).toEqual([]);
  });

  it("on-miss: asks once, and remembers allow-always for the session only", async () => {
    const store = await openStore();
    const gate = new ApprovalGate({ mode: "on-miss", store: store.approvals });
    const r = runner(new ToolRegistry([add]), { approvals: gate });
    const ctx = context();
    const first = r.execute(call, ctx);
    await answerNext(ctx, gate, "allow-always");
    expect((await first).output).toBe(3);
    expect((await r.execute(call, ctx)).output).toBe(3);
    expect(ctx.events.filter((e) => e.type === "tool-approval-request")).toHaveLength(0);
    const other = context({ sessionKey: "agent:main:other" });
    const third = r.execute(call, other);
    await answerNext(other, gate, "deny");
    expect(await third).toEqual({ output: "approval for add was denied", isError: true });
  });

  it("a request whose event cannot be delivered fails and leaves nothing pending", async () => {
    const gate = new ApprovalGate({ mode: "always", store: (await openStore()).approvals });
    const subject = {
      sessionKey: "agent:main:main",
      runId: "run-1",
      toolCallId: "call-1",
      toolName: "add",
      input: { a: 1, b: 2 },
      key: "add",
      display: "add",
    };
    await expect(
      gate.check(subject, () => {
        throw new Error("listener broke");
      }),
    ).rejects.toThrow("listener broke");
    expect(gate.pending()).toEqual([]);
  });

  it("on-miss: allow-once is not remembered", async () => {
    const gate = new ApprovalGate({ mode: "on-miss", store: (await openStore()).approvals });
    const r = runner(new ToolRegistry([add]), { approvals: gate });
    const ctx = context();
    const first = r.execute(call, ctx);
    await answerNext(ctx, gate, "allow-once");
    await first;
    const second = r.execute(call, ctx);
    await answerNext(ctx, gate, "allow-once");
    expect((await second).output).toBe(3);
  });

  it("always: asks every time even after allow-always", async () => {
    const gate = new ApprovalGate({ mode: "always", store: (await openStore()).approvals });
    const r = runner(new ToolRegistry([add]), { approvals: gate });
    const ctx = context();
    const first = r.execute(call, ctx);
    await answerNext(ctx, gate, "allow-always");
    await first;
    const second = r.execute(call, ctx);
    await answerNext(ctx, gate, "deny");
    expect((await second).isError).toBe(true);
  });

  it("times out into the default decision: deny unless configured", async () => {
    const store = await openStore();
    const denyGate = new ApprovalGate({ mode: "always", timeoutMs: 20, store: store.approvals });
    const denied = await runner(new ToolRegistry([add]), { approvals: denyGate }).execute(
      call,
      context(),
    );
    expect(denied).toEqual({
      output: "approval for add timed out and defaulted to deny",
      isError: true,
    });
    const allowGate = new ApprovalGate({
      mode: "always",
      timeoutMs: 20,
      defaultDecision: "allow-once",
      store: store.approvals,
    });
    expect(
      (await runner(new ToolRegistry([add]), { approvals: allowGate }).execute(call, context()))
        .output,
    ).toBe(3);
  });

  it("defaults to a 120 s timeout and a deny", async () => {
    const gate = new ApprovalGate({ store: (await openStore()).approvals });
    expect(gate.timeoutMs).toBe(120_000);
    expect(gate.defaultDecision).toBe("deny");
    expect(gate.mode).toBe("on-miss");
  });

  it("refuses an answer from a client without the operator.approvals scope, and keeps the request open", async () => {
    const gate = new ApprovalGate({ mode: "always", store: (await openStore()).approvals });
    const ctx = context();
    const pending = runner(new ToolRegistry([add]), { approvals: gate }).execute(call, ctx);
    for (let i = 0; i < 100 && ctx.events.length === 0; i++)
      await new Promise((r) => setImmediate(r));
    const request = ctx.events[0];
    if (request?.type !== "tool-approval-request") throw new Error("no request");
    expect(() =>
      gate.answer(request.requestId, "allow-once", { scopes: ["operator.read"] }),
    ).toThrow(ApprovalScopeError);
    expect(gate.pending()).toHaveLength(1);
    gate.answer(request.requestId, "allow-once", { scopes: [APPROVALS_SCOPE] });
    expect((await pending).output).toBe(3);
    expect(gate.pending()).toHaveLength(0);
  });

  it("a tool with approval 'never' is never asked about; one with 'always' is asked even in on-miss", async () => {
    const store = await openStore();
    const gate = new ApprovalGate({ mode: "on-miss", timeoutMs: 20, store: store.approvals });
    const free = defineTool({
      name: "free",
      description: "d",
      parameters: z.object({}),
      approval: "never",
      execute: () => 1,
    });
    const guarded = defineTool({
      name: "guarded",
      description: "d",
      parameters: z.object({}),
      approval: "always",
      execute: () => 2,
    });
    await store.approvals.put("agent:main:main", {
      pattern: "tool:guarded",
      decision: "allow",
      decidedAt: 1,
    });
    const r = runner(new ToolRegistry([free, guarded]), { approvals: gate });
    expect((await r.execute({ ...call, toolName: "free", input: {} }, context())).output).toBe(1);
    const ctx = context();
    const result = await r.execute({ ...call, toolName: "guarded", input: {} }, ctx);
    expect(ctx.events.some((e) => e.type === "tool-approval-request")).toBe(true);
    expect(result.isError).toBe(true);
  });

  it("binds the approval to the tool's approvalKey, so approving one argument does not approve another", async () => {
    const store = await openStore();
    const gate = new ApprovalGate({ mode: "on-miss", store: store.approvals });
    const rm = defineTool({
      name: "rm",
      description: "d",
      parameters: z.object({ path: z.string() }),
      approvalKey: ({ path }) => ({ key: `rm:${path}`, display: `rm ${path}` }),
      execute: ({ path }) => `removed ${path}`,
    });
    const r = runner(new ToolRegistry([rm]), { approvals: gate });
    const ctx = context();
    const first = r.execute({ ...call, toolName: "rm", input: { path: "/tmp/a" } }, ctx);
    await answerNext(ctx, gate, "allow-always");
    expect((await first).output).toBe("removed /tmp/a");
    expect(
      (await r.execute({ ...call, toolName: "rm", input: { path: "/tmp/a" } }, ctx)).output,
    ).toBe("removed /tmp/a");
    // Another argument is asked about again.
    const other = r.execute({ ...call, toolName: "rm", input: { path: "/etc" } }, ctx);
    await answerNext(ctx, gate, "deny");
    expect((await other).isError).toBe(true);
  });
});

describe("isTransientError", () => {
  it("treats retryable errors and network codes as transient, timeouts and plain errors as not", () => {
    expect(isTransientError(new OverloadedError("x", 1))).toBe(true);
    expect(isTransientError(Object.assign(new Error("x"), { code: "EAI_AGAIN" }))).toBe(true);
    expect(
      isTransientError(
        new Error("x", { cause: Object.assign(new Error("y"), { code: "ECONNRESET" }) }),
      ),
    ).toBe(true);
    expect(
      isTransientError(Object.assign(new Error("x"), { code: "TIMEOUT", isRetryable: true })),
    ).toBe(false);
    expect(isTransientError(new Error("x"))).toBe(false);
    expect(isTransientError("x")).toBe(false);
  });

  it("does not retry an error that says isRetryable: false, whatever its cause", () => {
    const reset = Object.assign(new Error("socket"), { code: "ECONNRESET" });
    expect(
      isTransientError(Object.assign(new Error("x", { cause: reset }), { isRetryable: false })),
    ).toBe(false);
    expect(
      isTransientError(Object.assign(new Error("x", { cause: reset }), { transient: false })),
    ).toBe(false);
  });
});
