/**
 * Bad arguments from JavaScript callers (no type checker) at the public entry points:
 * wrong types and out-of-range values for `AgentRuntime` options, `session()` / `send()` /
 * `abort()` / `patch()`, `ProviderChain`, `defineTool`, `MemoryStore`, `CronService`,
 * `parseConfig`, `Registry`, `DynamicSupervisor` and `LocalPubSub`. Each one must be refused
 * with a typed error (a `BeamClawError` with a string `code`, never a `TypeError` from
 * inside), change nothing, and leave the object working for valid input afterwards.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AgentRuntime,
  type AgentRuntimeOptions,
  BeamClawError,
  type CronJobInput,
  CronService,
  type CronServiceOptions,
  createManualClock,
  createProviderChain,
  DynamicSupervisor,
  defineTool,
  LocalPubSub,
  MemoryStore,
  type ModelSource,
  type ProviderChainOptions,
  parseConfig,
  parseConfigYaml,
  Registry,
  type SessionHandle,
  Supervisor,
} from "../src/index.js";
import { createScriptedProvider } from "../src/testing/index.js";

// ------------------------------------------------------------------ the bad values

const cyclic: Record<string, unknown> = { a: 1 };
cyclic.self = cyclic;

/** Values of every wrong kind, named so that a failure says which input it was. */
const WRONG: ReadonlyArray<readonly [string, unknown]> = [
  ["null", null],
  ["a number", 42],
  ["NaN", Number.NaN],
  ["Infinity", Number.POSITIVE_INFINITY],
  ["a negative number", -1],
  ["a fraction", 1.5],
  ["an array", []],
  ["an object", {}],
  ["a function", () => "x"],
  ["a symbol", Symbol("bad")],
  ["a BigInt", 10n],
  ["a cyclic object", cyclic],
  ["true", true],
];

/** Strings that are strings, but hostile. */
const HOSTILE_STRINGS: ReadonlyArray<readonly [string, string]> = [
  ["a 100,000-character string", "x".repeat(100_000)],
  ["a string with NUL", "a\u0000b"],
  ["a string with a lone surrogate", "a\uD800b"],
  ["a path-traversal string", "agent:../../x"],
];

const ALL_BAD = [...WRONG, ...HOSTILE_STRINGS] as const;

/** `WRONG` without the entries named. */
function wrongExcept(...names: string[]) {
  return WRONG.filter(([name]) => !names.includes(name));
}

/**
 * Runs `fn` and asserts that it threw or rejected with a typed BeamClaw error: a marked
 * `BeamClawError` with a string `code` (the given one when named), never a raw
 * `TypeError`/`RangeError`.
 */
async function expectTyped(fn: () => unknown, code?: string): Promise<BeamClawError> {
  try {
    await fn();
  } catch (error) {
    return checkTyped(error, code);
  }
  return checkTyped(undefined, code, false);
}

/** Same as {@link expectTyped}, for a call that must throw synchronously (constructors). */
function expectTypedSync(fn: () => unknown, code?: string): BeamClawError {
  try {
    fn();
  } catch (error) {
    return checkTyped(error, code);
  }
  return checkTyped(undefined, code, false);
}

function checkTyped(failure: unknown, code: string | undefined, threw = true): BeamClawError {
  expect(threw, "expected the call to be refused, but it succeeded").toBe(true);
  expect(BeamClawError.isInstance(failure), `not a typed error: ${String(failure)}`).toBe(true);
  const error = failure as BeamClawError;
  expect(typeof error.code).toBe("string");
  if (code !== undefined) expect(error.code).toBe(code);
  return error;
}

// ------------------------------------------------------------------ a small runtime

/** A model source that answers every call with "ok". */
const okModel: ModelSource = {
  async *stream() {
    yield { type: "text-delta", text: "ok" };
    yield {
      type: "finish",
      finishReason: "stop",
      usage: { inputTokens: 1, outputTokens: 1 },
    };
  },
};

function baseOptions(store: MemoryStore): AgentRuntimeOptions {
  return {
    store,
    models: okModel,
    agents: [{ id: "main", model: "demo/x" }],
  };
}

// ------------------------------------------------------------------ AgentRuntime options

