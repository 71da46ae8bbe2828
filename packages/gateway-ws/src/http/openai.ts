/**
 * OpenAI-compatible HTTP: `POST /v1/chat/completions` (streaming SSE ending in `[DONE]`, or
 * one JSON answer), `GET /v1/models` and `GET /v1/models/{model}`. The `model` names an agent (`beamclaw`,
 * `beamclaw/<agentId>`); the `x-beamclaw-session-key` header or the `user` field picks the
 * session. A request with function `tools` of its own is answered by one model call with
 * those tools, and the model's calls come back as `tool_calls` for the client to run. A
 * `response_format` (`json_schema`, or `json_object`) makes the answer JSON: a session turn
 * asks for it as a structured `output` (validated, asked again when it does not conform).
 * The turn itself is run by `openai-turn.ts`, which `/v1/responses` shares.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ModelRequest, ModelResponseFormat, ModelUsage } from "@beamclaw/core";
import type { GatewayHub } from "../hub.js";
import {
  agentForModel,
  checkFunctionTools,
  checkJsonSchemaSpec,
  checkOptional,
  checkSampling,
  failureType,
  invalidType,
  isPlainObject,
  JSON_OBJECT_FORMAT,
  jsonSchemaFormat,
  modelIds,
  positive,
  RequestError,
  readJsonObject,
  sendRequestFailure,
  sse,
  toolDefinition,
} from "./openai-common.js";
import {
  type Answer,
  type AnswerStream,
  type Dialect,
  type FinishReason,
  type OpenAiMessage,
  runTurn,
} from "./openai-turn.js";
import { sendJson } from "./util.js";

interface OpenAiTool {
  type?: string;
  function?: { name?: string; description?: string; parameters?: Record<string, unknown> };
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

const CONTENT_PART_TYPES = new Set(["text", "image_url", "file", "input_audio", "refusal"]);

/**
 * The content parts each role's message may carry, as OpenAI defines them: images, files and
 * audio in user messages, refusals in assistant ones, text in all.
 */
const PARTS_OF_ROLE: Record<string, readonly string[]> = {
  system: ["text"],
  developer: ["text"],
  user: ["text", "image_url", "file", "input_audio"],
  assistant: ["text", "refusal"],
  tool: ["text"],
};

/**
 * Checks one message's fields: its role, the content parts that role may carry and the
 * fields' types (which roles need what, a user message, is checked later).
 */
