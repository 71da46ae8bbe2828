import { afterEach, describe, expect, it, vi } from "vitest";
import {
  Actor,
  AlreadyRegisteredError,
  InvalidArgumentError,
  isBeamClawError,
  NoProcessError,
  type Process,
  Registry,
} from "../src/index.js";

/** A process with nothing to do but live and die. */
class Member extends Actor<never, never, never, never> {
  readonly #onTerminate: (() => Promise<void>) | undefined;

  constructor(name: string, onTerminate?: () => Promise<void>) {
    super({ name });
    this.#onTerminate = onTerminate;
  }

  protected override terminate(): Promise<void> | undefined {
    return this.#onTerminate?.();
  }
}

const live = new Set<Process>();

async function startMember(name: string, onTerminate?: () => Promise<void>): Promise<Member> {
  const member = new Member(name, onTerminate);
  live.add(member);
  return member.start();
}

afterEach(() => {
  // Safety net only: every test stops its own processes.
  for (const process of live) process.kill();
  live.clear();
});

describe("Registry with unique keys", () => {
  it("uses unique keys by default", () => {
    expect(new Registry().keys).toBe("unique");
  });

  it("registers a process under a name and finds it with whereis and lookup", async () => {
    const names = new Registry<{ role: string }>();
    const cache = await startMember("cache");
    names.register("cache", cache, { role: "lru" });

    expect(names.whereis("cache")).toBe(cache);
    expect(names.lookup("cache")).toEqual([{ process: cache, value: { role: "lru" } }]);
    expect(names.whereis("nobody")).toBeUndefined();
    expect(names.lookup("nobody")).toEqual([]);
    expect(names.size).toBe(1);
    expect([...names.registeredKeys()]).toEqual(["cache"]);
    expect(names.keysOf(cache)).toEqual(["cache"]);
    await cache.stop();
  });

  it("refuses a name held by another live process with AlreadyRegisteredError", async () => {
    const names = new Registry();
    const first = await startMember("first");
    const second = await startMember("second");
    names.register("session:main", first);

    let error: unknown;
    try {
      names.register("session:main", second);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(AlreadyRegisteredError);
    expect(isBeamClawError(error, "ALREADY_REGISTERED")).toBe(true);
    expect(error).toMatchObject({ code: "ALREADY_REGISTERED", key: "session:main" });
    expect(names.whereis("session:main")).toBe(first);
    await Promise.all([first.stop(), second.stop()]);
  });

  it("treats registering a process again under its own name as a no-op", async () => {
    const names = new Registry();
    const holder = await startMember("holder");
    names.register("name", holder);
    expect(() => names.register("name", holder)).not.toThrow();
    expect(names.lookup("name")).toHaveLength(1);
    await holder.stop();
  });

  it("lets one process hold several names", async () => {
    const names = new Registry();
    const holder = await startMember("holder");
    names.register("a", holder);
    names.register("b", holder);
    expect(names.keysOf(holder).sort()).toEqual(["a", "b"]);
    await holder.stop();
    expect(names.size).toBe(0);
  });

  it("frees a name the moment its process exits, so another process can take it", async () => {
    const names = new Registry();
    const first = await startMember("first");
    names.register("worker", first);

    first.kill();
    expect(names.whereis("worker")).toBeUndefined();
    expect(names.size).toBe(0);

    const crashed = await startMember("crashed");
    names.register("worker", crashed);
    await crashed.stop(new Error("crash"));
    expect(names.whereis("worker")).toBeUndefined();

    const second = await startMember("second");
    names.register("worker", second);
    expect(names.whereis("worker")).toBe(second);
    await second.stop();
  });

  it("unregister frees the name, returns how many were removed, and stops watching the process", async () => {
    const names = new Registry();
    const holder = await startMember("holder");
    const other = await startMember("other");
    const monitor = vi.spyOn(holder, "monitor");
    names.register("name", holder);
    expect(monitor).toHaveBeenCalledTimes(1);

    expect(names.unregister("name", other)).toBe(0);
    expect(names.unregister("name")).toBe(1);
    expect(names.whereis("name")).toBeUndefined();
    expect(names.unregister("name")).toBe(0);

    // The name can now go to someone else, and the old holder's exit must not remove it.
    names.register("name", other);
    await holder.stop();
    expect(names.whereis("name")).toBe(other);
    await other.stop();
  });

  it("refuses to register a process that is stopping or stopped with NoProcessError", async () => {
    const names = new Registry();
    const stopped = await startMember("stopped");
    await stopped.stop("shutdown");
    let error: unknown;
    try {
      names.register("name", stopped);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(NoProcessError);
    expect(error).toMatchObject({ code: "NO_PROCESS", exitReason: "shutdown" });

    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slow = await startMember("slow", () => released);
    const stopping = slow.stop();
    expect(slow.status).toBe("stopping");
    expect(() => names.register("name", slow)).toThrow(NoProcessError);
    release();
    await stopping;
    expect(names.size).toBe(0);
  });

  it("refuses an empty key and an unknown keys mode with InvalidArgumentError", async () => {
    const names = new Registry();
    const holder = await startMember("holder");
    expect(() => names.register("", holder)).toThrow(InvalidArgumentError);
    expect(() => new Registry({ keys: "many" as unknown as "unique" | "duplicate" })).toThrow(
      InvalidArgumentError,
    );
    await holder.stop();
  });

  it("gives via() names only in unique mode", () => {
    const names = new Registry();
    expect(names.via("cache")).toEqual({ registry: names, name: "cache" });
    const groups = new Registry({ keys: "duplicate" });
    expect(() => groups.via("cache")).toThrow(InvalidArgumentError);
  });
});

describe("Registry with duplicate keys", () => {
  it("keeps many members under one key, in join order, each process at most once", async () => {
    const rooms = new Registry<number>({ keys: "duplicate" });
    const members = await Promise.all(
      Array.from({ length: 200 }, (_, i) => startMember(`member ${i}`)),
    );
    members.forEach((member, i) => {
      rooms.register("room:42", member, i);
    });
    // Joining again updates the value instead of adding a second entry.
    rooms.register("room:42", members[0]!, 1_000);

    const entries = rooms.lookup("room:42");
    expect(entries).toHaveLength(200);
    expect(entries.map((e) => e.process)).toEqual(members);
    expect(entries[0]!.value).toBe(1_000);
    expect(entries[199]!.value).toBe(199);
    expect(rooms.whereis("room:42")).toBe(members[0]);
    await Promise.all(members.map((member) => member.stop()));
  });

  it("removes a member from its groups when it exits, and the group when its last member exits", async () => {
    const rooms = new Registry({ keys: "duplicate" });
    const [a, b] = await Promise.all([startMember("a"), startMember("b")]);
    rooms.register("room:1", a!);
    rooms.register("room:1", b!);
    rooms.register("room:2", a!);

    await a!.stop();
    expect(rooms.lookup("room:1").map((e) => e.process)).toEqual([b]);
    expect(rooms.lookup("room:2")).toEqual([]);
    expect([...rooms.registeredKeys()]).toEqual(["room:1"]);

    b!.kill();
    expect(rooms.size).toBe(0);
  });

  it("unregisters one member, or every member of a key", async () => {
    const rooms = new Registry({ keys: "duplicate" });
    const members = await Promise.all([startMember("a"), startMember("b"), startMember("c")]);
    for (const member of members) rooms.register("room", member);
    expect(rooms.unregister("room", members[1])).toBe(1);
    expect(rooms.lookup("room").map((e) => e.process)).toEqual([members[0], members[2]]);
    expect(rooms.unregister("room")).toBe(2);
    expect(rooms.size).toBe(0);
    await Promise.all(members.map((member) => member.stop()));
  });

  it("dispatch calls fn for every member and returns how many it reached", async () => {
    const rooms = new Registry<string>({ keys: "duplicate" });
    const members = await Promise.all(
      Array.from({ length: 50 }, (_, i) => startMember(`member ${i}`)),
    );
    members.forEach((member, i) => {
      rooms.register("room", member, `value ${i}`);
    });
    const seen: string[] = [];
    expect(rooms.dispatch("room", (entry) => seen.push(entry.value))).toBe(50);
    expect(seen).toEqual(members.map((_, i) => `value ${i}`));
    expect(rooms.dispatch("empty room", () => {})).toBe(0);
    await Promise.all(members.map((member) => member.stop()));
  });

  it("dispatch keeps going when fn throws for some members, then throws an AggregateError of their errors", async () => {
    const rooms = new Registry<number>({ keys: "duplicate" });
    const members = await Promise.all(
      Array.from({ length: 10 }, (_, i) => startMember(`member ${i}`)),
    );
    members.forEach((member, i) => {
      rooms.register("room", member, i);
    });
    const reached: number[] = [];
    const failures = [new Error("member 3 refused"), new Error("member 7 refused")];
    let error: unknown;
    try {
      rooms.dispatch("room", ({ value }) => {
        reached.push(value);
        if (value === 3) throw failures[0];
        if (value === 7) throw failures[1];
      });
    } catch (thrown) {
      error = thrown;
    }
    expect(reached).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(error).toBeInstanceOf(AggregateError);
    expect((error as AggregateError).errors).toEqual(failures);
    await Promise.all(members.map((member) => member.stop()));
  });

  it("dispatch returns the number of members it reached even when fn makes them exit", async () => {
    const rooms = new Registry({ keys: "duplicate" });
    const members = await Promise.all([startMember("a"), startMember("b"), startMember("c")]);
    for (const member of members) rooms.register("room", member);
    const reached: Process[] = [];
    const count = rooms.dispatch("room", ({ process }) => {
      reached.push(process);
      process.kill();
    });
    expect(reached).toEqual(members);
    expect(count).toBe(3);
    expect(rooms.size).toBe(0);
  });
});
