/**
 * Operations with a duration, traced on `node:diagnostics_channel` `TracingChannel`s named
 * `beamclaw:<operation>`: a subscriber sees `tracing:beamclaw:<operation>:start` when the
 * operation begins, `:end` when its synchronous part returns, `:error` if it fails, and
 * `:asyncStart` / `:asyncEnd` when it settles — the events of Node's
 * `tracingChannel.tracePromise`, over one context object per operation. The start runs through
 * `start.runStores(context, ...)`, so a store bound with `start.bindStore(als, transform)` (an
 * OpenTelemetry span, say) is current for everything the operation does: a tool run sees the
 * store of the session run it belongs to.
 *
 * Nothing is built, and no async context is entered, while no one subscribes.
 */
import diagnosticsChannel from "node:diagnostics_channel";
import type { ModelUsage } from "../providers/types.js";
import type { SendOptions } from "../sessions/types.js";
import {
  currentTelemetryIdentity,
  runInTelemetryScope,
  type TelemetryIdentity,
} from "./identity.js";

/** What a tracer sets on every operation's context when it settles. */
export interface TraceSettlement<R> {
  /** What the operation resolved with; set before `asyncStart`. */
  result?: R;
  /**
   * Why it failed; set before `error` is published. A thrown or rejected error, or, for an
   * operation that settles with a failure status (a `failed` run, a cron run in `error`, a tool
   * that returned an error to the model), a description of the failure.
   */
  error?: unknown;
}

/** Context of a `beamclaw:provider.call` trace: one attempt on one `provider/model` ref. */
export interface ProviderCallTrace extends TelemetryIdentity, TraceSettlement<undefined> {
  ref: string;
  provider: string;
  model: string;
  /** 1 for the first try of this ref. */
  attempt: number;
  /** Set when the call ends: `aborted` when the signal fired or the caller stopped reading. */
  outcome?: "success" | "error" | "aborted";
  /** Set when the call ends: the last usage the provider reported. */
  usage?: ModelUsage;
}

/** Context of a `beamclaw:tool.run` trace: one tool call, approval and retries included. */
export interface ToolRunTrace
  extends TelemetryIdentity,
    TraceSettlement<{ output: unknown; isError: boolean }> {
  tool: string;
  toolCallId: string;
  runId: string;
  /** Set when the call ends. */
  outcome?: "success" | "error" | "aborted" | "denied";
  /** Set when the call ends: tries made (retries of transient failures included). */
  attempts?: number;
  /**
   * A `spawn_subagent` call: the key of the sub-agent session it made, set once that session
   * is made (before the sub-agent's first run starts; never for a spawn refused before it).
   * `@beamclaw/core/otel` makes that run's span a child of this call's span.
   */
  subagentSession?: string;
  /**
   * Set by a tracer when the call starts, if it likes (`@beamclaw/core/otel` does): the W3C
   * Trace Context `traceparent` of the call's span. A `spawn_subagent` call sends it with the
   * sub-agent's task ({@link SendOptions.traceparent}), so the sub-agent's run joins the trace
   * on whichever cluster node runs it.
   */
  traceparent?: string;
  /** Set with {@link ToolRunTrace.traceparent}, if the span has one: its W3C `tracestate`. */
  tracestate?: string;
}

