/**
 * A private `redis-server` on a free port of 127.0.0.1, in its own temporary directory, with
 * append-only persistence and an fsync per write (so a restart keeps every acknowledged
 * write). It can be killed and started again on the same port and directory; `stop()` kills it
 * and deletes the directory. Needs `redis-server` on PATH (CI installs it).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

function freePort(): Promise<number> {
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

class ExitedWhileStarting extends Error {
  constructor(code: number | null) {
    super(`redis-server exited with ${code} while starting`);
  }
}

export class RedisServer {
  readonly port: number;
  readonly dir: string;
  #child: ChildProcess | undefined;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  static async start(): Promise<RedisServer> {
    const server = new RedisServer(
      await freePort(),
      await mkdtemp(join(tmpdir(), "beamclaw-faults-redis-")),
    );
    await server.up();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * Starts the server (again) and resolves once it answers PING. One that exits while starting
   * is started again, a few times: between a kill and a restart on the same port, a client's
   * reconnect can take that port as its own end of a connection for a moment.
   */
  async up(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#upOnce();
        return;
      } catch (error) {
        if (!(error instanceof ExitedWhileStarting) || attempt === 5) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  async #upOnce(): Promise<void> {
    const child = spawn(
      "redis-server",
      [
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        "--dir",
        this.dir,
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--logfile",
        join(this.dir, "redis.log"),
      ],
      { stdio: "ignore" },
    );
    this.#child = child;
    const failed = new Promise<never>((_, reject) => {
      child.once("error", (error) =>
        reject(new Error(`redis-server could not start (is it installed?): ${error.message}`)),
      );
      child.once("exit", (code) => reject(new ExitedWhileStarting(code)));
    });
    failed.catch(() => undefined);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (await Promise.race([ping(this.port), failed])) return;
      if (Date.now() > deadline)
        throw new Error(`redis-server on ${this.port} did not answer PING`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** Kills the server (SIGKILL: a crash) and waits for it to exit. */
  async down(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    await this.down();
    await rm(this.dir, { recursive: true, force: true });
  }
}
