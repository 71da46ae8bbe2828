/**
 * A cron job's run time limit (`timeoutMs`): `agentRuntimeJobRunner` passes it to
 * `session.send`, so a run past it is cancelled by the runtime and recorded as an `error` run
 * with `RUN_TIMEOUT`; a job without one is unaffected. The limit is set on add, changed and
 * cleared on update, kept in the store (across a restart and across the services of a
 * cluster), carried from `cron.jobs[]` in the configuration, and a bad one is refused with a
 * typed error before anything is stored.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  agentRuntimeJobRunner,
  ConfigError,
  type CronJob,
  CronService,
  CronSupervisor,
  createManualClock,
  InvalidArgumentError,
  LocalPubSub,
  type MemoryStore,
  type ModelCallOptions,
  type ModelRequest,
  type ModelSource,
  PubSubCronSync,
  parseConfig,
} from "../src/index.js";
import { at, DAY, HOUR, MINUTE, openStore, startCron } from "./cron-support.js";
import { abortOf, failureOf } from "./support.js";

const stoppers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of stoppers.splice(0).reverse()) await stop();
});

/**
 * Answers `answer: <prompt>` at once, except: a prompt starting with `hang` waits until the
 * call's signal aborts (as a provider request would) and throws its reason; one starting with
 * `slow` answers after {@link SLOW_MS} (sooner only if aborted). Records every call's signal.
 */
class HangingSource implements ModelSource {
  readonly signals: AbortSignal[] = [];

  async *stream(
    request: Omit<ModelRequest, "model">,
    options: ModelCallOptions & { models: string[] },
  ): AsyncGenerator<{ type: string; [key: string]: unknown }, void, undefined> {
    const asked = [...request.messages]
      .reverse()
      .find((m) => m.role === "user")
      ?.content.map((p) => (p.type === "text" ? p.text : ""))
      .join("");
    if (options.signal !== undefined) this.signals.push(options.signal);
    if (asked?.startsWith("hang") === true) throw await abortOf(options.signal);
    if (asked?.startsWith("slow") === true) {
      let timer: NodeJS.Timeout | undefined;
      const reason = await Promise.race([
        abortOf(options.signal),
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), SLOW_MS);
        }),
      ]);
      clearTimeout(timer);
      if (reason !== undefined) throw reason;
    }
    yield { type: "text-delta", text: `answer: ${asked}` };
    yield { type: "usage", usage: { inputTokens: 4, outputTokens: 2 } };
  }
}

const SLOW_MS = 250;

/** A started runtime (agent `main`) over `store`, answering through a {@link HangingSource}. */
async function runtimeOver(store: MemoryStore) {
  const source = new HangingSource();
  const runtime = new AgentRuntime({
    store,
    models: source,
    agents: [{ id: "main", model: "test/m1" }],
  });
  await runtime.start();
  stoppers.push(() => runtime.stop());
  return { runtime, source };
}

/** A cron supervisor running jobs through `runtime` (manual clock: only `runNow` runs). */
async function cronOver(store: MemoryStore, runtime: AgentRuntime) {
  const clock = createManualClock(at("2026-01-05T00:00:00Z"));
  const crons = await new CronSupervisor({
    store,
    clock,
    runJob: agentRuntimeJobRunner(runtime),
  }).start();
  const stop = () => crons.stop();
  stoppers.push(stop);
  return { crons, stop };
}

