/**
 * An event stream whose reader cancels (the client went away, or reconnects with
 * `Last-Event-ID`) lets go of the run at once, even while the run is quiet: it does not keep
 * a reader waiting on the run's next event.
 */
import { describe, expect, it } from "vitest";
import { type RunEvent, runEventStream, type StreamableRun } from "../src/sessions/index.js";

/** A run that has started and then stays quiet; it records what its readers do. */
function quietRun() {
  const calls = { next: 0, return: 0, abort: 0 };
  const start: RunEvent = {
    runId: "r1",
    sessionKey: "agent:main:main",
    type: "run-start",
    agentId: "main",
    at: 0,
    input: [{ text: "hi" }],
  };
  const run: StreamableRun = {
    runId: "r1",
    sessionKey: "agent:main:main",
    abort: async () => {
      calls.abort++;
      return true;
    },
    [Symbol.asyncIterator]() {
      let sent = false;
      let release: ((result: IteratorResult<RunEvent>) => void) | undefined;
      return {
        next(): Promise<IteratorResult<RunEvent>> {
          calls.next++;
          if (!sent) {
            sent = true;
            return Promise.resolve({ done: false, value: start });
          }
          return new Promise((resolve) => {
            release = resolve;
          });
        },
        return(): Promise<IteratorResult<RunEvent>> {
          calls.return++;
          release?.({ done: true, value: undefined });
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
  return { run, calls };
}

describe("runEventStream cancelled while the run is quiet", () => {
  it("releases its reader of the run at once (abortOnCancel false: the run goes on)", async () => {
    const { run, calls } = quietRun();
    const reader = runEventStream(run, { abortOnCancel: false, keepaliveMs: 0 }).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('"run-start"');
    // The stream waits on the run's next event now.
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls.next).toBe(2);
    await reader.cancel();
    expect(calls.return).toBe(1);
    expect(calls.abort).toBe(0);
  });

  it("releases it and aborts the run by default", async () => {
    const { run, calls } = quietRun();
    const reader = runEventStream(run, { keepaliveMs: 0 }).getReader();
    await reader.read();
    await reader.cancel();
    expect(calls.return).toBe(1);
    expect(calls.abort).toBe(1);
  });
});
