import { spawn } from "node:child_process";
import { closeSync, constants, existsSync, openSync, readlinkSync, realpathSync } from "node:fs";
import os from "node:os";
import type { Writable } from "node:stream";
import { ExecRefusedError, SandboxUnavailableError } from "../../errors.js";
import { GatewayHost, type LocalHostOptions } from "./gateway-host.js";
import { type ExecChild, type ExecHostKind, type ExecSpawnRequest, spawnDetached } from "./host.js";
import { findExecutable, isExecutableFile } from "./resolve.js";
import { unixSocketFilter } from "./seccomp.js";

/** Where `bwrap` is looked for when no path is given. */
const BWRAP_SEARCH_PATH = "/usr/bin:/bin:/usr/local/bin:/usr/sbin:/sbin";

/** Options of {@link BubblewrapSandbox}. */
export interface BubblewrapSandboxOptions extends LocalHostOptions {
  /** The `bwrap` binary. Default: found in `/usr/bin`, `/bin`, `/usr/local/bin`. */
  bwrapPath?: string;
  /**
   * Directories hidden behind an empty read-only tmpfs inside the sandbox, because they hold secrets or
   * sockets that would let a command out (a Docker socket in `/run`). Default: the home
   * directory of this process and `/run`. The working directory stays visible and writable
   * even inside one, or when it is one.
   */
  hide?: readonly string[];
  /**
   * Let commands create Unix-domain sockets. Default `false`: a seccomp filter
   * (`bwrap --seccomp`) refuses `socket(AF_UNIX, ...)` with `EACCES`, so that no daemon's
   * socket the sandbox can see (a Docker socket, a database's) can be connected to, and
   * refuses io_uring (`ENOSYS`; programs fall back to plain system calls), which could open
   * and connect sockets past the filter. `socketpair` still works. The filter exists for
   * x64, ia32, arm64, arm and riscv64; elsewhere `probe` fails unless this is `true`.
   */
  allowUnixSockets?: boolean;
}

/**
 * Runs commands in a bubblewrap sandbox on Linux: new user, pid, network, IPC, UTS and
 * cgroup namespaces (`--unshare-all`), so there is no network at all, only a loopback of its
 * own; no Unix-domain sockets (a seccomp filter refuses to create them, so a daemon's socket
 * in the file system cannot be connected to; see
 * {@link BubblewrapSandboxOptions.allowUnixSockets}); the whole file system read-only
 * (`--ro-bind / /`) with fresh `/dev`, `/proc` and an empty private `/tmp`; the home
 * directory and `/run` hidden behind empty read-only mounts; capabilities dropped; a new
 * session (no terminal to inject input into); killed when this process dies
 * (`--die-with-parent`). Only the working directory is writable. It is bound by an open
 * descriptor (`--bind-fd`, which `probe` checks bwrap has) of the directory that was
 * checked, checked again when the command starts: a command that re-points the path meanwhile (renames the
 * directory and leaves a symlink to elsewhere in its place) cannot make a later command bind
 * and write the place the symlink names.
 *
 * A read-only bind does not stop `connect()` to a Unix socket in the file system: that is
 * what the seccomp filter is for. With `allowUnixSockets: true`, a socket outside the hidden
 * directories (a daemon's in `/var/lib`, a Docker socket where `/var/run` is not a link to
 * `/run`) is reachable from inside; add the directories of such sockets to `hide`.
 *
 * Programs resolve as on the host (the sandbox sees the same read-only file system), so
 * bindings are exact. Signals reach every process inside, because they are all descendants
 * of the spawned `bwrap` in the host's process table.
 *
 * @example
 * ```ts
 * const sandbox = new BubblewrapSandbox({ roots: ["/srv/agent/work"] });
 * await sandbox.probe(); // throws SandboxUnavailableError when bwrap is missing or cannot run
 * const exec = createExecTool({ registry, hosts: { sandbox }, approve });
 * ```
 */
export class BubblewrapSandbox extends GatewayHost {
  override readonly kind: ExecHostKind = "sandbox";
  override readonly id: string = "sandbox:bubblewrap";
  readonly #bwrapPath: string | undefined;
  readonly #hide: readonly string[];
  /** The seccomp filter (see {@link BubblewrapSandboxOptions.allowUnixSockets}), built by `probe`. */
  #filter: Uint8Array | undefined;
  readonly #allowUnixSockets: boolean;
  #probe: Promise<string> | undefined;

