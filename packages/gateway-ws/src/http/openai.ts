/**
 * OpenAI-compatible HTTP: `POST /v1/chat/completions` (streaming SSE ending in `[DONE]`, or
 * one JSON answer) and `GET /v1/models`. The `model` names an agent (`beamclaw`,
 * `beamclaw/<agentId>`); the `x-beamclaw-session-key` header or the `user` field picks the
 * session. A request with function `tools` of its own is answered by one model call with
 * those tools, and the model's calls come back as `tool_calls` for the client to run. A
 * `response_format` (`json_schema`, or `json_object`) makes the answer JSON: a session turn
 * asks for it as a structured `output` (validated, asked again when it does not conform).
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type {
  AgentDefinition,
  JsonObject,
  JsonValue,
  ModelMessage,
  ModelRequest,
  ModelResponseFormat,
  ModelToolDefinition,
  ModelUsage,
  RunResult,
  UserMessageInput,
} from "@beamclaw/core";
import type { GatewayHub } from "../hub.js";
import { type ParsedAttachments, transcribeAudio } from "../methods/session-helpers.js";
import { BodyError, header, openAiError, readBody, sendJson } from "./util.js";

type OpenAiContentPart = {
  type?: string;
  text?: string;
  image_url?: { url?: string } | string;
  file?: { filename?: string; file_data?: string; file_id?: string };
  input_audio?: { data?: string; format?: string };
};
interface OpenAiMessage {
  role?: string;
  content?: string | OpenAiContentPart[] | null;
  name?: string;
  tool_calls?: Array<{
    id?: string;
    type?: string;
    function?: { name?: string; arguments?: string };
  }>;
  tool_call_id?: string;
}
interface OpenAiTool {
  type?: string;
  function?: { name?: string; description?: string; parameters?: JsonObject };
}
interface CompletionRequest {
  model?: unknown;
  messages?: unknown;
  stream?: unknown;
  user?: unknown;
  tools?: unknown;
  tool_choice?: unknown;
  max_tokens?: unknown;
  max_completion_tokens?: unknown;
  temperature?: unknown;
  response_format?: unknown;
  stream_options?: unknown;
}

class RequestError extends Error {
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
function invalidType(param: string, expected: string): RequestError {
  return new RequestError(
    400,
    `invalid type for '${param}': expected ${expected}`,
    "invalid_request_error",
    "invalid_type",
    param,
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkOptional(
  body: Record<string, unknown>,
  field: string,
  ok: (value: unknown) => boolean,
  expected: string,
): void {
  const value = body[field];
  if (value !== undefined && value !== null && !ok(value)) throw invalidType(field, expected);
}

/** The content part types a message may have: any other would be lost, so it is refused. */
const CONTENT_PART_TYPES = new Set(["text", "image_url", "file", "input_audio", "refusal"]);

