/**
 * A run as server-sent events: `run.toEventStream()` and `run.toResponse()`, what a route
 * handler returns to a browser. Read here as a client reads them (the response body, parsed
 * line by line), over a real runtime.
 */
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";
import type { ModelCallOptions, ModelRequest } from "../src/providers/types.js";
import {
  AgentRuntime,
  EVENT_STREAM_HEADERS,
  type ModelSource,
  type RunEvent,
  type ToolContext,
} from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { activeTimeouts, type Deferred, deferred, waitFor } from "./support.js";

const KEY = "agent:main:main";

/**
 * Answers `answer: <text>` in three chunks; a text starting with `tool` first calls the
 * `wait` tool, which returns when the test releases it.
 */
class Source implements ModelSource {
  async *stream(
    request: Omit<ModelRequest, "model">,
    _options: ModelCallOptions & { models: string[] },
  ): AsyncGenerator<{ type: string; [key: string]: unknown }, void, undefined> {
    const last = request.messages.at(-1);
    const asked = [...request.messages]
      .reverse()
      .find((m) => m.role === "user")
      ?.content.map((p) => (p.type === "text" ? p.text : ""))
      .join("");
    if (asked?.startsWith("tool") === true && last?.role !== "tool") {
      yield { type: "tool-call", toolCallId: "t1", toolName: "wait", input: {} };
      return;
    }
    for (const text of ["answer", ": ", asked ?? ""]) yield { type: "text-delta", text };
    yield { type: "usage", usage: { inputTokens: 4, outputTokens: 3 } };
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(): Promise<{ runtime: AgentRuntime; release: () => Deferred<void> }> {
  // One gate per runtime: the `wait` tool returns once it is open (also if it opened first).
  const gate = deferred<void>();
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  const runtime = new AgentRuntime({
    store,
    models: new Source(),
    agents: [{ id: "main", model: "test/model-1", tools: ["*"] }],
    tools: [
      {
        name: "wait",
        description: "waits for the test",
        inputSchema: { type: "object" },
        execute: async (_input: unknown, context: ToolContext) => {
          await Promise.race([
            gate.promise,
            new Promise((_, reject) =>
              context.signal.addEventListener("abort", () => reject(context.signal.reason)),
            ),
          ]);
          return "waited";
        },
      },
    ],
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return {
    runtime,
    release: () => {
      gate.resolve();
      return gate;
    },
  };
}

interface Frame {
  id?: string;
  data?: string;
  comment?: string;
}

/** Reads an event stream as a client does: frames split at blank lines, fields by line. */
async function* frames(body: ReadableStream<Uint8Array>): AsyncGenerator<Frame> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n")) {
      const frame: Frame = {};
      for (const line of buffer.slice(0, end).split("\n")) {
        if (line.startsWith(": ")) frame.comment = line.slice(2);
        else if (line.startsWith("id: ")) frame.id = line.slice(4);
        else if (line.startsWith("data: ")) frame.data = line.slice(6);
        else throw new Error(`not an SSE line: ${JSON.stringify(line)}`);
      }
      buffer = buffer.slice(end + 2);
      yield frame;
    }
  }
  expect(buffer).toBe("");
}

async function allFrames(body: ReadableStream<Uint8Array>): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const frame of frames(body)) out.push(frame);
  return out;
}

const eventsOf = (list: Frame[]): RunEvent[] =>
  list.filter((f) => f.data !== undefined).map((f) => JSON.parse(f.data!) as RunEvent);

