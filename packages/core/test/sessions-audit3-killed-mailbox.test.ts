/**
 * A message still waiting in the mailbox of a session that is killed (force-stopped: `kill()`,
 * or a stop that overran its shutdown time) is in the durable queue, and the session's
 * supervisor restarts it (sessions are `transient`), so the restarted session replays it.
 * Its sender must hear so: a handle on that replayed run, not an error that says the message
 * was refused while it runs anyway (or is thrown away under the replay).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Process } from "../src/runtime/actor.js";
import { MemoryStore } from "../src/store/index.js";
import { deferred, lastUserText, scriptedRuntime, waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A runtime over a memory store whose `sessions.put` can be held (`holdPut`): a `patch` then
 * keeps the session busy, so a message sent meanwhile waits in its mailbox. Its
 * `queue.discard` waits for `discards` (as a slow store's would: the restarted session's
 * replay reads the queue first).
 */
async function busySessionRuntime() {
  const store = new MemoryStore();
  const discards = deferred<void>();
  let held: Promise<void> | undefined;
  let puts = 0;
  let discarded = 0;
  await store.open();
  const put = store.sessions.put.bind(store.sessions);
  store.sessions.put = async (record) => {
    puts += 1;
    if (held !== undefined) await held;
    return put(record);
  };
  const discard = store.queue.discard.bind(store.queue);
  store.queue.discard = async (id) => {
    discarded += 1;
    await discards.promise;
    return discard(id);
  };
  const asked: string[] = [];
  const script = Array(10).fill((request: { messages: Parameters<typeof lastUserText>[0] }) => {
    const last = lastUserText(request.messages);
    asked.push(last);
    return `answer: ${last}`;
  });
  const { runtime, session } = await scriptedRuntime(script, cleanups, { store });
  // The session is up, at rest.
  await session.info();
  return {
    runtime,
    session,
    store,
    asked,
    discards,
    puts: () => puts,
    discarded: () => discarded,
    /** Holds the store's record writes until the returned function is called. */
    holdPut() {
      const gate = deferred<void>();
      held = gate.promise;
      return () => {
        held = undefined;
        gate.resolve();
      };
    },
    /** Makes the session busy in a `patch` (its record write held), then sends `text`. */
    async sendWhileBusy(text: string) {
      const release = this.holdPut();
      const before = puts;
      const patching = session.patch({ displayName: "busy" }).catch((error: unknown) => error);
      await waitFor("the patch to write the record", () => puts > before);
      const sending = session.send(text);
      await waitFor("the message to be queued", async () => {
        return (await store.queue.pending({ sessionKey: KEY })).length === 1;
      });
      // Its call is posted once the enqueue is done: a few turns of the event loop.
      await new Promise((resolve) => setImmediate(resolve));
      return { sending, patching, release };
    },
  };
}

describe("a message in the mailbox of a killed session", () => {
  it("gets a handle on the run the restarted session replays, which runs it once", async () => {
    const t = await busySessionRuntime();
    const { sending, patching, release } = await t.sendWhileBusy("B");
    const old = t.runtime.registry.whereis<Process>(`session:${KEY}`)!;
    old.kill();
    release();
    // The killed session's patch is refused; the restarted one replays B.
    expect(await patching).toMatchObject({ name: "NoProcessError", exitReason: "killed" });
    await waitFor("B to run in the restarted session", () => t.asked.includes("B"));
    t.discards.resolve();

    const handle = await sending;
    const result = await handle.result;
    expect(result).toMatchObject({ status: "completed", text: "answer: B", runId: handle.runId });
    expect(t.asked).toEqual(["B"]);
    // It ran once, and its run's end took it off the queue.
    expect(await t.store.queue.pending({ sessionKey: KEY })).toEqual([]);
    expect(t.runtime.registry.whereis<Process>(`session:${KEY}`)).not.toBe(old);
  });

  it("a message in the mailbox of a session killed as the runtime stops stays queued for the next start", async () => {
    const t = await busySessionRuntime();
    const { sending, release } = await t.sendWhileBusy("C");
    t.runtime.registry.whereis<Process>(`session:${KEY}`)!.kill();
    // The restarted session's first write is held too: the runtime stops before it ran C.
    const stopping = t.runtime.stop();
    t.discards.resolve();
    const handle = await sending;
    release();
    await stopping;
    await expect(handle.result).rejects.toMatchObject({ name: "NoProcessError" });
    expect(t.discarded()).toBe(0);
    expect(await t.store.queue.pending({ sessionKey: KEY })).toHaveLength(1);
  });
});
