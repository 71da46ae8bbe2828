/**
 * Benchmark 3: heap bytes per idle actor, with 100,000 actors alive.
 *
 * Each actor is started and has handled one `call` (so its mailbox and the call-deadline
 * machinery have run), then sits idle, held by a pre-allocated array. The heap is measured
 * after full GCs before and after, so the figure is what one idle actor keeps alive. The
 * baseline is the same measurement for a plain class instance with the same user fields
 * (`class Plain { n = 0 }`), the floor for any object holding that state.
 */
import v8 from "node:v8";
import { Actor } from "@beamclaw/core";
import { formatBytes, formatRatio, fullGc, log, median, runBenchmark } from "./lib.mjs";

/** An idle actor with one user field. */
class Idle extends Actor {
  n = 0;
  handleCall() {
    return this.n;
  }
}

/** The baseline: a plain object with the same user field. */
class Plain {
  n = 0;
}

function heapUsed() {
  fullGc();
  return v8.getHeapStatistics().used_heap_size;
}

/** Creates, starts and calls `count` actors into `slots`. */
async function spawnInto(slots, count) {
  for (let i = 0; i < count; i++) {
    const actor = await new Idle().start();
    if ((await actor.call("get")) !== 0) throw new Error("unexpected reply");
    slots[i] = actor;
  }
}

async function stopAll(slots) {
  await Promise.all(slots.map((actor) => actor?.stop()));
  for (const actor of slots) {
    if (actor !== null && actor.status !== "stopped") throw new Error("an actor did not stop");
  }
  slots.fill(null);
}

async function main({ quick }) {
  const count = quick ? 20_000 : 100_000;
  const reps = 3;
  const targetBytes = 512;
  // Allocated before the first measurement, so its own 8 bytes per slot are not counted.
  const slots = new Array(count).fill(null);

  // Warm-up: compile the code paths and create the shared state (deadline bucket, telemetry
  // channels) outside the measurement.
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 2_000; j++) slots[j] = new Plain();
    slots.fill(null);
    await spawnInto(slots, 2_000);
    await stopAll(slots);
  }

  // Interleaved repetitions; the median of each is reported.
  const plain = [];
  const actors = [];
  let rssDelta = 0;
  for (let rep = 0; rep < reps; rep++) {
    const plainBefore = heapUsed();
    for (let i = 0; i < count; i++) slots[i] = new Plain();
    plain.push((heapUsed() - plainBefore) / count);
    slots.fill(null);

    try {
      const rssBefore = process.memoryUsage().rss;
      const before = heapUsed();
      await spawnInto(slots, count);
      actors.push((heapUsed() - before) / count);
      rssDelta = Math.max(rssDelta, process.memoryUsage().rss - rssBefore);
      for (const actor of slots) {
        if (actor.status !== "running") throw new Error("actor not running");
      }
    } finally {
      await stopAll(slots);
    }
    log(`memory: repetition ${rep + 1}/${reps} done`);
  }
  const plainBytes = median(plain);
  const actorBytes = median(actors);
  const spread = (values) =>
    `${formatBytes(Math.min(...values))} – ${formatBytes(Math.max(...values))}`;

  return {
    id: "memory",
    title: "3. Memory per idle actor",
    description:
      `Heap used (\`v8.getHeapStatistics().used_heap_size\` after full GCs) before and after creating ` +
      `${count.toLocaleString("en-US")} actors, each started and having handled one \`call\`, ` +
      "held in a pre-allocated array; divided by the count. The baseline is the same " +
      "measurement for `class Plain { n = 0 }`, the actor's user fields without the actor. " +
      "Ratio = figure ÷ baseline. All actors are stopped at the end.",
    params: `${count.toLocaleString("en-US")} actors, ${reps} repetitions (median), \`node --expose-gc\``,
    rows: [
      {
        measurement: `heap per idle actor (${count.toLocaleString("en-US")} alive)`,
        figure: formatBytes(actorBytes),
        baseline: formatBytes(plainBytes),
        ratio: formatRatio(actorBytes / plainBytes),
        target: `≤ ${targetBytes} B`,
        met: actorBytes <= targetBytes,
      },
    ],
    notes: [
      `Actor overhead over the plain object: ${formatBytes(actorBytes - plainBytes)} per actor.`,
      `Spread over ${reps} interleaved repetitions: actor ${spread(actors)}, plain ${spread(plain)}.`,
      `Resident set size grew by up to ${formatBytes(rssDelta)} while the actors were alive (${formatBytes(rssDelta / count)} per actor; includes heap reserved but unused, and allocator slack).`,
    ],
  };
}

runBenchmark(main);
