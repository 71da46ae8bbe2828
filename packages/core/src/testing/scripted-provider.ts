/**
 * In-memory model providers for tests: one that plays back scripted responses and one that
 * echoes. No network and, unless a script asks for a delay, no timers.
 */
import { AbortedError, InvalidArgumentError } from "../errors.js";
import type {
  FinishReason,
  JsonValue,
  ModelCallOptions,
  ModelInfo,
  ModelProvider,
  ModelRequest,
  ModelStreamEvent,
  ModelUsage,
} from "../providers/types.js";
import { startTimer } from "../runtime/timers.js";

/** One step of an explicit script: a stream event, a pause, or a failure at that point. */
export type ScriptedStep =
  | ModelStreamEvent
  /** Waits `ms` (abortably). `Infinity` waits until the call's signal aborts. */
  | { type: "delay"; ms: number }
  /** Holds the stream until `until` settles (or the call's signal aborts): a gate for tests. */
  | { type: "wait"; until: PromiseLike<unknown> }
  /** Throws `error` from the stream at this point. */
  | { type: "error"; error: unknown };

/** A tool call the scripted model makes. */
export interface ScriptedToolCall {
  /** Default `call_<n>`, numbered per provider. */
  toolCallId?: string;
  toolName: string;
  input: JsonValue;
}

/**
 * One scripted response. The shorthand fields are streamed as a provider would:
 * `response-start`, the `text` chunks, the `toolCalls` (start, one argument delta, call),
 * `usage` when given, then `finish`. With `error`, the stream throws it after the text and
 * tool calls instead of finishing; with `error` and no content, it throws before any event,
 * like a failed HTTP request.
 */
export interface ScriptedResponse {
  /** Text, streamed as one `text-delta` per chunk. */
  text?: string | readonly string[];
  toolCalls?: readonly ScriptedToolCall[];
  usage?: ModelUsage;
  /** Default `tool-calls` when there are tool calls, otherwise `stop`. */
  finishReason?: FinishReason;
  /** Thrown from the stream (see above). */
  error?: unknown;
  /** Wait before the first event, in ms. */
  delayMs?: number;
  /** Wait between events, in ms. */
  chunkDelayMs?: number;
  /** Exact steps to play instead of the shorthand fields; nothing is added to them. */
  events?: readonly ScriptedStep[];
}

/**
 * A script entry: a response, a string (one text chunk), or a function of the request that
 * returns one. `index` counts the requests this provider has received, from 0.
 */
export type ScriptEntry =
  | string
  | ScriptedResponse
  | ((request: ModelRequest, index: number) => string | ScriptedResponse);

/** Options of {@link createScriptedProvider}. */
export interface ScriptedProviderOptions {
  /** The provider id used in `provider/model` refs. Default `scripted`. */
  id?: string;
  /** Responses for any model, used in order. */
  responses?: readonly ScriptEntry[];
  /** Responses for one model id, used in order before `responses`. */
  models?: Readonly<Record<string, readonly ScriptEntry[]>>;
}

/** A request as the scripted provider received it, with its call options. */
export interface ScriptedCall {
  request: ModelRequest;
  headers: Record<string, string> | undefined;
}

/** A {@link ModelProvider} that plays back a script and records what it was asked. */
export interface ScriptedProvider extends ModelProvider {
  /** Every request received, in order (copies, unaffected by later changes). */
  readonly requests: readonly ModelRequest[];
  /** Every call received, with its headers. */
  readonly calls: readonly ScriptedCall[];
  /** Scripted responses not used yet, across all queues. */
  readonly remaining: number;
  /** Appends responses for any model. */
  push(...entries: ScriptEntry[]): void;
  /** Appends responses for one model id. */
  pushFor(model: string, ...entries: ScriptEntry[]): void;
}

