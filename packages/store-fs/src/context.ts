/**
 * What every part of an open store shares: where it lives, how it writes, the clock, how it
 * reports a recovery, and how it stops after a failed write.
 */
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { BeamClawError, StoreError } from "@beamclaw/core";
import { AtomicWriteError, errnoCode, type FileSystem } from "./files.js";

/**
 * Something the store repaired or cleaned up, reported through `FsStoreOptions.onRecovery`
 * and kept in `FsStore.recoveries` until the next `open()`.
 */
export interface FsStoreRecovery {
  /**
   * - `torn-tail-truncated`: an append-only file ended in a partial line (or an incomplete
   *   multi-entry transcript append) left by a crash; those bytes were cut. They were never
   *   acknowledged: every acknowledged write is intact.
   * - `stale-lock-broken`: the previous owner of the directory died without closing it.
   * - `temp-files-removed`: temp files of atomic writes interrupted by a crash were deleted
   *   (the files they were meant to replace are intact).
   */
  kind: "torn-tail-truncated" | "stale-lock-broken" | "temp-files-removed";
  /** The file concerned, relative to the store directory. */
  file: string;
  /** For `torn-tail-truncated`: how many bytes were cut. */
  bytes?: number;
  /** A sentence for logs. */
  detail: string;
}

/** The shared services of one open store. */
export interface StoreContext {
  /** Absolute store directory. */
  readonly dir: string;
  readonly files: FileSystem;
  /** Epoch ms. */
  now(): number;
  /** Records and publishes a recovery. */
  report(recovery: FsStoreRecovery): void;
  /**
   * Stops the store after a write failed in a way that leaves the on-disk state uncertain;
   * returns the error every pending and later operation rejects with.
   */
  fail(error: unknown, file: string): StoreError;
  /** `file` relative to the store directory, for messages. */
  relative(file: string): string;
}

/** Creates the context of one open store. */
export function createContext(options: {
  dir: string;
  files: FileSystem;
  report: (recovery: FsStoreRecovery) => void;
  fail: (error: StoreError) => void;
}): StoreContext {
  const { dir } = options;
  let failure: StoreError | undefined;
  const context: StoreContext = {
    dir,
    files: options.files,
    now: () => Date.now(),
    report: options.report,
    relative: (file) => path.relative(dir, file) || ".",
    fail(error, file) {
      if (failure !== undefined) return failure;
      failure = new StoreError(
        "STORE_UNAVAILABLE",
        `store-fs at ${dir} stopped after a failed write to ${context.relative(file)} (${describeIo(error)}); every acknowledged write is intact: close the store, fix the cause (disk full? permissions?) and open it again`,
        { cause: error },
      );
      options.fail(failure);
      return failure;
    },
  };
  return context;
}

/** A short description of an I/O error. */
export function describeIo(error: unknown): string {
  const code = errnoCode(error);
  const message = error instanceof Error ? error.message : String(error);
  return code !== undefined && !message.startsWith(code) ? `${code}: ${message}` : message;
}

/**
 * The error an operation rejects with: BeamClaw errors as they are, an atomic write that
 * failed after its rename stops the store, any other I/O error is `STORE_UNAVAILABLE`
 * (nothing was written).
 */
export function toStoreError(error: unknown, context: StoreContext, file?: string): BeamClawError {
  if (BeamClawError.isInstance(error)) return error;
  if (error instanceof AtomicWriteError) {
    if (error.visible) return context.fail(error.cause, file ?? error.file ?? context.dir);
    return ioFailure(error.cause, context, file ?? error.file);
  }
  return ioFailure(error, context, file);
}

function ioFailure(error: unknown, context: StoreContext, file?: string): StoreError {
  const where = file === undefined ? "" : ` (${context.relative(file)})`;
  return new StoreError(
    "STORE_UNAVAILABLE",
    `store-fs at ${context.dir}: I/O failed${where}; the store was not changed: ${describeIo(error)}`,
    { cause: error },
  );
}

/**
 * Appends `data` at the end of `handle` (opened in append mode) and fsyncs. On failure the
 * file is cut back to `sizeBefore`, so a rejection means nothing was written; if that cut
 * fails, or the fsync itself failed (the page cache can no longer be trusted), the store
 * stops (see `StoreContext.fail`).
 */
export async function appendDurably(
  handle: FileHandle,
  data: Buffer,
  sizeBefore: number,
  context: StoreContext,
  file: string,
): Promise<void> {
  let syncing = false;
  try {
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await handle.write(data, written, data.length - written);
      written += bytesWritten;
    }
    syncing = true;
    if (context.files.fsync) await handle.sync();
  } catch (error) {
    try {
      await handle.truncate(sizeBefore);
    } catch {
      throw context.fail(error, file);
    }
    if (syncing) throw context.fail(error, file);
    throw error;
  }
}
