/**
 * The heartbeat's wake lines in the store (`HeartbeatService`, on a real runtime and
 * `MemoryStore`): bounded per session, kept apart per session (a key that starts like another
 * is not the other), claimed once by whichever beat takes them, and put back when the beat's
 * message could not be sent; and `stop()` with a `wake(…, true)` beat in flight.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StoreError } from "@beamclaw/core";
import type { ScriptEntry } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { HeartbeatService, MAX_PENDING_WAKES, WAKE_TTL_MS } from "../src/heartbeat.js";
import { heartbeatRuntime, lastUserText } from "./heartbeat-support.js";
import { deferred, waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function service(responses: ScriptEntry[] = [], heartbeatFile?: string, enabled = false) {
  const clock = { now: Date.now() };
  const { store, provider, runtime } = await heartbeatRuntime(cleanups, responses, () => clock.now);
  const beats: string[] = [];
  const make = () => {
    const heartbeat = new HeartbeatService({
      runtime,
      settings: {
        enabled,
        everyMs: 3_600_000,
        ...(heartbeatFile === undefined ? {} : { heartbeatFile }),
      },
      defaultAgentId: "main",
      onBeat: (event) => beats.push(event.status),
    });
    cleanups.push(() => heartbeat.stop());
    return heartbeat;
  };
  const heartbeat = make();
  await heartbeat.start();
  return { store, provider, runtime, heartbeat, beats, make, clock };
}

describe("heartbeat wake lines", () => {
  it(`keeps the newest ${MAX_PENDING_WAKES} lines of a session, apart from other sessions'`, async () => {
    const { heartbeat, clock } = await service();
    for (let i = 0; i <= MAX_PENDING_WAKES; i++) {
      expect(await heartbeat.wake(`line ${i}`, false)).toBe("queued");
    }
    const waiting = await heartbeat.pendingWakes();
    expect(waiting).toHaveLength(MAX_PENDING_WAKES);
    expect(waiting[0]).toBe("line 1");
    expect(waiting.at(-1)).toBe(`line ${MAX_PENDING_WAKES}`);
    // A thread of the main session has a key that starts like it: its lines are its own.
    expect(await heartbeat.wake("for the thread", false, "AGENT:MAIN:MAIN:thread:7")).toBe(
      "queued",
    );
    expect(await heartbeat.pendingWakes("agent:main:main:thread:7")).toEqual(["for the thread"]);
    expect(await heartbeat.pendingWakes()).toHaveLength(MAX_PENDING_WAKES);
    // Each line waits a day at most.
    clock.now += WAKE_TTL_MS - 1000;
    expect(await heartbeat.pendingWakes("agent:main:main:thread:7")).toEqual(["for the thread"]);
    clock.now += 2000;
    expect(await heartbeat.pendingWakes("agent:main:main:thread:7")).toEqual([]);
  });

  it("hands a line to one beat only, whichever service runs it", async () => {
    const { heartbeat, make, provider } = await service(["HEARTBEAT_OK", "HEARTBEAT_OK"]);
    const other = make();
    await other.start();
    await heartbeat.wake("only once", false);
    // Written by one service, read by the other's beat.
    await other.wake("and this", true);
    await waitFor("the beat", () => provider.requests.length === 1);
    expect(lastUserText(provider)).toContain("- only once\n- and this");
    await heartbeat.wake("after", true);
    await waitFor("the second beat", () => provider.requests.length === 2);
    expect(lastUserText(provider)).toContain("- after");
    expect(lastUserText(provider)).not.toContain("only once");
    expect(await heartbeat.pendingWakes()).toEqual([]);
  });

  it("puts the lines back when the beat's message cannot be sent, and refuses a line the store refuses", async () => {
    const { heartbeat, store, provider, beats } = await service(["HEARTBEAT_OK"]);
    await heartbeat.wake("kept through a failure", false);
    const enqueue = store.queue.enqueue.bind(store.queue);
    let failures = 1;
    store.queue.enqueue = async (message) => {
      if (failures-- > 0) throw new StoreError("STORE_UNAVAILABLE", "the disk is full");
      return enqueue(message);
    };
    await heartbeat.wake("second line", true);
    await waitFor("the failed beat", () => beats.length === 1);
    expect(beats).toEqual(["failed"]);
    expect(provider.requests).toHaveLength(0);
    expect(await heartbeat.pendingWakes()).toEqual(["kept through a failure", "second line"]);
    await heartbeat.wake("third", true);
    await waitFor("the beat", () => provider.requests.length === 1);
    expect(lastUserText(provider)).toContain("- kept through a failure\n- second line\n- third");

    const set = store.kv.set.bind(store.kv);
    store.kv.set = async () => {
      throw new StoreError("STORE_UNAVAILABLE", "read-only");
    };
    await expect(heartbeat.wake("refused", false)).rejects.toBeInstanceOf(StoreError);
    store.kv.set = set;
    expect(await heartbeat.pendingWakes()).toEqual([]);
  });

  it("a HEARTBEAT.md with only headings skips no beat that has lines waiting: they reach the session", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-wake-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, "HEARTBEAT.md");
    // OpenClaw's template: "empty" (headings only) to save the model calls of idle beats.
    await writeFile(
      file,
      "# HEARTBEAT.md\n\n# Keep this file empty to skip heartbeat API calls.\n",
    );
    const { heartbeat, provider, beats } = await service(["HEARTBEAT_OK", "HEARTBEAT_OK"], file);
    await heartbeat.wake("queued for the next beat", false);
    await heartbeat.wake("the nightly build failed", true);
    await waitFor("the beat", () => beats.length === 1);
    expect(beats).toEqual(["ok-token"]);
    expect(provider.requests).toHaveLength(1);
    expect(lastUserText(provider)).toContain(
      "System events:\n- queued for the next beat\n- the nightly build failed",
    );
    expect(await heartbeat.pendingWakes()).toEqual([]);
  });
});

describe("HeartbeatService.stop() with a wake in flight", () => {
  it.each([
    ["a one-off beat (heartbeats off)", false],
    ["a beat of the periodic runner (heartbeats on)", true],
  ])("aborts %s instead of waiting for the model", async (_what, enabled) => {
    // The model holds its answer until the gate opens (or the call is aborted).
    const gate = deferred<void>();
    const answer: ScriptEntry = {
      events: [
        { type: "wait", until: gate.promise },
        { type: "text-delta", text: "late reply" },
        { type: "finish", reason: "stop" },
      ],
    };
    const { heartbeat, provider, runtime, beats } = await service([answer], undefined, enabled);
    // Runs first: a stop() still waiting for the model (the defect) is let go.
    cleanups.push(async () => gate.resolve());
    expect(await heartbeat.wake("deploy finished", true)).toBe("queued");
    await waitFor("the beat's model call", () => provider.requests.length === 1);
    // The model never answers on its own: stop() must not wait for it.
    await heartbeat.stop();
    const session = runtime.session("agent:main:main");
    await waitFor(
      "the beat's run to end",
      async () => (await session.info()).activeRunId === undefined,
    );
    expect(beats).not.toContain("sent");
    expect(heartbeat.last()?.status).not.toBe("sent");
  });
});
