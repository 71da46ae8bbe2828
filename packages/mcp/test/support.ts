/** What the MCP test files share. */
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ToolContext } from "@beamclaw/core";

/** A tool call's context, as the tool layer hands it over. */
export function toolContext(): ToolContext {
  return {
    signal: new AbortController().signal,
    sessionKey: "agent:main:main",
    agentId: "main",
    runId: "r",
    toolCallId: "c",
    emit: () => {},
  };
}

/** Child processes of this one that still have a handle (spawned and not yet exited). */
export function childProcesses(): number {
  return process.getActiveResourcesInfo().filter((type) => type === "ProcessWrap").length;
}

/**
 * Whether `pid` runs, read in `/proc` (Linux, where these tests run): a process that exited but
 * was not reaped (a zombie, in a container whose PID 1 does not reap orphans) does not.
 */
export function running(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

/**
 * An HTTP server on 127.0.0.1 answering with `handle`, closed (its connections too) by what it
 * pushes on `cleanups`; resolves with its base URL, `http://127.0.0.1:<port>`.
 */
export async function listen(
  cleanups: Array<() => Promise<unknown>>,
  handle: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<string> {
  const http = createServer(handle);
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });
  return `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
}