/** Checks one message's fields (their types; which roles need what is checked later). */
function checkMessage(m: unknown, at: string): void {
  if (!isPlainObject(m)) throw invalidType(at, "an object");
  if (typeof m.role !== "string") throw invalidType(`${at}.role`, "a string");
  const content = m.content;
  if (Array.isArray(content)) {
    content.forEach((part, j) => {
      const where = `${at}.content[${j}]`;
      if (!isPlainObject(part) || typeof part.type !== "string") {
        throw invalidType(where, "an object with a string type");
      }
      if (!CONTENT_PART_TYPES.has(part.type)) {
        // Dropped, the model would answer without it: refused instead.
        throw new RequestError(
          400,
          `${where}.type "${part.type}" is not supported (text, image_url, file, input_audio, refusal)`,
          "invalid_request_error",
          "unsupported_content",
          `${where}.type`,
        );
      }
      if (part.type === "text" && typeof part.text !== "string") {
        throw invalidType(`${where}.text`, "a string");
      }
      if (part.type === "image_url") {
        const image = part.image_url;
        if (typeof image !== "string" && !(isPlainObject(image) && typeof image.url === "string")) {
          throw invalidType(`${where}.image_url`, "a URL or an object with a string url");
        }
      }
      if (part.type === "input_audio") {
        const audio = part.input_audio;
        if (
          !isPlainObject(audio) ||
          typeof audio.data !== "string" ||
          !/^[A-Za-z0-9+/]+={0,2}$/.test(audio.data) ||
          typeof audio.format !== "string" ||
          !/^[a-z0-9]{2,8}$/.test(audio.format)
        ) {
          throw invalidType(
            `${where}.input_audio`,
            "an object with base64 data and a format (wav, mp3, ...)",
          );
        }
      }
      if (part.type === "file") {
        const file = part.file;
        if (!isPlainObject(file) || typeof file.file_data !== "string") {
          // `file_id` names a file uploaded to OpenAI: this gateway has no file store.
          throw invalidType(`${where}.file`, "an object with file_data (a base64 data: URL)");
        }
        if (!/^data:[^;,]+;base64,/.test(file.file_data)) {
          throw invalidType(`${where}.file.file_data`, "a base64 data: URL");
        }
        if (file.filename !== undefined && typeof file.filename !== "string") {
          throw invalidType(`${where}.file.filename`, "a string");
        }
      }
    });
  } else if (content !== undefined && content !== null && typeof content !== "string") {
    throw invalidType(`${at}.content`, "a string, an array of content parts or null");
  }
  for (const field of ["name", "tool_call_id"]) {
    const value = m[field];
    if (value !== undefined && value !== null && typeof value !== "string") {
      throw invalidType(`${at}.${field}`, "a string");
    }
  }
  const calls = m.tool_calls;
  if (calls === undefined || calls === null) return;
  if (!Array.isArray(calls)) throw invalidType(`${at}.tool_calls`, "an array");
  calls.forEach((call, j) => {
    const where = `${at}.tool_calls[${j}]`;
    if (!isPlainObject(call)) throw invalidType(where, "an object");
    if (call.id !== undefined && typeof call.id !== "string") {
      throw invalidType(`${where}.id`, "a string");
    }
    const fn = call.function;
    if (!isPlainObject(fn) || typeof fn.name !== "string" || fn.name.length === 0) {
      throw invalidType(`${where}.function`, "an object with a non-empty string name");
    }
    if (fn.arguments !== undefined && typeof fn.arguments !== "string") {
      throw invalidType(`${where}.function.arguments`, "a JSON string");
    }
  });
}

/**
 * Checks the types of every field of a completion request this endpoint reads, before
 * anything runs: a wrong one is a 400 `invalid_type` naming the field (`param`), never a
 * failure deeper in. Fields it does not read are left alone, as OpenAI's clients send many.
 */
function checkCompletionRequest(body: Record<string, unknown>): void {
  checkOptional(body, "model", (v) => typeof v === "string", "a string");
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new RequestError(
      400,
      "messages must be a non-empty array",
      "invalid_request_error",
      "invalid_messages",
      "messages",
    );
  }
  for (const [i, m] of messages.entries()) checkMessage(m, `messages[${i}]`);
  checkOptional(body, "stream", (v) => typeof v === "boolean", "a boolean");
  checkOptional(body, "stream_options", isPlainObject, "an object");
  const streamOptions = body.stream_options;
  if (isPlainObject(streamOptions)) {
    const include = streamOptions.include_usage;
    if (include !== undefined && include !== null && typeof include !== "boolean") {
      throw invalidType("stream_options.include_usage", "a boolean");
    }
  }
  checkOptional(body, "n", (v) => Number.isSafeInteger(v), "an integer");
  if (body.n !== undefined && body.n !== null && body.n !== 1) {
    // One choice is all a run gives: fewer choices than asked would be lost without a word.
    throw new RequestError(
      400,
      "n must be 1: this gateway answers with one choice",
      "invalid_request_error",
      "unsupported_value",
      "n",
    );
  }
  checkOptional(body, "user", (v) => typeof v === "string", "a string");
  checkOptional(
    body,
    "temperature",
    (v) => typeof v === "number" && v >= 0 && v <= 2,
    "a number from 0 to 2",
  );
  for (const field of ["max_tokens", "max_completion_tokens"]) {
    checkOptional(
      body,
      field,
      (v) => typeof v === "number" && Number.isSafeInteger(v) && v > 0,
      "a positive integer",
    );
  }
  const tools = body.tools;
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) throw invalidType("tools", "an array");
    tools.forEach((tool, i) => {
      const at = `tools[${i}]`;
      if (!isPlainObject(tool)) throw invalidType(at, "an object");
      if (tool.type !== undefined && tool.type !== "function") {
        throw invalidType(`${at}.type`, '"function"');
      }
      const fn = tool.function;
      if (!isPlainObject(fn) || typeof fn.name !== "string" || fn.name.length === 0) {
        throw invalidType(`${at}.function`, "an object with a non-empty string name");
      }
      if (fn.description !== undefined && typeof fn.description !== "string") {
        throw invalidType(`${at}.function.description`, "a string");
      }
      if (fn.parameters !== undefined && !isPlainObject(fn.parameters)) {
        throw invalidType(`${at}.function.parameters`, "a JSON Schema object");
      }
    });
  }
  checkResponseFormat(body.response_format);
  checkOptional(
    body,
    "tool_choice",
    (v) =>
      v === "auto" ||
      v === "none" ||
      v === "required" ||
      (isPlainObject(v) && isPlainObject(v.function) && typeof v.function.name === "string"),
    '"auto", "none", "required" or { type: "function", function: { name } }',
  );
}

