import { keepShape } from "./shapes.js";

/**
 * An `AbortController` whose signal is only made when something asks for it.
 *
 * Node's `AbortSignal` is an `EventTarget` and costs about a kilobyte; a run whose code never
 * reads its signal (a quick cron job, say) should not pay for one. `abort()` before the
 * signal exists is remembered: the signal, when made, is already aborted with that reason.
 *
 * @internal
 */
export class LazyAbortController {
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  /** The signal, made on first use. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** Whether `abort()` was called (without making the signal). */
  get aborted(): boolean {
    return this.#aborted;
  }

  /**
   * The reason given to `abort()` (an `AbortError` `DOMException` when none was given), as the
   * signal's `reason` would be; `undefined` before `abort()`. Does not make the signal.
   */
  get reason(): unknown {
    return this.#reason;
  }

  /** Aborts the signal, now if it exists, or as soon as it is made. Later calls do nothing. */
  abort(reason?: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    // What AbortController.abort() would make of no reason: an AbortError DOMException.
    this.#reason = reason ?? new DOMException("This operation was aborted", "AbortError");
    this.#controller?.abort(this.#reason);
  }
}

/**
 * Where a {@link Cancellation} travels with an options object or a context whose `signal` it
 * makes lazily (see {@link cancellationOf}). Not copied by {@link withLazySignal}.
 * @internal
 */
export const CANCELLATION: unique symbol = Symbol("beamclaw.cancellation");

/**
 * A {@link LazyAbortController} that the library's own code can watch without making its
 * signal: `aborted`, `reason` and {@link Cancellation.onAbort}, a plain list of callbacks
 * rather than an `EventTarget` listener (adding and removing one costs about a microsecond
 * each, and the signal itself about two and a kilobyte on Node 20). Code outside the library
 * (a provider, a tool, a `ModelSource`) still gets a real `AbortSignal` when it reads one.
 *
 * Callbacks run synchronously inside `abort()`, in the order they were added, after the
 * signal (if made) has fired its own listeners.
 * @internal
 */
export class Cancellation extends LazyAbortController {
  #callbacks: Array<(() => void) | undefined> | undefined;

  /**
   * Calls `callback` once when this aborts; returns a function that removes it. Does nothing
   * (and returns a no-op) when already aborted: check {@link aborted} first.
   */
  onAbort(callback: () => void): () => void {
    if (this.aborted) return noop;
    if (this.#callbacks === undefined) this.#callbacks = [];
    const callbacks = this.#callbacks;
    const index = callbacks.push(callback) - 1;
    return () => {
      if (callbacks[index] === callback) callbacks[index] = undefined;
    };
  }

  override abort(reason?: unknown): void {
    if (this.aborted) return;
    super.abort(reason);
    const callbacks = this.#callbacks;
    this.#callbacks = undefined;
    if (callbacks === undefined) return;
    for (const callback of callbacks) callback?.();
  }
}

function noop(): void {}

/**
 * The {@link Cancellation} that made `holder`'s `signal`, if it carries one: then its
 * `aborted`, `reason` and `onAbort` can be read without making the signal. @internal
 */
export function cancellationOf(holder: object | undefined): Cancellation | undefined {
  return (holder as { [CANCELLATION]?: Cancellation } | undefined)?.[CANCELLATION];
}

/** Whether `holder.signal` is aborted, without making it when a {@link Cancellation} owns it. @internal */
export function isAbortedHolder(holder: { readonly signal?: AbortSignal | undefined }): boolean {
  const cancellation = cancellationOf(holder);
  return cancellation === undefined ? holder.signal?.aborted === true : cancellation.aborted;
}

/** `holder.signal.reason`, without making the signal when a {@link Cancellation} owns it. @internal */
export function abortReasonOf(holder: { readonly signal?: AbortSignal | undefined }): unknown {
  const cancellation = cancellationOf(holder);
  return cancellation === undefined ? holder.signal?.reason : cancellation.reason;
}

/** Returns the object it is given: lets a subclass put its private fields on any object. */
class Stamped {
  constructor(target: object) {
    // biome-ignore lint/correctness/noConstructorReturn: the point of this class
    return target;
  }
}

/**
 * Puts a private slot on a plain object: the reader of its lazy `signal`. A private field
 * stays out of `for...in`, `Object.keys`, spreads and `Object.getOwnPropertySymbols`, and
 * keeps the object's prototype and fast properties.
 */
class SignalReader extends Stamped {
  readonly #from: SignalSource;

