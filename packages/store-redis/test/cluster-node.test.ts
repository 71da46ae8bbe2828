/**
 * `ClusterNode` over the Redis backplane and a shared `RedisStore`, with several nodes in
 * this process (each with its own connections): where new sessions land, how messages and
 * requests for a session owned elsewhere reach its owner, leases on hibernation and stop,
 * and the setups it refuses. The kill, drain and Redis-restart tests run real processes.
 */
import {
  type AgentDefinition,
  ClusterNode,
  createMemoryStore,
  type ModelSource,
  type ModelStreamEvent,
  OverloadedError,
  type RunEvent,
  SessionBusyError,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createRedisBackplane, createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { sleep, waitUntil } from "./support/settle.js";

const AGENTS: AgentDefinition[] = [{ id: "main", model: "echo/test" }];
const prefixes: string[] = [];
const nodes: ClusterNode[] = [];
const stores: RedisStore[] = [];
afterEach(async () => {
  for (const node of nodes.splice(0)) await node.stop();
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

/**
 * Answers `echo: <text>` in three chunks; a text starting with `hold` waits until
 * `release()` has been called (once released, every later `hold` goes through). A request
 * with a response format is answered with the user's text itself (a test sends JSON), and
 * its format is kept in `formats`.
 */
function echoModels() {
  const formats: unknown[] = [];
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const models: ModelSource = {
    async *stream(request, options): AsyncGenerator<ModelStreamEvent> {
      const last = request.messages.findLast((m) => m.role === "user");
      const text = last?.content.map((p) => (p.type === "text" ? p.text : "")).join("") ?? "";
      yield { type: "response-start", model: options.models[0] ?? "echo/test" };
      if (request.responseFormat !== undefined) {
        formats.push(request.responseFormat);
        yield { type: "text-delta", text };
        yield { type: "finish", reason: "stop" };
        return;
      }
      if (text.startsWith("hold")) {
        await new Promise<void>((resolve, reject) => {
          void released.then(resolve);
          options.signal?.addEventListener("abort", () => reject(options.signal?.reason), {
            once: true,
          });
        });
      }
      for (const part of ["echo", ": ", text]) yield { type: "text-delta", text: part };
      yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
      yield { type: "finish", reason: "stop" };
    },
  };
  return { models, release, formats };
}

async function cluster(
  ids: string[],
  options: {
    heartbeatIntervalMs?: number;
    hibernateAfterMs?: number;
    prefix?: string;
    requestTimeoutMs?: number;
    maxQueuedMessages?: number;
  } = {},
) {
  const prefix = options.prefix ?? uniquePrefix("node");
  if (!prefixes.includes(prefix)) prefixes.push(prefix);
  const echo = echoModels();
  const started: ClusterNode[] = [];
  for (const nodeId of ids) {
    const store = createRedisStore({ url: REDIS_URL, prefix });
    stores.push(store);
    await store.open();
    const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 100;
    const node = new ClusterNode({
      backplane: createRedisBackplane({
        url: REDIS_URL,
        prefix,
        nodeId,
        heartbeatIntervalMs,
        // Roomy: a stall of the test process must not declare a live node down.
        downAfterMs: Math.max(1_500, heartbeatIntervalMs * 4),
      }),
      runtime: {
        store,
        models: echo.models,
        agents: AGENTS,
        ...(options.hibernateAfterMs === undefined
          ? {}
          : { hibernateAfterMs: options.hibernateAfterMs }),
        ...(options.maxQueuedMessages === undefined
          ? {}
          : { maxQueuedMessages: options.maxQueuedMessages }),
      },
      leaseTtlMs: 1_000,
      sweepIntervalMs: 300,
      ...(options.requestTimeoutMs === undefined
        ? {}
        : { requestTimeoutMs: options.requestTimeoutMs }),
    });
    nodes.push(node);
    await node.start();
    started.push(node);
  }
  await waitUntil("every node to see the others", () =>
    started.every((n) => n.members().length >= ids.length),
  );
  return { prefix, nodes: started, ...echo };
}

async function turn(node: ClusterNode, key: string, text: string) {
  const run = await node.runtime.session(key).send(text);
  const events: RunEvent[] = [];
  for await (const event of run) events.push(event);
  return { run, events, result: await run.result };
}

describe("placement", () => {
  it("new sessions land on the least-loaded node, a node that joins included", async () => {
    const {
      prefix,
      nodes: [a],
    } = await cluster(["a", "b"], { heartbeatIntervalMs: 1_000 });
    for (let i = 0; i < 6; i++) await turn(a!, `agent:main:p${i}`, "hi");
    const owners = async (from: number, to: number) =>
      Promise.all(
        Array.from({ length: to - from }, (_, i) => a!.ownerOf(`agent:main:p${from + i}`)),
      );
    expect(await owners(0, 6)).toEqual(["a", "b", "a", "b", "a", "b"]);
    // Once every node's heartbeat reports its 3 sessions and this burst's placement counts
    // have aged out, the loads a sees are the heartbeats alone.
    await waitUntil("a to see the loads", () => a!.members().every((m) => m.sessions === 3));
    await sleep(1_100);

    const {
      nodes: [c],
    } = await cluster(["c"], { heartbeatIntervalMs: 1_000, prefix });
    await waitUntil("a to see c", () => a!.members().some((m) => m.nodeId === "c"));
    for (let i = 6; i < 10; i++) await turn(a!, `agent:main:p${i}`, "hi");
    // c had nothing: the next new session lands on it, and it takes the most of the burst.
    // (Loads are what heartbeats report plus recent placements, so on a busy machine a late
    // heartbeat can shift the exact split: [c, c, c, a] when timely, [c, c, a, a] when not.)
    const placed = await owners(6, 10);
    expect(placed[0]).toBe("c");
    const onC = placed.filter((owner) => owner === "c").length;
    expect(onC).toBeGreaterThanOrEqual(2);
    for (const other of ["a", "b"]) {
      expect(onC).toBeGreaterThanOrEqual(placed.filter((owner) => owner === other).length);
    }
    expect(c!.runtime.activeSessions()).toHaveLength(onC);
  });
});

describe("routing", () => {
  it("a message sent through another node runs on the owner, and its handle streams as a local one does", async () => {
    const {
      nodes: [a, b],
    } = await cluster(["a", "b"]);
    const key = "agent:main:r1";
    const first = await turn(a!, key, "one");
    expect(await a!.ownerOf(key)).toBe("a");
    const routed = await turn(b!, key, "two");
    expect(b!.runtime.activeSessions()).toEqual([]);
    expect(routed.run.disposition).toBe("started");
    expect(routed.result).toMatchObject({ status: "completed", text: "echo: two" });
    expect(routed.events.map((e) => e.type)).toEqual(first.events.map((e) => e.type));
    expect(routed.events.every((e) => e.runId === routed.run.runId)).toBe(true);
    const history = await a!.runtime.session(key).history();
    expect(history.map((r) => (r.entry.message as { role: string }).role)).toEqual([
      "user",
      "assistant",
      "user",
      "assistant",
    ]);
  });

  it("a structured answer asked through another node: the owner asks for it, the sender's zod schema parses it", async () => {
    const {
      nodes: [a, b],
      formats,
    } = await cluster(["a", "b"]);
    const key = "agent:main:r-output";
    await turn(a!, key, "one");
    const Count = z.object({ n: z.number().int() }).transform(({ n }) => n * 10);
    const run = await b!.runtime.session(key).send('{"n":4}', { output: Count });
    expect(b!.runtime.activeSessions()).toEqual([]);
    const result = await run.result;
    expect(result.status).toBe("completed");
    expect(result.output).toBe(40);
    expect(formats).toEqual([
      {
        type: "json-schema",
        name: "output",
        strict: true,
        schema: {
          type: "object",
          properties: {
            n: { type: "integer", minimum: expect.any(Number), maximum: expect.any(Number) },
          },
          required: ["n"],
          additionalProperties: false,
        },
      },
    ]);
    // A refinement has no JSON Schema form: the owner cannot check it, the sender's handle does.
    const Big = z.object({ n: z.number() }).refine(({ n }) => n > 5, "n must be more than 5");
    const refused = await (await b!.runtime.session(key).send('{"n":1}', { output: Big })).result;
    expect(refused.status).toBe("failed");
    expect(refused.error).toEqual({
      code: "OUTPUT_INVALID",
      message: "the answer does not conform to the output schema: (root): n must be more than 5",
    });
    expect(refused.output).toBeUndefined();
  });

  it("a delete through another node that keeps the transcript moves it aside on the owner and says where", async () => {
    const {
      nodes: [a, b],
    } = await cluster(["a", "b"]);
    const key = "agent:main:r-archive";
    await turn(a!, key, "keep this");
    const result = await b!.runtime.session(key).delete({ archiveTranscript: true });
    expect(result.existed).toBe(true);
    expect(result.archivedAs).toMatch(/^agent:main:r-archive:deleted:\d+$/);
    expect(a!.runtime.activeSessions()).toEqual([]);
    const kept = await a!.store.transcripts.read(result.archivedAs!);
    expect(kept.map((r) => (r.entry.message as { role: string }).role)).toEqual([
      "user",
      "assistant",
    ]);
    expect(await a!.store.transcripts.read(key)).toEqual([]);
    expect(await a!.store.sessions.get(key)).toBeUndefined();
  });

  it("a rewind through another node undoes the run on the owner, whose history the next turn no longer has", async () => {
    const {
      nodes: [a, b],
      release,
    } = await cluster(["a", "b"]);
    const key = "agent:main:r-rewind";
    await turn(a!, key, "keep this");
    const { result: undone } = await turn(a!, key, "undo this");
    const remote = b!.runtime.session(key);
    const rewound = await remote.rewind();
    expect(rewound).toEqual({
      runIds: [undone.runId],
      inputs: [{ text: "undo this" }],
      removedMessages: 2,
    });
    expect((await a!.runtime.session(key).info()).historyLength).toBe(2);
    // The owner's session is at rest: a busy one refuses, typed, across nodes too.
    const held = await remote.send("hold on");
    await waitUntil(
      "the run to start on its owner",
      async () => (await a!.runtime.session(key).info()).activeRunId !== undefined,
    );
    const busy = await remote.rewind().catch((error: unknown) => error);
    expect(SessionBusyError.isInstance(busy)).toBe(true);
    release();
    expect((await held.result).status).toBe("completed");
  });

  it("an injection through another node is saved by the owner, after its active run", async () => {
    const {
      nodes: [a, b],
      release,
    } = await cluster(["a", "b"]);
    const key = "agent:main:r-inject";
    await turn(a!, key, "hello");
    const remote = b!.runtime.session(key);
    const held = await remote.send("hold on");
    await waitUntil(
      "the run to start on its owner",
      async () => (await a!.runtime.session(key).info()).activeRunId !== undefined,
    );
    const injecting = remote.inject("a note from the shop", { label: "shop" });
    release();
    expect((await held.result).status).toBe("completed");
    const injected = await injecting;
    expect(injected.message.content).toEqual([
      { type: "text", text: "[shop]\n\na note from the shop" },
    ]);
    // Saved on the owner after the held run's messages; the owner's history has it.
    const [last] = await a!.store.transcripts.read(key, { order: "desc", limit: 1 });
    expect(last?.seq).toBe(injected.seq);
    expect(last?.entry.runId).toBe(injected.runId);
    expect((await a!.runtime.session(key).info()).historyLength).toBe(5);
  });

  it("an injection through another node waits for an active run longer than the request timeout", async () => {
    const {
      nodes: [a, b],
      release,
    } = await cluster(["a", "b"], { requestTimeoutMs: 300 });
    const key = "agent:main:r-inject-long";
    await turn(a!, key, "hello");
    const remote = b!.runtime.session(key);
    const held = await remote.send("hold on");
    await waitUntil(
      "the run to start on its owner",
      async () => (await a!.runtime.session(key).info()).activeRunId !== undefined,
    );
    const injecting = remote.inject("saved after a long run");
    // The owner's run goes on past b's request timeout (300 ms) before it ends.
    await sleep(900);
    release();
    expect((await held.result).status).toBe("completed");
    const injected = await injecting;
    const [last] = await a!.store.transcripts.read(key, { order: "desc", limit: 1 });
    expect(last?.seq).toBe(injected.seq);
    expect(last?.entry.runId).toBe(injected.runId);
  });

  it("a message refused by the owner's full queue reaches the sender as OverloadedError with the owner's suggested wait", async () => {
    const {
      nodes: [a, b],
      release,
    } = await cluster(["a", "b"], { maxQueuedMessages: 1 });
    const key = "agent:main:r-full";
    await turn(a!, key, "hello");
    const held = await a!.runtime.session(key).send("hold on");
    const queued = await a!.runtime.session(key).send("after it");
    expect(queued.disposition).toBe("queued");
    const refused = await b!.runtime
      .session(key)
      .send("one too many")
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(OverloadedError.isInstance(refused)).toBe(true);
    // The owner's estimate (its last run took a moment: the shortest wait), not lost on the way.
    expect((refused as OverloadedError).retryAfterMs).toBe(1_000);
    expect((refused as OverloadedError).limit).toBe(1);
    release();
    expect((await held.result).status).toBe("completed");
    expect((await queued.result).status).toBe("completed");
  });

  it("info, patch, abort, reset and delete sent through any node reach the session on its owner", async () => {
    const {
      nodes: [a, b],
      release,
    } = await cluster(["a", "b"]);
    const key = "agent:main:r2";
    await turn(a!, key, "one");
    const remote = b!.runtime.session(key);
    expect((await remote.info()).metadata.runs).toBe(1);
    expect((await remote.patch({ displayName: "Ops" })).displayName).toBe("Ops");
    expect((await a!.runtime.session(key).info()).metadata.displayName).toBe("Ops");

    const held = await remote.send("hold on");
    await waitUntil(
      "the held run to start",
      async () => (await remote.info()).activeRunId !== undefined,
    );
    expect(await remote.abort(held.runId)).toBe(true);
    expect((await held.result).status).toBe("aborted");
    release();

    await remote.reset();
    expect((await a!.runtime.session(key).info()).historyLength).toBe(0);
    await remote.delete();
    expect(a!.runtime.activeSessions()).toEqual([]);
    expect(await a!.store.sessions.get(key)).toBeUndefined();
    expect(b!.runtime.activeSessions()).toEqual([]);
  });

  it("compact sent through another node summarizes on the owner; the owner's next run starts with the summary", async () => {
    const {
      nodes: [a, b],
    } = await cluster(["a", "b"]);
    const key = "agent:main:r-compact";
    for (const text of ["one", "two", "three"]) await turn(a!, key, text);
    const result = await b!.runtime.session(key).compact({ keepTurns: 1 });
    // The echo model repeats the summarizing request: it ends with the summarizer's task.
    expect(result).toMatchObject({ status: "compacted", summarizedMessages: 4, keptMessages: 2 });
    expect(result.summary).toContain("Write the summary.");
    expect(b!.runtime.activeSessions()).toEqual([]);
    const info = await a!.runtime.session(key).info();
    expect(info.historyLength).toBe(3);
    expect(info.metadata.compactions).toBe(1);
    // Every message stays in the shared transcript, with the compaction.
    const transcript = await a!.runtime.session(key).history({ limit: 100 });
    expect(transcript.filter((r) => r.entry.message !== undefined)).toHaveLength(6);
    expect(transcript.filter((r) => r.entry.compaction !== undefined)).toHaveLength(1);
  });

  it("abort of a session nobody runs answers false without starting it", async () => {
    const {
      nodes: [a],
    } = await cluster(["a"]);
    expect(await a!.runtime.session("agent:main:idle").abort("no-such-run")).toBe(false);
    expect(a!.runtime.activeSessions()).toEqual([]);
    expect(await a!.ownerOf("agent:main:idle")).toBeUndefined();
  });
});

describe("leases", () => {
  it("a session that hibernates gives its lease back", async () => {
    const {
      nodes: [a],
    } = await cluster(["a"], { hibernateAfterMs: 100 });
    const key = "agent:main:h1";
    await turn(a!, key, "one");
    expect(await a!.ownerOf(key)).toBe("a");
    await waitUntil(
      "the session to hibernate and release",
      async () => a!.runtime.activeSessions().length === 0 && (await a!.ownerOf(key)) === undefined,
    );
    expect(a!.ownedSessions()).toEqual([]);
  });

  it("a node that stops gives its sessions up at once: another node runs their queued messages, and a caller elsewhere gets its answer", async () => {
    const {
      nodes: [a, b],
      release,
    } = await cluster(["a", "b"]);
    const key = "agent:main:s1";
    await turn(a!, key, "one");
    // A run in progress on a, followed by a caller on b.
    const followed = await b!.runtime.session(key).send("hold this");
    await waitUntil(
      "the held run to start on a",
      async () => (await a!.runtime.session(key).info()).activeRunId !== undefined,
    );
    await a!.stop();
    release();
    const result = await followed.result;
    expect(result).toMatchObject({ status: "completed", text: "echo: hold this" });
    expect(await b!.ownerOf(key)).toBe("b");
    const users = (await b!.runtime.session(key).history())
      .map((r) => r.entry)
      .filter((e) => (e.message as { role?: string } | undefined)?.role === "user");
    // The cut-short attempt on a is marked discarded; the replay on b counts once.
    expect(
      users.map((e) => (e.message as { content: Array<{ text: string }> }).content[0]!.text),
    ).toEqual(["one", "hold this", "hold this"]);
    expect(await b!.store.queue.pending()).toEqual([]);
  });
});

describe("setup", () => {
  it("a store that other processes cannot share is refused with InvalidArgumentError", () => {
    const backplane = createRedisBackplane({ url: REDIS_URL });
    expect(
      () =>
        new ClusterNode({
          backplane,
          runtime: { store: createMemoryStore(), models: echoModels().models, agents: AGENTS },
        }),
    ).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("bad options are refused with InvalidArgumentError", async () => {
    const store = createRedisStore({ url: REDIS_URL });
    const backplane = createRedisBackplane({ url: REDIS_URL });
    const runtime = { store, models: echoModels().models, agents: AGENTS };
    for (const bad of [
      { leaseTtlMs: 0 },
      { requestTimeoutMs: -1 },
      { sweepIntervalMs: Number.NaN },
    ]) {
      expect(() => new ClusterNode({ backplane, runtime, ...bad }), JSON.stringify(bad)).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      );
    }
    expect(() => new ClusterNode({ backplane } as never)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
  });

  it("a session used before start, or after stop, is refused with a typed error", async () => {
    const {
      nodes: [a],
    } = await cluster(["a"]);
    await a!.stop();
    await expect(a!.runtime.session("agent:main:x").send("hi")).rejects.toMatchObject({
      code: "NO_PROCESS",
    });
    await expect(a!.start()).rejects.toMatchObject({ code: "CLUSTER_NOT_RUNNING" });
  });
});
