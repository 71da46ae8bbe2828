/**
 * Memory pressure: a monitor that samples the process's heap and resident set size on an
 * unref'd timer, and says when either crosses a configured threshold, so that whoever holds it
 * can shed load before the process runs out of memory (an `AgentRuntime` refuses new runs and
 * hibernates idle sessions; the gateway trims its caches) and take it back up once the
 * pressure drops.
 *
 * @example
 * ```ts
 * import { AgentRuntime, MemoryPressureMonitor } from "@beamclaw/core";
 *
 * const memory = new MemoryPressureMonitor({ maxHeapUsedRatio: 0.8, maxRssBytes: 2 * 1024 ** 3 });
 * const runtime = new AgentRuntime({ store, models, agents, memoryPressure: memory });
 * memory.start();
 * await runtime.start();
 * // ... under pressure, `send` rejects with MemoryPressureError (retryable)
 * await runtime.stop();
 * memory.stop();
 * ```
 */
import { getHeapStatistics } from "node:v8";
import { InvalidArgumentError, OverloadedError } from "../errors.js";
import { MAX_TIMER_DELAY_MS } from "./timers.js";

/** One reading of the process's memory. */
export interface MemorySample {
  /** Epoch ms of the reading. */
  at: number;
  /** Resident set size (`process.memoryUsage.rss()`). */
  rssBytes: number;
  /** V8 heap in use (`used_heap_size`). */
  heapUsedBytes: number;
  /** The most the V8 heap may grow to (`heap_size_limit`, set by `--max-old-space-size`). */
  heapLimitBytes: number;
}

/** What a {@link MemoryPressureMonitor} measures against a threshold. */
export type MemoryMeasure = "heap" | "rss";

/** Options of {@link MemoryPressureMonitor}. At least one threshold is required. */
export interface MemoryPressureOptions {
  /** Pressure when the V8 heap in use exceeds this many bytes. */
  maxHeapUsedBytes?: number;
  /**
   * Pressure when the V8 heap in use exceeds this fraction (0 < r ≤ 1) of the heap limit
   * (`heap_size_limit`). With `maxHeapUsedBytes` as well, the lower of the two counts.
   */
  maxHeapUsedRatio?: number;
  /** Pressure when the resident set size exceeds this many bytes. */
  maxRssBytes?: number;
  /**
   * Pressure ends once every measure is at or below this fraction (0 < r < 1) of its
   * threshold, so that a process hovering at the threshold does not flap. Default 0.85.
   */
  recoverRatio?: number;
  /** Time between two samples once started. Default 1000 ms; at most 2,147,483,647. */
  sampleIntervalMs?: number;
  /**
   * The wait suggested to refused callers (`MemoryPressureError.retryAfterMs`). Default twice
   * `sampleIntervalMs`, at least 1000 ms.
   */
  retryAfterMs?: number;
  /** Reads the memory; default the process's own (`process.memoryUsage.rss()`, `v8`). For tests. */
  read?: () => Omit<MemorySample, "at">;
  /** Clock. Default `Date.now`. */
  now?: () => number;
}

/** Passed to `onPressure` listeners on every sample taken under pressure. */
export interface MemoryPressureEvent {
  sample: MemorySample;
  /** The measures over their thresholds in this sample (empty while recovering). */
  exceeded: MemoryMeasure[];
  /** True for the sample that began this period of pressure. */
  first: boolean;
  /** Epoch ms when this period of pressure began. */
  since: number;
}

/** Passed to `onRecovered` listeners when a period of pressure ends. */
export interface MemoryRecoveryEvent {
  sample: MemorySample;
  /** How long the pressure lasted. */
  durationMs: number;
}

/**
 * A request refused because the process is under memory pressure. An `OverloadedError`
 * (code `OVERLOADED`, retryable) with `reason: "memory"`, the measures over their thresholds
 * and a suggested wait; nothing of the refused request was kept, so it may simply be sent
 * again later.
 */
export class MemoryPressureError extends OverloadedError {
  /** Always `"memory"`: what distinguishes this overload from a full queue or mailbox. */
  readonly reason = "memory" as const;
  /** The measures over their thresholds when the pressure began or was last seen. */
  readonly exceeded: MemoryMeasure[];
  /** A suggested wait before retrying, in ms. */
  declare readonly retryAfterMs: number;

  constructor(
    message: string,
    options: { limit: number; exceeded: MemoryMeasure[]; retryAfterMs: number },
  ) {
    super(message, options.limit, { retryAfterMs: options.retryAfterMs });
    this.exceeded = options.exceeded;
  }

