import {
  ChildNotFoundError,
  ChildStartError,
  InvalidArgumentError,
  MaxChildrenError,
  MaxRestartIntensityError,
  NoProcessError,
} from "../errors.js";
import { emitTelemetry } from "../telemetry.js";
import {
  Actor,
  type ActorOptions,
  DEFAULT_SHUTDOWN_MS,
  type Process,
  type StopOptions,
} from "./actor.js";
import { type ExitReason, isNormalExit } from "./exit.js";
import type { Registry } from "./registry.js";
import { type LongTimer, startTimer } from "./timers.js";
import { describeArg, optionalNumber, requireObject } from "./validate.js";

/**
 * When a child is restarted after it exits:
 * - `permanent`: always.
 * - `transient`: only after an abnormal exit (a crash or `killed`), not after `normal` or
 *   `shutdown`.
 * - `temporary`: never; its spec is removed when it exits.
 */
export type RestartType = "permanent" | "transient" | "temporary";

/**
 * Which children are restarted when one exits and must be restarted:
 * - `one_for_one`: only that child.
 * - `one_for_all`: all children: the others are stopped (in reverse start order), then all
 *   are started again in order, including non-temporary siblings that were not running.
 *   Temporary siblings are stopped and forgotten.
 * - `rest_for_one`: the same, for that child and the children after it in start order.
 */
export type RestartStrategy = "one_for_one" | "one_for_all" | "rest_for_one";

/** A registry name for a supervised child: it is (re-)registered every time the child starts. */
export interface ViaName {
  registry: Registry;
  name: string;
}

/**
 * A child specification: plain data describing how to start and supervise one child.
 *
 * @example
 * ```ts
 * const spec: ChildSpec = {
 *   id: "cache",
 *   start: () => new CacheActor().start(),
 *   restart: "permanent",
 *   shutdownMs: 2_000,
 * };
 * ```
 */
export interface ChildSpec<P extends Process = Process> {
  /** Unique among the supervisor's children. Optional for `DynamicSupervisor` children. */
  id: string;
  /** Starts the child and resolves once it is running (for actors: `() => new A().start()`). */
  start: () => P | Promise<P>;
  /** Default `permanent`. */
  restart?: RestartType;
  /**
   * How long the child gets to stop before it is killed. Default 5000 for workers and
   * `Infinity` for supervisors (which bound their own children's shutdown).
   */
  shutdownMs?: number;
  /** Default `worker`. */
  type?: "worker" | "supervisor";
  /** Registers the child under this name every time it starts; see `Registry.via`. */
  via?: ViaName;
}

/** What `whichChildren()` reports for one child. */
export interface ChildInfo {
  id: string;
  /** The running process, or `undefined` while the child is stopped or being restarted. */
  process: Process | undefined;
  type: "worker" | "supervisor";
  restart: RestartType;
}

/** What `countChildren()` reports. */
export interface ChildCounts {
  /** Child specs the supervisor holds, running or not. */
  specs: number;
  /** Children currently running. */
  active: number;
  supervisors: number;
  workers: number;
}

/** Restart intensity: more than `maxRestarts` restarts within `periodMs` stops the supervisor. */
export interface RestartIntensity {
  /** Default 3. */
  maxRestarts?: number;
  /** Default 5000. */
  periodMs?: number;
}

/** Options of a {@link Supervisor}. */
export interface SupervisorOptions extends Omit<ActorOptions, "mailboxLimit">, RestartIntensity {
  /** Default `one_for_one`. */
  strategy?: RestartStrategy;
  /** Started in order by `start()`, stopped in reverse order by `stop()`. */
  children?: readonly ChildSpec[];
}

interface ChildState {
  spec: ChildSpec;
  readonly id: string;
  readonly restart: RestartType;
  readonly type: "worker" | "supervisor";
  readonly shutdownMs: number;
  process: Process | null;
  unmonitor: (() => void) | null;
  /** Waiting to be started again after a failed restart attempt. */
  pendingRestart: boolean;
}

type SupervisorCall =
  | { op: "start-child"; spec: ChildSpec }
  | { op: "terminate-child"; id: string }
  | { op: "restart-child"; id: string }
  | { op: "delete-child"; id: string }
  | { op: "which-children" }
  | { op: "count-children" };

