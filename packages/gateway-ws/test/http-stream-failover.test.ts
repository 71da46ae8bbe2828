/**
 * The OpenAI-compatible endpoints over a real socket when a model call fails partway and the
 * provider chain falls back to another model: a stream that already carried part of the failed
 * answer ends with `ANSWER_DISCARDED` (and its run is aborted) instead of going on with the
 * fallback's answer as if it followed; a failover before anything was sent, and an answer that
 * is not streamed, get the fallback's answer.
 */
import { defineTool, ProviderError } from "@beamclaw/core";
import type { ScriptEntry } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AUTH,
  httpCall as call,
  closeClients,
  runEnds,
  type Stack,
  sseData,
  sseEvents,
  startStack,
  stopStacks,
  type Wire,
  waitFor,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const AGENT = { id: "main", model: "scripted/m1", fallbacks: ["scripted/m2"] };
const FALLBACK_ANSWER = "Paris is the capital of France.";

/** The first model's answer: two chunks, then the vendor is overloaded. */
function cutAnswer(): ScriptEntry {
  return {
    text: ["The capital ", "of France is"],
    error: new ProviderError("Overloaded", { kind: "overloaded", provider: "scripted" }),
  };
}

/**
 * The fallback's answer, held until its call is aborted: a run that goes on with it can only
 * end by being aborted, whenever the abort comes.
 */
const HELD_FALLBACK: ScriptEntry = {
  events: [
    { type: "response-start", model: "m2" },
    { type: "delay", ms: Number.POSITIVE_INFINITY },
    { type: "text-delta", text: FALLBACK_ANSWER },
    { type: "finish", reason: "stop" },
  ],
};

/** A gateway whose agent falls back from `m1` to `m2`, with `/v1/responses` on. */
function startFallbackStack(responses: ScriptEntry[]): Promise<Stack> {
  return startStack({ responses, agents: [AGENT], gateway: { http: { responses: true } } });
}

/** POSTs `body` to `path` of the stack's gateway with the bearer token. */
function post(stack: Stack, path: string, body: unknown) {
  return call(stack.port, path, { method: "POST", headers: AUTH, body });
}

/** The models the scripted provider was asked, in order. */
function modelsAsked(stack: Stack): string[] {
  return stack.provider.requests.map((r) => r.model);
}

/** The text of a chat completions stream's content chunks, and its error chunks. */
function chatStream(text: string) {
  const events = sseData(text);
  const chunks = events.filter((e): e is Wire => e !== "[DONE]" && e.error === undefined);
  return {
    events,
    content: chunks.map((c) => c.choices[0]?.delta.content ?? "").join(""),
    errors: events.filter((e) => e !== "[DONE]" && e.error !== undefined).map((e) => e.error),
    finishReasons: chunks.map((c) => c.choices[0]?.finish_reason).filter((r) => r != null),
  };
}

