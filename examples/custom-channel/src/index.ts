export {
  type BotAction,
  type ChatMessage,
  type ChatServer,
  type ChatServerOptions,
  startChatServer,
} from "./chat-server.js";
export {
  createLineChatChannel,
  LineChatChannel,
  type LineChatChannelOptions,
} from "./line-chat-channel.js";
