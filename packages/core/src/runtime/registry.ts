import { AlreadyRegisteredError, InvalidArgumentError, NoProcessError } from "../errors.js";
import type { Process } from "./actor.js";
import type { ViaName } from "./supervisor.js";
import { describeArg, requireObject } from "./validate.js";

function isProcess(value: unknown): value is Process {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Process).monitor === "function" &&
    typeof (value as Process).status === "string"
  );
}

/**
 * - `unique`: one process per key (names: `session:agent:main:main`, `cron:ops`).
 * - `duplicate`: many processes per key (keyed groups, for fan-out to every member).
 */
export type RegistryKeys = "unique" | "duplicate";

/** Options of a {@link Registry}. */
export interface RegistryOptions {
  /** Default `unique`. */
  keys?: RegistryKeys;
}

/** One registration: a live process and the value it was registered with. */
export interface RegistryEntry<V> {
  readonly process: Process;
  readonly value: V;
}

interface Registration<V> extends RegistryEntry<V> {
  readonly unmonitor: () => void;
}

/**
 * Maps keys to live processes, as Elixir's `Registry`. An entry is removed the moment its
 * process exits, so a lookup never returns a dead process; combined with a child spec's
 * `via`, a supervised child is found under the same name after every restart.
 *
 * In `unique` mode a key holds at most one process and registering a taken key throws
 * `AlreadyRegisteredError`. In `duplicate` mode a key is a group with any number of members
 * (each process at most once per key).
 *
 * @example
 * ```ts
 * const names = new Registry();
 * const sup = await new Supervisor({
 *   children: [{ id: "cache", start: () => new Cache().start(), via: names.via("cache") }],
 * }).start();
 * const cache = names.whereis("cache"); // the current cache actor, also after a restart
 *
 * const rooms = new Registry<{ joinedAt: number }>({ keys: "duplicate" });
 * rooms.register("room:42", memberActor, { joinedAt: Date.now() });
 * rooms.dispatch("room:42", (entry) => (entry.process as MemberActor).cast("hello"));
 * ```
 */
export class Registry<V = undefined> {
  /** Whether keys are unique names or groups. */
  readonly keys: RegistryKeys;
  readonly #entries = new Map<string, Registration<V>[]>();

  constructor(options: RegistryOptions = {}) {
    requireObject(options, "Registry options");
    const keys = options.keys ?? "unique";
    if (keys !== "unique" && keys !== "duplicate") {
      throw new InvalidArgumentError(`keys must be "unique" or "duplicate", got "${String(keys)}"`);
    }
    this.keys = keys;
  }

  /**
   * Registers `process` under `key`. It is unregistered automatically when it exits.
   *
   * @throws AlreadyRegisteredError in `unique` mode when another live process holds `key`.
   * @throws NoProcessError when `process` has already stopped.
   */
  register(
    key: string,
    process: Process,
    ...value: V extends undefined ? [value?: V] : [value: V]
  ): void {
    if (typeof key !== "string" || key.length === 0) {
      throw new InvalidArgumentError("a registry key must be a non-empty string");
    }
    if (!isProcess(process)) {
      throw new InvalidArgumentError(
        `only a process (an Actor or supervisor) can be registered, got ${describeArg(process)}`,
      );
    }
    if (process.status === "stopped" || process.status === "stopping") {
      throw new NoProcessError(
        `cannot register ${process.name}: it is ${process.status}`,
        process.exitReason,
      );
    }
    const list = this.#entries.get(key);
    if (list !== undefined) {
      if (this.keys === "unique") {
        const holder = list[0]!.process;
        if (holder === process) return;
        throw new AlreadyRegisteredError(
          `"${key}" is already registered to ${holder.name} (pid ${holder.pid})`,
          key,
        );
      }
      const existing = list.findIndex((r) => r.process === process);
      if (existing !== -1) {
        // Re-registering updates the value, like a re-join.
        const old = list[existing]!;
        list[existing] = { process, value: value[0] as V, unmonitor: old.unmonitor };
        return;
      }
    }
    const unmonitor = process.monitor(() => this.#remove(key, process));
    const registration: Registration<V> = { process, value: value[0] as V, unmonitor };
    if (list === undefined) this.#entries.set(key, [registration]);
    else list.push(registration);
  }

  /**
   * Removes registrations under `key`: only `process`'s when given, otherwise all of them.
   * Returns how many were removed.
   */
  unregister(key: string, process?: Process): number {
    const list = this.#entries.get(key);
    if (list === undefined) return 0;
    let removed = 0;
    for (const r of list.slice()) {
      if (process === undefined || r.process === process) {
        r.unmonitor();
        this.#remove(key, r.process);
        removed++;
      }
    }
    return removed;
  }

  /** Every live registration under `key` (at most one in `unique` mode), in join order. */
  lookup(key: string): RegistryEntry<V>[] {
    const list = this.#entries.get(key);
    return list === undefined ? [] : list.map(({ process, value }) => ({ process, value }));
  }

  /** The process registered under `key`, or `undefined`. In `duplicate` mode, the first member. */
  whereis<P extends Process = Process>(key: string): P | undefined {
    return this.#entries.get(key)?.[0]?.process as P | undefined;
  }

  /** Calls `fn` for every member of `key`; a throwing `fn` does not stop the others. Returns the count. */
  dispatch(key: string, fn: (entry: RegistryEntry<V>) => void): number {
    const list = this.#entries.get(key);
    if (list === undefined) return 0;
    let errors: unknown[] | undefined;
    // A snapshot: fn may make members exit, which removes them from the live list.
    const members = list.slice();
    for (const { process, value } of members) {
      try {
        fn({ process, value });
      } catch (error) {
        if (errors === undefined) errors = [];
        errors.push(error);
      }
    }
    if (errors !== undefined)
      throw new AggregateError(
        errors,
        `dispatch to "${key}" failed for ${errors.length} member(s)`,
      );
    return members.length;
  }

  /** The keys `process` is registered under. O(keys); meant for diagnostics. */
  keysOf(process: Process): string[] {
    const out: string[] = [];
    for (const [key, list] of this.#entries)
      if (list.some((r) => r.process === process)) out.push(key);
    return out;
  }

  /** Number of keys with at least one live registration. */
  get size(): number {
    return this.#entries.size;
  }

  /** Every key with at least one live registration. */
  registeredKeys(): IterableIterator<string> {
    return this.#entries.keys();
  }

  /**
   * A `via` name for a child spec: the supervisor registers the child under `name` each time
   * it starts it (only in `unique` mode).
   */
  via(name: string): ViaName {
    if (this.keys !== "unique") {
      throw new InvalidArgumentError("via names need a registry with unique keys");
    }
    return { registry: this as Registry<unknown> as Registry, name };
  }

  #remove(key: string, process: Process): void {
    const list = this.#entries.get(key);
    if (list === undefined) return;
    const index = list.findIndex((r) => r.process === process);
    if (index === -1) return;
    list.splice(index, 1);
    if (list.length === 0) this.#entries.delete(key);
  }
}
