/**
 * Where the gateway sends messages to chat channels — `chat.send` with `deliver: true`, and
 * cron `announce` deliveries in the standalone gateway: a channel's durable outbox. Core's
 * `ChannelManager` is one as it is (`channelIds` and `deliver`). Also how OpenClaw's `to`
 * names a chat.
 */
import {
  BeamClawError,
  type ChannelTarget,
  type CronDeliver,
  type DeliverOptions,
  type OutboundMessage,
} from "@beamclaw/core";

/** What the gateway needs to deliver replies to chat channels (a `ChannelManager` fits). */
export interface GatewayChannelDelivery {
  /** The channels that can be delivered to. */
  readonly channelIds: readonly string[];
  /**
   * Stores a message in the channel's outbox; resolves with the entry id. `options.mirror`
   * also puts its text in the conversation of the chat it goes to (see core's
   * `DeliverOptions`); an implementation without mirroring may ignore it.
   */
  deliver(
    channelId: string,
    target: ChannelTarget,
    message: OutboundMessage,
    options?: DeliverOptions,
  ): Promise<string>;
}

const deliveries = new WeakMap<object, GatewayChannelDelivery>();

/** Gives a gateway (its hub) the channels replies are delivered to. */
export function attachChannelDelivery(owner: object, delivery: GatewayChannelDelivery): void {
  deliveries.set(owner, delivery);
}

/** The channels a gateway (its hub) delivers replies to, if it was given some. */
export function channelDeliveryOf(owner: object): GatewayChannelDelivery | undefined {
  return deliveries.get(owner);
}

/** Where in a channel an OpenClaw-style `to` goes, beside the chat it names. */
export interface ChannelTargetOptions {
  /** The channel account. Default `default`. */
  accountId?: string;
  /** A thread of the chat. */
  threadId?: string;
}

/**
 * The chat an OpenClaw `to` names (`chat.send`'s `originatingTo`, a cron job's
 * `delivery.to`): `group:<id>` or `channel:<id>` is a group chat, `user:<id>`, `dm:<id>`,
 * `direct:<id>` or a bare id a direct one.
 *
 * @example
 * ```ts
 * channelTargetOf("group:-1001234");     // { accountId: "default", chatType: "group", chatId: "-1001234" }
 * channelTargetOf("4711", { threadId: "7" }); // { accountId: "default", chatType: "direct", chatId: "4711", threadId: "7" }
 * ```
 */
export function channelTargetOf(to: string, options: ChannelTargetOptions = {}): ChannelTarget {
  const prefixed = /^(group|channel|user|dm|direct):(.+)$/.exec(to);
  const chatType =
    prefixed !== null && (prefixed[1] === "group" || prefixed[1] === "channel")
      ? "group"
      : "direct";
  return {
    accountId: options.accountId ?? "default",
    chatType,
    chatId: prefixed?.[2] ?? to,
    ...(options.threadId === undefined ? {} : { threadId: options.threadId }),
  };
}

/**
 * Cron's `deliver` over the gateway's channels: an `announce` job's output goes into the
 * outbox of the channel its delivery names, to the chat its `to` (core's `target`) names
 * ({@link channelTargetOf}), and is mirrored into that chat's conversation (`mirror: true`),
 * so that when someone answers the announcement there, the agent knows what they answer.
 * A channel that is not configured fails the delivery with `CHANNEL_NOT_FOUND` naming the
 * channels there are; the cron service records it as the run's delivery error.
 *
 * @example
 * ```ts
 * const cron = await new CronSupervisor({
 *   store,
 *   runJob: agentRuntimeJobRunner(runtime),
 *   deliver: cronChannelDeliver(channels), // a started ChannelManager
 * }).start();
 * ```
 */
export function cronChannelDeliver(channels: GatewayChannelDelivery): CronDeliver {
  return async ({ channel, target }, text) => {
    if (!channels.channelIds.includes(channel)) {
      const configured = channels.channelIds;
      throw new BeamClawError(
        "CHANNEL_NOT_FOUND",
        `no channel "${channel}" is configured to announce to (${
          configured.length === 0
            ? "there are no channels"
            : `the channels are ${configured.join(", ")}`
        })`,
      );
    }
    await channels.deliver(channel, channelTargetOf(target), { text }, { mirror: true });
  };
}