/** Context of a `beamclaw:session.run` trace: one run (turn) of a session's agent loop. */
export interface SessionRunTrace extends TelemetryIdentity, TraceSettlement<unknown> {
  agent: string;
  session: string;
  runId: string;
  /** A sub-agent's run: the session that spawned its session (`SessionMetadata.parentKey`). */
  parentSession?: string;
  /**
   * A sub-agent's run: the run of {@link SessionRunTrace.parentSession} whose `spawn_subagent`
   * call made its session (`SessionMetadata.parentRunId`).
   */
  parentRunId?: string;
  /**
   * A sub-agent's run: the W3C Trace Context `traceparent` of the `spawn_subagent` call's span
   * that made its session (`SessionMetadata.parentTraceparent`), when a tracer gave the call
   * one. `@beamclaw/core/otel` links a later run of the session (one that is not the call's
   * child) to it when it did not see the spawning run itself, as on another cluster node.
   */
  parentTraceparent?: string;
  /**
   * The W3C Trace Context `traceparent` the run's message was sent with
   * ({@link SendOptions.traceparent}; the first one's, for messages collected into one run):
   * the caller's span, in this process or another. `@beamclaw/core/otel` makes the run's span
   * its child (a sub-agent's run whose spawning call it saw here is the call span's child).
   */
  traceparent?: string;
  /** The W3C `tracestate` sent with {@link SessionRunTrace.traceparent} (`SendOptions.tracestate`). */
  tracestate?: string;
  /** Set when the run ends: `completed`, `failed`, `aborted` or `max-steps`. */
  status?: string;
  /** Set when the run ends: model calls made. */
  steps?: number;
  /** Set when the run ends. */
  inputTokens?: number;
  /** Set when the run ends. */
  outputTokens?: number;
  /** Set when the run ends. */
  costUsd?: number;
}

/** Context of a `beamclaw:cron.run` trace: one run of a cron job (delivery included). */
export interface CronRunTrace extends TelemetryIdentity, TraceSettlement<unknown> {
  agent: string;
  jobId: string;
  runId: string;
  trigger: "schedule" | "manual" | "catch-up";
  /** The due time the run is for (epoch ms). */
  scheduledAt: number;
  /** Set when the run ends: `ok` or `error`. */
  status?: string;
}

/** Context of a `beamclaw:approval.wait` trace: a tool call waiting for a person's answer. */
export interface ApprovalWaitTrace extends TelemetryIdentity, TraceSettlement<string> {
  tool: string;
  toolCallId: string;
  runId: string;
  /** The approval key (what an `allow-always` remembers). */
  key: string;
  /** Set when answered with an allow: `allow-once` or `allow-always` (a deny is an error). */
  decision?: string;
}

/** Contexts of every traced operation, by tracing channel name. */
export interface TraceContexts {
  "beamclaw:provider.call": ProviderCallTrace;
  "beamclaw:tool.run": ToolRunTrace;
  "beamclaw:session.run": SessionRunTrace;
  "beamclaw:cron.run": CronRunTrace;
  "beamclaw:approval.wait": ApprovalWaitTrace;
}

/** A traced operation's name (the `TracingChannel` name). */
export type TracedOperation = keyof TraceContexts;

/** Handlers for the events of one traced operation; any may be left out. */
export type TraceHandlers<Context extends object> = Partial<
  diagnosticsChannel.TracingChannelSubscribers<Context>
>;

/** The fields a call site gives when an operation starts (the tracer adds the rest). */
export type TraceStart<N extends TracedOperation> = Omit<TraceContexts[N], "result" | "error">;

const tracingChannels = new Map<string, diagnosticsChannel.TracingChannel<unknown, object>>();

/**
 * The `TracingChannel` of a traced operation, for `subscribe`, `bindStore` on its `start`
 * channel, or `hasSubscribers`. One object per name, held for the life of the process (a
 * channel nobody holds could be collected with its subscribers).
 *
 * @example
 * ```ts
 * import { AsyncLocalStorage } from "node:async_hooks";
 * const runs = new AsyncLocalStorage<string>();
 * telemetryTracingChannel("beamclaw:session.run").start.bindStore(runs, (run) => run.runId);
 * // inside the run, its tools and provider calls: runs.getStore() is the run id
 * ```
 */
export function telemetryTracingChannel<N extends TracedOperation>(
  name: N,
): diagnosticsChannel.TracingChannel<unknown, TraceContexts[N]> {
  let channel = tracingChannels.get(name);
  if (channel === undefined) {
    channel = diagnosticsChannel.tracingChannel<unknown, object>(name);
    tracingChannels.set(name, channel);
  }
  return channel as unknown as diagnosticsChannel.TracingChannel<unknown, TraceContexts[N]>;
}

