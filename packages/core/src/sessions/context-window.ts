/**
 * Keeping a model request inside the model's context window: an estimate of the tokens a
 * request carries, the cut that leaves the oldest turns of the history out of a request (never
 * out of the transcript), and the recognition of a provider's "the prompt is too long" error.
 */
import { isBeamClawError, ProviderError } from "../errors.js";
import type {
  FilePart,
  ImagePart,
  ModelMessage,
  ModelToolDefinition,
  TextPart,
  ThinkingPart,
  ToolCallPart,
  ToolResultPart,
} from "../providers/types.js";

/** Characters per token of the estimate: about right for English prose and JSON. */
const CHARS_PER_TOKEN = 4;
/** Tokens counted for an image, whatever its size (a large image costs about this much). */
const IMAGE_TOKENS = 1_600;
/**
 * Bytes of a PDF (or another binary document) per estimated token: vendors read a page as its
 * text plus an image of it, 1,500 to 3,000 tokens, and a page is some 50 to 100 KB.
 */
const DOCUMENT_BYTES_PER_TOKEN = 40;

/**
 * The estimated tokens of an attached document: a text document's characters over four, a PDF
 * by its size (see {@link DOCUMENT_BYTES_PER_TOKEN}), at least an image's worth; one by URL
 * counts as an image (its size is not known here).
 */
export function estimateFileTokens(file: FilePart): number {
  if (file.data === undefined) return IMAGE_TOKENS;
  // Base64: four characters for three bytes, less the padding.
  const data = file.data;
  const padding = data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0;
  const bytes = Math.floor((data.length * 3) / 4) - padding;
  if (file.mediaType.startsWith("text/")) return Math.max(1, Math.ceil(bytes / CHARS_PER_TOKEN));
  return Math.max(IMAGE_TOKENS, Math.ceil(bytes / DOCUMENT_BYTES_PER_TOKEN));
}

/** Tokens counted for a message's framing (role, separators). */
const MESSAGE_TOKENS = 4;

/** Estimates, by message: messages never change once made, so each is measured once. */
const estimates = new WeakMap<ModelMessage, number>();

/** The estimated tokens of `text`: its length over four, rounded up. */
export function estimateTextTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

function jsonTokens(value: unknown): number {
  if (typeof value === "string") return estimateTextTokens(value);
  try {
    return estimateTextTokens(JSON.stringify(value) ?? "");
  } catch {
    return 0;
  }
}

/**
 * The estimated tokens of one message: about four characters a token for text, thinking,
 * tool inputs and outputs (as JSON), 1,600 for an image (of a user message or a tool result), a document by its size
 * ({@link estimateFileTokens}), 4 for its framing. A heuristic, not a
 * tokenizer: {@link ContextWindow} learns how far off it is from the provider's refusals.
 */
export function estimateMessageTokens(message: ModelMessage): number {
  const known = estimates.get(message);
  if (known !== undefined) return known;
  let tokens = MESSAGE_TOKENS;
  const parts: ReadonlyArray<
    TextPart | ImagePart | FilePart | ThinkingPart | ToolCallPart | ToolResultPart
  > = message.content;
  for (const part of parts) {
    switch (part.type) {
      case "text":
        tokens += estimateTextTokens(part.text);
        break;
      case "thinking":
        tokens += estimateTextTokens(part.text) + estimateTextTokens(part.redacted ?? "");
        break;
      case "image":
        tokens += IMAGE_TOKENS;
        break;
      case "file":
        tokens += estimateFileTokens(part);
        break;
      case "tool-call":
        tokens += estimateTextTokens(part.toolName) + jsonTokens(part.input);
        break;
      case "tool-result":
        tokens += jsonTokens(part.output) + (part.images?.length ?? 0) * IMAGE_TOKENS;
        break;
      default:
        tokens += jsonTokens(part);
    }
  }
  estimates.set(message, tokens);
  return tokens;
}

/** The estimated tokens of what a request carries besides its messages. */
export function estimateFixedTokens(
  system: string | undefined,
  tools: readonly ModelToolDefinition[],
): number {
  let tokens = system === undefined ? 0 : estimateTextTokens(system);
  for (const tool of tools) tokens += jsonTokens(tool);
  return tokens;
}

/** What {@link fitMessages} did to a request's messages. */
export interface FittedMessages {
  messages: ModelMessage[];
  /** Messages left out from the front. */
  dropped: number;
  /** Estimated tokens of the request as sent (fixed part included). */
  tokens: number;
}

/** Options of {@link fitMessages}. */
export interface FitOptions {
  /**
   * Where the previous cut started (an index into `messages`): while what follows it fits,
   * the request starts there again, so that its beginning stays the same from one request to
   * the next and a provider's prompt cache keeps serving it.
   */
  from?: number;
  /**
   * When a cut is made, it goes down to this many tokens (below `maxTokens`), leaving room
   * for the next turns before the beginning of the request has to move again. Default
   * `maxTokens`.
   */
  lowWater?: number;
}