const FORMAT_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Checks `response_format`: `{ type: "text" | "json_object" }` or a `json_schema` one. */
function checkResponseFormat(format: unknown): void {
  if (format === undefined || format === null) return;
  if (!isPlainObject(format)) throw invalidType("response_format", "an object");
  if (format.type === "text" || format.type === "json_object") return;
  if (format.type !== "json_schema") {
    throw invalidType("response_format.type", '"text", "json_object" or "json_schema"');
  }
  const spec = format.json_schema;
  if (!isPlainObject(spec)) throw invalidType("response_format.json_schema", "an object");
  if (typeof spec.name !== "string" || !FORMAT_NAME.test(spec.name)) {
    throw invalidType(
      "response_format.json_schema.name",
      `a string matching ${FORMAT_NAME.source}`,
    );
  }
  if (spec.description !== undefined && typeof spec.description !== "string") {
    throw invalidType("response_format.json_schema.description", "a string");
  }
  if (spec.strict !== undefined && spec.strict !== null && typeof spec.strict !== "boolean") {
    throw invalidType("response_format.json_schema.strict", "a boolean");
  }
  const schema = spec.schema;
  if (schema !== undefined && !(isPlainObject(schema) && schema.type === "object")) {
    throw invalidType(
      "response_format.json_schema.schema",
      'a JSON Schema of an object (type "object")',
    );
  }
}

/**
 * The JSON answer a (checked) `response_format` asks for, as BeamClaw's response format, or
 * undefined for text. `json_object` is any JSON object.
 */
function responseFormatOf(format: unknown): ModelResponseFormat | undefined {
  if (!isPlainObject(format)) return undefined;
  if (format.type === "json_object") {
    return { type: "json-schema", name: "json_object", schema: { type: "object" }, strict: false };
  }
  if (format.type !== "json_schema" || !isPlainObject(format.json_schema)) return undefined;
  const spec = format.json_schema;
  const out: ModelResponseFormat = {
    type: "json-schema",
    name: String(spec.name),
    schema: (isPlainObject(spec.schema) ? spec.schema : { type: "object" }) as JsonObject,
  };
  if (typeof spec.description === "string") out.description = spec.description;
  if (typeof spec.strict === "boolean") out.strict = spec.strict;
  return out;
}

const MODEL_PREFIXES = ["beamclaw/", "beamclaw:", "openclaw/", "openclaw:", "agent:"];

