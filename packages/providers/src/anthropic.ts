/**
 * Anthropic Messages API adapter (`POST /v1/messages` with `stream: true`).
 *
 * Stream: `message_start`, then per content block `content_block_start` /
 * `content_block_delta` (`text_delta`, `thinking_delta`, `signature_delta`,
 * `input_json_delta`) / `content_block_stop`, then `message_delta` (stop reason, usage) and
 * the terminal `message_stop`; `ping` at any time; `error` events (e.g. `overloaded_error`)
 * after a 200.
 */
import {
  answerToolCalls,
  type FilePart,
  type FinishReason,
  InvalidArgumentError,
  type JsonObject,
  type JsonValue,
  type ModelCallOptions,
  type ModelInfo,
  type ModelMessage,
  type ModelProvider,
  type ModelRequest,
  type ModelStreamEvent,
  type ModelUsage,
  type ProviderErrorKind,
  type ThinkingLevel,
  type ToolResultPart,
} from "@beamclaw/core";
import { abortable } from "./abortable.js";
import { hasText, userContent } from "./blank-text.js";
import {
  type CallContext,
  errorFromStreamEvent,
  providerError,
  type VendorErrorInfo,
} from "./errors.js";
import {
  checkBaseUrl,
  checkPositiveInteger,
  checkTimeout,
  createHttpClient,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_TIMEOUT_MS,
  type ProviderHttpOptions,
  resolveApiKey,
} from "./http.js";
import {
  endsEarly,
  field,
  inputObject,
  isWholeJson,
  isWire,
  lookup,
  mergeIntoField,
  numberField,
  parseToolInput,
  stringField,
  toolOutputText,
  withProviderOptions,
} from "./json.js";
import { ANTHROPIC_MODELS, copyModel, findModel, mergeModels } from "./models.js";
import { checkRequest, modelOf } from "./request.js";
import { parseSseJson, readSse, streamCutError } from "./sse.js";

/** The `anthropic-version` header this adapter speaks. */
export const ANTHROPIC_VERSION = "2023-06-01";

/** Thinking budget in tokens for each thinking level. */
export type ThinkingBudgets = Record<Exclude<ThinkingLevel, "off">, number>;

/** Default {@link AnthropicProviderOptions.thinkingBudgets}. */
export const DEFAULT_ANTHROPIC_THINKING_BUDGETS: Readonly<ThinkingBudgets> = {
  minimal: 1024,
  low: 2048,
  medium: 8192,
  high: 16_384,
};

/**
 * How the Anthropic adapter asks for thinking: `budget` is extended thinking with a token
 * budget (`thinking: { type: "enabled", budget_tokens }`); `adaptive` lets the model decide how
 * much to think (`thinking: { type: "adaptive" }` with `output_config.effort`), which Claude
 * Opus 4.6 and Sonnet 4.6 prefer (their budget mode is deprecated) and later models require
 * (they refuse a budget with HTTP 400); `auto` picks by model id.
 */
export type AnthropicThinkingMode = "auto" | "adaptive" | "budget";

/** The `output_config.effort` of each thinking level in adaptive mode. */
const ADAPTIVE_EFFORT: Record<Exclude<ThinkingLevel, "off">, string> = {
  minimal: "low",
  low: "low",
  medium: "medium",
  high: "high",
};

const CLAUDE_VERSION = /claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?=-|$)/;

/**
 * Whether `auto` thinking asks `model` for adaptive thinking: Claude 4.6 and later
 * (`claude-opus-4-6`, `claude-sonnet-5`, dated snapshots of them) and the Mythos and Fable
 * families; earlier models (`claude-sonnet-4-5`, `claude-3-7-sonnet-…`) know only a budget.
 */
export function anthropicUsesAdaptiveThinking(model: string): boolean {
  if (/claude-(?:mythos|fable)(?:-|$)/.test(model)) return true;
  const version = CLAUDE_VERSION.exec(model);
  if (version === null) return false;
  const major = Number(version[1]);
  const minor = version[2] === undefined ? 0 : Number(version[2]);
  return major > 4 || (major === 4 && minor >= 6);
}

/** A prompt cache lifetime Anthropic offers. */
export type AnthropicCacheTtl = "5m" | "1h";

/** Prompt caching of the Anthropic provider (see {@link AnthropicProviderOptions.promptCache}). */
export interface AnthropicPromptCacheOptions {
  /**
   * Lifetime of the breakpoints on the tool definitions and the system prompt. Default `5m`.
   * `1h` costs twice the input price per written token instead of 1.25 times, and pays off
   * when an agent's prompt is used less often than every five minutes.
   */
  prefixTtl?: AnthropicCacheTtl;
  /**
   * Lifetime of the breakpoints on the conversation. Default `5m`. `1h` needs `prefixTtl`
   * `1h` too: Anthropic wants longer-lived breakpoints before shorter-lived ones.
   */
  conversationTtl?: AnthropicCacheTtl;
}

