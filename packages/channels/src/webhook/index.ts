export {
  DEFAULT_TOLERANCE_MS,
  DELIVERY_HEADER,
  SIGNATURE_HEADER,
  signWebhookPayload,
  type VerifyWebhookOptions,
  verifyWebhookSignature,
  WebhookSignatureError,
  type WebhookSignatureProblem,
} from "./signature.js";
export {
  createWebhookChannel,
  WebhookChannel,
  type WebhookChannelOptions,
  type WebhookInboundEvent,
  type WebhookOutboundEvent,
  type WebhookOutboundPayload,
  type WebhookRetryOptions,
} from "./webhook-channel.js";
