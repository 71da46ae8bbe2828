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
 * an unrelated earlier caller's), except a sub-agent's run: it is a child of the tool span of
 * the `spawn_subagent` call that made it (under the run that spawned it), or linked to that
 * run once it has ended (see {@link startOtelBridge}), and a run whose message was sent with a
 * W3C `traceparent` (`SendOptions.traceparent`): it is a child of that span. Metrics come from the plain `beamclaw:*` channels: tokens, calls, durations, runs, cost, crashes,
 * restarts, approvals, overloads.
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
  type Histogram,
  type Link,
  type Meter,
  context as otelContext,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  type TraceState,
  trace,
} from "@opentelemetry/api";
import { InvalidArgumentError } from "../errors.js";
import { describeArg, requireObject } from "../runtime/validate.js";
import { callSubscriber, type SessionRunTrace, type ToolRunTrace } from "../telemetry/tracing.js";
import {
  parseTraceparent,
  parseTracestate,
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
  /**
   * Names of the run, provider call and tool run spans. `beamclaw` (the default, for the
   * dashboards built on them): `beamclaw.session.run`, `beamclaw.provider.call`,
   * `beamclaw.tool.run`. `genai`: the OpenTelemetry GenAI conventions' `invoke_agent <agent>`,
   * `chat <model>` and `execute_tool <tool>`. Approval waits and cron runs, which the
   * conventions do not cover, are `beamclaw.approval.wait` and `beamclaw.cron.run` either way.
   */
  spanNames?: "beamclaw" | "genai";
  /**
   * Labels the `beamclaw.cron.runs` metric with the job id (`beamclaw.job`). Off by default:
   * job ids are chosen by the application, and one series per job (times tenant, trigger and
   * status) grows without bound where jobs are made per user or per task. Turn it on for a
   * fixed, small set of jobs. Cron run spans carry the job id either way.
   */
  jobLabel?: boolean;
}

/** A running bridge. */
export interface OtelBridge {
  /**
   * Unsubscribes from every channel and unbinds its context store. Spans of operations still
   * in progress are ended now, with `beamclaw.unfinished` set (their operations' ends would
   * no longer be seen). Later calls do nothing.
   */
  stop(): void;
}

type AttributeValues = Record<string, string | number | boolean | undefined>;

function clean(attributes: AttributeValues): Attributes {
  const out: Attributes = {};
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) out[key] = value;
  return out;
}

/**
 * The `error.type` of a failure: a BeamClaw error's `code`, another error's name, else
 * `fallback` (the operation's outcome: a low-cardinality value, as the convention asks).
 */
function errorTypeOf(error: unknown, fallback: string): string {
  if (typeof error === "object" && error !== null) {
    const { code, name } = error as { code?: unknown; name?: unknown };
    if (typeof code === "string" && code !== "") return code;
    if (error instanceof Error && typeof name === "string" && name !== "") return name;
  }
  return fallback;
}

/** How an ended operation went, as its span's status says. */
interface Ending {
  /** `ok`: it did what it was asked; `unset`: it stopped short without failing (max steps). */
  status: "ok" | "error" | "unset";
  /** What it failed with, when `error`: recorded as the span's exception. */
  failure?: unknown;
  /** Its outcome, the `error.type` of a failure that names none. */
  outcome: string;
}

/** How one traced operation becomes a span. */
interface SpanSpec<N extends TracedOperation> {
  operation: N;
  /** The span's name. */
  name: string;
  /** Its name under `spanNames: "genai"`, if the GenAI conventions name it. */
  genaiName?(context: TraceContexts[N]): string;
  kind: SpanKind;
  /** Starts a new trace instead of nesting in the current context. */
  root: boolean;
  /** Attributes known when the operation starts. */
  start(context: TraceContexts[N]): AttributeValues;
  /** Attributes known when it ends. */
  end(context: TraceContexts[N]): AttributeValues;
  /** How it went, from its context once ended. */
  ending(context: TraceContexts[N]): Ending;
}

const identity = (c: { tenant?: string; agent?: string; session?: string }): AttributeValues => ({
  "beamclaw.tenant": c.tenant,
  "beamclaw.agent": c.agent,
  "beamclaw.session": c.session,
});

/** A failure set on the context (thrown, or a failure status), else `fallback`'s verdict. */
function ended(
  context: { error?: unknown },
  outcome: string | undefined,
  fallback: (outcome: string) => Ending,
): Ending {
  const name = outcome ?? "error";
  if (context.error !== undefined)
    return { status: "error", failure: context.error, outcome: name };
  return fallback(name);
}

