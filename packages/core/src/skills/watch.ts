import { type Dirent, type FSWatcher, watch } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { EventEmitter } from "eventemitter3";
import {
  AlreadyStartedError,
  InvalidArgumentError,
  InvalidSkillError,
  NoProcessError,
} from "../errors.js";
import { sleep } from "../providers/backoff.js";
import { emitTelemetry } from "../telemetry.js";
import { type LoadSkillsOptions, type LoadSkillsResult, loadSkills } from "./load.js";

/** Why a {@link SkillsWatcher} loaded the skills: a file event, or a call of `reload()`. */
export type SkillsReloadCause = "watch" | "reload";

/** Events of a {@link SkillsWatcher}. */
export interface SkillsWatcherEvents {
  /** A load that differs from the running set was applied: `current` is now `result`. */
  "skills.changed": (event: {
    result: LoadSkillsResult;
    previous: LoadSkillsResult;
    cause: SkillsReloadCause;
  }) => void;
  /**
   * A reload failed: the load threw, or a `SKILL.md` that was loaded before is malformed now
   * (an `InvalidSkillError` naming it). The last good set stays `current`.
   */
  "skills.error": (event: { error: Error; cause: SkillsReloadCause }) => void;
}

/** Options of {@link SkillsWatcher}. */
export interface SkillsWatcherOptions {
  /** The skill directories, highest precedence first (as `LoadSkillsOptions.dirs`). */
  dirs: string[];
  /**
   * Loads the skills of `dirs`. Default: `loadSkills({ ...loadOptions, dirs })`. Called for
   * the first load (by `start()`), for every confirmed change and for every `reload()`.
   */
  load?: (dirs: string[]) => Promise<LoadSkillsResult>;
  /** Options of the default `load`. */
  loadOptions?: Omit<LoadSkillsOptions, "dirs">;
  /** Watch the directories and reload on a change. Default true. */
  watch?: boolean;
  /**
   * Quiet time after the last file event before the skills are read, and again before what
   * was read is applied. Default 100 ms.
   *
   * As with the config service, a read is applied only once it is confirmed:
   * `max(debounceMs, 50 ms)` after it, every `SKILL.md` of the directories must still have the
   * same identity, size and modification time, and no file event may have come meanwhile.
   * Otherwise the read is dropped and the skills are read again once they hold still, so a
   * `SKILL.md` caught half-written is not applied. Events that keep coming re-arm the read at
   * most every `max(1 s, 10 × debounceMs)`.
   */
  debounceMs?: number;
}

/** The shortest wait before a read is confirmed (see {@link SkillsWatcherOptions.debounceMs}). */
const MIN_CONFIRM_MS = 50;

/**
 * Keeps a set of skills in step with their directories: loads them on `start()`, watches
 * every skill directory (each search directory, and each skill sub-directory in it; a search
 * directory that does not exist yet through its nearest existing parent), and after a change
 * (a `SKILL.md` added, edited or removed, a skill directory added, renamed or removed) reloads
 * them once the files hold still, announcing `skills.changed`. A reload that fails keeps the
 * last good set and is announced as `skills.error`: the load threw, or a `SKILL.md` that was
 * loaded before is malformed now (while being edited, say). A `SKILL.md` that was already
 * malformed, or is new, only lands in the result's `invalid` (when the load is not strict).
 *
 * `stop()` closes every watcher and timer.
 *
 * @example
 * ```ts
 * const skills = await new SkillsWatcher({ dirs: ["./skills"], loadOptions: { strict: false } }).start();
 * skills.on("skills.changed", ({ result }) => runtime.reconfigure({
 *   agents: [withSkills(baseAgent, result.skills)],
 * }));
 * skills.on("skills.error", ({ error }) => console.warn(`skills not reloaded: ${error.message}`));
 * // ...
 * await skills.stop();
 * ```
 */
export class SkillsWatcher {
  readonly #options: SkillsWatcherOptions;
  readonly #events = new EventEmitter<SkillsWatcherEvents>();
  readonly #watchers = new Map<string, FSWatcher>();
  readonly #stopping = new AbortController();
  #dirs: string[];
  #current: LoadSkillsResult | undefined;
  #state: "idle" | "running" | "stopped" = "idle";
  /** Loads and applies, one at a time. */
  #chain: Promise<unknown> = Promise.resolve();
  #debounce: ReturnType<typeof setTimeout> | undefined;
  /** When the first event the armed read answers arrived (clock ms). */
  #firstEventAt = 0;
  /** Bumped by every file event: a read that saw it bumped meanwhile is not confirmed. */
  #eventCount = 0;

  constructor(options: SkillsWatcherOptions) {
    if (!Array.isArray(options.dirs) || !options.dirs.every((dir) => typeof dir === "string"))
      throw new InvalidArgumentError("dirs: expected an array of directories");
    const debounce = options.debounceMs;
    if (debounce !== undefined && (typeof debounce !== "number" || !(debounce >= 0))) {
      throw new InvalidArgumentError(`debounceMs must be a number >= 0, got ${String(debounce)}`);
    }
    this.#options = options;
    this.#dirs = [...options.dirs];
  }

