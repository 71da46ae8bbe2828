/**
 * OpenAI Chat Completions (`POST /chat/completions` with `stream: true`), shared by the
 * OpenAI provider and every OpenAI-compatible server.
 *
 * Stream: `data:` chunks of `chat.completion.chunk` whose `choices[0].delta` carries
 * `content`, `refusal`, or `tool_calls[]` fragments (`index`, then `id` and `function.name`
 * once, then `function.arguments` pieces); a chunk with `finish_reason`; with
 * `stream_options.include_usage` a last chunk with empty `choices` and `usage`; then
 * `data: [DONE]`. A failure after the 200 arrives as a chunk `{"error": {...}}`.
 */
import {
  answerToolCalls,
  type FilePart,
  type FinishReason,
  type JsonObject,
  type ModelCallOptions,
  type ModelMessage,
  type ModelRequest,
  type ModelResponseFormat,
  type ModelStreamEvent,
  type ModelUsage,
  ProviderError,
  type ProviderErrorKind,
  type ThinkingLevel,
  type ToolResultPart,
} from "@beamclaw/core";
import { LRUCache } from "lru-cache";
import { BLANK_MESSAGE_TEXT, hasText, userContent } from "./blank-text.js";
import {
  type CallContext,
  errorFromStreamEvent,
  kindFromStatus,
  parseGoDuration,
  providerError,
  restatedError,
  type VendorErrorInfo,
} from "./errors.js";
import {
  checkBaseUrl,
  checkTimeout,
  createHttpClient,
  DEFAULT_TIMEOUT_MS,
  type HttpClient,
  type ProviderHttpOptions,
  type StreamResponse,
} from "./http.js";
import {
  endsEarly,
  field,
  isWholeJson,
  isWire,
  lookup,
  numberField,
  parseToolInput,
  stringField,
  toolInputText,
  toolOutputText,
  withProviderOptions,
} from "./json.js";
import { checkRequest, modelOf } from "./request.js";
import { parseSseJson, readSse, streamCutError } from "./sse.js";

/** Error codes whose meaning does not depend on the status they came with. */
const OPENAI_CODE_KINDS: Record<string, ProviderErrorKind> = {
  rate_limit_exceeded: "rate_limit",
  insufficient_quota: "rate_limit",
  invalid_api_key: "auth",
  context_length_exceeded: "invalid_request",
  model_not_found: "invalid_request",
  // The Responses API's `response.error.code`s (`response.failed`): the request's fault,
  // which a retry of the same request cannot fix, or a timeout.
  invalid_prompt: "invalid_request",
  invalid_image: "invalid_request",
  invalid_image_format: "invalid_request",
  invalid_base64_image: "invalid_request",
  invalid_image_url: "invalid_request",
  image_too_large: "invalid_request",
  image_too_small: "invalid_request",
  image_parse_error: "invalid_request",
  image_content_policy_violation: "invalid_request",
  invalid_image_mode: "invalid_request",
  image_file_too_large: "invalid_request",
  unsupported_image_media_type: "invalid_request",
  empty_image_file: "invalid_request",
  failed_to_download_image: "invalid_request",
  image_file_not_found: "invalid_request",
  vector_store_timeout: "timeout",
};

const OPENAI_TYPE_KINDS: Record<string, ProviderErrorKind> = {
  server_error: "server",
  invalid_request_error: "invalid_request",
  authentication_error: "auth",
  permission_error: "auth",
  rate_limit_error: "rate_limit",
  requests: "rate_limit",
  tokens: "rate_limit",
  insufficient_quota: "rate_limit",
};

/**
 * The kinds of Hugging Face text-generation-inference's `error_type`s (its router's
 * `InferError`), which say more than the status they come with, and are all an error event in
 * a stream has: `overloaded` comes with HTTP 429 (its limit of concurrent requests is reached:
 * an overload, not the caller's rate limit); `generation` with HTTP 424 (a shard failed while
 * generating: the server's fault, not the request's).
 */
const TGI_ERROR_TYPE_KINDS: Record<string, ProviderErrorKind> = {
  overloaded: "overloaded",
  validation: "invalid_request",
  generation: "server",
  incomplete_generation: "server",
};

/**
 * The HTTP client of an API in OpenAI's shape (OpenAI itself, and every server that copies
 * it): `baseUrl` (checked, default `fallbackUrl`), the key as `Authorization: Bearer` when
 * there is one, the caller's headers, time limit and `fetch`, and OpenAI's error bodies.
 */
