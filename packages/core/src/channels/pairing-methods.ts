/**
 * `channels.pairing.list` / `approve` / `dismiss` in the shape of OpenClaw's gateway protocol
 * (`ChannelsPairing*` of `@openclaw/gateway-protocol`), over BeamClaw's pairing: a request's
 * `requestId` is its pairing code, approving puts the sender on the channel's allowlist.
 */
import type { JsonObject, JsonValue } from "../providers/types.js";
import { flatParamsSchema as paramsSchema } from "./method-params.js";
import type { ApprovedPeer, PairingRequest, PairingStore } from "./pairing.js";
import type { ChannelGatewayMethod } from "./types.js";

/** What a pairing method needs of the channel host. */
export interface PairingMethodsHost {
  readonly pairing: PairingStore;
  /**
   * The channels, or the one named (throws `ChannelNotFoundError` for an unknown one).
   * `pairing`: its DM policy is `pairing`.
   */
  channels(only?: string): Array<{
    id: string;
    label: string;
    pairing: boolean;
    operators: readonly string[];
  }>;
  /** Approves; tells the sender when `notify`. Throws `PairingCodeError`. */
  approve(
    channel: string,
    accountId: string,
    code: string,
    approvedBy: string | undefined,
    notify: boolean,
  ): Promise<{ approved: ApprovedPeer; notification: "not-requested" | "sent" | "failed" }>;
  /** Dismisses. Throws `PairingCodeError`. */
  dismiss(channel: string, accountId: string, code: string): Promise<PairingRequest>;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The three pairing methods of the gateway. */
export function pairingGatewayMethods(
  host: PairingMethodsHost,
): Record<string, ChannelGatewayMethod> {
  const target = { channel: "string", accountId: "string", requestId: "string" } as const;
  return {
    "channels.pairing.list": {
      description:
        "Pending DM pairing requests (OpenClaw's ChannelsPairingListResult): { channel?, accountId? } narrow it.",
      scope: "operator.pairing",
      params: paramsSchema({ channel: "string", accountId: "string" }, []),
      handler: async (p) => {
        const { channel, accountId } = p as { channel?: string; accountId?: string };
        const channels = host.channels(channel);
        const byId = new Map(channels.map((c) => [c.id, c]));
        const pending = (await host.pairing.pending(channel)).filter(
          (r) => byId.has(r.channel) && (accountId === undefined || r.accountId === accountId),
        );
        const accounts: JsonObject[] = [];
        for (const c of channels) {
          const ids = new Set(pending.filter((r) => r.channel === c.id).map((r) => r.accountId));
          // A channel that pairs has at least its default account (the one this host
          // reports in channels.status); other accounts show once a request came to them.
          if (ids.size === 0 && c.pairing && (accountId ?? "default") === "default") {
            ids.add("default");
          }
          for (const id of ids) {
            accounts.push({
              channel: c.id,
              channelLabel: c.label,
              accountId: id,
              notifySupported: true,
            });
          }
        }
        const requests = pending.map((r) => ({
          requestId: r.code,
          channel: r.channel,
          channelLabel: byId.get(r.channel)!.label,
          accountId: r.accountId,
          senderId: r.peerId,
          senderLabel: r.peerName !== undefined && r.peerName.length > 0 ? r.peerName : r.peerId,
          metadata: { chatId: r.chatId },
          createdAt: iso(r.createdAt),
          lastSeenAt: iso(r.lastSeenAt ?? r.createdAt),
          expiresAt: iso(r.expiresAt),
          notifySupported: true,
        }));
        return {
          accounts,
          requests,
          commandOwnerConfigured: channels.some((c) => c.operators.length > 0),
          limits: { pendingPerAccount: host.pairing.maxPending, ttlMs: host.pairing.ttlMs },
        } satisfies JsonValue;
      },
    },
    "channels.pairing.approve": {
      description:
        "Approves a pairing request, putting its sender on the channel's allowlist: { channel, accountId, requestId (the pairing code), notify? (default true), bootstrapCommandOwner? }.",
      scope: "operator.pairing",
      params: paramsSchema({ ...target, notify: "boolean", bootstrapCommandOwner: "boolean" }, [
        "channel",
        "accountId",
        "requestId",
      ]),
      handler: async (p, caller) => {
        const params = p as {
          channel: string;
          accountId: string;
          requestId: string;
          notify?: boolean;
          bootstrapCommandOwner?: boolean;
        };
        const [channel] = host.channels(params.channel);
        const { approved, notification } = await host.approve(
          params.channel,
          params.accountId,
          params.requestId,
          caller.clientId,
          params.notify ?? true,
        );
        // Operators come from the channel's settings; this host does not write them.
        const commandOwnerBootstrap =
          params.bootstrapCommandOwner !== true
            ? "not-requested"
            : channel!.operators.length > 0
              ? "already-configured"
              : "unavailable";
        return {
          requestId: params.requestId,
          senderId: approved.peerId,
          notification,
          commandOwnerBootstrap,
        };
      },
    },
    "channels.pairing.dismiss": {
      description:
        "Dismisses a pairing request; its sender may ask again later: { channel, accountId, requestId }.",
      scope: "operator.pairing",
      params: paramsSchema(target, ["channel", "accountId", "requestId"]),
      handler: async (p) => {
        const params = p as { channel: string; accountId: string; requestId: string };
        host.channels(params.channel);
        const request = await host.dismiss(params.channel, params.accountId, params.requestId);
        return { requestId: params.requestId, senderId: request.peerId };
      },
    },
  };
}
