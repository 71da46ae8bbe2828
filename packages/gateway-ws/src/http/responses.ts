/**
 * OpenResponses-compatible HTTP: `POST /v1/responses` (OpenAI's Responses API), off by
 * default (`gateway.http.responses`). The request's `input` (a string, or `message`,
 * `function_call` and `function_call_output` items) is converted to Chat Completions'
 * message shape and run as `/v1/chat/completions` runs it (`openai-turn.ts`): the same
 * agents (`model`), sessions (`user`, `x-beamclaw-session-key`, stateless otherwise), client
 * function tools and JSON answers (`text.format`). The answer is a `response` object, or
 * its semantic SSE events (`response.created` ... `response.completed`) when `stream` is set.
 * A stateless turn's conversation (its input, the `previous_response_id` one it continues, and
 * its answer) is kept in the store's key/value space for {@link KEPT_RESPONSE_TTL_MS} unless
 * `store` is false, so that a later request can continue it by `previous_response_id`.
 * A field this gateway cannot honour (`conversation`, built-in tools, an unknown field) is
 * refused with a 400 naming it, never ignored.
 */
import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type {
  JsonObject,
  JsonValue,
  ModelRequest,
  ModelResponseFormat,
  ModelUsage,
} from "@beamclaw/core";
import type { GatewayHub } from "../hub.js";
import {
  agentForModel,
  checkFunctionTools,
  checkJsonSchemaSpec,
  checkOptional,
  checkSampling,
  dataUrl,
  invalidType,
  isPlainObject,
  JSON_OBJECT_FORMAT,
  jsonSchemaFormat,
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
  type ClientToolCall,
  type Dialect,
  namesKeptSession,
  type OpenAiContentPart,
  type OpenAiMessage,
  runTurn,
} from "./openai-turn.js";
import { sendJson } from "./util.js";

/**
 * How long a kept response can be continued by `previous_response_id`: 30 days, as OpenAI
 * keeps stored responses.
 */
export const KEPT_RESPONSE_TTL_MS = 30 * 24 * 60 * 60 * 1000;

/** The longest `http.responsesKeepMs`: 365 days. */
export const MAX_RESPONSES_KEEP_MS = 365 * 24 * 60 * 60 * 1000;

/** The store key/value prefix of kept responses' conversations. */
const KEPT_PREFIX = "openai-responses:";

/** A response id as this endpoint makes them (`resp_` and hex). */
const RESPONSE_ID = /^resp_[A-Za-z0-9_-]{1,128}$/;

/** The request fields this endpoint reads. */
const READ_FIELDS = new Set([
  "model",
  "input",
  "instructions",
  "stream",
  "user",
  "max_output_tokens",
  "temperature",
  "tools",
  "tool_choice",
  "text",
  "metadata",
  "previous_response_id",
  "store",
]);

/** Fields accepted without effect, each with the values that are harmless to leave unread. */
const IGNORED_FIELDS: Record<string, (value: unknown) => boolean> = {
  truncation: (v) => v === "disabled" || v === "auto",
  service_tier: (v) => typeof v === "string",
  top_p: (v) => typeof v === "number",
  parallel_tool_calls: (v) => v === true,
  prompt_cache_key: (v) => typeof v === "string",
  safety_identifier: (v) => typeof v === "string",
  stream_options: isPlainObject,
  background: (v) => v === false,
  include: (v) => Array.isArray(v) && v.length === 0,
};

/** Why a field this gateway knows of, but cannot honour, is refused. */
const REFUSED_FIELDS: Record<string, string> = {
  conversation:
    "this gateway keeps no conversation objects: continue a response with previous_response_id, or keep the conversation server-side with user or the x-beamclaw-session-key header",
  prompt: "this gateway has no stored prompts",
  reasoning: "reasoning settings are not supported; the agent's own thinking level applies",
  background: "background responses are not supported",
  include: "include is not supported (no extra output data is available)",
  parallel_tool_calls: "parallel_tool_calls false is not supported",
  top_logprobs: "log probabilities are not supported",
  max_tool_calls: "max_tool_calls is not supported",
};

