import { createHash } from "node:crypto";
import { AbortedError, isBeamClawError, OutputError } from "../errors.js";
import { readEvents } from "../providers/chain.js";
import { interruptedToolResult } from "../providers/tool-results.js";
import type {
  FilePart,
  FinishReason,
  ImagePart,
  JsonObject,
  JsonValue,
  ModelCallOptions,
  ModelMessage,
  ModelRequest,
  ModelUsage,
  TextPart,
  ThinkingLevel,
  ThinkingPart,
  ToolCallPart,
  ToolResultPart,
} from "../providers/types.js";
import {
  CANCELLATION,
  Cancellation,
  defineLazySignal,
  withLazySignal,
} from "../runtime/lazy-abort.js";
import { keepShape } from "../runtime/shapes.js";
import { emitTelemetry } from "../telemetry.js";
import {
  type ContextWindow,
  estimateFixedTokens,
  fitMessages,
  isContextOverflow,
} from "./context-window.js";
import {
  checkOutput,
  type OutputOption,
  PREPARED_OUTPUT,
  type RunOutput,
  resolveOutput,
  retryMessage,
} from "./output.js";
import {
  type AgentDefinition,
  errorInfo,
  type RunEvent,
  type RunResult,
  type RunStatus,
  type ToolContext,
  type ToolRunner,
  type UserMessageInput,
} from "./types.js";

/**
 * Where the loop gets model output: a `ProviderChain`, or anything that streams
 * `ModelStreamEvent`s for a list of `provider/model` references. Chain events it does not
 * know are ignored, except `attempt-start` (which model is answering) and `attempt-failed`
 * with `discardOutput` (drop the partial output of this step).
 */
export interface ModelSource {
  stream(
    request: Omit<ModelRequest, "model">,
    options: ModelCallOptions & {
      models: string[];
      /** Who is calling: attached to telemetry, used by per-tenant and per-agent limits. */
      telemetry?: { tenant?: string; agent?: string; session?: string };
    },
  ): AsyncIterable<{ type: string; [key: string]: unknown }>;
  /**
   * Prices a call's usage on a `provider/model` ref, in US dollars (a `ProviderChain` does,
   * from its providers' model lists): the runtime's cost accounting when it is given no
   * `cost` of its own.
   */
  cost?(ref: string, usage: ModelUsage): number;
}

/**
 * The `cacheKey` of a session's model requests: a SHA-256 digest of its key (base64url, 32
 * characters), so that the key, which may name a person or a chat, does not leave the process.
 */
export function promptCacheKey(sessionKey: string): string {
  return createHash("sha256").update(sessionKey).digest("base64url").slice(0, 32);
}

/** Prices a model call; returns US dollars. */
export type CostFunction = (ref: string, usage: ModelUsage) => number;

/** Everything one run needs. */
export interface AgentLoopInput {
  runId: string;
  sessionKey: string;
  agent: AgentDefinition;
  /** Models to try, in order (`provider/model`). */
  models: string[];
  thinking?: ThinkingLevel;
  /** The conversation so far, not including `inputs`. */
  history: readonly ModelMessage[];
  /** The user messages of this run. */
  inputs: UserMessageInput[];
  source: ModelSource;
  tools: ToolRunner;
  signal: AbortSignal;
  /**
   * The cancellation that makes `signal` (lazily): when given, the loop, the chain and the
   * tool layer watch it instead of `signal`, which is then made only if a provider or a tool
   * reads it. @internal
   */
  [CANCELLATION]?: Cancellation;
  emit: (event: RunEvent) => void;
  /**
   * Persists a message the run adds (user, assistant, tool) before the run goes on.
   * `{ retry: true }` marks the user message the loop itself wrote to ask again for a
   * structured answer (not a user's input); `usage` comes with an assistant message: what
   * the model call that produced it used (a session saves it in the transcript entry).
   */
  persist: (message: ModelMessage, options?: PersistOptions) => Promise<void>;
  /** Messages steered into the run since the last call; drained at each step. */
  takeSteered: () => UserMessageInput[];
  cost?: CostFunction;
  /**
   * What the session learned about its model's context window (a budget below a request
   * the provider refused as too long); the loop updates it. Without one, a refusal is
   * recovered from within the run only.
   */
  contextWindow?: ContextWindow;
  /** The requests' `cacheKey`. Default {@link promptCacheKey} of `sessionKey`. */
  cacheKey?: string;
  /**
   * The answer must be JSON conforming to this (see `SendOptions.output`): sent as each
   * request's `responseFormat`, the final answer validated and, when it does not conform,
   * the model asked again. An invalid one fails the run (`INVALID_ARGUMENT`).
   */
  output?: OutputOption;
  /** `output`, already checked and prepared (a session's run). @internal */
  [PREPARED_OUTPUT]?: RunOutput;
}

