/**
 * The OTP supervision rules, one test per rule, for `Supervisor`.
 *
 * Every supervisor a test starts goes through `track()`, and `afterEach` kills whatever a
 * failing test left running, so the open-handle check never trips over a red test.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  Actor,
  ChildNotFoundError,
  type ChildSpec,
  ChildStartError,
  type ExitReason,
  InvalidArgumentError,
  MaxRestartIntensityError,
  type Process,
  Registry,
  type RestartType,
  Supervisor,
  subscribeTelemetry,
  type TelemetryChannel,
  type TelemetryEvents,
} from "../src/index.js";
import { killTracked, track, waitFor } from "./support.js";

// ------------------------------------------------------------------ test doubles and helpers

type WorkerCommand = "crash" | "exit-normal" | "hang";

interface WorkerOptions {
  /** Where `init:<label>` and `terminate:<label>:<reason>` are recorded. */
  log?: string[];
  /** `init` throws. */
  failInit?: boolean;
  /** `terminate` never finishes. */
  hangTerminate?: boolean;
}

/** A worker that crashes, exits or hangs on command and records its lifecycle. */
class Worker extends Actor<"ping", string, WorkerCommand> {
  constructor(
    readonly label: string,
    private readonly options: WorkerOptions = {},
  ) {
    super({ name: `Worker(${label})` });
  }

  protected override init(): void {
    this.options.log?.push(`init:${this.label}`);
    if (this.options.failInit === true) throw new Error(`init of ${this.label} failed`);
  }

  protected override handleCall(): string {
    return `pong:${this.label}`;
  }

  protected override handleCast(command: WorkerCommand): void | Promise<void> {
    if (command === "crash") throw new Error(`${this.label} crashed`);
    if (command === "exit-normal") {
      void this.stop("normal");
      return;
    }
    return new Promise<void>(() => {}); // "hang": a handler that never finishes
  }

  protected override terminate(reason: ExitReason): void | Promise<void> {
    this.options.log?.push(`terminate:${this.label}:${reasonLabel(reason)}`);
    if (this.options.hangTerminate === true) return new Promise<void>(() => {});
  }
}

function reasonLabel(reason: ExitReason): string {
  return typeof reason === "string" ? reason : "error";
}

interface WorkerSpecOptions extends WorkerOptions {
  restart?: RestartType;
  shutdownMs?: number;
  via?: ChildSpec["via"];
}

/** A child spec for a `Worker` labelled `id`. */
function worker(id: string, options: WorkerSpecOptions = {}): ChildSpec<Worker> {
  const { restart, shutdownMs, via, ...workerOptions } = options;
  const spec: ChildSpec<Worker> = { id, start: () => new Worker(id, workerOptions).start() };
  if (restart !== undefined) spec.restart = restart;
  if (shutdownMs !== undefined) spec.shutdownMs = shutdownMs;
  if (via !== undefined) spec.via = via;
  return spec;
}

afterEach(() => {
  killTracked();
  vi.useRealTimers();
});

async function childOf<P extends Process = Worker>(sup: Supervisor, id: string): Promise<P> {
  const info = (await sup.whichChildren()).find((c) => c.id === id);
  if (info?.process === undefined) throw new Error(`child "${id}" is not running`);
  return info.process as P;
}

/** Waits until child `id` runs as a process other than `old`. */
async function restarted<P extends Process = Worker>(
  sup: Supervisor,
  id: string,
  old: Process,
): Promise<P> {
  return waitFor(`child "${id}" to be restarted`, async () => {
    const info = (await sup.whichChildren()).find((c) => c.id === id);
    const process = info?.process;
    return process !== undefined && process !== old && process.status === "running"
      ? (process as P)
      : undefined;
  });
}

/** pid of every child, in whichChildren order (`undefined` for a stopped child). */
async function pids(sup: Supervisor): Promise<Record<string, number | undefined>> {
  const out: Record<string, number | undefined> = {};
  for (const c of await sup.whichChildren()) out[c.id] = c.process?.pid;
  return out;
}

