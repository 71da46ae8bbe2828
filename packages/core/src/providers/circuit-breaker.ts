/**
 * One circuit per `provider/model`, so that a ref that keeps failing is skipped (failing
 * fast) instead of being called, and is probed again after a pause. State changes happen
 * lazily, when a call asks, so an idle breaker holds no timer.
 */
import { CircuitOpenError } from "../errors.js";

/** Options of the circuit breakers of a provider chain. */
export interface CircuitBreakerOptions {
  /** Failures within `windowMs` that open the circuit. Default 5. */
  failureThreshold?: number;
  /** The sliding window failures are counted in, in ms. Default 60 000. */
  windowMs?: number;
  /** How long an open circuit stays open before one trial call, in ms. Default 30 000. */
  openMs?: number;
}

/**
 * `closed`: calls go through, failures are counted. `open`: calls are refused with
 * `CircuitOpenError`. `half-open`: one trial call goes through; its outcome closes or re-opens
 * the circuit.
 */
export type CircuitState = "closed" | "open" | "half-open";

/** Permission to make one call through a circuit. */
export interface CircuitPermit {
  /** True for the single trial call of a half-open circuit. */
  readonly trial: boolean;
}

interface Circuit {
  state: CircuitState;
  /** Times of recent failures, oldest first (only while closed). */
  failures: number[];
  openedAt: number;
  trialInFlight: boolean;
}

/** The permit of a closed circuit (shared: it carries no state). */
const CLOSED_PERMIT: CircuitPermit = Object.freeze({ trial: false });

/**
 * How many circuits a breaker keeps, besides its open and half-open ones, before it forgets
 * some (see {@link CircuitBreaker}).
 */
export const CIRCUIT_LIMIT = 1_024;

/**
 * The circuits of one chain, by ref.
 *
 * Refs are often given per call (a session's model override), so a long-lived chain may see
 * any number of them; the breaker keeps state only for refs that need it, and that state is
 * bounded:
 * - A ref that never failed (or whose failures have all left the window, or whose trial
 *   closed its circuit) holds no entry: a closed circuit without recent failures is the
 *   state of any ref the breaker has never seen.
 * - When more than `limit` circuits are held, the idle ones are forgotten first (closed with
 *   no failure within `windowMs`), then the closed ones whose last failure is oldest (their
 *   count of recent failures starts again from zero), down to `limit / 2`.
 * - An open or half-open circuit is never forgotten: that would let every call through to a
 *   failing provider. So at most `limit` circuits are held besides the open and half-open
 *   ones, which only failures of real calls can make.
 */
export class CircuitBreaker {
  readonly #options: Required<CircuitBreakerOptions>;
  readonly #now: () => number;
  readonly #onTransition: (ref: string, from: CircuitState, to: CircuitState) => void;
  /** By ref, least recently failed first (a failure moves its circuit to the end). */
  readonly #circuits = new Map<string, Circuit>();
  readonly #limit: number;
  /** The number of circuits at which the next new one first makes room. */
  #sweepAt: number;

  constructor(
    options: Required<CircuitBreakerOptions>,
    now: () => number,
    onTransition: (ref: string, from: CircuitState, to: CircuitState) => void,
    limit = CIRCUIT_LIMIT,
  ) {
    this.#options = options;
    this.#now = now;
    this.#onTransition = onTransition;
    this.#limit = Math.max(2, limit);
    this.#sweepAt = this.#limit;
  }

  /** How many circuits are held (for tests and diagnostics). */
  get size(): number {
    return this.#circuits.size;
  }

