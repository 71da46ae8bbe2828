/**
 * `@beamclaw/providers`: language-model adapters implementing the `ModelProvider` contract
 * of `@beamclaw/core` for Anthropic, OpenAI, Google Gemini and any OpenAI-compatible server.
 *
 * @packageDocumentation
 */
export {
  ANTHROPIC_VERSION,
  type AnthropicCacheTtl,
  type AnthropicPromptCacheOptions,
  type AnthropicProviderOptions,
  type AnthropicThinkingMode,
  anthropicUsesAdaptiveThinking,
  createAnthropicProvider,
  DEFAULT_ANTHROPIC_THINKING_BUDGETS,
  type ThinkingBudgets,
} from "./anthropic.js";
export {
  createGoogleProvider,
  DEFAULT_GOOGLE_THINKING_BUDGETS,
  GOOGLE_SKIP_SIGNATURE,
  GOOGLE_THINKING_FORMAT,
  type GoogleAccessToken,
  type GoogleProviderOptions,
  type GoogleThinkingBudgets,
  type GoogleVertexOptions,
} from "./google.js";
export {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_TIMEOUT_MS,
  type FetchFunction,
  type ProviderHttpOptions,
} from "./http.js";
export { createOpenAIProvider, type OpenAIProviderOptions } from "./openai.js";
export {
  createOpenAICompatibleProvider,
  type OpenAICompatibleProviderOptions,
} from "./openai-compatible.js";
export {
  createOpenAITranscriber,
  type OpenAITranscriberOptions,
} from "./openai-transcription.js";
