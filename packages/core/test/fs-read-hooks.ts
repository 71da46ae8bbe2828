/**
 * `node:fs/promises` with a hook on the end of every read of a file, for the config tests'
 * `vi.mock` factories. Not a test file itself.
 *
 * @example
 * ```ts
 * let onReadEnd: ReadEndHook | undefined;
 * vi.mock("node:fs/promises", async (original) => {
 *   const { withReadEndHook } = await import("./fs-read-hooks.js");
 *   return withReadEndHook(await original(), () => onReadEnd);
 * });
 * ```
 */
import type * as FsPromises from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";

/**
 * Called with the path each time a read of a file ends: a `readFile`, or a `FileHandle.read`
 * that reached the end of the file (or an `open` that failed). The read's caller waits for it.
 */
export type ReadEndHook = (path: string) => void | Promise<void>;

/** `real` with `readFile` and `open` calling the hook `current()` returns, if any. */
export function withReadEndHook(
  real: typeof FsPromises,
  current: () => ReadEndHook | undefined,
): typeof FsPromises {
  const readFile = (async (...args: Parameters<typeof real.readFile>) => {
    try {
      return await real.readFile(...args);
    } finally {
      await current()?.(String(args[0]));
    }
  }) as typeof real.readFile;
  const open = (async (...args: Parameters<typeof real.open>) => {
    let handle: FileHandle;
    try {
      handle = await real.open(...args);
    } catch (error) {
      await current()?.(String(args[0]));
      throw error;
    }
    const read = handle.read.bind(handle) as (
      ...readArgs: unknown[]
    ) => Promise<{ bytesRead: number }>;
    handle.read = (async (...readArgs: unknown[]) => {
      const result = await read(...readArgs);
      if (result.bytesRead === 0) await current()?.(String(args[0]));
      return result;
    }) as FileHandle["read"];
    return handle;
  }) as typeof real.open;
  return { ...real, readFile, open };
}