function recordTelemetry<C extends TelemetryChannel>(channel: C) {
  const events: TelemetryEvents[C][] = [];
  const off = subscribeTelemetry(channel, (event) => events.push(event));
  return { events, off };
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

// ------------------------------------------------------------------ strategies

describe("restart strategies", () => {
  it("one_for_one restarts only the crashed child", async () => {
    const log: string[] = [];
    const sup = track(
      await new Supervisor({
        strategy: "one_for_one",
        children: [worker("a", { log }), worker("b", { log }), worker("c", { log })],
      }).start(),
    );
    const before = await pids(sup);
    const b = await childOf(sup, "b");
    log.length = 0;

    b.cast("crash");
    const b2 = await restarted(sup, "b", b);

    const after = await pids(sup);
    expect(after.a).toBe(before.a);
    expect(after.c).toBe(before.c);
    expect(after.b).toBe(b2.pid);
    expect(b2.pid).not.toBe(b.pid);
    expect(log).toEqual(["terminate:b:error", "init:b"]);
    await sup.stop();
  });

  it("one_for_all stops the other children in reverse order, then restarts all in order", async () => {
    const log: string[] = [];
    const sup = track(
      await new Supervisor({
        strategy: "one_for_all",
        children: ["a", "b", "c", "d"].map((id) => worker(id, { log })),
      }).start(),
    );
    const before = await pids(sup);
    const b = await childOf(sup, "b");
    log.length = 0;

    b.cast("crash");
    await restarted(sup, "b", b);
    await waitFor("every child to run again", async () =>
      (await sup.countChildren()).active === 4 ? true : undefined,
    );

    expect(log).toEqual([
      "terminate:b:error",
      "terminate:d:shutdown",
      "terminate:c:shutdown",
      "terminate:a:shutdown",
      "init:a",
      "init:b",
      "init:c",
      "init:d",
    ]);
    const after = await pids(sup);
    for (const id of ["a", "b", "c", "d"]) {
      expect(after[id]).toBeDefined();
      expect(after[id]).not.toBe(before[id]);
    }
    await sup.stop();
  });

  it("rest_for_one restarts the crashed child and only the children started after it", async () => {
    const log: string[] = [];
    const sup = track(
      await new Supervisor({
        strategy: "rest_for_one",
        children: ["a", "b", "c", "d"].map((id) => worker(id, { log })),
      }).start(),
    );
    const before = await pids(sup);
    const b = await childOf(sup, "b");
    log.length = 0;

    b.cast("crash");
    await restarted(sup, "b", b);
    await waitFor("every child to run again", async () =>
      (await sup.countChildren()).active === 4 ? true : undefined,
    );

    expect(log).toEqual([
      "terminate:b:error",
      "terminate:d:shutdown",
      "terminate:c:shutdown",
      "init:b",
      "init:c",
      "init:d",
    ]);
    const after = await pids(sup);
    expect(after.a).toBe(before.a);
    for (const id of ["b", "c", "d"]) expect(after[id]).not.toBe(before[id]);
    await sup.stop();
  });

  it("one_for_all restarts every child, including a transient sibling that had exited normally", async () => {
    // OTP (supervisor.erl, restart/3 -> restart_multiple_children/3) terminates and then
    // starts *all* non-temporary children, whatever their state; the TSDoc says the same
    // ("then all are started again in order").
    const sup = track(
      await new Supervisor({
        strategy: "one_for_all",
        children: [worker("a"), worker("t", { restart: "transient" }), worker("c")],
      }).start(),
    );
    const t = await childOf(sup, "t");
    t.cast("exit-normal");
    await t.whenStopped();
    expect((await pids(sup)).t).toBeUndefined(); // transient + normal exit: not restarted

    const a = await childOf(sup, "a");
    const c = await childOf(sup, "c");
    c.cast("crash");
    // The whole one_for_all restart runs in one supervisor message, so once c runs again
    // (seen through a whichChildren round-trip) the restart is complete.
    await restarted(sup, "c", c);
    expect(a.exitReason).toBe("shutdown");

    const after = await sup.whichChildren();
    expect(after.map((x) => x.id)).toEqual(["a", "t", "c"]);
    for (const info of after) expect(info.process?.status, `child ${info.id}`).toBe("running");
    await sup.stop();
  });
});

// ------------------------------------------------------------------ restart types

describe("restart types", () => {
  it("permanent child is restarted after a normal exit and after a crash", async () => {
    const sup = track(
      await new Supervisor({ children: [worker("p", { restart: "permanent" })] }).start(),
    );
    const p1 = await childOf(sup, "p");
    p1.cast("exit-normal");
    expect(await p1.whenStopped()).toBe("normal");
    const p2 = await restarted(sup, "p", p1);

    p2.cast("crash");
    expect(await p2.whenStopped()).toBeInstanceOf(Error);
    const p3 = await restarted(sup, "p", p2);
    expect(p3.status).toBe("running");
    await sup.stop();
  });

  it("transient child is restarted after a crash or a kill, not after a normal or shutdown exit", async () => {
    const sup = track(
      await new Supervisor({
        children: ["crashes", "killed", "normal", "shutdown"].map((id) =>
          worker(id, { restart: "transient" }),
        ),
        maxRestarts: 10,
      }).start(),
    );
    const crashes = await childOf(sup, "crashes");
    const killed = await childOf(sup, "killed");
    const normal = await childOf(sup, "normal");
    const shutdown = await childOf(sup, "shutdown");

    crashes.cast("crash");
    killed.kill();
    normal.cast("exit-normal");
    await shutdown.stop("shutdown");
    await Promise.all([crashes, killed, normal].map((p) => p.whenStopped()));

    await restarted(sup, "crashes", crashes);
    await restarted(sup, "killed", killed);
    // The EXIT messages are queued before this call, so its reply reflects their handling.
    const children = await sup.whichChildren();
    expect(children.map((c) => c.id)).toEqual(["crashes", "killed", "normal", "shutdown"]);
    expect(children.find((c) => c.id === "normal")?.process).toBeUndefined();
    expect(children.find((c) => c.id === "shutdown")?.process).toBeUndefined();
    expect(await sup.countChildren()).toEqual({ specs: 4, active: 2, supervisors: 0, workers: 4 });
    await sup.stop();
  });

  it("temporary child is never restarted and its spec is removed", async () => {
    const sup = track(
      await new Supervisor({
        children: [
          worker("keep"),
          worker("t-crash", { restart: "temporary" }),
          worker("t-normal", { restart: "temporary" }),
          worker("t-killed", { restart: "temporary" }),
        ],
      }).start(),
    );
    const procs = await Promise.all(
      ["t-crash", "t-normal", "t-killed"].map((id) => childOf(sup, id)),
    );
    const [tCrash, tNormal, tKilled] = procs as [Worker, Worker, Worker];
    tCrash.cast("crash");
    tNormal.cast("exit-normal");
    tKilled.kill();
    await Promise.all(procs.map((p) => p.whenStopped()));

    const children = await sup.whichChildren();
    expect(children.map((c) => c.id)).toEqual(["keep"]);
    expect(await sup.countChildren()).toEqual({ specs: 1, active: 1, supervisors: 0, workers: 1 });
    await sup.stop();
  });
});

// ------------------------------------------------------------------ restart intensity

describe("restart intensity", () => {
  it("default intensity is 3 restarts within 5000 ms; one more stops the supervisor", async () => {
    // Only the clock the supervisor reads (performance.now) is faked; timers stay real.
    vi.useFakeTimers({ toFake: ["performance"] });
    const log: string[] = [];
    const sup = track(
      await new Supervisor({ children: [worker("a"), worker("b", { log })] }).start(),
    );
    const crashAndRestart = async () => {
      const a = await childOf(sup, "a");
      a.cast("crash");
      return restarted(sup, "a", a);
    };
    await crashAndRestart(); // t = 0
    vi.advanceTimersByTime(1);
    await crashAndRestart(); // t = 1
    vi.advanceTimersByTime(1);
    await crashAndRestart(); // t = 2: three restarts within the period are allowed
    vi.advanceTimersByTime(4_999);
    // t = 5001: the restart at t = 0 is now more than 5000 ms old, so the window holds 3.
    await crashAndRestart();
    expect(sup.status).toBe("running");

    // Still t = 5001: the restarts at 1, 2, 5001 and this one are 4 within 5000 ms.
    const a = await childOf(sup, "a");
    a.cast("crash");
    const reason = await sup.whenStopped();
    expect(MaxRestartIntensityError.isInstance(reason)).toBe(true);
    const error = reason as MaxRestartIntensityError;
    expect(error.code).toBe("MAX_RESTART_INTENSITY");
    expect(error.maxRestarts).toBe(3);
    expect(error.periodMs).toBe(5_000);
    expect(log).toContain("terminate:b:shutdown");
  });

  it("exceeding the intensity stops the supervisor with MaxRestartIntensityError and stops all its children", async () => {
    const log: string[] = [];
    const sup = track(
      await new Supervisor({
        name: "intense",
        maxRestarts: 1,
        periodMs: 60_000,
        children: ["a", "b", "c"].map((id) => worker(id, { log })),
      }).start(),
    );
    const a = await childOf(sup, "a");
    const c = await childOf(sup, "c");
    const b1 = await childOf(sup, "b");
    b1.cast("crash");
    const b2 = await restarted(sup, "b", b1);
    log.length = 0;

    b2.cast("crash");
    const reason = await sup.whenStopped();

    expect(MaxRestartIntensityError.isInstance(reason)).toBe(true);
    expect((reason as MaxRestartIntensityError).code).toBe("MAX_RESTART_INTENSITY");
    expect((reason as MaxRestartIntensityError).cause).toBe(b2.exitReason);
    expect(sup.status).toBe("stopped");
    expect(sup.exitReason).toBe(reason);
    for (const p of [a, b2, c]) expect(p.status).toBe("stopped");
    expect(a.exitReason).toBe("shutdown");
    expect(c.exitReason).toBe("shutdown");
    expect(log).toEqual(["terminate:b:error", "terminate:c:shutdown", "terminate:a:shutdown"]);
  });

  it("a child supervisor that exceeds its intensity is restarted by its parent, which stops when it exceeds its own", async () => {
    const inner = (): ChildSpec<Supervisor> => ({
      id: "inner",
      type: "supervisor",
      start: () =>
        new Supervisor({
          name: "inner",
          maxRestarts: 0,
          children: [worker("w1"), worker("w2")],
        }).start(),
    });
    const outer = track(
      await new Supervisor({
        name: "outer",
        maxRestarts: 1,
        periodMs: 60_000,
        children: [worker("keeper"), inner()],
      }).start(),
    );
    const keeper = await childOf(outer, "keeper");
    const inner1 = await childOf<Supervisor>(outer, "inner");
    const w1 = await childOf(inner1, "w1");
    const w2 = await childOf(inner1, "w2");

    // Level 1: the inner supervisor gives up at once (maxRestarts 0) ...
    w1.cast("crash");
    const innerReason = await inner1.whenStopped();
    expect(MaxRestartIntensityError.isInstance(innerReason)).toBe(true);
    expect(w2.exitReason).toBe("shutdown");
    // ... which its parent sees as a crash: it restarts it, with fresh children.
    const inner2 = await restarted<Supervisor>(outer, "inner", inner1);
    const fresh = await inner2.whichChildren();
    expect(fresh.map((c) => c.id)).toEqual(["w1", "w2"]);
    for (const c of fresh) {
      expect(c.process?.status).toBe("running");
      expect([w1.pid, w2.pid]).not.toContain(c.process?.pid);
    }
    expect(await childOf(outer, "keeper")).toBe(keeper);

    // Level 2: the same again exceeds the parent's intensity (1 restart), so it stops too.
    (await childOf(inner2, "w1")).cast("crash");
    const outerReason = await outer.whenStopped();
    expect(MaxRestartIntensityError.isInstance(outerReason)).toBe(true);
    expect(MaxRestartIntensityError.isInstance((outerReason as Error).cause)).toBe(true);
    expect(inner2.status).toBe("stopped");
    expect(keeper.exitReason).toBe("shutdown");
    for (const c of fresh) expect(c.process?.status).toBe("stopped");
  });

  it("restarts spread wider than periodMs do not accumulate", async () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    const sup = track(
      await new Supervisor({ maxRestarts: 1, periodMs: 1_000, children: [worker("a")] }).start(),
    );
    let a = await childOf(sup, "a");
    // Six restarts, each more than periodMs after the previous one: never 2 in one period.
    for (let i = 0; i < 6; i++) {
      a.cast("crash");
      a = await restarted(sup, "a", a);
      vi.advanceTimersByTime(1_001);
    }
    expect(sup.status).toBe("running");

    // Two restarts within periodMs exceed maxRestarts 1.
    a.cast("crash");
    a = await restarted(sup, "a", a);
    vi.advanceTimersByTime(999);
    a.cast("crash");
    expect(MaxRestartIntensityError.isInstance(await sup.whenStopped())).toBe(true);
  });
});