/** The figures of one model call: who answered, its tokens and its cost. */
export interface CallFigures {
  provider: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  /** 0 when the provider reported none. */
  cacheReadTokens: number;
  cacheWriteTokens: number;
  costUsd: number;
}

/**
 * What one model call of a run used: the call's usage, its cost and how long it took, with
 * the provider and model that answered. A session saves it as the `usage` of the transcript
 * entry of the assistant message the call produced, so that usage can be summed per session
 * over any span of time (see `summarizeTranscriptUsage`).
 */
export interface CallUsage extends CallFigures, JsonObject {
  /** From the request to the end of the model's answer, in milliseconds. */
  durationMs: number;
}

/** Options of {@link AgentLoopInput.persist}. */
export interface PersistOptions {
  /** The user message the loop wrote itself, to ask again for a structured answer. */
  retry?: true;
  /** An assistant message's model call. */
  usage?: CallUsage;
}

const RETRY: PersistOptions = Object.freeze({ retry: true });

/** Turns a user input into the normalized message. */
export function userMessage(input: UserMessageInput): ModelMessage {
  const content: Array<TextPart | ImagePart | FilePart> = [];
  if (input.text.length > 0) content.push({ type: "text", text: input.text });
  // Most messages have neither: no empty arrays made for them.
  if (input.images !== undefined) {
    for (const image of input.images) content.push({ type: "image", ...image });
  }
  if (input.files !== undefined) {
    for (const file of input.files) content.push({ type: "file", ...file });
  }
  return { role: "user", content };
}

function addUsage(total: ModelUsage, usage: ModelUsage): void {
  total.inputTokens += usage.inputTokens;
  total.outputTokens += usage.outputTokens;
  if (usage.cacheReadTokens !== undefined) {
    total.cacheReadTokens = (total.cacheReadTokens ?? 0) + usage.cacheReadTokens;
  }
  if (usage.cacheWriteTokens !== undefined) {
    total.cacheWriteTokens = (total.cacheWriteTokens ?? 0) + usage.cacheWriteTokens;
  }
  if (usage.cacheWrite1hTokens !== undefined) {
    total.cacheWrite1hTokens = (total.cacheWrite1hTokens ?? 0) + usage.cacheWrite1hTokens;
  }
  if (usage.reasoningTokens !== undefined) {
    total.reasoningTokens = (total.reasoningTokens ?? 0) + usage.reasoningTokens;
  }
}

function systemPrompt(agent: AgentDefinition): string | undefined {
  const parts = [agent.systemPrompt, ...(agent.skills ?? [])].filter(
    (p): p is string => typeof p === "string" && p.length > 0,
  );
  return parts.length > 0 ? parts.join("\n\n") : undefined;
}

