/**
 * `channels.<id>` of `beamclaw.yaml` in the standalone gateway (`startFromConfig`, what
 * `beamclaw gateway` runs): the webhook channel over real HTTP — a signed inbound request
 * reaches the agent (a local OpenAI-compatible server) and the reply arrives, signed, at the
 * callback URL, a changed section restarts the channel with its new settings — and Telegram
 * configured from the file against the Bot API faked with msw in Telegram's documented shapes.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { signWebhookPayload } from "@beamclaw/channels/webhook";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CliError, type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import { channelEntry } from "../src/cli/channels.js";
import { doctor } from "../src/cli/doctor.js";
import { TestClient, type Wire, waitFor } from "./support.js";
import { modelServer } from "./tools-support.js";
import { callbackServer, closeLeftovers } from "./webhook-callback.js";

const TOKEN = "cli-channels-token-0123456789";
const SECRET = "webhook-secret-0123456789abcdef";
const started: StartedGateway[] = [];
const servers: Server[] = [];
const dirs: string[] = [];

afterEach(() => closeLeftovers({ started, servers, dirs }));

async function configFile(yaml: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-channels-"));
  dirs.push(dir);
  const path = join(dir, "beamclaw.yaml");
  await writeFile(path, yaml);
  return path;
}

function gatewayYaml(baseUrl: string, channels: string): string {
  return `gateway:
  auth: { mode: token, token: ${TOKEN} }
store: { kind: memory }
providers:
  local: { kind: openai-compatible, baseUrl: ${baseUrl}, apiKey: none }
agents:
  main: { model: local/llama3 }
channels:
${channels}`;
}

async function start(path: string, env: Record<string, string> = {}): Promise<StartedGateway> {
  const gateway = await startFromConfig({
    configPath: path,
    env: { ...env },
    host: "127.0.0.1",
    port: 0,
  });
  started.push(gateway);
  return gateway;
}

/** POSTs a signed inbound event to the webhook channel. */
async function postInbound(url: string, event: unknown, secret = SECRET) {
  const body = JSON.stringify(event);
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-beamclaw-signature": signWebhookPayload(secret, body, Date.now()),
    },
    body,
  });
  return { status: response.status, body: (await response.json()) as Wire };
}

