/** `KeyedChains`: one queue per key, the keys independent. */
import { describe, expect, it } from "vitest";
import { KeyedChains } from "../src/shared/keyed-chains.js";

/** A promise and the function that resolves it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

describe("KeyedChains", () => {
  it("runs a key's tasks in order, another key's beside them, and forgets a key once idle", async () => {
    const chains = new KeyedChains();
    const done: string[] = [];
    const slow = gate();
    const a1 = chains.run("a", async () => {
      await slow.opened;
      done.push("a1");
    });
    const a2 = chains.run("a", async () => {
      done.push("a2");
    });
    const b1 = chains.run("b", async () => {
      done.push("b1");
    });
    await b1;
    expect(done).toEqual(["b1"]);
    slow.open();
    await Promise.all([a1, a2]);
    expect(done).toEqual(["b1", "a1", "a2"]);
    await chains.drained();
    expect(chains.size).toBe(0);
  });

  it("goes on after a failed task, whose promise rejects with its error", async () => {
    const chains = new KeyedChains();
    const failed = chains.run("a", async () => {
      throw new Error("boom");
    });
    const next = chains.run("a", async () => "next");
    await expect(failed).rejects.toThrow("boom");
    await expect(next).resolves.toBe("next");
  });

  it("starts a key's first task only after the gate; what is chained on a task runs before the key's next", async () => {
    const chains = new KeyedChains();
    const events: string[] = [];
    const start = gate();
    const first = chains.run("a", async () => events.push("first"), start.opened);
    void first.then(() => events.push("hand-over of first"));
    const second = chains.run("a", async () => events.push("second"), start.opened);
    await Promise.resolve();
    expect(events).toEqual([]);
    start.open();
    await second;
    expect(events).toEqual(["first", "hand-over of first", "second"]);
  });

  it("drained() waits for every task given so far", async () => {
    const chains = new KeyedChains();
    const slow = gate();
    let finished = false;
    void chains.run("a", async () => {
      await slow.opened;
      finished = true;
    });
    const drained = chains.drained();
    slow.open();
    await drained;
    expect(finished).toBe(true);
  });
});
