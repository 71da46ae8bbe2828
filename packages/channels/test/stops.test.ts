/**
 * `Stops`, the sequencing every channel's `stop()` shares: a stop made while another is closing
 * resolves only after it, one made with nothing under way resolves at once, and a failed stop
 * does not hold later ones.
 */
import { describe, expect, it } from "vitest";
import { Stops } from "../src/shared/stops.js";

/** A promise and the function that resolves it. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe("Stops", () => {
  it("has nothing pending before and after a stop", async () => {
    const stops = new Stops();
    expect(stops.pending).toBeUndefined();
    await stops.run(async () => {});
    expect(stops.pending).toBeUndefined();
  });

  it("a stop waiting on pending, or a later run, resolves only after the earlier shut-down", async () => {
    const stops = new Stops();
    const first = gate();
    const order: string[] = [];
    const one = stops.run(() => first.promise).then(() => order.push("first"));
    const waiting = stops.pending!.then(() => order.push("pending"));
    const two = stops.run(async () => {}).then(() => order.push("second"));
    // The second run's own shut-down is done, but the first's is not: neither has resolved.
    await Promise.resolve();
    await Promise.resolve();
    expect(order).toEqual([]);
    first.open();
    await Promise.all([one, waiting, two]);
    expect(order).toEqual(["first", "pending", "second"]);
    expect(stops.pending).toBeUndefined();
  });

  it("a shut-down that fails rejects its stop and leaves nothing pending", async () => {
    const stops = new Stops();
    await expect(stops.run(async () => Promise.reject(new Error("close failed")))).rejects.toThrow(
      "close failed",
    );
    expect(stops.pending).toBeUndefined();
    await expect(stops.run(async () => {})).resolves.toBeUndefined();
  });
});