/**
 * Runs one turn of the agent loop: stream from the model, run the tool calls it makes (in
 * parallel: calls made in one step are independent), feed the results back, and repeat until
 * the model answers without tools or `maxSteps` is reached. Every message the run adds is
 * persisted before the loop continues, so a crash never loses an acknowledged step.
 *
 * Never throws: failures end the run with status `failed` (and an `error` event), an abort
 * with status `aborted`.
 *
 * @example
 * ```ts
 * const history: ModelMessage[] = [];
 * const result = await runAgentLoop({
 *   runId: "run-1",
 *   sessionKey: "agent:main:main",
 *   agent: { id: "main", model: "anthropic/claude-sonnet-4-5" },
 *   models: ["anthropic/claude-sonnet-4-5"],
 *   history,
 *   inputs: [{ text: "hello" }],
 *   source: createProviderChain({ providers: [createAnthropicProvider()] }),
 *   tools: new BasicToolRunner(),
 *   signal: new AbortController().signal,
 *   emit: (event) => console.log(event.type),
 *   persist: async (message) => {
 *     history.push(message);
 *   },
 *   takeSteered: () => [],
 * });
 * console.log(result.status, result.text);
 * ```
 */
export async function runAgentLoop(input: AgentLoopInput): Promise<RunResult> {
  const { runId, sessionKey, agent, emit } = input;
  // Read through the cancellation when there is one: reading `input.signal` would make it.
  const cancellation = input[CANCELLATION];
  const signal: Pick<AbortSignal, "aborted" | "reason"> = cancellation ?? input.signal;
  // What the model is sent at each step is the history as it was when the run started (the
  // caller's array may change meanwhile: a session saves into it) plus what the run added.
  // One exact-size array per request, each never changed after it is made: the first is the
  // history joined with the run's inputs, made before they are saved (a session pushes them
  // into its history as it saves them); each later one is the previous request joined with
  // what the run added since. No separate copy of the history is kept.
  const added: ModelMessage[] = [];
  let sent: ModelMessage[] = [];
  let sentAdded = 0;
  const nextRequest = (): ModelMessage[] => {
    if (sentAdded < added.length) {
      sent = sent.concat(sentAdded === 0 ? added : added.slice(sentAdded));
      sentAdded = added.length;
    }
    return sent;
  };
  // Every model call's usage and cost, a failed attempt's included.
  const spent: RunSpend = { usage: { inputTokens: 0, outputTokens: 0 }, costUsd: 0 };
  let steps = 0;
  let finalText = "";
  /** Why the last model call ended. */
  let lastFinish: FinishReason | undefined;
  let output: JsonValue | undefined;
  let outputSpec: RunOutput | undefined;
  let outputRetries = 0;
  let status: RunStatus = "completed";
  let failure: { code: string; message: string } | undefined;
  const maxSteps = agent.maxSteps ?? 16;
  // Events are written as full literals, never `{ ...base, type }`: on Node 20 (V8 11) an
  // object spread followed by new properties costs about 1-2 µs, and a run emits many events.
  const base = { runId, sessionKey };

  /** How many of `added` are saved (a save that failed leaves the rest unsaved). */
  let saved = 0;
  const append = async (message: ModelMessage, options?: PersistOptions) => {
    added.push(message);
    await input.persist(message, options);
    saved = added.length;
  };
  /** The loop's own request for a conforming answer: saved marked as such. */
  const appendRetry = (message: ModelMessage) => append(message, RETRY);
  /** The results of the step's tool calls that have returned, while they run. */
  let answered: ToolResultPart[] | undefined;

  try {
    outputSpec =
      input[PREPARED_OUTPUT] ??
      (input.output === undefined ? undefined : resolveOutput(input.output, "output"));
    outputRetries = outputSpec?.retries ?? 0;
    const inputs = input.inputs.map(userMessage);
    // Joined before the first save (see `nextRequest`).
    sent = input.history.concat(inputs);
    // Where this run's own messages start in every request (they are never left out).
    const keepFrom = input.history.length;
    for (const message of inputs) await append(message);
    sentAdded = added.length;
    const toolDefinitions = input.tools.definitions(agent, sessionKey);
    const allowed = new Set(toolDefinitions.map((t) => t.name));
    while (true) {
      if (signal.aborted) throw signal.reason ?? new AbortedError("run aborted");
      for (const steered of input.takeSteered()) {
        emit({ runId, sessionKey, type: "steer", input: steered });
        await append(userMessage(steered));
      }
      if (steps >= maxSteps) {
        status = "max-steps";
        break;
      }
      steps++;
      const step = await fittedStep(
        input,
        nextRequest(),
        keepFrom,
        toolDefinitions,
        spent,
        base,
        outputSpec,
      );
      const content: Array<TextPart | ThinkingPart | ToolCallPart> = [
        ...step.thinking,
        ...(step.text.length > 0 ? [{ type: "text" as const, text: step.text }] : []),
        ...step.toolCalls,
      ];
      if (content.length > 0) {
        await append(
          { role: "assistant", content },
          step.usage === undefined ? undefined : { usage: step.usage },
        );
      }
      finalText = step.text;
      lastFinish = step.finishReason;
      if (step.toolCalls.length === 0) {
        // A steered message that arrived during the last step still deserves an answer.
        const late = input.takeSteered();
        if (late.length === 0) {
          if (outputSpec === undefined) break;
          const checked = checkAnswer(outputSpec, step);
          if (checked.ok) {
            output = checked.value;
            break;
          }
          if (outputRetries === 0 || step.finishReason === "refusal") throw checked.error;
          outputRetries--;
          // Whoever shows the answer as it streams drops this one: the next step's replaces it.
          emit({
            runId,
            sessionKey,
            type: "text-reset",
            reason: `the answer did not conform to the ${outputSpec.format.name} schema: ${checked.error.problems}`,
          });
          // Asked again, with what was wrong: a user turn of the conversation like any other.
          await appendRetry(userMessage({ text: retryMessage(checked.error.problems) }));
          continue;
        }
        for (const steered of late) {
          emit({ runId, sessionKey, type: "steer", input: steered });
          await append(userMessage(steered));
        }
        continue;
      }
      // An abort that landed while the step streamed must stop its tool calls from running.
      if (signal.aborted) throw signal.reason ?? new AbortedError("run aborted");
      answered = [];
      const results = await Promise.all(
        step.toolCalls.map(async (call): Promise<ToolResultPart> => {
          // The model may only call what it was offered: the agent's allowlist.
          const { output, isError, images } = allowed.has(call.toolName)
            ? await input.tools.execute(call, toolContext(input, call.toolCallId))
            : {
                output: `tool "${call.toolName}" is not available to this agent`,
                isError: true,
                images: undefined,
              };
          const shown = images !== undefined && images.length > 0 ? images : undefined;
          emit({
            runId,
            sessionKey,
            type: "tool-result",
            toolCallId: call.toolCallId,
            toolName: call.toolName,
            output,
            isError,
            ...(shown === undefined ? {} : { images: shown }),
          });
          const part: ToolResultPart = {
            type: "tool-result",
            toolCallId: call.toolCallId,
            toolName: call.toolName,
            output,
          };
          if (isError) part.isError = true;
          if (shown !== undefined) part.images = shown;
          answered?.push(part);
          return part;
        }),
      );
      answered = undefined;
      await append({ role: "tool", content: results });
    }
  } catch (error) {
    // Only for calls that were saved: results of unsaved calls would answer nothing.
    if (saved === added.length) {
      await answerInterrupted(added.at(-1), answered ?? [], append, emit, base);
    }
    if (signal.aborted || isBeamClawError(error, "ABORTED")) {
      status = "aborted";
      // Cancelled by its time limit: said in an error event and in the result.
      if (signal.aborted && isBeamClawError(signal.reason, "RUN_TIMEOUT")) {
        failure = errorInfo(signal.reason);
        emit({ runId, sessionKey, type: "error", error: failure });
      }
    } else {
      status = "failed";
      failure = errorInfo(error);
      emit({ runId, sessionKey, type: "error", error: failure });
    }
  }
  const result: RunResult = {
    runId,
    sessionKey,
    status,
    text: finalText,
    messages: added,
    steps,
    usage: spent.usage,
    costUsd: spent.costUsd,
  };
  if (failure !== undefined) result.error = failure;
  if (output !== undefined && status === "completed") result.output = output;
  if (lastFinish !== undefined) result.finishReason = lastFinish;
  return result;
}

