/**
 * Fails a test file that leaves a handle open: a timer, socket, server, child process or
 * file watcher that was not there before the file's first test and is still there after its
 * last one. Every `start()` must have a `stop()` that releases what it took.
 *
 * `process.getActiveResourcesInfo()` lists only resources that keep the event loop alive,
 * so `unref()`ed timers are (correctly) not counted.
 */
import { afterAll, beforeAll } from "vitest";

function countByType(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) {
    counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}

function leaked(before: Map<string, number>, after: Map<string, number>): string[] {
  const out: string[] = [];
  for (const [type, n] of after) {
    const extra = n - (before.get(type) ?? 0);
    if (extra > 0) out.push(`${type} x${extra}`);
  }
  return out;
}

let baseline = new Map<string, number>();

beforeAll(() => {
  baseline = countByType();
});

afterAll(async () => {
  // Give close callbacks (sockets, child processes) a few turns of the loop to run.
  let found: string[] = [];
  for (let attempt = 0; attempt < 20; attempt++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    found = leaked(baseline, countByType());
    if (found.length === 0) return;
    if (attempt >= 10) await new Promise<void>((resolve) => setTimeout(resolve, 10).unref());
  }
  throw new Error(`open handles left behind by this test file: ${found.join(", ")}`);
});
