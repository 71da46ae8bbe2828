/**
 * Fails a test file that leaves a handle open: a timer, socket, server, child process or
 * file watcher that was not there before the file's first test and is still there after its
 * last one. Every `start()` must have a `stop()` that releases what it took.
 *
 * `process.getActiveResourcesInfo()` lists only resources that keep the event loop alive,
 * so `unref()`ed timers are (correctly) not counted.
 *
 * The error names the file and the test after which the handle appeared. Counting by type
 * can miss a leaked timer when a timer that was there before the file's first test ended
 * meanwhile; with `BEAMCLAW_LEAK_STACKS=1` timers are followed one by one instead (an async
 * hook records the stack of every timer; slower, for hunting a leak down): a file fails for
 * any timer it created that still holds the event loop, and the error says where it was
 * created.
 */
import { createHook } from "node:async_hooks";
import { afterAll, afterEach, beforeAll, expect } from "vitest";

function countByType(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) {
    counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}

function leaked(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [type, n] of after) {
    const extra = n - (before.get(type) ?? 0);
    if (extra > 0) out.set(type, extra);
  }
  return out;
}

/** Node's Timeout, as far as telling whether it is still armed goes. */
interface TimeoutLike {
  hasRef?: () => boolean;
  _destroyed?: boolean;
  _idleTimeout?: number;
}

/**
 * Every timer created (only with BEAMCLAW_LEAK_STACKS=1) and the stack that created it. Kept
 * after they fire: a timer re-armed with `refresh()` (undici does) lives on without a new
 * `init`.
 */
const timers = new Map<number, { resource: TimeoutLike; where: Error }>();
if (process.env.BEAMCLAW_LEAK_STACKS === "1") {
  createHook({
    init(asyncId, type, _trigger, resource) {
      if (type !== "Timeout") return;
      // The stack is formatted only when reported: formatting it here (source maps) would
      // arm timers of its own.
      timers.set(asyncId, { resource: resource as TimeoutLike, where: new Error() });
    },
  }).enable();
}

function stackOf(where: Error): string {
  return (where.stack ?? "")
    .split("\n")
    .slice(1)
    .filter((line) => !line.includes("node:internal/") && !line.includes("(node:timers"))
    .slice(0, 12)
    .join("\n");
}

/** Still armed and holding the loop. */
function armed(t: TimeoutLike): boolean {
  return t._destroyed !== true && t._idleTimeout !== -1 && t.hasRef?.() !== false;
}

let baseline = new Map<string, number>();
/** The handles counted after each test, to name the test a leaked handle appeared in. */
const afterTests: Array<{ test: string; counts: Map<string, number> }> = [];
let timersBefore = new Set<number>();

beforeAll(() => {
  baseline = countByType();
  timersBefore = new Set(timers.keys());
});

afterEach((context) => {
  afterTests.push({ test: context.task.name, counts: countByType() });
});

/** The test after which `type` last rose to (at least) its final count and stayed there. */
function appearedIn(type: string, final: number): string {
  let since = "a hook after the last test";
  for (let i = afterTests.length - 1; i >= 0; i--) {
    const { test, counts } = afterTests[i]!;
    if ((counts.get(type) ?? 0) < final) break;
    since = `"${test}"`;
  }
  return since;
}

/** Stacks of the timers this file created that still hold the loop (BEAMCLAW_LEAK_STACKS=1). */
function ownTimers(): string[] {
  return [...timers]
    .filter(([id, t]) => !timersBefore.has(id) && armed(t.resource))
    .map(([, t]) => stackOf(t.where));
}

/**
 * Writes still in flight: a test worker's output and its reports to the runner go through a
 * pipe, and a file with many tests can end with a large report not yet taken by the reader.
 * They finish by themselves; a write on a socket left open shows that socket too.
 */
const WRITES = new Set(["WriteWrap", "SimpleWriteWrap", "ShutdownWrap"]);

afterAll(async () => {
  // Give close callbacks (sockets, child processes) a few turns of the loop to run, and
  // writes in flight up to 5 s to drain.
  let found = new Map<string, number>();
  const deadline = Date.now() + 5_000;
  for (let attempt = 0; ; attempt++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    found = leaked(baseline, countByType());
    const own = ownTimers();
    if (own.length > 0 && (found.get("Timeout") ?? 0) < own.length)
      found.set("Timeout", own.length);
    if (found.size === 0) return;
    const onlyWrites = [...found.keys()].every((type) => WRITES.has(type));
    if (attempt >= 20 && !(onlyWrites && Date.now() < deadline)) break;
    if (attempt >= 10) await new Promise<void>((resolve) => setTimeout(resolve, 10).unref());
  }
  const now = countByType();
  const described = [...found].map(
    ([type, n]) => `${type} x${n} (there since ${appearedIn(type, now.get(type) ?? 0)})`,
  );
  let stacks = ownTimers();
  if (stacks.length === 0 && timers.size > 0) {
    // Not one this file created: a timer armed again (`refresh()`, `ref()`) since.
    stacks = [...timers.values()]
      .filter((t) => armed(t.resource))
      .map(
        (t) =>
          `(armed before this file; ${String(t.resource._idleTimeout)} ms) ${stackOf(t.where)}`,
      );
  }
  const file = expect.getState().testPath ?? "this test file";
  throw new Error(
    `open handles left behind by ${file}: ${described.join(", ")}` +
      (stacks.length > 0 ? `\ntimers created at:\n${stacks.join("\n---\n")}` : ""),
  );
});
