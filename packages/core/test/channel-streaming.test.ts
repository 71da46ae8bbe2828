/**
 * Replies streamed by editing (`streaming: "edit"`), end to end on the in-memory platform: a
 * first message as soon as text arrives, edits as more arrives (throttled), the final edit
 * equal to the final text, overflow continued in further messages at the platform limit,
 * the platform's retry-after honoured, and nothing of it when streaming is off.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  ChannelManager,
  type ChannelPlugin,
  ChannelSendError,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
} from "../src/index.js";
import {
  createMemoryPlatform,
  createScriptedProvider,
  type MemoryPlatform,
  type PlatformOutbound,
  type ScriptedStep,
} from "../src/testing/index.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

function gate() {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** A model that streams `pieces`, holding before each one until its gate opens. */
function gatedReply(pieces: string[]) {
  const gates = pieces.map(() => gate());
  const events: ScriptedStep[] = [{ type: "response-start", model: "m" }];
  for (const [i, piece] of pieces.entries()) {
    events.push({ type: "wait", until: gates[i]!.promise });
    events.push({ type: "text-delta", text: piece });
  }
  events.push({ type: "finish", reason: "stop" });
  return { gates, provider: createScriptedProvider({ id: "s", responses: [{ events }] }) };
}

async function host(options: {
  provider: ReturnType<typeof createScriptedProvider>;
  maxMessageLength?: number;
  streaming?: "off" | "edit";
  streamThrottleMs?: number;
  wrap?: (plugin: ChannelPlugin) => ChannelPlugin;
}) {
  const store = new MemoryStore();
  await store.open();
  const platform = createMemoryPlatform({
    capabilities: { maxMessageLength: options.maxMessageLength ?? 2000, typing: false },
  });
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [options.provider], retry: { maxAttempts: 1 } }),
    agents: [{ id: "main", model: "s/m" }],
  });
  await runtime.start();
  const plugin = (options.wrap ?? ((p) => p))(platform.createChannel());
  const manager = new ChannelManager({
    runtime,
    channels: [
      {
        plugin,
        dmPolicy: "open",
        streaming: options.streaming ?? "edit",
        streamThrottleMs: options.streamThrottleMs ?? 0,
      },
    ],
    outbox: { baseDelayMs: 10, maxDelayMs: 40 },
  });
  await manager.start();
  cleanups.push(async () => {
    await manager.stop();
    await runtime.stop();
    await platform.close();
    await store.close();
  });
  return { platform, manager };
}

const say = (platform: MemoryPlatform, text: string, messageId: string) =>
  platform.inject({
    chatType: "direct",
    chatId: "alice",
    peer: { id: "alice" },
    text,
    messageId,
  });

/** What each message the bot posted shows now, by message id, in posting order. */
function shown(outbound: PlatformOutbound[]): Map<string, string> {
  const messages = new Map<string, string>();
  for (const o of outbound) {
    if (o.kind === "text") messages.set(o.messageId, o.text);
    if (o.kind === "edit") messages.set(o.messageId, o.text);
  }
  return messages;
}

