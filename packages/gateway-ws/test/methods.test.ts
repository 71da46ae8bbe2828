import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigService, parseConfig } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import type { GatewayCronBackend } from "../src/index.js";
import {
  closeClients,
  MAIN,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
  waitFor,
} from "./support.js";

useSchemaCheck();
const dirs: string[] = [];
afterEach(async () => {
  await closeClients();
  await stopStacks();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const KEY = "agent:main:main";

describe("system methods", () => {
  it("health reports the store's sessions per agent", async () => {
    const stack = await startStack({ responses: [{ text: "x" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "hi", idempotencyKey: "h" });
    await client.waitEvent("chat", (p) => p.state === "final");
    const health = await client.request("health");
    expect(health.ok).toBe(true);
    expect(health.defaultAgentId).toBe("main");
    expect(health.sessions.count).toBe(1);
    expect(health.agents[0]).toMatchObject({
      agentId: "main",
      isDefault: true,
      sessions: { count: 1 },
    });
  });

  it("status describes store, agents and connections; provider details only for admins", async () => {
    const config = parseConfig({
      gateway: { auth: { mode: "token", token: TOKEN } },
      providers: {
        scripted: { kind: "openai-compatible", baseUrl: "http://127.0.0.1:9/v1", apiKey: "k" },
      },
      agents: { main: { model: "scripted/m1" } },
      store: { kind: "memory" },
    });
    const stack = await startStack({ gateway: { config } });
    const reader = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });
    const status = await reader.request("status");
    expect(status).toMatchObject({
      ok: true,
      store: { kind: "memory" },
      agents: [{ id: "main" }],
      connections: { operators: 1 },
    });
    expect(status.providers).toBeUndefined();
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    expect((await admin.request("status")).providers).toEqual([
      { id: "scripted", kind: "openai-compatible", baseUrl: "http://127.0.0.1:9/v1" },
    ]);
  });

  it("logs.tail returns the gateway's log lines and continues from its cursor", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const first = await client.request("logs.tail", { limit: 100 });
    expect(first.lines.some((l: string) => l.includes("listening on"))).toBe(true);
    await TestClient.connect(stack.url, { token: TOKEN, clientId: "cli", mode: "cli" });
    const next = await client.request("logs.tail", { cursor: first.cursor });
    expect(next.lines.length).toBeGreaterThan(0);
    expect(next.lines.every((l: string) => !first.lines.includes(l))).toBe(true);
    expect(next.lines.some((l: string) => l.includes("client=cli"))).toBe(true);
    const bad = await rpcError(client.requestUnchecked("logs.tail", { limit: 0 }));
    expect(bad.code).toBe("INVALID_REQUEST");
  });

  it("usage.status and usage.cost report the tokens of today's runs by provider", async () => {
    const stack = await startStack({
      responses: [{ text: "x", usage: { inputTokens: 120, outputTokens: 30 } }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "hi", idempotencyKey: "u" });
    await client.waitEvent("chat", (p) => p.state === "final");
    const status = await client.request("usage.status");
    expect(status.providers).toEqual([
      expect.objectContaining({
        provider: "scripted",
        today: expect.objectContaining({ calls: 1, inputTokens: 120, outputTokens: 30 }),
      }),
    ]);
    const cost = await client.request("usage.cost", { days: 7 });
    expect(cost.daily).toHaveLength(1);
    expect(cost.daily[0].providers.scripted).toMatchObject({ inputTokens: 120, outputTokens: 30 });
    expect(cost.totals).toMatchObject({ input: 120, output: 30, calls: 1 });
    expect(
      (await rpcError(client.requestUnchecked("usage.cost", { startDate: "yesterday" }))).code,
    ).toBe("INVALID_REQUEST");
  });

  it("system-presence lists the connected clients", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const presence = await client.request("system-presence");
    expect(presence).toEqual([expect.objectContaining({ mode: "test", roles: ["operator"] })]);
  });

  it("answers an unknown method with INVALID_REQUEST and keeps the connection", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const error = await rpcError(client.requestUnchecked("no.such.method", {}));
    expect(error).toMatchObject({
      code: "INVALID_REQUEST",
      message: "unknown method: no.such.method",
    });
    expect((await client.request("health")).ok).toBe(true);
  });

  it("answers methods registered by a plugin, with their scope enforced", async () => {
    const stack = await startStack();
    stack.gateway.registerMethod("demo.echo", {
      scope: "operator.write",
      handler: ({ params }) => ({ echoed: params.text }),
    });
    const writer = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.write"],
    });
    expect(await writer.requestUnchecked("demo.echo", { text: "hi" })).toEqual({ echoed: "hi" });
    const reader = await TestClient.connect(stack.url, { token: TOKEN, scopes: ["operator.read"] });
    expect((await rpcError(reader.requestUnchecked("demo.echo", {}))).code).toBe("FORBIDDEN");
    expect(() =>
      stack.gateway.registerMethod("health", { scope: "operator.read", handler: () => 1 }),
    ).toThrow(/already registered/);
  });
});

