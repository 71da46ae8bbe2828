/**
 * A parent session deleted or reset while one of its sub-agents is being made: the delete (or
 * reset) looks for the sub-agents in the store, and may look before the child's record, or
 * even its spawn's record, is there. The child must not start late and outlive its parent:
 * nothing of it (record, transcript, queued message) and no record of its spawn is left.
 * The store is paused at the child's first write (or at its spawn's record) to make the race
 * happen every time.
 */
import { describe, expect, it } from "vitest";
import type { MemoryStore } from "../src/store/memory-store.js";
import type { SessionRecord } from "../src/store/types.js";
import { BrainSource, firstUser, text, toolCall, useRuntimes } from "./fixtures/subagents.js";
import { deferred, waitFor } from "./support.js";

const { newStore, startRuntime } = useRuntimes();

const PARENT = "agent:boss:main";
const SPAWNS = "beamclaw:subagent:";

/** The parent spawns one sub-agent ("TASK a"), then answers; the child answers at once. */
function spawnerSource(): BrainSource {
  return new BrainSource((call) => {
    const first = firstUser(call.request.messages) ?? "";
    if (first === "TASK a") return [text("did TASK a")];
    if (call.request.messages.at(-1)?.role === "tool") return [text("parent done")];
    return [toolCall("s0", "spawn_subagent", { task: "TASK a" })];
  });
}

/**
 * Holds the first write `matches` picks until `release()`: `reached` resolves with its key
 * when the write is held, `landed` once it is in the store.
 */
function holdFirst<A extends unknown[], R>(
  target: { [name: string]: unknown },
  method: string,
  matches: (...args: A) => string | undefined,
) {
  const original = (target[method] as (...args: A) => Promise<R>).bind(target);
  const reached = deferred<string>();
  const landed = deferred<void>();
  const gate = deferred<void>();
  let held = false;
  target[method] = async (...args: A): Promise<R> => {
    const key = matches(...args);
    if (key === undefined || held) return original(...args);
    held = true;
    reached.resolve(key);
    await gate.promise;
    try {
      return await original(...args);
    } finally {
      landed.resolve();
    }
  };
  return { reached: reached.promise, landed: landed.promise, release: () => gate.resolve() };
}

/** Everything the store holds of `key`, and the spawn records of every session. */
async function leftOf(store: MemoryStore, key: string) {
  return {
    record: await store.sessions.get(key),
    transcript: await store.transcripts.lastSeq(key),
    queued: (await store.queue.pending({ sessionKey: key })).length,
    spawns: await store.kv.keys(SPAWNS),
  };
}
const NOTHING = { record: undefined, transcript: 0, queued: 0, spawns: [] };

async function start() {
  const store = await newStore();
  const source = spawnerSource();
  const runtime = await startRuntime({
    store,
    models: source,
    agents: [{ id: "boss", model: "test/boss", subagents: {} }],
  });
  return { store, source, runtime };
}

describe("a parent deleted or reset while its sub-agent is being made", () => {
  for (const how of ["delete", "reset"] as const) {
    it(`${how}: the child whose record was still being written leaves nothing behind`, async () => {
      const { store, source, runtime } = await start();
      // The child's first write: its record, written by the spawn before it starts.
      const hold = holdFirst<[SessionRecord], void>(
        store.sessions as unknown as { [name: string]: unknown },
        "put",
        (record) => (record.parentKey === PARENT ? record.key : undefined),
      );
      const parentRun = await runtime.session(PARENT).send("go");
      const child = await hold.reached;

      await runtime.session(PARENT)[how]();
      expect((await parentRun.result).status).toBe("aborted");
      hold.release();
      await hold.landed;

      await waitFor(`nothing of ${child} to be left`, async () => {
        const left = await leftOf(store, child);
        return left.record === undefined && left.spawns.length === 0;
      });
      expect(await leftOf(store, child)).toEqual(NOTHING);
      expect(runtime.registry.whereis(`session:${child}`)).toBeUndefined();
      // It never started: its model was never asked.
      expect(source.callsFor("TASK a")).toEqual([]);
      if (how === "delete") expect(await store.sessions.get(PARENT)).toBeUndefined();
    });

    it(`${how}: a spawn whose record landed after the ${how} looked leaves neither it nor a child`, async () => {
      const { store, source, runtime } = await start();
      const hold = holdFirst<[string, unknown], void>(
        store.kv as unknown as { [name: string]: unknown },
        "set",
        (key) => (key.startsWith(SPAWNS) ? key : undefined),
      );
      const parentRun = await runtime.session(PARENT).send("go");
      const spawn = await hold.reached;
      const child = spawn.slice(spawn.lastIndexOf("|") + 1);

      // It looks for the spawns before the spawn's record is in the store.
      await runtime.session(PARENT)[how]();
      expect((await parentRun.result).status).toBe("aborted");
      hold.release();
      await hold.landed;

      await waitFor("the spawn's record to go", async () =>
        (await store.kv.keys(SPAWNS)).length === 0 ? true : undefined,
      );
      expect(await leftOf(store, child)).toEqual(NOTHING);
      expect(source.callsFor("TASK a")).toEqual([]);
    });
  }
});