/** The agent a `model` names. */
export function agentForModel(hub: GatewayHub, model: unknown): AgentDefinition {
  if (typeof model !== "string" || model.length === 0) {
    throw new RequestError(
      400,
      "model is required (beamclaw or beamclaw/<agentId>)",
      "invalid_request_error",
      "missing_model",
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

function modelIds(hub: GatewayHub): string[] {
  return ["beamclaw", ...hub.runtime.agents.map((a) => `beamclaw/${a.id}`)];
}

function textOf(content: OpenAiMessage["content"]): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter((p) => p?.type === "text" && typeof p.text === "string")
    .map((p) => p.text)
    .join("\n");
}

function imagesOf(content: OpenAiMessage["content"]): UserMessageInput["images"] {
  if (!Array.isArray(content)) return [];
  const images: NonNullable<UserMessageInput["images"]> = [];
  for (const part of content) {
    if (part?.type !== "image_url") continue;
    const url = typeof part.image_url === "string" ? part.image_url : part.image_url?.url;
    if (typeof url !== "string") continue;
    const data = /^data:([^;,]+);base64,(.*)$/s.exec(url);
    if (data !== null) images.push({ mediaType: data[1]!, data: data[2]! });
    else images.push({ mediaType: "image/*", url });
  }
  return images;
}

/** A message's `input_audio` parts (checked by `checkMessage`), as clips to transcribe. */
function audioOf(content: OpenAiMessage["content"]): ParsedAttachments["audio"] {
  if (!Array.isArray(content)) return [];
  const clips: ParsedAttachments["audio"] = [];
  for (const part of content) {
    const audio = part?.type === "input_audio" ? part.input_audio : undefined;
    if (typeof audio?.data !== "string" || typeof audio.format !== "string") continue;
    const format = audio.format === "mp3" ? "mpeg" : audio.format;
    clips.push({
      name: `audio.${audio.format}`,
      mimeType: `audio/${format}`,
      data: Buffer.from(audio.data, "base64"),
    });
  }
  return clips;
}

/** A message's `file` parts (checked by `checkMessage`: base64 data URLs), as documents. */
function filesOf(content: OpenAiMessage["content"]): NonNullable<UserMessageInput["files"]> {
  if (!Array.isArray(content)) return [];
  const files: NonNullable<UserMessageInput["files"]> = [];
  for (const part of content) {
    if (part?.type !== "file" || typeof part.file?.file_data !== "string") continue;
    const data = /^data:([^;,]+);base64,(.*)$/s.exec(part.file.file_data);
    if (data === null) continue;
    const name = part.file.filename;
    files.push({
      mediaType: data[1]!,
      data: data[2]!,
      ...(typeof name === "string" && name !== "" ? { filename: name } : {}),
    });
  }
  return files;
}

/**
 * The last user message's audio as transcript lines (see `transcribeAudio`). Without a
 * transcriber, audio is refused (400 `unsupported_content`) rather than silently dropped; a
 * failed transcription is a 503 to retry.
 */
async function transcribed(hub: GatewayHub, audio: ParsedAttachments["audio"]): Promise<string[]> {
  if (audio.length === 0) return [];
  if (hub.transcriber === undefined) {
    throw new RequestError(
      400,
      "input_audio needs speech to text, and this gateway has no transcriber (beamclaw.yaml: transcription)",
      "invalid_request_error",
      "unsupported_content",
      "messages",
    );
  }
  try {
    return await transcribeAudio(hub, audio);
  } catch (error) {
    throw new RequestError(
      503,
      error instanceof Error ? error.message : String(error),
      "server_error",
      "transcription_failed",
    );
  }
}

function parseMessages(raw: unknown): OpenAiMessage[] {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new RequestError(
      400,
      "messages must be a non-empty array",
      "invalid_request_error",
      "invalid_messages",
    );
  }
  for (const [i, m] of raw.entries()) {
    const role = (m as OpenAiMessage | null)?.role;
    if (
      typeof m !== "object" ||
      m === null ||
      !["system", "developer", "user", "assistant", "tool"].includes(String(role))
    ) {
      throw new RequestError(
        400,
        `messages[${i}].role must be system, user, assistant or tool`,
        "invalid_request_error",
        "invalid_messages",
      );
    }
  }
  return raw as OpenAiMessage[];
}

/** The whole conversation as one prompt, for a session that starts empty. */
function flatten(messages: OpenAiMessage[]): string {
  const nonSystem = messages.filter((m) => m.role !== "system" && m.role !== "developer");
  if (messages.length === 1 && messages[0]!.role === "user") return textOf(messages[0]!.content);
  const lines: string[] = [];
  for (const m of messages) {
    const text = textOf(m.content);
    if (text.length === 0) continue;
    const who =
      m.role === "system" || m.role === "developer"
        ? "System"
        : m.role === "assistant"
          ? "Assistant"
          : m.role === "tool"
            ? "Tool"
            : "User";
    lines.push(`${who}: ${text}`);
  }
  return nonSystem.length === 0 ? lines.join("\n\n") : lines.join("\n\n");
}

function lastUser(messages: OpenAiMessage[]): OpenAiMessage {
  for (let i = messages.length - 1; i >= 0; i--)
    if (messages[i]!.role === "user") return messages[i]!;
  throw new RequestError(
    400,
    "messages must contain a user message",
    "invalid_request_error",
    "invalid_messages",
  );
}

function sessionUser(user: unknown): string | undefined {
  if (typeof user !== "string") return undefined;
  const cleaned = user
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9._+=@#~!-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 128);
  return cleaned.length === 0 ? undefined : cleaned;
}

function finishReason(result: RunResult): string {
  return result.status === "max-steps" ? "length" : "stop";
}

function usageOf(usage: ModelUsage | undefined) {
  const input = usage?.inputTokens ?? 0;
  const output = usage?.outputTokens ?? 0;
  return { prompt_tokens: input, completion_tokens: output, total_tokens: input + output };
}

/** Writes one SSE data line. */
function sse(res: ServerResponse, data: unknown): void {
  // The client may have gone; a write to a closed response must not throw or emit.
  if (res.destroyed || res.writableEnded) return;
  res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
}

function startSse(res: ServerResponse): void {
  res.on("error", () => undefined);
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
}

/** Whether a streaming request asked for the usage chunk (`stream_options.include_usage`). */
function wantsUsage(body: CompletionRequest): boolean {
  return isPlainObject(body.stream_options) && body.stream_options.include_usage === true;
}

/**
 * The chunks of one streamed completion. With `stream_options.include_usage` every chunk has
 * `usage: null` and the usage comes last in a chunk of its own with empty `choices`, as
 * OpenAI sends it; without, the finish chunk carries it.
 */
function chunksOf(id: string, created: number, model: string, includeUsage: boolean) {
  const base = { id, object: "chat.completion.chunk", created, model };
  const chunk = (delta: Record<string, unknown>, finish: string | null) => ({
    ...base,
    choices: [{ index: 0, delta, finish_reason: finish }],
    ...(includeUsage ? { usage: null } : {}),
  });
  const finish = (res: ServerResponse, reason: string, usage: ModelUsage | undefined): void => {
    if (includeUsage) {
      sse(res, chunk({}, reason));
      sse(res, { ...base, choices: [], usage: usageOf(usage) });
    } else {
      sse(res, { ...chunk({}, reason), usage: usageOf(usage) });
    }
  };
  return { chunk, finish };
}

/** An error sent inside a stream, in OpenAI's error shape. */
function streamError(message: string, code: string | null) {
  return { error: { message, type: "server_error", param: null, code } };
}

/**
 * The error of a run that did not complete: a failure is a 502 (the model call failed), a run
 * cut at its time limit a 504 (`RUN_TIMEOUT`), any other abort (the gateway stopping, an
 * operator's `chat.abort`) a 503. `undefined` for a run that completed.
 */
function runFailure(
  result: RunResult,
): { status: number; message: string; code: string | null } | undefined {
  if (result.status === "failed") {
    return {
      status: 502,
      message: result.error?.message ?? "the run failed",
      code: result.error?.code ?? null,
    };
  }
  if (result.status === "aborted") {
    return {
      status: result.error?.code === "RUN_TIMEOUT" ? 504 : 503,
      message: result.error?.message ?? "the run was aborted before it finished",
      code: result.error?.code ?? "run_aborted",
    };
  }
  return undefined;
}

/** Handles `POST /v1/chat/completions`. */
export async function handleChatCompletions(
  hub: GatewayHub,
  req: IncomingMessage,
  res: ServerResponse,
  maxBodyBytes: number,
): Promise<void> {
  let body: CompletionRequest;
  try {
    const raw = await readBody(req, maxBodyBytes);
    const parsed: unknown = JSON.parse(raw.toString("utf8"));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new RequestError(400, "the body must be a JSON object");
    }
    body = parsed as CompletionRequest;
  } catch (error) {
    if (error instanceof BodyError)
      return openAiError(res, error.status, error.message, "invalid_request_error");
    if (error instanceof RequestError)
      return openAiError(res, error.status, error.message, error.type, error.code);
    return openAiError(
      res,
      400,
      "the body is not valid JSON",
      "invalid_request_error",
      "invalid_json",
    );
  }
  try {
    if (hub.draining)
      throw new RequestError(503, "the gateway is shutting down", "server_error", "shutting_down");
    checkCompletionRequest(body as Record<string, unknown>);
    const agent = agentForModel(hub, body.model);
    const messages = parseMessages(body.messages);
    const stream = body.stream === true;
    const tools = Array.isArray(body.tools) ? (body.tools as OpenAiTool[]) : [];
    if (tools.length > 0) {
      await clientToolsCompletion(hub, res, { agent, messages, stream, tools, body });
      return;
    }
    await sessionCompletion(hub, req, res, { agent, messages, stream, body });
  } catch (error) {
    if (error instanceof RequestError)
      return openAiError(res, error.status, error.message, error.type, error.code, {}, error.param);
    const e = error as {
      code?: unknown;
      message?: string;
      reason?: unknown;
      retryAfterMs?: unknown;
    };
    const code = typeof e?.code === "string" ? e.code : null;
    // Memory pressure is the server's state, not the client's rate: 503, retry later.
    const memory = code === "OVERLOADED" && e.reason === "memory";
    const status =
      code === "INVALID_ARGUMENT" || code === "INVALID_SESSION_KEY"
        ? 400
        : memory
          ? 503
          : code === "OVERLOADED"
            ? 429
            : 500;
    const retryAfterMs = typeof e?.retryAfterMs === "number" ? e.retryAfterMs : undefined;
    return openAiError(
      res,
      status,
      e?.message ?? String(error),
      status === 400 ? "invalid_request_error" : "server_error",
      memory ? "memory_pressure" : code,
      retryAfterMs === undefined || !Number.isFinite(retryAfterMs)
        ? {}
        : { "retry-after": String(Math.max(1, Math.ceil(retryAfterMs / 1000))) },
    );
  }
}

