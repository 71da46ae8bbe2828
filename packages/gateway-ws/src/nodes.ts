/**
 * Connected nodes (clients with role `node`: capability hosts such as a headless exec host or
 * a phone) and the `node.invoke` relay: the gateway sends a `node.invoke.request` event to the
 * node, the node answers with a `node.invoke.result` request.
 */
import { randomUUID } from "node:crypto";
import { ErrorCodes } from "./protocol/constants.js";
import { GatewayError } from "./protocol/errors.js";

/** A node's live connection, as the registry needs it. */
export interface NodeConnection {
  connId: string;
  sendEvent(event: string, payload: unknown): boolean;
}

/** What a connected node declared. */
export interface ConnectedNode {
  nodeId: string;
  connId: string;
  displayName?: string;
  platform?: string;
  version?: string;
  deviceFamily?: string;
  modelIdentifier?: string;
  caps: string[];
  commands: string[];
  permissions?: Record<string, boolean>;
  connectedAtMs: number;
  remoteIp?: string;
}

/** A node's answer to an invoke. */
export interface NodeInvokeResult {
  ok: boolean;
  payload?: unknown;
  payloadJSON?: string;
  error?: { code?: string; message?: string };
}

interface PendingInvoke {
  nodeId: string;
  command: string;
  /** The node's connection the request went to: the one told when the invoke is cancelled. */
  connection: NodeConnection;
  resolve(result: NodeInvokeResult): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
}

/**
 * Why the gateway gave up an invoke the node may still be running: its caller went away (it
 * disconnected, or the host's signal aborted), or the node did not answer in time.
 */
export type NodeInvokeCancelReason = "caller-gone" | "timeout";

/**
 * The payload of the `node.invoke.cancel` event the gateway sends a node when it gives up an
 * invoke the node was asked to run (OpenClaw's shape: `invokeId` is the `id` of the
 * `node.invoke.request`, plus BeamClaw's `reason`). The node should stop the command; its
 * answer, if it still sends one, is ignored (`node.invoke.result` answers `ignored: true`).
 */
export interface NodeInvokeCancelEvent {
  invokeId: string;
  nodeId: string;
  reason: NodeInvokeCancelReason;
}

/** Commands that run programs on the node: invoking them needs `operator.admin`. */
export const EXEC_NODE_COMMANDS: ReadonlySet<string> = new Set([
  "system.run",
  "system.run.prepare",
  "system.which",
]);

/** Connected nodes and invokes in flight. */
export class NodeRegistry {
  readonly #nodes = new Map<string, { info: ConnectedNode; connection: NodeConnection }>();
  readonly #pending = new Map<string, PendingInvoke>();

  register(info: ConnectedNode, connection: NodeConnection): void {
    const previous = this.#nodes.get(info.nodeId);
    if (previous !== undefined && previous.connection.connId !== connection.connId) {
      this.#failInvokes(info.nodeId, "the node reconnected");
    }
    this.#nodes.set(info.nodeId, { info, connection });
  }

  /** Forgets the node of a closed connection; its invokes in flight fail. */
  unregister(connId: string): string | undefined {
    for (const [nodeId, entry] of this.#nodes) {
      if (entry.connection.connId !== connId) continue;
      this.#nodes.delete(nodeId);
      this.#failInvokes(nodeId, "the node disconnected");
      return nodeId;
    }
    return undefined;
  }

  get(nodeId: string): ConnectedNode | undefined {
    return this.#nodes.get(nodeId)?.info;
  }