describe("new AgentRuntime(options) refuses bad options with a typed error", () => {
  let store: MemoryStore;
  beforeEach(async () => {
    store = new MemoryStore();
    await store.open();
  });
  afterEach(async () => {
    await store.close();
  });

  for (const [name, value] of [...WRONG, ["undefined", undefined] as const]) {
    it(`options: ${name}`, () => {
      expectTypedSync(() => new AgentRuntime(value as never), "INVALID_ARGUMENT");
    });
  }

  const optionCases: Array<[string, string, unknown, string?]> = [];
  for (const [name, value] of [...wrongExcept(), ["undefined", undefined] as const]) {
    optionCases.push(["agents", name, value]);
    optionCases.push(["store", name, value]);
    optionCases.push(["models", name, value]);
  }
  optionCases.push(["agents", "an empty array", []]);
  for (const [name, value] of wrongExcept("an array")) {
    optionCases.push(["tools", name, value]);
    optionCases.push(["defaultQueueMode", name, value]);
    optionCases.push(["pubsub", name, value]);
  }
  optionCases.push(["defaultQueueMode", "an unknown mode", "bogus"]);
  for (const option of ["hibernateAfterMs", "toolTimeoutMs"]) {
    for (const [name, value] of wrongExcept("a number", "a fraction", "Infinity")) {
      optionCases.push([option, name, value]);
    }
    optionCases.push([option, "zero", 0]);
    optionCases.push([option, "a numeric string", "5000"]);
  }
  optionCases.push(["toolTimeoutMs", "Infinity", Number.POSITIVE_INFINITY]);
  for (const option of ["historyLimit", "maxQueuedMessages", "mailboxLimit", "maxActiveSessions"]) {
    for (const [name, value] of wrongExcept("a number", "Infinity")) {
      optionCases.push([option, name, value]);
    }
    optionCases.push([option, "a numeric string", "10"]);
  }
  for (const option of ["historyLimit", "maxQueuedMessages", "mailboxLimit"]) {
    optionCases.push([option, "zero", 0]);
    optionCases.push([option, "Infinity", Number.POSITIVE_INFINITY]);
  }
  for (const option of ["now", "cost"]) {
    for (const [name, value] of wrongExcept("a function")) optionCases.push([option, name, value]);
  }
  for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
    optionCases.push(["approvals", name, value]);
  }
  for (const [name, value] of [...wrongExcept(), ...HOSTILE_STRINGS]) {
    optionCases.push(["defaultAgentId", name, value]);
  }
  optionCases.push(["defaultAgentId", "an empty string", ""]);
  optionCases.push(["defaultAgentId", "an agent that is not configured", "other"]);
  for (const [name, value] of wrongExcept("a number", "a fraction")) {
    optionCases.push(["quarantineAfterCrashes", name, value]);
  }

  for (const [option, name, value] of optionCases) {
    it(`${option}: ${name}`, () => {
      expectTypedSync(
        () => new AgentRuntime({ ...baseOptions(store), [option]: value }),
        "INVALID_ARGUMENT",
      );
    });
  }

  const agentCases: Array<[string, unknown, string]> = [
    // An object without an id is refused for its id (INVALID_SESSION_KEY).
    ...WRONG.map(
      ([name, value]) =>
        [
          `agents[0] is ${name}`,
          value,
          typeof value === "object" && value !== null && !Array.isArray(value)
            ? "INVALID_SESSION_KEY"
            : "INVALID_ARGUMENT",
        ] as [string, unknown, string],
    ),
    ["agents[0] is undefined", undefined, "INVALID_ARGUMENT"],
    ...[...WRONG, ["undefined", undefined] as const].map(
      ([name, value]) =>
        [`agent id is ${name}`, { id: value, model: "demo/x" }, "INVALID_SESSION_KEY"] as [
          string,
          unknown,
          string,
        ],
    ),
    ...HOSTILE_STRINGS.map(
      ([name, value]) =>
        [`agent id is ${name}`, { id: value, model: "demo/x" }, "INVALID_SESSION_KEY"] as [
          string,
          unknown,
          string,
        ],
    ),
    ...[...WRONG, ["undefined", undefined] as const].map(
      ([name, value]) =>
        [`agent model is ${name}`, { id: "main", model: value }, "INVALID_ARGUMENT"] as [
          string,
          unknown,
          string,
        ],
    ),
    ["agent model has no provider", { id: "main", model: "gpt" }, "INVALID_ARGUMENT"],
    ...WRONG.filter(([name]) => name !== "an object").map(
      ([name, value]) =>
        [
          `agent identity is ${name}`,
          { id: "main", model: "demo/x", identity: value },
          "INVALID_ARGUMENT",
        ] as [string, unknown, string],
    ),
    ...[
      ["an empty name", { name: " " }],
      ["a name that is not text", { name: 7 }],
      ["a name over 100 characters", { name: "x".repeat(101) }],
      ["an avatar that is a javascript: URL", { avatar: "javascript:alert(1)" }],
      ["an avatar that is a data: URI of HTML", { avatar: "data:text/html;base64,PGgxPg==" }],
      ["an unknown field", { nickname: "C" }],
    ].map(
      ([name, identity]) =>
        [
          `agent identity has ${name as string}`,
          { id: "main", model: "demo/x", identity },
          "INVALID_ARGUMENT",
        ] as [string, unknown, string],
    ),
  ];
  for (const [name, agent, code] of agentCases) {
    it(name, () => {
      expectTypedSync(
        () => new AgentRuntime({ ...baseOptions(store), agents: [agent as never] }),
        code,
      );
    });
  }

  it("keeps an agent's identity, checked and copied", () => {
    const identity = {
      name: "Clawd",
      emoji: "🦞",
      avatar: "data:image/png;base64,iVBORw0KGgo=",
      theme: undefined,
    };
    const runtime = new AgentRuntime({
      ...baseOptions(store),
      agents: [{ id: "main", model: "demo/x", identity }],
    });
    expect(runtime.agents[0]?.identity).toEqual({
      name: "Clawd",
      emoji: "🦞",
      avatar: "data:image/png;base64,iVBORw0KGgo=",
    });
    expect(runtime.agents[0]?.identity).not.toBe(identity);
  });

  it("accepts valid options, including the edge values", async () => {
    const runtime = new AgentRuntime({
      ...baseOptions(store),
      defaultAgentId: "main",
      defaultQueueMode: "collect",
      hibernateAfterMs: Number.POSITIVE_INFINITY,
      historyLimit: 1,
      maxQueuedMessages: 1,
      maxActiveSessions: Number.POSITIVE_INFINITY,
      toolTimeoutMs: 0.5,
      approvals: {},
      tools: [],
    });
    await runtime.start();
    try {
      const run = await runtime.session("agent:main:main").send("hi");
      expect((await run.result).status).toBe("completed");
    } finally {
      await runtime.stop();
    }
  });
});

// ------------------------------------------------------------------ sessions

