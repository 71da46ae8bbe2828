/**
 * A complete third-party channel plugin: LineChat (see `chat-server.ts`) as a BeamClaw
 * channel. It implements the `ChannelPlugin` v1 contract of `@beamclaw/core`; everything
 * else — routing, policies, pairing, duplicates, chunking, typing while a run streams,
 * approvals, durable replies, reconnecting — comes from the `ChannelManager`.
 */
import net from "node:net";
import {
  AbortedError,
  type ChannelCapabilities,
  type ChannelContext,
  type ChannelPlugin,
  ChannelSendError,
  type ChannelSendOptions,
  type ChannelTarget,
  InvalidArgumentError,
  type SentMessage,
} from "@beamclaw/core";
import type { ChatMessage } from "./chat-server.js";

/** Options of {@link createLineChatChannel}. */
export interface LineChatChannelOptions {
  /** The LineChat server. Default `127.0.0.1`. */
  host?: string;
  port: number;
  /** The bot's nick: people mention it as `@<nick>` and DM it with `/msg <nick>`. Default `bot`. */
  nick?: string;
  /** The server's bot token, if it wants one. */
  token?: string;
  /** The channel id. Default `linechat`. */
  id?: string;
  /** How long connecting and the hello may take. Default 5000. */
  connectTimeoutMs?: number;
  /** How long the server may take to acknowledge a message. Default 10 000. */
  ackTimeoutMs?: number;
}

interface PendingAck {
  resolve(id: string): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * The LineChat channel. Rooms are group chats (`chatId` = `#room`); a direct message's
 * `chatId` is the other person's nick. Messages up to 400 characters; edits and typing.
 *
 * @example
 * ```ts
 * const channels = new ChannelManager({
 *   runtime,
 *   channels: [{ plugin: createLineChatChannel({ port: 7070 }), dmPolicy: "open", groupPolicy: "open" }],
 * });
 * await channels.start();
 * ```
 */
export class LineChatChannel implements ChannelPlugin {
  readonly specificationVersion = "v1" as const;
  readonly id: string;
  readonly meta = {
    label: "LineChat",
    description: "A line-based TCP chat (the example of a custom channel).",
  };
  readonly capabilities: ChannelCapabilities = {
    directMessages: true,
    groups: true,
    threads: false,
    media: false,
    edits: true,
    reactions: false,
    typing: true,
    maxMessageLength: 400,
  };
  readonly #options: LineChatChannelOptions;
  readonly #nick: string;
  #socket: net.Socket | null = null;
  #pending = new Map<string, PendingAck>();
  #nextRef = 1;

  constructor(options: LineChatChannelOptions) {
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65_535) {
      throw new InvalidArgumentError(`port must be 1-65535, got ${options.port}`);
    }
    this.#options = options;
    this.#nick = options.nick ?? "bot";
    this.id = options.id ?? "linechat";
  }

