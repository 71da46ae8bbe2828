/**
 * W3C Trace Context across processes: a message sent with `SendOptions.traceparent` (the
 * caller's span: an HTTP request's, a gateway frame's, another node's) is run as part of that
 * trace: its run's trace context carries it, and the OpenTelemetry bridge makes the run's span
 * that remote span's child. It is kept with the message in the durable queue, so a replay (or
 * the node that takes the message from the queue) joins the same trace. A `spawn_subagent`
 * call sends its own span's `traceparent` with the sub-agent's task, so a sub-agent run on
 * another node joins the spawning trace. Bad values are refused before anything is queued.
 */
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { describe, expect, it, onTestFinished } from "vitest";
import { startOtelBridge } from "../src/otel/index.js";
import type { JsonObject } from "../src/providers/types.js";
import type { MemoryStore } from "../src/store/memory-store.js";
import {
  parseTraceparent,
  parseTracestate,
  type SessionRunTrace,
  subscribeTrace,
} from "../src/telemetry.js";
import * as fx from "./fixtures/subagents.js";
import { waitFor } from "./support.js";

const { newStore, startRuntime } = fx.useRuntimes();

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID = "00f067aa0ba902b7";
const CALLER = `00-${TRACE_ID}-${SPAN_ID}-01`;
const STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

function bridged(): InMemorySpanExporter {
  const exporter = new InMemorySpanExporter();
  const processor = new SimpleSpanProcessor(exporter);
  const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("traceparent");
  const bridge = startOtelBridge({ tracer });
  onTestFinished(async () => {
    bridge.stop();
    await processor.shutdown();
  });
  return exporter;
}

/** The `beamclaw:session.run` trace contexts seen until the test ends. */
function recordRuns(): SessionRunTrace[] {
  const runs: SessionRunTrace[] = [];
  const off = subscribeTrace("beamclaw:session.run", { start: (c) => runs.push(c) });
  onTestFinished(off);
  return runs;
}

const answers: fx.Brain = () => [fx.text("hello"), { type: "finish", reason: "stop" }];

async function runtimeOn(store: MemoryStore, brain: fx.Brain = answers) {
  return startRuntime({
    store,
    models: new fx.BrainSource(brain),
    agents: [{ id: "boss", model: "test/boss", subagents: {} }],
  });
}

const runSpans = (spans: ReadableSpan[]) => spans.filter((s) => s.name === "beamclaw.session.run");

describe("SendOptions.traceparent", () => {
  it("makes the run's span a child of the caller's span, in its trace", async () => {
    const exporter = bridged();
    const runs = recordRuns();
    const runtime = await runtimeOn(await newStore());
    const session = runtime.session("agent:boss:main");
    const traced = await session.send("hi", { traceparent: CALLER });
    expect((await traced.result).status).toBe("completed");
    const plain = await session.send("again");
    expect((await plain.result).status).toBe("completed");

    const spans = exporter.getFinishedSpans();
    const [joined, own] = [traced, plain].map(
      (run) => runSpans(spans).find((s) => s.attributes["beamclaw.run"] === run.runId)!,
    );
    expect(joined!.spanContext().traceId).toBe(TRACE_ID);
    expect(joined!.parentSpanContext).toMatchObject({ spanId: SPAN_ID, isRemote: true });
    // A message sent without one starts its own trace, as before.
    expect(own!.parentSpanContext).toBeUndefined();
    expect(own!.spanContext().traceId).not.toBe(TRACE_ID);
    expect(runs.map((r) => r.traceparent)).toEqual([CALLER, undefined]);
  });

  it("carries the caller's tracestate on the remote parent, and so on the run's span", async () => {
    const exporter = bridged();
    const runs = recordRuns();
    const runtime = await runtimeOn(await newStore());
    const run = await runtime
      .session("agent:boss:main")
      .send("hi", { traceparent: CALLER, tracestate: STATE });
    expect((await run.result).status).toBe("completed");
    const [span] = runSpans(exporter.getFinishedSpans());
    expect(span!.parentSpanContext?.traceState?.serialize()).toBe(STATE);
    expect(span!.spanContext().traceState?.get("rojo")).toBe("00f067aa0ba902b7");
    expect(runs.map((r) => r.tracestate)).toEqual([STATE]);
  });

  it("follows the caller's sampling decision (flags 00: not recorded)", async () => {
    const exporter = bridged();
    const runtime = await runtimeOn(await newStore());
    const run = await runtime
      .session("agent:boss:main")
      .send("hi", { traceparent: `00-${TRACE_ID}-${SPAN_ID}-00` });
    expect((await run.result).status).toBe("completed");
    expect(exporter.getFinishedSpans()).toEqual([]);
  });

  it("is kept with the queued message: a replay of it joins the same trace", async () => {
    const exporter = bridged();
    const store = await newStore();
    // Accepted by a process that went before running it (or by another node).
    await store.queue.enqueue({
      idempotencyKey: "from-elsewhere",
      sessionKey: "agent:boss:main",
      payload: {
        input: { text: "hi" },
        options: { traceparent: CALLER },
        runId: "run-elsewhere",
      } as JsonObject,
    });
    await runtimeOn(store);
    await waitFor("the replayed run's span", () =>
      runSpans(exporter.getFinishedSpans()).some(
        (s) => s.attributes["beamclaw.run"] === "run-elsewhere",
      ),
    );
    const span = runSpans(exporter.getFinishedSpans()).find(
      (s) => s.attributes["beamclaw.run"] === "run-elsewhere",
    )!;
    expect(span.spanContext().traceId).toBe(TRACE_ID);
    expect(span.parentSpanContext?.spanId).toBe(SPAN_ID);
  });

  it("refuses a value that is not a traceparent, queueing nothing", async () => {
    const store = await newStore();
    const runtime = await runtimeOn(store);
    const session = runtime.session("agent:boss:main");
    const bad: unknown[] = [
      "nonsense",
      42,
      `00-${TRACE_ID.toUpperCase()}-${SPAN_ID}-01`,
      `00-${"0".repeat(32)}-${SPAN_ID}-01`,
      `00-${TRACE_ID}-${"0".repeat(16)}-01`,
      `ff-${TRACE_ID}-${SPAN_ID}-01`,
      `00-${TRACE_ID}-${SPAN_ID}-01-extra`,
      `00-${TRACE_ID}-${SPAN_ID}`,
    ];
    for (const traceparent of bad) {
      await expect(
        session.send("hi", { traceparent: traceparent as string }),
        String(traceparent),
      ).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: /traceparent must be/ });
    }
    for (const options of [
      { tracestate: STATE },
      { traceparent: CALLER, tracestate: "no equals sign" },
      { traceparent: CALLER, tracestate: "Upper=1" },
      { traceparent: CALLER, tracestate: "a=1,a=2" },
      { traceparent: CALLER, tracestate: 7 },
    ]) {
      await expect(
        session.send("hi", options as { traceparent?: string; tracestate?: string }),
        JSON.stringify(options),
      ).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: /tracestate/ });
    }
    expect(await store.queue.pending()).toEqual([]);
  });
});

