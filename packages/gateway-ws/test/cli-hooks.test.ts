/**
 * Inbound webhooks in the standalone gateway (`startFromConfig`, what `beamclaw gateway`
 * runs), from a real `beamclaw.yaml`: the `hooks` section with its token from the
 * environment, a mapping with templates and one with a transform module of a `transformsDir`
 * relative to the file, answers delivered through the webhook channel over real HTTP, a
 * local OpenAI-compatible model; and what `beamclaw doctor` says of a `hooks` section.
 */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type StartedGateway, startFromConfig } from "../src/cli/bootstrap.js";
import { doctor } from "../src/cli/doctor.js";
import { httpCall, waitFor } from "./support.js";
import { type ChatBody, modelServer } from "./tools-support.js";
import { callbackServer, closeLeftovers } from "./webhook-callback.js";

const TOKEN = "cli-hooks-gateway-token-0123456789";
const HOOKS_TOKEN = "cli-hooks-hook-token-0123456789";
const SECRET = "webhook-secret-0123456789abcdef";
const started: StartedGateway[] = [];
const servers: Server[] = [];
const dirs: string[] = [];

afterEach(() => closeLeftovers({ started, servers, dirs }));

/** A directory with `beamclaw.yaml` and `transforms/pager.mjs`; returns the file's path. */
async function configDir(yaml: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-cli-hooks-"));
  dirs.push(dir);
  await mkdir(join(dir, "transforms"));
  await writeFile(
    join(dir, "transforms", "pager.mjs"),
    `export default ({ payload }) =>
  payload.severity === "info"
    ? null
    : { message: "Page: " + payload.summary, channel: "webhook", to: "user:oncall", name: "Pager" };
`,
  );
  const path = join(dir, "beamclaw.yaml");
  await writeFile(path, yaml);
  return path;
}

function lastUser(body: ChatBody): string {
  return body.messages.findLast((m) => m.role === "user")?.content ?? "";
}

function yamlWith(baseUrl: string, callbackUrl: string, hooks: string): string {
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
${hooks}`;
}

const HOOKS = `hooks:
  enabled: true
  token: \${HOOKS_TOKEN}
  transformsDir: ./transforms
  mappings:
    - id: github
      match: { path: github }
      name: GitHub
      messageTemplate: "{{sender.login}} opened issue #{{issue.number}}: {{issue.title}}"
      channel: webhook
      to: "group:dev"
    - id: pager
      match: { path: pager }
      transform: { module: pager.mjs }
`;

describe("hooks in the standalone gateway", () => {
  it("runs /hooks/agent and mapped hooks from beamclaw.yaml and delivers the answers through a channel", async () => {
    const model = await modelServer((body) => {
      const asked = lastUser(body);
      if (asked.includes("opened issue #7")) return { text: "Issue #7 looks like a crash." };
      if (asked.includes("Page: disk full")) return { text: "Disk full on db-1: clean /var/log." };
      return { text: "Import done." };
    });
    const app = await callbackServer(SECRET, servers);
    const path = await configDir(yamlWith(model.baseUrl, app.url, HOOKS));
    const gateway = await startFromConfig({
      configPath: path,
      env: { WEBHOOK_SECRET: SECRET, HOOKS_TOKEN },
      host: "127.0.0.1",
      port: 0,
    });
    started.push(gateway);
    const port = gateway.address.port;
    const headers = { authorization: `Bearer ${HOOKS_TOKEN}` };
    const post = (route: string, body: unknown) =>
      httpCall(port, `/hooks/${route}`, { method: "POST", headers, body });

    const direct = await post("agent", {
      message: "The nightly import finished.",
      channel: "webhook",
      to: "user:alice",
      waitForCompletion: true,
    });
    expect(direct.json).toMatchObject({
      ok: true,
      completion: { status: "ok", delivered: true },
    });
    await waitFor("the answer to alice", () =>
      app.events.find((e) => e.text === "Import done." && e.target?.chatId === "alice"),
    );

    const github = await post("github", {
      sender: { login: "ada" },
      issue: { number: 7, title: "Crash on start" },
    });
    expect(github.status).toBe(200);
    const triaged = await waitFor("the GitHub answer", () =>
      app.events.find((e) => e.text === "Issue #7 looks like a crash."),
    );
    expect(triaged.target).toMatchObject({ chatType: "group", chatId: "dev" });
    const asked = model.bodies.map(lastUser).find((text) => text.includes("opened issue #7"));
    expect(asked).toContain(
      "<<<EXTERNAL_UNTRUSTED_CONTENT>>>\nada opened issue #7: Crash on start",
    );

    // The transform module, found next to beamclaw.yaml: null answers 204, else a page.
    expect((await post("pager", { severity: "info", summary: "all fine" })).status).toBe(204);
    expect((await post("pager", { severity: "critical", summary: "disk full" })).status).toBe(200);
    const paged = await waitFor("the page", () =>
      app.events.find((e) => e.text === "Disk full on db-1: clean /var/log."),
    );
    expect(paged.target).toMatchObject({ chatType: "direct", chatId: "oncall" });
    expect(app.bad).toEqual([]);

    // The gateway's own token is not a hook token.
    expect(
      (
        await httpCall(port, "/hooks/agent", {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}` },
          body: { message: "x" },
        })
      ).status,
    ).toBe(401);
  });
});

