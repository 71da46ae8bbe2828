/**
 * `channels.start` / `channels.stop` / `channels.logout` in the shape of OpenClaw's gateway
 * protocol (`ChannelsStartParams` ... of `@openclaw/gateway-protocol`; results as OpenClaw's
 * gateway answers them): an operator stops a configured channel, starts it again, or drops
 * its login. BeamClaw runs one account per channel, `default`.
 */
import { InvalidArgumentError } from "../errors.js";
import type { JsonValue } from "../providers/types.js";
import { flatParamsSchema } from "./method-params.js";
import type { ChannelGatewayMethod } from "./types.js";

/** The one account of every channel this host runs. */
export const DEFAULT_CHANNEL_ACCOUNT = "default";

/** What `logoutChannel` did. */
export interface ChannelLogoutOutcome {
  /** The plugin found login state and removed it. */
  cleared: boolean;
  /** The account is logged out now (the plugin's word; default `cleared`). */
  loggedOut: boolean;
  /** The channel was running (or about to start) and the logout stopped it. */
  stopped: boolean;
}

/** What the lifecycle methods need of the channel host. */
export interface LifecycleMethodsHost {
  /** Whether the channel runs now. Throws `ChannelNotFoundError` for an unknown one. */
  running(channelId: string): boolean;
  /** Starts a stopped channel; `false` when it ran already. */
  start(channelId: string): Promise<boolean>;
  /** Stops a channel; `false` when it was stopped already. */
  stop(channelId: string): Promise<boolean>;
  /** Stops the channel and drops its login. Throws `NotSupportedError` without a plugin `logout`. */
  logout(channelId: string): Promise<ChannelLogoutOutcome>;
}

/**
 * The account a request names: absent, empty or blank is the default one (as OpenClaw reads
 * it); any other is refused, since this host runs one account per channel.
 */
function accountOf(channel: string, accountId: string | undefined): string {
  const id = accountId?.trim() ?? "";
  if (id === "" || id === DEFAULT_CHANNEL_ACCOUNT) return DEFAULT_CHANNEL_ACCOUNT;
  throw new InvalidArgumentError(
    `channel "${channel}" has one account, "${DEFAULT_CHANNEL_ACCOUNT}"; there is no account ${JSON.stringify(accountId)}`,
  );
}

/** The three lifecycle methods of the gateway. */
export function lifecycleGatewayMethods(
  host: LifecycleMethodsHost,
): Record<string, ChannelGatewayMethod> {
  // The protocol's ChannelsStart/Stop/LogoutParams: a non-empty channel, any accountId string.
  const params = flatParamsSchema(
    { channel: "string", accountId: "string" },
    ["channel"],
    ["accountId"],
  );
  /** The channel (known) and the account (the default one) a request names. */
  const target = (p: JsonValue | undefined) => {
    const { channel, accountId } = p as { channel: string; accountId?: string };
    host.running(channel);
    return { channel, accountId: accountOf(channel, accountId) };
  };
  return {
    "channels.start": {
      description:
        "Starts a channel an operator stopped (connects it, picks up its pending replies): { channel, accountId? }. A running channel is left as it is.",
      scope: "operator.admin",
      params,
      handler: async (p) => {
        const { channel, accountId } = target(p);
        const changed = await host.start(channel);
        const started = host.running(channel);
        return { channel, accountId, started, alreadyRunning: !changed && started };
      },
    },
    "channels.stop": {
      description:
        "Stops a channel (disconnects it; it stays configured, its outbox is kept) until channels.start: { channel, accountId? }.",
      scope: "operator.admin",
      params,
      handler: async (p) => {
        const { channel, accountId } = target(p);
        const changed = await host.stop(channel);
        return {
          channel,
          accountId,
          stopped: !host.running(channel),
          alreadyStopped: !changed,
        };
      },
    },
    "channels.logout": {
      description:
        "Stops a channel and drops the login its plugin keeps (e.g. a linked web session): { channel, accountId? }. A channel without one (a bot token in its configuration) answers NOT_SUPPORTED.",
      scope: "operator.admin",
      params,
      handler: async (p) => {
        const { channel, accountId } = target(p);
        const { cleared, loggedOut } = await host.logout(channel);
        return { channel, accountId, cleared, loggedOut };
      },
    },
  };
}
