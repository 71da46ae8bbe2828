/**
 * Asking the host before a message's files are downloaded whether it takes the message at
 * all (`ctx.admits`): nothing is fetched for a sender or a chat it turns away, so someone
 * who may not talk to the bot cannot make it download files. Shared by the channels that
 * download inbound files (Discord, Telegram, Slack).
 */
import {
  type ChannelContext,
  type InboundMessageInput,
  InvalidInboundError,
  NoProcessError,
} from "@beamclaw/core";

/**
 * Whether to download `message`'s files: what `ctx.admits` answers for it (the message
 * described, its files not downloaded). `true` from a host without `admits` (one written
 * before it, a test's context): the files are downloaded as they always were, and when
 * asking failed for a passing reason (a store error), so that `receive` decides as before.
 * `false` when the host refused the question as it will refuse the message (malformed, or
 * a stale context): the files would never be used. Never rejects.
 *
 * @example
 * ```ts
 * const input = describe(event);
 * await ctx.receive((await shouldDownloadFiles(ctx, input)) ? await withFiles(input) : input);
 * ```
 */
export async function shouldDownloadFiles(
  ctx: ChannelContext,
  message: InboundMessageInput,
): Promise<boolean> {
  if (typeof ctx.admits !== "function") return true;
  try {
    return (await ctx.admits(message)) !== false;
  } catch (error) {
    if (InvalidInboundError.isInstance(error) || NoProcessError.isInstance(error)) return false;
    ctx.logger.warn("the host could not say whether it takes a message; its files are fetched", {
      messageId: message.messageId,
      error,
    });
    return true;
  }
}