describe('replies streamed by editing (streaming: "edit")', () => {
  it("posts the first text at once, edits it as text arrives, and ends on exactly the final text", async () => {
    const { gates, provider } = gatedReply(["Hello", ", wor", "ld!"]);
    const { platform } = await host({ provider });
    await say(platform, "hi", "m1");
    gates[0]!.open();
    const first = await waitFor("the first message", () =>
      platform.outbound().find((o) => o.kind === "text"),
    );
    expect(first).toMatchObject({ kind: "text", text: "Hello" });
    gates[1]!.open();
    await waitFor("an edit", () =>
      platform.outbound().find((o) => o.kind === "edit" && o.text === "Hello, wor"),
    );
    gates[2]!.open();
    await waitFor(
      "the final text",
      () => shown(platform.outbound()).get(first.messageId) === "Hello, world!",
    );
    // One message, edited; no second message with the whole answer.
    await new Promise<void>((resolve) => setTimeout(resolve, 50));
    const texts = platform.outbound().filter((o) => o.kind === "text");
    expect(texts).toHaveLength(1);
    const edits = platform.outbound().filter((o) => o.kind === "edit");
    expect(edits.every((e) => e.kind === "edit" && e.messageId === first.messageId)).toBe(true);
    expect(edits.at(-1)).toMatchObject({ text: "Hello, world!" });
  });

  it("updates at most once per streamThrottleMs, however fast text arrives", async () => {
    const pieces = Array.from({ length: 40 }, (_, i) => `w${i} `);
    const events: ScriptedStep[] = [{ type: "response-start", model: "m" }];
    for (const piece of pieces) {
      events.push({ type: "text-delta", text: piece }, { type: "delay", ms: 5 });
    }
    events.push({ type: "finish", reason: "stop" });
    const provider = createScriptedProvider({ id: "s", responses: [{ events }] });
    const updates: number[] = [];
    const { platform } = await host({
      provider,
      streamThrottleMs: 150,
      wrap: (plugin) => ({
        ...plugin,
        async sendText(target, text, options) {
          updates.push(Date.now());
          return plugin.sendText(target, text, options);
        },
        async edit(target, messageId, text, options) {
          updates.push(Date.now());
          return plugin.edit!(target, messageId, text, options);
        },
      }),
    });
    await say(platform, "count", "m1");
    const final = pieces.join("");
    await waitFor("the final text", () => [...shown(platform.outbound()).values()].includes(final));
    // 40 deltas 5 ms apart with 150 ms between updates: a few updates, not one per delta.
    expect(updates.length).toBeLessThan(pieces.length / 2);
    // Every update, the final one included, keeps the pace (timers fire late, never early).
    for (let i = 1; i < updates.length; i++) {
      expect(updates[i]! - updates[i - 1]!).toBeGreaterThanOrEqual(140);
    }
  });

  it("continues past the platform limit in further messages, each within it", async () => {
    const words = Array.from({ length: 30 }, (_, i) => `word${i}`);
    const halves = [words.slice(0, 15).join(" "), ` ${words.slice(15).join(" ")}`];
    const { gates, provider } = gatedReply(halves);
    const { platform } = await host({ provider, maxMessageLength: 60 });
    await say(platform, "long please", "m1");
    gates[0]!.open();
    await waitFor("a first preview", () => platform.outbound().some((o) => o.kind === "text"));
    gates[1]!.open();
    const final = words.join(" ");
    await waitFor("every word shown", () => {
      const all = [...shown(platform.outbound()).values()].join(" ");
      return all.split(/\s+/).filter(Boolean).join(" ") === final;
    });
    const messages = [...shown(platform.outbound()).values()];
    expect(messages.length).toBeGreaterThan(1);
    for (const text of messages) expect(text.length).toBeLessThanOrEqual(60);
    expect(messages.join(" ").split(/\s+/).filter(Boolean)).toEqual(words);
  });

  it("waits out the platform's retry-after before the next update, and still ends on the final text", async () => {
    const { gates, provider } = gatedReply(["one", " two", " three"]);
    let refused = 0;
    let refusedAt = 0;
    const attempts: number[] = [];
    const { platform } = await host({
      provider,
      wrap: (plugin) => ({
        ...plugin,
        async edit(target, messageId, text, options) {
          attempts.push(Date.now());
          if (refused === 0) {
            refused++;
            refusedAt = Date.now();
            throw new ChannelSendError("memory", "rate limited", {
              isRetryable: true,
              retryAfterMs: 300,
            });
          }
          return plugin.edit!(target, messageId, text, options);
        },
      }),
    });
    await say(platform, "go", "m1");
    gates[0]!.open();
    const first = await waitFor("the first message", () =>
      platform.outbound().find((o) => o.kind === "text"),
    );
    gates[1]!.open();
    await waitFor("the refused edit", () => refused === 1);
    gates[2]!.open();
    await waitFor(
      "the final text",
      () => shown(platform.outbound()).get(first.messageId) === "one two three",
      5_000,
    );
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts[1]! - refusedAt).toBeGreaterThanOrEqual(290);
  });

  for (const [what, retryAfterMs, streamThrottleMs] of [
    ["longer than a timer holds", 3_000_000_000, 0],
    ["that is not a number", Number.NaN, 1_000],
  ] as const) {
    it(`does not update again at once after a retry-after ${what}`, async () => {
      const { gates, provider } = gatedReply(["one", " two", " three", " four"]);
      const attempts: string[] = [];
      const { platform } = await host({
        provider,
        streamThrottleMs,
        wrap: (plugin) => ({
          ...plugin,
          async edit(_target, _messageId, text) {
            attempts.push(text);
            throw new ChannelSendError("memory", "rate limited", {
              isRetryable: true,
              retryAfterMs,
            });
          },
        }),
      });
      await say(platform, "go", "m1");
      gates[0]!.open();
      await waitFor("the first message", () => platform.outbound().some((o) => o.kind === "text"));
      gates[1]!.open();
      await waitFor("the refused edit", () => attempts.length === 1);
      gates[2]!.open();
      // Old code: the wait overflowed (or was NaN, throttle and all) and the next edit went
      // out after 1 ms; now it waits for the retry-after, or at least the 1 s throttle.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(attempts).toEqual(["one two"]);
    });
  }

  it("sends the reply in one go when streaming is off", async () => {
    const { gates, provider } = gatedReply(["Hello", " there"]);
    const { platform } = await host({ provider, streaming: "off" });
    await say(platform, "hi", "m1");
    gates[0]!.open();
    await new Promise<void>((resolve) => setTimeout(resolve, 50));
    expect(platform.outbound().filter((o) => o.kind === "text")).toEqual([]);
    gates[1]!.open();
    await waitFor("the reply", () => platform.outbound().some((o) => o.kind === "text"));
    expect(platform.outbound().filter((o) => o.kind !== "typing")).toEqual([
      expect.objectContaining({ kind: "text", text: "Hello there" }),
    ]);
  });

  it("refuses streaming by edit on a channel that cannot edit", async () => {
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [createScriptedProvider({ id: "s" })] }),
      agents: [{ id: "main", model: "s/m" }],
    });
    const platform = createMemoryPlatform({ capabilities: { edits: false } });
    const { edit: _edit, ...plugin } = platform.createChannel();
    let error: unknown;
    try {
      new ChannelManager({ runtime, channels: [{ plugin, streaming: "edit" }] });
    } catch (e) {
      error = e;
    }
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/streaming "edit" needs a channel that can edit/);
    await platform.close();
    await store.close();
  });
});
