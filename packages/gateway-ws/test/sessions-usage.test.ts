/**
 * `sessions.usage` over a real socket: usage from real `chat.send` turns (the scripted
 * provider reports tokens), plus meter totals and session records written to the store for
 * other days, agents and models. The gateway's and the runtime's clocks read 2026-03-15,
 * 12:00 UTC (and run on from there), so "today" and the range presets are fixed days.
 */
import type { JsonObject, SessionRecord } from "@beamclaw/core";
import type { ScriptEntry } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import {
  SESSIONS_USAGE_MAX_DAYS,
  SESSIONS_USAGE_MAX_SCANNED,
  SESSIONS_USAGE_MAX_SESSION_ENTRIES,
} from "../src/methods/session-usage.js";
import {
  closeClients,
  MAIN,
  rpcError,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
  waitFor,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const TODAY = "2026-03-15";
const NOW = Date.parse(`${TODAY}T12:00:00Z`);
const OPS = { id: "ops", model: "scripted/m2" };

/** A stack whose clocks read {@link NOW}, with agents `main` (scripted/m1) and `ops` (scripted/m2). */
async function usageStack(
  responses: ScriptEntry[] = [],
): Promise<{ stack: Stack; client: TestClient }> {
  const shift = NOW - Date.now();
  const now = () => Date.now() + shift;
  const stack = await startStack({
    responses,
    agents: [MAIN, OPS],
    runtime: { now },
    gateway: { now },
  });
  return { stack, client: await TestClient.connect(stack.url, { token: TOKEN }) };
}

const said = (inputTokens: number, outputTokens: number): ScriptEntry => ({
  text: "hi",
  usage: { inputTokens, outputTokens },
});

/** One `chat.send` turn, waited for until the session's record has counted it. */
async function turn(stack: Stack, client: TestClient, sessionKey: string, id: string) {
  const runsBefore = Number((await stack.store.sessions.get(sessionKey))?.runs ?? 0);
  await client.request("chat.send", { sessionKey, message: "hello", idempotencyKey: id });
  await client.waitEvent("chat", (p) => p.runId === id && p.state === "final");
  await waitFor(
    `${sessionKey} saved`,
    async () => Number((await stack.store.sessions.get(sessionKey))?.runs ?? 0) > runsBefore,
  );
}

function usage(client: TestClient, params: Record<string, unknown> = {}): Promise<Wire> {
  return client.request("sessions.usage", params);
}

/** Meter totals of one day, agent, provider and model, as the runtime's usage meter keeps them. */
function meter(
  stack: Stack,
  where: string,
  totals: { calls: number; inputTokens: number; outputTokens: number; costUsd: number } & {
    cacheReadTokens?: number;
    cacheWriteTokens?: number;
  },
): Promise<boolean> {
  return stack.store.kv.set(`usage:${where}`, {
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    ...totals,
  });
}

/** A session record as the runtime writes it, with times as `YYYY-MM-DD` (noon UTC). */
function putSession(
  stack: Stack,
  key: string,
  fields: {
    created: string;
    updated: string;
    lastRun?: string;
    inputTokens?: number;
    outputTokens?: number;
    costUsd?: number;
    extra?: Record<string, string>;
  },
): Promise<void> {
  const at = (day: string) => Date.parse(`${day}T12:00:00Z`);
  const record: SessionRecord = {
    key,
    agentId: key.split(":")[1]!,
    createdAt: at(fields.created),
    updatedAt: at(fields.updated),
    inputTokens: fields.inputTokens ?? 0,
    outputTokens: fields.outputTokens ?? 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    costUsd: fields.costUsd ?? 0,
    runs: fields.lastRun === undefined ? 0 : 1,
    ...(fields.lastRun === undefined ? {} : { lastRunAt: at(fields.lastRun) }),
    ...fields.extra,
  };
  return stack.store.sessions.put(record);
}

const keysOf = (answer: Wire): string[] => answer.sessions.map((s: Wire) => s.key);

/** Alpha's messages of 14 March (see the test of the sessions listed). */
const ALPHA_MESSAGES = { total: 5, user: 2, assistant: 2, toolCalls: 1, toolResults: 1, errors: 1 };

/**
 * Model calls in a session's transcript as a session saves them: each a user message and the
 * assistant answer with its call's usage, from noon UTC of `day`, a second apart; a call with
 * `tool` answers with a call of it, whose result is an error. Calls take 200, 400, 200, ... ms.
 */
async function calls(
  stack: Stack,
  key: string,
  list: Array<{ day: string; input: number; output: number; cost: number; tool?: string }>,
): Promise<void> {
  const seconds = new Map<string, number>();
  const at = (day: string) => {
    const second = seconds.get(day) ?? 0;
    seconds.set(day, second + 1);
    return Date.parse(`${day}T12:00:00Z`) + second * 1000;
  };
  const entries = list.flatMap((call, i) => {
    const runId = `run-${i}`;
    const saved: JsonObject[] = [
      {
        runId,
        at: at(call.day),
        message: { role: "user", content: [{ type: "text", text: "q" }] },
      },
      {
        runId,
        at: at(call.day),
        usage: {
          provider: "openai",
          model: "gpt-x",
          inputTokens: call.input,
          outputTokens: call.output,
          costUsd: call.cost,
          durationMs: 200 * ((i % 2) + 1),
        },
        message: {
          role: "assistant",
          content:
            call.tool === undefined
              ? [{ type: "text", text: "a" }]
              : [{ type: "tool-call", toolCallId: `c${i}`, toolName: call.tool, input: {} }],
        },
      },
    ];
    if (call.tool !== undefined) {
      const result = { type: "tool-result", toolCallId: `c${i}`, toolName: call.tool };
      saved.push({
        runId,
        at: at(call.day),
        message: { role: "tool", content: [{ ...result, output: "no", isError: true }] },
      });
    }
    return saved;
  });
  await stack.store.transcripts.append(key, entries);
}

describe("sessions.usage", () => {
  it("answers chat.send turns per session, in total and by model, provider, agent and day, all adding up", async () => {
    const { stack, client } = await usageStack([said(10, 5), said(20, 7), said(3, 1)]);
    await turn(stack, client, "agent:main:main", "t1");
    await turn(stack, client, "agent:main:side", "t2");
    await turn(stack, client, "agent:ops:main", "t3");
    // A client with only operator.read may ask.
    const reader = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });

    const all = await usage(reader, { agentScope: "all" });
    expect(all).toMatchObject({
      startDate: "2026-02-14",
      endDate: TODAY,
      timeZone: "UTC",
      basis: { sessionUsage: "transcript", totals: "daily" },
      truncated: false,
    });
    expect(all.totals).toEqual({
      input: 33,
      output: 13,
      cacheRead: 0,
      cacheWrite: 0,
      totalTokens: 46,
      totalCost: 0,
      inputCost: 0,
      outputCost: 0,
      cacheReadCost: 0,
      cacheWriteCost: 0,
      missingCostEntries: 0,
    });
    // Newest first; each with its own totals, which here (all of it today) add up to the total.
    expect(keysOf(all)).toEqual(["agent:ops:main", "agent:main:side", "agent:main:main"]);
    expect(all.sessions.map((s: Wire) => [s.usage.input, s.usage.output])).toEqual([
      [3, 1],
      [20, 7],
      [10, 5],
    ]);
    expect(all.sessions[2]).toMatchObject({
      sessionId: "agent:main:main",
      scope: "instance",
      agentId: "main",
      modelProvider: "scripted",
      model: "m1",
      usage: {
        totalTokens: 15,
        missingCostEntries: 0,
        firstActivity: expect.any(Number),
        lastActivity: expect.any(Number),
        durationMs: expect.any(Number),
        activityDates: [TODAY],
        dailyBreakdown: [{ date: TODAY, tokens: 15, cost: 0 }],
        dailyMessageCounts: [
          { date: TODAY, total: 2, user: 1, assistant: 1, toolCalls: 0, toolResults: 0, errors: 0 },
        ],
        dailyLatency: [{ date: TODAY, count: 1 }],
        dailyModelUsage: [
          { date: TODAY, provider: "scripted", model: "m1", tokens: 15, cost: 0, count: 1 },
        ],
        messageCounts: { total: 2, user: 1, assistant: 1, toolCalls: 0 },
        toolUsage: { totalCalls: 0, uniqueTools: 0, tools: [] },
        modelUsage: [
          {
            provider: "scripted",
            model: "m1",
            count: 1,
            totals: expect.objectContaining({ input: 10, output: 5, totalTokens: 15 }),
          },
        ],
        latency: { count: 1, minMs: expect.any(Number) },
      },
    });
    expect(all.sessions[2].usage.lastActivity).toBeGreaterThanOrEqual(
      all.sessions[2].usage.firstActivity,
    );
    const sum = (field: string) =>
      all.sessions.reduce((n: number, s: Wire) => n + s.usage[field], 0);
    expect([sum("input"), sum("output")]).toEqual([all.totals.input, all.totals.output]);

    const { aggregates } = all;
    expect(aggregates.sessionCount).toBe(3);
    expect(aggregates.byModel).toEqual([
      {
        provider: "scripted",
        model: "m1",
        count: 2,
        totals: expect.objectContaining({ input: 30, output: 12, totalTokens: 42 }),
      },
      {
        provider: "scripted",
        model: "m2",
        count: 1,
        totals: expect.objectContaining({ input: 3, output: 1, totalTokens: 4 }),
      },
    ]);
    expect(aggregates.byProvider).toEqual([{ provider: "scripted", count: 3, totals: all.totals }]);
    expect(aggregates.byAgent).toEqual([
      { agentId: "main", totals: expect.objectContaining({ input: 30, output: 12 }) },
      { agentId: "ops", totals: expect.objectContaining({ input: 3, output: 1 }) },
    ]);
    expect(aggregates.daily).toEqual([
      { date: TODAY, tokens: 46, cost: 0, messages: 6, toolCalls: 0, errors: 0 },
    ]);
    expect(aggregates.modelDaily).toEqual([
      { date: TODAY, provider: "scripted", model: "m1", tokens: 42, cost: 0, count: 2 },
      { date: TODAY, provider: "scripted", model: "m2", tokens: 4, cost: 0, count: 1 },
    ]);
    // From the three transcripts: a question and an answer each, no tools; sessions made by
    // chat.send have no channel.
    expect(aggregates.messages).toEqual({
      total: 6,
      user: 3,
      assistant: 3,
      toolCalls: 0,
      toolResults: 0,
      errors: 0,
    });
    expect(aggregates.tools).toEqual({ totalCalls: 0, uniqueTools: 0, tools: [] });
    expect(aggregates.byChannel).toEqual([]);

    // Without agentScope or agentId: the default agent's, as OpenClaw answers.
    const main = await usage(reader);
    expect(keysOf(main)).toEqual(["agent:main:side", "agent:main:main"]);
    expect(main.totals).toMatchObject({ input: 30, output: 12, totalTokens: 42 });
    expect(main.aggregates.byAgent.map((a: Wire) => a.agentId)).toEqual(["main"]);
    const ops = await usage(reader, { agentId: "OPS" });
    expect(keysOf(ops)).toEqual(["agent:ops:main"]);
    expect(ops.totals).toMatchObject({ input: 3, output: 1 });
    expect(ops.aggregates.byModel.map((m: Wire) => m.model)).toEqual(["m2"]);
    // An agent that is not configured has no usage, and is not an error (its history could be).
    const gone = await usage(reader, { agentId: "retired" });
    expect([gone.sessions, gone.totals.totalTokens, gone.aggregates.daily]).toEqual([[], 0, []]);
  });

  it("with key answers one session's own totals; a key that names no session is SESSION_NOT_FOUND", async () => {
    const { stack, client } = await usageStack([said(10, 5), said(20, 7), said(1, 1)]);
    await turn(stack, client, "agent:main:main", "k1");
    await turn(stack, client, "agent:main:side", "k2");
    await turn(stack, client, "agent:main:side", "k3");

    const side = await usage(client, { key: "AGENT:MAIN:SIDE" });
    expect(keysOf(side)).toEqual(["agent:main:side"]);
    expect(side.totals).toMatchObject({ input: 21, output: 8, totalTokens: 29 });
    expect(side.sessions[0].usage).toMatchObject({ input: 21, output: 8 });
    expect(side.basis).toEqual({ sessionUsage: "transcript", totals: "transcript" });
    // Everything from the session's transcript: per model, provider, day, with its messages.
    expect(side.aggregates).toMatchObject({
      sessionCount: 1,
      byAgent: [{ agentId: "main", totals: side.totals }],
      byModel: [{ provider: "scripted", model: "m1", count: 2, totals: side.totals }],
      byProvider: [{ provider: "scripted", count: 2, totals: side.totals }],
      modelDaily: [
        { date: TODAY, provider: "scripted", model: "m1", tokens: 29, cost: 0, count: 2 },
      ],
      daily: [{ date: TODAY, tokens: 29, cost: 0, messages: 4, toolCalls: 0, errors: 0 }],
      messages: { total: 4, user: 2, assistant: 2, toolCalls: 0, toolResults: 0, errors: 0 },
      latency: { count: 2 },
    });
    // Same agent named as well: fine; another agent: refused.
    expect(keysOf(await usage(client, { key: "agent:main:side", agentId: "main" }))).toEqual([
      "agent:main:side",
    ]);
    const mismatch = await rpcError(usage(client, { key: "agent:main:side", agentId: "ops" }));
    expect([mismatch.code, (mismatch.details as Wire).code]).toEqual([
      "INVALID_REQUEST",
      "AGENT_MISMATCH",
    ]);
    // A range in which the session was not active: no row and nothing counted.
    const before = await usage(client, {
      key: "agent:main:side",
      startDate: "2026-01-01",
      endDate: "2026-01-31",
    });
    expect([before.sessions, before.totals.totalTokens, before.aggregates.byAgent]).toEqual([
      [],
      0,
      [],
    ]);

    const missing = await rpcError(usage(client, { key: "agent:main:nowhere" }));
    expect(missing.code).toBe("INVALID_REQUEST");
    expect(missing.details).toEqual({ code: "SESSION_NOT_FOUND", key: "agent:main:nowhere" });
    const malformed = await rpcError(usage(client, { key: "not a session key" }));
    expect(malformed.code).toBe("INVALID_REQUEST");
  });

  it("covers the days asked for: dates, range presets and the 30-day default, from the meter's totals", async () => {
    const { stack, client } = await usageStack();
    await meter(stack, `${TODAY}:main:scripted:m1`, {
      calls: 2,
      inputTokens: 100,
      outputTokens: 50,
      costUsd: 0.5,
    });
    await meter(stack, "2026-03-10:main:anthropic:claude", {
      calls: 1,
      inputTokens: 1000,
      outputTokens: 200,
      cacheReadTokens: 300,
      cacheWriteTokens: 40,
      costUsd: 1.25,
    });
    await meter(stack, "2026-03-10:ops:openai:gpt-x", {
      calls: 4,
      inputTokens: 400,
      outputTokens: 100,
      costUsd: 0.75,
    });
    // A model whose name holds a colon.
    await meter(stack, "2026-02-20:main:ollama:llama3:8b", {
      calls: 1,
      inputTokens: 7,
      outputTokens: 3,
      costUsd: 0,
    });
    await meter(stack, "2025-12-01:main:scripted:m1", {
      calls: 1,
      inputTokens: 5,
      outputTokens: 5,
      costUsd: 0.01,
    });
    await meter(stack, "2025-03-14:main:scripted:m1", {
      calls: 1,
      inputTokens: 9,
      outputTokens: 9,
      costUsd: 9,
    });
    // Not the meter's: ignored.
    await stack.store.kv.set("usage:not-a-day:main:x:y", { inputTokens: 1_000_000 });
    await stack.store.kv.set("usage:2026-03-01:main", { inputTokens: 1_000_000 });

    const week = await usage(client, { range: "7d", agentScope: "all" });
    expect([week.startDate, week.endDate]).toEqual(["2026-03-09", TODAY]);
    expect(week.totals).toMatchObject({
      input: 1500,
      output: 350,
      cacheRead: 300,
      cacheWrite: 40,
      totalTokens: 1850,
    });
    expect(week.totals.totalCost).toBeCloseTo(2.5, 10);
    expect(week.aggregates.byModel.map((m: Wire) => [m.provider, m.model, m.count])).toEqual([
      ["anthropic", "claude", 1],
      ["openai", "gpt-x", 4],
      ["scripted", "m1", 2],
    ]);
    expect(week.aggregates.byProvider.map((m: Wire) => m.provider)).toEqual([
      "anthropic",
      "openai",
      "scripted",
    ]);
    expect(week.aggregates.byAgent.map((a: Wire) => [a.agentId, a.totals.totalCost])).toEqual([
      ["main", 1.75],
      ["ops", 0.75],
    ]);
    expect(
      week.aggregates.daily.map((d: Wire) => [d.date, d.tokens, Number(d.cost.toFixed(6))]),
    ).toEqual([
      ["2026-03-10", 1700, 2],
      [TODAY, 150, 0.5],
    ]);
    expect(week.aggregates.modelDaily.map((d: Wire) => [d.date, d.model])).toEqual([
      ["2026-03-10", "claude"],
      ["2026-03-10", "gpt-x"],
      [TODAY, "m1"],
    ]);
    // The same days' totals as usage.cost reports them.
    const cost = await client.request("usage.cost", { startDate: "2026-03-09", endDate: TODAY });
    expect([week.totals.input, week.totals.output]).toEqual([
      cost.totals.input,
      cost.totals.output,
    ]);
    expect(week.totals.totalCost).toBeCloseTo(cost.totals.totalCost, 10);

    const inputs = async (params: Record<string, unknown>) => {
      const answer = await usage(client, { agentScope: "all", ...params });
      return [answer.startDate, answer.endDate, answer.totals.input];
    };
    expect(await inputs({})).toEqual(["2026-02-14", TODAY, 1507]);
    expect(await inputs({ range: "30d" })).toEqual(["2026-02-14", TODAY, 1507]);
    expect(await inputs({ range: "90d" })).toEqual(["2025-12-16", TODAY, 1507]);
    expect(await inputs({ range: "1y" })).toEqual(["2025-03-16", TODAY, 1512]);
    // `all` is the longest range answered: the last 366 days.
    expect(await inputs({ range: "all" })).toEqual(["2025-03-15", TODAY, 1512]);
    expect(await inputs({ startDate: "2025-03-14", endDate: "2025-03-14" })).toEqual([
      "2025-03-14",
      "2025-03-14",
      9,
    ]);
    // Dates win over a range, as in OpenClaw.
    expect(await inputs({ startDate: "2026-03-10", endDate: "2026-03-10", range: "7d" })).toEqual([
      "2026-03-10",
      "2026-03-10",
      1400,
    ]);
    expect(await inputs({ startDate: "2026-02-01", endDate: "2026-02-28" })).toEqual([
      "2026-02-01",
      "2026-02-28",
      7,
    ]);
    const llama = await usage(client, { startDate: "2026-02-20", endDate: "2026-02-20" });
    expect(llama.aggregates.byModel).toEqual([
      { provider: "ollama", model: "llama3:8b", count: 1, totals: llama.totals },
    ]);
  });

  it("lists the sessions active in the range, newest first, with their transcripts' usage over it; limit cuts the list, not the totals", async () => {
    const { stack, client } = await usageStack();
    // Alpha's transcript: a call on 1 March (outside the week), and on the 14th a tool call
    // that failed and the answer after it.
    await calls(stack, "agent:main:alpha", [
      { day: "2026-03-01", input: 400, output: 80, cost: 0.25 },
      { day: "2026-03-14", input: 60, output: 10, cost: 0.03, tool: "search" },
      { day: "2026-03-14", input: 40, output: 10, cost: 0.02 },
    ]);
    await putSession(stack, "agent:main:alpha", {
      created: "2026-03-01",
      lastRun: "2026-03-14",
      updated: "2026-03-14",
      inputTokens: 500,
      outputTokens: 100,
      costUsd: 0.3,
      extra: { displayName: "Alpha", channel: "telegram", modelOverride: "openai/gpt-x" },
    });
    await putSession(stack, "agent:main:beta", {
      created: "2026-03-12",
      lastRun: "2026-03-13",
      updated: "2026-03-13",
      inputTokens: 40,
      outputTokens: 10,
    });
    // Renamed this week, last run in January.
    await putSession(stack, "agent:main:old", {
      created: "2026-01-02",
      lastRun: "2026-01-05",
      updated: "2026-03-14",
      inputTokens: 7,
    });
    // Never run.
    await putSession(stack, "agent:main:idle", { created: "2026-03-14", updated: "2026-03-14" });
    await putSession(stack, "agent:ops:elsewhere", {
      created: "2026-03-14",
      lastRun: "2026-03-14",
      updated: "2026-03-14",
      inputTokens: 1,
    });
    await meter(stack, "2026-03-13:main:scripted:m1", {
      calls: 3,
      inputTokens: 60,
      outputTokens: 20,
      costUsd: 0.1,
    });

    const week = await usage(client, { range: "7d", includeContextWeight: true });
    expect(keysOf(week)).toEqual(["agent:main:alpha", "agent:main:beta"]);
    expect(week.sessions[0]).toEqual({
      key: "agent:main:alpha",
      sessionId: "agent:main:alpha",
      scope: "instance",
      label: "Alpha",
      updatedAt: Date.parse("2026-03-14T12:00:00Z"),
      agentId: "main",
      channel: "telegram",
      modelProvider: "openai",
      model: "gpt-x",
      providerOverride: "openai",
      modelOverride: "gpt-x",
      usage: {
        input: 100,
        output: 20,
        cacheRead: 0,
        cacheWrite: 0,
        totalTokens: 120,
        totalCost: 0.05,
        inputCost: 0,
        outputCost: 0,
        cacheReadCost: 0,
        cacheWriteCost: 0,
        missingCostEntries: 0,
        firstActivity: Date.parse("2026-03-14T12:00:00Z"),
        lastActivity: Date.parse("2026-03-14T12:00:04Z"),
        durationMs: 4000,
        activityDates: ["2026-03-14"],
        dailyBreakdown: [{ date: "2026-03-14", tokens: 120, cost: 0.05 }],
        dailyMessageCounts: [{ date: "2026-03-14", ...ALPHA_MESSAGES }],
        dailyLatency: [
          { date: "2026-03-14", count: 2, avgMs: 300, p95Ms: 400, minMs: 200, maxMs: 400 },
        ],
        dailyModelUsage: [
          {
            date: "2026-03-14",
            provider: "openai",
            model: "gpt-x",
            tokens: 120,
            cost: 0.05,
            count: 2,
          },
        ],
        messageCounts: ALPHA_MESSAGES,
        toolUsage: { totalCalls: 1, uniqueTools: 1, tools: [{ name: "search", count: 1 }] },
        modelUsage: [
          {
            provider: "openai",
            model: "gpt-x",
            count: 2,
            totals: expect.objectContaining({ input: 100, output: 20, totalCost: 0.05 }),
          },
        ],
        latency: { count: 2, avgMs: 300, p95Ms: 400, minMs: 200, maxMs: 400 },
      },
      contextWeight: null,
    });
    expect(week.sessions[1]).toMatchObject({ modelProvider: "scripted", model: "m1" });
    expect(week.sessions[1].modelOverride).toBeUndefined();
    // Beta has no transcript (its record was written by hand): nothing to count.
    expect(week.sessions[1].usage).toMatchObject({
      totalTokens: 0,
      activityDates: [],
      messageCounts: { total: 0 },
    });
    expect(week.sessions[1].usage.firstActivity).toBeUndefined();
    expect(week.aggregates.sessionCount).toBe(2);
    // Messages, tools and channels from the transcripts of the week.
    expect(week.aggregates.messages).toEqual(week.sessions[0].usage.messageCounts);
    expect(week.aggregates.tools).toEqual(week.sessions[0].usage.toolUsage);
    expect(week.aggregates.byChannel).toEqual([
      { channel: "telegram", totals: expect.objectContaining({ input: 100, totalCost: 0.05 }) },
    ]);
    expect(week.aggregates.daily).toEqual([
      { date: "2026-03-13", tokens: 80, cost: 0.1, messages: 0, toolCalls: 0, errors: 0 },
      { date: "2026-03-14", tokens: 0, cost: 0, messages: 5, toolCalls: 1, errors: 1 },
    ]);
    // The totals are the meter's days, not the sessions' lifetimes.
    expect(week.totals).toMatchObject({ input: 60, output: 20, totalTokens: 80 });

    const one = await usage(client, { range: "7d", limit: 1 });
    expect(keysOf(one)).toEqual(["agent:main:alpha"]);
    expect(one.aggregates.sessionCount).toBe(2);
    expect(one.totals).toEqual(week.totals);
    expect(one.aggregates.byModel).toEqual(week.aggregates.byModel);
    // The sessions left out of the list still count in the transcripts' aggregates.
    expect(one.aggregates.messages).toEqual(week.aggregates.messages);
    expect(one.sessions[0].contextWeight).toBeUndefined();
    // All of March: alpha's first call too.
    const march = await usage(client, { startDate: "2026-03-01", endDate: "2026-03-31" });
    expect(march.sessions[0].usage).toMatchObject({
      input: 500,
      output: 100,
      activityDates: ["2026-03-01", "2026-03-14"],
    });

    // A session has no earlier instances: family rows are the instance rows.
    const family = await usage(client, { range: "7d", groupBy: "family", includeHistorical: true });
    expect(family.sessions).toEqual((await usage(client, { range: "7d" })).sessions);
    expect(family.sessions.map((s: Wire) => s.scope)).toEqual(["instance", "instance"]);

    expect(keysOf(await usage(client, { range: "90d" }))).toEqual([
      "agent:main:alpha",
      "agent:main:old",
      "agent:main:beta",
    ]);
    // Created after the range: not in it; created before and run after: in it.
    expect(keysOf(await usage(client, { startDate: "2026-03-01", endDate: "2026-03-05" }))).toEqual(
      ["agent:main:alpha"],
    );
    expect(keysOf(await usage(client, { range: "7d", agentScope: "all" }))).toEqual([
      "agent:main:alpha",
      "agent:ops:elsewhere",
      "agent:main:beta",
    ]);
  });

  it(`reads at most ${SESSIONS_USAGE_MAX_SCANNED} session records and says truncated when more were active`, async () => {
    const { stack, client } = await usageStack();
    const base = Date.parse("2026-03-14T00:00:00Z");
    for (let i = 0; i < SESSIONS_USAGE_MAX_SCANNED; i++) {
      await stack.store.sessions.put({
        key: `agent:main:s${i}`,
        agentId: "main",
        createdAt: base,
        updatedAt: base + i,
        lastRunAt: base + i,
        inputTokens: 1,
        outputTokens: 1,
        cacheReadTokens: 0,
        cacheWriteTokens: 0,
        costUsd: 0,
        runs: 1,
      });
    }
    await meter(stack, "2026-03-14:main:scripted:m1", {
      calls: 20_000,
      inputTokens: 20_001,
      outputTokens: 20_001,
      costUsd: 0,
    });
    const full = await usage(client, { range: "7d", limit: 3 });
    expect(full.truncated).toBe(false);
    expect(full.aggregates.sessionCount).toBe(SESSIONS_USAGE_MAX_SCANNED);
    expect(keysOf(full)).toEqual(["agent:main:s9999", "agent:main:s9998", "agent:main:s9997"]);

    await putSession(stack, "agent:main:newest", {
      created: "2026-03-15",
      lastRun: "2026-03-15",
      updated: "2026-03-15",
      inputTokens: 1,
      outputTokens: 1,
    });
    const over = await usage(client, { range: "7d", limit: 3 });
    expect(over.truncated).toBe(true);
    // The most recently updated ones were read; the meter's totals are whole all the same.
    expect(over.aggregates.sessionCount).toBe(SESSIONS_USAGE_MAX_SCANNED);
    expect(keysOf(over)).toEqual(["agent:main:newest", "agent:main:s9999", "agent:main:s9998"]);
    expect(over.totals).toMatchObject({ input: 20_001, output: 20_001 });
  });

  it(`reads at most ${SESSIONS_USAGE_MAX_SESSION_ENTRIES} entries of a session, the newest, and says truncated`, async () => {
    const { stack, client } = await usageStack();
    await putSession(stack, "agent:main:busy", {
      created: "2026-03-10",
      lastRun: "2026-03-14",
      updated: "2026-03-14",
    });
    const from = Date.parse("2026-03-14T00:00:00Z");
    const total = SESSIONS_USAGE_MAX_SESSION_ENTRIES + 500;
    for (let start = 0; start < total; start += 1000) {
      const page = Array.from({ length: Math.min(1000, total - start) }, (_, k) => ({
        runId: `r${start + k}`,
        at: from + start + k,
        usage: { provider: "p", model: "m", inputTokens: 1, outputTokens: 0, costUsd: 0 },
        message: { role: "assistant", content: [{ type: "text", text: "a" }] },
      }));
      await stack.store.transcripts.append("agent:main:busy", page);
    }
    const answer = await usage(client, { range: "7d" });
    expect(answer.truncated).toBe(true);
    expect(answer.sessions[0].usage).toMatchObject({
      input: SESSIONS_USAGE_MAX_SESSION_ENTRIES,
      truncated: true,
      // The newest entries were read.
      firstActivity: from + 500,
      lastActivity: from + total - 1,
    });
    expect(answer.aggregates.messages.assistant).toBe(SESSIONS_USAGE_MAX_SESSION_ENTRIES);
    // Asked for by key, the same bound, said the same way.
    const one = await usage(client, { key: "agent:main:busy", range: "7d" });
    expect(one.truncated).toBe(true);
    expect(one.totals.input).toBe(SESSIONS_USAGE_MAX_SESSION_ENTRIES);
  });

  it("refuses bad params with INVALID_REQUEST naming the field", async () => {
    const { client } = await usageStack();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ startDate: "2026-03-01" }, "endDate"],
      [{ endDate: "2026-03-01" }, "startDate"],
      [{ startDate: "2026-02-30", endDate: "2026-03-01" }, "startDate"],
      [{ startDate: "2026-03-01", endDate: "2026-13-01" }, "endDate"],
      [{ startDate: "03/01/2026", endDate: "2026-03-02" }, "startDate"],
      [{ startDate: "0099-01-01", endDate: "0099-01-02" }, "startDate"],
      [{ startDate: "2026-03-10", endDate: "2026-03-09" }, "startDate"],
      [{ startDate: "2025-01-01", endDate: "2026-01-02" }, "endDate"],
      [{ range: "2w" }, "range"],
      [{ limit: 0 }, "limit"],
      [{ limit: 1001 }, "limit"],
      [{ limit: 2.5 }, "limit"],
      [{ agentScope: "all", agentId: "main" }, "agentScope"],
      [{ agentScope: "all", key: "agent:main:main" }, "agentScope"],
      [{ agentScope: "some" }, "agentScope"],
      [{ agentId: "" }, "agentId"],
      [{ key: "" }, "key"],
      [{ mode: "local" }, "mode"],
      [{ mode: "specific", timeZone: "Mars/Olympus_Mons" }, "timeZone"],
      [{ mode: "specific", utcOffset: "UTC+15" }, "utcOffset"],
      [{ utcOffset: "+02:00" }, "utcOffset"],
      [{ groupBy: "tree" }, "groupBy"],
      [{ includeHistorical: "yes" }, "includeHistorical"],
      [{ includeContextWeight: 1 }, "includeContextWeight"],
    ];
    const got: Array<[string, unknown, unknown]> = [];
    for (const [params] of cases) {
      const error = await rpcError(client.requestUnchecked("sessions.usage", params));
      got.push([error.code, (error.details as Wire)?.code, (error.details as Wire)?.field]);
    }
    expect(got).toEqual(cases.map(([, field]) => ["INVALID_REQUEST", "INVALID_PARAMS", field]));
    const tooLong = await rpcError(
      usage(client, { startDate: "2025-01-01", endDate: "2026-01-02" }),
    );
    expect(tooLong.details).toMatchObject({ maxDays: SESSIONS_USAGE_MAX_DAYS });
    expect(tooLong.message).toMatch(/at most 366 days/);

    // The edges are accepted: 366 days, 1000 sessions.
    const year = await usage(client, { startDate: "2025-01-01", endDate: "2026-01-01" });
    expect([year.startDate, year.endDate]).toEqual(["2025-01-01", "2026-01-01"]);
    expect((await usage(client, { limit: 1000 })).sessions).toEqual([]);
  });

  it("honours a time zone only where its days are UTC days, and refuses the others as UNSUPPORTED_TIME_ZONE", async () => {
    const { client } = await usageStack();
    const ok = async (params: Record<string, unknown>) => {
      const answer = await usage(client, params);
      return [answer.startDate, answer.endDate, answer.timeZone];
    };
    const refused = async (params: Record<string, unknown>) => {
      const error = await rpcError(usage(client, params));
      return [error.code, (error.details as Wire).code, (error.details as Wire).field];
    };
    const week = ["2026-03-09", TODAY, "UTC"];
    expect(await ok({ range: "7d", mode: "utc" })).toEqual(week);
    expect(await ok({ range: "7d", mode: "specific", timeZone: "UTC" })).toEqual(week);
    expect(await ok({ range: "7d", mode: "specific", timeZone: "Etc/GMT" })).toEqual(week);
    expect(await ok({ range: "7d", mode: "specific", utcOffset: "UTC+0" })).toEqual(week);
    // Without mode, dates are UTC dates whatever else is said (as OpenClaw).
    expect(await ok({ range: "7d", timeZone: "Asia/Tokyo" })).toEqual(week);
    // London is on GMT until 2026-03-29: its days are UTC days before, not after.
    expect(
      await ok({
        mode: "specific",
        timeZone: "Europe/London",
        startDate: "2026-01-05",
        endDate: "2026-03-28",
      }),
    ).toEqual(["2026-01-05", "2026-03-28", "UTC"]);
    const unsupported = (field: string) => ["INVALID_REQUEST", "UNSUPPORTED_TIME_ZONE", field];
    expect(
      await refused({
        mode: "specific",
        timeZone: "Europe/London",
        startDate: "2026-03-20",
        endDate: "2026-04-02",
      }),
    ).toEqual(unsupported("timeZone"));
    expect(await refused({ mode: "specific", timeZone: "America/New_York" })).toEqual(
      unsupported("timeZone"),
    );
    expect(await refused({ mode: "specific", utcOffset: "UTC-5" })).toEqual(
      unsupported("utcOffset"),
    );
    // A zone this gateway does not know falls back to the offset, as in OpenClaw.
    expect(
      await ok({ range: "7d", mode: "specific", timeZone: "Newer/Zone", utcOffset: "UTC+0" }),
    ).toEqual(week);
    expect(await refused({ mode: "specific", timeZone: "Newer/Zone", utcOffset: "UTC+2" })).toEqual(
      unsupported("utcOffset"),
    );
    const message = (await rpcError(usage(client, { mode: "specific", utcOffset: "UTC+2" })))
      .message;
    expect(message).toMatch(/usage is kept per UTC day/);

    // `gateway`: the host's zone (this process's, where the gateway runs).
    const saved = process.env.TZ;
    try {
      process.env.TZ = "America/New_York";
      expect(await refused({ range: "7d", mode: "gateway" })).toEqual(unsupported("mode"));
      process.env.TZ = "UTC";
      expect(await ok({ range: "7d", mode: "gateway" })).toEqual(week);
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});
