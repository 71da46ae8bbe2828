/**
 * `/hooks/agent` deliveries with one idempotency key that race the first one's admission,
 * over real HTTP on 127.0.0.1: the first claims the key, and is refused (its session's queue
 * is full) while a second comes in. The event runs at most once however the senders retry,
 * and no delivery is told "accepted" for a run that was refused.
 *
 * The store is the stack's real `MemoryStore`; a test holds one of its calls (the claim's
 * take-back, the refused message's discard, the first enqueue) to put the second delivery
 * exactly in the window the race needs.
 */
import type { JsonObject } from "@beamclaw/core";
import { describe, expect, it } from "vitest";
import { afterTest, HOOK_TOKEN, heldAnswer, useOverloadTests } from "./overload-support.js";
import { deferred, httpCall, type Reply, type Stack, startStack, waitFor } from "./support.js";

useOverloadTests();

const KEY = "agent:main:busy";
/** What the event's message says: how its runs are told apart from the others. */
const EVENT = "deploy 42 finished";
const HEADERS = { authorization: `Bearer ${HOOK_TOKEN}`, "idempotency-key": "deploy-42" };
const BODY = { message: EVENT, sessionKey: KEY, deliver: false };

/**
 * A stack whose sessions queue one message at most, with `KEY`'s queue full (a run held
 * until `release`, one message waiting behind it): a message more is refused (OVERLOADED).
 */
async function fullQueue(responses: string[], gateway: Parameters<typeof startStack>[0] = {}) {
  const held = heldAnswer("first");
  const stack = await startStack({
    ...gateway,
    responses: [held.entry, "second", ...responses],
    runtime: { maxQueuedMessages: 1 },
    gateway: {
      hooks: {
        settings: { enabled: true, token: HOOK_TOKEN, allowRequestSessionKey: true },
      },
      ...gateway.gateway,
    },
  });
  const session = stack.runtime.session(KEY);
  await session.send("first");
  await waitFor("the first run to start", () => stack.provider.requests.length === 1);
  expect((await session.send("second")).disposition).toBe("queued");
  return {
    stack,
    /** Lets the held run end; resolves once the queue has room again (the second runs). */
    async release() {
      held.release();
      await waitFor("the queue to drain", () => stack.provider.requests.length >= 2);
    },
  };
}

/**
 * Holds the calls of `target[name]` that `which` picks (the first such call only, with
 * `once`) until `open()`; `entered` resolves when one is held.
 */
function hold<T extends object>(
  target: T,
  name: keyof T & string,
  which: (...args: unknown[]) => boolean,
  once = false,
) {
  const original = (target[name] as (...args: unknown[]) => Promise<unknown>).bind(target);
  const entered = deferred();
  const gate = deferred();
  let held = 0;
  Object.assign(target, {
    [name]: async (...args: unknown[]) => {
      if (which(...args) && !(once && held > 0)) {
        held++;
        entered.resolve();
        await gate.promise;
      }
      return original(...args);
    },
  });
  afterTest(() => gate.resolve());
  return { entered: entered.promise, open: () => gate.resolve() };
}

function deliver(stack: Stack, body: Record<string, unknown> = BODY): Promise<Reply> {
  return httpCall(stack.port, "/hooks/agent", { method: "POST", headers: HEADERS, body });
}

/** How many model requests ran the event (the last user message of each is its run's). */
function eventRuns(stack: Stack): number {
  return stack.provider.requests.filter((request) => {
    const user = request.messages.findLast((m) => m.role === "user");
    const text =
      typeof user?.content === "string"
        ? user.content
        : (user?.content.map((part) => ("text" in part ? part.text : "")).join("") ?? "");
    return text.includes(EVENT);
  }).length;
}

/** Delivers the event once more, waiting: the answer must be a replay of `run`'s, completed. */
async function expectReplayOf(stack: Stack, run: Reply): Promise<Reply> {
  const reply = await deliver(stack, { ...BODY, waitForCompletion: true });
  expect(reply.json).toMatchObject({
    ok: true,
    runId: run.json.runId,
    replayed: true,
    completion: { status: "ok" },
  });
  return reply;
}

/**
 * A gateway on a clock the test moves on (`later(ms)`), whose first delivery of the event never
 * gets its message into the queue (its gateway hangs there) until `enqueueing.open()`.
 */
async function hungFirstDelivery() {
  let now = Date.now();
  const stack = await startStack({
    responses: ["answer", "answer again"],
    gateway: {
      now: () => now,
      hooks: { settings: { enabled: true, token: HOOK_TOKEN, allowRequestSessionKey: true } },
    },
  });
  const enqueueing = hold(stack.store.queue, "enqueue", () => true, true);
  const first = deliver(stack);
  await enqueueing.entered;
  return {
    stack,
    first,
    enqueueing,
    later(ms: number) {
      now += ms;
    },
  };
}

/** The run ids the accepted (200) answers name: one event, one run. */
function acceptedRunIds(replies: Reply[]): Set<unknown> {
  return new Set(replies.filter((r) => r.status === 200).map((r) => r.json.runId));
}