describe("a running runtime refuses bad session calls and keeps working", () => {
  let store: MemoryStore;
  let runtime: AgentRuntime;
  let session: SessionHandle;
  const KEY = "agent:main:direct:alice";

  beforeEach(async () => {
    store = new MemoryStore();
    await store.open();
    runtime = new AgentRuntime(baseOptions(store));
    await runtime.start();
    session = runtime.session(KEY);
  });
  afterEach(async () => {
    await runtime.stop();
    await store.close();
  });

  /** Nothing was queued, and a valid message still runs to completion. */
  async function expectUnchangedAndWorking(): Promise<void> {
    expect(await store.queue.pending({ sessionKey: KEY })).toEqual([]);
    const run = await session.send("still there?", { idempotencyKey: "after-refusal" });
    expect((await run.result).status).toBe("completed");
    expect(await store.queue.pending({ sessionKey: KEY })).toEqual([]);
  }

  for (const [name, value] of [...wrongExcept(), ["undefined", undefined] as const]) {
    it(`runtime.session(key): ${name}`, () => {
      expectTypedSync(() => runtime.session(value as never), "INVALID_SESSION_KEY");
    });
  }
  for (const [name, value] of HOSTILE_STRINGS) {
    it(`runtime.session(key): ${name}`, () => {
      expectTypedSync(() => runtime.session(value), "INVALID_SESSION_KEY");
    });
  }

  const sendCases: Array<[string, unknown, unknown]> = [];
  for (const [name, value] of [...wrongExcept(), ["undefined", undefined] as const]) {
    sendCases.push([`message: ${name}`, value, undefined]);
    sendCases.push([`message.text: ${name}`, { text: value }, undefined]);
  }
  for (const [name, value] of wrongExcept("an array")) {
    sendCases.push([`message.images: ${name}`, { text: "hi", images: value }, undefined]);
    sendCases.push([`message.images[0]: ${name}`, { text: "hi", images: [value] }, undefined]);
  }
  sendCases.push([
    "message.images[0] without mediaType",
    { text: "hi", images: [{ data: "AAAA" }] },
    undefined,
  ]);
  sendCases.push([
    "message.images[0] without data or url",
    { text: "hi", images: [{ mediaType: "image/png" }] },
    undefined,
  ]);
  sendCases.push([
    "message.images[0].data is a number",
    { text: "hi", images: [{ mediaType: "image/png", data: 42 }] },
    undefined,
  ]);
  for (const [name, value] of wrongExcept()) {
    sendCases.push([`message.sender: ${name}`, { text: "hi", sender: value }, undefined]);
  }
  for (const [name, value] of wrongExcept("an object")) {
    sendCases.push([`options: ${name}`, "hi", value]);
  }
  for (const [name, value] of [...wrongExcept(), ...HOSTILE_STRINGS]) {
    sendCases.push([`options.queueMode: ${name}`, "hi", { queueMode: value }]);
    sendCases.push([`options.thinking: ${name}`, "hi", { thinking: value }]);
  }
  for (const [name, value] of wrongExcept()) {
    sendCases.push([`options.idempotencyKey: ${name}`, "hi", { idempotencyKey: value }]);
    sendCases.push([`options.signal: ${name}`, "hi", { signal: value }]);
    sendCases.push([`options.model: ${name}`, "hi", { model: value }]);
  }
  sendCases.push(["options.idempotencyKey: an empty string", "hi", { idempotencyKey: "" }]);
  sendCases.push(["options.signal: a string", "hi", { signal: "abort" }]);
  sendCases.push(["options.model: no provider", "hi", { model: "gpt" }]);
  sendCases.push(["options.model: a trailing slash", "hi", { model: "demo/" }]);
  // Every model API refuses a request holding a lone surrogate: saved, it would fail the session.
  sendCases.push(["message.text: a lone surrogate", "a\uD800b", undefined]);
  // A type some vendor refuses would be kept in the history and refused on every later turn.
  for (const mediaType of [
    "image/tiff",
    "image/svg+xml",
    "image/bmp",
    "application/pdf",
    "IMAGE/PNG",
    "image/*",
  ]) {
    sendCases.push([
      `message.images[0].mediaType: ${mediaType}`,
      { text: "hi", images: [{ mediaType, data: "AAAA" }] },
      undefined,
    ]);
  }
  sendCases.push(["message.sender: a lone surrogate", { text: "hi", sender: "\uDC00" }, undefined]);
  // A message of nothing: vendors refuse a message without content.
  sendCases.push(["message.text: empty", "", undefined]);
  sendCases.push(["message.text: only whitespace", " \n\t", undefined]);
  sendCases.push(["message.text: empty, with no images", { text: "", images: [] }, undefined]);

  for (const [name, message, options] of sendCases) {
    it(`send(): ${name} is refused before anything is queued`, async () => {
      await expectTyped(() => session.send(message as never, options as never), "INVALID_ARGUMENT");
      await expectUnchangedAndWorking();
    });
  }

  it("send(): a message of non-JSON values in an accepted field is refused by the store, nothing queued", async () => {
    // `sender` is checked, so the store's own check is reached through an unknown field.
    await expectTyped(
      () => session.send({ text: "hi", extra: () => 1 } as never),
      "INVALID_ARGUMENT",
    );
    await expectUnchangedAndWorking();
  });

  const validSends: Array<[string, unknown, unknown]> = [
    ...HOSTILE_STRINGS.filter(([, text]) => text.isWellFormed()).map(
      ([name, text]) => [`text: ${name}`, text, undefined] as [string, unknown, unknown],
    ),
    [
      "an image without text (a photo without a caption)",
      { text: "", images: [{ mediaType: "image/png", data: "AAAA" }] },
      undefined,
    ],
    [
      "a file with only whitespace for text",
      { text: " ", files: [{ mediaType: "application/pdf", data: "AAAA" }] },
      undefined,
    ],
    ["an object with text and sender", { text: "hi", sender: "alice" }, undefined],
    [
      "images by data and by url",
      {
        text: "look",
        images: [
          { mediaType: "image/png", data: "AAAA" },
          { mediaType: "image/jpeg", url: "https://example.com/a.jpg" },
          { mediaType: "image/*", url: "https://example.com/b" },
          { mediaType: "image/webp", data: "AAAA" },
          { mediaType: "image/gif", data: "AAAA" },
        ],
      },
      undefined,
    ],
    ["an idempotency key with a lone surrogate", "hi", { idempotencyKey: "k\uD800" }],
    ["every queue mode option", "hi", { queueMode: "steer", thinking: "high", model: "demo/y" }],
    ["an AbortSignal that is not aborted", "hi", { signal: new AbortController().signal }],
  ];
  for (const [name, message, options] of validSends) {
    it(`send(): accepts ${name}`, async () => {
      const run = await session.send(message as never, options as never);
      expect((await run.result).status).toBe("completed");
      expect(await store.queue.pending({ sessionKey: KEY })).toEqual([]);
    });
  }

  for (const [name, value] of [...wrongExcept(), ["undefined", undefined] as const]) {
    it(`session.abort(runId): ${name}`, async () => {
      await expectTyped(() => session.abort(value as never), "INVALID_ARGUMENT");
      await expectUnchangedAndWorking();
    });
  }

  it("session.abort(runId) of an unknown run id resolves false", async () => {
    expect(await session.abort("no-such-run")).toBe(false);
  });

  const patchCases: Array<[string, unknown]> = [];
  for (const [name, value] of wrongExcept("an object")) patchCases.push([`patch: ${name}`, value]);
  for (const field of [
    "displayName",
    "channel",
    "thinkingLevel",
    "verboseLevel",
    "modelOverride",
  ]) {
    for (const [name, value] of wrongExcept("null")) {
      patchCases.push([`${field}: ${name}`, { [field]: value }]);
    }
  }
  patchCases.push(["thinkingLevel: an unknown level", { thinkingLevel: "extreme" }]);
  patchCases.push(["verboseLevel: an unknown level", { verboseLevel: "loud" }]);
  patchCases.push(["modelOverride: no provider", { modelOverride: "gpt" }]);
  patchCases.push(["an unknown field", { agentId: "other" }]);
  patchCases.push(["a good field with a bad one", { displayName: "new", thinkingLevel: 3 }]);

  for (const [name, patch] of patchCases) {
    it(`session.patch(): ${name} changes nothing`, async () => {
      await session.patch({ displayName: "before", thinkingLevel: "low" });
      const before = (await session.info()).metadata;
      await expectTyped(() => session.patch(patch as never), "INVALID_ARGUMENT");
      expect((await session.info()).metadata).toEqual(before);
      expect((await store.sessions.get(KEY))?.displayName).toBe("before");
      const after = await session.patch({ displayName: "after", thinkingLevel: null });
      expect(after.displayName).toBe("after");
      expect(after.thinkingLevel).toBeUndefined();
    });
  }

  for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
    it(`runtime.quarantined(options): ${name}`, async () => {
      await expectTyped(() => runtime.quarantined(value as never), "INVALID_ARGUMENT");
      expect(await runtime.quarantined()).toEqual([]);
    });
    it(`runtime.reconfigure(changes): ${name}`, async () => {
      expectTypedSync(() => runtime.reconfigure(value as never), "INVALID_ARGUMENT");
      expect(runtime.agents.map((a) => a.id)).toEqual(["main"]);
      await expectUnchangedAndWorking();
    });
  }
  for (const [name, value] of wrongExcept("a number", "a fraction")) {
    it(`runtime.reconfigure({ toolTimeoutMs }): ${name}`, () => {
      expectTypedSync(
        () => runtime.reconfigure({ toolTimeoutMs: value as never }),
        "INVALID_ARGUMENT",
      );
    });
  }
  for (const [name, value] of [...wrongExcept(), ...HOSTILE_STRINGS]) {
    it(`runtime.releaseQuarantined(sessionKey): ${name}`, async () => {
      await expectTyped(() => runtime.releaseQuarantined(value as never, "x"));
    });
  }
});

