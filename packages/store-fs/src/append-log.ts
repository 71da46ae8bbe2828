/**
 * An append-only JSONL log with group commit and compaction: the storage under the session
 * index, the inbound queue, key/value and locks.
 *
 * Every operation is one line. Its owner applies the operation to its in-memory state
 * synchronously (so concurrent operations are decided in call order) and then awaits
 * {@link AppendLog.append}, which resolves once the line is on disk (written and fsync'd).
 * Lines submitted while a write is in flight are written together in the next write, with one
 * fsync for all of them: many concurrent writers cost about one fsync each round trip, not one
 * per writer.
 *
 * Compaction replaces the whole file with a snapshot of the live state (atomically: temp
 * file, fsync, rename, directory fsync). The snapshot is taken synchronously when compaction
 * is requested, so it contains every operation submitted before it and none after; lines
 * queued before it are not written at all (the snapshot holds them), lines submitted after it
 * go to the new file.
 *
 * A compaction that finds the disk full (`ENOSPC`, `EDQUOT`) while writing its snapshot has
 * changed nothing (the snapshot is a separate temp file, removed again): it is skipped, its
 * promise rejects, and the lines it would have covered are appended as usual. The line count
 * stays that of the snapshot, so the next attempt comes only after as many lines again.
 *
 * Any other failed write or fsync is not retried: the file is truncated back to its last durable
 * length, the log refuses further writes, and the owner is told (`onFailure`) so that the
 * store stops. After an fsync failure the kernel may have dropped the dirty pages, so a retry
 * could report success for data that is gone (PostgreSQL's "fsyncgate", 2018).
 */
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import { errnoCode, type FileSystem } from "./files.js";

/** A log is compacted only once it holds at least this many dead lines... */
export const COMPACT_MIN_GARBAGE = 1000;

/**
 * ...and more dead lines than live ones: the rewrite (O(live)) is then paid for by at least
 * as many appends, so the amortized cost of a write stays constant.
 */
export function shouldCompact(lineCount: number, live: number): boolean {
  const dead = lineCount - live;
  return dead >= COMPACT_MIN_GARBAGE && dead > live;
}

/** Errors of a full disk: a compaction that meets one is skipped rather than stopping the log. */
const DISK_FULL = new Set(["ENOSPC", "EDQUOT"]);

/** Compaction writes its snapshot in pieces of about this many characters. */
const REWRITE_CHUNK = 1 << 20;

interface Pending {
  /**
   * Lines to append, or the full snapshot (one string per line: together they may be longer
   * than a string can be) when `rewrite` is set.
   */
  text: string | readonly string[];
  rewrite: boolean;
  lineCount: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** An append-only JSONL file with group commit. */
export class AppendLog {
  readonly file: string;
  readonly #fs: FileSystem;
  readonly #onFailure: (error: unknown, file: string) => unknown;
  #handle: FileHandle | undefined;
  #exists: boolean;
  /** Bytes known to be on disk (the length to truncate back to after a failed write). */
  #durableSize: number;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #last: Promise<void> = Promise.resolve();
  #failure: unknown;
  #closed = false;
  #truncating: Promise<void> | undefined;
  /** Lines in the file once everything submitted is written (for compaction decisions). */
  lineCount: number;

  /**
   * @param size current length of the file (after any tail repair), 0 if it does not exist
   * @param lineCount lines in the file
   * @param onFailure called once when a write fails; returns the error to reject with
   */
  constructor(
    file: string,
    fileSystem: FileSystem,
    state: { exists: boolean; size: number; lineCount: number },
    onFailure: (error: unknown, file: string) => unknown,
  ) {
    this.file = file;
    this.#fs = fileSystem;
    this.#exists = state.exists;
    this.#durableSize = state.size;
    this.lineCount = state.lineCount;
    this.#onFailure = onFailure;
  }

  /** Appends `text` (one or more complete lines). Resolves when it is durable. */
  append(text: string, lineCount = 1): Promise<void> {
    this.lineCount += lineCount;
    return this.#submit(text, false, lineCount);
  }

  /**
   * Replaces the file with `snapshot` (complete lines, one string each: the live state).
   * Resolves when the new file is durable. Appends submitted before this call are covered by
   * the snapshot.
   */
  rewrite(snapshot: readonly string[], lineCount: number): Promise<void> {
    this.lineCount = lineCount;
    return this.#submit(snapshot, true, lineCount);
  }

  /** Resolves when everything submitted so far is durable (rejects if a write failed). */
  barrier(): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return this.#last;
  }