// ------------------------------------------------------------------ start and shutdown

describe("start and shutdown order", () => {
  it("children start in order and stop in reverse order", async () => {
    const log: string[] = [];
    const sup = track(
      await new Supervisor({ children: ["a", "b", "c"].map((id) => worker(id, { log })) }).start(),
    );
    expect(log).toEqual(["init:a", "init:b", "init:c"]);
    log.length = 0;
    await sup.stop();
    expect(log).toEqual(["terminate:c:shutdown", "terminate:b:shutdown", "terminate:a:shutdown"]);
    expect(sup.exitReason).toBe("normal");
  });

  it("a child that fails to start makes start() stop the started children in reverse and reject with ChildStartError", async () => {
    const log: string[] = [];
    let dStarted = false;
    const sup = track(
      new Supervisor({
        children: [
          worker("a", { log }),
          worker("b", { log }),
          worker("c", { log, failInit: true }),
          {
            id: "d",
            start: () => {
              dStarted = true;
              return new Worker("d", { log }).start();
            },
          },
        ],
      }),
    );
    const error = await sup.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ChildStartError.isInstance(error)).toBe(true);
    expect((error as ChildStartError).code).toBe("CHILD_START_FAILED");
    expect((error as ChildStartError).childId).toBe("c");
    expect(((error as ChildStartError).cause as Error).message).toBe("init of c failed");
    expect(log).toEqual([
      "init:a",
      "init:b",
      "init:c",
      "terminate:b:shutdown",
      "terminate:a:shutdown",
    ]);
    expect(dStarted).toBe(false);
    expect(sup.status).toBe("stopped");
  });

  it("start() resolving to an actor that was not started is refused", async () => {
    const unstarted = new Worker("lazy");
    // As a static child: the supervisor does not start.
    const refused = track(new Supervisor({ children: [{ id: "lazy", start: () => unstarted }] }));
    const error = await refused.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ChildStartError.isInstance(error)).toBe(true);
    expect((error as ChildStartError).childId).toBe("lazy");
    expect(unstarted.status).toBe("stopped");
    expect(refused.status).toBe("stopped");

    // Through startChild: refused, and the supervisor keeps no spec for it.
    const sup = track(await new Supervisor({ children: [worker("a")] }).start());
    const other = new Worker("other");
    await expect(sup.startChild({ id: "other", start: () => other })).rejects.toSatisfy(
      (e: unknown) => ChildStartError.isInstance(e) && e.childId === "other",
    );
    expect(other.status).not.toBe("running");
    expect((await sup.whichChildren()).map((c) => c.id)).toEqual(["a"]);
    expect(sup.status).toBe("running");
    await sup.stop();

    // The error says what is wrong (the process is not running); it must not report an
    // exit reason ("killed") that only the supervisor's own clean-up produced.
    const cause = (error as ChildStartError).cause;
    expect(InvalidArgumentError.isInstance(cause), `cause: ${String(cause)}`).toBe(true);
  });

  it("a child whose terminate never finishes is killed after its shutdownMs and the supervisor's stop completes", async () => {
    const killed = recordTelemetry("beamclaw:supervisor.child-killed");
    try {
      const log: string[] = [];
      const sup = track(
        await new Supervisor({
          name: "stubborn-terminate",
          children: [
            worker("a", { log }),
            worker("stuck", { log, hangTerminate: true, shutdownMs: 30 }),
            worker("c", { log }),
          ],
        }).start(),
      );
      const stuck = await childOf(sup, "stuck");
      await sup.stop();

      expect(sup.status).toBe("stopped");
      expect(stuck.exitReason).toBe("killed");
      expect(log.filter((l) => l.startsWith("terminate:"))).toEqual([
        "terminate:c:shutdown",
        "terminate:stuck:shutdown",
        "terminate:a:shutdown",
      ]);
      expect(killed.events.filter((e) => e.supervisor === "stubborn-terminate")).toEqual([
        { supervisor: "stubborn-terminate", childId: "stuck", shutdownMs: 30 },
      ]);
    } finally {
      killed.off();
    }
  });

  it("a child whose in-flight handler never finishes is killed after its shutdownMs", async () => {
    const killed = recordTelemetry("beamclaw:supervisor.child-killed");
    try {
      const log: string[] = [];
      const sup = track(
        await new Supervisor({
          name: "stubborn-handler",
          children: [worker("a", { log }), worker("busy", { log, shutdownMs: 30 })],
        }).start(),
      );
      const busy = await childOf(sup, "busy");
      busy.cast("hang");
      await sup.stop();

      expect(busy.exitReason).toBe("killed");
      expect(log).toContain("terminate:a:shutdown");
      expect(log).not.toContain("terminate:busy:shutdown"); // the handler never let it get there
      expect(killed.events.filter((e) => e.supervisor === "stubborn-handler")).toEqual([
        { supervisor: "stubborn-handler", childId: "busy", shutdownMs: 30 },
      ]);
    } finally {
      killed.off();
    }
  });

  it("a process that is not an Actor and never finishes stopping is killed after its shutdownMs", async () => {
    // Any Process can be supervised; this one ignores stop() entirely.
    class Stubborn implements Process {
      static nextPid = 1_000_000;
      readonly pid = Stubborn.nextPid++;
      readonly name = "Stubborn";
      status: Process["status"] = "running";
      exitReason: ExitReason | undefined;
      readonly #monitors = new Set<(reason: ExitReason, process: Process) => void>();
      monitor(onExit: (reason: ExitReason, process: Process) => void): () => void {
        this.#monitors.add(onExit);
        return () => this.#monitors.delete(onExit);
      }
      stop(): Promise<void> {
        return new Promise<void>(() => {});
      }
      kill(): void {
        if (this.status === "stopped") return;
        this.status = "stopped";
        this.exitReason = "killed";
        for (const onExit of this.#monitors) onExit("killed", this);
      }
    }
    const killed = recordTelemetry("beamclaw:supervisor.child-killed");
    try {
      const stubborn = new Stubborn();
      const sup = track(
        await new Supervisor({
          name: "stubborn-process",
          children: [{ id: "s", start: () => stubborn, shutdownMs: 10 }],
        }).start(),
      );
      await sup.stop();
      expect(stubborn.exitReason).toBe("killed");
      expect(killed.events.filter((e) => e.supervisor === "stubborn-process")).toEqual([
        { supervisor: "stubborn-process", childId: "s", shutdownMs: 10 },
      ]);
    } finally {
      killed.off();
    }
  });

  it("shutdownMs 0 kills the child at once, without running terminate", async () => {
    const log: string[] = [];
    const sup = track(
      await new Supervisor({
        children: [
          worker("a", { log }),
          worker("brutal", { log, hangTerminate: true, shutdownMs: 0 }),
        ],
      }).start(),
    );
    const brutal = await childOf(sup, "brutal");
    await sup.terminateChild("brutal");
    expect(brutal.exitReason).toBe("killed");
    expect(log).not.toContain("terminate:brutal:shutdown");
    await sup.stop();
    expect(log).toContain("terminate:a:shutdown");
  });
});