type SupervisorInfo =
  | { type: "EXIT"; child: ChildState; process: Process; reason: ExitReason }
  | { type: "RETRY" };

function childState(spec: ChildSpec): ChildState {
  if (typeof spec.id !== "string" || spec.id.length === 0) {
    throw new InvalidArgumentError("a child spec needs a non-empty string id");
  }
  if (typeof spec.start !== "function") {
    throw new InvalidArgumentError(`child "${spec.id}" needs a start function`);
  }
  const type = spec.type ?? "worker";
  const shutdownMs = spec.shutdownMs ?? (type === "supervisor" ? Infinity : DEFAULT_SHUTDOWN_MS);
  if (!(shutdownMs === Infinity || (Number.isFinite(shutdownMs) && shutdownMs >= 0))) {
    throw new InvalidArgumentError(`child "${spec.id}": shutdownMs must be >= 0 or Infinity`);
  }
  const restart = spec.restart ?? "permanent";
  if (restart !== "permanent" && restart !== "transient" && restart !== "temporary") {
    throw new InvalidArgumentError(`child "${spec.id}": unknown restart type "${String(restart)}"`);
  }
  return {
    spec,
    id: spec.id,
    restart,
    type,
    shutdownMs,
    process: null,
    unmonitor: null,
    pendingRestart: false,
  };
}

/** A failed request to a supervisor, carried as a reply so that the supervisor survives it. */
class CallFailure {
  constructor(readonly error: unknown) {}
}

function isProcess(value: unknown): value is Process {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Process).monitor === "function" &&
    typeof (value as Process).stop === "function" &&
    typeof (value as Process).kill === "function"
  );
}

/**
 * The machinery shared by {@link Supervisor} and {@link DynamicSupervisor}: starting and
 * watching children, restart decisions, restart intensity, ordered shutdown.
 */
abstract class SupervisorBase extends Actor<SupervisorCall, unknown, never, SupervisorInfo> {
  protected readonly strategy: RestartStrategy;
  protected readonly maxRestarts: number;
  protected readonly periodMs: number;
  protected readonly children = new Map<string, ChildState>();
  /** Which child a process is, for O(1) lookups by process (restarts included). */
  protected readonly childOf = new WeakMap<Process, ChildState>();
  /** Restart times within the current period: a queue, `#restartsHead` is its front. */
  #restarts: number[] = [];
  #restartsHead = 0;

  constructor(options: SupervisorOptions & { strategy: RestartStrategy }) {
    optionalNumber(options.maxRestarts, "maxRestarts", { min: 0, integer: true });
    optionalNumber(options.periodMs, "periodMs", { min: "positive", infinity: true });
    // A supervisor must never drop a child's exit, so its mailbox is unbounded.
    super({ ...options, mailboxLimit: Number.MAX_SAFE_INTEGER });
    this.strategy = options.strategy;
    this.maxRestarts = options.maxRestarts ?? 3;
    this.periodMs = options.periodMs ?? 5_000;
    if (!Number.isInteger(this.maxRestarts) || this.maxRestarts < 0) {
      throw new InvalidArgumentError(
        `maxRestarts must be an integer >= 0, got ${this.maxRestarts}`,
      );
    }
    if (!(this.periodMs > 0)) {
      throw new InvalidArgumentError(`periodMs must be > 0, got ${this.periodMs}`);
    }
    // If this supervisor is killed outright, its children go with it (OTP links).
    this.monitor((reason) => {
      if (reason === "killed") for (const child of this.#reversed()) child.process?.kill();
    });
  }

  /**
   * Stops the supervisor: children are stopped in reverse start order, each within its own
   * `shutdownMs`. The default timeout is `Infinity` because each child's shutdown is
   * already bounded.
   */
  override stop(reason: ExitReason = "normal", options?: StopOptions): Promise<void> {
    return super.stop(reason, { timeoutMs: options?.timeoutMs ?? Infinity });
  }

  /** The children, in start order. */
  async whichChildren(): Promise<ChildInfo[]> {
    return (await this.call({ op: "which-children" })) as ChildInfo[];
  }

  /** How many children there are, by kind. */
  async countChildren(): Promise<ChildCounts> {
    return (await this.call({ op: "count-children" })) as ChildCounts;
  }

  override async call(message: SupervisorCall, options?: { timeoutMs?: number }): Promise<unknown> {
    const reply = await super.call(message, options);
    if (reply instanceof CallFailure) throw reply.error;
    return reply;
  }

  /**
   * A request that fails (unknown child, duplicate id, a child that will not start) is
   * answered with its error; unlike a worker, a supervisor does not crash over a bad request.
   */
  protected override async handleCall(message: SupervisorCall): Promise<unknown> {
    try {
      return await this.#answer(message);
    } catch (error) {
      return new CallFailure(error);
    }
  }

  async #answer(message: SupervisorCall): Promise<unknown> {
    switch (message.op) {
      case "which-children":
        return Array.from(this.children.values(), (c) => ({
          id: c.id,
          process: c.process ?? undefined,
          type: c.type,
          restart: c.restart,
        }));
      case "count-children": {
        let active = 0;
        let supervisors = 0;
        for (const c of this.children.values()) {
          if (c.process !== null) active++;
          if (c.type === "supervisor") supervisors++;
        }
        return {
          specs: this.children.size,
          active,
          supervisors,
          workers: this.children.size - supervisors,
        };
      }
      default:
        return this.handleChildOp(message);
    }
  }

