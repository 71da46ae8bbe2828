import { AbortedError, describe, InvalidArgumentError, TimeoutError } from "../errors.js";
import type {
  ImagePart,
  JsonValue,
  ModelToolDefinition,
  ToolCallPart,
} from "../providers/types.js";
import {
  abortReasonOf,
  CANCELLATION,
  cancellationOf,
  isAbortedHolder,
  withLazySignal,
} from "../runtime/lazy-abort.js";
import type { TaskSupervisor } from "../runtime/task-supervisor.js";
import { describeArg } from "../runtime/validate.js";
import { normalizeSessionKey } from "../sessions/session-key.js";
import type { AgentTool } from "../sessions/tools.js";
import type { AgentDefinition, ToolContext, ToolRunner } from "../sessions/types.js";
import {
  currentTelemetryIdentity,
  emitTelemetry,
  type TraceStart,
  traceTelemetry,
} from "../telemetry.js";
import { wellFormedJson } from "../unicode.js";
import { ApprovalDeniedError, type ApprovalGate } from "./approval.js";
import { isTransientError, type ToolDefinition } from "./define-tool.js";
import { capToolOutput, checkMaxOutputBytes, DEFAULT_TOOL_MAX_OUTPUT_BYTES } from "./output-cap.js";
import { checkToolImages, isToolResultWithImages, withNotes } from "./tool-result.js";

/** A tool the registry accepts: one made with `defineTool`, or a plain `AgentTool`. */
export type RegisteredTool = ToolDefinition | AgentTool;

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * Which tools exist, and which a given session may see. Tools registered globally are
 * offered to a session only if its agent's allowlist names them (`["*"]` for all); tools
 * registered for one session (e.g. by a channel) exist only in that session and never leak
 * into another.
 *
 * @example
 * ```ts
 * const tools = new ToolRegistry([weather, webFetch]);
 * tools.registerForSession("agent:ops:main", deployTool);
 * tools.forSession({ id: "ops", model: "x/y", tools: ["weather"] }, "agent:ops:main");
 * // -> weather and deploy
 * ```
 */
export class ToolRegistry {
  readonly #global = new Map<string, RegisteredTool>();
  readonly #sessions = new Map<string, Map<string, RegisteredTool>>();

  constructor(tools: RegisteredTool[] = []) {
    for (const tool of tools) this.register(tool);
  }

