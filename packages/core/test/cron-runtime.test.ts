/**
 * `CronSupervisor` (per-agent services under a DynamicSupervisor) and jobs run end to end
 * through a real `AgentRuntime` over a `MemoryStore` and the scripted provider.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  agentRuntimeJobRunner,
  type CronJob,
  CronService,
  CronSupervisor,
  createManualClock,
  createProviderChain,
  type MemoryStore,
  parseConfig,
} from "../src/index.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { DAY, HOUR, MINUTE, openStore, recordingRunner } from "./cron-support.js";
import { waitFor } from "./support.js";

const stoppers: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const stop of stoppers.splice(0).reverse()) await stop();
});

async function supervisor(store: MemoryStore, extra: { agents?: string[] } = {}) {
  const clock = createManualClock(Date.parse("2026-01-05T00:00:00Z"));
  const runner = recordingRunner(clock);
  const crons = await new CronSupervisor({ store, clock, runJob: runner.runJob, ...extra }).start();
  stoppers.push(() => crons.stop());
  return { crons, clock, runner };
}

describe("CronSupervisor", () => {
  it("forAgent starts one cron service per agent, registered as cron:<agentId>", async () => {
    const { crons } = await supervisor(await openStore());
    const ops = await crons.forAgent("ops");
    expect(ops).toBeInstanceOf(CronService);
    expect(ops.agentId).toBe("ops");
    expect(await crons.forAgent("OPS")).toBe(ops);
    const [a, b] = await Promise.all([crons.forAgent("main"), crons.forAgent("main")]);
    expect(a).toBe(b);
    expect(crons.registry.whereis("cron:ops")).toBe(ops);
    expect(crons.runningAgents().sort()).toEqual(["main", "ops"]);
    expect((await crons.countChildren()).active).toBe(2);
  });

  it("start() starts the services of agents with stored jobs, which catch up what they missed", async () => {
    const store = await openStore();
    const first = await supervisor(store);
    const ops = await first.crons.forAgent("ops");
    const t0 = first.clock.now();
    await ops.add({ id: "hourly", schedule: { every: HOUR }, prompt: "p", catchUp: "run-once" });
    await first.crons.stop();
    // A new process, three hours later: nobody calls forAgent("ops").
    const clock = createManualClock(t0 + 3 * HOUR + MINUTE);
    const runner = recordingRunner(clock);
    const crons = await new CronSupervisor({ store, clock, runJob: runner.runJob }).start();
    stoppers.push(() => crons.stop());
    expect(crons.runningAgents()).toEqual(["ops"]);
    await clock.advance(0);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([t0 + 3 * HOUR]);
  });

  it("a crashed cron service is restarted by its supervisor and reloads its jobs", async () => {
    const { crons, clock, runner } = await supervisor(await openStore());
    const ops = await crons.forAgent("ops");
    await ops.add({ id: "j", schedule: { every: HOUR }, prompt: "p" });
    ops.kill();
    const restarted = await waitFor("the restarted service", () => {
      const current = crons.registry.whereis<CronService>("cron:ops");
      return current !== undefined && current !== ops && current.status === "running" && current;
    });
    expect((await restarted.list()).map((j) => j.id)).toEqual(["j"]);
    await clock.advance(HOUR);
    expect(runner.timesOf("j")).toHaveLength(1);
  });

  it("applyConfig adds, updates and removes config jobs and leaves jobs added through the API alone", async () => {
    const { crons } = await supervisor(await openStore());
    const config = (jobs: unknown[]) =>
      parseConfig({ agents: [{ id: "ops", model: "a/b" }], cron: { jobs } }).cron.jobs;
    const ops = await crons.forAgent("ops");
    await ops.add({ id: "manual", schedule: { every: HOUR }, prompt: "mine" });
    await crons.applyConfig(
      config([
        { id: "a", agentId: "ops", schedule: { every: 60_000 }, prompt: "one" },
        { id: "b", agentId: "ops", schedule: { cron: "0 9 * * *" }, prompt: "two" },
      ]),
    );
    const before = await ops.get("a");
    await crons.applyConfig(
      config([{ id: "a", agentId: "ops", schedule: { every: 60_000 }, prompt: "one, changed" }]),
    );
    const jobs = await ops.list();
    expect(jobs.map((j: CronJob) => [j.id, j.source, j.prompt])).toEqual([
      ["a", "config", "one, changed"],
      ["manual", "api", "mine"],
    ]);
    expect((await ops.get("a")).createdAt).toBe(before.createdAt);
  });

  it("stopping the supervisor stops every service and leaves no timer", async () => {
    const { crons, clock } = await supervisor(await openStore(), { agents: ["a", "b"] });
    await (await crons.forAgent("a")).add({ id: "x", schedule: { every: HOUR }, prompt: "p" });
    await (await crons.forAgent("b")).add({ id: "y", schedule: { every: HOUR }, prompt: "p" });
    expect(clock.activeTimers).toBe(2); // one per agent
    await crons.stop();
    expect(clock.activeTimers).toBe(0);
  });
});

describe("jobs through a real AgentRuntime", () => {
  async function runtimeWith(responses: string[]) {
    const store = await openStore();
    const provider = createScriptedProvider(responses);
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider], models: [], sleep: async () => {} }),
      agents: [
        { id: "main", model: "scripted/m" },
        { id: "ops", model: "scripted/m" },
      ],
    });
    await runtime.start();
    stoppers.push(() => runtime.stop());
    const clock = createManualClock(Date.parse("2026-01-05T00:00:00Z"));
    const crons = await new CronSupervisor({
      store,
      clock,
      runJob: agentRuntimeJobRunner(runtime),
    }).start();
    stoppers.push(() => crons.stop());
    return { store, provider, runtime, clock, crons };
  }

  it("a main job sends its prompt into the agent's main session and logs the answer", async () => {
    const { crons, store, provider } = await runtimeWith(["All systems nominal."]);
    const ops = await crons.forAgent("ops");
    await ops.add({
      id: "check",
      schedule: { every: DAY },
      session: "main",
      prompt: "Check the systems.",
    });
    const run = await ops.runNow("check");
    expect(run).toMatchObject({
      status: "ok",
      output: "All systems nominal.",
      sessionKey: "agent:ops:main",
    });
    const transcript = await store.transcripts.read("agent:ops:main");
    expect(transcript[0]!.entry).toMatchObject({
      message: { role: "user", content: [{ type: "text", text: "Check the systems." }] },
    });
    expect(provider.requests).toHaveLength(1);
  });

  it("an isolated job runs in a fresh session of its own agent, deleted 24 h later", async () => {
    const { crons, store, clock } = await runtimeWith(["first", "second"]);
    const ops = await crons.forAgent("ops");
    await ops.add({ id: "digest", schedule: { every: DAY }, prompt: "Write the digest." });
    const first = await ops.runNow("digest");
    // `cron:` keys belong to the runtime's default agent ("main"), so the job of "ops"
    // runs under an agent-scoped key.
    expect(first.sessionKey).toBe(`agent:ops:cron:digest.${first.startedAt}`);
    expect(first.output).toBe("first");
    expect((await store.sessions.get(first.sessionKey!))?.agentId).toBe("ops");
    await clock.advance(DAY + HOUR); // the daily run happens; the sweep sees the first run's age
    await waitFor("the old isolated session to be deleted", async () => {
      await clock.advance(0);
      return (await store.sessions.get(first.sessionKey!)) === undefined;
    });
    const [second] = await ops.runs("digest");
    expect(second!.output).toBe("second");
    expect(await store.sessions.get(second!.sessionKey!)).toBeDefined();
  });

  it("a job of the default agent runs in a cron:<jobId>.<startedAt> session", async () => {
    const { crons } = await runtimeWith(["done"]);
    const main = await crons.forAgent("main");
    await main.add({ id: "tidy", schedule: { every: DAY }, prompt: "Tidy up." });
    const run = await main.runNow("tidy");
    expect(run.sessionKey).toBe(`cron:tidy.${run.startedAt}`);
    expect(run.status).toBe("ok");
  });

  it("a run that fails in the runtime is an error run with the runtime's error", async () => {
    const { crons } = await runtimeWith([]); // the scripted provider has nothing to say
    const ops = await crons.forAgent("ops");
    await ops.add({ id: "x", schedule: { every: DAY }, prompt: "p" });
    const run = await ops.runNow("x");
    expect(run.status).toBe("error");
    expect(run.error).toMatch(/no response left/);
  });
});

const twoAgentConfig = (jobs: unknown[]) =>
  parseConfig({
    agents: [
      { id: "ops", model: "a/b" },
      { id: "sales", model: "a/b" },
    ],
    cron: { jobs },
  }).cron.jobs;

async function jobOwners(store: MemoryStore): Promise<string[]> {
  return ((await store.cron.listJobs()) as CronJob[])
    .map((job) => `${job.id}:${job.agentId}:${job.prompt}`)
    .sort();
}

describe("a config job moved to another agent", () => {
  it("is removed from the old agent and added to the new one on a reload", async () => {
    const store = await openStore();
    const { crons, clock, runner } = await supervisor(store);
    await crons.applyConfig(
      twoAgentConfig([{ id: "report", agentId: "ops", schedule: { every: HOUR }, prompt: "ops" }]),
    );
    await crons.applyConfig(
      twoAgentConfig([
        { id: "report", agentId: "sales", schedule: { every: HOUR }, prompt: "sales" },
      ]),
    );
    expect(await jobOwners(store)).toEqual(["report:sales:sales"]);
    await clock.advance(HOUR);
    expect(runner.calls.map((c) => `${c.jobId}:${c.context.agentId}`)).toEqual(["report:sales"]);
  });

  it("is moved at a start over a store that still has it under the old agent", async () => {
    const store = await openStore();
    const first = await supervisor(store);
    await first.crons.applyConfig(
      twoAgentConfig([{ id: "report", agentId: "ops", schedule: { every: HOUR }, prompt: "ops" }]),
    );
    await first.crons.stop();
    const second = await supervisor(store);
    await second.crons.applyConfig(
      twoAgentConfig([
        { id: "report", agentId: "sales", schedule: { every: HOUR }, prompt: "sales" },
      ]),
    );
    expect(await jobOwners(store)).toEqual(["report:sales:sales"]);
  });

  it("two agents can swap job ids", async () => {
    const store = await openStore();
    const { crons } = await supervisor(store);
    await crons.applyConfig(
      twoAgentConfig([
        { id: "a", agentId: "ops", schedule: { every: HOUR }, prompt: "1" },
        { id: "b", agentId: "sales", schedule: { every: HOUR }, prompt: "2" },
      ]),
    );
    await crons.applyConfig(
      twoAgentConfig([
        { id: "a", agentId: "sales", schedule: { every: HOUR }, prompt: "3" },
        { id: "b", agentId: "ops", schedule: { every: HOUR }, prompt: "4" },
      ]),
    );
    expect(await jobOwners(store)).toEqual(["a:sales:3", "b:ops:4"]);
  });
});
