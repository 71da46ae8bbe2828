/**
 * `DynamicSupervisor`: children started at runtime, always `one_for_one`, children that will
 * not be restarted are forgotten.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  Actor,
  ChildNotFoundError,
  ChildStartError,
  type DynamicChildSpec,
  DynamicSupervisor,
  type ExitReason,
  InvalidArgumentError,
  MaxChildrenError,
  MaxRestartIntensityError,
  type Process,
  type RestartType,
} from "../src/index.js";
import { killTracked, track, waitFor } from "./support.js";

type WorkerCommand = "crash" | "exit-normal";

/** A worker that crashes or exits on command and records its lifecycle in `log`. */
class Worker extends Actor<"ping", string, WorkerCommand> {
  constructor(
    readonly label: string,
    private readonly log?: string[],
  ) {
    super({ name: `Worker(${label})` });
  }

  protected override init(): void {
    this.log?.push(`init:${this.label}`);
  }

  protected override handleCall(): string {
    return `pong:${this.label}`;
  }

  protected override handleCast(command: WorkerCommand): void {
    if (command === "crash") throw new Error(`${this.label} crashed`);
    void this.stop("normal");
  }

  protected override terminate(reason: ExitReason): void {
    this.log?.push(`terminate:${this.label}:${typeof reason === "string" ? reason : "error"}`);
  }
}

function worker(
  label: string,
  options: { restart?: RestartType; id?: string; log?: string[] } = {},
): DynamicChildSpec<Worker> {
  const spec: DynamicChildSpec<Worker> = {
    start: () => new Worker(label, options.log).start(),
  };
  if (options.restart !== undefined) spec.restart = options.restart;
  if (options.id !== undefined) spec.id = options.id;
  return spec;
}

afterEach(() => {
  killTracked();
});

async function ids(sup: DynamicSupervisor): Promise<string[]> {
  return (await sup.whichChildren()).map((c) => c.id);
}

/** Waits until child `id` runs as a process other than `old`. */
function restarted(sup: DynamicSupervisor, id: string, old: Process): Promise<Worker> {
  return waitFor(`child "${id}" to be restarted`, async () => {
    const process = (await sup.whichChildren()).find((c) => c.id === id)?.process;
    return process !== undefined && process !== old && process.status === "running"
      ? (process as Worker)
      : undefined;
  });
}

