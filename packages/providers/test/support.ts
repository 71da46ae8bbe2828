/**
 * Test helpers: fixtures, SSE replay bodies for msw, request capture, stream collection.
 */
import { readFileSync } from "node:fs";
import {
  type AgentDefinition,
  AgentRuntime,
  createProviderChain,
  MemoryStore,
  type ModelProvider,
  type ModelStreamEvent,
  type ProviderError,
  type RegisteredTool,
} from "@beamclaw/core";
import { HttpResponse } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, expect } from "vitest";

/**
 * The test file's msw server (unhandled requests fail the test; handlers reset after each
 * test) and its list of clean-ups, run newest first after each test (see {@link runtimeOver}).
 */
export function mswFakes() {
  const server = setupServer();
  const cleanups: Array<() => Promise<void>> = [];
  beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
  afterEach(async () => {
    server.resetHandlers();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(() => server.close());
  return { server, cleanups };
}

/** A `get_weather` tool that answers 21 °C for any city. */
export const weatherTool: RegisteredTool = {
  name: "get_weather",
  description: "Current weather in a city",
  inputSchema: { type: "object", properties: { city: { type: "string" } } },
  execute: () => ({ celsius: 21 }),
};

/** A recorded-style fixture from test/fixtures, as text. */
export function fixture(name: string): string {
  return readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8");
}

const encoder = new TextEncoder();

/** Options of {@link sseBody}. */
export interface ReplayOptions {
  /** Bytes per chunk; small odd sizes put chunk boundaries inside lines and characters. */
  chunkSize?: number;
  /** Stop after this many bytes of the text ... */
  cutAfterBytes?: number;
  /** ... by erroring the stream (a reset connection) or closing it (a clean but early end). */
  cut?: "error" | "close";
  /** Called when the consumer cancels the body. */
  onCancel?: () => void;
}

/** A response body that replays `text` in chunks. */
export function sseBody(text: string, options: ReplayOptions = {}): ReadableStream<Uint8Array> {
  const bytes = encoder.encode(text);
  const end = options.cutAfterBytes ?? bytes.length;
  const size = options.chunkSize ?? 13;
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= end) {
        if (options.cut === "error")
          controller.error(new TypeError("terminated: other side closed"));
        else controller.close();
        return;
      }
      const next = Math.min(offset + size, end);
      controller.enqueue(bytes.slice(offset, next));
      offset = next;
    },
    cancel() {
      options.onCancel?.();
    },
  });
}

/** A 200 `text/event-stream` response replaying `text`. */
export function sseResponse(text: string, options: ReplayOptions = {}): HttpResponse<never> {
  return new HttpResponse(sseBody(text, options) as never, {
    headers: { "content-type": "text/event-stream; charset=utf-8" },
  });
}

/** One Chat Completions stream chunk of `model` (a `data:` event) carrying `delta`. */
export function chatChunk(
  model: string,
  delta: Record<string, unknown>,
  finish: string | null = null,
): string {
  return `data: ${JSON.stringify({
    id: "cmpl-e5cc70bb28c444948073e77776eb30ef",
    object: "chat.completion.chunk",
    created: 1777000000,
    model,
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
}

/** A streamed Chat Completions answer of `text` (`""`: an answer of nothing, a stop without text). */
export function chatAnswer(model: string, text: string): HttpResponse<never> {
  return sseResponse(
    chatChunk(model, { role: "assistant", content: "" }) +
      (text === "" ? "" : chatChunk(model, { content: text })) +
      chatChunk(model, { content: "" }, "stop") +
      "data: [DONE]\n\n",
  );
}

/** A JSON error response, as vendors send them. */
export function errorResponse(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): HttpResponse<never> {
  return new HttpResponse(JSON.stringify(body) as never, {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** What a handler saw of one request. */
export interface CapturedRequest {
  url: string;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

/** Reads the request an msw handler received. */
export async function capture(request: Request): Promise<CapturedRequest> {
  const headers: Record<string, string> = {};
  request.headers.forEach((value, name) => {
    headers[name] = value;
  });
  return {
    url: request.url,
    headers,
    body: (await request.clone().json()) as Record<string, unknown>,
  };
}

/** Drains a model stream into an array. */
export async function collect(
  stream: AsyncIterable<ModelStreamEvent>,
): Promise<ModelStreamEvent[]> {
  const events: ModelStreamEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

/** Drains a stream that must fail; returns the events before the failure and the error. */
export async function collectFailure(
  stream: AsyncIterable<ModelStreamEvent>,
): Promise<{ events: ModelStreamEvent[]; error: ProviderError }> {
  const events: ModelStreamEvent[] = [];
  try {
    for await (const event of stream) events.push(event);
  } catch (error) {
    return { events, error: error as ProviderError };
  }
  throw new Error(`the stream did not fail; it yielded ${JSON.stringify(events)}`);
}

/** The concatenated text of all `text-delta` events. */
export function textOf(events: ModelStreamEvent[]): string {
  return events.map((e) => (e.type === "text-delta" ? e.text : "")).join("");
}

/** The concatenated text of all `thinking-delta` events. */
export function thinkingOf(events: ModelStreamEvent[]): string {
  return events.map((e) => (e.type === "thinking-delta" ? e.text : "")).join("");
}

/** Asserts the stream contract: starts with response-start, ends with one finish. */
export function expectWellFormed(events: ModelStreamEvent[]): void {
  expect(events[0]?.type).toBe("response-start");
  expect(events.at(-1)?.type).toBe("finish");
  expect(events.filter((e) => e.type === "finish")).toHaveLength(1);
  // Usage comes after all content.
  const lastUsage = events.findLastIndex((e) => e.type === "usage");
  const lastContent = events.findLastIndex(
    (e) => e.type !== "usage" && e.type !== "finish" && e.type !== "response-start",
  );
  if (lastUsage !== -1) expect(lastUsage).toBeGreaterThan(lastContent);
}

/** A user message with one text part. */
export function userText(text: string) {
  return { role: "user" as const, content: [{ type: "text" as const, text }] };
}

/** Resolves when `signal` aborts (a handler that never answers on its own). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/**
 * A started runtime on a `MemoryStore` over `providers` (one attempt per call, no circuit
 * breaker: a vendor's error reaches the run as it is), with `agents` and `tools`. Its stop and
 * the store's close are pushed onto `cleanups`, for the test file's `afterEach` to run newest
 * first.
 */
export async function runtimeOver(
  providers: ModelProvider[],
  { agents, tools = [] }: { agents: AgentDefinition[]; tools?: RegisteredTool[] },
  cleanups: Array<() => Promise<void>>,
): Promise<AgentRuntime> {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers, retry: { maxAttempts: 1 }, circuitBreaker: false }),
    agents,
    tools,
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return runtime;
}