describe("a cron job's run time limit, through a real AgentRuntime", () => {
  it("a run past the job's timeoutMs is cancelled and recorded as an error run with RUN_TIMEOUT", async () => {
    const store = await openStore();
    const { runtime, source } = await runtimeOver(store);
    const { crons } = await cronOver(store, runtime);
    const main = await crons.forAgent("main");
    await main.add({ id: "stuck", schedule: { every: DAY }, prompt: "hang on", timeoutMs: 150 });

    const started = performance.now();
    const run = await main.runNow("stuck");
    const elapsed = performance.now() - started;

    expect(run.status).toBe("error");
    expect(run.error).toMatch(/^RUN_TIMEOUT: run .* went past its time limit of 150 ms/);
    // Cut at about the limit: not before it, and long before anything else would end it.
    expect(elapsed).toBeGreaterThanOrEqual(140);
    expect(elapsed).toBeLessThan(3_000);
    // The model call itself was cancelled.
    expect(source.signals).toHaveLength(1);
    expect(source.signals[0]!.aborted).toBe(true);
    const job = await main.get("stuck");
    expect(job.state).toMatchObject({ lastStatus: "error", consecutiveErrors: 1 });
    expect(job.state.lastError).toContain("RUN_TIMEOUT");
    const [logged] = await main.runs("stuck");
    expect(logged).toMatchObject({ runId: run.runId, status: "error" });
    expect(logged!.error).toContain("RUN_TIMEOUT");
  });

  it("a job without a limit, or with a longer one, is unaffected by a slow answer", async () => {
    const store = await openStore();
    const { runtime } = await runtimeOver(store);
    const { crons } = await cronOver(store, runtime);
    const main = await crons.forAgent("main");
    await main.add({ id: "free", schedule: { every: DAY }, prompt: "slow, no limit" });
    await main.add({
      id: "roomy",
      schedule: { every: DAY },
      prompt: "slow, long limit",
      timeoutMs: 10_000,
    });
    await main.add({ id: "tight", schedule: { every: DAY }, prompt: "slow, tight", timeoutMs: 50 });

    const [free, roomy, tight] = await Promise.all([
      main.runNow("free"),
      main.runNow("roomy"),
      main.runNow("tight"),
    ]);
    expect(free).toMatchObject({ status: "ok", output: "answer: slow, no limit" });
    expect(free.error).toBeUndefined();
    expect(roomy).toMatchObject({ status: "ok", output: "answer: slow, long limit" });
    // The same slow answer is cut when the limit is shorter than it.
    expect(tight.status).toBe("error");
    expect(tight.error).toMatch(/^RUN_TIMEOUT: .*time limit of 50 ms/);
  });

  it("the limit survives a restart: a new supervisor over the same store still cuts the run", async () => {
    const store = await openStore();
    const { runtime } = await runtimeOver(store);
    const first = await cronOver(store, runtime);
    await (await first.crons.forAgent("main")).add({
      id: "nightly",
      schedule: { every: DAY },
      prompt: "hang in there",
      timeoutMs: 120,
    });
    await first.stop();

    const second = await cronOver(store, runtime);
    const main = await second.crons.forAgent("main");
    expect((await main.get("nightly")).timeoutMs).toBe(120);
    const run = await main.runNow("nightly");
    expect(run.status).toBe("error");
    expect(run.error).toMatch(/^RUN_TIMEOUT: .*time limit of 120 ms/);
  });
});

describe("a cron job's timeoutMs in the service and the store", () => {
  it("is set on add, changed and cleared on update, kept in the store, and given to the runner", async () => {
    const fixture = await startCron();
    stoppers.push(() => fixture.service.stop());
    const { service, store, runner } = fixture;
    const stored = async () => (await store.cron.getJob("digest")) as CronJob;

    const added = await service.add({
      id: "digest",
      schedule: { every: HOUR },
      prompt: "p",
      timeoutMs: 30_000,
    });
    expect(added.timeoutMs).toBe(30_000);
    expect((await stored()).timeoutMs).toBe(30_000);
    await service.runNow("digest");
    expect(runner.calls.at(-1)!.job.timeoutMs).toBe(30_000);

    expect((await service.update("digest", { timeoutMs: 60_000 })).timeoutMs).toBe(60_000);
    expect((await stored()).timeoutMs).toBe(60_000);
    // A patch without it keeps it.
    const renamed = await service.update("digest", { prompt: "p2" });
    expect(renamed).toMatchObject({ prompt: "p2", timeoutMs: 60_000 });
    await service.runNow("digest");
    expect(runner.calls.at(-1)!.job.timeoutMs).toBe(60_000);

    const cleared = await service.update("digest", { timeoutMs: null });
    expect(cleared).not.toHaveProperty("timeoutMs");
    expect(await stored()).not.toHaveProperty("timeoutMs");
    expect(await service.get("digest")).not.toHaveProperty("timeoutMs");
    await service.runNow("digest");
    expect(runner.calls.at(-1)!.job).not.toHaveProperty("timeoutMs");

    // A job added without one has none.
    const plain = await service.add({ id: "plain", schedule: { every: HOUR }, prompt: "p" });
    expect(plain).not.toHaveProperty("timeoutMs");
  });

  it("a restarted service still has it", async () => {
    const fixture = await startCron();
    stoppers.push(() => fixture.service.stop());
    await fixture.service.add({ id: "a", schedule: { every: HOUR }, prompt: "p", timeoutMs: 5 });
    await fixture.service.add({ id: "b", schedule: { every: HOUR }, prompt: "p", timeoutMs: 9 });
    await fixture.service.update("b", { timeoutMs: 2 ** 31 - 1 });
    await fixture.service.stop();

    const restarted = await fixture.restart();
    const jobs = await restarted.list();
    expect(jobs.map((j) => [j.id, j.timeoutMs])).toEqual([
      ["a", 5],
      ["b", 2 ** 31 - 1],
    ]);
    await restarted.runNow("a");
    expect(fixture.runner.calls.at(-1)!.job.timeoutMs).toBe(5);
  });

  it("refuses a bad timeoutMs on add and update with an InvalidArgumentError naming it; nothing is stored", async () => {
    const fixture = await startCron();
    stoppers.push(() => fixture.service.stop());
    const { service, store } = fixture;
    await service.add({ id: "keep", schedule: { every: HOUR }, prompt: "kept", timeoutMs: 1_000 });
    const before = await store.cron.getJob("keep");
    const bad: unknown[] = [
      0,
      -1,
      1.5,
      2 ** 31,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      "100",
      true,
      {},
      [100],
    ];
    for (const value of bad) {
      const what = `timeoutMs ${String(value)}`;
      const onAdd = await failureOf(() =>
        service.add({
          id: "bad",
          schedule: { every: HOUR },
          prompt: "p",
          timeoutMs: value as never,
        }),
      );
      expect(onAdd, what).toBeInstanceOf(InvalidArgumentError);
      expect((onAdd as Error).message, what).toContain("timeoutMs");
      const onUpdate = await failureOf(() =>
        service.update("keep", { prompt: "changed", timeoutMs: value as never }),
      );
      expect(onUpdate, what).toBeInstanceOf(InvalidArgumentError);
      expect((onUpdate as Error).message, what).toContain("timeoutMs");
    }
    // `null` only clears on update: on add it is no limit value at all.
    const nullAdd = await failureOf(() =>
      service.add({ id: "bad", schedule: { every: HOUR }, prompt: "p", timeoutMs: null as never }),
    );
    expect(nullAdd).toBeInstanceOf(InvalidArgumentError);
    expect((nullAdd as Error).message).toContain("timeoutMs");

    expect(await store.cron.getJob("bad")).toBeUndefined();
    expect(await store.cron.getJob("keep")).toEqual(before);
    expect((await service.list()).map((j) => [j.id, j.prompt, j.timeoutMs])).toEqual([
      ["keep", "kept", 1_000],
    ]);
    // Still fine with a good one.
    expect((await service.update("keep", { timeoutMs: 1 })).timeoutMs).toBe(1);
  });
});

