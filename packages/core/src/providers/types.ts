/**
 * The provider contract: how BeamClaw talks to a language model. Specification only (types),
 * versioned by `specificationVersion` so that a `v2` can live beside `v1` later.
 *
 * Adapters (`@beamclaw/providers`: Anthropic, OpenAI, OpenAI-compatible) implement
 * {@link ModelProvider}; the agent loop consumes it through a `ProviderChain`.
 */

/** JSON-compatible value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject;
/**
 * JSON object. Properties may be `undefined` (optional fields); they are dropped when
 * serialized, as `JSON.stringify` does.
 */
export type JsonObject = { [key: string]: JsonValue | undefined };

/** Plain text. */
export interface TextPart {
  type: "text";
  text: string;
}

/** An image, inline (base64) or by URL. */
export interface ImagePart {
  type: "image";
  /** e.g. `image/png`. */
  mediaType: string;
  /** Base64 data (without a `data:` prefix) ... */
  data?: string;
  /** ... or a URL the provider can fetch. */
  url?: string;
}

/**
 * A document the user attached: a PDF (every adapter), or plain text (Anthropic, Gemini),
 * inline (base64) or by URL. Vendors read PDFs page by page, text and images alike.
 */
export interface FilePart {
  type: "file";
  /** e.g. `application/pdf`, `text/plain`. */
  mediaType: string;
  /** Base64 data (without a `data:` prefix) ... */
  data?: string;
  /** ... or a URL the provider can fetch (not every vendor takes one). */
  url?: string;
  /** The file's name, for vendors that show it to the model (OpenAI) or title it (Anthropic). */
  filename?: string;
}

/** Model reasoning ("thinking"), kept so that it can be sent back on the next turn. */
export interface ThinkingPart {
  type: "thinking";
  text: string;
  /**
   * Opaque provider token that must accompany the thinking when sent back: Anthropic's
   * signature, the OpenAI Responses reasoning item id (with the id of the output item that
   * followed it: `rs_…|fc_…|call_…`), or a Gemini thought signature.
   */
  signature?: string;
  /** Reasoning the provider returned only in encrypted / redacted form (Anthropic redacted thinking, OpenAI encrypted_content). */
  redacted?: string;
  /**
   * Whose `signature` and `redacted` these are, when an adapter says so: `google` for a
   * Gemini thought signature. An adapter sends a signature back only to the vendor that
   * made it (another vendor would reject it). Unset: Anthropic's, or OpenAI's (`rs_` ids).
   */
  format?: string;
}

/** A tool call made by the assistant. */
export interface ToolCallPart {
  type: "tool-call";
  /** Provider-assigned id that the result refers to. */
  toolCallId: string;
  toolName: string;
  /** Parsed JSON arguments. */
  input: JsonValue;
}

/** The result of a tool call, sent back to the model. */
export interface ToolResultPart {
  type: "tool-result";
  toolCallId: string;
  toolName: string;
  /** What the tool returned (text or JSON). */
  output: JsonValue;
  /** True when `output` describes a failure (validation error, timeout, denial). */
  isError?: boolean;
  /**
   * Images the tool returned (inline base64, checked by the tool runner; see `toolResult`),
   * sent to the model with `output` by adapters whose API takes them.
   */
  images?: ImagePart[];
}

/** A message of the normalized conversation model. */
export type ModelMessage =
  | { role: "user"; content: Array<TextPart | ImagePart | FilePart> }
  | { role: "assistant"; content: Array<TextPart | ThinkingPart | ToolCallPart> }
  | { role: "tool"; content: ToolResultPart[] };

/** A tool the model may call. */
export interface ModelToolDefinition {
  name: string;
  description: string;
  /** JSON Schema (draft 2020-12 / the subset vendors accept) of the tool's input object. */
  inputSchema: JsonObject;
}

/** How much the model should think before answering. `off` disables thinking. */
export type ThinkingLevel = "off" | "minimal" | "low" | "medium" | "high";

/** One request to a model. */
export interface ModelRequest {
  /** The provider's model id, e.g. `claude-sonnet-4-5` or `gpt-4.1-mini`. */
  model: string;
  system?: string;
  messages: ModelMessage[];
  tools?: ModelToolDefinition[];
  /** Default `auto` when tools are given. */
  toolChoice?: "auto" | "none" | "required" | { toolName: string };
  maxOutputTokens?: number;
  temperature?: number;
  thinking?: ThinkingLevel;
  /** Provider-specific options, passed through untouched, keyed by provider id. */
  providerOptions?: Record<string, JsonObject>;
  /**
   * A stable id shared by requests that start with the same prompt, such as the turns of
   * one conversation (the agent loop passes the session key). Providers that route requests
   * by such a key to where their prefix is cached send it (OpenAI's `prompt_cache_key`, as a
   * SHA-256 digest, so the key itself does not leave the process); others ignore it.
   */
  cacheKey?: string;
  /**
   * The form the model's answer must take. Providers that can constrain their output to a
   * JSON Schema send it (Anthropic's `output_config.format`, OpenAI's `response_format` and
   * the Responses API's `text.format`); the answer is then the JSON text, streamed as
   * `text-delta` events like any other. The agent loop sets it from a run's `output` (see
   * `SendOptions.output`) and validates the answer whatever the provider did with it.
   */
  responseFormat?: ModelResponseFormat;
}

/**
 * A JSON answer conforming to `schema` (JSON Schema, draft 2020-12; the root is an object).
 * `strict: true` asks providers that can for constrained decoding (OpenAI's `strict`), which
 * needs every object's properties all `required` and `additionalProperties: false`.
 */
