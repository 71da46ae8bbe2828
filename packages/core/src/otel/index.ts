/**
 * `@beamclaw/core/otel`: an optional bridge from BeamClaw's telemetry to OpenTelemetry.
 * `@opentelemetry/api` is a peer dependency: install it (and an SDK) to use this entry point;
 * the rest of BeamClaw never loads it.
 *
 * Spans come from the `TracingChannel`s of operations with a duration — session runs, provider
 * calls, tool runs, approval waits, cron runs — and start and end with them. The bridge binds an
 * `AsyncLocalStorage` to each operation's `start` channel, so whatever runs inside an operation
 * finds its span: a tool run's and a provider call's spans are children of the session run's
 * span, an approval wait's a child of the tool run's. Session runs and cron runs start new traces
 * (a session handles its messages from a mailbox, so the caller's context at that moment may be
 * an unrelated earlier caller's). Metrics come from the plain `beamclaw:*` channels: tokens,
 * calls, durations, runs, cost, crashes, restarts, approvals, overloads.
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
import { AsyncLocalStorage } from "node:async_hooks";
import {
  type Attributes,
  type Context,
  type Meter,
  context as otelContext,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import {
  subscribeTelemetry,
  subscribeTrace,
  type TelemetryEvents,
  type TraceContexts,
  type TracedOperation,
  telemetryTracingChannel,
} from "../telemetry.js";

/** Options of {@link startOtelBridge}. */
export interface OtelBridgeOptions {
  /** Spans are created with this tracer. Omit to record no spans. */
  tracer?: Tracer;
  /** Metrics are recorded with this meter. Omit to record no metrics. */
  meter?: Meter;
}

/** A running bridge. */
export interface OtelBridge {
  /** Unsubscribes from every channel and unbinds its context store. */
  stop(): void;
}

type AttributeValues = Record<string, string | number | boolean | undefined>;

function clean(attributes: AttributeValues): Attributes {
  const out: Attributes = {};
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) out[key] = value;
  return out;
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "object" && error !== null && "message" in error) {
    return String((error as { message: unknown }).message);
  }
  return String(error);
}

/** How one traced operation becomes a span. */
interface SpanSpec<N extends TracedOperation> {
  operation: N;
  /** The span's name. */
  name: string;
  kind: SpanKind;
  /** Starts a new trace instead of nesting in the current context. */
  root: boolean;
  /** Attributes known when the operation starts. */
  start(context: TraceContexts[N]): AttributeValues;
  /** Attributes known when it ends. */
  end(context: TraceContexts[N]): AttributeValues;
}

const identity = (c: { tenant?: string; agent?: string; session?: string }): AttributeValues => ({
  "beamclaw.tenant": c.tenant,
  "beamclaw.agent": c.agent,
  "beamclaw.session": c.session,
});

const SPANS: { [N in TracedOperation]: SpanSpec<N> } = {
  "beamclaw:session.run": {
    operation: "beamclaw:session.run",
    name: "beamclaw.session.run",
    kind: SpanKind.INTERNAL,
    root: true,
    start: (c) => ({ ...identity(c), "beamclaw.run": c.runId }),
    end: (c) => ({
      "beamclaw.status": c.status,
      "beamclaw.steps": c.steps,
      "beamclaw.input_tokens": c.inputTokens,
      "beamclaw.output_tokens": c.outputTokens,
      "beamclaw.cost_usd": c.costUsd,
    }),
  },
  "beamclaw:provider.call": {
    operation: "beamclaw:provider.call",
    name: "beamclaw.provider.call",
    kind: SpanKind.CLIENT,
    root: false,
    start: (c) => ({
      ...identity(c),
      "beamclaw.ref": c.ref,
      "beamclaw.provider": c.provider,
      "beamclaw.model": c.model,
      "beamclaw.attempt": c.attempt,
      "gen_ai.provider.name": c.provider,
      "gen_ai.request.model": c.model,
    }),
    end: (c) => ({
      "beamclaw.outcome": c.outcome,
      "gen_ai.usage.input_tokens": c.usage?.inputTokens,
      "gen_ai.usage.output_tokens": c.usage?.outputTokens,
    }),
  },
  "beamclaw:tool.run": {
    operation: "beamclaw:tool.run",
    name: "beamclaw.tool.run",
    kind: SpanKind.INTERNAL,
    root: false,
    start: (c) => ({
      ...identity(c),
      "beamclaw.tool": c.tool,
      "beamclaw.tool_call": c.toolCallId,
      "beamclaw.run": c.runId,
    }),
    end: (c) => ({ "beamclaw.outcome": c.outcome, "beamclaw.attempts": c.attempts }),
  },
  "beamclaw:approval.wait": {
    operation: "beamclaw:approval.wait",
    name: "beamclaw.approval.wait",
    kind: SpanKind.INTERNAL,
    root: false,
    start: (c) => ({
      ...identity(c),
      "beamclaw.tool": c.tool,
      "beamclaw.approval_key": c.key,
      "beamclaw.run": c.runId,
    }),
    end: (c) => ({ "beamclaw.decision": c.decision }),
  },
  "beamclaw:cron.run": {
    operation: "beamclaw:cron.run",
    name: "beamclaw.cron.run",
    kind: SpanKind.INTERNAL,
    root: true,
    start: (c) => ({
      ...identity(c),
      "beamclaw.job": c.jobId,
      "beamclaw.run": c.runId,
      "beamclaw.trigger": c.trigger,
    }),
    end: (c) => ({ "beamclaw.status": c.status, "beamclaw.session": c.session }),
  },
};

