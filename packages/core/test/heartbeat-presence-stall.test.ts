/**
 * `PresenceTracker` and stalls of its own process: a deadline timer that fires late (the
 * process was busy, so beats that came meanwhile are still unread) puts the passed deadlines
 * off instead of counting them, once each, so live nodes stay online and dead ones are
 * still found. A scripted clock plays the stall exactly; a second test stalls the real event
 * loop while a worker thread keeps beating over a real TCP socket.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  type Clock,
  PRESENCE_STALL_TOLERANCE_MS,
  type PresenceChange,
  PresenceTracker,
  type TimerHandle,
} from "../src/index.js";

const stops: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/**
 * A clock whose monotonic timers fire as a process's would: `run` moves time on firing each
 * timer at its due time (an idle process), `stall` moves time on firing nothing, after which
 * `wake` fires the overdue timers, late, before anything else happens (the event loop's
 * timers phase comes before it reads the sockets).
 */
class StallClock implements Clock {
  #monotonic = 0;
  #nextId = 1;
  readonly #timers = new Map<number, { dueAt: number; fn: () => void }>();

  now(): number {
    return 1_700_000_000_000 + this.#monotonic;
  }
  monotonic(): number {
    return this.#monotonic;
  }
  setTimer(fn: () => void, ms: number): TimerHandle {
    return this.setMonotonicTimer(fn, ms);
  }
  setMonotonicTimer(fn: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { dueAt: this.#monotonic + Math.max(0, ms), fn });
    return id;
  }
  clearTimer(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }
  get activeTimers(): number {
    return this.#timers.size;
  }

  /** Moves time on by `ms`, firing every timer at its due time. */
  run(ms: number): void {
    const end = this.#monotonic + ms;
    for (let next = this.#earliest(); next !== undefined && next[1].dueAt <= end; ) {
      this.#timers.delete(next[0]);
      this.#monotonic = Math.max(this.#monotonic, next[1].dueAt);
      next[1].fn();
      next = this.#earliest();
    }
    this.#monotonic = end;
  }

  /** Moves time on by `ms` without firing anything: the process is blocked. */
  stall(ms: number): void {
    this.#monotonic += ms;
  }

  /** Fires the timers that became due during a stall, late (one pass, as one timers phase). */
  wake(): void {
    const due = [...this.#timers].filter(([, timer]) => timer.dueAt <= this.#monotonic);
    for (const [id, timer] of due.sort((a, b) => a[1].dueAt - b[1].dueAt)) {
      if (!this.#timers.delete(id)) continue;
      timer.fn();
    }
  }

  #earliest(): [number, { dueAt: number; fn: () => void }] | undefined {
    let best: [number, { dueAt: number; fn: () => void }] | undefined;
    for (const entry of this.#timers)
      if (best === undefined || entry[1].dueAt < best[1].dueAt) best = entry;
    return best;
  }
}

function tracked(options: { intervalMs: number; graceMs: number; missedBeatsOffline?: number }) {
  const clock = new StallClock();
  const presence = new PresenceTracker({ clock, ...options }).start();
  stops.push(() => presence.stop());
  const changes: PresenceChange[] = [];
  const missed: string[] = [];
  presence.events.on("changed", (change) => changes.push(change));
  presence.events.on("missed", (node) => missed.push(node.nodeId));
  return { clock, presence, changes, missed };
}

describe("PresenceTracker: stalls of its own process", () => {
  it("a stall longer than the offline time marks no live node offline, and the beats read after it keep them online", () => {
    // 100 ms beats, 20 ms grace, offline after 3 missed: 320 ms of silence is offline.
    const { clock, presence, changes, missed } = tracked({ intervalMs: 100, graceMs: 20 });
    presence.beat("a");
    presence.beat("b");
    clock.run(50);
    presence.beat("b");
    // The process blocks for 1 s; both nodes kept beating, into the socket buffers.
    clock.stall(1_000);
    clock.wake(); // the overdue deadline timer fires first
    expect(missed).toEqual([]);
    expect(presence.list().map((node) => [node.nodeId, node.status, node.missedBeats])).toEqual([
      ["a", "online", 0],
      ["b", "online", 0],
    ]);
    // Then the buffered beats are read.
    presence.beat("a");
    presence.beat("b");
    clock.run(99);
    expect(missed).toEqual([]);
    expect(changes.filter((change) => change.to === "offline")).toEqual([]);
    expect(presence.stats()).toMatchObject({ online: 2, offline: 0, missedBeats: 0, stalls: 1 });
  });

  it("a node that went silent is still found after a stall: its deadline is put off by the stall once, then counted", () => {
    const { clock, presence, changes, missed } = tracked({ intervalMs: 100, graceMs: 20 });
    presence.beat("dead");
    clock.stall(1_000);
    clock.wake();
    expect(missed).toEqual([]); // put off, not counted
    // It is counted after at most one grace more (for a round trip after the stall)...
    clock.run(20);
    expect(missed.length).toBeGreaterThanOrEqual(1);
    // ...and, since it has been silent for the whole offline time, goes offline at once.
    expect(presence.get("dead")).toMatchObject({ status: "offline", missedBeats: 3 });
    expect(changes.at(-1)).toMatchObject({ nodeId: "dead", from: "online", to: "offline" });
  });

  it("a process that stalls all the time still finds dead nodes: each deadline is put off at most once", () => {
    const { clock, presence, missed } = tracked({ intervalMs: 100, graceMs: 20 });
    presence.beat("dead");
    let firings = 0;
    while (presence.get("dead")?.status === "online" && firings < 20) {
      // Each time, the process is blocked for 400 ms and fires the deadline timer late.
      expect(clock.activeTimers).toBe(1);
      clock.stall(400);
      clock.wake();
      firings++;
    }
    expect(presence.get("dead")).toMatchObject({ status: "offline", missedBeats: 3 });
    // One firing puts the deadline off; every later one counts at least one missed beat.
    expect(firings).toBeLessThanOrEqual(4);
    expect(missed).toHaveLength(3);
    expect(presence.stats().stalls).toBe(firings);
  });

  it("a timer late by no more than the tolerance is jitter: the missed beat counts at once", () => {
    const { clock, presence, missed } = tracked({ intervalMs: 100, graceMs: 20 });
    presence.beat("quiet");
    clock.stall(120 + PRESENCE_STALL_TOLERANCE_MS);
    clock.wake();
    expect(missed).toEqual(["quiet"]);
    expect(presence.stats()).toMatchObject({ missedBeats: 1, stalls: 0 });
    // One past the tolerance is a stall (the next deadline is 220 ms after the beat).
    clock.stall(220 + PRESENCE_STALL_TOLERANCE_MS + 1 - clock.monotonic());
    clock.wake();
    expect(missed).toEqual(["quiet"]);
    expect(presence.stats()).toMatchObject({ missedBeats: 1, stalls: 1 });
  });

  it("a beat during a put-off deadline resets it: the next stall may put the new deadline off again", () => {
    const { clock, presence, missed } = tracked({ intervalMs: 100, graceMs: 20 });
    presence.beat("n");
    for (let round = 0; round < 5; round++) {
      clock.stall(500);
      clock.wake();
      presence.beat("n"); // read after the stall
    }
    expect(missed).toEqual([]);
    expect(presence.stats()).toMatchObject({ stalls: 5, missedBeats: 0, online: 1 });
  });
});

describe("PresenceTracker: a real event-loop stall while a peer keeps beating over TCP", () => {
  it("blocking the process for longer than the offline time does not mark the peer offline", async () => {
    const intervalMs = 50;
    const presence = new PresenceTracker({
      intervalMs,
      graceMs: 10,
      missedBeatsOffline: 3,
    }).start();
    stops.push(() => presence.stop());
    const offline: string[] = [];
    presence.events.on("offline", (node) => offline.push(node.nodeId));

    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      // Every byte is a beat.
      socket.on("data", () => presence.beat("peer"));
      socket.on("error", () => {});
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    stops.push(
      () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => resolve());
        }),
    );
    const { port } = server.address() as { port: number };

    // The peer is another process (its own event loop), so it beats while this one blocks;
    // it exits when its socket closes.
    const peer = spawn(
      process.execPath,
      [
        "-e",
        `const socket = require("node:net").connect(${port}, "127.0.0.1");
         const timer = setInterval(() => socket.write("b"), ${intervalMs});
         socket.on("close", () => clearInterval(timer));
         socket.on("error", () => {});`,
      ],
      { stdio: "ignore" },
    );
    const exited = once(peer, "exit");
    stops.push(async () => {
      for (const socket of sockets) socket.destroy();
      const timer = setTimeout(() => peer.kill("SIGKILL"), 2_000);
      await exited;
      clearTimeout(timer);
    });
    await until(() => presence.get("peer") !== undefined);

    // Block this thread for 1 s: six times the offline time (3 × 50 ms + 10 ms).
    const end = performance.now() + 1_000;
    while (performance.now() < end) {
      // busy
    }
    // Let the late deadline timer fire, then the buffered beats be read, for a few intervals.
    await new Promise((resolve) => setTimeout(resolve, 4 * intervalMs));
    expect(offline).toEqual([]);
    expect(presence.get("peer")).toMatchObject({ status: "online" });
    expect(presence.stats().stalls).toBeGreaterThanOrEqual(1);
  });
});

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met within 5 s");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
