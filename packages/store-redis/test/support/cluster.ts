/**
 * Real cluster nodes for the tests: each is `fixtures/cluster-node.mjs` in its own Node.js
 * process (the built packages), started with `fork` and driven over its IPC channel. Every
 * node started is reaped by `stopAll()` (SIGKILL for whatever did not exit by itself), and
 * a test that needs a node to exit by itself checks `exitCode` / `exitedBy`.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";

const FIXTURE = fileURLToPath(new URL("../fixtures/cluster-node.mjs", import.meta.url));

export interface NodeSettings {
  redisUrl: string;
  prefix: string;
  nodeId: string;
  /** Extra environment (CLUSTER_LEASE_MS, ECHO_CHUNK_DELAY_MS, ...). */
  env?: Record<string, string>;
}

/** What the node reported for one message. */
export type SendOutcome =
  | { kind: "refused"; code: string; message: string }
  | { kind: "accepted"; runId: string; disposition: string; result: Promise<RunOutcome> };

export type RunOutcome =
  | { kind: "result"; status: string; text: string; events: string[] }
  | { kind: "failed"; code: string; message: string }
  /** The node died before it reported. */
  | { kind: "lost" };

interface Waiting {
  onAccepted?: (outcome: SendOutcome) => void;
  onResult?: (outcome: RunOutcome) => void;
  onReply?: (value: unknown) => void;
}

export class ClusterNodeProcess {
  readonly nodeId: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  stderr = "";
  readonly #waiting = new Map<number, Waiting>();
  #next = 1;
  #alive = true;

  private constructor(nodeId: string, child: ChildProcess) {
    this.nodeId = nodeId;
    this.child = child;
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    child.stdout?.resume();
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.#alive = false;
        this.exitCode = code;
        this.exitSignal = signal;
        for (const waiting of this.#waiting.values()) {
          waiting.onAccepted?.({
            kind: "refused",
            code: "NODE_EXITED",
            message: "the node exited",
          });
          waiting.onResult?.({ kind: "lost" });
          waiting.onReply?.(undefined);
        }
        this.#waiting.clear();
        resolve({ code, signal });
      });
    });
    child.on("message", (message: { type: string; id?: number } & Record<string, unknown>) =>
      this.#onMessage(message),
    );
  }

  /** Forks a node and resolves once it has joined the cluster. */
  static async start(settings: NodeSettings, timeoutMs = 15_000): Promise<ClusterNodeProcess> {
    const child = fork(FIXTURE, [], {
      env: {
        ...process.env,
        BEAMCLAW_REDIS_URL: settings.redisUrl,
        CLUSTER_PREFIX: settings.prefix,
        CLUSTER_NODE_ID: settings.nodeId,
        ...settings.env,
      },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    const node = new ClusterNodeProcess(settings.nodeId, child);
    started.add(node);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(`node ${settings.nodeId} not ready within ${timeoutMs} ms: ${node.stderr}`),
        );
      }, timeoutMs);
      const onMessage = (message: { type?: string }) => {
        if (message?.type !== "ready") return;
        clearTimeout(timer);
        child.off("message", onMessage);
        resolve();
      };
      child.on("message", onMessage);
      void node.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`node ${settings.nodeId} exited while starting: ${node.stderr}`));
      });
    });
    return node;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /**
   * Sends a message for session `key` through this node (with `traceparent`: as part of that
   * remote span's trace).
   */
  send(
    key: string,
    text: string,
    idempotencyKey?: string,
    traceparent?: string,
  ): Promise<SendOutcome> {
    if (!this.#alive || !this.child.connected) {
      return Promise.resolve({ kind: "refused", code: "NODE_EXITED", message: "not running" });
    }
    const id = this.#next++;
    let resolveResult!: (outcome: RunOutcome) => void;
    const result = new Promise<RunOutcome>((resolve) => {
      resolveResult = resolve;
    });
    return new Promise<SendOutcome>((resolve) => {
      const waiting: Waiting = {
        onAccepted: (outcome) => {
          waiting.onAccepted = undefined;
          if (outcome.kind === "refused") {
            this.#waiting.delete(id);
            resolveResult({ kind: "lost" });
          }
          resolve(outcome.kind === "accepted" ? { ...outcome, result } : outcome);
        },
        onResult: (outcome) => {
          this.#waiting.delete(id);
          resolveResult(outcome);
        },
      };
      this.#waiting.set(id, waiting);
      this.child.send({ type: "send", id, key, text, idempotencyKey, traceparent }, (error) => {
        if (error) waiting.onAccepted?.({ kind: "refused", code: "IPC", message: error.message });
      });
    });
  }

  /**
   * Asks the node something (`info`, or the `spans` it recorded with CLUSTER_TRACE) or tells
   * it to `drain`; resolves with its reply.
   */
  request(type: "info" | "spans" | "drain"): Promise<unknown> {
    if (!this.#alive || !this.child.connected) return Promise.resolve(undefined);
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, { onReply: resolve });
      this.child.send({ type, id }, (error) => {
        if (error) resolve(undefined);
      });
    });
  }

  /** Kills the process with `signal` and waits until it has exited. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    if (this.#alive) this.child.kill(signal);
    await this.exited;
  }

  /** Waits for the process to exit by itself for at most `ms`; false if it did not. */
  async exitWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.exited.then(() => true as const), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #onMessage(message: { type: string; id?: number } & Record<string, unknown>): void {
    const waiting = message.id === undefined ? undefined : this.#waiting.get(message.id);
    if (waiting === undefined) return;
    switch (message.type) {
      case "accepted":
        waiting.onAccepted?.({
          kind: "accepted",
          runId: String(message.runId),
          disposition: String(message.disposition),
          result: Promise.resolve({ kind: "lost" }),
        });
        break;
      case "refused": {
        const error = message.error as { code: string; message: string };
        waiting.onAccepted?.({ kind: "refused", code: error.code, message: error.message });
        break;
      }
      case "result":
        waiting.onResult?.({
          kind: "result",
          status: String(message.status),
          text: String(message.text),
          events: message.events as string[],
        });
        break;
      case "failed": {
        const error = message.error as { code: string; message: string };
        waiting.onResult?.({ kind: "failed", code: error.code, message: error.message });
        break;
      }
      case "reply":
        this.#waiting.delete(message.id!);
        waiting.onReply?.(message.value);
        break;
    }
  }
}

const started = new Set<ClusterNodeProcess>();

/** Stops every node still running (asks, then SIGKILL after `graceMs`) and waits for all. */
export async function stopAll(graceMs = 5_000): Promise<void> {
  const nodes = [...started];
  started.clear();
  await Promise.all(
    nodes.map(async (node) => {
      if (!node.alive) return;
      if (node.child.connected) node.child.send({ type: "stop" }, () => undefined);
      if (!(await node.exitWithin(graceMs))) await node.kill("SIGKILL");
    }),
  );
}

/** Node info as the fixture reports it. */
export interface NodeInfo {
  nodeId: string;
  owned: string[];
  active: string[];
  members: string[];
  state: string;
}

export async function infoOf(node: ClusterNodeProcess): Promise<NodeInfo> {
  return (await node.request("info")) as NodeInfo;
}

/** A finished span a node recorded (CLUSTER_TRACE), as the fixture reports it. */
export interface SpanInfo {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  parentIsRemote: boolean;
  /** The span contexts it links to. */
  links: Array<{ traceId: string; spanId: string }>;
  attributes: Record<string, unknown>;
}

export async function spansOf(node: ClusterNodeProcess): Promise<SpanInfo[]> {
  return (await node.request("spans")) as SpanInfo[];
}
