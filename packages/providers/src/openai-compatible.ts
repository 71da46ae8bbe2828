/**
 * Any server that speaks OpenAI Chat Completions: Ollama, vLLM, llama.cpp, LM Studio,
 * OpenRouter, Together, Groq, DeepSeek, ...
 */
import { InvalidArgumentError, type ModelInfo, type ModelProvider } from "@beamclaw/core";
import { abortable } from "./abortable.js";
import { checkTimeout, DEFAULT_IDLE_TIMEOUT_MS, type ProviderHttpOptions } from "./http.js";
import { field, stringField } from "./json.js";
import { copyModel, findModel, mergeModels } from "./models.js";
import { createOpenAIHttpClient, streamChatCompletions } from "./openai-chat.js";
import { modelOf } from "./request.js";

/** Options of {@link createOpenAICompatibleProvider}. */
export interface OpenAICompatibleProviderOptions extends ProviderHttpOptions {
  /** The API root that `chat/completions` is under, e.g. `http://127.0.0.1:11434/v1`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer` when given; local servers usually need none. */
  apiKey?: string;
  /** Default `openai-compatible`; name it after the server (`ollama`, `openrouter`). */
  id?: string;
  /**
   * The field that caps output tokens. Default `max_tokens`, which every compatible server
   * reads; OpenAI itself wants `max_completion_tokens`.
   */
  maxTokensField?: "max_tokens" | "max_completion_tokens";
  /** Ask for a final usage chunk (`stream_options.include_usage`). Default true. */
  includeUsage?: boolean;
  /** Context windows and prices of the server's models, merged into `listModels()`. */
  models?: ModelInfo[];
  /**
   * Send a request's `cacheKey` (a digest of the session key) as `prompt_cache_key`, for a
   * server that routes requests to where their prefix is cached by it, as OpenAI does.
   * Default false: a strict server may refuse a field it does not know.
   */
  promptCacheKey?: boolean;
  /**
   * Send a request's `responseFormat` (a run's structured `output`) as `response_format`
   * (`{ type: "json_schema", json_schema: { name, schema, description?, strict? } }`), which
   * Ollama, vLLM, llama.cpp and OpenRouter use to constrain the answer. Default true. `false`
   * sends nothing, for a server that rejects the field or does not know `json_schema`: the
   * answer is then not constrained (say in the prompt that it must be JSON), and the agent
   * loop still validates it against the schema and asks again when it does not conform.
   */
  structuredOutputs?: boolean;
  /**
   * Send tool call ids in the form Mistral requires, exactly 9 of `a-z`, `A-Z`, `0-9`: its
   * API, and Mistral models' chat templates on vLLM, llama.cpp or MLX, refuse any other
   * ("Tool call id was … but must be a-z, A-Z, 0-9, with a length of 9"), so a conversation
   * holding another vendor's call ids (after a failover, or a change of model) or ids this
   * library made up could not go on. Other ids are mapped to 9 characters derived from them,
   * the same on a call and its result and from one request to the next. Default: on for
   * `api.mistral.ai` and for models whose id names a Mistral family (`mistral`, `mixtral`,
   * `ministral`, `codestral`, `devstral`, `magistral`, `pixtral`, `voxtral`); `true` or
   * `false` decides for every model. With `true`, and for those models, a user message right
   * after tool results also gets an assistant message before it, as Mistral requires (it
   * refuses "Unexpected role 'user' after role 'tool'").
   */
  mistralToolCallIds?: boolean;
}

/**
 * Creates a provider for an OpenAI-compatible Chat Completions endpoint. Reasoning streamed
 * as `delta.reasoning_content` or `delta.reasoning` (DeepSeek, vLLM, Ollama, OpenRouter)
 * becomes `thinking-delta` events.
 *
 * @example
 * ```ts
 * const ollama = createOpenAICompatibleProvider({ id: "ollama", baseUrl: "http://127.0.0.1:11434/v1" });
 * for await (const event of ollama.stream({
 *   model: "llama3.2",
 *   messages: [{ role: "user", content: [{ type: "text", text: "Hello" }] }],
 * })) {
 *   if (event.type === "text-delta") process.stdout.write(event.text);
 * }
 * ```
 */
export function createOpenAICompatibleProvider(
  options: OpenAICompatibleProviderOptions,
): ModelProvider {
  if (options === undefined || typeof options.baseUrl !== "string") {
    throw new InvalidArgumentError(
      "createOpenAICompatibleProvider needs a baseUrl, e.g. http://127.0.0.1:11434/v1",
    );
  }
  const id = options.id ?? "openai-compatible";
  const maxTokensField = options.maxTokensField ?? "max_tokens";
  if (maxTokensField !== "max_tokens" && maxTokensField !== "max_completion_tokens") {
    throw new InvalidArgumentError(
      `maxTokensField must be "max_tokens" or "max_completion_tokens", got ${JSON.stringify(maxTokensField)}`,
    );
  }
  const structuredOutputs = options.structuredOutputs;
  if (structuredOutputs !== undefined && typeof structuredOutputs !== "boolean") {
    throw new InvalidArgumentError(
      `structuredOutputs must be a boolean, got ${JSON.stringify(structuredOutputs)}`,
    );
  }
  const idleTimeoutMs = checkTimeout(
    "idleTimeoutMs",
    options.idleTimeoutMs,
    DEFAULT_IDLE_TIMEOUT_MS,
  );
  const mistralIds = options.mistralToolCallIds;
  if (mistralIds !== undefined && typeof mistralIds !== "boolean") {
    throw new InvalidArgumentError(
      `mistralToolCallIds must be a boolean, got ${JSON.stringify(mistralIds)}`,
    );
  }
  const apiKey = options.apiKey === "" ? undefined : options.apiKey;
  const http = createOpenAIHttpClient(options, apiKey, options.baseUrl);
  const dialect = {
    maxTokensField,
    includeUsage: options.includeUsage ?? true,
    requireDone: false,
    apiKeyEnv: undefined,
    promptCacheKey: options.promptCacheKey === true,
    responseFormat: structuredOutputs !== false,
    mistralToolCallIds: mistralIds ?? (isMistralApi(options.baseUrl) ? true : undefined),
  } as const;
  const models = options.models;
  /** The prices `modelInfo` reads: what the caller said of the server's models. */
  const priced = mergeModels([], models);
  return {
    specificationVersion: "v1",
    id,
    stream(request, callOptions = {}) {
      return abortable(
        streamChatCompletions(request, callOptions, { id, http, apiKey, idleTimeoutMs, dialect }),
        callOptions.signal,
        { provider: id, model: modelOf(request) },
      );
    },
    /** The server's `GET /models`, with the context windows and prices given in `models`. */
    modelInfo(modelId: string) {
      const known = findModel(priced, modelId);
      return known === undefined ? undefined : copyModel(known);
    },
    async listModels() {
      const list = await http.getJson("models", { provider: id });
      const data = field(list, "data");
      const served: ModelInfo[] = [];
      if (Array.isArray(data)) {
        for (const entry of data) {
          const modelId = stringField(entry, "id");
          if (modelId !== undefined) served.push({ id: modelId });
        }
      }
      return mergeModels(served, models);
    },
  };
}

/** Whether `baseUrl` is Mistral's own API (`api.mistral.ai`), whatever the model's id. */
function isMistralApi(baseUrl: string): boolean {
  try {
    return new URL(baseUrl).hostname === "api.mistral.ai";
  } catch {
    return false;
  }
}