// ------------------------------------------------------------------ child management

describe("child management", () => {
  it("whichChildren lists every child in start order and countChildren counts them", async () => {
    const sup = track(
      await new Supervisor({
        children: [
          worker("a"),
          worker("b", { restart: "transient" }),
          {
            id: "sub",
            type: "supervisor",
            start: () => new Supervisor({ children: [worker("x")] }).start(),
          },
        ],
      }).start(),
    );
    const children = await sup.whichChildren();
    expect(children.map(({ id, type, restart }) => ({ id, type, restart }))).toEqual([
      { id: "a", type: "worker", restart: "permanent" },
      { id: "b", type: "worker", restart: "transient" },
      { id: "sub", type: "supervisor", restart: "permanent" },
    ]);
    for (const c of children) expect(c.process?.status).toBe("running");
    expect(children[2]?.process).toBeInstanceOf(Supervisor);
    expect(await sup.countChildren()).toEqual({ specs: 3, active: 3, supervisors: 1, workers: 2 });

    await sup.terminateChild("b");
    expect((await sup.whichChildren())[1]?.process).toBeUndefined();
    expect(await sup.countChildren()).toEqual({ specs: 3, active: 2, supervisors: 1, workers: 2 });
    await sup.stop();
  });

  it("startChild starts and adds a child and resolves to its process; a duplicate id is refused with InvalidArgumentError", async () => {
    const sup = track(await new Supervisor({ children: [worker("a")] }).start());
    const a = await childOf(sup, "a");
    let made: Worker | undefined;
    const c = await sup.startChild({
      id: "c",
      start: async () => {
        made = await new Worker("c").start();
        return made;
      },
    });
    expect(c).toBe(made);
    expect(c.status).toBe("running");
    expect(await c.call("ping")).toBe("pong:c");
    expect((await sup.whichChildren()).map((x) => [x.id, x.process])).toEqual([
      ["a", a],
      ["c", c],
    ]);

    let startedDuplicate = false;
    const duplicate = sup.startChild({
      id: "a",
      start: () => {
        startedDuplicate = true;
        return new Worker("a2").start();
      },
    });
    await expect(duplicate).rejects.toSatisfy((e: unknown) => InvalidArgumentError.isInstance(e));
    expect(startedDuplicate).toBe(false);
    expect(await childOf(sup, "a")).toBe(a);
    await sup.stop();
  });

  it("terminateChild stops a child and keeps its spec, restartChild starts it again, deleteChild removes the spec", async () => {
    const sup = track(
      await new Supervisor({
        children: [worker("a"), worker("t", { restart: "temporary" })],
      }).start(),
    );
    const a1 = await childOf(sup, "a");

    await sup.terminateChild("a");
    expect(a1.exitReason).toBe("shutdown");
    // A permanent child stopped on request is not restarted.
    expect(await sup.whichChildren()).toEqual([
      { id: "a", process: undefined, type: "worker", restart: "permanent" },
      expect.objectContaining({ id: "t" }),
    ]);

    const a2 = await sup.restartChild("a");
    expect(a2).not.toBe(a1);
    expect(a2.status).toBe("running");
    expect(await childOf(sup, "a")).toBe(a2);
    await expect(sup.restartChild("a")).rejects.toSatisfy((e: unknown) =>
      InvalidArgumentError.isInstance(e),
    );
    await expect(sup.deleteChild("a")).rejects.toSatisfy((e: unknown) =>
      InvalidArgumentError.isInstance(e),
    );
    expect(a2.status).toBe("running");

    await sup.terminateChild("a");
    await sup.deleteChild("a");
    expect((await sup.whichChildren()).map((c) => c.id)).toEqual(["t"]);

    // A temporary child's spec goes away with it.
    await sup.terminateChild("t");
    expect(await sup.whichChildren()).toEqual([]);
    await sup.stop();
  });

  it("requests naming an unknown child fail with ChildNotFoundError", async () => {
    const sup = track(await new Supervisor({ children: [worker("a")] }).start());
    const notFound = (e: unknown) => ChildNotFoundError.isInstance(e) && e.childId === "nope";
    await expect(sup.terminateChild("nope")).rejects.toSatisfy(notFound);
    await expect(sup.restartChild("nope")).rejects.toSatisfy(notFound);
    await expect(sup.deleteChild("nope")).rejects.toSatisfy(notFound);
    await sup.stop();
  });

  it("the supervisor survives a bad request", async () => {
    const sup = track(await new Supervisor({ children: [worker("a"), worker("b")] }).start());
    const before = await pids(sup);

    await expect(sup.startChild(worker("a"))).rejects.toSatisfy((e: unknown) =>
      InvalidArgumentError.isInstance(e),
    );
    await expect(
      sup.startChild({ id: "", start: () => new Worker("x").start() }),
    ).rejects.toSatisfy((e: unknown) => InvalidArgumentError.isInstance(e));
    await expect(
      sup.startChild({
        id: "broken",
        start: () => {
          throw new Error("no");
        },
      }),
    ).rejects.toSatisfy((e: unknown) => ChildStartError.isInstance(e) && e.childId === "broken");
    await expect(sup.terminateChild("nope")).rejects.toSatisfy((e: unknown) =>
      ChildNotFoundError.isInstance(e),
    );
    await expect(sup.restartChild("a")).rejects.toSatisfy((e: unknown) =>
      InvalidArgumentError.isInstance(e),
    );

    expect(sup.status).toBe("running");
    expect(await pids(sup)).toEqual(before);
    const c = await sup.startChild(worker("c"));
    expect(await c.call("ping")).toBe("pong:c");
    expect(await sup.countChildren()).toEqual({ specs: 3, active: 3, supervisors: 0, workers: 3 });
    await sup.stop();
  });
});

