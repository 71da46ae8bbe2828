/**
 * `HeartbeatRunner` gaps: a `HEARTBEAT.md` past the size cap or not valid UTF-8 (Latin-1) skips
 * the beat with a typed, reported error instead of sending a truncated or garbled checklist;
 * the configuration's `heartbeat.everyMs` has a minimum of one minute; a reply with
 * `HEARTBEAT_OK` at its start or end and a short rest is suppressed (OpenClaw's
 * `ackMaxChars` rule), a longer rest is delivered without the token.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  createManualClock,
  DEFAULT_HEARTBEAT_PROMPT,
  type HeartbeatOutcome,
  HeartbeatRunner,
  type HeartbeatRunnerOptions,
  isBeamClawError,
  isHeartbeatAck,
  parseConfigYaml,
} from "../src/index.js";
import { at, MINUTE, SECOND } from "./cron-support.js";
import { failureOf, waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fileWith(content: Buffer | string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "heartbeat-gaps-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "HEARTBEAT.md");
  await writeFile(file, content);
  return file;
}

async function heartbeat(options: Partial<HeartbeatRunnerOptions>, reply = "HEARTBEAT_OK") {
  const clock = createManualClock(at("2026-06-01T10:00:00Z"));
  const prompts: string[] = [];
  const delivered: string[] = [];
  const outcomes: HeartbeatOutcome[] = [];
  const runner = new HeartbeatRunner({
    agentId: "main",
    clock,
    everyMs: 10 * MINUTE,
    runTurn: async ({ prompt }) => {
      prompts.push(prompt);
      return { status: "ok", text: reply };
    },
    deliver: (text) => {
      delivered.push(text);
    },
    ...options,
  });
  runner.events.on("heartbeat", (outcome) => outcomes.push(outcome));
  await runner.start();
  cleanups.push(() => runner.stop());
  return { runner, clock, prompts, delivered, outcomes };
}

describe("HEARTBEAT.md size cap", () => {
  it("a file over the default 64 KiB skips the beat with a typed HEARTBEAT_FILE_TOO_LARGE error; nothing is sent, not even part of it", async () => {
    const file = await fileWith(`- check the disk\n${"x".repeat(64 * 1024)}\n`);
    const { runner, clock, prompts, outcomes } = await heartbeat({ heartbeatFile: file });
    const outcome = await runner.runNow();
    expect(outcome).toMatchObject({ type: "error", code: "HEARTBEAT_FILE_TOO_LARGE" });
    expect(outcome.type === "error" && outcome.error).toContain(file);
    expect(prompts).toEqual([]);
    // The runner goes on: the next beat reads the file again, and runs once it is fixed.
    await writeFile(file, "- check the disk\n");
    await clock.advance(10 * MINUTE);
    // The beat reads the file with real I/O: wait for its outcome.
    await waitFor("the next beat", () => outcomes.length === 2);
    expect(prompts).toEqual([`${DEFAULT_HEARTBEAT_PROMPT}\n\nHEARTBEAT.md:\n- check the disk`]);
    expect(outcomes.map((o) => o.type)).toEqual(["error", "suppressed"]);
    expect(runner.stats()).toMatchObject({ errors: 1, runs: 1 });
  });

  it("a file of exactly the cap is read whole; the cap is an option", async () => {
    const body = `- ${"y".repeat(98)}`;
    const file = await fileWith(body);
    const exact = await heartbeat({ heartbeatFile: file, maxHeartbeatFileBytes: 100 });
    expect(await exact.runner.runNow()).toMatchObject({ type: "suppressed" });
    expect(exact.prompts).toEqual([`${DEFAULT_HEARTBEAT_PROMPT}\n\nHEARTBEAT.md:\n${body}`]);
    const smaller = await heartbeat({ heartbeatFile: file, maxHeartbeatFileBytes: 99 });
    expect(await smaller.runner.runNow()).toMatchObject({
      type: "error",
      code: "HEARTBEAT_FILE_TOO_LARGE",
    });
    expect(smaller.prompts).toEqual([]);
  });

  it("refuses a cap that is not a whole number from 1 up", async () => {
    for (const maxHeartbeatFileBytes of [0, -1, 1.5, Number.NaN]) {
      const error = await failureOf(
        () =>
          new HeartbeatRunner({
            agentId: "main",
            runTurn: async () => ({ status: "ok" }),
            maxHeartbeatFileBytes,
          }),
      );
      expect(isBeamClawError(error, "INVALID_ARGUMENT")).toBe(true);
    }
  });
});

describe("HEARTBEAT.md that is not UTF-8", () => {
  it("a Latin-1 file skips the beat with a typed HEARTBEAT_FILE_NOT_UTF8 error instead of sending replacement characters", async () => {
    const file = await fileWith(Buffer.from("- Prüfe die Größe des Laufwerks\n", "latin1"));
    const { runner, prompts } = await heartbeat({ heartbeatFile: file });
    const outcome = await runner.runNow();
    expect(outcome).toMatchObject({ type: "error", code: "HEARTBEAT_FILE_NOT_UTF8" });
    expect(outcome.type === "error" && outcome.error).toMatch(/not valid UTF-8/);
    expect(prompts).toEqual([]);
  });

  it("the same text saved as UTF-8 is sent as is", async () => {
    const file = await fileWith(Buffer.from("- Prüfe die Größe des Laufwerks\n", "utf8"));
    const { runner, prompts } = await heartbeat({ heartbeatFile: file });
    expect(await runner.runNow()).toMatchObject({ type: "suppressed" });
    expect(prompts).toEqual([
      `${DEFAULT_HEARTBEAT_PROMPT}\n\nHEARTBEAT.md:\n- Prüfe die Größe des Laufwerks`,
    ]);
  });
});

describe("minimum heartbeat.everyMs in the configuration", () => {
  const config = (everyMs: number) =>
    `agents: [{ id: main, model: openai/gpt-4o }]\nheartbeat: { enabled: true, everyMs: ${everyMs} }\n`;

  it.each([1, 5 * SECOND, MINUTE - 1])(
    "refuses everyMs %d with a CONFIG_INVALID error naming the value",
    async (everyMs) => {
      const error = await failureOf(() => parseConfigYaml(config(everyMs), { env: {} }));
      expect(isBeamClawError(error, "CONFIG_INVALID")).toBe(true);
      const issues = (error as { issues: Array<{ path: string; message: string }> }).issues;
      expect(issues).toEqual([
        expect.objectContaining({
          path: "heartbeat.everyMs",
          message: expect.stringContaining(`got ${everyMs}`),
        }),
      ]);
      expect((error as Error).message).toContain("60000");
    },
  );

  it("takes one minute, and the runner beats every minute on the injected clock", async () => {
    expect(parseConfigYaml(config(MINUTE), { env: {} }).heartbeat.everyMs).toBe(MINUTE);
    const { clock, prompts } = await heartbeat({ everyMs: MINUTE });
    await clock.advance(3 * MINUTE);
    expect(prompts).toHaveLength(3);
  });
});

describe("HEARTBEAT_OK at the edges of a reply (OpenClaw's ackMaxChars rule)", () => {
  it.each([
    ["HEARTBEAT_OK.", true],
    ["**HEARTBEAT_OK**", true],
    ["`HEARTBEAT_OK`\n", true],
    ["HEARTBEAT_OK, all quiet", true],
    ["Nothing needs attention. HEARTBEAT_OK", true],
    ["_HEARTBEAT_OK_ — checked mail and calendar.", true],
    ["heartbeat_ok", false],
    ["HEARTBEAT_OKAY", false],
    ["The backup failed; I did not reply HEARTBEAT_OK because of it.", false],
    ["The nightly backup failed.", false],
  ])("isHeartbeatAck(%j) is %s", (text, expected) => {
    expect(isHeartbeatAck(text)).toBe(expected);
  });

  it("a short rest around the token is suppressed, not delivered", async () => {
    const { runner, delivered } = await heartbeat({}, "**HEARTBEAT_OK** — inbox is empty.");
    expect(await runner.runNow()).toMatchObject({ type: "suppressed" });
    expect(delivered).toEqual([]);
  });

  it("a rest longer than ackMaxChars is delivered without the token", async () => {
    const alert = "The nightly backup failed: the disk is full.";
    const { runner, delivered } = await heartbeat({ ackMaxChars: 20 }, `${alert}\n\nHEARTBEAT_OK`);
    expect(await runner.runNow()).toMatchObject({ type: "delivered", text: alert });
    expect(delivered).toEqual([alert]);
  });

  it("a reply without the token at an edge is delivered unchanged", async () => {
    const reply = "The backup failed; I did not reply HEARTBEAT_OK because of it.";
    const { runner, delivered } = await heartbeat({}, reply);
    expect(await runner.runNow()).toMatchObject({ type: "delivered", text: reply });
    expect(delivered).toEqual([reply]);
  });
});
