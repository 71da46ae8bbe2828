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

  /** Aborts the signal, now if it exists, or as soon as it is made. Later calls do nothing. */
  abort(reason?: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    if (this.#controller !== undefined) {
      this.#controller.abort(reason);
    } else {
      // What AbortController.abort() would make of no reason: an AbortError DOMException.
      this.#reason = reason ?? new DOMException("This operation was aborted", "AbortError");
    }
  }
}

/**
 * A copy of `options`' own enumerable properties plus a `signal` property (own, enumerable)
 * that calls `read` only when it is read, as `{ ...options, get signal() { ... } }` would
 * make, except for its hidden class.
 *
 * That spread gives each object a hidden class of its own (the getter is a new function
 * every time): an allocation per call, and every place that reads the object's properties
 * (a provider reading its options, a tool reading its context) sees a new shape each call and
 * turns megamorphic. An object literal whose only property is the getter shares one shape
 * across calls, and so do the copies made from it for the same keys. A `signal` in
 * `options` is replaced, as in the spread.
 *
 * @internal
 */
export function withLazySignal<T extends object>(
  options: T,
  read: () => AbortSignal,
): T & { readonly signal: AbortSignal } {
  const copy: Record<PropertyKey, unknown> = {
    get signal(): AbortSignal {
      return read();
    },
  };
  const source = options as Record<PropertyKey, unknown>;
  for (const key in source) {
    if (key === "signal" || !Object.hasOwn(source, key)) continue;
    if (key === "__proto__") {
      // An own "__proto__" (from JSON.parse, say) is a property, as the spread makes it.
      Object.defineProperty(copy, key, {
        value: source[key],
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else {
      copy[key] = source[key];
    }
  }
  for (const symbol of Object.getOwnPropertySymbols(source)) {
    if (Object.prototype.propertyIsEnumerable.call(source, symbol)) copy[symbol] = source[symbol];
  }
  return copy as T & { readonly signal: AbortSignal };
}
