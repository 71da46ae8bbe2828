import type { JsonObject, JsonValue } from "../providers/types.js";
import type { TaskSupervisor } from "../runtime/task-supervisor.js";
import { SupervisedToolRunner, ToolRegistry } from "../tools/registry.js";
import type { ToolResultWithImages } from "../tools/tool-result.js";
import type { ToolContext } from "./types.js";

/** A tool as the basic runner knows it: a name, a JSON Schema, and a function. */
export interface AgentTool {
  name: string;
  description: string;
  /** JSON Schema of the input object. */
  inputSchema: JsonObject;
  /** Per-call time limit. Default: the runner's `defaultTimeoutMs`. */
  timeoutMs?: number;
  /** Runs the call: plain JSON, or a result with images made by `toolResult`. */
  execute(
    input: JsonValue,
    context: ToolContext,
  ): JsonValue | ToolResultWithImages | Promise<JsonValue | ToolResultWithImages>;
}

/** Options of {@link BasicToolRunner}. */
export interface BasicToolRunnerOptions {
  tools?: AgentTool[];
  /** Runs tools isolated, with timeout and abort. Without one, tools run inline (still with a timeout). */
  tasks?: TaskSupervisor;
  /** Default 120 000 ms. */
  defaultTimeoutMs?: number;
}

/**
 * The simplest {@link ToolRunner}: a set of tools offered to agents by their allowlist, a
 * timeout per call, and tool failures turned into error results the model can read. No
 * approval and no retries; `AgentRuntime` uses the full `SupervisedToolRunner`.
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
export class BasicToolRunner extends SupervisedToolRunner {
  readonly #registry: ToolRegistry;

  constructor(options: BasicToolRunnerOptions = {}) {
    const registry = new ToolRegistry(options.tools ?? []);
    const { tasks } = options;
    super({
      registry,
      ...(tasks === undefined ? {} : { tasks: () => tasks }),
      ...(options.defaultTimeoutMs === undefined
        ? {}
        : { defaultTimeoutMs: options.defaultTimeoutMs }),
      maxRetries: 0,
      // The agent loop enforces each agent's allowlist; execution here sees every tool.
      resolveAgent: (id) => ({ id, model: "any/any", tools: ["*"] }),
    });
    this.#registry = registry;
  }

  /** Adds a tool. @throws InvalidArgumentError on a bad or duplicate name. */
  register(tool: AgentTool): void {
    this.#registry.register(tool);
  }

  /** Removes a tool; returns whether it was there. */
  unregister(name: string): boolean {
    return this.#registry.unregister(name);
  }

  /** The names of every registered tool. */
  names(): string[] {
    return this.#registry.names();
  }
}