/** Options of {@link createAnthropicProvider}. */
export interface AnthropicProviderOptions extends ProviderHttpOptions {
  /** Default `process.env.ANTHROPIC_API_KEY`; sent as `x-api-key`. */
  apiKey?: string;
  /** Default `https://api.anthropic.com/v1`. */
  baseUrl?: string;
  /**
   * `max_tokens` when a request sets no `maxOutputTokens` (Anthropic requires one).
   * Default 4096, plus the thinking budget when thinking is on.
   */
  defaultMaxOutputTokens?: number;
  /**
   * Token budget per thinking level. Default {@link DEFAULT_ANTHROPIC_THINKING_BUDGETS}. In
   * adaptive mode it is the room added to the default `max_tokens` for thinking.
   */
  thinkingBudgets?: Partial<ThinkingBudgets>;
  /**
   * How thinking is asked for (see {@link AnthropicThinkingMode}). Default `auto`: adaptive
   * for the models that take it ({@link anthropicUsesAdaptiveThinking}), a budget for the others.
   */
  thinkingMode?: AnthropicThinkingMode;
  /** Corrections and additions to the built-in model and price list. */
  models?: ModelInfo[];
  /**
   * Prompt caching, on by default: each request marks cache breakpoints (`cache_control`)
   * on the last tool definition, the system prompt, the last message and the user turn
   * before it, so that what a request shares with the one before (tools, system prompt,
   * the conversation so far) is read from Anthropic's cache at a tenth of the input price
   * instead of being processed again. Writing to the cache costs 1.25 times the input price
   * (five-minute cache); a prompt shorter than the model's minimum (1,024 to 4,096 tokens)
   * is not cached and costs nothing more. `false` sends no breakpoints.
   */
  promptCache?: boolean | AnthropicPromptCacheOptions;
}

const ANTHROPIC_ERROR_KINDS: Record<string, ProviderErrorKind> = {
  invalid_request_error: "invalid_request",
  not_found_error: "invalid_request",
  request_too_large: "invalid_request",
  authentication_error: "auth",
  permission_error: "auth",
  billing_error: "auth",
  rate_limit_error: "rate_limit",
  api_error: "server",
  overloaded_error: "overloaded",
  timeout_error: "timeout",
};

/** Anthropic's words for an account with no credit left, sent as an HTTP 400. */
const LOW_CREDIT = /^Your credit balance is too low\b/i;

/**
 * Reads `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`. The
 * HTTP status decides the kind of an HTTP error (Anthropic's types follow it one to one),
 * except that `overloaded_error`, `rate_limit_error` and `billing_error` mean what they say
 * whatever the status; inside a stream, where there is no status, the type decides. No credit
 * left is `auth` (the account's fault, which no retry and no other request can fix), also as
 * the HTTP 400 `invalid_request_error` "Your credit balance is too low to access the Anthropic
 * API…" that some accounts get instead of a 402 `billing_error`.
 */
export function parseAnthropicError(body: unknown): VendorErrorInfo {
  const error = field(body, "error");
  const type = stringField(error, "type");
  const message = stringField(error, "message");
  const streamKind = lookup(ANTHROPIC_ERROR_KINDS, type);
  const strong =
    type === "overloaded_error" || type === "rate_limit_error" || type === "billing_error";
  const lowCredit = type === "invalid_request_error" && LOW_CREDIT.test(message ?? "");
  return {
    ...(type === undefined ? {} : { type }),
    ...(message === undefined ? {} : { message }),
    ...(streamKind === undefined ? {} : { streamKind }),
    ...(strong && streamKind !== undefined ? { kind: streamKind } : {}),
    ...(lowCredit ? { kind: "auth" as const, streamKind: "auth" as const } : {}),
  };
}

const STOP_REASONS: Record<string, FinishReason> = {
  end_turn: "stop",
  stop_sequence: "stop",
  max_tokens: "length",
  model_context_window_exceeded: "length",
  tool_use: "tool-calls",
  refusal: "refusal",
  pause_turn: "other",
};

/** Maps Anthropic's `stop_reason` to the normalized finish reason. */
export function mapAnthropicStopReason(reason: string | undefined): FinishReason {
  if (reason === undefined) return "other";
  return lookup(STOP_REASONS, reason) ?? "other";
}

type AnthropicBlock = JsonObject;

