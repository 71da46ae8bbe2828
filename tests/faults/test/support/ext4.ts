/**
 * A small ext4 file system in an image file, loop-mounted with `errors=remount-ro`: the way a
 * disk goes read-only under a running process in production. The kernel refuses a plain
 * `mount -o remount,ro` while any file is open for writing (`EBUSY`), and a store always has
 * its logs open; but when ext4 meets an error, it remounts itself read-only at once, open
 * files included, and every later write fails with `EROFS`. `failReadOnly()` sets that off
 * through ext4's own fault-injection file (`/sys/fs/ext4/<device>/trigger_fs_error`), with no
 * real damage.
 *
 * A file system that went read-only after an error stays so until it is unmounted (a
 * `remount,rw` leaves it read-only), as on a real server: `repair()` unmounts it (its users
 * must have closed their files), checks it with `e2fsck -fy` and mounts it again, writable.
 *
 * Needs root or `CAP_SYS_ADMIN`, a loop device, and `mkfs.ext4`/`e2fsck` (e2fsprogs); without
 * them the helper fails with a message that says so. `unmount()` detaches it and deletes
 * everything.
 */
import { execFile } from "node:child_process";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Ext4Disk {
  /** The mount point. */
  readonly dir: string;
  /** Makes ext4 meet an error: it remounts itself read-only, open files included. */
  failReadOnly(): Promise<void>;
  /** Whether the mount is read-only now (from `/proc/self/mountinfo`). */
  readOnly(): Promise<boolean>;
  /**
   * Unmounts, runs `e2fsck -fy` on the image, mounts it again read-write; resolves with
   * e2fsck's exit code (0: clean, 1: errors corrected; anything else rejects).
   */
  repair(): Promise<number>;
  unmount(): Promise<void>;
}

/** The mount's own options and its file system's (after the ` - ` separator) in mountinfo. */
async function mountOptions(dir: string): Promise<string[] | undefined> {
  const lines = (await readFile("/proc/self/mountinfo", "utf8")).split("\n");
  for (const line of lines) {
    const fields = line.split(" ");
    if (fields[4] !== dir) continue;
    const separator = fields.indexOf("-");
    return [...(fields[5]?.split(",") ?? []), ...(fields[separator + 3]?.split(",") ?? [])];
  }
  return undefined;
}

async function loopDevice(dir: string): Promise<string> {
  const { stdout } = await run("findmnt", ["-n", "-o", "SOURCE", "--target", dir]);
  const device = stdout.trim();
  if (!device.startsWith("/dev/loop")) {
    throw new Error(`expected a loop device under ${dir}, found ${JSON.stringify(device)}`);
  }
  return device;
}

export async function mountExt4Disk(sizeBytes: number): Promise<Ext4Disk> {
  const root = await mkdtemp(join(tmpdir(), "beamclaw-faults-ext4-"));
  const image = join(root, "disk.img");
  const dir = join(root, "mnt");
  const mount = () =>
    run("mount", ["-t", "ext4", "-o", "loop,errors=remount-ro", image, dir]).then(() => undefined);
  try {
    const handle = await open(image, "w");
    await handle.truncate(sizeBytes);
    await handle.close();
    await run("mkfs.ext4", ["-q", "-F", image]);
    await run("mkdir", [dir]);
    await mount();
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    throw new Error(
      `making and loop-mounting a ${sizeBytes}-byte ext4 image in ${root} failed; the read-only-disk test needs root or CAP_SYS_ADMIN, a loop device and e2fsprogs (as in CI): ${(error as Error).message}`,
    );
  }
  let mounted = true;
  return {
    dir,
    async failReadOnly() {
      const device = basename(await loopDevice(dir));
      await writeFile(`/sys/fs/ext4/${device}/trigger_fs_error`, "beamclaw fault test\n");
    },
    async readOnly() {
      const options = await mountOptions(dir);
      return options?.includes("ro") === true || options?.includes("emergency_ro") === true;
    },
    async repair() {
      await run("umount", [dir]);
      mounted = false;
      let code = 0;
      try {
        await run("e2fsck", ["-fy", image]);
      } catch (error) {
        code = Number((error as { code?: unknown }).code);
        if (code !== 1) throw error;
      }
      await mount();
      mounted = true;
      return code;
    },
    async unmount() {
      if (mounted) await run("umount", ["-l", dir]).catch(() => undefined);
      mounted = false;
      await rm(root, { recursive: true, force: true });
    },
  };
}
