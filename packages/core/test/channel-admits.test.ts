/**
 * `ctx.admits`: a plugin asks, before it downloads a message's files, whether `ctx.receive`
 * would take the message to a session. The answer is `receive`'s own decision (DM and group
 * policy, pairing, mention gating, the commands the host answers), taken without any of
 * `receive`'s side effects: the pairing code of an unknown sender is sent once, by `receive`.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  type ChannelContext,
  type ChannelManager,
  type ChannelSettings,
  type InboundMessageInput,
  InvalidInboundError,
  NoProcessError,
  type ReceiveStatus,
} from "../src/index.js";
import type { MemoryPlatform } from "../src/testing/index.js";
import { channelHarness } from "./channel-harness.js";
import { waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Host {
  manager: ChannelManager;
  platform: MemoryPlatform;
  /** The context the host gave the plugin's latest start. */
  ctx(): ChannelContext;
  contexts: ChannelContext[];
}

/**
 * A `ChannelManager` with one in-memory channel under `settings` (DM and group policy `open`
 * where they say nothing), and its plugin's context.
 */
async function host(settings: ChannelSettings): Promise<Host> {
  const contexts: ChannelContext[] = [];
  const { manager, platform } = await channelHarness(cleanups, {
    settings,
    wrap: (plugin) => ({
      ...plugin,
      start: async (ctx: ChannelContext) => {
        contexts.push(ctx);
        await plugin.start(ctx);
      },
    }),
  });
  return { manager, platform, contexts, ctx: () => contexts.at(-1)! };
}

let counter = 0;

/** A message with a picture the plugin has not downloaded yet (described, its URL private). */
function message(
  from: string,
  where: { group?: string; mention?: boolean } = {},
  text = "look at this",
): InboundMessageInput {
  return {
    peer: { id: from },
    chatType: where.group === undefined ? "direct" : "group",
    ...(where.group === undefined ? {} : { chatId: where.group }),
    text,
    messageId: `m${++counter}`,
    mentions: { bot: where.mention ?? false },
    attachments: [
      {
        kind: "image",
        url: "https://files.example/cat.png",
        privateUrl: true,
        mediaType: "image/png",
        name: "cat.png",
        size: 2048,
      },
    ],
  };
}

const texts = (platform: MemoryPlatform) =>
  platform.outbound().flatMap((o) => (o.kind === "text" ? [o.text] : []));

describe("ctx.admits answers as receive decides", () => {
  const cases: Array<{
    rule: string;
    settings: ChannelSettings;
    input: () => InboundMessageInput;
    status: ReceiveStatus;
  }> = [
    {
      rule: "dmPolicy pairing: a sender not paired yet",
      settings: { dmPolicy: "pairing" },
      input: () => message("eve"),
      status: "pairing",
    },
    {
      rule: "dmPolicy pairing: a sender on allowFrom",
      settings: { dmPolicy: "pairing", allowFrom: ["ann"] },
      input: () => message("ann"),
      status: "accepted",
    },
    {
      rule: "dmPolicy allowlist: a sender not on it",
      settings: { dmPolicy: "allowlist", allowFrom: ["ann"] },
      input: () => message("eve"),
      status: "blocked",
    },
    {
      rule: "dmPolicy disabled",
      settings: { dmPolicy: "disabled" },
      input: () => message("ann"),
      status: "blocked",
    },
    {
      rule: "dmPolicy open",
      settings: { dmPolicy: "open" },
      input: () => message("eve"),
      status: "accepted",
    },
    {
      rule: "groupPolicy allowlist: a group not on it",
      settings: { groupPolicy: "allowlist", groups: ["room-1"] },
      input: () => message("ann", { group: "room-2", mention: true }),
      status: "blocked",
    },
    {
      rule: "requireMention: a group message that does not mention the bot",
      settings: { groupPolicy: "open" },
      input: () => message("ann", { group: "room-1" }),
      status: "ignored",
    },
    {
      rule: "requireMention: a group message that mentions the bot",
      settings: { groupPolicy: "open" },
      input: () => message("ann", { group: "room-1", mention: true }),
      status: "accepted",
    },
    {
      rule: "groupAllowFrom: a sender not on it",
      settings: { groupPolicy: "open", groupAllowFrom: ["ann"], requireMention: false },
      input: () => message("eve", { group: "room-1" }),
      status: "blocked",
    },
    {
      rule: "an operator's channel command (answered by the host)",
      settings: { dmPolicy: "open", operators: ["olga"] },
      input: () => message("olga", {}, "/pair list"),
      status: "command",
    },
    {
      rule: "a session command (answered by the host)",
      settings: { dmPolicy: "open" },
      input: () => message("ann", {}, "/new"),
      status: "command",
    },
  ];

  for (const { rule, settings, input, status } of cases) {
    it(`${rule}: admits is ${status === "accepted"}, receive answers ${status}`, async () => {
      const { ctx } = await host(settings);
      const inbound = input();
      const admitted = await ctx().admits!(inbound);
      const received = await ctx().receive(inbound);
      expect(received.status).toBe(status);
      expect(admitted).toBe(status === "accepted");
    });
  }
});