/** Base64 of UTF-8 text, decoded (without Node's `Buffer`, for any runtime). */
function decodeBase64Text(data: string): string {
  const binary = atob(data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/**
 * A document as an Anthropic `document` block: a PDF as a `base64` or `url` source, any
 * `text/*` document as a `text` source (plain text); its file name as the `title`.
 */
function documentBlock(part: FilePart, context: CallContext): AnthropicBlock {
  const title = part.filename === undefined ? {} : { title: part.filename };
  if (part.mediaType === "application/pdf") {
    if (part.data !== undefined) {
      return {
        type: "document",
        source: { type: "base64", media_type: "application/pdf", data: part.data },
        ...title,
      };
    }
    if (part.url !== undefined) {
      return { type: "document", source: { type: "url", url: part.url }, ...title };
    }
  } else if (part.mediaType.startsWith("text/") && part.data !== undefined) {
    let text: string;
    try {
      text = decodeBase64Text(part.data);
    } catch (error) {
      throw providerError("invalid_request", "a text file part's `data` is not base64", context, {
        cause: error,
      });
    }
    return {
      type: "document",
      source: { type: "text", media_type: "text/plain", data: text },
      ...title,
    };
  }
  throw providerError(
    "invalid_request",
    `Anthropic takes a PDF (data or url) or a text document (data) as a file part, not ${part.mediaType}${part.data === undefined ? " by url" : ""}`,
    context,
  );
}

/**
 * A user message's blocks. Anthropic refuses a text block that is empty or only whitespace
 * (HTTP 400 "messages: text content blocks must be non-empty", "messages: text content blocks
 * must contain non-whitespace text"; reported in anthropics/claude-code#23440,
 * home-assistant/core#175637, LibreChat-AI/agents#124): such a block is left out (`hasText`),
 * as it says nothing. Models write one (a text of `"\n\n"` before their tool calls), and a
 * history can hold a blank user message, so a history that kept it would be refused on every
 * later turn. A user message left with nothing keeps its turn as a placeholder
 * (`userContent`): dropped, it would leave the assistant's turn before it last, which
 * Anthropic takes as a prefill to continue (or, from Claude 4.6 on, refuses: "This model does
 * not support assistant message prefill. The conversation must end with a user message.").
 */
function userBlocks(message: Extract<ModelMessage, { role: "user" }>, context: CallContext) {
  const blocks: AnthropicBlock[] = [];
  for (const part of userContent(message)) {
    if (part.type === "text") {
      blocks.push({ type: "text", text: part.text });
    } else if (part.type === "file") {
      blocks.push(documentBlock(part, context));
    } else if (part.data !== undefined) {
      blocks.push({
        type: "image",
        source: { type: "base64", media_type: part.mediaType, data: part.data },
      });
    } else if (part.url !== undefined) {
      blocks.push({ type: "image", source: { type: "url", url: part.url } });
    } else {
      throw providerError("invalid_request", "an image part needs `data` or `url`", context);
    }
  }
  return blocks;
}

function assistantBlocks(
  message: Extract<ModelMessage, { role: "assistant" }>,
  ids: AnthropicToolIds,
) {
  const blocks: AnthropicBlock[] = [];
  for (const part of message.content) {
    if (part.type === "text") {
      if (hasText(part.text)) blocks.push({ type: "text", text: part.text });
    } else if (part.type === "thinking") {
      // Anthropic verifies thinking it is sent back: without its signature, or with another
      // vendor's (e.g. Gemini's), it would be rejected, so it is left out.
      if (part.format !== undefined && part.format !== "anthropic") continue;
      // OpenAI's Responses reasoning has no `format` either: its signature is the reasoning
      // item id (`rs_...`; Anthropic's signatures are base64, which has no `_`).
      if (part.format === undefined && part.signature?.startsWith("rs_") === true) continue;
      if (part.redacted !== undefined) {
        blocks.push({ type: "redacted_thinking", data: part.redacted });
      } else if (part.signature !== undefined) {
        blocks.push({ type: "thinking", thinking: part.text, signature: part.signature });
      }
    } else {
      blocks.push({
        type: "tool_use",
        id: ids.call(part.toolCallId),
        name: part.toolName,
        // The API requires an object; arguments that were not valid JSON cannot be replayed.
        input: inputObject(part.input),
      });
    }
  }
  return blocks;
}

/** What a failed tool's result says when the tool said nothing (see {@link toolResultContent}). */
const SILENT_FAILURE = "The tool failed without an error message.";

/**
 * A tool result's `content`. Anthropic refuses an error result whose content is empty (HTTP
 * 400 "messages.N.content.0.tool_result: content cannot be empty if `is_error` is true";
 * reported in bytedance/trae-agent#230, jlevy/markform#153), which a tool runner can give (a
 * tool that throws an error without a message): such a result says that the tool failed.
 */
function toolResultContent(result: ToolResultPart): string | AnthropicBlock[] {
  const output = toolOutputText(result.output);
  const text = result.isError === true && !hasText(output) ? SILENT_FAILURE : output;
  const images = (result.images ?? []).filter((i) => i.data !== undefined || i.url !== undefined);
  if (images.length === 0) return text;
  // With images, the content is a list of text and image blocks.
  const blocks: AnthropicBlock[] = hasText(text) ? [{ type: "text", text }] : [];
  for (const image of images) {
    blocks.push({
      type: "image",
      source:
        image.data !== undefined
          ? { type: "base64", media_type: image.mediaType, data: image.data }
          : { type: "url", url: image.url },
    });
  }
  return blocks;
}

/** A `tool_use` id: letters, digits, `_` and `-` (Anthropic's `^[a-zA-Z0-9_-]+$`). */
const ANTHROPIC_TOOL_ID = /^[a-zA-Z0-9_-]+$/;

/** `id` with what Anthropic does not take in a tool call id replaced by `_`. */
function cleanToolId(id: string): string {
  if (ANTHROPIC_TOOL_ID.test(id)) return id;
  const clean = id.replace(/[^a-zA-Z0-9_-]/g, "_");
  return clean === "" ? "toolu" : clean;
}

/** The tool call ids of one request (see {@link anthropicToolIds}). */
interface AnthropicToolIds {
  /** The id a `tool_use` block is sent with. */
  call(id: string): string;
  /** The `tool_use_id` of a result, naming its call of the assistant message just before. */
  result(id: string): string;
  /** A new assistant message: the results that follow answer its calls. */
  turn(): void;
}

/**
 * The tool call ids of one request as Anthropic takes them: each matches
 * `^[a-zA-Z0-9_-]+$`, and no two `tool_use` blocks share one. Anthropic refuses any other with
 * HTTP 400 ("messages.1.content.1.tool_use.id: String should match pattern
 * '^[a-zA-Z0-9_-]+$'", "messages.1.content.1: `tool_use` ids must be unique"; reported after a
 * switch from Kimi K2 to Claude in anomalyco/opencode#1279), and a conversation can hold such
 * ids after a failover or a change of model: Kimi's `functions.get_weather:0`, an empty id, or
 * the ids made up for calls that came without one (`call_0` from a Chat Completions server,
 * `gemini_call_1` from Gemini 2.x), which repeat from one step to the next. Other characters
 * become `_` and a repeated id gets a suffix (`call_0_2`); a result gets the id its call was
 * sent with. Ids already fine are kept, and the same conversation maps the same way on every
 * request (its prompt stays cacheable).
 */
function anthropicToolIds(): AnthropicToolIds {
  const sent = new Set<string>();
  /** The calls of the last assistant message: original id to the ids sent, in order. */
  let calls = new Map<string, string[]>();
  return {
    call(id) {
      const base = cleanToolId(id);
      let next = base;
      for (let n = 2; sent.has(next); n++) next = `${base}_${n}`;
      sent.add(next);
      const same = calls.get(id);
      if (same === undefined) calls.set(id, [next]);
      else same.push(next);
      return next;
    },
    result(id) {
      return calls.get(id)?.shift() ?? cleanToolId(id);
    },
    turn() {
      calls = new Map();
    },
  };
}

/** Maps the normalized conversation to Anthropic `messages` (tool results become user turns). */
export function toAnthropicMessages(messages: ModelMessage[], context: CallContext): JsonObject[] {
  const out: Array<{ role: "user" | "assistant"; content: AnthropicBlock[] }> = [];
  const ids = anthropicToolIds();
  for (const message of answerToolCalls(messages)) {
    let role: "user" | "assistant";
    let blocks: AnthropicBlock[];
    if (message.role === "user") {
      role = "user";
      blocks = userBlocks(message, context);
    } else if (message.role === "assistant") {
      role = "assistant";
      ids.turn();
      blocks = assistantBlocks(message, ids);
    } else {
      role = "user";
      blocks = message.content.map((result) => ({
        type: "tool_result",
        tool_use_id: ids.result(result.toolCallId),
        content: toolResultContent(result),
        ...(result.isError ? { is_error: true } : {}),
      }));
    }
    // An assistant message with nothing Anthropic takes (blank text, another vendor's
    // thinking) is left out; a user message always has a block (see `userContent`).
    if (blocks.length === 0) continue;
    const last = out.at(-1);
    // Consecutive turns of one role are merged: the API expects alternating roles, and tool
    // results must open the user turn that follows the tool calls.
    if (last !== undefined && last.role === role) last.content.push(...blocks);
    else out.push({ role, content: blocks });
  }
  for (const turn of out) {
    if (turn.role === "user") {
      const results = turn.content.filter((b) => b.type === "tool_result");
      if (results.length > 0) {
        turn.content = [...results, ...turn.content.filter((b) => b.type !== "tool_result")];
      }
    }
  }
  return out.map((turn) => ({ role: turn.role, content: turn.content }));
}

/**
 * False when the conversation ends in a tool loop (its last user message carries tool results)
 * whose last assistant message does not open with a `thinking` or
 * `redacted_thinking` block: Anthropic refuses budget thinking for such a turn ("a final
 * `assistant` message must start with a thinking block").
 */
function turnStartsWithThinking(messages: JsonObject[]): boolean {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i]!;
    const content = Array.isArray(message.content) ? (message.content as JsonObject[]) : [];
    if (message.role === "assistant") {
      const first = content[0]?.type;
      return first === "thinking" || first === "redacted_thinking";
    }
    // A user message without tool results starts a new turn; one with them goes on the loop.
    if (!content.some((block) => block.type === "tool_result")) return true;
  }
  return true;
}

