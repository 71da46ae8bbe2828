/**
 * An approval store that fails (a disk full when an `allow-always` is remembered, a store
 * that cannot be read) does not fail the tool call, hence the run: the answer still holds for
 * the call, the tool runs, and the failure is published as telemetry and a process warning.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  type AgentDefinition,
  APPROVALS_SCOPE,
  ApprovalGate,
  type ApprovalStore,
  defineTool,
  type RunEvent,
  SupervisedToolRunner,
  subscribeTelemetry,
  type TelemetryEvents,
  type ToolContext,
  ToolRegistry,
} from "../src/index.js";
import { useApprovalStores } from "./fixtures/approvals.js";

const approvalStore = useApprovalStores();

const add = defineTool({
  name: "add",
  description: "Adds two numbers",
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => a + b,
});

const call = {
  type: "tool-call" as const,
  toolCallId: "c",
  toolName: "add",
  input: { a: 1, b: 2 },
};

/** The tool call's context; `events` are the run events it emitted. */
function context(): ToolContext & { events: RunEvent[] } {
  const events: RunEvent[] = [];
  const emit = (event: RunEvent) => void events.push(event);
  const ids = { sessionKey: "agent:main:main", agentId: "main", runId: "run-1", toolCallId: "c" };
  return { ...ids, signal: new AbortController().signal, emit, events };
}

function runner(gate: ApprovalGate): SupervisedToolRunner {
  const agent: AgentDefinition = { id: "main", model: "test/m", tools: ["*"] };
  return new SupervisedToolRunner({
    registry: new ToolRegistry([add]),
    resolveAgent: () => agent,
    retryBaseDelayMs: 1,
    approvals: gate,
  });
}

/** The memory store's approvals, with `list` and/or `put` failing as a full disk would. */
function failing(store: ApprovalStore, fail: { list?: boolean; put?: boolean }): ApprovalStore {
  const full = () => Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
  return {
    list: (sessionKey) => (fail.list ? Promise.reject(full()) : store.list(sessionKey)),
    put: (sessionKey, record) => {
      // Thrown, not rejected: a store may fail either way.
      if (fail.put) throw full();
      return store.put(sessionKey, record);
    },
    clear: (sessionKey, pattern) => store.clear(sessionKey, pattern),
  };
}

async function answerNext(
  ctx: { events: RunEvent[] },
  gate: ApprovalGate,
  decision: "allow-always",
) {
  for (let i = 0; i < 100 && !ctx.events.some((e) => e.type === "tool-approval-request"); i++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  const request = ctx.events.find((e) => e.type === "tool-approval-request");
  if (request?.type !== "tool-approval-request") throw new Error("no approval request");
  ctx.events.length = 0;
  expect(gate.answer(request.requestId, decision, { scopes: [APPROVALS_SCOPE] })).toBe(true);
}

const unsubscribe: Array<() => void> = [];
const warnings: Error[] = [];
const onWarning = (warning: Error) => {
  if (warning.name === "BeamClawWarning") warnings.push(warning);
};
process.on("warning", onWarning);
afterAll(() => {
  process.off("warning", onWarning);
});
afterEach(() => {
  for (const off of unsubscribe.splice(0)) off();
  warnings.length = 0;
});

function storeErrors(): Array<TelemetryEvents["beamclaw:approval.store-error"]> {
  const seen: Array<TelemetryEvents["beamclaw:approval.store-error"]> = [];
  unsubscribe.push(subscribeTelemetry("beamclaw:approval.store-error", (e) => seen.push(e)));
  return seen;
}

async function warningsSettled(): Promise<void> {
  // process.emitWarning delivers on the next tick.
  await new Promise((resolve) => setImmediate(resolve));
}

describe("ApprovalGate with a failing store", () => {
  it("an allow-always that cannot be stored still runs the tool, and the failure is reported", async () => {
    const memory = await approvalStore();
    const gate = new ApprovalGate({ mode: "on-miss", store: failing(memory, { put: true }) });
    const errors = storeErrors();
    const ctx = context();
    const result = runner(gate).execute(call, ctx);
    await answerNext(ctx, gate, "allow-always");
    expect(await result).toEqual({ output: 3, isError: false });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      session: "agent:main:main",
      runId: "run-1",
      tool: "add",
      operation: "put",
    });
    expect(errors[0]!.error).toMatchObject({ code: "ENOSPC" });
    await warningsSettled();
    expect(warnings.map((w) => w.message).join("\n")).toContain("could not remember");
    // Nothing was remembered: the next call asks again (and runs once allowed).
    expect(await memory.list("agent:main:main")).toEqual([]);
    const again = runner(gate).execute(call, ctx);
    await answerNext(ctx, gate, "allow-always");
    expect((await again).output).toBe(3);
  });

  it("a store that cannot be read asks the person instead of failing the call", async () => {
    const memory = await approvalStore();
    await memory.put("agent:main:main", { pattern: "add", decision: "allow", decidedAt: 1 });
    const gate = new ApprovalGate({ mode: "on-miss", store: failing(memory, { list: true }) });
    const errors = storeErrors();
    const ctx = context();
    const result = runner(gate).execute(call, ctx);
    await answerNext(ctx, gate, "allow-always");
    expect(await result).toEqual({ output: 3, isError: false });
    expect(errors.map((e) => e.operation)).toEqual(["list"]);
  });

  it("a working store still remembers allow-always (the next call is not asked)", async () => {
    const memory = await approvalStore();
    const gate = new ApprovalGate({ mode: "on-miss", store: memory });
    const errors = storeErrors();
    const ctx = context();
    const first = runner(gate).execute(call, ctx);
    await answerNext(ctx, gate, "allow-always");
    expect((await first).output).toBe(3);
    expect((await runner(gate).execute(call, ctx)).output).toBe(3);
    expect(ctx.events.filter((e) => e.type === "tool-approval-request")).toEqual([]);
    expect(errors).toEqual([]);
  });
});