  /** True for a `MemoryPressureError` from any copy of `@beamclaw/core`. */
  static override isInstance = (value: unknown): value is MemoryPressureError =>
    OverloadedError.isInstance(value) && (value as { reason?: unknown }).reason === "memory";
}

function readProcessMemory(): Omit<MemorySample, "at"> {
  const heap = getHeapStatistics();
  return {
    rssBytes: process.memoryUsage.rss(),
    heapUsedBytes: heap.used_heap_size,
    heapLimitBytes: heap.heap_size_limit,
  };
}

function positive(
  name: string,
  value: number | undefined,
  integer: boolean,
  max = Number.MAX_VALUE,
): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > max) {
    throw new InvalidArgumentError(
      `${name} must be a positive number${max === Number.MAX_VALUE ? "" : ` up to ${max}`}, got ${String(value)}`,
    );
  }
  if (integer && !Number.isInteger(value)) {
    throw new InvalidArgumentError(`${name} must be a whole number, got ${value}`);
  }
}

function ratio(name: string, value: number | undefined, allowOne: boolean): void {
  if (value === undefined) return;
  if (
    typeof value !== "number" ||
    !(value > 0) ||
    (allowOne ? value > 1 : value >= 1) ||
    Number.isNaN(value)
  ) {
    throw new InvalidArgumentError(
      `${name} must be a number in (0, 1${allowOne ? "]" : ")"}, got ${String(value)}`,
    );
  }
}

function formatMiB(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
}

/**
 * Samples the process's memory and reports pressure: it begins when the heap in use or the
 * resident set size exceeds its threshold and ends once every measure is back at or below
 * `recoverRatio` of its threshold.
 *
 * `start()` takes a sample at once and then one every `sampleIntervalMs` on an unref'd timer
 * (it never keeps the process alive); `check()` takes one now. Listeners run synchronously
 * after a sample: `onPressure` on every sample taken under pressure (`first` on the one that
 * began it), `onRecovered` once when it ends. A listener that throws does not stop the others
 * or the monitor.
 */
export class MemoryPressureMonitor {
  readonly #heapThreshold: ((sample: Omit<MemorySample, "at">) => number) | undefined;
  readonly #maxHeapUsedBytes: number | undefined;
  readonly #maxHeapUsedRatio: number | undefined;
  readonly #maxRssBytes: number | undefined;
  readonly #recoverRatio: number;
  readonly #intervalMs: number;
  readonly #retryAfterMs: number;
  readonly #read: () => Omit<MemorySample, "at">;
  readonly #now: () => number;
  readonly #onPressure = new Set<(event: MemoryPressureEvent) => void>();
  readonly #onRecovered = new Set<(event: MemoryRecoveryEvent) => void>();
  #timer: NodeJS.Timeout | undefined;
  #since: number | undefined;
  #exceeded: MemoryMeasure[] = [];
  #last: MemorySample | undefined;

  /** @throws InvalidArgumentError when no threshold is given or a value is out of range. */
  constructor(options: MemoryPressureOptions) {
    positive("maxHeapUsedBytes", options.maxHeapUsedBytes, false);
    ratio("maxHeapUsedRatio", options.maxHeapUsedRatio, true);
    positive("maxRssBytes", options.maxRssBytes, false);
    ratio("recoverRatio", options.recoverRatio, false);
    // A timer: Node fires a longer one at once (a sample, then another, without pause).
    positive("sampleIntervalMs", options.sampleIntervalMs, true, MAX_TIMER_DELAY_MS);
    positive("retryAfterMs", options.retryAfterMs, false);
    if (
      options.maxHeapUsedBytes === undefined &&
      options.maxHeapUsedRatio === undefined &&
      options.maxRssBytes === undefined
    ) {
      throw new InvalidArgumentError(
        "a MemoryPressureMonitor needs a threshold: maxHeapUsedBytes, maxHeapUsedRatio or maxRssBytes",
      );
    }
    this.#maxHeapUsedBytes = options.maxHeapUsedBytes;
    this.#maxHeapUsedRatio = options.maxHeapUsedRatio;
    this.#maxRssBytes = options.maxRssBytes;
    if (this.#maxHeapUsedBytes !== undefined || this.#maxHeapUsedRatio !== undefined) {
      this.#heapThreshold = (sample) =>
        Math.min(
          this.#maxHeapUsedBytes ?? Infinity,
          this.#maxHeapUsedRatio === undefined
            ? Infinity
            : this.#maxHeapUsedRatio * sample.heapLimitBytes,
        );
    }
    this.#recoverRatio = options.recoverRatio ?? 0.85;
    this.#intervalMs = options.sampleIntervalMs ?? 1000;
    this.#retryAfterMs = options.retryAfterMs ?? Math.max(1000, 2 * this.#intervalMs);
    this.#read = options.read ?? readProcessMemory;
    this.#now = options.now ?? Date.now;
  }