function toolChoice(choice: ModelRequest["toolChoice"]): JsonObject | undefined {
  if (choice === undefined) return undefined;
  if (choice === "auto") return { type: "auto" };
  if (choice === "none") return { type: "none" };
  if (choice === "required") return { type: "any" };
  return { type: "tool", name: choice.toolName };
}

/** Settings of the Anthropic request mapping. */
export interface AnthropicRequestSettings {
  defaultMaxOutputTokens: number;
  thinkingBudgets: ThinkingBudgets;
  /** Default `auto`. */
  thinkingMode?: AnthropicThinkingMode;
  /** The `cache_control` of the breakpoints, or none for no prompt caching. */
  cache?: { prefix: JsonObject; conversation: JsonObject };
}

function cacheControl(ttl: AnthropicCacheTtl): JsonObject {
  // Five minutes is the API's default: sent without `ttl`, as every API version accepts.
  return ttl === "1h" ? { type: "ephemeral", ttl: "1h" } : { type: "ephemeral" };
}

/** Checks {@link AnthropicProviderOptions.promptCache}; returns the breakpoints' settings. */
function promptCacheSettings(
  option: boolean | AnthropicPromptCacheOptions | undefined,
): AnthropicRequestSettings["cache"] {
  if (option === false) return undefined;
  if (option === undefined || option === true) {
    return { prefix: cacheControl("5m"), conversation: cacheControl("5m") };
  }
  if (typeof option !== "object" || option === null || Array.isArray(option)) {
    throw new InvalidArgumentError(
      `promptCache must be a boolean or { prefixTtl, conversationTtl }, got ${JSON.stringify(option)}`,
    );
  }
  const ttl = (name: keyof AnthropicPromptCacheOptions): AnthropicCacheTtl => {
    const value = option[name];
    if (value === undefined) return "5m";
    if (value !== "5m" && value !== "1h") {
      throw new InvalidArgumentError(
        `promptCache.${name} must be "5m" or "1h", got ${JSON.stringify(value)}`,
      );
    }
    return value;
  };
  const prefix = ttl("prefixTtl");
  const conversation = ttl("conversationTtl");
  if (conversation === "1h" && prefix !== "1h") {
    throw new InvalidArgumentError(
      'promptCache.conversationTtl "1h" needs prefixTtl "1h": Anthropic wants longer-lived breakpoints first',
    );
  }
  return { prefix: cacheControl(prefix), conversation: cacheControl(conversation) };
}