describe("parseTracestate", () => {
  it("reads the entries of a valid value and refuses what the specification discards", () => {
    expect(parseTracestate(STATE)).toEqual([
      ["congo", "t61rcWkgMzE"],
      ["rojo", "00f067aa0ba902b7"],
    ]);
    // Optional whitespace and empty members, and a multi-tenant key.
    expect(parseTracestate(" a=1 ,, tenant1@sys=x y ,")).toEqual([
      ["a", "1"],
      ["tenant1@sys", "x y"],
    ]);
    expect(parseTracestate("")).toEqual([]);
    const many = Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(",");
    for (const bad of ["a", "a=", "a=1,a=2", "A=1", "a=b=c", many]) {
      expect(parseTracestate(bad), bad).toBeUndefined();
    }
    expect(parseTracestate(Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(","))).toHaveLength(
      32,
    );
    expect(parseTracestate(null)).toBeUndefined();
  });
});

describe("parseTraceparent", () => {
  it("reads the fields of a valid value and skips a later version's extra fields", () => {
    expect(parseTraceparent(CALLER)).toEqual({
      version: "00",
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      traceFlags: 1,
    });
    expect(parseTraceparent(`cc-${TRACE_ID}-${SPAN_ID}-03-what-comes-later`)).toEqual({
      version: "cc",
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      traceFlags: 3,
    });
    expect(parseTraceparent(`${CALLER} `)).toBeUndefined();
    expect(parseTraceparent(`cc-${TRACE_ID}-${SPAN_ID}-03-${"x".repeat(600)}`)).toBeUndefined();
    expect(parseTraceparent(undefined)).toBeUndefined();
  });
});

/**
 * The payloads of the messages sent to sub-agent sessions, and a runtime whose main session
 * spawns one sub-agent (task "TASK") when sent "go".
 */
async function spawning() {
  const store = await newStore();
  const enqueue = store.queue.enqueue.bind(store.queue);
  const sent: JsonObject[] = [];
  const keys: string[] = [];
  store.queue.enqueue = (message) => {
    if (message.sessionKey.includes(":subagent:")) {
      sent.push(message.payload as JsonObject);
      keys.push(message.sessionKey);
    }
    return enqueue(message);
  };
  const spawner: fx.Brain = (call) => {
    const first = fx.firstUser(call.request.messages) ?? "";
    if (first !== "go") return [fx.text(`done: ${first}`), { type: "finish", reason: "stop" }];
    if (call.request.messages.at(-1)!.role === "tool") {
      return [fx.text("parent done"), { type: "finish", reason: "stop" }];
    }
    return [
      fx.toolCall("s1", "spawn_subagent", { task: "TASK" }),
      { type: "finish", reason: "tool-calls" },
    ];
  };
  return { sent, keys, store, runtime: await runtimeOn(store, spawner) };
}