describe("a cron job's timeoutMs from the configuration", () => {
  const config = (jobs: unknown[]) =>
    parseConfig({ agents: [{ id: "ops", model: "a/b" }], cron: { jobs } }).cron.jobs;
  const nightly = { id: "nightly", agentId: "ops", schedule: { every: DAY }, prompt: "p" };

  it("cron.jobs[].timeoutMs is validated, carried into the job, changed and cleared with the file", async () => {
    const store = await openStore();
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const crons = await new CronSupervisor({
      store,
      clock,
      runJob: async () => ({ status: "ok" }),
    }).start();
    stoppers.push(() => crons.stop());

    for (const timeoutMs of [0, -5, 1.5, 2 ** 31, "60000"]) {
      const error = await failureOf(() => config([{ ...nightly, timeoutMs }]));
      expect(error, String(timeoutMs)).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).issues.map((i) => i.path)).toEqual(["cron.jobs[0].timeoutMs"]);
    }

    await crons.applyConfig(config([{ ...nightly, timeoutMs: 90_000 }]));
    const ops = await crons.forAgent("ops");
    expect(await ops.get("nightly")).toMatchObject({ source: "config", timeoutMs: 90_000 });

    await crons.applyConfig(config([{ ...nightly, timeoutMs: 45_000 }]));
    expect((await ops.get("nightly")).timeoutMs).toBe(45_000);

    // Taken out of the file: cleared (the file is the truth for config jobs).
    await crons.applyConfig(config([nightly]));
    expect(await ops.get("nightly")).not.toHaveProperty("timeoutMs");
    expect(await store.cron.getJob("nightly")).not.toHaveProperty("timeoutMs");
  });
});

describe("a cron job's timeoutMs across the services of a cluster", () => {
  it("a change through one service reaches the other, and a run's merged write keeps one made elsewhere", async () => {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = await openStore();
    const sync = new PubSubCronSync({ pubsub: new LocalPubSub(), resyncMs: 10 * MINUTE });
    const seen: Array<number | undefined> = [];
    const start = async () => {
      const service = await new CronService({
        agentId: "ops",
        store,
        clock,
        sync,
        runJob: async (job) => {
          seen.push(job.timeoutMs);
          return { status: "ok" };
        },
      }).start();
      stoppers.push(() => service.stop());
      return service;
    };
    const a = await start();
    const b = await start();

    const t0 = clock.now();
    const due = t0 + 55 * MINUTE;
    await a.add({ id: "report", schedule: { every: HOUR, anchor: due }, prompt: "p" });
    await b.update("report", { timeoutMs: 7_000 });
    expect((await a.get("report")).timeoutMs).toBe(7_000);
    await a.update("report", { timeoutMs: null });
    expect(await b.get("report")).not.toHaveProperty("timeoutMs");

    // Another node sets a limit behind the services' backs (its notification not arrived yet);
    // the run's write of its state is a merge that keeps it.
    await clock.advance(51 * MINUTE);
    const stored = (await store.cron.getJob("report")) as CronJob;
    await store.cron.putJob({ ...stored, timeoutMs: 9_000, updatedAt: t0 + 1 });
    await clock.advance(4 * MINUTE);
    expect(seen).toHaveLength(1);
    const after = (await store.cron.getJob("report")) as CronJob;
    expect(after.timeoutMs).toBe(9_000);
    expect(after.state).toMatchObject({ runCount: 1, lastStatus: "ok" });
  });
});