/** The last block of a turn that may carry a breakpoint (thinking blocks may not). */
function lastCacheableBlock(turn: JsonObject): JsonObject | undefined {
  const blocks = turn.content as JsonObject[];
  for (let i = blocks.length - 1; i >= 0; i--) {
    const block = blocks[i] as JsonObject;
    if (block.type !== "thinking" && block.type !== "redacted_thinking") return block;
  }
  return undefined;
}

/**
 * Marks the conversation's breakpoints: on the last message, which caches the whole prompt
 * for the next request, and on the user turn before it, where the previous request of an
 * agent loop put its last breakpoint (Anthropic looks for a cached prefix only 20 blocks back
 * from a breakpoint, and a step with many parallel tool calls adds more than that).
 */
function markConversation(messages: JsonObject[], control: JsonObject): void {
  const last = messages.length - 1;
  if (last < 0) return;
  const final = lastCacheableBlock(messages[last] as JsonObject);
  if (final !== undefined) final.cache_control = control;
  for (let i = last - 1; i >= 0; i--) {
    const turn = messages[i] as JsonObject;
    if (turn.role !== "user") continue;
    const block = lastCacheableBlock(turn);
    if (block !== undefined) block.cache_control = control;
    return;
  }
}

/**
 * Maps a request to the Messages API body. `maxOutputTokens` caps thinking and answer
 * together, as `max_tokens` does; when it leaves less than the level's budget plus 1024
 * tokens for the answer, the budget shrinks (to at least Anthropic's minimum of 1024). A
 * `responseFormat` becomes `output_config.format` (type `json_schema`, structured outputs).
 */
