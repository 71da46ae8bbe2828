import { AsyncLocalStorage } from "node:async_hooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import {
  APPROVALS_SCOPE,
  beginTelemetryTrace,
  CronService,
  createProviderChain,
  currentTelemetryIdentity,
  defineTool,
  MemoryStore,
  ProviderError,
  type RunHandle,
  subscribeTelemetry,
  subscribeTrace,
  type Tenant,
  TenantManager,
  type TraceContexts,
  type TracedOperation,
  telemetryTracingChannel,
  traceTelemetry,
} from "../src/index.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/index.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type TraceEvent = "start" | "end" | "asyncStart" | "asyncEnd" | "error";

/** Every event of one traced operation, grouped by its context object, in order. */
function recordTraces<N extends TracedOperation>(name: N) {
  const byContext = new Map<TraceContexts[N], TraceEvent[]>();
  const on = (event: TraceEvent) => (ctx: TraceContexts[N]) => {
    const seen = byContext.get(ctx) ?? [];
    seen.push(event);
    byContext.set(ctx, seen);
  };
  cleanups.push(
    subscribeTrace(name, {
      start: on("start"),
      end: on("end"),
      asyncStart: on("asyncStart"),
      asyncEnd: on("asyncEnd"),
      error: on("error"),
    }),
  );
  return {
    get contexts() {
      return [...byContext.keys()];
    },
    eventsOf: (ctx: TraceContexts[N]) => byContext.get(ctx) ?? [],
  };
}

const COMPLETED: TraceEvent[] = ["start", "end", "asyncStart", "asyncEnd"];
const FAILED: TraceEvent[] = ["start", "end", "error", "asyncStart", "asyncEnd"];

const add = defineTool({
  name: "add",
  description: "adds",
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => a + b,
});

const broken = defineTool({
  name: "broken",
  description: "always fails",
  parameters: z.object({}),
  execute: () => {
    throw new Error("the tool broke");
  },
});

/** One tenant, "acme", whose agent "main" talks to a scripted provider through a chain. */
async function startTenant(
  responses: ScriptEntry[],
  options: { approvals?: boolean } = {},
): Promise<Tenant> {
  const store = new MemoryStore();
  await store.open();
  const tenants = new TenantManager();
  cleanups.push(async () => {
    await tenants.stop();
    await store.close();
  });
  return tenants.add({
    id: "acme",
    runtime: {
      store,
      models: createProviderChain({
        providers: [createScriptedProvider({ id: "fake", responses })],
        retry: { maxAttempts: 1 },
      }),
      agents: [{ id: "main", model: "fake/m1", tools: ["add", "broken"] }],
      tools: [add, broken],
      ...(options.approvals === true ? { approvals: { mode: "always" as const } } : {}),
    },
  });
}

/** Consumes a run, allowing (or denying) each approval request; resolves with its result. */
async function drive(
  tenant: Tenant,
  run: RunHandle,
  decision: "allow-once" | "deny" = "allow-once",
) {
  for await (const event of run) {
    if (event.type === "tool-approval-request") {
      tenant.runtime.approvals!.answer(event.requestId, decision, { scopes: [APPROVALS_SCOPE] });
    }
  }
  return run.result;
}

const acmeMain = { tenant: "acme", agent: "main", session: "agent:main:main" };