export interface ModelResponseFormat {
  type: "json-schema";
  /** `^[a-zA-Z0-9_-]{1,64}$`: the schema's name, for providers that ask for one. */
  name: string;
  schema: JsonObject;
  description?: string;
  strict?: boolean;
}

/** Token usage of one model call. Counts a provider does not report are omitted. */
export interface ModelUsage {
  /** Every input token, including those read from and written to the prompt cache. */
  inputTokens: number;
  outputTokens: number;
  /** Input tokens read from the provider's prompt cache. */
  cacheReadTokens?: number;
  /** Input tokens written to the provider's prompt cache. */
  cacheWriteTokens?: number;
  /**
   * The part of `cacheWriteTokens` written to a one-hour cache (Anthropic's `ttl: "1h"`),
   * priced at `cacheWrite1hPerMTok`; the rest is priced at `cacheWritePerMTok`.
   */
  cacheWrite1hTokens?: number;
  /** Output tokens spent on reasoning, when reported separately. */
  reasoningTokens?: number;
}

/** Why the model stopped. */
export type FinishReason =
  | "stop"
  | "tool-calls"
  | "length"
  | "content-filter"
  | "refusal"
  | "error"
  | "other";

/**
 * The events of one streamed model call, in order: `response-start`, then any of the
 * content events, then `usage` (zero or more, the last one wins) and exactly one `finish`.
 * A failure is thrown from the iterator as a `ProviderError`, never yielded.
 */
export type ModelStreamEvent =
  | { type: "response-start"; id?: string; model: string }
  | { type: "text-delta"; text: string }
  | { type: "thinking-delta"; text: string }
  /** A thinking block is complete; carries its signature when the provider gives one. */
  | { type: "thinking-end"; signature?: string; redacted?: string; format?: string }
  /** A tool call has begun streaming; its arguments follow as `tool-call-delta`s. */
  | { type: "tool-call-start"; toolCallId: string; toolName: string }
  | { type: "tool-call-delta"; toolCallId: string; inputTextDelta: string }
  /** A tool call is complete with its parsed arguments. */
  | { type: "tool-call"; toolCallId: string; toolName: string; input: JsonValue }
  | { type: "usage"; usage: ModelUsage }
  | { type: "finish"; reason: FinishReason; rawReason?: string };

/** Per-call options. */
export interface ModelCallOptions {
  /** Aborting cancels the HTTP request and ends the stream with an `AbortedError`. */
  signal?: AbortSignal;
  /** Extra HTTP headers for this call. */
  headers?: Record<string, string>;
}

/** Price of a model in US dollars per million tokens, for cost accounting. */
export interface ModelPricing {
  inputPerMTok: number;
  outputPerMTok: number;
  cacheReadPerMTok?: number;
  /** Writes to the prompt cache (Anthropic: its five-minute cache). */
  cacheWritePerMTok?: number;
  /** Writes to a one-hour prompt cache; `cacheWritePerMTok` when not given. */
  cacheWrite1hPerMTok?: number;
}

/** What a provider says about one of its models. */
export interface ModelInfo {
  id: string;
  /** Context window in tokens, when known. */
  contextWindow?: number;
  pricing?: ModelPricing;
}

/**
 * A language-model provider, version 1.
 *
 * @example
 * ```ts
 * for await (const event of provider.stream({ model: "m", messages }, { signal })) {
 *   if (event.type === "text-delta") process.stdout.write(event.text);
 * }
 * ```
 */
export interface ModelProvider {
  readonly specificationVersion: "v1";
  /** Stable id used in `provider/model` references, e.g. `anthropic`, `openai`, `ollama`. */
  readonly id: string;
  /**
   * Streams one model call. Errors (HTTP, network, malformed stream, abort) are thrown from
   * the iterator as `ProviderError` / `AbortedError`.
   */
  stream(request: ModelRequest, options?: ModelCallOptions): AsyncIterable<ModelStreamEvent>;
  /** Models this provider knows, with pricing when known. */
  listModels?(): Promise<ModelInfo[]>;
  /**
   * What the provider knows of one model at once, without a request (its built-in list and
   * the caller's corrections): `ProviderChain.cost` prices usage with its `pricing`.
   * Undefined for a model it does not know.
   */
  modelInfo?(modelId: string): ModelInfo | undefined;
}

/** Audio to transcribe: a voice note, a recording. */
export interface TranscriptionInput {
  /** The audio file's bytes. */
  data: Uint8Array;
  /** Its media type, e.g. `audio/ogg`. */
  mediaType: string;
  /** Its file name, when known (vendors read the format from the extension too). */
  filename?: string;
}

/** Options of one {@link Transcriber.transcribe} call. */
export interface TranscriptionOptions {
  /** Cancels the request. */
  signal?: AbortSignal;
  /** The spoken language (ISO-639-1, e.g. `de`), when known: faster and more accurate. */
  language?: string;
}

/** What a transcription gave. */
export interface TranscriptionResult {
  /** The words spoken. */
  text: string;
  /** The language, when the vendor says. */
  language?: string;
  /** The audio's length in seconds, when the vendor says. */
  durationSeconds?: number;
}

/**
 * Turns speech into text (a speech-to-text API): what a `ChannelManager` with a
 * `transcriber` does with the voice notes channels deliver. `@beamclaw/providers` has
 * `createOpenAITranscriber` (OpenAI, and OpenAI-compatible servers such as Groq's).
 * Failures throw (a `ProviderError` for a vendor's answer).
 */
export interface Transcriber {
  /** Names the transcriber in logs, e.g. `openai`. */
  readonly id: string;
  transcribe(
    input: TranscriptionInput,
    options?: TranscriptionOptions,
  ): Promise<TranscriptionResult>;
}
