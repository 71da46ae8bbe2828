/**
 * The channel conformance suite: one set of vitest specifications that every channel plugin
 * (Discord, Telegram, Slack, the webhook, yours) runs unchanged, against its real transport
 * and a fake of its platform that the adapter supplies as a {@link ChannelPlatformDriver}.
 *
 * What it proves: the declaration (v1, id, capabilities, a method per declared capability);
 * that `start`/`stop` leave no handle open and can be repeated; that each kind of platform
 * event the channel declares (direct, group, thread, reply, attachments, mentions) arrives
 * normalized with every field; that outbound `sendText` (up to the declared limit),
 * `sendMedia`, `edit`, `typing` and `react` reach the platform; and, end to end through a
 * `ChannelManager` and an `AgentRuntime` (an in-memory store and an echo model), that a
 * message is answered, a long reply is chunked within the limit and in order, a redelivered
 * platform message is answered once, typing shows while the run streams, and — when the
 * driver can drop the connection — that the channel reconnects and messages flow again; when
 * the driver counts file downloads (the plugin downloads inbound files), that nothing is
 * fetched for a message the host refuses (`ctx.admits`).
 *
 * Which specifications are registered follows `capabilities` only (and whether the driver has
 * `disconnect` and `downloads`): one about a capability the plugin does not declare does not
 * apply to it and is not registered at all (nothing is reported as skipped). Threads are
 * tested in group chats, so they need `groups` too. For `media`, `edits` and `typing`, the
 * host's side of their absence is specified instead: a file delivered through the channel
 * is refused with nothing sent, `streaming: "edit"` is refused when the channel is
 * configured, and no typing indicator reaches the platform while a run streams.
 */
import type * as Vitest from "vitest";
import { type ChannelEntry, ChannelManager } from "../channels/manager.js";
import type {
  ChannelContext,
  ChannelPlugin,
  ChannelTarget,
  ChatType,
  InboundAttachment,
  InboundMessage,
  InboundMessageInput,
  InboundPeer,
  OutboundMedia,
} from "../channels/types.js";
import { assertChannelPlugin, normalizeInbound } from "../channels/validate.js";
import { InvalidArgumentError } from "../errors.js";
import { createProviderChain } from "../providers/chain.js";
import { AgentRuntime } from "../sessions/runtime.js";
import { MemoryStore } from "../store/memory-store.js";
import { subscribeTelemetry } from "../telemetry.js";
import { createEchoProvider } from "./scripted-provider.js";

/**
 * vitest refuses to be imported outside a vitest worker, so it is loaded here rather than by a
 * static import: importing `@beamclaw/core/testing` anywhere stays harmless.
 */
import { vitest } from "./vitest.js";

const expect = (vitest instanceof Error ? undefined : vitest.expect) as Vitest.ExpectStatic;

/**
 * A platform event for the driver to deliver, described the way the suite expects to see it
 * normalized. The driver turns it into the platform's own format and delivers it over the
 * real transport (a gateway event, a signed HTTP request, a socket line).
 */
export interface PlatformInbound {
  /** Default `default`. */
  accountId?: string;
  chatType: ChatType;
  /** The group's id, or the DM conversation's id. */
  chatId: string;
  threadId?: string;
  peer: InboundPeer;
  text: string;
  /** The platform's message id. */
  messageId: string;
  /** The message @-mentions the bot. */
  mentionsBot?: boolean;
  /** Ids of other peers it mentions. */
  mentions?: string[];
  replyTo?: { messageId: string; text?: string; peerId?: string };
  /**
   * Files of the message. An attachment's `data` (base64), when given, is the file's content:
   * the platform serves it for the plugin to download (see
   * {@link ChannelPlatformDriver.downloads}). Without `data` the platform need not serve it.
   */
  attachments?: InboundAttachment[];
}

/** Where the platform saw an outbound call land. */
export interface PlatformTargetRef {
  chatId: string;
  threadId?: string;
  accountId?: string;
  chatType?: ChatType;
}

/** One outbound call as the platform saw it. */
export type PlatformOutbound =
  | {
      kind: "text";
      target: PlatformTargetRef;
      text: string;
      /** The id the platform gave the message. */
      messageId: string;
      replyToMessageId?: string;
    }
  | { kind: "media"; target: PlatformTargetRef; media: OutboundMedia; messageId: string }
  | { kind: "edit"; target: PlatformTargetRef; messageId: string; text: string }
  | { kind: "typing"; target: PlatformTargetRef }
  | { kind: "reaction"; target: PlatformTargetRef; messageId: string; emoji: string };