  constructor(options: BubblewrapSandboxOptions = {}) {
    super(options);
    this.#bwrapPath = options.bwrapPath;
    this.#hide = options.hide ?? [os.homedir(), "/run"];
    this.#allowUnixSockets = options.allowUnixSockets === true;
  }

  /**
   * The `bwrap` arguments (everything before `--`) for a command in `cwd`. With `cwdFd`, the
   * working directory is bound from that descriptor of bwrap's (`--bind-fd`), as `spawn` does;
   * with `seccompFd`, the seccomp filter is read from that descriptor (`--seccomp`), as `spawn`
   * does unless Unix sockets are allowed.
   *
   * @example
   * ```ts
   * new BubblewrapSandbox({ roots: ["/w"] }).arguments("/w");
   * // ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
   * //  "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", ...,
   * //  "--bind", "/w", "/w", "--remount-ro", "/root", "--remount-ro", "/run", "--chdir", "/w"]
   * new BubblewrapSandbox({ roots: ["/w"] }).arguments("/w", { cwdFd: 3, seccompFd: 4 });
   * // [..., "--seccomp", "4", ..., "--bind-fd", "3", "/w", ...]
   * ```
   */
  arguments(cwd: string, options: { cwdFd?: number; seccompFd?: number } = {}): string[] {
    const { args, hidden } = this.#isolation(cwd, options.seccompFd);
    if (options.cwdFd === undefined) args.push("--bind", cwd, cwd);
    else args.push("--bind-fd", String(options.cwdFd), cwd);
    // A hidden directory inside the working directory is covered only now: mounted before,
    // the bind of the working directory would lay the real one back over it.
    for (const dir of hidden) if (isInside(dir, cwd)) args.push("--tmpfs", dir);
    // Read-only only now, so that a working directory inside a hidden one could be mounted.
    // A hidden directory that is the working directory itself is not covered at all (see
    // #isolation): remounting it would make the working directory's bind read-only.
    for (const dir of hidden) if (dir !== cwd) args.push("--remount-ro", dir);
    args.push("--chdir", cwd);
    return args;
  }

