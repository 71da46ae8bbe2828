export type { InlineAttachmentOptions } from "../shared/files.js";
export type { SlackBotIdentity } from "./inbound.js";
export {
  SLACK_DEFAULT_TOLERANCE_MS,
  SLACK_SIGNATURE_HEADER,
  SLACK_TIMESTAMP_HEADER,
  SlackSignatureError,
  type SlackSignatureProblem,
  signSlackRequest,
  type VerifySlackRequestOptions,
  verifySlackRequest,
} from "./signature.js";
export {
  createSlackChannel,
  SlackChannel,
  type SlackChannelOptions,
  SlackConnectionError,
  type SlackMode,
} from "./slack-channel.js";
export {
  escapeSlackText,
  SLACK_MENTION_KINDS,
  type SlackAllowedMentions,
  type SlackMentionKind,
  unescapeSlackText,
} from "./text.js";
export { SlackApiError } from "./web-api.js";