/**
 * When a run ends while its tools run (aborted, timed out, failed), its last message holds
 * tool calls with no results, and every model API refuses a conversation with an unanswered
 * call: every later turn of the session would fail. The calls get their results, those that
 * returned as they did and the others as errors ({@link interruptedToolResult}), saved and
 * told as `tool-result` events. Best effort: a run that no longer owns its session (reset), or
 * a store refusing the write, leaves it to the history's repair when the session is read back.
 */
async function answerInterrupted(
  last: ModelMessage | undefined,
  returned: ToolResultPart[],
  append: (message: ModelMessage) => Promise<void>,
  emit: AgentLoopInput["emit"],
  base: { runId: string; sessionKey: string },
): Promise<void> {
  if (last?.role !== "assistant") return;
  const content: ToolResultPart[] = [];
  for (const part of last.content) {
    if (part.type !== "tool-call") continue;
    const returnedResult = returned.find((r) => r.toolCallId === part.toolCallId);
    if (returnedResult !== undefined) {
      content.push(returnedResult);
      continue;
    }
    const result = interruptedToolResult(part);
    content.push(result);
    emit({
      ...base,
      type: "tool-result",
      toolCallId: result.toolCallId,
      toolName: part.toolName,
      output: result.output,
      isError: true,
    });
  }
  if (content.length === 0) return;
  try {
    await append({ role: "tool", content });
  } catch {
    // See above: repaired when the history is read back.
  }
}

