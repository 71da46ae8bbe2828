/**
 * Helpers shared by the test files. Not a test file itself: vitest only collects `*.test.ts`.
 */
import { z } from "zod";
import {
  AgentRuntime,
  type AgentRuntimeOptions,
  createProviderChain,
  defineTool,
  MemoryStore,
  type ModelMessage,
  type ModelProvider,
  type ModelStreamEvent,
  type Process,
} from "../src/index.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/index.js";

/** A promise together with the functions that settle it. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** A clock for a provider chain that only moves when the chain sleeps or the test advances it. */
export function fakeClock(start = 1_000_000) {
  let time = start;
  const sleeps: number[] = [];
  return {
    /** Every wait the chain asked for, in ms. */
    sleeps,
    now: () => time,
    advance(ms: number) {
      time += ms;
    },
    sleep: async (ms: number) => {
      sleeps.push(ms);
      time += ms;
    },
  };
}

/** Creates a promise that the test settles from outside through `resolve`/`reject`. */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets pending microtasks and one turn of the event loop run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The error `fn` throws or rejects with; fails the test if it does neither. */
export async function failureOf(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure, but it succeeded");
}

/** How many `Timeout` handles keep the event loop alive right now. */
export function activeTimeouts(): number {
  return process.getActiveResourcesInfo().filter((type) => type === "Timeout").length;
}

const tracked: Process[] = [];

/** Registers a process to be killed by `killTracked()` if the test did not stop it. */
export function track<P extends Process>(process: P): P {
  tracked.push(process);
  return process;
}

/** Kills every process given to `track()` since the last call, newest first; call it from `afterEach`. */
export function killTracked(): void {
  for (const process of tracked.splice(0).reverse()) process.kill();
}

/** Polls `probe` until it returns a value other than `undefined`/`false`, for at most `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 2));
  }
}

/** A provider that streams one chunk, then hangs and ignores its signal. */
export function stuckProvider() {
  const signals: AbortSignal[] = [];
  let closed = false;
  const provider: ModelProvider = {
    specificationVersion: "v1",
    id: "a",
    async *stream(req, options): AsyncGenerator<ModelStreamEvent> {
      if (options?.signal) signals.push(options.signal);
      try {
        yield { type: "response-start", model: req.model };
        yield { type: "text-delta", text: "partial" };
        await new Promise(() => {});
      } finally {
        closed = true;
      }
    },
  };
  return { provider, signals, isClosed: () => closed };
}

/**
 * A provider that streams `response-start`, then one `text-delta` per text, then `finish`
 * if `finish` is set, and records whether its stream was closed (its `finally` ran).
 */
export function closingProvider(texts: readonly string[], finish = false) {
  let closed = false;
  const provider: ModelProvider = {
    specificationVersion: "v1",
    id: "a",
    async *stream(req): AsyncGenerator<ModelStreamEvent> {
      try {
        yield { type: "response-start", model: req.model };
        for (const text of texts) yield { type: "text-delta", text };
        if (finish) yield { type: "finish", reason: "stop" };
      } finally {
        closed = true;
      }
    },
  };
  return { provider, isClosed: () => closed };
}

/**
 * Collects what `read` hands its callback, and the error it ends with, if any (instead of
 * throwing it): `collected((take) => readEvents(stream, take))`.
 */
export async function collected<T>(
  read: (take: (event: T) => void) => Promise<void>,
): Promise<{ events: T[]; error: unknown }> {
  const events: T[] = [];
  try {
    await read((event) => events.push(event));
    return { events, error: undefined };
  } catch (error) {
    return { events, error };
  }
}

/** Every event of `stream`, read with `for await`, and the error it ends with, if any. */
export function readAll<T>(stream: AsyncIterable<T>): Promise<{ events: T[]; error: unknown }> {
  return collected(async (take) => {
    for await (const event of stream) take(event);
  });
}

/** Resolves with `signal`'s reason when it aborts (at once if it has); never without one. */
export function abortOf(signal: AbortSignal | undefined): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal === undefined) return;
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

/** The texts of a request's messages, by role, to see what the model was sent. */
export function transcriptOf(messages: readonly ModelMessage[]): string[] {
  return messages.map(
    (m) =>
      `${m.role}:${m.content
        .map((p) =>
          p.type === "text"
            ? p.text
            : p.type === "tool-call"
              ? `call ${p.toolName}`
              : p.type === "tool-result"
                ? "result"
                : p.type,
        )
        .join("")}`,
  );
}