export function createOpenAIHttpClient(
  options: Pick<ProviderHttpOptions, "baseUrl" | "headers" | "timeoutMs" | "fetch">,
  apiKey: string | undefined,
  fallbackUrl: string,
): HttpClient {
  return createHttpClient({
    baseUrl: checkBaseUrl(options.baseUrl, fallbackUrl),
    headers: {
      ...(apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` }),
      ...options.headers,
    },
    timeoutMs: checkTimeout("timeoutMs", options.timeoutMs, DEFAULT_TIMEOUT_MS),
    fetch: options.fetch,
    parseVendorError: parseOpenAIError,
  });
}

/**
 * Reads OpenAI's `{"error": {"message", "type", "param", "code"}}`; the Responses API's
 * stream `error` event and `response.error` put `code` and `message` at the top level, which
 * this reads too. `insufficient_quota` (no credit left) is a 429 that retrying cannot fix.
 * Some compatible servers send the message alone, as a string: `{"error": "<message>"}`
 * (LM Studio: `{"error": "'response_format.type' must be 'json_schema' or 'text'"}`,
 * t59688/arboris-novel#23, lmstudio-ai/lmstudio-bug-tracker#2203; Ollama's native API: HTTP
 * 404 `{"error": "model 'x' not found"}`, CrestApps/CrestApps.Core#142); its kind then comes
 * from the status. Hugging Face text-generation-inference adds its kind beside it, `{"error":
 * "Model is overloaded", "error_type": "overloaded"}`, as an HTTP error's body and as an event
 * of a stream: a kind of {@link TGI_ERROR_TYPE_KINDS} is the error's.
 *
 * OpenAI's `rate_limit_exceeded` message says how long to wait ("… Please try again in
 * 9.816s."), which becomes `retryAfterMs`: all an error event in a stream has, no header
 * coming with it. Its "Request too large for gpt-4o … on tokens per min (TPM): Limit 30000,
 * Requested 31538" is a request bigger than the whole limit, which no wait lets through: not
 * retryable (another model, with its own limit, may still take it).
 *
 * OpenRouter's HTTP 403 for input its moderation flagged (`error.metadata` with `reasons` and
 * `flagged_input`) is the request's fault, as OpenAI's `invalid_prompt` is: `invalid_request`,
 * not the `auth` of a 403, which would count against the ref's circuit.
 */
export function parseOpenAIError(body: unknown): VendorErrorInfo {
  const wrapped = field(body, "error");
  const error = isWire(wrapped) ? wrapped : body;
  const type = stringField(error, "type");
  const code = stringField(error, "code");
  const message =
    stringField(error, "message") ||
    (typeof wrapped === "string" && wrapped.trim() !== "" ? wrapped : undefined);
  // TGI's `error_type`, read only beside a message given as a string (its shape).
  const errorType = typeof wrapped === "string" ? stringField(body, "error_type") : undefined;
  const name = code ?? type ?? errorType;
  const kind = lookup(OPENAI_CODE_KINDS, code) ?? lookup(TGI_ERROR_TYPE_KINDS, errorType);
  // vLLM, OpenRouter and others put an HTTP status in `code` (`"code": 400`), which is all an
  // error event in a stream (sent after the 200) has to say what kind it is.
  const status = numberField(error, "code");
  const streamKind =
    lookup(OPENAI_TYPE_KINDS, type) ??
    lookup(OPENAI_TYPE_KINDS, code) ??
    (status !== undefined && Number.isInteger(status) && status >= 400 && status <= 599
      ? kindFromStatus(status)
      : undefined);
  const quota = code === "insufficient_quota" || type === "insufficient_quota";
  const rateLimited = code === "rate_limit_exceeded";
  const wait = rateLimited ? RATE_LIMIT_WAIT.exec(message ?? "")?.[1] : undefined;
  const retryAfterMs = wait === undefined ? undefined : parseGoDuration(wait);
  const tooLarge = rateLimited && /^Request too large\b/i.test(message ?? "");
  const flagged = stringField(field(error, "metadata"), "flagged_input") !== undefined;
  return {
    ...(name === undefined ? {} : { type: name }),
    ...(message === undefined ? {} : { message }),
    ...(kind === undefined ? {} : { kind }),
    ...(streamKind === undefined ? {} : { streamKind }),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    ...(quota || tooLarge ? { kind: "rate_limit" as const, isRetryable: false } : {}),
    ...(flagged ? { kind: "invalid_request" as const } : {}),
  };
}

/** The wait an OpenAI rate-limit message asks for: "Please try again in 9.816s." */
const RATE_LIMIT_WAIT = /\btry again in ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)/i;

const FINISH_REASONS: Record<string, FinishReason> = {
  stop: "stop",
  length: "length",
  tool_calls: "tool-calls",
  function_call: "tool-calls",
  content_filter: "content-filter",
};

/** Maps a Chat Completions `finish_reason` to the normalized finish reason. */
export function mapChatFinishReason(reason: string | undefined): FinishReason {
  if (reason === undefined) return "other";
  return lookup(FINISH_REASONS, reason) ?? "other";
}

/** How one server's Chat Completions dialect differs. */
export interface ChatDialect {
  /** `max_completion_tokens` (OpenAI) or `max_tokens` (most compatible servers). */
  maxTokensField: "max_completion_tokens" | "max_tokens";
  /** Ask for a final usage chunk with `stream_options.include_usage`. */
  includeUsage: boolean;
  /**
   * True when the stream must end with `data: [DONE]`. Some compatible servers close the
   * stream after the `finish_reason` chunk instead; with `false` that counts as complete.
   */
  requireDone: boolean;
  /** Env variable named in the "no API key" error, or undefined when a key is optional. */
  apiKeyEnv: string | undefined;
  /** Send the request's `cacheKey` as `prompt_cache_key` (OpenAI routes by it). */
  promptCacheKey: boolean;
  /** Send the request's `responseFormat` as `response_format` (type `json_schema`). */
  responseFormat: boolean;
  /**
   * The server is OpenAI's, whose model ids say which models reason: `reasoning_effort` is
   * not sent to those that do not (see {@link openAIModelReasons}), which refuse it.
   */
  openAIModels?: boolean;
  /**
   * Rewrite tool call ids into Mistral's form (see {@link mistralToolCallIds}): `true` always,
   * `false` never, undefined for the models whose id names a Mistral family.
   */
  mistralToolCallIds?: boolean;
}

/** Model ids of the Mistral families, whose chat templates accept only 9-character call ids. */
const MISTRAL_MODEL = /(?:mistral|mixtral|ministral|codestral|devstral|magistral|pixtral|voxtral)/i;

/** A tool call id Mistral accepts: exactly 9 of `a-z`, `A-Z`, `0-9`. */
const MISTRAL_ID = /^[a-zA-Z0-9]{9}$/;

const BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** 9 base-62 characters from a 64-bit FNV-1a hash of `text` (with `salt`). */
function base62Digest(text: string, salt: number): string {
  let hash = 0xcbf29ce484222325n ^ BigInt(salt);
  for (let i = 0; i < text.length; i++) {
    hash ^= BigInt(text.charCodeAt(i));
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  let out = "";
  for (let i = 0; i < 9; i++) {
    out += BASE62[Number(hash % 62n)];
    hash /= 62n;
  }
  return out;
}

/**
 * The tool call ids of one request in the form Mistral requires (`[a-zA-Z0-9]{9}`): its API
 * refuses any other with HTTP 400 ("Tool call id was toolu_01… but must be a-z, A-Z, 0-9,
 * with a length of 9."), and so do Mistral models' chat templates on vLLM, llama.cpp or MLX.
 * Ids from another vendor (after a failover, or a session that changed models) or made up
 * here are mapped to 9 characters derived from them: the same id maps the same way on the
 * assistant's call and on its result, and from one request to the next (the prompt stays
 * cacheable); two ids of one request never map to one. Ids already in that form are kept.
 */
export function mistralToolCallIds(): (id: string) => string {
  const mapped = new Map<string, string>();
  const taken = new Map<string, string>();
  return (id) => {
    const known = mapped.get(id);
    if (known !== undefined) return known;
    let next = MISTRAL_ID.test(id) ? id : base62Digest(id, 0);
    for (let salt = 1; taken.has(next) && taken.get(next) !== id; salt++) {
      next = base62Digest(id, salt);
    }
    mapped.set(id, next);
    taken.set(next, id);
    return next;
  };
}

/**
 * False for the OpenAI models that do not reason (the GPT-4 and GPT-3.5 families, fine-tuned
 * ones included, and `chatgpt-4o`): they refuse a reasoning effort with HTTP 400
 * ("Unsupported parameter: 'reasoning.effort' is not supported with this model"), so a
 * request's `thinking` is not sent to them. Every other model (o-series, GPT-5 and later) is
 * assumed to reason.
 */
export function openAIModelReasons(model: string): boolean {
  return !/^(?:ft:)?(?:gpt-4|gpt-3\.5|chatgpt-4o)/i.test(model);
}

/** What OpenAI said when it refused a request with HTTP 400: its `error` object's fields. */
export interface OpenAIRefusal {
  code: string | undefined;
  param: string | undefined;
  message: string;
  /** The error the HTTP client threw for it. */
  error: ProviderError;
}

/** The refusal an HTTP 400 `ProviderError` carries in its OpenAI error body; else undefined. */
export function openAIRefusal(error: unknown): OpenAIRefusal | undefined {
  if (!ProviderError.isInstance(error) || error.statusCode !== 400) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(error.responseBody ?? "");
  } catch {
    return undefined;
  }
  const inner = field(body, "error");
  if (!isWire(inner)) return undefined;
  return {
    code: stringField(inner, "code"),
    param: stringField(inner, "param"),
    message: stringField(inner, "message") ?? "",
    error,
  };
}

/** The reasoning efforts of a request's `thinking`, least first. */
const EFFORTS: readonly ThinkingLevel[] = ["minimal", "low", "medium", "high"];

/** `param` of a refused reasoning effort: the Responses API's, then Chat Completions'. */
function isEffortParam(param: string | undefined): boolean {
  return param === "reasoning.effort" || param === "reasoning_effort";
}

/**
 * The effort nearest `requested` among those an OpenAI refusal lists ("Unsupported value:
 * 'reasoning.effort' does not support 'minimal' with this model. Supported values are: 'low',
 * 'medium', and 'high'."): of two as near, the higher. Undefined when it lists none of
 * `minimal`, `low`, `medium`, `high`.
 */
export function nearestEffort(requested: string, message: string): ThinkingLevel | undefined {
  const list = /supported values are:?(.*)$/is.exec(message)?.[1];
  if (list === undefined) return undefined;
  const offered = new Set([...list.matchAll(/'([^']+)'/g)].map((match) => match[1]));
  const at = EFFORTS.indexOf(requested as ThinkingLevel);
  let best: ThinkingLevel | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const [i, level] of EFFORTS.entries()) {
    const distance = Math.abs(i - at);
    if (offered.has(level) && distance <= bestDistance) {
      best = level;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * What an OpenAI provider learned from its models' refusals of a request's `thinking`, per
 * model and level: the effort to send instead (the nearest one the model's refusal lists), or
 * none (a model that takes no reasoning effort at all). Kept for the 256 most recently used
 * (model, level) pairs of one provider instance, so that only the first call pays the refusal.
 */
export class OpenAIEffortMemory {
  /** Per `model\nlevel`: the effort learned, `"none"` for none (the cache keeps no null). */
  readonly #efforts = new LRUCache<string, ThinkingLevel | "none">({ max: 256 });

  /** The effort to send to `model` for `thinking`; null for none. */
  effort(model: string, thinking: ThinkingLevel): ThinkingLevel | null {
    // `get` makes the entry the most recently used.
    const learned = this.#efforts.get(`${model}\n${thinking}`);
    return learned === undefined ? thinking : learned === "none" ? null : learned;
  }

  /**
   * Learns from `refusal` of the effort `sent` for `thinking`: returns the effort to send
   * instead (null: none), or undefined when the refusal is not of the effort or names no
   * other level the model takes.
   */
  learn(
    model: string,
    thinking: ThinkingLevel,
    sent: string,
    refusal: OpenAIRefusal,
  ): ThinkingLevel | null | undefined {
    if (!isEffortParam(refusal.param)) return undefined;
    let next: ThinkingLevel | null | undefined;
    // "Unsupported parameter: 'reasoning.effort' is not supported with this model": a model
    // that does not reason, as the GPT-4 family, which `openAIModelReasons` cannot all know.
    if (refusal.code === "unsupported_parameter") next = null;
    else if (refusal.code === "unsupported_value") next = nearestEffort(sent, refusal.message);
    if (next === undefined || next === sent) return undefined;
    this.#efforts.set(`${model}\n${thinking}`, next ?? "none");
    return next;
  }
}

/**
 * A refusal of one of the request's options said plainly (see `restatedError`): `temperature`
 * (OpenAI's reasoning models sample at a fixed temperature and refuse one, "Unsupported
 * parameter: 'temperature' is not supported with this model"), or a reasoning effort the
 * model does not take. Undefined for any other refusal.
 */
export function refusedOptionError(
  refusal: OpenAIRefusal,
  request: ModelRequest,
  context: CallContext,
  sentEffort: unknown,
): ProviderError | undefined {
  const vendor = [refusal.code, refusal.message].filter(Boolean).join(": ");
  if (refusal.param === "temperature") {
    const value = request.temperature === undefined ? "" : ` (${request.temperature})`;
    return restatedError(
      refusal.error,
      context,
      `${request.model} does not take \`temperature\`${value}: leave it unset for this model`,
      vendor,
    );
  }
  if (isEffortParam(refusal.param)) {
    const effort = typeof sentEffort === "string" ? ` ${JSON.stringify(sentEffort)}` : "";
    return restatedError(
      refusal.error,
      context,
      `${request.model} does not take the reasoning effort${effort}: set \`thinking\` to a level it takes`,
      vendor,
    );
  }
  return undefined;
}

/**
 * Posts a stream request. When OpenAI refuses it (HTTP 400, before anything streamed) in a
 * way `mend` can put right, it is sent again as `mend` returns it (`mend` sees the refusal and
 * the body refused, and mends each thing once: it returns undefined once it has nothing more
 * to change). A refusal it cannot mend is thrown, said plainly by `restate` when it can.
 * Every send follows the call's signal: an abort meanwhile ends it with `AbortedError`.
 */
export async function postMending(
  http: HttpClient,
  path: string,
  body: JsonObject,
  context: CallContext,
  options: ModelCallOptions,
  mend: (refusal: OpenAIRefusal, refused: JsonObject) => JsonObject | undefined,
  restate: (refusal: OpenAIRefusal, refused: JsonObject) => ProviderError | undefined,
): Promise<StreamResponse> {
  let current = body;
  for (;;) {
    try {
      return await http.postEventStream(path, current, context, options);
    } catch (error) {
      const refusal = openAIRefusal(error);
      if (refusal === undefined) throw error;
      const mended = mend(refusal, current);
      if (mended === undefined) throw restate(refusal, current) ?? error;
      current = mended;
    }
  }
}

/** An image part as the URL OpenAI expects: a `data:` URL for inline data. */
export function imageUrl(
  part: { mediaType: string; data?: string; url?: string },
  context: CallContext,
): string {
  if (part.data !== undefined) return `data:${part.mediaType};base64,${part.data}`;
  if (part.url !== undefined) return part.url;
  throw providerError("invalid_request", "an image part needs `data` or `url`", context);
}

/** A default file name for a document the caller gave none: OpenAI asks for one. */
export function fileName(part: FilePart): string {
  if (part.filename !== undefined && part.filename !== "") return part.filename;
  const extension = part.mediaType === "application/pdf" ? "pdf" : "bin";
  return `document.${extension}`;
}

/**
 * A document as a Chat Completions `file` content part: inline data only (Chat Completions
 * takes no file URL; upload it and send the text, or use the Responses API).
 */
function chatFile(part: FilePart, context: CallContext): JsonObject {
  if (part.data === undefined) {
    throw providerError(
      "invalid_request",
      "Chat Completions takes a file part only as inline `data` (the Responses API takes a `url`)",
      context,
    );
  }
  return {
    type: "file",
    file: { filename: fileName(part), file_data: `data:${part.mediaType};base64,${part.data}` },
  };
}

/**
 * The `format` of the thinking parts made from reasoning that the provider `providerId`
 * streamed as `delta.reasoning_content` (DeepSeek, Moonshot, llama.cpp, older vLLM). Their
 * text goes back to that provider, and only to it, as the assistant message's
 * `reasoning_content`: DeepSeek's thinking mode refuses a request whose tool-calling
 * assistant messages lack it, while strict servers (OpenAI, Groq) refuse the unknown field.
 */
export function reasoningContentFormat(providerId: string): string {
  return `openai-chat:${providerId}:reasoning_content`;
}

/**
 * The `format` of the thinking part that keeps the `reasoning_details` the provider
 * `providerId` streamed (OpenRouter: `reasoning.text` with its `signature`, `reasoning.summary`,
 * `reasoning.encrypted`), as their JSON text in its `signature`. They go back to that provider,
 * and only to it, as the assistant message's `reasoning_details`, as OpenRouter asks for tool
 * loops of reasoning models: Gemini 3 refuses a function call sent back without its thought
 * signature, and Claude's extended thinking needs its signed blocks.
 */
export function reasoningDetailsFormat(providerId: string): string {
  return `openai-chat:${providerId}:reasoning_details`;
}

/**
 * Merges one streamed `reasoning_details` entry into `details`: entries come in pieces that
 * share their `index` and `type`, whose `text` and `summary` add up, while a `signature`,
 * `data` or `id` comes whole, once (earlier pieces carry it empty).
 */
function mergeReasoningDetail(details: JsonObject[], piece: unknown): void {
  if (!isWire(piece) || typeof piece.type !== "string") return;
  const index = piece.index;
  const same =
    typeof index === "number"
      ? details.find((detail) => detail.index === index && detail.type === piece.type)
      : undefined;
  if (same === undefined) {
    details.push({ ...(piece as JsonObject) });
    return;
  }
  for (const [key, value] of Object.entries(piece)) {
    if ((key === "text" || key === "summary") && typeof value === "string") {
      same[key] = (typeof same[key] === "string" ? same[key] : "") + value;
    } else if (value !== null && value !== undefined && value !== "") {
      same[key] = value as JsonObject[string];
    }
  }
}

/** The `reasoning_details` kept in a thinking part's `signature` (see above); none if unreadable. */
function keptReasoningDetails(signature: string | undefined): JsonObject[] {
  if (signature === undefined) return [];
  try {
    const parsed = JSON.parse(signature) as unknown;
    return Array.isArray(parsed) ? parsed.filter(isWire).map((d) => d as JsonObject) : [];
  } catch {
    return [];
  }
}

/**
 * Maps the normalized conversation to Chat Completions `messages`. Reasoning that
 * `context.provider` streamed as `reasoning_content` goes back in that field (see
 * {@link reasoningContentFormat}); any other thinking is left out.
 */
export function toChatMessages(
  request: ModelRequest,
  context: CallContext,
  callId: (id: string) => string = keepId,
): JsonObject[] {
  const out: JsonObject[] = [];
  if (request.system !== undefined && request.system !== "") {
    out.push({ role: "system", content: request.system });
  }
  const messages = answerToolCalls(request.messages);
  /** Images of the tool results just mapped, for a user message after the last of them. */
  let images: JsonObject[] = [];
  for (const [i, message] of messages.entries()) {
    if (message.role !== "tool" && images.length > 0) {
      out.push({ role: "user", content: images });
      images = [];
    }
    out.push(...chatMessage(message, context, callId, i === messages.length - 1));
    if (message.role === "tool") images.push(...toolResultImages(message.content, context, callId));
  }
  if (images.length > 0) out.push({ role: "user", content: images });
  return out;
}

/**
 * The images of tool results as user content parts: a tool message takes text only, so the
 * images of a step's results go in a user message right after its tool messages, each
 * result's images after a text naming the call they belong to.
 */
function toolResultImages(
  results: ToolResultPart[],
  context: CallContext,
  callId: (id: string) => string,
): JsonObject[] {
  const parts: JsonObject[] = [];
  for (const result of results) {
    const images = (result.images ?? []).filter(
      (image) => image.data !== undefined || image.url !== undefined,
    );
    if (images.length === 0) continue;
    parts.push({
      type: "text",
      text: `The images returned by tool call ${callId(result.toolCallId)} (${result.toolName}):`,
    });
    for (const image of images) {
      parts.push({ type: "image_url", image_url: { url: imageUrl(image, context) } });
    }
  }
  return parts;
}

/** What the assistant says between tool results and the user's next message, for Mistral. */
const MISTRAL_NO_REPLY = "(No answer to these tool results: the next user message came first.)";

/**
 * `messages` with an assistant message between a tool message and a user message that follows
 * it, as Mistral requires: its API refuses that order with HTTP 400 ("Unexpected role 'user'
 * after role 'tool'", type `invalid_request_message_order`; reported in
 * avante-corp/avante.nvim#2562, zed-industries/zed#37021, NousResearch/hermes-agent#20154),
 * and so do Mistral models' chat templates (mistral-common) on vLLM. A conversation gets that
 * order whenever a run ends after its tools ran and before the model answered them (it reached
 * its step limit, it was aborted or failed), or a message is steered into a run between its
 * steps; every later request would be refused. The assistant message says what happened
 * ({@link MISTRAL_NO_REPLY}): Mistral also refuses one without content ("Assistant message must
 * have either content or tool_calls").
 */
function mistralRoleOrder(messages: JsonObject[]): JsonObject[] {
  const out: JsonObject[] = [];
  for (const [i, message] of messages.entries()) {
    out.push(message);
    if (message.role === "tool" && messages[i + 1]?.role === "user") {
      out.push({ role: "assistant", content: MISTRAL_NO_REPLY });
    }
  }
  return out;
}

function keepId(id: string): string {
  return id;
}

function chatMessage(
  message: ModelMessage,
  context: CallContext,
  callId: (id: string) => string,
  last: boolean,
): JsonObject[] {
  if (message.role === "user") {
    // Blank text left out, a message of nothing as a placeholder: OpenAI refuses an empty
    // `content` array, and servers such as LM Studio an empty `content`.
    const content = userContent(message);
    // Plain text as a string: every compatible server accepts that, not all accept parts.
    if (content.every((part) => part.type === "text")) {
      return [{ role: "user", content: content.map((part) => part.text).join("\n") }];
    }
    return [
      {
        role: "user",
        content: content.map((part) =>
          part.type === "text"
            ? { type: "text", text: part.text }
            : part.type === "image"
              ? { type: "image_url", image_url: { url: imageUrl(part, context) } }
              : chatFile(part, context),
        ),
      },
    ];
  }
  if (message.role === "assistant") {
    // Chat Completions itself has no field for reasoning: only a server's own
    // `reasoning_content` goes back to it; other thinking parts are left out.
    const format = reasoningContentFormat(context.provider);
    const reasoning = message.content
      .filter((part) => part.type === "thinking" && part.format === format)
      .map((part) => (part as { text: string }).text)
      .join("");
    const detailsFormat = reasoningDetailsFormat(context.provider);
    const details = message.content.flatMap((part) =>
      part.type === "thinking" && part.format === detailsFormat
        ? keptReasoningDetails(part.signature)
        : [],
    );
    const text = message.content
      .filter((part) => part.type === "text")
      .map((part) => part.text)
      .join("");
    const toolCalls = message.content
      .filter((part) => part.type === "tool-call")
      .map((part) => ({
        id: callId(part.toolCallId),
        type: "function",
        function: {
          name: part.toolName,
          arguments: toolInputText(part.input),
        },
      }));
    let content: string | null = text;
    if (toolCalls.length > 0) {
      if (!hasText(text)) content = null;
    } else if (!hasText(text)) {
      // An answer of nothing (a stop without text or tool calls; or only another vendor's
      // thinking). Mistral refuses an assistant message without content or tool calls (HTTP
      // 400 "Assistant message must have either content or tool_calls, but not none.",
      // OpenHands/OpenHands#8685, langchain-ai/langchain#21196; mistral-common's validator
      // tests `bool(content)`, so `""` is none), and so do LM Studio (any empty `content`,
      // lmstudio-ai/lmstudio-bug-tracker#2) and Mistral models' templates on vLLM. Left out,
      // it would put two user messages side by side, which the chat templates that require
      // alternating roles (Gemma's, Llama 2's) refuse ("Conversation roles must alternate
      // user/assistant/user/assistant/..."), or a user message right after tool results,
      // which Mistral refuses: it keeps its place as a placeholder. Last, it is left out:
      // nothing follows it, and a conversation must end with a user or tool message on
      // Mistral ("Expected last role User or Tool").
      if (last) return [];
      content = BLANK_MESSAGE_TEXT;
    }
    return [
      {
        role: "assistant",
        content,
        ...(reasoning === "" ? {} : { reasoning_content: reasoning }),
        ...(details.length === 0 ? {} : { reasoning_details: details }),
        ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
      },
    ];
  }
  return message.content.map((result) => ({
    role: "tool",
    tool_call_id: callId(result.toolCallId),
    content: toolOutputText(result.output),
  }));
}

function toolChoice(choice: ModelRequest["toolChoice"]): JsonObject | string | undefined {
  if (choice === undefined || typeof choice === "string") return choice;
  return { type: "function", function: { name: choice.toolName } };
}

/**
 * Maps a request to the Chat Completions body. A `responseFormat` becomes
 * `response_format: { type: "json_schema", json_schema }` when the dialect sends it.
 */
export function toChatRequest(
  request: ModelRequest,
  dialect: ChatDialect,
  context: CallContext,
): JsonObject {
  const mistralModel = MISTRAL_MODEL.test(request.model);
  const messages = toChatMessages(
    request,
    context,
    (dialect.mistralToolCallIds ?? mistralModel) ? mistralToolCallIds() : keepId,
  );
  const body: JsonObject = {
    model: request.model,
    // Mistral's API (where the dialect rewrites ids for it) and Mistral models anywhere.
    messages:
      dialect.mistralToolCallIds === true || mistralModel ? mistralRoleOrder(messages) : messages,
    stream: true,
  };
  if (dialect.includeUsage) body.stream_options = { include_usage: true };
  if (request.tools !== undefined && request.tools.length > 0) {
    body.tools = request.tools.map((tool) => ({
      type: "function",
      function: { name: tool.name, description: tool.description, parameters: tool.inputSchema },
    }));
    const choice = toolChoice(request.toolChoice);
    if (choice !== undefined) body.tool_choice = choice;
  }
  if (request.maxOutputTokens !== undefined) {
    body[dialect.maxTokensField] = request.maxOutputTokens;
  }
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (dialect.promptCacheKey && request.cacheKey !== undefined) {
    body.prompt_cache_key = request.cacheKey;
  }
  // `off` sends nothing: reasoning models cannot all turn reasoning off, and a value they do
  // not know is a 400.
  if (
    request.thinking !== undefined &&
    request.thinking !== "off" &&
    (dialect.openAIModels !== true || openAIModelReasons(request.model))
  ) {
    body.reasoning_effort = request.thinking;
  }
  if (dialect.responseFormat && request.responseFormat !== undefined) {
    body.response_format = {
      type: "json_schema",
      json_schema: jsonSchemaFormat(request.responseFormat),
    };
  }
  return body;
}

/**
 * A request's `responseFormat` as OpenAI's JSON Schema format: `name` and `schema`, with
 * `description` and `strict` when given. Chat Completions nests it in
 * `response_format.json_schema`; the Responses API puts it beside `type` in `text.format`.
 */
export function jsonSchemaFormat(format: ModelResponseFormat): JsonObject {
  return {
    name: format.name,
    ...(format.description === undefined ? {} : { description: format.description }),
    schema: format.schema,
    ...(format.strict === undefined ? {} : { strict: format.strict }),
  };
}

/** Reads Chat Completions / Responses usage: input includes cached tokens, output reasoning. */
export function chatUsage(usage: unknown): ModelUsage | undefined {
  if (!isWire(usage)) return undefined;
  const input = numberField(usage, "prompt_tokens") ?? numberField(usage, "input_tokens");
  const output = numberField(usage, "completion_tokens") ?? numberField(usage, "output_tokens");
  const cached =
    numberField(field(usage, "prompt_tokens_details"), "cached_tokens") ??
    numberField(field(usage, "input_tokens_details"), "cached_tokens");
  const reasoning =
    numberField(field(usage, "completion_tokens_details"), "reasoning_tokens") ??
    numberField(field(usage, "output_tokens_details"), "reasoning_tokens");
  return {
    inputTokens: input ?? 0,
    outputTokens: output ?? 0,
    ...(cached === undefined ? {} : { cacheReadTokens: cached }),
    ...(reasoning === undefined ? {} : { reasoningTokens: reasoning }),
  };
}

interface ToolCallState {
  toolCallId: string;
  /** The id the server gave, if any (`toolCallId` is made up otherwise). */
  id: string | undefined;
  toolName: string;
  json: string;
  /** True once its `tool-call` event was yielded. */
  emitted: boolean;
}

/** What a Chat Completions stream needs from its provider. */
export interface ChatStreamSetup {
  id: string;
  http: HttpClient;
  apiKey: string | undefined;
  idleTimeoutMs: number;
  dialect: ChatDialect;
  /**
   * The provider's memory of the reasoning efforts its models refused (OpenAI's): a request's
   * `thinking` that the model refuses is sent again at the nearest effort it lists, and later
   * calls send that one at once. Without it, a refusal is thrown.
   */
  efforts?: OpenAIEffortMemory;
}

/** Streams one Chat Completions call as normalized events. */
export async function* streamChatCompletions(
  request: ModelRequest,
  options: ModelCallOptions,
  setup: ChatStreamSetup,
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  const context: CallContext = { provider: setup.id, model: modelOf(request) };
  checkRequest(request, context);
  if (setup.apiKey === undefined && setup.dialect.apiKeyEnv !== undefined) {
    throw providerError(
      "auth",
      `no API key: pass \`apiKey\` or set ${setup.dialect.apiKeyEnv}`,
      context,
    );
  }
  const body = withProviderOptions(
    toChatRequest(request, setup.dialect, context),
    request.providerOptions,
    setup.id,
  );
  const { efforts } = setup;
  const level = request.thinking;
  // The effort made from `thinking` (not one the caller set in `providerOptions`) follows what
  // the model's refusals taught.
  const ownEffort =
    efforts !== undefined &&
    level !== undefined &&
    typeof body.reasoning_effort === "string" &&
    request.providerOptions?.[setup.id]?.reasoning_effort === undefined;
  const withEffort = (from: JsonObject, effort: ThinkingLevel | null): JsonObject => {
    const { reasoning_effort: _, ...rest } = from;
    return effort === null ? rest : { ...rest, reasoning_effort: effort };
  };
  let mended = false;
  const { body: stream, release } = await postMending(
    setup.http,
    "chat/completions",
    ownEffort ? withEffort(body, efforts.effort(request.model, level)) : body,
    context,
    options,
    (refusal, refused) => {
      if (!ownEffort || mended || typeof refused.reasoning_effort !== "string") return undefined;
      const next = efforts.learn(request.model, level, refused.reasoning_effort, refusal);
      if (next === undefined) return undefined;
      mended = true;
      return withEffort(refused, next);
    },
    (refusal, refused) =>
      setup.dialect.openAIModels === true
        ? refusedOptionError(refusal, request, context, refused.reasoning_effort)
        : undefined,
  );

  /** The call streaming at each `index`; `calls` holds every call, in the order they began. */
  const toolCalls = new Map<number, ToolCallState>();
  const calls: ToolCallState[] = [];
  let started = false;
  let thinking = false;
  /** The `format` of the open thinking block, when its reasoning is sent back. */
  let thinkingFormat: string | undefined;
  /** The `reasoning_details` streamed so far (see {@link mergeReasoningDetail}). */
  const details: JsonObject[] = [];
  /** How many of `details` a `thinking-end` carried already. */
  let detailsSent = 0;
  let refused = false;
  let finishReason: string | undefined;
  let complete = false;

  function* closeThinking(): Generator<ModelStreamEvent> {
    if (thinking) {
      thinking = false;
      yield {
        type: "thinking-end",
        ...(thinkingFormat === undefined ? {} : { format: thinkingFormat }),
      };
    }
  }

  /** `format`: see {@link reasoningContentFormat}; undefined for reasoning not sent back. */
  function* startThinking(text: string, format?: string): Generator<ModelStreamEvent> {
    if (!thinking) {
      thinking = true;
      thinkingFormat = format;
    }
    yield { type: "thinking-delta", text };
  }

  function* textDelta(text: string): Generator<ModelStreamEvent> {
    if (thinking) yield* closeThinking();
    yield { type: "text-delta", text };
  }

  /**
   * Yields the `tool-call` of every call not yet yielded. Run at a `finish_reason` and again
   * at the end: a server may stamp a finish reason on a chunk that more calls follow. At a
   * `length` or `content_filter` finish, a call whose arguments are not whole JSON was cut
   * off: it is dropped, not run with partial input.
   */
  function* flushToolCalls(): Generator<ModelStreamEvent> {
    yield* closeThinking();
    if (details.length > detailsSent) {
      // Their own thinking part, without text (the text came as `reasoning`): only kept, to
      // go back to this provider.
      yield {
        type: "thinking-end",
        signature: JSON.stringify(details.slice(detailsSent)),
        format: reasoningDetailsFormat(setup.id),
      };
      detailsSent = details.length;
    }
    const early = endsEarly(mapChatFinishReason(finishReason));
    for (const call of calls) {
      if (call.emitted) continue;
      call.emitted = true;
      if (early && !isWholeJson(call.json)) continue;
      yield {
        type: "tool-call",
        toolCallId: call.toolCallId,
        toolName: call.toolName,
        input: parseToolInput(call.json),
      };
    }
  }

  function finish(): ModelStreamEvent {
    let reason = mapChatFinishReason(finishReason);
    // Some compatible servers say `stop` after tool calls; the calls are what matters.
    if (reason === "stop" && calls.length > 0) reason = "tool-calls";
    if (reason === "stop" && refused) reason = "refusal";
    return {
      type: "finish",
      reason,
      ...(finishReason === undefined ? {} : { rawReason: finishReason }),
    };
  }

  for await (const event of readSse(stream, {
    context,
    release,
    signal: options.signal,
    idleTimeoutMs: setup.idleTimeoutMs,
    complete: () => complete,
  })) {
    if (event.data.trim() === "[DONE]") {
      complete = true;
      yield* flushToolCalls();
      yield finish();
      return;
    }
    const chunk = parseSseJson(event, context);
    if (!isWire(chunk)) {
      throw providerError("malformed_stream", "a chunk that is not a JSON object", context, {
        responseBody: event.data,
      });
    }
    // An older llama.cpp server's `error:` line (see `SseParser`): the error object itself.
    if (event.event === "error" && chunk.error === undefined) {
      throw errorFromStreamEvent({ error: chunk }, event.data, context, parseOpenAIError);
    }
    if (chunk.error !== undefined && chunk.error !== null) {
      throw errorFromStreamEvent(chunk, event.data, context, parseOpenAIError);
    }
    if (!started) {
      started = true;
      const id = stringField(chunk, "id");
      yield {
        type: "response-start",
        ...(id === undefined ? {} : { id }),
        model: stringField(chunk, "model") ?? request.model,
      };
    }
    const choices = field(chunk, "choices");
    const choice = Array.isArray(choices) ? (choices[0] as unknown) : undefined;
    const delta = field(choice, "delta");
    const reasoningContent = stringField(delta, "reasoning_content");
    if (reasoningContent) {
      yield* startThinking(reasoningContent, reasoningContentFormat(setup.id));
    } else {
      const reasoning = stringField(delta, "reasoning");
      if (reasoning) yield* startThinking(reasoning);
    }
    const detailPieces = field(delta, "reasoning_details");
    if (Array.isArray(detailPieces)) {
      for (const piece of detailPieces) mergeReasoningDetail(details, piece);
    }
    const content = field(delta, "content");
    if (typeof content === "string") {
      if (content) yield* textDelta(content);
    } else if (Array.isArray(content)) {
      // Mistral's reasoning models send `content` as chunks: `{type: "thinking", thinking:
      // [{type: "text", text}]}` for the reasoning, `{type: "text", text}` for the answer.
      for (const part of content) {
        const type = stringField(part, "type");
        if (type === "text") {
          const text = stringField(part, "text");
          if (text) yield* textDelta(text);
        } else if (type === "thinking") {
          const pieces = field(part, "thinking");
          for (const piece of Array.isArray(pieces) ? pieces : [pieces]) {
            const text = typeof piece === "string" ? piece : stringField(piece, "text");
            if (text) yield* startThinking(text);
          }
        }
      }
    }
    const refusal = stringField(delta, "refusal");
    if (refusal) {
      refused = true;
      yield* textDelta(refusal);
    }
    const deltas = field(delta, "tool_calls");
    if (Array.isArray(deltas)) {
      yield* closeThinking();
      for (const [position, toolDelta] of deltas.entries()) {
        const index = numberField(toolDelta, "index") ?? position;
        const fn = field(toolDelta, "function");
        // Arguments are JSON text, in pieces; a few compatible servers send them whole, as an
        // object, which is read as its JSON text rather than dropped.
        const args = field(fn, "arguments");
        const fragment = typeof args === "string" ? args : isWire(args) ? JSON.stringify(args) : "";
        const id = stringField(toolDelta, "id") || undefined;
        let call = toolCalls.get(index);
        // A new id at a taken index is another call: servers that number each chunk's calls
        // from 0 (Google's and Ollama's compatibility layers) send parallel calls one per
        // chunk, whole, all at index 0 or with no index. OpenAI sends an id once per call.
        if (call === undefined || (id !== undefined && call.id !== undefined && id !== call.id)) {
          const toolName = stringField(fn, "name");
          if (toolName === undefined) {
            throw providerError(
              "malformed_stream",
              `tool call ${index} starts without function.name`,
              context,
              { responseBody: event.data },
            );
          }
          call = { toolCallId: id ?? `call_${index}`, id, toolName, json: "", emitted: false };
          toolCalls.set(index, call);
          calls.push(call);
          yield { type: "tool-call-start", toolCallId: call.toolCallId, toolName };
        }
        if (fragment !== "") {
          call.json += fragment;
          yield { type: "tool-call-delta", toolCallId: call.toolCallId, inputTextDelta: fragment };
        }
      }
    }
    const reason = stringField(choice, "finish_reason");
    // Some servers send `""` rather than `null` on every chunk before the last (older Ollama,
    // SGLang): that is no finish.
    if (reason !== undefined && reason !== "") {
      finishReason = reason;
      yield* flushToolCalls();
    }
    const usage = chatUsage(field(chunk, "usage"));
    if (usage !== undefined) yield { type: "usage", usage };
  }
  if (!setup.dialect.requireDone && finishReason !== undefined) {
    yield* flushToolCalls();
    yield finish();
    return;
  }
  throw streamCutError(context, "data: [DONE]");
}
