export {
  type ChannelState,
  ChannelSupervisor,
  type ChannelSupervisorOptions,
  type ReconnectOptions,
  reconnectDelay,
} from "./channel-supervisor.js";
export { chunkText, MIN_CHUNK_LENGTH } from "./chunk.js";
export { Debouncer } from "./debounce.js";
export type { ChannelLogoutOutcome } from "./lifecycle-methods.js";
export {
  type ChannelEntry,
  ChannelManager,
  type ChannelManagerOptions,
  type ChannelSettings,
  type ChannelStatus,
  type DeliverOptions,
  type OutboundMessage,
} from "./manager.js";
export {
  ChannelOutbox,
  type ChannelOutboxOptions,
  type DeadLetter,
  type OutboxEntry,
  type OutboxPart,
  type OutboxRetryOptions,
  type OutboxRun,
  type OutboxSender,
} from "./outbox.js";
export {
  type ApprovedPeer,
  generatePairingCode,
  PAIRING_CODE_ALPHABET,
  PAIRING_CODE_LENGTH,
  type PairingAnswerOptions,
  type PairingRequest,
  type PairingRequestResult,
  PairingStore,
  type PairingStoreOptions,
} from "./pairing.js";
export {
  type AccessDecision,
  type AccessPolicy,
  type DmPolicy,
  decideAccess,
  type GroupPolicy,
  isOperator,
  validateAccessPolicy,
} from "./policy.js";
export { runSessionCommand } from "./session-commands.js";
export {
  DM_SCOPES,
  type DmScope,
  decodeKeySegment,
  type EncodeKeySegmentOptions,
  encodeKeySegment,
  type ResolveSessionKeyOptions,
  resolveSessionKey,
} from "./session-routing.js";
export {
  type ApprovalPrompt,
  CHAT_COMMANDS,
  type ChannelCommand,
  type ChannelTexts,
  type ChatCommandArg,
  type ChatCommandInfo,
  defaultChannelTexts,
  parseChannelCommand,
  parseSessionCommand,
  type SessionCommand,
  type SessionStatusView,
} from "./texts.js";
export type * from "./types.js";
export { assertChannelPlugin, CHANNEL_ID_PATTERN, normalizeInbound } from "./validate.js";
