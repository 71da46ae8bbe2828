/**
 * `HeartbeatRunner`: the periodic turn in the main session, `HEARTBEAT_OK` suppression,
 * active hours in a time zone, `HEARTBEAT.md`, busy ticks, and a run through a real
 * `AgentRuntime`.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  compileActiveHours,
  createManualClock,
  createProviderChain,
  DEFAULT_HEARTBEAT_PROMPT,
  HEARTBEAT_OK,
  type HeartbeatOutcome,
  HeartbeatRunner,
  type HeartbeatRunnerOptions,
  type HeartbeatTurnResult,
  InvalidArgumentError,
  isHeartbeatAck,
  isWithinActiveHours,
  type ManualClock,
  PresenceTracker,
  parseConfig,
} from "../src/index.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { at, HOUR, MINUTE, openStore } from "./cron-support.js";
import { failureOf, waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Fixture {
  runner: HeartbeatRunner;
  clock: ManualClock;
  prompts: string[];
  delivered: string[];
  outcomes: HeartbeatOutcome[];
  reply: (prompt: string) => HeartbeatTurnResult | Promise<HeartbeatTurnResult>;
}

async function heartbeat(
  options: Partial<HeartbeatRunnerOptions> & { startAt?: number } = {},
): Promise<Fixture> {
  const { startAt = at("2026-06-01T10:00:00Z"), ...rest } = options;
  const clock = createManualClock(startAt);
  const fixture = {
    clock,
    prompts: [] as string[],
    delivered: [] as string[],
    outcomes: [] as HeartbeatOutcome[],
    reply: (): HeartbeatTurnResult => ({ status: "ok", text: HEARTBEAT_OK }),
  } as Omit<Fixture, "runner"> as Fixture;
  fixture.runner = new HeartbeatRunner({
    agentId: "main",
    clock,
    runTurn: async ({ prompt }) => {
      fixture.prompts.push(prompt);
      return fixture.reply(prompt);
    },
    deliver: (text) => {
      fixture.delivered.push(text);
    },
    ...rest,
  });
  fixture.runner.events.on("heartbeat", (outcome) => fixture.outcomes.push(outcome));
  await fixture.runner.start();
  cleanups.push(() => fixture.runner.stop());
  return fixture;
}

describe("HEARTBEAT_OK suppression", () => {
  it.each([
    ["HEARTBEAT_OK", true],
    ["  HEARTBEAT_OK  ", true],
    ["\nHEARTBEAT_OK\n\t", true],
    // OpenClaw's rule: the token at an edge, with a short rest (ackMaxChars, 300), is an ack.
    ["HEARTBEAT_OK.", true],
    ["HEARTBEAT_OK, all quiet", true],
    ["heartbeat_ok", false],
    ["Disk is 91% full. HEARTBEAT_OK", true],
    ["Disk is 91% full; HEARTBEAT_OK is not the answer today", false],
    ["", false],
  ])("isHeartbeatAck(%j) is %s", (text, expected) => {
    expect(isHeartbeatAck(text)).toBe(expected);
  });

  it("a reply of exactly HEARTBEAT_OK, whitespace around it included, is suppressed", async () => {
    const fixture = await heartbeat({ everyMs: 10 * MINUTE });
    const replies = ["HEARTBEAT_OK", "  HEARTBEAT_OK\n"];
    fixture.reply = () => ({ status: "ok", text: replies.shift()! });
    await fixture.clock.advance(20 * MINUTE);
    expect(fixture.delivered).toEqual([]);
    expect(fixture.outcomes.map((o) => o.type)).toEqual(["suppressed", "suppressed"]);
    expect(fixture.runner.stats()).toMatchObject({ runs: 2, suppressed: 2, delivered: 0 });
  });

  it("any other reply is delivered, even one that merely contains HEARTBEAT_OK", async () => {
    const fixture = await heartbeat({ everyMs: 10 * MINUTE });
    fixture.reply = () => ({ status: "ok", text: "The backup failed, so no HEARTBEAT_OK today" });
    await fixture.clock.advance(10 * MINUTE);
    expect(fixture.delivered).toEqual(["The backup failed, so no HEARTBEAT_OK today"]);
    expect(fixture.outcomes[0]).toMatchObject({
      type: "delivered",
      text: "The backup failed, so no HEARTBEAT_OK today",
    });
  });
});

describe("schedule and active hours", () => {
  it("by default a heartbeat turn runs every 30 minutes, with the default prompt", async () => {
    const { clock, prompts, runner } = await heartbeat();
    const start = clock.now();
    await clock.advance(2 * HOUR);
    expect(prompts).toEqual(Array(4).fill(DEFAULT_HEARTBEAT_PROMPT));
    expect(runner.stats().nextTickAt).toBe(start + 150 * MINUTE);
  });

  it("ticks outside activeHours are skipped; inside the window they run (in the window's time zone)", async () => {
    // 10:00Z is 12:00 in Berlin (summer); the window is 08:00–13:00 Berlin time.
    const { clock, prompts, outcomes } = await heartbeat({
      everyMs: HOUR,
      activeHours: { start: "08:00", end: "13:00", timezone: "Europe/Berlin" },
    });
    await clock.advance(3 * HOUR); // 13:00, 14:00, 15:00 Berlin: 13:00 is outside (end exclusive)
    expect(prompts).toEqual([]);
    expect(outcomes.map((o) => o.type === "skipped" && o.reason)).toEqual([
      "outside-active-hours",
      "outside-active-hours",
      "outside-active-hours",
    ]);
    await clock.advance(17 * HOUR); // up to 08:00 Berlin the next day
    expect(prompts).toHaveLength(1);
  });

  it("a window whose end is before its start wraps past midnight", () => {
    const night = compileActiveHours({ start: "22:00", end: "06:00", timezone: "UTC" });
    expect(night(at("2026-06-01T23:30:00Z"))).toBe(true);
    expect(night(at("2026-06-01T05:59:00Z"))).toBe(true);
    expect(night(at("2026-06-01T06:00:00Z"))).toBe(false);
    expect(night(at("2026-06-01T12:00:00Z"))).toBe(false);
  });

  it("active hours follow the time zone across DST: 09:00 in New York is 14:00Z in winter and 13:00Z in summer", () => {
    const office = { start: "09:00", end: "17:00", timezone: "America/New_York" };
    expect(isWithinActiveHours(office, at("2026-01-15T14:00:00Z"))).toBe(true);
    expect(isWithinActiveHours(office, at("2026-01-15T13:30:00Z"))).toBe(false);
    expect(isWithinActiveHours(office, at("2026-07-15T13:30:00Z"))).toBe(true);
    expect(isWithinActiveHours({ start: "00:00", end: "24:00" }, at("2026-07-15T23:59:00Z"))).toBe(
      true,
    );
  });

  it("a malformed window, an unknown time zone or an empty window is refused with InvalidArgumentError", async () => {
    for (const hours of [
      { start: "8:00", end: "17:00" },
      { start: "08:00", end: "25:00" },
      { start: "24:00", end: "08:00" },
      { start: "08:00", end: "08:00" },
      { start: "08:00", end: "17:00", timezone: "Atlantis/Capital" },
    ]) {
      const error = await failureOf(() => compileActiveHours(hours));
      expect(InvalidArgumentError.isInstance(error), JSON.stringify(hours)).toBe(true);
    }
    expect(
      InvalidArgumentError.isInstance(
        await failureOf(
          () =>
            new HeartbeatRunner({
              agentId: "main",
              runTurn: async () => ({ status: "ok" }),
              activeHours: { start: "09:00", end: "09:00" },
            }),
        ),
      ),
    ).toBe(true);
  });

  it("runNow runs a heartbeat at once, outside active hours too, and resolves with its outcome", async () => {
    const fixture = await heartbeat({
      activeHours: { start: "01:00", end: "02:00", timezone: "UTC" },
    });
    fixture.reply = () => ({ status: "ok", text: "Reminder: dentist at 3" });
    const outcome = await fixture.runner.runNow();
    expect(outcome).toMatchObject({ type: "delivered", text: "Reminder: dentist at 3" });
    expect(fixture.delivered).toEqual(["Reminder: dentist at 3"]);
  });
});

describe("turns", () => {
  it("a tick that comes while the previous turn still runs is skipped as busy", async () => {
    const fixture = await heartbeat({ everyMs: 10 * MINUTE });
    let finish!: () => void;
    fixture.reply = () =>
      new Promise((resolve) => {
        finish = () => resolve({ status: "ok", text: HEARTBEAT_OK });
      });
    await fixture.clock.advance(20 * MINUTE);
    expect(fixture.prompts).toHaveLength(1);
    expect(fixture.outcomes).toEqual([
      { type: "skipped", reason: "busy", at: fixture.clock.now() },
    ]);
    finish();
    await fixture.clock.advance(0);
    expect(fixture.outcomes.map((o) => o.type)).toEqual(["skipped", "suppressed"]);
  });

  it("a heartbeat listener may ask for a turn at once with runNow: it runs after the one reported", async () => {
    const fixture = await heartbeat({ everyMs: 10 * MINUTE });
    let n = 0;
    fixture.reply = () => {
      if (++n === 1) throw new Error("provider down");
      return { status: "ok", text: "Back up." };
    };
    // A listener that retries a failed heartbeat at once (the runner does not wait for it).
    let retry: Promise<HeartbeatOutcome> | undefined;
    fixture.runner.events.on("heartbeat", (outcome) => {
      if (outcome.type === "error" && retry === undefined) retry = fixture.runner.runNow();
    });
    expect(await fixture.runner.runNow()).toMatchObject({ type: "error" });
    expect(retry).toBeDefined();
    expect(await retry).toMatchObject({ type: "delivered", text: "Back up." });
    expect(fixture.outcomes.map((o) => o.type)).toEqual(["error", "delivered"]);
    expect(fixture.delivered).toEqual(["Back up."]);
  });

  it("a failed turn is counted and reported, and the heartbeat goes on", async () => {
    const fixture = await heartbeat({ everyMs: 10 * MINUTE });
    let n = 0;
    fixture.reply = () => {
      if (++n === 1) throw new Error("provider down");
      return { status: "ok", text: HEARTBEAT_OK };
    };
    await fixture.clock.advance(20 * MINUTE);
    expect(fixture.outcomes.map((o) => o.type)).toEqual(["error", "suppressed"]);
    expect(fixture.outcomes[0]).toMatchObject({ error: "provider down" });
    expect(fixture.runner.stats().errors).toBe(1);
  });

  it("HEARTBEAT.md is appended to the prompt; a checklist with only headings skips the tick; a missing file leaves the prompt alone", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "beamclaw-heartbeat-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, "HEARTBEAT.md");
    const fixture = await heartbeat({ everyMs: 10 * MINUTE, heartbeatFile: file });
    // The file is read for real: wait for each tick's outcome before the next.
    const tick = async (n: number) => {
      await fixture.clock.advance(10 * MINUTE);
      await waitFor(`heartbeat ${n}`, () => fixture.outcomes.length >= n);
    };
    await tick(1); // no file yet
    await writeFile(file, "# Heartbeat\n\n## Hourly\n");
    await tick(2); // headings only
    await writeFile(file, "# Heartbeat\n- Check the deploy queue\n");
    await tick(3);
    expect(fixture.prompts).toEqual([
      DEFAULT_HEARTBEAT_PROMPT,
      `${DEFAULT_HEARTBEAT_PROMPT}\n\nHEARTBEAT.md:\n# Heartbeat\n- Check the deploy queue`,
    ]);
    expect(fixture.outcomes[1]).toMatchObject({ type: "skipped", reason: "empty-heartbeat-file" });
  });

  it("a checklist with only headings does not skip a beat that has events waiting (hasPendingEvents): it runs with the prompt alone", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "beamclaw-heartbeat-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, "HEARTBEAT.md");
    await writeFile(file, "# Heartbeat\n\n## Hourly\n");
    let waiting = true;
    const asked: string[] = [];
    const fixture = await heartbeat({
      everyMs: 10 * MINUTE,
      heartbeatFile: file,
      hasPendingEvents: async (sessionKey) => {
        asked.push(sessionKey);
        return waiting;
      },
    });
    await fixture.clock.advance(10 * MINUTE);
    await waitFor("the tick with events", () => fixture.outcomes.length >= 1);
    waiting = false;
    expect(await fixture.runner.runNow()).toMatchObject({
      type: "skipped",
      reason: "empty-heartbeat-file",
    });
    expect(fixture.prompts).toEqual([DEFAULT_HEARTBEAT_PROMPT]);
    expect(fixture.outcomes[0]).toMatchObject({ type: "suppressed" });
    expect(asked).toEqual(["agent:main:main", "agent:main:main"]);
  });

  it("stop leaves no timer behind", async () => {
    const { runner, clock } = await heartbeat();
    expect(clock.activeTimers).toBe(1);
    await runner.stop();
    expect(clock.activeTimers).toBe(0);
  });
});

describe("configuration", () => {
  it("the heartbeat section of beamclaw.yaml configures the runner and the presence tracker", async () => {
    const { heartbeat: config } = parseConfig({
      agents: [{ id: "main", model: "a/b" }],
      heartbeat: {
        enabled: true,
        everyMs: 15 * MINUTE,
        activeHours: { start: "09:00", end: "10:00", timezone: "UTC" },
        prompt: "Anything urgent? Otherwise reply HEARTBEAT_OK.",
        presenceIntervalMs: 20_000,
        missedBeatsOffline: 2,
      },
    });
    // Deprecated aliases of `gateway.presence`: no defaults, so that their absence shows.
    const presenceIntervalMs = config.presenceIntervalMs ?? 30_000;
    const fixture = await heartbeat({
      startAt: at("2026-06-01T08:50:00Z"),
      everyMs: config.everyMs,
      ...(config.activeHours === undefined ? {} : { activeHours: config.activeHours }),
      ...(config.prompt === undefined ? {} : { prompt: config.prompt }),
    });
    await fixture.clock.advance(90 * MINUTE);
    // Ticks at 09:05, 09:20, 09:35 and 09:50 run; those at 10:05 and 10:20 are outside the window.
    expect(fixture.prompts).toEqual(
      Array(4).fill("Anything urgent? Otherwise reply HEARTBEAT_OK."),
    );
    expect(fixture.runner.stats()).toMatchObject({ ticks: 6, skipped: 2 });
    const presence = new PresenceTracker({
      intervalMs: presenceIntervalMs,
      missedBeatsOffline: config.missedBeatsOffline,
      clock: fixture.clock,
    }).start();
    cleanups.push(async () => presence.stop());
    presence.beat("node");
    await fixture.clock.advance(2 * presenceIntervalMs + 6_000);
    expect(presence.get("node")!.status).toBe("offline");
  });
});

describe("through a real AgentRuntime", () => {
  it("the heartbeat turn runs in the agent's main session; HEARTBEAT_OK is suppressed and a real reply delivered", async () => {
    const store = await openStore();
    const provider = createScriptedProvider([HEARTBEAT_OK, "The nightly backup failed."]);
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider], models: [], sleep: async () => {} }),
      agents: [{ id: "main", model: "scripted/m" }],
    });
    await runtime.start();
    cleanups.push(() => runtime.stop());
    const delivered: string[] = [];
    const runner = await new HeartbeatRunner({
      agentId: "main",
      runtime,
      clock: createManualClock(0),
      deliver: (text) => void delivered.push(text),
    }).start();
    cleanups.push(() => runner.stop());
    expect((await runner.runNow()).type).toBe("suppressed");
    expect((await runner.runNow()).type).toBe("delivered");
    expect(delivered).toEqual(["The nightly backup failed."]);
    const transcript = await store.transcripts.read("agent:main:main");
    expect(transcript).toHaveLength(4); // two prompts, two answers
  });
});