describe("ctx.admits has none of receive's side effects", () => {
  it("asked about an unknown sender, it sends no pairing code and records nothing; receive then sends the one code", async () => {
    const { ctx, manager, platform } = await host({ dmPolicy: "pairing" });
    const inbound = message("eve");
    for (let i = 0; i < 3; i++) expect(await ctx().admits!(inbound)).toBe(false);
    // Give a stray reply time to show.
    await new Promise<void>((resolve) => setTimeout(resolve, 50));
    expect(platform.outbound()).toEqual([]);
    expect(await manager.pairing.pending("memory")).toEqual([]);

    // The same message id is still new to receive: admits did not mark it as seen.
    expect(await ctx().receive(inbound)).toMatchObject({ status: "pairing" });
    await waitFor("the pairing code", () => texts(platform).length === 1);
    expect(texts(platform)[0]).toMatch(/pairing code is [A-Z0-9]{8}/);
    expect(await manager.pairing.pending("memory")).toHaveLength(1);
    // Asking again sends nothing more.
    expect(await ctx().admits!(message("eve"))).toBe(false);
    await new Promise<void>((resolve) => setTimeout(resolve, 50));
    expect(texts(platform)).toHaveLength(1);
  });

  it("follows pairing approvals: once an operator approved the sender, it is admitted", async () => {
    const { ctx, manager } = await host({ dmPolicy: "pairing" });
    await ctx().receive(message("eve"));
    const [request] = await manager.pairing.pending("memory");
    expect(await ctx().admits!(message("eve"))).toBe(false);
    await manager.approvePairing("memory", request!.code, "owner");
    expect(await ctx().admits!(message("eve"))).toBe(true);
    expect(await ctx().receive(message("eve"))).toMatchObject({ status: "accepted" });
  });
});

describe("ctx.admits refuses what receive refuses", () => {
  it("rejects a malformed message with InvalidInboundError naming the field", async () => {
    const { ctx } = await host({ dmPolicy: "open" });
    const malformed = { ...message("ann"), peer: { id: "" } };
    await expect(ctx().admits!(malformed)).rejects.toBeInstanceOf(InvalidInboundError);
    await expect(ctx().admits!(malformed)).rejects.toMatchObject({ field: "peer.id" });
    await expect(ctx().receive(malformed)).rejects.toMatchObject({ field: "peer.id" });
  });

  it("rejects with NoProcessError once the context is stale", async () => {
    const { manager, contexts } = await host({ dmPolicy: "open" });
    manager.restart("memory");
    await waitFor(
      "the second connection",
      () => contexts.length === 2 && manager.status("memory").state === "connected",
    );
    await expect(contexts[0]!.admits!(message("ann"))).rejects.toBeInstanceOf(NoProcessError);
    expect(await contexts[1]!.admits!(message("ann"))).toBe(true);
  });
});
