/**
 * Cron `announce` deliveries in the standalone gateway (`startFromConfig`, what `beamclaw
 * gateway` runs): a job of `beamclaw.yaml`'s `cron.jobs` announcing to a channel of its
 * `channels` section — the webhook channel over real HTTP, a local OpenAI-compatible model —
 * is delivered to the chat its `target` (OpenClaw's `to`) names and mirrored into that chat's
 * conversation, so that when the user answers there, the agent knows what they answer. An
 * announcement to a channel that is not configured ends as the run's delivery error.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { signWebhookPayload } from "@beamclaw/channels/webhook";
import { afterEach, describe, expect, it } from "vitest";
import { channelTargetOf } from "../src/channel-delivery.js";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import { TestClient, type Wire, waitFor } from "./support.js";
import { type ChatBody, modelServer } from "./tools-support.js";
import { callbackServer, closeLeftovers } from "./webhook-callback.js";

const TOKEN = "cli-cron-announce-token-0123456789";
const SECRET = "webhook-secret-0123456789abcdef";
const SUMMARY = "Your daily summary: 3 new issues, #42 is urgent.";
const started: StartedGateway[] = [];
const servers: Server[] = [];
const dirs: string[] = [];

afterEach(() => closeLeftovers({ started, servers, dirs }));

async function startGateway(yaml: string): Promise<StartedGateway> {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-cron-announce-"));
  dirs.push(dir);
  const path = join(dir, "beamclaw.yaml");
  await writeFile(path, yaml);
  const gateway = await startFromConfig({
    configPath: path,
    env: { WEBHOOK_SECRET: SECRET },
    host: "127.0.0.1",
    port: 0,
  });
  started.push(gateway);
  return gateway;
}

/** POSTs a signed inbound message from `peer` to the webhook channel. */
async function say(url: string, id: string, peer: string, text: string): Promise<Wire> {
  const body = JSON.stringify({
    type: "message",
    id,
    chat: { type: "direct" },
    from: { id: peer, name: peer },
    text,
  });
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-beamclaw-signature": signWebhookPayload(SECRET, body, Date.now()),
    },
    body,
  });
  return (await response.json()) as Wire;
}

function lastUser(body: ChatBody): string {
  return body.messages.findLast((m) => m.role === "user")?.content ?? "";
}

/** The text of a `chat.history` message. */
function textOf(message: Wire): string {
  return typeof message.content === "string"
    ? message.content
    : (message.content as Wire[]).map((p) => p.text ?? "").join("");
}

function yamlWith(baseUrl: string, callbackUrl: string): string {
  return `gateway:
  auth: { mode: token, token: ${TOKEN} }
store: { kind: memory }
providers:
  local: { kind: openai-compatible, baseUrl: ${baseUrl}, apiKey: none }
agents:
  main: { model: local/llama3 }
channels:
  webhook:
    secret: \${WEBHOOK_SECRET}
    callbackUrl: ${callbackUrl}
    port: 0
    dmPolicy: open
    dmScope: per-peer
cron:
  jobs:
    - id: daily-summary
      agentId: main
      schedule: { cron: "0 9 * * *" }
      prompt: Write the daily summary.
      delivery: { kind: announce, channel: webhook, target: "user:alice" }
    - id: lost-summary
      agentId: main
      schedule: { cron: "0 9 * * *" }
      prompt: Write the daily summary.
      delivery: { kind: announce, channel: carrier-pigeon, target: roof }
`;
}