  protected abstract handleChildOp(message: SupervisorCall): Promise<unknown>;

  protected override async handleInfo(message: SupervisorInfo): Promise<void> {
    if (message.type === "RETRY") {
      await this.#restartPending(undefined);
      return;
    }
    const { child, process: exited, reason } = message;
    if (child.process !== exited) return; // stale: that process was already replaced or removed
    child.process = null;
    child.unmonitor = null;
    const observedAt = performance.now();
    const restart =
      child.restart === "permanent" || (child.restart === "transient" && !isNormalExit(reason));
    if (!restart) {
      if (child.restart === "temporary" || this.removesStoppedChildren()) {
        this.children.delete(child.id);
      }
      return;
    }
    if (!this.#allowRestart(reason)) return;
    // As OTP's restart_multiple_children: every child of the group is stopped in reverse
    // order (temporary ones are forgotten) and every remaining one is started again in
    // order, including siblings that were not running.
    const affected = this.#affectedBy(child);
    for (const other of affected.slice().reverse()) {
      if (other === child || other.process === null) continue;
      await this.stopChild(other);
      if (other.restart === "temporary") this.children.delete(other.id);
    }
    for (const c of affected) if (this.children.has(c.id)) c.pendingRestart = true;
    await this.#restartPending({ reason, observedAt });
  }

  /** Dynamic supervisors forget children that will not be restarted. */
  protected removesStoppedChildren(): boolean {
    return false;
  }

  protected override async terminate(): Promise<void> {
    for (const child of this.#reversed()) {
      if (child.process !== null) await this.stopChild(child);
    }
  }

  /** Starts one child and watches it. Throws `ChildStartError` on failure. */
  protected async startChildProcess(child: ChildState): Promise<Process> {
    let started: unknown;
    try {
      started = await child.spec.start();
    } catch (error) {
      throw new ChildStartError(child.id, error);
    }
    if (!isProcess(started)) {
      throw new ChildStartError(
        child.id,
        new InvalidArgumentError(
          "start() must resolve to a running process (an Actor or Supervisor)",
        ),
      );
    }
    const proc = started;
    if (this.status === "stopped") {
      // Killed while this child was starting: the child goes with it, as a linked process would.
      proc.kill();
      throw new ChildStartError(
        child.id,
        new NoProcessError(`${this.name} (pid ${this.pid}) stopped while the child was starting`),
      );
    }
    if (proc.status !== "running") {
      const cause =
        proc.exitReason ??
        new InvalidArgumentError(
          `start() resolved to a process that is ${proc.status}, not running (missing .start()?)`,
        );
      proc.kill();
      throw new ChildStartError(child.id, cause);
    }
    if (child.spec.via !== undefined) {
      try {
        child.spec.via.registry.register(child.spec.via.name, proc);
      } catch (error) {
        proc.kill();
        throw new ChildStartError(child.id, error);
      }
    }
    child.process = proc;
    child.pendingRestart = false;
    this.childOf.set(proc, child);
    child.unmonitor = proc.monitor((reason) => {
      this.send({ type: "EXIT", child, process: proc, reason });
    });
    return proc;
  }

  /** Stops one child within its `shutdownMs`, killing it if it overruns. */
  protected async stopChild(child: ChildState): Promise<void> {
    const proc = child.process;
    child.unmonitor?.();
    child.unmonitor = null;
    child.process = null;
    if (proc === null || proc.status === "stopped") return;
    const { shutdownMs } = child;
    if (shutdownMs === 0) {
      proc.kill();
      return;
    }
    let guard: LongTimer | undefined;
    // Actors honour the stop timeout themselves; the guard catches a Process that does not.
    const stopped = proc.stop("shutdown", { timeoutMs: shutdownMs }).then(() => true);
    const inTime =
      shutdownMs === Infinity
        ? await stopped
        : await Promise.race([
            stopped,
            new Promise<boolean>((resolve) => {
              guard = startTimer(() => resolve(false), shutdownMs + 50);
            }),
          ]);
    guard?.cancel();
    if (!inTime) proc.kill();
    if (proc.exitReason === "killed") {
      emitTelemetry("beamclaw:supervisor.child-killed", () => ({
        supervisor: this.name,
        childId: child.id,
        shutdownMs,
      }));
    }
  }

  /** Starts children in order; on failure stops those already started and throws. */
  protected async startAll(children: Iterable<ChildState>): Promise<void> {
    const started: ChildState[] = [];
    for (const child of children) {
      try {
        await this.startChildProcess(child);
      } catch (error) {
        for (const s of started.reverse()) await this.stopChild(s);
        throw error;
      }
      started.push(child);
    }
  }

  protected addChild(spec: ChildSpec): ChildState {
    const child = childState(spec);
    if (this.children.has(child.id)) {
      throw new InvalidArgumentError(`${this.name} already has a child with id "${child.id}"`);
    }
    this.children.set(child.id, child);
    return child;
  }

  protected getChild(id: string): ChildState {
    const child = this.children.get(id);
    if (child === undefined) throw new ChildNotFoundError(id);
    return child;
  }

  /** Records a restart; returns false (and begins shutting down) if intensity is exceeded. */
  #allowRestart(reason: ExitReason): boolean {
    const now = performance.now();
    const restarts = this.#restarts;
    restarts.push(now);
    // Drop restarts older than the period from the front; shift() would be O(n) per restart
    // with a large maxRestarts.
    let head = this.#restartsHead;
    while (head < restarts.length && now - restarts[head]! > this.periodMs) head++;
    if (head > 1024 && head * 2 > restarts.length) {
      restarts.splice(0, head);
      head = 0;
    }
    this.#restartsHead = head;
    if (restarts.length - head <= this.maxRestarts) return true;
    const { maxRestarts, periodMs } = this;
    emitTelemetry("beamclaw:supervisor.max-intensity", () => ({
      supervisor: this.name,
      maxRestarts,
      periodMs,
      reason,
    }));
    void this.stop(new MaxRestartIntensityError(maxRestarts, periodMs, reason));
    return false;
  }

