/**
 * Compiled cron expressions share one croner `Cron` per expression and zone (each holds
 * about 80 KB), but only while some job uses it: once every job of an expression is gone
 * (removed, or its service stopped), its `Cron` can be collected, so 1,000 distinct
 * expressions do not hold 80 MB after the services stop.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { compileSchedule } from "../src/index.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Heap in use after a full collection, in a later turn (a `WeakRef` keeps its target for the turn). */
async function heapAfterGc(): Promise<number> {
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe("the shared cron expressions", () => {
  it("are released once no compiled schedule uses them", async () => {
    const before = await heapAfterGc();
    let kept: unknown[] = [];
    for (let i = 0; i < 500; i++) {
      kept.push(
        compileSchedule(
          { cron: `${i % 60} ${Math.floor(i / 60)} * * *`, timezone: "Europe/Berlin" },
          0,
        ),
      );
    }
    const held = (await heapAfterGc()) - before;
    // 500 distinct expressions: tens of MB while in use.
    expect(held).toBeGreaterThan(20 * 1024 * 1024);
    kept = [];
    void kept;
    const after = (await heapAfterGc()) - before;
    expect(after).toBeLessThan(held / 4);
  });

  it("are still shared while in use: the same expression gives the same times", () => {
    const a = compileSchedule({ cron: "30 2 * * *", timezone: "Europe/Berlin" }, 0);
    const b = compileSchedule({ cron: "30 2 * * *", timezone: "Europe/Berlin" }, 0);
    const from = Date.parse("2026-03-28T12:00:00Z");
    expect(a.nextAfter(from)).toBe(Date.parse("2026-03-29T01:00:00Z"));
    expect(b.nextAfter(from)).toBe(a.nextAfter(from));
  });
});
