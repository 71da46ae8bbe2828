/**
 * The Discord channel's own error: the gateway connection could not be made or was lost.
 */
import { BeamClawError, type BeamClawErrorOptions, isBeamClawError } from "@beamclaw/core";

/** The stable code of {@link DiscordGatewayError}. */
export const DISCORD_GATEWAY_ERROR = "DISCORD_GATEWAY_ERROR";

/**
 * Gateway close codes after which reconnecting cannot help: the token, the shard settings,
 * the API version or the intents must be fixed first.
 * https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway-gateway-close-event-codes
 */
const FATAL_CLOSE_CODES = new Map<number, string>([
  [4004, "Discord rejected the bot token (close 4004 Authentication failed)"],
  [4010, "Discord rejected the shard (close 4010 Invalid shard)"],
  [4011, "Discord requires sharding for this bot (close 4011 Sharding required)"],
  [4012, "Discord rejected the gateway version (close 4012 Invalid API version)"],
  [4013, "Discord rejected the intents (close 4013 Invalid intent(s))"],
  [
    4014,
    "Discord refused a privileged intent (close 4014 Disallowed intent(s)): enable the Message Content intent in the Developer Portal (your application → Bot → Privileged Gateway Intents), or leave it out of `intents`",
  ],
]);

/** Close codes after which Discord will not resume the session: the next connection identifies. */
const SESSION_ENDING_CLOSE_CODES = new Set([4007, 4009]);

/** True when Discord closed the gateway with a code after which a reconnect cannot succeed. */
export function isFatalCloseCode(code: number): boolean {
  return FATAL_CLOSE_CODES.has(code);
}

/** True when Discord closed the gateway with a code that ends the session (no resume). */
export function endsSession(code: number): boolean {
  return SESSION_ENDING_CLOSE_CODES.has(code) || isFatalCloseCode(code);
}

/**
 * The Discord gateway could not be connected, or the connection was lost. `isRetryable`
 * false (a rejected token, a disallowed intent) makes the channel manager stop retrying
 * until the configuration is fixed; `closeCode` is the gateway's close code when it closed
 * the socket, `statusCode` the HTTP status when the REST call before it failed.
 *
 * @example
 * ```ts
 * manager.status("discord").lastError; // { code: "DISCORD_GATEWAY_ERROR", message: "Discord refused a privileged intent ..." }
 * if (DiscordGatewayError.isInstance(error) && error.closeCode === 4014) enableIntentInPortal();
 * ```
 */
export class DiscordGatewayError extends BeamClawError {
  readonly isRetryable: boolean;
  /** The gateway's close code, when Discord (or the network) closed the socket. */
  readonly closeCode: number | undefined;
  /** The HTTP status of the REST call that failed (e.g. 401 from `GET /gateway/bot`). */
  readonly statusCode: number | undefined;

  constructor(
    message: string,
    details: BeamClawErrorOptions & {
      isRetryable: boolean;
      closeCode?: number;
      statusCode?: number;
    },
  ) {
    super(DISCORD_GATEWAY_ERROR, message, details);
    this.isRetryable = details.isRetryable;
    this.closeCode = details.closeCode;
    this.statusCode = details.statusCode;
  }

  /** Recognises the error across copies of the package (by `code`, not by class). */
  static override isInstance(value: unknown): value is DiscordGatewayError {
    return isBeamClawError(value, DISCORD_GATEWAY_ERROR);
  }

  /** The error for a gateway socket that closed with `code`. */
  static closed(code: number): DiscordGatewayError {
    const fatal = FATAL_CLOSE_CODES.get(code);
    if (fatal !== undefined) {
      return new DiscordGatewayError(fatal, { isRetryable: false, closeCode: code });
    }
    return new DiscordGatewayError(`the Discord gateway connection closed (code ${code})`, {
      isRetryable: true,
      closeCode: code,
    });
  }
}