  /** The running set of skills: the last good load. */
  get current(): LoadSkillsResult {
    if (this.#current === undefined) {
      throw new InvalidArgumentError("the skills watcher has not loaded yet: call start()");
    }
    return this.#current;
  }

  /** The directories searched and watched, highest precedence first. */
  get dirs(): string[] {
    return [...this.#dirs];
  }

  /** Listens to `skills.changed` / `skills.error`. Returns the unsubscribe function. */
  on<E extends keyof SkillsWatcherEvents>(event: E, listener: SkillsWatcherEvents[E]): () => void {
    this.#events.on(event, listener as never);
    return () => {
      this.#events.off(event, listener as never);
    };
  }

  /**
   * Loads the skills and starts watching (the watchers start before the read, so a change
   * landing during it is seen).
   *
   * @throws what the first load throws (e.g. `InvalidSkillError` of a strict load); nothing
   *   is left watching then.
   * @throws AlreadyStartedError when started before.
   */
  async start(): Promise<this> {
    if (this.#state !== "idle") throw new AlreadyStartedError("the skills watcher was started");
    this.#state = "running";
    try {
      // Through the queue: a change seen while this load runs is read after it.
      await this.#serial(async () => {
        await this.#syncWatchers();
        this.#current = await this.#load();
      });
    } catch (error) {
      await this.stop();
      throw error;
    }
    return this;
  }

