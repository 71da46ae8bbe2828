/**
 * A private `redis-server` for the fault tests: its own free port on 127.0.0.1, its own
 * temporary directory, append-only persistence with an fsync per write, and methods to
 * crash, pause and restart it. Every test that starts one stops it (`stop()` kills the
 * process, waits for it to exit and deletes the directory).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

/** Where `redis-server` is on PATH (like `which redis-server`), or a clear error. */
export function findRedisServer(): string {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, "redis-server");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  throw new Error(
    "redis-server is not on PATH: install it (apt-get install redis-server) or run .ci/run, which does",
  );
}

/** A TCP port on 127.0.0.1 that nothing listened on a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface RedisServerOptions {
  /** `appendonly yes` with `appendfsync always`. Default true. */
  appendonly?: boolean;
}

export class RedisServerProcess {
  readonly port: number;
  readonly dir: string;
  readonly #args: string[];
  readonly #binary: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(binary: string, port: number, dir: string, args: string[]) {
    this.#binary = binary;
    this.port = port;
    this.dir = dir;
    this.#args = args;
  }

  /** Starts a server and resolves once it answers PING. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServerProcess> {
    const binary = findRedisServer();
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-redis-"));
    const port = await freePort();
    const appendonly = options.appendonly ?? true;
    const args = [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      appendonly ? "yes" : "no",
      "--appendfsync",
      "always",
      "--daemonize",
      "no",
      "--logfile",
      join(dir, "redis.log"),
    ];
    const server = new RedisServerProcess(binary, port, dir, args);
    try {
      await server.#spawn();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /**
   * Starts the server. One that exits while starting is started again, a few times: between a
   * kill and a restart on the same port, a client's reconnect can take that port as its own
   * end of a connection for a moment.
   */
  async #spawn(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#spawnOnce();
        return;
      } catch (error) {
        if (this.#child !== undefined || attempt === 5) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  async #spawnOnce(): Promise<void> {
    const child = spawn(this.#binary, this.#args, { stdio: "ignore" });
    this.#child = child;
    this.#exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
      child.once("error", () => resolve());
    });
    await this.#waitForPong(10_000);
  }

  /** Polls PING until `+PONG` (not `-LOADING`), for at most `timeoutMs`. */
  async #waitForPong(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.#child === undefined) throw new Error("redis-server exited while starting");
      if (await ping(this.port)) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`redis-server on port ${this.port} did not answer PING within ${timeoutMs} ms`);
  }

  /** Kills the server with `signal` (a crash for SIGKILL) and waits until it has exited. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    // A paused server must run again to act on a catchable signal; SIGKILL needs no help, and
    // waking the server first would let it answer what it was sent while frozen.
    if (signal !== "SIGKILL") child.kill("SIGCONT");
    child.kill(signal);
    await this.#exited;
  }

  /** Starts the server again on the same port and directory (it reloads its append-only file). */
  async restart(): Promise<void> {
    await this.kill();
    await this.#spawn();
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void {
    this.#child?.kill("SIGSTOP");
  }

  resume(): void {
    this.#child?.kill("SIGCONT");
  }

  /** Kills the server if it runs and deletes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** True if something on the port answers PING with PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let reply = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1");
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
  });
}