describe("the webhook channel from beamclaw.yaml", () => {
  it("takes a signed inbound request to the agent and delivers the reply to the callback URL", async () => {
    const model = await modelServer(() => ({ text: "Hello from the agent" }));
    const app = await callbackServer(SECRET, servers);
    const path = await configFile(
      gatewayYaml(
        model.baseUrl,
        `  webhook:
    secret: \${WEBHOOK_SECRET}
    callbackUrl: ${app.url}
    port: 0
    dmPolicy: open
    dmScope: per-peer
`,
      ),
    );
    const gateway = await start(path, { WEBHOOK_SECRET: SECRET });
    expect(gateway.channels.manager.status("webhook").state).toBe("connected");

    // Where it listens, from the channel's own gateway method, over a real socket.
    const client = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
    });
    expect(client.hello.features.methods).toEqual(
      expect.arrayContaining(["webhook.info", "channels.status"]),
    );
    const info = await client.request("webhook.info");
    expect(info).toMatchObject({ callbackUrl: app.url, listening: true });
    const inbound: string = info.url;

    // A forged request is refused before anything happens.
    const forged = await postInbound(
      inbound,
      { type: "message", id: "m0", chat: { type: "direct" }, from: { id: "eve" }, text: "hi" },
      "some-other-secret-0123456789",
    );
    expect(forged.status).toBe(401);

    const accepted = await postInbound(inbound, {
      type: "message",
      id: "m1",
      chat: { type: "direct" },
      from: { id: "alice", name: "Alice" },
      text: "hello agent",
    });
    expect(accepted.status).toBe(202);
    expect(accepted.body).toMatchObject({
      status: "accepted",
      sessionKey: "agent:main:direct:alice",
    });
    const reply = await waitFor(
      "the reply at the callback URL",
      () => app.events.find((e) => e.type === "message.text"),
      15_000,
    );
    expect(reply).toMatchObject({
      type: "message.text",
      channel: "webhook",
      text: "Hello from the agent",
      target: { chatType: "direct", chatId: "alice" },
    });
    expect(app.bad).toEqual([]);
    // The agent saw the message.
    expect(model.bodies[0]!.messages.at(-1)).toMatchObject({
      role: "user",
      content: "hello agent",
    });

    // A redelivery of the same message is answered once.
    const again = await postInbound(inbound, {
      type: "message",
      id: "m1",
      chat: { type: "direct" },
      from: { id: "alice", name: "Alice" },
      text: "hello agent",
    });
    expect(again.body.status).toBe("duplicate");
    expect(model.bodies).toHaveLength(1);
  });

  it("restarts a channel whose section changed, with its new settings, and stops it on shutdown", async () => {
    const model = await modelServer((_body, n) => ({ text: `answer ${n + 1}` }));
    const first = await callbackServer(SECRET, servers);
    const second = await callbackServer(SECRET, servers);
    const section = (callbackUrl: string) => `  webhook:
    secret: ${SECRET}
    callbackUrl: ${callbackUrl}
    port: 0
    dmPolicy: open
`;
    const path = await configFile(gatewayYaml(model.baseUrl, section(first.url)));
    const logs: string[] = [];
    const gateway = await startFromConfig({
      configPath: path,
      host: "127.0.0.1",
      port: 0,
      env: {},
      logSink: (l) => logs.push(l),
    });
    started.push(gateway);
    const client = await TestClient.connect(`ws://127.0.0.1:${gateway.address.port}`, {
      token: TOKEN,
    });
    const before = (await client.request("webhook.info")).url as string;

    await writeFile(path, gatewayYaml(model.baseUrl, section(second.url)));
    const diff = await gateway.configService.reload();
    expect(diff).toMatchObject({
      applied: expect.arrayContaining(["channels.webhook.callbackUrl"]),
    });
    await waitFor("the restarted channel", async () => {
      const info = await client.request("webhook.info");
      return info.callbackUrl === second.url && info.listening === true;
    });
    expect(logs.some((l) => l.endsWith(" info config: channel webhook restarted"))).toBe(true);
    const after = (await client.request("webhook.info")).url as string;
    expect(before).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/webhook$/);

    const accepted = await postInbound(after, {
      type: "message",
      id: "r1",
      chat: { type: "direct" },
      from: { id: "bob" },
      text: "are you there?",
    });
    expect(accepted.status).toBe(202);
    await waitFor("the reply at the new callback URL", () =>
      second.events.find((e) => e.type === "message.text"),
    );
    expect(first.events.filter((e) => e.type === "message.text")).toEqual([]);

    // An invalid change keeps the running channel as it was.
    await writeFile(
      path,
      gatewayYaml(
        model.baseUrl,
        `  webhook:
    secret: short
    callbackUrl: ${second.url}
    port: 0
    dmPolicy: open
`,
      ),
    );
    await gateway.configService.reload();
    await waitFor("the refusal in the log", () =>
      logs.find((l) => l.includes(" warn config: channels.webhook not applied")),
    );
    expect((await client.request("webhook.info")).url).toBe(after);

    // Removing the section stops the channel; its method then says so.
    await writeFile(path, gatewayYaml(model.baseUrl, "  {}\n"));
    await gateway.configService.reload();
    await waitFor("the channel stopped", () =>
      logs.some((l) => l.endsWith(" info config: channel webhook stopped")),
    );
    await expect(fetch(after, { method: "POST" })).rejects.toThrow();
    await expect(client.request("webhook.info")).rejects.toMatchObject({ code: "UNAVAILABLE" });

    // And a new section starts it again.
    await writeFile(path, gatewayYaml(model.baseUrl, section(first.url)));
    await gateway.configService.reload();
    await waitFor("the channel started", () =>
      logs.some((l) => l.endsWith(" info config: channel webhook started")),
    );
    const info = await client.request("webhook.info");
    expect(info).toMatchObject({ callbackUrl: first.url, listening: true });

    await gateway.stop();
    started.splice(started.indexOf(gateway), 1);
    await expect(fetch(info.url, { method: "POST" })).rejects.toThrow();
  });

  it("refuses a section it cannot build with a clear error, and leaves nothing running", async () => {
    const model = await modelServer(() => ({ text: "unused" }));
    const unknownKind = await configFile(gatewayYaml(model.baseUrl, "  irc: { server: x }\n"));
    const error = await startFromConfig({ configPath: unknownKind, port: 0, env: {} }).catch(
      (e: unknown) => e,
    );
    expect(CliError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/channels\.irc: unknown channel kind "irc"/);

    const badOptions = await configFile(
      gatewayYaml(
        model.baseUrl,
        "  webhook: { secret: short, callbackUrl: http://127.0.0.1:1/ }\n",
      ),
    );
    const refused = await startFromConfig({ configPath: badOptions, port: 0, env: {} }).catch(
      (e: unknown) => e,
    );
    expect((refused as Error).message).toMatch(/^channels\.webhook: webhook secrets must be/);

    const badPolicy = await configFile(
      gatewayYaml(
        model.baseUrl,
        `  webhook: { secret: ${SECRET}, callbackUrl: http://127.0.0.1:1/, dmPolicy: everyone }\n`,
      ),
    );
    const policy = await startFromConfig({ configPath: badPolicy, port: 0, env: {} }).catch(
      (e: unknown) => e,
    );
    expect(CliError.isInstance(policy)).toBe(true);
    expect((policy as Error).message).toMatch(/dmPolicy/);
  });

  it("is checked by beamclaw doctor, section by section", async () => {
    const path = await configFile(
      gatewayYaml(
        "http://127.0.0.1:1/v1",
        `  webhook: { secret: ${SECRET}, callbackUrl: "http://127.0.0.1:1/", dmPolicy: open }
  irc: { server: irc.example }
  slack: { botToken: xoxb-1, appToken: xapp-1, dmPolicy: sometimes }
  telegram: { enabled: false }
`,
      ),
    );
    const findings = await doctor(path, { env: {} });
    const channelFindings = findings.filter((f) => f.message.startsWith("channels."));
    expect(channelFindings).toEqual([
      { level: "ok", message: "channels.webhook: Webhook, DM policy open" },
      {
        level: "error",
        message: expect.stringMatching(/^channels\.irc: unknown channel kind "irc"/),
      },
      { level: "error", message: expect.stringMatching(/^channels\.slack: .*dmPolicy/) },
    ]);
  });

  it("beamclaw doctor finds cron jobs announcing to a channel that is not configured or not enabled", async () => {
    const path = await configFile(
      `${gatewayYaml(
        "http://127.0.0.1:1/v1",
        `  webhook: { secret: ${SECRET}, callbackUrl: "http://127.0.0.1:1/", dmPolicy: open }
  telegram: { enabled: false }
`,
      )}cron:
  jobs:
    - { id: fine, agentId: main, schedule: { cron: "0 9 * * *" }, prompt: Hi, delivery: { kind: announce, channel: webhook, target: "user:alice" } }
    - { id: off, agentId: main, schedule: { cron: "0 9 * * *" }, prompt: Hi, delivery: { kind: announce, channel: telegram, target: "42" } }
    - { id: lost, agentId: main, schedule: { cron: "0 9 * * *" }, prompt: Hi, delivery: { kind: announce, channel: pigeon, target: roof } }
`,
    );
    const findings = await doctor(path, { env: {} });
    expect(findings.filter((f) => f.message.startsWith("cron.jobs."))).toEqual([
      {
        level: "error",
        message:
          'cron.jobs.off: announces to channel "telegram", which is not configured (the channels are webhook)',
      },
      {
        level: "error",
        message:
          'cron.jobs.lost: announces to channel "pigeon", which is not configured (the channels are webhook)',
      },
    ]);
  });

  it("builds a section of any id from its kind", async () => {
    const entry = await channelEntry("hooks", {
      kind: "webhook",
      secret: SECRET,
      callbackUrl: "http://127.0.0.1:1/",
      dmPolicy: "open",
    });
    expect(entry.plugin.id).toBe("hooks");
    expect(entry.dmPolicy).toBe("open");
    expect(entry.config).toMatchObject({ kind: "webhook" });
  });
});

