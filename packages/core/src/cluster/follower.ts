/**
 * The caller's side of a message that runs on another node: the run's events arrive on the
 * cluster pub/sub topic `session:<key>` (the owner publishes every event there), and this
 * feeds the ones of the message's run into a local `RunEventLog`, so the caller's
 * `RunHandle` streams as if the run were local.
 * @internal
 */

import { RunEventLog } from "../sessions/run-handle.js";
import { OWNER_WENT_MESSAGE } from "../sessions/session-actor.js";
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
  /** The runs whose `run-start` the log has: a second one (a replay elsewhere) is dropped. */
  readonly #startedRuns = new Set<string>();
  /** The last event the log got is the `SESSION_CRASHED` of a crash. */
  #crashLast = false;
  /**
   * The log was told of a crash, and given its `text-reset`, and nothing of the run since: a
   * second telling of it (the node that died, then the one that replays the run) is dropped.
   */
  #crashTold = false;
  /**
   * The node that took the session over said the run moved off the node that went (its
   * `SESSION_CRASHED` with {@link OWNER_WENT_MESSAGE}): a membership notice of that node's
   * death that comes later (`ownerDown`) is old news, and its `text-reset` would withdraw the
   * replay's text already streamed.
   */
  #moved = false;
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

  /**
   * The owner died: like a local crash, the log is told (`SESSION_CRASHED`, then a
   * `text-reset` withdrawing what the run streamed) and stays open for the replay, which is
   * the same run. The node that replays it tells its followers too: told already, this log
   * drops that; told by it first (the run moved on before this node saw the owner go), this
   * does nothing.
   */
  ownerDown(): void {
    if (this.closed || !this.#started || this.#crashTold || this.#moved) return;
    this.#push({
      runId: this.runId,
      sessionKey: this.sessionKey,
      type: "error",
      error: {
        code: "SESSION_CRASHED",
        message: "the node running this session died; the message will run again",
      },
    });
    this.#push({
      runId: this.runId,
      sessionKey: this.sessionKey,
      type: "text-reset",
      reason: "the node running this session died and the run runs again",
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
    const crash = event.type === "error" && event.error.code === "SESSION_CRASHED";
    if (crash && event.error.message === OWNER_WENT_MESSAGE) this.#moved = true;
    if (event.type === "run-start") {
      // The same run started again (replayed on another node): its followers saw it start.
      if (this.#startedRuns.has(event.runId)) return;
      this.#startedRuns.add(event.runId);
      this.#started = true;
    } else if (this.#crashTold && (crash || event.type === "text-reset")) return;
    this.#crashTold = this.#crashLast && event.type === "text-reset";
    this.#crashLast = crash;
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