  /** Waits for pending writes (ignoring their failures) and closes the file. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#last.catch(() => {});
    await this.#flushing?.catch(() => {});
    await this.#truncating;
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }

  #submit(text: string | readonly string[], rewrite: boolean, lineCount: number): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new Error(`log ${this.file} is closed`));
    const promise = new Promise<void>((resolve, reject) => {
      this.#queue.push({ text, rewrite, lineCount, resolve, reject });
    });
    // `#last` is only used as a barrier; mark it handled so an unobserved failure is not an
    // unhandled rejection (the submitter's own promise still rejects).
    // A skipped compaction (disk full) rejects its own promise only: the log is as it was.
    this.#last = rewrite
      ? promise.catch((error: unknown) => {
          if (this.#failure !== undefined) throw error;
        })
      : promise;
    this.#last.catch(() => {});
    promise.catch(() => {});
    this.#flushing ??= this.#flush();
    return promise;
  }

  async #flush(): Promise<void> {
    // Let every operation submitted in this turn of the event loop join the first write.
    await Promise.resolve();
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        let skipped: { error: unknown } | undefined;
        try {
          skipped = await this.#writeBatch(batch);
        } catch (error) {
          this.#fail(error, batch);
          return;
        }
        for (const item of batch) {
          if (skipped !== undefined && item.rewrite) item.reject(skipped.error);
          else item.resolve();
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  /** Writes a batch; returns the disk-full error of a compaction it skipped, if any. */
  async #writeBatch(batch: Pending[]): Promise<{ error: unknown } | undefined> {
    let from = 0;
    let skipped: { error: unknown } | undefined;
    for (let i = batch.length - 1; i >= 0; i--) {
      if (batch[i]!.rewrite) {
        skipped = await this.#replace(batch[i]!.text as readonly string[]);
        // Skipped: every line of the batch is appended instead.
        from = skipped === undefined ? i + 1 : 0;
        break;
      }
    }
    // One buffer per submission: lines that each fit in a string may not fit in one together.
    const parts: Buffer[] = [];
    for (let i = from; i < batch.length; i++) {
      if (!batch[i]!.rewrite) parts.push(Buffer.from(batch[i]!.text as string));
    }
    if (parts.length === 0) return skipped;
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    const handle = this.#handle ?? (await this.#open());
    await writeAll(handle, data);
    if (this.#fs.fsync) await handle.sync();
    this.#durableSize += data.length;
    return skipped;
  }

  async #open(): Promise<FileHandle> {
    if (this.#handle !== undefined) return this.#handle;
    await this.#fs.ensureDir(path.dirname(this.file));
    const handle = await fs.open(this.file, "a", 0o644);
    if (!this.#exists) {
      try {
        await this.#fs.syncDir(path.dirname(this.file));
      } catch (error) {
        await handle.close();
        throw error;
      }
      this.#exists = true;
    }
    this.#handle = handle;
    return handle;
  }

  /**
   * Replaces the file with `snapshot`; returns the error instead of throwing when the disk was
   * full before the rename (nothing changed: the compaction is skipped).
   */
  async #replace(snapshot: readonly string[]): Promise<{ error: unknown } | undefined> {
    const dir = path.dirname(this.file);
    await this.#fs.ensureDir(dir);
    const temp = this.#fs.tempPath(path.basename(this.file));
    let size = 0;
    try {
      const tempHandle = await fs.open(temp, "wx", 0o644);
      try {
        let chunk = "";
        for (const line of snapshot) {
          if (chunk.length > 0 && chunk.length + line.length > REWRITE_CHUNK) {
            size += await writeAll(tempHandle, Buffer.from(chunk, "utf8"));
            chunk = "";
          }
          chunk += line;
        }
        if (chunk.length > 0) size += await writeAll(tempHandle, Buffer.from(chunk, "utf8"));
        if (this.#fs.fsync) await tempHandle.sync();
      } finally {
        await tempHandle.close();
      }
    } catch (error) {
      await fs.rm(temp, { force: true }).catch(() => {});
      if (DISK_FULL.has(errnoCode(error) ?? "")) return { error };
      throw error;
    }
    // The old handle would keep appending to the replaced (unlinked) file: close it first;
    // the next append reopens the new file.
    const old = this.#handle;
    this.#handle = undefined;
    await old?.close();
    await fs.rename(temp, this.file);
    this.#exists = true;
    this.#durableSize = size;
    await this.#fs.syncDir(dir);
    return undefined;
  }

  #fail(error: unknown, batch: Pending[]): void {
    const rejection = this.#onFailure(error, this.file);
    this.#failure = rejection;
    const rest = this.#queue;
    this.#queue = [];
    for (const item of [...batch, ...rest]) item.reject(rejection);
    // Best effort: do not leave a line whose write was reported as failed in the file.
    const handle = this.#handle;
    if (handle !== undefined) {
      this.#truncating = handle.truncate(this.#durableSize).catch(() => {});
    }
  }
}

/** Writes all of `data` at the handle's position (appending, for a handle opened so); returns its length. */
async function writeAll(handle: FileHandle, data: Buffer): Promise<number> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await handle.write(data, written, data.length - written);
    written += bytesWritten;
  }
  return data.length;
}
