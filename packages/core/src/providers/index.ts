export type { RetryOptions, SleepFunction } from "./backoff.js";
export {
  type AttemptFailedEvent,
  type AttemptStartEvent,
  type ChainCallOptions,
  type ChainStreamEvent,
  type ChainTelemetryContext,
  createProviderChain,
  ProviderChain,
  type ProviderChainOptions,
} from "./chain.js";
export type { CircuitBreakerOptions, CircuitState } from "./circuit-breaker.js";
export { computeCost } from "./cost.js";
export {
  baseMediaType,
  decodeTextFile,
  detectBase64MediaType,
  detectMediaType,
  isTextMediaType,
  MODEL_IMAGE_TYPES,
  textAttachmentBlock,
  transcriptLine,
} from "./media.js";
export { estimateRequestTokens, type RateLimits } from "./rate-limiter.js";
export { answerToolCalls, INTERRUPTED_TOOL_OUTPUT } from "./tool-results.js";
export type * from "./types.js";
