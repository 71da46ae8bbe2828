/**
 * A message to a stdio server larger than its pipe takes is written as the server reads it:
 * `send()` settles once it is all written, or, when the server stops reading and exits first,
 * fails (it used to wait for a "drain" that never came). Real child processes.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ProcessGroupStdioTransport } from "../src/stdio-transport.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A request of 8 MiB: far more than a pipe holds. */
const BIG = {
  jsonrpc: "2.0" as const,
  id: 1,
  method: "tools/call",
  params: { name: "echo", arguments: { text: "a".repeat(8 * 1024 * 1024) } },
};

/** A transport over `node -e script`, started; `closed` resolves when it has closed. */
async function started(script: string) {
  const transport = new ProcessGroupStdioTransport({
    command: process.execPath,
    args: ["-e", script],
  });
  const closed = new Promise<void>((resolve) => {
    transport.onclose = resolve;
  });
  const errors: Error[] = [];
  transport.onerror = (error) => errors.push(error);
  cleanups.push(() => transport.close());
  await transport.start();
  return { transport, closed, errors };
}

/** What `promise` has come to by the next turn of the event loop: its value, or "pending". */
function settled<T>(promise: Promise<T>): Promise<T | "pending"> {
  return Promise.race([promise, new Promise<"pending">((r) => setImmediate(() => r("pending")))]);
}

describe("send() of a message larger than the pipe", () => {
  it("fails, instead of waiting forever, when the server stops reading and exits", async () => {
    // Reads one chunk of its stdin, then exits with the rest of the message unread.
    const { transport, closed } = await started(
      'process.stdin.once("data", () => process.exit(3));',
    );
    const outcome = transport.send(BIG).then(
      () => "written",
      (error: Error) => error.message,
    );
    await closed;
    expect(await settled(outcome)).toMatch(/^a message to the server was not written: /);
  });

  it("resolves once a server that reads it all has it", async () => {
    const { transport } = await started(
      'let n = 0; process.stdin.on("data", (c) => { n += c.length; if (c.includes(10)) process.stdout.write(JSON.stringify({ jsonrpc: "2.0", id: 1, result: { bytes: n } }) + "\\n"); });',
    );
    const answer = new Promise((resolve) => {
      transport.onmessage = resolve;
    });
    await expect(transport.send(BIG)).resolves.toBeUndefined();
    expect(await answer).toMatchObject({ id: 1, result: { bytes: expect.any(Number) } });
  });
});