describe("heartbeats and wake", () => {
  it("last-heartbeat is null until a beat runs; wake now runs one and announces it", async () => {
    const stack = await startStack({ responses: [{ text: "HEARTBEAT_OK" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(await client.request("last-heartbeat")).toBeNull();
    const woke = await client.request("wake", { mode: "now", text: "the deploy finished" });
    expect(woke).toMatchObject({ ok: true, mode: "now", queued: false, sessionKey: KEY });
    const beat = await client.waitEvent("heartbeat");
    expect(beat.payload).toMatchObject({ status: "ok-token", sessionKey: KEY });
    expect(stack.provider.requests[0]!.messages.at(-1)).toMatchObject({
      content: [{ text: expect.stringContaining("the deploy finished") }],
    });
    expect(await client.request("last-heartbeat")).toMatchObject({ status: "ok-token" });
  });

  it("set-heartbeats turns periodic heartbeats on and off; it needs enabled: boolean", async () => {
    const stack = await startStack({
      responses: Array.from({ length: 50 }, () => "Disk is 91% full"),
      gateway: { heartbeat: { everyMs: 30 } },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(await client.request("set-heartbeats", { enabled: true })).toEqual({
      ok: true,
      enabled: true,
    });
    expect((await client.request("status")).heartbeat.enabled).toBe(true);
    const beat = await client.waitEvent("heartbeat", (p) => p.status === "sent");
    expect(beat.payload).toMatchObject({ sessionKey: KEY, preview: "Disk is 91% full" });
    expect(await client.request("set-heartbeats", { enabled: false })).toEqual({
      ok: true,
      enabled: false,
    });
    expect((await rpcError(client.requestUnchecked("set-heartbeats", {}))).code).toBe(
      "INVALID_REQUEST",
    );
  });

  it("wake next-heartbeat queues the text; a bad mode is INVALID_REQUEST", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(await client.request("wake", { mode: "next-heartbeat", text: "later" })).toMatchObject({
      queued: true,
      heartbeatsEnabled: false,
    });
    expect(
      (await rpcError(client.requestUnchecked("wake", { mode: "soon", text: "x" }))).details,
    ).toMatchObject({ field: "mode" });
    expect(stack.provider.requests).toHaveLength(0);
  });
});

describe("catalog methods", () => {
  it("models.list lists the agents' models; an unknown agent is INVALID_REQUEST", async () => {
    const stack = await startStack({
      agents: [
        { ...MAIN, fallbacks: ["scripted/m2"] },
        { id: "ops", model: "other/big" },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const { models } = await client.request("models.list", {});
    expect(models.map((m: { provider: string; id: string }) => `${m.provider}/${m.id}`)).toEqual([
      "scripted/m1",
      "scripted/m2",
      "other/big",
    ]);
    expect((await client.request("models.list", { agentId: "ops" })).models).toHaveLength(1);
    const error = await rpcError(client.request("models.list", { agentId: "ghost" }));
    expect(error.details).toMatchObject({ code: "UNKNOWN_AGENT_ID" });
  });

  it("tools.catalog lists the tools the agent may call", async () => {
    const stack = await startStack({
      agents: [{ ...MAIN, tools: ["*"] }],
      runtime: {
        tools: [
          {
            name: "clock",
            description: "The time",
            inputSchema: { type: "object" },
            execute: () => "noon",
          },
        ],
      },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const catalog = await client.request("tools.catalog", {});
    expect(catalog.agentId).toBe("main");
    expect(catalog.groups[0].tools).toEqual([
      expect.objectContaining({ id: "clock", description: "The time" }),
    ]);
  });

  it("tools.effective lists a session's tools, MCP servers' apart", async () => {
    const tool = (name: string, description: string) => ({
      name,
      description,
      inputSchema: { type: "object" },
      execute: () => "ok",
    });
    const config = parseConfig({
      agents: { main: { model: "scripted/m1" } },
      store: { kind: "memory" },
      tools: { mcpServers: { files: { command: "mcp-files" } } },
    });
    const stack = await startStack({
      agents: [
        { ...MAIN, tools: ["clock", "files__read"], subagents: {} },
        { id: "ops", model: "scripted/m1" },
      ],
      runtime: {
        tools: [
          tool("clock", "The time"),
          tool("files__read", "Reads a file"),
          tool("secret", "Not allowed"),
        ],
      },
      gateway: { config, auth: { mode: "token", token: TOKEN } },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(
      await client.request("tools.effective", { sessionKey: "agent:main:telegram:direct:42" }),
    ).toEqual({
      agentId: "main",
      profile: "full",
      groups: [
        {
          id: "core",
          label: "Tools",
          source: "core",
          tools: [
            {
              id: "clock",
              label: "clock",
              description: "The time",
              rawDescription: "The time",
              source: "core",
            },
            expect.objectContaining({ id: "spawn_subagent", source: "core" }),
          ],
        },
        {
          id: "mcp",
          label: "MCP servers",
          source: "mcp",
          tools: [
            {
              id: "files__read",
              label: "files__read",
              description: "Reads a file",
              rawDescription: "Reads a file",
              source: "mcp",
              mcpServer: "files",
              mcpToolName: "read",
            },
          ],
        },
      ],
    });
    // An agent allowed no tools has none; a key of another agent than `agentId` is refused.
    expect(await client.request("tools.effective", { sessionKey: "agent:ops:main" })).toEqual({
      agentId: "ops",
      profile: "full",
      groups: [],
    });
    const mismatch = await rpcError(
      client.request("tools.effective", { sessionKey: "agent:ops:main", agentId: "main" }),
    );
    expect(mismatch.details).toMatchObject({ code: "AGENT_MISMATCH" });
  });

  it("commands.list describes the chat commands the channels understand", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const { commands } = await client.request("commands.list", {});
    expect(commands.map((c: Wire) => c.name)).toEqual([
      "new",
      "stop",
      "status",
      "think",
      "compact",
      "approve",
      "deny",
      "pair",
    ]);
    expect(commands[0]).toEqual({
      name: "new",
      textAliases: ["/new", "/reset"],
      description: expect.any(String),
      category: "session",
      source: "native",
      scope: "text",
      acceptsArgs: false,
    });
    expect(commands.find((c: Wire) => c.name === "think").args).toEqual([
      {
        name: "level",
        description: expect.any(String),
        type: "string",
        choices: ["off", "minimal", "low", "medium", "high"].map((v) => ({ value: v, label: v })),
      },
    ]);
    // Without arguments on request; no native (platform menu) commands; unknown agents refused.
    const bare = await client.request("commands.list", { includeArgs: false, scope: "text" });
    expect(bare.commands.some((c: Wire) => "args" in c)).toBe(false);
    expect(bare.commands.find((c: Wire) => c.name === "think").acceptsArgs).toBe(true);
    expect(await client.request("commands.list", { scope: "native" })).toEqual({ commands: [] });
    const unknown = await rpcError(client.request("commands.list", { agentId: "ghost" }));
    expect(unknown.details).toMatchObject({ code: "UNKNOWN_AGENT_ID" });
  });

  it("agents.list names the default agent and each agent's models", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(await client.request("agents.list", {})).toMatchObject({
      defaultId: "main",
      agents: [{ id: "main", model: { primary: "scripted/m1", fallbacks: [] } }],
    });
  });

  it("agents.list and agent.identity.get give each agent's identity: name, emoji, avatar", async () => {
    const avatar = "data:image/png;base64,iVBORw0KGgo=";
    const stack = await startStack({
      agents: [
        { ...MAIN, identity: { name: "Clawd", emoji: "🦞", theme: "space lobster", avatar } },
        { id: "ops", model: "scripted/m1", identity: { avatar: "https://example.com/ops.png" } },
        { id: "plain", model: "scripted/m1" },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const list = await client.request("agents.list", {});
    expect(list.agents.map((a: Wire) => [a.id, a.name, a.identity])).toEqual([
      [
        "main",
        "Clawd",
        { name: "Clawd", emoji: "🦞", theme: "space lobster", avatar, avatarUrl: avatar },
      ],
      [
        "ops",
        "ops",
        { avatar: "https://example.com/ops.png", avatarUrl: "https://example.com/ops.png" },
      ],
      ["plain", "plain", undefined],
    ]);
    // The default agent, by id, and by a session's key.
    expect(await client.request("agent.identity.get", {})).toEqual({
      agentId: "main",
      name: "Clawd",
      nameSource: "config",
      emoji: "🦞",
      avatar,
      avatarSource: "config",
      avatarStatus: "data",
    });
    expect(await client.request("agent.identity.get", { agentId: "ops" })).toEqual({
      agentId: "ops",
      name: "ops",
      nameSource: "default",
      avatar: "https://example.com/ops.png",
      avatarSource: "config",
      avatarStatus: "remote",
    });
    expect(
      await client.request("agent.identity.get", { sessionKey: "agent:plain:telegram:direct:42" }),
    ).toEqual({ agentId: "plain", name: "plain", nameSource: "default", avatarStatus: "none" });
    // A cron session runs as the default agent.
    expect(
      await client.request("agent.identity.get", { sessionKey: "cron:nightly" }),
    ).toMatchObject({ agentId: "main" });
    expect(
      await client.request("agent.identity.get", { agentId: "ops", sessionKey: "agent:ops:main" }),
    ).toMatchObject({ agentId: "ops" });
    for (const params of [
      { agentId: "nobody" },
      { sessionKey: "agent:nobody:main" },
      { sessionKey: "agent:main:../../etc" },
      { agentId: "ops", sessionKey: "agent:main:main" },
    ]) {
      const error = await rpcError(client.request("agent.identity.get", params));
      expect(error.code, JSON.stringify(params)).toBe("INVALID_REQUEST");
    }
  });

  it("config.get returns the configuration with every secret redacted", async () => {
    const config = parseConfig({
      gateway: { auth: { mode: "token", token: "super-secret-token" } },
      providers: {
        scripted: {
          kind: "anthropic",
          apiKey: "sk-ant-secret",
          headers: { "x-key": "hdr-secret" },
        },
      },
      agents: { main: { model: "scripted/m1" } },
      store: { kind: "memory" },
    });
    const stack = await startStack({ gateway: { config, auth: { mode: "token", token: TOKEN } } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const got = await client.request("config.get", {});
    expect(got.valid).toBe(true);
    expect(got.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(got.config.agents[0].model).toBe("scripted/m1");
    const text = JSON.stringify(got);
    for (const secret of ["super-secret-token", "sk-ant-secret", "hdr-secret"])
      expect(text).not.toContain(secret);
  });

  it("config.get redacts channel secrets, MCP server environments and URL credentials", async () => {
    const config = parseConfig({
      gateway: { auth: { mode: "token", token: TOKEN } },
      providers: { scripted: { kind: "anthropic" } },
      agents: { main: { model: "scripted/m1" } },
      store: { kind: "redis", url: "redis://:redis-pass-secret@cache.internal:6379/0" },
      tools: {
        mcpServers: {
          gh: {
            command: "mcp-github",
            env: { GITHUB_PERSONAL_ACCESS_TOKEN: "ghp_env-secret" },
          },
        },
      },
      channels: {
        slack: {
          botToken: "xoxb-bot-secret",
          appToken: "xapp-app-secret",
          signingSecret: "slack-signing-secret",
        },
        telegram: { token: "123:tg-secret", webhook: { secretToken: "tg-webhook-secret" } },
        hooksout: { kind: "webhook", inboundSecret: "in-secret", outboundSecret: "out-secret" },
      },
    });
    const stack = await startStack({ gateway: { config, auth: { mode: "token", token: TOKEN } } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const got = await client.request("config.get", {});
    const text = JSON.stringify(got);
    for (const secret of [
      "redis-pass-secret",
      "ghp_env-secret",
      "xoxb-bot-secret",
      "xapp-app-secret",
      "slack-signing-secret",
      "tg-secret",
      "tg-webhook-secret",
      "in-secret",
      "out-secret",
    ])
      expect(text, secret).not.toContain(secret);
    // What is not secret stays readable.
    expect(got.config.store.url).toBe("redis://__REDACTED__@cache.internal:6379/0");
    expect(got.config.tools.mcpServers.gh.command).toBe("mcp-github");
    expect(got.config.channels.hooksout.kind).toBe("webhook");
  });

  it("announces a configuration change as config.changed, and config.get shows it live", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-config-"));
    dirs.push(dir);
    const file = join(dir, "beamclaw.yaml");
    const yaml = (flag: boolean) =>
      `gateway: { auth: { mode: none } }\nstore: { kind: memory }\nagents: { main: { model: scripted/m1 } }\nfeatures: { beta: ${flag} }\n`;
    await writeFile(file, yaml(false));
    const configService = await new ConfigService({ path: file, watch: false }).start();
    try {
      const stack = await startStack({ gateway: { configService, config: configService.current } });
      const client = await TestClient.connect(stack.url, { token: TOKEN });
      expect((await client.request("config.get", {})).config.features).toEqual({ beta: false });
      await writeFile(file, yaml(true));
      await configService.reload();
      const changed = await client.waitEvent("config.changed");
      expect(changed.payload).toEqual({
        changed: ["features.beta"],
        applied: ["features.beta"],
        restartRequired: [],
      });
      expect((await client.request("config.get", {})).config.features).toEqual({ beta: true });
    } finally {
      await configService.stop();
    }
  });

  it("skills.status lists eligible and gated skills of the configured directories", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-skills-"));
    dirs.push(dir);
    await mkdir(join(dir, "greet"));
    await writeFile(
      join(dir, "greet", "SKILL.md"),
      "---\nname: greet\ndescription: Greets people\n---\nSay hello.\n",
    );
    await mkdir(join(dir, "needs-tool"));
    await writeFile(
      join(dir, "needs-tool", "SKILL.md"),
      "---\nname: needs-tool\ndescription: Needs a binary\nrequires:\n  bins: [definitely-not-installed-xyz]\n---\nRun it.\n",
    );
    const config = parseConfig({
      gateway: { auth: { mode: "none" } },
      agents: { main: { model: "scripted/m1" } },
      skills: { dirs: [dir] },
      store: { kind: "memory" },
    });
    const stack = await startStack({ gateway: { config } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const status = await client.request("skills.status", {});
    expect(status.skills).toEqual([
      expect.objectContaining({ name: "greet", eligible: true }),
      expect.objectContaining({
        name: "needs-tool",
        eligible: false,
        missing: [expect.stringContaining("definitely-not-installed-xyz")],
      }),
    ]);
  });

  it("skills.status of a config file's gateway reads its relative skills.dirs from the file's directory, gated against the configuration", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bc-skills-rel-"));
    dirs.push(dir);
    await mkdir(join(dir, "skills", "deploy"), { recursive: true });
    await writeFile(
      join(dir, "skills", "deploy", "SKILL.md"),
      "---\nname: deploy\ndescription: Deploys\nrequires:\n  config: [features.deploy]\n---\nShip it.\n",
    );
    const file = join(dir, "beamclaw.yaml");
    await writeFile(
      file,
      "gateway: { auth: { mode: none } }\nstore: { kind: memory }\nagents: { main: { model: scripted/m1 } }\nskills: { dirs: [./skills] }\nfeatures: { deploy: true }\n",
    );
    // The working directory is elsewhere: a relative dir must not be read from it.
    expect(process.cwd()).not.toBe(dir);
    const configService = await new ConfigService({ path: file, watch: false }).start();
    try {
      expect(configService.path).toBe(file);
      const stack = await startStack({ gateway: { configService, config: configService.current } });
      const client = await TestClient.connect(stack.url, { token: TOKEN });
      const status = await client.request("skills.status", {});
      expect(status.dirs).toEqual([join(dir, "skills")]);
      expect(status.skills).toEqual([
        expect.objectContaining({ name: "deploy", eligible: true, enabled: true, missing: [] }),
      ]);
    } finally {
      await configService.stop();
    }
  });
});

describe("cron", () => {
  it("answers every cron method with UNAVAILABLE naming the missing cron subsystem", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const calls: Array<[string, unknown]> = [
      ["cron.list", {}],
      ["cron.status", {}],
      [
        "cron.add",
        {
          name: "n",
          schedule: { kind: "every", everyMs: 1000 },
          sessionTarget: "main",
          wakeMode: "now",
          payload: { kind: "systemEvent", text: "x" },
        },
      ],
      ["cron.update", { id: "j", patch: {} }],
      ["cron.remove", { id: "j" }],
      ["cron.run", { id: "j" }],
      ["cron.runs", {}],
    ];
    for (const [method, params] of calls) {
      const error = await rpcError(client.request(method, params));
      expect([method, error.code, error.retryable, error.details]).toEqual([
        method,
        "UNAVAILABLE",
        false,
        { code: "SUBSYSTEM_UNAVAILABLE", subsystem: "cron" },
      ]);
    }
  });

  it("runs cron.* on core's CronSupervisor, in OpenClaw's job shape", async () => {
    const stack = await startStack({ cron: true, responses: [{ text: "Digest: all quiet" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const job = await client.request("cron.add", {
      name: "Daily digest",
      schedule: { kind: "every", everyMs: 3_600_000 },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "Summarize the day" },
    });
    expect(job).toMatchObject({
      name: "Daily digest",
      enabled: true,
      sessionTarget: "isolated",
      schedule: { kind: "every", everyMs: 3_600_000 },
    });
    await client.waitEvent("cron", (p) => p.action === "added" && p.jobId === job.id);
    expect((await client.request("cron.list", {})).jobs.map((j: { id: string }) => j.id)).toEqual([
      job.id,
    ]);
    expect(await client.request("cron.run", { id: job.id, mode: "force" })).toEqual({
      ok: true,
      ran: true,
      jobId: job.id,
    });
    const finished = await client.waitEvent(
      "cron",
      (p) => p.action === "finished" && p.jobId === job.id,
    );
    expect(finished.payload.status).toBe("ok");
    const runs = await client.request("cron.runs", { id: job.id });
    expect(runs.entries).toEqual([
      expect.objectContaining({ jobId: job.id, status: "ok", summary: "Digest: all quiet" }),
    ]);
    const updated = await client.request("cron.update", {
      id: job.id,
      patch: { name: "Evening digest", enabled: false },
    });
    expect(updated).toMatchObject({ name: "Evening digest", enabled: false });
    expect(await client.request("cron.status", {})).toMatchObject({
      enabled: true,
      jobs: 1,
      enabledJobs: 0,
    });
    expect(await client.request("cron.remove", { id: job.id })).toEqual({
      ok: true,
      removed: true,
    });
    const missing = await rpcError(client.request("cron.run", { id: job.id }));
    expect(missing.details).toMatchObject({ code: "CRON_JOB_NOT_FOUND", jobId: job.id });
    const unsupported = await rpcError(
      client.request("cron.add", {
        name: "shell",
        schedule: { kind: "every", everyMs: 60_000 },
        sessionTarget: "isolated",
        wakeMode: "now",
        payload: { kind: "command", argv: ["ls"] },
      }),
    );
    expect(unsupported.details).toMatchObject({ code: "UNSUPPORTED_PAYLOAD" });
  });

  it("drives a cron backend when one is given, announcing changes as cron events", async () => {
    const jobs = new Map<string, Record<string, unknown>>();
    const cron: GatewayCronBackend = {
      list: async () => ({ jobs: [...jobs.values()] }),
      status: async () => ({ enabled: true, jobs: jobs.size }),
      add: async (params) => {
        const job = {
          ...params,
          id: `job-${jobs.size + 1}`,
          enabled: true,
          createdAtMs: 1,
          updatedAtMs: 1,
          state: {},
        };
        jobs.set(job.id, job);
        return job;
      },
      update: async (id, patch) => ({ ...jobs.get(id), ...patch }),
      remove: async (id) => ({ removed: jobs.delete(id) }),
      run: async (id, mode) => ({ ok: true, ran: id, mode }),
      runs: async () => ({ entries: [] }),
    };
    const stack = await startStack({ gateway: { cron } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const job = await client.request("cron.add", {
      name: "digest",
      schedule: { kind: "cron", expr: "0 9 * * *" },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "summarize" },
    });
    expect(job.id).toBe("job-1");
    await client.waitEvent("cron", (p) => p.action === "added" && p.jobId === "job-1");
    expect((await client.request("cron.list", {})).jobs).toHaveLength(1);
    expect(await client.request("cron.run", { id: "job-1", mode: "force" })).toEqual({
      ok: true,
      ran: "job-1",
      mode: "force",
    });
    expect(await client.request("cron.remove", { jobId: "job-1" })).toEqual({
      ok: true,
      removed: true,
    });
    expect((await rpcError(client.requestUnchecked("cron.update", { id: "job-1" }))).code).toBe(
      "INVALID_REQUEST",
    );
    await waitFor("the removal event", () =>
      client.events.find((e) => e.event === "cron" && e.payload.action === "removed"),
    );
  });
});