/**
 * A fake of the platform, on the platform's side of the plugin's real transport. The
 * adapter author writes one per adapter (see `examples/custom-channel`).
 */
export interface ChannelPlatformDriver {
  /**
   * Delivers an event to the plugin as the platform would. Resolves once the platform handed
   * it over (the plugin may still be working on it; the suite waits for `ctx.receive`). The
   * value it resolves with is the driver's own business (the suite ignores it).
   */
  inject(message: PlatformInbound): Promise<unknown>;
  /** Every outbound call the platform received from the plugin so far, in order. */
  outbound(): PlatformOutbound[];
  /**
   * Drops the plugin's connection as the platform would (a closed socket, a gateway
   * reconnect request). Leave it out for connectionless transports (an HTTP webhook): the
   * reconnect specification is then skipped.
   */
  disconnect?(): Promise<void>;
  /**
   * The files the plugin fetched from the platform so far, in order, one entry per request,
   * each named by the `url` its attachment had in the {@link PlatformInbound} that delivered
   * it (a driver whose platform serves files at other addresses maps them back). Give it when
   * the plugin downloads the files of inbound messages; the platform must then serve an
   * attachment that has `data`. The suite then checks that the plugin asks `ctx.admits`
   * before downloading: a message the host refuses is handed over with its files described,
   * and none of them is fetched. Leave it out for a plugin that downloads nothing: that
   * specification is then not registered.
   */
  downloads?(): string[];
  /** Releases the platform (servers, sockets). */
  close(): Promise<void>;
}

/** How {@link channelConformanceSuite} reaches the adapter under test. */
export interface ChannelConformanceOptions<
  D extends ChannelPlatformDriver = ChannelPlatformDriver,
> {
  /** A fresh, running fake platform; called once per test (closed after it). */
  platform: () => D | Promise<D>;
  /** A new plugin wired to `platform` (not started). */
  create: (platform: D) => ChannelPlugin | Promise<ChannelPlugin>;
  /** The `ctx.config` the plugin gets. Default `{}`. */
  config?: (platform: D) => unknown;
  /** How long the suite waits for an expected event. Default 5000. */
  timeoutMs?: number;
  /**
   * The ids the suite uses, for platforms whose ids have a shape of their own (Telegram's
   * integers, Slack's `U...`/`C...` and `ts`): the driver then needs no translation and the
   * plugin is tested as it is. Default: `peer-<n>`, `room-<n>`, `thread-<n>`, `m-<...>-<n>`.
   */
  ids?: Partial<ConformanceIds>;
}

/**
 * Generators of the ids {@link channelConformanceSuite} puts in platform events and targets.
 * `n` counts from 1; each generator must return distinct ids for distinct `n`.
 *
 * @example
 * ```ts
 * // Telegram: integer users and chats, message ids `<chat_id>:<message_id>`.
 * const ids: Partial<ConformanceIds> = {
 *   peer: (n) => String(100_000 + n),
 *   group: (n) => String(-1_001_000_000_000 - n),
 *   thread: (n) => String(10 + n),
 *   message: (n, chatId) => `${chatId}:${900_000 + n}`,
 * };
 * ```
 */
export interface ConformanceIds {
  /** The n-th peer (user). A direct chat's id is its peer's id (a driver maps it otherwise). */
  peer(n: number): string;
  /** The n-th group chat. */
  group(n: number): string;
  /** The n-th thread, in group chat `chatId`. */
  thread(n: number, chatId: string): string;
  /** The n-th platform message id of the test run, in chat `chatId`: unique per run. */
  message(n: number, chatId: string): string;
}

const runId = Date.now().toString(36);
const defaultIds: ConformanceIds = {
  peer: (n) => `peer-${n}`,
  group: (n) => `room-${n}`,
  thread: (n) => `thread-${n}`,
  message: (n) => `m-${runId}-${n}`,
};

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** A 1×1 PNG (its signature and header chunk): the file of the download specification. */
const PNG = Buffer.from(
  "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000b49444154789c63f80f040009fb03fdfb5e6b2b0000000049454e44ae426082",
  "hex",
);

/** Polls `probe` until it returns something other than undefined/false. */
async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

function resourceCount(): number {
  return process.getActiveResourcesInfo().length;
}