function unsupported(param: string, message: string, code = "unsupported_parameter") {
  return new RequestError(400, message, "invalid_request_error", code, param);
}

/** The `tool_choice` values this endpoint takes. */
function toolChoiceOf(choice: unknown): ModelRequest["toolChoice"] {
  if (choice === "auto" || choice === "none" || choice === "required") return choice;
  if (isPlainObject(choice) && choice.type === "function" && typeof choice.name === "string") {
    return { toolName: choice.name };
  }
  return undefined;
}

/** Checks a request's top-level fields (the input items are checked as they are converted). */
function checkResponsesRequest(body: Record<string, unknown>): void {
  for (const [field, value] of Object.entries(body)) {
    if (READ_FIELDS.has(field) || value === null || value === undefined) continue;
    const harmless = IGNORED_FIELDS[field];
    if (harmless?.(value) === true) continue;
    const refused = REFUSED_FIELDS[field];
    if (refused !== undefined) throw unsupported(field, `${field}: ${refused}`);
    throw unsupported(
      field,
      `unknown parameter '${field}' (this gateway refuses fields it would not honour)`,
      "unknown_parameter",
    );
  }
  checkOptional(body, "model", (v) => typeof v === "string", "a string");
  checkOptional(body, "instructions", (v) => typeof v === "string", "a string");
  checkOptional(body, "stream", (v) => typeof v === "boolean", "a boolean");
  checkOptional(body, "user", (v) => typeof v === "string", "a string");
  checkOptional(body, "store", (v) => typeof v === "boolean", "a boolean");
  checkOptional(
    body,
    "previous_response_id",
    (v) => typeof v === "string" && RESPONSE_ID.test(v),
    "a response id (resp_...)",
  );
  checkSampling(body, ["max_output_tokens"]);
  const metadata = body.metadata;
  if (metadata !== undefined && metadata !== null) {
    const entries = isPlainObject(metadata) ? Object.entries(metadata) : undefined;
    if (
      entries === undefined ||
      entries.length > 16 ||
      entries.some(([k, v]) => k.length > 64 || typeof v !== "string" || v.length > 512)
    ) {
      throw invalidType("metadata", "an object of at most 16 string values (up to 512 chars)");
    }
  }
  const tools = body.tools;
  checkFunctionTools(tools, false, (at, type) =>
    unsupported(
      `${at}.type`,
      `${at}.type ${JSON.stringify(type)} is not supported: only client function tools ({ type: "function", name, parameters })`,
      "unsupported_tool",
    ),
  );
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null) {
    if (toolChoiceOf(choice) === undefined) {
      throw invalidType("tool_choice", '"auto", "none", "required" or { type: "function", name }');
    }
    const hasTools = Array.isArray(tools) && tools.length > 0;
    if (!hasTools && choice !== "auto" && choice !== "none") {
      throw unsupported("tool_choice", "tool_choice asks for a tool call, and no tools were given");
    }
    const named = isPlainObject(choice) ? choice.name : undefined;
    const names = hasTools ? (tools as unknown[]).map((t) => isPlainObject(t) && t.name) : [];
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
  checkTextFormat(body.text);
}

/** Checks `text`: `{ format: { type: "text" | "json_object" } }` or a `json_schema` format. */
function checkTextFormat(text: unknown): void {
  if (text === undefined || text === null) return;
  if (!isPlainObject(text)) throw invalidType("text", "an object");
  for (const key of Object.keys(text)) {
    if (key !== "format") throw unsupported(`text.${key}`, `text.${key} is not supported`);
  }
  const format = text.format;
  if (format === undefined || format === null) return;
  if (!isPlainObject(format)) throw invalidType("text.format", "an object");
  if (format.type === "text" || format.type === "json_object") return;
  if (format.type !== "json_schema") {
    throw invalidType("text.format.type", '"text", "json_object" or "json_schema"');
  }
  checkJsonSchemaSpec(format, "text.format");
}

/** The JSON answer a (checked) `text.format` asks for, or undefined for text. */
function textFormatOf(text: unknown): ModelResponseFormat | undefined {
  const format = isPlainObject(text) ? text.format : undefined;
  if (!isPlainObject(format)) return undefined;
  if (format.type === "json_object") return JSON_OBJECT_FORMAT;
  return format.type === "json_schema" ? jsonSchemaFormat(format) : undefined;
}

