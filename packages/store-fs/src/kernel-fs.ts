/**
 * Whether a directory can hold a store at all: a directory on the kernel's proc or sysfs
 * filesystem cannot hold files, and under /proc Node 20's recursive `mkdir` never returns
 * (procfs answers ENOENT for the new directory, which Node takes for a missing parent and
 * tries again for ever), so an open there would hang instead of failing.
 */
import { stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";

/** The kernel filesystems no store can live on, by their `statfs` magic number (Linux). */
const KERNEL_FILESYSTEMS = new Map<number, string>([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
]);

/**
 * The kernel filesystem (`"proc"` or `"sysfs"`) that `dir` would be created on, which cannot
 * hold a store's files; `undefined` when it is not on one (or not on Linux; any other problem
 * is the store's `open()` to report). Looks at the nearest directory of `dir` that exists,
 * after symbolic links: a few `stat`s, nothing written. `FsStore.open()` refuses such a
 * directory itself; a host checks it beforehand to word the refusal its own way.
 *
 * @param dir - An absolute directory, which need not exist yet.
 *
 * @example
 * ```ts
 * import { kernelFilesystemOf } from "@beamclaw/store-fs";
 *
 * const fs = await kernelFilesystemOf("/proc/data"); // "proc"
 * ```
 */
export async function kernelFilesystemOf(dir: string): Promise<string | undefined> {
  if (process.platform !== "linux") return undefined;
  let probe = dir;
  for (;;) {
    try {
      await stat(probe);
      break;
    } catch (error) {
      if ((error as { code?: unknown }).code !== "ENOENT") return undefined;
      const parent = dirname(probe);
      if (parent === probe) return undefined;
      probe = parent;
    }
  }
  try {
    return KERNEL_FILESYSTEMS.get((await statfs(probe)).type);
  } catch {
    return undefined;
  }
}