/** Subscribers whose throw was reported already (one warning each, not one per event). */
const reportedSubscribers = new WeakSet<object>();

/**
 * Calls a telemetry subscriber, containing what it throws: `diagnostics_channel` would rethrow
 * it as an uncaught exception (on the next tick), ending the process over a listener's bug. The
 * first throw of each subscriber is reported as a `BeamClawWarning` process warning instead (a
 * listener that fails on every event would otherwise print one per event).
 *
 * @internal
 */
export function callSubscriber<T>(name: string, listener: (message: T) => void, message: T): void {
  try {
    listener(message);
  } catch (error) {
    if (reportedSubscribers.has(listener)) return;
    reportedSubscribers.add(listener);
    process.emitWarning(
      `a telemetry subscriber of ${name} threw (its later throws are not reported): ${error instanceof Error ? error.message : String(error)}`,
      "BeamClawWarning",
    );
  }
}

/**
 * Subscribes to the events of one traced operation with typed contexts. Returns the
 * unsubscribe function. Only operations that start after subscribing are seen. A handler that
 * throws is reported (its first throw) as a `BeamClawWarning` process warning; the operation and
 * the process go on.
 *
 * @example
 * ```ts
 * const started = new WeakMap<object, number>();
 * const off = subscribeTrace("beamclaw:tool.run", {
 *   start: (run) => started.set(run, performance.now()),
 *   asyncEnd: (run) =>
 *     console.log(run.tool, run.outcome, performance.now() - (started.get(run) ?? 0), run.tenant),
 * });
 * // later
 * off();
 * ```
 */
export function subscribeTrace<N extends TracedOperation>(
  name: N,
  handlers: TraceHandlers<TraceContexts[N]>,
): () => void {
  const channel = telemetryTracingChannel(name);
  // Each sub-channel directly, keeping the wrapped listeners to remove exactly those.
  const subscribed: Array<
    [diagnosticsChannel.Channel<unknown, TraceContexts[N]>, (m: unknown) => void]
  > = [];
  for (const event of TRACE_EVENTS) {
    const handler = handlers[event] as ((context: TraceContexts[N]) => void) | undefined;
    if (handler === undefined) continue;
    const listener = (message: unknown) =>
      callSubscriber(`${name}:${event}`, handler, message as TraceContexts[N]);
    channel[event].subscribe(listener);
    subscribed.push([channel[event], listener]);
  }
  return () => {
    for (const [sub, listener] of subscribed.splice(0)) sub.unsubscribe(listener);
  };
}

const TRACE_EVENTS = ["start", "end", "asyncStart", "asyncEnd", "error"] as const;

/**
 * Listeners of events that happen inside a session run and report its tenant: while any
 * exists, a run enters its telemetry scope even if nobody traces runs themselves.
 */
const SCOPED_PLAIN = [
  "beamclaw:tool.run",
  "beamclaw:approval.request",
  "beamclaw:approval.decision",
];
const SCOPED_TRACED: TracedOperation[] = ["beamclaw:tool.run", "beamclaw:approval.wait"];
let scopedPlainChannels: diagnosticsChannel.Channel[] | undefined;

function someoneInsideRunsListens(): boolean {
  scopedPlainChannels ??= SCOPED_PLAIN.map((name) => diagnosticsChannel.channel(name));
  for (const channel of scopedPlainChannels) if (channel.hasSubscribers) return true;
  for (const name of SCOPED_TRACED) if (telemetryTracingChannel(name).hasSubscribers) return true;
  return false;
}

/** Fills identity fields the call site did not know from the enclosing run's scope. */
function inherit(context: TelemetryIdentity): void {
  if (context.tenant !== undefined && context.agent !== undefined && context.session !== undefined)
    return;
  const outer = currentTelemetryIdentity();
  if (outer === undefined) return;
  if (context.tenant === undefined && outer.tenant !== undefined) context.tenant = outer.tenant;
  if (context.agent === undefined && outer.agent !== undefined) context.agent = outer.agent;
  if (context.session === undefined && outer.session !== undefined) context.session = outer.session;
}

