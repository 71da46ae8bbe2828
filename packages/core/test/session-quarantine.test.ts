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

  it("a message that takes its whole process down on every try is quarantined across restarts; the message behind it runs", async () => {
    const store = await newStore();
    // Each runtime stands for one process over the same store. A process that dies mid-run
    // is left as it is: never stopped, it writes nothing more (its run never returns), and
    // the next process starts over the store it left. The crash count of the process-local
    // map starts at 0 in each; only the store carries it over.
    const calls: string[] = [];
    const dying: ModelSource = {
      async *stream(request) {
        const last = request.messages[request.messages.length - 1];
        const text = last?.content.map((p) => ("text" in p ? p.text : "")).join("") ?? "";
        calls.push(text);
        if (text === "poison") await new Promise(() => {}); // the process "dies" here
        yield { type: "text-delta", text: `ok: ${text}` };
      },
    } as ModelSource;
    const poisonRuns = () => calls.filter((t) => t === "poison").length;

    const first = await started(store, dying);
    const poison = await first.session(KEY).send("poison", { idempotencyKey: "channel:7" });
    await first.session(KEY).send("after");
    await waitFor("the first try", () => poisonRuns() === 1);
    for (let restart = 1; restart <= 2; restart++) {
      await started(store, dying);
      await waitFor(`try ${restart + 1}`, () => poisonRuns() === restart + 1);
    }
    // The fourth process does not run it a fourth time: quarantined, and "after" runs.
    const fourth = await started(store, dying);
    const [record] = await waitFor("the quarantine", async () => {
      const list = await fourth.quarantined();
      return list.length === 1 ? list : undefined;
    });
    expect(record).toMatchObject({
      idempotencyKey: "channel:7",
      crashes: 3,
      reason: expect.stringMatching(/crashed 3 times while running it/),
    });
    await waitFor("the message behind it", () => calls.includes("after"));
    expect(poisonRuns()).toBe(3);
    await waitFor("its turn is saved", async () =>
      (await store.queue.pending({ sessionKey: KEY })).length === 0 ? true : undefined,
    );
    const history = await fourth.session(KEY).history();
    const said = history.flatMap((r) => {
      const m = r.entry.message as { role: string; content: Array<{ text?: string }> } | undefined;
      return m === undefined ? [] : [`${m.role}:${m.content.map((c) => c.text ?? "").join("")}`];
    });
    // The poison's three cut-short tries were discarded: the model never saw them.
    expect(said.filter((line) => !line.startsWith("user:poison"))).toEqual([
      "user:after",
      "assistant:ok: after",
    ]);
    // The first process's caller never heard back (that process "died"): no result at all.
    let settled = false;
    void poison.result.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
  });

  it("a run cut short by clean stops is not a crash: its message runs after any number of restarts", async () => {
    const store = await newStore();
    let answering = false;
    const calls: string[] = [];
    const slow: ModelSource = {
      async *stream(request, options) {
        const last = request.messages[request.messages.length - 1];
        const text = last?.content.map((p) => ("text" in p ? p.text : "")).join("") ?? "";
        calls.push(text);
        if (!answering) {
          // Held until the runtime stops, which aborts the run.
          await new Promise((_, reject) => {
            if (options.signal?.aborted) reject(options.signal.reason);
            options.signal?.addEventListener("abort", () => reject(options.signal?.reason), {
              once: true,
            });
          });
        }
        yield { type: "text-delta", text: `ok: ${text}` };
      },
    } as ModelSource;
    const runtime = await started(store, slow, 2);
    await runtime.session(KEY).send("slow", { idempotencyKey: "channel:9" });
    await waitFor("the first try", () => calls.length === 1);
    await runtime.stop();
    for (let restart = 1; restart <= 3; restart++) {
      const again = await started(store, slow, 2);
      await waitFor(`try ${restart + 1}`, () => calls.length === restart + 1);
      await again.stop();
    }
    // Four clean stops mid-run, quarantineAfterCrashes 2: still not quarantined, and it runs.
    answering = true;
    const last = await started(store, slow, 2);
    await waitFor("the answer", async () =>
      (await store.queue.pending({ sessionKey: KEY })).length === 0 ? true : undefined,
    );
    expect(await last.quarantined()).toEqual([]);
    const entries = (await last.session(KEY).history()).map((r) => r.entry);
    expect(entries.filter((e) => e.discarded === true).map((e) => e.cause)).toEqual([
      "stopped",
      "stopped",
      "stopped",
      "stopped",
    ]);
    const messages = entries.flatMap((e) => {
      const m = e.message as { role: string; content: Array<{ text?: string }> } | undefined;
      return m === undefined ? [] : [`${m.role}:${m.content.map((c) => c.text ?? "").join("")}`];
    });
    expect(messages.at(-2)).toBe("user:slow");
    expect(messages.at(-1)).toBe("assistant:ok: slow");
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
