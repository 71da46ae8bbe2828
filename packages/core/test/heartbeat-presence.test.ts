/**
 * `PresenceTracker`: online/offline from missed beats, events on change, counters (beats
 * per minute, missed beats, latency percentiles).
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  createManualClock,
  InvalidArgumentError,
  type ManualClock,
  NoProcessError,
  type PresenceChange,
  PresenceTracker,
  type PresenceTrackerOptions,
} from "../src/index.js";
import { failureOf } from "./support.js";

const SECOND = 1_000;
const stops: Array<() => void> = [];

afterEach(() => {
  for (const stop of stops.splice(0)) stop();
});

function tracker(options: PresenceTrackerOptions = {}) {
  const clock = options.clock ?? createManualClock(1_000_000);
  const presence = new PresenceTracker({ clock, ...options }).start();
  stops.push(() => presence.stop());
  const changes: PresenceChange[] = [];
  presence.events.on("changed", (change) => changes.push(change));
  return { presence, clock: clock as ManualClock, changes };
}

describe("PresenceTracker", () => {
  it("a node's first beat brings it online, with online and changed events", async () => {
    const { presence, changes } = tracker();
    const online: string[] = [];
    presence.events.on("online", (node) => online.push(node.nodeId));
    presence.beat("phone");
    expect(online).toEqual(["phone"]);
    expect(changes).toMatchObject([{ nodeId: "phone", from: undefined, to: "online" }]);
    presence.beat("phone");
    expect(changes).toHaveLength(1); // no change, no event
    expect(presence.get("phone")).toMatchObject({ status: "online", beats: 2, missedBeats: 0 });
  });

  it("a node is marked offline after 3 missed beats by default (30 s interval, 20% grace)", async () => {
    const { presence, clock, changes } = tracker();
    const offline: string[] = [];
    presence.events.on("offline", (node) => offline.push(node.nodeId));
    const t0 = clock.now();
    presence.beat("laptop");
    await clock.advance(90 * SECOND + 6 * SECOND - 1);
    expect(presence.get("laptop")).toMatchObject({ status: "online", missedBeats: 2 });
    await clock.advance(1);
    expect(presence.get("laptop")).toMatchObject({ status: "offline", missedBeats: 3 });
    expect(offline).toEqual(["laptop"]);
    expect(changes.at(-1)).toMatchObject({
      nodeId: "laptop",
      from: "online",
      to: "offline",
      at: t0 + 96 * SECOND,
    });
  });

  it("the number of missed beats before offline, the interval and the grace are options", async () => {
    const { presence, clock } = tracker({
      intervalMs: 5 * SECOND,
      missedBeatsOffline: 1,
      graceMs: 0,
    });
    presence.beat("n");
    await clock.advance(5 * SECOND);
    expect(presence.get("n")!.status).toBe("offline");
  });

  it("a beat that arrives within the grace is not missed", async () => {
    const { presence, clock } = tracker();
    presence.beat("n");
    for (let i = 0; i < 10; i++) {
      await clock.advance(30 * SECOND + 5 * SECOND); // 5 s late every time
      presence.beat("n");
    }
    expect(presence.stats().missedBeats).toBe(0);
  });

  it("a beat after being offline brings the node back online", async () => {
    const { presence, clock, changes } = tracker();
    presence.beat("n");
    await clock.advance(5 * 60 * SECOND);
    presence.beat("n");
    expect(changes.map((c) => `${c.from}->${c.to}`)).toEqual([
      "undefined->online",
      "online->offline",
      "offline->online",
    ]);
    expect(presence.get("n")).toMatchObject({ status: "online", missedBeats: 0 });
  });

  it("a node may announce its own interval", async () => {
    const { presence, clock } = tracker();
    presence.beat("slow", { intervalMs: 5 * 60 * SECOND });
    await clock.advance(10 * 60 * SECOND);
    expect(presence.get("slow")).toMatchObject({ status: "online", missedBeats: 1 });
  });

  it("counters: beats per minute over the last 60 s, missed beats, latency p50 and p99", async () => {
    const { presence, clock } = tracker();
    for (let i = 0; i < 100; i++) {
      presence.beat(`n${i % 4}`, { sentAt: clock.now() - (i + 1) });
      await clock.advance(500);
    }
    const stats = presence.stats();
    expect(stats.beats).toBe(100);
    expect(stats.beatsPerMinute).toBe(100); // all within the last 50 s
    expect(stats.latencyMs).toEqual({ p50: 50, p99: 99, samples: 100 });
    await clock.advance(2 * 60 * SECOND);
    expect(presence.stats().beatsPerMinute).toBe(0);
    expect(presence.stats().missedBeats).toBe(4 * 3); // four nodes, each offline after 3
    expect(presence.stats()).toMatchObject({ nodes: 4, online: 0, offline: 4 });
  });

  it("one timer watches every node, and stop leaves none", async () => {
    const { presence, clock } = tracker();
    for (let i = 0; i < 1000; i++) presence.beat(`node-${i}`);
    expect(clock.activeTimers).toBe(1);
    presence.remove("node-0");
    expect(presence.get("node-0")).toBeUndefined();
    presence.stop();
    expect(clock.activeTimers).toBe(0);
  });

  it("a beat before start is NoProcessError; a bad node id or sentAt is InvalidArgumentError", async () => {
    const idle = new PresenceTracker({ clock: createManualClock(0) });
    expect(NoProcessError.isInstance(await failureOf(() => idle.beat("n")))).toBe(true);
    const { presence } = tracker();
    for (const call of [
      () => presence.beat(""),
      () => presence.beat("n", { sentAt: Number.NaN }),
    ]) {
      expect(InvalidArgumentError.isInstance(await failureOf(call))).toBe(true);
    }
    expect(
      InvalidArgumentError.isInstance(
        await failureOf(() => new PresenceTracker({ missedBeatsOffline: 0 })),
      ),
    ).toBe(true);
  });
});