const SPANS: { [N in TracedOperation]: SpanSpec<N> } = {
  "beamclaw:session.run": {
    operation: "beamclaw:session.run",
    name: "beamclaw.session.run",
    genaiName: (c) => `invoke_agent ${c.agent}`,
    kind: SpanKind.INTERNAL,
    root: true,
    start: (c) => ({
      ...identity(c),
      "beamclaw.run": c.runId,
      "beamclaw.parent_session": c.parentSession,
      "beamclaw.parent_run": c.parentRunId,
      "gen_ai.operation.name": "invoke_agent",
      "gen_ai.agent.id": c.agent,
    }),
    end: (c) => ({
      "beamclaw.status": c.status,
      "beamclaw.steps": c.steps,
      "beamclaw.input_tokens": c.inputTokens,
      "beamclaw.output_tokens": c.outputTokens,
      "beamclaw.cost_usd": c.costUsd,
      "gen_ai.usage.input_tokens": c.inputTokens,
      "gen_ai.usage.output_tokens": c.outputTokens,
    }),
    ending: (c) =>
      ended(c, c.status, (status) => {
        if (status === "completed") return { status: "ok", outcome: status };
        if (status === "aborted") {
          // Cancelled, or past its time limit (the result says which).
          const reason = (c.result as { error?: unknown } | undefined)?.error;
          return { status: "error", failure: reason ?? "the run was aborted", outcome: status };
        }
        return { status: "unset", outcome: status };
      }),
  },
  "beamclaw:provider.call": {
    operation: "beamclaw:provider.call",
    name: "beamclaw.provider.call",
    genaiName: (c) => `chat ${c.model}`,
    kind: SpanKind.CLIENT,
    root: false,
    start: (c) => ({
      ...identity(c),
      "beamclaw.ref": c.ref,
      "beamclaw.provider": c.provider,
      "beamclaw.model": c.model,
      "beamclaw.attempt": c.attempt,
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": c.provider,
      "gen_ai.request.model": c.model,
    }),
    end: (c) => ({
      "beamclaw.outcome": c.outcome,
      "gen_ai.usage.input_tokens": c.usage?.inputTokens,
      "gen_ai.usage.output_tokens": c.usage?.outputTokens,
    }),
    ending: (c) =>
      ended(c, c.outcome, (outcome) =>
        outcome === "success"
          ? { status: "ok", outcome }
          : { status: "error", failure: "the call was aborted", outcome },
      ),
  },
  "beamclaw:tool.run": {
    operation: "beamclaw:tool.run",
    name: "beamclaw.tool.run",
    genaiName: (c) => `execute_tool ${c.tool}`,
    kind: SpanKind.INTERNAL,
    root: false,
    start: (c) => ({
      ...identity(c),
      "beamclaw.tool": c.tool,
      "beamclaw.tool_call": c.toolCallId,
      "beamclaw.run": c.runId,
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": c.tool,
      "gen_ai.tool.call.id": c.toolCallId,
    }),
    end: (c) => ({ "beamclaw.outcome": c.outcome, "beamclaw.attempts": c.attempts }),
    ending: (c) =>
      ended(c, c.outcome, (outcome) =>
        outcome === "success"
          ? { status: "ok", outcome }
          : { status: "error", failure: outcome, outcome },
      ),
  },
  "beamclaw:approval.wait": {
    operation: "beamclaw:approval.wait",
    name: "beamclaw.approval.wait",
    kind: SpanKind.INTERNAL,
    root: false,
    // Not the approval key: a tool's `approvalKey` may be built from its input (exec's is the
    // command line).
    start: (c) => ({ ...identity(c), "beamclaw.tool": c.tool, "beamclaw.run": c.runId }),
    end: (c) => ({ "beamclaw.decision": c.decision }),
    ending: (c) => ended(c, "deny", () => ({ status: "ok", outcome: "allow" })),
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
    ending: (c) =>
      ended(c, c.status, (status) =>
        status === "ok" ? { status: "ok", outcome: status } : { status: "unset", outcome: status },
      ),
  },
};

