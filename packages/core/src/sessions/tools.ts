import { AbortedError, describe, InvalidArgumentError, isBeamClawError } from "../errors.js";
import type {
  JsonObject,
  JsonValue,
  ModelToolDefinition,
  ToolCallPart,
} from "../providers/types.js";
import type { TaskSupervisor } from "../runtime/task-supervisor.js";
import type { AgentDefinition, ToolContext, ToolRunner } from "./types.js";

/** A tool as the basic runner knows it: a name, a JSON Schema, and a function. */
export interface AgentTool {
  name: string;
  description: string;
  /** JSON Schema of the input object. */
  inputSchema: JsonObject;
  /** Per-call time limit. Default: the runner's `defaultTimeoutMs`. */
  timeoutMs?: number;
  execute(input: JsonValue, context: ToolContext): JsonValue | Promise<JsonValue>;
}

/** Options of {@link BasicToolRunner}. */
export interface BasicToolRunnerOptions {
  tools?: AgentTool[];
  /** Runs tools isolated, with timeout and abort. Without one, tools run inline (still with a timeout). */
  tasks?: TaskSupervisor;
  /** Default 120 000 ms. */
  defaultTimeoutMs?: number;
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * The simplest {@link ToolRunner}: a set of tools, the agent's allowlist, a timeout per call,
 * and tool failures turned into error results the model can read. The full tool layer
 * (schemas from zod, approval, retries, exec sandboxes) builds on the same interface.
 *
 * @example
 * ```ts
 * const tools = new BasicToolRunner({
 *   tools: [{
 *     name: "add", description: "adds two numbers",
 *     inputSchema: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } } },
 *     execute: (input) => (input as { a: number; b: number }).a + (input as { a: number; b: number }).b,
 *   }],
 * });
 * ```
 */
export class BasicToolRunner implements ToolRunner {
  readonly #tools = new Map<string, AgentTool>();
  readonly #tasks: TaskSupervisor | undefined;
  readonly #defaultTimeoutMs: number;

  constructor(options: BasicToolRunnerOptions = {}) {
    this.#tasks = options.tasks;
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 120_000;
    for (const tool of options.tools ?? []) this.register(tool);
  }

  /** Adds a tool. @throws InvalidArgumentError on a bad or duplicate name. */
  register(tool: AgentTool): void {
    if (!TOOL_NAME.test(tool.name)) {
      throw new InvalidArgumentError(
        `tool name must match ${TOOL_NAME.source}, got "${tool.name}"`,
      );
    }
    if (this.#tools.has(tool.name))
      throw new InvalidArgumentError(`tool "${tool.name}" is already registered`);
    this.#tools.set(tool.name, tool);
  }

  /** Removes a tool; returns whether it was there. */
  unregister(name: string): boolean {
    return this.#tools.delete(name);
  }

  /** The names of every registered tool. */
  names(): string[] {
    return [...this.#tools.keys()];
  }

  definitions(agent: AgentDefinition): ModelToolDefinition[] {
    const allow = agent.tools ?? [];
    const all = allow.includes("*");
    const out: ModelToolDefinition[] = [];
    for (const tool of this.#tools.values()) {
      if (all || allow.includes(tool.name)) {
        out.push({ name: tool.name, description: tool.description, inputSchema: tool.inputSchema });
      }
    }
    return out;
  }

  async execute(
    call: ToolCallPart,
    context: ToolContext,
  ): Promise<{ output: JsonValue; isError: boolean }> {
    const tool = this.#tools.get(call.toolName);
    if (tool === undefined) {
      return { output: `unknown tool "${call.toolName}"`, isError: true };
    }
    const timeoutMs = tool.timeoutMs ?? this.#defaultTimeoutMs;
    try {
      const run = (signal: AbortSignal) => tool.execute(call.input, { ...context, signal });
      const output =
        this.#tasks !== undefined
          ? await this.#tasks.run(({ signal }) => run(signal), {
              timeoutMs,
              signal: context.signal,
              name: `tool ${tool.name}`,
            })
          : await runInline(run, timeoutMs, context.signal, tool.name);
      return { output: output ?? null, isError: false };
    } catch (error) {
      if (context.signal.aborted) throw context.signal.reason ?? new AbortedError("run aborted");
      return { output: `tool "${tool.name}" failed: ${describe(error)}`, isError: true };
    }
  }
}

async function runInline(
  run: (signal: AbortSignal) => JsonValue | Promise<JsonValue>,
  timeoutMs: number,
  outer: AbortSignal,
  name: string,
): Promise<JsonValue> {
  const signal = AbortSignal.any([outer, AbortSignal.timeout(Math.min(timeoutMs, 2 ** 31 - 1))]);
  return await new Promise<JsonValue>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new AbortedError(`tool ${name} aborted`));
    signal.addEventListener("abort", onAbort, { once: true });
    Promise.resolve()
      .then(() => run(signal))
      .then(resolve, (error: unknown) => {
        reject(isBeamClawError(error) || error instanceof Error ? error : new Error(String(error)));
      })
      .finally(() => signal.removeEventListener("abort", onAbort));
  });
}
