/**
 * Whether an fs store's directory can be one: a directory on the kernel's proc or sysfs
 * filesystem cannot hold files, and under /proc Node 20's recursive `mkdir` never returns
 * (procfs answers ENOENT for the new directory, which Node takes for a missing parent and
 * tries again for ever), so the start would hang there instead of failing.
 */
import { stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";

/** The kernel filesystems no store can live on, by their `statfs` magic number (Linux). */
const KERNEL_FILESYSTEMS = new Map<number, string>([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
]);

/**
 * Why `dir` (absolute) cannot be a store's directory, or undefined when nothing stops it here
 * (the store's own open reports any other problem). Looks at the filesystem of the nearest
 * directory of `dir` that exists, after symbolic links: a few `stat`s, no write.
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

/**
 * The problem of `store.dir` at `dir` (absolute) in one line, or undefined.
 * @see kernelFilesystemOf
 */
export async function storeDirProblem(dir: string): Promise<string | undefined> {
  const fs = await kernelFilesystemOf(dir);
  return fs === undefined
    ? undefined
    : `store.dir ${dir} is on the kernel's ${fs} filesystem, which cannot hold a store's files: give store.dir a directory on a disk`;
}
