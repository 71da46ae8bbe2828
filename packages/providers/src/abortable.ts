/**
 * Makes an abort take effect at once: events already parsed from the last chunk are not
 * delivered after the signal fired; the next step throws `AbortedError` instead, and the
 * source is closed (which cancels the response body).
 */
import type { ModelStreamEvent } from "@beamclaw/core";
import { abortedError, type CallContext } from "./errors.js";

type Source = AsyncGenerator<ModelStreamEvent, void, undefined>;
type Step = IteratorResult<ModelStreamEvent, void>;

const END: IteratorReturnResult<void> = Object.freeze({ done: true, value: undefined });

/**
 * `source`, with the abort check: without a signal the source itself (nothing to check); with
 * one, an iterator that hands each of the source's results over unless the signal has fired.
 * Not an async generator: a generator around the source would cost a generator step, and
 * several promises, per event.
 */
export function abortable(
  source: Source,
  signal: AbortSignal | undefined,
  context: CallContext,
): AsyncIterableIterator<ModelStreamEvent> {
  if (signal === undefined) return source;
  return new AbortableStream(source, signal, context);
}

class AbortableStream implements AsyncIterableIterator<ModelStreamEvent> {
  readonly #source: Source;
  readonly #signal: AbortSignal;
  readonly #context: CallContext;
  /** Set once the source has ended, failed or been closed: later steps report the end. */
  #finished = false;

  constructor(source: Source, signal: AbortSignal, context: CallContext) {
    this.#source = source;
    this.#signal = signal;
    this.#context = context;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<Step> {
    if (this.#finished) return Promise.resolve(END);
    if (this.#signal.aborted) return this.#abort();
    return this.#source.next().then(this.#onStep, this.#onError);
  }

  /** Closes the source (its `finally` blocks cancel the body), as a `break` would. */
  return(): Promise<Step> {
    if (this.#finished) return Promise.resolve(END);
    this.#finished = true;
    return this.#source.return(undefined).then(() => END);
  }

  readonly #onStep = (step: Step): Step | Promise<Step> => {
    if (step.done === true) {
      this.#finished = true;
      return step;
    }
    // The event arrived, but the caller has aborted meanwhile: it is not delivered.
    if (this.#signal.aborted) return this.#abort();
    return step;
  };

  readonly #onError = (error: unknown): never => {
    this.#finished = true;
    throw error;
  };

  /** Fails with `AbortedError` once the source is closed. */
  #abort(): Promise<never> {
    this.#finished = true;
    const error = abortedError(this.#context, this.#signal);
    const fail = (): never => {
      throw error;
    };
    return this.#source.return(undefined).then(fail, fail);
  }
}