  #affectedBy(child: ChildState): ChildState[] {
    if (this.strategy === "one_for_one") return [child];
    const all = Array.from(this.children.values());
    if (this.strategy === "one_for_all") return all;
    return all.slice(all.indexOf(child));
  }

  /** Starts every child marked for restart, in order; a failure counts as another restart. */
  async #restartPending(trigger: { reason: ExitReason; observedAt: number } | undefined) {
    for (const child of this.children.values()) {
      if (!child.pendingRestart || child.process !== null) continue;
      try {
        await this.startChildProcess(child);
      } catch (error) {
        if (this.#allowRestart(error as Error)) this.send({ type: "RETRY" });
        return;
      }
      if (trigger !== undefined) {
        const { reason, observedAt } = trigger;
        emitTelemetry("beamclaw:supervisor.restart", () => ({
          supervisor: this.name,
          childId: child.id,
          reason,
          strategy: this.strategy,
          latencyMs: performance.now() - observedAt,
        }));
      }
    }
  }

  #reversed(): ChildState[] {
    return Array.from(this.children.values()).reverse();
  }
}

/**
 * A supervisor with a static list of children, in the manner of OTP's `supervisor`.
 *
 * Children start in order in `start()` (if one fails, the ones already started are stopped
 * and `start()` rejects with `ChildStartError`) and stop in reverse order in `stop()`. When
 * a child exits, its restart type and the strategy decide what is restarted; more than
 * `maxRestarts` restarts within `periodMs` stops the supervisor with a
 * `MaxRestartIntensityError`, which its own supervisor sees as a crash.
 *
 * @example
 * ```ts
 * const app = await new Supervisor({
 *   strategy: "one_for_one",
 *   children: [
 *     { id: "config", start: () => new ConfigActor().start() },
 *     { id: "sessions", type: "supervisor", start: () => new DynamicSupervisor().start() },
 *   ],
 * }).start();
 * await app.stop(); // sessions first, then config
 * ```
 */
