/**
 * Session commands in a chat: `/new` (`/reset`), `/stop`, `/status`, `/think`, over the
 * in-memory platform of `@beamclaw/core/testing`, a real `ChannelManager` and a real
 * `AgentRuntime`. They act on the sender's conversation, are answered in the chat, and never
 * reach the agent.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  CHAT_COMMANDS,
  ChannelManager,
  type ChannelSettings,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
  type ModelProvider,
  parseChannelCommand,
  parseSessionCommand,
} from "../src/index.js";
import {
  createEchoProvider,
  createMemoryPlatform,
  createScriptedProvider,
  type MemoryPlatform,
  type PlatformInbound,
} from "../src/testing/index.js";
import { waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function harness(
  options: { settings?: Partial<ChannelSettings>; provider?: ModelProvider } = {},
) {
  const store = new MemoryStore();
  await store.open();
  const platform = createMemoryPlatform();
  const plugin = platform.createChannel();
  const provider = options.provider ?? createEchoProvider();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
    agents: [{ id: "main", model: `${provider.id}/m` }],
  });
  await runtime.start();
  const manager = new ChannelManager({
    runtime,
    channels: [{ plugin, dmPolicy: "open", groupPolicy: "open", ...options.settings }],
  });
  await manager.start();
  cleanups.push(async () => {
    await manager.stop();
    await runtime.stop();
    await platform.close();
    await store.close();
  });
  return { platform, runtime, manager };
}

let counter = 0;
function dm(text: string, peer = "alice"): PlatformInbound {
  return {
    chatType: "direct",
    chatId: `dm-${peer}`,
    peer: { id: peer, name: peer },
    text,
    messageId: `c${++counter}`,
  };
}

function texts(platform: MemoryPlatform, chatId = "dm-alice"): string[] {
  return platform
    .outbound()
    .flatMap((o) => (o.kind === "text" && o.target.chatId === chatId ? [o.text] : []));
}

const KEY = "agent:main:main";

describe("parseSessionCommand", () => {
  it("reads /new, /reset, /stop, /status and /think [level], also addressed to a bot", () => {
    expect(parseSessionCommand("/new")).toEqual({ kind: "new" });
    expect(parseSessionCommand("  /RESET ")).toEqual({ kind: "new" });
    expect(parseSessionCommand("/new@MyBot")).toEqual({ kind: "new" });
    expect(parseSessionCommand("/stop")).toEqual({ kind: "stop" });
    expect(parseSessionCommand("/status")).toEqual({ kind: "status" });
    expect(parseSessionCommand("/think")).toEqual({ kind: "think" });
    expect(parseSessionCommand("/think HIGH")).toEqual({ kind: "think", level: "high" });
    expect(parseSessionCommand("/think loud")).toEqual({ kind: "think", invalid: "loud" });
    expect(parseSessionCommand("/compact")).toEqual({ kind: "compact" });
    expect(parseSessionCommand("/compact@MyBot  keep the  dates ")).toEqual({
      kind: "compact",
      instructions: "keep the  dates",
    });
    for (const text of [
      "/new please",
      "please /new",
      "/stop now",
      "/think high now",
      "/news",
      "",
      "new",
    ]) {
      expect(parseSessionCommand(text), text).toBeUndefined();
    }
  });
});

describe("CHAT_COMMANDS", () => {
  /** A use of each command, with every argument it may take. */
  const USES: Record<string, string[]> = {
    new: [""],
    stop: [""],
    status: [""],
    think: ["", " high"],
    compact: ["", " keep the dates"],
    approve: [" 1a2b3c4d", " 1a2b3c4d always"],
    deny: [" 1a2b3c4d"],
    pair: [" list", " approve K7M2Q9XD", " reject K7M2Q9XD"],
  };

  it("describes every command the parsers read, by each of its spellings", () => {
    expect(CHAT_COMMANDS.map((c) => c.name).sort()).toEqual(Object.keys(USES).sort());
    for (const command of CHAT_COMMANDS) {
      for (const alias of command.textAliases) {
        for (const rest of USES[command.name]!) {
          const text = `${alias}${rest}`;
          const parsed = command.operatorOnly
            ? parseChannelCommand(text)
            : parseSessionCommand(text);
          expect(parsed, text).toBeDefined();
          expect(
            parsed!.kind.startsWith(command.name === "deny" ? "approve" : command.name),
            text,
          ).toBe(true);
        }
      }
      for (const arg of command.args) {
        if (arg.choices === undefined) continue;
        expect(arg.choices.length, `${command.name} ${arg.name}`).toBeGreaterThan(0);
      }
    }
    // The /think levels listed are the ones it takes.
    const think = CHAT_COMMANDS.find((c) => c.name === "think")!;
    for (const level of think.args[0]!.choices!) {
      expect(parseSessionCommand(`/think ${level}`)).toEqual({ kind: "think", level });
    }
  });
});

