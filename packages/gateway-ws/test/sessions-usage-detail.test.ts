/**
 * `sessions.usage.timeseries` and `sessions.usage.logs` over a real socket: a session's model
 * calls over time and its messages with what each answer cost, from real `chat.send` turns
 * (the scripted provider reports tokens; a tool runs) and from transcripts written to the
 * store (many calls, discarded runs, long texts, attachments).
 */
import type { JsonObject } from "@beamclaw/core";
import { defineTool } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  USAGE_LOG_MAX_CHARS,
  USAGE_TIMESERIES_MAX_POINTS,
} from "../src/methods/session-usage-detail.js";
import {
  closeClients,
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

const KEY = "agent:main:main";
const T0 = Date.parse("2026-03-15T12:00:00Z");

const weather = defineTool({
  name: "weather",
  description: "The weather in a city",
  parameters: z.object({ city: z.string() }),
  execute: ({ city }) => `sunny in ${city}`,
});

async function stackWithTool(): Promise<{ stack: Stack; client: TestClient }> {
  const stack = await startStack({
    agents: [
      { id: "main", model: "scripted/m1", tools: ["weather"] },
      { id: "ops", model: "scripted/m2" },
    ],
    runtime: {
      tools: [weather],
      cost: (_ref, usage) => usage.inputTokens * 0.001 + usage.outputTokens * 0.002,
    },
    responses: [
      {
        toolCalls: [{ toolName: "weather", input: { city: "Paris" } }],
        usage: { inputTokens: 100, outputTokens: 10 },
      },
      { text: "It is sunny in Paris.", usage: { inputTokens: 150, outputTokens: 20 } },
      { text: "You are welcome.", usage: { inputTokens: 200, outputTokens: 5 } },
    ],
  });
  return { stack, client: await TestClient.connect(stack.url, { token: TOKEN }) };
}

async function turn(stack: Stack, client: TestClient, message: string, id: string) {
  const runsBefore = Number((await stack.store.sessions.get(KEY))?.runs ?? 0);
  await client.request("chat.send", { sessionKey: KEY, message, idempotencyKey: id });
  await waitFor(
    "turn saved",
    async () => Number((await stack.store.sessions.get(KEY))?.runs ?? 0) > runsBefore,
  );
}

/** A session record of agent `main` with nothing counted, as a new session's. */
function putRecord(stack: Stack, key: string): Promise<void> {
  return stack.store.sessions.put({
    key,
    agentId: "main",
    createdAt: T0,
    updatedAt: T0,
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    costUsd: 0,
    runs: 0,
  });
}

/** `n` assistant answers with usage, one a minute from {@link T0}: `i` input tokens, cost i/1000. */
function answers(n: number, from = 0): JsonObject[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k + 1;
    return {
      runId: `r${i}`,
      at: T0 + i * 60_000,
      usage: {
        provider: "p",
        model: "m",
        inputTokens: i,
        outputTokens: 1,
        costUsd: i / 1000,
        durationMs: 5,
      },
      message: { role: "assistant", content: [{ type: "text", text: `answer ${i}` }] },
    };
  });
}

describe("sessions.usage.timeseries", () => {
  it("answers each model call of real turns with running totals, oldest first", async () => {
    const { stack, client } = await stackWithTool();
    await turn(stack, client, "Weather in Paris?", "w1");
    await turn(stack, client, "Thanks!", "w2");
    const reader = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });

    const series = await reader.request("sessions.usage.timeseries", { key: "AGENT:MAIN:MAIN" });
    expect(series.sessionId).toBe(KEY);
    expect(series.truncated).toBeUndefined();
    const points = series.points as Wire[];
    expect(points.map((p) => [p.input, p.output, p.totalTokens, p.cumulativeTokens])).toEqual([
      [100, 10, 110, 110],
      [150, 20, 170, 280],
      [200, 5, 205, 485],
    ]);
    expect(points[0]).toMatchObject({ cacheRead: 0, cacheWrite: 0 });
    expect(points.map((p) => p.cost)).toEqual([
      expect.closeTo(0.12, 10),
      expect.closeTo(0.19, 10),
      expect.closeTo(0.21, 10),
    ]);
    expect(points[2]!.cumulativeCost).toBeCloseTo(0.52, 10);
    for (let i = 1; i < points.length; i++) {
      expect(points[i]!.timestamp).toBeGreaterThanOrEqual(points[i - 1]!.timestamp);
    }
    // The session's own totals say the same.
    const record = await stack.store.sessions.get(KEY);
    expect(record?.inputTokens).toBe(450);
    expect(record?.costUsd).toBeCloseTo(points[2]!.cumulativeCost, 10);
  });

  it(`sums more than ${USAGE_TIMESERIES_MAX_POINTS} calls into buckets without losing any`, async () => {
    const { stack, client } = await stackWithTool();
    await stack.store.transcripts.append(KEY, answers(1000));
    await stack.store.transcripts.append(KEY, answers(501, 1000));
    await putRecord(stack, KEY);
    const { points } = await client.request("sessions.usage.timeseries", { key: KEY });
    // 1,501 calls in buckets of 8: 188 points.
    expect(points).toHaveLength(Math.ceil(1501 / 8));
    expect(points.length).toBeLessThanOrEqual(USAGE_TIMESERIES_MAX_POINTS);
    expect(points[0]).toMatchObject({ timestamp: T0 + 8 * 60_000, input: 36, output: 8 });
    const last = points.at(-1) as Wire;
    expect(last.timestamp).toBe(T0 + 1501 * 60_000);
    // Every call is in a bucket: the running totals end at the whole.
    expect(last.cumulativeTokens).toBe((1501 * 1502) / 2 + 1501);
    expect(last.cumulativeCost).toBeCloseTo((1501 * 1502) / 2 / 1000, 6);
    const summed = points.reduce((n: number, p: Wire) => n + p.input, 0);
    expect(summed).toBe((1501 * 1502) / 2);
  });

  it("refuses a missing key, a session that does not exist, and a session of another agent", async () => {
    const { stack, client } = await stackWithTool();
    await turn(stack, client, "Weather in Paris?", "w1");
    const missing = await rpcError(client.request("sessions.usage.timeseries", {}));
    expect(missing.code).toBe("INVALID_REQUEST");
    expect(missing.details).toMatchObject({ field: "key" });
    const nowhere = await rpcError(
      client.request("sessions.usage.timeseries", { key: "agent:main:nowhere" }),
    );
    expect(nowhere.details).toEqual({ code: "SESSION_NOT_FOUND", key: "agent:main:nowhere" });
    const other = await rpcError(
      client.request("sessions.usage.timeseries", { key: KEY, agentId: "ops" }),
    );
    expect((other.details as Wire).code).toBe("AGENT_MISMATCH");
    const malformed = await rpcError(
      client.request("sessions.usage.logs", { key: "not a session key" }),
    );
    expect(malformed.code).toBe("INVALID_REQUEST");
    // A session without model calls has no points.
    await putRecord(stack, "agent:main:quiet");
    const quiet = await client.request("sessions.usage.timeseries", { key: "agent:main:quiet" });
    expect(quiet).toEqual({ sessionId: "agent:main:quiet", points: [] });
  });
});

