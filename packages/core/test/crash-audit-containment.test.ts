/**
 * Crash containment: a user's buggy callback (a telemetry subscriber, a maintenance `onError`)
 * or a failed background publish (a cluster pubsub whose backend is down) must not end the
 * process. Each is reported as a `BeamClawWarning`, and the code around it goes on. Before the
 * fixes these surfaced as an uncaught exception or an unhandled rejection (vitest fails the run).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  AgentRuntime,
  ConfigService,
  CronSupervisor,
  createProviderChain,
  LocalPubSub,
  type PubSub,
  SessionMaintenance,
  subscribeTelemetry,
  subscribeTrace,
  TaskSupervisor,
  traceTelemetry,
} from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { waitFor } from "./support.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Collects the `BeamClawWarning`s emitted while the test runs. */
function collectWarnings(): string[] {
  const messages: string[] = [];
  const onWarning = (warning: Error) => {
    if (warning.name === "BeamClawWarning") messages.push(warning.message);
  };
  process.on("warning", onWarning);
  cleanups.push(() => process.off("warning", onWarning));
  return messages;
}

describe("telemetry subscribers", () => {
  it("a subscribeTelemetry listener that throws is reported, not rethrown as an uncaught exception", async () => {
    const warnings = collectWarnings();
    let calls = 0;
    const off = subscribeTelemetry("beamclaw:actor.start", () => {
      calls++;
      throw new Error("buggy telemetry listener");
    });
    cleanups.push(off);
    const tasks = await new TaskSupervisor({ name: "crash-audit-tasks" }).start();
    cleanups.push(() => tasks.stop());
    expect(tasks.status).toBe("running");
    await expect(tasks.run(() => 42)).resolves.toBe(42);
    await waitFor("the warning", () =>
      warnings.some((w) => w.includes("beamclaw:actor.start") && w.includes("buggy telemetry")),
    );
    // Its later throws are contained too, and not reported one warning per event.
    const before = calls;
    const more = await new TaskSupervisor({ name: "crash-audit-tasks-2" }).start();
    expect(calls).toBeGreaterThan(before);
    cleanups.push(() => more.stop());
    await expect(more.run(() => 43)).resolves.toBe(43);
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings.filter((w) => w.includes("buggy telemetry"))).toHaveLength(1);
  });

  it("a subscribeTrace handler that throws is reported and the traced operation still settles", async () => {
    const warnings = collectWarnings();
    const off = subscribeTrace("beamclaw:cron.run", {
      start: () => {
        throw new Error("buggy start handler");
      },
      asyncEnd: () => {
        throw new Error("buggy asyncEnd handler");
      },
    });
    cleanups.push(off);
    const result = await traceTelemetry(
      "beamclaw:cron.run",
      () => ({ agent: "main", jobId: "j", runId: "r", trigger: "manual" as const, scheduledAt: 0 }),
      async () => "done",
    );
    expect(result).toBe("done");
    await waitFor(
      "both warnings",
      () =>
        warnings.some((w) => w.includes("buggy start handler")) &&
        warnings.some((w) => w.includes("buggy asyncEnd handler")),
    );
  });
});

describe("ConfigService with a pubsub whose backend is down", () => {
  it("a reload whose events:global publish rejects reports it instead of an unhandled rejection", async () => {
    const warnings = collectWarnings();
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-crash-audit-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "beamclaw.yaml");
    const minimal = "agents:\n  - id: main\n    model: anthropic/claude-sonnet-4-5\n";
    await writeFile(path, minimal);
    const local = new LocalPubSub();
    const down: PubSub = {
      subscribe: (topic, handler, options) => local.subscribe(topic, handler, options),
      publish: () => Promise.reject(new Error("redis: connection is closed")),
      subscriberCount: (topic) => local.subscriberCount(topic),
      close: () => local.close(),
    };
    const service = await new ConfigService({ path, watch: false, pubsub: down }).start();
    cleanups.push(() => service.stop());

    await writeFile(path, `${minimal}    maxSteps: 4\n`);
    const changed = await service.reload();
    expect("applied" in changed && changed.applied).toEqual(["agents"]);
    expect(service.current.agents[0]?.maxSteps).toBe(4);

    await writeFile(path, "agents: 12\n");
    const invalid = await service.reload();
    expect(invalid).toBeInstanceOf(Error);
    expect(service.status).toBe("running");

    await waitFor(
      "both warnings",
      () =>
        warnings.some((w) => w.includes("config.changed") && w.includes("connection is closed")) &&
        warnings.some((w) => w.includes("config.invalid") && w.includes("connection is closed")),
    );
  });
});

describe("SessionMaintenance periodic passes", () => {
  it("an onError that throws is reported; the passes go on", async () => {
    const warnings = collectWarnings();
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({
        providers: [createScriptedProvider(["ok"])],
        retry: { maxAttempts: 1 },
      }),
      agents: [{ id: "main", model: "scripted/m" }],
    });
    await runtime.start();
    cleanups.push(() => runtime.stop());
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const passes: number[] = [];
    const errors: unknown[] = [];
    const maintenance = new SessionMaintenance(runtime, {
      settings: { mode: "warn" },
      everyMs: 1000,
      onPass: () => {
        passes.push(passes.length);
        throw new Error("buggy onPass");
      },
      onError: (error) => {
        errors.push(error);
        throw new Error("buggy onError");
      },
    });
    cleanups.push(() => maintenance.stop());
    maintenance.start();
    vi.advanceTimersByTime(1000);
    await waitFor("the first warning", () => warnings.some((w) => w.includes("buggy onError")));
    vi.advanceTimersByTime(1000);
    await waitFor("a second pass", () => passes.length >= 2 && errors.length >= 2);
    expect((errors[0] as Error).message).toBe("buggy onPass");
    await expect(maintenance.stop()).resolves.toBeUndefined();
  });
});

describe("CronSupervisor resync with a store that throws synchronously", () => {
  it("a listJobs that throws instead of rejecting does not escape the resync timer; resyncs go on", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const listJobs = store.cron.listJobs.bind(store.cron);
    let calls = 0;
    // A custom store whose client is gone after an outage: it throws before making a promise.
    store.cron.listJobs = ((...args: Parameters<typeof listJobs>) => {
      calls++;
      if (calls > 1) throw new TypeError("Cannot read properties of null (reading 'query')");
      return listJobs(...args);
    }) as typeof listJobs;
    const sync = { publish: async () => {}, subscribe: () => () => {}, resyncMs: 5 };
    const crons = await new CronSupervisor({
      store,
      runJob: async () => ({ status: "ok" as const }),
      sync,
    }).start();
    cleanups.push(() => crons.stop());
    await waitFor("two failed resyncs", () => calls >= 3);
    expect(crons.status).toBe("running");
  });
});
