/**
 * A turn cut short (a crash, a stop, a node that died) is marked discarded in the transcript
 * and replayed under the same run id. The marker cancels only what that attempt wrote before
 * it: the replayed turn, written after it, is part of the conversation from then on, also for
 * a session revived later (or on another node of a cluster).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { ModelRequest } from "../src/providers/types.js";
import { AgentRuntime, type ModelSource } from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Answers `answer: <last user text>`; a text in `hold` waits until its run is aborted. */
function echo(hold: Set<string>, seen: Array<Omit<ModelRequest, "model">>): ModelSource {
  return {
    async *stream(request, options) {
      seen.push(request);
      const last = request.messages.findLast((m) => m.role === "user");
      const text = last?.content.map((p) => (p.type === "text" ? p.text : "")).join("") ?? "";
      if (hold.has(text)) {
        await new Promise<void>((_, reject) =>
          options.signal?.addEventListener("abort", () => reject(options.signal?.reason), {
            once: true,
          }),
        );
      }
      yield { type: "response-start", model: options.models[0] };
      yield { type: "text-delta", text: `answer: ${text}` };
      yield { type: "finish", reason: "stop" };
    },
  };
}

async function runtimeOver(store: MemoryStore, models: ModelSource): Promise<AgentRuntime> {
  const runtime = new AgentRuntime({ store, models, agents: [{ id: "main", model: "t/echo" }] });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return runtime;
}

const texts = (request: Omit<ModelRequest, "model">) =>
  request.messages.map((m) => m.content.map((p) => (p.type === "text" ? p.text : "")).join(""));

describe("a turn replayed after it was cut short", () => {
  it("is part of the history a later revival sends to the model, once", async () => {
    const store = new MemoryStore();
    await store.open();
    const first = await runtimeOver(store, echo(new Set(["cut short"]), []));
    await (await first.session(KEY).send("before")).result;
    const cut = await first.session(KEY).send("cut short");
    // Its user message is in the transcript; the model never answers in this runtime.
    await expect.poll(async () => (await store.transcripts.lastSeq(KEY)) >= 3).toBe(true);
    await first.stop();
    cut.result.catch(() => undefined);

    // The next runtime marks the cut-short attempt discarded and replays the message.
    const second = await runtimeOver(store, echo(new Set(), []));
    await expect.poll(async () => (await store.queue.pending()).length, { timeout: 5_000 }).toBe(0);
    await second.stop();

    // A third one revives the session from the store: the replayed turn is in its history.
    const seen: Array<Omit<ModelRequest, "model">> = [];
    const third = await runtimeOver(store, echo(new Set(), seen));
    await (await third.session(KEY).send("after")).result;
    expect(texts(seen.at(-1)!)).toEqual([
      "before",
      "answer: before",
      "cut short",
      "answer: cut short",
      "after",
    ]);
  });
});
