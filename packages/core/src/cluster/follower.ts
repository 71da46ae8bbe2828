/**
 * The caller's side of a message that runs on another node: the run's events arrive on the
 * cluster pub/sub topic `session:<key>` (the owner publishes every event there), and this
 * feeds the ones of the message's run into a local `RunEventLog`, so the caller's
 * `RunHandle` streams as if the run were local.
 * @internal
 */

import { RunEventLog } from "../sessions/run-handle.js";
import type { RunEvent, RunResult } from "../sessions/types.js";
import type { ClusterPubSub, LocalSubscription } from "./types.js";

/** Events of other runs kept until the owner says which run the message joined. */
const MAX_BUFFERED = 2_000;

export class RunFollower {
  readonly log = new RunEventLog();
  readonly sessionKey: string;
  readonly queueId: string;
  /** The run the message was enqueued with; a replay after a failover runs it under this id. */
  readonly payloadRunId: string;
  /** The node the message was handed to, while known. */
  target: string | undefined;
  /** The run the owner said the message joined (steered or collected into another run). */
  runId: string;
  /**
   * Sweep rounds (whole reads of the queue) that found the message acknowledged while this
   * log was still open.
   */
  staleSweeps = 0;
  readonly #runIds = new Set<string>();
  #buffer: RunEvent[] | null = [];
  #started = false;
  #subscription: LocalSubscription | undefined;
  readonly #onClose: (follower: RunFollower) => void;

  /**
   * `wide: false` listens to this node's publishes only (the run is expected here), until
   * {@link RunFollower.widen}.
   */
  constructor(
    pubsub: ClusterPubSub,
    sessionKey: string,
    queueId: string,
    payloadRunId: string,
    wide: boolean,
    onClose: (follower: RunFollower) => void,
  ) {
    this.sessionKey = sessionKey;
    this.queueId = queueId;
    this.payloadRunId = payloadRunId;
    this.runId = payloadRunId;
    this.#runIds.add(payloadRunId);
    this.#onClose = onClose;
    this.#subscription = pubsub.subscribeLocal<RunEvent>(`session:${sessionKey}`, (event) =>
      this.#onEvent(event),
    );
    if (wide) this.#subscription.widen();
  }

  /** The run may continue on another node: listen cluster-wide from now on. */
  widen(): void {
    this.#subscription?.widen();
  }

  get closed(): boolean {
    return this.log.closed;
  }

  /** The owner took the message into run `runId`. */
  accept(runId: string): void {
    this.runId = runId;
    this.#follow(runId);
  }

  /** Follows the message's own run id only (it was not confirmed by an owner). */
  followOwnRun(): void {
    this.#follow(this.payloadRunId);
  }

  /** The owner died: like a local crash, the log is told and stays open for the replay. */
  ownerDown(): void {
    if (this.closed || !this.#started) return;
    this.log.push({
      runId: this.runId,
      sessionKey: this.sessionKey,
      type: "error",
      error: {
        code: "SESSION_CRASHED",
        message: "the node running this session died; the message will run again",
      },
    });
  }

  /** Ends the log with a result rebuilt after the fact (its events were not delivered). */
  finish(result: RunResult): void {
    if (this.closed) return;
    this.log.push({ runId: result.runId, sessionKey: this.sessionKey, type: "run-end", result });
    this.#close();
  }

  /** Ends the log without a result. */
  fail(error: unknown): void {
    if (this.closed) return;
    this.log.fail(error);
    this.#close();
  }

  #follow(runId: string): void {
    this.#runIds.add(runId);
    const buffered = this.#buffer;
    this.#buffer = null;
    for (const event of buffered ?? []) this.#push(event);
  }

  #onEvent(event: RunEvent): void {
    if (this.closed || typeof event !== "object" || event === null) return;
    if (this.#runIds.has(event.runId)) {
      this.#push(event);
      return;
    }
    const buffer = this.#buffer;
    if (buffer !== null && buffer.length < MAX_BUFFERED) buffer.push(event);
  }

  #push(event: RunEvent): void {
    if (this.closed || !this.#runIds.has(event.runId)) return;
    if (event.type === "run-start") this.#started = true;
    this.log.push(event);
    if (this.log.closed) this.#close();
  }

  #close(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    this.#buffer = null;
    this.#onClose(this);
  }
}
