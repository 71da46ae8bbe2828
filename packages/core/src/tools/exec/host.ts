/**
 * Where an exec command runs. Every host offers the same small interface: resolve and check
 * the working directory, build the environment, resolve programs for the binding, spawn.
 */
import { spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { InvalidArgumentError } from "../../errors.js";
import { PROCESS_TREE_ENV, ProcessTree } from "./process-tree.js";
import type { ExecutableResolver } from "./resolve.js";

/** `gateway`: this machine. `sandbox`: an isolated environment. `node`: a paired remote node. */
export type ExecHostKind = "gateway" | "sandbox" | "node";

/** What a host is asked to run. */
export interface ExecSpawnRequest {
  /** The shell script (a binding's `script`). */
  script: string;
  /** The directory returned by the host's `resolveCwd`. */
  cwd: string;
  /** The environment returned by the host's `environment`. */
  env: Record<string, string>;
  /**
   * The command's overall time limit. The registry enforces it here; a host that runs the
   * command elsewhere (a remote node) passes it on so that the far side enforces it too.
   */
  timeoutMs?: number;
}

/**
 * What the registry uses of a running command's process: its pipes and its `exit` / `close`
 * events. A local `ChildProcess` is one; a command on a remote node is represented by an
 * object with the same surface.
 */
export interface ExecProcess {
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  on(event: "error", listener: (error: Error) => void): unknown;
  once(
    event: "exit" | "close",
    listener: (code: number | null, signal: NodeJS.Signals | null) => void,
  ): unknown;
}

/** A running command, as a host hands it over. */
export interface ExecChild {
  /** The spawned process; stdout and stderr are pipes, stdin a pipe or `null` (no input). */
  readonly process: ExecProcess;
  /** Its pid (leader of its own process group); 0 for a command on a remote node. */
  readonly pid: number;
  /** Sends `signal` to every process the command started. */
  signal(signal: NodeJS.Signals): void;
  /** True while any process the command started is alive. */
  alive(): boolean;
  /** Releases what the host holds for this command after it ended (containers). */
  close?(): Promise<void>;
}

/**
 * An execution host.
 *
 * @example
 * ```ts
 * const host: ExecHost = new GatewayHost({ roots: ["/srv/work"] });
 * const cwd = host.resolveCwd("repo");
 * const env = host.environment({ CI: "1" });
 * const binding = bindCommand("make test", { cwd, host: host.id, path: host.path });
 * const child = await host.spawn({ script: binding.script, cwd, env });
 * ```
 */
export interface ExecHost {
  readonly kind: ExecHostKind;
  /** Stable id, part of every binding key: `gateway`, `sandbox:bubblewrap`, `sandbox:docker:<image>`, `node:<id>`. */
  readonly id: string;
  /** The fixed search path commands resolve against. */
  readonly path: string;
  /** The shell that runs scripts. */
  readonly shell: string;
  /**
   * False for a host that cannot pass input to a command (a remote node): the exec tool then
   * refuses `stdin` instead of dropping it. Default true.
   */
  readonly acceptsStdin?: boolean;
  /**
   * Throws (or rejects) when the host cannot run anything now, e.g. a node that is not
   * connected. The exec tool checks it before binding and asking for approval, so nobody is
   * asked to approve a command that cannot run.
   */
  ready?(): void | Promise<void>;
  /**
   * The directory a command asking for `cwd` starts in.
   *
   * @throws ExecRefusedError (reason `cwd`) when it is not allowed.
   */
  resolveCwd(cwd?: string): string;
  /**
   * The environment for a command with the caller's variables added.
   *
   * @throws BlockedEnvError when a caller variable is blocked.
   */
  environment(env?: Readonly<Record<string, unknown>>): Record<string, string>;
  /** Resolves programs for the binding; `undefined` when this host cannot look locally. */
  resolveExecutable: ExecutableResolver;
  /** Starts the script. Rejects with a typed error when the host cannot run anything. */
  spawn(request: ExecSpawnRequest): Promise<ExecChild>;
}

/**
 * Spawns `file args` detached (its own session and process group) with piped stdio (and
 * `fds` passed on as fd 3 and up), and resolves once the OS has started it.
 */
export function spawnDetached(
  file: string,
  args: readonly string[],
  options: {
    cwd: string;
    env: Record<string, string>;
    /**
     * What the child gets as its fd 3, 4, ...: an open descriptor (the caller still closes it),
     * or bytes, which the child reads from a pipe that ends after them.
     */
    fds?: readonly (number | Uint8Array)[];
  },
): Promise<ExecChild> {
  return new Promise((resolve, reject) => {
    // Every process the command starts inherits the marker, by which its tree finds even one
    // that left it unseen (a daemon's double fork).
    const marker = ProcessTree.marker();
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: { ...options.env, [PROCESS_TREE_ENV]: marker },
      detached: true,
      stdio: [
        "pipe",
        "pipe",
        "pipe",
        ...(options.fds ?? []).map((fd) => (typeof fd === "number" ? fd : "pipe")),
      ],
    });
    // Bytes for the child: written into their pipe at once (the pipe is closed after them).
    (options.fds ?? []).forEach((fd, i) => {
      if (typeof fd === "number") return;
      const pipe = child.stdio[3 + i] as Writable | null | undefined;
      pipe?.on("error", () => {}); // a child that ends without reading them
      pipe?.end(fd);
    });
    const onError = (error: Error) => {
      child.stdin?.destroy();
      child.stdout?.destroy();
      child.stderr?.destroy();
      for (const extra of child.stdio.slice(3)) {
        if (extra !== null && extra !== undefined) extra.destroy();
      }
      reject(error);
    };
    child.once("error", onError);
    child.once("spawn", () => {
      child.off("error", onError);
      const pid = child.pid;
      if (pid === undefined || pid <= 1) {
        reject(new InvalidArgumentError(`spawned ${file} without a usable pid`));
        return;
      }
      const tree = new ProcessTree(pid, { marker });
      resolve({
        process: child,
        pid,
        signal: (signal) => tree.signal(signal),
        alive: () => tree.alive(),
      });
    });
  });
}
