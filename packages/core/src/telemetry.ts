/**
 * Telemetry on `node:diagnostics_channel`. Every channel is named `beamclaw:<subject>.<event>`;
 * subscribe with `diagnostics_channel.subscribe(name, fn)` or {@link subscribeTelemetry}.
 * Nothing is published (and no payload is built) while a channel has no subscribers, so an
 * unobserved runtime pays nothing.
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
 */
export function subscribeTelemetry<C extends TelemetryChannel>(
  name: C,
  listener: (event: TelemetryEvents[C]) => void,
): () => void {
  const fn = (message: unknown) => listener(message as TelemetryEvents[C]);
  diagnosticsChannel.subscribe(name, fn);
  return () => {
    diagnosticsChannel.unsubscribe(name, fn);
  };
}
