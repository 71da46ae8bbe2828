/**
 * Shared test helpers: temp directories, the store bundled for child processes, and child
 * processes that report through stdout lines.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const packageDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** A fresh temp directory; remove it with {@link removeDir}. */
export function tempDir(label = "store-fs-"): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), label));
}

/** Removes a directory tree. */
export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

let bundled: Promise<string> | undefined;

/**
 * The package's source bundled into one ES module for child processes (`node` cannot run
 * TypeScript), in a temp directory. The package takes only its error classes, the stores'
 * shared limits and key paging helpers from `@beamclaw/core` (`fixtures/core-subset.ts`); they
 * are bundled from core's source, which keeps the bundle small (each crash-test child loads
 * it) and independent of whether core's `dist` is being rebuilt.
 */
export function storeModule(): Promise<string> {
  bundled ??= (async () => {
    const outfile = path.join(await tempDir("store-fs-bundle-"), "store-fs.mjs");
    await build({
      entryPoints: [path.join(packageDir, "src", "index.ts")],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      outfile,
      logLevel: "warning",
      alias: { "@beamclaw/core": path.join(packageDir, "test", "fixtures", "core-subset.ts") },
    });
    return outfile;
  })();
  return bundled;
}

/** Deletes the bundle made by {@link storeModule} (call in `afterAll`). */
export async function removeStoreModule(): Promise<void> {
  if (bundled === undefined) return;
  const file = await bundled.catch(() => undefined);
  bundled = undefined;
  if (file !== undefined) await rm(path.dirname(file), { recursive: true, force: true });
}

/** A fixture script's path. */
export function fixture(name: string): string {
  return path.join(packageDir, "test", "fixtures", name);
}

/** A child node process whose stdout is read line by line. */
export class LineProcess {
  readonly child: ChildProcess;
  /** Complete lines printed so far. */
  readonly lines: string[] = [];
  stderr = "";
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #partial = "";
  #waiters: Array<{ match: (line: string) => boolean; resolve: (line: string) => void }> = [];

  constructor(script: string, args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => {
      const text = this.#partial + chunk;
      const parts = text.split("\n");
      this.#partial = parts.pop()!;
      for (const line of parts) {
        this.lines.push(line);
        for (const waiter of [...this.#waiters]) {
          if (waiter.match(line)) {
            this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
      }
    });
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    this.closed = new Promise((resolve) => {
      this.child.on("close", (code, signal) => resolve({ code, signal }));
    });
  }

  /** Resolves with the first line (already printed or to come) that `match` accepts. */
  waitFor(match: (line: string) => boolean, what: string, timeoutMs = 15_000): Promise<string> {
    const seen = this.lines.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`timed out waiting for ${what}; stderr: ${this.stderr}`));
      }, timeoutMs);
      const waiter = {
        match,
        resolve: (line: string) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.#waiters.push(waiter);
      void this.closed.then(() => {
        if (!this.#waiters.includes(waiter)) return;
        clearTimeout(timer);
        reject(new Error(`process exited before ${what}; stderr: ${this.stderr}`));
      });
    });
  }

  /** Sends SIGKILL and waits until the process and its pipes are closed. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.closed;
  }
}

/** Every file under `dir` (relative path -> content), for before/after comparisons. */
export async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (sub: string): Promise<void> => {
    for (const entry of await readdir(path.join(dir, sub), { withFileTypes: true })) {
      const rel = sub === "" ? entry.name : `${sub}/${entry.name}`;
      if (entry.isDirectory()) await walk(rel);
      else out.set(rel, await readFile(path.join(dir, rel), "utf8"));
    }
  };
  await walk("");
  return out;
}