// ------------------------------------------------------------------ registry, kill, telemetry

describe("registry via names", () => {
  it("a supervised child is found under its via name after a restart, and the name is free while it is down", async () => {
    const names = new Registry();
    let restartGate: Promise<void> | undefined;
    const sup = track(
      await new Supervisor({
        children: [
          {
            id: "cache",
            via: names.via("cache"),
            start: async () => {
              if (restartGate !== undefined) await restartGate;
              return new Worker("cache").start();
            },
          },
        ],
      }).start(),
    );
    const first = await childOf(sup, "cache");
    expect(names.whereis("cache")).toBe(first);

    const { promise, open } = gate();
    restartGate = promise;
    first.cast("crash");
    await first.whenStopped();
    expect(names.whereis("cache")).toBeUndefined(); // down: the name is free

    open();
    const second = await restarted(sup, "cache", first);
    expect(second.pid).not.toBe(first.pid);
    expect(names.whereis("cache")).toBe(second);
    expect(await names.whereis<Worker>("cache")?.call("ping")).toBe("pong:cache");

    await sup.stop();
    expect(names.whereis("cache")).toBeUndefined();
  });
});

describe("kill", () => {
  it("killing a supervisor kills its children", async () => {
    const log: string[] = [];
    const names = new Registry();
    const sup = track(
      await new Supervisor({
        children: [
          worker("a", { log, via: names.via("a") }),
          {
            id: "sub",
            type: "supervisor",
            start: () =>
              new Supervisor({ children: [worker("x", { log }), worker("y", { log })] }).start(),
          },
        ],
      }).start(),
    );
    const a = await childOf(sup, "a");
    const sub = await childOf<Supervisor>(sup, "sub");
    const x = await childOf(sub, "x");
    const y = await childOf(sub, "y");
    log.length = 0;

    sup.kill();

    expect(sup.exitReason).toBe("killed");
    for (const p of [a, sub, x, y]) {
      expect(p.status).toBe("stopped");
      expect(p.exitReason).toBe("killed");
    }
    expect(log).toEqual([]); // killed processes do not run terminate
    expect(names.whereis("a")).toBeUndefined();
  });
});