/**
 * Creates a provider that answers from a script, for tests of code that calls models.
 * Each request takes the next response of its model's queue (`models[request.model]`) or,
 * when that is empty, of the shared `responses` queue; a request with no response left fails
 * with `InvalidArgumentError` naming the model. The signal is honoured at every step:
 * aborting throws `AbortedError`.
 *
 * @example
 * ```ts
 * import { ProviderError } from "@beamclaw/core";
 * import { createScriptedProvider } from "@beamclaw/core/testing";
 *
 * const provider = createScriptedProvider([
 *   { error: new ProviderError("busy", { kind: "overloaded", provider: "scripted" }) },
 *   { text: ["Hel", "lo"], usage: { inputTokens: 12, outputTokens: 2 } },
 *   { toolCalls: [{ toolName: "search", input: { q: "beam" } }] },
 * ]);
 * // ... run the code under test against `provider`, then:
 * expect(provider.requests).toHaveLength(3);
 * ```
 */
export function createScriptedProvider(
  script: readonly ScriptEntry[] | ScriptedProviderOptions = {},
): ScriptedProvider {
  const options: ScriptedProviderOptions = Array.isArray(script)
    ? { responses: script as readonly ScriptEntry[] }
    : (script as ScriptedProviderOptions);
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError("createScriptedProvider needs an array of responses or options");
  }
  const id = options.id ?? "scripted";
  const shared: ScriptEntry[] = [...(options.responses ?? [])];
  const perModel = new Map<string, ScriptEntry[]>(
    Object.entries(options.models ?? {}).map(([model, entries]) => [model, [...entries]]),
  );
  const requests: ModelRequest[] = [];
  const calls: ScriptedCall[] = [];
  let toolCallCount = 0;

  const next = (request: ModelRequest, index: number): ScriptedResponse => {
    const entry = perModel.get(request.model)?.shift() ?? shared.shift();
    if (entry === undefined) {
      throw new InvalidArgumentError(
        `scripted provider "${id}" has no response left for model "${request.model}" (request #${index + 1})`,
      );
    }
    const resolved = typeof entry === "function" ? entry(request, index) : entry;
    return typeof resolved === "string" ? { text: resolved } : resolved;
  };

  return {
    specificationVersion: "v1",
    id,
    get requests() {
      return requests;
    },
    get calls() {
      return calls;
    },
    get remaining() {
      let count = shared.length;
      for (const entries of perModel.values()) count += entries.length;
      return count;
    },
    push(...entries) {
      shared.push(...entries);
    },
    pushFor(model, ...entries) {
      const queue = perModel.get(model);
      if (queue === undefined) perModel.set(model, [...entries]);
      else queue.push(...entries);
    },
    stream(request, callOptions = {}) {
      // The request is recorded and its response taken when the call is made, so that
      // concurrent calls get responses in the order they were made.
      const index = requests.length;
      const copy = snapshot(request);
      requests.push(copy);
      calls.push({ request: copy, headers: callOptions.headers && { ...callOptions.headers } });
      let response: ScriptedResponse | undefined;
      let scriptError: unknown;
      try {
        response = next(copy, index);
      } catch (error) {
        scriptError = error;
      }
      const steps =
        response === undefined
          ? []
          : toSteps(response, request.model, () => {
              toolCallCount++;
              return `call_${toolCallCount}`;
            });
      return play(steps, response, scriptError, callOptions);
    },
    listModels() {
      return Promise.resolve([...perModel.keys()].map((model): ModelInfo => ({ id: model })));
    },
  };
}

/** Options of {@link createEchoProvider}. */
export interface EchoProviderOptions {
  /** The provider id. Default `echo`. */
  id?: string;
}

/** A provider that answers every request with the text of its last user message. */
export interface EchoProvider extends ModelProvider {
  /** Every request received, in order. */
  readonly requests: readonly ModelRequest[];
}

/**
 * Creates a zero-latency provider that streams back the text of the last user message (one
 * `text-delta`), with usage counted at 4 characters per token, and finishes with `stop`.
 *
 * @example
 * ```ts
 * const chain = createProviderChain({ providers: [createEchoProvider()], models: ["echo/any"] });
 * ```
 */