// ------------------------------------------------------------------ Telegram, msw

const BOT = {
  id: 7_000_000_002,
  is_bot: true,
  first_name: "BeamClaw",
  username: "beamclaw_cli_bot",
};
const TG_TOKEN = `${BOT.id}:AAE-cli-test-token_0123456789`;
const API = `https://api.telegram.org/bot${TG_TOKEN}`;

/** Telegram's Bot API, as far as a polling bot that answers DMs uses it. */
class FakeBotApi {
  readonly updates: Wire[] = [];
  readonly sent: Wire[] = [];
  readonly calls: string[] = [];
  /** Files by file_id, served by getFile and at `/file/bot<token>/<path>`. */
  readonly files = new Map<string, { path: string; bytes: Buffer }>();
  #nextUpdate = 1;
  #nextMessage = 500;

  push(message: Wire): void {
    this.updates.push({ update_id: this.#nextUpdate++, message });
  }

  handlers() {
    const ok = (result: unknown) => HttpResponse.json({ ok: true, result });
    return [
      http.get(`https://api.telegram.org/file/bot${TG_TOKEN}/*`, ({ request }) => {
        const path = new URL(request.url).pathname.replace(`/file/bot${TG_TOKEN}/`, "");
        const file = [...this.files.values()].find((f) => f.path === path);
        return file === undefined
          ? new HttpResponse(null, { status: 404 })
          : new HttpResponse(file.bytes, {
              headers: { "content-type": "application/octet-stream" },
            });
      }),
      http.post(`${API}/:method`, async ({ params, request }) => {
        const method = String(params.method);
        this.calls.push(method);
        const body = ((await request.json().catch(() => ({}))) ?? {}) as Wire;
        switch (method) {
          case "getMe":
            return ok({ ...BOT, can_join_groups: true, can_read_all_group_messages: false });
          case "deleteWebhook":
          case "sendChatAction":
            return ok(true);
          case "getFile": {
            const file = this.files.get(String(body.file_id));
            if (file === undefined) {
              return HttpResponse.json(
                { ok: false, error_code: 400, description: "Bad Request: invalid file_id" },
                { status: 400 },
              );
            }
            return ok({
              file_id: body.file_id,
              file_unique_id: `u${String(body.file_id)}`,
              file_size: file.bytes.length,
              file_path: file.path,
            });
          }
          case "getUpdates": {
            const offset = Number(body.offset ?? 0);
            const ready = this.updates.filter((u) => u.update_id >= offset);
            if (ready.length > 0) return ok(ready);
            // Long polling: hold the request a little, as Telegram does, unless it is aborted.
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, 100);
              request.signal.addEventListener("abort", () => {
                clearTimeout(timer);
                resolve();
              });
            });
            return ok([]);
          }
          case "sendMessage": {
            this.sent.push(body);
            return ok({
              message_id: this.#nextMessage++,
              date: Math.floor(Date.now() / 1000),
              chat: { id: body.chat_id, type: "private", first_name: "Someone" },
              from: BOT,
              text: body.text,
            });
          }
          default:
            return HttpResponse.json(
              { ok: false, error_code: 404, description: "Not Found: method not found" },
              { status: 404 },
            );
        }
      }),
    ];
  }
}

