/**
 * What the OpenAI-compatible endpoints (`/v1/chat/completions`, `/v1/responses`) share: the
 * request errors in OpenAI's shape, field checks, the agent a `model` names, JSON Schema
 * answer formats and function tools, SSE writing, reading the body and answering failures.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type {
  AgentDefinition,
  JsonObject,
  ModelResponseFormat,
  ModelToolDefinition,
  RunResult,
} from "@beamclaw/core";
import type { GatewayHub } from "../hub.js";
import { JsonTextError, parseJsonBody } from "../json-text.js";
import {
  BUDGET_EXCEEDED,
  budgetResetHeaders,
  isBudgetExceeded,
  isOverload,
  retryAfterHeaders,
  retryAfterMsOf,
} from "../retry-after.js";
import { BodyError, openAiError, readBody } from "./util.js";

/** A request this endpoint refuses, answered in OpenAI's error shape. */
export class RequestError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | null;
  /** The request field at fault (`messages[2].tool_calls`), as OpenAI's `param`. */
  readonly param: string | null;
  constructor(
    status: number,
    message: string,
    type = "invalid_request_error",
    code: string | null = null,
    param: string | null = null,
  ) {
    super(message);
    this.status = status;
    this.type = type;
    this.code = code;
    this.param = param;
  }
}