  /**
   * Loads the skills now (without waiting for them to hold still) and applies the result,
   * announcing `skills.changed` if it differs. With `dirs`, those are searched and watched
   * from now on.
   *
   * @returns The set now running, or the error of a failed load (announced as `skills.error`;
   *   the last good set stays).
   * @throws NoProcessError before `start()` or after `stop()` (nothing changes).
   */
  reload(dirs?: string[]): Promise<LoadSkillsResult | Error> {
    if (this.#state !== "running") {
      return Promise.reject(
        new NoProcessError(`the skills watcher is ${this.#state}; it reloads nothing`),
      );
    }
    if (dirs !== undefined) {
      if (!Array.isArray(dirs) || !dirs.every((dir) => typeof dir === "string"))
        throw new InvalidArgumentError("dirs: expected an array of directories");
      this.#dirs = [...dirs];
    }
    return this.#serial(async () => {
      if (this.#state !== "running") return this.current;
      await this.#syncWatchers();
      let outcome: LoadSkillsResult | Error;
      try {
        outcome = await this.#load();
      } catch (error) {
        outcome = error instanceof Error ? error : new Error(String(error));
      }
      return this.#apply(outcome, "reload");
    });
  }

  /** Stops watching: closes every watcher and timer, and waits for a load under way. */
  async stop(): Promise<void> {
    this.#state = "stopped";
    this.#stopping.abort();
    if (this.#debounce !== undefined) clearTimeout(this.#debounce);
    this.#debounce = undefined;
    this.#closeWatchers();
    await this.#chain.catch(() => undefined);
    this.#events.removeAllListeners();
  }

  #load(): Promise<LoadSkillsResult> {
    const dirs = [...this.#dirs];
    return this.#options.load
      ? this.#options.load(dirs)
      : loadSkills({ ...this.#options.loadOptions, dirs });
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(task, task);
    this.#chain = run.catch(() => undefined);
    return run;
  }

  #debounceMs(): number {
    return this.#options.debounceMs ?? 100;
  }

  /** A watcher saw a change: (re-)arms the debounced read. Never throws. */
  #fileEvent(): void {
    if (this.#state !== "running") return;
    this.#eventCount++;
    const now = Date.now();
    if (this.#debounce === undefined) this.#firstEventAt = now;
    else if (now - this.#firstEventAt >= Math.max(1_000, 10 * this.#debounceMs())) return;
    else clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      this.#serial(() => this.#watchedReload()).catch(() => undefined);
    }, this.#debounceMs());
  }

  /**
   * The debounced read: applied once confirmed (no file event, and the same `SKILL.md`
   * files, `max(debounceMs, 50 ms)` after it), else dropped for the next read.
   */
  async #watchedReload(): Promise<void> {
    if (this.#state !== "running") return;
    // New skill directories are watched before they are read.
    await this.#syncWatchers();
    const events = this.#eventCount;
    const before = await fingerprint(this.#dirs);
    let outcome: LoadSkillsResult | Error;
    try {
      outcome = await this.#load();
    } catch (error) {
      outcome = error instanceof Error ? error : new Error(String(error));
    }
    try {
      await sleep(Math.max(this.#debounceMs(), MIN_CONFIRM_MS), this.#stopping.signal);
    } catch {
      return;
    }
    if (this.#state !== "running") return;
    const after = await fingerprint(this.#dirs);
    if (events !== this.#eventCount || before !== after) {
      // Still being written: the event that came meanwhile armed the next read (or, when the
      // files changed without one, this arms it).
      if (this.#debounce === undefined) this.#fileEvent();
      return;
    }
    this.#apply(outcome, "watch");
  }

  /** Applies a load, or keeps the last good set on a failed one. */
  #apply(outcome: LoadSkillsResult | Error, cause: SkillsReloadCause): LoadSkillsResult | Error {
    const previous = this.current;
    const error = outcome instanceof Error ? outcome : regression(previous, outcome);
    if (error !== undefined) {
      this.#notify("skills.error", { error, cause });
      return error;
    }
    const result = outcome as LoadSkillsResult;
    if (summary(result) === summary(previous)) return previous;
    this.#current = result;
    this.#notify("skills.changed", { result, previous, cause });
    return result;
  }

  /**
   * Watches each search directory and each skill directory in it (a missing search directory
   * through its nearest existing parent), and no other.
   */
  async #syncWatchers(): Promise<void> {
    if (this.#options.watch === false) return;
    const wanted = new Set<string>();
    for (const root of this.#dirs) {
      const entries = await entriesOf(root);
      if (entries === undefined) {
        const parent = await existingParent(root);
        if (parent !== undefined) wanted.add(parent);
        continue;
      }
      wanted.add(root);
      for (const entry of entries) {
        if (entry.name.startsWith(".")) continue;
        if (entry.isDirectory() || entry.isSymbolicLink()) wanted.add(join(root, entry.name));
      }
    }
    if (this.#state !== "running") return;
    for (const [path, watcher] of this.#watchers) {
      if (wanted.has(path)) continue;
      watcher.close();
      this.#watchers.delete(path);
    }
    for (const path of wanted) {
      if (this.#watchers.has(path)) continue;
      try {
        const watcher = watch(path, { persistent: true }, () => this.#fileEvent());
        // Its directory went away: the next read looks again (the parent saw the removal).
        watcher.on("error", () => {
          watcher.close();
          if (this.#watchers.get(path) === watcher) this.#watchers.delete(path);
        });
        this.#watchers.set(path, watcher);
      } catch {
        // Not a directory (a skill link to a file), or gone already: nothing to watch there.
      }
    }
  }

  #closeWatchers(): void {
    for (const watcher of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
  }

  /**
   * Calls `event`'s listeners. One that throws is reported on the
   * `beamclaw:pubsub.handler-error` telemetry channel, and the others carry on.
   */
  #notify<E extends keyof SkillsWatcherEvents>(
    event: E,
    payload: Parameters<SkillsWatcherEvents[E]>[0],
  ): void {
    for (const listener of this.#events.listeners(event)) {
      try {
        (listener as (payload: unknown) => void)(payload);
      } catch (error) {
        emitTelemetry("beamclaw:pubsub.handler-error", () => ({ topic: event, error }));
      }
    }
  }
}

/**
 * The `InvalidSkillError` of a `SKILL.md` that loaded before (eligible or gated) and is
 * malformed in `next`: applying `next` would drop a working skill for a broken edit.
 */
function regression(previous: LoadSkillsResult, next: LoadSkillsResult): Error | undefined {
  const loaded = new Set([
    ...previous.skills.map((s) => s.file),
    ...previous.gated.map((g) => g.skill.file),
  ]);
  return next.invalid.find(
    (error) => InvalidSkillError.isInstance(error) && loaded.has(error.file),
  );
}

/** What a load found, as text: two loads with the same summary give the same prompts. */
function summary(result: LoadSkillsResult): string {
  return JSON.stringify([
    result.skills.map((s) => [
      s.name,
      s.file,
      s.description,
      s.body,
      s.userInvocable,
      s.disableModelInvocation,
    ]),
    result.gated.map((g) => [g.name, g.dir, g.reason]),
    result.shadowed,
    result.invalid.map((e) => e.message),
    result.clashes.map((e) => e.message),
    result.overLimit?.message,
  ]);
}

/**
 * Identity, size and modification time of every `SKILL.md` / `skill.md` in the skill
 * directories of `dirs`: any write, addition, removal or rename changes it.
 */
async function fingerprint(dirs: readonly string[]): Promise<string> {
  const parts: string[] = [];
  for (const root of dirs) {
    const entries = await entriesOf(root);
    parts.push(`${root}:${entries === undefined ? "-" : entries.length}`);
    for (const entry of entries ?? []) {
      if (entry.name.startsWith(".")) continue;
      for (const name of ["SKILL.md", "skill.md"]) {
        const file = join(root, entry.name, name);
        try {
          const info = await stat(file, { bigint: true });
          parts.push(`${file}:${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}`);
        } catch {
          // Not there: as in the listing.
        }
      }
    }
  }
  return parts.join("\n");
}

/** The entries of `dir` sorted by name, or undefined when it cannot be listed. */
async function entriesOf(dir: string): Promise<Dirent[] | undefined> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch {
    return undefined;
  }
}

/** The nearest parent of `dir` that is a directory, if any. */
async function existingParent(dir: string): Promise<string | undefined> {
  let current = dir;
  for (;;) {
    const parent = dirname(current);
    if (parent === current) return undefined;
    try {
      if ((await stat(parent)).isDirectory()) return parent;
    } catch {
      // Look further up.
    }
    current = parent;
  }
}
