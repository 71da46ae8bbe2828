/**
 * Telemetry on `node:diagnostics_channel`. Every channel is named `beamclaw:<subject>.<event>`;
 * subscribe with `diagnostics_channel.subscribe(name, fn)` or {@link subscribeTelemetry}.
 * Nothing is published (and no payload is built) while a channel has no subscribers, so an
 * unobserved runtime pays nothing.
 *
 * Operations with a duration — provider calls, tool runs, session runs, cron runs, approval
 * waits — are also traced on `TracingChannel`s of the same names (see
 * {@link subscribeTrace}); the plain channels below report them once more when they end.
 *
 * @example
 * ```ts
 * import { subscribeTelemetry } from "@beamclaw/core";
 * const off = subscribeTelemetry("beamclaw:supervisor.restart", (e) =>
 *   console.log(`${e.supervisor} restarted ${e.childId}: ${e.reason}`),
 * );
 * // later
 * off();
 * ```
 */
import diagnosticsChannel from "node:diagnostics_channel";
import type { CircuitState } from "./providers/circuit-breaker.js";
import type { ModelUsage } from "./providers/types.js";
import { callSubscriber } from "./telemetry/tracing.js";

export {
  currentTelemetryIdentity,
  setTelemetryTenant,
  type TelemetryIdentity,
  telemetryTenantOf,
} from "./telemetry/identity.js";
export {
  type ApprovalWaitTrace,
  beginTelemetryTrace,
  type CronRunTrace,
  type ProviderCallTrace,
  parseTraceparent,
  parseTracestate,
  type SessionRunTrace,
  subscribeTrace,
  type TelemetryTrace,
  type ToolRunTrace,
  type TraceContexts,
  type TracedOperation,
  type TraceHandlers,
  type Traceparent,
  type TraceSettlement,
  type TraceStart,
  telemetryTracingChannel,
  traceTelemetry,
} from "./telemetry/tracing.js";

/** An actor's identity as it appears in telemetry events. */
export interface ActorTelemetryIdentity {
  /** The actor's process id, unique within this process. */
  actorId: number;
  /** The actor's display name (its class name unless given one). */
  actor: string;
}

