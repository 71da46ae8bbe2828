import { type FSWatcher, watch } from "node:fs";
import { type FileHandle, open, realpath } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { EventEmitter } from "eventemitter3";
import { describe, InvalidArgumentError, NoProcessError } from "../errors.js";
import { sleep } from "../providers/backoff.js";
import { Actor } from "../runtime/actor.js";
import type { PubSub } from "../runtime/pubsub.js";
import { emitTelemetry } from "../telemetry.js";
import {
  type ConfigDiff,
  ConfigError,
  diffConfig,
  loadConfigFile,
  parseConfig,
  parseConfigYaml,
  unreadableConfig,
} from "./load.js";
import { type BeamClawConfig, type ConfigInput, RESTART_ONLY_PATHS } from "./schema.js";

/** Events of a {@link ConfigService}. */
export interface ConfigEvents {
  /** A valid change was applied. `diff.restartRequired` lists what only a restart applies. */
  "config.changed": (event: { config: BeamClawConfig; diff: ConfigDiff }) => void;
  /** The file changed but is invalid; the running configuration stays. */
  "config.invalid": (event: { error: ConfigError }) => void;
}

/** Options of {@link ConfigService}. */
export interface ConfigServiceOptions {
  /** A `beamclaw.yaml` to load and watch ... */
  path?: string;
  /** ... or a configuration object (no file, no watching). */
  config?: ConfigInput;
  /** For `${VAR}` substitution. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Watch the file and hot-reload. Default true when `path` is given. */
  watch?: boolean;
  /**
   * Quiet time after the last file event before the file is read, and again before what was
   * read is applied. Default 100 ms.
   *
   * A read is applied only once it is confirmed: `debounceMs` after reading (never less than
   * 50 ms, even with a `debounceMs` of 0), the file it came from must still hold the same
   * bytes (same size, modification time and content). So a file written in place in several
   * writes (an editor or a tool that truncates the file and then writes it piece by piece) is
   * not applied half-written as long as it pauses less than
   * `debounceMs + max(debounceMs, 50 ms)` between writes; the read that saw a change is
   * dropped and the file is read again once it holds still. Raise `debounceMs` for a writer
   * that pauses longer. A change is therefore applied about `2 × debounceMs` (at least
   * 50 ms) after the file's last write.
   *
   * The first read, by `start()`, is confirmed the same way: `start()` takes at least the
   * confirmation interval, and reads again while the file changes under it (for at most
   * `max(1 s, 10 × debounceMs)`, after which it takes its latest read; the watcher applies
   * what follows once the file holds still).
   *
   * A file saved again and again without `debounceMs` of quiet is still read at the latest
   * `max(1 s, 10 × debounceMs)` after the first change not yet applied. A save that replaces
   * the file (a temporary file renamed over it, as most editors do) leaves what was read
   * unchanged, so that version is applied `debounceMs` later even while newer saves go on
   * (and the newest is read next); a file that keeps being rewritten in place is applied once
   * it holds still.
   */
  debounceMs?: number;
  /** Also publish `config.changed` / `config.invalid` on `events:global`. */
  pubsub?: PubSub;
}

/**
 * The shortest wait before a read of the watched file is confirmed (see
 * {@link ConfigServiceOptions.debounceMs}): with no wait at all, a file caught between two
 * writes would be confirmed by a second read made at once, and applied half-written.
 */
const MIN_CONFIRM_MS = 50;

/**
 * `link`: an event in the link's directory under another name than the file's, which matters
 * only when it moved where the symlinked file resolves to (a Kubernetes `..data` swap).
 */
type ConfigMessage =
  | { type: "file-event"; link?: true }
  | { type: "reload" }
  | { type: "settled"; generation: number };

/**
 * One read of the watched file: its text and the open handle of the file (inode) it came
 * from, with that file's identity, size and modification time when the read began; or why it could not
 * be read.
 */
type Snapshot = FileRead | { error: unknown };

/** A {@link Snapshot} of a file that could be read. */
interface FileRead {
  handle: FileHandle;
  text: string;
  signature: string;
}

/**
 * Identity, size and modification time of an open file: any write to it changes them. (Not
 * its change time, which also moves when a save renames another file over its path.)
 */
