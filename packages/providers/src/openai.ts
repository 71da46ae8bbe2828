/**
 * The OpenAI provider: the Responses API by default, Chat Completions on request.
 */
import { InvalidArgumentError, type ModelInfo, type ModelProvider } from "@beamclaw/core";
import { abortable } from "./abortable.js";
import {
  checkTimeout,
  DEFAULT_IDLE_TIMEOUT_MS,
  type ProviderHttpOptions,
  resolveApiKey,
} from "./http.js";
import { copyModel, findModel, mergeModels, OPENAI_MODELS } from "./models.js";
import {
  createOpenAIHttpClient,
  OpenAIEffortMemory,
  streamChatCompletions,
} from "./openai-chat.js";
import { RejectedReasoning, streamResponses } from "./openai-responses.js";
import { modelOf } from "./request.js";

/** Options of {@link createOpenAIProvider}. */
export interface OpenAIProviderOptions extends ProviderHttpOptions {
  /** Default `process.env.OPENAI_API_KEY`; sent as `Authorization: Bearer`. */
  apiKey?: string;
  /** Default `https://api.openai.com/v1`. */
  baseUrl?: string;
  /**
   * `responses` (default): the Responses API, which streams reasoning summaries and serves
   * every OpenAI model. `chat`: Chat Completions.
   */
  api?: "responses" | "chat";
  /** Corrections and additions to the built-in model and price list. */
  models?: ModelInfo[];
  /**
   * Send a request's `cacheKey` (the agent loop's: a digest of the session key) as
   * `prompt_cache_key`, which OpenAI uses to route a conversation's requests to where its
   * prefix is cached. Default true.
   */
  promptCacheKey?: boolean;
}

/**
 * Creates the OpenAI provider.
 *
 * @example
 * ```ts
 * const openai = createOpenAIProvider(); // reads OPENAI_API_KEY; { api: "chat" } for Chat Completions
 * for await (const event of openai.stream({
 *   model: "gpt-4.1-mini",
 *   messages: [{ role: "user", content: [{ type: "text", text: "Hello" }] }],
 * })) {
 *   if (event.type === "text-delta") process.stdout.write(event.text);
 * }
 * ```
 */
export function createOpenAIProvider(options: OpenAIProviderOptions = {}): ModelProvider {
  const id = options.id ?? "openai";
  const api = options.api ?? "responses";
  if (api !== "responses" && api !== "chat") {
    throw new InvalidArgumentError(`api must be "responses" or "chat", got ${JSON.stringify(api)}`);
  }
  const apiKey = resolveApiKey(options.apiKey, "OPENAI_API_KEY");
  const idleTimeoutMs = checkTimeout(
    "idleTimeoutMs",
    options.idleTimeoutMs,
    DEFAULT_IDLE_TIMEOUT_MS,
  );
  const http = createOpenAIHttpClient(options, apiKey, "https://api.openai.com/v1");
  const models = options.models;
  /** The price list `modelInfo` reads: the built-in one with the caller's corrections. */
  const priced = mergeModels(OPENAI_MODELS, models);
  const promptCacheKey = options.promptCacheKey !== false;
  // What this instance learned from OpenAI's refusals, so that only the first call pays one.
  const efforts = new OpenAIEffortMemory();
  const rejectedReasoning = new RejectedReasoning();
  return {
    specificationVersion: "v1",
    id,
    stream(request, callOptions = {}) {
      const context = { provider: id, model: modelOf(request) };
      if (api === "chat") {
        const events = streamChatCompletions(request, callOptions, {
          id,
          http,
          apiKey,
          idleTimeoutMs,
          dialect: {
            maxTokensField: "max_completion_tokens",
            includeUsage: true,
            requireDone: true,
            apiKeyEnv: "OPENAI_API_KEY",
            promptCacheKey,
            responseFormat: true,
            openAIModels: true,
          },
          efforts,
        });
        return abortable(events, callOptions.signal, context);
      }
      const events = streamResponses(request, callOptions, {
        id,
        http,
        apiKey,
        idleTimeoutMs,
        promptCacheKey,
        rejectedReasoning,
        efforts,
      });
      return abortable(events, callOptions.signal, context);
    },
    async listModels() {
      return mergeModels(OPENAI_MODELS, models);
    },
    modelInfo(modelId: string) {
      const known = findModel(priced, modelId);
      return known === undefined ? undefined : copyModel(known);
    },
  };
}
