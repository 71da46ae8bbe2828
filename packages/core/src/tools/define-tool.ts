import { z } from "zod";
import { InvalidArgumentError } from "../errors.js";
import type { JsonObject, JsonValue } from "../providers/types.js";
import {
  describeArg,
  optionalFunction,
  optionalNumber,
  optionalOneOf,
  requireObject,
} from "../runtime/validate.js";
import type { ToolContext } from "../sessions/types.js";
import type { ToolResultWithImages } from "./tool-result.js";

/** When a tool call needs a person's approval (see `ApprovalGate`). */
export type ApprovalPolicy = "inherit" | "always" | "never";

/** What `defineTool` takes. */
export interface ToolConfig<S extends z.ZodType, R extends JsonValue | ToolResultWithImages> {
  /** `^[a-zA-Z0-9_-]{1,64}$`, unique in a catalog. */
  name: string;
  /** What the model reads to decide when to call it. */
  description: string;
  /** The arguments, as a zod schema of an object. */
  parameters: S;
  /**
   * Runs with validated arguments. Throw to fail; the error becomes the model-visible result.
   * Return plain JSON, or a result with images made by `toolResult`.
   */
  execute(args: z.infer<S>, context: ToolContext): R | Promise<R>;
  /** Per-call time limit in ms. Default: the runner's (120 000). */
  timeoutMs?: number;
  /** Retries of transient failures (see `isTransientError`). Default 3. */
  maxRetries?: number;
  /**
   * `inherit` (default) follows the gate's mode; `always` asks every call (and, with no
   * approval gate configured, is refused: it never runs unasked); `never` never asks.
   */
  approval?: ApprovalPolicy;
  /**
   * What an approval is bound to. Default: the tool name (approving "always" allows every
   * later call in the session). Exec binds to the exact parsed command instead.
   */
  approvalKey?(args: z.infer<S>): { key: string; display: string };
}

/** A defined tool: its config plus the JSON Schema sent to providers. */
export interface ToolDefinition<
  S extends z.ZodType = z.ZodType,
  R extends JsonValue | ToolResultWithImages = JsonValue | ToolResultWithImages,
> extends ToolConfig<S, R> {
  /** JSON Schema generated from `parameters`. */
  readonly inputSchema: JsonObject;
  /** Validates raw model input: the parsed arguments, or a message naming each bad field. */
  parse(input: unknown): { ok: true; args: z.infer<S> } | { ok: false; message: string };
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * Defines a tool from a zod schema: the JSON Schema providers need is generated from it, and
 * the model's arguments are validated against it before `execute` runs. Invalid arguments
 * are answered to the model as an error result (so it can correct itself), never thrown at
 * the user.
 *
 * @example
 * ```ts
 * const weather = defineTool({
 *   name: "weather",
 *   description: "Current temperature in a city",
 *   parameters: z.object({ city: z.string().min(1) }),
 *   execute: async ({ city }, { signal }) => fetchTemperature(city, signal),
 * });
 * ```
 */
export function defineTool<S extends z.ZodType, R extends JsonValue | ToolResultWithImages>(
  config: ToolConfig<S, R>,
): ToolDefinition<S, R> {
  requireObject(config, "defineTool config");
  if (typeof config.name !== "string" || !TOOL_NAME.test(config.name)) {
    throw new InvalidArgumentError(
      `tool name must be a string matching ${TOOL_NAME.source}, got ${describeArg(config.name)}`,
    );
  }
  if (typeof config.execute !== "function") {
    throw new InvalidArgumentError(`tool "${config.name}" needs an execute function`);
  }
  optionalNumber(config.timeoutMs, `tool "${config.name}": timeoutMs`, {
    min: "positive",
    infinity: true,
  });
  optionalNumber(config.maxRetries, `tool "${config.name}": maxRetries`, {
    min: 0,
    integer: true,
  });
  optionalOneOf(config.approval, `tool "${config.name}": approval`, ["inherit", "always", "never"]);
  optionalFunction(config.approvalKey, `tool "${config.name}": approvalKey`);
  if (typeof config.description !== "string" || config.description.length === 0) {
    throw new InvalidArgumentError(`tool "${config.name}" needs a description`);
  }
  if (!(config.parameters instanceof z.ZodType)) {
    throw new InvalidArgumentError(`tool "${config.name}": parameters must be a zod schema`);
  }
  let inputSchema: JsonObject;
  try {
    inputSchema = z.toJSONSchema(config.parameters, { target: "draft-2020-12" }) as JsonObject;
  } catch (error) {
    throw new InvalidArgumentError(
      `tool "${config.name}": its parameters cannot be expressed as JSON Schema (${(error as Error).message})`,
      { cause: error },
    );
  }
  delete inputSchema.$schema;
  if (inputSchema.type !== "object") {
    throw new InvalidArgumentError(`tool "${config.name}": parameters must be a z.object(...)`);
  }
  return {
    ...config,
    inputSchema,
    parse(input) {
      let result: z.ZodSafeParseResult<z.infer<S>>;
      try {
        result = config.parameters.safeParse(input ?? {});
      } catch (error) {
        // A refinement or transform that throws on what the model sent (`new URL(s)`,
        // `JSON.parse(s)`, an async check) is a bad argument too, not a failed run.
        const reason = error instanceof Error ? error.message : String(error);
        return { ok: false, message: `invalid arguments for ${config.name}: ${reason}` };
      }
      if (result.success) return { ok: true, args: result.data };
      // A provider hands over arguments it could not parse as their raw text: saying why it
      // is not an object tells the model more than "expected object, received string".
      if (typeof input === "string") {
        return {
          ok: false,
          message: `invalid arguments for ${config.name}: ${textProblem(input)}`,
        };
      }
      const problems = result.error.issues.map((issue) => {
        const path = issue.path.length > 0 ? issue.path.join(".") : "(arguments)";
        return `${path}: ${issue.message}`;
      });
      return { ok: false, message: `invalid arguments for ${config.name}: ${problems.join("; ")}` };
    },
  };
}

/** Why arguments that arrived as text (not a JSON object) cannot be used. */
function textProblem(text: string): string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return `the arguments are not valid JSON (${reason}); send one JSON object`;
  }
  const kind =
    value === null
      ? "null"
      : Array.isArray(value)
        ? "an array"
        : typeof value === "object"
          ? "an object inside a JSON string"
          : `a ${typeof value}`;
  return `the arguments must be one JSON object, got ${kind}`;
}

/** Network error codes that are worth retrying. */
const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EPIPE",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
]);

/**
 * Whether a tool failure is transient: an error that says so (`isRetryable: true` or
 * `transient: true`, as `ProviderError` and `OverloadedError` do) or a network error code
 * (its own or its `cause`'s). A tool's own timeout is not transient: it already used its
 * whole budget; nor is an error that says `isRetryable: false` or `transient: false`.
 */
export function isTransientError(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const e = error as {
    isRetryable?: unknown;
    transient?: unknown;
    code?: unknown;
    cause?: unknown;
  };
  if (e.code === "TIMEOUT" || e.code === "ABORTED") return false;
  // An error that says it must not be retried is not, whatever its cause (a call that may
  // have run before its connection broke).
  if (e.isRetryable === false || e.transient === false) return false;
  if (e.isRetryable === true || e.transient === true) return true;
  if (typeof e.code === "string" && TRANSIENT_CODES.has(e.code)) return true;
  return e.cause !== undefined && e.cause !== error && isTransientError(e.cause);
}