const telegram = new FakeBotApi();
const mswServer = setupServer(...telegram.handlers());

describe("a Telegram channel from beamclaw.yaml", () => {
  beforeAll(() => mswServer.listen({ onUnhandledRequest: "bypass" }));
  afterAll(() => mswServer.close());

  it("answers an allowed sender and sends a stranger a pairing code", async () => {
    const model = await modelServer(() => ({ text: "Hello Alice" }));
    const path = await configFile(
      gatewayYaml(
        model.baseUrl,
        `  telegram:
    token: \${TELEGRAM_BOT_TOKEN}
    polling: { timeoutSeconds: 1, baseDelayMs: 5, maxDelayMs: 50 }
    dmPolicy: pairing
    allowFrom: ["100001"]
`,
      ),
    );
    const gateway = await start(path, { TELEGRAM_BOT_TOKEN: TG_TOKEN });
    expect(gateway.channels.manager.status("telegram").state).toBe("connected");
    expect(telegram.calls).toContain("getMe");

    const date = Math.floor(Date.now() / 1000);
    telegram.push({
      message_id: 1,
      date,
      chat: { id: 100_001, type: "private", first_name: "Alice" },
      from: { id: 100_001, is_bot: false, first_name: "Alice" },
      text: "hi bot",
    });
    telegram.push({
      message_id: 2,
      date,
      chat: { id: 100_002, type: "private", first_name: "Bob" },
      from: { id: 100_002, is_bot: false, first_name: "Bob" },
      text: "let me in",
    });
    const answer = await waitFor(
      "the answer to Alice",
      () => telegram.sent.find((m) => m.chat_id === 100_001 || m.chat_id === "100001"),
      15_000,
    );
    expect(answer.text).toBe("Hello Alice");
    const code = await waitFor("the pairing code for Bob", () =>
      telegram.sent.find((m) => String(m.chat_id) === "100002"),
    );
    expect(code.text).toMatch(/[A-Z0-9]{8}/);
    // Only Alice's message reached the agent.
    expect(model.bodies).toHaveLength(1);
    expect(model.bodies[0]!.messages.at(-1)).toMatchObject({ content: "hi bot" });
    const pending = await gateway.channels.manager.pairing.pending("telegram");
    expect(pending.map((p) => p.peerId)).toEqual(["100002"]);
  });

  it("transcribes voice notes with the transcription section's provider", async () => {
    const model = await modelServer(() => ({ text: "Noted." }));
    const uploads: Array<{ auth: string | null; model: unknown; name: string; bytes: Buffer }> = [];
    mswServer.use(
      http.post("https://stt.example/openai/v1/audio/transcriptions", async ({ request }) => {
        const form = await request.formData();
        const file = form.get("file") as File;
        uploads.push({
          auth: request.headers.get("authorization"),
          model: form.get("model"),
          name: file.name,
          bytes: Buffer.from(await file.arrayBuffer()),
        });
        return HttpResponse.json({ text: "Buy oat milk on the way home." });
      }),
    );
    const ogg = Buffer.concat([Buffer.from("OggS"), Buffer.alloc(50, 7)]);
    telegram.files.set("AwACAgIAAxkBAAIBx1", { path: "voice/file_9.oga", bytes: ogg });
    const path = await configFile(
      `${gatewayYaml(
        model.baseUrl,
        `  telegram:
    token: \${TELEGRAM_BOT_TOKEN}
    polling: { timeoutSeconds: 1, baseDelayMs: 5, maxDelayMs: 50 }
    dmPolicy: open
    attachments: { inlineAudioMaxBytes: 1048576 }
`,
      )}
transcription: { provider: stt, model: whisper-large-v3-turbo }
`.replace(
        "providers:\n",
        "providers:\n  stt: { kind: openai-compatible, baseUrl: https://stt.example/openai/v1, apiKey: gsk-test }\n",
      ),
    );
    const gateway = await start(path, { TELEGRAM_BOT_TOKEN: TG_TOKEN });
    telegram.push({
      message_id: 3,
      date: Math.floor(Date.now() / 1000),
      chat: { id: 100_003, type: "private", first_name: "Carol" },
      from: { id: 100_003, is_bot: false, first_name: "Carol" },
      voice: {
        file_id: "AwACAgIAAxkBAAIBx1",
        file_unique_id: "uvx1",
        duration: 2,
        mime_type: "audio/ogg",
        file_size: ogg.length,
      },
    });
    await waitFor("the answer to Carol", () =>
      telegram.sent.find((m) => String(m.chat_id) === "100003"),
    );
    expect(uploads).toHaveLength(1);
    expect(uploads[0]).toMatchObject({ auth: "Bearer gsk-test", model: "whisper-large-v3-turbo" });
    expect(uploads[0]!.name).toMatch(/\.ogg$/);
    expect(uploads[0]!.bytes.equals(ogg)).toBe(true);
    expect(model.bodies.at(-1)!.messages.at(-1)).toMatchObject({
      content: "[audio: audio/ogg, transcribed]\nBuy oat milk on the way home.",
    });
    expect(gateway.channels.manager.status("telegram").state).toBe("connected");
  });

  it("refuses a transcription section naming no provider, or one that cannot transcribe", async () => {
    for (const [providers, expected] of [
      ["", /no provider "stt"/],
      ["  stt: { kind: anthropic, apiKey: k }\n", /speech to text needs kind openai/],
    ] as const) {
      const path = await configFile(
        `${gatewayYaml("http://127.0.0.1:9/v1", "  {}\n")}
transcription: { provider: stt }
`.replace("providers:\n", `providers:\n${providers}`),
      );
      await expect(start(path)).rejects.toSatisfy(
        (e: unknown) => e instanceof CliError && expected.test((e as Error).message),
      );
      const findings = await doctor(path, { env: {} });
      expect(findings).toContainEqual({ level: "error", message: expect.stringMatching(expected) });
    }
  });
});
