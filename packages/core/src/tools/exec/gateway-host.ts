import { ExecRefusedError, InvalidArgumentError } from "../../errors.js";
import { checkSearchPath, DEFAULT_EXEC_PATH, sanitizeEnv } from "./env.js";
import {
  type ExecChild,
  type ExecHost,
  type ExecHostKind,
  type ExecSpawnRequest,
  spawnDetached,
} from "./host.js";
import { type ExecutableResolver, findExecutable, isExecutableFile } from "./resolve.js";
import { WorkdirRoots } from "./workdir.js";

/** Options shared by the hosts that run on this machine. */
export interface LocalHostOptions {
  /** Directories commands may start in (and below). Default `[process.cwd()]`. */
  roots?: readonly string[];
  /** The fixed search path. Default {@link DEFAULT_EXEC_PATH}. */
  path?: string;
  /** The shell that runs scripts. Default `/bin/sh`. */
  shell?: string;
  /** The host environment to inherit from. Default `process.env`. */
  baseEnv?: Readonly<Record<string, string | undefined>>;
  /** Which variables of `baseEnv` to pass on (see `sanitizeEnv`). Default a short harmless list. */
  inheritEnv?: readonly string[] | "all";
  /** More variable names to block. */
  extraBlockedEnv?: readonly string[];
}

/**
 * Runs commands on this machine (the gateway's own host) with a sanitized environment, a
 * fixed search path, and the working directory restricted to `roots`. Each command is
 * spawned detached, so that it and everything it starts can be signalled as one tree.
 *
 * It is not a sandbox: a command can read and write whatever this process can. Use
 * {@link BubblewrapSandbox} or {@link DockerSandbox} for isolation.
 *
 * @example
 * ```ts
 * const host = new GatewayHost({ roots: ["/srv/agent"] });
 * const exec = createExecTool({ registry, hosts: { gateway: host }, approve });
 * ```
 */
export class GatewayHost implements ExecHost {
  readonly kind: ExecHostKind = "gateway";
  readonly id: string = "gateway";
  readonly path: string;
  readonly shell: string;
  protected readonly roots: WorkdirRoots;
  readonly #options: LocalHostOptions;

  constructor(options: LocalHostOptions = {}) {
    this.#options = options;
    this.path = checkSearchPath(options.path ?? DEFAULT_EXEC_PATH);
    this.shell = options.shell ?? "/bin/sh";
    if (!this.shell.startsWith("/")) {
      throw new InvalidArgumentError(`shell must be an absolute path, got ${this.shell}`);
    }
    this.roots = new WorkdirRoots(options.roots ?? [process.cwd()]);
  }

  resolveCwd(cwd?: string): string {
    return this.roots.resolve(cwd);
  }

  environment(env?: Readonly<Record<string, unknown>>): Record<string, string> {
    return sanitizeEnv({
      base: this.#options.baseEnv,
      inherit: this.#options.inheritEnv,
      path: this.path,
      shell: this.shell,
      env,
      extraBlocked: this.#options.extraBlockedEnv,
    });
  }

  readonly resolveExecutable: ExecutableResolver = (name, cwd) =>
    findExecutable(name, cwd, this.path);

  /**
   * Checks `cwd` (a directory {@link GatewayHost.resolveCwd} returned) again as the command
   * starts, which may be long after the check (approval waits for a person): a directory
   * renamed meanwhile and replaced by a symlink to elsewhere is refused, not followed.
   *
   * @throws ExecRefusedError (reason `cwd`) when `cwd` no longer resolves to itself inside the
   *   roots.
   */
  protected recheckCwd(cwd: string): void {
    const real = this.resolveCwd(cwd);
    if (real !== cwd) {
      throw new ExecRefusedError(
        "cwd",
        `working directory ${cwd} changed since it was checked: it now resolves to ${real}`,
        cwd,
      );
    }
  }

  spawn(request: ExecSpawnRequest): Promise<ExecChild> {
    if (!isExecutableFile(this.shell)) {
      return Promise.reject(new InvalidArgumentError(`shell ${this.shell} is not executable`));
    }
    try {
      this.recheckCwd(request.cwd);
    } catch (error) {
      return Promise.reject(error);
    }
    return spawnDetached(this.shell, ["-c", request.script], {
      cwd: request.cwd,
      env: request.env,
    });
  }
}