describe("a spawn_subagent call", () => {
  it("sends its span's traceparent with the sub-agent's task, kept with the queued message", async () => {
    const exporter = bridged();
    const { sent, keys, store, runtime } = await spawning();
    const run = await runtime
      .session("agent:boss:main")
      .send("go", { traceparent: CALLER, tracestate: STATE });
    expect((await run.result).status).toBe("completed");

    const spans = exporter.getFinishedSpans();
    const spawn = spans.find((s) => s.name === "beamclaw.tool.run")!;
    const { traceId, spanId } = spawn.spanContext();
    expect(traceId).toBe(TRACE_ID);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.options).toMatchObject({
      traceparent: `00-${traceId}-${spanId}-01`,
      tracestate: STATE,
    });
    // The sub-agent's run (here, on this node) is the call's child, in the caller's trace.
    const child = runSpans(spans).find((s) =>
      String(s.attributes["beamclaw.session"]).includes(":subagent:"),
    )!;
    expect(child.parentSpanContext?.spanId).toBe(spanId);
    expect(child.spanContext().traceId).toBe(TRACE_ID);
    // The sub-agent's session keeps the call's span, for its later runs anywhere.
    expect(keys).toEqual([child.attributes["beamclaw.session"]]);
    expect((await store.sessions.get(keys[0]!))?.parentTraceparent).toBe(
      `00-${traceId}-${spanId}-01`,
    );
  });

  it("sends none when no tracer gave its call a span", async () => {
    const { sent, keys, store, runtime } = await spawning();
    const run = await runtime.session("agent:boss:main").send("go");
    expect((await run.result).status).toBe("completed");
    expect(sent).toHaveLength(1);
    expect(sent[0]!.options).not.toHaveProperty("traceparent");
    const child = await store.sessions.get(keys[0]!);
    expect(child?.parentKey).toBe("agent:boss:main");
    expect(child).not.toHaveProperty("parentTraceparent");
  });
});

describe("a later run of a sub-agent session spawned elsewhere", () => {
  const SPAWN_SPAN = "b7ad6b7169203331";
  /** A sub-agent session made by a spawn this process never saw (another node's). */
  async function spawnedElsewhere(parentTraceparent: string) {
    const store = await newStore();
    const key = "agent:boss:subagent:3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
    await store.sessions.put({
      key,
      agentId: "boss",
      createdAt: 1,
      updatedAt: 1,
      parentKey: "agent:boss:main",
      parentRunId: "run-elsewhere",
      parentTraceparent,
    });
    return { key, runtime: await runtimeOn(store) };
  }

  it("starts its own trace, linked to the spawn call's span its session keeps", async () => {
    const exporter = bridged();
    const runs = recordRuns();
    const { key, runtime } = await spawnedElsewhere(`00-${TRACE_ID}-${SPAWN_SPAN}-01`);
    const run = await runtime.session(key).send("later");
    expect((await run.result).status).toBe("completed");
    const [span] = runSpans(exporter.getFinishedSpans());
    expect(span!.parentSpanContext).toBeUndefined();
    expect(span!.spanContext().traceId).not.toBe(TRACE_ID);
    expect(span!.links.map((l) => l.context)).toEqual([
      { traceId: TRACE_ID, spanId: SPAWN_SPAN, traceFlags: 1, isRemote: true },
    ]);
    expect(span!.attributes["beamclaw.parent_run"]).toBe("run-elsewhere");
    expect(runs.map((r) => r.parentTraceparent)).toEqual([`00-${TRACE_ID}-${SPAWN_SPAN}-01`]);
  });

  it("is a child, not a link, when its message comes with a traceparent", async () => {
    const exporter = bridged();
    const { key, runtime } = await spawnedElsewhere(`00-${TRACE_ID}-${SPAWN_SPAN}-01`);
    const run = await runtime.session(key).send("later", { traceparent: CALLER });
    expect((await run.result).status).toBe("completed");
    const [span] = runSpans(exporter.getFinishedSpans());
    expect(span!.parentSpanContext?.spanId).toBe(SPAN_ID);
    expect(span!.links).toEqual([]);
  });

  it("is not linked to a malformed kept value", async () => {
    const exporter = bridged();
    const { key, runtime } = await spawnedElsewhere("not a traceparent");
    const run = await runtime.session(key).send("later");
    expect((await run.result).status).toBe("completed");
    const [span] = runSpans(exporter.getFinishedSpans());
    expect(span!.parentSpanContext).toBeUndefined();
    expect(span!.links).toEqual([]);
  });
});
