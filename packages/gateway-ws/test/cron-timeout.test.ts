/**
 * A cron job's run time limit over the wire: `cron.add` / `cron.update` read an `agentTurn`
 * payload's `timeoutSeconds` (`0`: no limit) into core's job `timeoutMs`, `cron.list` and the
 * job results report it back, a run past it ends as an `error` run with `RUN_TIMEOUT` in
 * `cron.runs`, a bad value is `INVALID_PARAMS` naming the field with nothing stored, and a
 * `cron.jobs[].timeoutMs` from the config file is reported too.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import {
  closeClients,
  rpcError,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
  waitFor,
} from "./support.js";

useSchemaCheck();
const started: StartedGateway[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await closeClients();
  await stopStacks();
  for (const gateway of started.splice(0)) await gateway.stop();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A model answer that starts and then never ends (until the run is cancelled). */
const HANGS = {
  events: [
    { type: "response-start" as const, model: "m1" },
    { type: "wait" as const, until: new Promise<never>(() => {}) },
  ],
};

function job(name: string, payload: Record<string, unknown> = {}) {
  return {
    name,
    schedule: { kind: "every", everyMs: 3_600_000 },
    sessionTarget: "isolated",
    wakeMode: "now",
    payload: { kind: "agentTurn", message: `run ${name}`, ...payload },
  };
}

/** The job as core stores it. */
async function coreJob(stack: Stack, id: string) {
  return (await stack.cron!.forAgent("main")).get(id);
}

async function listed(client: TestClient, id: string): Promise<Wire> {
  const { jobs } = await client.request("cron.list", { includeDisabled: true });
  return (jobs as Wire[]).find((j) => j.id === id);
}

