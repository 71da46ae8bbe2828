/**
 * Where `chat.send` with `deliver: true` sends a run's reply: a chat channel's durable outbox.
 * Core's `ChannelManager` is one as it is (`channelIds` and `deliver`).
 */
import type { ChannelTarget, OutboundMessage } from "@beamclaw/core";

/** What the gateway needs to deliver replies to chat channels (a `ChannelManager` fits). */
export interface GatewayChannelDelivery {
  /** The channels that can be delivered to. */
  readonly channelIds: readonly string[];
  /** Stores a message in the channel's outbox; resolves with the entry id. */
  deliver(channelId: string, target: ChannelTarget, message: OutboundMessage): Promise<string>;
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
