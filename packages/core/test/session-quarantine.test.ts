/**
 * Poison messages: a message whose every run ends with its session crashing is replayed at
 * most `maxDeliveries` times, then quarantined (kept in the store, off the queue) so that the
 * session, and the runtime above it, go on. Nothing is lost: the message can be listed,
 * released (sent again) or dropped, and its caller hears `QUARANTINED`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";
import type { ModelSource } from "../src/sessions/agent-loop.js";
import { AgentRuntime } from "../src/sessions/runtime.js";
import type { RunEvent } from "../src/sessions/types.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { subscribeTelemetry } from "../src/telemetry.js";
import { waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => void | Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function newStore(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  return store;
}

/**
 * Answers "ok: <text>"; while `poisoned` is true, a message "poison" kills its session
 * mid-run (as a bug that crashes the process handling it would).
 */
function crashingSource(state: { poisoned: boolean; runtime?: AgentRuntime; calls: string[] }) {
  const source: ModelSource = {
    async *stream(request) {
      const last = request.messages[request.messages.length - 1];
      const text = last?.content.map((part) => ("text" in part ? part.text : "")).join("") ?? "";
      state.calls.push(text);
      if (text === "poison" && state.poisoned) {
        state.runtime?.registry.whereis(`session:${KEY}`)?.kill();
        await new Promise(() => {}); // the kill ends this run
      }
      yield { type: "text-delta", text: `ok: ${text}` };
      yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
    },
  } as ModelSource;
  return source;
}

async function started(store: MemoryStore, models: ModelSource, quarantineAfterCrashes?: number) {
  const runtime = new AgentRuntime({
    store,
    models,
    agents: [{ id: "main", model: "t/m" }],
    ...(quarantineAfterCrashes === undefined ? {} : { quarantineAfterCrashes }),
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return runtime;
}

describe("poison-message quarantine", () => {
  it("a message whose session crashes on every run is quarantined after quarantineAfterCrashes crashes; the messages behind it run", async () => {
    const store = await newStore();
    const state = { poisoned: true, calls: [] as string[] } as {
      poisoned: boolean;
      runtime?: AgentRuntime;
      calls: string[];
    };
    const runtime = await started(store, crashingSource(state), 2);
    state.runtime = runtime;
    const seen: Array<{ messageId: string; crashes: number; reason: string }> = [];
    cleanups.push(subscribeTelemetry("beamclaw:session.quarantine", (e) => seen.push(e)));

    const session = runtime.session(KEY);
    const poison = await session.send("poison", { idempotencyKey: "channel:1" });
    const after = await session.send("after");
    const events: RunEvent[] = [];
    const collected = (async () => {
      for await (const event of poison) events.push(event);
    })();

    const result = await poison.result;
    await collected;
    expect(result.status).toBe("failed");
    expect(result.error?.code).toBe("QUARANTINED");
    expect(result.error?.message).toMatch(/crashed 2 times while running it/);
    expect(events.at(-1)?.type).toBe("run-end");
    expect(events.some((e) => e.type === "error")).toBe(true);

    // The next message was not held hostage, nor blamed: it never ran while the session died.
    expect((await after.result).text).toBe("ok: after");
    // Two runs, two crashes; the third start quarantined it instead of running it.
    expect(state.calls.filter((t) => t === "poison")).toHaveLength(2);

    // Kept in the store, off the queue, and announced.
    expect(await store.queue.pending({ sessionKey: KEY })).toEqual([]);
    const [record, ...others] = await runtime.quarantined();
    expect(others).toEqual([]);
    expect(record).toMatchObject({
      sessionKey: KEY,
      idempotencyKey: "channel:1",
      crashes: 2,
      payload: { input: { text: "poison" } },
    });
    expect(await runtime.quarantined({ sessionKey: KEY })).toEqual([record]);
    expect(await runtime.quarantined({ sessionKey: "agent:main:other" })).toEqual([]);
    expect(seen).toEqual([expect.objectContaining({ messageId: record!.id, crashes: 2 })]);

    // A redelivery of the same idempotency key is not run again (it was acknowledged).
    const again = await session.send("poison", { idempotencyKey: "channel:1" });
    expect(again.disposition).toBe("duplicate");

    // Released once the bug is fixed: it runs as a new message and leaves quarantine.
    state.poisoned = false;
    const released = await runtime.releaseQuarantined(KEY, record!.id);
    expect((await released.result).text).toBe("ok: poison");
    expect(await runtime.quarantined()).toEqual([]);
    await expect(runtime.releaseQuarantined(KEY, record!.id)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(await runtime.dropQuarantined(KEY, record!.id)).toBe(false);
  });

  it("refuses a quarantineAfterCrashes that is not a whole number >= 1", async () => {
    const store = await newStore();
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(
        () =>
          new AgentRuntime({
            store,
            models: crashingSource({ poisoned: false, calls: [] }),
            agents: [{ id: "main", model: "t/m" }],
            quarantineAfterCrashes: bad,
          }),
      ).toThrow(InvalidArgumentError);
    }
  });

  it("a queued payload that is not a message is quarantined at replay, not left pending for ever", async () => {
    const store = await newStore();
    const { message } = await store.queue.enqueue({
      idempotencyKey: "bad-1",
      sessionKey: KEY,
      payload: { something: "else" },
    });
    const state = { poisoned: false, calls: [] as string[] };
    const runtime = await started(store, crashingSource(state));
    await waitFor("the bad payload was quarantined", async () => {
      const list = await runtime.quarantined();
      return list.length === 1 ? list : undefined;
    });
    const [record] = await runtime.quarantined();
    expect(record).toMatchObject({
      id: message.id,
      crashes: 0,
      reason: expect.stringMatching(/payload/),
    });
    expect(await store.queue.pending()).toEqual([]);
    await expect(runtime.releaseQuarantined(KEY, message.id)).rejects.toThrow(/drop it instead/);
    expect(await runtime.dropQuarantined(KEY, message.id)).toBe(true);
    expect(await runtime.quarantined()).toEqual([]);
    // The session works.
    const run = await runtime.session(KEY).send("hello");
    expect((await run.result).text).toBe("ok: hello");
  });
});
