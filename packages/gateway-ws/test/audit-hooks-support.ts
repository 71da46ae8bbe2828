/**
 * What the audit-hooks tests share: a stack (runtime + gateway on a real port) with hooks
 * enabled under {@link HOOK_TOKEN}. Not a test file itself.
 */
import type { GatewayHooksOptions } from "../src/hooks/ingress.js";
import { type Stack, startStack } from "./support.js";

export const HOOK_TOKEN = "hook-token-0123456789abcdef";

/** A started stack whose hooks take `settings` (over `enabled` and the token). */
export function hookStack(
  settings: Record<string, unknown> = {},
  extra: { responses?: string[]; now?: () => number } = {},
): Promise<Stack> {
  return startStack({
    responses: extra.responses ?? [],
    gateway: {
      hooks: {
        settings: {
          enabled: true,
          token: HOOK_TOKEN,
          ...settings,
        } as GatewayHooksOptions["settings"],
      },
      ...(extra.now === undefined ? {} : { now: extra.now }),
    },
  });
}