/** A tool the scripted runtime's agent may call: `lookup({ word })` answers `<word>: a word`. */
export const lookupTool = defineTool({
  name: "lookup",
  description: "Looks a word up",
  parameters: z.object({ word: z.string() }),
  execute: ({ word }) => `${word}: a word`,
});

/**
 * A started runtime over a scripted provider (`scripted/model-1`, one attempt per call), with
 * agent `main` allowed {@link lookupTool}, on `store` (opened here), and its session `key`.
 * `start()` starts another runtime on the same store and provider (a restart). Every stop
 * and close is pushed onto `cleanups`, for the test file's `afterEach` to run newest first.
 */
export async function scriptedRuntime(
  script: ScriptEntry[],
  cleanups: Array<() => Promise<void>>,
  {
    store = new MemoryStore(),
    key = "agent:main:main",
    options = {},
  }: { store?: MemoryStore; key?: string; options?: Partial<AgentRuntimeOptions> } = {},
) {
  const provider = createScriptedProvider(script);
  await store.open();
  cleanups.push(() => store.close());
  const start = async () => {
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
      agents: [{ id: "main", model: "scripted/model-1", tools: ["lookup"] }],
      tools: [lookupTool],
      ...options,
    });
    cleanups.push(() => runtime.stop());
    await runtime.start();
    return runtime;
  };
  const runtime = await start();
  return { runtime, store, provider, session: runtime.session(key), start };
}

/**
 * A script entry that answers `answer: <last user text>`; a text with a gate in `gates` waits
 * for it (abortably) every time it is asked: before its answer, or with `streamFirst` after
 * streaming `answer: ` (a crash at the gate cuts a streamed answer short). `onAsk` sees every
 * request first.
 */
export function gatedAnswer(
  gates: ReadonlyMap<string, Deferred<void>>,
  onAsk: (request: { messages: readonly ModelMessage[] }, last: string) => void,
  streamFirst = false,
): ScriptEntry {
  return (request) => {
    const last = lastUserText(request.messages);
    onAsk(request, last);
    const gate = gates.get(last);
    if (gate === undefined) return `answer: ${last}`;
    const wait = { type: "wait" as const, until: gate.promise };
    return {
      events: [
        ...(streamFirst
          ? [
              { type: "text-delta" as const, text: "answer: " },
              wait,
              { type: "text-delta" as const, text: last },
            ]
          : [wait, { type: "text-delta" as const, text: `answer: ${last}` }]),
        { type: "finish", reason: "stop" },
      ],
    };
  };
}

/**
 * A scripted model (see {@link scriptedRuntime}) of `calls` {@link gatedAnswer}s: texts with a
 * gate in `gates` wait for it (after streaming `answer: ` with `streamFirst`). `asked` lists
 * every call's last user text, `seen` every call's user texts.
 */
export function gatedModel(options: { streamFirst?: boolean; calls?: number } = {}) {
  const gates = new Map<string, Deferred<void>>();
  const asked: string[] = [];
  const seen: string[][] = [];
  const answer = gatedAnswer(
    gates,
    (request, last) => {
      asked.push(last);
      seen.push(
        request.messages
          .filter((m) => m.role === "user")
          .map((m) => m.content.map((p) => (p.type === "text" ? p.text : "")).join("")),
      );
    },
    options.streamFirst,
  );
  return { gates, asked, seen, script: Array<ScriptEntry>(options.calls ?? 40).fill(answer) };
}

/** Kills session `key`'s actor (its supervisor restarts it, as after a crash); returns it. */
export function crashSession(runtime: AgentRuntime, key = "agent:main:main"): Process {
  const old = runtime.registry.whereis<Process>(`session:${key}`)!;
  old.kill();
  return old;
}

/** The text of the last user message of a request (what a scripted model answers to). */
export function lastUserText(messages: readonly ModelMessage[]): string {
  const last = messages.filter((m) => m.role === "user").at(-1);
  if (last === undefined || last.role !== "user") return "";
  return last.content.map((p) => (p.type === "text" ? p.text : "")).join("");
}