function checkMessage(m: unknown, at: string): void {
  if (!isPlainObject(m)) throw invalidType(at, "an object");
  if (typeof m.role !== "string") throw invalidType(`${at}.role`, "a string");
  const role = m.role;
  const roleParts = Object.hasOwn(PARTS_OF_ROLE, role) ? PARTS_OF_ROLE[role] : undefined;
  if (roleParts === undefined) {
    throw new RequestError(
      400,
      `${at}.role must be system, developer, user, assistant or tool`,
      "invalid_request_error",
      "invalid_messages",
      `${at}.role`,
    );
  }
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
      if (!roleParts.includes(part.type)) {
        // Only a user message's media reaches the model: refused rather than dropped.
        throw new RequestError(
          400,
          `${where}.type "${part.type}" is not supported in a ${role} message (${roleParts.join(", ")})`,
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
  if (role === "tool" && (typeof m.tool_call_id !== "string" || m.tool_call_id.length === 0)) {
    // Required by OpenAI: without it the result answers no call, and a provider refuses it.
    throw new RequestError(
      400,
      `missing required parameter: '${at}.tool_call_id' (the id of the call this tool message answers)`,
      "invalid_request_error",
      "missing_required_parameter",
      `${at}.tool_call_id`,
    );
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
  checkOptional(body, "logprobs", (v) => typeof v === "boolean", "a boolean");
  checkOptional(body, "top_logprobs", (v) => Number.isSafeInteger(v), "an integer");
  for (const field of ["logprobs", "top_logprobs"]) {
    const value = body[field];
    if (value === undefined || value === null || value === false || value === 0) continue;
    // Answered without them, the client would read `logprobs: null` where it asked for them.
    throw new RequestError(
      400,
      `${field}: log probabilities are not supported by this gateway`,
      "invalid_request_error",
      "unsupported_parameter",
      field,
    );
  }
  checkUnhonoured(body);
  checkOptional(body, "user", (v) => typeof v === "string", "a string");
  checkSampling(body, ["max_tokens", "max_completion_tokens"]);
  checkFunctionTools(body.tools, true, (at) => invalidType(`${at}.type`, '"function"'));
  checkResponseFormat(body.response_format);
  checkOptional(
    body,
    "tool_choice",
    (v) =>
      v === "auto" ||
      v === "none" ||
      v === "required" ||
      (isPlainObject(v) &&
        v.type === "function" &&
        isPlainObject(v.function) &&
        typeof v.function.name === "string"),
    '"auto", "none", "required" or { type: "function", function: { name } }',
  );
  const choice = body.tool_choice;
  const hasTools = Array.isArray(body.tools) && body.tools.length > 0;
  if (
    !hasTools &&
    choice !== undefined &&
    choice !== null &&
    choice !== "auto" &&
    choice !== "none"
  ) {
    // A session turn would run without it: the call it asks for would never be made.
    throw new RequestError(
      400,
      "tool_choice asks for a tool call, and no tools were given",
      "invalid_request_error",
      "unsupported_parameter",
      "tool_choice",
    );
  }
  const named =
    isPlainObject(choice) && isPlainObject(choice.function) ? choice.function.name : undefined;
  const names = hasTools ? (body.tools as OpenAiTool[]).map((t) => t.function?.name) : [];
  if (typeof named === "string" && !names.includes(named)) {
    throw new RequestError(
      400,
      `tool_choice names the function "${named}", which is not one of the request's tools`,
      "invalid_request_error",
      "invalid_value",
      "tool_choice",
    );
  }
}

/**
 * Refuses the fields OpenAI's clients send that this gateway cannot honour, a 400
 * `unsupported_parameter` naming the field: dropped, the client would read an answer to
 * something it did not ask. The legacy `functions` and `function_call` (OpenAI's older form
 * of `tools` and `tool_choice`: the model would answer in text where the client waits for a
 * `function_call`), `stop` sequences (the answer would go on past them) and
 * `parallel_tool_calls: false` (the model may still call several tools at once), and audio
 * output (`modalities` other than `"text"`, `audio`: the client would wait for
 * `message.audio`). Their empty values (`[]`, `null`, `parallel_tool_calls: true`,
 * `modalities: ["text"]`) ask for nothing and are accepted.
 */
function checkUnhonoured(body: Record<string, unknown>): void {
  const refuse = (param: string, message: string) =>
    new RequestError(400, message, "invalid_request_error", "unsupported_parameter", param);
  checkOptional(body, "functions", Array.isArray, "an array");
  if (Array.isArray(body.functions) && body.functions.length > 0) {
    throw refuse(
      "functions",
      'functions (deprecated by OpenAI) is not supported: send them as tools ({ type: "function", function })',
    );
  }
  if (body.function_call !== undefined && body.function_call !== null) {
    throw refuse(
      "function_call",
      "function_call (deprecated by OpenAI) is not supported: use tool_choice with tools",
    );
  }
  checkOptional(
    body,
    "stop",
    (v) => typeof v === "string" || (Array.isArray(v) && v.every((s) => typeof s === "string")),
    "a string or an array of strings",
  );
  const stop = body.stop;
  if ((typeof stop === "string" || Array.isArray(stop)) && stop.length > 0) {
    throw refuse("stop", "stop sequences are not supported by this gateway");
  }
  checkOptional(
    body,
    "modalities",
    (v) => Array.isArray(v) && v.every((m) => typeof m === "string"),
    "an array of strings",
  );
  const modalities = body.modalities as string[] | null | undefined;
  if (modalities?.some((m) => m !== "text") === true) {
    throw refuse(
      "modalities",
      'modalities other than "text" are not supported: the answer is text',
    );
  }
  checkOptional(body, "audio", (v) => typeof v === "object" && !Array.isArray(v), "an object");
  if (body.audio !== undefined && body.audio !== null) {
    throw refuse("audio", "audio output is not supported: the answer is text");
  }
  checkOptional(body, "parallel_tool_calls", (v) => typeof v === "boolean", "a boolean");
  if (body.parallel_tool_calls === false) {
    throw refuse(
      "parallel_tool_calls",
      "parallel_tool_calls false is not supported: the model may call several tools in one answer",
    );
  }
}

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
  checkJsonSchemaSpec(spec, "response_format.json_schema");
}

/**
 * The JSON answer a (checked) `response_format` asks for, as BeamClaw's response format, or
 * undefined for text. `json_object` is any JSON object.
 */
function responseFormatOf(format: unknown): ModelResponseFormat | undefined {
  if (!isPlainObject(format)) return undefined;
  if (format.type === "json_object") return JSON_OBJECT_FORMAT;
  if (format.type !== "json_schema" || !isPlainObject(format.json_schema)) return undefined;
  return jsonSchemaFormat(format.json_schema);
}

/** A finish reason as Chat Completions names it: a session's step limit is `length`. */
function finishReasonOf(finish: FinishReason): string {
  return finish === "max_steps" ? "length" : finish;
}

/**
 * Chat Completions' usage object. The tokens read from the prompt cache and spent on reasoning
 * go in `prompt_tokens_details.cached_tokens` and `completion_tokens_details.reasoning_tokens`,
 * as OpenAI reports them, when the provider counted them.
 */
function usageOf(usage: ModelUsage | undefined) {
  const input = usage?.inputTokens ?? 0;
  const output = usage?.outputTokens ?? 0;
  const cached = usage?.cacheReadTokens;
  const reasoning = usage?.reasoningTokens;
  return {
    prompt_tokens: input,
    completion_tokens: output,
    total_tokens: input + output,
    ...(cached === undefined ? {} : { prompt_tokens_details: { cached_tokens: cached } }),
    ...(reasoning === undefined
      ? {}
      : { completion_tokens_details: { reasoning_tokens: reasoning } }),
  };
}

/** Whether a streaming request asked for the usage chunk (`stream_options.include_usage`). */
function wantsUsage(body: CompletionRequest): boolean {
  return isPlainObject(body.stream_options) && body.stream_options.include_usage === true;
}

/**
 * An error sent inside a stream, in OpenAI's error shape (`insufficient_quota` for a budget
 * spent during the run, see {@link failureType}).
 */
function streamError(message: string, code: string | null) {
  return { error: { message, type: failureType(code), param: null, code } };
}

function toolCallsOf(calls: Answer["calls"]) {
  return calls.map((c) => ({
    id: c.id,
    type: "function",
    function: { name: c.name, arguments: JSON.stringify(c.input) },
  }));
}

/**
 * Chat Completions' answers: `chat.completion`, or `chat.completion.chunk`s ending in
 * `[DONE]`. With `stream_options.include_usage` every chunk has `usage: null` and the usage
 * comes last in a chunk of its own with empty `choices`, as OpenAI sends it; without, the
 * finish chunk carries it.
 */
function chatDialect(body: CompletionRequest): Dialect {
  const model = typeof body.model === "string" ? body.model : "beamclaw";
  const includeUsage = wantsUsage(body);
  return {
    keyword: "openai",
    idOf: (seed) => `chatcmpl-${seed}`,
    body: (id, created, answer) => ({
      id,
      object: "chat.completion",
      created,
      model,
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: answer.text.length === 0 && answer.calls.length > 0 ? null : answer.text,
            // Always present in OpenAI's chat completion object (and typed so by its SDK).
            refusal: null,
            ...(answer.calls.length === 0 ? {} : { tool_calls: toolCallsOf(answer.calls) }),
          },
          logprobs: null,
          finish_reason: finishReasonOf(answer.finish),
        },
      ],
      usage: usageOf(answer.usage),
    }),
    stream(res, id, created): AnswerStream {
      const base = { id, object: "chat.completion.chunk", created, model };
      const chunk = (delta: Record<string, unknown>, finish: string | null) => ({
        ...base,
        choices: [{ index: 0, delta, finish_reason: finish }],
        ...(includeUsage ? { usage: null } : {}),
      });
      const end = () => {
        sse(res, "[DONE]");
        res.end();
      };
      sse(res, chunk({ role: "assistant", content: "" }, null));
      return {
        text: (delta) => sse(res, chunk({ content: delta }, null)),
        toolCall: (call, index) =>
          sse(res, chunk({ tool_calls: [{ index, ...toolCallsOf([call])[0] }] }, null)),
        done(answer) {
          const reason = finishReasonOf(answer.finish);
          if (includeUsage) {
            sse(res, chunk({}, reason));
            sse(res, { ...base, choices: [], usage: usageOf(answer.usage) });
          } else {
            sse(res, { ...chunk({}, reason), usage: usageOf(answer.usage) });
          }
          end();
        },
        fail(message, code) {
          sse(res, streamError(message, code));
          end();
        },
      };
    },
  };
}

