/**
 * A session turn of several steps (text, one of the agent's tools, more text) over real
 * sockets, on `/v1/chat/completions` and `/v1/responses`: the answer is every step's text,
 * joined by a blank line, and it is the same streamed or not (and as a kept response continues
 * it), never the steps run together nor the last step's text alone.
 */
import { defineTool } from "@beamclaw/core";
import type { ScriptEntry } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AUTH,
  httpCall as call,
  closeClients,
  type Stack,
  sseData,
  sseEvents,
  startStack,
  stopStacks,
  type Wire,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const ADD = defineTool({
  name: "add",
  description: "Adds two numbers.",
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => String(a + b),
});

/** Text, a call of `add`, then the answer. */
const TWO_STEPS: ScriptEntry[] = [
  { text: ["Let me ", "check."], toolCalls: [{ toolName: "add", input: { a: 2, b: 2 } }] },
  { text: ["The answer ", "is 4."] },
];
const TWO_STEPS_TEXT = "Let me check.\n\nThe answer is 4.";

/** A gateway whose agent has the `add` tool, with `/v1/responses` on. */
function startToolStack(responses: ScriptEntry[]): Promise<Stack> {
  return startStack({
    responses,
    agents: [{ id: "main", model: "scripted/m1", tools: ["add"] }],
    runtime: { tools: [ADD] },
    gateway: { http: { responses: true } },
  });
}

function post(stack: Stack, path: string, body: unknown) {
  return call(stack.port, path, { method: "POST", headers: AUTH, body });
}

/** The content deltas of a chat completions stream. */
function chatDeltas(text: string): string[] {
  return sseData(text)
    .filter((e): e is Wire => e !== "[DONE]" && e.error === undefined)
    .map((c) => c.choices[0]?.delta.content)
    .filter((d): d is string => typeof d === "string" && d.length > 0);
}

describe("/v1/chat/completions: a session turn of several steps", () => {
  it("streams a blank line between the steps' texts, as its own delta", async () => {
    const stack = await startToolStack(TWO_STEPS);
    const reply = await post(stack, "/v1/chat/completions", {
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: "What is 2+2?" }],
    });
    expect(reply.status).toBe(200);
    const deltas = chatDeltas(reply.text);
    expect(deltas).toEqual(["Let me ", "check.", "\n\n", "The answer ", "is 4."]);
    expect(deltas.join("")).toBe(TWO_STEPS_TEXT);
    expect(sseData(reply.text).at(-1)).toBe("[DONE]");
  });

  it("answers the same full text without stream, not the last step's alone", async () => {
    const stack = await startToolStack(TWO_STEPS);
    const reply = await post(stack, "/v1/chat/completions", {
      model: "beamclaw",
      messages: [{ role: "user", content: "What is 2+2?" }],
    });
    expect(reply.status).toBe(200);
    expect(reply.json.choices[0].message.content).toBe(TWO_STEPS_TEXT);
    expect(reply.json.choices[0].finish_reason).toBe("stop");
  });

  it("skips steps without text: one separator between the texts, none before the first", async () => {
    const script = (): ScriptEntry[] => [
      { toolCalls: [{ toolName: "add", input: { a: 1, b: 1 } }] },
      { text: "Two. ", toolCalls: [{ toolName: "add", input: { a: 2, b: 2 } }] },
      { toolCalls: [{ toolName: "add", input: { a: 4, b: 4 } }] },
      { text: "Eight." },
    ];
    const streamed = await startToolStack(script());
    const reply = await post(streamed, "/v1/chat/completions", {
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: "Double it twice" }],
    });
    expect(chatDeltas(reply.text).join("")).toBe("Two. \n\nEight.");
    const whole = await startToolStack(script());
    const json = await post(whole, "/v1/chat/completions", {
      model: "beamclaw",
      messages: [{ role: "user", content: "Double it twice" }],
    });
    expect(json.json.choices[0].message.content).toBe("Two. \n\nEight.");
  });
});

describe("/v1/responses: a session turn of several steps", () => {
  it("streams one message whose deltas, done text and completed response hold the steps' texts with a blank line between", async () => {
    const stack = await startToolStack(TWO_STEPS);
    const reply = await post(stack, "/v1/responses", {
      model: "beamclaw",
      stream: true,
      input: "What is 2+2?",
    });
    expect(reply.status).toBe(200);
    const events = sseEvents(reply.text);
    const deltas = events
      .filter((e) => e.event === "response.output_text.delta")
      .map((e) => e.data.delta);
    expect(deltas.join("")).toBe(TWO_STEPS_TEXT);
    const done = events.find((e) => e.event === "response.output_text.done");
    expect(done?.data.text).toBe(TWO_STEPS_TEXT);
    const completed = events.at(-1);
    expect(completed?.event).toBe("response.completed");
    expect(completed?.data.response.output).toEqual([
      expect.objectContaining({
        type: "message",
        content: [{ type: "output_text", text: TWO_STEPS_TEXT, annotations: [] }],
      }),
    ]);
    // What is kept for previous_response_id (and read back) is what the client got.
    const kept = await call(stack.port, `/v1/responses/${completed?.data.response.id}`, {
      headers: AUTH,
    });
    expect(kept.json.output[0].content[0].text).toBe(TWO_STEPS_TEXT);
  });

  it("answers the same full text without stream, and continues the conversation with it", async () => {
    const stack = await startToolStack([...TWO_STEPS, "Yes."]);
    const reply = await post(stack, "/v1/responses", { model: "beamclaw", input: "What is 2+2?" });
    expect(reply.status).toBe(200);
    expect(reply.json.output).toEqual([
      expect.objectContaining({
        type: "message",
        content: [{ type: "output_text", text: TWO_STEPS_TEXT, annotations: [] }],
      }),
    ]);
    const next = await post(stack, "/v1/responses", {
      model: "beamclaw",
      input: "Sure?",
      previous_response_id: reply.json.id,
    });
    expect(next.status).toBe(200);
    const sent = stack.provider.requests.at(-1)!.messages.at(-1)!;
    expect((sent.content[0] as { text: string }).text).toBe(
      `User: What is 2+2?\n\nAssistant: ${TWO_STEPS_TEXT}\n\nUser: Sure?`,
    );
  });
});
