/**
 * The hook between `AgentRuntime` and a cluster: who may run a session, and where a
 * message or request for a session goes. `ClusterNode` implements it; a runtime without it
 * runs every session locally, as before.
 */
import type { ExitReason } from "../runtime/exit.js";
import type { PubSub } from "../runtime/pubsub.js";
import type { CompactOptions } from "../sessions/compaction.js";
import type { RunHandle } from "../sessions/run-handle.js";
import type { SessionPatch } from "../sessions/session-actor.js";
import type { RewindOptions, SessionDeleteOptions } from "../sessions/types.js";
import type { QueuedMessage } from "../store/types.js";

/** A session request that can be answered by the node that owns the session. */
export type RoutedSessionRequest =
  | { type: "abort"; runId: string }
  | { type: "info" }
  | { type: "patch"; patch: SessionPatch }
  | { type: "reset" }
  | { type: "compact"; options?: CompactOptions }
  | { type: "delete"; options?: SessionDeleteOptions }
  | { type: "rewind"; options?: RewindOptions }
  | {
      type: "inject";
      text: string;
      label?: string;
      /**
       * The injection's id (its transcript run id is `inject:<id>`), the same on every
       * attempt: a session asked again for an injection it holds or saved answers with it.
       */
      id?: string;
      /**
       * Set when the request may have been saved already, by an owner that took it and was
       * lost before it answered: the session first looks for the injection among its
       * transcript entries after this `seq` (the last one before the first attempt).
       */
      savedAfter?: number;
      /** The caller's idempotency key (`InjectOptions.idempotencyKey`), if it gave one. */
      idempotencyKey?: string;
    };

/**
 * Session ownership for `AgentRuntime` (its `ownership` option). The runtime consults it:
 *
 * - `claim` before a session actor starts on this node (revival or first start; not before a
 *   supervisor restart after a crash, which keeps the claim). It resolves when this node owns
 *   the session (holds its lease) or rejects (a `ClusterError`) to refuse. `takeover: true`
 *   means the ownership was just acquired, so the session starts in recovery mode: it
 *   replays its unfinished messages from the durable queue, as after a crash.
 * - `released` when a session actor of this node exits, with its reason (`normal` when it
 *   hibernates or is stopped, `shutdown` when the runtime stops, an error when it crashed
 *   and is about to be restarted), and with `normal` when a start that `claim` allowed
 *   failed (nothing runs under the claim).
 * - `routeSend` after a message is written to the durable queue (`duplicate: true` when its
 *   idempotency key was seen before and this runtime does not hold it): a `RunHandle` that
 *   follows its run wherever it happens, or `undefined` to deliver it here.
 * - `routeRequest` before `abort`, `info`, `patch`, `reset`, `compact`, `delete`, `rewind` or
 *   `inject` reach a local session: `{ reply }` when another node answered (or this node did,
 *   for a request it had to change, see `AgentRuntime.answerRequest`), `undefined` to answer
 *   the request as it is here.
 * - `sessionPubSub`, when given: the pub/sub the sessions publish their run events through
 *   instead of the runtime's `pubsub` (a cluster node holds back the events of a session
 *   whose lease it may have lost).
 *
 * @example
 * ```ts
 * // What ClusterNode does, in short:
 * const runtime = new AgentRuntime({ store, models, agents, pubsub: backplane.pubsub, ownership: node });
 * ```
 */
export interface SessionOwnership {
  claim(sessionKey: string): Promise<{ takeover: boolean }>;
  released(sessionKey: string, reason: ExitReason): void;
  routeSend(
    message: QueuedMessage,
    options: { signal?: AbortSignal; duplicate?: boolean },
  ): Promise<RunHandle | undefined>;
  routeRequest(
    sessionKey: string,
    request: RoutedSessionRequest,
  ): Promise<{ reply: unknown } | undefined>;
  /** The pub/sub the sessions publish their run events through; the runtime's by default. */
  readonly sessionPubSub?: PubSub;
}
