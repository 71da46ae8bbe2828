/**
 * A channel's stops, one after another: a `stop()` made while another is still closing
 * resolves only once that one is done too, and one made when nothing is left to close
 * resolves with the stop under way, if any (at once otherwise).
 */
export class Stops {
  #current: Promise<void> | undefined;

  /** The stop under way, or `undefined`: what a `stop()` with nothing to close waits for. */
  get pending(): Promise<void> | undefined {
    return this.#current;
  }

  /**
   * Runs `shutDown` (closing what this stop took over) and then waits for the stop that was
   * under way when it began. Rejects as `shutDown` does.
   */
  run(shutDown: () => Promise<void>): Promise<void> {
    const previous = this.#current;
    const stopping = (async () => {
      await shutDown();
      await previous;
    })();
    this.#current = stopping;
    const done = () => {
      if (this.#current === stopping) this.#current = undefined;
    };
    stopping.then(done, done);
    return stopping;
  }
}