const MESSAGE_ROLES = new Set(["user", "assistant", "system", "developer"]);

/** One content part of an input message, as a Chat Completions part (checked). */
function contentPart(part: unknown, role: string, at: string): OpenAiContentPart | undefined {
  if (!isPlainObject(part) || typeof part.type !== "string") {
    throw invalidType(at, "an object with a string type");
  }
  switch (part.type) {
    case "input_text":
    case "output_text":
      if (typeof part.text !== "string") throw invalidType(`${at}.text`, "a string");
      return { type: "text", text: part.text };
    case "refusal":
      // An assistant's refusal carries no content for the model: kept out, as chat does.
      if (role !== "assistant") break;
      return undefined;
    case "input_image":
    case "input_file": {
      if (role !== "user") {
        throw unsupported(
          `${at}.type`,
          `${at}: ${part.type} is supported in user messages only`,
          "unsupported_content",
        );
      }
      if (part.type === "input_image") {
        const url = part.image_url;
        if (typeof url !== "string" || !(dataUrl(url) !== undefined || /^https?:\/\//i.test(url))) {
          // `file_id` names a file uploaded to OpenAI: this gateway has no file store.
          throw invalidType(`${at}.image_url`, "a base64 data: URL or an http(s) URL");
        }
        return { type: "image_url", image_url: { url } };
      }
      const data = part.file_data;
      if (typeof data !== "string" || dataUrl(data) === undefined) {
        throw invalidType(
          `${at}.file_data`,
          "a base64 data: URL (file_id and file_url are not supported)",
        );
      }
      if (part.filename !== undefined && typeof part.filename !== "string") {
        throw invalidType(`${at}.filename`, "a string");
      }
      return {
        type: "file",
        file: {
          file_data: data,
          ...(typeof part.filename === "string" ? { filename: part.filename } : {}),
        },
      };
    }
  }
  throw unsupported(
    `${at}.type`,
    `${at}.type "${part.type}" is not supported (input_text, input_image, input_file; output_text and refusal for assistant messages)`,
    "unsupported_content",
  );
}

function nonEmptyString(item: Record<string, unknown>, field: string, at: string): string {
  const value = item[field];
  if (typeof value !== "string" || value.length === 0) {
    throw invalidType(`${at}.${field}`, "a non-empty string");
  }
  return value;
}

/**
 * The request's `input` as Chat Completions messages: a string is one user message; items
 * are `message`s (with or without `type`), `function_call`s (joined to the assistant message
 * before them) and `function_call_output`s (tool messages). Anything else is refused, naming
 * the item.
 */
function messagesOf(input: unknown): OpenAiMessage[] {
  if (typeof input === "string") {
    if (input.trim().length === 0) throw invalidType("input", "a non-empty string or items");
    return [{ role: "user", content: input }];
  }
  if (!Array.isArray(input) || input.length === 0) {
    throw invalidType("input", "a non-empty string or a non-empty array of items");
  }
  const out: OpenAiMessage[] = [];
  input.forEach((item, i) => {
    const at = `input[${i}]`;
    if (!isPlainObject(item)) throw invalidType(at, "an object");
    const type = item.type ?? (item.role === undefined ? undefined : "message");
    if (type === "message") {
      const role = item.role;
      if (typeof role !== "string" || !MESSAGE_ROLES.has(role)) {
        throw invalidType(`${at}.role`, '"user", "assistant", "system" or "developer"');
      }
      const content = item.content;
      if (typeof content === "string") out.push({ role, content });
      else if (Array.isArray(content)) {
        const parts = content
          .map((part, j) => contentPart(part, role, `${at}.content[${j}]`))
          .filter((part): part is OpenAiContentPart => part !== undefined);
        out.push({ role, content: parts });
      } else throw invalidType(`${at}.content`, "a string or an array of content parts");
      return;
    }
    if (type === "function_call") {
      const call = {
        id: nonEmptyString(item, "call_id", at),
        type: "function",
        function: {
          name: nonEmptyString(item, "name", at),
          arguments: typeof item.arguments === "string" ? item.arguments : "{}",
        },
      };
      if (item.arguments !== undefined && typeof item.arguments !== "string") {
        throw invalidType(`${at}.arguments`, "a JSON string");
      }
      const prev = out.at(-1);
      if (prev?.role === "assistant") prev.tool_calls = [...(prev.tool_calls ?? []), call];
      else out.push({ role: "assistant", content: null, tool_calls: [call] });
      return;
    }
    if (type === "function_call_output") {
      const id = nonEmptyString(item, "call_id", at);
      const output = item.output;
      if (typeof output !== "string") throw invalidType(`${at}.output`, "a string");
      out.push({ role: "tool", tool_call_id: id, content: output });
      return;
    }
    throw unsupported(
      `${at}.type`,
      `${at}.type ${JSON.stringify(type)} is not supported (message, function_call, function_call_output)`,
      "unsupported_item",
    );
  });
  return out;
}

function itemId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString("hex")}`;
}

function usageOf(usage: ModelUsage | undefined) {
  const input = usage?.inputTokens ?? 0;
  const output = usage?.outputTokens ?? 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: usage?.cacheReadTokens ?? 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: usage?.reasoningTokens ?? 0 },
    total_tokens: input + output,
  };
}

function messageItem(id: string, text: string, status: "completed" | "in_progress") {
  return {
    id,
    type: "message",
    status,
    role: "assistant",
    content: status === "in_progress" ? [] : [{ type: "output_text", text, annotations: [] }],
  };
}

function functionCallItem(id: string, call: ClientToolCall, status: "completed" | "in_progress") {
  return {
    id,
    type: "function_call",
    status,
    call_id: call.id,
    name: call.name,
    arguments: status === "in_progress" ? "" : JSON.stringify(call.input),
  };
}

/** A finished answer's status: cut by a limit or a filter, it is `incomplete`. */
function statusOf(answer: Answer): {
  status: "completed" | "incomplete";
  incomplete_details: { reason: string } | null;
} {
  const reason =
    answer.finish === "length"
      ? "max_output_tokens"
      : answer.finish === "content_filter"
        ? "content_filter"
        : answer.finish === "max_steps"
          ? "max_steps"
          : undefined;
  return reason === undefined
    ? { status: "completed", incomplete_details: null }
    : { status: "incomplete", incomplete_details: { reason } };
}

/**
 * Keeps a finished answer and its `response` object (see {@link keepConversation}); it
 * handles its own failures.
 */
type Keep = (id: string, answer: Answer, response: JsonObject) => Promise<void>;

/**
 * The Responses API's answers: a `response` object, or its SSE events. With `keep`, a
 * finished answer is kept (for `previous_response_id` and `GET /v1/responses/{id}`) before
 * its body or its last event is written, so that a follow-up sent as soon as the client has
 * the answer finds it.
 */
function responsesDialect(body: Record<string, unknown>, keep: Keep | undefined): Dialect {
  const stored = keep !== undefined;
  const model = typeof body.model === "string" ? body.model : "beamclaw";
  const echo = (field: string, otherwise: unknown) => body[field] ?? otherwise;
  const response = (
    id: string,
    created: number,
    status: string,
    output: unknown[],
    more: { usage?: ModelUsage | undefined; error?: unknown; incomplete_details?: unknown } = {},
  ) => ({
    id,
    object: "response",
    created_at: created,
    status,
    error: more.error ?? null,
    incomplete_details: more.incomplete_details ?? null,
    instructions: echo("instructions", null),
    max_output_tokens: echo("max_output_tokens", null),
    model,
    output,
    parallel_tool_calls: true,
    previous_response_id: echo("previous_response_id", null),
    store: stored,
    temperature: echo("temperature", null),
    // Always present in OpenAI's response object; `top_p` is accepted but never applied here.
    top_p: null,
    text: { format: (isPlainObject(body.text) && body.text.format) || { type: "text" } },
    tool_choice: echo("tool_choice", "auto"),
    tools: echo("tools", []),
    user: echo("user", null),
    metadata: echo("metadata", {}),
    usage: status === "in_progress" ? null : usageOf(more.usage),
  });
  return {
    keyword: "responses",
    idOf: (seed) => `resp_${seed.replace(/-/g, "")}`,
    async body(id, created, answer) {
      const output: unknown[] = [];
      if (answer.text.length > 0 || answer.calls.length === 0) {
        output.push(messageItem(itemId("msg"), answer.text, "completed"));
      }
      for (const call of answer.calls)
        output.push(functionCallItem(itemId("fc"), call, "completed"));
      const { status, incomplete_details } = statusOf(answer);
      const done = response(id, created, status, output, {
        usage: answer.usage,
        incomplete_details,
      });
      await keep?.(id, answer, done as unknown as JsonObject);
      return done;
    },
    stream(res, id, created): AnswerStream {
      let sequence = 0;
      const emit = (type: string, fields: Record<string, unknown>) =>
        sse(res, { type, sequence_number: sequence++, ...fields }, type);
      const output: unknown[] = [];
      let message: { id: string; index: number; text: string } | undefined;
      const openMessage = () => {
        if (message !== undefined) return message;
        message = { id: itemId("msg"), index: output.length, text: "" };
        const item = messageItem(message.id, "", "in_progress");
        output.push(item);
        emit("response.output_item.added", { output_index: message.index, item });
        emit("response.content_part.added", {
          item_id: message.id,
          output_index: message.index,
          content_index: 0,
          part: { type: "output_text", text: "", annotations: [] },
        });
        return message;
      };
      const closeMessage = () => {
        if (message === undefined) return;
        const { id: itemIdOf, index, text } = message;
        const at = { item_id: itemIdOf, output_index: index, content_index: 0 };
        emit("response.output_text.done", { ...at, text, logprobs: [] });
        emit("response.content_part.done", {
          ...at,
          part: { type: "output_text", text, annotations: [] },
        });
        const item = messageItem(itemIdOf, text, "completed");
        output[index] = item;
        emit("response.output_item.done", { output_index: index, item });
        message = undefined;
      };
      emit("response.created", { response: response(id, created, "in_progress", []) });
      emit("response.in_progress", { response: response(id, created, "in_progress", []) });
      return {
        text(delta) {
          const open = openMessage();
          open.text += delta;
          emit("response.output_text.delta", {
            item_id: open.id,
            output_index: open.index,
            content_index: 0,
            delta,
            logprobs: [],
          });
        },
        toolCall(call) {
          closeMessage();
          const fc = itemId("fc");
          const index = output.length;
          const started = functionCallItem(fc, call, "in_progress");
          output.push(started);
          emit("response.output_item.added", { output_index: index, item: started });
          const args = JSON.stringify(call.input);
          const at = { item_id: fc, output_index: index };
          emit("response.function_call_arguments.delta", { ...at, delta: args });
          emit("response.function_call_arguments.done", {
            ...at,
            name: call.name,
            arguments: args,
          });
          const item = functionCallItem(fc, call, "completed");
          output[index] = item;
          emit("response.output_item.done", { output_index: index, item });
        },
        async done(answer) {
          if (output.length === 0) openMessage();
          closeMessage();
          const { status, incomplete_details } = statusOf(answer);
          const done = response(id, created, status, output, {
            usage: answer.usage,
            incomplete_details,
          });
          await keep?.(id, answer, done as unknown as JsonObject);
          emit(status === "completed" ? "response.completed" : "response.incomplete", {
            response: done,
          });
          res.end();
        },
        fail(message, code) {
          emit("response.failed", {
            response: response(id, created, "failed", output, {
              error: { code: code ?? "server_error", message },
            }),
          });
          res.end();
        },
      };
    },
  };
}

/**
 * Handles `POST /v1/responses` (the router has checked the method, origin, content type and
 * bearer token, and that `gateway.http.responses` is on).
 */
export async function handleResponses(
  hub: GatewayHub,
  req: IncomingMessage,
  res: ServerResponse,
  options: {
    maxBodyBytes: number;
    /** How long a stateless response is kept (0: none). Default {@link KEPT_RESPONSE_TTL_MS}. */
    keepMs?: number;
  },
): Promise<void> {
  const keepMs = options.keepMs ?? KEPT_RESPONSE_TTL_MS;
  const body = await readJsonObject(req, res, options.maxBodyBytes);
  if (body === undefined) return;
  try {
    if (hub.draining)
      throw new RequestError(503, "the gateway is shutting down", "server_error", "shutting_down");
    checkResponsesRequest(body);
    const agent = agentForModel(hub, body.model);
    const tools = Array.isArray(body.tools) ? body.tools : [];
    // Without client tools, `user` or the session header make the turn one of a session that
    // keeps its own history: a response of it is not kept, nor continued by id.
    const keptSession = tools.length === 0 && namesKeptSession(req, body.user);
    const previousId =
      typeof body.previous_response_id === "string" ? body.previous_response_id : undefined;
    if (previousId !== undefined && keptSession) {
      throw unsupported(
        "previous_response_id",
        "previous_response_id continues a kept response's conversation, and user or the x-beamclaw-session-key header name a session that keeps its own: send one or the other",
        "conflicting_parameters",
      );
    }
    const input = messagesOf(body.input);
    if (tools.length === 0 && input.some((m) => m.role === "tool" || m.tool_calls)) {
      // A session turn is sent only the last user message: the calls and their results would
      // be lost. The client-tools call that takes them needs the tools again.
      throw unsupported(
        "tools",
        "function_call and function_call_output items go to a call with client tools: send the tools again",
        "missing_tools",
      );
    }
    // A continued conversation's earlier tool calls need no tools now: without them the turn
    // runs in a fresh session, which is sent the whole conversation as text.
    const previous = previousId === undefined ? undefined : await keptConversation(hub, previousId);
    const messages = [...(previous?.messages ?? []), ...input];
    const stored = body.store !== false && !keptSession && keepMs > 0;
    const toolChoice = toolChoiceOf(body.tool_choice);
    const maxOutputTokens = positive(body.max_output_tokens);
    const keep: Keep | undefined = stored
      ? (id, answer, response) =>
          keepConversation(
            hub,
            id,
            { previousId, previous, input, messages, keepMs },
            answer,
            response,
          )
      : undefined;
    await runTurn(hub, req, res, responsesDialect(body, keep), {
      agent,
      messages,
      stream: body.stream === true,
      user: body.user,
      format: textFormatOf(body.text),
      tools: tools.map((t) => toolDefinition(t as Record<string, unknown>)),
      ...(toolChoice === undefined ? {} : { toolChoice }),
      ...(maxOutputTokens === undefined ? {} : { maxOutputTokens }),
      ...(typeof body.temperature === "number" ? { temperature: body.temperature } : {}),
      ...(typeof body.instructions === "string" ? { instructions: body.instructions } : {}),
    });
  } catch (error) {
    sendRequestFailure(res, error);
  }
}

/**
 * What is kept of a response: the items it added to the conversation (its input and answer)
 * and the id of the response it continued, whose own record holds the rest. Every
 * {@link SNAPSHOT_EVERY}th response of a chain keeps the whole conversation instead, so that a
 * long conversation is neither copied whole at every turn (a store holding n turns n² times)
 * nor read back through every link.
 */
interface KeptResponse {
  v: 1;
  /** The response this one continued, or null when `messages` is the whole conversation. */
  previous: string | null;
  /** Links from here back to the last whole copy (0 for a whole copy). */
  depth: number;
  messages: OpenAiMessage[];
  /** The `response` object as the client got it (for `GET /v1/responses/{id}`). */
  response: JsonObject;
}

/** How many responses of a chain keep only what they added before one keeps it all. */
const SNAPSHOT_EVERY = 32;

/** A kept response's whole conversation, and its record's `depth`. */
interface KeptConversation {
  messages: OpenAiMessage[];
  depth: number;
}

function isKeptResponse(value: JsonValue | undefined): value is JsonObject & KeptResponse {
  return (
    isPlainObject(value) &&
    value.v === 1 &&
    (value.previous === null || typeof value.previous === "string") &&
    typeof value.depth === "number" &&
    Array.isArray(value.messages) &&
    isPlainObject(value.response)
  );
}

/**
 * The conversation of the kept response `id` (its input and answer after the conversations
 * it continued), to continue it. OpenAI's `previous_response_not_found` when there is none:
 * never kept (`store: false`, a session's turn, a failed answer), expired (or a response it
 * continued has expired), or another store's.
 */
async function keptConversation(hub: GatewayHub, id: string): Promise<KeptConversation> {
  const parts: OpenAiMessage[][] = [];
  let depth: number | undefined;
  let at: string | null = id;
  for (let hops = 0; at !== null && hops <= SNAPSHOT_EVERY; hops++) {
    const kept: JsonValue | undefined = await hub.runtime.store.kv.get(KEPT_PREFIX + at);
    if (!isKeptResponse(kept)) break;
    depth ??= kept.depth;
    parts.push(kept.messages);
    at = kept.previous;
  }
  if (at !== null || depth === undefined) {
    throw new RequestError(
      400,
      `Previous response with id '${id}' not found.`,
      "invalid_request_error",
      "previous_response_not_found",
      "previous_response_id",
    );
  }
  return { messages: parts.reverse().flat(), depth };
}

/**
 * Keeps a finished answer's conversation under its id. A store that refuses it costs the
 * continuation only: the answer is still sent (a follow-up by id then gets
 * `previous_response_not_found`, and the client can send the whole conversation instead).
 */
async function keepConversation(
  hub: GatewayHub,
  id: string,
  turn: {
    previousId: string | undefined;
    previous: KeptConversation | undefined;
    /** This request's items. */
    input: OpenAiMessage[];
    /** The whole conversation (the previous one, then the input). */
    messages: OpenAiMessage[];
    keepMs: number;
  },
  answer: Answer,
  response: JsonObject,
): Promise<void> {
  const reply: OpenAiMessage = { role: "assistant", content: answer.text };
  if (answer.calls.length > 0) {
    reply.tool_calls = answer.calls.map((call) => ({
      id: call.id,
      type: "function",
      function: { name: call.name, arguments: JSON.stringify(call.input) },
    }));
  }
  const { previousId, previous } = turn;
  const whole =
    previousId === undefined || previous === undefined || previous.depth + 1 >= SNAPSHOT_EVERY;
  const kept: KeptResponse = whole
    ? { v: 1, previous: null, depth: 0, messages: [...turn.messages, reply], response }
    : {
        v: 1,
        previous: previousId,
        depth: previous.depth + 1,
        messages: [...turn.input, reply],
        response,
      };
  try {
    await hub.runtime.store.kv.set(KEPT_PREFIX + id, kept as unknown as JsonObject, {
      ttlMs: turn.keepMs,
    });
  } catch (error) {
    hub.log.warn(
      `response ${id} was not kept for previous_response_id: ${(error as Error).message ?? String(error)}`,
    );
  }
}

/** The path of one kept response: `/v1/responses/{id}`. */
export const RESPONSE_ITEM_PATH = /^\/v1\/responses\/(resp_[A-Za-z0-9_-]{1,128})$/;

/**
 * Handles `GET /v1/responses/{id}` (the kept `response` object, as the client got it) and
 * `DELETE /v1/responses/{id}` (`{ id, object: "response", deleted: true }`). A response that
 * is not kept is a 404. Deleting a response also ends the chains that continue it: their
 * earlier part is gone, so `previous_response_id` naming them is `previous_response_not_found`.
 * The router has checked the method, origin and bearer token, and that the endpoint is on.
 */
export async function handleResponseItem(
  hub: GatewayHub,
  req: IncomingMessage,
  res: ServerResponse,
  id: string,
): Promise<void> {
  try {
    const key = KEPT_PREFIX + id;
    const kept = await hub.runtime.store.kv.get(key);
    if (!isKeptResponse(kept)) {
      throw new RequestError(
        404,
        `No response found with id '${id}'.`,
        "invalid_request_error",
        "not_found",
      );
    }
    if (req.method === "DELETE") {
      await hub.runtime.store.kv.delete(key);
      return sendJson(res, 200, { id, object: "response", deleted: true });
    }
    sendJson(res, 200, kept.response);
  } catch (error) {
    sendRequestFailure(res, error);
  }
}
