import diagnosticsChannel from "node:diagnostics_channel";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  Actor,
  emitTelemetry,
  type Process,
  subscribeTelemetry,
  type TelemetryChannel,
  type TelemetryEvents,
  telemetryChannel,
} from "../src/index.js";

/** Records the events of one channel; `off()` unsubscribes. */
function record<C extends TelemetryChannel>(name: C) {
  const events: TelemetryEvents[C][] = [];
  const off = subscribeTelemetry(name, (event) => {
    events.push(event);
  });
  return { events, off };
}

const subscriptions: Array<() => void> = [];
const live = new Set<Process>();

afterEach(() => {
  for (const off of subscriptions.splice(0)) off();
  for (const process of live) process.kill();
  live.clear();
});

function recording<C extends TelemetryChannel>(name: C): TelemetryEvents[C][] {
  const { events, off } = record(name);
  subscriptions.push(off);
  return events;
}

type Command = "crash" | "block";

class Agent extends Actor<Command, string, Command, Command> {
  readonly #failInit: boolean;
  readonly #failTerminate: boolean;
  #gate: Promise<void> | undefined;

  constructor(
    options: {
      name?: string;
      mailboxLimit?: number;
      failInit?: boolean;
      failTerminate?: boolean;
    } = {},
  ) {
    super({
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.mailboxLimit === undefined ? {} : { mailboxLimit: options.mailboxLimit }),
    });
    this.#failInit = options.failInit ?? false;
    this.#failTerminate = options.failTerminate ?? false;
    live.add(this);
  }

  block(gate: Promise<void>): void {
    this.#gate = gate;
  }

  protected override init(): void {
    if (this.#failInit) throw new Error("init failed");
  }

  protected override handleCall(command: Command): string | Promise<string> {
    if (command === "crash") throw new Error("call crashed");
    return "ok";
  }

  protected override async handleCast(command: Command): Promise<void> {
    if (command === "crash") throw new Error("cast crashed");
    await this.#gate;
  }

  protected override handleInfo(command: Command): void {
    if (command === "crash") throw new Error("info crashed");
  }

  protected override terminate(): void {
    if (this.#failTerminate) throw new Error("terminate failed");
  }
}

describe("telemetry", () => {
  it("publishes beamclaw:actor.start with the actor's id and name once init has finished", async () => {
    const starts = recording("beamclaw:actor.start");
    const agent = await new Agent({ name: "planner" }).start();
    expect(starts).toEqual([{ actorId: agent.pid, actor: "planner" }]);
    await agent.stop();
  });

  it("names an actor by its class when it has no name option", async () => {
    const starts = recording("beamclaw:actor.start");
    const agent = await new Agent().start();
    expect(starts).toEqual([{ actorId: agent.pid, actor: "Agent" }]);
    await agent.stop();
  });

  it("publishes beamclaw:actor.stop with the exit reason, for every way of stopping", async () => {
    const stops = recording("beamclaw:actor.stop");
    const normal = await new Agent({ name: "normal" }).start();
    await normal.stop();
    const shutdown = await new Agent({ name: "shutdown" }).start();
    await shutdown.stop("shutdown");
    const killed = await new Agent({ name: "killed" }).start();
    killed.kill();
    const boom = new Error("crash");
    const crashed = await new Agent({ name: "crashed" }).start();
    await crashed.stop(boom);

    expect(stops).toEqual([
      { actorId: normal.pid, actor: "normal", reason: "normal" },
      { actorId: shutdown.pid, actor: "shutdown", reason: "shutdown" },
      { actorId: killed.pid, actor: "killed", reason: "killed" },
      { actorId: crashed.pid, actor: "crashed", reason: boom },
    ]);
  });

  it("publishes beamclaw:actor.crash with the error and the callback that threw", async () => {
    const crashes = recording("beamclaw:actor.crash");
    const stops = recording("beamclaw:actor.stop");

    const byCall = await new Agent({ name: "call" }).start();
    await byCall.call("crash").catch(() => {});
    const byCast = await new Agent({ name: "cast" }).start();
    byCast.cast("crash");
    await byCast.whenStopped();
    const byInfo = await new Agent({ name: "info" }).start();
    byInfo.send("crash");
    await byInfo.whenStopped();
    const byInit = new Agent({ name: "init", failInit: true });
    await byInit.start().catch(() => {});
    const byTerminate = await new Agent({ name: "terminate", failTerminate: true }).start();
    await byTerminate.stop();

    const summary = crashes.map((e) => ({
      actorId: e.actorId,
      actor: e.actor,
      phase: e.phase,
      message: (e.error as Error).message,
    }));
    expect(summary).toEqual([
      { actorId: byCall.pid, actor: "call", phase: "handleCall", message: "call crashed" },
      { actorId: byCast.pid, actor: "cast", phase: "handleCast", message: "cast crashed" },
      { actorId: byInfo.pid, actor: "info", phase: "handleInfo", message: "info crashed" },
      { actorId: byInit.pid, actor: "init", phase: "init", message: "init failed" },
      {
        actorId: byTerminate.pid,
        actor: "terminate",
        phase: "terminate",
        message: "terminate failed",
      },
    ]);
    // Each crash is followed by a stop carrying the same error.
    for (const crash of crashes) {
      const stop = stops.find((s) => s.actorId === crash.actorId);
      expect(stop?.reason).toBe(crash.error);
    }
  });

  it("publishes beamclaw:actor.overload with the limit and the kind of message refused", async () => {
    const overloads = recording("beamclaw:actor.overload");
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const agent = await new Agent({ name: "busy", mailboxLimit: 1 }).start();
    agent.block(gate);
    agent.cast("block"); // in flight
    agent.cast("block"); // fills the mailbox
    await agent.call("block").catch(() => {});
    expect(() => agent.cast("block")).toThrow();
    expect(() => agent.send("block")).toThrow();

    expect(overloads).toEqual([
      { actorId: agent.pid, actor: "busy", limit: 1, kind: "call" },
      { actorId: agent.pid, actor: "busy", limit: 1, kind: "cast" },
      { actorId: agent.pid, actor: "busy", limit: 1, kind: "info" },
    ]);
    release();
    await agent.stop();
  });

  it("publishes on node:diagnostics_channel under the beamclaw:<subject>.<event> names", async () => {
    const received: unknown[] = [];
    const listener = (message: unknown, name: string | symbol) => {
      received.push({ name, message });
    };
    diagnosticsChannel.subscribe("beamclaw:actor.start", listener);
    try {
      const agent = await new Agent({ name: "raw" }).start();
      expect(received).toEqual([
        { name: "beamclaw:actor.start", message: { actorId: agent.pid, actor: "raw" } },
      ]);
      await agent.stop();
    } finally {
      diagnosticsChannel.unsubscribe("beamclaw:actor.start", listener);
    }
    expect(telemetryChannel("beamclaw:actor.start").name).toBe("beamclaw:actor.start");
  });

  it("builds no payload while a channel has no subscribers", () => {
    const payload = vi.fn(() => ({ topic: "t", error: new Error("x") }));
    const channel = telemetryChannel("beamclaw:pubsub.handler-error");
    expect(channel.hasSubscribers).toBe(false);
    emitTelemetry("beamclaw:pubsub.handler-error", payload);
    expect(payload).not.toHaveBeenCalled();

    const events: unknown[] = [];
    const off = subscribeTelemetry("beamclaw:pubsub.handler-error", (event) => {
      events.push(event);
    });
    expect(channel.hasSubscribers).toBe(true);
    emitTelemetry("beamclaw:pubsub.handler-error", payload);
    expect(payload).toHaveBeenCalledTimes(1);
    expect(events).toEqual([payload.mock.results[0]?.value]);

    off();
    expect(channel.hasSubscribers).toBe(false);
    emitTelemetry("beamclaw:pubsub.handler-error", payload);
    expect(payload).toHaveBeenCalledTimes(1);
    expect(events).toHaveLength(1);
  });

  it("stops delivering to a listener once its subscribeTelemetry handle is called", async () => {
    const { events, off } = record("beamclaw:actor.start");
    const first = await new Agent({ name: "first" }).start();
    off();
    const second = await new Agent({ name: "second" }).start();
    expect(events).toEqual([{ actorId: first.pid, actor: "first" }]);
    await Promise.all([first.stop(), second.stop()]);
  });
});