/** The answer's content: the validated JSON of a structured answer, else the text. */
function contentOf(result: RunResult): string {
  return result.output === undefined ? result.text : JSON.stringify(result.output);
}

/** A turn in a BeamClaw session: the agent's own tools, history kept server-side. */
async function sessionCompletion(
  hub: GatewayHub,
  req: IncomingMessage,
  res: ServerResponse,
  input: {
    agent: AgentDefinition;
    messages: OpenAiMessage[];
    stream: boolean;
    body: CompletionRequest;
  },
): Promise<void> {
  const { agent, messages, stream } = input;
  const explicitKey =
    header(req, "x-beamclaw-session-key") ?? header(req, "x-openclaw-session-key");
  const user = sessionUser(input.body.user);
  const ephemeral = explicitKey === undefined && user === undefined;
  const key =
    explicitKey ??
    (user !== undefined
      ? `agent:${agent.id}:openai-user:${user}`
      : `agent:${agent.id}:openai:${randomUUID()}`);
  const session = hub.session(key, explicitKey === undefined ? agent.id : undefined);
  // Watched from here: a client that leaves while its message is prepared (a transcription)
  // gets no run, and one that leaves later has its run aborted.
  let abortRun: (() => void) | undefined;
  let finished = false;
  let gone = false;
  res.on("close", () => {
    gone = true;
    if (!finished) abortRun?.();
  });
  const last = lastUser(messages);
  // A fresh session gets the whole conversation; a kept one already has its history.
  const typed = ephemeral ? flatten(messages) : textOf(last.content);
  // A fresh session also gets the images, documents and audio of the earlier user messages
  // (the flattened conversation holds only their text), in order.
  const sources = ephemeral ? messages.filter((m) => m.role === "user") : [last];
  const heard = await transcribed(
    hub,
    sources.flatMap((m) => audioOf(m.content)),
  );
  const text = [typed, ...heard].filter((part) => part.length > 0).join("\n\n");
  const images = sources.flatMap((m) => imagesOf(m.content) ?? []);
  const files = sources.flatMap((m) => filesOf(m.content));
  if (text.trim().length === 0 && images.length === 0 && files.length === 0) {
    throw new RequestError(
      400,
      "the last user message is empty",
      "invalid_request_error",
      "invalid_messages",
    );
  }
  const format = responseFormatOf(input.body.response_format);
  if (gone) {
    if (ephemeral) await session.delete().catch(() => undefined);
    return;
  }
  const handle = await session.send(
    {
      text,
      ...(images.length === 0 ? {} : { images }),
      ...(files.length === 0 ? {} : { files }),
      sender: "http:openai",
    },
    format === undefined
      ? {}
      : {
          output: {
            schema: format.schema,
            name: format.name,
            ...(format.description === undefined ? {} : { description: format.description }),
            ...(format.strict === undefined ? {} : { strict: format.strict }),
          },
        },
  );
  abortRun = () => void handle.abort().catch(() => undefined);
  if (gone) abortRun();
  const id = `chatcmpl-${handle.runId}`;
  const created = Math.floor(hub.now() / 1000);
  const model = typeof input.body.model === "string" ? input.body.model : "beamclaw";
  try {
    if (!stream) {
      const result = await handle.result;
      finished = true;
      const failure = runFailure(result);
      if (failure !== undefined) {
        return openAiError(res, failure.status, failure.message, "server_error", failure.code);
      }
      return sendJson(res, 200, {
        id,
        object: "chat.completion",
        created,
        model,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: contentOf(result) },
            finish_reason: finishReason(result),
          },
        ],
        usage: usageOf(result.usage),
      });
    }
    startSse(res);
    const { chunk, finish } = chunksOf(id, created, model, wantsUsage(input.body));
    sse(res, chunk({ role: "assistant", content: "" }, null));
    try {
      for await (const event of handle) {
        // A JSON answer is sent whole once validated: a try that did not conform (and the
        // model's own fences) never reach the client.
        if (event.type === "text-delta" && format === undefined) {
          sse(res, chunk({ content: event.text }, null));
        }
        if (event.type === "run-end") {
          if (format !== undefined && event.result.output !== undefined) {
            sse(res, chunk({ content: contentOf(event.result) }, null));
          }
          // A run that failed or was cut short did not finish its answer: an error, not a stop.
          const failure = runFailure(event.result);
          if (failure !== undefined) sse(res, streamError(failure.message, failure.code));
          else finish(res, finishReason(event.result), event.result.usage);
        }
      }
    } catch (error) {
      sse(res, streamError((error as Error).message, null));
    }
    finished = true;
    sse(res, "[DONE]");
    res.end();
  } finally {
    finished = true;
    if (ephemeral) await session.delete().catch(() => undefined);
  }
}