/**
 * The messages of a request cut to fit `maxTokens` (estimated, `fixedTokens` included): whole
 * turns are left out from the front, so that what is sent starts with a user message and no
 * tool result is separated from its call. Messages from `keepFrom` on (the current run's) are
 * always sent, even when they alone do not fit: the provider then says so.
 */
export function fitMessages(
  messages: ModelMessage[],
  maxTokens: number,
  fixedTokens: number,
  keepFrom: number,
  options: FitOptions = {},
): FittedMessages {
  const sizes = new Array<number>(messages.length);
  let total = fixedTokens;
  for (let i = 0; i < messages.length; i++) {
    sizes[i] = estimateMessageTokens(messages[i]!);
    total += sizes[i]!;
  }
  if (total <= maxTokens) return { messages, dropped: 0, tokens: total };
  const limit = Math.min(Math.max(keepFrom, 0), messages.length);
  let cut = 0;
  let tokens = total;
  const from = options.from ?? 0;
  if (from > 0 && from <= limit && messages[from]?.role === "user") {
    // The previous cut's beginning, if what follows it still fits.
    while (cut < from) tokens -= sizes[cut++]!;
    if (tokens <= maxTokens) return { messages: messages.slice(cut), dropped: cut, tokens };
  }
  const target = Math.min(options.lowWater ?? maxTokens, maxTokens);
  // Drop from the front until it fits; then move on to the next turn's start.
  while (cut < limit && tokens > target) tokens -= sizes[cut++]!;
  while (cut < limit && messages[cut]!.role !== "user") tokens -= sizes[cut++]!;
  if (cut === 0) return { messages, dropped: 0, tokens: total };
  return { messages: messages.slice(cut), dropped: cut, tokens };
}

/** Patterns of providers' messages for a prompt longer than the model's context window. */
const OVERFLOW_PATTERNS = [
  /context_length_exceeded/i,
  /context[ _-]?(?:length|window)/i,
  /prompt is too long/i,
  /input is too long/i,
  /maximum context/i,
  /too many (?:input )?tokens/i,
  /request too large/i,
  // Gemini: "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
  /input token count.*exceeds the maximum/i,
  // llama.cpp: "the request exceeds the available context size. try increasing the context
  // size or enable context shift" (type `exceed_context_size_error` in later builds).
  /exceeds? the available context size/i,
  /exceed_context_size/i,
  // Hugging Face text-generation-inference (and Together): "Input validation error: `inputs`
  // must have less than 4096 tokens. Given: 5000".
  /`?inputs`? must have less than \d+ tokens/i,
];

/**
 * text-generation-inference (and Together) when the prompt and the answer's budget together
 * pass the window: "Input validation error: `inputs` tokens + `max_new_tokens` must be <=
 * 4096. Given: 3980 `inputs` tokens and 512 `max_new_tokens`".
 */
const TGI_TOTAL = /`?inputs`? tokens \+ `?max_new_tokens`? must be <= (\d+)/i;
const TGI_GIVEN = /Given: \d+ `?inputs`? tokens and (\d+) `?max_new_tokens`?/i;

function overflowText(text: string | undefined): boolean {
  if (text === undefined) return false;
  if (OVERFLOW_PATTERNS.some((pattern) => pattern.test(text))) return true;
  const total = TGI_TOTAL.exec(text);
  if (total === null) return false;
  // Only a shorter prompt can help when the answer's budget alone fits the window: a
  // `max_new_tokens` of the window or more is refused however short the history.
  const given = TGI_GIVEN.exec(text);
  return given === null || Number(given[1]) < Number(total[1]);
}

/**
 * Whether `error` (a `ProviderError`, or a chain's error naming every attempt) says the
 * request was longer than the model's context window: an `invalid_request` (HTTP 400 or 413)
 * whose message or body says so, in OpenAI's, Anthropic's, Gemini's or a compatible server's
 * words (llama.cpp, text-generation-inference).
 */
export function isContextOverflow(error: unknown): boolean {
  if (ProviderError.isInstance(error)) {
    const e = error as ProviderError;
    if (e.kind !== "invalid_request" && e.statusCode !== 413) return false;
    return overflowText(e.message) || overflowText(e.responseBody);
  }
  if (isBeamClawError(error)) {
    const attempts = (error as { attempts?: ReadonlyArray<{ error?: unknown }> }).attempts;
    // A chain: one of its models refused the length (a fallback may have failed otherwise).
    if (Array.isArray(attempts))
      return attempts.some((attempt) => isContextOverflow(attempt.error));
  }
  return false;
}

/**
 * What a session learns about its model's context window: a budget, in estimated tokens,
 * below the estimate of a request the provider refused as too long. Kept by the session for
 * its life in memory, so that later runs do not send what was refused again.
 */
export interface ContextWindow {
  /** The model (`provider/model`, the first tried) that refused; the budget is its. */
  ref: string | undefined;
  /** Requests are cut to this many estimated tokens; undefined until a refusal. */
  learnedMaxTokens: number | undefined;
  /**
   * The first message of the last cut request: the next one starts there again while it
   * fits (see `FitOptions.from`).
   */
  horizon: ModelMessage | undefined;
}
