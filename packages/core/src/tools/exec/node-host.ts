import { EventEmitter } from "node:events";
import path from "node:path";
import { finished, PassThrough } from "node:stream";
import {
  AbortedError,
  describe,
  ExecRefusedError,
  InvalidArgumentError,
  NotSupportedError,
} from "../../errors.js";
import { DEFAULT_EXEC_TIMEOUT_MS } from "./background.js";
import { checkEnv, checkSearchPath, DEFAULT_EXEC_PATH } from "./env.js";
import type { ExecChild, ExecHost, ExecHostKind, ExecSpawnRequest } from "./host.js";
import type { ExecutableResolver } from "./resolve.js";

/** How much longer than the command's own limit the node is given, so the local limit acts first. */
export const NODE_TIMEOUT_MARGIN_MS = 2_000;

/** What {@link NodeHost} asks its transport to run on the node. */
export interface NodeRunRequest {
  /** The program and its arguments: `[shell, "-c", script]`. */
  argv: string[];
  /** The script alone (the approved binding's `script`), for the node to show and log. */
  command: string;
  /** Absolute working directory on the node. */
  cwd: string;
  /** Environment variables to set: the caller's (checked against the blocklist) and `PATH`. */
  env: Record<string, string>;
  /** The node must end the command after this long. */
  timeoutMs: number;
  /**
   * Aborted when the command is killed here (`process` kill, the run aborted, the registry
   * stopping). A transport that can cancel on the node should; one that cannot just lets the
   * node's own time limit end the command.
   */
  signal: AbortSignal;
}

/** What the node reports once the command has ended. */
export interface NodeRunResult {
  /** Exit status; `null` when it did not exit normally (killed, timed out, never started). */
  exitCode: number | null;
  /** The signal that ended it, if the node says. */
  signal?: string | null;
  stdout: string;
  stderr: string;
  /** The node ended it at its time limit. */
  timedOut?: boolean;
  /** Why the node did not run or finish it (refused, failed to start), in its words. */
  error?: string | null;
}

/**
 * The transport to a node: runs `request` on node `nodeId` and resolves once it has ended.
 * Rejects when the command could not be run there at all (node unreachable, request refused).
 */
export type NodeInvoke = (nodeId: string, request: NodeRunRequest) => Promise<NodeRunResult>;

/** Options of {@link NodeHost}. */
export interface NodeHostOptions {
  /** The paired node's id. */
  nodeId: string;
  /**
   * The transport (the gateway's `system.run` relay). Without it the host refuses every
   * command with {@link NotSupportedError}: it never pretends to have run anything.
   */
  invoke?: NodeInvoke;
  /**
   * Called before every command (before it is bound and approved, and again right before it
   * is sent); throws (or rejects) when the node cannot take one now, e.g. it is not connected.
   * The `exec` call then fails with that error and nothing is sent.
   */
  ready?: (nodeId: string) => void | Promise<void>;
  /**
   * The node's directory for commands that name no `cwd` (absolute, on the node), and the
   * base of relative ones. Without it, every command must name an absolute `cwd`.
   */
  workdir?: string;
  /** `PATH` on the node (sent with every command, and part of every binding). Default {@link DEFAULT_EXEC_PATH}. */
  path?: string;
  /** The shell on the node. Default `/bin/sh`. */
  shell?: string;
}

/**
 * Runs commands on a paired remote node through a transport (the gateway relays OpenClaw's
 * `system.run` to the node: see `createNodeExecHost` in `@beamclaw/gateway-ws`).
 *
 * Bindings name the host `node:<id>`, so an approval covers one command on one node; programs
 * are resolved on the node (`unresolved` in the binding), so no allowlist entry applies to
 * them and every command but a safe builtin needs approval. What is sent is exactly what was
 * bound: `[shell, "-c", script]` with the bound cwd, the caller's variables and `PATH`.
 *
 * The node reports the outcome at the end (no streaming output, no stdin: `exec` refuses
 * `stdin` for this host). The working directory is checked lexically only (absolute, `..`
 * folded): the node enforces its own policy on where commands may run. Killing a command
 * here ends it here at once and aborts the transport's signal; a transport that cannot cancel
 * leaves it to the node's time limit, which is the command's limit plus
 * {@link NODE_TIMEOUT_MARGIN_MS}.
 *
 * @example
 * ```ts
 * const node = new NodeHost({
 *   nodeId: "build-box",
 *   workdir: "/srv/build",
 *   invoke: (nodeId, request) => relay.run(nodeId, request), // resolves { exitCode, stdout, stderr }
 * });
 * const exec = createExecTool({ registry, hosts: { node }, approve: approveWithGate(gate) });
 * ```
 */
export class NodeHost implements ExecHost {
  readonly kind: ExecHostKind = "node";
  readonly id: string;
  readonly path: string;
  readonly shell: string;
  readonly acceptsStdin = false;
  /** The node's id. */
  readonly nodeId: string;
  readonly #invoke: NodeInvoke | undefined;
  readonly #ready: NodeHostOptions["ready"];
  readonly #workdir: string | undefined;

  /** @throws InvalidArgumentError for an empty node id, a relative workdir or shell, a bad path. */
  constructor(options: NodeHostOptions) {
    if (typeof options.nodeId !== "string" || !/^[^\s\0/]+$/.test(options.nodeId)) {
      throw new InvalidArgumentError(
        `nodeId must be a non-empty string without spaces or slashes, got ${JSON.stringify(options.nodeId)}`,
      );
    }
    this.nodeId = options.nodeId;
    this.id = `node:${options.nodeId}`;
    this.path = checkSearchPath(options.path ?? DEFAULT_EXEC_PATH);
    this.shell = options.shell ?? "/bin/sh";
    if (!path.posix.isAbsolute(this.shell)) {
      throw new InvalidArgumentError(`shell must be an absolute path, got ${this.shell}`);
    }
    if (options.workdir !== undefined && !isAbsoluteClean(options.workdir)) {
      throw new InvalidArgumentError(
        `workdir must be an absolute path on the node, got ${JSON.stringify(options.workdir)}`,
      );
    }
    this.#workdir = options.workdir === undefined ? undefined : path.posix.resolve(options.workdir);
    this.#invoke = options.invoke;
    this.#ready = options.ready;
  }