  /** Adds a global tool. @throws InvalidArgumentError on a bad or duplicate name. */
  register(tool: RegisteredTool): void {
    check(tool);
    if (this.#global.has(tool.name))
      throw new InvalidArgumentError(`tool "${tool.name}" is already registered`);
    this.#global.set(tool.name, tool);
  }

  /** Removes a global tool. */
  unregister(name: string): boolean {
    return this.#global.delete(name);
  }

  /**
   * Adds a tool that only `sessionKey` can see. The key is normalized as the runtime's keys
   * are (`Agent:Ops:Main` is `agent:ops:main`). The runtime drops a session's tools when the
   * session is deleted (`session.delete()`); a session made again under that key starts
   * without them.
   *
   * @throws InvalidSessionKeyError for a key that is not a session key.
   * @throws InvalidArgumentError for a bad tool, or a name the session already has.
   */
  registerForSession(sessionKey: string, tool: RegisteredTool): void {
    check(tool);
    sessionKey = normalizeSessionKey(sessionKey);
    let tools = this.#sessions.get(sessionKey);
    if (tools === undefined) {
      tools = new Map();
      this.#sessions.set(sessionKey, tools);
    }
    if (tools.has(tool.name)) {
      throw new InvalidArgumentError(`session ${sessionKey} already has a tool "${tool.name}"`);
    }
    tools.set(tool.name, tool);
  }

  /**
   * Drops every tool registered for `sessionKey` (normalized as in {@link registerForSession}).
   *
   * @throws InvalidSessionKeyError for a key that is not a session key.
   */
  clearSession(sessionKey: string): void {
    this.#sessions.delete(normalizeSessionKey(sessionKey));
  }

  /** Names of the global tools. */
  names(): string[] {
    return [...this.#global.keys()];
  }

  /** The tool `name` if `sessionKey` (of `agent`) may call it: `forSession(...).get(name)`. */
  lookup(agent: AgentDefinition, sessionKey: string, name: string): RegisteredTool | undefined {
    const own = this.#sessions.get(sessionKey)?.get(name);
    if (own !== undefined) return own;
    const tool = this.#global.get(name);
    if (tool === undefined) return undefined;
    const allow = agent.tools ?? [];
    return allow.includes("*") || allow.includes(name) ? tool : undefined;
  }

  /** The tools `sessionKey` (of `agent`) may call: allowed global tools and its own. */
  forSession(agent: AgentDefinition, sessionKey: string): Map<string, RegisteredTool> {
    const allow = agent.tools ?? [];
    const all = allow.includes("*");
    const out = new Map<string, RegisteredTool>();
    for (const [name, tool] of this.#global) if (all || allow.includes(name)) out.set(name, tool);
    for (const [name, tool] of this.#sessions.get(sessionKey) ?? []) out.set(name, tool);
    return out;
  }
}

function check(tool: RegisteredTool): void {
  if (typeof tool?.name !== "string" || !TOOL_NAME.test(tool.name)) {
    throw new InvalidArgumentError(
      `tool name must match ${TOOL_NAME.source}, got "${String(tool?.name)}"`,
    );
  }
  if (typeof tool.execute !== "function")
    throw new InvalidArgumentError(`tool "${tool.name}" needs execute()`);
}

/** Options of {@link SupervisedToolRunner}. */
export interface SupervisedToolRunnerOptions {
  registry: ToolRegistry;
  /** Runs each call isolated with timeout and abort. */
  tasks?: () => TaskSupervisor | undefined;
  /**
   * Asks before calls that need approval. Without a gate nothing is asked, and a tool whose
   * `approval` is `always` is refused (an error result; it never runs unasked).
   */
  approvals?: ApprovalGate;
  /** Default 120 000 ms. */
  defaultTimeoutMs?: number;
  /** Retries of transient failures. Default 3. */
  maxRetries?: number;
  /** First retry delay; doubles each time, with jitter. Default 200 ms. */
  retryBaseDelayMs?: number;
  /**
   * Cap on a result's size in bytes of UTF-8 (as serialized into the transcript); a longer
   * result is cut with a marker saying how much was dropped (see `capToolOutput`). Default
   * 65 536; `Infinity` for no cap. (A result nested more than 256 levels deep, which no store
   * could keep in a transcript, is handed on as its JSON text.)
   */
  maxOutputBytes?: number;
  /** Resolves the agent of a session (for the allowlist). */
  resolveAgent: (agentId: string) => AgentDefinition;
}

/**
 * The tool layer the agent loop uses by default: per-session visibility from a
 * {@link ToolRegistry}, argument validation (a bad argument is answered to the model as an
 * error result), approval through an `ApprovalGate`, isolation under the `TaskSupervisor`
 * (timeout, abort with the run, crash containment) and up to 3 retries of transient failures
 * with exponential backoff. A tool's failure never throws into the loop; only an abort does.
 */
export class SupervisedToolRunner implements ToolRunner {
  #options: SupervisedToolRunnerOptions;

  /** Changes the default per-call timeout (config hot reload); calls in flight keep theirs. */
  setDefaultTimeoutMs(timeoutMs: number): void {
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      throw new InvalidArgumentError(
        `tool timeout must be a positive number of ms, got ${describeArg(timeoutMs)}`,
      );
    }
    this.#options = { ...this.#options, defaultTimeoutMs: timeoutMs };
  }

  constructor(options: SupervisedToolRunnerOptions) {
    if (options.maxOutputBytes !== undefined) checkMaxOutputBytes(options.maxOutputBytes);
    this.#options = options;
    if (options.defaultTimeoutMs !== undefined) this.setDefaultTimeoutMs(options.defaultTimeoutMs);
  }

  /** Changes the cap on result size (config hot reload); calls in flight use the new one. */
  setMaxOutputBytes(maxOutputBytes: number): void {
    this.#options = { ...this.#options, maxOutputBytes: checkMaxOutputBytes(maxOutputBytes) };
  }

  #cap(output: JsonValue): JsonValue {
    return capToolOutput(output, this.#options.maxOutputBytes ?? DEFAULT_TOOL_MAX_OUTPUT_BYTES);
  }

  /**
   * An error result: well-formed (a message cut mid-emoji would make every later model call of
   * the session fail) and capped like any result.
   */
  #failure(message: string): { output: JsonValue; isError: true } {
    return { output: this.#cap(message.toWellFormed()), isError: true };
  }

  definitions(agent: AgentDefinition, sessionKey: string): ModelToolDefinition[] {
    return [...this.#options.registry.forSession(agent, sessionKey).values()].map((tool) => ({
      name: tool.name,
      description: tool.description,
      inputSchema: tool.inputSchema,
    }));
  }

  async execute(
    call: ToolCallPart,
    context: ToolContext,
  ): Promise<{ output: JsonValue; isError: boolean; images?: ImagePart[] }> {
    const record: ToolCallRecord = { attempts: 0, denied: false };
    return traceToolCall(call, context, record, () => this.#execute(call, context, record));
  }

  async #execute(
    call: ToolCallPart,
    context: ToolContext,
    record: ToolCallRecord,
  ): Promise<{ output: JsonValue; isError: boolean; images?: ImagePart[] }> {
    const agent = this.#options.resolveAgent(context.agentId);
    const tool = this.#options.registry.lookup(agent, context.sessionKey, call.toolName);
    if (tool === undefined) return this.#failure(`tool "${call.toolName}" is not available`);
    let args: unknown = call.input;
    if ("parse" in tool && typeof tool.parse === "function") {
      const parsed = tool.parse(call.input);
      // The message can name what the model sent (an unknown key): capped, well-formed.
      if (!parsed.ok) return this.#failure(parsed.message);
      args = parsed.args;
    }
    const gate = this.#options.approvals;
    const policy = "approval" in tool ? (tool.approval ?? "inherit") : "inherit";
    if (gate === undefined && policy === "always") {
      // Fail closed: a tool that must be approved on every call never runs unasked.
      return this.#failure(
        `tool "${tool.name}" needs approval on every call, and no approval gate is configured; nothing ran`,
      );
    }
    if (gate !== undefined && policy !== "never") {
      const bound = approvalBinding(tool, args);
      // A tool bug: nobody is asked to approve a call nothing can be bound to, and it never runs.
      if (typeof bound === "string")
        return this.#failure(`tool "${tool.name}" cannot be approved: ${bound}`);
      try {
        await gate.check(
          {
            sessionKey: context.sessionKey,
            runId: context.runId,
            toolCallId: call.toolCallId,
            toolName: tool.name,
            input: call.input,
            key: bound.key,
            display: bound.display,
            force: policy === "always",
          },
          context.emit,
          context.signal,
        );
      } catch (error) {
        if (isAbortedHolder(context)) throw abortReasonOf(context) ?? error;
        if (ApprovalDeniedError.isInstance(error)) {
          record.denied = true;
          return { output: error.message, isError: true };
        }
        throw error;
      }
    }
    const maxRetries =
      ("maxRetries" in tool ? tool.maxRetries : undefined) ?? this.#options.maxRetries ?? 3;
    const timeoutMs = tool.timeoutMs ?? this.#options.defaultTimeoutMs ?? 120_000;
    const base = this.#options.retryBaseDelayMs ?? 200;
    for (let attempt = 0; ; attempt++) {
      record.attempts = attempt + 1;
      try {
        const returned = await this.#run(tool, args, context, timeoutMs);
        const withImages = isToolResultWithImages(returned);
        const output = toJson(withImages ? returned.output : returned);
        if (output instanceof NotJsonError) {
          // A tool bug, not a transient failure: the model reads why instead of a
          // meaningless "[object Object]".
          return this.#failure(
            `tool "${tool.name}" returned a result that is not JSON: ${output.message}`,
          );
        }
        if (!withImages) return { output: this.#cap(output), isError: false };
        // Images go beside the text, outside its cap (base64 cut short is no image); one
        // that cannot go to the model is left out, and the text says which and why.
        const checked = checkToolImages(returned.images);
        const result = {
          output: this.#cap(withNotes(output, checked.notes)),
          isError: false,
        };
        return checked.images.length === 0 ? result : { ...result, images: checked.images };
      } catch (error) {
        if (isAbortedHolder(context)) {
          throw abortReasonOf(context) ?? new AbortedError("run aborted");
        }
        if (attempt < maxRetries && transient(error)) {
          const delay = Math.min(30_000, base * 2 ** attempt) * (0.5 + Math.random() / 2);
          await sleep(delay, context.signal);
          continue;
        }
        const tries = attempt > 0 ? ` after ${attempt + 1} attempts` : "";
        return this.#failure(`tool "${tool.name}" failed${tries}: ${describeThrown(error)}`);
      }
    }
  }

