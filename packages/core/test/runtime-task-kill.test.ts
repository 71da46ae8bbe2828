import { describe, expect, it } from "vitest";
import { AbortedError, TaskSupervisor } from "../src/index.js";
import { failureOf } from "./support.js";

describe("TaskSupervisor.kill()", () => {
  it("aborts every running task, so that no caller waits forever on a killed supervisor", async () => {
    const tasks = await new TaskSupervisor().start();
    const signals: AbortSignal[] = [];
    // A task that only ends when its signal aborts (as a well-behaved fetch would).
    const running = [1, 2].map(() =>
      tasks.run(
        ({ signal }) =>
          new Promise<string>((resolve) => {
            signals.push(signal);
            signal.addEventListener("abort", () => resolve("cleaned up"), { once: true });
          }),
      ),
    );
    expect(tasks.activeCount).toBe(2);

    tasks.kill();

    expect(tasks.exitReason).toBe("killed");
    expect(signals.map((s) => s.aborted)).toEqual([true, true]);
    for (const task of running) {
      const error = await failureOf(() => task);
      expect(AbortedError.isInstance(error)).toBe(true);
    }
    expect(tasks.activeCount).toBe(0);
  });

  it("aborts the tasks when killed while its stop waits for them", async () => {
    const tasks = await new TaskSupervisor().start();
    let signal: AbortSignal | undefined;
    const task = tasks.run(
      (context) =>
        new Promise<void>((resolve) => {
          signal = context.signal;
          signal.addEventListener("abort", () => resolve(), { once: true });
        }),
    );
    // stop() begins, then kill() comes before terminate runs.
    const stopped = tasks.stop();
    tasks.kill();
    await stopped;
    expect(signal?.aborted).toBe(true);
    expect(AbortedError.isInstance(await failureOf(() => task))).toBe(true);
  });
});
