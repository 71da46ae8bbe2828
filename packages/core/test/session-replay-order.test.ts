/**
 * A recovering session (after a crash or a restart) replays its unfinished messages before
 * anything that arrives meanwhile, runs each exactly once, and only the start that holds the
 * session's name replays: a start that lost the name to a racing one takes no message.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { ModelRequest } from "../src/providers/types.js";
import { AgentRuntime, type ModelSource } from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { lastUserText, waitFor } from "./support.js";

const KEY = "agent:main:main";
const MAIN = { id: "main", model: "test/model-1" };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * Answers `ok: <text>`, recording every call; a text in `hold` waits until released or until
 * the call's signal aborts; `onCall` runs first (a test may crash the session there).
 */
class RecordingModel implements ModelSource {
  readonly asked: string[] = [];
  readonly hold = new Set<string>();
  onCall: (text: string) => void = () => {};

  async *stream(request: Omit<ModelRequest, "model">, options: { signal?: AbortSignal }) {
    const text = lastUserText(request.messages);
    this.asked.push(text);
    this.onCall(text);
    if (this.hold.has(text)) {
      await new Promise<void>((resolve) => {
        if (options.signal?.aborted) return resolve();
        options.signal?.addEventListener("abort", () => resolve(), { once: true });
      });
      throw options.signal?.reason ?? new Error("released");
    }
    yield { type: "text-delta", text: `ok: ${text}` };
    yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
  }
}

async function runtimeOn(store: MemoryStore, model: ModelSource): Promise<AgentRuntime> {
  const runtime = new AgentRuntime({ store, models: model, agents: [MAIN] });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return runtime;
}

describe("replay order", () => {
  it("after a restart, the unfinished message runs before one sent the moment the runtime is up", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const first = new RecordingModel();
    first.hold.add("one");
    const before = await runtimeOn(store, first);
    await before.session(KEY).send("one", { idempotencyKey: "k-one" });
    await waitFor("the first call", () => first.asked.length === 1);
    await before.stop();
    expect((await store.queue.pending({ sessionKey: KEY })).length).toBe(1);

    const model = new RecordingModel();
    const after = await runtimeOn(store, model);
    const two = await after.session(KEY).send("two");
    expect(await two.result).toMatchObject({ status: "completed", text: "ok: two" });
    await waitFor("the queue to drain", async () =>
      (await store.queue.pending({ sessionKey: KEY })).length === 0 ? true : undefined,
    );
    expect(model.asked).toEqual(["one", "two"]);
  });

  it("after a crash, messages sent while the session restarts wait for the replay; each runs once", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const model = new RecordingModel();
    const runtime = await runtimeOn(store, model);
    const session = runtime.session(KEY);
    let crashed = false;
    const sent: Array<Promise<unknown>> = [];
    model.onCall = (text) => {
      if (text !== "one" || crashed) return;
      crashed = true;
      // The session dies mid-run; new messages arrive at once, racing its restart.
      runtime.registry.whereis(`session:${KEY}`)?.kill();
      for (const next of ["two", "three"]) {
        sent.push(session.send(next).then((run) => run.result));
      }
    };
    const one = await session.send("one");
    const results = await Promise.all([one.result, ...sent]);
    expect(results.map((r) => (r as { text: string }).text)).toEqual([
      "ok: one",
      "ok: two",
      "ok: three",
    ]);
    // "one" twice (the crashed run and its replay); everything else once, in order.
    expect(model.asked).toEqual(["one", "one", "two", "three"]);
    expect(await runtime.quarantined()).toEqual([]);
  });
});