describe("tracing channels", () => {
  it("trace a tenant's run, its provider calls, tool run and approval wait with tenant, agent and session", async () => {
    const runs = recordTraces("beamclaw:session.run");
    const calls = recordTraces("beamclaw:provider.call");
    const tools = recordTraces("beamclaw:tool.run");
    const waits = recordTraces("beamclaw:approval.wait");
    const tenant = await startTenant(
      [
        {
          toolCalls: [{ toolName: "add", input: { a: 1, b: 2 } }],
          usage: { inputTokens: 5, outputTokens: 1 },
        },
        { text: "3", usage: { inputTokens: 7, outputTokens: 1 } },
      ],
      { approvals: true },
    );
    const run = await tenant.runtime.session("agent:main:main").send("1+2?");
    expect((await drive(tenant, run)).text).toBe("3");

    expect(runs.contexts).toHaveLength(1);
    const [runTrace] = runs.contexts;
    expect(runs.eventsOf(runTrace!)).toEqual(COMPLETED);
    expect(runTrace).toMatchObject({
      ...acmeMain,
      runId: run.runId,
      status: "completed",
      steps: 2,
      inputTokens: 12,
      outputTokens: 2,
    });
    expect(runTrace?.error).toBeUndefined();

    expect(calls.contexts).toHaveLength(2);
    for (const call of calls.contexts) {
      expect(calls.eventsOf(call)).toEqual(COMPLETED);
      expect(call).toMatchObject({
        ...acmeMain,
        ref: "fake/m1",
        provider: "fake",
        model: "m1",
        attempt: 1,
        outcome: "success",
      });
    }
    expect(calls.contexts.map((c) => c.usage?.inputTokens)).toEqual([5, 7]);

    expect(tools.contexts).toHaveLength(1);
    const [toolTrace] = tools.contexts;
    expect(tools.eventsOf(toolTrace!)).toEqual(COMPLETED);
    expect(toolTrace).toMatchObject({
      ...acmeMain,
      tool: "add",
      runId: run.runId,
      outcome: "success",
      attempts: 1,
      result: { output: 3, isError: false },
    });

    expect(waits.contexts).toHaveLength(1);
    const [waitTrace] = waits.contexts;
    expect(waits.eventsOf(waitTrace!)).toEqual(COMPLETED);
    expect(waitTrace).toMatchObject({
      ...acmeMain,
      tool: "add",
      key: "tool:add",
      runId: run.runId,
      decision: "allow-once",
    });
  });

  it("publish error for a failing tool, a denied approval, a failing provider call and the failed run", async () => {
    const runs = recordTraces("beamclaw:session.run");
    const calls = recordTraces("beamclaw:provider.call");
    const tools = recordTraces("beamclaw:tool.run");
    const waits = recordTraces("beamclaw:approval.wait");
    const refused = new ProviderError("bad request", {
      kind: "invalid_request",
      provider: "fake",
      statusCode: 400,
    });
    const tenant = await startTenant(
      [
        { toolCalls: [{ toolName: "broken", input: {} }] },
        { toolCalls: [{ toolName: "add", input: { a: 1, b: 1 } }] },
        { error: refused },
      ],
      { approvals: true },
    );
    const session = tenant.runtime.session("agent:main:main");
    const run = await session.send("go");
    let asked = 0;
    for await (const event of run) {
      if (event.type === "tool-approval-request") {
        // The first call (broken) is allowed and fails; the second (add) is denied.
        const decision = asked++ === 0 ? "allow-once" : "deny";
        tenant.runtime.approvals!.answer(event.requestId, decision, { scopes: [APPROVALS_SCOPE] });
      }
    }
    const result = await run.result;
    expect(result.status).toBe("failed");

    const [runTrace] = runs.contexts;
    expect(runs.eventsOf(runTrace!)).toEqual(FAILED);
    expect(runTrace).toMatchObject({ ...acmeMain, status: "failed" });
    expect(runTrace?.error).toBeDefined();

    expect(tools.contexts.map((t) => [t.tool, t.outcome])).toEqual([
      ["broken", "error"],
      ["add", "denied"],
    ]);
    for (const tool of tools.contexts) {
      expect(tools.eventsOf(tool)).toEqual(FAILED);
      expect(tool).toMatchObject(acmeMain);
    }
    expect(String(tools.contexts[0]?.error)).toContain("the tool broke");

    expect(waits.contexts.map((w) => waits.eventsOf(w))).toEqual([COMPLETED, FAILED]);
    expect(waits.contexts[1]?.error).toMatchObject({ code: "APPROVAL_DENIED" });
    expect(waits.contexts[1]).toMatchObject(acmeMain);

    const failedCall = calls.contexts.at(-1);
    expect(calls.eventsOf(failedCall!)).toEqual(FAILED);
    expect(failedCall).toMatchObject({ ...acmeMain, outcome: "error", error: refused });
  });

  it("make a store bound to the run's start channel current inside its provider calls and tools", async () => {
    const runOf = new AsyncLocalStorage<string>();
    const channel = telemetryTracingChannel("beamclaw:session.run");
    channel.start.bindStore(runOf, (run) => run.runId);
    cleanups.push(() => {
      channel.start.unbindStore(runOf);
    });
    const seenInTool: Array<string | undefined> = [];
    const seenInCall: Array<string | undefined> = [];
    cleanups.push(
      subscribeTrace("beamclaw:tool.run", { start: () => seenInTool.push(runOf.getStore()) }),
      subscribeTrace("beamclaw:provider.call", {
        start: () => seenInCall.push(runOf.getStore()),
      }),
    );
    const tenant = await startTenant([
      { toolCalls: [{ toolName: "add", input: { a: 2, b: 2 } }] },
      { text: "4" },
    ]);
    const run = await tenant.runtime.session("agent:main:main").send("2+2?");
    await drive(tenant, run);
    expect(seenInTool).toEqual([run.runId]);
    expect(seenInCall).toEqual([run.runId, run.runId]);
    expect(runOf.getStore()).toBeUndefined();
  });

  it("give plain tool and approval events the run's tenant even when nobody traces", async () => {
    const toolRuns: Array<{ tenant?: string }> = [];
    const decisions: Array<{ tenant?: string; agent?: string }> = [];
    const runs: Array<{ tenant?: string }> = [];
    cleanups.push(
      subscribeTelemetry("beamclaw:tool.run", (e) => toolRuns.push(e)),
      subscribeTelemetry("beamclaw:approval.decision", (e) => decisions.push(e)),
      subscribeTelemetry("beamclaw:session.run", (e) => runs.push(e)),
    );
    expect(telemetryTracingChannel("beamclaw:session.run").hasSubscribers).toBe(false);
    const tenant = await startTenant(
      [{ toolCalls: [{ toolName: "add", input: { a: 1, b: 1 } }] }, { text: "2" }],
      { approvals: true },
    );
    await drive(tenant, await tenant.runtime.session("agent:main:main").send("1+1?"));
    expect(toolRuns).toEqual([expect.objectContaining({ tool: "add", tenant: "acme" })]);
    expect(decisions).toEqual([expect.objectContaining({ tenant: "acme", agent: "main" })]);
    expect(runs).toEqual([expect.objectContaining({ tenant: "acme", status: "completed" })]);
  });

  it("trace cron runs with agent, session and tenant, and publish error for a run in error", async () => {
    const traces = recordTraces("beamclaw:cron.run");
    const store = new MemoryStore();
    await store.open();
    const tenants = new TenantManager();
    await tenants.add({
      id: "acme",
      runtime: { store, models: createScriptedProvider(), agents: [{ id: "ops", model: "x/y" }] },
    });
    let fail = false;
    const cron = await new CronService({
      agentId: "ops",
      store,
      runJob: async () => (fail ? { status: "error", error: "job broke" } : { status: "ok" }),
    }).start();
    cleanups.push(async () => {
      await cron.stop();
      await tenants.stop();
      await store.close();
    });
    await cron.add({ id: "nightly", schedule: { every: 3_600_000 }, prompt: "report" });
    const ok = await cron.runNow("nightly");
    fail = true;
    const failed = await cron.runNow("nightly");
    expect(traces.contexts.map((c) => traces.eventsOf(c))).toEqual([COMPLETED, FAILED]);
    expect(traces.contexts[0]).toMatchObject({
      tenant: "acme",
      agent: "ops",
      jobId: "nightly",
      runId: ok.runId,
      trigger: "manual",
      session: expect.stringMatching(/^cron:nightly\./),
      status: "ok",
    });
    expect(traces.contexts[1]).toMatchObject({
      runId: failed.runId,
      status: "error",
      error: "job broke",
    });
  });
});

