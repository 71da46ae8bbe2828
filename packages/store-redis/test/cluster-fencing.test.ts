/**
 * Fenced session writes against the real Redis: a holder paused past its lease (it stops
 * renewing, as a long GC pause or SIGSTOP would make it) cannot write to the session once
 * another holder has taken the lease; the data holds only the new holder's writes. Then the
 * same with real node processes, one of them stopped with SIGSTOP mid-run and continued
 * after another node took its session over.
 */
import { FencedError, type Lease } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { ClusterNodeProcess, infoOf, stopAll } from "./support/cluster.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { sleep, waitUntil } from "./support/settle.js";
import { transcriptOf } from "./support/traffic.js";

const prefixes: string[] = [];
const stores: RedisStore[] = [];
afterEach(async () => {
  await stopAll();
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

async function openStore(prefix: string): Promise<RedisStore> {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(store);
  await store.open();
  return store;
}

const KEY = "agent:main:fenced";
const LOCK = `session:${KEY}`;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the write to be refused");
}

/** Waits until nobody holds `lock` (the paused holder's lease ran out). */
async function leaseExpired(store: RedisStore, lease: Lease): Promise<void> {
  await waitUntil("the paused holder's lease to expire", async () => {
    const holder = await store.locks.holder(lease.name);
    return holder === undefined || holder.token !== lease.token;
  });
}

describe("fenced session writes (two holders of one session's lease)", () => {
  it("a holder paused past its lease has every session write refused once another holder took it", async () => {
    const prefix = uniquePrefix("fence");
    prefixes.push(prefix);
    const a = await openStore(prefix); // node A's client
    const b = await openStore(prefix); // node B's client

    const leaseA = await a.locks.acquire(LOCK, { owner: "node-a", ttlMs: 200 });
    expect(leaseA).toBeDefined();
    const writesA = a.fenced({ lock: LOCK, token: leaseA!.token });
    // While A holds the lease its fenced writes go through.
    await writesA.sessions.put({ key: KEY, agentId: "main", createdAt: 1, updatedAt: 1, by: "a" });
    expect(await writesA.transcripts.append(KEY, [{ runId: "r1", by: "a", text: "first" }])).toBe(
      1,
    );
    const first = await a.queue.enqueue({ idempotencyKey: "m1", sessionKey: KEY, payload: {} });
    const second = await a.queue.enqueue({ idempotencyKey: "m2", sessionKey: KEY, payload: {} });

    // A is paused: it stops renewing; its lease runs out and B takes the session.
    await leaseExpired(b, leaseA!);
    const leaseB = await b.locks.acquire(LOCK, { owner: "node-b", ttlMs: 30_000 });
    expect(leaseB?.token).toBe(leaseA!.token + 1);
    const writesB = b.fenced({ lock: LOCK, token: leaseB!.token });
    await writesB.sessions.put({ key: KEY, agentId: "main", createdAt: 1, updatedAt: 2, by: "b" });
    expect(await writesB.transcripts.append(KEY, [{ runId: "r1", by: "b", text: "replay" }])).toBe(
      2,
    );
    await writesB.queue.ack(first.message.id);

    // A wakes up and writes as if it still owned the session: every write is refused.
    const refused = [
      await rejection(
        writesA.sessions.put({ key: KEY, agentId: "main", createdAt: 1, updatedAt: 3, by: "a" }),
      ),
      await rejection(writesA.transcripts.append(KEY, [{ runId: "r1", by: "a", text: "late" }])),
      await rejection(writesA.queue.ack(second.message.id)),
      await rejection(writesA.queue.discard(second.message.id)),
      await rejection(writesA.transcripts.delete(KEY)),
      await rejection(writesA.sessions.delete(KEY)),
    ];
    for (const error of refused) {
      expect(FencedError.isInstance(error)).toBe(true);
      expect(error).toMatchObject({
        code: "FENCED",
        lock: LOCK,
        token: leaseA!.token,
        currentToken: leaseB!.token,
      });
    }

    // The data holds B's writes only (and what A wrote while it owned the session).
    expect(await b.sessions.get(KEY)).toMatchObject({ updatedAt: 2, by: "b" });
    const transcript = await b.transcripts.read(KEY);
    expect(transcript.map((r) => r.entry)).toEqual([
      { runId: "r1", by: "a", text: "first" },
      { runId: "r1", by: "b", text: "replay" },
    ]);
    // The message A tried to acknowledge is still pending, for B to run.
    expect((await b.queue.pending({ sessionKey: KEY })).map((m) => m.id)).toEqual([
      second.message.id,
    ]);
    // B's own writes still go through.
    await writesB.queue.ack(second.message.id);
    expect(await b.queue.pending({ sessionKey: KEY })).toEqual([]);
    expect(await b.sessions.count()).toBe(1);
  });

  it("a write with the current token goes through after the lease lapsed when nobody took it", async () => {
    const prefix = uniquePrefix("fence");
    prefixes.push(prefix);
    const store = await openStore(prefix);
    const lease = await store.locks.acquire(LOCK, { owner: "node-a", ttlMs: 50 });
    await leaseExpired(store, lease!);
    // Nobody acquired the lock since: nobody else can have written, so it is safe.
    const writes = store.fenced({ lock: LOCK, token: lease!.token });
    expect(await writes.transcripts.append(KEY, [{ n: 1 }, { n: 2 }])).toBe(2);
    expect(await writes.transcripts.append(KEY, [])).toBe(2);
    // A token never handed out (or from before a later holder) is refused.
    const stale = store.fenced({ lock: LOCK, token: lease!.token - 1 });
    expect(await rejection(stale.transcripts.append(KEY, [{ n: 3 }]))).toMatchObject({
      code: "FENCED",
    });
    expect(await store.transcripts.lastSeq(KEY)).toBe(2);
  });

  it("rejects a malformed fence or write with InvalidArgumentError, writing nothing", async () => {
    const prefix = uniquePrefix("fence");
    prefixes.push(prefix);
    const store = await openStore(prefix);
    expect(() => store.fenced({ lock: "", token: 1 })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => store.fenced({ lock: LOCK, token: 1.5 })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    const lease = await store.locks.acquire(LOCK, { owner: "node-a", ttlMs: 5_000 });
    const writes = store.fenced({ lock: LOCK, token: lease!.token });
    await expect(
      writes.sessions.put({ key: KEY, agentId: "", createdAt: 1, updatedAt: 1 }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(writes.transcripts.append(KEY, "nope" as unknown as [])).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    expect(await store.sessions.count()).toBe(0);
    expect(await store.transcripts.lastSeq(KEY)).toBe(0);
  });
});

describe("a node stopped with SIGSTOP mid-run and continued after its session moved", () => {
  it("its late writes are refused: the session's metadata and transcript hold the new owner's run only", async () => {
    const prefix = uniquePrefix("cluster-fence");
    prefixes.push(prefix);
    const env = {
      // A turn streams 4 chunks 400 ms apart: long enough to stop the node in the middle.
      ECHO_CHUNK_DELAY_MS: "400",
      CLUSTER_LEASE_MS: "1200",
      CLUSTER_HEARTBEAT_MS: "300",
      CLUSTER_DOWN_AFTER_MS: "1200",
      CLUSTER_SWEEP_MS: "300",
    };
    const nodes = await Promise.all(
      ["node-1", "node-2", "node-3"].map((nodeId) =>
        ClusterNodeProcess.start({ redisUrl: REDIS_URL, prefix, nodeId, env }),
      ),
    );
    const paused = nodes[0]!;
    const store = await openStore(prefix);
    await waitUntil("all nodes to see each other", async () => {
      const infos = await Promise.all(nodes.map(infoOf));
      return infos.every((info) => info.members.length === 3);
    });

    // A new session sent through node-1 is placed on node-1 (ties go to the receiving node).
    const sent = await paused.send(KEY, "hello");
    expect(sent.kind).toBe("accepted");
    expect((await store.locks.holder(LOCK))?.owner).toBe("node-1");
    const tokenBefore = (await store.locks.holder(LOCK))!.token;
    // The run has started (its user message is written); stop the node in the middle of it.
    await waitUntil(
      "the run to start on node-1",
      async () => (await store.transcripts.lastSeq(KEY)) >= 1,
    );
    paused.child.kill("SIGSTOP");
    try {
      // Another node takes the session over and replays the message to the end.
      await waitUntil(
        "another node to take the session over and finish the turn",
        async () => {
          const holder = await store.locks.holder(LOCK);
          const pending = await store.queue.pending({ sessionKey: KEY });
          return (
            holder !== undefined &&
            holder.owner !== "node-1" &&
            pending.length === 0 &&
            (await transcriptOf(store, KEY)).answers.length === 1
          );
        },
        20_000,
      );
    } finally {
      paused.child.kill("SIGCONT");
    }
    const owner = await store.locks.holder(LOCK);
    expect(owner!.token).toBeGreaterThan(tokenBefore);
    const before = await store.sessions.get(KEY);
    expect(before).toMatchObject({ runs: 1 });

    // node-1 wakes up with its run half done: whatever it does next is refused by the store.
    await waitUntil("node-1 to let the session go", async () => {
      const info = await infoOf(paused);
      return info !== undefined && !info.active.includes(KEY) && !info.owned.includes(KEY);
    });
    // Let any late write of node-1 land (there must be none).
    await sleep(1_500);
    const { users, answers, cutShort } = await transcriptOf(store, KEY);
    expect(users).toEqual(["hello"]);
    expect(answers).toEqual(["echo: hello"]);
    expect(cutShort).toBe(1);
    // Nothing after the new owner's last entry: no late assistant message from node-1.
    const last = (await store.transcripts.read(KEY, { order: "desc", limit: 1 }))[0]!;
    expect(last.entry).toMatchObject({ message: { role: "assistant" } });
    // The metadata is the new owner's (node-1's stale copy, saved when it stopped, was refused).
    expect(await store.sessions.get(KEY)).toEqual(before);
    expect(await store.queue.pending({ sessionKey: KEY })).toEqual([]);
    // The cluster goes on: a next turn through node-1 runs once, on the owner.
    const next = await paused.send(KEY, "again");
    expect(next.kind).toBe("accepted");
    if (next.kind === "accepted") {
      expect(await next.result).toMatchObject({ kind: "result", status: "completed" });
    }
    const after = await transcriptOf(store, KEY);
    expect(after.users).toEqual(["hello", "again"]);
    expect(after.answers).toEqual(["echo: hello", "echo: again"]);
    expect(await store.sessions.get(KEY)).toMatchObject({ runs: 2 });
  }, 60_000);
});