/**
 * Records spans (from the tracing channels) and metrics (from the plain channels) until
 * stopped. Every span and metric carries tenant, agent and session where the operation has
 * them (metrics never carry session or run ids). A tracer or meter that throws is contained:
 * its first throw is reported as a `BeamClawWarning` process warning and the runtime goes on.
 *
 * Spans follow the OpenTelemetry GenAI conventions where they apply (`gen_ai.operation.name`
 * `invoke_agent`, `chat` and `execute_tool`; `gen_ai.provider.name`, `gen_ai.request.model`,
 * `gen_ai.usage.*`, `gen_ai.tool.*`; `error.type` on failures); no message text, tool input or
 * tool output is recorded. A failure is recorded by its type only: the span's status message,
 * its `error.type` and its exception event's `exception.type` are a BeamClaw error's `code`,
 * another error's name, or else the operation's outcome (`error`, `aborted`...) — never an
 * error's message or stack, which can quote what a model sent (a tool's argument error),
 * what it answered (a structured answer that is not JSON) or a vendor's reply. Durations are
 * recorded in seconds, as the conventions ask; the `gen_ai.client.operation.duration` and
 * `gen_ai.client.token.usage` histograms are recorded besides BeamClaw's own metrics.
 *
 * A sub-agent's run (in a session made by a `spawn_subagent` call) carries
 * `beamclaw.parent_run` and `beamclaw.parent_session`. The `spawn_subagent` call is traced like
 * every tool call (`beamclaw:tool.run`), so it has a tool span like every tool's
 * (`beamclaw.tool.run`, or `execute_tool spawn_subagent` under `spanNames: "genai"`, with its
 * call id), a child of the run that made it, from the call to its result (a spawn refused
 * before any sub-agent ran ends in error). The first run of the sub-agent's session
 * (`ToolRunTrace.subagentSession`), the one the call waits for, is that span's child, in the
 * spawning run's trace; another run of the session while the spawning run is open is the
 * run's child. A run of the sub-agent's session after the spawning run ended (a message sent
 * to the sub-agent later) starts its own trace with a span link to that run, if this bridge saw
 * one of its sub-agents' runs start under it (the latest 1,024 such runs are remembered once
 * ended), else with a span link to the spawn call's span, which the sub-agent's session keeps
 * (`SessionMetadata.parentTraceparent`). The spawn call's span is sent with the sub-agent's
 * task as its `traceparent`, so a sub-agent whose session runs on another cluster node (under
 * a bridge there) is that span's child too, in the same trace, and a later run there is
 * linked to that span.
 *
 * A run whose message was sent with a `traceparent` (`SendOptions.traceparent`: an HTTP
 * request's, a gateway frame's, a caller's span in another process) and that has no parent
 * here is a child of that remote span, in its trace (sampled as its flags say).
 *
 * @throws InvalidArgumentError when `options` is not an object, `spanNames` not `beamclaw`
 *   or `genai`, or `jobLabel` not a boolean.
 * @throws whatever the meter throws while its instruments are created (nothing stays
 *   subscribed then).
 *
 * @example
 * ```ts
 * const bridge = startOtelBridge({ tracer: trace.getTracer("beamclaw"), meter: metrics.getMeter("beamclaw") });
 * // ... run the runtime ...
 * bridge.stop();
 * ```
 */
export function startOtelBridge(options: OtelBridgeOptions): OtelBridge {
  requireObject(options, "startOtelBridge options");
  const { spanNames = "beamclaw", jobLabel = false } = options;
  if (spanNames !== "beamclaw" && spanNames !== "genai") {
    throw new InvalidArgumentError(
      `spanNames must be "beamclaw" or "genai", got ${describeArg(spanNames)}`,
    );
  }
  if (typeof jobLabel !== "boolean") {
    throw new InvalidArgumentError(`jobLabel must be a boolean, got ${describeArg(jobLabel)}`);
  }
  const offs: Array<() => void> = [];
  const stop = () => {
    for (const off of offs.splice(0)) off();
  };
  try {
    if (options.tracer !== undefined) offs.push(bridgeSpans(options.tracer, spanNames));
    if (options.meter !== undefined) offs.push(bridgeMetrics(options.meter, jobLabel));
  } catch (error) {
    stop();
    throw error;
  }
  return { stop };
}