  async #run(
    tool: RegisteredTool,
    args: unknown,
    context: ToolContext,
    timeoutMs: number,
  ): Promise<unknown> {
    if (isAbortedHolder(context)) throw abortReasonOf(context) ?? new AbortedError("run aborted");
    const tasks = this.#options.tasks?.();
    const execute = (signal: AbortSignal) =>
      (tool.execute as (a: unknown, c: ToolContext) => unknown)(
        args,
        withLazySignal(context, { signal }),
      );
    if (tasks !== undefined && tasks.status === "running") {
      // The task's signal is made only if the tool reads it (see TaskSupervisor.run).
      // The run's cancellation, when the context has one, is watched without its signal.
      const cancellation = cancellationOf(context);
      return tasks.run(
        (task) => runWithLazySignal(tool, args, context, task),
        cancellation === undefined
          ? { timeoutMs, signal: context.signal, name: `tool ${tool.name}` }
          : { timeoutMs, name: `tool ${tool.name}`, [CANCELLATION]: cancellation },
      );
    }
    if (context.signal.aborted) throw context.signal.reason ?? new AbortedError("run aborted");
    // The same typed error, naming the tool and its limit, as under the task supervisor.
    const timeout = new AbortController();
    const timer =
      timeoutMs === Number.POSITIVE_INFINITY
        ? undefined
        : setTimeout(
            () =>
              timeout.abort(
                new TimeoutError(`tool ${tool.name} timed out after ${timeoutMs} ms`, timeoutMs),
              ),
            Math.min(timeoutMs, 2 ** 31 - 1),
          );
    const signal = AbortSignal.any([context.signal, timeout.signal]);
    // The tool may ignore its signal: the call still ends at the timeout or abort.
    return await new Promise<unknown>((resolve, reject) => {
      // Whichever comes first ends the wait; a tool that never settles holds no timer.
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(signal.reason ?? new AbortedError(`tool ${tool.name} aborted`));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      Promise.resolve()
        .then(() => execute(signal))
        .then(resolve, reject)
        .finally(done);
    });
  }
}