describe("cron job time limits", () => {
  it("payload.timeoutSeconds cuts a hanging run: cron.runs shows an error run with RUN_TIMEOUT", async () => {
    const stack = await startStack({ cron: true, responses: [HANGS] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const added = await client.request("cron.add", job("Slow digest", { timeoutSeconds: 1 }));
    expect(added.payload).toEqual({
      kind: "agentTurn",
      message: "run Slow digest",
      timeoutSeconds: 1,
    });
    expect((await coreJob(stack, added.id)).timeoutMs).toBe(1_000);
    expect((await listed(client, added.id)).payload.timeoutSeconds).toBe(1);

    const startedAt = performance.now();
    expect(await client.request("cron.run", { id: added.id, mode: "force" })).toEqual({
      ok: true,
      ran: true,
      jobId: added.id,
    });
    const finished = await client.waitEvent(
      "cron",
      (p) => p.action === "finished" && p.jobId === added.id,
    );
    const elapsed = performance.now() - startedAt;
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(4_000);
    expect(finished.payload.status).toBe("error");
    expect(finished.payload.error).toContain("RUN_TIMEOUT");

    const runs = await client.request("cron.runs", { id: added.id });
    expect(runs.entries).toHaveLength(1);
    expect(runs.entries[0]).toMatchObject({ jobId: added.id, status: "error" });
    expect(runs.entries[0].error).toMatch(/^RUN_TIMEOUT: .*time limit of 1000 ms/);
    const after = await listed(client, added.id);
    expect(after.state).toMatchObject({ lastRunStatus: "error", consecutiveErrors: 1 });
    expect(after.state.lastError).toContain("RUN_TIMEOUT");
  });

  it("cron.update sets, keeps and clears the limit; 0 and no timeoutSeconds mean none", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const plain = await client.request("cron.add", job("Plain"));
    expect(plain.payload).toEqual({ kind: "agentTurn", message: "run Plain" });
    expect(await coreJob(stack, plain.id)).not.toHaveProperty("timeoutMs");
    const zero = await client.request("cron.add", job("Zero", { timeoutSeconds: 0 }));
    expect(zero.payload).not.toHaveProperty("timeoutSeconds");
    expect(await coreJob(stack, zero.id)).not.toHaveProperty("timeoutMs");

    // Only the limit: the message stays.
    const set = await client.request("cron.update", {
      id: plain.id,
      patch: { payload: { kind: "agentTurn", timeoutSeconds: 2.5 } },
    });
    expect(set.payload).toEqual({ kind: "agentTurn", message: "run Plain", timeoutSeconds: 2.5 });
    expect((await coreJob(stack, plain.id)).timeoutMs).toBe(2_500);

    // Other changes, a new message included, keep it.
    const renamed = await client.request("cron.update", {
      id: plain.id,
      patch: { name: "Renamed", payload: { kind: "agentTurn", message: "new text" } },
    });
    expect(renamed.payload).toEqual({
      kind: "agentTurn",
      message: "new text",
      timeoutSeconds: 2.5,
    });
    expect((await listed(client, plain.id)).payload.timeoutSeconds).toBe(2.5);

    const cleared = await client.request("cron.update", {
      id: plain.id,
      patch: { payload: { kind: "agentTurn", timeoutSeconds: 0 } },
    });
    expect(cleared.payload).toEqual({ kind: "agentTurn", message: "new text" });
    expect(await coreJob(stack, plain.id)).not.toHaveProperty("timeoutMs");
    expect((await listed(client, plain.id)).payload).not.toHaveProperty("timeoutSeconds");

    // The longest limit a run can have.
    const longest = await client.request("cron.update", {
      id: zero.id,
      patch: { payload: { kind: "agentTurn", timeoutSeconds: 2_147_483 } },
    });
    expect(longest.payload.timeoutSeconds).toBe(2_147_483);
    expect((await coreJob(stack, zero.id)).timeoutMs).toBe(2_147_483_000);
  });

  it("refuses a bad timeoutSeconds with INVALID_PARAMS naming the field, storing nothing", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const kept = await client.request("cron.add", job("Kept", { timeoutSeconds: 30 }));
    const bad: unknown[] = [-1, -0.5, "10", null, true, {}, [1], 2_147_484, 1e12];
    for (const timeoutSeconds of bad) {
      const what = JSON.stringify(timeoutSeconds);
      const onAdd = await rpcError(
        client.requestUnchecked("cron.add", job("Bad", { timeoutSeconds })),
      );
      expect(onAdd.code, what).toBe("INVALID_REQUEST");
      expect(onAdd.details, what).toEqual({
        code: "INVALID_PARAMS",
        field: "payload.timeoutSeconds",
      });
      expect(onAdd.message, what).toContain("payload.timeoutSeconds");
      const onUpdate = await rpcError(
        client.requestUnchecked("cron.update", {
          id: kept.id,
          patch: { name: "Changed", payload: { kind: "agentTurn", timeoutSeconds } },
        }),
      );
      expect(onUpdate.code, what).toBe("INVALID_REQUEST");
      expect(onUpdate.details, what).toEqual({
        code: "INVALID_PARAMS",
        field: "patch.payload.timeoutSeconds",
      });
    }
    // A non-finite number (JSON's 1e999 parses as Infinity), sent as raw text.
    const params = JSON.stringify(job("Infinite", { timeoutSeconds: 0 })).replace(
      '"timeoutSeconds":0',
      '"timeoutSeconds":1e999',
    );
    client.sendRaw(`{"type":"req","id":"raw-inf","method":"cron.add","params":${params}}`);
    const [response] = await waitFor("the raw request's answer", () =>
      client.responses("raw-inf").length > 0 ? client.responses("raw-inf") : undefined,
    );
    expect(response).toMatchObject({
      ok: false,
      error: {
        code: "INVALID_REQUEST",
        details: { code: "INVALID_PARAMS", field: "payload.timeoutSeconds" },
      },
    });

    const { jobs } = await client.request("cron.list", { includeDisabled: true });
    expect((jobs as Wire[]).map((j) => [j.name, j.payload.timeoutSeconds])).toEqual([["Kept", 30]]);
    expect((await coreJob(stack, kept.id)).timeoutMs).toBe(30_000);
    expect((await (await stack.cron!.forAgent("main")).list()).map((j) => j.id)).toEqual([kept.id]);
  });

  it("a cron.jobs[].timeoutMs from the config file is the job's limit, listed in seconds", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-cron-timeout-"));
    dirs.push(dir);
    const configPath = join(dir, "beamclaw.yaml");
    await writeFile(
      configPath,
      [
        "store: { kind: memory }",
        'providers: { local: { kind: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", apiKey: none } }',
        "agents: { main: { model: local/m1 } }",
        "gateway: { host: 127.0.0.1, auth: { mode: token, token: ${GW_TOKEN} } }",
        "cron:",
        "  jobs:",
        "    - { id: nightly, agentId: main, schedule: { every: 86400000 }, prompt: report, timeoutMs: 1500 }",
        "    - { id: hourly, agentId: main, schedule: { every: 3600000 }, prompt: check }",
        "",
      ].join("\n"),
    );
    const gateway = await startFromConfig({ configPath, env: { GW_TOKEN: TOKEN }, port: 0 });
    started.push(gateway);
    const client = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
    });
    expect((await listed(client, "nightly")).payload).toEqual({
      kind: "agentTurn",
      message: "report",
      timeoutSeconds: 1.5,
    });
    expect((await listed(client, "hourly")).payload).toEqual({
      kind: "agentTurn",
      message: "check",
    });
  });
});