  list(): ConnectedNode[] {
    return [...this.#nodes.values()].map((e) => e.info);
  }

  /**
   * Sends a command to a connected node and waits for its result.
   *
   * `signal` (the caller's: it aborts when the caller disconnects) ends the wait at once: the
   * invoke is forgotten, its timer cleared, and a late answer from the node is ignored. When
   * the wait ends that way or by `timeoutMs`, the node is sent a `node.invoke.cancel` event
   * ({@link NodeInvokeCancelEvent}) so that it stops the command.
   *
   * @throws GatewayError `UNAVAILABLE` when the node is not connected, disconnects or does not
   * answer in time; `INVALID_REQUEST` when it did not declare the command; the signal's reason
   * when `signal` aborts.
   */
  invoke(request: {
    nodeId: string;
    command: string;
    params?: unknown;
    timeoutMs: number;
    idempotencyKey: string;
    signal?: AbortSignal;
  }): Promise<NodeInvokeResult> {
    const { signal } = request;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const entry = this.#nodes.get(request.nodeId);
    if (entry === undefined) {
      return Promise.reject(
        new GatewayError(ErrorCodes.UNAVAILABLE, `node ${request.nodeId} is not connected`, {
          details: { code: "NODE_NOT_CONNECTED", nodeId: request.nodeId },
          retryable: true,
        }),
      );
    }
    if (!entry.info.commands.includes(request.command)) {
      return Promise.reject(
        new GatewayError(
          ErrorCodes.INVALID_REQUEST,
          `node ${request.nodeId} does not offer command ${request.command}`,
          { details: { code: "NODE_COMMAND_NOT_ALLOWED", command: request.command } },
        ),
      );
    }
    const id = randomUUID();
    const invoked = new Promise<NodeInvokeResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#cancel(
          id,
          "timeout",
          new GatewayError(
            ErrorCodes.UNAVAILABLE,
            `node ${request.nodeId} did not answer ${request.command} within ${request.timeoutMs} ms`,
            { details: { code: "NODE_INVOKE_TIMEOUT" }, retryable: true },
          ),
        );
      }, request.timeoutMs);
      this.#pending.set(id, {
        nodeId: request.nodeId,
        command: request.command,
        connection: entry.connection,
        resolve,
        reject,
        timer,
      });
      const sent = entry.connection.sendEvent("node.invoke.request", {
        id,
        nodeId: request.nodeId,
        command: request.command,
        ...(request.params === undefined ? {} : { paramsJSON: JSON.stringify(request.params) }),
        timeoutMs: request.timeoutMs,
        idempotencyKey: request.idempotencyKey,
      });
      if (!sent) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(
          new GatewayError(ErrorCodes.UNAVAILABLE, `node ${request.nodeId} could not be reached`, {
            details: { code: "NODE_NOT_CONNECTED", nodeId: request.nodeId },
            retryable: true,
          }),
        );
      }
    });
    if (signal === undefined) return invoked;
    const onAbort = () => this.#cancel(id, "caller-gone", signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    return invoked.finally(() => signal.removeEventListener("abort", onAbort));
  }

  /** A node's `node.invoke.result`. Returns false for an unknown or late id. */
  complete(nodeId: string, id: string, result: NodeInvokeResult): boolean {
    const pending = this.#pending.get(id);
    if (pending === undefined || pending.nodeId !== nodeId) return false;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(result);
    return true;
  }

  /** Fails every invoke in flight (the gateway is stopping). */
  close(): void {
    for (const nodeId of new Set([...this.#pending.values()].map((p) => p.nodeId))) {
      this.#failInvokes(nodeId, "the gateway is stopping");
    }
    this.#nodes.clear();
  }

  /**
   * Gives up the invoke `id` (if it still waits): it is forgotten, so a late answer is ignored,
   * fails with `error`, and the node it went to is sent `node.invoke.cancel` to stop it.
   */
  #cancel(id: string, reason: NodeInvokeCancelReason, error: unknown): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    const cancel: NodeInvokeCancelEvent = { invokeId: id, nodeId: pending.nodeId, reason };
    // A node that is gone or too slow to take it misses the event; nothing else to do then.
    pending.connection.sendEvent("node.invoke.cancel", cancel);
    pending.reject(error);
  }

  #failInvokes(nodeId: string, why: string): void {
    for (const [id, pending] of [...this.#pending]) {
      if (pending.nodeId !== nodeId) continue;
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(
        new GatewayError(ErrorCodes.UNAVAILABLE, `${pending.command} on node ${nodeId}: ${why}`, {
          details: { code: "NODE_DISCONNECTED", nodeId },
          retryable: true,
        }),
      );
    }
  }
}
