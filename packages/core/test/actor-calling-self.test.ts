/**
 * A `call` from an actor to itself (by reference, or by a registered name that resolves to
 * it) can never be answered: the actor is busy running the handler that waits for the reply.
 * As Erlang's `gen_server:call` exits with `calling_self`, it is refused at once with
 * `CallingSelfError` (`CALLING_SELF`) instead of waiting for its timeout.
 *
 * Every call to self here has a 60 s timeout, three times the test timeout: a test only
 * finishes if the refusal came at once.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  Actor,
  CallingSelfError,
  type ExitReason,
  isBeamClawError,
  Registry,
  Supervisor,
} from "../src/index.js";
import { killTracked, track, waitFor } from "./support.js";

const LONG = { timeoutMs: 60_000 };

type SelfCall = "ping" | "self-by-this" | "self-by-name" | "self-returned" | "other";
type SelfCast = "self-in-cast";

/** What a caught error says: its code, or "no error". */
function codeOf(error: unknown): string {
  return isBeamClawError(error) ? error.code : `not a BeamClawError: ${String(error)}`;
}

/** An actor whose handlers call it, through `this` or through its registered name. */
class Narcissus extends Actor<SelfCall, string, SelfCast> {
  static castResults: string[] = [];

  constructor(
    private readonly names: Registry,
    private readonly other?: () => Narcissus | undefined,
  ) {
    super({ name: "Narcissus" });
  }

  protected override async handleCall(message: SelfCall): Promise<string> {
    if (message === "ping") return "pong";
    if (message === "self-by-this") {
      try {
        await this.call("ping", LONG);
        return "no error";
      } catch (error) {
        return codeOf(error);
      }
    }
    if (message === "self-by-name") {
      const me = this.names.whereis<Narcissus>("narcissus");
      if (me !== this) return "the name does not resolve to this actor";
      try {
        await me.call("ping", LONG);
        return "no error";
      } catch (error) {
        return codeOf(error);
      }
    }
    if (message === "other") {
      // A call to another actor from inside a handler is not a call to self.
      const other = this.other?.();
      if (other === undefined) return "no other actor";
      return other.call("ping", LONG);
    }
    // "self-returned": the handler's reply is the call to self; uncaught, it crashes the actor.
    return this.call("ping", LONG);
  }

  protected override handleCast(message: SelfCast): void {
    if (message !== "self-in-cast") return;
    this.call("ping", LONG).then(
      () => Narcissus.castResults.push("no error"),
      (error: unknown) => Narcissus.castResults.push(codeOf(error)),
    );
  }
}

afterEach(() => {
  killTracked();
  Narcissus.castResults = [];
});

async function supervised(): Promise<{ sup: Supervisor; names: Registry; actor: Narcissus }> {
  const names = new Registry();
  const sup = track(
    await new Supervisor({
      children: [
        {
          id: "narcissus",
          via: names.via("narcissus"),
          start: () => new Narcissus(names).start(),
        },
      ],
    }).start(),
  );
  const actor = names.whereis<Narcissus>("narcissus");
  if (actor === undefined) throw new Error("the supervised actor is not registered");
  return { sup, names, actor };
}