// ------------------------------------------------------------------ providers

describe("createProviderChain() and chain.stream() refuse bad options", () => {
  const provider = () => createScriptedProvider({ id: "demo", responses: [{ text: ["hi"] }] });
  const cases: Array<[string, unknown]> = [];
  for (const [name, value] of [...WRONG, ["undefined", undefined] as const]) {
    cases.push([`options: ${name}`, value]);
  }
  for (const [name, value] of wrongExcept("an array", "an object")) {
    cases.push([`providers: ${name}`, { providers: value }]);
  }
  cases.push(["providers: [null]", { providers: [null] }]);
  for (const [name, value] of wrongExcept("an array")) {
    cases.push([`models: ${name}`, { providers: [provider()], models: value }]);
  }
  cases.push([
    "models: a ref to an unknown provider",
    { providers: [provider()], models: ["x/y"] },
  ]);
  for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
    cases.push([`retry: ${name}`, { providers: [provider()], retry: value }]);
  }
  for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
    cases.push([`circuitBreaker: ${name}`, { providers: [provider()], circuitBreaker: value }]);
  }
  for (const [name, value] of wrongExcept("an object", "a cyclic object", "null")) {
    cases.push([`limits: ${name}`, { providers: [provider()], limits: value }]);
  }
  for (const [name, value] of wrongExcept("a number", "Infinity", "a fraction")) {
    cases.push([
      `retry.baseDelayMs: ${name}`,
      { providers: [provider()], retry: { baseDelayMs: value } },
    ]);
    cases.push([
      `circuitBreaker.windowMs: ${name}`,
      { providers: [provider()], circuitBreaker: { windowMs: value } },
    ]);
  }
  for (const [name, value] of wrongExcept("a number")) {
    cases.push([
      `retry.maxAttempts: ${name}`,
      { providers: [provider()], retry: { maxAttempts: value } },
    ]);
    cases.push([
      `limits.demo.rpm: ${name}`,
      { providers: [provider()], limits: { demo: { rpm: value } } },
    ]);
  }
  for (const option of ["now", "sleep", "random", "estimateTokens"]) {
    for (const [name, value] of wrongExcept("a function")) {
      cases.push([`${option}: ${name}`, { providers: [provider()], [option]: value }]);
    }
  }
  for (const [name, options] of cases) {
    it(name, () => {
      expectTypedSync(
        () => createProviderChain(options as ProviderChainOptions),
        "INVALID_ARGUMENT",
      );
    });
  }

  const streamCases: Array<[string, unknown, unknown]> = [];
  for (const [name, value] of [...WRONG, ["undefined", undefined] as const]) {
    streamCases.push([`request: ${name}`, value, undefined]);
  }
  for (const [name, value] of wrongExcept("an object")) {
    streamCases.push([`options: ${name}`, { messages: [] }, value]);
    streamCases.push([`options.signal: ${name}`, { messages: [] }, { signal: value }]);
  }
  for (const [name, value] of wrongExcept("an array")) {
    streamCases.push([`options.models: ${name}`, { messages: [] }, { models: value }]);
  }
  for (const [name, request, options] of streamCases) {
    it(`chain.stream(): ${name}, and the chain still streams`, async () => {
      const chain = createProviderChain({ providers: [provider()] });
      await expectTyped(async () => {
        for await (const _ of chain.stream(request as never, options as never)) {
          // drained
        }
      }, "INVALID_ARGUMENT");
      let text = "";
      for await (const event of chain.stream(
        { messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }] },
        { models: ["demo/m"] },
      )) {
        if (event.type === "text-delta") text += event.text;
      }
      expect(text).toBe("hi");
    });
  }

  it("chain.circuitState() of anything unknown answers without throwing a TypeError", () => {
    const chain = createProviderChain({ providers: [provider()], models: ["demo/m"] });
    for (const [, value] of ALL_BAD) {
      try {
        expect(typeof chain.circuitState(value as never)).toBe("string");
      } catch (error) {
        expect(BeamClawError.isInstance(error)).toBe(true);
      }
    }
  });
});