function bridgeSpans(tracer: Tracer, spanNames: "beamclaw" | "genai"): () => void {
  // The OpenTelemetry context current inside each traced operation (its span set).
  const current = new AsyncLocalStorage<Context>();
  const offs: Array<() => void> = [];
  // Every span started and not yet ended, by its operation's context: ended on stop.
  const open = new Map<object, { span: Span; close: (ending?: Ending) => void }>();
  // Open cron runs by run id: a run given up for `interrupted` ends now, settled or not.
  const cronRuns = new Map<string, object>();
  const subagents = subagentRelations();
  // Open `spawn_subagent` tool calls whose sub-agent's run has not started yet.
  const spawnCalls = new Set<ToolRunTrace>();
  // A sub-agent's run -> the spawn call it answers (its parent span's operation).
  const answers = new WeakMap<SessionRunTrace, ToolRunTrace>();
  /**
   * The open `spawn_subagent` call that made this run's session, if this is the first run of
   * that session it sees (the run the call waits for): claimed by the run, so a later run of
   * the session is not its child.
   */
  const spawnOf = (run: SessionRunTrace): ToolRunTrace | undefined => {
    if (run.parentRunId === undefined) return undefined;
    const claimed = answers.get(run);
    if (claimed !== undefined) return claimed;
    for (const call of spawnCalls) {
      if (call.runId !== run.parentRunId || call.subagentSession !== run.session) continue;
      spawnCalls.delete(call);
      answers.set(run, call);
      return call;
    }
    return undefined;
  };
  for (const spec of Object.values(SPANS) as Array<SpanSpec<TracedOperation>>) {
    const isRun = spec.operation === "beamclaw:session.run";
    const parentContext = (ctx: TraceContexts[TracedOperation]): Context => {
      if (!spec.root) return current.getStore() ?? otelContext.active();
      if (!isRun) return ROOT_CONTEXT;
      const run = ctx as SessionRunTrace;
      // The span of the spawn's tool call (under the spawning run) is the sub-agent run's
      // parent; else the spawning run's while it is open.
      const spawn = spawnOf(run);
      const parent =
        (spawn === undefined ? undefined : open.get(spawn)?.span) ?? subagents.openParent(run);
      if (parent !== undefined) return trace.setSpan(ROOT_CONTEXT, parent);
      // The span the message was sent from (another process's, or a spawn call's on another
      // node): the run joins that trace.
      const remote = remoteSpanContext(run.traceparent, run.tracestate);
      return remote === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, remote);
    };
    const close = (ctx: TraceContexts[TracedOperation], given?: Ending) => {
      const entry = open.get(ctx);
      if (entry === undefined) return;
      open.delete(ctx);
      if (spec.operation === "beamclaw:cron.run") cronRuns.delete((ctx as { runId: string }).runId);
      const { span } = entry;
      const ending = given ?? spec.ending(ctx);
      if (isRun) subagents.ended(ctx as SessionRunTrace, span);
      if (isSpawn(spec, ctx)) spawnCalls.delete(ctx);
      endSpan(span, spec.end(ctx), ending);
    };
    // Started by the store transform (operations run through `runStores`), or by the `start`
    // subscriber for an operation that only publishes.
    const start = (ctx: TraceContexts[TracedOperation]): Span => {
      let span = open.get(ctx)?.span;
      if (span === undefined) {
        const parent = parentContext(ctx);
        const name =
          spanNames === "genai" && spec.genaiName !== undefined ? spec.genaiName(ctx) : spec.name;
        const links = isRun ? subagents.linkTo(ctx as SessionRunTrace, parent) : undefined;
        span = tracer.startSpan(
          name,
          {
            kind: spec.kind,
            attributes: clean(spec.start(ctx)),
            ...(links === undefined ? {} : { links }),
          },
          parent,
        );
        open.set(ctx, { span, close: (ending) => close(ctx, ending) });
        if (spec.operation === "beamclaw:cron.run")
          cronRuns.set((ctx as { runId: string }).runId, ctx);
        if (isRun) subagents.started(ctx as SessionRunTrace, span);
        if (isSpawn(spec, ctx)) {
          spawnCalls.add(ctx);
          // Sent with the sub-agent's task: its run joins this trace on any node.
          if (ctx.traceparent === undefined) {
            const spanContext = span.spanContext();
            ctx.traceparent = traceparentOf(spanContext);
            const state = spanContext.traceState?.serialize();
            if (ctx.traceparent !== undefined && state) ctx.tracestate = state;
          }
        }
      }
      return span;
    };
    const channel = telemetryTracingChannel(spec.operation);
    // A throw in a store's transform would be rethrown by `diagnostics_channel` as an uncaught
    // exception: a tracer that throws is contained like any subscriber.
    // Operations the transform tried to open a span for (once: a throwing tracer is not
    // asked again, nor reported twice, by the `start` subscriber).
    const tried = new WeakSet<object>();
    let bound: Context = ROOT_CONTEXT;
    const bind = (ctx: TraceContexts[TracedOperation]) => {
      bound = trace.setSpan(bound, start(ctx));
    };
    const transform = (ctx: TraceContexts[TracedOperation]): Context => {
      tried.add(ctx);
      bound = parentContext(ctx);
      callSubscriber(`${spec.operation}:start`, bind, ctx);
      return bound;
    };
    channel.start.bindStore(current, transform);
    const off = subscribeTrace(spec.operation, {
      start(ctx) {
        if (!tried.has(ctx)) start(ctx);
      },
      end(ctx) {
        // `end` with an error and no result: the operation threw before returning a promise.
        if (ctx.error !== undefined && !("result" in ctx)) close(ctx);
      },
      asyncEnd: (ctx) => close(ctx),
    });
    offs.push(() => {
      off();
      channel.start.unbindStore(current);
    });
  }
  offs.push(
    subscribeTelemetry("beamclaw:cron.run", (event) => {
      if (event.status !== "interrupted") return;
      const ctx = cronRuns.get(event.runId);
      if (ctx === undefined) return;
      open.get(ctx)?.close({
        status: "error",
        failure: event.error ?? "the run was interrupted",
        outcome: event.status,
      });
    }),
  );
  return () => {
    for (const off of offs.splice(0)) off();
    current.disable();
    for (const [ctx, { span }] of [...open]) {
      open.delete(ctx);
      callSubscriber("beamclaw:otel.stop", endUnfinished, span);
    }
    cronRuns.clear();
    spawnCalls.clear();
    subagents.clear();
  };
}

