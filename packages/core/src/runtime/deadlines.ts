/**
 * Call deadlines without a timer per call.
 *
 * A `setTimeout` per `call` costs several times more than the call itself, so pending
 * deadlines are grouped in buckets by their timeout length. Within a bucket, entries expire
 * in insertion order, so a bucket is a doubly linked FIFO list (O(1) insert and O(1) removal
 * when a call settles) driven by one interval timer that ticks `K` times per timeout length.
 * An entry inserted at generation `g` expires at the first tick where the generation reaches
 * `g + K + 1`: never early, at most one tick (`timeoutMs / K`) late. No clock is read on the
 * hot path.
 *
 * The interval keeps the process alive only while a bucket has pending entries (it is
 * `unref()`ed when the bucket empties), and it is cleared when a bucket stays empty for a
 * full timeout length, so an idle runtime holds no timers at all.
 */

import { MAX_TIMER_DELAY_MS } from "./timers.js";

/** Ticks per timeout length; the worst-case lateness is `timeoutMs / TICKS_PER_TIMEOUT`. */
const TICKS_PER_TIMEOUT = 8;

/** Something that can expire; the actor runtime's call envelopes implement this. */
export interface DeadlineEntry {
  /** Called at most once, when the deadline passes before {@link cancelDeadline}. */
  expire(): void;
  /** @internal bucket links and state; managed by this module only */
  dlBucket: Bucket | null;
  dlPrev: DeadlineEntry | null;
  dlNext: DeadlineEntry | null;
  dlGeneration: number;
}

class Bucket {
  head: DeadlineEntry | null = null;
  tail: DeadlineEntry | null = null;
  size = 0;
  generation = 0;
  emptyTicks = 0;
  readonly timer: NodeJS.Timeout;
  referenced = true;
  /** Ticks from insertion to expiry: 8, or more when the period is capped at the timer limit. */
  readonly ticks: number;

  constructor(
    readonly timeoutMs: number,
    private readonly owner: Map<number, Bucket>,
  ) {
    const period = Math.min(
      MAX_TIMER_DELAY_MS,
      Math.max(1, Math.ceil(timeoutMs / TICKS_PER_TIMEOUT)),
    );
    // ticks * period >= timeoutMs, so an entry never expires early.
    this.ticks = Math.ceil(timeoutMs / period);
    this.timer = setInterval(() => this.tick(), period);
  }

  add(entry: DeadlineEntry): void {
    entry.dlBucket = this;
    entry.dlGeneration = this.generation;
    entry.dlNext = null;
    entry.dlPrev = this.tail;
    if (this.tail === null) this.head = entry;
    else this.tail.dlNext = entry;
    this.tail = entry;
    if (this.size++ === 0 && !this.referenced) {
      this.referenced = true;
      this.timer.ref();
    }
  }

  remove(entry: DeadlineEntry): void {
    const { dlPrev: prev, dlNext: next } = entry;
    if (prev === null) this.head = next;
    else prev.dlNext = next;
    if (next === null) this.tail = prev;
    else next.dlPrev = prev;
    entry.dlBucket = null;
    entry.dlPrev = null;
    entry.dlNext = null;
    if (--this.size === 0 && this.referenced) {
      this.referenced = false;
      this.timer.unref();
    }
  }

  private tick(): void {
    this.generation++;
    if (this.size === 0) {
      if (++this.emptyTicks > this.ticks) {
        clearInterval(this.timer);
        this.owner.delete(this.timeoutMs);
        if (lastBucket === this) lastBucket = null;
      }
      return;
    }
    this.emptyTicks = 0;
    const cutoff = this.generation - this.ticks - 1;
    let entry = this.head;
    while (entry !== null && entry.dlGeneration <= cutoff) {
      const next = entry.dlNext;
      this.remove(entry);
      entry.expire();
      entry = next;
    }
  }
}

const buckets = new Map<number, Bucket>();
/** Most calls use one timeout (the default), so the last bucket used is checked first. */
let lastBucket: Bucket | null = null;

/**
 * Arms `entry` to expire after roughly `timeoutMs` (never earlier, at most 1/8 later).
 * `timeoutMs` must be a positive finite number.
 */
export function armDeadline(entry: DeadlineEntry, timeoutMs: number): void {
  let bucket = lastBucket;
  if (bucket === null || bucket.timeoutMs !== timeoutMs) {
    bucket = buckets.get(timeoutMs) ?? null;
    if (bucket === null) {
      bucket = new Bucket(timeoutMs, buckets);
      buckets.set(timeoutMs, bucket);
    }
    lastBucket = bucket;
  }
  bucket.add(entry);
}

/** Disarms `entry` if it is armed; a no-op otherwise. */
export function cancelDeadline(entry: DeadlineEntry): void {
  const bucket = entry.dlBucket;
  if (bucket !== null) bucket.remove(entry);
}

/** Number of armed deadlines across all buckets (for tests and diagnostics). */
export function pendingDeadlines(): number {
  let n = 0;
  for (const bucket of buckets.values()) n += bucket.size;
  return n;
}