/** Payloads of every telemetry channel, by channel name. */
export interface TelemetryEvents {
  /** An actor finished `init` and is running. */
  "beamclaw:actor.start": ActorTelemetryIdentity;
  /** An actor stopped, for any reason. `reason` is `normal`, `shutdown`, `killed` or an error. */
  "beamclaw:actor.stop": ActorTelemetryIdentity & { reason: unknown };
  /** A callback threw (or `init` failed): the actor crashes with `error` as its exit reason. */
  "beamclaw:actor.crash": ActorTelemetryIdentity & { error: unknown; phase: string };
  /** A message was refused because the actor's mailbox was full. */
  "beamclaw:actor.overload": ActorTelemetryIdentity & {
    limit: number;
    kind: "call" | "cast" | "info";
  };
  /** A supervisor restarted a child after it exited. */
  "beamclaw:supervisor.restart": {
    supervisor: string;
    childId: string;
    reason: unknown;
    strategy: string;
    /** Milliseconds from the exit being observed to the replacement running. */
    latencyMs: number;
  };
  /** A supervisor exceeded its restart intensity and is shutting down. */
  "beamclaw:supervisor.max-intensity": {
    supervisor: string;
    maxRestarts: number;
    periodMs: number;
    reason: unknown;
  };
  /** A supervisor had to force-stop a child that did not stop within its `shutdownMs`. */
  "beamclaw:supervisor.child-killed": { supervisor: string; childId: string; shutdownMs: number };
  /** A pub/sub subscriber threw; the other subscribers still received the message. */
  "beamclaw:pubsub.handler-error": { topic: string; error: unknown };
  /**
   * A `ProviderChain` finished one call to a `provider/model` ref (not sent for refs skipped
   * by an open circuit). `outcome` is `aborted` when the signal fired or the caller stopped
   * reading; `usage` is the last one the provider reported.
   */
  "beamclaw:provider.call": {
    ref: string;
    provider: string;
    model: string;
    attempt: number;
    durationMs: number;
    outcome: "success" | "error" | "aborted";
    usage?: ModelUsage;
    error?: unknown;
    tenant?: string;
    agent?: string;
    session?: string;
  };
  /** A `provider/model` ref's circuit breaker changed state. */
  "beamclaw:provider.circuit": { ref: string; from: CircuitState; to: CircuitState };
  /** A tool call finished (after retries), successfully or not. */
  "beamclaw:tool.run": {
    tool: string;
    session: string;
    agent: string;
    runId: string;
    durationMs: number;
    outcome: "success" | "error" | "aborted" | "denied";
    attempts: number;
    tenant?: string;
  };
  /** A user message was accepted by a session (written to the durable queue). */
  "beamclaw:session.message": {
    session: string;
    agent: string;
    runId: string;
    disposition: string;
    tenant?: string;
  };
  /**
   * A pending message was quarantined instead of run again (a poison message: its session
   * crashed `quarantineAfterCrashes` times while running it, or its payload cannot be run).
   */
  "beamclaw:session.quarantine": {
    session: string;
    agent: string;
    runId: string;
    messageId: string;
    crashes: number;
    reason: string;
    tenant?: string;
  };
  /**
   * Older messages were left out of a model request to fit the context window: the agent's
   * `contextTokens` or what the session learned from a refusal (`budget`), or after the
   * provider refused the request as too long (`overflow`). Token counts are estimates.
   */
  "beamclaw:session.context": {
    session: string;
    agent: string;
    runId: string;
    reason: "budget" | "overflow";
    maxTokens: number;
    estimatedTokens: number;
    droppedMessages: number;
    sentMessages: number;
    tenant?: string;
  };
  /**
   * A compaction ended (see `SessionHandle.compact`): asked for (`manual`) or started by the
   * agent's `autoCompact` (`auto`); `compacted`, `skipped` or `failed` (with `error`).
   */
  "beamclaw:session.compaction": {
    session: string;
    agent: string;
    trigger: "manual" | "auto";
    status: "compacted" | "skipped" | "failed";
    summarizedMessages: number;
    keptMessages: number;
    durationMs: number;
    error?: { code: string; message: string };
    tenant?: string;
  };
  /** A run ended. */
  "beamclaw:session.run": {
    session: string;
    agent: string;
    runId: string;
    status: string;
    steps: number;
    durationMs: number;
    inputTokens: number;
    outputTokens: number;
    costUsd: number;
    tenant?: string;
  };
  /** An approval was requested, and later decided (by a person, a remembered rule or the timeout). */
  "beamclaw:approval.request": {
    session: string;
    runId: string;
    tool: string;
    key: string;
    requestId: string;
    tenant?: string;
    agent?: string;
  };
  /**
   * The approval store failed: `list` (a remembered `allow-always` could not be read, so the
   * person was asked) or `put` (an `allow-always` answer could not be remembered; the call it
   * answered still ran). The run goes on either way.
   */
  "beamclaw:approval.store-error": {
    session: string;
    runId: string;
    tool: string;
    key: string;
    operation: "list" | "put";
    error: unknown;
    tenant?: string;
    agent?: string;
  };
  "beamclaw:approval.decision": {
    session: string;
    runId: string;
    tool: string;
    key: string;
    decision: "allow-once" | "allow-always" | "deny";
    source: "answer" | "remembered" | "timeout" | "off";
    waitedMs: number;
    tenant?: string;
    agent?: string;
  };
  /** A channel plugin started (connected), the first time or after a reconnect. */
  "beamclaw:channel.connect": { channel: string; attempt: number };
  /** A channel lost its connection or failed to start; it reconnects after `retryInMs`. */
  "beamclaw:channel.disconnect": { channel: string; error: unknown; retryInMs: number | undefined };
  /** A channel handed in a message; `status` is what became of it (`accepted`, `duplicate`, ...). */
  "beamclaw:channel.inbound": {
    channel: string;
    accountId: string;
    chatType: "direct" | "group";
    status: string;
    sessionKey?: string;
  };
  /**
   * The outbox tried to deliver one part of an outbound message: `sent`, `retry` (it will try
   * again after `retryInMs`) or `dropped` (set aside after a permanent failure or too many tries).
   */
  "beamclaw:channel.outbound": {
    channel: string;
    outboxId: string;
    outcome: "sent" | "retry" | "dropped";
    attempts: number;
    retryInMs?: number;
    error?: unknown;
  };
  /**
   * A cron job's run ended (`ok`, `error`, `interrupted`), or a missed occurrence was recorded
   * (`missed`). `latenessMs` is how long after `scheduledAt` the run started.
   */
  "beamclaw:cron.run": {
    agentId: string;
    jobId: string;
    runId: string;
    trigger: "schedule" | "manual" | "catch-up";
    status: "ok" | "error" | "missed" | "interrupted";
    scheduledAt: number;
    startedAt: number;
    durationMs: number;
    latenessMs: number;
    error?: string;
    tenant?: string;
    /** The session the run used (`agent:<id>:main` or an isolated `cron:<job>.<time>`). */
    session?: string;
  };
  /** This node saw another node join, change (`update`), leave or go `down`. */
  "beamclaw:cluster.membership": {
    nodeId: string;
    type: "join" | "update" | "leave" | "down";
    member: string;
  };
  /**
   * This node took (`acquired`), gave back (`released`) or lost (`lost`: it could not renew
   * in time, so it stopped the session) a session's lease. `token` is the fencing token.
   */
  "beamclaw:cluster.lease": {
    nodeId: string;
    sessionKey: string;
    event: "acquired" | "released" | "lost";
    token: number;
  };
  /** This node revived a session whose owner died or left, replaying its queued messages. */
  "beamclaw:cluster.failover": { nodeId: string; sessionKey: string; pending: number };
}