/** Sets a span's end attributes and status (a failure by its type only), then ends it. */
function endSpan(span: Span, attributes: AttributeValues, ending: Ending | undefined): void {
  try {
    span.setAttributes(clean(attributes));
    if (ending?.status === "error") {
      // Its type only: an error's message can quote a model's input or output.
      const type = errorTypeOf(ending.failure, ending.outcome);
      span.recordException({ name: type });
      span.setAttribute("error.type", type);
      span.setStatus({ code: SpanStatusCode.ERROR, message: type });
    } else if (ending?.status === "ok") {
      span.setStatus({ code: SpanStatusCode.OK });
    }
  } finally {
    span.end();
  }
}

/** The name of the runtime's sub-agent tool. */
const SUBAGENT_TOOL = "spawn_subagent";

/**
 * A W3C `tracestate` as OpenTelemetry's `TraceState`: immutable entries, the most recent first
 * (`set` puts a key first, as the specification asks of a vendor that updates its entry).
 */
class EntriesTraceState implements TraceState {
  readonly #entries: ReadonlyArray<readonly [string, string]>;

  constructor(entries: ReadonlyArray<readonly [string, string]>) {
    this.#entries = entries;
  }

  set(key: string, value: string): TraceState {
    return new EntriesTraceState([[key, value], ...this.#entries.filter(([k]) => k !== key)]);
  }

  unset(key: string): TraceState {
    return new EntriesTraceState(this.#entries.filter(([k]) => k !== key));
  }

  get(key: string): string | undefined {
    return this.#entries.find(([k]) => k === key)?.[1];
  }

  serialize(): string {
    return this.#entries.map(([k, v]) => `${k}=${v}`).join(",");
  }
}

/**
 * The remote span context a W3C `traceparent` (with its `tracestate`, if any) names, or
 * undefined when the traceparent is absent or malformed.
 */
function remoteSpanContext(
  traceparent: string | undefined,
  tracestate?: string,
): SpanContext | undefined {
  const remote = parseTraceparent(traceparent);
  if (remote === undefined) return undefined;
  const entries = tracestate === undefined ? undefined : parseTracestate(tracestate);
  return {
    traceId: remote.traceId,
    spanId: remote.spanId,
    traceFlags: remote.traceFlags & 0xff,
    isRemote: true,
    ...(entries === undefined || entries.length === 0
      ? {}
      : { traceState: new EntriesTraceState(entries) }),
  };
}

/** A span context as a W3C `traceparent` (version 00), or undefined for an invalid one. */
function traceparentOf(context: SpanContext): string | undefined {
  if (!trace.isSpanContextValid(context)) return undefined;
  const flags = (context.traceFlags & 0xff).toString(16).padStart(2, "0");
  return `00-${context.traceId}-${context.spanId}-${flags}`;
}

/** Whether an operation is a `spawn_subagent` tool call. */
function isSpawn(
  spec: SpanSpec<TracedOperation>,
  ctx: TraceContexts[TracedOperation],
): ctx is ToolRunTrace {
  return spec.operation === "beamclaw:tool.run" && (ctx as ToolRunTrace).tool === SUBAGENT_TOOL;
}

/** Ended runs that were a sub-agent run's parent, remembered to link later runs to. */
const SPAWNERS_KEPT = 1_024;

/**
 * What relates a sub-agent's run to the run that spawned it: the open run spans by run id (a
 * parent while open), and the span contexts of the latest ended runs that were a sub-agent
 * run's parent (a link target after).
 */
function subagentRelations() {
  const runs = new Map<string, Span>();
  // Open runs that are a sub-agent run's parent; moved to `spawners` when they end.
  const spawning = new Set<string>();
  const spawners = new Map<string, SpanContext>();
  return {
    /** The open span of the run that spawned this one's session, if any. */
    openParent(run: SessionRunTrace): Span | undefined {
      return run.parentRunId === undefined ? undefined : runs.get(run.parentRunId);
    },
    /**
     * A link to the ended run that spawned this one's session, unless the run has a parent:
     * else (a spawn this bridge did not see, as on another cluster node) to the spawn call's
     * span its session keeps (`SessionRunTrace.parentTraceparent`).
     */
    linkTo(run: SessionRunTrace, parent: Context): Link[] | undefined {
      if (run.parentRunId === undefined || trace.getSpan(parent) !== undefined) return undefined;
      const spawner = spawners.get(run.parentRunId);
      if (spawner !== undefined) return [{ context: spawner }];
      const spawn = remoteSpanContext(run.parentTraceparent);
      return spawn === undefined ? undefined : [{ context: spawn }];
    },
    started(run: SessionRunTrace, span: Span): void {
      runs.set(run.runId, span);
      if (run.parentRunId !== undefined && runs.has(run.parentRunId)) spawning.add(run.parentRunId);
    },
    ended(run: SessionRunTrace, span: Span): void {
      if (runs.get(run.runId) !== span) return;
      runs.delete(run.runId);
      if (!spawning.delete(run.runId)) return;
      spawners.delete(run.runId);
      spawners.set(run.runId, span.spanContext());
      if (spawners.size > SPAWNERS_KEPT) spawners.delete(spawners.keys().next().value!);
    },
    clear(): void {
      runs.clear();
      spawning.clear();
      spawners.clear();
    },
  };
}

function endUnfinished(span: Span): void {
  try {
    span.setAttribute("beamclaw.unfinished", true);
  } finally {
    span.end();
  }
}

/** A count a monotonic counter can take: finite and not negative. */
function countable(value: number | undefined): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

/** Seconds from milliseconds, or `undefined` for a duration that is no number. */
function seconds(ms: number): number | undefined {
  return typeof ms === "number" && Number.isFinite(ms) ? Math.max(0, ms) / 1000 : undefined;
}

/**
 * An actor's name as a metric label: its first word (`session agent:main:main` is
 * `session`), so that actors named after a session or a channel make one series, not one each.
 */
function actorKind(name: string): string {
  const space = typeof name === "string" ? name.indexOf(" ") : -1;
  return space === -1 ? String(name) : name.slice(0, space);
}

function bridgeMetrics(meter: Meter, jobLabel: boolean): () => void {
  const offs: Array<() => void> = [];
  const on = <C extends keyof TelemetryEvents>(
    name: C,
    fn: (event: TelemetryEvents[C]) => void,
  ) => {
    offs.push(subscribeTelemetry(name, fn));
  };
  const counter = (name: string, unit: string, description?: string) =>
    meter.createCounter(name, description === undefined ? { unit } : { unit, description });
  const histogram = (name: string, unit: string, description?: string) =>
    meter.createHistogram(name, description === undefined ? { unit } : { unit, description });
  const tokens = counter("beamclaw.provider.tokens", "{token}", "Tokens used by provider calls");
  const providerCalls = counter("beamclaw.provider.calls", "{call}", "Provider calls");
  const providerDuration = histogram("beamclaw.provider.duration", "s", "Provider call duration");
  const operationDuration = histogram(
    "gen_ai.client.operation.duration",
    "s",
    "GenAI operation duration",
  );
  const tokenUsage = histogram(
    "gen_ai.client.token.usage",
    "{token}",
    "Number of input and output tokens used",
  );
  const toolRuns = counter("beamclaw.tool.runs", "{call}", "Tool calls");
  const toolDuration = histogram("beamclaw.tool.duration", "s", "Tool call duration");
  const runs = counter("beamclaw.session.runs", "{run}", "Finished runs");
  const runDuration = histogram("beamclaw.session.run.duration", "s", "Run duration");
  const messages = counter("beamclaw.session.messages", "{message}", "Accepted messages");
  const cost = counter("beamclaw.session.cost", "USD");
  const crashes = counter("beamclaw.actor.crashes", "{crash}");
  const overloads = counter("beamclaw.actor.overloads", "{message}");
  const restarts = counter("beamclaw.supervisor.restarts", "{restart}");
  const restartLatency = histogram("beamclaw.supervisor.restart.latency", "s");
  const approvals = counter("beamclaw.approval.decisions", "{decision}");
  const cronRuns = counter("beamclaw.cron.runs", "{run}");

  const record = (instrument: Histogram, ms: number, attributes: Attributes) => {
    const value = seconds(ms);
    if (value !== undefined) instrument.record(value, attributes);
  };

  on("beamclaw:provider.call", (e) => {
    const attributes = clean({
      "beamclaw.provider": e.provider,
      "beamclaw.model": e.model,
      "beamclaw.outcome": e.outcome,
      "beamclaw.tenant": e.tenant,
      "beamclaw.agent": e.agent,
    });
    providerCalls.add(1, attributes);
    record(providerDuration, e.durationMs, attributes);
    const genAi = clean({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": e.provider,
      "gen_ai.request.model": e.model,
    });
    record(
      operationDuration,
      e.durationMs,
      e.outcome === "success" ? genAi : { ...genAi, "error.type": errorTypeOf(e.error, e.outcome) },
    );
    if (e.usage !== undefined) {
      const base = clean({
        "beamclaw.provider": e.provider,
        "beamclaw.model": e.model,
        "beamclaw.tenant": e.tenant,
        "beamclaw.agent": e.agent,
      });
      const { inputTokens, outputTokens, cacheReadTokens } = e.usage;
      if (countable(inputTokens)) {
        tokens.add(inputTokens, { ...base, "beamclaw.direction": "input" });
        tokenUsage.record(inputTokens, { ...genAi, "gen_ai.token.type": "input" });
      }
      if (countable(outputTokens)) {
        tokens.add(outputTokens, { ...base, "beamclaw.direction": "output" });
        tokenUsage.record(outputTokens, { ...genAi, "gen_ai.token.type": "output" });
      }
      if (countable(cacheReadTokens) && cacheReadTokens > 0)
        tokens.add(cacheReadTokens, { ...base, "beamclaw.direction": "cache-read" });
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
    record(toolDuration, e.durationMs, attributes);
  });
  on("beamclaw:session.run", (e) => {
    const attributes = clean({
      "beamclaw.tenant": e.tenant,
      "beamclaw.agent": e.agent,
      "beamclaw.status": e.status,
    });
    runs.add(1, attributes);
    record(runDuration, e.durationMs, attributes);
    if (countable(e.costUsd)) {
      cost.add(e.costUsd, clean({ "beamclaw.tenant": e.tenant, "beamclaw.agent": e.agent }));
    }
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
        // Opt-in: one series per job id is unbounded where jobs are made per user or task.
        "beamclaw.job": jobLabel ? e.jobId : undefined,
        "beamclaw.trigger": e.trigger,
        "beamclaw.status": e.status,
      }),
    ),
  );
  on("beamclaw:actor.crash", (e) =>
    crashes.add(1, { "beamclaw.actor": actorKind(e.actor), "beamclaw.phase": e.phase }),
  );
  on("beamclaw:actor.overload", (e) =>
    overloads.add(1, { "beamclaw.actor": actorKind(e.actor), "beamclaw.kind": e.kind }),
  );
  on("beamclaw:supervisor.restart", (e) => {
    // Not the child id: a dynamic supervisor's children (sessions) are `child-<n>`, one each.
    const attributes = { "beamclaw.supervisor": e.supervisor };
    restarts.add(1, attributes);
    record(restartLatency, e.latencyMs, attributes);
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
