/**
 * W3C trace context across real cluster nodes, against the real Redis: two node processes
 * (`fixtures/cluster-node.mjs` with CLUSTER_TRACE, each with its own OpenTelemetry bridge and
 * tracer, as two deployed gateways would have), a message sent with a caller's `traceparent`,
 * whose run calls `spawn_subagent`. The placement puts the sub-agent's session on the node
 * that does not hold the spawning session, so its run's span is recorded by another process,
 * and the only thing relating it to the spawn is the trace context that travelled with the
 * task through Redis: it must be the spawn call's child, in the caller's trace. A later
 * message to the sub-agent's session starts its own trace there, linked to the spawn call's
 * span, which the session's record keeps.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ClusterNodeProcess, infoOf, type SpanInfo, spansOf, stopAll } from "./support/cluster.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";
const CALLER = `00-${TRACE_ID}-${CALLER_SPAN}-01`;

const prefixes: string[] = [];
afterEach(async () => {
  await stopAll();
  await deletePrefixes(prefixes.splice(0));
});

const isSubagentRun = (span: SpanInfo) =>
  span.name === "beamclaw.session.run" &&
  String(span.attributes["beamclaw.session"]).includes(":subagent:");

describe("a sub-agent run on another node", () => {
  it("is the spawn call's child, in the caller's trace; a later one is linked to the call", async () => {
    const prefix = uniquePrefix("trace-cross-node");
    prefixes.push(prefix);
    const [a, b] = await Promise.all(
      ["node-a", "node-b"].map((nodeId) =>
        ClusterNodeProcess.start({
          redisUrl: REDIS_URL,
          prefix,
          nodeId,
          env: { CLUSTER_TRACE: "1" },
        }),
      ),
    );
    await waitUntil("both nodes to see each other", async () =>
      (await Promise.all([a!, b!].map(infoOf))).every((info) => info.members.length === 2),
    );

    const sent = await a!.send("agent:boss:main", "spawn: TASK", undefined, CALLER);
    expect(sent.kind).toBe("accepted");
    if (sent.kind !== "accepted") return;
    expect(await sent.result).toMatchObject({ kind: "result", status: "completed" });

    // Each node's spans, once the sub-agent's run has ended on one of them.
    let spans: SpanInfo[][] = [];
    await waitUntil(
      "the sub-agent's run span",
      async () => {
        spans = await Promise.all([a!, b!].map(spansOf));
        return spans.flat().some(isSubagentRun);
      },
      15_000,
    );
    const holder = (match: (span: SpanInfo) => boolean) => spans.findIndex((s) => s.some(match));
    const isSpawn = (span: SpanInfo) =>
      span.name === "beamclaw.tool.run" && span.attributes["beamclaw.tool"] === "spawn_subagent";
    const spawnNode = holder(isSpawn);
    const childNode = holder(isSubagentRun);
    expect(spawnNode).not.toBe(-1);
    // The two runs were recorded by different processes.
    expect(childNode).not.toBe(spawnNode);

    const spawn = spans[spawnNode]!.find(isSpawn)!;
    const parentRun = spans[spawnNode]!.find(
      (s) =>
        s.name === "beamclaw.session.run" && s.attributes["beamclaw.session"] === "agent:boss:main",
    )!;
    const child = spans[childNode]!.find(isSubagentRun)!;
    // The parent run joined the caller's trace as the remote span's child...
    expect(parentRun).toMatchObject({
      traceId: TRACE_ID,
      parentSpanId: CALLER_SPAN,
      parentIsRemote: true,
    });
    expect(spawn.traceId).toBe(TRACE_ID);
    // ...and the sub-agent's run, on the other node, is the spawn call's remote child.
    expect(child).toMatchObject({
      traceId: TRACE_ID,
      parentSpanId: spawn.spanId,
      parentIsRemote: true,
    });

    // A later message to the sub-agent (through the spawning node): its run, where the
    // session lives, starts a trace of its own with a link to the spawn call's span.
    const childKey = String(child.attributes["beamclaw.session"]);
    const later = await a!.send(childKey, "later");
    expect(later.kind).toBe("accepted");
    if (later.kind !== "accepted") return;
    expect(await later.result).toMatchObject({ kind: "result", status: "completed" });
    const isLaterRun = (span: SpanInfo) =>
      span.name === "beamclaw.session.run" && span.attributes["beamclaw.run"] === later.runId;
    await waitUntil("the later run's span", async () => {
      spans = await Promise.all([a!, b!].map(spansOf));
      return spans.flat().some(isLaterRun);
    });
    const laterNode = holder(isLaterRun);
    expect(laterNode).toBe(childNode);
    const laterRun = spans[laterNode]!.find(isLaterRun)!;
    expect(laterRun.parentSpanId).toBeUndefined();
    expect(laterRun.traceId).not.toBe(TRACE_ID);
    expect(laterRun.links).toEqual([{ traceId: TRACE_ID, spanId: spawn.spanId }]);
  });
});
