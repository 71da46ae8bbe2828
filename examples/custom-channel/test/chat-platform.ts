/**
 * The LineChat platform driver for the channel conformance suite: a real LineChat server on
 * 127.0.0.1 (port 0). The suite's inbound messages are posted on the server as if people
 * had typed them (with the ids the suite chooses); what the bot did is read from the
 * server's record of bot actions.
 */
import type {
  ChannelPlatformDriver,
  PlatformInbound,
  PlatformOutbound,
} from "@beamclaw/core/testing";
import { type ChatServer, startChatServer } from "../src/index.js";

export interface ChatPlatform extends ChannelPlatformDriver {
  readonly server: ChatServer;
  disconnect(): Promise<void>;
}

export async function startChatPlatform(botNick = "bot"): Promise<ChatPlatform> {
  const server = await startChatServer({ port: 0 });
  return {
    server,
    async inject(message: PlatformInbound) {
      if (!server.isOnline(botNick)) throw new Error("the bot is not connected");
      const mentions = [...(message.mentionsBot ? [botNick] : []), ...(message.mentions ?? [])];
      server.post({
        id: message.messageId,
        from:
          message.peer.name === undefined
            ? { nick: message.peer.id }
            : { nick: message.peer.id, name: message.peer.name },
        text: message.text,
        mentions,
        // A DM's chat is the sender's nick on LineChat; a room's is its name.
        ...(message.chatType === "group" ? { room: message.chatId } : { to: botNick }),
        ...(message.replyTo === undefined
          ? {}
          : {
              replyTo: {
                id: message.replyTo.messageId,
                ...(message.replyTo.peerId === undefined ? {} : { from: message.replyTo.peerId }),
              },
            }),
      });
    },
    outbound(): PlatformOutbound[] {
      return server.actions.map((action): PlatformOutbound => {
        const target = action.type === "say" ? action.message : action;
        const ref =
          target.room !== undefined
            ? { chatId: target.room, chatType: "group" as const }
            : { chatId: target.to!, chatType: "direct" as const };
        if (action.type === "say") {
          return {
            kind: "text",
            target: ref,
            text: action.message.text,
            messageId: action.message.id,
            ...(action.message.replyTo === undefined
              ? {}
              : { replyToMessageId: action.message.replyTo.id }),
          };
        }
        if (action.type === "edit")
          return { kind: "edit", target: ref, messageId: action.id, text: action.text };
        return { kind: "typing", target: ref };
      });
    },
    async disconnect() {
      server.kick(botNick);
    },
    close: () => server.close(),
  };
}
