import { describe, expect, it } from "vitest";
import { Actor, DynamicSupervisor, Supervisor } from "../src/index.js";
import { deferred, failureOf } from "./support.js";

class Worker extends Actor<"ping", string> {
  protected override handleCall(): string {
    return "pong";
  }
}

describe("a supervisor killed while a child is starting", () => {
  it("kills a child of DynamicSupervisor.startChild that finishes starting after the supervisor was killed", async () => {
    const sup = await new DynamicSupervisor().start();
    const gate = deferred<void>();
    const childStarted = deferred<void>();
    const child = new Worker();
    const starting = sup.startChild({
      start: async () => {
        await gate.promise;
        await child.start();
        childStarted.resolve();
        return child;
      },
    });
    sup.kill();
    // The request fails at once: the supervisor is gone.
    await failureOf(() => starting);
    gate.resolve();
    await childStarted.promise;
    // ...and the child it was starting goes with it.
    expect(await child.whenStopped()).toBe("killed");
  });

  it("kills the children a Supervisor's init starts after the supervisor was killed", async () => {
    const gate = deferred<void>();
    const first = new Worker();
    const second = new Worker();
    const sup = new Supervisor({
      children: [
        {
          id: "first",
          start: async () => {
            await gate.promise;
            return first.start();
          },
        },
        { id: "second", start: () => second.start() },
      ],
    });
    const started = sup.start();
    sup.kill();
    gate.resolve();
    await failureOf(() => started);
    expect(sup.status).toBe("stopped");
    expect(first.status).toBe("stopped");
    // Never started: the supervisor stopped starting children once it was killed.
    expect(second.status).toBe("new");
  });

  it("kills a child restarted after the supervisor was killed during the restart", async () => {
    const gate = deferred<void>();
    const restarting = deferred<void>();
    const restarted = deferred<Worker>();
    let starts = 0;
    const sup = await new Supervisor({
      children: [
        {
          id: "worker",
          start: async () => {
            starts++;
            if (starts === 1) return new Worker().start();
            restarting.resolve();
            await gate.promise;
            const worker = await new Worker().start();
            restarted.resolve(worker);
            return worker;
          },
        },
      ],
    }).start();
    const original = (await sup.whichChildren())[0]!.process!;
    await original.stop(new Error("crash"));
    await restarting.promise;
    sup.kill();
    gate.resolve();
    const worker = await restarted.promise;
    expect(await worker.whenStopped()).toBe("killed");
    expect(starts).toBe(2);
  });
});