  /** The state of `ref`'s circuit now (an open circuit whose pause is over is half-open). */
  state(ref: string): CircuitState {
    const circuit = this.#circuits.get(ref);
    if (circuit === undefined) return "closed";
    this.#halfOpenIfDue(ref, circuit);
    if (this.#idle(circuit, this.#now())) this.#circuits.delete(ref);
    return circuit.state;
  }

  /** A permit for one call, or the `CircuitOpenError` that refuses it. */
  acquire(ref: string): CircuitPermit | CircuitOpenError {
    const circuit = this.#circuits.get(ref);
    if (circuit === undefined) return CLOSED_PERMIT;
    this.#halfOpenIfDue(ref, circuit);
    if (circuit.state === "closed") return CLOSED_PERMIT;
    if (circuit.state === "half-open" && !circuit.trialInFlight) {
      circuit.trialInFlight = true;
      return { trial: true };
    }
    const remaining =
      circuit.state === "open"
        ? Math.max(0, circuit.openedAt + this.#options.openMs - this.#now())
        : 0;
    return new CircuitOpenError(ref, Math.ceil(remaining));
  }

  /** The call succeeded. A successful trial closes the circuit. */
  succeeded(ref: string, permit: CircuitPermit): void {
    if (!permit.trial) return;
    const circuit = this.#circuits.get(ref);
    if (circuit === undefined) return;
    circuit.trialInFlight = false;
    if (circuit.state === "half-open") {
      circuit.failures = [];
      this.#move(ref, circuit, "closed");
      // Closed with no failure: the state of a ref never seen.
      this.#circuits.delete(ref);
    }
  }

  /** The call failed in a way that speaks to the ref's health. */
  failed(ref: string, permit: CircuitPermit): void {
    const now = this.#now();
    if (permit.trial) {
      const circuit = this.#circuits.get(ref);
      if (circuit === undefined) return;
      circuit.trialInFlight = false;
      if (circuit.state === "half-open") {
        circuit.openedAt = now;
        this.#move(ref, circuit, "open");
      }
      return;
    }
    let circuit = this.#circuits.get(ref);
    if (circuit === undefined) {
      this.#makeRoom(now);
      circuit = { state: "closed", failures: [], openedAt: 0, trialInFlight: false };
    } else {
      // Calls that started before the circuit opened report late; they change nothing.
      if (circuit.state !== "closed") return;
      // The most recently failed last: the first forgotten are those that failed longest ago.
      this.#circuits.delete(ref);
    }
    this.#circuits.set(ref, circuit);
    const failures = circuit.failures;
    // Older failures leave the window before this one is counted: this one always counts,
    // even with a `windowMs` of 0.
    while (failures.length > 0 && (failures[0] as number) <= now - this.#options.windowMs) {
      failures.shift();
    }
    failures.push(now);
    if (failures.length >= this.#options.failureThreshold) {
      circuit.failures = [];
      circuit.openedAt = now;
      this.#move(ref, circuit, "open");
    }
  }

  /** The call ended without a verdict (aborted, a bad request): a trial may be made again. */
  released(ref: string, permit: CircuitPermit): void {
    if (!permit.trial) return;
    const circuit = this.#circuits.get(ref);
    if (circuit !== undefined) circuit.trialInFlight = false;
  }

  /** Closed with no failure left in the window: nothing to remember. */
  #idle(circuit: Circuit, now: number): boolean {
    if (circuit.state !== "closed") return false;
    const failures = circuit.failures;
    return failures.length === 0 || (failures.at(-1) as number) <= now - this.#options.windowMs;
  }

  /**
   * Before a new circuit is held, once `#sweepAt` are: forgets the idle circuits, then the
   * closed ones that failed longest ago, down to half the limit; never an open or half-open
   * one. Sweeps again only after another half limit of new circuits, so that the cost of a
   * sweep is spread over the circuits that made it necessary.
   */
  #makeRoom(now: number): void {
    const circuits = this.#circuits;
    if (circuits.size < this.#sweepAt) return;
    const keep = this.#limit >>> 1;
    for (const [ref, circuit] of circuits) if (this.#idle(circuit, now)) circuits.delete(ref);
    for (const [ref, circuit] of circuits) {
      if (circuits.size <= keep) break;
      if (circuit.state === "closed") circuits.delete(ref);
    }
    this.#sweepAt = circuits.size + (this.#limit - keep);
  }

  #halfOpenIfDue(ref: string, circuit: Circuit): void {
    if (circuit.state === "open" && this.#now() >= circuit.openedAt + this.#options.openMs) {
      circuit.trialInFlight = false;
      this.#move(ref, circuit, "half-open");
    }
  }

  #move(ref: string, circuit: Circuit, to: CircuitState): void {
    const from = circuit.state;
    circuit.state = to;
    this.#onTransition(ref, from, to);
  }
}
