/**
 * `@beamclaw/providers`: language-model adapters implementing the `ModelProvider` contract
 * of `@beamclaw/core` for Anthropic, OpenAI and any OpenAI-compatible server.
 *
 * @packageDocumentation
 */
export {
  ANTHROPIC_VERSION,
  type AnthropicCacheTtl,
  type AnthropicPromptCacheOptions,
  type AnthropicProviderOptions,
  createAnthropicProvider,
  DEFAULT_ANTHROPIC_THINKING_BUDGETS,
  type ThinkingBudgets,
} from "./anthropic.js";
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