describe("DynamicSupervisor", () => {
  it("startChild resolves to the running process it started", async () => {
    const sup = track(await new DynamicSupervisor().start());
    let made: Worker | undefined;
    const child = await sup.startChild({
      start: async () => {
        made = await new Worker("s").start();
        return made;
      },
    });
    expect(child).toBe(made);
    expect(child.status).toBe("running");
    expect(await child.call("ping")).toBe("pong:s");
    expect((await sup.whichChildren()).map((c) => c.process)).toEqual([child]);
    await sup.stop();
    expect(child.exitReason).toBe("shutdown");
  });

  it("child ids are generated when the spec has none, and are unique", async () => {
    const sup = track(await new DynamicSupervisor().start());
    const x = await sup.startChild(worker("x"));
    const y = await sup.startChild(worker("y"));
    const named = await sup.startChild(worker("named", { id: "named" }));
    const z = await sup.startChild(worker("z"));
    const children = await sup.whichChildren();
    expect(children.map((c) => c.process)).toEqual([x, y, named, z]);
    const list = children.map((c) => c.id);
    expect(new Set(list).size).toBe(4);
    expect(list[2]).toBe("named");
    for (const id of list) expect(id.length).toBeGreaterThan(0);

    await expect(sup.startChild(worker("again", { id: "named" }))).rejects.toSatisfy((e: unknown) =>
      InvalidArgumentError.isInstance(e),
    );
    // A generated id can be used like a given one.
    await sup.terminateChild(list[0]!);
    expect(x.exitReason).toBe("shutdown");
    expect(await ids(sup)).toEqual(list.slice(1));
    await sup.stop();
  });

  it("a generated id never collides with an id given explicitly", async () => {
    const sup = track(await new DynamicSupervisor().start());
    const first = await sup.startChild(worker("first"));
    const firstId = (await sup.whichChildren()).find((c) => c.process === first)!.id;
    // Give a later child, explicitly, the id a sequential scheme generates next
    // ("child-1" -> "child-2"); the next generated id must avoid it.
    const nextId = /\d+$/.test(firstId)
      ? firstId.replace(/\d+$/, (n) => String(Number(n) + 1))
      : "explicit";
    await sup.startChild(worker("explicit", { id: nextId }));

    const generated = await sup.startChild(worker("generated"));
    expect(generated.status).toBe("running");
    expect(new Set(await ids(sup)).size).toBe(3);
    await sup.stop();
  });

  it("terminateChild stops a child given its process or its id, and forgets it", async () => {
    const sup = track(await new DynamicSupervisor().start());
    const a = await sup.startChild(worker("a"));
    const b = await sup.startChild(worker("b", { id: "b" }));
    const c = await sup.startChild(worker("c"));

    await sup.terminateChild(a);
    expect(a.exitReason).toBe("shutdown");
    await sup.terminateChild("b");
    expect(b.exitReason).toBe("shutdown");

    expect((await sup.whichChildren()).map((x) => x.process)).toEqual([c]);
    expect(await sup.countChildren()).toEqual({ specs: 1, active: 1, supervisors: 0, workers: 1 });
    // Forgotten: a second terminate does not find them, and the supervisor carries on.
    await expect(sup.terminateChild("b")).rejects.toSatisfy(
      (e: unknown) => ChildNotFoundError.isInstance(e) && e.childId === "b",
    );
    await expect(sup.terminateChild(a)).rejects.toSatisfy((e: unknown) =>
      ChildNotFoundError.isInstance(e),
    );
    expect(sup.status).toBe("running");
    await sup.stop();
  });

  it("terminateChild(process) also finds a child that was restarted", async () => {
    const sup = track(await new DynamicSupervisor().start());
    const first = await sup.startChild(worker("r", { id: "r", restart: "permanent" }));
    first.cast("crash");
    const second = await restarted(sup, "r", first);

    await sup.terminateChild(second);
    expect(second.exitReason).toBe("shutdown");
    expect(await ids(sup)).toEqual([]);
    await sup.stop();
  });

  it("maxChildren refuses one more child with MaxChildrenError", async () => {
    const sup = track(await new DynamicSupervisor({ maxChildren: 2 }).start());
    const a = await sup.startChild(worker("a"));
    await sup.startChild(worker("b"));
    let startedThird = false;
    const third = sup.startChild({
      start: () => {
        startedThird = true;
        return new Worker("c").start();
      },
    });
    await expect(third).rejects.toSatisfy(
      (e: unknown) => MaxChildrenError.isInstance(e) && e.code === "MAX_CHILDREN" && e.limit === 2,
    );
    expect(startedThird).toBe(false);
    expect(sup.status).toBe("running");
    expect(await sup.countChildren()).toMatchObject({ specs: 2, active: 2 });

    // Room again once a child is gone.
    await sup.terminateChild(a);
    const c = await sup.startChild(worker("c"));
    expect(c.status).toBe("running");
    await sup.stop();
  });

  it("a transient child that exits normally is forgotten", async () => {
    const sup = track(await new DynamicSupervisor().start());
    const t = await sup.startChild(worker("t", { id: "t", restart: "transient" }));
    const other = await sup.startChild(worker("o", { id: "o" }));
    t.cast("exit-normal");
    expect(await t.whenStopped()).toBe("normal");
    // The EXIT message is queued before this call, so its reply reflects it.
    expect(await ids(sup)).toEqual(["o"]);
    expect(await sup.countChildren()).toEqual({ specs: 1, active: 1, supervisors: 0, workers: 1 });
    expect(other.status).toBe("running");
    await sup.stop();
  });

  it("a crashed transient child is restarted", async () => {
    const sup = track(await new DynamicSupervisor().start());
    const t = await sup.startChild(worker("t", { id: "t", restart: "transient" }));
    t.cast("crash");
    expect(await t.whenStopped()).toBeInstanceOf(Error);
    const t2 = await restarted(sup, "t", t);
    expect(await t2.call("ping")).toBe("pong:t");
    expect(await ids(sup)).toEqual(["t"]);

    const k = await sup.startChild(worker("k", { id: "k", restart: "transient" }));
    k.kill();
    const k2 = await restarted(sup, "k", k);
    expect(k2.status).toBe("running");
    await sup.stop();
  });

  it("a temporary child is never restarted and is forgotten", async () => {
    const sup = track(await new DynamicSupervisor().start());
    const t = await sup.startChild(worker("t", { restart: "temporary" }));
    t.cast("crash");
    await t.whenStopped();
    expect(await ids(sup)).toEqual([]);
    await sup.stop();
  });

  it("restart intensity applies: too many restarts stop it with MaxRestartIntensityError and all its children", async () => {
    const sup = track(await new DynamicSupervisor({ maxRestarts: 1, periodMs: 60_000 }).start());
    const x = await sup.startChild(worker("x", { id: "x" }));
    const y = await sup.startChild(worker("y", { id: "y" }));
    x.cast("crash");
    const x2 = await restarted(sup, "x", x);
    x2.cast("crash");

    const reason = await sup.whenStopped();
    expect(MaxRestartIntensityError.isInstance(reason)).toBe(true);
    expect((reason as MaxRestartIntensityError).code).toBe("MAX_RESTART_INTENSITY");
    expect(y.exitReason).toBe("shutdown");
    expect(x2.status).toBe("stopped");
  });

  it("stop() stops all children in reverse start order", async () => {
    const log: string[] = [];
    const sup = track(await new DynamicSupervisor().start());
    for (const label of ["a", "b", "c", "d"]) await sup.startChild(worker(label, { log }));
    expect(log).toEqual(["init:a", "init:b", "init:c", "init:d"]);
    log.length = 0;
    await sup.stop();
    expect(log).toEqual([
      "terminate:d:shutdown",
      "terminate:c:shutdown",
      "terminate:b:shutdown",
      "terminate:a:shutdown",
    ]);
  });

  it("a child that fails to start rejects startChild with ChildStartError and leaves no spec", async () => {
    const sup = track(await new DynamicSupervisor({ maxChildren: 1 }).start());
    await expect(
      sup.startChild({
        id: "broken",
        start: () => Promise.reject(new Error("cannot start")),
      }),
    ).rejects.toSatisfy((e: unknown) => ChildStartError.isInstance(e) && e.childId === "broken");
    expect(await ids(sup)).toEqual([]);
    // The failed child does not hold one of the maxChildren slots.
    const ok = await sup.startChild(worker("ok"));
    expect(ok.status).toBe("running");
    await sup.stop();
  });
});
