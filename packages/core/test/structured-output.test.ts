/**
 * Structured output: `send(text, { output })` and an agent's `output` ask for a JSON answer
 * conforming to a schema. The schema travels as the request's `responseFormat`; the final
 * answer is validated (whatever the provider did), a non-conforming one is answered with what
 * is wrong and the model asked again, and the value is `result.output`, parsed by the
 * caller's zod schema. A message keeps its output (as JSON Schema) in the durable queue, so a
 * replay asks for the same answer.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createProviderChain, defineTool, InvalidArgumentError } from "../src/index.js";
import type { ModelMessage } from "../src/providers/types.js";
import {
  AgentRuntime,
  type AgentRuntimeOptions,
  type RunEvent,
  type RunResult,
  runAgentLoop,
} from "../src/sessions/index.js";
import { resolveOutput } from "../src/sessions/output.js";
import { BasicToolRunner } from "../src/sessions/tools.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/index.js";
import { waitFor } from "./support.js";

const KEY = "agent:main:main";
const MAIN = { id: "main", model: "scripted/model-1" };

const Ticket = z.object({
  category: z.enum(["billing", "bug", "other"]),
  urgent: z.boolean(),
});

const textOf = (message: ModelMessage | undefined): string =>
  message?.content.map((p) => ("text" in p && typeof p.text === "string" ? p.text : "")).join("") ??
  "";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function runtimeWith(
  script: ScriptEntry[],
  options: Partial<AgentRuntimeOptions> = {},
  store = new MemoryStore(),
) {
  const provider = createScriptedProvider(script);
  await store.open();
  cleanups.push(() => store.close());
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
    agents: [MAIN],
    ...options,
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return { runtime, store, provider, session: runtime.session(KEY) };
}

async function eventsOf(run: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const events: RunEvent[] = [];
  for await (const event of run) events.push(event);
  return events;
}

describe("a run asked for a structured answer", () => {
  it("sends the schema as the response format and gives the parsed answer, typed", async () => {
    const { session, provider } = await runtimeWith([
      { text: ['{"category":', '"billing","urgent":true}'] },
    ]);
    const run = await session.send("My card was charged twice", { output: Ticket });
    const result = await run.result;
    expect(result.status).toBe("completed");
    expect(result.output).toEqual({ category: "billing", urgent: true });
    // Typed by the schema: this line compiles only if `output` is the schema's type.
    const category: "billing" | "bug" | "other" | undefined = result.output?.category;
    expect(category).toBe("billing");
    expect(result.text).toBe('{"category":"billing","urgent":true}');
    const format = provider.requests[0]!.responseFormat;
    expect(format).toEqual({
      type: "json-schema",
      name: "output",
      strict: true,
      schema: {
        type: "object",
        properties: {
          category: { type: "string", enum: ["billing", "bug", "other"] },
          urgent: { type: "boolean" },
        },
        required: ["category", "urgent"],
        additionalProperties: false,
      },
    });
  });

  it("strict follows what OpenAI's strict mode takes: closed objects, all required, known keywords", () => {
    const strictOf = (schema: z.ZodType) => resolveOutput(schema, "output").format.strict;
    expect(
      strictOf(z.object({ a: z.string().nullable(), b: z.array(z.number().int()).min(1) })),
    ).toBe(true);
    expect(
      strictOf(z.object({ e: z.email(), when: z.iso.datetime(), kind: z.enum(["x", "y"]) })),
    ).toBe(true);
    expect(strictOf(z.object({ nested: z.object({ deep: z.literal("v") }) }))).toBe(true);
    // An optional field, an open object, a keyword strict mode refuses:
    expect(strictOf(z.object({ a: z.string().optional() }))).toBe(false);
    expect(strictOf(z.looseObject({ a: z.string() }))).toBe(false);
    expect(strictOf(z.object({ name: z.string().min(1) }))).toBe(false);
    expect(strictOf(z.object({ tags: z.array(z.string()).refine(() => true) }))).toBe(true);
  });

  it("strict is off for a schema strict decoding cannot take, and can be set", async () => {
    const Loose = z.object({ title: z.string(), note: z.string().optional() });
    const { session, provider } = await runtimeWith(['{"title":"a"}', '{"title":"b"}']);
    await (await session.send("one", { output: Loose })).result;
    expect(provider.requests[0]!.responseFormat?.strict).toBe(false);
    await (
      await session.send("two", {
        output: { schema: Ticket, name: "ticket", description: "A support ticket", strict: false },
      })
    ).result;
    expect(provider.requests[1]!.responseFormat).toMatchObject({
      name: "ticket",
      description: "A support ticket",
      strict: false,
    });
  });

  it("applies the zod schema's transforms and defaults on the caller's handle; events carry the JSON", async () => {
    const Parsed = z.object({
      title: z.string().transform((s) => s.toUpperCase()),
      priority: z.number().int().default(3),
    });
    const { session } = await runtimeWith(['{"title":"refund"}']);
    const run = await session.send("Make a ticket", { output: Parsed });
    const [events, result] = await Promise.all([eventsOf(run), run.result]);
    expect(result.output).toEqual({ title: "REFUND", priority: 3 });
    const end = events.at(-1) as Extract<RunEvent, { type: "run-end" }>;
    expect(end.type).toBe("run-end");
    expect(end.result.output).toEqual({ title: "refund" });
  });

  it("partialOutputs() gives the answer as it streams, starting over after a rejected one, then the output", async () => {
    const { session } = await runtimeWith([
      { text: ['{"category":"re', 'fund","urg', 'ent":"yes"}'] },
      { text: ['{"categ', 'ory":"billing",', '"urgent":tr', "ue}"] },
    ]);
    const run = await session.send("Charged twice", { output: Ticket });
    const seen: unknown[] = [];
    for await (const partial of run.partialOutputs()) {
      // Typed as the schema's, every field optional.
      const category: string | undefined = partial.category;
      seen.push(category === undefined ? { ...partial } : partial);
    }
    expect(seen).toEqual([
      { category: "re" },
      { category: "refund" },
      { category: "refund", urgent: "yes" },
      // The rejected answer is dropped (text-reset): the next one starts from nothing.
      {},
      { category: "billing" },
      { category: "billing", urgent: true },
    ]);
    expect((await run.result).output).toEqual({ category: "billing", urgent: true });
  });

  it("partialOutputs() gives each value once: the output is not repeated when the last chunk showed it", async () => {
    const { session } = await runtimeWith([
      { text: '```json\n{"category":"bug","urgent":false}\n```' },
    ]);
    const run = await session.send("It crashes", { output: Ticket });
    const seen: unknown[] = [];
    for await (const partial of run.partialOutputs()) seen.push(partial);
    expect(seen).toEqual([{ category: "bug", urgent: false }]);
  });

  it("accepts JSON in a Markdown code fence", async () => {
    const { session } = await runtimeWith(['```json\n{"category":"bug","urgent":false}\n```']);
    const result = await (await session.send("It crashes", { output: Ticket })).result;
    expect(result.output).toEqual({ category: "bug", urgent: false });
  });

  it("asks again with what was wrong, and takes the corrected answer", async () => {
    const { session, provider, runtime } = await runtimeWith([
      '{"category":"refund","urgent":"yes"}',
      '{"category":"billing","urgent":true}',
    ]);
    const run = await session.send("Charged twice", { output: Ticket });
    const [events, result] = await Promise.all([eventsOf(run), run.result]);
    expect(result.status).toBe("completed");
    expect(result.steps).toBe(2);
    // A streaming reader is told to drop the first answer before the second streams.
    const shown = events
      .filter((e) => e.type === "text-delta" || e.type === "text-reset")
      .map((e) => (e.type === "text-delta" ? e.text : "RESET"));
    expect(shown).toEqual([
      '{"category":"refund","urgent":"yes"}',
      "RESET",
      '{"category":"billing","urgent":true}',
    ]);
    const reset = events.find((e) => e.type === "text-reset");
    expect(reset).toMatchObject({
      reason: expect.stringMatching(/^the answer did not conform to the output schema: category/),
    });
    expect(result.output).toEqual({ category: "billing", urgent: true });
    const retry = provider.requests[1]!.messages.at(-1)!;
    expect(retry.role).toBe("user");
    expect(textOf(retry)).toContain("category");
    expect(textOf(retry)).toContain("urgent");
    expect(textOf(retry)).toMatch(/Answer again with only the JSON value/);
    // The second request still asks for the format.
    expect(provider.requests[1]!.responseFormat?.name).toBe("output");
    // The exchange is part of the conversation: the transcript keeps it.
    const history = await runtime.session(KEY).history();
    expect(history.map((r) => (r.entry.message as { role: string }).role)).toEqual([
      "user",
      "assistant",
      "user",
      "assistant",
    ]);
  });

  it("fails with OUTPUT_INVALID after the last try, keeping the last answer's text", async () => {
    const { session, provider } = await runtimeWith(["not json", "still not json"]);
    const run = await session.send("Charged twice", { output: Ticket });
    const [events, result] = await Promise.all([eventsOf(run), run.result]);
    expect(result.status).toBe("failed");
    expect(result.error?.code).toBe("OUTPUT_INVALID");
    expect(result.error?.message).toMatch(/not JSON/);
    expect(result.output).toBeUndefined();
    expect(result.text).toBe("still not json");
    expect(provider.requests).toHaveLength(2);
    expect(events.some((e) => e.type === "error" && e.error.code === "OUTPUT_INVALID")).toBe(true);
  });

  it("with retries 0 fails at the first answer that does not conform", async () => {
    const { session, provider } = await runtimeWith(['{"category":"billing"}']);
    const result = await (await session.send("x", { output: { schema: Ticket, retries: 0 } }))
      .result;
    expect(result.error?.code).toBe("OUTPUT_INVALID");
    expect(result.error?.message).toMatch(/urgent/);
    expect(provider.requests).toHaveLength(1);
  });

  it("says an answer cut at the output token limit was cut", async () => {
    const { session } = await runtimeWith([
      { text: '{"category":"bil', finishReason: "length" },
      { text: '{"category":"bil', finishReason: "length" },
    ]);
    const result = await (await session.send("x", { output: Ticket })).result;
    expect(result.error?.code).toBe("OUTPUT_INVALID");
    expect(result.error?.message).toMatch(/output token limit/);
  });

  it("fails with OUTPUT_REFUSED, without asking again, when the model refuses", async () => {
    const { session, provider } = await runtimeWith([
      { text: "I can't help with that.", finishReason: "refusal" },
    ]);
    const result = await (await session.send("x", { output: Ticket })).result;
    expect(result.status).toBe("failed");
    expect(result.error).toEqual({
      code: "OUTPUT_REFUSED",
      message: "the model refused to give the output answer: I can't help with that.",
    });
    expect(provider.requests).toHaveLength(1);
  });

  it("lets the model call tools first; only the final answer is the output", async () => {
    const lookup = defineTool({
      name: "lookup",
      description: "Finds a charge",
      parameters: z.object({ id: z.string() }),
      execute: ({ id }) => ({ id, amount: 42 }),
    });
    const { session, provider } = await runtimeWith(
      [
        { toolCalls: [{ toolName: "lookup", input: { id: "ch_1" } }] },
        '{"category":"billing","urgent":false}',
      ],
      { agents: [{ ...MAIN, tools: ["lookup"] }], tools: [lookup] },
    );
    const result = await (await session.send("Charge ch_1?", { output: Ticket })).result;
    expect(result.output).toEqual({ category: "billing", urgent: false });
    expect(provider.requests.map((r) => r.responseFormat?.name)).toEqual(["output", "output"]);
    expect(provider.requests[0]!.tools?.map((t) => t.name)).toEqual(["lookup"]);
  });

  it("leaves requests without a response format when no output is asked", async () => {
    const { session, provider } = await runtimeWith(["hello"]);
    const result = await (await session.send("hi")).result;
    expect(result.output).toBeUndefined();
    expect(provider.requests[0]!.responseFormat).toBeUndefined();
  });
});

describe("an agent's output", () => {
  const schema = {
    type: "object",
    properties: { sentiment: { type: "string", enum: ["positive", "negative"] } },
    required: ["sentiment"],
    additionalProperties: false,
  };

  it("applies to every run of the agent (a JSON Schema, validated); a message's own takes precedence", async () => {
    const { session, provider } = await runtimeWith(
      ['{"sentiment":"meh"}', '{"sentiment":"positive"}', '{"category":"bug","urgent":true}'],
      { agents: [{ ...MAIN, output: { schema, name: "sentiment" } }] },
    );
    const first = await (await session.send("Great product")).result;
    expect(first.output).toEqual({ sentiment: "positive" });
    expect(first.steps).toBe(2);
    expect(provider.requests[0]!.responseFormat).toEqual({
      type: "json-schema",
      name: "sentiment",
      schema,
      strict: true,
    });
    const second = await (await session.send("It crashes", { output: Ticket })).result;
    expect(second.output).toEqual({ category: "bug", urgent: true });
    expect(provider.requests[2]!.responseFormat?.name).toBe("output");
  });

  it("is checked when the runtime is made", () => {
    const store = new MemoryStore();
    const models = createProviderChain({ providers: [createScriptedProvider([])], models: [] });
    for (const output of [
      z.string(),
      { schema: { type: "array", items: { type: "string" } } },
      { schema: Ticket, retries: 9 },
      { schema: Ticket, name: "has space" },
      { name: "no-schema" },
      "json",
    ]) {
      expect(
        () => new AgentRuntime({ store, models, agents: [{ ...MAIN, output: output as never }] }),
      ).toThrow(InvalidArgumentError);
    }
    expect(
      () => new AgentRuntime({ store, models, agents: [{ ...MAIN, output: { schema: Ticket } }] }),
    ).not.toThrow();
  });
});

describe("bad output options", () => {
  it.each([
    ["a zod schema of a string", z.string()],
    ["a JSON Schema of an array", { schema: { type: "array" } }],
    ["no schema", { name: "x" }],
    ["retries out of range", { schema: Ticket, retries: -1 }],
    ["a fractional retries", { schema: Ticket, retries: 1.5 }],
    ["a name with a space", { schema: Ticket, name: "a b" }],
    ["a strict that is not a boolean", { schema: Ticket, strict: "yes" }],
    ["a description that is not a string", { schema: Ticket, description: 3 }],
    ["a schema with a function", { schema: { type: "object", properties: () => 1 } }],
    ["a number", 42],
  ])("%s is refused with a typed error and nothing is queued", async (_name, output) => {
    const { session, store, provider } = await runtimeWith(["never used"]);
    const error = await session.send("x", { output: output as never }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/^output/);
    expect(await store.queue.pending({ sessionKey: KEY })).toEqual([]);
    expect(provider.requests).toHaveLength(0);
  });
});

describe("the durable queue", () => {
  it("keeps a message's output as JSON Schema with it", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { session, store } = await runtimeWith([
      {
        events: [
          { type: "wait", until: gate },
          { type: "text-delta", text: '{"category":"bug","urgent":true}' },
          { type: "finish", reason: "stop" },
        ],
      },
    ]);
    const run = await session.send("x", {
      output: { schema: Ticket, name: "ticket", retries: 2 },
    });
    const [queued] = await store.queue.pending({ sessionKey: KEY });
    expect((queued!.payload as { options: { output: unknown } }).options.output).toEqual({
      schema: {
        type: "object",
        properties: {
          category: { type: "string", enum: ["billing", "bug", "other"] },
          urgent: { type: "boolean" },
        },
        required: ["category", "urgent"],
        additionalProperties: false,
      },
      name: "ticket",
      strict: true,
      retries: 2,
    });
    release();
    expect((await run.result).output).toEqual({ category: "bug", urgent: true });
  });

  it("a replayed message asks for the same answer and is validated against the JSON Schema", async () => {
    const store = new MemoryStore();
    await store.open();
    const payload = {
      input: { text: "Charged twice" },
      options: {
        output: {
          schema: {
            type: "object",
            properties: { category: { type: "string", enum: ["billing", "bug"] } },
            required: ["category"],
            additionalProperties: false,
          },
          name: "ticket",
          strict: true,
          retries: 1,
        },
      },
      runId: "run-replayed",
    };
    await store.queue.enqueue({ idempotencyKey: "k1", sessionKey: KEY, payload });
    const { runtime, provider } = await runtimeWith(
      ['{"category":"refund"}', '{"category":"billing"}'],
      {},
      store,
    );
    const ends: RunResult[] = [];
    const off = runtime.pubsub.subscribe<RunEvent>(`session:${KEY}`, (event) => {
      if (event.type === "run-end") ends.push(event.result);
    });
    cleanups.push(async () => off());
    await runtime.session(KEY).info();
    await waitFor("the replayed run's end", () => ends.length === 1);
    expect(ends[0]).toMatchObject({
      runId: "run-replayed",
      status: "completed",
      output: { category: "billing" },
      steps: 2,
    });
    expect(provider.requests[0]!.responseFormat?.name).toBe("ticket");
  });

  it("a replayed message whose output cannot be used is quarantined, and the session goes on", async () => {
    const store = new MemoryStore();
    await store.open();
    await store.queue.enqueue({
      idempotencyKey: "bad",
      sessionKey: KEY,
      payload: {
        input: { text: "x" },
        options: { output: { schema: { type: "string" } } },
        runId: "r",
      },
    });
    const { runtime, session } = await runtimeWith(["fine"], {}, store);
    await session.info();
    await waitFor("the quarantine", async () => (await runtime.quarantined()).length === 1);
    const [quarantined] = await runtime.quarantined();
    expect(quarantined!.reason).toMatch(/output schema cannot be used/);
    const result = await (await session.send("hello")).result;
    expect(result.text).toBe("fine");
  });
});

describe("runAgentLoop with an output", () => {
  it("validates the answer; an invalid output option fails the run, typed", async () => {
    const provider = createScriptedProvider(['{"category":"other","urgent":false}']);
    const source = createProviderChain({ providers: [provider], models: [] });
    const history: ModelMessage[] = [];
    const base = {
      runId: "run-1",
      sessionKey: KEY,
      agent: MAIN,
      models: [MAIN.model],
      history,
      inputs: [{ text: "x" }],
      source,
      tools: new BasicToolRunner(),
      signal: new AbortController().signal,
      emit: () => {},
      persist: async (message: ModelMessage) => {
        history.push(message);
      },
      takeSteered: () => [],
    };
    const ok = await runAgentLoop({ ...base, output: Ticket });
    expect(ok.output).toEqual({ category: "other", urgent: false });
    const bad = await runAgentLoop({ ...base, output: z.number() });
    expect(bad.status).toBe("failed");
    expect(bad.error?.code).toBe("INVALID_ARGUMENT");
  });
});
