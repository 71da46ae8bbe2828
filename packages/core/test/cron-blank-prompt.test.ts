/**
 * A cron job whose prompt is only whitespace would send a message of nothing on every run,
 * which `send` refuses: every run would fail. It is refused where the job is made (`add`,
 * `update`, `beamclaw.yaml`), nothing stored.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, InvalidArgumentError, parseConfig } from "../src/index.js";
import { type CronFixture, startCron } from "./cron-support.js";
import { failureOf } from "./support.js";

const crons: CronFixture[] = [];
afterEach(async () => {
  for (const fixture of crons.splice(0)) await fixture.service.stop();
});

describe("a cron job whose prompt is only whitespace", () => {
  it("is refused by add and update, nothing stored or changed", async () => {
    const fixture = await startCron();
    crons.push(fixture);
    for (const prompt of [" ", "\n\t ", "\u00a0"]) {
      const error = await failureOf(() =>
        fixture.service.add({ id: "blank", schedule: { every: 60_000 }, prompt }),
      );
      expect(InvalidArgumentError.isInstance(error), JSON.stringify(prompt)).toBe(true);
      expect((error as Error).message).toContain("prompt: is only whitespace");
    }
    expect(await fixture.store.cron.getJob("blank")).toBeUndefined();
    await fixture.service.add({ id: "ok", schedule: { every: 60_000 }, prompt: "report" });
    const patch = await failureOf(() => fixture.service.update("ok", { prompt: "  " }));
    expect(InvalidArgumentError.isInstance(patch)).toBe(true);
    expect((await fixture.store.cron.getJob("ok"))?.prompt).toBe("report");
  });

  it("is refused in a configuration, naming the job's prompt", () => {
    let error: unknown;
    try {
      parseConfig({
        agents: [{ id: "main", model: "p/m" }],
        cron: { jobs: [{ id: "j", agentId: "main", schedule: { every: 60_000 }, prompt: " " }] },
      });
    } catch (e) {
      error = e;
    }
    expect(ConfigError.isInstance(error)).toBe(true);
    expect((error as ConfigError).issues).toContainEqual(
      expect.objectContaining({
        path: "cron.jobs[0].prompt",
        message: "is only whitespace: every run would send a message of nothing",
      }),
    );
  });

  it("still says an empty prompt is too short, once", async () => {
    const fixture = await startCron();
    crons.push(fixture);
    const error = await failureOf(() =>
      fixture.service.add({ id: "empty", schedule: { every: 60_000 }, prompt: "" }),
    );
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
    expect((error as Error).message).not.toContain("only whitespace");
  });
});