/** A field of the wrong type: 400 `invalid_type`, naming the field. */
export function invalidType(param: string, expected: string): RequestError {
  return new RequestError(
    400,
    `invalid type for '${param}': expected ${expected}`,
    "invalid_request_error",
    "invalid_type",
    param,
  );
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Throws {@link invalidType} when `body[field]` is set (not null) and not `ok`. */
export function checkOptional(
  body: Record<string, unknown>,
  field: string,
  ok: (value: unknown) => boolean,
  expected: string,
  at = field,
): void {
  const value = body[field];
  if (value !== undefined && value !== null && !ok(value)) throw invalidType(at, expected);
}

/** Checks `temperature` (0 to 2) and the given token limits (positive integers). */
export function checkSampling(body: Record<string, unknown>, limits: string[]): void {
  checkOptional(
    body,
    "temperature",
    (v) => typeof v === "number" && v >= 0 && v <= 2,
    "a number from 0 to 2",
  );
  for (const field of limits) {
    checkOptional(
      body,
      field,
      (v) => typeof v === "number" && Number.isSafeInteger(v) && v > 0,
      "a positive integer",
    );
  }
}

/** A base64 `data:` URL (`data:image/png;base64,...`), split into its media type and data. */
export function dataUrl(url: string): { mediaType: string; data: string } | undefined {
  const match = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  return match === null ? undefined : { mediaType: match[1]!, data: match[2]! };
}

const FORMAT_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * Checks a JSON Schema answer format's fields (`name`, `description`, `strict`, `schema`), as
 * `response_format.json_schema` and the Responses API's `text.format` have them; `at` is the
 * object's param path.
 */
export function checkJsonSchemaSpec(spec: Record<string, unknown>, at: string): void {
  if (typeof spec.name !== "string" || !FORMAT_NAME.test(spec.name)) {
    throw invalidType(`${at}.name`, `a string matching ${FORMAT_NAME.source}`);
  }
  if (spec.description !== undefined && typeof spec.description !== "string") {
    throw invalidType(`${at}.description`, "a string");
  }
  if (spec.strict !== undefined && spec.strict !== null && typeof spec.strict !== "boolean") {
    throw invalidType(`${at}.strict`, "a boolean");
  }
  const schema = spec.schema;
  if (schema !== undefined && !(isPlainObject(schema) && schema.type === "object")) {
    throw invalidType(`${at}.schema`, 'a JSON Schema of an object (type "object")');
  }
}

/** A (checked) JSON Schema answer format as BeamClaw's response format. */
export function jsonSchemaFormat(spec: Record<string, unknown>): ModelResponseFormat {
  const out: ModelResponseFormat = {
    type: "json-schema",
    name: String(spec.name),
    schema: (isPlainObject(spec.schema) ? spec.schema : { type: "object" }) as JsonObject,
  };
  if (typeof spec.description === "string") out.description = spec.description;
  if (typeof spec.strict === "boolean") out.strict = spec.strict;
  return out;
}

/** OpenAI's `json_object` format: any JSON object. */
export const JSON_OBJECT_FORMAT: ModelResponseFormat = {
  type: "json-schema",
  name: "json_object",
  schema: { type: "object" },
  strict: false,
};

/** Checks a function tool's `{ name, description, parameters }`; `at` is its param path. */
function checkFunctionTool(fn: unknown, at: string): void {
  if (!isPlainObject(fn) || typeof fn.name !== "string" || fn.name.length === 0) {
    throw invalidType(at, "an object with a non-empty string name");
  }
  if (fn.description !== undefined && typeof fn.description !== "string") {
    throw invalidType(`${at}.description`, "a string");
  }
  if (fn.parameters !== undefined && !isPlainObject(fn.parameters)) {
    throw invalidType(`${at}.parameters`, "a JSON Schema object");
  }
}

/**
 * Checks a request's `tools`: an array of `type: "function"` tools, whose function is
 * `tool.function` (Chat Completions, `nested`) or the tool itself (Responses API).
 * `otherType` makes the error for a tool of another type.
 */
export function checkFunctionTools(
  tools: unknown,
  nested: boolean,
  otherType: (at: string, type: unknown) => RequestError,
): void {
  if (tools === undefined || tools === null) return;
  if (!Array.isArray(tools)) throw invalidType("tools", "an array");
  tools.forEach((tool, i) => {
    const at = `tools[${i}]`;
    if (!isPlainObject(tool)) throw invalidType(at, "an object");
    if (tool.type !== "function") throw otherType(at, tool.type);
    if (nested) checkFunctionTool(tool.function, `${at}.function`);
    else checkFunctionTool(tool, at);
  });
}

/** A (checked) function tool as the model's tool definition. */
export function toolDefinition(fn: {
  name?: unknown;
  description?: unknown;
  parameters?: unknown;
}): ModelToolDefinition {
  return {
    name: String(fn.name),
    description: typeof fn.description === "string" ? fn.description : "",
    inputSchema: isPlainObject(fn.parameters)
      ? (fn.parameters as JsonObject)
      : { type: "object", properties: {} },
  };
}

const MODEL_PREFIXES = ["beamclaw/", "beamclaw:", "openclaw/", "openclaw:", "agent:"];

/**
 * The agent a `model` names: `beamclaw` (or `openclaw`) for the default agent,
 * `beamclaw/<agentId>` (also `beamclaw:`, `openclaw/`, `openclaw:`, `agent:` or the bare id).
 *
 * @throws {RequestError} 400 without a model, 404 `model_not_found` for an unknown agent.
 */
export function agentForModel(hub: GatewayHub, model: unknown): AgentDefinition {
  if (typeof model !== "string" || model.length === 0) {
    throw new RequestError(
      400,
      "model is required (beamclaw or beamclaw/<agentId>)",
      "invalid_request_error",
      "missing_model",
      "model",
    );
  }
  const name = model.trim().toLowerCase();
  let agentId: string | undefined;
  if (name === "beamclaw" || name === "openclaw") agentId = hub.defaultAgentId;
  else {
    const prefix = MODEL_PREFIXES.find((p) => name.startsWith(p));
    agentId = prefix === undefined ? name : name.slice(prefix.length);
  }
  const agent = hub.runtime.agents.find((a) => a.id === agentId);
  if (agent === undefined) {
    throw new RequestError(
      404,
      `model "${model}" does not exist; use one of ${modelIds(hub).join(", ")}`,
      "invalid_request_error",
      "model_not_found",
    );
  }
  return agent;
}

/** The model ids `/v1/models` lists: `beamclaw` and `beamclaw/<agentId>` for each agent. */
export function modelIds(hub: GatewayHub): string[] {
  return ["beamclaw", ...hub.runtime.agents.map((a) => `beamclaw/${a.id}`)];
}

/** The end of a {@link sessionUser} made unique by a hash of the `user` it came from. */
const HASHED_USER = /~[0-9a-f]{16}$/;

/**
 * A request's `user` as a session key part (undefined for none or blank). One already in a
 * session key's form (lower case, `a-z0-9._+=@#~!-`, at most 128 characters) is kept as it
 * is; any other is cleaned into that form and followed by `~` and 16 hex digits of its
 * SHA-256, so that two users never share a session: `Bob` and `bob`, or `a b` and `a-b`, are
 * different users (session keys are case-insensitive).
 */
export function sessionUser(user: unknown): string | undefined {
  if (typeof user !== "string") return undefined;
  const cleaned = user
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9._+=@#~!-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 128);
  if (user.trim() === "") return undefined;
  if (cleaned === user && !HASHED_USER.test(user)) return cleaned;
  const hash = createHash("sha256").update(user).digest("hex").slice(0, 16);
  // A user named only in other scripts (`ユーザー`) keeps a session too.
  return `${cleaned.slice(0, 111) || "user"}~${hash}`;
}

/** A positive number as a whole one, else undefined. */
export function positive(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) && value > 0
    ? Math.floor(value)
    : undefined;
}

