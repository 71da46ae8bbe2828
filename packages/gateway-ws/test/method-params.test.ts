/**
 * Params the gateway used to take on trust: `cron.list` and `cron.runs` (every field checked,
 * the protocol's filters and sorts), agent ids given to `cron.*` (only agents that exist),
 * the approval request operators are shown, session labels, and `node.event`'s `payloadJSON`.
 */
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ExecApprovals } from "../src/approvals.js";
import type { GatewayError } from "../src/protocol/errors.js";
import {
  closeClients,
  connectNode,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
} from "./support.js";

useSchemaCheck();
const servers: Server[] = [];
afterEach(async () => {
  await closeClients();
  await stopStacks();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

function job(name: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    schedule: { kind: "every", everyMs: 3_600_000 },
    sessionTarget: "isolated",
    wakeMode: "now",
    payload: { kind: "agentTurn", message: `run ${name}` },
    ...extra,
  };
}

/** A webhook receiver on 127.0.0.1 answering each POST with the next status. */
async function webhook(statuses: number[]): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.statusCode = statuses.shift() ?? 200;
      res.end();
    });
  });
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
}

describe("cron.list params", () => {
  it("refuses every field of the wrong type or out of range, naming it", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const bad: Array<[string, unknown]> = [
      ["limit", 0],
      ["limit", 201],
      ["limit", 1.5],
      ["limit", "10"],
      ["offset", -1],
      ["offset", 0.5],
      ["enabled", "yes"],
      ["enabled", true],
      ["includeDisabled", "true"],
      ["query", 5],
      ["scheduleKind", "hourly"],
      ["lastRunStatus", "failed"],
      ["trigger", 1],
      ["sortBy", "createdAtMs"],
      ["sortDir", "up"],
      ["agentId", ""],
      ["compact", 1],
      ["includeDeliveryPreviews", "no"],
    ];
    for (const [field, value] of bad) {
      const error = await rpcError(client.requestUnchecked("cron.list", { [field]: value }));
      expect(error.code, `${field}: ${JSON.stringify(value)}`).toBe("INVALID_REQUEST");
      expect(error.details).toEqual({ code: "INVALID_PARAMS", field });
    }
  });

  it("filters by schedule kind, last status, trigger and query; sorts by name, update or next run", async () => {
    const stack = await startStack({ cron: true, responses: [{ text: "fine" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const hourly = await client.request("cron.add", job("Bravo hourly"));
    const daily = await client.request(
      "cron.add",
      job("alpha daily", { schedule: { kind: "cron", expr: "0 9 * * *", tz: "UTC" } }),
    );
    const once = await client.request(
      "cron.add",
      job("Charlie once", { schedule: { kind: "at", at: "2099-01-01T00:00:00Z" } }),
    );
    const off = await client.request("cron.add", job("delta off", { enabled: false }));
    await client.request("cron.run", { id: hourly.id, mode: "force" });
    await client.waitEvent("cron", (p) => p.action === "finished" && p.jobId === hourly.id);

    const ids = async (params: Record<string, unknown>) =>
      ((await client.request("cron.list", params)).jobs as Wire[]).map((j) => j.id);

    // Default: enabled jobs, soonest next run first.
    const byNextRun = await ids({});
    expect(byNextRun).toHaveLength(3);
    expect(byNextRun.at(-1)).toBe(once.id); // 2099
    expect(await ids({ scheduleKind: "cron" })).toEqual([daily.id]);
    expect(await ids({ scheduleKind: "at" })).toEqual([once.id]);
    expect(await ids({ scheduleKind: "stream" })).toEqual([]);
    expect(await ids({ lastRunStatus: "ok" })).toEqual([hourly.id]);
    expect((await ids({ lastRunStatus: "unknown" })).sort()).toEqual([daily.id, once.id].sort());
    expect(await ids({ trigger: "conditional" })).toEqual([]);
    expect(await ids({ trigger: "unconditional" })).toHaveLength(3);
    expect(await ids({ query: "DAILY" })).toEqual([daily.id]);
    // Case-insensitive by name; every job, disabled ones included.
    expect(await ids({ sortBy: "name", enabled: "all" })).toEqual([
      daily.id,
      hourly.id,
      once.id,
      off.id,
    ]);
    expect(await ids({ sortBy: "name", sortDir: "desc", enabled: "all" })).toEqual([
      off.id,
      once.id,
      hourly.id,
      daily.id,
    ]);
    // A change makes a job the most recently updated.
    await new Promise((resolve) => setTimeout(resolve, 5));
    await client.request("cron.update", { id: once.id, patch: { name: "Charlie once!" } });
    expect((await ids({ sortBy: "updatedAtMs", sortDir: "desc" }))[0]).toBe(once.id);
    expect((await ids({ sortBy: "updatedAtMs" })).at(-1)).toBe(once.id);
    expect(await ids({ enabled: "disabled" })).toEqual([off.id]);
    const page = await client.request("cron.list", { sortBy: "name", limit: 2, offset: 1 });
    expect(page).toMatchObject({ total: 3, offset: 1, limit: 2, hasMore: false });
    expect(page.jobs.map((j: Wire) => j.id)).toEqual([hourly.id, once.id]);
  });
});

describe("cron.runs params", () => {
  it("refuses fields of the wrong type, and job ids with a path separator", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const bad: Array<[string, unknown]> = [
      ["limit", 0],
      ["offset", "1"],
      ["scope", "everything"],
      ["id", "../etc"],
      ["jobId", "a\\b"],
      ["runId", ""],
      ["statuses", []],
      ["statuses", ["ok", "bad"]],
      ["status", "failed"],
      ["deliveryStatuses", "delivered"],
      ["deliveryStatus", "sent"],
      ["query", {}],
      ["sortDir", 1],
    ];
    for (const [field, value] of bad) {
      const error = await rpcError(client.requestUnchecked("cron.runs", { [field]: value }));
      expect(error.code, `${field}: ${JSON.stringify(value)}`).toBe("INVALID_REQUEST");
      expect(error.details).toEqual({ code: "INVALID_PARAMS", field });
    }
  });

  it("reports each run's delivery and job name, and filters by delivery, run id and query", async () => {
    const stack = await startStack({
      cron: true,
      responses: [{ text: "first report" }, { text: "second report" }, { text: "plain" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const url = await webhook([200, 500]);
    const hooked = await client.request(
      "cron.add",
      job("Hooked", { delivery: { mode: "webhook", to: url } }),
    );
    const plain = await client.request("cron.add", job("Plain"));
    // One run at a time, each finished (its delivery made) before the next starts.
    for (const [i, id] of [hooked.id, hooked.id, plain.id].entries()) {
      await client.request("cron.run", { id, mode: "force" });
      await expect
        .poll(async () => (await client.request("cron.runs", { scope: "all" })).entries.length)
        .toBe(i + 1);
    }
    const all = (await client.request("cron.runs", { scope: "all", sortDir: "asc" }))
      .entries as Wire[];
    expect(all.map((e) => [e.jobName, e.deliveryStatus, e.delivered])).toEqual([
      ["Hooked", "delivered", true],
      ["Hooked", "not-delivered", false],
      ["Plain", "not-requested", undefined],
    ]);
    expect(all[1].deliveryError).toBe("webhook answered HTTP 500");

    const delivered = await client.request("cron.runs", {
      scope: "all",
      deliveryStatus: "delivered",
    });
    expect(delivered.entries.map((e: Wire) => e.runId)).toEqual([all[0].runId]);
    const either = await client.request("cron.runs", {
      scope: "all",
      deliveryStatuses: ["not-delivered", "not-requested"],
    });
    expect(either.entries).toHaveLength(2);
    const one = await client.request("cron.runs", { scope: "all", runId: all[2].runId });
    expect(one.entries.map((e: Wire) => e.jobId)).toEqual([plain.id]);
    const found = await client.request("cron.runs", { scope: "all", query: "SECOND" });
    expect(found.entries.map((e: Wire) => e.summary)).toEqual(["second report"]);
    const byName = await client.request("cron.runs", { scope: "all", query: "plain" });
    expect(byName.entries.map((e: Wire) => e.jobId)).toEqual([plain.id]);
  });
});

describe("agent ids given to cron.*", () => {
  it("must name an agent that exists: a client cannot start a cron service of its own", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const cron = stack.cron!;
    const before = cron.runningAgents();
    for (const [method, params] of [
      ["cron.list", { agentId: "ghost" }],
      ["cron.runs", { agentId: "ghost-2" }],
      ["cron.add", job("haunted", { agentId: "ghost-3" })],
    ] as const) {
      const error = await rpcError(client.requestUnchecked(method, params));
      expect(error.code, method).toBe("INVALID_REQUEST");
      expect(error.details, method).toMatchObject({ code: "UNKNOWN_AGENT_ID" });
    }
    expect(cron.runningAgents()).toEqual(before);
    // The agent that exists still answers, whatever the case of its id.
    expect((await client.request("cron.list", { agentId: "MAIN" })).jobs).toEqual([]);
  });
});

describe("exec.approval.request", () => {
  it("refuses a request whose shown fields have the wrong shape; a good one still goes through", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const base = { command: "ls -la", twoPhase: true, timeoutMs: 60_000 };
    const bad: Array<[string, Record<string, unknown>]> = [
      ["commandArgv", { commandArgv: ["ls", 1] }],
      ["commandArgv", { commandArgv: "ls" }],
      ["env", { env: { PATH: 1 } }],
      ["env", { env: ["PATH=/bin"] }],
      ["cwd", { cwd: 42 }],
      ["nodeId", { nodeId: "" }],
      ["turnSourceThreadId", { turnSourceThreadId: {} }],
      ["approvalReviewerDeviceIds", { approvalReviewerDeviceIds: [""] }],
      ["suppressDelivery", { suppressDelivery: "yes" }],
      ["scope", { scope: "all" }],
      ["unavailableDecisions", { unavailableDecisions: ["deny"] }],
      ["commandSpans", { commandSpans: [{ startIndex: 3, endIndex: 3 }] }],
      ["systemRunPlan", { systemRunPlan: [] }],
      ["systemRunPlan.argv", { systemRunPlan: { argv: [null], commandText: "x" } }],
      ["systemRunPlan.commandText", { systemRunPlan: { argv: ["x"] } }],
      ["systemRunPlan.cwd", { systemRunPlan: { argv: ["x"], commandText: "x", cwd: 1 } }],
    ];
    for (const [field, extra] of bad) {
      const error = await rpcError(
        client.requestUnchecked("exec.approval.request", { ...base, ...extra }),
      );
      expect(error.code, field).toBe("INVALID_REQUEST");
      expect(error.details, field).toEqual({ code: "INVALID_PARAMS", field });
    }
    expect((await client.request("exec.approval.list", {})).approvals).toEqual([]);
    const accepted = await client.request("exec.approval.request", {
      ...base,
      commandArgv: ["ls", "-la"],
      env: { LANG: "C" },
      cwd: null,
      turnSourceThreadId: 7,
      commandSpans: [{ startIndex: 0, endIndex: 2 }],
      systemRunPlan: {
        argv: ["ls", "-la"],
        cwd: "/tmp",
        commandText: "ls -la",
        agentId: "main",
        sessionKey: null,
      },
    });
    expect(accepted.status).toBe("accepted");
  });
});

describe("session labels", () => {
  it("are at most 512 characters (display names 500), checked even when both are given", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const long = "x".repeat(513);
    for (const params of [
      { key: "agent:main:a", label: long },
      { key: "agent:main:b", displayName: "x".repeat(501) },
      { key: "agent:main:c", displayName: "fine", label: long },
      { key: "agent:main:d", displayName: "fine", label: 7 },
    ]) {
      const error = await rpcError(client.requestUnchecked("sessions.create", params));
      expect(error.details, JSON.stringify(params).slice(0, 60)).toMatchObject({
        code: "INVALID_PARAMS",
      });
    }
    expect(await stack.store.sessions.get("agent:main:c")).toBeUndefined();
    await client.request("sessions.create", { key: "agent:main:e", label: "x".repeat(512) });
    const tooLong = await rpcError(client.requestUnchecked("sessions.list", { label: long }));
    expect(tooLong.details).toEqual({ code: "INVALID_PARAMS", field: "label" });
    for (const label of ["", long, 5]) {
      const error = await rpcError(
        client.requestUnchecked("sessions.patch", { key: "agent:main:e", label }),
      );
      expect(error.details).toEqual({ code: "INVALID_PARAMS", field: "label" });
    }
    await client.request("sessions.patch", { key: "agent:main:e", label: null });
  });
});

describe("node.event", () => {
  it("reads a presence beat's payload from payloadJSON too, and refuses payloadJSON that is not text", async () => {
    const stack = await startStack({ gateway: { presence: { intervalMs: 60_000 } } });
    const node = await connectNode(stack.url);
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    const before = (await operator.request("status")).presence;
    const beat = await node.request("node.event", {
      event: "node.presence.alive",
      payloadJSON: JSON.stringify({ trigger: "background", sentAtMs: Date.now() - 40 }),
    });
    expect(beat).toEqual({ ok: true, event: "node.presence.alive", handled: true });
    // The beat's clock was read from the text: it gave a latency sample.
    const after = (await operator.request("status")).presence;
    expect(after.latencyMs.samples).toBe(before.latencyMs.samples + 1);
    expect(after.latencyMs.p99).toBeGreaterThanOrEqual(40);
    const error = await rpcError(
      node.requestUnchecked("node.event", { event: "x", payloadJSON: { sentAtMs: 1 } }),
    );
    expect(error.details).toEqual({ code: "INVALID_PARAMS", field: "payloadJSON" });
  });
});

describe("client-raised approvals", () => {
  it("at most maxPendingRequests wait at once; a settled one makes room; runtime approvals do not count", async () => {
    const requested: string[] = [];
    const approvals = new ExecApprovals({
      gate: undefined,
      sink: { requested: (e) => requested.push(e.id), resolved: () => undefined },
      maxPendingRequests: 2,
    });
    try {
      const ask = (id: string) =>
        approvals.request({ command: "ls" }, { id, twoPhase: true, timeoutMs: 60_000 });
      await ask("a");
      await ask("b");
      const full = await ask("c").then(
        () => undefined,
        (error: unknown) => error as GatewayError,
      );
      expect(full?.code).toBe("UNAVAILABLE");
      expect(full?.toShape()).toMatchObject({
        details: { code: "TOO_MANY_PENDING_APPROVALS", limit: 2 },
        retryable: true,
      });
      expect(requested).toEqual(["a", "b"]); // the refused one was never shown
      // A tool call waiting in the runtime is not a client request.
      approvals.onRunEvent({
        type: "tool-approval-request",
        requestId: "tool-1",
        runId: "r1",
        sessionKey: "agent:main:main",
        toolCallId: "t1",
        toolName: "exec",
        input: {},
        expiresAt: Date.now() + 60_000,
      } as never);
      approvals.resolve("a", "deny", { scopes: ["operator.approvals"], id: "op" });
      await ask("c");
      expect(approvals.list().map((e) => e.id)).toEqual(["b", "tool-1", "c"]);
    } finally {
      approvals.close();
    }
  });
});