export function createEchoProvider(options: EchoProviderOptions = {}): EchoProvider {
  const requests: ModelRequest[] = [];
  return {
    specificationVersion: "v1",
    id: options.id ?? "echo",
    get requests() {
      return requests;
    },
    stream(request: ModelRequest, callOptions: ModelCallOptions = {}) {
      requests.push(snapshot(request));
      const lastUser = request.messages.findLast((message) => message.role === "user");
      const text =
        lastUser?.content.map((part) => (part.type === "text" ? part.text : "")).join("") ?? "";
      const inputChars =
        (request.system?.length ?? 0) +
        request.messages.reduce(
          (sum, message) =>
            sum +
            message.content.reduce(
              (n, part) =>
                n + ("text" in part && typeof part.text === "string" ? part.text.length : 0),
              0,
            ),
          0,
        );
      const steps: ScriptedStep[] = [
        { type: "response-start", model: request.model },
        ...(text === "" ? [] : [{ type: "text-delta" as const, text }]),
        {
          type: "usage",
          usage: {
            inputTokens: Math.ceil(inputChars / 4),
            outputTokens: Math.ceil(text.length / 4),
          },
        },
        { type: "finish", reason: "stop" },
      ];
      return play(steps, {}, undefined, callOptions);
    },
  };
}

function snapshot(request: ModelRequest): ModelRequest {
  try {
    return structuredClone(request);
  } catch {
    return { ...request };
  }
}

function toSteps(
  response: ScriptedResponse,
  model: string,
  nextToolCallId: () => string,
): ScriptedStep[] {
  if (response.events !== undefined) return [...response.events];
  const chunks =
    response.text === undefined
      ? []
      : typeof response.text === "string"
        ? [response.text]
        : [...response.text];
  const toolCalls = response.toolCalls ?? [];
  const hasContent = chunks.length > 0 || toolCalls.length > 0;
  if (response.error !== undefined && !hasContent)
    return [{ type: "error", error: response.error }];
  const steps: ScriptedStep[] = [{ type: "response-start", model }];
  for (const text of chunks) steps.push({ type: "text-delta", text });
  for (const call of toolCalls) {
    const toolCallId = call.toolCallId ?? nextToolCallId();
    steps.push(
      { type: "tool-call-start", toolCallId, toolName: call.toolName },
      { type: "tool-call-delta", toolCallId, inputTextDelta: JSON.stringify(call.input) },
      { type: "tool-call", toolCallId, toolName: call.toolName, input: call.input },
    );
  }
  if (response.error !== undefined) {
    steps.push({ type: "error", error: response.error });
    return steps;
  }
  if (response.usage !== undefined) steps.push({ type: "usage", usage: { ...response.usage } });
  steps.push({
    type: "finish",
    reason: response.finishReason ?? (toolCalls.length > 0 ? "tool-calls" : "stop"),
  });
  return steps;
}

async function* play(
  steps: readonly ScriptedStep[],
  response: ScriptedResponse | undefined,
  scriptError: unknown,
  options: ModelCallOptions,
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  const signal = options.signal;
  const check = () => {
    if (signal?.aborted) {
      throw new AbortedError("scripted model call was aborted", { cause: signal.reason });
    }
  };
  check();
  if (scriptError !== undefined) throw scriptError;
  if (response?.delayMs !== undefined && response.delayMs > 0) await wait(response.delayMs, signal);
  let first = true;
  for (const step of steps) {
    check();
    if (!first && response?.chunkDelayMs !== undefined && response.chunkDelayMs > 0) {
      await wait(response.chunkDelayMs, signal);
    }
    first = false;
    if (step.type === "delay") {
      await wait(step.ms, signal);
      continue;
    }
    if (step.type === "wait") {
      await gate(step.until, signal);
      continue;
    }
    if (step.type === "error") throw step.error;
    yield step;
  }
}

/** Waits until `until` settles, or rejects with `AbortedError` when `signal` aborts first. */
function gate(until: PromiseLike<unknown>, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = () =>
      reject(new AbortedError("scripted model call was aborted", { cause: signal?.reason }));
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    const done = () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    };
    Promise.resolve(until).then(done, done);
  });
}

/**
 * Waits `ms`, or rejects with `AbortedError` when `signal` aborts first; `Infinity` waits for
 * the abort only.
 */
function wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const abortedError = () =>
      new AbortedError("scripted model call was aborted", { cause: signal?.reason });
    if (signal?.aborted) {
      reject(abortedError());
      return;
    }
    const timer = Number.isFinite(ms)
      ? startTimer(() => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        }, ms)
      : undefined;
    const onAbort = () => {
      timer?.cancel();
      reject(abortedError());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
