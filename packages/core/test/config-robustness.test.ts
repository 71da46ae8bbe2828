/**
 * Configuration files with mistakes: each is a `ConfigError` naming the problem, and a watched
 * file that goes bad keeps the last good configuration and the watcher alive.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  type ConfigDiff,
  ConfigError,
  ConfigService,
  diffConfig,
  InvalidArgumentError,
  parseConfig,
  parseConfigYaml,
  subscribeTelemetry,
} from "../src/index.js";

const minimal = "agents: { main: { model: local/llama3 } }\n";

const dirs: string[] = [];
const services: ConfigService[] = [];
const offs: Array<() => void> = [];
afterEach(async () => {
  for (const off of offs.splice(0)) off();
  for (const s of services.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function configFile(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-config-robust-"));
  dirs.push(dir);
  const path = join(dir, "beamclaw.yaml");
  await writeFile(path, text);
  return path;
}

function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (ConfigError.isInstance(error)) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

function nextEvent<T>(subscribe: (fn: (e: T) => void) => () => void): Promise<T> {
  return new Promise((resolve) => {
    const off = subscribe((e) => {
      off();
      resolve(e);
    });
  });
}

/** Nine levels of ten aliases each: a billion-laughs document. */
function aliasBomb(): string {
  const lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"];
  for (let i = 1; i < 9; i++) {
    lines.push(`l${i}: &l${i} [${Array.from({ length: 10 }, () => `*l${i - 1}`).join(", ")}]`);
  }
  return `${lines.join("\n")}\n${minimal}`;
}

describe("service options", () => {
  it("a debounceMs that is not a number of milliseconds from 0 up is refused at construction", async () => {
    const path = await configFile(minimal);
    for (const debounceMs of [-1, Number.NaN, "20" as unknown as number]) {
      expect(() => new ConfigService({ path, debounceMs })).toThrow(InvalidArgumentError);
    }
  });
});

describe("listeners", () => {
  it("a config.changed listener that throws is reported; the others, the service and its watcher carry on", async () => {
    const errors: Array<{ topic: string; error: unknown }> = [];
    offs.push(subscribeTelemetry("beamclaw:pubsub.handler-error", (e) => void errors.push(e)));
    const path = await configFile(minimal);
    const service = await new ConfigService({ path, debounceMs: 20, env: {} }).start();
    services.push(service);
    service.on("config.changed", () => {
      throw new Error("listener broke");
    });
    const first = nextEvent<{ diff: ConfigDiff }>((fn) => service.on("config.changed", fn));
    await writeFile(path, "agents: { main: { model: local/qwen3 } }\n");
    await first;
    expect(service.status).toBe("running");
    expect(errors.map((e) => e.topic)).toEqual(["config.changed"]);
    const second = nextEvent<{ diff: ConfigDiff }>((fn) => service.on("config.changed", fn));
    await writeFile(path, "agents: { main: { model: local/llama3 } }\n");
    await second;
    expect(service.current.agents[0]?.model).toBe("local/llama3");
  });
});

describe("YAML aliases", () => {
  it("an alias to an anchor that does not exist is a ConfigError, not a ReferenceError", () => {
    const error = configErrorOf(() =>
      parseConfigYaml(`defaults: &base { model: local/llama3 }\nagents: { main: *bse }\n`, {
        env: {},
      }),
    );
    expect(error.issues[0]?.message).toMatch(/alias/i);
  });

  it("a document that expands aliases without bound is a ConfigError", () => {
    const error = configErrorOf(() => parseConfigYaml(aliasBomb(), { env: {} }));
    expect(error.issues[0]?.message).toMatch(/alias/i);
  });

  it("a watched file with a broken alias is config.invalid, and the next good change still applies", async () => {
    const path = await configFile(minimal);
    const service = await new ConfigService({ path, debounceMs: 20, env: {} }).start();
    services.push(service);
    const invalid = nextEvent<{ error: ConfigError }>((fn) => service.on("config.invalid", fn));
    await writeFile(path, "agents: { main: *nothing }\n");
    const { error } = await invalid;
    expect(error.issues[0]?.message).toMatch(/alias/i);
    expect(service.current.agents[0]?.model).toBe("local/llama3");
    expect(service.status).toBe("running");
    const changed = nextEvent<{ diff: ConfigDiff }>((fn) => service.on("config.changed", fn));
    await writeFile(path, "agents: { main: { model: local/qwen3 } }\n");
    await changed;
    expect(service.current.agents[0]?.model).toBe("local/qwen3");
  });
});

