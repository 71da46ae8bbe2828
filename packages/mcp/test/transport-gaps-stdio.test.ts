/**
 * A stdio server that closes its stdout and runs on can give no answer again: the transport
 * ends (the calls waiting fail at once, saying why and naming the server), its process group
 * is ended, and the next call starts it again. A server that just exits is still reported by
 * its exit, not as a closed stdout. Real child processes.
 */
import { afterEach, describe, expect, it } from "vitest";
import { McpError, McpToolServer } from "../src/index.js";
import { ProcessGroupStdioTransport } from "../src/stdio-transport.js";
import { running, toolContext } from "./support.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Kills `pids` after the test, whatever it left (a failed test's processes). */
function killAfter(...pids: number[]): void {
  cleanups.push(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  });
}

/**
 * Raw JSON-RPC over stdio. It starts a helper process in its group (which ignores stdin), and
 * ignores the end of its own stdin. Tools: `pids` (its pid and its helper's), `echo`, and
 * `mute` (closes its stdout, answers nothing, and runs on).
 */
const SCRIPT = `
  const fs = require("node:fs");
  const helper = require("node:child_process").spawn(process.execPath,
    ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  setInterval(() => {}, 1000);
  const rl = require("node:readline").createInterface({ input: process.stdin });
  const out = (m) => process.stdout.write(JSON.stringify(m) + "\\n");
  const text = (m, t) => out({ jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: t }] } });
  rl.on("line", (line) => {
    const m = JSON.parse(line);
    if (m.method === "initialize") out({ jsonrpc: "2.0", id: m.id, result: {
      protocolVersion: m.params.protocolVersion, capabilities: { tools: {} },
      serverInfo: { name: "mute", version: "1" } } });
    else if (m.method === "tools/list") out({ jsonrpc: "2.0", id: m.id, result: { tools:
      ["pids", "echo", "mute"].map((name) => ({ name, inputSchema: { type: "object" } })) } });
    else if (m.method === "tools/call" && m.params.name === "pids")
      text(m, JSON.stringify([process.pid, helper.pid]));
    else if (m.method === "tools/call" && m.params.name === "echo") text(m, "echo");
    else if (m.method === "tools/call" && m.params.name === "mute") {
      process.stdout.destroy();
      fs.closeSync(1);
    }
  });`;

describe("a stdio server that closes its stdout and runs on", () => {
  it("the transport closes, saying so, and the server's process group is ended", async () => {
    const transport = new ProcessGroupStdioTransport({
      command: process.execPath,
      args: ["-e", 'require("node:fs").closeSync(1); setInterval(() => {}, 1000);'],
      closeGraceMs: 100,
    });
    const closed = new Promise<void>((resolve) => {
      transport.onclose = resolve;
    });
    cleanups.push(() => transport.close());
    await transport.start();
    const pid = transport.pid!;
    killAfter(pid);
    await closed;
    expect(transport.exitReason).toBe("was stopped: its stdout closed while it ran");
    expect(running(pid)).toBe(false);
    // Nothing more goes to its pipe.
    await expect(transport.send({ jsonrpc: "2.0", id: 1, method: "ping" })).rejects.toThrow(
      "Not connected",
    );
  });

  it("a call waiting fails with the reason, the processes end, and the next call starts it again", async () => {
    const server = new McpToolServer({
      name: "gaps",
      command: process.execPath,
      args: ["-e", SCRIPT],
    });
    cleanups.push(() => server.stop());
    await server.start();
    const tool = (name: string) => server.tools.find((t) => t.name === `gaps__${name}`)!;
    const [pid, helper] = JSON.parse(String(await tool("pids").execute({}, toolContext()))) as [
      number,
      number,
    ];
    killAfter(pid, helper);
    const error = await Promise.resolve(tool("mute").execute({}, toolContext())).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(McpError.isInstance(error)).toBe(true);
    expect((error as McpError).server).toBe("gaps");
    expect((error as Error).message).toContain('MCP tool mute of server "gaps" failed');
    expect((error as Error).message).toContain("its stdout closed while it ran");
    // The server and the helper in its group are ended (the tree's end is awaited by close(),
    // which a loaded machine may finish just after the waiting call was failed).
    await expect.poll(() => running(pid), { timeout: 5_000 }).toBe(false);
    await expect.poll(() => running(helper), { timeout: 5_000 }).toBe(false);
    // The next call (once the reconnect interval has passed) reaches a new process.
    await expect
      .poll(
        () =>
          Promise.resolve(tool("pids").execute({}, toolContext())).then(
            (text) => (JSON.parse(String(text)) as number[])[0] !== pid,
            () => false,
          ),
        { timeout: 10_000, interval: 100 },
      )
      .toBe(true);
  }, 30_000);
});

describe("a stdio server that exits", () => {
  it("is reported by its exit code, not as a closed stdout, every time", async () => {
    for (let i = 0; i < 5; i++) {
      const transport = new ProcessGroupStdioTransport({
        command: process.execPath,
        args: ["-e", 'process.stdout.write("bye\\n", () => process.exit(3));'],
      });
      const closed = new Promise<void>((resolve) => {
        transport.onclose = resolve;
      });
      cleanups.push(() => transport.close());
      await transport.start();
      await closed;
      expect(transport.exitReason).toBe("exited with code 3");
    }
  });

  it("is reported by its exit code when it closes its stdout just before it exits", async () => {
    // Its stdout closes while it still runs (for a moment, or 50 ms of its exit's cleanup):
    // what tells the two apart is its exit within the grace, not a look at the process (in
    // /proc, which not every OS has), which sees it running.
    for (const delay of [0, 50, 0, 50]) {
      const transport = new ProcessGroupStdioTransport({
        command: process.execPath,
        args: [
          "-e",
          `require("node:fs").closeSync(1); setTimeout(() => process.exit(3), ${delay});`,
        ],
        closeGraceMs: 100,
      });
      const closed = new Promise<void>((resolve) => {
        transport.onclose = resolve;
      });
      cleanups.push(() => transport.close());
      await transport.start();
      killAfter(transport.pid!);
      await closed;
      expect(transport.exitReason).toBe("exited with code 3");
    }
  });
});
