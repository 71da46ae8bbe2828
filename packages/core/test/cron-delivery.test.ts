/**
 * Delivery of finished runs (`announce` through the host's callback, `webhook` as a JSON
 * POST to a real local HTTP server) and the clean-up of isolated sessions after 24 h.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { CronWebhookPayload } from "../src/index.js";
import { type CronFixture, DAY, HOUR, startCron } from "./cron-support.js";

const fixtures: CronFixture[] = [];
const servers: Server[] = [];

async function cron(options: Parameters<typeof startCron>[0] = {}): Promise<CronFixture> {
  const fixture = await startCron(options);
  fixtures.push(fixture);
  return fixture;
}

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

interface Received {
  method: string;
  contentType: string | undefined;
  body: CronWebhookPayload;
}

/** A webhook receiver on 127.0.0.1 answering `status` (or never, with `hang`). */
async function receiver(status = 200, hang = false) {
  const received: Received[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => {
      received.push({
        method: req.method ?? "",
        contentType: req.headers["content-type"],
        body: JSON.parse(body) as CronWebhookPayload,
      });
      if (hang) return;
      res.writeHead(status, { connection: "close" }).end("thanks");
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hooks/cron`, received };
}

describe("webhook delivery", () => {
  it("a webhook job POSTs every finished run as JSON to its URL", async () => {
    const { url, received } = await receiver(200);
    const { service } = await cron();
    await service.add({
      id: "hook",
      schedule: { every: DAY },
      prompt: "status report",
      delivery: { kind: "webhook", url },
    });
    const run = await service.runNow("hook");
    expect(received).toHaveLength(1);
    expect(received[0]!.method).toBe("POST");
    expect(received[0]!.contentType).toBe("application/json");
    expect(received[0]!.body).toEqual({
      type: "cron.run",
      agentId: "ops",
      jobId: "hook",
      runId: run.runId,
      trigger: "manual",
      status: "ok",
      scheduledAt: run.scheduledAt,
      startedAt: run.startedAt,
      finishedAt: run.finishedAt,
      output: "done: status report",
    });
    expect(run.delivery).toEqual({ kind: "webhook", status: "ok", statusCode: 200 });
  });

  it("a failed run is posted too, with its error", async () => {
    const { url, received } = await receiver(204);
    const { service, runner } = await cron();
    runner.behave = () => ({ status: "error", error: "quota exceeded" });
    await service.add({
      id: "hook",
      schedule: { every: DAY },
      prompt: "p",
      delivery: { kind: "webhook", url },
    });
    await service.runNow("hook");
    expect(received[0]!.body).toMatchObject({ status: "error", error: "quota exceeded" });
  });

  it("a webhook answering HTTP 500 is a delivery error; the run itself stays ok", async () => {
    const { url } = await receiver(500);
    const { service } = await cron();
    await service.add({
      id: "hook",
      schedule: { every: DAY },
      prompt: "p",
      delivery: { kind: "webhook", url },
    });
    const run = await service.runNow("hook");
    expect(run.status).toBe("ok");
    expect(run.delivery).toEqual({
      kind: "webhook",
      status: "error",
      statusCode: 500,
      error: "webhook answered HTTP 500",
    });
    expect((await service.get("hook")).state.consecutiveErrors).toBe(0);
  });

  it("a webhook that does not answer within webhookTimeoutMs is a delivery error", async () => {
    const { url } = await receiver(200, true);
    const { service } = await cron({ webhookTimeoutMs: 100 });
    await service.add({
      id: "hook",
      schedule: { every: DAY },
      prompt: "p",
      delivery: { kind: "webhook", url },
    });
    const run = await service.runNow("hook");
    expect(run.delivery).toMatchObject({
      status: "error",
      error: "webhook did not answer within 100 ms",
    });
  });
});

describe("announce delivery", () => {
  it("an announce job hands its output to deliver with the channel target", async () => {
    const delivered: unknown[] = [];
    const { service } = await cron({
      deliver: (target, text, context) => {
        delivered.push({ target, text, jobId: context.job.id, runId: context.runId });
      },
    });
    await service.add({
      id: "news",
      schedule: { every: DAY },
      prompt: "headlines",
      delivery: { kind: "announce", channel: "discord", target: "channel:123" },
    });
    const run = await service.runNow("news");
    expect(delivered).toEqual([
      {
        target: { channel: "discord", target: "channel:123" },
        text: "done: headlines",
        jobId: "news",
        runId: run.runId,
      },
    ]);
    expect(run.delivery).toEqual({ kind: "announce", status: "ok" });
  });

  it("failed runs and empty output are not announced", async () => {
    const delivered: string[] = [];
    const { service, runner } = await cron({ deliver: (_t, text) => void delivered.push(text) });
    await service.add({
      id: "news",
      schedule: { every: DAY },
      prompt: "p",
      delivery: { kind: "announce", channel: "slack", target: "#ops" },
    });
    runner.behave = () => ({ status: "error", error: "x" });
    expect((await service.runNow("news")).delivery).toEqual({
      kind: "announce",
      status: "skipped",
    });
    runner.behave = () => ({ status: "ok", output: "  \n" });
    expect((await service.runNow("news")).delivery).toEqual({
      kind: "announce",
      status: "skipped",
    });
    expect(delivered).toEqual([]);
  });

  it("without a deliver callback, or when it throws, the delivery is recorded as an error", async () => {
    const { service } = await cron();
    await service.add({
      id: "news",
      schedule: { every: DAY },
      prompt: "p",
      delivery: { kind: "announce", channel: "slack", target: "#ops" },
    });
    expect((await service.runNow("news")).delivery).toMatchObject({
      status: "error",
      error: /no deliver callback/,
    });
    const throwing = await cron({
      deliver: () => {
        throw new Error("channel offline");
      },
    });
    await throwing.service.add({
      id: "news2",
      schedule: { every: DAY },
      prompt: "p",
      delivery: { kind: "announce", channel: "slack", target: "#ops" },
    });
    const run = await throwing.service.runNow("news2");
    expect(run.status).toBe("ok");
    expect(run.delivery).toEqual({ kind: "announce", status: "error", error: "channel offline" });
  });
});

describe("isolated session clean-up", () => {
  it("isolated sessions are deleted 24 h after their run, through the store's index", async () => {
    const deleted: string[] = [];
    const { service, clock, runner, store } = await cron({
      deleteSession: async (key) => {
        deleted.push(key);
      },
    });
    await service.add({ id: "iso", schedule: { every: HOUR }, prompt: "p" });
    await service.add({ id: "main", schedule: { every: HOUR }, prompt: "p", session: "main" });
    await clock.advance(30 * HOUR);
    await clock.advance(0); // the sweep runs in the background
    const isolated = runner.calls.filter((c) => c.jobId === "iso");
    const old = isolated.filter((c) => c.at <= clock.now() - DAY).map((c) => c.context.sessionKey);
    const recent = isolated
      .filter((c) => c.at > clock.now() - DAY)
      .map((c) => c.context.sessionKey);
    expect(old).toHaveLength(6);
    expect(deleted.sort()).toEqual(old.sort());
    expect(deleted).not.toContain("agent:ops:main");
    const indexed = await store.kv.keys("cron:isolated:ops:");
    expect(indexed.map((k) => k.slice("cron:isolated:ops:".length)).sort()).toEqual(recent.sort());
  });

  it("without a way to delete sessions, nothing is indexed or swept", async () => {
    const { service, clock, store } = await cron();
    await service.add({ id: "iso", schedule: { every: HOUR }, prompt: "p" });
    await clock.advance(30 * HOUR);
    expect(await store.kv.keys("cron:isolated:")).toEqual([]);
  });
});
