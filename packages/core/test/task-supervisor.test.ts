import { getEventListeners } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  AbortedError,
  InvalidArgumentError,
  NoProcessError,
  OverloadedError,
  type TaskContext,
  TaskCrashedError,
  TaskSupervisor,
  type TaskSupervisorOptions,
  TimeoutError,
} from "../src/index.js";
import { activeTimeouts, deferred, failureOf } from "./support.js";

/** Resolves with the signal's reason once it aborts. */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

const live = new Set<TaskSupervisor>();

function supervisor(options?: TaskSupervisorOptions): Promise<TaskSupervisor> {
  const tasks = new TaskSupervisor(options);
  live.add(tasks);
  return tasks.start();
}

afterEach(() => {
  // Safety net only: every test stops its own supervisor.
  for (const tasks of live) tasks.kill();
  live.clear();
});

describe("TaskSupervisor", () => {
  it("settles with the task's result, sync or async", async () => {
    const tasks = await supervisor();
    await expect(tasks.run(() => 42)).resolves.toBe(42);
    await expect(tasks.run(async () => "async result")).resolves.toBe("async result");
    expect(tasks.activeCount).toBe(0);
    await tasks.stop();
  });

  it("rejects with the task's own error, same instance and type", async () => {
    class RateLimited extends Error {
      readonly retryAfterMs = 1_000;
    }
    const tasks = await supervisor();
    const failure = new RateLimited("429");
    const error = await failureOf(() =>
      tasks.run(async () => {
        throw failure;
      }),
    );
    expect(error).toBe(failure);
    expect(error).toBeInstanceOf(RateLimited);
    const syncFailure = new TypeError("bad input");
    await expect(
      tasks.run(() => {
        throw syncFailure;
      }),
    ).rejects.toBe(syncFailure);
    // A failed task is the caller's business: the supervisor keeps running.
    expect(tasks.status).toBe("running");
    await tasks.stop();
  });

  it("rejects a task that throws a non-Error with TaskCrashedError carrying the thrown value as cause", async () => {
    const tasks = await supervisor();
    const error = await failureOf(() =>
      tasks.run(
        async () => {
          throw { status: 500 };
        },
        { name: "fetch-user" },
      ),
    );
    expect(error).toBeInstanceOf(TaskCrashedError);
    expect(error).toMatchObject({ code: "TASK_CRASHED", cause: { status: 500 } });
    expect((error as Error).message).toContain("fetch-user");
    await tasks.stop();
  });

  it("rejects a task that overruns timeoutMs with TimeoutError and aborts the task's signal", async () => {
    const tasks = await supervisor();
    let signalReason: Promise<unknown> | undefined;
    const error = await failureOf(() =>
      tasks.run(
        async ({ signal }: TaskContext) => {
          signalReason = aborted(signal);
          await signalReason; // a well-behaved task ends when its signal aborts
          return "too late";
        },
        { timeoutMs: 30 },
      ),
    );
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({ code: "TIMEOUT", timeoutMs: 30 });
    expect(await signalReason).toBe(error);
    await tasks.stop();
  });

  it("rejects with TimeoutError on time even when the task ignores its signal", async () => {
    const tasks = await supervisor();
    const release = deferred<string>();
    await expect(tasks.run(() => release.promise, { timeoutMs: 30 })).rejects.toBeInstanceOf(
      TimeoutError,
    );
    // The task still runs (and counts) until it actually finishes.
    expect(tasks.activeCount).toBe(1);
    release.resolve("finally done");
    await tasks.stop();
    expect(tasks.activeCount).toBe(0);
  });

  it("applies defaultTimeoutMs to tasks that set no timeout", async () => {
    const tasks = await supervisor({ defaultTimeoutMs: 30 });
    const error = await failureOf(() => tasks.run(({ signal }) => aborted(signal)));
    expect(error).toMatchObject({ code: "TIMEOUT", timeoutMs: 30 });
    await tasks.stop();
  });

  it("never times out a task early, even when timeoutMs is beyond the 32-bit timer range", async () => {
    // Node clamps timer delays above 2^31 - 1 ms to 1 ms (with a TimeoutOverflowWarning).
    const warnings = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    try {
      const tasks = await supervisor();
      const result = tasks.run(
        () => new Promise((resolve) => setTimeout(() => resolve("done"), 30)),
        { timeoutMs: 2 ** 31 },
      );
      await expect(result).resolves.toBe("done");
      await tasks.stop();
    } finally {
      warnings.mockRestore();
    }
  });

  it("rejects with AbortedError when the caller's signal aborts, and aborts the task's signal", async () => {
    const tasks = await supervisor();
    const caller = new AbortController();
    const started = deferred();
    let taskSignal: AbortSignal | undefined;
    const result = failureOf(() =>
      tasks.run(
        ({ signal }) => {
          taskSignal = signal;
          started.resolve();
          return aborted(signal);
        },
        { signal: caller.signal },
      ),
    );
    await started.promise;
    const why = new Error("user navigated away");
    caller.abort(why);
    const error = await result;
    expect(error).toBeInstanceOf(AbortedError);
    expect(error).toMatchObject({ code: "ABORTED", cause: why });
    expect(taskSignal?.aborted).toBe(true);
    await tasks.stop();
  });

  it("rejects at once with AbortedError, without running the task, when the caller's signal is already aborted", async () => {
    const tasks = await supervisor();
    const fn = vi.fn();
    const error = await failureOf(() => tasks.run(fn, { signal: AbortSignal.abort("gone") }));
    expect(error).toBeInstanceOf(AbortedError);
    expect(fn).not.toHaveBeenCalled();
    expect(tasks.activeCount).toBe(0);
    await tasks.stop();
  });

  it("lets go of the caller's signal and its timer once the task settles", async () => {
    const tasks = await supervisor();
    const caller = new AbortController();
    const before = activeTimeouts();
    const release = deferred<string>();
    const result = tasks.run(() => release.promise, { signal: caller.signal, timeoutMs: 10_000 });
    expect(getEventListeners(caller.signal, "abort").length).toBeGreaterThan(0);
    expect(activeTimeouts()).toBe(before + 1);
    release.resolve("done");
    await expect(result).resolves.toBe("done");
    await tasks.stop();
    expect(getEventListeners(caller.signal, "abort")).toHaveLength(0);
    expect(activeTimeouts()).toBe(before);
  });

  it("refuses a task beyond maxTasks with OverloadedError, and accepts again once one settles", async () => {
    const tasks = await supervisor({ maxTasks: 2 });
    const first = deferred<string>();
    const second = deferred<string>();
    const running = [tasks.run(() => first.promise), tasks.run(() => second.promise)];
    expect(tasks.activeCount).toBe(2);

    const fn = vi.fn();
    const error = await failureOf(() => tasks.run(fn));
    expect(error).toBeInstanceOf(OverloadedError);
    expect(error).toMatchObject({ code: "OVERLOADED", limit: 2, isRetryable: true });
    expect(fn).not.toHaveBeenCalled();

    first.resolve("one");
    await expect(running[0]).resolves.toBe("one");
    await expect(tasks.run(() => "three")).resolves.toBe("three");
    second.resolve("two");
    await expect(running[1]).resolves.toBe("two");
    await tasks.stop();
  });

  it("aborts every running task on stop(): they reject with AbortedError and stop() waits for them to settle", async () => {
    const tasks = await supervisor();
    const log: string[] = [];
    const results = [1, 2, 3].map((n) =>
      failureOf(() =>
        tasks.run(async ({ signal }) => {
          await aborted(signal);
          await new Promise((resolve) => setImmediate(resolve)); // clean-up takes a moment
          log.push(`task ${n} cleaned up`);
        }),
      ),
    );
    expect(tasks.activeCount).toBe(3);
    await tasks.stop();
    expect(log.sort()).toEqual(["task 1 cleaned up", "task 2 cleaned up", "task 3 cleaned up"]);
    expect(tasks.activeCount).toBe(0);
    for (const error of await Promise.all(results)) {
      expect(error).toBeInstanceOf(AbortedError);
    }
    expect(tasks.exitReason).toBe("normal");
  });

  it("rejects run() on a supervisor that is not running with NoProcessError", async () => {
    const neverStarted = new TaskSupervisor();
    const fn = vi.fn();
    expect(await failureOf(() => neverStarted.run(fn))).toBeInstanceOf(NoProcessError);

    const tasks = await supervisor();
    await tasks.stop("shutdown");
    const error = await failureOf(() => tasks.run(fn));
    expect(error).toBeInstanceOf(NoProcessError);
    expect(error).toMatchObject({ code: "NO_PROCESS", exitReason: "shutdown" });
    expect(fn).not.toHaveBeenCalled();
  });

  it("refuses invalid maxTasks, defaultTimeoutMs and timeoutMs with InvalidArgumentError", async () => {
    for (const maxTasks of [0, -1, 1.5, Number.NaN]) {
      expect(() => new TaskSupervisor({ maxTasks })).toThrow(InvalidArgumentError);
    }
    for (const defaultTimeoutMs of [0, -1, Number.NaN]) {
      expect(() => new TaskSupervisor({ defaultTimeoutMs })).toThrow(InvalidArgumentError);
    }
    const tasks = await supervisor();
    const fn = vi.fn();
    expect(await failureOf(() => tasks.run(fn, { timeoutMs: 0 }))).toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(fn).not.toHaveBeenCalled();
    await tasks.stop();
  });

  it("uses the name option as its display name", async () => {
    const tasks = await supervisor({ name: "tools" });
    expect(tasks.name).toBe("tools");
    await tasks.stop();
    const error = await failureOf(() => tasks.run(() => 1));
    expect((error as Error).message).toContain("tools");
  });
});