// ------------------------------------------------------------------ tools

describe("defineTool() refuses bad configs and parse() answers bad input", () => {
  const valid = {
    name: "t",
    description: "a tool",
    parameters: z.object({ a: z.number() }),
    execute: ({ a }: { a: number }) => a,
  };
  const cases: Array<[string, unknown]> = [];
  for (const [name, value] of [...WRONG, ["undefined", undefined] as const]) {
    cases.push([`config: ${name}`, value]);
  }
  for (const [name, value] of [...WRONG, ...HOSTILE_STRINGS, ["undefined", undefined] as const]) {
    cases.push([`name: ${name}`, { ...valid, name: value }]);
  }
  for (const [name, value] of [...WRONG, ["undefined", undefined] as const]) {
    cases.push([`description: ${name}`, { ...valid, description: value }]);
  }
  for (const [name, value] of [...wrongExcept("a function"), ["undefined", undefined] as const]) {
    cases.push([`execute: ${name}`, { ...valid, execute: value }]);
  }
  for (const [name, value] of wrongExcept("a number", "a fraction", "Infinity")) {
    cases.push([`timeoutMs: ${name}`, { ...valid, timeoutMs: value }]);
  }
  cases.push(["timeoutMs: zero", { ...valid, timeoutMs: 0 }]);
  for (const [name, value] of wrongExcept("a number")) {
    cases.push([`maxRetries: ${name}`, { ...valid, maxRetries: value }]);
  }
  for (const [name, value] of [...wrongExcept(), ["an unknown policy", "sometimes"] as const]) {
    cases.push([`approval: ${name}`, { ...valid, approval: value }]);
  }
  for (const [name, value] of wrongExcept("a function")) {
    cases.push([`approvalKey: ${name}`, { ...valid, approvalKey: value }]);
  }
  for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
    cases.push([`parameters: ${name}`, { ...valid, parameters: value }]);
  }
  cases.push(["parameters: a zod string", { ...valid, parameters: z.string() }]);
  for (const [name, config] of cases) {
    it(name, () => {
      expectTypedSync(() => defineTool(config as never), "INVALID_ARGUMENT");
    });
  }

  it("accepts a valid config with every option", () => {
    const tool = defineTool({
      ...valid,
      timeoutMs: Number.POSITIVE_INFINITY,
      maxRetries: 0,
      approval: "never",
      approvalKey: () => ({ key: "k", display: "k" }),
    });
    expect(tool.name).toBe("t");
  });

  const tool = defineTool(valid);
  // (The cyclic object has a: 1, so it is valid input; its extra key is stripped.)
  for (const [name, value] of [...ALL_BAD, ["undefined", undefined] as const].filter(
    ([name]) => name !== "a cyclic object",
  )) {
    it(`tool.parse(${name}) answers ok: false with a message, never throws`, () => {
      const result = tool.parse(value);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.message).toContain("invalid arguments for t");
    });
  }
  it("tool.parse() accepts valid input", () => {
    expect(tool.parse({ a: 1 })).toEqual({ ok: true, args: { a: 1 } });
  });
});

// ------------------------------------------------------------------ stores

describe("MemoryStore refuses bad keys and non-JSON values, keeping the old data", () => {
  let store: MemoryStore;
  beforeEach(async () => {
    store = new MemoryStore();
    await store.open();
    await store.kv.set("k", { v: 1 });
    await store.transcripts.append("s", [{ role: "user", text: "first" }]);
  });
  afterEach(async () => {
    await store.close();
  });

  const NOT_JSON: ReadonlyArray<readonly [string, unknown]> = [
    ["a function", () => 1],
    ["a symbol", Symbol("s")],
    ["a BigInt", 10n],
    ["a cyclic object", cyclic],
    ["undefined", undefined],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["a Date", new Date(0)],
    ["a nested function", { a: { b: [() => 1] } }],
    ["a nested BigInt", { a: [1, 2n] }],
  ];
  for (const [name, value] of NOT_JSON) {
    it(`kv.set(value: ${name}) keeps the old value`, async () => {
      await expectTyped(() => store.kv.set("k", value as never), "INVALID_ARGUMENT");
      expect(await store.kv.get("k")).toEqual({ v: 1 });
      await store.kv.set("k", { v: 2 });
      expect(await store.kv.get("k")).toEqual({ v: 2 });
    });
    // An undefined property is dropped, as JSON does: only a value JSON cannot carry is refused.
    if (name === "undefined") continue;
    it(`transcripts.append(entry: ${name}) appends nothing`, async () => {
      await expectTyped(
        () => store.transcripts.append("s", [{ role: "user", text: "x", extra: value } as never]),
        "INVALID_ARGUMENT",
      );
      expect(await store.transcripts.lastSeq("s")).toBe(1);
      expect(await store.transcripts.append("s", [{ role: "user", text: "second" }])).toBe(2);
    });
    it(`queue.enqueue(payload: ${name}) queues nothing`, async () => {
      await expectTyped(
        () =>
          store.queue.enqueue({ idempotencyKey: "i", sessionKey: "s", payload: value as never }),
        "INVALID_ARGUMENT",
      );
      expect(await store.queue.pending()).toEqual([]);
      const { duplicate } = await store.queue.enqueue({
        idempotencyKey: "i",
        sessionKey: "s",
        payload: { ok: true },
      });
      expect(duplicate).toBe(false);
    });
  }
  for (const [name, value] of [...wrongExcept(), ["an empty string", ""] as const]) {
    it(`kv.set(key: ${name}) writes nothing`, async () => {
      await expectTyped(() => store.kv.set(value as never, 1), "INVALID_ARGUMENT");
      expect(await store.kv.keys("")).toEqual(["k"]);
    });
    it(`transcripts.append(key: ${name}) writes nothing`, async () => {
      await expectTyped(
        () => store.transcripts.append(value as never, [{ role: "user", text: "x" }]),
        "INVALID_ARGUMENT",
      );
      expect(await store.transcripts.lastSeq("s")).toBe(1);
    });
  }
  for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
    it(`kv.set(options: ${name}) keeps the old value`, async () => {
      await expectTyped(() => store.kv.set("k", 2, value as never), "INVALID_ARGUMENT");
      expect(await store.kv.get("k")).toEqual({ v: 1 });
    });
  }
  for (const [name, value] of wrongExcept("a number", "a fraction")) {
    it(`kv.set(ttlMs: ${name}) keeps the old value`, async () => {
      await expectTyped(() => store.kv.set("k", 2, { ttlMs: value as never }), "INVALID_ARGUMENT");
      expect(await store.kv.get("k")).toEqual({ v: 1 });
    });
  }
  for (const [name, value] of HOSTILE_STRINGS) {
    it(`kv keys and values may be ${name}; they round-trip`, async () => {
      await store.kv.set(value, { text: value });
      expect(await store.kv.get(value)).toEqual({ text: value });
      expect(await store.kv.get("k")).toEqual({ v: 1 });
    });
  }
});