function toModelMessages(messages: OpenAiMessage[]): {
  system: string[];
  messages: ModelMessage[];
} {
  const system: string[] = [];
  const out: ModelMessage[] = [];
  const toolNames = new Map<string, string>();
  for (const m of messages) {
    if (m.role === "system" || m.role === "developer") {
      const text = textOf(m.content);
      if (text.length > 0) system.push(text);
    } else if (m.role === "user") {
      const text = textOf(m.content);
      out.push({
        role: "user",
        content: [
          ...(text.length > 0 ? [{ type: "text" as const, text }] : []),
          ...(imagesOf(m.content) ?? []).map((i) => ({ type: "image" as const, ...i })),
          ...filesOf(m.content).map((f) => ({ type: "file" as const, ...f })),
        ],
      });
    } else if (m.role === "assistant") {
      const text = textOf(m.content);
      const calls = (m.tool_calls ?? []).map((c, i) => {
        const id = c.id ?? `call_${i}`;
        const name = c.function?.name ?? "unknown";
        toolNames.set(id, name);
        let args: JsonValue = {};
        try {
          args = JSON.parse(c.function?.arguments ?? "{}") as JsonValue;
        } catch {
          args = c.function?.arguments ?? "";
        }
        return { type: "tool-call" as const, toolCallId: id, toolName: name, input: args };
      });
      out.push({
        role: "assistant",
        content: [...(text.length > 0 ? [{ type: "text" as const, text }] : []), ...calls],
      });
    } else if (m.role === "tool") {
      const id = m.tool_call_id ?? "";
      const part = {
        type: "tool-result" as const,
        toolCallId: id,
        toolName: toolNames.get(id) ?? m.name ?? "tool",
        output: textOf(m.content),
      };
      const prev = out.at(-1);
      if (prev?.role === "tool") prev.content.push(part);
      else out.push({ role: "tool", content: [part] });
    }
  }
  return { system, messages: out };
}

