import type { HubMethod } from "../hub.js";
import { approvalMethods } from "./approvals.js";
import { catalogMethods } from "./catalog.js";
import { type ChannelMethodSource, mountChannelMethods } from "./channels.js";
import { chatMethods } from "./chat.js";
import { cronMethods } from "./cron.js";
import { deviceMethods } from "./devices.js";
import { nodeMethods } from "./nodes.js";
import { sessionCleanupMethods } from "./session-cleanup.js";
import { sessionSearchMethods } from "./session-search.js";
import { sessionUsageMethods } from "./session-usage.js";
import { sessionUsageDetailMethods } from "./session-usage-detail.js";
import { sessionMethods } from "./sessions.js";
import { systemMethods } from "./system.js";

/**
 * Every method the gateway answers: the built-in ones and the channels' (`<channel>.<name>`).
 *
 * @throws AlreadyRegisteredError when a channel method has a built-in method's name.
 */
export function coreMethods(channels?: ChannelMethodSource): Record<string, HubMethod> {
  const builtIn: Record<string, HubMethod> = {
    ...systemMethods,
    ...catalogMethods,
    ...sessionMethods,
    ...sessionSearchMethods,
    ...sessionCleanupMethods,
    ...sessionUsageMethods,
    ...sessionUsageDetailMethods,
    ...chatMethods,
    ...cronMethods,
    ...approvalMethods,
    ...nodeMethods,
    ...deviceMethods,
  };
  return { ...builtIn, ...mountChannelMethods(builtIn, channels) };
}
