import { afterEach, describe, expect, it, vi } from "vitest";
import {
  AbortedError,
  Actor,
  type ActorOptions,
  AlreadyStartedError,
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_MAILBOX_LIMIT,
  DEFAULT_SHUTDOWN_MS,
  type DownMessage,
  type ExitReason,
  InvalidArgumentError,
  NoProcessError,
  noReply,
  OverloadedError,
  type Process,
  type ReplyTo,
  TimeoutError,
} from "../src/index.js";
import { activeTimeouts, deferred, failureOf, tick } from "./support.js";

// ---------------------------------------------------------------- helpers

interface Hooks {
  init?: (self: Probe) => void | Promise<void>;
  call?: (message: unknown, from: ReplyTo<unknown>, self: Probe) => unknown;
  cast?: (message: unknown, self: Probe) => void | Promise<void>;
  info?: (message: unknown, self: Probe) => void | Promise<void>;
  terminate?: (reason: ExitReason, self: Probe) => void | Promise<void>;
}

/** An actor whose callbacks are given by each test. Unset callbacks keep the defaults. */
class Probe extends Actor<unknown, unknown, unknown, unknown> {
  readonly #hooks: Hooks;

  constructor(hooks: Hooks = {}, options?: ActorOptions) {
    super(options);
    this.#hooks = hooks;
  }

  protected override init(): void | Promise<void> {
    return this.#hooks.init?.(this);
  }

  protected override handleCall(message: unknown, from: ReplyTo<unknown>): unknown {
    const hook = this.#hooks.call;
    return hook === undefined ? super.handleCall(message, from) : hook(message, from, this);
  }

  protected override handleCast(message: unknown): void | Promise<void> {
    const hook = this.#hooks.cast;
    return hook === undefined ? super.handleCast(message) : hook(message, this);
  }

  protected override handleInfo(message: unknown): void | Promise<void> {
    const hook = this.#hooks.info;
    return hook === undefined ? super.handleInfo(message) : hook(message, this);
  }

  protected override terminate(reason: ExitReason): void | Promise<void> {
    return this.#hooks.terminate?.(reason, this);
  }

  /** `sendAfter` is a protected helper for subclasses; exposed for the tests. */
  deliverLater(message: unknown, delayMs: number): () => void {
    return this.sendAfter(message, delayMs);
  }

  /** `watch` is a protected helper for subclasses; exposed for the tests. */
  watchProcess(process: Process): () => void {
    return this.watch(process);
  }
}

const live = new Set<Process>();

/** Creates a probe actor (not started) that is killed after the test if still alive. */
function spawn(hooks?: Hooks, options?: ActorOptions): Probe {
  const actor = new Probe(hooks, options);
  live.add(actor);
  return actor;
}

afterEach(() => {
  // Safety net only: every test stops its own actors.
  for (const process of live) process.kill();
  live.clear();
});

function isDown(message: unknown): message is DownMessage {
  return (
    typeof message === "object" &&
    message !== null &&
    (message as { type?: unknown }).type === "DOWN"
  );
}

// ---------------------------------------------------------------- specification

