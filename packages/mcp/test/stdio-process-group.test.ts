/**
 * What `stop()` leaves of a stdio server that is a tree of processes (a server under `npx`, or
 * one that starts a browser or a watcher of its own): nothing. The server leads a process
 * group; stopping, or the server's own exit, ends every process of it, with `SIGKILL` for one
 * that ignores `SIGTERM`, and a helper that left the group. Real processes (test/fixtures/tree-server.mjs), checked in `/proc`.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ToolRegistry } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { McpToolServer } from "../src/index.js";
import { ProcessGroupStdioTransport } from "../src/stdio-transport.js";
import { running, toolContext } from "./support.js";

const TREE = fileURLToPath(new URL("./fixtures/tree-server.mjs", import.meta.url));

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Starts the tree server; resolves with it and the pids of its two processes. */
async function startTree(...flags: Array<"--stubborn" | "--escape">) {
  const dir = mkdtempSync(join(tmpdir(), "beamclaw-mcp-tree-"));
  const pidFile = join(dir, "pids.json");
  const server = new McpToolServer({
    name: "tree",
    command: process.execPath,
    args: [TREE, "--pids", pidFile, ...flags],
  });
  let pids: { server: number; helper: number } | undefined;
  cleanups.push(() => {
    // Whatever a failed test left: never a process outliving the file.
    for (const pid of pids === undefined ? [] : [pids.helper, pids.server]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  cleanups.push(() => server.stop());
  const registry = new ToolRegistry();
  await server.start({ registry });
  pids = JSON.parse(readFileSync(pidFile, "utf8")) as { server: number; helper: number };
  expect(running(pids.server)).toBe(true);
  expect(running(pids.helper)).toBe(true);
  return { server, registry, pids };
}

describe("a stdio server's processes", () => {
  it("stop() ends the server and the process it started (its whole process group)", async () => {
    const { server, pids } = await startTree();
    await server.stop();
    expect(running(pids.server)).toBe(false);
    expect(running(pids.helper)).toBe(false);
  });

  it("a process of the server that ignores SIGTERM is killed, and stop() returns once it is gone", async () => {
    const { server, pids } = await startTree("--stubborn");
    await server.stop();
    expect(running(pids.server)).toBe(false);
    expect(running(pids.helper)).toBe(false);
  });

  it("a process that left the server's group and session (a daemonizing helper) is ended too", async () => {
    const { server, pids } = await startTree("--escape");
    await server.stop();
    expect(running(pids.server)).toBe(false);
    expect(running(pids.helper)).toBe(false);
  });

  it("a server that exits by itself leaves nothing of its group running", async () => {
    const { server, pids } = await startTree();
    const exit = server.tools.find((tool) => tool.name === "tree__exit")!;
    await exit.execute({}, toolContext());
    await expect.poll(() => running(pids.server)).toBe(false);
    await expect.poll(() => running(pids.helper)).toBe(false);
  });
});

describe("ProcessGroupStdioTransport", () => {
  it("close() ends a process that never read its stdin, and reports the close once", async () => {
    const transport = new ProcessGroupStdioTransport({
      command: process.execPath,
      args: ["-e", "process.on('SIGTERM', () => {}); setInterval(() => {}, 60000)"],
      closeGraceMs: 200,
    });
    let closes = 0;
    transport.onclose = () => closes++;
    await transport.start();
    const pid = transport.pid!;
    await Promise.all([transport.close(), transport.close()]);
    expect(running(pid)).toBe(false);
    expect(closes).toBe(1);
    await expect(transport.send({ jsonrpc: "2.0", method: "ping", id: 1 })).rejects.toThrow(
      "Not connected",
    );
  });

  it("a command that does not exist fails start() and reports the close", async () => {
    const transport = new ProcessGroupStdioTransport({ command: "/nonexistent/mcp-server" });
    let closes = 0;
    transport.onclose = () => closes++;
    await expect(transport.start()).rejects.toMatchObject({ code: "ENOENT" });
    await transport.close();
    expect(closes).toBe(1);
  });
});