describe("session commands in a chat", () => {
  it("/new clears the conversation: the next message is the first the model sees", async () => {
    const provider = createEchoProvider();
    const { platform } = await harness({ provider });
    await platform.inject(dm("remember the number 7"));
    await waitFor("the first reply", () => texts(platform).includes("remember the number 7"));
    expect(await platform.inject(dm("/new"))).toMatchObject({
      status: "command",
      reason: "session-new",
      sessionKey: KEY,
    });
    expect(texts(platform).at(-1)).toBe(
      "Started a new conversation: the earlier messages are forgotten.",
    );
    await platform.inject(dm("what was the number?"));
    await waitFor("the second reply", () => texts(platform).includes("what was the number?"));
    expect(provider.requests).toHaveLength(2);
    expect(provider.requests[1]!.messages).toHaveLength(1);
    // The command never reached the model.
    expect(JSON.stringify(provider.requests)).not.toContain("/new");
  });

  it("/stop aborts the reply being written; with nothing running it says so", async () => {
    const provider = createScriptedProvider([
      { text: Array.from({ length: 50 }, (_, i) => `w${i} `), chunkDelayMs: 100 },
    ]);
    const { platform, runtime } = await harness({ provider });
    const accepted = await platform.inject(dm("write a long story"));
    expect(accepted).toMatchObject({ status: "accepted" });
    const runId = (accepted as { runId: string }).runId;
    await waitFor("the run to start", async () => (await runtime.session(KEY).info()).activeRunId);
    expect(await platform.inject(dm("/stop"))).toMatchObject({ reason: "session-stop" });
    expect(texts(platform)).toContain("Stopped.");
    await waitFor("the run to end", async () => {
      const info = await runtime.session(KEY).info();
      return info.activeRunId === undefined ? info : undefined;
    });
    const history = await runtime.session(KEY).history();
    expect(history.some((r) => r.entry.runId === runId)).toBe(true);
    await platform.inject(dm("/stop"));
    expect(texts(platform).at(-1)).toBe("Nothing is running.");
  });

  it("/status tells the model, thinking level, state and counters", async () => {
    const { platform } = await harness();
    await platform.inject(dm("hello"));
    await waitFor("the reply", () => texts(platform).includes("hello"));
    await platform.inject(dm("/status"));
    const status = texts(platform).at(-1)!;
    expect(status).toContain("Model: echo/m, thinking off");
    expect(status).toContain("Idle");
    expect(status).toMatch(/1 reply so far: \d+ tokens, \$0\.0000/);
  });

  it("/think sets the session's thinking level, which the next request carries", async () => {
    const provider = createEchoProvider();
    const { platform, runtime } = await harness({ provider });
    await platform.inject(dm("/think"));
    expect(texts(platform).at(-1)).toBe("Thinking is off.");
    await platform.inject(dm("/think high"));
    expect(texts(platform).at(-1)).toBe("Thinking is high from now on.");
    expect((await runtime.session(KEY).info()).metadata.thinkingLevel).toBe("high");
    await platform.inject(dm("/think loudly"));
    expect(texts(platform).at(-1)).toBe(
      '"loudly" is not a thinking level: use /think off, minimal, low, medium or high.',
    );
    await platform.inject(dm("think hard about this"));
    await waitFor("the reply", () => provider.requests.length === 1);
    expect(provider.requests[0]!.thinking).toBe("high");
  });

  it("/compact summarizes the older turns with the instructions given, and says how many", async () => {
    const provider = createEchoProvider();
    const { platform, runtime } = await harness({ provider });
    await platform.inject(dm("/compact"));
    expect(texts(platform).at(-1)).toBe("Nothing to compact yet: the conversation is short.");
    for (const [n, text] of ["one", "two", "three"].entries()) {
      await platform.inject(dm(text));
      await waitFor(`reply ${n + 1}`, () => provider.requests.length === n + 1);
      await waitFor(`reply ${n + 1} delivered`, () => texts(platform).includes(text));
    }
    expect(await platform.inject(dm("/compact the numbers"))).toMatchObject({
      status: "command",
      reason: "session-compact",
    });
    expect(texts(platform).at(-1)).toBe("Compacted: the 2 earliest messages are now a summary.");
    // The echo model answered the summarizing call with its request, which names the instructions.
    const summarizing = provider.requests[3]!;
    expect(summarizing.system).toMatch(/^You summarize a conversation/);
    expect(JSON.stringify(summarizing.messages)).toContain("Keep in particular: the numbers");
    expect((await runtime.session(KEY).info()).metadata.compactions).toBe(1);
    expect((await runtime.session(KEY).info()).historyLength).toBe(5);
  });

  it("acts on the sender's own conversation only", async () => {
    const provider = createEchoProvider();
    const { platform } = await harness({ provider, settings: { dmScope: "per-peer" } });
    await platform.inject(dm("alice's secret", "alice"));
    await platform.inject(dm("bob's note", "bob"));
    await waitFor("both replies", () => provider.requests.length === 2);
    expect(await platform.inject(dm("/new", "bob"))).toMatchObject({
      sessionKey: "agent:main:direct:bob",
    });
    await platform.inject(dm("and now?", "alice"));
    await waitFor("alice's second reply", () => provider.requests.length === 3);
    expect(provider.requests[2]!.messages).toHaveLength(3);
  });

  it("sessionCommands operators keeps them to operators; off sends the words to the agent", async () => {
    const provider = createEchoProvider();
    const { platform } = await harness({
      provider,
      settings: { sessionCommands: "operators", operators: ["olga"] },
    });
    expect(await platform.inject(dm("/status", "olga"))).toMatchObject({ status: "command" });
    expect(await platform.inject(dm("/status", "alice"))).toMatchObject({ status: "accepted" });
    await waitFor("the agent's answer", () => provider.requests.length === 1);

    const off = createEchoProvider();
    const second = await harness({ provider: off, settings: { sessionCommands: "off" } });
    expect(await second.platform.inject(dm("/new"))).toMatchObject({ status: "accepted" });
    await waitFor("the agent's answer", () => off.requests.length === 1);
  });

  it("refuses a sessionCommands setting it does not know", async () => {
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [createEchoProvider()], models: [] }),
      agents: [{ id: "main", model: "echo/m" }],
    });
    await runtime.start();
    cleanups.push(async () => {
      await runtime.stop();
      await store.close();
    });
    const platform = createMemoryPlatform();
    cleanups.push(() => platform.close());
    const make = () =>
      new ChannelManager({
        runtime,
        channels: [{ plugin: platform.createChannel(), sessionCommands: "some" as "all" }],
      });
    expect(make).toThrow(InvalidArgumentError);
    expect(make).toThrow('sessionCommands must be "all", "operators" or "off"');
  });
});
