/**
 * An in-memory chat platform and the channel plugin that connects to it: for testing code
 * that hosts channels (a gateway, an app's wiring) without a network, the way `MemoryStore`
 * stands in for a database. It passes the channel conformance suite.
 */

import type {
  ChannelCapabilities,
  ChannelContext,
  ChannelPlugin,
  ChannelSendOptions,
  ChannelTarget,
  OutboundMedia,
  ReceiveResult,
  SentMessage,
} from "../channels/types.js";
import { ChannelSendError, InvalidArgumentError, NoProcessError } from "../errors.js";
import type {
  ChannelPlatformDriver,
  PlatformInbound,
  PlatformOutbound,
} from "./channel-conformance.js";

/** Options of {@link createMemoryPlatform}. */
export interface MemoryPlatformOptions {
  /** The channel id of the plugins it makes. Default `memory`. */
  channelId?: string;
  /** Overrides of the plugin's capabilities (all true by default, limit 2000). */
  capabilities?: Partial<ChannelCapabilities>;
}

/** A platform message event as the in-memory platform delivers it (its "wire" format). */
interface PlatformEvent {
  id: string;
  account: string;
  conversation: { kind: "dm" | "room"; id: string; thread?: string };
  author: { id: string; display?: string };
  body: string;
  mentionsMe: boolean;
  mentioned: string[];
  inReplyTo?: { id: string; body?: string; author?: string };
  files: Array<{
    kind: "image" | "audio" | "video" | "file";
    url?: string;
    data?: string;
    type?: string;
    name?: string;
    size?: number;
    /** The URL needs the platform's credentials (see `InboundAttachment.privateUrl`). */
    private?: boolean;
  }>;
  sentAt: number;
}

/** The in-memory platform: the conformance driver plus knobs for failure tests. */
export interface MemoryPlatform extends ChannelPlatformDriver {
  /** A new plugin that connects to this platform. */
  createChannel(): ChannelPlugin;
  /** Delivers an event; resolves with what the host made of it (`ctx.receive`'s answer). */
  inject(message: PlatformInbound): Promise<ReceiveResult>;
  /** Drops the connection; the plugin reports it with `ctx.disconnected`. */
  disconnect(): Promise<void>;
  /** True while a plugin is connected. */
  readonly connected: boolean;
  /** How many times a plugin connected. */
  readonly connections: number;
  /**
   * The next `count` message sends (`sendText`, `sendMedia`) fail with `error` (default: a
   * retryable `ChannelSendError`).
   */
  failSends(count: number, error?: unknown): void;
  /** The next `count` connection attempts are refused with `error` (default retryable). */
  refuseConnections(count: number, error?: unknown): void;
}

/**
 * Creates an in-memory chat platform. Inject messages with `inject`, read what the plugin
 * did with `outbound()`, drop its connection with `disconnect()`.
 *
 * @example
 * ```ts
 * import { createMemoryPlatform } from "@beamclaw/core/testing";
 *
 * const platform = createMemoryPlatform();
 * const channels = new ChannelManager({ runtime, channels: [{ plugin: platform.createChannel(), dmPolicy: "open" }] });
 * await channels.start();
 * await platform.inject({ chatType: "direct", chatId: "alice", peer: { id: "alice" }, text: "hi", messageId: "m1" });
 * ```
 */
