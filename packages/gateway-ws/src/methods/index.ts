import type { HubMethod } from "../hub.js";
import { approvalMethods } from "./approvals.js";
import { catalogMethods } from "./catalog.js";
import { chatMethods } from "./chat.js";
import { cronMethods } from "./cron.js";
import { deviceMethods } from "./devices.js";
import { nodeMethods } from "./nodes.js";
import { sessionMethods } from "./sessions.js";
import { systemMethods } from "./system.js";

/** Every method the gateway answers. */
export function coreMethods(): Record<string, HubMethod> {
  return {
    ...systemMethods,
    ...catalogMethods,
    ...sessionMethods,
    ...chatMethods,
    ...cronMethods,
    ...approvalMethods,
    ...nodeMethods,
    ...deviceMethods,
  };
}