function withoutUndefined<T extends object>(context: T): T {
  for (const key of Object.keys(context) as Array<keyof T>) {
    if (context[key] === undefined) delete context[key];
  }
  return context;
}

/**
 * Runs `fn`, an operation with a duration, traced on the `TracingChannel` `name` with the
 * events and context handling of Node's `tracePromise`: `start` (through `runStores`, so bound
 * stores are current inside `fn`), `end` after `fn` returns its promise, then `asyncStart` and
 * `asyncEnd` with `result` set, or `error`, `asyncStart` and `asyncEnd` with `error` set.
 * `settle` copies what the result says onto the context before those are published; setting
 * `context.error` there reports a failure that did not throw (then `error` is published too).
 *
 * While nobody subscribes, this is `fn()` and `context` is never called.
 *
 * @example
 * ```ts
 * const output = await traceTelemetry(
 *   "beamclaw:tool.run",
 *   () => ({ tool: "search", toolCallId: "c1", runId, agent: "main", session: key }),
 *   () => runTool(),
 *   (result, trace) => {
 *     trace.outcome = result.isError ? "error" : "success";
 *   },
 * );
 * ```
 */
export function traceTelemetry<N extends TracedOperation, T>(
  name: N,
  context: () => TraceStart<N>,
  fn: () => Promise<T>,
  settle?: (result: T, context: TraceContexts[N]) => void,
): Promise<T> {
  const channel = telemetryTracingChannel(name);
  const traced = channel.hasSubscribers;
  const scoped = name === "beamclaw:session.run" && (traced || someoneInsideRunsListens());
  if (!traced && !scoped) return fn();
  const ctx = withoutUndefined(context() as TraceContexts[N]);
  inherit(ctx);
  const run = traced ? () => tracePromiseLike(channel, ctx, fn, settle) : fn;
  if (!scoped) return run();
  const identity: TelemetryIdentity = {};
  if (ctx.tenant !== undefined) identity.tenant = ctx.tenant;
  if (ctx.agent !== undefined) identity.agent = ctx.agent;
  if (ctx.session !== undefined) identity.session = ctx.session;
  return runInTelemetryScope(identity, run);
}

function tracePromiseLike<C extends TraceSettlement<unknown>, T>(
  channel: diagnosticsChannel.TracingChannel<unknown, C>,
  ctx: C,
  fn: () => Promise<T>,
  settle: ((result: T, context: C) => void) | undefined,
): Promise<T> {
  const { start, end, asyncStart, asyncEnd, error } = channel;
  return start.runStores(ctx, () => {
    let promise: Promise<T>;
    try {
      promise = fn();
    } catch (thrown) {
      ctx.error = thrown;
      error.publish(ctx);
      throw thrown;
    } finally {
      end.publish(ctx);
    }
    return promise.then(
      (result) => {
        ctx.result = result;
        try {
          settle?.(result, ctx);
        } finally {
          if (ctx.error !== undefined) error.publish(ctx);
          asyncStart.publish(ctx);
          asyncEnd.publish(ctx);
        }
        return result;
      },
      (thrown: unknown) => {
        ctx.error = thrown;
        error.publish(ctx);
        asyncStart.publish(ctx);
        asyncEnd.publish(ctx);
        throw thrown;
      },
    );
  });
}

/** A traced operation begun with {@link beginTelemetryTrace}; end it exactly once. */
export interface TelemetryTrace<N extends TracedOperation> {
  /** The context every event of this trace carries. */
  readonly context: TraceContexts[N];
  /**
   * Ends the trace: copies `fields` onto the context, publishes `error` if `failure` is given,
   * then `asyncStart` and `asyncEnd`. Later calls do nothing.
   */
  end(fields?: Partial<TraceContexts[N]>, failure?: unknown): void;
}