function toolChoiceOf(choice: unknown): ModelRequest["toolChoice"] {
  if (choice === "auto" || choice === "none" || choice === "required") return choice;
  const name = (choice as { function?: { name?: unknown } } | null)?.function?.name;
  return typeof name === "string" ? { toolName: name } : undefined;
}

/** Handles `POST /v1/chat/completions`. */
export async function handleChatCompletions(
  hub: GatewayHub,
  req: IncomingMessage,
  res: ServerResponse,
  maxBodyBytes: number,
): Promise<void> {
  const parsed = await readJsonObject(req, res, maxBodyBytes);
  if (parsed === undefined) return;
  const body = parsed as CompletionRequest;
  try {
    if (hub.draining)
      throw new RequestError(503, "the gateway is shutting down", "server_error", "shutting_down");
    checkCompletionRequest(parsed);
    const agent = agentForModel(hub, body.model);
    // Checked by checkCompletionRequest: a non-empty array of messages with known roles.
    const messages = body.messages as OpenAiMessage[];
    const tools = Array.isArray(body.tools) ? (body.tools as OpenAiTool[]) : [];
    const toolChoice = toolChoiceOf(body.tool_choice);
    const maxOutputTokens = positive(body.max_completion_tokens) ?? positive(body.max_tokens);
    await runTurn(hub, req, res, chatDialect(body), {
      agent,
      messages,
      stream: body.stream === true,
      user: body.user,
      format: responseFormatOf(body.response_format),
      tools: tools.map((t) => toolDefinition(t.function ?? {})),
      ...(toolChoice === undefined ? {} : { toolChoice }),
      ...(maxOutputTokens === undefined ? {} : { maxOutputTokens }),
      ...(typeof body.temperature === "number" ? { temperature: body.temperature } : {}),
    });
  } catch (error) {
    sendRequestFailure(res, error);
  }
}

