/**
 * A small real file system for disk faults: a `tmpfs` of a fixed size mounted on a temporary
 * directory (so that filling it gives the store a genuine `ENOSPC`), which can be remounted
 * read-only (a genuine `EROFS`, which holds even for root, unlike `chmod`). Mounting needs
 * root or `CAP_SYS_ADMIN` (CI runs as root); without it the helper fails with a message that
 * says so. `unmount()` lazily detaches it and deletes the directory.
 */
import { execFile } from "node:child_process";
import { mkdtemp, open, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface SmallDisk {
  /** The mount point. */
  readonly dir: string;
  /**
   * Writes a filler file until the disk is full (ENOSPC), then gives back `leaveBytes` of it
   * (default 0); returns the filler's size.
   */
  fill(leaveBytes?: number): Promise<number>;
  /** Deletes the filler file. */
  free(): Promise<void>;
  /** Remounts read-only (`ro: true`) or read-write. */
  remount(options: { ro: boolean }): Promise<void>;
  unmount(): Promise<void>;
}

export async function mountSmallDisk(sizeBytes: number): Promise<SmallDisk> {
  const dir = await mkdtemp(join(tmpdir(), "beamclaw-faults-disk-"));
  try {
    await run("mount", ["-t", "tmpfs", "-o", `size=${sizeBytes},mode=0755`, "tmpfs", dir]);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(
      `mounting a ${sizeBytes}-byte tmpfs on ${dir} failed; the disk-fault tests need root or CAP_SYS_ADMIN (as in CI): ${(error as Error).message}`,
    );
  }
  const filler = join(dir, "filler.bin");
  return {
    dir,
    async fill(leaveBytes = 0) {
      const handle = await open(filler, "a");
      const block = Buffer.alloc(64 * 1024, 1);
      let written = 0;
      try {
        for (;;) {
          const { bytesWritten } = await handle.write(block);
          written += bytesWritten;
          if (bytesWritten < block.length) break;
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
      }
      // The last blocks may have gone to a partial page: top up byte by byte.
      const one = Buffer.alloc(1, 1);
      for (;;) {
        try {
          const { bytesWritten } = await handle.write(one);
          if (bytesWritten === 0) break;
          written += bytesWritten;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
          break;
        }
      }
      if (leaveBytes > 0) {
        written = Math.max(0, written - leaveBytes);
        await handle.truncate(written);
      }
      await handle.close();
      return written;
    },
    async free() {
      await unlink(filler).catch(() => undefined);
    },
    async remount({ ro }) {
      await run("mount", ["-o", `remount,${ro ? "ro" : "rw"}`, dir]);
    },
    async unmount() {
      await run("umount", ["-l", dir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