describe("run.toEventStream()", () => {
  it("sends every event of the run, numbered, from run-start to run-end, then ends", async () => {
    const { runtime } = await start();
    const run = await runtime.session(KEY).send("hello");
    const list = await allFrames(run.toEventStream());
    const events = eventsOf(list);
    expect(events.map((e) => e.type)).toEqual([
      "run-start",
      "text-delta",
      "text-delta",
      "text-delta",
      "usage",
      "run-end",
    ]);
    expect(list.map((f) => f.id)).toEqual(["0", "1", "2", "3", "4", "5"]);
    // The same events, in the same order, as iterating the run gives.
    const iterated: RunEvent[] = [];
    for await (const event of run) iterated.push(event);
    expect(events).toEqual(JSON.parse(JSON.stringify(iterated)));
    expect(events.at(-1)).toMatchObject({ type: "run-end", result: { text: "answer: hello" } });
  });

  it("after lastEventId it sends only the later events, keeping their ids", async () => {
    const { runtime } = await start();
    const run = await runtime.session(KEY).send("hello");
    const list = await allFrames(run.toEventStream({ lastEventId: "3" }));
    expect(list.map((f) => f.id)).toEqual(["4", "5"]);
    expect(eventsOf(list).map((e) => e.type)).toEqual(["usage", "run-end"]);
    // No header: everything.
    const again = await allFrames(run.toEventStream({ lastEventId: null }));
    expect(again).toHaveLength(6);
  });

  it("a filter chooses the events; ids stay the run's", async () => {
    const { runtime } = await start();
    const run = await runtime.session(KEY).send("hello");
    const list = await allFrames(
      run.toEventStream({ filter: (event) => event.type !== "text-delta" }),
    );
    expect(list.map((f) => f.id)).toEqual(["0", "4", "5"]);
  });

  it("writes a keepalive comment while the run is quiet, and leaves no timer behind", async () => {
    const { runtime, release } = await start();
    const timersBefore = activeTimeouts();
    const run = await runtime.session(KEY).send("tool please");
    const seen: Frame[] = [];
    const reading = (async () => {
      for await (const frame of frames(run.toEventStream({ keepaliveMs: 20 }))) seen.push(frame);
    })();
    await waitFor("a keepalive while the tool waits", () =>
      seen.some((f) => f.comment === "keepalive"),
    );
    release();
    await reading;
    expect(eventsOf(seen).at(-1)).toMatchObject({
      type: "run-end",
      result: { status: "completed" },
    });
    expect(seen.filter((f) => f.comment !== undefined).every((f) => f.data === undefined)).toBe(
      true,
    );
    await waitFor("the keepalive timer to be cleared", () => activeTimeouts() <= timersBefore);
  });

  it("keepaliveMs 0 writes none", async () => {
    const { runtime, release } = await start();
    const run = await runtime.session(KEY).send("tool please");
    const seen: Frame[] = [];
    const reading = (async () => {
      for await (const frame of frames(run.toEventStream({ keepaliveMs: 0 }))) seen.push(frame);
    })();
    await waitFor("the tool call", () => eventsOf(seen).some((e) => e.type === "tool-call"));
    await new Promise((resolve) => setTimeout(resolve, 60));
    release();
    await reading;
    expect(seen.some((f) => f.comment !== undefined)).toBe(false);
  });

  it("a reader that cancels (the client went away) aborts the run", async () => {
    const { runtime } = await start();
    const timersBefore = activeTimeouts();
    const run = await runtime.session(KEY).send("tool please");
    const reader = run.toEventStream({ keepaliveMs: 10 }).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('"run-start"');
    await reader.cancel();
    expect(await run.result).toMatchObject({ status: "aborted" });
    await waitFor("the keepalive timer to be cleared", () => activeTimeouts() <= timersBefore);
  });

  it("with abortOnCancel false the run goes on without the reader", async () => {
    const { runtime, release } = await start();
    const run = await runtime.session(KEY).send("tool please");
    const reader = run.toEventStream({ abortOnCancel: false }).getReader();
    await reader.read();
    await reader.cancel();
    release();
    expect(await run.result).toMatchObject({ status: "completed", text: "answer: tool please" });
  });

  it("a message that could not run ends the stream with an error event", async () => {
    const { runtime, release } = await start();
    const session = runtime.session(KEY);
    const first = await session.send("tool please");
    const queued = await session.send("second", { queueMode: "followup" });
    expect(queued.disposition).toBe("queued");
    const reading = allFrames(queued.toEventStream());
    // The runtime stops: the queued message stays in the store for the next start, and its
    // handle here ends without a run.
    const stopping = runtime.stop();
    release();
    await stopping;
    await first.result.catch(() => undefined);
    const events = eventsOf(await reading);
    expect(events.at(-1)).toMatchObject({
      type: "error",
      runId: queued.runId,
      sessionKey: KEY,
      error: { code: expect.any(String), message: expect.any(String) },
    });
  });

  it("a queued message of a deleted session ends the stream with its run-end (aborted)", async () => {
    const { runtime, release } = await start();
    const session = runtime.session(KEY);
    const first = await session.send("tool please");
    const queued = await session.send("second", { queueMode: "followup" });
    const reading = allFrames(queued.toEventStream());
    await session.delete();
    release();
    await first.result.catch(() => undefined);
    const events = eventsOf(await reading);
    expect(events.at(-1)).toMatchObject({
      type: "run-end",
      runId: queued.runId,
      result: { status: "aborted", error: { code: "SESSION_DELETED" } },
    });
  });

  it.each([
    [{ keepaliveMs: -1 }, "keepaliveMs must be a whole number"],
    [{ keepaliveMs: 1.5 }, "keepaliveMs must be a whole number"],
    [{ lastEventId: "abc" }, "lastEventId must be the id of an event"],
    [{ lastEventId: -2 }, "lastEventId must be the id of an event"],
    [{ lastEventId: "1e3" }, "lastEventId must be the id of an event"],
    [{ filter: "text-delta" }, "filter must be a function"],
  ])("refuses %j with InvalidArgumentError before reading the run", async (options, message) => {
    const { runtime } = await start();
    const run = await runtime.session(KEY).send("hello");
    const make = () => run.toEventStream(options as never);
    expect(make).toThrow(InvalidArgumentError);
    expect(make).toThrow(message);
    // The run was not touched: it completes, and can still be streamed.
    expect(await run.result).toMatchObject({ status: "completed" });
    expect(eventsOf(await allFrames(run.toEventStream()))).toHaveLength(6);
  });
});