describe("beamclaw doctor on hooks", () => {
  it("reports a valid hooks section", async () => {
    const path = await configDir(yamlWith("http://127.0.0.1:9", "http://127.0.0.1:9/out", HOOKS));
    const findings = await doctor(path, { env: { WEBHOOK_SECRET: SECRET, HOOKS_TOKEN } });
    expect(findings).toContainEqual({
      level: "ok",
      message: "hooks: /hooks/wake, /hooks/agent and 2 mapping(s)",
    });
    expect(findings.filter((f) => f.message.startsWith("hooks"))).toHaveLength(1);
  });

  it("finds a reused token, a key policy its mappings cannot work with, and what mappings name but is not there", async () => {
    const hooks = `hooks:
  enabled: true
  token: ${TOKEN}
  allowedAgentIds: [main, ghost]
  presets: [gmail]
  mappings:
    - id: github
      match: { path: github }
      agentId: ops
      channel: carrier-pigeon
      to: roof
    - id: escape
      match: { path: escape }
      transform: { module: ../beamclaw.yaml.mjs }
`;
    const path = await configDir(yamlWith("http://127.0.0.1:9", "http://127.0.0.1:9/out", hooks));
    const messages = (await doctor(path, { env: { WEBHOOK_SECRET: SECRET } }))
      .filter((f) => f.message.startsWith("hooks"))
      .map((f) => `${f.level}: ${f.message}`);
    expect(messages).toEqual([
      "error: hooks.token is the gateway's own secret: give hooks a token of their own (whoever sends webhooks would hold an operator's key)",
      'warn: hooks.allowedAgentIds names agent "ghost", which is not configured',
      'error: hooks mapping github: unknown agent "ops"',
      'error: hooks mapping github: delivers to channel "carrier-pigeon", which is not configured',
      "error: hooks mapping escape: transform ../beamclaw.yaml.mjs needs hooks.transformsDir",
      "error: hooks mapping gmail: its sessionKey comes from the payload, which needs hooks.allowRequestSessionKey (every request would be refused)",
    ]);
  });

  it("refuses a hooks section without a token, or at /", async () => {
    for (const hooks of [
      "hooks: { enabled: true }\n",
      "hooks: { enabled: true, token: abc, path: / }\n",
    ]) {
      const path = await configDir(yamlWith("http://127.0.0.1:9", "http://127.0.0.1:9/out", hooks));
      const findings = await doctor(path, { env: { WEBHOOK_SECRET: SECRET } });
      expect(findings[0]).toMatchObject({
        level: "error",
        message: expect.stringMatching(/^config hooks\./),
      });
    }
  });
});