/** A final answer checked against the run's output, or the error that ends the run. */
function checkAnswer(
  spec: RunOutput,
  step: StepOutput,
): { ok: true; value: JsonValue } | { ok: false; error: OutputError } {
  if (step.finishReason === "refusal") {
    const said = step.text.trim();
    return {
      ok: false,
      error: new OutputError(
        "OUTPUT_REFUSED",
        `the model refused to give the ${spec.format.name} answer${said.length > 0 ? `: ${said}` : ""}`,
        said,
      ),
    };
  }
  const checked = checkOutput(spec, step.text);
  if (checked.ok) return checked;
  const cut =
    step.finishReason === "length" ? " (the answer was cut at the output token limit)" : "";
  return {
    ok: false,
    error: new OutputError(
      "OUTPUT_INVALID",
      `the answer does not conform to the ${spec.format.name} schema${cut}: ${checked.problems}`,
      checked.problems + cut,
    ),
  };
}

/** Tries of one step whose request the provider refused as too long, before the run fails. */
const OVERFLOW_RETRIES = 3;
/** After a refusal, the next request is cut to this share of the refused one's estimate. */
const OVERFLOW_SHRINK = 0.7;
/** A cut goes down to this share of the budget, leaving room for the turns that follow. */
const LOW_WATER = 0.75;

/**
 * A step whose request fits the context window as far as the loop knows it: cut to the agent's
 * `contextTokens` and to what the session learned from earlier refusals, and, when the
 * provider still refuses it as too long (before any output), cut further and tried again, up
 * to {@link OVERFLOW_RETRIES} times. Only older turns are left out, never this run's messages,
 * and only from the request: the history and the transcript keep them.
 */
