/**
 * A `store.dir` no store can live in, refused before the start or reported by `doctor` in
 * the configuration's words (the store's own `open()` refuses it too).
 */

/**
 * The problem of `store.dir` at `dir` (absolute) in one line, or undefined: a directory on
 * the kernel's proc or sysfs filesystem (see `kernelFilesystemOf` of `@beamclaw/store-fs`,
 * which must be installed).
 */
export async function storeDirProblem(dir: string): Promise<string | undefined> {
  const { kernelFilesystemOf } = await import("@beamclaw/store-fs");
  const fs = await kernelFilesystemOf(dir);
  return fs === undefined
    ? undefined
    : `store.dir ${dir} is on the kernel's ${fs} filesystem, which cannot hold a store's files: give store.dir a directory on a disk`;
}