  /** True from the sample that crossed a threshold until the one that recovered. */
  get underPressure(): boolean {
    return this.#since !== undefined;
  }

  /** The latest sample, if any was taken. */
  get lastSample(): MemorySample | undefined {
    return this.#last;
  }

  /** True while the sampling timer runs. */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Starts sampling (a first sample at once). Calling it again does nothing. */
  start(): this {
    if (this.#timer !== undefined) return this;
    this.#timer = setInterval(() => this.check(), this.#intervalMs);
    this.#timer.unref();
    this.check();
    return this;
  }

  /** Stops sampling. The state (`underPressure`) stays as the last sample left it. */
  stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes a sample now, updates the state and tells the listeners; returns the sample. */
  check(): MemorySample {
    const reading = this.#read();
    const sample: MemorySample = { at: this.#now(), ...reading };
    this.#last = sample;
    const heapLimit = this.#heapThreshold?.(reading);
    const exceeded: MemoryMeasure[] = [];
    if (heapLimit !== undefined && reading.heapUsedBytes > heapLimit) exceeded.push("heap");
    if (this.#maxRssBytes !== undefined && reading.rssBytes > this.#maxRssBytes)
      exceeded.push("rss");
    if (this.#since === undefined) {
      if (exceeded.length === 0) return sample;
      this.#since = sample.at;
      this.#exceeded = exceeded;
      this.#emitPressure({ sample, exceeded, first: true, since: sample.at });
      return sample;
    }
    const recovered =
      (heapLimit === undefined || reading.heapUsedBytes <= heapLimit * this.#recoverRatio) &&
      (this.#maxRssBytes === undefined ||
        reading.rssBytes <= this.#maxRssBytes * this.#recoverRatio);
    if (recovered) {
      const durationMs = sample.at - this.#since;
      this.#since = undefined;
      this.#exceeded = [];
      for (const listener of [...this.#onRecovered]) {
        try {
          listener({ sample, durationMs });
        } catch {
          // A listener's failure must not stop the monitor or the other listeners.
        }
      }
      return sample;
    }
    if (exceeded.length > 0) this.#exceeded = exceeded;
    this.#emitPressure({ sample, exceeded, first: false, since: this.#since });
    return sample;
  }

  /** Calls `listener` on every sample taken under pressure. Returns the unsubscribe function. */
  onPressure(listener: (event: MemoryPressureEvent) => void): () => void {
    this.#onPressure.add(listener);
    return () => this.#onPressure.delete(listener);
  }

  /** Calls `listener` when a period of pressure ends. Returns the unsubscribe function. */
  onRecovered(listener: (event: MemoryRecoveryEvent) => void): () => void {
    this.#onRecovered.add(listener);
    return () => this.#onRecovered.delete(listener);
  }

  /**
   * Throws {@link MemoryPressureError} while under pressure; does nothing otherwise. `what`
   * names the refused work in the message.
   */
  assertAccepting(what = "new work"): void {
    if (this.#since === undefined) return;
    throw this.refusal(what);
  }

  /** The error refusing `what` under the current pressure (whether or not there is any). */
  refusal(what = "new work"): MemoryPressureError {
    const sample = this.#last;
    const exceeded = this.#exceeded;
    const parts: string[] = [];
    let limit = 0;
    if (sample !== undefined) {
      const heapLimit = this.#heapThreshold?.(sample);
      if (heapLimit !== undefined) {
        parts.push(`heap ${formatMiB(sample.heapUsedBytes)} of ${formatMiB(heapLimit)} allowed`);
        if (exceeded.includes("heap")) limit = heapLimit;
      }
      if (this.#maxRssBytes !== undefined) {
        parts.push(`rss ${formatMiB(sample.rssBytes)} of ${formatMiB(this.#maxRssBytes)} allowed`);
        if (exceeded.includes("rss") && limit === 0) limit = this.#maxRssBytes;
      }
    }
    return new MemoryPressureError(
      `${what} refused: the process is under memory pressure (${parts.join(", ") || "over its threshold"}); retry in ${this.#retryAfterMs} ms`,
      { limit: Math.round(limit), exceeded: [...exceeded], retryAfterMs: this.#retryAfterMs },
    );
  }

  #emitPressure(event: MemoryPressureEvent): void {
    for (const listener of [...this.#onPressure]) {
      try {
        listener(event);
      } catch {
        // A listener's failure must not stop the monitor or the other listeners.
      }
    }
  }
}
