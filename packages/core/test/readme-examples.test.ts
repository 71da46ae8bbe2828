import { describe, expect, it } from "vitest";
import { Actor, DynamicSupervisor, Registry, Supervisor } from "../src/index.js";

// The examples printed in the root README and in this package's README, kept runnable.
describe("README examples", () => {
  it("the package README example counts through a supervised, registered actor", async () => {
    class Counter extends Actor<"get", number, "inc"> {
      #n = 0;
      protected override handleCall() {
        return this.#n;
      }
      protected override handleCast() {
        this.#n++;
      }
    }
    const names = new Registry();
    const app = await new Supervisor({
      children: [{ id: "counter", start: () => new Counter().start(), via: names.via("counter") }],
    }).start();
    const counter = names.whereis<Counter>("counter")!;
    counter.cast("inc");
    expect(await counter.call("get")).toBe(1);
    await app.stop();
    expect(counter.status).toBe("stopped");
    expect(names.whereis("counter")).toBeUndefined();
  });

  it("the root README example answers through a session under a dynamic supervisor", async () => {
    class Session extends Actor<{ text: string }, string> {
      #turns = 0;
      protected override async handleCall(msg: { text: string }) {
        this.#turns++;
        return `turn ${this.#turns}: ${msg.text}`;
      }
    }
    const names = new Registry();
    const sessions = await new DynamicSupervisor({ maxChildren: 10_000 }).start();
    await sessions.startChild({
      restart: "transient",
      start: () => new Session().start(),
      via: names.via("agent:main:main"),
    });
    const reply = await names.whereis<Session>("agent:main:main")!.call({ text: "hello" });
    expect(reply).toBe("turn 1: hello");
    await sessions.stop();
    expect(sessions.status).toBe("stopped");
  });
});