describe("a call to self", () => {
  it("through `this` is refused at once with CALLING_SELF, and the actor goes on", async () => {
    const { sup, actor } = await supervised();
    expect(await actor.call("self-by-this", LONG)).toBe("CALLING_SELF");
    // Refused, not queued: nothing was left in the mailbox, and the actor answers as before.
    expect(actor.mailboxSize).toBe(0);
    expect(await actor.call("ping")).toBe("pong");
    expect(actor.status).toBe("running");
    await sup.stop();
  });

  it("through its registered (via) name is refused at once with CALLING_SELF", async () => {
    const { sup, actor } = await supervised();
    expect(await actor.call("self-by-name", LONG)).toBe("CALLING_SELF");
    expect(await actor.call("ping")).toBe("pong");
    await sup.stop();
  });

  it("from a cast handler is refused too", async () => {
    const { sup, actor } = await supervised();
    actor.cast("self-in-cast");
    await waitFor("the cast's call to settle", () => Narcissus.castResults.length > 0);
    expect(Narcissus.castResults).toEqual(["CALLING_SELF"]);
    await sup.stop();
  });

  it("the error is a typed CallingSelfError naming the actor", async () => {
    class Probe extends Actor<"go", unknown> {
      protected override async handleCall(): Promise<unknown> {
        try {
          await this.call("go", LONG);
          return undefined;
        } catch (error) {
          return error;
        }
      }
    }
    const probe = track(await new Probe({ name: "probe" }).start());
    const error = await probe.call("go", LONG);
    expect(error).toBeInstanceOf(CallingSelfError);
    expect(CallingSelfError.isInstance(error)).toBe(true);
    expect((error as CallingSelfError).code).toBe("CALLING_SELF");
    expect((error as CallingSelfError).message).toContain(`probe (pid ${probe.pid})`);
    expect((error as CallingSelfError).pid).toBe(probe.pid);
    await probe.stop();
  });

  it("uncaught in a handler, it crashes the actor and its supervisor restarts it", async () => {
    const { sup, names, actor } = await supervised();
    const exit = actor.whenStopped();
    const reply = actor.call("self-returned", LONG);
    await expect(reply).rejects.toMatchObject({ code: "NO_PROCESS" });
    const reason: ExitReason = await exit;
    expect(CallingSelfError.isInstance(reason)).toBe(true);
    const next = await waitFor("the actor to be restarted", () => {
      const found = names.whereis<Narcissus>("narcissus");
      return found !== undefined && found !== actor && found.status === "running"
        ? found
        : undefined;
    });
    expect(await next.call("ping")).toBe("pong");
    await sup.stop();
  });

  it("from init is refused at once, failing the start", async () => {
    class SelfStarter extends Actor<"ping", string> {
      protected override async init(): Promise<void> {
        await this.call("ping", LONG);
      }
      protected override handleCall(): string {
        return "pong";
      }
    }
    const starter = new SelfStarter();
    await expect(starter.start()).rejects.toMatchObject({ code: "CALLING_SELF" });
    expect(starter.status).toBe("stopped");
  });

  it("a call to another actor from inside a handler is not refused", async () => {
    const names = new Registry();
    const target = track(await new Narcissus(names).start());
    const caller = track(await new Narcissus(names, () => target).start());
    // The other actor, idle, handles the call on the caller's stack; it still is not "self".
    expect(await caller.call("other", LONG)).toBe("pong");
    await Promise.all([target.stop(), caller.stop()]);
  });

  it("after a nested call to another actor returns, a call to self is still refused", async () => {
    const names = new Registry();
    const other = track(await new Narcissus(names).start());
    class Caller extends Actor<"go", string[]> {
      protected override async handleCall(): Promise<string[]> {
        // The idle actor runs this call on our stack, then hands the stack back.
        const answered = other.call("ping", LONG);
        const codes: string[] = [];
        try {
          await this.call("go", LONG);
          codes.push("no error");
        } catch (error) {
          codes.push(codeOf(error));
        }
        codes.push(await answered);
        return codes;
      }
    }
    const caller = track(await new Caller().start());
    expect(await caller.call("go", LONG)).toEqual(["CALLING_SELF", "pong"]);
    await Promise.all([other.stop(), caller.stop()]);
  });

  it("a call from outside any handler to a busy actor still waits its turn", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    class Slow extends Actor<"hold" | "ping", string> {
      protected override async handleCall(message: "hold" | "ping"): Promise<string> {
        if (message === "hold") await held;
        return message;
      }
    }
    const slow = track(await new Slow().start());
    const first = slow.call("hold", LONG);
    const second = slow.call("ping", LONG);
    release();
    expect(await first).toBe("hold");
    expect(await second).toBe("ping");
    await slow.stop();
  });
});