function toolChoiceOf(choice: unknown): ModelRequest["toolChoice"] {
  if (choice === "auto" || choice === "none" || choice === "required") return choice;
  const name = (choice as { function?: { name?: unknown } } | null)?.function?.name;
  return typeof name === "string" ? { toolName: name } : undefined;
}

function positive(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) && value > 0
    ? Math.floor(value)
    : undefined;
}

/** One model call with the client's own function tools; tool calls go back to the client. */
async function clientToolsCompletion(
  hub: GatewayHub,
  res: ServerResponse,
  input: {
    agent: AgentDefinition;
    messages: OpenAiMessage[];
    stream: boolean;
    tools: OpenAiTool[];
    body: CompletionRequest;
  },
): Promise<void> {
  const source = hub.models;
  if (source === undefined) {
    throw new RequestError(
      501,
      "client-supplied tools need the gateway's model source (createGateway({ models }))",
      "invalid_request_error",
      "tools_unavailable",
    );
  }
  const { agent, stream } = input;
  const definitions: ModelToolDefinition[] = input.tools.map((t, i) => {
    const name = t.function?.name;
    if (t.type !== "function" || typeof name !== "string" || name.length === 0) {
      throw new RequestError(
        400,
        `tools[${i}] must be { type: "function", function: { name, parameters } }`,
        "invalid_request_error",
        "invalid_tools",
      );
    }
    return {
      name,
      description: t.function?.description ?? "",
      inputSchema: t.function?.parameters ?? { type: "object", properties: {} },
    };
  });
  const converted = toModelMessages(input.messages);
  const system = [agent.systemPrompt, ...converted.system].filter(
    (s): s is string => typeof s === "string" && s.length > 0,
  );
  const toolChoice = toolChoiceOf(input.body.tool_choice);
  // One model call: the format goes to the provider, the client reads the answer itself.
  const clientFormat = responseFormatOf(input.body.response_format);
  const maxOutputTokens =
    positive(input.body.max_completion_tokens) ??
    positive(input.body.max_tokens) ??
    agent.maxOutputTokens;
  const temperature =
    typeof input.body.temperature === "number" ? input.body.temperature : agent.temperature;
  const controller = new AbortController();
  let finished = false;
  res.on("close", () => {
    if (!finished) controller.abort();
  });
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(hub.now() / 1000);
  const model = typeof input.body.model === "string" ? input.body.model : "beamclaw";
  const chunks = chunksOf(id, created, model, stream && wantsUsage(input.body));
  const { chunk } = chunks;
  let text = "";
  let calls: Array<{ id: string; name: string; input: JsonValue }> = [];
  let usage: ModelUsage | undefined;
  let reason = "stop";
  let attempt: { provider: string; model: string } | undefined;
  if (stream) {
    startSse(res);
    sse(res, chunk({ role: "assistant", content: "" }, null));
  }
  const sessionKey = `agent:${agent.id}:openai-tools`;
  try {
    const events = source.stream(
      {
        ...(system.length === 0 ? {} : { system: system.join("\n\n") }),
        messages: converted.messages,
        tools: definitions,
        ...(toolChoice === undefined ? {} : { toolChoice }),
        ...(maxOutputTokens === undefined ? {} : { maxOutputTokens }),
        ...(temperature === undefined ? {} : { temperature }),
        ...(clientFormat === undefined ? {} : { responseFormat: clientFormat }),
      },
      { models: [agent.model, ...(agent.fallbacks ?? [])], signal: controller.signal },
    );
    for await (const event of events) {
      switch (event.type) {
        case "attempt-start":
          attempt = { provider: String(event.provider), model: String(event.model) };
          break;
        case "attempt-failed":
          if (event.discardOutput === true && !stream) {
            text = "";
            calls = [];
          }
          break;
        case "text-delta":
          text += String(event.text);
          if (stream) sse(res, chunk({ content: String(event.text) }, null));
          break;
        case "tool-call": {
          const call = {
            id: String(event.toolCallId),
            name: String(event.toolName),
            input: event.input as JsonValue,
          };
          if (stream) {
            sse(
              res,
              chunk(
                {
                  tool_calls: [
                    {
                      index: calls.length,
                      id: call.id,
                      type: "function",
                      function: { name: call.name, arguments: JSON.stringify(call.input ?? {}) },
                    },
                  ],
                },
                null,
              ),
            );
          }
          calls.push(call);
          break;
        }
        case "usage":
          usage = event.usage as ModelUsage;
          break;
        case "finish":
          reason =
            event.reason === "length"
              ? "length"
              : event.reason === "content-filter"
                ? "content_filter"
                : "stop";
          break;
      }
    }
  } catch (error) {
    finished = true;
    const e = error as { message?: string; code?: unknown };
    if (stream) {
      sse(res, streamError(e.message ?? String(error), typeof e.code === "string" ? e.code : null));
      sse(res, "[DONE]");
      res.end();
      return;
    }
    return openAiError(
      res,
      502,
      e.message ?? String(error),
      "server_error",
      typeof e.code === "string" ? e.code : null,
    );
  }
  finished = true;
  if (usage !== undefined && attempt !== undefined) {
    hub.runtime.usage.record({
      sessionKey,
      agentId: agent.id,
      provider: attempt.provider,
      model: attempt.model,
      usage,
      costUsd: 0,
      at: hub.now(),
    });
  }
  const finish = calls.length > 0 ? "tool_calls" : reason;
  if (stream) {
    chunks.finish(res, finish, usage);
    sse(res, "[DONE]");
    res.end();
    return;
  }
  sendJson(res, 200, {
    id,
    object: "chat.completion",
    created,
    model,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: text.length > 0 ? text : null,
          ...(calls.length === 0
            ? {}
            : {
                tool_calls: calls.map((c) => ({
                  id: c.id,
                  type: "function",
                  function: { name: c.name, arguments: JSON.stringify(c.input ?? {}) },
                })),
              }),
        },
        finish_reason: finish,
      },
    ],
    usage: usageOf(usage),
  });
}

/** Handles `GET /v1/models`. */
export function handleModels(hub: GatewayHub, res: ServerResponse): void {
  const created = Math.floor(hub.startedAt / 1000);
  sendJson(res, 200, {
    object: "list",
    data: modelIds(hub).map((id) => ({ id, object: "model", created, owned_by: "beamclaw" })),
  });
}