describe("cron announce in the standalone gateway", () => {
  it("delivers an announce job's output to the chat it names and mirrors it into that chat's session", async () => {
    const model = await modelServer((body) => {
      const asked = lastUser(body);
      if (asked.includes("daily summary")) return { text: SUMMARY };
      if (asked.includes("which one")) return { text: "The urgent one is #42." };
      return { text: "Hello Alice" };
    });
    const app = await callbackServer(SECRET, servers);
    const gateway = await startGateway(yamlWith(model.baseUrl, app.url));
    const client = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
    });
    const inbound: string = (await client.request("webhook.info")).url;

    // Alice wrote to the bot before: her chat has a session.
    expect(await say(inbound, "m1", "alice", "hello agent")).toMatchObject({
      status: "accepted",
      sessionKey: "agent:main:direct:alice",
    });
    await waitFor("the reply", () => app.events.find((e) => e.text === "Hello Alice"), 15_000);

    expect(await client.request("cron.run", { id: "daily-summary", mode: "force" })).toMatchObject({
      ok: true,
      ran: true,
    });
    const announced = await waitFor(
      "the announcement at the callback URL",
      () => app.events.find((e) => e.type === "message.text" && e.text === SUMMARY),
      15_000,
    );
    expect(announced).toMatchObject({
      channel: "webhook",
      target: { chatType: "direct", chatId: "alice" },
    });
    expect(app.bad).toEqual([]);
    await client.waitEvent(
      "cron",
      (p) => p.action === "finished" && p.jobId === "daily-summary",
      15_000,
    );
    const runs = await client.request("cron.runs", { id: "daily-summary" });
    expect(runs.entries[0]).toMatchObject({
      status: "ok",
      delivered: true,
      deliveryStatus: "delivered",
    });

    // The announcement is in Alice's conversation, after what she and the agent said.
    const history = await waitFor(
      "the announcement in Alice's session",
      async () => {
        const { messages } = await client.request("chat.history", {
          sessionKey: "agent:main:direct:alice",
        });
        return (messages as Wire[]).length === 3 && (messages as Wire[]);
      },
      15_000,
    );
    expect(history.map((m) => [m.role, textOf(m)])).toEqual([
      ["user", "hello agent"],
      ["assistant", "Hello Alice"],
      ["assistant", SUMMARY],
    ]);

    // She answers it in the chat: the model reads what she answers.
    await say(inbound, "m2", "alice", "which one is urgent?");
    await waitFor(
      "the answer",
      () => app.events.find((e) => e.text === "The urgent one is #42."),
      15_000,
    );
    const asked = model.bodies.at(-1)!.messages.filter((m) => m.role !== "system");
    expect(asked.map((m) => [m.role, m.content])).toEqual([
      ["user", "hello agent"],
      ["assistant", "Hello Alice"],
      ["assistant", SUMMARY],
      ["user", "which one is urgent?"],
    ]);
  });

  it("ends an announcement to a channel that is not configured with a clear delivery error", async () => {
    const model = await modelServer(() => ({ text: SUMMARY }));
    const app = await callbackServer(SECRET, servers);
    const gateway = await startGateway(yamlWith(model.baseUrl, app.url));
    const client = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
    });

    await client.request("cron.run", { id: "lost-summary", mode: "force" });
    const finished = await client.waitEvent(
      "cron",
      (p) => p.action === "finished" && p.jobId === "lost-summary",
      15_000,
    );
    // A delivery never fails the run.
    expect(finished.payload.status).toBe("ok");
    const runs = await client.request("cron.runs", { id: "lost-summary" });
    expect(runs.entries[0]).toMatchObject({
      status: "ok",
      deliveryStatus: "not-delivered",
      deliveryError:
        'CHANNEL_NOT_FOUND: no channel "carrier-pigeon" is configured to announce to (the channels are webhook)',
    });
    expect(app.events).toEqual([]);
    expect(await gateway.channels.manager.outbox("webhook").list()).toEqual([]);
  });
});

describe("channelTargetOf", () => {
  it("reads OpenClaw's to: group: and channel: are group chats, user:, dm:, direct: and a bare id direct ones", () => {
    expect(channelTargetOf("group:-1001234")).toEqual({
      accountId: "default",
      chatType: "group",
      chatId: "-1001234",
    });
    expect(channelTargetOf("channel:C024BE7LH")).toMatchObject({
      chatType: "group",
      chatId: "C024BE7LH",
    });
    for (const to of ["user:4711", "dm:4711", "direct:4711", "4711"]) {
      expect(channelTargetOf(to)).toEqual({
        accountId: "default",
        chatType: "direct",
        chatId: "4711",
      });
    }
    expect(channelTargetOf("group:ops", { accountId: "work", threadId: "t-7" })).toEqual({
      accountId: "work",
      chatType: "group",
      chatId: "ops",
      threadId: "t-7",
    });
  });
});