  /** Connects, says hello, and starts handing messages to `ctx.receive`. */
  async start(ctx: ChannelContext): Promise<void> {
    if (this.#socket !== null) throw new InvalidArgumentError("already started");
    const socket = net.connect({
      host: this.#options.host ?? "127.0.0.1",
      port: this.#options.port,
    });
    socket.setEncoding("utf8");
    socket.setNoDelay(true);
    this.#socket = socket;
    let welcomed = false;
    let buffer = "";
    const lines: Array<(line: string) => void> = [];
    socket.on("data", (data: string) => {
      buffer += data;
      let newline = buffer.indexOf("\n");
      while (newline !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        for (const listener of lines) listener(line);
        newline = buffer.indexOf("\n");
      }
    });
    socket.on("error", () => undefined); // 'close' follows and says what matters
    socket.on("close", () => {
      const wasOurs = this.#socket === socket;
      if (wasOurs) this.#socket = null;
      this.#failPending(
        new ChannelSendError(this.id, "the connection closed", { isRetryable: true }),
      );
      // A drop after the hello is a lost connection: the host reconnects with backoff.
      if (wasOurs && welcomed)
        ctx.disconnected(new Error("the LineChat server closed the connection"));
    });

    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error("LineChat did not answer the hello in time")),
          this.#options.connectTimeoutMs ?? 5_000,
        );
        const settle = (error?: Error) => {
          clearTimeout(timer);
          lines.length = 0;
          socket.off("close", onClose);
          ctx.signal.removeEventListener("abort", onAbort);
          if (error === undefined) resolve();
          else reject(error);
        };
        const onClose = () => settle(new Error("LineChat closed the connection during the hello"));
        const onAbort = () => settle(new AbortedError("the channel is stopping"));
        socket.once("close", onClose);
        ctx.signal.addEventListener("abort", onAbort, { once: true });
        lines.push((line) => {
          const reply = parse(line);
          if (reply?.type === "welcome") settle();
          else if (reply?.type === "error") {
            // A refused token will not get better by retrying: say so, and the host stops trying.
            settle(
              Object.assign(new Error(`LineChat refused the bot: ${String(reply.message)}`), {
                isRetryable: !reply.fatal,
              }),
            );
          }
        });
        socket.once("connect", () => {
          socket.write(
            `${JSON.stringify({ type: "hello", nick: this.#nick, token: this.#options.token })}\n`,
          );
        });
      });
    } catch (error) {
      this.#socket = null;
      socket.destroy();
      throw error;
    }
    welcomed = true;
    lines.push((line) => this.#onLine(line, ctx));
  }

  /** Closes the connection. Idempotent. */
  async stop(): Promise<void> {
    const socket = this.#socket;
    this.#socket = null;
    this.#failPending(new ChannelSendError(this.id, "the channel stopped", { isRetryable: true }));
    if (socket === null || socket.destroyed) return;
    await new Promise<void>((resolve) => {
      socket.once("close", () => resolve());
      socket.destroy();
    });
  }

  async sendText(
    target: ChannelTarget,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<SentMessage> {
    const id = await this.#request(
      {
        type: "say",
        ...where(target),
        text,
        ...(options?.replyToMessageId === undefined ? {} : { replyTo: options.replyToMessageId }),
      },
      options?.signal,
    );
    return { messageId: id };
  }

  async edit(
    target: ChannelTarget,
    messageId: string,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<void> {
    await this.#request({ type: "edit", id: messageId, text, ...where(target) }, options?.signal);
  }

  async typing(target: ChannelTarget): Promise<void> {
    this.#write({ type: "typing", ...where(target) });
  }

  // ------------------------------------------------------------------ internals

  /** One platform event in, one normalized message out. */
  #onLine(line: string, ctx: ChannelContext): void {
    const event = parse(line);
    if (event?.type === "ack" || event?.type === "error") {
      const pending = this.#pending.get(String(event.ref));
      if (pending === undefined) return;
      this.#pending.delete(String(event.ref));
      clearTimeout(pending.timer);
      if (event.type === "ack") pending.resolve(String(event.id));
      else
        pending.reject(
          new ChannelSendError(this.id, String(event.message), { isRetryable: false }),
        );
      return;
    }
    if (event?.type !== "message") return;
    const message = event as unknown as ChatMessage;
    const inRoom = message.room !== undefined;
    ctx
      .receive({
        peer:
          message.from.name === undefined
            ? { id: message.from.nick }
            : { id: message.from.nick, name: message.from.name },
        chatType: inRoom ? "group" : "direct",
        chatId: inRoom ? message.room! : message.from.nick,
        text: message.text,
        messageId: message.id,
        timestamp: message.at,
        mentions: {
          // Addressed to the bot: an @-mention, or a reply to one of its messages.
          bot: message.mentions.includes(this.#nick) || message.replyTo?.from === this.#nick,
          peers: message.mentions.filter((nick) => nick !== this.#nick),
        },
        ...(message.replyTo === undefined
          ? {}
          : {
              replyTo: {
                messageId: message.replyTo.id,
                ...(message.replyTo.from === undefined ? {} : { peerId: message.replyTo.from }),
              },
            }),
        raw: message,
      })
      .catch((error: unknown) =>
        ctx.logger.warn("a LineChat message was not taken", { error, id: message.id }),
      );
  }

  #write(request: Record<string, unknown>): void {
    const socket = this.#socket;
    if (socket === null || socket.destroyed) {
      throw new ChannelSendError(this.id, "not connected to LineChat", { isRetryable: true });
    }
    socket.write(`${JSON.stringify(request)}\n`);
  }

  /** Sends a request and waits for the server's ack (the platform's confirmation). */
  #request(request: Record<string, unknown>, signal: AbortSignal | undefined): Promise<string> {
    if (signal?.aborted) return Promise.reject(new AbortedError("the send was aborted"));
    const ref = `r${this.#nextRef++}`;
    return new Promise<string>((resolve, reject) => {
      const finish = () => {
        this.#pending.delete(ref);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        finish();
        reject(new AbortedError("the send was aborted"));
      };
      const timer = setTimeout(() => {
        finish();
        reject(
          new ChannelSendError(this.id, "LineChat did not acknowledge in time", {
            isRetryable: true,
          }),
        );
      }, this.#options.ackTimeoutMs ?? 10_000);
      this.#pending.set(ref, {
        resolve: (id) => {
          finish();
          resolve(id);
        },
        reject: (error) => {
          finish();
          reject(error);
        },
        timer,
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        this.#write({ ...request, ref });
      } catch (error) {
        finish();
        reject(error);
      }
    });
  }

  #failPending(error: Error): void {
    for (const pending of [...this.#pending.values()]) pending.reject(error);
    this.#pending.clear();
  }
}

/** Where a target is on LineChat: a room, or a person's nick. */
function where(target: ChannelTarget): { room: string } | { to: string } {
  return target.chatType === "group" ? { room: target.chatId } : { to: target.chatId };
}

function parse(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined; // the server's greeting for people, or noise
  }
}

/**
 * Creates a {@link LineChatChannel}.
 *
 * @example
 * ```ts
 * const plugin = createLineChatChannel({ port: 7070, nick: "helper" });
 * ```
 */
export function createLineChatChannel(options: LineChatChannelOptions): LineChatChannel {
  return new LineChatChannel(options);
}
