export type { InlineAttachmentOptions } from "../shared/files.js";
export {
  createDiscordChannel,
  DEFAULT_DISCORD_INTENTS,
  DISCORD_MAX_MESSAGE_LENGTH,
  type DiscordAllowedMentions,
  type DiscordBackfillOptions,
  DiscordChannel,
  type DiscordChannelOptions,
  DiscordIntents,
} from "./discord-channel.js";
export { DISCORD_GATEWAY_ERROR, DiscordGatewayError } from "./errors.js";
export type { DiscordGatewaySettings } from "./gateway.js";
export { nonceFor as discordNonceFor } from "./outbound.js";