export function toAnthropicRequest(
  request: ModelRequest,
  settings: AnthropicRequestSettings,
  context: CallContext,
): JsonObject {
  const thinking = request.thinking !== undefined && request.thinking !== "off";
  let maxTokens = request.maxOutputTokens ?? settings.defaultMaxOutputTokens;
  let budget: number | undefined;
  let effort: string | undefined;
  if (thinking) {
    const level = request.thinking as Exclude<ThinkingLevel, "off">;
    const mode = settings.thinkingMode ?? "auto";
    const adaptive =
      mode === "adaptive" || (mode === "auto" && anthropicUsesAdaptiveThinking(request.model));
    if (adaptive) {
      // The model decides how much to think, within `max_tokens`: room for it is added.
      effort = ADAPTIVE_EFFORT[level];
      if (request.maxOutputTokens === undefined) maxTokens += settings.thinkingBudgets[level];
    } else {
      budget = settings.thinkingBudgets[level];
      if (request.maxOutputTokens === undefined) maxTokens += budget;
      else budget = Math.min(budget, maxTokens - 1024);
    }
    if (budget !== undefined && budget < 1024) {
      throw providerError(
        "invalid_request",
        `thinking needs maxOutputTokens of at least 2048 (1024 thinking + 1024 answer), got ${maxTokens}`,
        context,
      );
    }
    if (request.temperature !== undefined && request.temperature !== 1) {
      throw providerError(
        "invalid_request",
        "Anthropic does not accept a temperature other than 1 together with thinking",
        context,
      );
    }
    // Documented: with thinking, tool use takes only `tool_choice` `auto` or `none`.
    const forced = request.toolChoice === "required" || typeof request.toolChoice === "object";
    if (forced && request.tools !== undefined && request.tools.length > 0) {
      throw providerError(
        "invalid_request",
        'Anthropic does not accept a forced tool choice ("required" or { toolName }) together with thinking',
        context,
      );
    }
  }
  const cache = settings.cache;
  const messages = toAnthropicMessages(request.messages, context);
  // A tool loop is one assistant turn, and Anthropic wants budget thinking on for all of it
  // or none: a turn whose last assistant message has no thinking block of Anthropic's (it came
  // from another vendor, before a failover) is answered without thinking, not refused.
  if (budget !== undefined && !turnStartsWithThinking(messages)) budget = undefined;
  if (cache !== undefined) markConversation(messages, cache.conversation);
  const body: JsonObject = {
    model: request.model,
    max_tokens: maxTokens,
    stream: true,
    messages,
  };
  if (request.system !== undefined && request.system !== "") {
    body.system =
      cache === undefined
        ? request.system
        : [{ type: "text", text: request.system, cache_control: cache.prefix }];
  }
  if (request.tools !== undefined && request.tools.length > 0) {
    const tools: JsonObject[] = request.tools.map((tool) => ({
      name: tool.name,
      description: tool.description,
      input_schema: tool.inputSchema,
    }));
    if (cache !== undefined) (tools.at(-1) as JsonObject).cache_control = cache.prefix;
    body.tools = tools;
    const choice = toolChoice(request.toolChoice);
    if (choice !== undefined) body.tool_choice = choice;
  }
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (budget !== undefined) body.thinking = { type: "enabled", budget_tokens: budget };
  if (effort !== undefined) {
    body.thinking = { type: "adaptive" };
    mergeIntoField(body, "output_config", { effort });
  }
  if (request.responseFormat !== undefined) {
    // Structured outputs (GA): the answer's text is JSON conforming to the schema. Anthropic
    // names no schema and has no strict switch: `name`, `description` and `strict` are not sent.
    const format: JsonObject = { type: "json_schema", schema: request.responseFormat.schema };
    mergeIntoField(body, "output_config", { format });
  }
  return body;
}

interface BlockState {
  type: string;
  toolCallId?: string;
  toolName?: string;
  json?: string;
  startInput?: JsonValue;
  signature?: string;
  redacted?: string;
}

interface UsageState {
  input?: number;
  output?: number;
  cacheRead?: number;
  cacheWrite?: number;
  cacheWrite1h?: number;
}

function readUsage(usage: unknown, into: UsageState): void {
  // `message_delta` counts are cumulative; fields it leaves out keep the `message_start` value.
  const input = numberField(usage, "input_tokens");
  const output = numberField(usage, "output_tokens");
  const cacheRead = numberField(usage, "cache_read_input_tokens");
  const cacheWrite = numberField(usage, "cache_creation_input_tokens");
  if (input !== undefined) into.input = input;
  if (output !== undefined) into.output = output;
  if (cacheRead !== undefined) into.cacheRead = cacheRead;
  if (cacheWrite !== undefined) into.cacheWrite = cacheWrite;
  // Of the writes, those to the one-hour cache (priced higher than five-minute ones).
  const cacheWrite1h = numberField(field(usage, "cache_creation"), "ephemeral_1h_input_tokens");
  if (cacheWrite1h !== undefined) into.cacheWrite1h = cacheWrite1h;
}

/**
 * Anthropic reports uncached input, cache reads and cache writes separately;
 * `inputTokens` is their sum (every input token of the call), as the other adapters report.
 */
function toUsage(state: UsageState): ModelUsage {
  const cacheRead = state.cacheRead ?? 0;
  const cacheWrite = state.cacheWrite ?? 0;
  return {
    inputTokens: (state.input ?? 0) + cacheRead + cacheWrite,
    outputTokens: state.output ?? 0,
    ...(state.cacheRead === undefined ? {} : { cacheReadTokens: cacheRead }),
    ...(state.cacheWrite === undefined ? {} : { cacheWriteTokens: cacheWrite }),
    ...(state.cacheWrite1h ? { cacheWrite1hTokens: Math.min(state.cacheWrite1h, cacheWrite) } : {}),
  };
}