describe("Actor call timeouts", () => {
  // Deadline buckets are module-level intervals created lazily, one per timeout length. This
  // test must be the first in the file to use the default timeout, so that its 5000 ms bucket
  // is created (and, after idling, retired) under fake timers.
  it("waits DEFAULT_CALL_TIMEOUT_MS (5000 ms) for a reply when neither the call nor the actor sets a timeout", async () => {
    expect(DEFAULT_CALL_TIMEOUT_MS).toBe(5_000);
    vi.useFakeTimers();
    try {
      const actor = await spawn({ call: () => noReply }).start();
      let outcome: unknown;
      actor.call("never answered").catch((error: unknown) => {
        outcome = error;
      });
      await vi.advanceTimersByTimeAsync(4_999);
      expect(outcome).toBeUndefined();
      // Deadlines fire at most one tick (timeoutMs / 8) late.
      await vi.advanceTimersByTimeAsync(5_000 / 8 + 1);
      expect(outcome).toBeInstanceOf(TimeoutError);
      expect(outcome).toMatchObject({ code: "TIMEOUT", timeoutMs: 5_000 });
      // Let the idle bucket retire its interval before real timers come back.
      await vi.advanceTimersByTimeAsync(20_000);
      await actor.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it("uses the actor's callTimeoutMs option for calls that set no timeoutMs", async () => {
    const actor = await spawn({ call: () => noReply }, { callTimeoutMs: 40 }).start();
    const error = await failureOf(() => actor.call("never answered"));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({ code: "TIMEOUT", timeoutMs: 40 });
    await actor.stop();
  });

  it("rejects a call that overruns timeoutMs with TimeoutError and drops the late reply", async () => {
    const gate = deferred();
    const returned: string[] = [];
    const actor = await spawn({
      call: async (message) => {
        if (message === "slow") await gate.promise;
        returned.push(String(message));
        return `reply to ${String(message)}`;
      },
    }).start();

    const error = await failureOf(() => actor.call("slow", { timeoutMs: 50 }));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(TimeoutError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: "TIMEOUT", timeoutMs: 50 });

    // Queued behind the slow handler, which now returns its late reply: the late reply must
    // not be mistaken for this call's reply.
    const next = actor.call("next");
    gate.resolve();
    await expect(next).resolves.toBe("reply to next");
    expect(returned).toEqual(["slow", "next"]); // the late reply was produced, and dropped
    await expect(actor.call("after")).resolves.toBe("reply to after");
    expect(actor.status).toBe("running");
    await actor.stop();
  });

  it("never handles a call that timed out while still queued", async () => {
    const gate = deferred();
    const handled: unknown[] = [];
    const actor = await spawn({
      call: async (message) => {
        handled.push(message);
        if (message === "blocker") await gate.promise;
        return message;
      },
    }).start();

    const blocker = actor.call("blocker", { timeoutMs: Infinity });
    const queued = actor.call("queued", { timeoutMs: 30 });
    await expect(queued).rejects.toBeInstanceOf(TimeoutError);
    gate.resolve();
    await expect(blocker).resolves.toBe("blocker");
    await expect(actor.call("after")).resolves.toBe("after");
    expect(handled).toEqual(["blocker", "after"]);
    await actor.stop();
  });

  it("never times out a call early, even when timeoutMs is beyond the 32-bit timer range", async () => {
    // Node clamps timer delays above 2^31 - 1 ms to 1 ms (with a TimeoutOverflowWarning).
    const warnings = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    try {
      const actor = await spawn({
        call: async () => {
          await new Promise((resolve) => setTimeout(resolve, 30));
          return "answered";
        },
      }).start();
      await expect(actor.call("slow", { timeoutMs: 2 ** 35 })).resolves.toBe("answered");
      await actor.stop();
    } finally {
      warnings.mockRestore();
    }
  });

  it("marks the reply handle settled when its call times out, and ignores replies after that", async () => {
    let handle: ReplyTo<unknown> | undefined;
    const actor = await spawn({
      call: (_message, from) => {
        handle = from;
        return noReply;
      },
    }).start();
    await expect(actor.call("deferred", { timeoutMs: 30 })).rejects.toBeInstanceOf(TimeoutError);
    expect(handle?.settled).toBe(true);
    expect(() => handle?.reply("too late")).not.toThrow();
    await actor.stop();
  });
});

describe("Actor messaging", () => {
  it("replies to a call with what handleCall returns, sync or async", async () => {
    const actor = await spawn({
      call: (message) => {
        const { op, n } = message as { op: string; n: number };
        return op === "double" ? n * 2 : Promise.resolve(n + 1);
      },
    }).start();
    await expect(actor.call({ op: "double", n: 21 })).resolves.toBe(42);
    await expect(actor.call({ op: "increment", n: 41 })).resolves.toBe(42);
    await actor.stop();
  });

  it("delivers casts to handleCast and sends to handleInfo, in the order they were sent", async () => {
    const log: string[] = [];
    const actor = await spawn({
      cast: async (message) => {
        await tick();
        log.push(`cast ${String(message)}`);
      },
      info: (message) => {
        log.push(`info ${String(message)}`);
      },
      call: () => [...log],
    }).start();
    expect(actor.cast(1)).toBe(true);
    expect(actor.send(2)).toBe(true);
    expect(actor.cast(3)).toBe(true);
    expect(actor.send(4)).toBe(true);
    await expect(actor.call("log")).resolves.toEqual(["cast 1", "info 2", "cast 3", "info 4"]);
    await actor.stop();
  });

  it("resolves start() to the actor itself, which is then running", async () => {
    const actor = spawn();
    expect(actor.status).toBe("new");
    expect(actor.alive).toBe(false);
    await expect(actor.start()).resolves.toBe(actor);
    expect(actor.status).toBe("running");
    expect(actor.alive).toBe(true);
    expect(actor.exitReason).toBeUndefined();
    await actor.stop();
  });

  it("queues messages sent while init runs and handles them once init has finished", async () => {
    const gate = deferred();
    const log: string[] = [];
    const actor = spawn({
      init: async () => {
        await gate.promise;
        log.push("init done");
      },
      call: (message) => {
        log.push(`call ${String(message)}`);
        return message;
      },
      cast: (message) => {
        log.push(`cast ${String(message)}`);
      },
    });
    const starting = actor.start();
    expect(actor.status).toBe("starting");
    const reply = actor.call("early");
    expect(actor.cast("early")).toBe(true);
    gate.resolve();
    await starting;
    await expect(reply).resolves.toBe("early");
    expect(log).toEqual(["init done", "call early", "cast early"]);
    await actor.stop();
  });

  it("lets handleCall return noReply and reply later through from.reply, handling other messages meanwhile", async () => {
    const waiting: ReplyTo<unknown>[] = [];
    const actor = await spawn({
      call: (message, from) => {
        if (message === "deferred") {
          waiting.push(from);
          return noReply;
        }
        if (message === "release") {
          for (const caller of waiting) caller.reply("late answer");
          return "released";
        }
        return `echo ${String(message)}`;
      },
    }).start();

    const deferredReply = actor.call("deferred");
    await expect(actor.call("ping")).resolves.toBe("echo ping");
    const handle = waiting[0]!;
    expect(handle.settled).toBe(false);
    await expect(actor.call("release")).resolves.toBe("released");
    await expect(deferredReply).resolves.toBe("late answer");
    expect(handle.settled).toBe(true);
    handle.reply("a second reply is ignored");
    handle.fail(new Error("a failure after the reply is ignored"));
    await actor.stop();
  });

  it("rejects a deferred call with the error given to from.fail", async () => {
    const failure = new Error("upstream failed");
    const actor = await spawn({
      call: (_message, from) => {
        setImmediate(() => from.fail(failure));
        return noReply;
      },
    }).start();
    await expect(actor.call("work")).rejects.toBe(failure);
    expect(actor.status).toBe("running");
    await actor.stop();
  });

  it("rejects a pending deferred (noReply) call with NoProcessError when the actor stops before replying", async () => {
    const actor = await spawn({ call: () => noReply }).start();
    // The timeout only bounds the test; the call must fail with NoProcessError long before.
    const pending = actor.call("never answered", { timeoutMs: 200 });
    await actor.stop();
    const error = await failureOf(() => pending);
    expect(error).toBeInstanceOf(NoProcessError);
  });

  it("never interleaves async handlers: each message is handled to completion before the next begins", async () => {
    const log: string[] = [];
    const randomAwaits = async () => {
      const hops = Math.floor(Math.random() * 4);
      for (let i = 0; i < hops; i++) {
        if (Math.random() < 0.3) await tick();
        else await Promise.resolve();
      }
    };
    const actor = await spawn({
      call: async (message) => {
        log.push(`enter ${String(message)}`);
        await randomAwaits();
        log.push(`exit ${String(message)}`);
        return message;
      },
      cast: async (message) => {
        log.push(`enter ${String(message)}`);
        await randomAwaits();
        log.push(`exit ${String(message)}`);
      },
    }).start();

    const count = 300;
    const replies: Promise<unknown>[] = [];
    for (let n = 0; n < count; n++) {
      if (n % 3 === 0) actor.cast(n);
      else replies.push(actor.call(n));
    }
    await Promise.all(replies);
    await expect(actor.call("last")).resolves.toBe("last");

    const expected = [...Array.from({ length: count }, (_, n) => n), "last"].flatMap((n) => [
      `enter ${n}`,
      `exit ${n}`,
    ]);
    expect(log).toEqual(expected);
    await actor.stop();
  });

  it("runs chains of synchronous casts across 10_000 actors without overflowing the stack", async () => {
    const length = 10_000;
    const arrived: Array<{ wave: number; hops: number }> = [];
    const allArrived = deferred();
    const chain: Probe[] = [];
    for (let i = 0; i < length; i++) {
      const position = i;
      chain.push(
        spawn({
          cast: (message) => {
            const { wave, hops } = message as { wave: number; hops: number };
            const next = chain[position + 1];
            if (next !== undefined) {
              next.cast({ wave, hops: hops + 1 });
              return;
            }
            arrived.push({ wave, hops });
            if (arrived.length === 3) allArrived.resolve();
          },
        }),
      );
    }
    await Promise.all(chain.map((actor) => actor.start()));

    const first = chain[0]!;
    first.cast({ wave: 0, hops: 0 });
    first.cast({ wave: 1, hops: 0 });
    first.cast({ wave: 2, hops: 0 });
    await allArrived.promise;

    expect(arrived).toEqual([
      { wave: 0, hops: length - 1 },
      { wave: 1, hops: length - 1 },
      { wave: 2, hops: length - 1 },
    ]);
    await Promise.all(chain.map((actor) => actor.stop()));
  });
});

describe("Actor liveness", () => {
  it("rejects a call to a never-started actor with NoProcessError", async () => {
    const actor = spawn({ call: () => "never" });
    const error = await failureOf(() => actor.call("hello"));
    expect(error).toBeInstanceOf(NoProcessError);
    expect(error).toMatchObject({ code: "NO_PROCESS" });
  });

  it("rejects a call to a stopped actor with NoProcessError carrying its exit reason", async () => {
    const actor = await spawn({ call: () => "ok" }).start();
    await actor.stop("shutdown");
    const error = await failureOf(() => actor.call("hello"));
    expect(error).toBeInstanceOf(NoProcessError);
    expect(error).toMatchObject({ code: "NO_PROCESS", exitReason: "shutdown" });
  });

  it("drops a cast or send to an actor that is not alive (never started, stopping, stopped) and returns false", async () => {
    const cast = vi.fn();
    const info = vi.fn();
    const neverStarted = spawn({ cast, info });
    expect(neverStarted.cast("hello")).toBe(false);
    expect(neverStarted.send("hello")).toBe(false);

    const gate = deferred();
    const stopping = await spawn({ cast, info, terminate: () => gate.promise }).start();
    const stoppingDone = stopping.stop();
    expect(stopping.status).toBe("stopping");
    expect(stopping.cast("hello")).toBe(false);
    expect(stopping.send("hello")).toBe(false);
    gate.resolve();
    await stoppingDone;

    const stopped = await spawn({ cast, info }).start();
    await stopped.stop();
    expect(stopped.cast("hello")).toBe(false);
    expect(stopped.send("hello")).toBe(false);
    await tick();
    expect(cast).not.toHaveBeenCalled();
    expect(info).not.toHaveBeenCalled();
  });

  it("marks a never-started actor stopped when it is stopped, and then refuses to start it", async () => {
    const init = vi.fn();
    const terminate = vi.fn();
    const actor = spawn({ init, terminate });
    await actor.stop();
    expect(actor.status).toBe("stopped");
    expect(actor.exitReason).toBe("normal");
    await expect(actor.start()).rejects.toBeInstanceOf(AlreadyStartedError);
    expect(init).not.toHaveBeenCalled();
    expect(terminate).not.toHaveBeenCalled();
  });
});

describe("Actor mailbox bound", () => {
  it("refuses messages beyond DEFAULT_MAILBOX_LIMIT (1000): call rejects and cast/send throw OverloadedError", async () => {
    expect(DEFAULT_MAILBOX_LIMIT).toBe(1_000);
    const gate = deferred();
    const drained = deferred();
    let handled = 0;
    const actor = await spawn({
      cast: async () => {
        await gate.promise;
        if (++handled === 1 + DEFAULT_MAILBOX_LIMIT) drained.resolve();
      },
      call: () => "accepted again",
    }).start();

    actor.cast("blocker"); // in flight: the mailbox itself is still empty
    for (let i = 0; i < DEFAULT_MAILBOX_LIMIT; i++) actor.cast(i);
    expect(actor.mailboxSize).toBe(DEFAULT_MAILBOX_LIMIT);

    const refused = await failureOf(() => actor.call("one too many"));
    expect(refused).toBeInstanceOf(OverloadedError);
    expect(refused).toMatchObject({ code: "OVERLOADED", limit: 1_000, isRetryable: true });
    expect(() => actor.cast("one too many")).toThrow(OverloadedError);
    expect(() => actor.send("one too many")).toThrow(OverloadedError);

    // An overload is back-pressure, not a crash.
    expect(actor.status).toBe("running");
    gate.resolve();
    await drained.promise;
    expect(actor.mailboxSize).toBe(0);
    await expect(actor.call("after the backlog")).resolves.toBe("accepted again");
    expect(handled).toBe(1 + DEFAULT_MAILBOX_LIMIT);
    await actor.stop();
  });

  it("honours the mailboxLimit option", async () => {
    const gate = deferred();
    const drained = deferred();
    let handled = 0;
    const actor = await spawn(
      {
        cast: async () => {
          await gate.promise;
          if (++handled === 3) drained.resolve();
        },
        call: () => "ok",
      },
      { mailboxLimit: 2 },
    ).start();
    actor.cast("in flight");
    actor.cast("queued 1");
    actor.cast("queued 2");
    expect(() => actor.cast("queued 3")).toThrow(OverloadedError);
    const refused = await failureOf(() => actor.call("queued 3"));
    expect(refused).toMatchObject({ code: "OVERLOADED", limit: 2 });
    gate.resolve();
    await drained.promise;
    await expect(actor.call("later")).resolves.toBe("ok");
    await actor.stop();
  });
});

describe("Actor crashes", () => {
  const handlers = ["handleCall", "handleCast", "handleInfo"] as const;
  const modes = ["sync", "async"] as const;
  const cases = handlers.flatMap((handler) => modes.map((mode) => [handler, mode] as const));

  it.each(cases)(
    "crashes when %s throws (%s): the error is the exit reason, given to terminate, monitors and signal",
    async (handler, mode) => {
      const boom = new Error(`boom in ${handler}`);
      const fail =
        mode === "sync"
          ? () => {
              throw boom;
            }
          : async () => {
              await tick();
              throw boom;
            };
      const terminated = deferred<ExitReason>();
      const actor = await spawn({
        call: handler === "handleCall" ? fail : undefined,
        cast: handler === "handleCast" ? fail : undefined,
        info: handler === "handleInfo" ? fail : undefined,
        terminate: (reason) => terminated.resolve(reason),
      }).start();
      const signal = actor.signal;
      const onExit = vi.fn();
      actor.monitor(onExit);

      if (handler === "handleCall") {
        void actor.call("trigger").catch(() => {});
      } else if (handler === "handleCast") {
        // A crash is the actor's, never the sender's: cast does not throw.
        expect(actor.cast("trigger")).toBe(true);
      } else {
        expect(actor.send("trigger")).toBe(true);
      }

      await expect(actor.whenStopped()).resolves.toBe(boom);
      expect(actor.status).toBe("stopped");
      expect(actor.exitReason).toBe(boom);
      await expect(terminated.promise).resolves.toBe(boom);
      expect(onExit).toHaveBeenCalledTimes(1);
      expect(onExit).toHaveBeenCalledWith(boom, actor);
      expect(signal.aborted).toBe(true);
      expect(signal.reason).toBeInstanceOf(AbortedError);
      expect((signal.reason as AbortedError).cause).toBe(boom);
    },
  );

  it.each(modes)(
    "rejects the caller whose call crashed the actor (%s) with NoProcessError whose cause is the error",
    async (mode) => {
      const boom = new Error("bad request");
      const actor = await spawn({
        call:
          mode === "sync"
            ? () => {
                throw boom;
              }
            : async () => {
                await tick();
                throw boom;
              },
      }).start();
      const error = await failureOf(() => actor.call("trigger"));
      expect(error).toBeInstanceOf(NoProcessError);
      expect((error as NoProcessError).cause).toBe(boom);
      expect((error as NoProcessError).exitReason).toBe(boom);
    },
  );

  it("rejects queued callers with NoProcessError when the actor crashes, without handling their calls", async () => {
    const boom = new Error("crash while others wait");
    const gate = deferred();
    const handled: unknown[] = [];
    const actor = await spawn({
      call: async (message) => {
        handled.push(message);
        await gate.promise;
        throw boom;
      },
    }).start();
    const crashing = failureOf(() => actor.call("crashing"));
    const queued = [
      failureOf(() => actor.call("queued 1")),
      failureOf(() => actor.call("queued 2")),
    ];
    gate.resolve();

    const crashError = await crashing;
    expect(crashError).toBeInstanceOf(NoProcessError);
    expect((crashError as NoProcessError).cause).toBe(boom);
    for (const error of await Promise.all(queued)) {
      expect(error).toBeInstanceOf(NoProcessError);
      expect((error as NoProcessError).exitReason).toBe(boom);
    }
    expect(handled).toEqual(["crashing"]);
  });

  it("turns a thrown non-Error into an Error exit reason that keeps the thrown value as cause", async () => {
    const actor = await spawn({
      cast: () => {
        throw "not an error";
      },
    }).start();
    actor.cast("trigger");
    const reason = await actor.whenStopped();
    expect(reason).toBeInstanceOf(Error);
    expect((reason as Error).cause).toBe("not an error");
    expect((reason as Error).message).toContain("not an error");
  });

  it("crashes on a call or cast it does not handle (the default handlers)", async () => {
    const forCall = await spawn().start();
    await expect(forCall.call("unexpected")).rejects.toBeInstanceOf(NoProcessError);
    expect(forCall.exitReason).toBeInstanceOf(InvalidArgumentError);

    const forCast = await spawn().start();
    forCast.cast("unexpected");
    await expect(forCast.whenStopped()).resolves.toBeInstanceOf(InvalidArgumentError);

    // handleInfo ignores unknown messages by default.
    const forInfo = await spawn().start();
    forInfo.send("unexpected");
    await tick();
    expect(forInfo.status).toBe("running");
    await forInfo.stop();
  });

  it("keeps the crash as exit reason when terminate throws too", async () => {
    const boom = new Error("handler crashed");
    const actor = await spawn({
      cast: () => {
        throw boom;
      },
      terminate: () => {
        throw new Error("terminate crashed");
      },
    }).start();
    actor.cast("trigger");
    await expect(actor.whenStopped()).resolves.toBe(boom);
  });
});

describe("Actor start", () => {
  it.each(["sync", "async"] as const)(
    "rejects start() with the error init threw (%s), stops with it and never calls terminate",
    async (mode) => {
      const boom = new Error("init failed");
      const terminate = vi.fn();
      const onExit = vi.fn();
      const actor = spawn({
        init:
          mode === "sync"
            ? () => {
                throw boom;
              }
            : async () => {
                await tick();
                throw boom;
              },
        terminate,
      });
      actor.monitor(onExit);
      const starting = actor.start();
      const early = failureOf(() => actor.call("sent while starting"));
      await expect(starting).rejects.toBe(boom);
      expect(await early).toBeInstanceOf(NoProcessError);
      expect(actor.status).toBe("stopped");
      expect(actor.exitReason).toBe(boom);
      expect(onExit).toHaveBeenCalledWith(boom, actor);
      expect(terminate).not.toHaveBeenCalled();
      await expect(actor.call("anyone?")).rejects.toBeInstanceOf(NoProcessError);
    },
  );

  it("rejects a second start() with AlreadyStartedError, while starting and once running", async () => {
    const gate = deferred();
    const init = vi.fn(() => gate.promise);
    const actor = spawn({ init });
    const first = actor.start();
    const whileStarting = await failureOf(() => actor.start());
    expect(whileStarting).toBeInstanceOf(AlreadyStartedError);
    expect(whileStarting).toMatchObject({ code: "ALREADY_STARTED" });
    gate.resolve();
    await first;
    await expect(actor.start()).rejects.toBeInstanceOf(AlreadyStartedError);
    expect(init).toHaveBeenCalledTimes(1);
    await actor.stop();
  });

  it("lets a stop() requested during init wait for init, run terminate, and reject start() with NoProcessError", async () => {
    const gate = deferred();
    const terminate = vi.fn();
    const actor = spawn({ init: () => gate.promise, terminate });
    const starting = failureOf(() => actor.start());
    const stopped = actor.stop("shutdown");
    expect(actor.status).toBe("stopping");
    gate.resolve();
    await stopped;
    expect(await starting).toBeInstanceOf(NoProcessError);
    expect(terminate).toHaveBeenCalledWith("shutdown", actor);
    expect(actor.exitReason).toBe("shutdown");
  });
});

describe("Actor stop", () => {
  it("aborts signal with an AbortedError as soon as it begins to stop", async () => {
    const gate = deferred();
    const actor = await spawn({ cast: () => gate.promise }).start();
    const signal = actor.signal;
    expect(signal.aborted).toBe(false);
    actor.cast("in flight");
    const stopped = actor.stop();
    expect(actor.status).toBe("stopping");
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBeInstanceOf(AbortedError);
    expect((signal.reason as AbortedError).code).toBe("ABORTED");
    gate.resolve();
    await stopped;
    // A signal first asked for after the stop is born aborted.
    expect(actor.signal.aborted).toBe(true);
  });

  it("waits for the in-flight async handler to finish, then runs terminate with the reason", async () => {
    const log: string[] = [];
    const gate = deferred();
    const entered = deferred();
    const actor = await spawn({
      call: async () => {
        log.push("handler start");
        entered.resolve();
        await gate.promise;
        log.push("handler end");
        return "done";
      },
      terminate: (reason) => {
        log.push(`terminate ${String(reason)}`);
      },
    }).start();
    const inFlight = actor.call("work");
    await entered.promise;

    const stopped = actor.stop("shutdown");
    await tick();
    expect(actor.status).toBe("stopping");
    expect(log).toEqual(["handler start"]);

    gate.resolve();
    await stopped;
    expect(log).toEqual(["handler start", "handler end", "terminate shutdown"]);
    // The message in progress completes; its caller gets the reply.
    await expect(inFlight).resolves.toBe("done");
    expect(actor.status).toBe("stopped");
    expect(actor.exitReason).toBe("shutdown");
  });

  it("runs terminate only after an async handler that stopped its own actor has finished", async () => {
    const log: string[] = [];
    const actor = await spawn({
      cast: async (_message, self) => {
        log.push("handler asks to stop");
        void self.stop();
        await tick();
        log.push("handler end");
      },
      terminate: () => {
        log.push("terminate");
      },
    }).start();
    actor.cast("quit");
    await actor.whenStopped();
    expect(log).toEqual(["handler asks to stop", "handler end", "terminate"]);
  });

  it("runs terminate only after a synchronous handler that stopped its own actor has returned", async () => {
    const log: string[] = [];
    const actor = await spawn({
      call: (_message, _from, self) => {
        log.push("handler asks to stop");
        void self.stop();
        log.push("handler returns");
        return "bye";
      },
      terminate: () => {
        log.push("terminate");
      },
    }).start();
    await expect(actor.call("quit")).resolves.toBe("bye");
    await actor.whenStopped();
    expect(log).toEqual(["handler asks to stop", "handler returns", "terminate"]);
  });

  it("rejects queued calls with NoProcessError when it stops, without handling them", async () => {
    const gate = deferred();
    const handled: unknown[] = [];
    const actor = await spawn({
      call: async (message) => {
        handled.push(message);
        await gate.promise;
        return message;
      },
    }).start();
    const inFlight = actor.call("in flight");
    const queued = failureOf(() => actor.call("queued"));
    const stopped = actor.stop();
    const error = await queued;
    expect(error).toBeInstanceOf(NoProcessError);
    expect(error).toMatchObject({ exitReason: "normal" });
    gate.resolve();
    await stopped;
    await expect(inFlight).resolves.toBe("in flight");
    expect(handled).toEqual(["in flight"]);
  });

  it("kills a handler that ignores stop after timeoutMs: exit reason killed, terminate not run", async () => {
    const terminate = vi.fn();
    const actor = await spawn({
      call: () => new Promise(() => {}), // never settles, ignores signal
      terminate,
    }).start();
    const onExit = vi.fn();
    actor.monitor(onExit);
    const inFlight = failureOf(() => actor.call("hang", { timeoutMs: Infinity }));

    await actor.stop("shutdown", { timeoutMs: 30 });
    expect(actor.status).toBe("stopped");
    expect(actor.exitReason).toBe("killed");
    expect(onExit).toHaveBeenCalledWith("killed", actor);
    expect(terminate).not.toHaveBeenCalled();
    expect(await inFlight).toBeInstanceOf(NoProcessError);
  });

  it("kills an actor whose terminate overruns the stop timeout", async () => {
    const actor = await spawn({ terminate: () => new Promise(() => {}) }).start();
    await actor.stop("normal", { timeoutMs: 30 });
    expect(actor.exitReason).toBe("killed");
  });

  it("does not kill an actor before a stop timeout beyond the 32-bit timer range", async () => {
    const warnings = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    try {
      const actor = await spawn({
        terminate: () => new Promise((resolve) => setTimeout(resolve, 30)),
      }).start();
      await actor.stop("normal", { timeoutMs: 2 ** 31 });
      expect(actor.exitReason).toBe("normal");
    } finally {
      warnings.mockRestore();
    }
  });

  it("keeps the stop reason when the in-flight handler fails because signal aborted", async () => {
    const actor = await spawn({
      call: (_message, _from, self) =>
        new Promise((_resolve, reject) => {
          self.signal.addEventListener("abort", () => reject(self.signal.reason), { once: true });
        }),
    }).start();
    const inFlight = failureOf(() => actor.call("long job", { timeoutMs: Infinity }));
    await actor.stop("shutdown");
    expect(actor.exitReason).toBe("shutdown");
    const error = await inFlight;
    expect(error).toBeInstanceOf(NoProcessError);
    expect((error as NoProcessError).cause).toBeInstanceOf(AbortedError);
  });

  it("kills an actor whose stop overruns DEFAULT_SHUTDOWN_MS (5000 ms) when stop() sets no timeout", async () => {
    expect(DEFAULT_SHUTDOWN_MS).toBe(5_000);
    vi.useFakeTimers();
    try {
      const actor = await spawn({ cast: () => new Promise(() => {}) }).start();
      actor.cast("hang");
      const stopped = actor.stop();
      await vi.advanceTimersByTimeAsync(4_999);
      expect(actor.status).toBe("stopping");
      await vi.advanceTimersByTimeAsync(1);
      await stopped;
      expect(actor.exitReason).toBe("killed");
    } finally {
      vi.useRealTimers();
    }
  });

  it.each(["normal", "shutdown"] as const)(
    "turns a %s stop into a crash when terminate throws: the error becomes the exit reason",
    async (reason) => {
      const broken = new Error("terminate failed");
      const actor = await spawn({
        terminate: () => {
          throw broken;
        },
      }).start();
      const onExit = vi.fn();
      actor.monitor(onExit);
      await expect(actor.stop(reason)).resolves.toBeUndefined();
      expect(actor.exitReason).toBe(broken);
      expect(onExit).toHaveBeenCalledWith(broken, actor);
    },
  );

  it("returns the same promise when stop() is called again", async () => {
    const terminate = vi.fn();
    const actor = await spawn({ terminate }).start();
    const first = actor.stop("shutdown");
    expect(actor.stop("normal")).toBe(first);
    await first;
    expect(actor.stop()).toBe(first);
    expect(terminate).toHaveBeenCalledTimes(1);
    expect(actor.exitReason).toBe("shutdown");
  });

  it("kill() stops at once with reason killed, without waiting for the handler or running terminate", async () => {
    const terminate = vi.fn();
    const actor = await spawn({ call: () => new Promise(() => {}), terminate }).start();
    const signal = actor.signal;
    const onExit = vi.fn();
    actor.monitor(onExit);
    const inFlight = failureOf(() => actor.call("hang"));
    const queued = failureOf(() => actor.call("queued"));

    actor.kill();
    expect(actor.status).toBe("stopped");
    expect(actor.exitReason).toBe("killed");
    expect(signal.aborted).toBe(true);
    expect(onExit).toHaveBeenCalledWith("killed", actor);
    expect(await inFlight).toBeInstanceOf(NoProcessError);
    expect(await queued).toBeInstanceOf(NoProcessError);
    expect(terminate).not.toHaveBeenCalled();
    await expect(actor.stop()).resolves.toBeUndefined();
    actor.kill(); // idempotent
    expect(actor.exitReason).toBe("killed");
    expect(onExit).toHaveBeenCalledTimes(1);
  });
});

describe("Actor monitors and watch", () => {
  it("tells each monitor the exit reason exactly once, and not after the monitor is removed", async () => {
    const actor = await spawn().start();
    const kept = vi.fn();
    const removed = vi.fn();
    actor.monitor(kept);
    const off = actor.monitor(removed);
    off();
    await actor.stop("shutdown");
    expect(kept).toHaveBeenCalledTimes(1);
    expect(kept).toHaveBeenCalledWith("shutdown", actor);
    expect(removed).not.toHaveBeenCalled();
  });

  it("tells every monitor even when one of them throws (the throw becomes a process warning)", async () => {
    const warnings = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    try {
      const actor = await spawn().start();
      const before = vi.fn();
      const after = vi.fn();
      actor.monitor(before);
      actor.monitor(() => {
        throw new Error("broken monitor");
      });
      actor.monitor(after);
      await actor.stop();
      expect(before).toHaveBeenCalledWith("normal", actor);
      expect(after).toHaveBeenCalledWith("normal", actor);
      expect(String(warnings.mock.calls[0]?.[0])).toContain("broken monitor");
    } finally {
      warnings.mockRestore();
    }
  });

  it("fires a monitor set after exit with the exit reason, on a microtask", async () => {
    const actor = await spawn().start();
    const boom = new Error("gone");
    await actor.stop(boom);
    const late = vi.fn();
    const cancelled = vi.fn();
    actor.monitor(late);
    actor.monitor(cancelled)();
    expect(late).not.toHaveBeenCalled();
    await Promise.resolve();
    expect(late).toHaveBeenCalledWith(boom, actor);
    await tick();
    expect(late).toHaveBeenCalledTimes(1);
    expect(cancelled).not.toHaveBeenCalled();
  });

  it("watch() delivers a DOWN message with the process and reason to handleInfo", async () => {
    const down = deferred<DownMessage>();
    const watcher = await spawn({
      info: (message) => {
        if (isDown(message)) down.resolve(message);
      },
    }).start();
    const watched = await spawn().start();
    watcher.watchProcess(watched);

    const boom = new Error("watched process crashed");
    await watched.stop(boom);
    const message = await down.promise;
    expect(message).toEqual({ type: "DOWN", process: watched, reason: boom });
    // A DOWN is a message, not a link: the watcher lives on.
    expect(watcher.status).toBe("running");
    await watcher.stop();
  });

  it("stops delivering DOWN messages once unwatched", async () => {
    const info = vi.fn();
    const watcher = await spawn({ info }).start();
    const watched = await spawn().start();
    const unwatch = watcher.watchProcess(watched);
    unwatch();
    await watched.stop();
    await tick();
    expect(info).not.toHaveBeenCalled();
    await watcher.stop();
  });
});

describe("Actor timers", () => {
  it("sendAfter delivers the message to handleInfo after the delay", async () => {
    const received = deferred<unknown>();
    const actor = await spawn({ info: (message) => received.resolve(message) }).start();
    actor.deliverLater("tick", 10);
    await expect(received.promise).resolves.toBe("tick");
    await actor.stop();
  });

  it("clears pending sendAfter timers when it stops", async () => {
    const info = vi.fn();
    const actor = await spawn({ info }).start();
    const before = activeTimeouts();
    actor.deliverLater("too late", 20);
    expect(activeTimeouts()).toBe(before + 1);
    await actor.stop();
    expect(activeTimeouts()).toBe(before);
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(info).not.toHaveBeenCalled();
  });

  it("sendAfter refuses a delay that is not a number of milliseconds from 0 up", async () => {
    const actor = await spawn({}).start();
    for (const delay of [Number.NaN, -1, "5" as unknown as number]) {
      expect(() => actor.deliverLater("tick", delay)).toThrow(InvalidArgumentError);
    }
    await actor.stop();
  });

  it("cancels a sendAfter through the function it returns", async () => {
    const info = vi.fn();
    const actor = await spawn({ info }).start();
    const before = activeTimeouts();
    const cancel = actor.deliverLater("cancelled", 20);
    cancel();
    expect(activeTimeouts()).toBe(before);
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(info).not.toHaveBeenCalled();
    await actor.stop();
  });
});

describe("Actor options", () => {
  it.each([0, -1, 1.5, Number.NaN])(
    "refuses mailboxLimit %s with InvalidArgumentError",
    (mailboxLimit) => {
      expect(() => new Probe({}, { mailboxLimit })).toThrow(InvalidArgumentError);
    },
  );

  it.each([0, -1, Number.NaN, -Infinity])(
    "refuses callTimeoutMs %s with InvalidArgumentError",
    (callTimeoutMs) => {
      expect(() => new Probe({}, { callTimeoutMs })).toThrow(InvalidArgumentError);
    },
  );

  it("refuses a call or stop timeoutMs that is not a positive number or Infinity", async () => {
    const actor = await spawn({ call: () => "ok" }, { callTimeoutMs: Infinity }).start();
    for (const timeoutMs of [0, -5, Number.NaN]) {
      const callError = await failureOf(() => actor.call("x", { timeoutMs }));
      expect(callError).toBeInstanceOf(InvalidArgumentError);
      expect(callError).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(await failureOf(() => actor.stop("normal", { timeoutMs }))).toBeInstanceOf(
        InvalidArgumentError,
      );
    }
    // Nothing was half-done: the actor still works and stops normally.
    await expect(actor.call("x")).resolves.toBe("ok");
    await actor.stop();
    expect(actor.exitReason).toBe("normal");
  });

  it("uses the name option as display name, defaulting to the class name", async () => {
    expect(new Probe().name).toBe("Probe");
    const named = spawn({}, { name: "session:main" });
    expect(named.name).toBe("session:main");
    const error = await failureOf(() => named.call("x"));
    expect((error as Error).message).toContain("session:main");
  });

  it("gives each actor a distinct pid", () => {
    const pids = new Set(Array.from({ length: 50 }, () => new Probe().pid));
    expect(pids.size).toBe(50);
  });
});

describe("Actor resources", () => {
  it("holds no extra Timeout handle once a batch of calls with timeouts has settled and stop() resolved", async () => {
    const before = activeTimeouts();
    const actor = await spawn({
      call: async (message) => {
        if (message === "ignored") return noReply;
        await Promise.resolve();
        return message;
      },
    }).start();

    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      calls.push(actor.call(i % 5 === 0 ? "ignored" : i, { timeoutMs: 30 + (i % 3) * 10 }));
    }
    const results = await Promise.allSettled(calls);
    const timedOut = results.filter(
      (r) => r.status === "rejected" && r.reason instanceof TimeoutError,
    );
    expect(timedOut).toHaveLength(10);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(40);

    await actor.stop();
    // Deadline intervals outlive their calls briefly, but unref'd: they must not hold the loop.
    expect(activeTimeouts()).toBeLessThanOrEqual(before);
  });
});
