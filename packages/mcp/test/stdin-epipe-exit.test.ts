/**
 * A stdio server that has exited, written to before its exit is seen: the write fails with
 * EPIPE, and the server is reported by its exit (`exited with code 3`), as one whose stdout
 * closed as it exited is. Before the fix the EPIPE was taken for a server that closed its stdin
 * and runs on (`was stopped: its stdin closed while it ran (write EPIPE)`), and a send waiting
 * for "drain" failed with `its stdin failed (write EPIPE)`. Real child processes.
 *
 * Each test waits, with the event loop held, until the server has exited (its pipes closed, its
 * exit not yet read): then the write meets EPIPE before the transport can have seen the exit,
 * on any machine, however loaded.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { ProcessGroupStdioTransport } from "../src/stdio-transport.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const PING: JSONRPCMessage = { jsonrpc: "2.0", id: 1, method: "ping" };

/** A ping of 8 MiB: far more than a pipe holds, so its `send` waits for "drain". */
const BIG_PING: JSONRPCMessage = { ...PING, id: 2, params: { pad: "a".repeat(8 << 20) } };

/**
 * A started transport over a server that reads its first chunk of stdin (a whole small
 * message) and exits with code 3; `closed` resolves when the transport has closed, `errors`
 * holds what its `onerror` got.
 */
async function startExitingServer() {
  const errors: Error[] = [];
  let closedNow: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    closedNow = resolve;
  });
  const transport = new ProcessGroupStdioTransport({
    command: process.execPath,
    args: ["-e", 'process.stdin.once("data", () => process.exit(3));'],
  });
  Object.assign(transport, {
    onclose: () => closedNow(),
    onerror: (error: Error) => errors.push(error),
  });
  cleanups.push(() => transport.close());
  await transport.start();
  const pid = transport.pid as number;
  cleanups.push(() => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone (or a zombie this process reaps)
    }
  });
  return { transport, pid, closed, errors };
}

/**
 * Whether child `pid` has exited, every thread of it, and is not yet reaped: its group leader
 * a zombie and no other thread left (a leader shows `Z` while its other threads still exit,
 * holding its pipes open). Read in `/proc` (Linux, where these tests run).
 */
function exitedUnreaped(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state === "Z" && readdirSync(`/proc/${pid}/task`).length === 1;
}

/**
 * Blocks the event loop until child `pid` has exited and is not yet reaped (only this
 * process's event loop reaps it, and it is held here), sleeping 5 ms between looks. Throws
 * after 30 s rather than hang.
 */
function holdUntilExited(pid: number): void {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 30_000;
  while (!exitedUnreaped(pid)) {
    if (Date.now() > deadline) throw new Error(`process ${pid} did not exit`);
    Atomics.wait(nap, 0, 0, 5);
  }
}

describe("a write to a stdio server that has exited (EPIPE) before its exit is seen", () => {
  it("reports the server by its exit code, not as a closed stdin", async () => {
    const { transport, pid, closed, errors } = await startExitingServer();
    await transport.send(PING); // its first read: then it exits
    holdUntilExited(pid);
    // Written with the exit unread: the pipe has no reader (EPIPE).
    const second = transport.send({ ...PING, id: 2 }).then(
      () => "written",
      (error: Error) => error.message,
    );
    await closed;
    expect(transport.exitReason).toBe("exited with code 3");
    expect(errors.map((error) => (error as NodeJS.ErrnoException).code)).toEqual(["EPIPE"]);
    expect(await second).toBe(
      "a message to the server was not written: the server exited with code 3",
    );
  });

  it("fails a send that waits for drain, larger than the pipe, with the server's exit", async () => {
    const { transport, pid, closed } = await startExitingServer();
    await transport.send(PING);
    holdUntilExited(pid);
    const big = transport.send(BIG_PING).then(
      () => "written",
      (error: Error) => error.message,
    );
    await closed;
    expect(await big).toBe(
      "a message to the server was not written: the server exited with code 3",
    );
    expect(transport.exitReason).toBe("exited with code 3");
  });
});