describe("hooks: a delivery racing the refusal of the first one with its idempotency key", () => {
  it("is not run as a replay while the first is refused and gives the key back: the retry runs it once", async () => {
    const { stack, release } = await fullQueue(["answer", "answer again", "answer thrice"]);
    // The first delivery is refused; it is held just before it takes its claim back.
    const takingBack = hold(stack.store.kv, "delete", (key) =>
      String(key).startsWith("hooks:idem:"),
    );
    const first = deliver(stack);
    await takingBack.entered;
    await release();
    // Now the session has room: a delivery of the same event comes in.
    const during = await deliver(stack);
    takingBack.open();
    const refused = await first;
    expect([refused.status, refused.json.error.code]).toEqual([503, "OVERLOADED"]);
    // The senders retry what was not accepted, waiting for the run this time.
    const retried = await deliver(stack, { ...BODY, waitForCompletion: true });
    expect(retried.status).toBe(200);
    expect(retried.json.completion).toMatchObject({ status: "ok" });
    const again = await expectReplayOf(stack, retried);
    if (during.status !== 200) {
      expect([during.status, during.json.error.code]).toEqual([409, "idempotency_conflict"]);
    }
    expect(acceptedRunIds([during, retried, again]).size).toBe(1);
    expect(eventRuns(stack)).toBe(1);
  });

  it("is not told it was accepted when the run it joined is the first one's, then refused", async () => {
    const { stack, release } = await fullQueue(["answer", "answer again"]);
    // The first delivery's message is refused by its session; it is held while it is taken
    // out of the queue again (it is still there, under the run's id).
    const discarding = hold(stack.store.queue, "discard", () => true);
    const first = deliver(stack);
    await discarding.entered;
    const during = await deliver(stack);
    discarding.open();
    const refused = await first;
    expect([refused.status, refused.json.error.code]).toEqual([503, "OVERLOADED"]);
    await release();
    // Each sender retries what was not accepted; the last one waits for the run.
    const replies = [during];
    if (during.status !== 200) replies.push(await deliver(stack));
    const retried = await deliver(stack, { ...BODY, waitForCompletion: true });
    replies.push(retried);
    expect(retried.json).toMatchObject({ ok: true, completion: { status: "ok" } });
    if (during.status !== 200) {
      expect([during.status, during.json.error.code]).toEqual([409, "idempotency_conflict"]);
    }
    // Every accepted answer names the run that ran, and it ran once.
    expect(acceptedRunIds(replies)).toEqual(new Set([retried.json.runId]));
    expect(eventRuns(stack)).toBe(1);
  });

  it("a claim whose admission never ended holds the key off for a while, then a retry runs it once under the claim's run id", async () => {
    const { stack, first, enqueueing, later } = await hungFirstDelivery();
    const during = await deliver(stack);
    expect([during.status, during.json.error.code]).toEqual([409, "idempotency_conflict"]);
    expect(during.headers["retry-after"]).toBe("1");
    // Two minutes later the claim is taken as abandoned: a retry sends the run under its id.
    later(2 * 60 * 1000);
    const retried = await deliver(stack, { ...BODY, waitForCompletion: true });
    expect(retried.json).toMatchObject({ ok: true, replayed: true, completion: { status: "ok" } });
    // The first delivery, come to life, finds its run already sent: nothing runs again.
    enqueueing.open();
    const late = await first;
    expect(late.json).toMatchObject({ ok: true, runId: retried.json.runId });
    const records = await stack.store.kv.keys("hooks:idem:");
    expect(records).toHaveLength(1);
    const record = await stack.store.kv.get<JsonObject>(records[0]!);
    expect(record).toMatchObject({ runId: retried.json.runId });
    expect(record).not.toHaveProperty("admitting");
    expect(eventRuns(stack)).toBe(1);
  });

  it("a first delivery refused after its claim went stale leaves the record of the run a retry sent since", async () => {
    let now = Date.now();
    const { stack, release } = await fullQueue(["answer", "answer again"], {
      gateway: { now: () => now },
    });
    const takingBack = hold(stack.store.kv, "delete", (key) =>
      String(key).startsWith("hooks:idem:"),
    );
    const first = deliver(stack);
    await takingBack.entered;
    await release();
    // The first delivery hangs past the claim's time: a retry sends the run, which runs.
    now += 2 * 60 * 1000;
    const retried = await deliver(stack, { ...BODY, waitForCompletion: true });
    expect(retried.json).toMatchObject({ ok: true, replayed: true, completion: { status: "ok" } });
    // The first one's refusal then takes back only its own claim: not this run's record.
    takingBack.open();
    expect((await first).status).toBe(503);
    await expectReplayOf(stack, retried);
    expect(eventRuns(stack)).toBe(1);
  });

  it("a first delivery admitted after its claim went stale leaves the completion a retry recorded since", async () => {
    // The first delivery hangs before its message reaches the queue, past its claim's time.
    const { stack, first, enqueueing, later } = await hungFirstDelivery();
    later(2 * 60 * 1000);
    const retried = await deliver(stack, { ...BODY, waitForCompletion: true });
    expect(retried.json).toMatchObject({ ok: true, replayed: true, completion: { status: "ok" } });
    const [record] = await stack.store.kv.keys("hooks:idem:");
    const completed = await stack.store.kv.get<JsonObject>(record!);
    expect(completed).toHaveProperty("completion");
    // It comes to life and its message is admitted (the session had it): it marks its claim
    // admitted only where the record is still its claim, never over the completion.
    enqueueing.open();
    expect((await first).json).toMatchObject({ ok: true, runId: retried.json.runId });
    expect(await stack.store.kv.get<JsonObject>(record!)).toEqual(completed);
    await expectReplayOf(stack, retried);
    expect(eventRuns(stack)).toBe(1);
  });

  it("a run's completion is never written over the claim its key got after the run's record expired", async () => {
    let now = Date.now();
    const firstAnswer = heldAnswer("first answer");
    const secondAnswer = heldAnswer("second answer");
    const stack = await startStack({
      responses: [firstAnswer.entry, secondAnswer.entry],
      store: { now: () => now },
      gateway: {
        now: () => now,
        hooks: { settings: { enabled: true, token: HOOK_TOKEN, allowRequestSessionKey: true } },
      },
    });
    const first = deliver(stack, { ...BODY, waitForCompletion: true });
    await waitFor("the first run to start", () => stack.provider.requests.length === 1);
    // A day later the key's record has expired: the same key is a new request, a new run
    // (queued behind the first, still running).
    now += 24 * 60 * 60 * 1000 + 1;
    const second = await deliver(stack);
    expect(second.status).toBe(200);
    const [record] = await stack.store.kv.keys("hooks:idem:");
    const claimed = await stack.store.kv.get<JsonObject>(record!);
    expect(claimed).toMatchObject({ runId: second.json.runId });
    // The first run ends: its answer has its completion, and the record stays the second's.
    firstAnswer.release();
    const done = await first;
    expect(done.json).toMatchObject({ ok: true, completion: { status: "ok" } });
    expect(done.json.runId).not.toBe(second.json.runId);
    expect(await stack.store.kv.get<JsonObject>(record!)).toEqual(claimed);
    secondAnswer.release();
    await expectReplayOf(stack, second);
  });
});