async function signatureOf(handle: FileHandle): Promise<string> {
  const stat = await handle.stat({ bigint: true });
  return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}`;
}

/** Everything `handle` holds, read from its start (as UTF-8, as `readFile` would). */
async function readWhole(handle: FileHandle): Promise<string> {
  const chunks: Buffer[] = [];
  let position = 0;
  for (;;) {
    const buffer = Buffer.allocUnsafe(65_536);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) break;
    chunks.push(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Reads `path`, keeping the file open for {@link unchanged} to look at again. Never throws. */
async function readSnapshot(path: string): Promise<Snapshot> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    return { error };
  }
  try {
    const signature = await signatureOf(handle);
    return { handle, text: await readWhole(handle), signature };
  } catch (error) {
    await handle.close().catch(() => undefined);
    return { error };
  }
}

/**
 * Whether the file a snapshot was read from (the same inode, even if another file has been
 * renamed over its path since) still holds exactly what was read, with the same size and
 * modification time. Closes the snapshot's handle. Never throws (a file that cannot be looked at again
 * has not held still).
 */
async function unchanged(snapshot: FileRead): Promise<boolean> {
  try {
    return (
      (await signatureOf(snapshot.handle)) === snapshot.signature &&
      (await readWhole(snapshot.handle)) === snapshot.text
    );
  } catch {
    return false;
  } finally {
    await snapshot.handle.close().catch(() => undefined);
  }
}

function release(snapshot: Snapshot): void {
  if ("handle" in snapshot) snapshot.handle.close().catch(() => undefined);
}

function pick(config: BeamClawConfig, path: string): unknown {
  let value: unknown = config;
  for (const part of path.split("."))
    value = (value as Record<string, unknown> | undefined)?.[part];
  return value;
}

function put(config: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split(".");
  let target = config;
  for (const part of parts.slice(0, -1)) {
    target[part] = { ...(target[part] as Record<string, unknown>) };
    target = target[part] as Record<string, unknown>;
  }
  const last = parts.at(-1)!;
  if (value === undefined) delete target[last];
  else target[last] = value;
}

/**
 * The configuration as a supervised service: loads and validates `beamclaw.yaml` (or takes
 * the same shape as an object), watches the file, and on every change validates, diffs and
 * applies the safe fields live, announcing `config.changed`. Restart-only fields (API keys,
 * provider URLs, bind address, TLS, auth, store) keep their running values and are listed in
 * `diff.restartRequired`. An invalid file is rejected with `config.invalid` and the running
 * configuration stays.
 *
 * A watched change is applied only once the file holds still: what was read is checked
 * again a debounce interval later and dropped if the file changed meanwhile, so a file
 * caught half-written by a save in several writes is never applied, even when what was
 * written so far is a valid configuration (see {@link ConfigServiceOptions.debounceMs}).
 *
 * @example
 * ```ts
 * const config = await new ConfigService({ path: "beamclaw.yaml" }).start();
 * config.on("config.changed", ({ diff }) => console.log("changed", diff.applied));
 * console.log(config.current.agents[0].model);
 * await config.stop();
 * ```
 */
export class ConfigService extends Actor<never, never, never, ConfigMessage> {
  readonly #options: ConfigServiceOptions;
  readonly #events = new EventEmitter<ConfigEvents>();
  #current!: BeamClawConfig;
  #watcher: FSWatcher | null = null;
  /** Watches the directory of the file a symlinked `path` resolves to. */
  #targetWatcher: FSWatcher | null = null;
  /** Where `path` resolves to, when it is a symlink. */
  #target: string | undefined;
  #debounce: (() => void) | null = null;
  /** When the first file event the pending reload answers arrived (clock ms). */
  #firstEventAt = 0;
  /**
   * The file event waiting in the mailbox, if any: while one waits, more of the same kind are
   * dropped (they would only re-arm the same reload), so a flood of saves while a reload
   * reads the file cannot fill the mailbox.
   */
  #queuedEvent: "file" | "link" | undefined;
  /** Every file event since the last reload was a `link` one. */
  #linkOnly = false;
  /** A read of the file waiting out its settle interval before it is applied. */
  #settling: { generation: number; snapshot: Snapshot; cancel: () => void } | undefined;
  /** Bumped by whatever makes a read under way stale: a newer read, `reload()`, `stop()`. */
  #generation = 0;
  /** File events seen while a read settled, handled once it has: `file` if any was one. */
  #eventsWhileSettling: "file" | "link" | undefined;
  #path: string | undefined;

  constructor(options: ConfigServiceOptions) {
    super({ name: "config" });
    if ((options.path === undefined) === (options.config === undefined)) {
      throw new InvalidArgumentError("give the ConfigService either a path or a config object");
    }
    const debounce = options.debounceMs;
    if (debounce !== undefined && (typeof debounce !== "number" || !(debounce >= 0))) {
      throw new InvalidArgumentError(`debounceMs must be a number >= 0, got ${String(debounce)}`);
    }
    this.#options = options;
    this.#path = options.path === undefined ? undefined : resolve(options.path);
  }

  /** The running configuration. */
  /**
   * The absolute path of the `beamclaw.yaml` this service loads and watches, or `undefined`
   * for one given a configuration object. Paths in the configuration that are relative (e.g.
   * `skills.dirs`) are relative to its directory.
   */
  get path(): string | undefined {
    return this.#path;
  }

  get current(): BeamClawConfig {
    return this.#current;
  }

  /** Listens to `config.changed` / `config.invalid`. Returns the unsubscribe function. */
  on<E extends keyof ConfigEvents>(event: E, listener: ConfigEvents[E]): () => void {
    this.#events.on(event, listener as never);
    return () => {
      this.#events.off(event, listener as never);
    };
  }

  /**
   * Re-reads the file now and applies it at once (the watcher also waits for the file to
   * hold still; a change it is waiting on is superseded by this read).
   *
   * @returns The change applied, or the `ConfigError` of an invalid file (announced as
   *   `config.invalid`; the running configuration stays).
   * @throws NoProcessError before `start()` or after `stop()` (nothing changes).
   * @throws InvalidArgumentError for a service given a config object: there is no file.
   */
  async reload(): Promise<ConfigDiff | ConfigError> {
    if (this.status !== "running") {
      throw new NoProcessError(`the config service is ${this.status}; it reloads nothing`);
    }
    if (this.#path === undefined) {
      throw new InvalidArgumentError(
        "this ConfigService was given a config object: there is no file to reload",
      );
    }
    this.#cancelSettling();
    const env = this.#options.env === undefined ? {} : { env: this.#options.env };
    return this.#applyOrReject(() => loadConfigFile(this.#path!, env));
  }

  /** Applies what `load` gives, or announces its `ConfigError` as `config.invalid`. */
  async #applyOrReject(
    load: () => BeamClawConfig | Promise<BeamClawConfig>,
  ): Promise<ConfigDiff | ConfigError> {
    try {
      return this.#apply(await load());
    } catch (error) {
      if (!ConfigError.isInstance(error)) throw error;
      this.#notify("config.invalid", { error });
      this.#announce({ type: "config.invalid", error: error.toJSON(), issues: error.issues });
      return error;
    }
  }

  protected override async init(): Promise<void> {
    const env = this.#options.env === undefined ? {} : { env: this.#options.env };
    if (this.#path === undefined) {
      this.#current = parseConfig(this.#options.config, env);
      return;
    }
    if (this.#options.watch !== false) {
      // Watch the directory: editors save by writing a temp file and renaming it over. The
      // watch starts before the file is read, so that a save landing during the read is seen.
      const file = basename(this.#path);
      this.#watcher = watch(dirname(this.#path), { persistent: true }, (_event, name) => {
        if (name === null || name === file) this.#fileEvent("file");
        else if (this.#target !== undefined) this.#fileEvent("link");
      });
      this.#watcher.on("error", () => undefined);
    }
    try {
      if (this.#watcher !== null) await this.#followTarget();
      this.#current = await this.#readConfirmed(env);
    } catch (error) {
      // A failed start runs no terminate: the watchers are closed here.
      this.#closeWatchers();
      throw error;
    }
  }

  protected override async handleInfo(message: ConfigMessage | { type: "DOWN" }): Promise<void> {
    if (message.type === "file-event") {
      const kind = message.link === true ? "link" : "file";
      if (this.#queuedEvent === kind) this.#queuedEvent = undefined;
      if (this.#settling !== undefined) {
        // Handled once the read under way has settled (which the change may well upset).
        if (this.#eventsWhileSettling !== "file") this.#eventsWhileSettling = kind;
        return;
      }
      this.#armReload(kind === "link");
    } else if (message.type === "reload") {
      this.#debounce = null;
      // Where the link resolves is watched before the file is read: a write after the read
      // is then seen.
      const previous = this.#target;
      await this.#followTarget();
      // Another entry of the link's directory changed: a reload only if the link now
      // resolves elsewhere.
      if (this.#linkOnly && this.#target === previous) return;
      await this.#read();
    } else if (message.type === "settled") {
      await this.#settled(message.generation);
    }
  }

  /** How long a read waits before it is confirmed (see `debounceMs`). */
  #confirmMs(): number {
    return Math.max(this.#options.debounceMs ?? 100, MIN_CONFIRM_MS);
  }

  /**
   * `start()`'s read of the file, confirmed as a watched read is: taken once the file still
   * holds the same bytes after the confirmation interval, read again while it changes (for at
   * most `max(1 s, 10 × debounceMs)`, then the latest read is taken). A file that cannot be
   * read fails at once. A stop while it waits ends the wait; what was read stands.
   */
  async #readConfirmed(env: { env?: Record<string, string | undefined> }): Promise<BeamClawConfig> {
    const path = this.#path!;
    const giveUpAt = Date.now() + Math.max(1_000, 10 * (this.#options.debounceMs ?? 100));
    for (;;) {
      const snapshot = await readSnapshot(path);
      if ("error" in snapshot) throw unreadableConfig(path, snapshot.error);
      let stable: boolean;
      try {
        await sleep(this.#confirmMs(), this.signal);
        stable = await unchanged(snapshot);
      } catch {
        // Stopped while starting: start() reports it.
        release(snapshot);
        stable = true;
      }
      if (stable || Date.now() >= giveUpAt) {
        return parseConfigYaml(snapshot.text, { ...env, source: path });
      }
    }
  }

  /** Arms the debounced read after a file event (`link`: a `link` event). */
  #armReload(link: boolean): void {
    this.#linkOnly = (this.#debounce === null || this.#linkOnly) && link;
    const debounceMs = this.#options.debounceMs ?? 100;
    const now = Date.now();
    if (this.#debounce === null) this.#firstEventAt = now;
    else if (now - this.#firstEventAt >= Math.max(1_000, 10 * debounceMs)) {
      // Saved again and again without a quiet moment: the reload armed stays armed.
      return;
    }
    this.#debounce?.();
    this.#debounce = this.sendAfter({ type: "reload" }, debounceMs);
  }

  /**
   * Reads the file, and leaves what it read to settle for a debounce interval before it is
   * applied (by the `settled` message).
   */
  async #read(): Promise<void> {
    this.#cancelSettling();
    const generation = this.#generation;
    const snapshot = await readSnapshot(this.#path!);
    if (generation !== this.#generation) {
      release(snapshot);
      return;
    }
    const cancel = this.sendAfter({ type: "settled", generation }, this.#confirmMs());
    this.#settling = { generation, snapshot, cancel };
  }

  /**
   * A read has waited its settle interval: applied when the file it came from still holds the
   * same bytes (an unreadable file: when no event came meanwhile). Otherwise the file is
   * being written: the read is dropped and the file read again once it is quiet. Events that
   * came meanwhile arm the next read.
   */
  async #settled(generation: number): Promise<void> {
    const settling = this.#settling;
    if (settling === undefined || settling.generation !== generation) return;
    this.#settling = undefined;
    const events = this.#eventsWhileSettling;
    this.#eventsWhileSettling = undefined;
    const { snapshot } = settling;
    const stable = "handle" in snapshot ? await unchanged(snapshot) : events === undefined;
    // A `reload()` or `stop()` meanwhile: what they read (or nothing) stands.
    if (generation !== this.#generation) return;
    if (stable) {
      const env = this.#options.env === undefined ? {} : { env: this.#options.env };
      const path = this.#path!;
      await this.#applyOrReject(() => {
        if ("error" in snapshot) throw unreadableConfig(path, snapshot.error);
        return parseConfigYaml(snapshot.text, { ...env, source: path });
      });
    }
    if (!stable || events !== undefined) this.#armReload(stable && events === "link");
  }

  /** Drops the read waiting to settle, if any, and makes any read under way stale. */
  #cancelSettling(): void {
    this.#generation++;
    const settling = this.#settling;
    this.#settling = undefined;
    this.#eventsWhileSettling = undefined;
    if (settling === undefined) return;
    settling.cancel();
    release(settling.snapshot);
  }

  /**
   * A watcher saw a change: tells the mailbox, unless an event of the same kind already
   * waits there. Never throws (it runs in an `fs.watch` callback).
   */
  #fileEvent(kind: "file" | "link"): void {
    if (this.#queuedEvent === kind || this.#queuedEvent === "file") return;
    const before = this.#queuedEvent;
    // Set first: the mailbox may hand the message over before `send` returns.
    this.#queuedEvent = kind;
    try {
      this.send(kind === "link" ? { type: "file-event", link: true } : { type: "file-event" });
    } catch {
      this.#queuedEvent = before;
      // Stopping, or the mailbox is full of other messages: the reload already armed (or the
      // next save) picks the change up.
    }
  }

  protected override terminate(): void {
    this.#cancelSettling();
    this.#closeWatchers();
    this.#events.removeAllListeners();
  }

  #closeWatchers(): void {
    this.#watcher?.close();
    this.#watcher = null;
    this.#targetWatcher?.close();
    this.#targetWatcher = null;
  }

  /**
   * Where `path` resolves to when the file itself is a symlink (`undefined` when it is not,
   * or cannot be resolved). A symlinked directory on the way does not count: the directory
   * watcher follows it.
   */
  async #resolveTarget(): Promise<string | undefined> {
    const path = this.#path!;
    try {
      const [file, dir] = await Promise.all([realpath(path), realpath(dirname(path))]);
      return file === join(dir, basename(path)) ? undefined : file;
    } catch {
      return undefined;
    }
  }

  /**
   * A symlinked file (a dotfiles link, a Kubernetes ConfigMap) is edited where it resolves
   * to, which the watcher of the link's directory never sees: that directory is watched too,
   * and again wherever the link resolves after each reload.
   */
  async #followTarget(): Promise<void> {
    const target = await this.#resolveTarget();
    if (target === this.#target && (target === undefined || this.#targetWatcher !== null)) return;
    this.#targetWatcher?.close();
    this.#targetWatcher = null;
    this.#target = target;
    if (target === undefined) return;
    const file = basename(target);
    try {
      const watcher = watch(dirname(target), { persistent: true }, (_event, name) => {
        if (name === null || name === file) this.#fileEvent("file");
      });
      // Its directory was removed (the old side of a swap): the next reload looks again.
      watcher.on("error", () => {
        watcher.close();
        if (this.#targetWatcher === watcher) this.#targetWatcher = null;
      });
      this.#targetWatcher = watcher;
    } catch {
      // The target's directory cannot be watched: the link's directory still is.
    }
  }

  /**
   * Calls `event`'s listeners. One that throws is reported on the
   * `beamclaw:pubsub.handler-error` telemetry channel (topic: the event's name), and the
   * others, the service and its watcher carry on.
   */
  #notify<E extends keyof ConfigEvents>(event: E, payload: Parameters<ConfigEvents[E]>[0]): void {
    for (const listener of this.#events.listeners(event)) {
      try {
        (listener as (payload: unknown) => void)(payload);
      } catch (error) {
        emitTelemetry("beamclaw:pubsub.handler-error", () => ({ topic: event, error }));
      }
    }
  }

  #apply(next: BeamClawConfig): ConfigDiff {
    const diff = diffConfig(this.#current, next);
    if (diff.changed.length === 0) return diff;
    // Restart-only fields keep their running values; everything else takes effect now.
    const merged = structuredClone(next) as Record<string, unknown>;
    for (const path of RESTART_ONLY_PATHS)
      put(merged, path, structuredClone(pick(this.#current, path)));
    this.#current = merged as BeamClawConfig;
    this.#notify("config.changed", { config: this.#current, diff });
    this.#announce({ type: "config.changed", diff });
    return diff;
  }

  /**
   * Publishes `message` on `events:global`, when a pubsub was given. A publish that fails (a
   * cluster pubsub whose backend is unreachable) is reported as a `BeamClawWarning`: the change
   * it announces has happened all the same, and left unhandled it would end the process.
   */
  #announce(message: { type: string; [field: string]: unknown }): void {
    const pubsub = this.#options.pubsub;
    if (pubsub === undefined) return;
    const report = (error: unknown) => {
      process.emitWarning(
        `the config service could not publish ${message.type}: ${describe(error)}`,
        "BeamClawWarning",
      );
    };
    try {
      pubsub.publish("events:global", message).catch(report);
    } catch (error) {
      report(error);
    }
  }
}
