import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { ExecRefusedError, InvalidArgumentError, SandboxUnavailableError } from "../../errors.js";
import { checkSearchPath, DEFAULT_EXEC_PATH, sanitizeEnv } from "./env.js";
import {
  type ExecChild,
  type ExecHost,
  type ExecHostKind,
  type ExecSpawnRequest,
  spawnDetached,
} from "./host.js";
import { type ExecutableResolver, findExecutable } from "./resolve.js";
import { WorkdirRoots } from "./workdir.js";

/** Options of {@link DockerSandbox}. */
export interface DockerSandboxOptions {
  /** The image commands run in, e.g. `debian:bookworm-slim`. */
  image: string;
  /** Host directories commands may use as working directory. Default `[process.cwd()]`. */
  roots?: readonly string[];
  /** The `docker` binary. Default: found in `/usr/bin`, `/usr/local/bin`, `/bin`. */
  docker?: string;
  /** The shell inside the image. Default `/bin/sh`. */
  shell?: string;
  /** `PATH` inside the container (and for bindings). Default {@link DEFAULT_EXEC_PATH}. */
  path?: string;
  /** Docker network. Default `none`: no network at all. */
  network?: string;
  /** `--user`. Default this process's `uid:gid`, so files in the workdir stay yours. */
  user?: string;
  /** `--memory`, e.g. `512m`. */
  memory?: string;
  /** `--cpus`, e.g. `1.5`. */
  cpus?: string;
  /** `--pids-limit`. Default 256. */
  pidsLimit?: number;
  /** The host environment to inherit from. Default `process.env`. */
  baseEnv?: Readonly<Record<string, string | undefined>>;
  /** Which variables of `baseEnv` to pass into the container. Default a short harmless list. */
  inheritEnv?: readonly string[] | "all";
  /** More variable names to block. */
  extraBlockedEnv?: readonly string[];
}

const DOCKER_SEARCH_PATH = "/usr/bin:/usr/local/bin:/bin";
/** Passed with their value on the command line: the docker CLI needs its own. */
const HOST_OWNED = new Set(["PATH", "HOME", "USER", "LOGNAME", "SHELL"]);

/**
 * Runs commands in a throwaway Docker container: `docker run --rm -i --network none
 * --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges --pids-limit 256
 * -v <workdir>:<workdir> -w <workdir> <image> /bin/sh -c <script>`. Same interface as the
 * other hosts. Programs live in the image, so bindings record them as `unresolved` (by name,
 * with the image in the host id) instead of by path.
 *
 * Killing a command signals the docker client and `docker kill`s the container, since a
 * killed client does not stop its container.
 *
 * @example
 * ```ts
 * const sandbox = new DockerSandbox({ image: "debian:bookworm-slim", roots: ["/srv/work"] });
 * await sandbox.probe(); // throws SandboxUnavailableError when the daemon is not reachable
 * ```
 */
export class DockerSandbox implements ExecHost {
  readonly kind: ExecHostKind = "sandbox";
  readonly id: string;
  readonly path: string;
  readonly shell: string;
  readonly #options: DockerSandboxOptions;
  readonly #roots: WorkdirRoots;
  #probe: Promise<string> | undefined;

  constructor(options: DockerSandboxOptions) {
    if (
      typeof options.image !== "string" ||
      !/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/.test(options.image)
    ) {
      throw new InvalidArgumentError(`invalid docker image name ${JSON.stringify(options.image)}`);
    }
    this.#options = options;
    this.id = `sandbox:docker:${options.image}`;
    this.path = checkSearchPath(options.path ?? DEFAULT_EXEC_PATH);
    this.shell = options.shell ?? "/bin/sh";
    this.#roots = new WorkdirRoots(options.roots ?? [process.cwd()]);
  }

