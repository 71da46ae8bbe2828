/**
 * Who may talk to the agent through a channel: DM policy, group policy, mention gating.
 * Pure decisions; the pairing side effects live in `PairingStore`.
 */
import { InvalidArgumentError } from "../errors.js";
import type { InboundMessage } from "./types.js";

/**
 * Who may send direct messages:
 * - `pairing`: senders on the allowlist or approved before; an unknown sender gets an
 *   8-character pairing code (valid one hour) and is let in once an operator approves it.
 * - `allowlist`: only senders on the allowlist (or approved before); others are refused.
 * - `open`: anyone.
 * - `disabled`: nobody.
 */
export type DmPolicy = "pairing" | "allowlist" | "open" | "disabled";

/**
 * Which group chats the agent takes part in:
 * - `allowlist`: only the groups listed in `groups` (`"*"` for any).
 * - `open`: any group.
 * - `disabled`: none.
 */
export type GroupPolicy = "allowlist" | "open" | "disabled";

/** The access rules of one channel. */
export interface AccessPolicy {
  /** Default `pairing`. */
  dmPolicy?: DmPolicy;
  /** Peer ids always allowed to send DMs (`"*"`: anyone). Default none. */
  allowFrom?: readonly string[];
  /** Default `allowlist`. */
  groupPolicy?: GroupPolicy;
  /** Group chat ids the agent takes part in under `allowlist` (`"*"`: any). Default none. */
  groups?: readonly string[];
  /** When set, only these peers are heard in groups (`"*"`: anyone). Default anyone. */
  groupAllowFrom?: readonly string[];
  /** In groups, only messages that mention the bot (or reply to it) are answered. Default true. */
  requireMention?: boolean;
  /** Peers who may answer approvals and pairing requests from the chat; always allowed in. */
  operators?: readonly string[];
}

/** What the policy says about one inbound message. */
export type AccessDecision =
  | { allow: true }
  | {
      allow: false;
      /** `pairing` means: not yet known, ask for (or remind of) a pairing code. */
      outcome: "blocked" | "ignored" | "pairing";
      reason: string;
    };

const DM_POLICIES: readonly DmPolicy[] = ["pairing", "allowlist", "open", "disabled"];
const GROUP_POLICIES: readonly GroupPolicy[] = ["allowlist", "open", "disabled"];

/**
 * Checks an access policy's fields.
 *
 * @throws InvalidArgumentError naming the bad field.
 */
export function validateAccessPolicy(policy: AccessPolicy, where = "channel"): void {
  const bad = (problem: string): never => {
    throw new InvalidArgumentError(`${where}: ${problem}`);
  };
  if (policy.dmPolicy !== undefined && !DM_POLICIES.includes(policy.dmPolicy)) {
    bad(
      `dmPolicy must be one of ${DM_POLICIES.join(", ")}, got ${JSON.stringify(policy.dmPolicy)}`,
    );
  }
  if (policy.groupPolicy !== undefined && !GROUP_POLICIES.includes(policy.groupPolicy)) {
    bad(
      `groupPolicy must be one of ${GROUP_POLICIES.join(", ")}, got ${JSON.stringify(policy.groupPolicy)}`,
    );
  }
  for (const list of ["allowFrom", "groups", "groupAllowFrom", "operators"] as const) {
    const value = policy[list];
    if (value === undefined) continue;
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string" && v.length > 0)) {
      bad(`${list} must be an array of non-empty strings`);
    }
  }
  if (policy.requireMention !== undefined && typeof policy.requireMention !== "boolean") {
    bad("requireMention must be a boolean");
  }
}

function listed(list: readonly string[] | undefined, id: string): boolean {
  return list !== undefined && (list.includes("*") || list.includes(id));
}

/** True when `peerId` is one of the channel's operators. */
export function isOperator(policy: AccessPolicy, peerId: string): boolean {
  return policy.operators?.includes(peerId) ?? false;
}

/**
 * Decides whether an inbound message reaches the agent. `paired` says whether the sender
 * was approved through pairing before (the host looks it up).
 *
 * @example
 * ```ts
 * decideAccess(message, { dmPolicy: "allowlist", allowFrom: ["alice"] }, false);
 * // { allow: false, outcome: "blocked", reason: "sender is not on the DM allowlist" }
 * ```
 */
export function decideAccess(
  message: Pick<InboundMessage, "chatType" | "chatId" | "peer" | "mentions">,
  policy: AccessPolicy,
  paired: boolean,
): AccessDecision {
  const operator = isOperator(policy, message.peer.id);
  if (message.chatType === "direct") {
    const dmPolicy = policy.dmPolicy ?? "pairing";
    if (dmPolicy === "disabled") {
      return { allow: false, outcome: "blocked", reason: "direct messages are disabled" };
    }
    if (dmPolicy === "open" || operator || paired || listed(policy.allowFrom, message.peer.id)) {
      return { allow: true };
    }
    if (dmPolicy === "pairing") {
      return { allow: false, outcome: "pairing", reason: "sender is not paired yet" };
    }
    return { allow: false, outcome: "blocked", reason: "sender is not on the DM allowlist" };
  }
  const groupPolicy = policy.groupPolicy ?? "allowlist";
  if (groupPolicy === "disabled") {
    return { allow: false, outcome: "blocked", reason: "group chats are disabled" };
  }
  if (groupPolicy === "allowlist" && !listed(policy.groups, message.chatId)) {
    return { allow: false, outcome: "blocked", reason: "group is not on the allowlist" };
  }
  if (
    !operator &&
    policy.groupAllowFrom !== undefined &&
    !listed(policy.groupAllowFrom, message.peer.id)
  ) {
    return { allow: false, outcome: "blocked", reason: "sender is not allowed in groups" };
  }
  if ((policy.requireMention ?? true) && !message.mentions.bot) {
    return { allow: false, outcome: "ignored", reason: "the bot was not mentioned" };
  }
  return { allow: true };
}
