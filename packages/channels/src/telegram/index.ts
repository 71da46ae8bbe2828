/**
 * The Telegram channel: a bot on the Bot API (through grammY's client), by long polling or a
 * webhook with a secret token.
 */

export type { InlineAttachmentOptions } from "../shared/files.js";
export {
  TelegramApiError,
  type TelegramFailure,
  telegramFailureOf,
  toChannelSendError as toTelegramSendError,
} from "./errors.js";
export {
  ALLOWED_UPDATES,
  messageOfUpdate,
  type NormalizedMessage,
  normalizeMessage,
  parseTelegramMessageId,
  type TelegramBotIdentity,
  type TelegramFileRef,
  telegramMessageId,
} from "./inbound.js";
export { escapeMarkdownV2, toTelegramMarkdownV2 } from "./markdown.js";
export type { TelegramPollingOptions } from "./polling.js";
export {
  createTelegramChannel,
  type TelegramAttachmentOptions,
  TelegramChannel,
  type TelegramChannelOptions,
} from "./telegram-channel.js";
export { SECRET_TOKEN_HEADER, type TelegramWebhookOptions } from "./webhook-server.js";
