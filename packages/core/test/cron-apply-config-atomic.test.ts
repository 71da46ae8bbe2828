/**
 * `CronSupervisor.applyConfig` over several agents is all or nothing: a list that one agent
 * cannot take (an id held by an API job, a bad schedule, an id listed for two agents) is
 * refused before any agent changes; a store write refused midway puts the previous
 * configuration back and throws `CRON_CONFIG_NOT_APPLIED` with the failure as its cause.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  CronError,
  type CronJob,
  type CronJobConfig,
  CronSupervisor,
  createManualClock,
  InvalidArgumentError,
  type MemoryStore,
  parseConfig,
  type Store,
} from "../src/index.js";
import { HOUR, openStore, recordingRunner, storedJob } from "./cron-support.js";

const stoppers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stoppers.splice(0).reverse()) await stop();
});

/** Ids whose write (put or delete) the store refuses, as a full disk would. */
type Refusals = { put: Set<string>; delete: Set<string> };

/** The memory store, with the writes of some job ids refused. */
function refusing(memory: MemoryStore): { store: Pick<Store, "cron" | "kv">; refuse: Refusals } {
  const refuse: Refusals = { put: new Set(), delete: new Set() };
  const full = (id: string) =>
    Object.assign(new Error(`no space left on device (job ${id})`), { code: "ENOSPC" });
  const cron: Store["cron"] = {
    getJob: (id) => memory.cron.getJob(id),
    putJob: (job) =>
      refuse.put.has(`${job.id}:${job.agentId}`)
        ? Promise.reject(full(job.id))
        : memory.cron.putJob(job),
    deleteJob: (id) =>
      refuse.delete.has(id) ? Promise.reject(full(id)) : memory.cron.deleteJob(id),
    listJobs: (agentId) => memory.cron.listJobs(agentId),
    appendRun: (run, options) => memory.cron.appendRun(run, options),
    listRuns: (jobId, options) => memory.cron.listRuns(jobId, options),
  };
  return { store: { cron, kv: memory.kv }, refuse };
}

async function setup() {
  const memory = await openStore();
  const { store, refuse } = refusing(memory);
  const clock = createManualClock(Date.parse("2026-01-05T00:00:00Z"));
  const runner = recordingRunner(clock);
  const crons = await new CronSupervisor({ store, clock, runJob: runner.runJob }).start();
  stoppers.push(() => crons.stop());
  return { memory, refuse, crons, clock, runner };
}

const config = (jobs: unknown[]): CronJobConfig[] =>
  parseConfig({
    agents: ["alpha", "beta", "gamma"].map((id) => ({ id, model: "a/b" })),
    cron: { jobs },
  }).cron.jobs;

const job = (id: string, agentId: string, prompt: string, extra: object = {}) => ({
  id,
  agentId,
  schedule: { every: HOUR },
  prompt,
  ...extra,
});

/** Every job in the store, and every job each service holds, as `id:agent:source:prompt`. */
async function snapshot(memory: MemoryStore, crons: CronSupervisor) {
  const line = (j: CronJob) => `${j.id}:${j.agentId}:${j.source}:${j.prompt}`;
  const stored = ((await memory.cron.listJobs()) as CronJob[]).map(line).sort();
  const held: string[] = [];
  for (const agentId of crons.runningAgents()) {
    for (const j of await (await crons.forAgent(agentId)).list()) held.push(line(j));
  }
  return { stored, held: held.sort() };
}

/** The first agent's jobs changed and one added, the second's changed, and `more`. */
const changed = (...more: ReturnType<typeof job>[]) =>
  config([
    job("a1", "alpha", "a1 after"),
    job("a2", "alpha", "a2 new"),
    job("b1", "beta", "b1 after"),
    ...more,
  ]);

/** The error `applyConfig(list)` rejects with. */
const refusal = (crons: CronSupervisor, list: CronJobConfig[]) =>
  crons.applyConfig(list).catch((e: unknown) => e);

const initial = () =>
  config([job("a1", "alpha", "a1 before"), job("b1", "beta", "b1 before"), job("m", "alpha", "m")]);

