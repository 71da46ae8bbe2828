/**
 * Durable file primitives: directory fsync, directory creation whose entries survive a power
 * loss, and whole-file atomic replacement (temp file, fsync, rename, fsync of the directory).
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";

/** Error codes a directory fsync may fail with on platforms that do not support it. */
const DIR_SYNC_UNSUPPORTED = new Set(["EISDIR", "EPERM", "EINVAL", "EBADF"]);

/** The shared file-level settings of one open store. */
export class FileSystem {
  readonly #fsync: boolean;
  readonly #tmpDir: string;
  /** Directories whose own entry is known to be durable in their parent. */
  readonly #durableDirs = new Set<string>();
  #tmpCounter = 0;
  readonly #tmpPrefix = `${process.pid}-${randomBytes(4).toString("hex")}`;

  constructor(options: { fsync: boolean; tmpDir: string }) {
    this.#fsync = options.fsync;
    this.#tmpDir = options.tmpDir;
  }

  /** Whether writes are fsync'd. */
  get fsync(): boolean {
    return this.#fsync;
  }

  /** The directory atomic writes stage their temp files in (emptied on open). */
  get tmpDir(): string {
    return this.#tmpDir;
  }

  /** A fresh temp-file path inside the store's temp directory. */
  tempPath(label: string): string {
    this.#tmpCounter++;
    return path.join(this.#tmpDir, `${this.#tmpPrefix}-${this.#tmpCounter}-${label}`);
  }

  /** Flushes a directory's entries (a created, renamed or deleted file) to disk. */
  async syncDir(dir: string): Promise<void> {
    if (!this.#fsync) return;
    const handle = await fs.open(dir, "r");
    try {
      await handle.sync();
    } catch (error) {
      // Windows cannot fsync a directory; NTFS journals its metadata anyway.
      if (!DIR_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? "")) throw error;
    } finally {
      await handle.close();
    }
  }

  /**
   * Creates `dir` (and missing parents) so that it survives a power loss: every directory
   * that had to be created is made durable in its parent.
   */
  async ensureDir(dir: string): Promise<void> {
    if (this.#durableDirs.has(dir)) return;
    const first = await fs.mkdir(dir, { recursive: true });
    if (first !== undefined) {
      // fsync the parent of the first created directory and every created directory but
      // the last, so each new entry is on disk.
      let current = path.dirname(first);
      const chain = [current];
      const relative = path.relative(current, dir).split(path.sep);
      for (const part of relative.slice(0, -1)) {
        current = path.join(current, part);
        chain.push(current);
      }
      for (const d of chain) await this.syncDir(d);
    }
    this.#durableDirs.add(dir);
  }

  /** Forgets that `dir` exists (after it was removed). */
  forgetDir(dir: string): void {
    for (const known of this.#durableDirs) {
      if (known === dir || known.startsWith(`${dir}${path.sep}`)) this.#durableDirs.delete(known);
    }
  }

  /**
   * Replaces `file` with `data` atomically: a reader (or a process started after a crash)
   * sees the old content or the new one, never a mix. Temp file in the store's temp
   * directory, write, fsync, rename over `file`, fsync of `file`'s directory.
   *
   * If this rejects before the rename, nothing changed. If it rejects after the rename (the
   * directory fsync failed), the new content is visible but may not survive a power loss;
   * callers treat that as a failed store (see `FsStore`).
   */
  async writeFileAtomic(file: string, data: string | Buffer): Promise<void> {
    const dir = path.dirname(file);
    await this.ensureDir(dir);
    const temp = this.tempPath(path.basename(file));
    const handle = await fs.open(temp, "wx", 0o644);
    let renamed = false;
    try {
      try {
        await handle.writeFile(data);
        if (this.#fsync) await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(temp, file);
      renamed = true;
    } catch (error) {
      if (!renamed) await fs.rm(temp, { force: true }).catch(() => {});
      throw new AtomicWriteError(error, false, file);
    }
    try {
      await this.syncDir(dir);
    } catch (error) {
      throw new AtomicWriteError(error, true, file);
    }
  }

  /**
   * Deletes `file` durably. Returns whether it existed. If the directory fsync fails, the file
   * is already gone (though perhaps not for good): that rejects with an `AtomicWriteError`
   * whose `visible` is set, which stops the store (see `FsStore`).
   */
  async removeFile(file: string): Promise<boolean> {
    try {
      await fs.unlink(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw error;
    }
    try {
      await this.syncDir(path.dirname(file));
    } catch (error) {
      throw new AtomicWriteError(error, true, file);
    }
    return true;
  }
}

/**
 * An atomic write (or a deletion) failed; `visible` says whether the change had already been
 * made (the new content replaced the old, the file was deleted), `file` is the file concerned.
 */
export class AtomicWriteError extends Error {
  readonly visible: boolean;
  readonly file: string | undefined;
  constructor(cause: unknown, visible: boolean, file?: string) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.visible = visible;
    this.file = file;
  }
}

/** ENOENT, or ENOTDIR (a parent is a file): either way there is no such file. */
function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** Reads a file, or `undefined` when it does not exist. */
export async function readFileIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(file);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

/** Lists a directory, or `[]` when it does not exist. */
export async function readDirIfExists(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
}

/** The errno code of an error, if it has one. */
export function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Cuts a file to `length` and fsyncs it (the torn-tail repair). */
export async function truncateDurably(file: string, length: number, fsync: boolean): Promise<void> {
  const handle = await fs.open(file, "r+");
  try {
    await handle.truncate(length);
    if (fsync) await handle.sync();
  } finally {
    await handle.close();
  }
}