async function* streamAnthropic(
  request: ModelRequest,
  options: ModelCallOptions,
  setup: {
    id: string;
    http: ReturnType<typeof createHttpClient>;
    apiKey: string | undefined;
    idleTimeoutMs: number;
    settings: AnthropicRequestSettings;
  },
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  const context: CallContext = { provider: setup.id, model: modelOf(request) };
  checkRequest(request, context);
  if (setup.apiKey === undefined) {
    throw providerError("auth", "no API key: pass `apiKey` or set ANTHROPIC_API_KEY", context);
  }
  const body = withProviderOptions(
    toAnthropicRequest(request, setup.settings, context),
    request.providerOptions,
    setup.id,
  );
  const { body: stream, release } = await setup.http.postEventStream(
    "messages",
    body,
    context,
    options,
  );

  const blocks = new Map<number, BlockState>();
  const usage: UsageState = {};
  let stopReason: string | undefined;
  let complete = false;
  /**
   * Tool calls whose arguments are not whole JSON (or empty), held until `message_delta`
   * says why the answer ended, with every call after them (to keep their order): at
   * `max_tokens` (or another early end) such a call was cut off and is dropped.
   */
  const held: Array<{ call: Extract<ModelStreamEvent, { type: "tool-call" }>; whole: boolean }> =
    [];
  function* releaseHeld(): Generator<ModelStreamEvent> {
    const early = endsEarly(mapAnthropicStopReason(stopReason));
    for (const { call, whole } of held.splice(0)) if (whole || !early) yield call;
  }
  const malformed = (message: string, raw: string) =>
    providerError("malformed_stream", message, context, { responseBody: raw });

  for await (const event of readSse(stream, {
    context,
    release,
    signal: options.signal,
    idleTimeoutMs: setup.idleTimeoutMs,
    complete: () => complete,
  })) {
    const data = parseSseJson(event, context);
    const type = stringField(data, "type");
    switch (type) {
      case "message_start": {
        const message = field(data, "message");
        readUsage(field(message, "usage"), usage);
        const id = stringField(message, "id");
        yield {
          type: "response-start",
          ...(id === undefined ? {} : { id }),
          model: stringField(message, "model") ?? request.model,
        };
        break;
      }
      case "content_block_start": {
        const index = numberField(data, "index");
        const block = field(data, "content_block");
        const blockType = stringField(block, "type");
        if (index === undefined || blockType === undefined) {
          throw malformed("content_block_start without index or content_block.type", event.data);
        }
        const state: BlockState = { type: blockType };
        blocks.set(index, state);
        if (blockType === "text") {
          const text = stringField(block, "text");
          if (text) yield { type: "text-delta", text };
        } else if (blockType === "thinking") {
          const text = stringField(block, "thinking");
          if (text) yield { type: "thinking-delta", text };
          const signature = stringField(block, "signature");
          if (signature) state.signature = signature;
        } else if (blockType === "redacted_thinking") {
          state.redacted = stringField(block, "data") ?? "";
        } else if (blockType === "tool_use") {
          const toolCallId = stringField(block, "id");
          const toolName = stringField(block, "name");
          if (toolCallId === undefined || toolName === undefined) {
            throw malformed("tool_use block without id or name", event.data);
          }
          state.toolCallId = toolCallId;
          state.toolName = toolName;
          state.json = "";
          state.startInput = (field(block, "input") as JsonValue | undefined) ?? {};
          yield { type: "tool-call-start", toolCallId, toolName };
        }
        // Server tool blocks (web search and the like) are the vendor's business: skipped.
        break;
      }
      case "content_block_delta": {
        const index = numberField(data, "index");
        const state = index === undefined ? undefined : blocks.get(index);
        if (state === undefined) {
          throw malformed("content_block_delta for a block that never started", event.data);
        }
        const delta = field(data, "delta");
        const deltaType = stringField(delta, "type");
        if (deltaType === "text_delta") {
          const text = stringField(delta, "text") ?? "";
          if (text !== "") yield { type: "text-delta", text };
        } else if (deltaType === "thinking_delta") {
          const text = stringField(delta, "thinking") ?? "";
          if (text !== "") yield { type: "thinking-delta", text };
        } else if (deltaType === "signature_delta") {
          state.signature = (state.signature ?? "") + (stringField(delta, "signature") ?? "");
        } else if (deltaType === "input_json_delta" && state.toolCallId !== undefined) {
          const fragment = stringField(delta, "partial_json") ?? "";
          state.json = (state.json ?? "") + fragment;
          if (fragment !== "") {
            yield {
              type: "tool-call-delta",
              toolCallId: state.toolCallId,
              inputTextDelta: fragment,
            };
          }
        }
        break;
      }
      case "content_block_stop": {
        const index = numberField(data, "index");
        const state = index === undefined ? undefined : blocks.get(index);
        if (state === undefined) {
          throw malformed("content_block_stop for a block that never started", event.data);
        }
        if (state.type === "thinking") {
          yield {
            type: "thinking-end",
            ...(state.signature === undefined ? {} : { signature: state.signature }),
          };
        } else if (state.type === "redacted_thinking") {
          yield { type: "thinking-end", redacted: state.redacted ?? "" };
        } else if (state.toolCallId !== undefined && state.toolName !== undefined) {
          const json = state.json ?? "";
          const call = {
            type: "tool-call" as const,
            toolCallId: state.toolCallId,
            toolName: state.toolName,
            input: json === "" ? (state.startInput ?? {}) : parseToolInput(json),
          };
          const whole = isWholeJson(json);
          if (whole && held.length === 0) yield call;
          else held.push({ call, whole });
        }
        break;
      }
      case "message_delta": {
        const reason = stringField(field(data, "delta"), "stop_reason");
        if (reason !== undefined) stopReason = reason;
        yield* releaseHeld();
        readUsage(field(data, "usage"), usage);
        yield { type: "usage", usage: toUsage(usage) };
        break;
      }
      case "message_stop": {
        complete = true;
        yield* releaseHeld();
        yield {
          type: "finish",
          reason: mapAnthropicStopReason(stopReason),
          ...(stopReason === undefined ? {} : { rawReason: stopReason }),
        };
        return;
      }
      case "error":
        throw errorFromStreamEvent(data, event.data, context, parseAnthropicError);
      case "ping":
        break;
      default:
        if (!isWire(data)) throw malformed("an event that is not a JSON object", event.data);
      // Event types added later are ignored, as Anthropic's versioning policy asks.
    }
  }
  throw streamCutError(context, "message_stop");
}

