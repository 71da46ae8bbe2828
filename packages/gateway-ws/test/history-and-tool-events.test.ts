/**
 * Two rules the fault-injection suite (`tests/faults`) relies on, checked here at the
 * package level: `chat.history` shows a run that was replayed after a crash (the discard
 * marker cancels only the entries written before it), and a tool that floods output reaches
 * clients as a bounded preview instead of disconnecting every operator as a slow consumer.
 */
import { defineTool } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { TOOL_RESULT_EVENT_MAX_CHARS } from "../src/runs.js";
import {
  closeClients,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";

describe("chat.history after a crash", () => {
  it("shows a replayed run once: entries before its discard marker are dropped, the replay's entries after it are kept", async () => {
    const stack = await startStack();
    const user = (text: string) => ({ role: "user", content: [{ type: "text", text }] });
    const assistant = (text: string) => ({ role: "assistant", content: [{ type: "text", text }] });
    await stack.store.transcripts.append(KEY, [
      { runId: "done", at: 1, message: user("earlier") },
      { runId: "done", at: 2, message: assistant("earlier answer") },
      // The attempt cut short by a crash, its discard marker, then the replay.
      { runId: "cut", at: 3, message: user("again") },
      { runId: "cut", at: 4, discarded: true },
      { runId: "cut", at: 5, message: user("again") },
      { runId: "cut", at: 6, message: assistant("answer after the replay") },
    ]);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const history = await client.request("chat.history", { sessionKey: KEY });
    expect(
      history.messages.map(
        (m: { role: string; content: Array<{ text: string }> }) =>
          `${m.role}:${m.content[0]!.text}`,
      ),
    ).toEqual([
      "user:earlier",
      "assistant:earlier answer",
      "user:again",
      "assistant:answer after the replay",
    ]);
  });
});

describe("tool results in agent events", () => {
  it("are sent whole when small, and as a bounded preview when a tool floods output; no client is disconnected", async () => {
    const big = "z".repeat(TOOL_RESULT_EVENT_MAX_CHARS * 200);
    const tools = [
      defineTool({
        name: "small",
        description: "small",
        parameters: z.object({}),
        execute: () => "tiny",
      }),
      defineTool({
        name: "flood",
        description: "flood",
        parameters: z.object({}),
        execute: () => big,
      }),
    ];
    const stack = await startStack({
      agents: [{ id: "main", model: "scripted/m1", tools: ["*"] }],
      // No cap in the transcript (core caps tool output at 64 KiB by default): this test is
      // about the gateway's own bound on what it sends to clients.
      runtime: { tools, toolMaxOutputBytes: Number.POSITIVE_INFINITY },
      responses: [
        { toolCalls: [{ toolName: "small", input: {} }] },
        { toolCalls: [{ toolName: "flood", input: {} }] },
        "done",
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const other = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "go", idempotencyKey: "t-1" });
    await client.waitEvent("chat", (p) => p.runId === "t-1" && p.state === "final");
    const results = other.events
      .filter((e) => e.event === "agent" && e.payload.stream === "tool")
      .map((e) => e.payload.data)
      .filter((d) => d.phase === "result");
    expect(results).toHaveLength(2);
    expect(results[0]).toMatchObject({ name: "small", result: "tiny" });
    expect(results[0].resultTruncated).toBeUndefined();
    expect(results[1]).toMatchObject({
      name: "flood",
      resultTruncated: true,
      resultChars: big.length,
    });
    expect(results[1].result).toBe(big.slice(0, TOOL_RESULT_EVENT_MAX_CHARS));
    // The model got the whole result; both clients are still connected.
    expect(JSON.stringify(stack.provider.requests[2]!.messages)).toContain(big);
    expect((await other.request("health")).ok).toBe(true);
    expect((await client.request("health")).ok).toBe(true);
  });
});
