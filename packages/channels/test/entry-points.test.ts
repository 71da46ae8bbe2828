import { describeEntryPoints } from "../../../test/entry-points.js";

describeEntryPoints(new URL("..", import.meta.url), {
  "@beamclaw/channels": ["WebhookChannel", "createWebhookChannel"],
  "@beamclaw/channels/discord": ["DiscordChannel", "DiscordGatewayError", "createDiscordChannel"],
  "@beamclaw/channels/slack": ["SlackChannel", "createSlackChannel", "verifySlackRequest"],
  "@beamclaw/channels/telegram": ["TelegramChannel", "createTelegramChannel"],
  "@beamclaw/channels/webhook": [
    "WebhookChannel",
    "WebhookSignatureError",
    "createWebhookChannel",
    "signWebhookPayload",
    "verifyWebhookSignature",
  ],
});