  resolveCwd(cwd?: string): string {
    const real = this.#roots.resolve(cwd);
    if (/[,:"]/.test(real)) {
      throw new ExecRefusedError(
        "cwd",
        `working directory ${real} contains a character docker cannot mount (, : ")`,
        cwd ?? real,
      );
    }
    return real;
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

  /** Programs are inside the image: never resolved on this machine. */
  readonly resolveExecutable: ExecutableResolver = () => undefined;

  /**
   * The `docker` arguments for a request, with container `name`.
   *
   * @example
   * ```ts
   * sandbox.arguments({ script: "ls", cwd: "/w", env: { CI: "1" } }, "beamclaw-exec-1");
   * // ["run", "--rm", "-i", "--name", "beamclaw-exec-1", "--network", "none", "--read-only", ...]
   * ```
   */
  arguments(request: ExecSpawnRequest, name: string): string[] {
    const o = this.#options;
    const args = [
      "run",
      "--rm",
      "-i",
      "--name",
      name,
      "--network",
      o.network ?? "none",
      "--read-only",
      "--tmpfs",
      "/tmp:rw,nosuid,nodev,size=64m",
      "--cap-drop",
      "ALL",
      "--security-opt",
      "no-new-privileges",
      "--pids-limit",
      String(o.pidsLimit ?? 256),
    ];
    const user =
      o.user ??
      (typeof process.getuid === "function" && typeof process.getgid === "function"
        ? `${process.getuid()}:${process.getgid()}`
        : undefined);
    if (user !== undefined) args.push("--user", user);
    if (o.memory !== undefined) args.push("--memory", o.memory);
    if (o.cpus !== undefined) args.push("--cpus", o.cpus);
    args.push("-v", `${request.cwd}:${request.cwd}:rw`, "-w", request.cwd);
    for (const [key, value] of Object.entries(request.env)) {
      // Values travel in the client's environment (`-e NAME`), not on its command line.
      args.push("-e", HOST_OWNED.has(key) ? `${key}=${value}` : key);
    }
    args.push(o.image, this.shell, "-c", request.script);
    return args;
  }

  /**
   * Checks once that the docker client exists and its daemon answers. Resolves with the
   * client's path.
   *
   * @throws SandboxUnavailableError otherwise.
   */
  probe(): Promise<string> {
    if (this.#probe === undefined) {
      const attempt = this.#runProbe();
      this.#probe = attempt;
      attempt.catch(() => {
        if (this.#probe === attempt) this.#probe = undefined;
      });
    }
    return this.#probe;
  }

  async #runProbe(): Promise<string> {
    const docker = this.#options.docker ?? findExecutable("docker", "/", DOCKER_SEARCH_PATH);
    if (docker === null) {
      throw new SandboxUnavailableError("docker", "the docker client is not installed");
    }
    await new Promise<void>((resolve, reject) => {
      execFile(
        docker,
        ["info", "--format", "{{.ServerVersion}}"],
        { timeout: 15_000, env: this.#clientEnv({}) },
        (error, _stdout, stderr) => {
          if (error === null) resolve();
          else {
            reject(
              new SandboxUnavailableError(
                "docker",
                `the docker daemon is not reachable: ${String(stderr).trim() || error.message}`,
                { cause: error },
              ),
            );
          }
        },
      );
    });
    return docker;
  }

  async spawn(request: ExecSpawnRequest): Promise<ExecChild> {
    const docker = await this.probe();
    const name = `beamclaw-exec-${randomBytes(6).toString("hex")}`;
    const child = await spawnDetached(docker, this.arguments(request, name), {
      cwd: request.cwd,
      env: this.#clientEnv(request.env),
    });
    const pending = new Set<Promise<void>>();
    const run = (args: string[]) => {
      const done = new Promise<void>((resolve) => {
        execFile(docker, args, { timeout: 15_000, env: this.#clientEnv({}) }, () => resolve());
      });
      pending.add(done);
      void done.then(() => pending.delete(done));
    };
    return {
      process: child.process,
      pid: child.pid,
      alive: () => child.alive(),
      signal: (signal) => {
        child.signal(signal);
        run(["kill", "--signal", signal, name]);
      },
      close: async () => {
        await Promise.all(pending);
        run(["rm", "-f", name]);
        await Promise.all(pending);
      },
    };
  }

  #clientEnv(containerEnv: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined && (key.startsWith("DOCKER_") || key === "HOME" || key === "PATH")) {
        out[key] = value;
      }
    }
    for (const [key, value] of Object.entries(containerEnv)) {
      if (!HOST_OWNED.has(key)) out[key] = value;
    }
    return out;
  }
}