// ------------------------------------------------------------------ cron

describe("CronService refuses bad options and job input, keeping its jobs", () => {
  const clock = () => createManualClock(Date.parse("2026-01-05T00:00:00Z"));
  async function baseCronOptions(): Promise<CronServiceOptions> {
    const store = new MemoryStore();
    await store.open();
    return {
      agentId: "main",
      store,
      clock: clock(),
      runJob: async () => ({ status: "ok", output: "done" }),
    };
  }

  const optionCases: Array<[string, string, unknown]> = [];
  for (const [name, value] of wrongExcept("a function")) {
    optionCases.push(["runJob", name, value]);
  }
  for (const [name, value] of [...wrongExcept(), ...HOSTILE_STRINGS]) {
    optionCases.push(["agentId", name, value]);
  }
  for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
    optionCases.push(["clock", name, value]);
  }
  optionCases.push(["clock", "an object without now()", {}]);
  for (const option of ["deliver", "fetch", "deleteSession"]) {
    for (const [name, value] of wrongExcept("a function", "null")) {
      optionCases.push([option, name, value]);
    }
  }
  for (const option of ["stuckRunMs", "resyncMs", "webhookTimeoutMs", "isolatedSessionTtlMs"]) {
    for (const [name, value] of wrongExcept("a number", "a fraction", "Infinity", "null")) {
      optionCases.push([option, name, value]);
    }
  }
  for (const [name, value] of wrongExcept("an array", "null")) {
    optionCases.push(["backoffMs", name, value]);
  }
  for (const [name, value] of wrongExcept("a number", "a fraction", "Infinity")) {
    optionCases.push(["backoffMs[0]", name, value]);
  }
  for (const [name, value] of wrongExcept("a number", "a fraction", "Infinity", "null")) {
    optionCases.push(["maxConsecutiveErrors", name, value]);
  }
  for (const [name, value] of wrongExcept("a number", "null")) {
    optionCases.push(["runLogKeep", name, value]);
    optionCases.push(["mailboxLimit", name, value]);
  }
  for (const [name, value] of wrongExcept("null")) {
    if (typeof value !== "string") optionCases.push(["name", name, value]);
  }

  for (const [name, value] of [...WRONG, ["undefined", undefined] as const]) {
    it(`options: ${name}`, () => {
      expectTypedSync(() => new CronService(value as never));
    });
  }
  for (const [option, name, value] of optionCases) {
    it(`${option}: ${name}`, async () => {
      const base = await baseCronOptions();
      const options =
        option === "backoffMs[0]" ? { ...base, backoffMs: [value] } : { ...base, [option]: value };
      expectTypedSync(() => new CronService(options as never));
    });
  }

  describe("job input", () => {
    let service: CronService;
    beforeEach(async () => {
      service = await new CronService(await baseCronOptions()).start();
      await service.add({ id: "keep", schedule: { every: 60_000 }, prompt: "kept" });
    });
    afterEach(async () => {
      await service.stop();
    });

    const job: CronJobInput = { id: "new", schedule: { every: 60_000 }, prompt: "p" };
    const addCases: Array<[string, unknown]> = [];
    for (const [name, value] of [...WRONG, ["undefined", undefined] as const]) {
      addCases.push([`input: ${name}`, value]);
    }
    for (const field of ["id", "schedule", "prompt", "session", "enabled", "catchUp", "delivery"]) {
      for (const [name, value] of WRONG) {
        if (field === "enabled" && value === true) continue;
        addCases.push([`${field}: ${name}`, { ...job, [field]: value }]);
      }
    }
    for (const [name, value] of HOSTILE_STRINGS) {
      addCases.push([`id: ${name}`, { ...job, id: value }]);
      addCases.push([`schedule.cron: ${name}`, { ...job, schedule: { cron: value } }]);
      addCases.push([
        `schedule.timezone: ${name}`,
        { ...job, schedule: { cron: "0 * * * *", timezone: value } },
      ]);
      addCases.push([
        `delivery webhook url: ${name}`,
        { ...job, delivery: { kind: "webhook", url: value } },
      ]);
    }
    addCases.push([
      "delivery webhook url: a non-http scheme",
      { ...job, delivery: { kind: "webhook", url: "file:///etc/passwd" } },
    ]);
    for (const [name, value] of wrongExcept("a number", "a fraction")) {
      addCases.push([`schedule.every: ${name}`, { ...job, schedule: { every: value } }]);
      addCases.push([`catchUpLimit: ${name}`, { ...job, catchUpLimit: value }]);
    }
    addCases.push(["schedule.every: zero", { ...job, schedule: { every: 0 } }]);
    addCases.push(["schedule.at: NaN", { ...job, schedule: { at: Number.NaN } }]);
    addCases.push(["schedule.at: not a date", { ...job, schedule: { at: "tomorrow-ish" } }]);
    addCases.push(["agentId: another agent", { ...job, agentId: "other" }]);
    addCases.push(["id: taken", { ...job, id: "keep" }]);

    for (const [name, input] of addCases) {
      it(`add(): ${name}`, async () => {
        await expectTyped(() => service.add(input as never));
        const jobs = await service.list();
        expect(jobs.map((j) => j.id)).toEqual(["keep"]);
        expect(jobs[0]?.prompt).toBe("kept");
        const added = await service.add({ ...job, id: "valid" });
        expect(added.id).toBe("valid");
      });
    }

    const updateCases: Array<[string, unknown, unknown]> = [];
    for (const [name, value] of [...wrongExcept(), ...HOSTILE_STRINGS]) {
      updateCases.push([`id: ${name}`, value, { prompt: "changed" }]);
    }
    for (const [name, value] of wrongExcept("an object")) {
      updateCases.push([`patch: ${name}`, "keep", value]);
      updateCases.push([`patch.schedule: ${name}`, "keep", { schedule: value }]);
    }
    for (const [name, value] of WRONG) {
      updateCases.push([`patch.prompt: ${name}`, "keep", { prompt: value }]);
    }
    updateCases.push(["patch.id", "keep", { id: "other" }]);
    for (const [name, id, patch] of updateCases) {
      it(`update(): ${name} changes nothing`, async () => {
        await expectTyped(() => service.update(id as never, patch as never));
        const kept = await service.get("keep");
        expect(kept.prompt).toBe("kept");
        expect(kept.schedule).toEqual({ every: 60_000 });
        expect((await service.update("keep", { prompt: "updated" })).prompt).toBe("updated");
      });
    }

    for (const [name, value] of [...wrongExcept(), ...HOSTILE_STRINGS]) {
      it(`get/remove/runNow/runs(id): ${name}`, async () => {
        await expectTyped(() => service.get(value as never));
        await expectTyped(() => service.runNow(value as never));
        await expectTyped(() => service.runs(value as never));
        // remove answers false or a typed error, and never removes another job.
        try {
          expect(await service.remove(value as never)).toBe(false);
        } catch (error) {
          expect(BeamClawError.isInstance(error)).toBe(true);
        }
        expect((await service.list()).map((j) => j.id)).toEqual(["keep"]);
      });
    }
  });
});