/** Handles `GET /v1/models`. */
export function handleModels(hub: GatewayHub, res: ServerResponse): void {
  sendJson(res, 200, { object: "list", data: modelIds(hub).map((id) => modelObject(hub, id)) });
}

/** The path of one model: `/v1/models/{model}` (`beamclaw/main` may come as `beamclaw%2Fmain`). */
export const MODEL_ITEM_PATH = /^\/v1\/models\/(.{1,300})$/;

/**
 * Handles `GET /v1/models/{model}` (OpenAI's "retrieve model", the SDKs' `models.retrieve`):
 * the model object of any name a request's `model` takes, 404 `model_not_found` otherwise.
 */
export function handleModel(hub: GatewayHub, res: ServerResponse, encoded: string): void {
  try {
    let id: string;
    try {
      id = decodeURIComponent(encoded);
    } catch {
      throw new RequestError(
        404,
        `model "${encoded}" does not exist`,
        "invalid_request_error",
        "model_not_found",
      );
    }
    agentForModel(hub, id);
    sendJson(res, 200, modelObject(hub, id));
  } catch (error) {
    sendRequestFailure(res, error);
  }
}

/** OpenAI's model object for `id`. */
function modelObject(hub: GatewayHub, id: string) {
  return { id, object: "model", created: Math.floor(hub.startedAt / 1000), owned_by: "beamclaw" };
}
