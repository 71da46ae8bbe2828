/**
 * `sessions.cleanup` over a real WebSocket: one pass of session maintenance with the
 * configuration's settings (a report in `warn` mode, deletions with `enforce`), for the
 * default agent, one agent or all of them, with `activeKey` protected; admin only.
 */
import { type BeamClawConfig, parseConfig, type SessionRecord } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  rpcError,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const DAY = 86_400_000;

async function stored(stack: Stack, key: string, daysAgo: number): Promise<void> {
  const at = Date.now() - daysAgo * DAY;
  const record: SessionRecord = { key, agentId: key.split(":")[1]!, createdAt: at, updatedAt: at };
  await stack.store.sessions.put(record);
  await stack.store.transcripts.append(key, [{ note: key }]);
}

function configWith(maintenance: Record<string, unknown> | undefined): BeamClawConfig {
  return parseConfig({
    providers: { scripted: { kind: "openai-compatible", baseUrl: "http://127.0.0.1:9" } },
    agents: { main: { model: "scripted/m1" }, ops: { model: "scripted/m1" } },
    ...(maintenance === undefined ? {} : { sessions: { maintenance } }),
  });
}

async function stackWith(maintenance?: Record<string, unknown>) {
  const stack = await startStack({
    agents: [
      { id: "main", model: "scripted/m1" },
      { id: "ops", model: "scripted/m1" },
    ],
    gateway: { config: configWith(maintenance) },
  });
  await stored(stack, "agent:main:main", 100);
  await stored(stack, "agent:main:direct:old", 40);
  await stored(stack, "agent:main:direct:kept", 40);
  await stored(stack, "agent:main:direct:new", 1);
  await stored(stack, "agent:ops:direct:old", 90);
  const client = await TestClient.connect(stack.url, { token: "test-gateway-token" });
  return { stack, client };
}

describe("sessions.cleanup", () => {
  it("reports in warn mode without deleting, and deletes with enforce; activeKey and main sessions stay", async () => {
    const { stack, client } = await stackWith({ pruneAfterMs: 30 * DAY });
    const report = await client.request("sessions.cleanup", {});
    expect(report).toMatchObject({
      agentId: "main",
      mode: "warn",
      dryRun: true,
      beforeCount: 4,
      afterCount: 2,
      pruned: 2,
      capped: 0,
      missing: 0,
      wouldMutate: true,
      appliedCount: 0,
    });
    expect(report.applied).toBeUndefined();
    expect(await stack.store.sessions.count("main")).toBe(4);

    const applied = await client.request("sessions.cleanup", {
      enforce: true,
      activeKey: "agent:main:direct:kept",
    });
    expect(applied).toMatchObject({
      dryRun: false,
      applied: true,
      appliedCount: 1,
      sample: ["agent:main:direct:old"],
    });
    const left = (await stack.store.sessions.list({ agentId: "main" })).items.map((r) => r.key);
    expect(left.sort()).toEqual([
      "agent:main:direct:kept",
      "agent:main:direct:new",
      "agent:main:main",
    ]);
    // The other agent was not part of it.
    expect(await stack.store.sessions.count("ops")).toBe(1);
  });

  it("deletes without enforce when the configured mode is enforce, over every agent with allAgents", async () => {
    const { stack, client } = await stackWith({ mode: "enforce", maxSessions: 1 });
    const result = await client.request("sessions.cleanup", { allAgents: true });
    expect(result).toMatchObject({ allAgents: true, mode: "enforce", dryRun: false });
    expect(
      result.stores.map((s: { agentId: string; pruned: number; capped: number }) => [
        s.agentId,
        s.pruned,
        s.capped,
      ]),
    ).toEqual([
      ["main", 2, 0],
      ["ops", 1, 0],
    ]);
    expect(await stack.store.sessions.count("main")).toBe(2);
    expect(await stack.store.sessions.count("ops")).toBe(0);
  });

  it("refuses what it cannot do, and callers without admin scope", async () => {
    const { stack, client } = await stackWith();
    for (const [params, pattern] of [
      [{ fixMissing: true }, /fixMissing/],
      [{ fixDmScope: true }, /fixDmScope/],
      [{ agent: "main", allAgents: true }, /not both/],
      [{ agent: "ghost" }, /no agent ghost/],
    ] as const) {
      const error = await rpcError(client.request("sessions.cleanup", params));
      expect(error.code).toBe("INVALID_REQUEST");
      expect(error.message).toMatch(pattern);
    }
    const reader = await TestClient.connect(stack.url, {
      token: "test-gateway-token",
      scopes: ["operator.read", "operator.write"],
    });
    expect((await rpcError(reader.request("sessions.cleanup", {}))).message).toMatch(
      /operator\.admin/,
    );
    expect(await stack.store.sessions.count()).toBe(5);
  });

  it("answers a retryable UNAVAILABLE while another process deletes", async () => {
    const { stack, client } = await stackWith();
    await stack.store.locks.acquire("sessions:maintenance", { owner: "node-b", ttlMs: 60_000 });
    const error = await rpcError(client.request("sessions.cleanup", { enforce: true }));
    expect(error).toMatchObject({ code: "UNAVAILABLE", retryable: true });
    expect(error.details).toMatchObject({ code: "STORE_LOCKED" });
    // A report needs no lock.
    expect(await client.request("sessions.cleanup", {})).toMatchObject({ dryRun: true });
  });
});