/**
 * Records spans (from the tracing channels) and metrics (from the plain channels) until
 * stopped. Every span and metric carries tenant, agent and session where the operation has
 * them.
 *
 * @example
 * ```ts
 * const bridge = startOtelBridge({ tracer: trace.getTracer("beamclaw"), meter: metrics.getMeter("beamclaw") });
 * // ... run the runtime ...
 * bridge.stop();
 * ```
 */
export function startOtelBridge(options: OtelBridgeOptions): OtelBridge {
  const offs: Array<() => void> = [];
  if (options.tracer !== undefined) offs.push(bridgeSpans(options.tracer));
  if (options.meter !== undefined) offs.push(bridgeMetrics(options.meter));
  return {
    stop() {
      for (const off of offs.splice(0)) off();
    },
  };
}

function bridgeSpans(tracer: Tracer): () => void {
  // The OpenTelemetry context current inside each traced operation (its span set).
  const current = new AsyncLocalStorage<Context>();
  const offs: Array<() => void> = [];
  for (const spec of Object.values(SPANS) as Array<SpanSpec<TracedOperation>>) {
    const spans = new WeakMap<object, Span>();
    const parentContext = (): Context =>
      spec.root ? ROOT_CONTEXT : (current.getStore() ?? otelContext.active());
    // Started by the store transform (operations run through `runStores`), or by the `start`
    // subscriber for an operation that only publishes.
    const open = (ctx: TraceContexts[TracedOperation]): Span => {
      let span = spans.get(ctx);
      if (span === undefined) {
        span = tracer.startSpan(
          spec.name,
          { kind: spec.kind, attributes: clean(spec.start(ctx)) },
          parentContext(),
        );
        spans.set(ctx, span);
      }
      return span;
    };
    const close = (ctx: TraceContexts[TracedOperation]) => {
      const span = spans.get(ctx);
      if (span === undefined) return;
      spans.delete(ctx);
      span.setAttributes(clean(spec.end(ctx)));
      if (ctx.error === undefined) span.setStatus({ code: SpanStatusCode.OK });
      span.end();
    };
    const channel = telemetryTracingChannel(spec.operation);
    const transform = (ctx: TraceContexts[TracedOperation]): Context =>
      trace.setSpan(parentContext(), open(ctx));
    channel.start.bindStore(current, transform);
    const off = subscribeTrace(spec.operation, {
      start: open,
      end(ctx) {
        // `end` with an error and no result: the operation threw before returning a promise.
        if (ctx.error !== undefined && !("result" in ctx)) close(ctx);
      },
      error(ctx) {
        const span = spans.get(ctx);
        if (span === undefined) return;
        if (ctx.error instanceof Error) span.recordException(ctx.error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: messageOf(ctx.error) });
      },
      asyncEnd: close,
    });
    offs.push(() => {
      off();
      channel.start.unbindStore(current);
    });
  }
  return () => {
    for (const off of offs.splice(0)) off();
  };
}