/**
 * Begins tracing an operation that cannot be wrapped in one promise (a stream read piece by
 * piece): publishes `start` (through `runStores`, so bound stores' transforms run) and `end`
 * now, and `error` / `asyncStart` / `asyncEnd` when the returned trace is ended. Returns
 * `undefined`, without calling `context`, while nobody subscribes.
 *
 * @example
 * ```ts
 * const trace = beginTelemetryTrace("beamclaw:provider.call", () => ({ ref, provider, model, attempt: 1 }));
 * try {
 *   for await (const event of stream) handle(event);
 *   trace?.end({ outcome: "success" });
 * } catch (error) {
 *   trace?.end({ outcome: "error" }, error);
 *   throw error;
 * }
 * ```
 */
export function beginTelemetryTrace<N extends TracedOperation>(
  name: N,
  context: () => TraceStart<N>,
): TelemetryTrace<N> | undefined {
  const channel = telemetryTracingChannel(name);
  if (!channel.hasSubscribers) return undefined;
  const ctx = withoutUndefined(context() as TraceContexts[N]);
  inherit(ctx);
  channel.start.runStores(ctx, () => undefined);
  channel.end.publish(ctx);
  let ended = false;
  return {
    context: ctx,
    end(fields, failure) {
      if (ended) return;
      ended = true;
      if (fields !== undefined) Object.assign(ctx, fields);
      if (failure !== undefined) {
        ctx.error = failure;
        channel.error.publish(ctx);
      }
      channel.asyncStart.publish(ctx);
      channel.asyncEnd.publish(ctx);
    },
  };
}

/** A W3C Trace Context `traceparent`'s fields (see {@link parseTraceparent}). */
export interface Traceparent {
  version: string;
  /** 32 lowercase hex digits, not all zero. */
  traceId: string;
  /** 16 lowercase hex digits, not all zero: the caller's span. */
  spanId: string;
  /** The trace flags, as a number (bit 0: sampled). */
  traceFlags: number;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Parses a W3C Trace Context `traceparent` header value
 * (`00-<trace-id>-<parent-id>-<flags>`), or returns `undefined` for one the specification says
 * to ignore: not a string, longer than 512 characters, not lowercase hex in that layout, the
 * version `ff`, an all-zero trace or parent id, or a version-00 value with anything after its
 * flags (a later version may add fields after them, which are skipped).
 *
 * @example
 * ```ts
 * parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
 * // { version: "00", traceId: "4bf9...4736", spanId: "00f0...02b7", traceFlags: 1 }
 * ```
 */
export function parseTraceparent(value: unknown): Traceparent | undefined {
  if (typeof value !== "string" || value.length > 512) return undefined;
  const match = TRACEPARENT.exec(value);
  if (match === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
    string | undefined,
  ];
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { version, traceId, spanId, traceFlags: Number.parseInt(flags, 16) };
}

const TRACESTATE_KEY =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * Parses a W3C Trace Context `tracestate` header value (vendors' `key=value` entries, comma
 * separated, the most recent first) into its entries, or returns `undefined` for one the
 * specification says to discard: not a string, longer than 8,192 characters, a member that
 * is not `key=value` in the specified characters, a key given twice, or more than 32 members.
 * Empty members (`a=1,,b=2`) are skipped. Several header lines joined with commas (as Node
 * joins them) are one value.
 *
 * @example
 * ```ts
 * parseTracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
 * // [["congo", "t61rcWkgMzE"], ["rojo", "00f067aa0ba902b7"]]
 * ```
 */
export function parseTracestate(value: unknown): Array<[key: string, value: string]> | undefined {
  if (typeof value !== "string" || value.length > 8192) return undefined;
  const entries: Array<[string, string]> = [];
  const keys = new Set<string>();
  for (const raw of value.split(",")) {
    const member = raw.replace(/^[ \t]+|[ \t]+$/g, "");
    if (member === "") continue;
    const eq = member.indexOf("=");
    if (eq === -1) return undefined;
    const key = member.slice(0, eq);
    const item = member.slice(eq + 1);
    if (!TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(item) || keys.has(key)) {
      return undefined;
    }
    keys.add(key);
    entries.push([key, item]);
  }
  return entries.length > 32 ? undefined : entries;
}
