/**
 * `heartbeat.turnTimeoutMs` in `beamclaw.yaml`: the time limit of one heartbeat turn
 * (`HeartbeatRunner`'s `turnTimeoutMs`). It used to be refused as an unknown field, so a hung
 * heartbeat turn could not be bounded from the configuration file.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, configJsonSchema, parseConfig, parseConfigYaml } from "../src/index.js";

const yaml = (value: string) =>
  `agents: { main: { model: test/m } }\nheartbeat:\n  enabled: true\n  turnTimeoutMs: ${value}\n`;

function issuesOf(text: string) {
  try {
    parseConfigYaml(text);
  } catch (error) {
    if (!ConfigError.isInstance(error)) throw error;
    return error.issues;
  }
  throw new Error("the configuration was accepted");
}

describe("heartbeat.turnTimeoutMs", () => {
  it("is read from the file, and absent by default (no limit)", () => {
    expect(parseConfigYaml(yaml("300000")).heartbeat.turnTimeoutMs).toBe(300_000);
    expect(parseConfigYaml(yaml("1")).heartbeat.turnTimeoutMs).toBe(1);
    const none = parseConfig({ agents: { main: { model: "test/m" } } });
    expect(none.heartbeat.turnTimeoutMs).toBeUndefined();
    expect("turnTimeoutMs" in none.heartbeat).toBe(false);
  });

  it("is taken from a configuration object too", () => {
    const config = parseConfig(
      { agents: { main: { model: "test/m" } }, heartbeat: { turnTimeoutMs: 60_000 } },
      { env: {} },
    );
    expect(config.heartbeat.turnTimeoutMs).toBe(60_000);
  });

  it("refuses what is not a whole number of milliseconds from 1 up, naming the field and its line", () => {
    for (const [value, message] of [
      ["0", "expected a number of milliseconds from 1 up"],
      ["-5", "expected a number of milliseconds from 1 up"],
      ["1.5", "expected int, got 1.5"],
      ['"10s"', 'expected number, got "10s"'],
      [".inf", "expected number"],
      ["null", "expected number, got null"],
    ] as const) {
      const issues = issuesOf(yaml(value));
      expect(issues, value).toHaveLength(1);
      expect(issues[0], value).toMatchObject({ path: "heartbeat.turnTimeoutMs", line: 4 });
      expect(issues[0]?.message, value).toContain(message);
    }
  });

  it("is in the JSON Schema for editors", () => {
    const schema = configJsonSchema() as {
      properties: { heartbeat: { properties: Record<string, { type?: string }> } };
    };
    expect(schema.properties.heartbeat.properties.turnTimeoutMs?.type).toBe("integer");
  });
});