function bridgeMetrics(meter: Meter): () => void {
  const offs: Array<() => void> = [];
  const on = <C extends keyof TelemetryEvents>(
    name: C,
    fn: (event: TelemetryEvents[C]) => void,
  ) => {
    offs.push(subscribeTelemetry(name, fn));
  };
  const tokens = meter.createCounter("beamclaw.provider.tokens", {
    description: "Tokens used by provider calls",
  });
  const providerCalls = meter.createCounter("beamclaw.provider.calls", {
    description: "Provider calls",
  });
  const providerDuration = meter.createHistogram("beamclaw.provider.duration", { unit: "ms" });
  const toolRuns = meter.createCounter("beamclaw.tool.runs", { description: "Tool calls" });
  const toolDuration = meter.createHistogram("beamclaw.tool.duration", { unit: "ms" });
  const runs = meter.createCounter("beamclaw.session.runs", { description: "Finished runs" });
  const runDuration = meter.createHistogram("beamclaw.session.run.duration", { unit: "ms" });
  const messages = meter.createCounter("beamclaw.session.messages", {
    description: "Accepted messages",
  });
  const cost = meter.createCounter("beamclaw.session.cost", { unit: "USD" });
  const crashes = meter.createCounter("beamclaw.actor.crashes");
  const overloads = meter.createCounter("beamclaw.actor.overloads");
  const restarts = meter.createCounter("beamclaw.supervisor.restarts");
  const restartLatency = meter.createHistogram("beamclaw.supervisor.restart.latency", {
    unit: "ms",
  });
  const approvals = meter.createCounter("beamclaw.approval.decisions");
  const cronRuns = meter.createCounter("beamclaw.cron.runs");

  on("beamclaw:provider.call", (e) => {
    const attributes = clean({
      "beamclaw.provider": e.provider,
      "beamclaw.model": e.model,
      "beamclaw.outcome": e.outcome,
      "beamclaw.tenant": e.tenant,
      "beamclaw.agent": e.agent,
    });
    providerCalls.add(1, attributes);
    providerDuration.record(e.durationMs, attributes);
    if (e.usage !== undefined) {
      const base = clean({
        "beamclaw.provider": e.provider,
        "beamclaw.model": e.model,
        "beamclaw.tenant": e.tenant,
        "beamclaw.agent": e.agent,
      });
      tokens.add(e.usage.inputTokens, { ...base, "beamclaw.direction": "input" });
      tokens.add(e.usage.outputTokens, { ...base, "beamclaw.direction": "output" });
      if (e.usage.cacheReadTokens)
        tokens.add(e.usage.cacheReadTokens, { ...base, "beamclaw.direction": "cache-read" });
    }
  });
  on("beamclaw:tool.run", (e) => {
    const attributes = clean({
      "beamclaw.tool": e.tool,
      "beamclaw.outcome": e.outcome,
      "beamclaw.tenant": e.tenant,
      "beamclaw.agent": e.agent,
    });
    toolRuns.add(1, attributes);
    toolDuration.record(e.durationMs, attributes);
  });
  on("beamclaw:session.run", (e) => {
    const attributes = clean({
      "beamclaw.tenant": e.tenant,
      "beamclaw.agent": e.agent,
      "beamclaw.status": e.status,
    });
    runs.add(1, attributes);
    runDuration.record(e.durationMs, attributes);
    cost.add(e.costUsd, clean({ "beamclaw.tenant": e.tenant, "beamclaw.agent": e.agent }));
  });
  on("beamclaw:session.message", (e) => {
    messages.add(
      1,
      clean({
        "beamclaw.tenant": e.tenant,
        "beamclaw.agent": e.agent,
        "beamclaw.disposition": e.disposition,
      }),
    );
  });
  on("beamclaw:cron.run", (e) =>
    cronRuns.add(
      1,
      clean({
        "beamclaw.tenant": e.tenant,
        "beamclaw.agent": e.agentId,
        "beamclaw.job": e.jobId,
        "beamclaw.trigger": e.trigger,
        "beamclaw.status": e.status,
      }),
    ),
  );
  on("beamclaw:actor.crash", (e) =>
    crashes.add(1, { "beamclaw.actor": e.actor, "beamclaw.phase": e.phase }),
  );
  on("beamclaw:actor.overload", (e) =>
    overloads.add(1, { "beamclaw.actor": e.actor, "beamclaw.kind": e.kind }),
  );
  on("beamclaw:supervisor.restart", (e) => {
    const attributes = { "beamclaw.supervisor": e.supervisor, "beamclaw.child": e.childId };
    restarts.add(1, attributes);
    restartLatency.record(e.latencyMs, attributes);
  });
  on("beamclaw:approval.decision", (e) =>
    approvals.add(
      1,
      clean({
        "beamclaw.tenant": e.tenant,
        "beamclaw.agent": e.agent,
        "beamclaw.tool": e.tool,
        "beamclaw.decision": e.decision,
        "beamclaw.source": e.source,
      }),
    ),
  );
  return () => {
    for (const off of offs.splice(0)) off();
  };
}