describe("CronSupervisor.applyConfig across agents", () => {
  it("an id the second agent cannot take (an API job's) changes no agent", async () => {
    const { memory, crons } = await setup();
    await crons.applyConfig(initial());
    await (await crons.forAgent("gamma")).add({
      id: "taken",
      schedule: { every: HOUR },
      prompt: "api",
    });
    const before = await snapshot(memory, crons);
    const error = await refusal(crons, changed(job("taken", "beta", "from the file")));
    expect(error).toBeInstanceOf(CronError);
    expect((error as CronError).code).toBe("CRON_JOB_EXISTS");
    expect((error as CronError).jobId).toBe("taken");
    expect(await snapshot(memory, crons)).toEqual(before);
  });

  it("a bad schedule for the second agent changes no agent", async () => {
    const { memory, crons } = await setup();
    await crons.applyConfig(initial());
    const before = await snapshot(memory, crons);
    const list = config([job("a1", "alpha", "a1 after"), job("b1", "beta", "b1 after")]);
    // Past the config schema (as a caller building the list itself could).
    list[1] = { ...list[1]!, schedule: { cron: "not a cron" } };
    const error = await refusal(crons, list);
    expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
    expect(await snapshot(memory, crons)).toEqual(before);
  });

  it("one id listed for two agents is refused, naming it, and changes nothing", async () => {
    const { memory, crons } = await setup();
    await crons.applyConfig(initial());
    const before = await snapshot(memory, crons);
    // Past the config schema, which refuses it too (as a caller building the list could).
    const list = config([job("a1", "alpha", "a1 after"), job("twice", "alpha", "x")]);
    list.push({ ...list[1]!, agentId: "beta", prompt: "y" });
    const error = await refusal(crons, list);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toContain('"twice"');
    expect(await snapshot(memory, crons)).toEqual(before);
  });

  it("a store write refused at the second agent puts the first agent's jobs back", async () => {
    const { memory, refuse, crons, clock, runner } = await setup();
    await crons.applyConfig(initial());
    const a1 = await (await crons.forAgent("alpha")).get("a1");
    const before = await snapshot(memory, crons);
    refuse.put.add("b2:beta");
    const wanted = changed(job("b2", "beta", "b2 new"), job("m", "alpha", "m"));
    const error = await refusal(crons, wanted);
    expect(error).toBeInstanceOf(CronError);
    expect((error as CronError).code).toBe("CRON_CONFIG_NOT_APPLIED");
    expect((error as Error).message).toContain("the previous configuration was restored");
    expect((error as Error).cause).toMatchObject({ code: "ENOSPC" });
    expect(await snapshot(memory, crons)).toEqual(before);
    // The updated job kept its identity and state; nothing added runs.
    expect((await (await crons.forAgent("alpha")).get("a1")).createdAt).toBe(a1.createdAt);
    await clock.advance(HOUR);
    expect(runner.calls.map((c) => c.jobId).sort()).toEqual(["a1", "b1", "m"]);
    // Once the store takes writes again, the same configuration applies whole.
    refuse.put.clear();
    await crons.applyConfig(wanted);
    expect((await snapshot(memory, crons)).stored).toEqual([
      "a1:alpha:config:a1 after",
      "a2:alpha:config:a2 new",
      "b1:beta:config:b1 after",
      "b2:beta:config:b2 new",
      "m:alpha:config:m",
    ]);
  });

  it("a moved job the new agent cannot store goes back to its old agent", async () => {
    const { memory, refuse, crons } = await setup();
    await crons.applyConfig(initial());
    const before = await snapshot(memory, crons);
    refuse.put.add("m:beta");
    const error = await refusal(
      crons,
      config([
        job("a1", "alpha", "a1 before"),
        job("b1", "beta", "b1 before"),
        job("m", "beta", "m"),
      ]),
    );
    expect((error as CronError).code).toBe("CRON_CONFIG_NOT_APPLIED");
    expect(await snapshot(memory, crons)).toEqual(before);
  });

  it("a removal the store refuses leaves the jobs as they were", async () => {
    const { memory, refuse, crons } = await setup();
    await crons.applyConfig(initial());
    const before = await snapshot(memory, crons);
    refuse.delete.add("b1");
    const error = await refusal(
      crons,
      config([job("a1", "alpha", "a1 after"), job("m", "alpha", "m")]),
    );
    expect((error as CronError).code).toBe("CRON_CONFIG_NOT_APPLIED");
    expect(await snapshot(memory, crons)).toEqual(before);
  });

  it("a valid configuration that adds, updates, removes and moves across agents applies whole", async () => {
    const { memory, crons } = await setup();
    await crons.applyConfig(initial());
    await crons.applyConfig(
      config([
        job("a1", "alpha", "a1 after"),
        job("m", "beta", "m moved"),
        job("g1", "gamma", "g1 new"),
      ]),
    );
    expect((await snapshot(memory, crons)).stored).toEqual([
      "a1:alpha:config:a1 after",
      "g1:gamma:config:g1 new",
      "m:beta:config:m moved",
    ]);
  });

  it("a config job whose stored schedule no longer validates is dropped with the rest of a new list", async () => {
    const { memory, crons } = await setup();
    await crons.applyConfig(initial());
    // Written by an older version: its schedule does not validate any more.
    await memory.cron.putJob(
      storedJob({
        id: "old",
        agentId: "alpha",
        schedule: { cron: "99 * * * *" },
        source: "config",
      }),
    );
    await crons.stop();
    const again = await new CronSupervisor({
      store: memory,
      clock: createManualClock(Date.parse("2026-01-05T00:00:00Z")),
      runJob: recordingRunner(createManualClock(0)).runJob,
    }).start();
    stoppers.push(() => again.stop());
    await again.forAgent("alpha");
    expect((await snapshot(memory, again)).held).toContain("old:alpha:config:p");
    await again.applyConfig(changed());
    const after = await snapshot(memory, again);
    expect(after.stored).toEqual([
      "a1:alpha:config:a1 after",
      "a2:alpha:config:a2 new",
      "b1:beta:config:b1 after",
    ]);
    expect(after.held).toEqual(after.stored);
  });
});
