/**
 * `@beamclaw/core/otel`: an optional bridge from BeamClaw's `beamclaw:*` telemetry channels to
 * OpenTelemetry. `@opentelemetry/api` is a peer dependency: install it (and an SDK) to use this
 * entry point; the rest of BeamClaw never loads it.
 *
 * Events with a duration (provider calls, tool runs, session runs, cron runs) become spans that
 * end when the event is published and start `durationMs` earlier; everything countable becomes
 * a metric: tokens, calls, crashes, restarts, approvals, overloads.
 *
 * @example
 * ```ts
 * import { trace, metrics } from "@opentelemetry/api";
 * import { startOtelBridge } from "@beamclaw/core/otel";
 *
 * const bridge = startOtelBridge({ tracer: trace.getTracer("beamclaw"), meter: metrics.getMeter("beamclaw") });
 * // ... run the runtime ...
 * bridge.stop();
 * ```
 *
 * @packageDocumentation
 */
import type { Attributes, Meter, Span, SpanStatusCode, Tracer } from "@opentelemetry/api";
import { subscribeTelemetry, type TelemetryEvents } from "../telemetry.js";

/** Options of {@link startOtelBridge}. */
export interface OtelBridgeOptions {
  /** Spans are created with this tracer. Omit to record no spans. */
  tracer?: Tracer;
  /** Metrics are recorded with this meter. Omit to record no metrics. */
  meter?: Meter;
}

/** A running bridge. */
export interface OtelBridge {
  /** Unsubscribes from every channel. */
  stop(): void;
}

const STATUS_OK = 1 as SpanStatusCode;
const STATUS_ERROR = 2 as SpanStatusCode;

function clean(attributes: Record<string, string | number | boolean | undefined>): Attributes {
  const out: Attributes = {};
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) out[key] = value;
  return out;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Subscribes to BeamClaw's telemetry channels and records spans and metrics. Every attribute
 * carries tenant, agent and session where the event has them.
 *
 * @example
 * ```ts
 * const bridge = startOtelBridge({ tracer: trace.getTracer("beamclaw"), meter: metrics.getMeter("beamclaw") });
 * // ... run the runtime ...
 * bridge.stop();
 * ```
 */