/** Runs `tool` with a context whose `signal` is the task's, read only when the tool reads it. */
function runWithLazySignal(
  tool: RegisteredTool,
  args: unknown,
  context: ToolContext,
  task: { readonly signal: AbortSignal },
): unknown {
  return (tool.execute as (a: unknown, c: ToolContext) => unknown)(
    args,
    withLazySignal(context, task),
  );
}

/**
 * What an approval of this call binds to: the tool's `approvalKey`, else its name; a string
 * saying why when `approvalKey` throws or returns no `{ key, display }` strings.
 */
function approvalBinding(
  tool: RegisteredTool,
  args: unknown,
): { key: string; display: string } | string {
  if (!("approvalKey" in tool) || typeof tool.approvalKey !== "function") {
    return { key: `tool:${tool.name}`, display: tool.name };
  }
  let bound: unknown;
  try {
    bound = tool.approvalKey(args as never);
  } catch (error) {
    return `its approvalKey threw: ${describeThrown(error)}`;
  }
  const { key, display } = (bound ?? {}) as { key?: unknown; display?: unknown };
  if (typeof key !== "string" || typeof display !== "string") {
    return `its approvalKey returned ${describeArg(bound)}, not { key, display } strings`;
  }
  return { key, display };
}

/** `isTransientError`, false for a value whose properties throw when read (a hostile Proxy). */
function transient(error: unknown): boolean {
  try {
    return isTransientError(error);
  } catch {
    return false;
  }
}

/**
 * What a tool threw, as text for the model: `describe`, or, for a value that has neither a
 * JSON nor a string form (a null-prototype object with a cycle, an `Error` whose `message`
 * getter throws), its tag. Never throws.
 */
function describeThrown(error: unknown): string {
  try {
    return describe(error);
  } catch {
    try {
      return Object.prototype.toString.call(error);
    } catch {
      return "a value that cannot be described";
    }
  }
}

/** What a tool call's trace and event report of it besides its result (see {@link traceToolCall}). */
export interface ToolCallRecord {
  /** Tries made (retries of transient failures included); 0 for a call refused before one. */
  attempts: number;
  /** True when the call was denied approval. */
  denied: boolean;
  /** The call's trace context, set when someone traces tool runs (it may be added to). */
  trace?: TraceStart<"beamclaw:tool.run">;
}

/**
 * Runs tool call `call` (`body`) traced and counted as every tool call is: a
 * `beamclaw:tool.run` trace from the call to its result (its outcome, tries and error from
 * `record` and the result), and a `beamclaw:tool.run` event when it ends. The tool runner
 * and the runtime's `spawn_subagent` share it.
 *
 * @internal
 */
