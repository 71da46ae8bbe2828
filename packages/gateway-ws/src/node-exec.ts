/**
 * The exec tool's `node` host over the gateway: core's `NodeHost` with OpenClaw's `system.run`
 * relayed to a connected, paired node through `gateway.invokeNode`.
 */
import { NodeHost, type NodeRunResult } from "@beamclaw/core";
import type { ConnectedNode, NodeInvokeResult } from "./nodes.js";
import { ErrorCodes } from "./protocol/constants.js";
import { GatewayError } from "./protocol/errors.js";

/** How much longer than the command's limit the relay waits for the node's answer. */
export const NODE_RELAY_MARGIN_MS = 10_000;

/** What {@link createNodeExecHost} needs of the gateway (a `GatewayServer` has both). */
export interface NodeRelay {
  invokeNode(request: {
    nodeId: string;
    command: string;
    params?: unknown;
    timeoutMs?: number;
    /** Gives the invoke up (the node is sent `node.invoke.cancel`). */
    signal?: AbortSignal;
  }): Promise<NodeInvokeResult>;
  /** The connected nodes. */
  nodes(): ConnectedNode[];
}

/** Options of {@link createNodeExecHost}. */
export interface NodeExecHostOptions {
  /** The paired node's id (its device id). */
  nodeId: string;
  /** The node's directory for commands that name none (absolute, on the node). */
  workdir?: string;
  /** `PATH` on the node. Default core's `DEFAULT_EXEC_PATH`. */
  path?: string;
  /** The shell on the node. Default `/bin/sh`. */
  shell?: string;
}

/**
 * An exec host that runs commands on a paired node: each approved command is sent as
 * OpenClaw's `system.run` (`{ command: [shell, "-c", script], rawCommand, cwd, env, timeoutMs,
 * approved: true, approvalDecision: "allow-once" }`) and the node's `{ exitCode, stdout,
 * stderr, timedOut, error }` becomes the command's result. The approval is given on the
 * gateway, bound to host `node:<nodeId>`, before anything is sent.
 *
 * A node that is not connected, or did not declare `system.run` when it connected, fails the
 * `exec` call with a `GatewayError` (`UNAVAILABLE` / `NODE_NOT_CONNECTED`, or
 * `INVALID_REQUEST` / `NODE_COMMAND_NOT_ALLOWED`) before anyone is asked. A node that does not
 * answer within the command's limit (plus {@link NODE_RELAY_MARGIN_MS}) is sent
 * `node.invoke.cancel` (`reason: "timeout"`); a command killed on the gateway's side (the
 * `process` tool's kill, the run aborted) ends there at once and the node is sent
 * `node.invoke.cancel` (`reason: "caller-gone"`) to stop it.
 *
 * @example
 * ```ts
 * const gateway = createGateway({ runtime, config });
 * const node = createNodeExecHost(gateway, { nodeId: "3f1c...", workdir: "/srv/build" });
 * runtime.tools?.register(createExecTool({ registry, hosts: { node }, approve: approveWithGate(runtime.approvals!) }));
 * ```
 */
export function createNodeExecHost(relay: NodeRelay, options: NodeExecHostOptions): NodeHost {
  return new NodeHost({
    nodeId: options.nodeId,
    ...(options.workdir === undefined ? {} : { workdir: options.workdir }),
    ...(options.path === undefined ? {} : { path: options.path }),
    ...(options.shell === undefined ? {} : { shell: options.shell }),
    ready: (nodeId) => {
      const node = relay.nodes().find((n) => n.nodeId === nodeId);
      if (node === undefined) {
        throw new GatewayError(ErrorCodes.UNAVAILABLE, `node ${nodeId} is not connected`, {
          details: { code: "NODE_NOT_CONNECTED", nodeId },
        });
      }
      if (!node.commands.includes("system.run")) {
        throw new GatewayError(
          ErrorCodes.INVALID_REQUEST,
          `node ${nodeId} does not offer system.run (it declared: ${node.commands.join(", ") || "nothing"})`,
          { details: { code: "NODE_COMMAND_NOT_ALLOWED", command: "system.run", nodeId } },
        );
      }
    },
    invoke: async (nodeId, request) => {
      const result = await relay.invokeNode({
        nodeId,
        command: "system.run",
        params: {
          command: request.argv,
          rawCommand: request.command,
          cwd: request.cwd,
          env: request.env,
          timeoutMs: request.timeoutMs,
          approved: true,
          approvalDecision: "allow-once",
        },
        timeoutMs: request.timeoutMs + NODE_RELAY_MARGIN_MS,
        // A command killed here (`process` kill, the run aborted) is cancelled on the node.
        signal: request.signal,
      });
      if (!result.ok) {
        throw new GatewayError(
          ErrorCodes.UNAVAILABLE,
          result.error?.message ?? `system.run failed on node ${nodeId}`,
          { details: { code: result.error?.code ?? "NODE_INVOKE_FAILED", nodeId } },
        );
      }
      return runResult(
        result.payload !== undefined ? result.payload : parseJson(result.payloadJSON),
      );
    },
  });
}

/** OpenClaw's `system.run` payload as a `NodeRunResult` (missing fields are empty). */
function runResult(payload: unknown): NodeRunResult {
  const p = (typeof payload === "object" && payload !== null ? payload : {}) as Record<
    string,
    unknown
  >;
  return {
    exitCode: typeof p.exitCode === "number" ? p.exitCode : null,
    stdout: typeof p.stdout === "string" ? p.stdout : "",
    stderr: typeof p.stderr === "string" ? p.stderr : "",
    timedOut: p.timedOut === true,
    ...(typeof p.error === "string" ? { error: p.error } : {}),
    ...(typeof p.signal === "string" ? { signal: p.signal } : {}),
  };
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return { stderr: `the node answered with something that is not JSON: ${text.slice(0, 200)}` };
  }
}