/**
 * Creates the Anthropic Messages API provider.
 *
 * @example
 * ```ts
 * const anthropic = createAnthropicProvider(); // reads ANTHROPIC_API_KEY
 * for await (const event of anthropic.stream({
 *   model: "claude-sonnet-4-5",
 *   messages: [{ role: "user", content: [{ type: "text", text: "Hello" }] }],
 * })) {
 *   if (event.type === "text-delta") process.stdout.write(event.text);
 * }
 * ```
 */
export function createAnthropicProvider(options: AnthropicProviderOptions = {}): ModelProvider {
  const id = options.id ?? "anthropic";
  const apiKey = resolveApiKey(options.apiKey, "ANTHROPIC_API_KEY");
  const timeoutMs = checkTimeout("timeoutMs", options.timeoutMs, DEFAULT_TIMEOUT_MS);
  const idleTimeoutMs = checkTimeout(
    "idleTimeoutMs",
    options.idleTimeoutMs,
    DEFAULT_IDLE_TIMEOUT_MS,
  );
  const defaultMaxOutputTokens = checkPositiveInteger(
    "defaultMaxOutputTokens",
    options.defaultMaxOutputTokens,
    4096,
  );
  const thinkingBudgets = { ...DEFAULT_ANTHROPIC_THINKING_BUDGETS, ...options.thinkingBudgets };
  for (const [level, budget] of Object.entries(thinkingBudgets)) {
    if (!Number.isInteger(budget) || budget < 1024) {
      throw new InvalidArgumentError(
        `thinkingBudgets.${level} must be an integer of at least 1024 (Anthropic's minimum), got ${String(budget)}`,
      );
    }
  }
  const thinkingMode = options.thinkingMode ?? "auto";
  if (thinkingMode !== "auto" && thinkingMode !== "adaptive" && thinkingMode !== "budget") {
    throw new InvalidArgumentError(
      `thinkingMode must be "auto", "adaptive" or "budget", got ${JSON.stringify(thinkingMode)}`,
    );
  }
  const settings: AnthropicRequestSettings = {
    defaultMaxOutputTokens,
    thinkingBudgets,
    thinkingMode,
  };
  const cache = promptCacheSettings(options.promptCache);
  if (cache !== undefined) settings.cache = cache;
  const http = createHttpClient({
    baseUrl: checkBaseUrl(options.baseUrl, "https://api.anthropic.com/v1"),
    headers: {
      ...(apiKey === undefined ? {} : { "x-api-key": apiKey }),
      "anthropic-version": ANTHROPIC_VERSION,
      ...options.headers,
    },
    timeoutMs,
    fetch: options.fetch,
    parseVendorError: parseAnthropicError,
  });
  const models = options.models;
  /** The price list `modelInfo` reads: the built-in one with the caller's corrections. */
  const priced = mergeModels(ANTHROPIC_MODELS, models);
  return {
    specificationVersion: "v1",
    id,
    stream(request: ModelRequest, callOptions: ModelCallOptions = {}) {
      return abortable(
        streamAnthropic(request, callOptions, { id, http, apiKey, idleTimeoutMs, settings }),
        callOptions.signal,
        { provider: id, model: modelOf(request) },
      );
    },
    async listModels() {
      return mergeModels(ANTHROPIC_MODELS, models);
    },
    modelInfo(modelId: string) {
      const known = findModel(priced, modelId);
      return known === undefined ? undefined : copyModel(known);
    },
  };
}
