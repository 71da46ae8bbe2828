/**
 * `ChannelManager` end to end: the in-memory platform of `@beamclaw/core/testing`, a real
 * `AgentRuntime` over a `MemoryStore`, and scripted or echo models. Each specification is
 * one rule a channel author gets for free: routing, DM and group policy, pairing, duplicate
 * suppression, debounce, typing, approvals, chunking, the durable outbox across restarts,
 * reconnects under the `ChannelSupervisor`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AbortedError,
  type ChannelContext,
  ChannelManager,
  type ChannelManagerOptions,
  ChannelNotFoundError,
  type ChannelPlugin,
  ChannelSendError,
  defineTool,
  InvalidArgumentError,
  InvalidInboundError,
  MemoryStore,
  NoProcessError,
  PAIRING_CODE_ALPHABET,
  subscribeTelemetry,
  type TelemetryEvents,
  type Transcriber,
} from "../src/index.js";
import {
  createEchoProvider,
  createMemoryPlatform,
  createScriptedProvider,
  type MemoryPlatform,
  type PlatformInbound,
  type PlatformOutbound,
} from "../src/testing/index.js";
import { type ChannelHarnessOptions, channelHarness } from "./channel-harness.js";
import { waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const harness = (options?: ChannelHarnessOptions) => channelHarness(cleanups, options);

let counter = 0;
const nextId = () => `m${++counter}`;

function dm(text: string, peer = "alice", extra: Partial<PlatformInbound> = {}): PlatformInbound {
  return {
    chatType: "direct",
    chatId: `dm-${peer}`,
    peer: { id: peer, name: peer[0]!.toUpperCase() + peer.slice(1) },
    text,
    messageId: nextId(),
    ...extra,
  };
}

function inGroup(text: string, extra: Partial<PlatformInbound> = {}): PlatformInbound {
  return {
    chatType: "group",
    chatId: "room-1",
    peer: { id: "bob", name: "Bob" },
    text,
    messageId: nextId(),
    ...extra,
  };
}

function texts(platform: MemoryPlatform, chatId?: string): string[] {
  return platform
    .outbound()
    .flatMap((o) =>
      o.kind === "text" && (chatId === undefined || o.target.chatId === chatId) ? [o.text] : [],
    );
}

function replyTo(
  platform: MemoryPlatform,
  needle: string,
): Promise<Extract<PlatformOutbound, { kind: "text" }>> {
  return waitFor(`a reply containing "${needle}"`, () =>
    platform
      .outbound()
      .find(
        (o): o is Extract<PlatformOutbound, { kind: "text" }> =>
          o.kind === "text" && o.text.includes(needle),
      ),
  );
}

function recordTelemetry<C extends keyof TelemetryEvents>(name: C): TelemetryEvents[C][] {
  const events: TelemetryEvents[C][] = [];
  const off = subscribeTelemetry(name, (e) => {
    events.push(e);
  });
  cleanups.push(async () => off());
  return events;
}

// ------------------------------------------------------------------ routing

describe("routing", () => {
  it("sends a direct message to the session its dmScope names, and the reply to the chat it came from", async () => {
    const { platform, runtime } = await harness({ settings: { dmScope: "per-channel-peer" } });
    const result = await platform.inject(dm("hello there"));
    expect(result).toMatchObject({
      status: "accepted",
      sessionKey: "agent:main:memory:direct:alice",
    });
    const reply = await replyTo(platform, "hello there");
    expect(reply.target).toMatchObject({ chatType: "direct", chatId: "dm-alice" });
    const history = await runtime.session("agent:main:memory:direct:alice").history();
    expect(history.length).toBeGreaterThan(0);
  });

  it("gives the session a PDF the platform delivered inline as a document, and names one only reachable by URL", async () => {
    const { platform, runtime } = await harness({ settings: { dmScope: "per-channel-peer" } });
    const pdf = Buffer.from("%PDF-1.7\n").toString("base64");
    await platform.inject(
      dm("read this", "alice", {
        attachments: [
          { kind: "file", mediaType: "application/pdf", data: pdf, name: "invoice.pdf" },
          {
            kind: "file",
            mediaType: "application/pdf",
            url: "https://files.example/private/terms.pdf",
            name: "terms.pdf",
          },
        ],
      }),
    );
    await replyTo(platform, "read this");
    const [record] = await runtime.session("agent:main:memory:direct:alice").history();
    expect(record!.entry.message).toEqual({
      role: "user",
      content: [
        {
          type: "text",
          text: "read this\n[file: terms.pdf, application/pdf https://files.example/private/terms.pdf]",
        },
        { type: "file", mediaType: "application/pdf", data: pdf, filename: "invoice.pdf" },
      ],
    });
  });

  it("gives the model only images and PDFs it can read, and names every other attachment", async () => {
    const { platform, runtime } = await harness({ settings: { dmScope: "per-channel-peer" } });
    const png = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      Buffer.from("rest of a png"),
    ]).toString("base64");
    const jpeg = Buffer.from("\xff\xd8\xff\xe0 a jpeg", "latin1").toString("base64");
    const html = Buffer.from("<!DOCTYPE html><title>Sign in</title>").toString("base64");
    const result = await platform.inject(
      dm("look", "alice", {
        attachments: [
          // Inline bytes decide the type: a JPEG labelled PNG goes as a JPEG.
          { kind: "image", mediaType: "image/png", data: jpeg, name: "a.png" },
          { kind: "image", mediaType: "image/png", data: png },
          // Not what it claims (a sign-in page): named, never sent as an image.
          { kind: "image", mediaType: "image/png", data: html, name: "fake.png" },
          // A URL only the channel can fetch: named, without the URL.
          {
            kind: "image",
            mediaType: "image/png",
            url: "https://files.example/private/b.png",
            privateUrl: true,
            name: "b.png",
          },
          // A public image URL of a type models take: handed over by URL.
          { kind: "image", mediaType: "image/JPEG", url: "https://cdn.example/c.jpg" },
          // An image type no vendor takes: named, with its URL.
          { kind: "image", mediaType: "image/heic", url: "https://cdn.example/d.heic" },
          // Described only (the channel did not download it): named.
          { kind: "audio", mediaType: "audio/ogg", size: 4096 },
          { kind: "file", name: "notes.zip" },
        ],
      }),
    );
    expect(result.status).toBe("accepted");
    await replyTo(platform, "look");
    const [record] = await runtime.session("agent:main:memory:direct:alice").history();
    expect(record!.entry.message).toEqual({
      role: "user",
      content: [
        {
          type: "text",
          text: [
            "look",
            "[image: fake.png, image/png]",
            "[image: b.png, image/png]",
            "[image: image/heic https://cdn.example/d.heic]",
            "[audio: audio/ogg]",
            "[file: notes.zip]",
          ].join("\n"),
        },
        { type: "image", mediaType: "image/jpeg", data: jpeg },
        { type: "image", mediaType: "image/png", data: png },
        { type: "image", mediaType: "image/jpeg", url: "https://cdn.example/c.jpg" },
      ],
    });
    expect(JSON.stringify(record!.entry.message)).not.toContain("files.example/private");
  });

  it("adds a text file delivered inline to the message, as chat.send does; binary under a text type is named", async () => {
    const { platform, runtime } = await harness({ settings: { dmScope: "per-channel-peer" } });
    const csv = Buffer.from("city,temp\nZürich,17\n");
    await platform.inject(
      dm("what is warmest?", "alice", {
        attachments: [
          {
            kind: "file",
            mediaType: "text/csv; charset=utf-8",
            name: 'temps "today".csv',
            data: csv.toString("base64"),
          },
          {
            kind: "file",
            mediaType: "text/plain",
            name: "blob.txt",
            data: Buffer.from([0x00, 0xff, 0x10]).toString("base64"),
          },
        ],
      }),
    );
    await replyTo(platform, "what is warmest?");
    const [record] = await runtime.session("agent:main:memory:direct:alice").history();
    expect(record!.entry.message).toEqual({
      role: "user",
      content: [
        {
          type: "text",
          text: [
            "what is warmest?\n[file: blob.txt, text/plain]",
            '<attachment name="temps _today_.csv" type="text/csv">\ncity,temp\nZürich,17\n\n</attachment>',
          ].join("\n\n"),
        },
      ],
    });
  });

  it("transcribes a voice note with the transcriber given; a failed or slow one leaves it named", async () => {
    const heard: Array<{ bytes: string; mediaType: string; filename?: string }> = [];
    const warnings: string[] = [];
    const transcriber: Transcriber = {
      id: "test-stt",
      async transcribe(input, options) {
        const bytes = Buffer.from(input.data).toString();
        heard.push({
          bytes,
          mediaType: input.mediaType,
          ...(input.filename === undefined ? {} : { filename: input.filename }),
        });
        if (bytes === "broken") throw new Error("the vendor refused the file");
        if (bytes === "slow") {
          await new Promise((_, reject) =>
            options?.signal?.addEventListener("abort", () => reject(options.signal?.reason)),
          );
        }
        return { text: bytes === "silence" ? "  " : `  you said ${bytes}  ` };
      },
    };
    const { platform, runtime } = await harness({
      settings: { dmScope: "per-channel-peer" },
      manager: {
        transcriber,
        transcribeTimeoutMs: 100,
        logger: {
          debug() {},
          info() {},
          warn: (message) => warnings.push(message),
          error() {},
        },
      },
    });
    const voice = (text: string, name?: string) => ({
      kind: "audio" as const,
      mediaType: "audio/ogg",
      data: Buffer.from(text).toString("base64"),
      ...(name === undefined ? {} : { name }),
    });
    await platform.inject(
      dm("", "alice", {
        attachments: [
          voice("hello", "voice.ogg"),
          voice("silence"),
          voice("broken", "b.ogg"),
          voice("slow", "s.ogg"),
          // Described only: nothing to transcribe.
          { kind: "audio", mediaType: "audio/mpeg", name: "song.mp3", size: 9_000_000 },
        ],
      }),
    );
    await replyTo(platform, "you said hello");
    const [record] = await runtime.session("agent:main:memory:direct:alice").history();
    expect(record!.entry.message).toEqual({
      role: "user",
      content: [
        {
          type: "text",
          text: [
            "[audio: voice.ogg, transcribed]",
            "you said hello",
            "[audio: audio/ogg, no speech heard]",
            "[audio: b.ogg, audio/ogg]",
            "[audio: s.ogg, audio/ogg]",
            "[audio: song.mp3, audio/mpeg]",
          ].join("\n"),
        },
      ],
    });
    expect(heard.map((h) => h.bytes)).toEqual(["hello", "silence", "broken", "slow"]);
    expect(heard[0]).toEqual({ bytes: "hello", mediaType: "audio/ogg", filename: "voice.ogg" });
    expect(warnings.filter((w) => w.includes("could not be transcribed"))).toHaveLength(2);
  });

  it("refuses a transcriber that is not one, and a bad transcribeTimeoutMs", async () => {
    const { runtime } = await harness({ idle: true });
    expect(
      () => new ChannelManager({ runtime, channels: [], transcriber: {} as Transcriber }),
    ).toThrow(InvalidArgumentError);
    expect(() => new ChannelManager({ runtime, channels: [], transcribeTimeoutMs: 0 })).toThrow(
      InvalidArgumentError,
    );
  });

  it("refuses time limits and periods longer than a timer holds (Node would fire them at once)", async () => {
    const { runtime } = await harness({ idle: true });
    const plugin = createMemoryPlatform({}).createChannel();
    const tooLong = 2 ** 31;
    const managerOptions: Array<Partial<ChannelManagerOptions>> = [
      { startTimeoutMs: tooLong },
      { transcribeTimeoutMs: tooLong },
      { reconnect: { stopTimeoutMs: tooLong } },
      { reconnect: { maxDelayMs: tooLong } },
    ];
    for (const options of managerOptions) {
      expect(
        () => new ChannelManager({ runtime, channels: [], ...options }),
        JSON.stringify(options),
      ).toThrow(InvalidArgumentError);
    }
    for (const settings of [
      { typingIntervalMs: tooLong },
      { debounceMs: tooLong },
      { streamThrottleMs: tooLong },
    ]) {
      expect(
        () => new ChannelManager({ runtime, channels: [{ plugin, ...settings }] }),
        JSON.stringify(settings),
      ).toThrow(InvalidArgumentError);
    }
    // The limit itself is a period a timer holds.
    const longest = new ChannelManager({
      runtime,
      channels: [{ plugin, typingIntervalMs: tooLong - 1, debounceMs: tooLong - 1 }],
      startTimeoutMs: tooLong - 1,
      reconnect: { stopTimeoutMs: tooLong - 1 },
    });
    expect(longest.channelIds).toEqual([plugin.id]);
  });

  it("refuses an attachment whose data is not base64 or whose privateUrl is not a boolean, as malformed", async () => {
    const { platform } = await harness();
    await expect(
      platform.inject(
        dm("x", "alice", {
          attachments: [
            { kind: "image", mediaType: "image/png", data: "data:image/png;base64,AAAA" },
          ],
        }),
      ),
    ).rejects.toSatisfy(
      (e: unknown) => InvalidInboundError.isInstance(e) && e.field === "attachments[0].data",
    );
    await expect(
      platform.inject(
        dm("x", "alice", {
          attachments: [
            { kind: "image", url: "https://x.example/a.png", privateUrl: "yes" as never },
          ],
        }),
      ),
    ).rejects.toSatisfy(
      (e: unknown) => InvalidInboundError.isInstance(e) && e.field === "attachments[0].privateUrl",
    );
  });

  it("hands one conversation's messages to its session in the order they came, however fast", async () => {
    // A store whose writes come back in the reverse order (as a busy network store may).
    const store = new MemoryStore();
    const set = store.kv.set.bind(store.kv);
    let writes = 0;
    store.kv.set = async (key, value, options) => {
      if (key.startsWith("channels:seen:")) {
        const delay = Math.max(0, 24 - 2 * writes++);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
      return set(key, value, options);
    };
    const { platform } = await harness({ store });
    const sent = Array.from({ length: 12 }, (_, i) => `message ${i}`);
    await Promise.all(sent.map((text) => platform.inject(dm(text))));
    await replyTo(platform, "message 11");
    await waitFor("every reply", () => texts(platform).length === sent.length);
    expect(texts(platform)).toEqual(sent);
  });

  it("gives a thread its own session, and answers in the thread", async () => {
    const { platform } = await harness({ settings: { requireMention: false } });
    const result = await platform.inject(inGroup("in the thread", { threadId: "t-1" }));
    expect(result.sessionKey).toBe("agent:main:memory:group:room-1:thread:t-1");
    const reply = await replyTo(platform, "in the thread");
    expect(reply.target.threadId).toBe("t-1");
  });

  it("tells the agent who speaks in a group, and quotes the message it answers", async () => {
    const { platform } = await harness({ settings: { requireMention: false } });
    const message = inGroup("status please");
    await platform.inject(message);
    const reply = await replyTo(platform, "status please");
    expect(reply.text).toBe("Bob: status please");
    expect(reply.replyToMessageId).toBe(message.messageId);
  });
});

// ------------------------------------------------------------------ DM policy and pairing

describe("DM policy", () => {
  it("pairing: an unknown sender gets one 8-character code and no answer until an operator approves it", async () => {
    const provider = createEchoProvider();
    const { platform, manager } = await harness({ provider, settings: { dmPolicy: "pairing" } });
    expect(await platform.inject(dm("hi", "bob"))).toMatchObject({ status: "pairing" });
    expect(await platform.inject(dm("hello?", "bob"))).toMatchObject({ status: "pairing" });
    const notice = await replyTo(platform, "pairing code");
    const code = /pairing code is ([A-Z0-9]{8})/.exec(notice.text)![1]!;
    expect([...code].every((c) => PAIRING_CODE_ALPHABET.includes(c))).toBe(true);
    expect(texts(platform, "dm-bob").filter((t) => t.includes("pairing code"))).toHaveLength(1);
    expect(provider.requests).toHaveLength(0);
    expect((await manager.pairing.pending("memory")).map((p) => p.code)).toEqual([code]);

    const approved = await manager.approvePairing("memory", code.toLowerCase(), "owner");
    expect(approved).toMatchObject({ peerId: "bob", approvedBy: "owner" });
    await replyTo(platform, "You are approved");
    expect(await platform.inject(dm("now?", "bob"))).toMatchObject({ status: "accepted" });
    await replyTo(platform, "now?");
    await expect(manager.approvePairing("memory", code)).rejects.toMatchObject({
      code: "PAIRING_CODE_INVALID",
    });
  });

  it("an operator approves a pairing code from the chat with /pair approve", async () => {
    const { platform } = await harness({ settings: { dmPolicy: "pairing", operators: ["alice"] } });
    await platform.inject(dm("let me in", "carol"));
    const code = /pairing code is ([A-Z0-9]{8})/.exec(
      (await replyTo(platform, "pairing code")).text,
    )![1]!;
    expect(await platform.inject(dm(`/pair approve ${code}`, "alice"))).toMatchObject({
      status: "command",
    });
    await replyTo(platform, "Approved Carol");
    expect(await platform.inject(dm("thanks", "carol"))).toMatchObject({ status: "accepted" });
  });

  it("allowlist answers listed senders only; disabled answers nobody", async () => {
    const allow = await harness({ settings: { dmPolicy: "allowlist", allowFrom: ["alice"] } });
    expect(await allow.platform.inject(dm("hi", "alice"))).toMatchObject({ status: "accepted" });
    expect(await allow.platform.inject(dm("hi", "mallory"))).toMatchObject({ status: "blocked" });
    expect(texts(allow.platform, "dm-mallory")).toEqual([]);
    const off = await harness({ settings: { dmPolicy: "disabled", operators: ["alice"] } });
    expect(await off.platform.inject(dm("hi", "alice"))).toMatchObject({ status: "blocked" });
  });
});

// ------------------------------------------------------------------ group policy

describe("group policy", () => {
  it("answers only allowlisted groups, and in them only messages that mention the bot", async () => {
    const { platform } = await harness({
      settings: { groupPolicy: "allowlist", groups: ["room-1"] },
    });
    expect(
      await platform.inject(inGroup("hi", { chatId: "room-2", mentionsBot: true })),
    ).toMatchObject({
      status: "blocked",
    });
    expect(await platform.inject(inGroup("just talking"))).toMatchObject({ status: "ignored" });
    expect(await platform.inject(inGroup("@bot help", { mentionsBot: true }))).toMatchObject({
      status: "accepted",
    });
    await replyTo(platform, "@bot help");
    expect(texts(platform).some((t) => t.includes("just talking"))).toBe(false);
  });

  it("hears only groupAllowFrom senders in groups, and operators always", async () => {
    const { platform } = await harness({
      settings: { groupAllowFrom: ["bob"], operators: ["olga"], requireMention: false },
    });
    expect(await platform.inject(inGroup("from bob"))).toMatchObject({ status: "accepted" });
    expect(await platform.inject(inGroup("from eve", { peer: { id: "eve" } }))).toMatchObject({
      status: "blocked",
    });
    expect(await platform.inject(inGroup("from olga", { peer: { id: "olga" } }))).toMatchObject({
      status: "accepted",
    });
  });
});

// ------------------------------------------------------------------ duplicates and bad input

describe("duplicate suppression and bad input", () => {
  it("answers a platform message delivered twice once, even when the second comes after a restart", async () => {
    const inbound = recordTelemetry("beamclaw:channel.inbound");
    const store = new MemoryStore();
    const first = await harness({ store });
    const message = dm("exactly once");
    expect(await first.platform.inject(message)).toMatchObject({ status: "accepted" });
    expect(await first.platform.inject(message)).toMatchObject({ status: "duplicate" });
    expect(inbound.map((e) => e.status)).toEqual(["accepted", "duplicate"]);
    expect(inbound[0]).toMatchObject({
      channel: "memory",
      chatType: "direct",
      sessionKey: "agent:main:main",
    });
    await replyTo(first.platform, "exactly once");
    await first.manager.outbox("memory").idle();
    await first.crash();
    const second = await harness({ store });
    expect(await second.platform.inject(message)).toMatchObject({ status: "duplicate" });
    expect(texts(first.platform)).toEqual(["exactly once"]);
    expect(texts(second.platform)).toEqual([]);
  });

  it("suppresses a redelivery that arrives while the first delivery waits in the debounce window", async () => {
    const { platform } = await harness({ settings: { debounceMs: 30 } });
    const message = dm("only once");
    const results = await Promise.all([platform.inject(message), platform.inject(message)]);
    expect(results.map((r) => r.status).sort()).toEqual(["accepted", "duplicate"]);
    await replyTo(platform, "only once");
    expect(texts(platform)).toEqual(["only once"]);
  });

  it("forgets a message it could not accept, so that the platform's redelivery goes through", async () => {
    const store = new MemoryStore();
    const first = await harness({ store });
    await first.runtime.stop();
    const message = dm("try again");
    await expect(first.platform.inject(message)).rejects.toBeInstanceOf(NoProcessError);
    await first.crash();
    const second = await harness({ store });
    expect(await second.platform.inject(message)).toMatchObject({ status: "accepted" });
    await replyTo(second.platform, "try again");
  });

  it("refuses a malformed inbound message with InvalidInboundError naming the field, and records nothing", async () => {
    let ctx: ChannelContext | undefined;
    const platform = createMemoryPlatform();
    const { manager } = await harness({
      wrap: () => ({
        ...platform.createChannel(),
        id: "raw",
        start: async (c) => {
          ctx = c;
        },
        stop: async () => undefined,
      }),
    });
    const error = await ctx!
      .receive({ peer: { id: "" }, chatType: "direct", text: "x", messageId: "bad-1" })
      .catch((e: unknown) => e);
    expect(InvalidInboundError.isInstance(error)).toBe(true);
    expect((error as InvalidInboundError).field).toBe("peer.id");
    await expect(
      ctx!.receive({ peer: { id: "ann" }, chatType: "group", text: "x", messageId: "bad-2" }),
    ).rejects.toMatchObject({ code: "INVALID_INBOUND", field: "chatId" });
    // Corrected, the same platform message goes through.
    await expect(
      ctx!.receive({ peer: { id: "ann" }, chatType: "direct", text: "x", messageId: "bad-1" }),
    ).resolves.toMatchObject({ status: "accepted" });
    expect(manager.status("raw").state).toBe("connected");
  });
});

// ------------------------------------------------------------------ debounce

describe("debounce", () => {
  it("merges a burst of one sender's messages into one turn, and keeps other senders apart", async () => {
    const provider = createEchoProvider();
    const { platform } = await harness({ provider, settings: { debounceMs: 40 } });
    const results = await Promise.all([
      platform.inject(dm("first", "alice")),
      platform.inject(dm("second", "alice")),
      platform.inject(dm("third", "alice")),
      platform.inject(dm("other", "dave")),
    ]);
    expect(new Set(results.slice(0, 3).map((r) => r.runId)).size).toBe(1);
    expect(results[3]!.runId).not.toBe(results[0]!.runId);
    await replyTo(platform, "first\nsecond\nthird");
    await replyTo(platform, "other");
    const asked = provider.requests.map((r) => r.messages.at(-1));
    expect(asked).toHaveLength(2);
  });
});

// ------------------------------------------------------------------ typing

describe("typing", () => {
  it("repeats typing while the run streams, and stops at its end", async () => {
    const provider = createScriptedProvider([
      { text: ["one ", "two ", "three ", "four"], chunkDelayMs: 80 },
    ]);
    const { platform } = await harness({ provider, settings: { typingIntervalMs: 100 } });
    await platform.inject(dm("go"));
    await replyTo(platform, "one two three four");
    await new Promise((resolve) => setTimeout(resolve, 250));
    const log = platform.outbound();
    const replyAt = log.findIndex((o) => o.kind === "text");
    expect(log.slice(0, replyAt).filter((o) => o.kind === "typing").length).toBeGreaterThanOrEqual(
      2,
    );
    expect(log.slice(replyAt).filter((o) => o.kind === "typing")).toEqual([]);
  });
});

// ------------------------------------------------------------------ approvals

describe("approvals", () => {
  const deployed: string[] = [];
  const deploy = defineTool({
    name: "deploy",
    description: "Deploys",
    parameters: z.object({ env: z.string() }),
    approval: "always",
    execute: ({ env }) => {
      deployed.push(env);
      return `deployed to ${env}`;
    },
  });

  async function approvalsHarness(second: string) {
    deployed.length = 0;
    const provider = createScriptedProvider([
      { toolCalls: [{ toolName: "deploy", input: { env: "prod" } }] },
      { text: second },
    ]);
    const h = await harness({
      provider,
      settings: { operators: ["alice"] },
      runtime: { tools: [deploy], approvals: { mode: "always", timeoutMs: 10_000 } },
    });
    await h.platform.inject(dm("deploy please"));
    const prompt = await replyTo(h.platform, "Approval needed");
    const shortId = /\/deny (\S+)/.exec(prompt.text)![1]!;
    return { ...h, prompt, shortId };
  }

  it("posts the approval request to the chat and runs the tool once an operator answers /approve", async () => {
    const { platform, prompt, shortId } = await approvalsHarness("all deployed");
    expect(prompt.text).toContain("deploy");
    expect(shortId).toMatch(/^[0-9a-f]{8}$/);
    expect(await platform.inject(dm(`/approve ${shortId}`))).toMatchObject({ status: "command" });
    await replyTo(platform, "all deployed");
    expect(deployed).toEqual(["prod"]);
    const edit = await waitFor("the prompt edited", () =>
      platform.outbound().find((o) => o.kind === "edit"),
    );
    expect(edit).toMatchObject({ messageId: prompt.messageId });
    expect(edit.kind === "edit" && edit.text).toContain("Allowed once by Alice");
  });

  it("/deny refuses the tool call, and a non-operator's /approve is only text for the agent", async () => {
    const { platform, shortId } = await approvalsHarness("not deploying then");
    expect(await platform.inject(dm(`/approve ${shortId}`, "mallory"))).toMatchObject({
      status: "accepted",
    });
    expect(await platform.inject(dm(`/deny ${shortId}`))).toMatchObject({ status: "command" });
    await replyTo(platform, "not deploying then");
    expect(deployed).toEqual([]);
  });
});

// ------------------------------------------------------------------ chunking

describe("chunking", () => {
  it("delivers a long reply in order, every message within the limit, a long code block closed and reopened", async () => {
    const code = Array.from({ length: 30 }, (_, i) => `print(${i})`).join("\n");
    const answer = `Here you go:\n\n\`\`\`python\n${code}\n\`\`\`\n\nDone.`;
    const provider = createScriptedProvider([answer]);
    const { platform } = await harness({ provider, capabilities: { maxMessageLength: 120 } });
    await platform.inject(dm("code please"));
    await replyTo(platform, "Done.");
    const chunks = texts(platform);
    expect(chunks.length).toBeGreaterThan(2);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(120);
      expect(chunk.split("\n").filter((l) => l.startsWith("```")).length % 2).toBe(0);
    }
    const printed = chunks.flatMap((c) => c.split("\n")).filter((l) => l.startsWith("print("));
    expect(printed).toEqual(code.split("\n"));
  });
});

// ------------------------------------------------------------------ the durable outbox

describe("the durable outbox", () => {
  it("retries a send the platform refused for now, with backoff, and delivers in order", async () => {
    const retries = recordTelemetry("beamclaw:channel.outbound");
    const { platform, manager } = await harness();
    platform.failSends(2);
    await platform.inject(dm("first"));
    await platform.inject(dm("second"));
    await replyTo(platform, "second");
    expect(texts(platform)).toEqual(["first", "second"]);
    expect(retries.filter((e) => e.outcome === "retry")).toHaveLength(2);
    await manager.outbox("memory").idle();
    expect(await manager.outbox("memory").list()).toEqual([]);
  });

  it("sets a message aside after a permanent failure and goes on with the next", async () => {
    const { platform, manager } = await harness();
    platform.failSends(1, new ChannelSendError("memory", "chat not found", { isRetryable: false }));
    await platform.inject(dm("lost"));
    await platform.inject(dm("kept"));
    await replyTo(platform, "kept");
    expect(texts(platform)).toEqual(["kept"]);
    const dead = await manager.outbox("memory").deadLetters();
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({
      error: { code: "CHANNEL_SEND_FAILED" },
      parts: [{ text: "lost" }],
    });
  });

  it("a restart in the middle of a long reply sends the rest, and nothing the platform confirmed again", async () => {
    const store = new MemoryStore();
    const words = Array.from({ length: 60 }, (_, i) => `word${i}`).join(" ");
    let calls = 0;
    const first = await harness({
      store,
      provider: createScriptedProvider([words]),
      capabilities: { maxMessageLength: 100 },
      wrap: (plugin) => ({
        ...plugin,
        // The second part hangs until the channel stops: the process "dies" mid-reply.
        sendText: async (target, text, options) => {
          if (++calls === 2) {
            await new Promise((_, reject) =>
              options?.signal?.addEventListener("abort", () => reject(new AbortedError("stopped"))),
            );
          }
          return plugin.sendText(target, text, options);
        },
      }),
    });
    await first.platform.inject(dm("talk a lot"));
    await waitFor("the second part to be in flight", () => calls === 2);
    await first.crash();
    expect(texts(first.platform)).toHaveLength(1);
    const second = await harness({ store, capabilities: { maxMessageLength: 100 } });
    await replyTo(second.platform, "word59");
    const all = [...texts(first.platform), ...texts(second.platform)];
    expect(all.join(" ")).toBe(words);
    expect(all.length).toBe(new Set(all).size);
  });

  it("a restart in the middle of a run answers the message once, after the restart", async () => {
    const store = new MemoryStore();
    const stuck = createScriptedProvider([{ events: [{ type: "delay", ms: Infinity }] }]);
    const first = await harness({ store, provider: stuck });
    await first.platform.inject(dm("long question"));
    await waitFor("the run to start", () => stuck.requests.length === 1);
    await first.crash();
    expect(texts(first.platform)).toEqual([]);
    const answering = createScriptedProvider({
      id: "scripted",
      responses: ["the answer, after all"],
    });
    const second = await harness({ store, provider: answering });
    await replyTo(second.platform, "the answer, after all");
    await second.manager.outbox("memory").idle();
    expect(texts(second.platform)).toEqual(["the answer, after all"]);
    expect(answering.requests).toHaveLength(1);
  });

  it("deliver() sends host messages through the outbox, chunked at the limit", async () => {
    const { platform, manager } = await harness({ capabilities: { maxMessageLength: 40 } });
    const text = "A cron announcement that is longer than forty characters, surely.";
    const id = await manager.deliver(
      "memory",
      { accountId: "default", chatType: "group", chatId: "ops" },
      { text },
    );
    expect(typeof id).toBe("string");
    await waitFor("the announcement", () => texts(platform, "ops").length === 2);
    expect(texts(platform, "ops").join(" ")).toBe(text);
    await expect(
      manager.deliver("nope", { accountId: "default", chatType: "group", chatId: "ops" }, { text }),
    ).rejects.toBeInstanceOf(ChannelNotFoundError);
    await expect(
      manager.deliver(
        "memory",
        { accountId: "default", chatType: "group", chatId: "ops" },
        { text: "" },
      ),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

// ------------------------------------------------------------------ connection

describe("connection under the ChannelSupervisor", () => {
  it("reconnects with growing, jittered backoff while the platform refuses connections", async () => {
    const disconnects = recordTelemetry("beamclaw:channel.disconnect");
    const connects = recordTelemetry("beamclaw:channel.connect");
    const { platform, manager } = await harness({
      idle: true,
      manager: { reconnect: { baseDelayMs: 10, maxDelayMs: 1_000 }, random: () => 1 },
    });
    platform.refuseConnections(3);
    await manager.start();
    await waitFor("the connection", () => manager.status("memory").state === "connected");
    expect(disconnects.map((e) => e.retryInMs)).toEqual([10, 20, 40]);
    expect(connects.at(-1)).toMatchObject({ channel: "memory", attempt: 4 });
    expect(manager.status("memory").attempts).toBe(0);
  });

  it("waits as long as a refused connection's retryAfterMs asks when that is longer than the backoff", async () => {
    const disconnects = recordTelemetry("beamclaw:channel.disconnect");
    const { platform, manager } = await harness({
      idle: true,
      manager: { reconnect: { baseDelayMs: 10, maxDelayMs: 1_000 }, random: () => 1 },
    });
    const limited = Object.assign(new Error("429: Too Many Requests: retry after 1"), {
      retryAfterMs: 60,
    });
    const garbage = Object.assign(new Error("rate limited"), { retryAfterMs: Number.NaN });
    platform.refuseConnections(1, limited);
    platform.refuseConnections(1, garbage);
    await manager.start();
    await waitFor("the connection", () => manager.status("memory").state === "connected");
    // The platform's 60 ms over the first backoff of 10 ms; a NaN is ignored (backoff 20 ms).
    expect(disconnects.map((e) => e.retryInMs)).toEqual([60, 20]);
  });

  it("reconnects after the platform drops the connection, and messages flow again", async () => {
    const { platform, manager } = await harness();
    await platform.disconnect();
    await waitFor(
      "the reconnect",
      () => platform.connections === 2 && manager.status("memory").state === "connected",
    );
    await platform.inject(dm("still there?"));
    await replyTo(platform, "still there?");
  });

  it("gives up on a start error marked not retryable, until restart()", async () => {
    const { platform, manager } = await harness({ idle: true });
    platform.refuseConnections(1, Object.assign(new Error("bad token"), { isRetryable: false }));
    await manager.start();
    expect(manager.status("memory")).toMatchObject({
      state: "failed",
      lastError: { message: "bad token" },
    });
    manager.restart("memory");
    await waitFor("the restart", () => manager.status("memory").state === "connected");
  });

  it("restarts a killed channel process and reconnects it", async () => {
    const { platform, manager } = await harness();
    const [child] = await manager.supervisor!.whichChildren();
    child!.process!.kill();
    await waitFor(
      "a new connection",
      () => platform.connections === 2 && manager.status("memory").state === "connected",
    );
    const [again] = await manager.supervisor!.whichChildren();
    expect(again!.process).not.toBe(child!.process);
    await platform.inject(dm("after the crash"));
    await replyTo(platform, "after the crash");
  });

  it("a context left from an earlier connection cannot deliver", async () => {
    const contexts: ChannelContext[] = [];
    const { manager } = await harness({
      wrap: (plugin) => ({
        ...plugin,
        start: async (c) => {
          contexts.push(c);
          await plugin.start(c);
        },
      }),
    });
    manager.restart("memory");
    await waitFor(
      "the second connection",
      () => contexts.length === 2 && manager.status("memory").state === "connected",
    );
    expect(contexts[0]!.signal.aborted).toBe(true);
    await expect(
      contexts[0]!.receive({
        peer: { id: "x" },
        chatType: "direct",
        text: "late",
        messageId: "late-1",
      }),
    ).rejects.toBeInstanceOf(NoProcessError);
  });

  it("stops every plugin on stop(), and receives nothing afterwards", async () => {
    const { platform, manager } = await harness();
    await manager.stop();
    expect(platform.connected).toBe(false);
    expect(manager.status("memory").state).toBe("stopped");
    await manager.stop();
  });
});

// ------------------------------------------------------------------ gateway and configuration

describe("gateway methods and configuration", () => {
  it("registers a plugin's methods as <channel>.<name>, beside channels.status, channels.start/stop/logout and channels.pairing.*", async () => {
    const { manager } = await harness({
      settings: { dmPolicy: "pairing" },
      wrap: (plugin) => ({
        ...plugin,
        gatewayMethods: { ping: { handler: () => "pong" } },
      }),
    });
    const methods = manager.gatewayMethods();
    expect(Object.keys(methods).sort()).toEqual([
      "channels.logout",
      "channels.pairing.approve",
      "channels.pairing.dismiss",
      "channels.pairing.list",
      "channels.start",
      "channels.status",
      "channels.stop",
      "memory.ping",
    ]);
    expect(await methods["memory.ping"]!.handler(undefined, { scopes: [] })).toBe("pong");
    expect(await methods["channels.status"]!.handler(undefined, { scopes: [] })).toMatchObject({
      channelOrder: ["memory"],
      channelLabels: { memory: "Memory" },
      channels: { memory: { channel: "memory", state: "connected" } },
      channelAccounts: { memory: [{ accountId: "default", connected: true, running: true }] },
      channelDefaultAccountId: { memory: "default" },
    });
    await expect(
      methods["channels.pairing.approve"]!.handler(
        { channel: "memory", accountId: "default", requestId: "AAAAAAAA" },
        { scopes: [] },
      ),
    ).rejects.toMatchObject({ code: "PAIRING_CODE_INVALID" });
  });

  it("refuses duplicate channel ids, unknown agents, bad settings and malformed plugins with InvalidArgumentError", async () => {
    const { runtime } = await harness({ idle: true });
    const plugin = createMemoryPlatform().createChannel();
    const make = (channels: ChannelManagerOptions["channels"]) => () =>
      new ChannelManager({ runtime, channels });
    expect(make([{ plugin }, { plugin }])).toThrow(/two channels/);
    expect(make([{ plugin, agentId: "ghost" }])).toThrow(/unknown agent/);
    expect(make([{ plugin, dmScope: "all" as never }])).toThrow(InvalidArgumentError);
    expect(make([{ plugin, dmPolicy: "maybe" as never }])).toThrow(InvalidArgumentError);
    expect(make([{ plugin, debounceMs: -1 }])).toThrow(InvalidArgumentError);
    expect(make([{ plugin: { ...plugin, id: "Bad Id" } }])).toThrow(InvalidArgumentError);
    expect(make([{ plugin: { ...plugin, id: "main" } }])).toThrow(/reserve/);
    const { edit: _edit, ...noEdit } = plugin;
    expect(make([{ plugin: noEdit as ChannelPlugin }])).toThrow(/edits but has no edit/);
  });
});
