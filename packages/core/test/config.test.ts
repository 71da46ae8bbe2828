import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  type ConfigDiff,
  ConfigError,
  ConfigService,
  configJsonSchema,
  diffConfig,
  LocalPubSub,
  loadConfigFile,
  parseConfig,
  parseConfigYaml,
} from "../src/index.js";

const minimal = `
agents:
  - id: main
    model: anthropic/claude-sonnet-4-5
`;

function issuesOf(fn: () => unknown): ConfigError["issues"] {
  try {
    fn();
  } catch (error) {
    if (ConfigError.isInstance(error)) return error.issues;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

const dirs: string[] = [];
const services: ConfigService[] = [];
afterEach(async () => {
  for (const s of services.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function configFile(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-config-"));
  dirs.push(dir);
  const path = join(dir, "beamclaw.yaml");
  await writeFile(path, text);
  return path;
}

function nextEvent<T>(subscribe: (fn: (e: T) => void) => () => void): Promise<T> {
  return new Promise((resolve) => {
    const off = subscribe((e) => {
      off();
      resolve(e);
    });
  });
}

describe("parsing and validation", () => {
  it("fills every default from a minimal file", () => {
    const config = parseConfigYaml(minimal);
    expect(config.agents[0]).toMatchObject({ id: "main", maxSteps: 16, tools: [], fallbacks: [] });
    expect(config.gateway).toMatchObject({
      host: "127.0.0.1",
      port: 18_789,
      auth: { mode: "token" },
    });
    expect(config.tools.approvals).toEqual({
      mode: "on-miss",
      timeoutMs: 120_000,
      defaultDecision: "deny",
    });
    expect(config.sessions.hibernateAfterMs).toBe(300_000);
    expect(config.store).toEqual({ kind: "fs", dir: "./.beamclaw" });
  });

  it("names the path and the expected value of every problem", () => {
    const issues = issuesOf(() =>
      parseConfigYaml(`
agents:
  - id: Main!
    model: 42
    maxSteps: "many"
gateway:
  port: 99999
  colour: blue
`),
    );
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i.message]));
    expect(Object.keys(byPath).sort()).toEqual(
      ["agents[0].id", "agents[0].maxSteps", "agents[0].model", "gateway", "gateway.port"].sort(),
    );
    expect(byPath["agents[0].model"]).toMatch(/expected string, got 42/);
    expect(byPath["agents[0].maxSteps"]).toMatch(/expected number, got "many"/);
    expect(byPath.gateway).toMatch(/unknown field\(s\) "colour"/);
  });

  it("keeps /v1/responses answers 30 days unless gateway.http.responsesKeepMs says otherwise (0 to 365 days)", () => {
    const agents = [{ id: "main", model: "p/m" }];
    expect(parseConfig({ agents }).gateway.http.responsesKeepMs).toBe(2_592_000_000);
    expect(parseConfig({ agents, gateway: { http: { responsesKeepMs: 0 } } }).gateway.http).toEqual(
      { chatCompletions: true, models: true, responses: false, responsesKeepMs: 0 },
    );
    for (const bad of [-1, 1.5, 31_536_000_001, "30d"]) {
      const issues = issuesOf(() =>
        parseConfig({ agents, gateway: { http: { responsesKeepMs: bad } } }),
      );
      expect(issues.map((i) => i.path)).toEqual(["gateway.http.responsesKeepMs"]);
    }
  });

  it("refuses a memoryPressure.sampleIntervalMs longer than a timer holds", () => {
    const agents = [{ id: "main", model: "p/m" }];
    const issues = issuesOf(() =>
      parseConfig({ agents, memoryPressure: { maxRssBytes: 1, sampleIntervalMs: 2 ** 31 } }),
    );
    expect(issues.map((i) => i.path)).toEqual(["memoryPressure.sampleIntervalMs"]);
    const longest = parseConfig({
      agents,
      memoryPressure: { maxRssBytes: 1, sampleIntervalMs: 2 ** 31 - 1 },
    });
    expect(longest.memoryPressure?.sampleIntervalMs).toBe(2 ** 31 - 1);
  });

  it("reports YAML syntax errors with their line and column", () => {
    const issues = issuesOf(() => parseConfigYaml("agents:\n  - id: main\n   model: x/y\n"));
    expect(issues[0]?.path).toMatch(/^line \d+, column \d+$/);
  });

  it("refuses duplicate agent ids and cron jobs naming an unknown agent", () => {
    const issues = issuesOf(() =>
      parseConfig({
        agents: [
          { id: "a", model: "p/m" },
          { id: "a", model: "p/m" },
        ],
        cron: { jobs: [{ id: "j", agentId: "ghost", schedule: { every: 1000 }, prompt: "hi" }] },
      }),
    );
    expect(issues.map((i) => i.path)).toEqual(["agents[1].id", "cron.jobs[0].agentId"]);
  });

  it("refuses tool and approval time limits no timer can hold (over 2^31-1 ms), naming them", () => {
    const issues = issuesOf(() =>
      parseConfig({
        agents: [{ id: "main", model: "p/m" }],
        tools: { timeoutMs: 2 ** 31, approvals: { timeoutMs: 3_000_000_000 } },
      }),
    );
    expect(issues.map((i) => i.path)).toEqual(["tools.timeoutMs", "tools.approvals.timeoutMs"]);
    const config = parseConfig({
      agents: [{ id: "main", model: "p/m" }],
      tools: { timeoutMs: 2 ** 31 - 1, approvals: { timeoutMs: 2 ** 31 - 1 } },
    });
    expect(config.tools.approvals.timeoutMs).toBe(2 ** 31 - 1);
  });

  it("accepts the programmatic form: the same schema without a file", () => {
    const config = parseConfig({
      agents: [{ id: "main", model: "openai/gpt-4.1" }],
      features: { beta: true },
    });
    expect(config.features).toEqual({ beta: true });
  });
});

describe("${ENV} substitution", () => {
  it("replaces ${VAR}, uses ${VAR:-default}, and keeps $${ literal", () => {
    const config = parseConfigYaml(
      `${minimal}
providers:
  anthropic:
    kind: anthropic
    apiKey: \${ANTHROPIC_KEY}
    baseUrl: \${BASE:-https://api.anthropic.com}
agents:
  - id: main
    model: anthropic/claude
    systemPrompt: "cost is $\${PRICE}"
`.replace(minimal, ""),
      { env: { ANTHROPIC_KEY: "sk-test" } },
    );
    expect(config.providers.anthropic).toMatchObject({
      apiKey: "sk-test",
      baseUrl: "https://api.anthropic.com",
    });
    expect(config.agents[0]?.systemPrompt).toBe("cost is ${PRICE}");
  });

  it("names the path of a reference to an unset variable", () => {
    const issues = issuesOf(() =>
      parseConfig(
        {
          agents: [{ id: "main", model: "p/m" }],
          gateway: { auth: { mode: "token", token: "${MISSING_TOKEN}" } },
        },
        { env: {} },
      ),
    );
    expect(issues).toEqual([
      { path: "gateway.auth.token", message: "environment variable MISSING_TOKEN is not set" },
    ]);
  });
});

describe("JSON Schema for editors", () => {
  it("describes the file, with defaults optional and agents required", () => {
    const schema = configJsonSchema() as {
      type: string;
      required?: string[];
      properties: Record<string, unknown>;
    };
    expect(schema.type).toBe("object");
    expect(schema.required).toEqual(["agents"]);
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining([
        "gateway",
        "store",
        "providers",
        "agents",
        "cron",
        "heartbeat",
        "tools",
      ]),
    );
  });
});

describe("diffs", () => {
  it("classifies API keys, provider URLs, bind address, TLS and auth as restart-only, the rest as live", () => {
    const before = parseConfig({
      agents: [{ id: "main", model: "p/m" }],
      providers: { p: { kind: "openai", apiKey: "a" } },
    });
    const after = parseConfig({
      agents: [{ id: "main", model: "p/m2" }],
      providers: { p: { kind: "openai", apiKey: "b" } },
      gateway: { host: "0.0.0.0" },
      tools: { timeoutMs: 5000 },
    });
    const diff = diffConfig(before, after);
    expect(diff.restartRequired.sort()).toEqual(["gateway.host", "providers.p.apiKey"]);
    expect(diff.applied.sort()).toEqual(["agents", "tools.timeoutMs"]);
  });

  it("classifies what the gateway reads when it is built (limits, liveness, HTTP, stream window) as restart-only", () => {
    const before = parseConfig({ agents: [{ id: "main", model: "p/m" }] });
    const after = parseConfig({
      agents: [{ id: "main", model: "p/m" }],
      gateway: {
        maxPayloadBytes: 2_000_000,
        tickIntervalMs: 10_000,
        presence: false,
        http: { chatCompletions: false, responses: true },
        streamCoalesceMs: 50,
        allowedOrigins: ["https://ops.example.com"],
      },
    });
    const diff = diffConfig(before, after);
    expect(diff.restartRequired.sort()).toEqual([
      "gateway.http.chatCompletions",
      "gateway.http.responses",
      "gateway.maxPayloadBytes",
      "gateway.presence",
      "gateway.streamCoalesceMs",
      "gateway.tickIntervalMs",
    ]);
    expect(diff.applied).toEqual(["gateway.allowedOrigins"]);
  });

  it("takes gateway.streamCoalesceMs as a whole number of ms from 0 to 10,000", () => {
    const agents = [{ id: "main", model: "p/m" }];
    expect(parseConfig({ agents, gateway: { streamCoalesceMs: 0 } }).gateway.streamCoalesceMs).toBe(
      0,
    );
    expect(parseConfig({ agents }).gateway.streamCoalesceMs).toBeUndefined();
    for (const bad of [-1, 1.5, 10_001, "50"]) {
      const issues = issuesOf(() => parseConfig({ agents, gateway: { streamCoalesceMs: bad } }));
      expect(issues.map((i) => i.path)).toEqual(["gateway.streamCoalesceMs"]);
    }
  });
});

describe("ConfigService hot reload", () => {
  it("applies a live change and announces config.changed on its listeners and on events:global", async () => {
    const path = await configFile(minimal);
    const pubsub = new LocalPubSub();
    const published: unknown[] = [];
    pubsub.subscribe("events:global", (e) => published.push(e));
    const service = await new ConfigService({ path, debounceMs: 20, pubsub }).start();
    services.push(service);
    const changed = nextEvent<{ diff: ConfigDiff }>((fn) => service.on("config.changed", fn));
    await writeFile(path, `${minimal}    maxSteps: 4\n`);
    const { diff } = await changed;
    expect(diff.applied).toEqual(["agents"]);
    expect(service.current.agents[0]?.maxSteps).toBe(4);
    expect(published).toContainEqual(expect.objectContaining({ type: "config.changed" }));
  });

  it("keeps restart-only fields at their running values and reports them", async () => {
    const path = await configFile(`${minimal}gateway:\n  port: 1000\n`);
    const service = await new ConfigService({ path, debounceMs: 20 }).start();
    services.push(service);
    const changed = nextEvent<{ diff: ConfigDiff }>((fn) => service.on("config.changed", fn));
    await writeFile(path, `${minimal}gateway:\n  port: 2000\nfeatures:\n  beta: true\n`);
    const { diff } = await changed;
    expect(diff.restartRequired).toEqual(["gateway.port"]);
    expect(service.current.gateway.port).toBe(1000);
    expect(service.current.features).toEqual({ beta: true });
  });

  it("rejects an invalid file with config.invalid and keeps the running configuration", async () => {
    const path = await configFile(minimal);
    const service = await new ConfigService({ path, debounceMs: 20 }).start();
    services.push(service);
    const invalid = nextEvent<{ error: ConfigError }>((fn) => service.on("config.invalid", fn));
    await writeFile(path, "agents: []\n");
    const { error } = await invalid;
    expect(error.issues[0]?.path).toBe("agents");
    expect(service.current.agents[0]?.id).toBe("main");
  });

  it("follows an editor that saves by renaming a temporary file over the original", async () => {
    const path = await configFile(minimal);
    const service = await new ConfigService({ path, debounceMs: 20 }).start();
    services.push(service);
    const changed = nextEvent<{ diff: ConfigDiff }>((fn) => service.on("config.changed", fn));
    const temp = `${path}.tmp`;
    await writeFile(temp, `${minimal}features:\n  x: true\n`);
    await rename(temp, path);
    await changed;
    expect(service.current.features).toEqual({ x: true });
  });

  it("refuses to start on an invalid file, and stops watching on stop()", async () => {
    const bad = await configFile("agents: nope\n");
    await expect(new ConfigService({ path: bad }).start()).rejects.toBeInstanceOf(ConfigError);
    const path = await configFile(minimal);
    const service = await new ConfigService({ path }).start();
    await service.stop();
    expect(service.status).toBe("stopped");
  });
});

describe("the gateway example's shape", () => {
  it("accepts agents as a map keyed by id, gateway.host and gateway.http", () => {
    const config = parseConfigYaml(
      `
gateway:
  host: 127.0.0.1
  port: 18789
  auth: { mode: token, token: \${BEAMCLAW_GATEWAY_TOKEN} }
  http: { chatCompletions: true }
store: { kind: fs, dir: ./.beamclaw }
providers:
  local: { kind: openai-compatible, baseUrl: http://127.0.0.1:11434/v1, apiKey: none }
agents:
  main: { model: local/llama3 }
`,
      { env: { BEAMCLAW_GATEWAY_TOKEN: "t0ken" } },
    );
    expect(config.agents).toEqual([expect.objectContaining({ id: "main", model: "local/llama3" })]);
    expect(config.gateway).toMatchObject({
      host: "127.0.0.1",
      port: 18789,
      // `/v1/responses` stays off unless asked for, as in OpenClaw.
      http: { chatCompletions: true, models: true, responses: false },
    });
    expect(config.gateway.auth.token).toBe("t0ken");
  });

  it("names the agent's path by its id when a map-form agent is invalid", () => {
    const issues = issuesOf(() => parseConfig({ agents: { main: { model: "nope" } } }));
    expect(issues).toEqual([
      { path: "agents.main.model", message: expect.stringMatching(/provider\/model/) },
    ]);
  });
});

describe("tools.exec, tools.webFetch and gateway.allowedOrigins", () => {
  it("are off or empty by default, with exec's limits filled in", () => {
    const config = parseConfigYaml(minimal);
    expect(config.tools.exec).toEqual({
      enabled: false,
      host: "sandbox",
      roots: [],
      yieldAfterMs: 10_000,
      timeoutMs: 1_800_000,
      allowlist: [],
    });
    expect(config.tools.webFetch).toEqual({
      enabled: false,
      allow: [],
      maxBytes: 2_097_152,
      timeoutMs: 30_000,
    });
    expect(config.gateway.allowedOrigins).toEqual([]);
    expect(parseConfig({ ...parseConfigYaml(minimal), tools: {} }).tools.exec.enabled).toBe(false);
  });

  it("accepts a full exec section: sandbox, node and allowlist", () => {
    const config = parseConfigYaml(`${minimal}
tools:
  exec:
    enabled: true
    host: sandbox
    roots: [./work]
    yieldAfterMs: 5000
    sandbox: { driver: docker, image: "debian:bookworm-slim" }
    node: { nodeId: build-box, workdir: /srv/build }
    allowlist:
      - { executable: git, argv: [status, "**"] }
      - { executable: /usr/bin/ls }
  webFetch: { enabled: true, allow: [10.0.0.0/8, wiki.corp.example], maxBytes: 1000 }
gateway:
  allowedOrigins: ["https://ops.example.com", "http://127.0.0.1:5173"]
`);
    expect(config.tools.exec).toMatchObject({
      enabled: true,
      roots: ["./work"],
      yieldAfterMs: 5000,
      timeoutMs: 1_800_000,
      sandbox: { driver: "docker", image: "debian:bookworm-slim" },
      node: { nodeId: "build-box", workdir: "/srv/build" },
      allowlist: [{ executable: "git", argv: ["status", "**"] }, { executable: "/usr/bin/ls" }],
    });
    expect(config.tools.webFetch).toMatchObject({ enabled: true, maxBytes: 1000 });
    expect(config.gateway.allowedOrigins).toEqual([
      "https://ops.example.com",
      "http://127.0.0.1:5173",
    ]);
  });

  it("names every inconsistent exec setting: a node host without a node, docker without an image, no roots", () => {
    const issues = issuesOf(() =>
      parseConfigYaml(`${minimal}
tools:
  exec: { enabled: true, host: node, sandbox: { driver: docker } }
`),
    );
    expect(issues.map((i) => i.path).sort()).toEqual([
      "tools.exec.node",
      "tools.exec.roots",
      "tools.exec.sandbox.image",
    ]);
    expect(issues.find((i) => i.path === "tools.exec.roots")?.message).toMatch(/at least one/);
  });

  it("needs no roots for an exec that only runs on a node, and none while exec is off", () => {
    expect(
      parseConfigYaml(`${minimal}
tools: { exec: { enabled: true, host: node, node: { nodeId: abc123 } } }
`).tools.exec.roots,
    ).toEqual([]);
    expect(parseConfigYaml(`${minimal}tools: { exec: { host: gateway } }\n`).tools.exec.host).toBe(
      "gateway",
    );
  });

  it("refuses bad allowlist entries, node ids, workdirs, origins and unknown fields", () => {
    const issues = issuesOf(() =>
      parseConfigYaml(`${minimal}
tools:
  exec:
    host: node
    node: { nodeId: "a b", workdir: relative }
    allowlist:
      - { executable: bin/git }
      - { executable: git, argv: ["**", status] }
    shell: /bin/bash
  webFetch: { maxBytes: -1 }
gateway:
  allowedOrigins: ["https://ops.example.com/", "not a url"]
`),
    );
    expect(issues.map((i) => i.path).sort()).toEqual([
      "gateway.allowedOrigins[0]",
      "gateway.allowedOrigins[1]",
      "tools.exec",
      "tools.exec.allowlist[0].executable",
      "tools.exec.allowlist[1].argv",
      "tools.exec.node.nodeId",
      "tools.exec.node.workdir",
      "tools.webFetch.maxBytes",
    ]);
    expect(issues.find((i) => i.path === "tools.exec")?.message).toContain('"shell"');
  });

  it("classifies where exec runs as restart-only; its allowlist and limits, web_fetch and allowed origins as live", () => {
    const before = parseConfigYaml(minimal);
    const after = parseConfig({
      ...before,
      gateway: { ...before.gateway, allowedOrigins: ["https://ops.example.com"] },
      tools: {
        ...before.tools,
        exec: {
          enabled: true,
          host: "gateway",
          roots: ["/srv"],
          yieldAfterMs: 1000,
          timeoutMs: 2000,
          sandbox: { driver: "bubblewrap" },
          node: { nodeId: "n1" },
          allowlist: [{ executable: "git" }],
        },
        webFetch: { enabled: true, allow: ["10.0.0.0/8"], maxBytes: 10, timeoutMs: 10 },
      },
    });
    const diff = diffConfig(before, after);
    expect(diff.restartRequired.sort()).toEqual([
      "tools.exec.enabled",
      "tools.exec.host",
      "tools.exec.node",
      "tools.exec.roots",
      "tools.exec.sandbox",
    ]);
    expect(diff.applied.sort()).toEqual([
      "gateway.allowedOrigins",
      "tools.exec.allowlist",
      "tools.exec.timeoutMs",
      "tools.exec.yieldAfterMs",
      "tools.webFetch.allow",
      "tools.webFetch.enabled",
      "tools.webFetch.maxBytes",
      "tools.webFetch.timeoutMs",
    ]);
  });

  it("keeps exec's host at its running value on reload while the allowlist changes live", async () => {
    const exec = (host: string, allow: string) =>
      `${minimal}tools:\n  exec: { host: ${host}, node: { nodeId: n1 }, allowlist: [{ executable: ${allow} }] }\n`;
    const path = await configFile(exec("sandbox", "git"));
    const service = await new ConfigService({ path, debounceMs: 20 }).start();
    services.push(service);
    const changed = nextEvent<{ diff: ConfigDiff }>((fn) => service.on("config.changed", fn));
    await writeFile(path, exec("node", "make"));
    const { diff } = await changed;
    expect(diff.restartRequired).toEqual(["tools.exec.host"]);
    expect(diff.applied).toEqual(["tools.exec.allowlist"]);
    expect(service.current.tools.exec.host).toBe("sandbox");
    expect(service.current.tools.exec.allowlist).toEqual([{ executable: "make" }]);
  });

  it("documents the new sections in the editor schema", () => {
    const schema = configJsonSchema() as {
      properties: {
        tools: { properties: Record<string, unknown> };
        gateway: { properties: Record<string, unknown> };
      };
    };
    expect(Object.keys(schema.properties.tools.properties)).toEqual(
      expect.arrayContaining(["exec", "webFetch"]),
    );
    expect(schema.properties.gateway.properties).toHaveProperty("allowedOrigins");
  });
});

describe("agents.*.autoCompact", () => {
  it("takes true or { thresholdTokens, keepTurns }, and names the path of a bad value", () => {
    const config = parseConfig({
      agents: [
        { id: "main", model: "p/m", autoCompact: { thresholdTokens: 60_000, keepTurns: 3 } },
        { id: "ops", model: "p/m", autoCompact: true },
      ],
    });
    expect(config.agents.map((a) => a.autoCompact)).toEqual([
      { thresholdTokens: 60_000, keepTurns: 3 },
      true,
    ]);
    const issues = issuesOf(() =>
      parseConfig({ agents: [{ id: "main", model: "p/m", autoCompact: { keepTurns: -1 } }] }),
    );
    expect(issues.map((i) => i.path)).toEqual(["agents[0].autoCompact.keepTurns"]);
  });
});

describe("agents.*.identity", () => {
  it("takes a name, theme, emoji and avatar, and names the path of a bad value", () => {
    const config = parseConfigYaml(`${minimal}
  - id: ops
    model: p/m
    identity:
      name: Clawd
      theme: space lobster
      emoji: "🦞"
      avatar: https://example.com/clawd.png
`);
    expect(config.agents.find((a) => a.id === "ops")?.identity).toEqual({
      name: "Clawd",
      theme: "space lobster",
      emoji: "🦞",
      avatar: "https://example.com/clawd.png",
    });
    for (const [identity, path] of [
      [{ name: "" }, "agents[0].identity.name"],
      [{ name: 42 }, "agents[0].identity.name"],
      [{ avatar: "javascript:alert(1)" }, "agents[0].identity.avatar"],
      [{ avatar: "data:text/html;base64,PGgxPg==" }, "agents[0].identity.avatar"],
      [{ nickname: "C" }, "agents[0].identity"],
    ] as const) {
      const issues = issuesOf(() =>
        parseConfig({ agents: [{ id: "main", model: "p/m", identity }] }),
      );
      expect(
        issues.map((i) => i.path),
        JSON.stringify(identity),
      ).toEqual([path]);
    }
  });
});

describe("agents.*.output", () => {
  const schema = {
    type: "object",
    properties: { sentiment: { type: "string", enum: ["positive", "negative"] } },
    required: ["sentiment"],
    additionalProperties: false,
  };

  it("takes a JSON Schema of an object with its options, and names the path of a bad value", () => {
    const config = parseConfig({
      agents: [{ id: "main", model: "p/m", output: { schema, name: "sentiment", retries: 2 } }],
    });
    expect(config.agents[0]!.output).toEqual({ schema, name: "sentiment", retries: 2 });
    const issues = (output: unknown) =>
      issuesOf(() => parseConfig({ agents: [{ id: "main", model: "p/m", output }] })).map(
        (i) => i.path,
      );
    expect(issues({ schema: { type: "array" } })).toEqual(["agents[0].output.schema"]);
    expect(issues({ schema, retries: 6 })).toEqual(["agents[0].output.retries"]);
    expect(issues({ schema, name: "a b" })).toEqual(["agents[0].output.name"]);
    expect(issues({ schema, format: "json" })).toEqual(["agents[0].output"]);
  });
});

describe("where a problem is: the key as written and its line", () => {
  it("names a map-form agent by its id, not by its position in the list it becomes", () => {
    const issues = issuesOf(() =>
      parseConfigYaml(`agents:
  main:
    model: local/llama3
  other:
    modle: x
    maxSteps: "ten"
`),
    );
    expect(issues.map((i) => i.path).sort()).toEqual(
      ["agents.other", "agents.other.maxSteps", "agents.other.model"].sort(),
    );
  });

  it("gives the line of every problem of a file, and shows it in the message", () => {
    let error: unknown;
    try {
      parseConfigYaml(
        `# a comment
gateway:
  port: "abc"
gatway: {}
agents:
  main:
    model: local/llama3
  other:
    modle: x
    maxSteps: "ten"
`,
        { source: "/etc/beamclaw.yaml" },
      );
    } catch (caught) {
      error = caught;
    }
    if (!ConfigError.isInstance(error)) throw new Error("expected a ConfigError");
    const line = Object.fromEntries(error.issues.map((i) => [`${i.path} ${i.message}`, i.line]));
    expect(line).toEqual({
      'gateway.port expected number, got "abc"': 3,
      '(root) unknown field(s) "gatway"': 4,
      // The missing key is reported at its agent's key; the unknown one at itself.
      "agents.other.model expected string, got nothing": 8,
      'agents.other.maxSteps expected number, got "ten"': 10,
      'agents.other unknown field(s) "modle"': 9,
    });
    expect(error.message).toContain("/etc/beamclaw.yaml");
    expect(error.message).toContain('  - gateway.port: expected number, got "abc" (line 3)');
  });

  it("gives the line of a reference to an unset environment variable", () => {
    const issues = issuesOf(() =>
      parseConfigYaml(
        "agents: { main: { model: p/m } }\ngateway:\n  auth: { mode: token, token: ${NOPE_TOKEN} }\n",
        { env: {} },
      ),
    );
    expect(issues).toEqual([
      {
        path: "gateway.auth.token",
        message: "environment variable NOPE_TOKEN is not set",
        line: 3,
      },
    ]);
  });

  it("a configuration object has no lines", () => {
    const issues = issuesOf(() => parseConfig({ agents: { main: { model: 42 } } }));
    expect(issues).toEqual([{ path: "agents.main.model", message: "expected string, got 42" }]);
  });

  it("says what agents takes when the file has none (an empty file)", () => {
    for (const text of ["", "# only a comment\n"]) {
      const issues = issuesOf(() => parseConfigYaml(text));
      expect(issues).toEqual([
        {
          path: "agents",
          message: expect.stringMatching(
            /^expected a map of agents by id .* or a list, got nothing$/,
          ),
        },
      ]);
    }
  });

  it("states a YAML syntax error once, without a dangling position", () => {
    const issues = issuesOf(() => parseConfigYaml("gateway: { port: 0, port: 1 }\nagents: []\n"));
    expect(issues).toEqual([{ path: "line 1, column 21", message: "Map keys must be unique" }]);
  });

  it("a file that is missing or a directory is one issue saying so, with the cause kept", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-config-"));
    dirs.push(dir);
    const missing = join(dir, "nope.yaml");
    const errors = await Promise.all(
      [missing, dir].map((path) =>
        loadConfigFile(path).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    );
    const [notFound, directory] = errors.map((e) => {
      if (!ConfigError.isInstance(e)) throw new Error("expected a ConfigError");
      return e;
    });
    expect(notFound!.issues).toEqual([{ path: "(file)", message: "no such file" }]);
    expect((notFound!.cause as { code?: string }).code).toBe("ENOENT");
    expect(notFound!.source).toBe(missing);
    expect(directory!.issues).toEqual([
      { path: "(file)", message: "a directory, not a file: give the path of a YAML file" },
    ]);
  });
});