describe("traceTelemetry and beginTelemetryTrace", () => {
  it("cost nothing while nobody subscribes: no context is built, no scope entered, the same promise returned", async () => {
    for (const name of [
      "beamclaw:session.run",
      "beamclaw:tool.run",
      "beamclaw:provider.call",
    ] as const) {
      expect(telemetryTracingChannel(name).hasSubscribers).toBe(false);
    }
    const context = vi.fn(() => ({ runId: "r", agent: "a", session: "s" }));
    let identityInside: unknown = "unset";
    const promise = Promise.resolve(42);
    const returned = traceTelemetry("beamclaw:session.run", context, () => {
      identityInside = currentTelemetryIdentity();
      return promise;
    });
    expect(returned).toBe(promise);
    expect(await returned).toBe(42);
    expect(identityInside).toBeUndefined();
    const begun = vi.fn(() => ({ ref: "p/m", provider: "p", model: "m", attempt: 1 }));
    expect(beginTelemetryTrace("beamclaw:provider.call", begun)).toBeUndefined();
    expect(context).not.toHaveBeenCalled();
    expect(begun).not.toHaveBeenCalled();
  });

  it("publish error then end, and no async events, when the operation throws before returning a promise", () => {
    const traces = recordTraces("beamclaw:tool.run");
    const boom = new Error("sync boom");
    expect(() =>
      traceTelemetry(
        "beamclaw:tool.run",
        () => ({ tool: "t", toolCallId: "c", runId: "r" }),
        () => {
          throw boom;
        },
      ),
    ).toThrow(boom);
    const [ctx] = traces.contexts;
    expect(traces.eventsOf(ctx!)).toEqual(["start", "error", "end"]);
    expect(ctx?.error).toBe(boom);
  });

  it("end a begun trace once, with its fields and failure", () => {
    const traces = recordTraces("beamclaw:provider.call");
    const trace = beginTelemetryTrace("beamclaw:provider.call", () => ({
      ref: "p/m",
      provider: "p",
      model: "m",
      attempt: 2,
      tenant: "acme",
    }));
    expect(trace).toBeDefined();
    expect(traces.eventsOf(trace!.context)).toEqual(["start", "end"]);
    const failure = new Error("stream broke");
    trace?.end({ outcome: "error" }, failure);
    trace?.end({ outcome: "success" });
    expect(traces.eventsOf(trace!.context)).toEqual(FAILED);
    expect(trace?.context).toMatchObject({ outcome: "error", error: failure, tenant: "acme" });
  });
});