async function fittedStep(
  input: AgentLoopInput,
  messages: ModelMessage[],
  keepFrom: number,
  tools: ReturnType<ToolRunner["definitions"]>,
  spent: RunSpend,
  base: { runId: string; sessionKey: string },
  output: RunOutput | undefined,
): Promise<StepOutput> {
  const window = input.contextWindow;
  const ref = input.models[0] ?? input.agent.model;
  if (window !== undefined && window.ref !== ref) {
    window.ref = ref;
    window.learnedMaxTokens = undefined;
    window.horizon = undefined;
  }
  const configured = input.agent.contextTokens;
  const learned = window?.learnedMaxTokens;
  let fixed = -1;
  let request = messages;
  if (configured !== undefined || learned !== undefined) {
    fixed = estimateFixedTokens(systemPrompt(input.agent), tools);
    request = cutToFit(
      input,
      messages,
      Math.min(configured ?? Infinity, learned ?? Infinity),
      fixed,
      keepFrom,
      "budget",
    );
  }
  for (let tries = 1; ; tries++) {
    try {
      return await streamStep(input, request, tools, spent, base, output);
    } catch (error) {
      if (!(error instanceof ContextOverflow) || tries >= OVERFLOW_RETRIES) {
        throw error instanceof ContextOverflow ? error.refusal : error;
      }
      if (fixed < 0) fixed = estimateFixedTokens(systemPrompt(input.agent), tools);
      const refused = fitMessages(request, Infinity, fixed, 0).tokens;
      const maxTokens = Math.floor(refused * OVERFLOW_SHRINK);
      const next = cutToFit(input, messages, maxTokens, fixed, keepFrom, "overflow");
      // Nothing more can be left out: the run's own messages are too long for the model.
      if (next.length >= request.length) throw error.refusal;
      if (window !== undefined) window.learnedMaxTokens = maxTokens;
      request = next;
    }
  }
}

/**
 * `messages` cut to `maxTokens` (see `fitMessages`). With the session's context window: a cut
 * goes down to {@link LOW_WATER} of the budget, and later requests start at the same message
 * while they fit, so that the beginning of the prompt (what a provider's prompt cache keeps)
 * moves only once in a while. Telemetry says when it moves.
 */
function cutToFit(
  input: AgentLoopInput,
  messages: ModelMessage[],
  maxTokens: number,
  fixed: number,
  keepFrom: number,
  reason: "budget" | "overflow",
): ModelMessage[] {
  const window = input.contextWindow;
  const horizon = window?.horizon;
  const from = horizon === undefined ? -1 : messages.indexOf(horizon);
  const fitted = fitMessages(messages, maxTokens, fixed, keepFrom, {
    from: Math.max(from, 0),
    lowWater: Math.floor(maxTokens * LOW_WATER),
  });
  const first = fitted.dropped > 0 ? fitted.messages[0] : undefined;
  if (window !== undefined) window.horizon = first;
  if (first !== undefined && (first !== horizon || reason === "overflow")) {
    emitTelemetry("beamclaw:session.context", () => ({
      session: input.sessionKey,
      agent: input.agent.id,
      runId: input.runId,
      reason,
      maxTokens,
      estimatedTokens: fitted.tokens,
      droppedMessages: fitted.dropped,
      sentMessages: fitted.messages.length,
    }));
  }
  return fitted.messages;
}

/** A step's request was refused as longer than the model's context window, before any output. */
class ContextOverflow extends Error {
  constructor(readonly refusal: unknown) {
    super("context overflow", { cause: refusal });
  }
}

/** What a run has spent so far, on every model call (failed attempts included). */
interface RunSpend {
  usage: ModelUsage;
  costUsd: number;
}

interface StepOutput {
  /** Why the model stopped, when the source said. */
  finishReason: FinishReason | undefined;
  text: string;
  thinking: ThinkingPart[];
  toolCalls: ToolCallPart[];
  /** The call's usage, when the model reported it. */
  usage: CallUsage | undefined;
}

