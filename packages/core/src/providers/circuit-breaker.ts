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

/** The circuits of one chain, by ref. */
export class CircuitBreaker {
  readonly #options: Required<CircuitBreakerOptions>;
  readonly #now: () => number;
  readonly #onTransition: (ref: string, from: CircuitState, to: CircuitState) => void;
  readonly #circuits = new Map<string, Circuit>();

  constructor(
    options: Required<CircuitBreakerOptions>,
    now: () => number,
    onTransition: (ref: string, from: CircuitState, to: CircuitState) => void,
  ) {
    this.#options = options;
    this.#now = now;
    this.#onTransition = onTransition;
  }

  /** The state of `ref`'s circuit now (an open circuit whose pause is over is half-open). */
  state(ref: string): CircuitState {
    const circuit = this.#circuits.get(ref);
    if (circuit === undefined) return "closed";
    this.#halfOpenIfDue(ref, circuit);
    return circuit.state;
  }

  /** A permit for one call, or the `CircuitOpenError` that refuses it. */
  acquire(ref: string): CircuitPermit | CircuitOpenError {
    const circuit = this.#circuit(ref);
    this.#halfOpenIfDue(ref, circuit);
    if (circuit.state === "closed") return { trial: false };
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
    const circuit = this.#circuit(ref);
    if (!permit.trial) return;
    circuit.trialInFlight = false;
    if (circuit.state === "half-open") {
      circuit.failures = [];
      this.#move(ref, circuit, "closed");
    }
  }

  /** The call failed in a way that speaks to the ref's health. */
  failed(ref: string, permit: CircuitPermit): void {
    const circuit = this.#circuit(ref);
    const now = this.#now();
    if (permit.trial) {
      circuit.trialInFlight = false;
      if (circuit.state === "half-open") {
        circuit.openedAt = now;
        this.#move(ref, circuit, "open");
      }
      return;
    }
    // Calls that started before the circuit opened report late; they change nothing.
    if (circuit.state !== "closed") return;
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
    if (permit.trial) this.#circuit(ref).trialInFlight = false;
  }

  #circuit(ref: string): Circuit {
    let circuit = this.#circuits.get(ref);
    if (circuit === undefined) {
      circuit = { state: "closed", failures: [], openedAt: 0, trialInFlight: false };
      this.#circuits.set(ref, circuit);
    }
    return circuit;
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
