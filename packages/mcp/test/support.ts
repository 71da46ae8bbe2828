/** What the MCP test files share. */
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