  #isolation(cwd?: string, seccompFd?: number): { args: string[]; hidden: string[] } {
    const args = [
      ...(seccompFd === undefined ? [] : ["--seccomp", String(seccompFd)]),
      "--unshare-all",
      "--die-with-parent",
      "--new-session",
      "--cap-drop",
      "ALL",
      "--ro-bind",
      "/",
      "/",
      "--dev",
      "/dev",
      "--proc",
      "/proc",
      "--tmpfs",
      "/tmp",
    ];
    const hidden: string[] = [];
    for (const dir of this.#hide) {
      let real: string;
      try {
        real = realpathSync(dir);
      } catch {
        continue;
      }
      if (real === "/" || hidden.includes(real) || !existsSync(real)) continue;
      hidden.push(real);
      // The working directory stays visible and writable even when it is a hidden directory.
      if (real === cwd) continue;
      if (cwd === undefined || !isInside(real, cwd)) args.push("--tmpfs", real);
    }
    return { args, hidden };
  }

  /**
   * Rejects with {@link SandboxUnavailableError} when bubblewrap is missing or cannot create a
   * sandbox here ({@link BubblewrapSandbox.probe}). The exec tool calls it before binding a
   * command and asking for approval, so that nobody approves a command that cannot run.
   */
  async ready(): Promise<void> {
    await this.probe();
  }

  /**
   * Checks once that bubblewrap is installed and can create a sandbox here (user namespaces
   * may be disabled). Resolves with the path of `bwrap`.
   *
   * @throws SandboxUnavailableError otherwise.
   */
  probe(): Promise<string> {
    if (this.#probe === undefined) {
      const attempt = this.#runProbe();
      this.#probe = attempt;
      // A failed probe is retried next time: bwrap may be installed later.
      attempt.catch(() => {
        if (this.#probe === attempt) this.#probe = undefined;
      });
    }
    return this.#probe;
  }

  async #runProbe(): Promise<string> {
    const bwrap = this.#bwrapPath ?? findExecutable("bwrap", "/", BWRAP_SEARCH_PATH) ?? undefined;
    if (bwrap === undefined || !isExecutableFile(bwrap)) {
      throw new SandboxUnavailableError(
        "bubblewrap",
        `bubblewrap is not installed${this.#bwrapPath === undefined ? "" : ` at ${this.#bwrapPath}`} (apt-get install bubblewrap)`,
      );
    }
    // Throws for an architecture without a filter.
    const filter = this.#allowUnixSockets ? undefined : unixSocketFilter();
    // The probe binds a directory by descriptor too, as every command's working directory is,
    // and loads the seccomp filter as every command does.
    const fd = openSync("/", constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await new Promise<void>((resolve, reject) => {
        const args = [
          ...this.#isolation(undefined, filter === undefined ? undefined : 4).args,
          "--ro-bind-fd",
          "3",
          "/tmp/.probe",
        ];
        const child = spawn(bwrap, [...args, "--", this.shell, "-c", ":"], {
          cwd: "/",
          env: {},
          stdio: ["ignore", "ignore", "pipe", fd, filter === undefined ? "ignore" : "pipe"],
          timeout: 10_000,
        });
        const filterPipe = child.stdio[4] as Writable | null;
        filterPipe?.on("error", () => {});
        filterPipe?.end(filter);
        let stderr = "";
        child.stderr?.setEncoding("utf8");
        child.stderr?.on("data", (text: string) => {
          if (stderr.length < 4096) stderr += text;
        });
        const fail = (detail: string, cause?: unknown) =>
          reject(
            new SandboxUnavailableError(
              "bubblewrap",
              `bubblewrap cannot create a sandbox here: ${detail}`,
              cause === undefined ? undefined : { cause },
            ),
          );
        child.once("error", (error) => fail(error.message, error));
        child.once("close", (code, signal) => {
          if (code === 0) resolve();
          else fail(stderr.trim() || `bwrap ended with ${signal ?? `exit code ${code}`}`);
        });
      });
    } finally {
      closeSync(fd);
    }
    this.#filter = filter;
    return bwrap;
  }

  override async spawn(request: ExecSpawnRequest): Promise<ExecChild> {
    const bwrap = await this.probe();
    const fd = this.#openCwd(request.cwd);
    try {
      // Fails closed: without a filter from the probe, one is built here.
      const filter = this.#allowUnixSockets ? undefined : (this.#filter ?? unixSocketFilter());
      const args = this.arguments(request.cwd, {
        cwdFd: 3,
        ...(filter === undefined ? {} : { seccompFd: 4 }),
      });
      return await spawnDetached(
        bwrap,
        [...args, "--", this.shell, "-c", request.script],
        // bwrap itself starts in `/`: the command's directory is set inside (`--chdir`).
        { cwd: "/", env: request.env, fds: filter === undefined ? [fd] : [fd, filter] },
      );
    } finally {
      // The child holds its own copy from the fork on; bwrap closes it once it is bound.
      closeSync(fd);
    }
  }

  /**
   * Opens the working directory for `--bind-fd`, after checking again that `cwd` is still a
   * real directory inside the roots (no component became a symlink since `resolveCwd`) and
   * that the directory opened is the one that path names. From then on the descriptor is
   * what gets bound, whatever the path comes to name.
   *
   * @throws ExecRefusedError (reason `cwd`) when the directory changed or is gone.
   */
  #openCwd(cwd: string): number {
    const changed = (detail: string) =>
      new ExecRefusedError(
        "cwd",
        `working directory ${cwd} changed since it was checked: ${detail}`,
        cwd,
      );
    this.recheckCwd(cwd);
    let fd: number;
    try {
      fd = openSync(cwd, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    } catch (error) {
      throw changed(error instanceof Error ? error.message : String(error));
    }
    let opened: string;
    try {
      opened = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      opened = cwd; // without /proc, the check above is all there is
    }
    if (opened !== cwd) {
      closeSync(fd);
      throw changed(`the directory opened is ${opened}`);
    }
    return fd;
  }
}

/** True when `dir` lies strictly below `parent` (both real, absolute paths). */
function isInside(dir: string, parent: string): boolean {
  return dir !== parent && dir.startsWith(parent.endsWith("/") ? parent : `${parent}/`);
}
