/**
 * Checks a `ModelRequest` before any adapter maps it, so a malformed request fails with a
 * clear, typed error (kind `invalid_request`, not retryable) instead of a `TypeError` from
 * deep inside the mapping, and nothing is sent.
 */
import type { ModelRequest } from "@beamclaw/core";
import { type CallContext, providerError } from "./errors.js";
import { isWire } from "./json.js";

/** The part types each role's `content` may hold. */
const PART_TYPES: Record<string, ReadonlySet<string>> = {
  user: new Set(["text", "image", "file"]),
  assistant: new Set(["text", "thinking", "tool-call"]),
  tool: new Set(["tool-result"]),
};
const THINKING = new Set(["off", "minimal", "low", "medium", "high"]);
/** What OpenAI accepts as a schema's name; the contract asks it of every request. */
const FORMAT_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** The model id of a request that may be malformed, for error messages. */
export function modelOf(request: unknown): string | undefined {
  const model = isWire(request) ? request.model : undefined;
  return typeof model === "string" ? model : undefined;
}

/** Throws `ProviderError` kind `invalid_request` naming the first problem found. */
export function checkRequest(request: ModelRequest, context: CallContext): void {
  // Typed explicitly so that a call to it narrows, as a `throw` does.
  const fail: (problem: string) => never = (problem) => {
    throw providerError("invalid_request", `invalid request: ${problem}`, context);
  };
  if (!isWire(request)) fail("expected an object");
  if (typeof request.model !== "string" || request.model === "") {
    fail("`model` must be a non-empty string");
  }
  if (!Array.isArray(request.messages)) fail("`messages` must be an array");
  request.messages.forEach((message: unknown, i) => {
    const role = isWire(message) ? message.role : undefined;
    const types =
      typeof role === "string" && Object.hasOwn(PART_TYPES, role) ? PART_TYPES[role] : undefined;
    if (types === undefined) fail(`messages[${i}].role must be "user", "assistant" or "tool"`);
    const content: unknown = (message as { content?: unknown }).content;
    if (!Array.isArray(content)) fail(`messages[${i}].content must be an array of parts`);
    for (const [j, part] of (content as unknown[]).entries()) {
      const where = `messages[${i}].content[${j}]`;
      if (!isWire(part)) fail(`${where} must be an object`);
      const { type } = part as { type?: unknown };
      if (typeof type !== "string" || !types.has(type)) {
        fail(`${where}.type must be one of ${[...types].join(", ")}, got ${String(type)}`);
      }
      if (
        (type === "image" || type === "file") &&
        typeof (part as { mediaType?: unknown }).mediaType !== "string"
      ) {
        fail(`${where}.mediaType must be a string`);
      }
    }
  });
  if (request.system !== undefined && typeof request.system !== "string") {
    fail("`system` must be a string");
  }
  if (request.cacheKey !== undefined && typeof request.cacheKey !== "string") {
    fail("`cacheKey` must be a string");
  }
  const { maxOutputTokens, temperature, thinking, tools, toolChoice, responseFormat } = request;
  if (
    maxOutputTokens !== undefined &&
    !(Number.isInteger(maxOutputTokens) && maxOutputTokens > 0)
  ) {
    fail(`\`maxOutputTokens\` must be a positive integer, got ${String(maxOutputTokens)}`);
  }
  if (
    temperature !== undefined &&
    !(typeof temperature === "number" && Number.isFinite(temperature))
  ) {
    fail(`\`temperature\` must be a finite number, got ${String(temperature)}`);
  }
  if (thinking !== undefined && !THINKING.has(thinking)) {
    fail(`\`thinking\` must be one of off, minimal, low, medium, high; got ${String(thinking)}`);
  }
  if (tools !== undefined) {
    if (!Array.isArray(tools)) fail("`tools` must be an array");
    tools.forEach((tool: unknown, i) => {
      if (!isWire(tool) || typeof tool.name !== "string" || tool.name === "") {
        fail(`tools[${i}].name must be a non-empty string`);
      }
      if (!isWire((tool as { inputSchema?: unknown }).inputSchema)) {
        fail(`tools[${i}].inputSchema must be a JSON Schema object`);
      }
    });
  }
  if (
    toolChoice !== undefined &&
    !(
      toolChoice === "auto" ||
      toolChoice === "none" ||
      toolChoice === "required" ||
      (isWire(toolChoice) && typeof toolChoice.toolName === "string" && toolChoice.toolName !== "")
    )
  ) {
    fail('`toolChoice` must be "auto", "none", "required" or { toolName }');
  }
  if (responseFormat !== undefined) {
    if (!isWire(responseFormat) || responseFormat.type !== "json-schema") {
      fail('`responseFormat.type` must be "json-schema"');
    }
    const { name, schema, description, strict } = responseFormat;
    if (typeof name !== "string" || !FORMAT_NAME.test(name)) {
      fail(`\`responseFormat.name\` must match ${FORMAT_NAME.source}, got ${JSON.stringify(name)}`);
    }
    if (!isWire(schema)) fail("`responseFormat.schema` must be a JSON Schema object");
    if (description !== undefined && typeof description !== "string") {
      fail("`responseFormat.description` must be a string");
    }
    if (strict !== undefined && typeof strict !== "boolean") {
      fail("`responseFormat.strict` must be a boolean");
    }
  }
}