export class Supervisor extends SupervisorBase {
  readonly #initial: readonly ChildSpec[];

  constructor(options: SupervisorOptions = {}) {
    requireObject(options, "Supervisor options");
    super({ ...options, strategy: options.strategy ?? "one_for_one" });
    const strategy = this.strategy;
    if (strategy !== "one_for_one" && strategy !== "one_for_all" && strategy !== "rest_for_one") {
      throw new InvalidArgumentError(`unknown strategy "${String(strategy)}"`);
    }
    this.#initial = options.children ?? [];
    const ids = new Set<string>();
    for (const spec of this.#initial) {
      childState(spec); // validates
      if (ids.has(spec.id)) throw new InvalidArgumentError(`duplicate child id "${spec.id}"`);
      ids.add(spec.id);
    }
  }

  protected override async init(): Promise<void> {
    const states = this.#initial.map((spec) => this.addChild(spec));
    await this.startAll(states);
  }

  /** Adds a child spec and starts the child. Resolves to the running process. */
  async startChild<P extends Process>(spec: ChildSpec<P>): Promise<P> {
    return (await this.call({ op: "start-child", spec }, { timeoutMs: Infinity })) as P;
  }

  /** Stops a child (within its `shutdownMs`); its spec stays unless it is `temporary`. */
  async terminateChild(id: string): Promise<void> {
    await this.call({ op: "terminate-child", id }, { timeoutMs: Infinity });
  }

  /** Starts a child that was terminated. */
  async restartChild(id: string): Promise<Process> {
    return (await this.call({ op: "restart-child", id }, { timeoutMs: Infinity })) as Process;
  }

  /** Removes the spec of a stopped child. */
  async deleteChild(id: string): Promise<void> {
    await this.call({ op: "delete-child", id }, { timeoutMs: Infinity });
  }

  protected override async handleChildOp(message: SupervisorCall): Promise<unknown> {
    switch (message.op) {
      case "start-child": {
        const child = this.addChild(message.spec);
        try {
          return await this.startChildProcess(child);
        } catch (error) {
          this.children.delete(child.id);
          throw error;
        }
      }
      case "terminate-child": {
        const child = this.getChild(message.id);
        child.pendingRestart = false;
        await this.stopChild(child);
        if (child.restart === "temporary") this.children.delete(child.id);
        return undefined;
      }
      case "restart-child": {
        const child = this.getChild(message.id);
        if (child.process !== null) {
          throw new InvalidArgumentError(`child "${child.id}" is already running`);
        }
        return this.startChildProcess(child);
      }
      case "delete-child": {
        const child = this.getChild(message.id);
        if (child.process !== null) {
          throw new InvalidArgumentError(`child "${child.id}" is running; terminate it first`);
        }
        this.children.delete(child.id);
        return undefined;
      }
      default:
        throw new InvalidArgumentError(`unknown supervisor request ${JSON.stringify(message)}`);
    }
  }
}

