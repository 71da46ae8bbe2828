/**
 * A directory on the kernel's proc or sysfs filesystem cannot hold a store. Under /proc, Node
 * 20's recursive `mkdir` never returns (procfs answers ENOENT for the new directory, and Node
 * tries its parent again for ever), so `open()` hung there: it refuses such a directory with a
 * typed error instead, before creating anything.
 */
import { symlink } from "node:fs/promises";
import path from "node:path";
import { InvalidArgumentError } from "@beamclaw/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, kernelFilesystemOf } from "../src/index.js";
import { removeDir, tempDir } from "./support.js";

let root: string;

beforeEach(async () => {
  root = await tempDir();
});

afterEach(async () => {
  await removeDir(root);
});

describe("a store directory on a kernel filesystem", () => {
  it.each([
    ["/proc/beamclaw-store", "proc"],
    ["/proc/self/beamclaw/deeper", "proc"],
    ["/sys/beamclaw-store", "sysfs"],
  ])(
    "open() of %s is refused with InvalidArgumentError naming the %s filesystem",
    async (dir, fs) => {
      const store = createFsStore({ dir });
      const error = await store.open().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toBe(
        `${dir} is on the kernel's ${fs} filesystem, which cannot hold a store's files: give FsStore a directory on a disk`,
      );
      // Refused, the store can still be closed.
      await store.close();
    },
  );

  it("a path through a symbolic link into /proc is refused too", async () => {
    await symlink("/proc", path.join(root, "link"));
    const dir = path.join(root, "link", "beamclaw-store");
    await expect(createFsStore({ dir }).open()).rejects.toThrow(/kernel's proc filesystem/);
  });

  it("kernelFilesystemOf names it, and nothing for a directory on a disk", async () => {
    expect(await kernelFilesystemOf("/proc/a/b")).toBe("proc");
    expect(await kernelFilesystemOf("/sys")).toBe("sysfs");
    expect(await kernelFilesystemOf(path.join(root, "new", "dir"))).toBeUndefined();
    // A directory on a disk still opens.
    const store = createFsStore({ dir: path.join(root, "data") });
    await store.open();
    await store.close();
  });
});