export function startOtelBridge(options: OtelBridgeOptions): OtelBridge {
  const { tracer, meter } = options;
  const offs: Array<() => void> = [];
  const on = <C extends keyof TelemetryEvents>(
    name: C,
    fn: (event: TelemetryEvents[C]) => void,
  ) => {
    offs.push(subscribeTelemetry(name, fn));
  };
  const span = (
    name: string,
    durationMs: number,
    attributes: Attributes,
    failed: string | undefined,
  ) => {
    if (tracer === undefined) return;
    const end = Date.now();
    const started: Span = tracer.startSpan(name, { startTime: end - durationMs, attributes });
    started.setStatus(
      failed === undefined ? { code: STATUS_OK } : { code: STATUS_ERROR, message: failed },
    );
    started.end(end);
  };

  const tokens = meter?.createCounter("beamclaw.provider.tokens", {
    description: "Tokens used by provider calls",
  });
  const providerCalls = meter?.createCounter("beamclaw.provider.calls", {
    description: "Provider calls",
  });
  const providerDuration = meter?.createHistogram("beamclaw.provider.duration", { unit: "ms" });
  const toolRuns = meter?.createCounter("beamclaw.tool.runs", { description: "Tool calls" });
  const toolDuration = meter?.createHistogram("beamclaw.tool.duration", { unit: "ms" });
  const runs = meter?.createCounter("beamclaw.session.runs", { description: "Finished runs" });
  const messages = meter?.createCounter("beamclaw.session.messages", {
    description: "Accepted messages",
  });
  const cost = meter?.createCounter("beamclaw.session.cost", { unit: "USD" });
  const crashes = meter?.createCounter("beamclaw.actor.crashes");
  const overloads = meter?.createCounter("beamclaw.actor.overloads");
  const restarts = meter?.createCounter("beamclaw.supervisor.restarts");
  const approvals = meter?.createCounter("beamclaw.approval.decisions");
  const cronRuns = meter?.createCounter("beamclaw.cron.runs");

  on("beamclaw:provider.call", (e) => {
    const attributes = clean({
      "beamclaw.ref": e.ref,
      "beamclaw.provider": e.provider,
      "beamclaw.model": e.model,
      "beamclaw.attempt": e.attempt,
      "beamclaw.outcome": e.outcome,
      "beamclaw.tenant": e.tenant,
      "beamclaw.agent": e.agent,
      "beamclaw.session": e.session,
    });
    span(
      "beamclaw.provider.call",
      e.durationMs,
      attributes,
      e.outcome === "error" ? message(e.error) : undefined,
    );
    providerCalls?.add(1, attributes);
    providerDuration?.record(e.durationMs, attributes);
    if (e.usage !== undefined) {
      const base = clean({
        "beamclaw.provider": e.provider,
        "beamclaw.model": e.model,
        "beamclaw.tenant": e.tenant,
        "beamclaw.agent": e.agent,
      });
      tokens?.add(e.usage.inputTokens, { ...base, "beamclaw.direction": "input" });
      tokens?.add(e.usage.outputTokens, { ...base, "beamclaw.direction": "output" });
      if (e.usage.cacheReadTokens)
        tokens?.add(e.usage.cacheReadTokens, { ...base, "beamclaw.direction": "cache-read" });
    }
  });
  on("beamclaw:tool.run", (e) => {
    const attributes = clean({
      "beamclaw.tool": e.tool,
      "beamclaw.outcome": e.outcome,
      "beamclaw.attempts": e.attempts,
      "beamclaw.tenant": e.tenant,
      "beamclaw.agent": e.agent,
      "beamclaw.session": e.session,
      "beamclaw.run": e.runId,
    });
    span(
      "beamclaw.tool.run",
      e.durationMs,
      attributes,
      e.outcome === "success" ? undefined : e.outcome,
    );
    toolRuns?.add(1, attributes);
    toolDuration?.record(e.durationMs, attributes);
  });
  on("beamclaw:session.run", (e) => {
    const attributes = clean({
      "beamclaw.agent": e.agent,
      "beamclaw.session": e.session,
      "beamclaw.run": e.runId,
      "beamclaw.status": e.status,
      "beamclaw.steps": e.steps,
    });
    span(
      "beamclaw.session.run",
      e.durationMs,
      attributes,
      e.status === "failed" ? "failed" : undefined,
    );
    runs?.add(1, attributes);
    cost?.add(e.costUsd, clean({ "beamclaw.agent": e.agent }));
  });
  on("beamclaw:session.message", (e) => {
    messages?.add(
      1,
      clean({
        "beamclaw.agent": e.agent,
        "beamclaw.disposition": e.disposition,
        "beamclaw.tenant": e.tenant,
      }),
    );
  });
  on("beamclaw:cron.run", (e) => {
    const attributes = clean({
      "beamclaw.agent": e.agentId,
      "beamclaw.job": e.jobId,
      "beamclaw.trigger": e.trigger,
      "beamclaw.status": e.status,
    });
    span(
      "beamclaw.cron.run",
      e.durationMs,
      attributes,
      e.status === "error" ? (e.error ?? "error") : undefined,
    );
    cronRuns?.add(1, attributes);
  });
  on("beamclaw:actor.crash", (e) =>
    crashes?.add(1, { "beamclaw.actor": e.actor, "beamclaw.phase": e.phase }),
  );
  on("beamclaw:actor.overload", (e) =>
    overloads?.add(1, { "beamclaw.actor": e.actor, "beamclaw.kind": e.kind }),
  );
  on("beamclaw:supervisor.restart", (e) =>
    restarts?.add(1, { "beamclaw.supervisor": e.supervisor, "beamclaw.child": e.childId }),
  );
  on("beamclaw:approval.decision", (e) =>
    approvals?.add(1, {
      "beamclaw.tool": e.tool,
      "beamclaw.decision": e.decision,
      "beamclaw.source": e.source,
    }),
  );

  return {
    stop() {
      for (const off of offs.splice(0)) off();
    },
  };
}