/** Options of a {@link DynamicSupervisor}. */
export interface DynamicSupervisorOptions
  extends Omit<ActorOptions, "mailboxLimit">,
    RestartIntensity {
  /** Refuse `startChild` with `MaxChildrenError` beyond this many children. Default unlimited. */
  maxChildren?: number;
}

/** A child spec for a dynamic supervisor; the id is generated when omitted. */
export type DynamicChildSpec<P extends Process = Process> = Omit<ChildSpec<P>, "id"> & {
  id?: string;
};

/**
 * A supervisor whose children are started at runtime (OTP's `DynamicSupervisor`): sessions,
 * channels, cron workers. Strategy is always `one_for_one`; children that exit and are not
 * restarted are forgotten.
 *
 * @example
 * ```ts
 * const sessions = await new DynamicSupervisor({ maxChildren: 10_000 }).start();
 * const s = await sessions.startChild({
 *   restart: "transient",
 *   start: () => new SessionActor(key).start(),
 * });
 * await sessions.terminateChild(s);
 * ```
 */
export class DynamicSupervisor extends SupervisorBase {
  readonly maxChildren: number;
  #nextId = 1;

  constructor(options: DynamicSupervisorOptions = {}) {
    super({
      ...requireObject<DynamicSupervisorOptions>(options, "DynamicSupervisor options"),
      strategy: "one_for_one",
    });
    optionalNumber(options.maxChildren, "maxChildren", { min: 0, integer: true, infinity: true });
    this.maxChildren = options.maxChildren ?? Infinity;
    if (
      !(
        this.maxChildren === Infinity ||
        (Number.isInteger(this.maxChildren) && this.maxChildren >= 0)
      )
    ) {
      throw new InvalidArgumentError(
        `maxChildren must be an integer >= 0, got ${this.maxChildren}`,
      );
    }
  }

  /**
   * Starts a child under this supervisor. Resolves to the running process.
   *
   * @throws MaxChildrenError when `maxChildren` children are already running.
   * @throws ChildStartError when the child's `start` fails.
   */
  async startChild<P extends Process>(spec: DynamicChildSpec<P>): Promise<P> {
    requireObject(spec, "a child spec");
    // An empty id asks the supervisor to generate a free one when it handles the request.
    const full: ChildSpec<P> = { ...spec, id: spec.id ?? "" };
    return (await this.call({ op: "start-child", spec: full }, { timeoutMs: Infinity })) as P;
  }

  /** Stops a child, given its process or id, and forgets it. */
  async terminateChild(child: Process | string): Promise<void> {
    if (typeof child !== "string" && (typeof child !== "object" || child === null)) {
      throw new InvalidArgumentError(
        `terminateChild needs a child process or id, got ${describeArg(child)}`,
      );
    }
    const id = typeof child === "string" ? child : this.#idOf(child);
    await this.call({ op: "terminate-child", id }, { timeoutMs: Infinity });
  }

  protected override removesStoppedChildren(): boolean {
    return true;
  }

  protected override async handleChildOp(message: SupervisorCall): Promise<unknown> {
    switch (message.op) {
      case "start-child": {
        if (this.children.size >= this.maxChildren) throw new MaxChildrenError(this.maxChildren);
        let spec = message.spec;
        if (spec.id === "") {
          let id: string;
          do id = `child-${this.#nextId++}`;
          while (this.children.has(id));
          spec = { ...spec, id };
        }
        const child = this.addChild(spec);
        try {
          return await this.startChildProcess(child);
        } catch (error) {
          this.children.delete(child.id);
          throw error;
        }
      }
      case "terminate-child": {
        const child = this.getChild(message.id);
        this.children.delete(child.id);
        await this.stopChild(child);
        return undefined;
      }
      default:
        throw new InvalidArgumentError(
          `unsupported request for a dynamic supervisor: ${message.op}`,
        );
    }
  }

  #idOf(process: Process): string {
    const child = this.childOf.get(process);
    if (child === undefined || child.process !== process || this.children.get(child.id) !== child) {
      throw new ChildNotFoundError(`pid ${process.pid}`);
    }
    return child.id;
  }
}