describe("telemetry", () => {
  it("a restart is reported on beamclaw:supervisor.restart with childId, reason, strategy and latencyMs", async () => {
    const restarts = recordTelemetry("beamclaw:supervisor.restart");
    try {
      const sup = track(
        await new Supervisor({
          name: "observed",
          strategy: "rest_for_one",
          children: [worker("a"), worker("b")],
        }).start(),
      );
      const b = await childOf(sup, "b");
      b.cast("crash");
      await restarted(sup, "b", b);

      const events = restarts.events.filter((e) => e.supervisor === "observed");
      expect(events).toHaveLength(1);
      const event = events[0]!;
      expect(event.childId).toBe("b");
      expect(event.reason).toBe(b.exitReason);
      expect((event.reason as Error).message).toBe("b crashed");
      expect(event.strategy).toBe("rest_for_one");
      expect(typeof event.latencyMs).toBe("number");
      expect(event.latencyMs).toBeGreaterThanOrEqual(0);
      await sup.stop();
    } finally {
      restarts.off();
    }
  });

  it("giving up is reported on beamclaw:supervisor.max-intensity", async () => {
    const maxIntensity = recordTelemetry("beamclaw:supervisor.max-intensity");
    try {
      const sup = track(
        await new Supervisor({
          name: "gives-up",
          maxRestarts: 0,
          periodMs: 1_234,
          children: [worker("a")],
        }).start(),
      );
      const a = await childOf(sup, "a");
      a.cast("crash");
      await sup.whenStopped();

      expect(maxIntensity.events.filter((e) => e.supervisor === "gives-up")).toEqual([
        { supervisor: "gives-up", maxRestarts: 0, periodMs: 1_234, reason: a.exitReason },
      ]);
    } finally {
      maxIntensity.off();
    }
  });
});
