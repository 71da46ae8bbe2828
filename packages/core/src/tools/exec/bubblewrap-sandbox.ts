import { execFile } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import os from "node:os";
import { SandboxUnavailableError } from "../../errors.js";
import { GatewayHost, type LocalHostOptions } from "./gateway-host.js";
import { type ExecChild, type ExecHostKind, type ExecSpawnRequest, spawnDetached } from "./host.js";
import { findExecutable, isExecutableFile } from "./resolve.js";

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
}

/**
 * Runs commands in a bubblewrap sandbox on Linux: new user, pid, network, IPC, UTS and
 * cgroup namespaces (`--unshare-all`), so there is no network at all, only a loopback of its
 * own; the whole file system read-only (`--ro-bind / /`) with fresh `/dev`, `/proc` and an
 * empty private `/tmp`; the home directory and `/run` hidden behind empty read-only mounts;
 * capabilities dropped; a new session
 * (no terminal to inject input into); killed when this process dies (`--die-with-parent`).
 * Only the working directory is writable.
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
  #probe: Promise<string> | undefined;

  constructor(options: BubblewrapSandboxOptions = {}) {
    super(options);
    this.#bwrapPath = options.bwrapPath;
    this.#hide = options.hide ?? [os.homedir(), "/run"];
  }

  /**
   * The `bwrap` arguments (everything before `--`) for a command in `cwd`.
   *
   * @example
   * ```ts
   * new BubblewrapSandbox({ roots: ["/w"] }).arguments("/w");
   * // ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
   * //  "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", ...,
   * //  "--bind", "/w", "/w", "--remount-ro", "/root", "--remount-ro", "/run", "--chdir", "/w"]
   * ```
   */
  arguments(cwd: string): string[] {
    const { args, hidden } = this.#isolation(cwd);
    args.push("--bind", cwd, cwd);
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

  #isolation(cwd?: string): { args: string[]; hidden: string[] } {
    const args = [
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
    await new Promise<void>((resolve, reject) => {
      execFile(
        bwrap,
        [...this.#isolation().args, "--", this.shell, "-c", ":"],
        { timeout: 10_000, env: {} },
        (error, _stdout, stderr) => {
          if (error === null) resolve();
          else {
            reject(
              new SandboxUnavailableError(
                "bubblewrap",
                `bubblewrap cannot create a sandbox here: ${String(stderr).trim() || error.message}`,
                { cause: error },
              ),
            );
          }
        },
      );
    });
    return bwrap;
  }

  override async spawn(request: ExecSpawnRequest): Promise<ExecChild> {
    const bwrap = await this.probe();
    return spawnDetached(
      bwrap,
      [...this.arguments(request.cwd), "--", this.shell, "-c", request.script],
      { cwd: request.cwd, env: request.env },
    );
  }
}

/** True when `dir` lies strictly below `parent` (both real, absolute paths). */
function isInside(dir: string, parent: string): boolean {
  return dir !== parent && dir.startsWith(parent.endsWith("/") ? parent : `${parent}/`);
}