describe("run.toResponse()", () => {
  it("answers 200 text/event-stream that no cache, compressor or proxy buffers", async () => {
    const { runtime } = await start();
    const run = await runtime.session(KEY).send("hello");
    const response = run.toResponse();
    expect(response.status).toBe(200);
    expect(Object.fromEntries(response.headers)).toEqual(EVENT_STREAM_HEADERS);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(eventsOf(await allFrames(response.body!)).at(-1)?.type).toBe("run-end");
  });

  it("takes extra headers and a status; refuses a status that is not an HTTP one", async () => {
    const { runtime } = await start();
    const run = await runtime.session(KEY).send("hello");
    const response = run.toResponse({ status: 201, headers: { "x-run-id": run.runId } });
    expect(response.status).toBe(201);
    expect(response.headers.get("x-run-id")).toBe(run.runId);
    expect(response.headers.get("cache-control")).toBe("no-cache, no-transform");
    await allFrames(response.body!);
    expect(() => run.toResponse({ status: 99 })).toThrow(InvalidArgumentError);
  });
});

describe("the README's route handler", () => {
  it("answers a fetch Request with the run's event stream; aborting the request aborts the run", async () => {
    const { runtime } = await start();
    // As printed in packages/core/README.md.
    async function POST(request: Request) {
      const { sessionKey, text } = (await request.json()) as { sessionKey: string; text: string };
      const run = await runtime.session(sessionKey).send(text, { signal: request.signal });
      return run.toResponse();
    }
    const ask = (text: string, signal?: AbortSignal) =>
      POST(
        new Request("http://127.0.0.1/api/chat", {
          method: "POST",
          body: JSON.stringify({ sessionKey: KEY, text }),
          ...(signal === undefined ? {} : { signal }),
        }),
      );
    const response = await ask("hello");
    expect(eventsOf(await allFrames(response.body!)).at(-1)).toMatchObject({
      type: "run-end",
      result: { status: "completed", text: "answer: hello" },
    });
    const client = new AbortController();
    const waiting = await ask("tool please", client.signal);
    const reader = waiting.body!.getReader();
    await reader.read();
    client.abort();
    await reader.cancel();
    const info = await waitFor("the run to end", async () => {
      const status = await runtime.session(KEY).info();
      return status.activeRunId === undefined ? status : undefined;
    });
    expect(info.metadata.runs).toBe(2);
  });
});