describe("a stream whose model call fails after part of its answer was sent", () => {
  it("chat completions, a session turn: ends with ANSWER_DISCARDED, never the fallback's text after it, and aborts the run", async () => {
    const stack = await startFallbackStack([cutAnswer(), HELD_FALLBACK]);
    const ends = runEnds(stack);
    const reply = await post(stack, "/v1/chat/completions", {
      model: "beamclaw",
      stream: true,
      user: "failover-user",
      messages: [{ role: "user", content: "What is the capital of France?" }],
    });
    expect(reply.status).toBe(200);
    const stream = chatStream(reply.text);
    expect(stream.content).toBe("The capital of France is");
    expect(reply.text).not.toContain("Paris");
    expect(stream.errors).toEqual([
      expect.objectContaining({ type: "server_error", code: "ANSWER_DISCARDED" }),
    ]);
    expect(stream.errors[0].message).toContain("Overloaded");
    expect(stream.finishReasons).toEqual([]);
    expect(stream.events.at(-1)).toBe("[DONE]");
    // The gateway ended the stream at the reset and aborted the run.
    expect(modelsAsked(stack)[0]).toBe("m1");
    await waitFor("the run to end", () => ends.length === 1);
    expect(ends[0]?.status).toBe("aborted");
  });

  it("chat completions without stream: the fallback's answer, whole", async () => {
    const stack = await startFallbackStack([cutAnswer(), FALLBACK_ANSWER]);
    const reply = await post(stack, "/v1/chat/completions", {
      model: "beamclaw",
      messages: [{ role: "user", content: "Capital of France?" }],
    });
    expect(reply.status).toBe(200);
    expect(reply.json.choices[0].message.content).toBe(FALLBACK_ANSWER);
    expect(reply.json.choices[0].finish_reason).toBe("stop");
  });

  it("chat completions: a failover before any text was sent streams the fallback's answer", async () => {
    const stack = await startFallbackStack([
      { error: new ProviderError("Overloaded", { kind: "overloaded", provider: "scripted" }) },
      FALLBACK_ANSWER,
    ]);
    const reply = await post(stack, "/v1/chat/completions", {
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: "Capital of France?" }],
    });
    const stream = chatStream(reply.text);
    expect(stream.content).toBe(FALLBACK_ANSWER);
    expect(stream.errors).toEqual([]);
    expect(stream.finishReasons).toEqual(["stop"]);
    expect(modelsAsked(stack)).toEqual(["m1", "m2"]);
  });

  it("chat completions: text sent before a tool ran stays when the next model call fails over before any text of its own", async () => {
    const stack = await startStack({
      responses: [
        { text: "Let me look. ", toolCalls: [{ toolName: "lookup", input: { q: "x" } }] },
        // Thinking (never sent to the client), then the failure: its output is discarded.
        {
          events: [
            { type: "response-start", model: "m1" },
            { type: "thinking-delta", text: "Now the answer." },
            {
              type: "error",
              error: new ProviderError("Overloaded", { kind: "overloaded", provider: "scripted" }),
            },
          ],
        },
        "Found it.",
      ],
      agents: [{ ...AGENT, tools: ["lookup"] }],
      runtime: {
        tools: [
          defineTool({
            name: "lookup",
            description: "Looks something up.",
            parameters: z.object({ q: z.string() }),
            execute: () => "result",
          }),
        ],
      },
    });
    const resets: string[] = [];
    stack.runtime.pubsub.subscribe("events:global", (e: { type?: string; reason?: string }) => {
      if (e.type === "text-reset") resets.push(String(e.reason));
    });
    const reply = await post(stack, "/v1/chat/completions", {
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: "Find x" }],
    });
    // The second model call's output (its thinking) was discarded: the run said so.
    expect(resets).toEqual([expect.stringContaining("Overloaded")]);
    const stream = chatStream(reply.text);
    expect(stream.errors).toEqual([]);
    // The two steps' texts, a blank line between them (as the answer without stream has it).
    expect(stream.content).toBe("Let me look. \n\nFound it.");
    expect(stream.finishReasons).toEqual(["stop"]);
    expect(modelsAsked(stack)).toEqual(["m1", "m1", "m2"]);
  });

  it("chat completions with client tools: ends with ANSWER_DISCARDED after streamed text, the fallback's text never follows", async () => {
    const stack = await startFallbackStack([cutAnswer(), FALLBACK_ANSWER]);
    const reply = await post(stack, "/v1/chat/completions", {
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: "Capital of France?" }],
      tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }],
    });
    const stream = chatStream(reply.text);
    expect(stream.content).toBe("The capital of France is");
    expect(reply.text).not.toContain("Paris");
    expect(stream.errors).toEqual([
      expect.objectContaining({ type: "server_error", code: "ANSWER_DISCARDED" }),
    ]);
    expect(stream.finishReasons).toEqual([]);
    expect(stream.events.at(-1)).toBe("[DONE]");
  });

  it("chat completions with client tools, not streamed: the fallback's answer, whole", async () => {
    const stack = await startFallbackStack([cutAnswer(), FALLBACK_ANSWER]);
    const reply = await post(stack, "/v1/chat/completions", {
      model: "beamclaw",
      messages: [{ role: "user", content: "Capital of France?" }],
      tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }],
    });
    expect(reply.status).toBe(200);
    expect(reply.json.choices[0].message.content).toBe(FALLBACK_ANSWER);
  });

  it("/v1/responses: ends with response.failed (ANSWER_DISCARDED), the fallback's text never follows", async () => {
    const stack = await startFallbackStack([cutAnswer(), HELD_FALLBACK]);
    const ends = runEnds(stack);
    const reply = await post(stack, "/v1/responses", {
      model: "beamclaw",
      stream: true,
      input: "What is the capital of France?",
    });
    expect(reply.status).toBe(200);
    const events = sseEvents(reply.text);
    const deltas = events
      .filter((e) => e.event === "response.output_text.delta")
      .map((e) => e.data.delta)
      .join("");
    expect(deltas).toBe("The capital of France is");
    expect(reply.text).not.toContain("Paris");
    const last = events.at(-1);
    expect(last?.event).toBe("response.failed");
    expect(last?.data.response.status).toBe("failed");
    expect(last?.data.response.error.code).toBe("ANSWER_DISCARDED");
    expect(events.some((e) => e.event === "response.completed")).toBe(false);
    await waitFor("the run to end", () => ends.length === 1);
    expect(ends[0]?.status).toBe("aborted");
  });
});