  /**
   * The directory on the node: `workdir` when none is asked for, a relative one resolved
   * against `workdir`, an absolute one normalized.
   *
   * @throws NotSupportedError without a transport; ExecRefusedError (reason `cwd`) when no
   *   absolute directory results.
   */
  resolveCwd(cwd?: string): string {
    if (this.#invoke === undefined) throw this.#unsupported();
    const asked = cwd ?? "";
    if (asked.includes("\0")) throw new ExecRefusedError("cwd", "cwd contains a NUL byte", asked);
    if (path.posix.isAbsolute(asked)) return path.posix.resolve(asked);
    if (this.#workdir === undefined) {
      throw new ExecRefusedError(
        "cwd",
        `node "${this.nodeId}" has no default working directory: give an absolute cwd`,
        asked,
      );
    }
    return path.posix.resolve(this.#workdir, asked);
  }

  /**
   * Checks that the node can take a command now (the `ready` option).
   *
   * @throws NotSupportedError without a transport; whatever `ready` throws.
   */
  async ready(): Promise<void> {
    if (this.#invoke === undefined) throw this.#unsupported();
    await this.#ready?.(this.nodeId);
  }

  /** The caller's variables (blocked names refused) plus this host's `PATH`. */
  environment(env?: Readonly<Record<string, unknown>>): Record<string, string> {
    return { ...checkEnv(env), PATH: this.path };
  }

  /** Programs live on the remote node. */
  readonly resolveExecutable: ExecutableResolver = () => undefined;

  /**
   * Sends the command to the node. Resolves at once with a handle whose output and exit
   * arrive when the node reports; a transport failure ends the command with exit code `null`
   * and the reason on stderr.
   *
   * @throws NotSupportedError without a transport; whatever `ready` throws.
   */
  async spawn(request: ExecSpawnRequest): Promise<ExecChild> {
    const invoke = this.#invoke;
    if (invoke === undefined) throw this.#unsupported();
    // Again: the node may have gone while the command waited for approval.
    await this.#ready?.(this.nodeId);
    const command = new RemoteCommand();
    const controller = new AbortController();
    let ended = false;
    const end = (result: NodeRunResult) => {
      if (ended) return;
      ended = true;
      command.finish(result);
    };
    const who = `node ${this.nodeId}`;
    const timeoutMs = (request.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS) + NODE_TIMEOUT_MARGIN_MS;
    Promise.resolve()
      .then(() =>
        invoke(this.nodeId, {
          argv: [this.shell, "-c", request.script],
          command: request.script,
          cwd: request.cwd,
          env: { ...request.env },
          timeoutMs,
          signal: controller.signal,
        }),
      )
      .then(
        (result) => end(normalize(result, who)),
        (error: unknown) =>
          end({ exitCode: null, stdout: "", stderr: `${who}: ${describe(error)}\n` }),
      );
    return {
      process: command,
      pid: 0,
      signal: (signal) => {
        if (ended) return;
        controller.abort(new AbortedError(`${signal} for the command on ${who}`));
        end({ exitCode: null, signal, stdout: "", stderr: "" });
      },
      alive: () => !ended,
    };
  }

  #unsupported(): NotSupportedError {
    return new NotSupportedError(
      "exec-node-host",
      `running commands on node "${this.nodeId}" needs a transport: give NodeHost an invoke function (the gateway's node relay)`,
    );
  }
}

function isAbsoluteClean(dir: unknown): dir is string {
  return typeof dir === "string" && path.posix.isAbsolute(dir) && !dir.includes("\0");
}

/** A node's report, checked: odd fields become an explanation on stderr rather than a crash. */
function normalize(result: NodeRunResult, who: string): NodeRunResult {
  const text = (value: unknown) => (typeof value === "string" ? value : "");
  const exitCode =
    typeof result?.exitCode === "number" && Number.isInteger(result.exitCode)
      ? result.exitCode
      : null;
  let stderr = text(result?.stderr);
  const notes: string[] = [];
  if (typeof result?.error === "string" && result.error !== "") notes.push(result.error);
  if (result?.timedOut === true) notes.push("the node ended the command at its time limit");
  if (notes.length > 0) {
    if (stderr !== "" && !stderr.endsWith("\n")) stderr += "\n";
    stderr += `${who}: ${notes.join("; ")}\n`;
  }
  return {
    exitCode,
    signal: typeof result?.signal === "string" ? result.signal : null,
    stdout: text(result?.stdout),
    stderr,
  };
}

/**
 * A command on a remote node, with the surface of a `ChildProcess` the registry uses: its
 * output arrives in one piece, then `exit` and `close`. It has no stdin.
 */
class RemoteCommand extends EventEmitter {
  readonly stdin = null;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();

  finish(result: NodeRunResult): void {
    const code = result.exitCode;
    const signal = result.signal ?? null;
    let open = 2;
    // `close` only once both streams were read to the end, as for a local process.
    const done = () => {
      if (--open > 0) return;
      this.emit("exit", code, signal);
      this.emit("close", code, signal);
    };
    for (const [stream, text] of [
      [this.stdout, result.stdout],
      [this.stderr, result.stderr],
    ] as const) {
      finished(stream, () => done());
      if (text !== "") stream.write(text);
      stream.end();
    }
  }
}