  constructor(target: object, from: SignalSource) {
    super(target);
    this.#from = from;
  }

  static read(holder: object): AbortSignal {
    return (holder as SignalReader).#from.signal;
  }
}

/** Whatever makes the signal when its `signal` is read: a controller, a task's context. */
export interface SignalSource {
  readonly signal: AbortSignal;
}

/** One accessor for every lazy `signal`: objects that share it keep one hidden class. */
const LAZY_SIGNAL: PropertyDescriptor = Object.freeze({
  get(this: object): AbortSignal {
    return SignalReader.read(this);
  },
  enumerable: true,
  configurable: true,
});

/**
 * Gives `target` (a fresh plain object, not yet given one) an own enumerable `signal`
 * property that reads `from.signal` only when it is read, so that a spread of it carries the signal
 * along, and returns it.
 *
 * Not an object literal with a getter (`{ get signal() { ... }, ... }`): V8 keeps every such
 * object in dictionary mode (slow properties, a hash table each), which costs about three
 * times as much to make, and more to read and to collect, than this: one shared accessor on a
 * fast-mode object whose hidden class is the same for the same keys.
 *
 * @internal
 */
export function defineLazySignal<T extends object>(
  target: T,
  from: SignalSource,
): T & { readonly signal: AbortSignal } {
  new SignalReader(target, from);
  Object.defineProperty(target, "signal", LAZY_SIGNAL);
  return target as T & { readonly signal: AbortSignal };
}

/**
 * A copy of `options`' own enumerable properties plus a `signal` property (own, enumerable)
 * that reads `from.signal` only when it is read, as `{ ...options, get signal() { ... } }` would
 * make, except for its hidden class (see {@link defineLazySignal}): that spread gives each
 * object a hidden class of its own (the getter is a new function every time), and every place
 * that reads the object's properties (a provider reading its options, a tool reading its
 * context) would see a new shape each call and turn megamorphic. A `signal` in `options` is
 * replaced, as in the spread. `skip` lists the keys not copied (it must include `"signal"`).
 *
 * @internal
 */
export function withLazySignal<T extends object>(
  options: T,
  from: SignalSource,
  skip: readonly string[] = SIGNAL_KEY,
): T & { readonly signal: AbortSignal } {
  const copy: Record<PropertyKey, unknown> = defineLazySignal({}, from);
  // A `signal` in `options` is replaced; the cancellation behind `options`' signal is not the
  // copy's, whose signal is `from`'s.
  copyOptions(copy, options, skip);
  return copy as T & { readonly signal: AbortSignal };
}

const SIGNAL_KEY: readonly string[] = ["signal"];

/**
 * Copies `source`'s own enumerable properties, symbols included, onto `target`, as a spread
 * would, but for the keys in `skip` and {@link CANCELLATION}, and without calling a getter
 * of a skipped key. An own `"__proto__"` (from `JSON.parse`, say) stays a property.
 * @internal
 */
export function copyOptions(
  target: Record<PropertyKey, unknown>,
  source: object,
  skip: readonly string[],
): void {
  const from = source as Record<PropertyKey, unknown>;
  for (const key in from) {
    if (skip.includes(key) || !Object.hasOwn(from, key)) continue;
    if (key === "__proto__") {
      Object.defineProperty(target, key, {
        value: from[key],
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else {
      target[key] = from[key];
    }
  }
  for (const symbol of Object.getOwnPropertySymbols(from)) {
    if (symbol === CANCELLATION) continue;
    if (Object.prototype.propertyIsEnumerable.call(from, symbol)) target[symbol] = from[symbol];
  }
}

// Inert instances that keep these per-run classes' hidden classes alive (see keepShape).
keepShape(LazyAbortController, new LazyAbortController());
keepShape(Cancellation, new Cancellation());
// An empty object given a lazy signal: a task's context (TaskSupervisor), and a provider call's
// options as the chain makes them from the agent loop's, whose own keys it does not copy.
keepShape(defineLazySignal, defineLazySignal({}, new LazyAbortController()));