export function createMemoryPlatform(options: MemoryPlatformOptions = {}): MemoryPlatform {
  const channelId = options.channelId ?? "memory";
  const capabilities: ChannelCapabilities = {
    directMessages: true,
    groups: true,
    threads: true,
    media: true,
    edits: true,
    reactions: true,
    typing: true,
    maxMessageLength: 2000,
    ...options.capabilities,
  };
  const log: PlatformOutbound[] = [];
  const texts = new Map<string, string>();
  let listener: ((event: PlatformEvent) => Promise<ReceiveResult>) | null = null;
  let dropper: ((error: Error) => void) | null = null;
  let connections = 0;
  let nextId = 1;
  const sendFailures: unknown[] = [];
  const connectFailures: unknown[] = [];
  let closed = false;

  const ref = (target: ChannelTarget) =>
    target.threadId === undefined
      ? { accountId: target.accountId, chatType: target.chatType, chatId: target.chatId }
      : {
          accountId: target.accountId,
          chatType: target.chatType,
          chatId: target.chatId,
          threadId: target.threadId,
        };

  const outboundCall = (signal: AbortSignal | undefined, message = false): void => {
    if (signal?.aborted) throw new NoProcessError("the send was aborted");
    if (listener === null) {
      throw new ChannelSendError(channelId, "not connected to the platform", { isRetryable: true });
    }
    if (message && sendFailures.length > 0) throw sendFailures.shift();
  };

  const platform: MemoryPlatform = {
    get connected() {
      return listener !== null;
    },
    get connections() {
      return connections;
    },
    failSends(count, error) {
      for (let i = 0; i < count; i++) {
        sendFailures.push(
          error ?? new ChannelSendError(channelId, "the platform is busy", { isRetryable: true }),
        );
      }
    },
    refuseConnections(count, error) {
      for (let i = 0; i < count; i++)
        connectFailures.push(error ?? new Error("connection refused"));
    },
    async inject(message: PlatformInbound) {
      if (closed) throw new NoProcessError("the platform is closed");
      if (listener === null) throw new NoProcessError("no plugin is connected to the platform");
      const event: PlatformEvent = {
        id: message.messageId,
        account: message.accountId ?? "default",
        conversation: {
          kind: message.chatType === "direct" ? "dm" : "room",
          id: message.chatId,
          ...(message.threadId === undefined ? {} : { thread: message.threadId }),
        },
        author: {
          id: message.peer.id,
          ...(message.peer.name === undefined ? {} : { display: message.peer.name }),
        },
        body: message.text,
        mentionsMe: message.mentionsBot ?? false,
        mentioned: message.mentions ?? [],
        files: (message.attachments ?? []).map((a) => ({
          kind: a.kind,
          ...(a.url === undefined ? {} : { url: a.url }),
          ...(a.privateUrl === undefined ? {} : { private: a.privateUrl }),
          ...(a.data === undefined ? {} : { data: a.data }),
          ...(a.mediaType === undefined ? {} : { type: a.mediaType }),
          ...(a.name === undefined ? {} : { name: a.name }),
          ...(a.size === undefined ? {} : { size: a.size }),
        })),
        sentAt: Date.now(),
      };
      if (message.replyTo !== undefined) {
        event.inReplyTo = {
          id: message.replyTo.messageId,
          ...(message.replyTo.text === undefined ? {} : { body: message.replyTo.text }),
          ...(message.replyTo.peerId === undefined ? {} : { author: message.replyTo.peerId }),
        };
      }
      return listener(event);
    },
    outbound() {
      return log.map((entry) => ({ ...entry }));
    },
    async disconnect() {
      dropper?.(new Error("the platform dropped the connection"));
    },
    async close() {
      closed = true;
      dropper?.(new Error("the platform closed"));
    },
    createChannel() {
      let ctx: ChannelContext | null = null;
      const plugin: ChannelPlugin = {
        specificationVersion: "v1",
        id: channelId,
        meta: { label: "Memory", description: "An in-memory chat platform, for tests." },
        capabilities,
        async start(context) {
          if (closed) throw new Error("the platform is closed");
          if (connectFailures.length > 0) throw connectFailures.shift();
          if (listener !== null) throw new Error("another plugin is connected to the platform");
          ctx = context;
          connections++;
          listener = async (event) => {
            const c = ctx;
            if (c === null) throw new NoProcessError("the plugin is not started");
            return c.receive({
              accountId: event.account,
              peer: {
                id: event.author.id,
                ...(event.author.display === undefined ? {} : { name: event.author.display }),
              },
              chatType: event.conversation.kind === "dm" ? "direct" : "group",
              chatId: event.conversation.id,
              ...(event.conversation.thread === undefined
                ? {}
                : { threadId: event.conversation.thread }),
              text: event.body,
              attachments: event.files.map((f) => ({
                kind: f.kind,
                ...(f.url === undefined ? {} : { url: f.url }),
                ...(f.private === undefined ? {} : { privateUrl: f.private }),
                ...(f.data === undefined ? {} : { data: f.data }),
                ...(f.type === undefined ? {} : { mediaType: f.type }),
                ...(f.name === undefined ? {} : { name: f.name }),
                ...(f.size === undefined ? {} : { size: f.size }),
              })),
              mentions: { bot: event.mentionsMe, peers: event.mentioned },
              ...(event.inReplyTo === undefined
                ? {}
                : {
                    replyTo: {
                      messageId: event.inReplyTo.id,
                      ...(event.inReplyTo.body === undefined ? {} : { text: event.inReplyTo.body }),
                      ...(event.inReplyTo.author === undefined
                        ? {}
                        : { peerId: event.inReplyTo.author }),
                    },
                  }),
              messageId: event.id,
              timestamp: event.sentAt,
              raw: event,
            });
          };
          dropper = (error) => {
            listener = null;
            dropper = null;
            const c = ctx;
            ctx = null;
            c?.disconnected(error);
          };
        },
        async stop() {
          ctx = null;
          listener = null;
          dropper = null;
        },
        async sendText(
          target: ChannelTarget,
          text: string,
          opts?: ChannelSendOptions,
        ): Promise<SentMessage> {
          outboundCall(opts?.signal, true);
          if (text.length > capabilities.maxMessageLength) {
            throw new InvalidArgumentError(`text longer than ${capabilities.maxMessageLength}`);
          }
          const messageId = `out-${nextId++}`;
          texts.set(messageId, text);
          log.push({
            kind: "text",
            target: ref(target),
            text,
            messageId,
            ...(opts?.replyToMessageId === undefined
              ? {}
              : { replyToMessageId: opts.replyToMessageId }),
          });
          return { messageId };
        },
        async sendMedia(target: ChannelTarget, media: OutboundMedia, opts?: ChannelSendOptions) {
          outboundCall(opts?.signal, true);
          const messageId = `out-${nextId++}`;
          log.push({ kind: "media", target: ref(target), media: { ...media }, messageId });
          return { messageId };
        },
        async edit(
          target: ChannelTarget,
          messageId: string,
          text: string,
          opts?: ChannelSendOptions,
        ) {
          outboundCall(opts?.signal);
          if (!texts.has(messageId)) {
            throw new ChannelSendError(channelId, `no message ${messageId}`, {
              isRetryable: false,
            });
          }
          texts.set(messageId, text);
          log.push({ kind: "edit", target: ref(target), messageId, text });
        },
        async typing(target: ChannelTarget, opts?: ChannelSendOptions) {
          outboundCall(opts?.signal);
          log.push({ kind: "typing", target: ref(target) });
        },
        async react(
          target: ChannelTarget,
          messageId: string,
          emoji: string,
          opts?: ChannelSendOptions,
        ) {
          outboundCall(opts?.signal);
          log.push({ kind: "reaction", target: ref(target), messageId, emoji });
        },
      };
      return plugin;
    },
  };
  return platform;
}