async function streamStep(
  input: AgentLoopInput,
  messages: ModelMessage[],
  tools: ReturnType<ToolRunner["definitions"]>,
  spent: RunSpend,
  base: { runId: string; sessionKey: string },
  output: RunOutput | undefined,
): Promise<StepOutput> {
  const { agent, emit } = input;
  let text = "";
  let thinkingText = "";
  let thinking: ThinkingPart[] = [];
  let toolCalls: ToolCallPart[] = [];
  let stepUsage: ModelUsage | undefined;
  let finishReason: FinishReason | undefined;
  let ref = input.models[0] ?? agent.model;
  const startedAt = performance.now();
  // `messages` is this request's own array: nothing changes it after the call.
  // A conversation's requests share their beginning: one cache key for all of them.
  const request: Omit<ModelRequest, "model"> = {
    messages,
    cacheKey: input.cacheKey ?? promptCacheKey(input.sessionKey),
  };
  const system = systemPrompt(agent);
  if (system !== undefined) request.system = system;
  if (tools.length > 0) request.tools = tools;
  const thinkingLevel = input.thinking ?? agent.thinking;
  if (thinkingLevel !== undefined) request.thinking = thinkingLevel;
  if (agent.maxOutputTokens !== undefined) request.maxOutputTokens = agent.maxOutputTokens;
  if (agent.temperature !== undefined) request.temperature = agent.temperature;
  if (output !== undefined) request.responseFormat = output.format;

  /** Adds a call's usage to the run's, prices it on `callRef` and publishes it; its cost. */
  const meter = (callRef: string, usage: ModelUsage): number => {
    addUsage(spent.usage, usage);
    const costUsd = input.cost?.(callRef, usage) ?? 0;
    spent.costUsd += costUsd;
    const slash = callRef.indexOf("/");
    emit({
      runId: base.runId,
      sessionKey: base.sessionKey,
      type: "usage",
      provider: slash === -1 ? callRef : callRef.slice(0, slash),
      model: slash === -1 ? callRef : callRef.slice(slash + 1),
      usage,
      costUsd,
    });
    return costUsd;
  };
  const onEvent = (event: { type: string; [key: string]: unknown }): void => {
    switch (event.type) {
      case "attempt-start":
        if (typeof event.ref === "string") ref = event.ref;
        break;
      case "attempt-failed":
        // The failed attempt's tokens were spent on its ref: counted and priced there now,
        // never left to be priced as the next attempt's (another ref) or overwritten by it.
        if (stepUsage !== undefined) {
          meter(ref, stepUsage);
          stepUsage = undefined;
        }
        if (event.discardOutput === true) {
          finishReason = undefined;
          text = "";
          thinkingText = "";
          thinking = [];
          toolCalls = [];
          emit({
            runId: base.runId,
            sessionKey: base.sessionKey,
            type: "text-reset",
            reason: String((event.error as Error)?.message ?? "provider failover"),
          });
        }
        break;
      case "text-delta": {
        const delta = String(event.text);
        text += delta;
        emit({ runId: base.runId, sessionKey: base.sessionKey, type: "text-delta", text: delta });
        break;
      }
      case "thinking-delta": {
        const delta = String(event.text);
        thinkingText += delta;
        emit({
          runId: base.runId,
          sessionKey: base.sessionKey,
          type: "thinking-delta",
          text: delta,
        });
        break;
      }
      case "thinking-end": {
        const part: ThinkingPart = { type: "thinking", text: thinkingText };
        if (typeof event.signature === "string") part.signature = event.signature;
        if (typeof event.redacted === "string") part.redacted = event.redacted;
        if (typeof event.format === "string") part.format = event.format;
        thinking.push(part);
        thinkingText = "";
        break;
      }
      case "tool-call": {
        const call: ToolCallPart = {
          type: "tool-call",
          toolCallId: String(event.toolCallId),
          toolName: String(event.toolName),
          input: (event.input ?? {}) as ToolCallPart["input"],
        };
        toolCalls.push(call);
        emit({
          runId: base.runId,
          sessionKey: base.sessionKey,
          type: "tool-call",
          toolCallId: call.toolCallId,
          toolName: call.toolName,
          input: call.input,
        });
        break;
      }
      case "usage":
        stepUsage = event.usage as ModelUsage;
        break;
      case "finish":
        finishReason = event.reason as FinishReason;
        break;
      default:
        break;
    }
  };
  const stream = input.source.stream(request, sourceOptions(input));
  // A ProviderChain's stream hands its events over as they come, without a promise per
  // event; any other source's is read with `for await`.
  try {
    await readEvents(stream, onEvent);
  } catch (error) {
    // A source that failed after it reported usage (one that is not a chain, which says so
    // with `attempt-failed`): those tokens were spent all the same.
    if (stepUsage !== undefined) {
      meter(ref, stepUsage);
      stepUsage = undefined;
    }
    // A refusal of the request's length comes before any output: the step can be tried again
    // with less history (see `fittedStep`).
    if (
      text.length === 0 &&
      thinkingText.length === 0 &&
      thinking.length === 0 &&
      toolCalls.length === 0 &&
      isContextOverflow(error)
    ) {
      throw new ContextOverflow(error);
    }
    throw error;
  }
  if (thinkingText.length > 0) thinking.push({ type: "thinking", text: thinkingText });
  let costUsd = 0;
  let callUsage: CallUsage | undefined;
  if (stepUsage !== undefined) {
    costUsd = meter(ref, stepUsage);
    const slash = ref.indexOf("/");
    const provider = slash === -1 ? ref : ref.slice(0, slash);
    const model = slash === -1 ? ref : ref.slice(slash + 1);
    // The answering call; failed attempts before it are in the run's usage and cost.
    // One literal, every field: one shape for every call.
    callUsage = {
      provider,
      model,
      inputTokens: stepUsage.inputTokens,
      outputTokens: stepUsage.outputTokens,
      cacheReadTokens: stepUsage.cacheReadTokens ?? 0,
      cacheWriteTokens: stepUsage.cacheWriteTokens ?? 0,
      costUsd,
      durationMs: Math.round(performance.now() - startedAt),
    };
  }
  return { finishReason, text, thinking, toolCalls, usage: callUsage };
}