/** Writes one SSE message: `data:` (JSON unless a string), after an `event:` line if named. */
export function sse(res: ServerResponse, data: unknown, event?: string): void {
  // The client may have gone; a write to a closed response must not throw or emit.
  if (res.destroyed || res.writableEnded) return;
  const payload = `data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;
  res.write(event === undefined ? payload : `event: ${event}\n${payload}`);
}

/** Sends the headers of an SSE stream. */
export function startSse(res: ServerResponse): void {
  res.on("error", () => undefined);
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
}

/** The error of a run that did not complete, as {@link runFailure} answers it. */
export interface RunFailure {
  status: number;
  message: string;
  /** OpenAI's error `type`: `insufficient_quota` for a spent budget, else `server_error`. */
  type: string;
  code: string | null;
  headers: Record<string, string>;
}

/**
 * The error of a run that did not complete: a failure is a 502 (the model call failed), a run
 * cut at its time limit a 504 (`RUN_TIMEOUT`), any other abort (the gateway stopping, an
 * operator's `chat.abort`) a 503, a tenant's budget spent during the run a 429
 * `insufficient_quota` (`BUDGET_EXCEEDED`). `undefined` for a run that completed.
 *
 * The OpenAI SDKs retry 429 and every 5xx by default, and a retry runs the turn again. Only
 * when `freshSession` is true (a stateless turn, whose session was made for this request and
 * is deleted after it) is a 502 or a 504 left to be retried; otherwise the session keeps the
 * user message the turn saved, and a retry would save it twice: those answers carry
 * `x-should-retry: false`, as a budget's and an abort's always do.
 *
 * @example
 * ```ts
 * const failure = runFailure(await handle.result, { freshSession: true });
 * if (failure !== undefined) openAiError(res, failure.status, failure.message, failure.type,
 *   failure.code, failure.headers);
 * ```
 */
export function runFailure(
  result: RunResult,
  options: { freshSession?: boolean } = {},
): RunFailure | undefined {
  // A retry of a fresh session's turn starts over in a new one; of a kept one, it repeats it.
  const retry = options.freshSession === true ? {} : NO_RETRY;
  if (result.status === "failed") {
    if (isBudgetExceeded(result.error)) {
      // The run's error is only `{ code, message }`: when the budget resets is in the message,
      // not in a field, so no Retry-After.
      return {
        status: 429,
        message: result.error?.message ?? "the tenant's token budget is spent",
        type: "insufficient_quota",
        code: BUDGET_EXCEEDED,
        headers: NO_RETRY,
      };
    }
    return {
      status: 502,
      message: result.error?.message ?? "the run failed",
      type: "server_error",
      code: result.error?.code ?? null,
      headers: retry,
    };
  }
  if (result.status === "aborted") {
    const timedOut = result.error?.code === "RUN_TIMEOUT";
    return {
      status: timedOut ? 504 : 503,
      message: result.error?.message ?? "the run was aborted before it finished",
      type: "server_error",
      code: result.error?.code ?? "run_aborted",
      // Someone stopped the run (an operator's `chat.abort`): a retry would run the turn again
      // and undo the stop.
      headers: timedOut ? retry : NO_RETRY,
    };
  }
  return undefined;
}

/**
 * OpenAI's error `type` for an error `code` a failed answer carries (an error event in a
 * stream as well as a status): `insufficient_quota` for a spent budget (`BUDGET_EXCEEDED`), as
 * OpenAI types its own quota errors, else `server_error`.
 */
export function failureType(code: string | null): string {
  return code === BUDGET_EXCEEDED ? "insufficient_quota" : "server_error";
}

/**
 * Tells the OpenAI SDKs (which retry 408, 409, 429 and every 5xx unless told) not to retry a
 * refusal that a retry cannot change or should not undo.
 */
export const NO_RETRY: Readonly<Record<string, string>> = Object.freeze({
  "x-should-retry": "false",
});

/**
 * Reads a request's body as one JSON object. On failure answers it (413 over the limit, 400
 * `invalid_json`, 400 `invalid_encoding` for bytes that are not UTF-8, 400 `invalid_unicode`
 * for a string with a lone surrogate, 400 for JSON that is not an object) and returns
 * undefined.
 */
export async function readJsonObject(
  req: IncomingMessage,
  res: ServerResponse,
  maxBodyBytes: number,
): Promise<Record<string, unknown> | undefined> {
  try {
    const raw = await readBody(req, maxBodyBytes);
    const parsed = parseJsonBody(raw);
    if (!isPlainObject(parsed)) throw new RequestError(400, "the body must be a JSON object");
    return parsed;
  } catch (error) {
    if (error instanceof BodyError)
      openAiError(res, error.status, error.message, "invalid_request_error");
    else if (error instanceof RequestError)
      openAiError(res, error.status, error.message, error.type, error.code);
    else if (error instanceof JsonTextError)
      openAiError(res, 400, error.message, "invalid_request_error", error.code);
    else
      openAiError(res, 400, "the body is not valid JSON", "invalid_request_error", "invalid_json");
    return undefined;
  }
}

/**
 * Answers a request that failed before its answer started: a {@link RequestError} as it says;
 * the runtime's and the gateway's errors by code (bad input 400, memory pressure and too many
 * live sessions 503, a full session queue and a tenant's request rate 429, anything else
 * 500). An overload (429 and 503) always says when to retry, in
 * `Retry-After` and `retry-after-ms` (see {@link retryAfterHeaders}): the error's own
 * `retryAfterMs`, or 1 s when it has none. A tenant's spent token budget (`BUDGET_EXCEEDED`)
 * is a 429 `insufficient_quota` with `x-should-retry: false`, and a `Retry-After` to when the
 * budget resets when the error says (see {@link budgetResetHeaders}).
 */
export function sendRequestFailure(res: ServerResponse, error: unknown): void {
  if (error instanceof RequestError) {
    // 501: the gateway is not set up for it (client tools without a model source); a retry
    // cannot change that.
    const headers = error.status === 501 ? NO_RETRY : {};
    openAiError(res, error.status, error.message, error.type, error.code, headers, error.param);
    return;
  }
  const e = error as { code?: unknown; message?: string; reason?: unknown };
  if (isBudgetExceeded(error)) {
    // A tenant's spent token budget: no retry gets through before it resets (OpenAI's own
    // quota 429 is `insufficient_quota`, and it says retrying does not help).
    openAiError(
      res,
      429,
      e.message ?? "the tenant's token budget is spent",
      "insufficient_quota",
      BUDGET_EXCEEDED,
      { ...NO_RETRY, ...budgetResetHeaders(error) },
    );
    return;
  }
  const code = typeof e?.code === "string" ? e.code : null;
  // Memory pressure and the cap on live sessions (`MAX_CHILDREN`) are the server's state, not
  // the client's rate: 503, retry later. A full session queue and a tenant's request rate
  // (`RATE_LIMITED`) are the client's own pace: 429. Never 500, which the OpenAI SDKs retry at
  // once, without waiting.
  const memory = code === "OVERLOADED" && e.reason === "memory";
  // INVALID_REQUEST: the gateway's own refusal of the request (a session header naming an
  // agent that does not exist).
  const status =
    code === "INVALID_ARGUMENT" || code === "INVALID_SESSION_KEY" || code === "INVALID_REQUEST"
      ? 400
      : memory || code === "MAX_CHILDREN"
        ? 503
        : isOverload(error)
          ? 429
          : 500;
  openAiError(
    res,
    status,
    e?.message ?? String(error),
    status === 400 ? "invalid_request_error" : "server_error",
    memory ? "memory_pressure" : code,
    retryAfterHeaders(retryAfterMsOf(error)),
  );
}