/**
 * Makes `stack.store.kv.get` of an idempotency record, on its `nth` call (1-based), let
 * `intrude(stored)` write the key right after the read has returned: a write of another
 * gateway landing between a delivery's read of its record and its write over it.
 */
function writeAfterRead(
  stack: Stack,
  nth: number,
  intrude: (key: string, stored: JsonObject) => JsonObject,
) {
  const kv = stack.store.kv;
  const get = kv.get.bind(kv);
  const written = deferred<JsonObject>();
  let calls = 0;
  Object.assign(kv, {
    get: async (key: string) => {
      const stored = await get<JsonObject>(key);
      if (key.startsWith("hooks:idem:") && stored !== undefined && ++calls === nth) {
        const value = intrude(key, stored);
        await kv.set(key, value, { ttlMs: 60_000 });
        written.resolve(value);
      }
      return stored;
    },
  });
  return written.promise;
}

describe("hooks: a write to an idempotency record between a delivery's read of it and its write", () => {
  async function hookStack() {
    return startStack({
      responses: ["answer"],
      gateway: {
        hooks: { settings: { enabled: true, token: HOOK_TOKEN, allowRequestSessionKey: true } },
      },
    });
  }

  it("is not overwritten by the delivery marking its claim admitted", async () => {
    const stack = await hookStack();
    // Another gateway took the claim over as stale and recorded the run's completion.
    const intruded = writeAfterRead(stack, 1, (_key, stored) => {
      const { admitting: _admitting, at: _at, ...run } = stored;
      return { ...run, completion: { status: "ok", recordedBy: "another gateway" } };
    });
    const reply = await deliver(stack, { ...BODY, waitForCompletion: true });
    expect(reply.json).toMatchObject({ ok: true, completion: { status: "ok" } });
    const intruder = await intruded;
    const [record] = await stack.store.kv.keys("hooks:idem:");
    expect(await stack.store.kv.get<JsonObject>(record!)).toEqual(intruder);
  });

  it("is not overwritten by the delivery recording its run's completion", async () => {
    const stack = await hookStack();
    // The record expired and the key was claimed again, by a new request with a new run.
    const intruded = writeAfterRead(stack, 2, (_key, stored) => ({
      ...stored,
      runId: "hook-of-a-later-request",
      admitting: "another claim",
    }));
    const reply = await deliver(stack, { ...BODY, waitForCompletion: true });
    expect(reply.json).toMatchObject({ ok: true, completion: { status: "ok" } });
    const intruder = await intruded;
    const [record] = await stack.store.kv.keys("hooks:idem:");
    expect(await stack.store.kv.get<JsonObject>(record!)).toEqual(intruder);
  });
});
