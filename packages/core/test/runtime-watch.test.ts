import { describe, expect, it } from "vitest";
import { Actor, type DownMessage, type ExitReason, type Process } from "../src/index.js";
import { deferred } from "./support.js";

/** An actor that exposes the protected `watch` helper and reports its DOWN messages. */
class Watcher extends Actor<unknown, unknown, unknown, unknown> {
  readonly downs: DownMessage[] = [];

  watchProcess(process: Process): () => void {
    return this.watch(process);
  }

  protected override handleInfo(message: unknown): void {
    this.downs.push(message as DownMessage);
  }
}

/** A long-lived process that counts the monitors set on it and still active. */
class CountingProcess implements Process {
  readonly pid = -1;
  readonly name = "counting";
  status: Process["status"] = "running";
  exitReason: ExitReason | undefined = undefined;
  readonly #monitors = new Set<(reason: ExitReason, process: Process) => void>();

  get activeMonitors(): number {
    return this.#monitors.size;
  }

  monitor(onExit: (reason: ExitReason, process: Process) => void): () => void {
    const entry = (reason: ExitReason, process: Process) => onExit(reason, process);
    this.#monitors.add(entry);
    return () => {
      this.#monitors.delete(entry);
    };
  }

  async stop(reason: ExitReason = "normal"): Promise<void> {
    this.status = "stopped";
    this.exitReason = reason;
    const monitors = Array.from(this.#monitors);
    this.#monitors.clear();
    for (const onExit of monitors) onExit(reason, this);
  }

  kill(): void {
    void this.stop("killed");
  }
}

describe("Actor.watch after the watcher exits", () => {
  it("removes the watcher's monitors from the watched process when the watcher stops, is killed or crashes", async () => {
    const target = new CountingProcess();
    // Churn: many short-lived watchers of one long-lived process.
    for (let i = 0; i < 50; i++) {
      const watcher = await new Watcher().start();
      watcher.watchProcess(target);
      watcher.watchProcess(target);
      expect(target.activeMonitors).toBe(2);
      if (i % 3 === 0) await watcher.stop();
      else if (i % 3 === 1) watcher.kill();
      else await watcher.stop(new Error("crash"));
      expect(target.activeMonitors).toBe(0);
    }
    await target.stop();
  });

  it("still delivers DOWN while running, and unwatching after the watcher stopped is harmless", async () => {
    const target = new CountingProcess();
    const watcher = await new Watcher().start();
    const unwatch = watcher.watchProcess(target);
    const other = new CountingProcess();
    watcher.watchProcess(other);
    // The DOWN message is handled synchronously by the idle watcher.
    await other.stop("shutdown");
    expect(watcher.downs).toEqual([{ type: "DOWN", process: other, reason: "shutdown" }]);
    // A process that exited is no longer watched: nothing is left to remove later.
    expect(other.activeMonitors).toBe(0);
    expect(target.activeMonitors).toBe(1);
    await watcher.stop();
    expect(target.activeMonitors).toBe(0);
    expect(() => unwatch()).not.toThrow();
    expect(target.activeMonitors).toBe(0);
    await target.stop();
  });

  it("does not set a monitor when watching from an actor that is already stopping", async () => {
    const target = new CountingProcess();
    const release = deferred<void>();
    class Slow extends Watcher {
      protected override terminate(): Promise<void> {
        this.watchProcess(target);
        return release.promise;
      }
    }
    const watcher = await new Slow().start();
    const stopped = watcher.stop();
    await Promise.resolve();
    await Promise.resolve();
    expect(watcher.status).toBe("stopping");
    release.resolve();
    await stopped;
    expect(target.activeMonitors).toBe(0);
    await target.stop();
  });
});
