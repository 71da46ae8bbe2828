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