export async function traceToolCall<R extends { output: JsonValue; isError: boolean }>(
  call: ToolCallPart,
  context: ToolContext,
  record: ToolCallRecord,
  body: () => Promise<R>,
): Promise<R> {
  const started = performance.now();
  let outcome: "success" | "error" | "aborted" | "denied" = "aborted";
  try {
    const result = await traceTelemetry(
      "beamclaw:tool.run",
      () => {
        record.trace = {
          tool: call.toolName,
          toolCallId: call.toolCallId,
          runId: context.runId,
          agent: context.agentId,
          session: context.sessionKey,
        };
        return record.trace;
      },
      body,
      (done, trace) => {
        trace.outcome = record.denied ? "denied" : done.isError ? "error" : "success";
        trace.attempts = record.attempts;
        if (trace.outcome !== "success") trace.error = done.output;
      },
    );
    outcome = record.denied ? "denied" : result.isError ? "error" : "success";
    return result;
  } finally {
    emitTelemetry("beamclaw:tool.run", () => ({
      tool: call.toolName,
      session: context.sessionKey,
      agent: context.agentId,
      runId: context.runId,
      durationMs: performance.now() - started,
      outcome,
      attempts: record.attempts,
      tenant: currentTelemetryIdentity()?.tenant,
    }));
  }
}

/**
 * How deep a tool result may nest (arrays and objects) and stay a value; a deeper one becomes
 * its JSON text. Stores keep at most `MAX_STORED_JSON_DEPTH` (512) levels, and a transcript
 * entry wraps the result in a few of its own: saved as it is, a deeper result could never be
 * saved, and the turn would fail (its save retried) over what the model can read as text.
 */
const MAX_TOOL_OUTPUT_DEPTH = 256;

/** Why a tool's result has no JSON form (a cycle, a BigInt, a `toJSON` that throws). */
class NotJsonError extends Error {}

/**
 * The JSON form of a tool's result, or a {@link NotJsonError} when JSON cannot carry it (a
 * cycle, a BigInt, a `toJSON` that throws). A lone surrogate in a string or a key becomes
 * U+FFFD.
 */
function toJson(value: unknown): JsonValue | NotJsonError {
  if (value === undefined) return null;
  // Plain data (the usual tool result) is copied directly; anything JSON would change (a
  // Date, a class, undefined, NaN, a cycle, ...) or nested deeper than the copy goes takes
  // the JSON round trip, which defines the result.
  const copy = plainJsonCopy(value, 0);
  if (copy !== NOT_PLAIN) return copy;
  let text: string | undefined;
  try {
    text = wellFormedJson(value);
  } catch (error) {
    return new NotJsonError(error instanceof Error ? error.message : String(error));
  }
  // A function or a symbol has no JSON text: like `undefined`, it is no result.
  if (text === undefined) return null;
  const json = JSON.parse(text) as JsonValue;
  return nestedDeeper(json, MAX_TOOL_OUTPUT_DEPTH) ? text : json;
}

/** Whether `value` holds arrays/objects more than `levels` deep. */
function nestedDeeper(value: JsonValue, levels: number): boolean {
  if (typeof value !== "object" || value === null) return false;
  if (levels === 0) return true;
  const items = Array.isArray(value) ? value : Object.values(value);
  for (const item of items) if (item !== undefined && nestedDeeper(item, levels - 1)) return true;
  return false;
}

const NOT_PLAIN: unique symbol = Symbol("not plain JSON");

/** A copy of `value` if JSON would carry it unchanged, else {@link NOT_PLAIN}. */
function plainJsonCopy(value: unknown, depth: number): JsonValue | typeof NOT_PLAIN {
  switch (typeof value) {
    case "string":
      // A lone surrogate (an output cut mid-emoji) would make every later model call of the
      // session fail: each model API refuses a request holding one.
      return value.toWellFormed();
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) ? (value === 0 ? 0 : value) : NOT_PLAIN;
    case "object": {
      if (value === null) return null;
      if (depth >= 64) return NOT_PLAIN;
      if (Array.isArray(value)) {
        const out: JsonValue[] = [];
        for (let i = 0; i < value.length; i++) {
          const item = plainJsonCopy(value[i], depth + 1);
          if (item === NOT_PLAIN || !(i in value)) return NOT_PLAIN;
          out.push(item);
        }
        return out;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return NOT_PLAIN;
      if (typeof (value as { toJSON?: unknown }).toJSON === "function") return NOT_PLAIN;
      const out: Record<string, JsonValue> = {};
      for (const key of Object.keys(value)) {
        if (key === "__proto__" || !key.isWellFormed()) return NOT_PLAIN;
        const item = plainJsonCopy((value as Record<string, unknown>)[key], depth + 1);
        if (item === NOT_PLAIN) return NOT_PLAIN;
        out[key] = item;
      }
      return out;
    }
    default:
      return NOT_PLAIN;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