/** What the loop hands its model source: the run's signal (lazily, with its cancellation). */
function sourceOptions(input: AgentLoopInput): Parameters<ModelSource["stream"]>[1] {
  const telemetry = { agent: input.agent.id, session: input.sessionKey };
  const cancellation = input[CANCELLATION];
  if (cancellation === undefined) {
    return { signal: input.signal, models: input.models, telemetry };
  }
  return defineLazySignal(
    { models: input.models, telemetry, [CANCELLATION]: cancellation },
    cancellation,
  );
}

/** A tool call's context: the run's signal (lazily, with its cancellation). */
function toolContext(input: AgentLoopInput, toolCallId: string): ToolContext {
  const cancellation = input[CANCELLATION];
  if (cancellation === undefined) {
    return {
      signal: input.signal,
      sessionKey: input.sessionKey,
      agentId: input.agent.id,
      runId: input.runId,
      toolCallId,
      emit: input.emit,
    };
  }
  return defineLazySignal(
    {
      sessionKey: input.sessionKey,
      agentId: input.agent.id,
      runId: input.runId,
      toolCallId,
      emit: input.emit,
      [CANCELLATION]: cancellation,
    },
    cancellation,
  );
}

// Inert objects that keep the hidden classes of a model call's options, a tool call's context
// and the tool layer's copy of it (`SupervisedToolRunner`) alive between runs (see keepShape).
{
  const cancellation = new Cancellation();
  const input = {
    runId: "run-0",
    sessionKey: "agent:main:main",
    agent: { id: "main", model: "anchor/anchor" },
    models: ["anchor/anchor"],
    emit: () => {},
    [CANCELLATION]: cancellation,
  } as unknown as AgentLoopInput;
  keepShape(sourceOptions, sourceOptions(input));
  const context = keepShape(toolContext, toolContext(input, "call-0"));
  keepShape(toolContext, withLazySignal(context, cancellation));
}