describe("sessions.usage.logs", () => {
  it("lists a real conversation's messages, with the tokens and cost of each answer", async () => {
    const { stack, client } = await stackWithTool();
    await turn(stack, client, "Weather in Paris?", "w1");
    await turn(stack, client, "Thanks!", "w2");

    const { logs } = await client.request("sessions.usage.logs", { key: KEY });
    expect((logs as Wire[]).map((l) => [l.role, l.content, l.tokens, l.cost?.toFixed(3)])).toEqual([
      ["user", "Weather in Paris?", undefined, undefined],
      ["assistant", "[Tool: weather]", 110, "0.120"],
      ["toolResult", "[Tool: weather]\n[Tool Result]\nsunny in Paris", undefined, undefined],
      ["assistant", "It is sunny in Paris.", 170, "0.190"],
      ["user", "Thanks!", undefined, undefined],
      ["assistant", "You are welcome.", 205, "0.210"],
    ]);
    for (const log of logs as Wire[]) expect(log.timestamp).toBeGreaterThan(0);

    // The newest `limit`, still oldest first.
    const two = await client.request("sessions.usage.logs", { key: KEY, limit: 2 });
    expect(two.logs.map((l: Wire) => l.content)).toEqual(["Thanks!", "You are welcome."]);

    for (const limit of [0, 1001, 2.5, "10"]) {
      const bad = await rpcError(client.request("sessions.usage.logs", { key: KEY, limit }));
      expect([bad.code, (bad.details as Wire).field]).toEqual(["INVALID_REQUEST", "limit"]);
    }
  });

  it("leaves out discarded runs and the loop's own retries, cuts long texts, names attachments", async () => {
    const { stack, client } = await stackWithTool();
    const long = "x".repeat(USAGE_LOG_MAX_CHARS + 50);
    await stack.store.transcripts.append(KEY, [
      {
        runId: "kept",
        at: T0,
        message: {
          role: "user",
          content: [
            { type: "text", text: "look at these" },
            { type: "image", mediaType: "image/png", data: "AAAA" },
            { type: "file", mediaType: "application/pdf", data: "AAAA", filename: "a.pdf" },
          ],
        },
      },
      {
        runId: "kept",
        at: T0 + 1,
        message: { role: "assistant", content: [{ type: "text", text: long }] },
      },
      {
        runId: "kept",
        at: T0 + 2,
        retry: true,
        message: { role: "user", content: [{ type: "text", text: "answer in JSON" }] },
      },
      {
        runId: "gone",
        at: T0 + 3,
        message: { role: "user", content: [{ type: "text", text: "undone" }] },
      },
      {
        runId: "gone",
        at: T0 + 4,
        message: { role: "assistant", content: [{ type: "text", text: "undone too" }] },
      },
      { runId: "gone", at: T0 + 5, discarded: true },
      {
        runId: "kept",
        at: T0 + 6,
        message: { role: "assistant", content: [{ type: "thinking", text: "hmm" }] },
      },
      { runId: "kept", at: T0 + 7, compaction: { summary: "s", kept: 0, summarized: 2 } },
    ]);
    await putRecord(stack, KEY);
    const { logs } = await client.request("sessions.usage.logs", { key: KEY });
    expect((logs as Wire[]).map((l) => [l.role, l.content.length, l.tokens])).toEqual([
      ["user", "look at these\n[Image]\n[File: a.pdf]".length, undefined],
      ["assistant", USAGE_LOG_MAX_CHARS + 1, undefined],
    ]);
    expect(logs[0].content).toBe("look at these\n[Image]\n[File: a.pdf]");
    expect(logs[1].content.endsWith("x…")).toBe(true);
  });
});
