import { describe, expect, it } from "vitest";
import { parseSseJson, readSse, type SseEvent, SseParser } from "../src/sse.js";

const context = { provider: "test", model: "m" };

function parseAll(text: string): SseEvent[] {
  const parser = new SseParser();
  return [...parser.push(text), ...parser.end()];
}

function bytesStream(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      const part = parts[i++];
      if (part === undefined) controller.close();
      else controller.enqueue(part);
    },
  });
}

async function readAll(
  parts: Uint8Array[],
  options: { idleTimeoutMs?: number } = {},
): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of readSse(bytesStream(parts), { context, ...options })) {
    events.push(event);
  }
  return events;
}

const ev = (data: string, event?: string, id?: string): SseEvent => ({ data, event, id });

describe("SseParser", () => {
  it("joins the data lines of one event with a newline", () => {
    expect(parseAll("data: first\ndata: second\ndata:third\n\n")).toEqual([
      ev("first\nsecond\nthird"),
    ]);
  });

  it("ignores comment lines, such as keep-alives", () => {
    expect(parseAll(": keep-alive\n\n:\ndata: x\n: inside\n\n")).toEqual([ev("x")]);
  });

  it("accepts CRLF, LF and lone CR line ends, mixed", () => {
    expect(parseAll("data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\n")).toEqual([
      ev("a"),
      ev("b"),
      ev("c"),
      ev("d"),
    ]);
  });

  it("reads the event name and id, and resets the name after each event", () => {
    expect(parseAll("event: ping\nid: 7\ndata: {}\n\ndata: next\n\n")).toEqual([
      ev("{}", "ping", "7"),
      ev("next", undefined, "7"),
    ]);
  });

  it("strips exactly one space after the colon", () => {
    expect(parseAll("data:  two spaces\n\ndata:none\n\n")).toEqual([ev(" two spaces"), ev("none")]);
  });

  it("dispatches nothing for an event without data lines", () => {
    expect(parseAll("event: nothing\n\nretry: 1000\n\nid: 1\n\n")).toEqual([]);
  });

  it("dispatches an event with a non-standard error line and no data as an error event", () => {
    // llama.cpp servers built before late 2025 (ggml-org/llama.cpp#16109).
    expect(parseAll('error: {"code":400}\n\ndata: [DONE]\n\n')).toEqual([
      ev('{"code":400}', "error"),
      ev("[DONE]"),
    ]);
    // Beside data lines, the data is the event, as the standard has it.
    expect(parseAll("error: ignored\ndata: x\n\n")).toEqual([ev("x")]);
  });

  it("treats a line without a colon as a field name with an empty value", () => {
    expect(parseAll("data\n\n")).toEqual([ev("")]);
  });

  it("discards an event the stream ended in the middle of", () => {
    expect(parseAll('data: {"complete":true}\n\ndata: {"cut')).toEqual([ev('{"complete":true}')]);
    expect(parseAll("data: no blank line after\n")).toEqual([]);
  });

  it("a CR at the end of a chunk waits for the next chunk to know whether LF follows", () => {
    const parser = new SseParser();
    expect(parser.push("data: a\r")).toEqual([]);
    expect(parser.push("\n\r")).toEqual([]);
    expect(parser.push("\ndata: b\r\r")).toEqual([ev("a")]);
    expect(parser.end()).toEqual([ev("b")]);
  });
});

describe("readSse", () => {
  const text =
    '\uFEFF: hello\r\nevent: message_start\r\ndata: {"text":"naïve 日本 🙂"}\r\n\r\n' +
    "data: line one\ndata: line two\n\n:comment\rdata: [DONE]\r\r";
  const expected = [
    ev('{"text":"naïve 日本 🙂"}', "message_start"),
    ev("line one\nline two"),
    ev("[DONE]"),
  ];
  const bytes = new TextEncoder().encode(text);

  it("strips a byte-order mark and parses a whole body in one chunk", async () => {
    expect(await readAll([bytes])).toEqual(expected);
  });

  it("gives the same events wherever one chunk boundary falls, even inside a UTF-8 character or CRLF", async () => {
    for (let cut = 1; cut < bytes.length; cut++) {
      const events = await readAll([bytes.slice(0, cut), bytes.slice(cut)]);
      expect(events, `split at byte ${cut}`).toEqual(expected);
    }
  });

  it("gives the same events when every byte arrives alone", async () => {
    const parts = Array.from(bytes, (byte) => Uint8Array.of(byte));
    expect(await readAll(parts)).toEqual(expected);
  });

  it("a stream error while reading is a retryable network ProviderError", async () => {
    let pulls = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulls++ === 0) controller.enqueue(new TextEncoder().encode("data: a\n\n"));
        else
          controller.error(new TypeError("terminated", { cause: new Error("other side closed") }));
      },
    });
    const seen: string[] = [];
    const failure = await (async () => {
      for await (const event of readSse(body, { context })) seen.push(event.data);
    })().catch((e: unknown) => e);
    expect(seen).toEqual(["a"]);
    expect(failure).toMatchObject({ code: "PROVIDER_ERROR", kind: "network", isRetryable: true });
    expect((failure as Error).message).toContain("other side closed");
  });

  it("a read that waits longer than idleTimeoutMs fails as a retryable timeout and cancels the body", async () => {
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("data: a\n\n"));
      },
      cancel() {
        cancelled = true;
      },
    });
    const seen: string[] = [];
    const failure = await (async () => {
      for await (const event of readSse(body, { context, idleTimeoutMs: 40 })) {
        seen.push(event.data);
      }
    })().catch((e: unknown) => e);
    expect(seen).toEqual(["a"]);
    expect(failure).toMatchObject({ code: "PROVIDER_ERROR", kind: "timeout", isRetryable: true });
    expect((failure as Error).message).toMatch(/40 ms/);
    expect(cancelled).toBe(true);
  });

  it("time the consumer spends between reads does not count against idleTimeoutMs", async () => {
    const chunks = ["data: a\n\n", "data: b\n\n", "data: c\n\n"];
    let pulls = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const chunk = chunks[pulls++];
        if (chunk === undefined) controller.close();
        else controller.enqueue(new TextEncoder().encode(chunk));
      },
    });
    const seen: string[] = [];
    for await (const event of readSse(body, { context, idleTimeoutMs: 30 })) {
      seen.push(event.data);
      // The consumer is slower than the idle limit; the server is not.
      await new Promise((resolve) => setTimeout(resolve, 80));
    }
    expect(seen).toEqual(["a", "b", "c"]);
  });

  it("a body that ends normally leaves no idle timer behind", async () => {
    const countTimers = () =>
      process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const timersBefore = countTimers();
    const events = await readAll([new TextEncoder().encode("data: a\n\ndata: b\n\n")], {
      idleTimeoutMs: 60_000,
    });
    expect(events.map((e) => e.data)).toEqual(["a", "b"]);
    expect(countTimers()).toBe(timersBefore);
  });
});

describe("parseSseJson", () => {
  it("parses an event's data as JSON", () => {
    expect(parseSseJson(ev('{"a":[1,2]}'), context)).toEqual({ a: [1, 2] });
  });

  it("reports data that is not JSON as malformed_stream, not retryable, naming the event", () => {
    let failure: unknown;
    try {
      parseSseJson(ev("{oops", "content_block_delta"), context);
    } catch (error) {
      failure = error;
    }
    expect(failure).toMatchObject({
      code: "PROVIDER_ERROR",
      kind: "malformed_stream",
      isRetryable: false,
      provider: "test",
      model: "m",
      responseBody: "{oops",
    });
    expect((failure as Error).message).toContain('"content_block_delta"');
  });
});