// ------------------------------------------------------------------ config

describe("parseConfig() / parseConfigYaml() answer bad input with a typed error", () => {
  const minimal = { agents: [{ id: "main", model: "demo/x" }] };
  const cases: Array<[string, unknown]> = [
    ...WRONG.map(([name, value]) => [`config: ${name}`, value] as [string, unknown]),
    ["config: undefined", undefined],
    ["agents[0]: a cyclic object", { agents: [cyclic] }],
    ["a BigInt deep inside", { agents: [{ id: "main", model: "demo/x", maxSteps: 10n }] }],
    ["a symbol deep inside", { agents: [{ id: "main", model: Symbol("m") }] }],
    ["a function deep inside", { agents: [{ id: "main", model: () => "demo/x" }] }],
    [
      "a cycle through an array",
      (() => {
        const list: unknown[] = [];
        list.push(list);
        return { agents: list };
      })(),
    ],
  ];
  for (const [name, input] of cases) {
    it(name, () => {
      const error = expectTypedSync(() => parseConfig(input, { env: {} }));
      expect(["CONFIG_INVALID", "INVALID_ARGUMENT"]).toContain(error.code);
    });
  }
  for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
    it(`parseConfig options: ${name}`, () => {
      expectTypedSync(() => parseConfig(minimal, value as never), "INVALID_ARGUMENT");
    });
    it(`parseConfig options.env: ${name}`, () => {
      expectTypedSync(() => parseConfig(minimal, { env: value as never }), "INVALID_ARGUMENT");
    });
  }
  for (const [name, value] of [...wrongExcept(), ["undefined", undefined] as const]) {
    it(`parseConfigYaml(text: ${name})`, () => {
      expectTypedSync(() => parseConfigYaml(value as never), "INVALID_ARGUMENT");
    });
  }
  for (const [name, value] of HOSTILE_STRINGS) {
    it(`parseConfigYaml(text: ${name}) is a ConfigError`, () => {
      expectTypedSync(() => parseConfigYaml(value, { env: {} }), "CONFIG_INVALID");
    });
  }
  it("accepts a valid configuration", () => {
    expect(parseConfig(minimal, { env: {} }).agents[0]?.id).toBe("main");
  });
});

// ------------------------------------------------------------------ registry, supervisors, pubsub