/**
 * Registers the channel conformance specifications (vitest `describe`/`it` blocks) for one
 * channel plugin. Call it at the top level of a test file.
 *
 * @example
 * ```ts
 * import { channelConformanceSuite } from "@beamclaw/core/testing";
 * import { createLineChatChannel } from "../src/index.js";
 * import { startFakeChatServer } from "./fake-chat-server.js";
 *
 * channelConformanceSuite("LineChatChannel", {
 *   platform: () => startFakeChatServer(),
 *   create: (server) => createLineChatChannel({ port: server.port, name: "bot" }),
 * });
 * ```
 */
export function channelConformanceSuite<D extends ChannelPlatformDriver>(
  name: string,
  options: ChannelConformanceOptions<D>,
): void {
  if (typeof options?.create !== "function" || typeof options.platform !== "function") {
    throw new InvalidArgumentError(
      "channelConformanceSuite: options.platform and options.create must be functions",
    );
  }
  if (vitest instanceof Error) {
    throw new Error(
      `channelConformanceSuite must be called from a vitest test file; vitest could not be loaded: ${vitest.message}`,
      { cause: vitest },
    );
  }
  const { afterEach, describe, it } = vitest;
  const timeoutMs = options.timeoutMs ?? 5_000;

  describe(`${name} conforms to the channel contract v1`, async () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    });

    /** A platform and a plugin, torn down after the test. */
    const setup = async () => {
      const platform = await options.platform();
      cleanups.push(() => platform.close());
      const plugin = await options.create(platform);
      const config = options.config?.(platform) ?? {};
      return { platform, plugin, config };
    };

    /**
     * Starts `plugin` with a context that records what it receives; with `admits`, the host
     * takes only the messages it admits (the others are `blocked`), and records what
     * `ctx.admits` is asked.
     */
    const startRecording = async (
      plugin: ChannelPlugin,
      config: unknown,
      admits?: (message: InboundMessageInput) => boolean,
    ) => {
      const received: InboundMessage[] = [];
      const asked: InboundMessageInput[] = [];
      const controller = new AbortController();
      let disconnects = 0;
      const ctx: ChannelContext = {
        channel: plugin.id,
        config,
        logger: silent,
        signal: controller.signal,
        ...(admits === undefined
          ? {}
          : {
              admits: async (input) => {
                // As asked: a plugin may fill in the same object's files later.
                const attachments = input.attachments?.map((a) => ({ ...a }));
                asked.push({ ...input, ...(attachments === undefined ? {} : { attachments }) });
                return admits(input);
              },
            }),
        async receive(input) {
          const message = normalizeInbound(plugin.id, input);
          received.push(message);
          return { status: admits === undefined || admits(input) ? "accepted" : "blocked" };
        },
        disconnected() {
          disconnects++;
        },
      };
      await plugin.start(ctx);
      let stopped = false;
      const stop = async () => {
        if (stopped) return;
        stopped = true;
        controller.abort();
        await plugin.stop();
      };
      cleanups.push(stop);
      return { received, asked, stop, disconnects: () => disconnects };
    };

    // Capabilities decide which specifications apply, so they are read when the tests are
    // registered; one that does not apply is not registered.
    const probePlatform = await options.platform();
    const probe = await options.create(probePlatform);
    await probePlatform.close();
    const caps = probe.capabilities;
    const chatTypes: ChatType[] = [
      ...(caps.directMessages ? (["direct"] as const) : []),
      ...(caps.groups ? (["group"] as const) : []),
    ];
    const anyChat: ChatType = chatTypes[0] ?? "direct";
    const ids: ConformanceIds = { ...defaultIds, ...options.ids };
    // The cast of the specifications: Alice talks to the bot, Ann is a second direct peer,
    // Bob speaks in the group and mentions Carol; the group has a thread.
    const alice = ids.peer(1);
    const ann = ids.peer(2);
    const bob = ids.peer(3);
    const carol = ids.peer(4);
    const room = ids.group(1);
    const thread = ids.thread(1, room);
    const chatOf = (type: ChatType): { chatType: ChatType; chatId: string } =>
      // A direct chat's id is the peer's own id here, as on platforms without separate DM
      // conversations (Telegram); a driver for a platform with them (Discord) maps it.
      type === "direct"
        ? { chatType: "direct", chatId: alice }
        : { chatType: "group", chatId: room };
    /** `it` for a specification that applies to this plugin; otherwise it is not registered. */
    const itWhen =
      (applies: boolean) =>
      (title: string, fn: () => Promise<void>): void => {
        if (applies) it(title, fn);
      };
    let counter = 0;
    const messageId = (chatId: string = chatOf(anyChat).chatId) => ids.message(++counter, chatId);
    // Threads live in group chats.
    const threadsTested = caps.threads && caps.groups;
    const targetOf = (type: ChatType, threadId?: string): ChannelTarget => ({
      accountId: "default",
      ...chatOf(type),
      ...(threadId === undefined ? {} : { threadId }),
    });

    // -------------------------------------------------------------- declaration

    describe("the plugin object", () => {
      it("declares specification v1, a valid id, meta and capabilities, and a method per declared capability", () => {
        expect(() => assertChannelPlugin(probe)).not.toThrow();
        expect(probe.specificationVersion).toBe("v1");
        expect(caps.maxMessageLength).toBeGreaterThanOrEqual(8);
        expect(chatTypes.length).toBeGreaterThan(0);
      });

      it("starts, receives, and stops leaving no timer, socket or handle behind", async () => {
        const { platform, plugin, config } = await setup();
        const before = resourceCount();
        const { received, stop } = await startRecording(plugin, config);
        const id = messageId();
        await platform.inject({
          ...chatOf(anyChat),
          peer: { id: alice },
          text: "hello",
          messageId: id,
          mentionsBot: true,
        });
        await waitFor(
          "the message to be received",
          () => received.find((m) => m.messageId === id),
          timeoutMs,
        );
        await stop();
        let after = resourceCount();
        const deadline = Date.now() + 2_000;
        while (after > before && Date.now() < deadline) {
          await new Promise<void>((resolve) => setTimeout(resolve, 10).unref());
          after = resourceCount();
        }
        expect(
          after,
          `open after stop: ${process.getActiveResourcesInfo().join(", ")}`,
        ).toBeLessThanOrEqual(before);
        await plugin.stop(); // a second stop is harmless
      });

      it("can be started again after stop (the host restarts channels)", async () => {
        const { platform, plugin, config } = await setup();
        const first = await startRecording(plugin, config);
        await first.stop();
        const second = await startRecording(plugin, config);
        const id = messageId();
        await platform.inject({
          ...chatOf(anyChat),
          peer: { id: alice },
          text: "again",
          messageId: id,
          mentionsBot: true,
        });
        const message = await waitFor(
          "the message after a restart",
          () => second.received.find((m) => m.messageId === id),
          timeoutMs,
        );
        expect(message.text).toBe("again");
        expect(first.received).toHaveLength(0);
      });
    });

    // -------------------------------------------------------------- inbound

    describe("inbound normalization", () => {
      itWhen(caps.directMessages)(
        "normalizes a direct message: channel, account, peer, chat type, chat, text and platform message id",
        async () => {
          const { platform, plugin, config } = await setup();
          const { received } = await startRecording(plugin, config);
          const id = messageId(ann);
          const sentAt = Date.now();
          await platform.inject({
            chatType: "direct",
            chatId: ann,
            peer: { id: ann, name: "Ann" },
            text: "hello there, ünïcödé ✓ 👋",
            messageId: id,
          });
          const message = await waitFor(
            "the direct message",
            () => received.find((m) => m.messageId === id),
            timeoutMs,
          );
          expect(message).toMatchObject({
            channel: plugin.id,
            accountId: "default",
            peer: { id: ann, name: "Ann" },
            chatType: "direct",
            chatId: ann,
            text: "hello there, ünïcödé ✓ 👋",
            messageId: id,
          });
          expect(message.threadId).toBeUndefined();
          expect(message.timestamp).toBeGreaterThan(sentAt - 24 * 3_600_000);
        },
      );

      itWhen(caps.groups)(
        "normalizes a group message with its mentions of the bot and of peers",
        async () => {
          const { platform, plugin, config } = await setup();
          const { received } = await startRecording(plugin, config);
          const mentioned = messageId(room);
          const plain = messageId(room);
          await platform.inject({
            chatType: "group",
            chatId: room,
            peer: { id: bob, name: "Bob" },
            text: "@bot ask carol",
            messageId: mentioned,
            mentionsBot: true,
            mentions: [carol],
          });
          await platform.inject({
            chatType: "group",
            chatId: room,
            peer: { id: bob },
            text: "just chatting",
            messageId: plain,
          });
          const withMention = await waitFor(
            "the mentioning message",
            () => received.find((m) => m.messageId === mentioned),
            timeoutMs,
          );
          const without = await waitFor(
            "the plain message",
            () => received.find((m) => m.messageId === plain),
            timeoutMs,
          );
          expect(withMention).toMatchObject({
            chatType: "group",
            chatId: room,
            peer: { id: bob },
            mentions: { bot: true },
          });
          expect(withMention.mentions.peers).toContain(carol);
          expect(withMention.text).toContain("ask carol");
          expect(without.mentions.bot).toBe(false);
        },
      );

      itWhen(threadsTested)("normalizes a message in a thread of a group", async () => {
        const { platform, plugin, config } = await setup();
        const { received } = await startRecording(plugin, config);
        const id = messageId(room);
        await platform.inject({
          ...chatOf("group"),
          threadId: thread,
          peer: { id: bob },
          text: "in a thread",
          messageId: id,
          mentionsBot: true,
        });
        const message = await waitFor(
          "the thread message",
          () => received.find((m) => m.messageId === id),
          timeoutMs,
        );
        expect(message).toMatchObject({ ...chatOf("group"), threadId: thread, peer: { id: bob } });
        // The platform may keep the @-mention of the bot in the text.
        expect(message.text).toContain("in a thread");
      });

      it("normalizes the message it replies to", async () => {
        const { platform, plugin, config } = await setup();
        const { received } = await startRecording(plugin, config);
        const earlier = messageId();
        const id = messageId();
        await platform.inject({
          ...chatOf(anyChat),
          peer: { id: alice },
          text: "yes, that one",
          messageId: id,
          mentionsBot: true,
          replyTo: { messageId: earlier },
        });
        const message = await waitFor(
          "the reply",
          () => received.find((m) => m.messageId === id),
          timeoutMs,
        );
        expect(message.replyTo?.messageId).toBe(earlier);
      });

      itWhen(caps.media)("normalizes attachments", async () => {
        const { platform, plugin, config } = await setup();
        const { received } = await startRecording(plugin, config);
        const id = messageId();
        await platform.inject({
          ...chatOf(anyChat),
          peer: { id: alice },
          text: "see picture",
          messageId: id,
          mentionsBot: true,
          attachments: [
            {
              kind: "image",
              url: "https://files.example/cat.png",
              mediaType: "image/png",
              name: "cat.png",
            },
          ],
        });
        const message = await waitFor(
          "the message with a file",
          () => received.find((m) => m.messageId === id),
          timeoutMs,
        );
        expect(message.attachments).toHaveLength(1);
        expect(message.attachments[0]).toMatchObject({
          kind: "image",
          url: "https://files.example/cat.png",
        });
      });

      itWhen(typeof probePlatform.downloads === "function")(
        "asks ctx.admits before downloading a message's files: a refused message is handed over with its files described, none fetched",
        async () => {
          const { platform, plugin, config } = await setup();
          const refusedPeer = ann;
          const { received, asked } = await startRecording(
            plugin,
            config,
            (input) => input.peer.id !== refusedPeer,
          );
          // In a DM of the sender's own where the plugin has direct messages, else the group.
          const from = (peer: string) =>
            anyChat === "direct"
              ? { chatType: "direct" as const, chatId: peer }
              : { chatType: "group" as const, chatId: room };
          const picture = (name: string): InboundAttachment => ({
            kind: "image",
            url: `https://files.example/${runId}/${name}`,
            mediaType: "image/png",
            name,
            size: PNG.length,
            data: PNG.toString("base64"),
          });
          const refused = { id: messageId(from(refusedPeer).chatId), file: picture("refused.png") };
          const admitted = { id: messageId(from(alice).chatId), file: picture("admitted.png") };
          // The refused message first: its files would be fetched before the admitted one's.
          for (const [peer, message] of [
            [refusedPeer, refused],
            [alice, admitted],
          ] as const) {
            await platform.inject({
              ...from(peer),
              peer: { id: peer },
              text: "look at this",
              messageId: message.id,
              mentionsBot: true,
              attachments: [message.file],
            });
          }
          const arrival = (id: string) =>
            waitFor(
              "the message with a file",
              () => received.find((m) => m.messageId === id),
              timeoutMs,
            );
          const turnedAway = await arrival(refused.id);
          const taken = await arrival(admitted.id);
          // Asked about the refused message with its files described, not downloaded.
          const question = asked.find((m) => m.messageId === refused.id);
          expect(question, "ctx.admits was not asked about the refused message").toBeDefined();
          const inlined = (question!.attachments ?? []).filter((a) => a.data !== undefined);
          expect(inlined, "ctx.admits was asked with the file downloaded").toEqual([]);
          // Handed over (the host answers it itself), its file described only.
          expect(turnedAway.attachments).toHaveLength(1);
          expect(turnedAway.attachments[0]!.data, "the refused file was inlined").toBeUndefined();
          // The admitted message's file was fetched (the driver counts downloads); not the other.
          expect(taken.attachments).toHaveLength(1);
          expect(platform.downloads!(), "the admitted file was not downloaded").toContain(
            admitted.file.url,
          );
          expect(platform.downloads!(), "the refused file was downloaded").not.toContain(
            refused.file.url,
          );
        },
      );

      it("gives a redelivered platform message the same message id", async () => {
        const { platform, plugin, config } = await setup();
        const { received } = await startRecording(plugin, config);
        const id = messageId();
        const event = {
          ...chatOf(anyChat),
          peer: { id: alice },
          text: "once",
          messageId: id,
          mentionsBot: true,
        };
        await platform.inject(event);
        await platform.inject(event);
        await waitFor(
          "both deliveries",
          () => received.filter((m) => m.messageId === id).length === 2,
          timeoutMs,
        );
        const [first, second] = received.filter((m) => m.messageId === id);
        expect(second!.messageId).toBe(first!.messageId);
        expect(second!.accountId).toBe(first!.accountId);
      });
    });

    // -------------------------------------------------------------- outbound

    describe("outbound", () => {
      for (const type of chatTypes) {
        it(`sendText delivers to a ${type} chat and returns the platform's message id`, async () => {
          const { platform, plugin, config } = await setup();
          await startRecording(plugin, config);
          const sent = await plugin.sendText(targetOf(type), "hello, world ✓");
          expect(typeof sent.messageId).toBe("string");
          expect(sent.messageId.length).toBeGreaterThan(0);
          const seen = await waitFor(
            "the text on the platform",
            () => platform.outbound().find((o) => o.kind === "text" && o.text === "hello, world ✓"),
            timeoutMs,
          );
          expect(seen.target.chatId).toBe(chatOf(type).chatId);
          if (seen.kind === "text") expect(seen.messageId).toBe(sent.messageId);
        });
      }

      itWhen(caps.maxMessageLength <= 100_000)(
        "sendText carries a message of exactly maxMessageLength characters intact",
        async () => {
          const { platform, plugin, config } = await setup();
          await startRecording(plugin, config);
          const text = `${"x".repeat(caps.maxMessageLength - 2)}✓!`;
          await plugin.sendText(targetOf(anyChat), text);
          const seen = await waitFor(
            "the full-length text",
            () =>
              platform.outbound().find((o) => o.kind === "text" && o.text.length === text.length),
            timeoutMs,
          );
          expect(seen.kind === "text" && seen.text).toBe(text);
        },
      );

      itWhen(threadsTested)("sendText to a thread of a group lands in the thread", async () => {
        const { platform, plugin, config } = await setup();
        const { received } = await startRecording(plugin, config);
        // Someone speaks in the thread first (so that it exists on the platform), as when the
        // bot answers there.
        const id = messageId(room);
        await platform.inject({
          ...chatOf("group"),
          threadId: thread,
          peer: { id: bob },
          text: "a question in the thread",
          messageId: id,
          mentionsBot: true,
        });
        await waitFor(
          "the thread message",
          () => received.find((m) => m.messageId === id),
          timeoutMs,
        );
        await plugin.sendText(targetOf("group", thread), "threaded answer");
        const seen = await waitFor(
          "the threaded text",
          () => platform.outbound().find((o) => o.kind === "text" && o.text === "threaded answer"),
          timeoutMs,
        );
        expect(seen.target).toMatchObject({ chatId: room, threadId: thread });
      });

      itWhen(caps.media)("sendMedia delivers a file", async () => {
        const { platform, plugin, config } = await setup();
        await startRecording(plugin, config);
        const media: OutboundMedia = {
          kind: "image",
          url: "https://files.example/chart.png",
          mediaType: "image/png",
          caption: "the chart",
        };
        const sent = await plugin.sendMedia!(targetOf(anyChat), media);
        expect(sent.messageId.length).toBeGreaterThan(0);
        const seen = await waitFor(
          "the file on the platform",
          () => platform.outbound().find((o) => o.kind === "media"),
          timeoutMs,
        );
        expect(seen.kind === "media" && seen.media.url).toBe(media.url);
      });

      itWhen(caps.edits)("edit replaces the text of a sent message", async () => {
        const { platform, plugin, config } = await setup();
        await startRecording(plugin, config);
        const target = targetOf(anyChat);
        const sent = await plugin.sendText(target, "draft");
        await plugin.edit!(target, sent.messageId, "final");
        const seen = await waitFor(
          "the edit on the platform",
          () => platform.outbound().find((o) => o.kind === "edit"),
          timeoutMs,
        );
        expect(seen).toMatchObject({ kind: "edit", messageId: sent.messageId, text: "final" });
      });

      itWhen(caps.typing)("typing reaches the platform", async () => {
        const { platform, plugin, config } = await setup();
        await startRecording(plugin, config);
        await plugin.typing!(targetOf(anyChat));
        const seen = await waitFor(
          "the typing indicator",
          () => platform.outbound().find((o) => o.kind === "typing"),
          timeoutMs,
        );
        expect(seen.target.chatId).toBe(chatOf(anyChat).chatId);
      });

      itWhen(caps.reactions)("react adds a reaction to a message", async () => {
        const { platform, plugin, config } = await setup();
        await startRecording(plugin, config);
        const target = targetOf(anyChat);
        const sent = await plugin.sendText(target, "react to me");
        await plugin.react!(target, sent.messageId, "👍");
        const seen = await waitFor(
          "the reaction",
          () => platform.outbound().find((o) => o.kind === "reaction"),
          timeoutMs,
        );
        expect(seen).toMatchObject({ kind: "reaction", messageId: sent.messageId, emoji: "👍" });
      });
    });

    // -------------------------------------------------------------- end to end

    describe("end to end through a ChannelManager and an AgentRuntime", () => {
      /** A started runtime with an echo model over a memory store, stopped after the test. */
      const echoRuntime = async () => {
        const store = new MemoryStore();
        await store.open();
        const runtime = new AgentRuntime({
          store,
          models: createProviderChain({ providers: [createEchoProvider()], models: ["echo/any"] }),
          agents: [{ id: "main", model: "echo/any" }],
        });
        await runtime.start();
        cleanups.push(async () => {
          await runtime.stop();
          await store.close();
        });
        return runtime;
      };
      /** The plugin's entry in a manager: open policies, every message answered. */
      const openEntry = (plugin: ChannelPlugin, config: unknown): ChannelEntry => ({
        plugin,
        config,
        dmPolicy: "open",
        dmScope: "per-channel-peer",
        groupPolicy: "open",
        requireMention: false,
      });
      /** A runtime with an echo model and a manager running the plugin with open policies. */
      const host = async () => {
        const { platform, plugin, config } = await setup();
        const runtime = await echoRuntime();
        const manager = new ChannelManager({
          runtime,
          channels: [openEntry(plugin, config)],
          reconnect: { baseDelayMs: 20, maxDelayMs: 100 },
          outbox: { baseDelayMs: 20, maxDelayMs: 200 },
        });
        await manager.start();
        // Runs after the runtime's cleanup is registered, so before it (cleanups run reversed).
        cleanups.push(() => manager.stop());
        expect(manager.status(plugin.id).state).toBe("connected");
        return { platform, plugin, manager, runtime };
      };
      const texts = (platform: ChannelPlatformDriver) =>
        platform.outbound().flatMap((o) => (o.kind === "text" ? [o.text] : []));
      /** Alice says `text` to the bot; resolves with the (echoed) reply the platform got. */
      const askAndAwaitReply = async (platform: ChannelPlatformDriver, text: string) => {
        await platform.inject({
          ...chatOf(anyChat),
          peer: { id: alice, name: "Alice" },
          text,
          messageId: messageId(),
          mentionsBot: true,
        });
        return waitFor("the reply", () => texts(platform).find((t) => t.includes(text)), timeoutMs);
      };

      it("answers a message through the runtime", async () => {
        const { platform } = await host();
        const reply = await askAndAwaitReply(platform, "ping 42");
        expect(reply).toContain("ping 42");
      });

      it("splits a reply longer than maxMessageLength into ordered messages within the limit", async () => {
        const { platform } = await host();
        const length = Math.min(caps.maxMessageLength * 2 + caps.maxMessageLength / 2, 20_000);
        const words: string[] = [];
        for (let i = 0; words.join(" ").length < length; i++) words.push(`w${i}`);
        const text = words.join(" ");
        await platform.inject({
          ...chatOf(anyChat),
          peer: { id: alice },
          text,
          messageId: messageId(),
          mentionsBot: true,
        });
        const last = words.at(-1)!;
        await waitFor(
          "the last chunk",
          () => texts(platform).some((t) => t.split(/\s+/).includes(last)),
          timeoutMs,
        );
        const chunks = texts(platform);
        expect(chunks.length).toBeGreaterThan(1);
        for (const chunk of chunks) expect(chunk.length).toBeLessThanOrEqual(caps.maxMessageLength);
        const received = chunks
          .join(" ")
          .split(/\s+/)
          .filter((w) => /^w\d+$/.test(w));
        expect(received).toEqual(words);
      });

      it("answers a platform message delivered twice only once", async () => {
        const { platform } = await host();
        const event = {
          ...chatOf(anyChat),
          peer: { id: alice },
          text: "only once",
          messageId: messageId(),
          mentionsBot: true,
        };
        await platform.inject(event);
        await platform.inject(event);
        await platform.inject({ ...event, text: "and then this", messageId: messageId() });
        await waitFor(
          "the later reply",
          () => texts(platform).some((t) => t.includes("and then this")),
          timeoutMs,
        );
        expect(texts(platform).filter((t) => t.includes("only once"))).toHaveLength(1);
      });

      itWhen(caps.typing)("shows typing in the chat while a run streams", async () => {
        const { platform } = await host();
        await platform.inject({
          ...chatOf(anyChat),
          peer: { id: alice },
          text: "type for me",
          messageId: messageId(),
          mentionsBot: true,
        });
        const typing = await waitFor(
          "a typing indicator",
          () => platform.outbound().find((o) => o.kind === "typing"),
          timeoutMs,
        );
        expect(typing.target.chatId).toBe(chatOf(anyChat).chatId);
      });

      itWhen(!caps.typing)(
        "shows no typing indicator while a run streams (the plugin does not declare typing)",
        async () => {
          const { platform } = await host();
          await askAndAwaitReply(platform, "answer without typing");
          expect(platform.outbound().filter((o) => o.kind === "typing")).toEqual([]);
        },
      );

      itWhen(!caps.media)(
        "refuses to deliver a file through the channel, sending nothing (the plugin does not declare media)",
        async () => {
          const { platform, plugin, manager } = await host();
          const target = targetOf(anyChat);
          const media: OutboundMedia = { kind: "image", url: "https://files.example/chart.png" };
          await expect(
            manager.deliver(plugin.id, target, { text: "a caption", media }),
          ).rejects.toBeInstanceOf(InvalidArgumentError);
          // The refusal stored nothing: the next message is the only thing the platform gets.
          await manager.deliver(plugin.id, target, { text: "text only" });
          await waitFor(
            "the text-only message",
            () => texts(platform).includes("text only"),
            timeoutMs,
          );
          expect(platform.outbound().map((o) => o.kind)).toEqual(["text"]);
          await manager.outbox(plugin.id).idle();
          expect(await manager.outbox(plugin.id).list()).toEqual([]);
        },
      );

      itWhen(!caps.edits)(
        'refuses streaming "edit" when the channel is configured (the plugin does not declare edits)',
        async () => {
          const { platform, plugin, config } = await setup();
          const runtime = await echoRuntime();
          expect(
            () =>
              new ChannelManager({
                runtime,
                channels: [{ ...openEntry(plugin, config), streaming: "edit" }],
              }),
          ).toThrow(InvalidArgumentError);
          // The same channel without edit streaming is accepted and answers.
          const manager = new ChannelManager({ runtime, channels: [openEntry(plugin, config)] });
          await manager.start();
          cleanups.push(() => manager.stop());
          await askAndAwaitReply(platform, "no edits here");
          expect(platform.outbound().filter((o) => o.kind === "edit")).toEqual([]);
        },
      );

      itWhen(typeof probePlatform.disconnect === "function")(
        "reconnects after the platform drops the connection, and messages flow again",
        async () => {
          const { platform, plugin, manager } = await host();
          let connects = 0;
          const off = subscribeTelemetry("beamclaw:channel.connect", (event) => {
            if (event.channel === plugin.id) connects++;
          });
          cleanups.push(async () => off());
          await platform.disconnect!();
          await waitFor(
            "the channel to reconnect",
            () => connects > 0 && manager.status(plugin.id).state === "connected",
            timeoutMs,
          );
          const text = "after the reconnect";
          const deadline = Date.now() + timeoutMs;
          // The platform may take a moment to accept events on the new connection.
          for (;;) {
            try {
              await platform.inject({
                ...chatOf(anyChat),
                peer: { id: alice },
                text,
                messageId: messageId(),
                mentionsBot: true,
              });
              break;
            } catch (error) {
              if (Date.now() > deadline) throw error;
              await new Promise<void>((resolve) => setTimeout(resolve, 20));
            }
          }
          const reply = await waitFor(
            "a reply after the reconnect",
            () => texts(platform).find((t) => t.includes(text)),
            timeoutMs,
          );
          expect(reply).toContain(text);
        },
      );
    });
  });
}
