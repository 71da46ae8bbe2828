/**
 * A call whose server must be connected again (a Streamable HTTP session the server no longer
 * knows, a stdio server that exited) follows its own abort during that reconnect: it ends at
 * once with the abort's reason, and the connect it began is cancelled (the hanging
 * `initialize` request closed, the new process ended), not left half-started.
 */

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { McpToolServer } from "../src/index.js";
import { toolContext } from "./support.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A stateful Streamable HTTP server: the first `initialize` gets session `s1`; a request of
 * another session gets 404; every later `initialize` is held unanswered (`held` resolves with
 * its response, `closed` when the client closes it).
 */
async function expiringServer() {
  let sessions = 0;
  const live = new Set<string>();
  let onHeld!: (res: ServerResponse) => void;
  const held = new Promise<ServerResponse>((resolve) => {
    onHeld = resolve;
  });
  const http: Server = createServer(async (req: IncomingMessage, res) => {
    let text = "";
    for await (const chunk of req) text += String(chunk);
    if (req.method !== "POST") {
      res.writeHead(405).end();
      return;
    }
    const message = JSON.parse(text);
    const session = req.headers["mcp-session-id"] as string | undefined;
    const json = (result: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(200, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: message.id, result }));
    };
    if (message.method === "initialize") {
      if (++sessions > 1) {
        onHeld(res); // held: no answer
        return;
      }
      live.add("s1");
      json(
        {
          protocolVersion: message.params.protocolVersion,
          capabilities: { tools: {} },
          serverInfo: { name: "expiring", version: "1" },
        },
        { "mcp-session-id": "s1" },
      );
      return;
    }
    if (session === undefined || !live.has(session)) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(
        JSON.stringify({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" } }),
      );
      return;
    }
    if (message.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    if (message.method === "tools/list") {
      json({ tools: [{ name: "ping", inputSchema: { type: "object" } }] });
      return;
    }
    json({ content: [{ type: "text", text: "pong" }] });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise((resolve) => {
        http.closeAllConnections();
        http.close(resolve);
      }),
  );
  const { port } = http.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/mcp`, live, held };
}

describe("an abort during a reconnect", () => {
  it("of an expired Streamable HTTP session ends the call with its reason and closes the new session's initialize", async () => {
    const http = await expiringServer();
    const server = new McpToolServer({ name: "web", url: http.url, connectTimeoutMs: 3_000 });
    cleanups.push(() => server.stop());
    await server.start();
    const ping = server.tools.find((t) => t.name === "web__ping")!;
    expect(await ping.execute({}, toolContext())).toBe("pong");
    http.live.clear(); // the session expires: the next call gets 404, and connects again
    const abort = new AbortController();
    const context = { ...toolContext(), signal: abort.signal };
    const call = Promise.resolve(ping.execute({}, context)).then(
      () => "answered",
      (e: unknown) => e,
    );
    const res = await http.held; // the reconnect's initialize, unanswered
    const closed = new Promise((resolve) => res.on("close", resolve));
    const reason = new Error("the user pressed stop");
    abort.abort(reason);
    expect(await call).toBe(reason);
    // Not left half-started: the initialize request is closed by the client.
    await closed;
    expect(res.writableEnded).toBe(false);
  });

  it("of a stdio server that exited ends the call with its reason and ends the new process", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-mcp-reabort-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const pids = join(dir, "pids");
    await writeFile(pids, "");
    // Its first process answers; one started later never answers `initialize` (and lives on,
    // whatever becomes of its stdin, until a signal).
    const script = `
      const fs = require("node:fs");
      const first = fs.readFileSync(${JSON.stringify(pids)}, "utf8") === "";
      fs.appendFileSync(${JSON.stringify(pids)}, process.pid + "\\n");
      setInterval(() => {}, 1000);
      const out = (m) => process.stdout.write(JSON.stringify(m) + "\\n");
      require("node:readline").createInterface({ input: process.stdin }).on("line", (line) => {
        const m = JSON.parse(line);
        if (!first) return;
        if (m.method === "initialize") out({ jsonrpc: "2.0", id: m.id, result: {
          protocolVersion: m.params.protocolVersion, capabilities: { tools: {} },
          serverInfo: { name: "once", version: "1" } } });
        else if (m.method === "tools/list") out({ jsonrpc: "2.0", id: m.id, result: { tools: [
          { name: "exit", inputSchema: { type: "object" } }] } });
        else if (m.method === "tools/call") {
          out({ jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: "bye" }] } });
          setTimeout(() => process.exit(0), 20);
        }
      });`;
    const server = new McpToolServer({
      name: "once",
      command: process.execPath,
      args: ["-e", script],
      connectTimeoutMs: 3_000,
    });
    cleanups.push(() => server.stop());
    await server.start();
    const exit = server.tools.find((t) => t.name === "once__exit")!;
    expect(await exit.execute({}, toolContext())).toBe("bye");
    const [first] = (await readFile(pids, "utf8")).split("\n");
    // Gone, and a second past the last connect: the next call starts it again.
    await expect.poll(() => alive(Number(first)), { timeout: 5_000 }).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const abort = new AbortController();
    const call = Promise.resolve(exit.execute({}, { ...toolContext(), signal: abort.signal })).then(
      () => "answered",
      (e: unknown) => e,
    );
    // The new process has started (and waits for nothing it will answer).
    await expect
      .poll(async () => (await readFile(pids, "utf8")).split("\n").filter(Boolean).length)
      .toBe(2);
    const second = Number((await readFile(pids, "utf8")).split("\n")[1]);
    const reason = new Error("the user pressed stop");
    abort.abort(reason);
    expect(await call).toBe(reason);
    // Not left running: the cancelled connect ends the process (stdin closed, then signals).
    await expect.poll(() => alive(second), { timeout: 8_000 }).toBe(false);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