describe("Registry, supervisors and LocalPubSub refuse bad arguments and stay usable", () => {
  for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
    it(`new Registry(options: ${name})`, () => {
      expectTypedSync(() => new Registry(value as never), "INVALID_ARGUMENT");
    });
    it(`new DynamicSupervisor(options: ${name})`, () => {
      expectTypedSync(() => new DynamicSupervisor(value as never), "INVALID_ARGUMENT");
    });
    it(`new Supervisor(options: ${name})`, () => {
      expectTypedSync(() => new Supervisor(value as never), "INVALID_ARGUMENT");
    });
  }
  for (const [name, value] of [...wrongExcept("null"), ["an unknown mode", "shared"] as const]) {
    it(`new Registry({ keys: ${name} })`, () => {
      expectTypedSync(() => new Registry({ keys: value as never }), "INVALID_ARGUMENT");
    });
  }
  const supervisorOptions: Array<[string, string, unknown]> = [];
  for (const [name, value] of wrongExcept("a number", "Infinity", "null")) {
    supervisorOptions.push(["maxChildren", name, value]);
  }
  for (const [name, value] of wrongExcept("a number", "null")) {
    supervisorOptions.push(["maxRestarts", name, value]);
  }
  for (const [name, value] of wrongExcept("a number", "a fraction", "Infinity", "null")) {
    supervisorOptions.push(["periodMs", name, value]);
    supervisorOptions.push(["callTimeoutMs", name, value]);
  }
  for (const [name, value] of wrongExcept("null")) supervisorOptions.push(["name", name, value]);
  for (const [option, name, value] of supervisorOptions) {
    it(`new DynamicSupervisor({ ${option}: ${name} })`, () => {
      expectTypedSync(() => new DynamicSupervisor({ [option]: value }), "INVALID_ARGUMENT");
    });
  }

  describe("a running DynamicSupervisor and a Registry", () => {
    let sup: DynamicSupervisor;
    const names = new Registry();
    beforeEach(async () => {
      sup = await new DynamicSupervisor().start();
      await sup.startChild({ id: "kept", start: () => new Supervisor().start() });
    });
    afterEach(async () => {
      await sup.stop();
    });

    async function expectSupervisorIntact(): Promise<void> {
      expect(sup.status).toBe("running");
      expect((await sup.whichChildren()).map((c) => c.id)).toEqual(["kept"]);
      const child = await sup.startChild({ start: () => new Supervisor().start() });
      await sup.terminateChild(child);
    }

    for (const [name, value] of [
      ...wrongExcept("an object", "a cyclic object"),
      ["undefined", undefined] as const,
    ]) {
      it(`startChild(spec: ${name})`, async () => {
        await expectTyped(() => sup.startChild(value as never));
        await expectSupervisorIntact();
      });
    }
    for (const [name, value] of wrongExcept("a function")) {
      it(`startChild({ start: ${name} })`, async () => {
        await expectTyped(() => sup.startChild({ start: value as never }));
        await expectSupervisorIntact();
      });
      if (value === null) continue; // null restart means the default, like undefined
      it(`startChild({ restart: ${name} })`, async () => {
        await expectTyped(() =>
          sup.startChild({ start: () => new Supervisor().start(), restart: value as never }),
        );
        await expectSupervisorIntact();
      });
    }
    for (const [name, value] of [
      ...wrongExcept(),
      ...HOSTILE_STRINGS,
      ["undefined", undefined] as const,
    ]) {
      it(`terminateChild(${name})`, async () => {
        await expectTyped(() => sup.terminateChild(value as never));
        await expectSupervisorIntact();
      });
    }

    for (const [name, value] of [
      ...wrongExcept("an object", "a cyclic object"),
      ["undefined", undefined] as const,
    ]) {
      it(`registry.register(key, process: ${name})`, async () => {
        expectTypedSync(() => names.register("k", value as never), "INVALID_ARGUMENT");
        expect(names.whereis("k")).toBeUndefined();
        const [child] = await sup.whichChildren();
        const process = child?.process;
        expect(process).toBeDefined();
        names.register("k", process as never);
        expect(names.whereis("k")).toBe(process);
        names.unregister("k");
      });
    }
    for (const [name, value] of [...wrongExcept(), ["an empty string", ""] as const]) {
      it(`registry.register(key: ${name}, process)`, async () => {
        const [child] = await sup.whichChildren();
        expectTypedSync(
          () => names.register(value as never, child?.process as never),
          "INVALID_ARGUMENT",
        );
        expect([...names.registeredKeys()]).toEqual([]);
      });
    }
  });

  describe("LocalPubSub.subscribe", () => {
    let pubsub: LocalPubSub;
    beforeEach(() => {
      pubsub = new LocalPubSub();
    });
    afterEach(async () => {
      await pubsub.close();
    });

    /** No subscription was left behind, and a valid one still receives. */
    async function expectNoLeftover(): Promise<void> {
      expect(pubsub.subscriberCount("t")).toBe(0);
      expect(pubsub.topics()).toEqual([]);
      const got: unknown[] = [];
      const off = pubsub.subscribe("t", (m) => got.push(m));
      await pubsub.publish("t", 1);
      off();
      expect(got).toEqual([1]);
      expect(pubsub.subscriberCount("t")).toBe(0);
    }

    for (const [name, value] of [
      ...wrongExcept(),
      ["an empty string", ""] as const,
      ["undefined", undefined] as const,
    ]) {
      it(`topic: ${name}`, async () => {
        expectTypedSync(() => pubsub.subscribe(value as never, () => {}), "INVALID_ARGUMENT");
        await expectNoLeftover();
      });
    }
    for (const [name, value] of [...wrongExcept("a function"), ["undefined", undefined] as const]) {
      it(`handler: ${name}`, async () => {
        expectTypedSync(() => pubsub.subscribe("t", value as never), "INVALID_ARGUMENT");
        await expectNoLeftover();
      });
    }
    for (const [name, value] of wrongExcept("an object", "a cyclic object")) {
      it(`options: ${name}`, async () => {
        expectTypedSync(() => pubsub.subscribe("t", () => {}, value as never), "INVALID_ARGUMENT");
        await expectNoLeftover();
      });
    }
    for (const [name, value] of [...wrongExcept(), ["a string", "abort"] as const]) {
      it(`options.signal: ${name} subscribes nothing`, async () => {
        expectTypedSync(
          () => pubsub.subscribe("t", () => {}, { signal: value as never }),
          "INVALID_ARGUMENT",
        );
        await expectNoLeftover();
      });
    }
    for (const [name, value] of HOSTILE_STRINGS) {
      it(`topic: ${name} is a valid topic`, async () => {
        const got: unknown[] = [];
        const off = pubsub.subscribe(value, (m) => got.push(m));
        await pubsub.publish(value, "m");
        off();
        expect(got).toEqual(["m"]);
      });
    }
  });
});
