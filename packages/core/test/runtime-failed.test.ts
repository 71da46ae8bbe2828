/**
 * When the runtime's supervision tree gives up (a child kept crashing past the root's restart
 * intensity), the runtime says so at once: `status` turns `"failed"`, `onFailed` listeners
 * hear the reason, callers waiting on a run get a typed `NoProcessError`, new sends are
 * refused with one, and the unfinished message stays queued for the next runtime.
 */
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, MaxRestartIntensityError, NoProcessError } from "../src/errors.js";
import type { ExitReason } from "../src/runtime/exit.js";
import type { ModelSource } from "../src/sessions/agent-loop.js";
import { AgentRuntime } from "../src/sessions/runtime.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { type Deferred, deferred, waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Answers "ok: <text>"; a call for `held` waits until `release` resolves. */
function source(held: string, release: Deferred<void>, entered: Deferred<void>): ModelSource {
  return {
    async *stream(request) {
      const last = request.messages[request.messages.length - 1];
      const text = last?.content.map((part) => ("text" in part ? part.text : "")).join("") ?? "";
      if (text === held) {
        entered.resolve();
        await release.promise;
      }
      yield { type: "text-delta", text: `ok: ${text}` };
      yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
    },
  } as ModelSource;
}

async function started(store: MemoryStore, models: ModelSource): Promise<AgentRuntime> {
  const runtime = new AgentRuntime({ store, models, agents: [{ id: "main", model: "t/m" }] });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return runtime;
}

/** Kills the runtime's `sessions` supervisor until the root gives up (3 restarts in 5 s). */
async function crashSessionsSupervisor(runtime: AgentRuntime): Promise<void> {
  const root = runtime.supervisor!;
  for (let kill = 1; kill <= 4; kill++) {
    const sessions = await waitFor(`sessions supervisor up before kill ${kill}`, async () => {
      if (!root.alive) return undefined;
      const children = await root.whichChildren();
      return children.find((child) => child.id === "sessions")?.process;
    });
    sessions.kill();
    await waitFor(`kill ${kill} seen`, () => sessions.status === "stopped");
  }
}

describe("a runtime whose supervision tree gives up", () => {
  it("reports failed, tells listeners and waiting callers, refuses sends, and keeps the message queued", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const release = deferred();
    const entered = deferred();
    const runtime = await started(store, source("hold", release, entered));
    expect(runtime.status).toBe("running");
    expect(runtime.failure).toBeUndefined();
    const children = await runtime.supervisor!.whichChildren();
    expect(children.map((child) => child.id)).toEqual(["tools", "sessions"]);

    const reasons: ExitReason[] = [];
    runtime.onFailed((reason) => reasons.push(reason));
    const removed: ExitReason[] = [];
    runtime.onFailed((reason) => removed.push(reason))();
    runtime.onFailed(() => {
      throw new Error("a listener that throws does not stop the others");
    });
    const later: ExitReason[] = [];
    runtime.onFailed((reason) => later.push(reason));

    const run = await runtime.session(KEY).send("hold");
    const outcome = run.result.then(
      () => "resolved",
      (error: unknown) => error,
    );
    await entered.promise;
    await crashSessionsSupervisor(runtime);

    await waitFor("the runtime failed", () => runtime.status === "failed");
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toBeInstanceOf(MaxRestartIntensityError);
    expect(runtime.failure).toBe(reasons[0]);
    expect(removed).toEqual([]);
    expect(later).toEqual(reasons);

    const error = await outcome;
    expect(error).toBeInstanceOf(NoProcessError);
    expect((error as NoProcessError).message).toMatch(/supervision tree gave up/);
    expect((error as NoProcessError).exitReason).toBe(reasons[0]);

    const refused = await runtime
      .session(KEY)
      .send("after")
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(refused).toBeInstanceOf(NoProcessError);
    expect((refused as NoProcessError).message).toMatch(/runtime failed/);

    // The accepted message was never finished: it is still queued, and a new runtime runs it.
    const pending = await store.queue.pending({ sessionKey: KEY });
    expect(pending.map((m) => (m.payload as { input: { text: string } }).input.text)).toEqual([
      "hold",
    ]);
    await runtime.stop();
    expect(runtime.status).toBe("stopped");

    release.resolve();
    const next = await started(store, source("never", deferred(), deferred()));
    await waitFor(
      "the queued message ran on the new runtime",
      async () => (await store.queue.pending({ sessionKey: KEY })).length === 0,
    );
    const transcript = await store.transcripts.read(KEY);
    expect(JSON.stringify(transcript)).toContain("ok: hold");
    expect(next.status).toBe("running");
  });

  it("a clean stop is not a failure", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const runtime = await started(store, source("x", deferred(), deferred()));
    const reasons: ExitReason[] = [];
    runtime.onFailed((reason) => reasons.push(reason));
    await runtime.stop();
    expect(runtime.status).toBe("stopped");
    expect(runtime.failure).toBeUndefined();
    expect(reasons).toEqual([]);
    expect(() => runtime.onFailed(42 as never)).toThrow(InvalidArgumentError);
  });
});
