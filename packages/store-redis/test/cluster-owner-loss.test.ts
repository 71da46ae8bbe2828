/**
 * What a session's owner losing it leaves behind, against the real Redis: an injection whose
 * owner died between saving it and answering, one no node answers at all (its error says it
 * may have been saved), a session actor restarting while its lease
 * would be let go, and a node paused past its lease that wakes up in the middle of a run
 * another node has taken over. The dying and paused owners are real node processes
 * (`fixtures/cluster-node.mjs`, SIGKILL and SIGSTOP); the other side is a `ClusterNode` in
 * this process, so that the test can follow its calls and its runs' events.
 */
import {
  type AgentDefinition,
  ClusterNode,
  type JsonObject,
  type ModelSource,
  type ModelStreamEvent,
  type RunEvent,
  type SessionRecord,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, createRedisStore, type RedisStore } from "../src/index.js";
import { ClusterNodeProcess, infoOf, stopAll } from "./support/cluster.js";
import { deletePrefixes, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";
import { sleep, waitUntil } from "./support/settle.js";

const AGENTS: AgentDefinition[] = [{ id: "main", model: "echo/test" }];
/** Fast failure detection, for the processes and the nodes in this process alike. */
const TIMING = { leaseTtlMs: 1_200, heartbeatIntervalMs: 300, downAfterMs: 1_200, sweepMs: 300 };
const PROCESS_ENV = {
  CLUSTER_LEASE_MS: String(TIMING.leaseTtlMs),
  CLUSTER_HEARTBEAT_MS: String(TIMING.heartbeatIntervalMs),
  CLUSTER_DOWN_AFTER_MS: String(TIMING.downAfterMs),
  CLUSTER_SWEEP_MS: String(TIMING.sweepMs),
};

const prefixes: string[] = [];
const nodes: ClusterNode[] = [];
const stores: RedisStore[] = [];
afterEach(async () => {
  await stopAll();
  for (const node of nodes.splice(0)) await node.stop();
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

/** A gate: `wait()` resolves once `open()` was called. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, wait: () => opened };
}

/**
 * Answers `<tag>: <text>` in three chunks. While `hold` is set, a run whose text starts
 * with `hold` stops after its first chunk until `hold` opens (and says so on `reached`).
 */
function taggedModels(tag: string) {
  const state: { hold?: ReturnType<typeof gate>; reached?: () => void } = {};
  const models: ModelSource = {
    async *stream(request, options): AsyncGenerator<ModelStreamEvent> {
      const last = request.messages.findLast((m) => m.role === "user");
      const text = last?.content.map((p) => (p.type === "text" ? p.text : "")).join("") ?? "";
      yield { type: "response-start", model: options.models[0] ?? "echo/test" };
      yield { type: "text-delta", text: tag };
      const hold = state.hold;
      if (hold !== undefined && text.startsWith("hold")) {
        state.reached?.();
        await new Promise<void>((resolve, reject) => {
          void hold.wait().then(resolve);
          options.signal?.addEventListener("abort", () => reject(options.signal?.reason), {
            once: true,
          });
        });
      }
      yield { type: "text-delta", text: ": " };
      yield { type: "text-delta", text };
      yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
      yield { type: "finish", reason: "stop" };
    },
  };
  return { models, state };
}

/**
 * The real store, whose reads of session `key`'s metadata wait while `held` is set: a
 * session starting there (reading its metadata first) stays in its start until it opens.
 */
function slowStartStore(inner: RedisStore, key: string) {
  const state: { held?: ReturnType<typeof gate> } = {};
  const sessions: RedisStore["sessions"] = {
    get: async (k) => {
      if (k === key) await state.held?.wait();
      return inner.sessions.get(k);
    },
    put: (record) => inner.sessions.put(record),
    delete: (k) => inner.sessions.delete(k),
    list: (options) => inner.sessions.list(options),
    count: (agentId) => inner.sessions.count(agentId),
  };
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === "sessions") return sessions;
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store, state };
}

/**
 * The real store, whose fenced writes (the writes of a session that runs on the node) wait
 * while `held` is set: a session stopping there (it saves its metadata last) stays in its
 * stop until it opens.
 */
function slowStopStore(inner: RedisStore) {
  const state: { held?: ReturnType<typeof gate> } = {};
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === "fenced") {
        return (fence: Parameters<RedisStore["fenced"]>[0]) => {
          const writes = target.fenced(fence);
          const later =
            <A extends unknown[], R>(write: (...args: A) => Promise<R>) =>
            async (...args: A): Promise<R> => {
              await state.held?.wait();
              return write(...args);
            };
          return {
            fence: writes.fence,
            sessions: {
              put: later((record: SessionRecord) => writes.sessions.put(record)),
              delete: later((key: string) => writes.sessions.delete(key)),
            },
            transcripts: {
              append: later((key: string, entries: JsonObject[]) =>
                writes.transcripts.append(key, entries),
              ),
              delete: later((key: string) => writes.transcripts.delete(key)),
            },
            queue: {
              ack: later((id: string) => writes.queue.ack(id)),
              discard: later((id: string) => writes.queue.discard(id)),
            },
          };
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store, state };
}

async function openStore(prefix: string): Promise<RedisStore> {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(store);
  await store.open();
  return store;
}

/** A `ClusterNode` in this process, over its own connections, with `TIMING`. */
async function localNode(
  prefix: string,
  nodeId: string,
  models: ModelSource,
  store?: RedisStore,
): Promise<ClusterNode> {
  const node = new ClusterNode({
    backplane: createRedisBackplane({
      url: REDIS_URL,
      prefix,
      nodeId,
      heartbeatIntervalMs: TIMING.heartbeatIntervalMs,
      downAfterMs: TIMING.downAfterMs,
    }),
    runtime: { store: store ?? (await openStore(prefix)), models, agents: AGENTS },
    leaseTtlMs: TIMING.leaseTtlMs,
    sweepIntervalMs: TIMING.sweepMs,
  });
  nodes.push(node);
  await node.start();
  return node;
}

/**
 * A session `key` that lives on node-1, a real node process started with `env` (its first
 * message, `hello`, ran there), and a node `caller` in this process answering with `models`,
 * once both see each other; `store`, a store of the cluster's own.
 */
async function sessionOnProcess(key: string, env: Record<string, string>, models: ModelSource) {
  const prefix = uniquePrefix("owner-loss");
  prefixes.push(prefix);
  const owner = await ClusterNodeProcess.start({
    redisUrl: REDIS_URL,
    prefix,
    nodeId: "node-1",
    env: { ...PROCESS_ENV, ...env },
  });
  const caller = await localNode(prefix, "caller", models);
  await waitUntil("both nodes to see each other", async () => {
    const info = await infoOf(owner);
    return info.members.length === 2 && caller.members().length === 2;
  });
  const store = await openStore(prefix);
  // The session lives on node-1 (a new session goes to the node it was sent through).
  const first = await owner.send(key, "hello");
  expect(first.kind).toBe("accepted");
  if (first.kind === "accepted") {
    expect(await first.result).toMatchObject({ kind: "result", status: "completed" });
  }
  expect((await store.locks.holder(`session:${key}`))?.owner).toBe("node-1");
  return { owner, caller, store };
}

/**
 * How a follower of a run sees it: its run-starts, `SESSION_CRASHED` errors and text-resets,
 * the types of its events in order, and the text it shows (it adds the stream up, and a
 * text-reset withdraws what came before).
 */
function followerView(events: readonly RunEvent[]) {
  let text = "";
  for (const event of events) {
    if (event.type === "text-delta") text += event.text;
    else if (event.type === "text-reset") text = "";
  }
  const types = events.map((e) => e.type);
  const crashes = events.flatMap((e, i) =>
    e.type === "error" && e.error.code === "SESSION_CRASHED" ? [i] : [],
  );
  return {
    starts: types.filter((type) => type === "run-start").length,
    resets: types.filter((type) => type === "text-reset").length,
    crashes,
    types,
    text,
  };
}

function textOf(entry: Record<string, unknown>): string | undefined {
  const message = entry.message as { content?: Array<{ text?: string }> } | undefined;
  return message?.content?.map((part) => part.text ?? "").join("");
}

describe("an injection whose owner died after saving it, before answering", () => {
  it("is saved once: the retry on the node that takes the session over finds it and answers with it", async () => {
    const key = "agent:main:inject-once";
    // node-1 saves an injection and dies at once (SIGKILL), before it can answer.
    const { owner, caller, store } = await sessionOnProcess(
      key,
      { CRASH_AFTER_INJECT: "1" },
      taggedModels("caller").models,
    );

    const injected = await caller.runtime.session(key).inject("your order has shipped");

    // node-1 is gone, and it had saved the injection.
    expect(await owner.exitWithin(1_000)).toBe(true);
    expect(owner.exitSignal).toBe("SIGKILL");
    const transcript = await store.transcripts.read(key, { limit: 100 });
    const injections = transcript.filter(
      (r) =>
        textOf(r.entry) === "your order has shipped" && String(r.entry.runId).startsWith("inject:"),
    );
    expect(injections.map((r) => r.entry.runId)).toEqual([injected.runId]);
    expect(injected.seq).toBe(injections[0]!.seq);
    // The session went on on the caller's node, with the note once in its history.
    expect(await caller.ownerOf(key)).toBe("caller");
    const info = await caller.runtime.session(key).info();
    expect(info.historyLength).toBe(3);
  }, 30_000);
});

describe("an injection no node answers", () => {
  it("fails with CLUSTER_UNREACHABLE saying it may have been saved, with its run id to look for", async () => {
    const prefix = uniquePrefix("owner-loss");
    prefixes.push(prefix);
    const key = "agent:main:inject-nobody";
    const store = await openStore(prefix);
    const caller = await localNode(prefix, "caller", taggedModels("caller").models, store);
    // The session's lease is held by a node that is not there (it never renews nor answers,
    // and the lease outlives the test): every node the request is sent to is unreachable.
    const now = Date.now();
    await store.sessions.put({ key, agentId: "main", createdAt: now, updatedAt: now });
    expect(
      await store.locks.acquire(`session:${key}`, { owner: "ghost", ttlMs: 60_000 }),
    ).toBeDefined();

    const error = await caller.runtime
      .session(key)
      .inject("your order has shipped")
      .then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
    expect(error?.code).toBe("CLUSTER_UNREACHABLE");
    expect(error?.message).toMatch(
      /^no node answered a inject request for session agent:main:inject-nobody; the injection may have been saved all the same \(its run id is inject:[0-9a-f-]{36}\): look for it in the transcript before injecting it again$/,
    );
    // Here nothing was saved: no node had it.
    const transcript = await store.transcripts.read(key, { limit: 100 });
    expect(transcript).toEqual([]);
  }, 30_000);
});

describe("a node paused past its lease in the middle of a run, continued after another node took the run over", () => {
  it("publishes nothing more of its run: a caller following it sees the new owner's run only", async () => {
    const key = "agent:main:stale-events";
    // node-1 streams its answers slowly (4 chunks, 300 ms apart): it is paused mid-stream.
    const replay = taggedModels("replay");
    const { owner, caller, store } = await sessionOnProcess(
      key,
      { ECHO_CHUNK_DELAY_MS: "300" },
      replay.models,
    );

    // The caller's replay of the run, once it has the session, waits after its first chunk.
    const hold = gate();
    let replaying = false;
    replay.state.hold = hold;
    replay.state.reached = () => {
      replaying = true;
    };
    const run = await caller.runtime.session(key).send("hold on");
    const events: RunEvent[] = [];
    const followed = (async () => {
      for await (const event of run) events.push(event);
    })();
    await waitUntil("node-1 to stream the run", () => events.some((e) => e.type === "text-delta"));
    owner.child.kill("SIGSTOP");
    try {
      await waitUntil("the caller's node to take the run over", () => replaying, 15_000);
    } finally {
      owner.child.kill("SIGCONT");
    }
    // node-1 wakes up with its run half done and lets the session go.
    await waitUntil("node-1 to let the session go", async () => {
      const info = await infoOf(owner);
      return info !== undefined && !info.active.includes(key) && !info.owned.includes(key);
    });
    // Whatever node-1 still published has arrived by now.
    await sleep(500);
    hold.open();
    const result = await run.result;
    await followed;
    expect(result).toMatchObject({ status: "completed", text: "replay: hold on" });
    // The caller followed the first attempt (cut short: its crash told, its text withdrawn),
    // then the replay from its start, in the same run (no second run-start).
    const view = followerView(events);
    expect(view.starts).toBe(1);
    expect(view.crashes).toHaveLength(1);
    expect(view.types[view.crashes[0]! + 1]).toBe("text-reset");
    expect(view.text).toBe(result.text);
    expect(view.types.at(-1)).toBe("run-end");
    expect(await store.locks.holder(`session:${key}`)).toMatchObject({ owner: "caller" });
  }, 40_000);
});

describe("a session actor that stops late, after its node has taken the session's lease again", () => {
  it("lets go of the lease it ran under only: the lease taken for the session's next start stays", async () => {
    const prefix = uniquePrefix("owner-loss");
    prefixes.push(prefix);
    const key = "agent:main:late-release";
    const lock = `session:${key}`;
    const slow = slowStopStore(await openStore(prefix));
    const a = await localNode(prefix, "a", taggedModels("a").models, slow.store);
    expect((await (await a.runtime.session(key).send("hello")).result).status).toBe("completed");
    const first = await a.store.locks.holder(lock);
    expect(first?.owner).toBe("a");

    // The lease runs out under the session (its key expires in Redis): the node stops it,
    // and the stop takes a while (its last save waits).
    const held = gate();
    slow.state.held = held;
    const redis = rawClient();
    try {
      await redis.del(`${prefix}lock:${lock}`);
    } finally {
      await redis.quit();
    }
    await waitUntil("a to give the session up", () => a.ownedSessions().length === 0);
    expect(a.runtime.activeSessions()).toEqual([key]);
    // A message for the session meanwhile: a takes the lease again, for the session's next
    // start, which waits for the old actor to be gone.
    const sending = a.runtime.session(key).send("again");
    await waitUntil("a to take the lease again", async () => {
      const holder = await a.store.locks.holder(lock);
      return holder !== undefined && holder.token > first!.token;
    });
    const retaken = await a.store.locks.holder(lock);
    expect(retaken?.owner).toBe("a");
    held.open();
    const result = await (await sending).result;
    expect(result).toMatchObject({ status: "completed", text: "a: again" });
    // The old actor's exit let go of nothing but its own lease: the new start runs under the
    // lease taken for it, never given up (and never open for another node to take).
    expect(await a.store.locks.holder(lock)).toMatchObject({ owner: "a", token: retaken!.token });
  }, 30_000);
});

describe("a session restarting on its node after a crash", () => {
  it("keeps its lease while it starts again, however long its lease has been held: no other node can take it meanwhile", async () => {
    const prefix = uniquePrefix("owner-loss");
    prefixes.push(prefix);
    const key = "agent:main:restarting";
    const slow = slowStartStore(await openStore(prefix), key);
    const a = await localNode(prefix, "a", taggedModels("a").models, slow.store);
    const b = await localNode(prefix, "b", taggedModels("b").models);
    await waitUntil("both nodes to see each other", () =>
      [a, b].every((node) => node.members().length === 2),
    );
    expect((await (await a.runtime.session(key).send("hello")).result).status).toBe("completed");
    const lease = await a.store.locks.holder(`session:${key}`);
    expect(lease?.owner).toBe("a");
    // The lease has been held longer than its time to live (renewed all along).
    await sleep(TIMING.leaseTtlMs + 100);

    // The session crashes and its supervisor starts it again; the start takes a while.
    const held = gate();
    slow.state.held = held;
    const actor = a.runtime.registry.whereis(`session:${key}`);
    expect(actor).toBeDefined();
    actor!.kill();
    try {
      // A lease's time to live and then some: the renewals go on, nobody else gets it.
      await sleep(TIMING.leaseTtlMs * 2);
      expect(await a.store.locks.holder(`session:${key}`)).toMatchObject({
        owner: "a",
        token: lease!.token,
      });
      expect(a.ownedSessions()).toEqual([key]);
    } finally {
      held.open();
    }
    await waitUntil("the session to run on a again", () =>
      a.runtime.activeSessions().includes(key),
    );
    // A message sent through b runs on a, the one owner.
    const routed = await (await b.runtime.session(key).send("again")).result;
    expect(routed).toMatchObject({ status: "completed", text: "a: again" });
    expect(b.runtime.activeSessions()).toEqual([]);
    expect(await a.store.locks.holder(`session:${key}`)).toMatchObject({
      owner: "a",
      token: lease!.token,
    });
  }, 30_000);
});

describe("a node killed in the middle of a run, taken over by another node", () => {
  it("is the same run to its followers there: SESSION_CRASHED, then a text-reset, then the replay, with no second run-start", async () => {
    const key = "agent:main:killed-mid-run";
    // node-1 streams its answers slowly (4 chunks, 300 ms apart): it is killed mid-stream.
    const { owner, caller, store } = await sessionOnProcess(
      key,
      { ECHO_CHUNK_DELAY_MS: "300" },
      taggedModels("replay").models,
    );

    // Two followers on the caller's node: the run's handle, and a subscriber of the session.
    const topic: RunEvent[] = [];
    const unsubscribe = caller.runtime.pubsub.subscribe<RunEvent>(`session:${key}`, (event) => {
      topic.push(event);
    });
    try {
      const run = await caller.runtime.session(key).send("cut short");
      const events: RunEvent[] = [];
      const following = (async () => {
        for await (const event of run) events.push(event);
      })();
      await waitUntil("node-1 to stream the run", () =>
        events.some((e) => e.type === "text-delta"),
      );
      await owner.kill("SIGKILL");
      const result = await run.result;
      await following;
      expect(result).toMatchObject({ status: "completed", text: "replay: cut short" });
      expect(await store.locks.holder(`session:${key}`)).toMatchObject({ owner: "caller" });
      await waitUntil("the subscriber to see the run end", () =>
        topic.some((e) => e.type === "run-end" && e.runId === run.runId),
      );
      for (const [who, seen] of [
        ["handle", events],
        ["subscriber", topic.filter((e) => e.runId === run.runId)],
      ] as const) {
        const view = followerView(seen);
        // One start (node-1's), the crash told once, its text withdrawn right after it.
        expect(view.starts, who).toBe(1);
        expect(view.types[0], who).toBe("run-start");
        expect(view.crashes, who).toHaveLength(1);
        expect(view.types[view.crashes[0]! + 1], who).toBe("text-reset");
        expect(view.resets, who).toBe(1);
        // What it shows is the replay's answer, once.
        expect(view.text, who).toBe(result.text);
        expect(view.types.at(-1), who).toBe("run-end");
      }
    } finally {
      unsubscribe();
    }
  }, 40_000);
});