/** A telemetry channel name. */
export type TelemetryChannel = keyof TelemetryEvents;

const channels = new Map<string, diagnosticsChannel.Channel>();

/** The `diagnostics_channel` object for a BeamClaw telemetry channel. */
export function telemetryChannel(name: TelemetryChannel): diagnosticsChannel.Channel {
  let channel = channels.get(name);
  if (channel === undefined) {
    channel = diagnosticsChannel.channel(name);
    channels.set(name, channel);
  }
  return channel;
}

/** Publishes an event; the payload is built only when someone listens. */
export function emitTelemetry<C extends TelemetryChannel>(
  name: C,
  payload: () => TelemetryEvents[C],
): void {
  const channel = telemetryChannel(name);
  if (channel.hasSubscribers) channel.publish(payload());
}

/**
 * Subscribes to one telemetry channel with a typed payload. Returns the unsubscribe function.
 * A listener that throws is reported (its first throw) as a `BeamClawWarning` process warning; the code that
 * published the event and the process go on (a listener subscribed with
 * `diagnostics_channel.subscribe` directly keeps Node's behaviour: its throw is rethrown as an
 * uncaught exception).
 *
 * @example
 * ```ts
 * const off = subscribeTelemetry("beamclaw:provider.call", (event) => {
 *   console.log(event.ref, event.outcome, `${event.durationMs} ms`);
 * });
 * // later
 * off();
 * ```
 */
export function subscribeTelemetry<C extends TelemetryChannel>(
  name: C,
  listener: (event: TelemetryEvents[C]) => void,
): () => void {
  const fn = (message: unknown) => callSubscriber(name, listener, message as TelemetryEvents[C]);
  diagnosticsChannel.subscribe(name, fn);
  return () => {
    diagnosticsChannel.unsubscribe(name, fn);
  };
}