describe("unknown keys", () => {
  it("a __proto__ key in a file is an unknown field, not a silent prototype", () => {
    const error = configErrorOf(() =>
      parseConfigYaml(`${minimal}__proto__: { features: { beta: true } }\n`, { env: {} }),
    );
    expect(error.issues).toContainEqual({
      path: "(root)",
      message: 'unknown field(s) "__proto__"',
      line: 2,
    });
  });

  it("a __proto__ key in the object form (parsed JSON) is an unknown field too", () => {
    const input = JSON.parse(
      '{"agents":{"main":{"model":"local/llama3"}},"gateway":{"__proto__":{"port":1}}}',
    );
    const error = configErrorOf(() => parseConfig(input, { env: {} }));
    expect(error.issues).toContainEqual({
      path: "gateway",
      message: 'unknown field(s) "__proto__"',
    });
  });
});

describe("cron job schedules", () => {
  it("a cron expression or time zone that cannot be scheduled is a ConfigError naming the job's schedule", () => {
    const error = configErrorOf(() =>
      parseConfigYaml(
        `${minimal}cron:\n  jobs:\n    - { id: a, agentId: main, schedule: { cron: "61 * * * *" }, prompt: p }\n    - { id: b, agentId: main, schedule: { cron: "0 9 * * *", timezone: Mars/Olympus }, prompt: p }\n`,
        { env: {} },
      ),
    );
    expect(error.issues.map((i) => i.path)).toEqual([
      "cron.jobs[0].schedule.cron",
      "cron.jobs[1].schedule.timezone",
    ]);
    expect(error.issues[0]?.message).toMatch(/minute/);
    expect(error.issues[1]?.message).toMatch(/Mars\/Olympus/);
  });

  it("a reload with a bad schedule keeps every running job as it was", async () => {
    const good = `${minimal}cron:\n  jobs:\n    - { id: a, agentId: main, schedule: { cron: "0 9 * * *" }, prompt: p }\n`;
    const path = await configFile(good);
    const service = await new ConfigService({ path, watch: false, env: {} }).start();
    services.push(service);
    await writeFile(
      path,
      `${minimal}cron:\n  jobs:\n    - { id: b, agentId: main, schedule: { every: 60000 }, prompt: p }\n    - { id: c, agentId: main, schedule: { cron: "bad bad" }, prompt: p }\n`,
    );
    const result = await service.reload();
    expect(ConfigError.isInstance(result)).toBe(true);
    expect(service.current.cron.jobs.map((j) => j.id)).toEqual(["a"]);
  });
});

describe("heartbeat.activeHours", () => {
  it("a time zone that does not exist or an empty window is a ConfigError naming its path", () => {
    const error = configErrorOf(() =>
      parseConfigYaml(
        `${minimal}heartbeat: { enabled: true, activeHours: { start: "09:00", end: "17:00", timezone: Mars/Olympus } }\n`,
        { env: {} },
      ),
    );
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]?.path).toBe("heartbeat.activeHours");
    expect(error.issues[0]?.message).toContain("Mars/Olympus");
    const empty = configErrorOf(() =>
      parseConfigYaml(`${minimal}heartbeat: { activeHours: { start: "09:00", end: "09:00" } }\n`, {
        env: {},
      }),
    );
    expect(empty.issues[0]?.path).toBe("heartbeat.activeHours");
  });
});

describe("what a reload applies", () => {
  it("classifies the settings the runtime and gateway read only when built as restart-only", () => {
    const before = parseConfigYaml(minimal, { env: {} });
    const after = parseConfigYaml(
      `${minimal}sessions: { hibernateAfterMs: 1000, historyLimit: 5, maxQueuedMessages: 3, defaultQueueMode: steer }\nheartbeat: { enabled: true, everyMs: 60000 }\npricing: { local/llama3: { inputPerMTok: 1, outputPerMTok: 2 } }\n`,
      { env: {} },
    );
    const diff = diffConfig(before, after);
    expect(diff.applied).toEqual([]);
    expect(diff.restartRequired).toEqual(
      expect.arrayContaining([
        "sessions.hibernateAfterMs",
        "sessions.historyLimit",
        "sessions.maxQueuedMessages",
        "sessions.defaultQueueMode",
        "heartbeat.enabled",
        "heartbeat.everyMs",
        "pricing.local/llama3",
      ]),
    );
  });

  it("still applies session maintenance live", () => {
    const before = parseConfigYaml(minimal, { env: {} });
    const after = parseConfigYaml(`${minimal}sessions: { maintenance: { mode: enforce } }\n`, {
      env: {},
    });
    const diff = diffConfig(before, after);
    expect(diff.restartRequired).toEqual([]);
    expect(diff.applied).toEqual(["sessions.maintenance"]);
  });
});
