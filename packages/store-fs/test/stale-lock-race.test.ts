/**
 * Two openers breaking one stale lock at once, in the worst order: C judges the lock stale, B
 * breaks it first and takes the lock, C then moves B's fresh lock aside into `tmp/` (by
 * mistake, which it is about to notice), and B, opening, empties `tmp/`, deleting it before C
 * can put it back. B must still hold a lock file once it is open: otherwise a third opener
 * would take the directory while B writes to it. The interleaving is forced by holding
 * `fs.rename`, `fs.readdir` and `fs.readFile` at the right calls.
 */
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { removeDir, tempDir } from "./support.js";

let dir: string;
const stores: FsStore[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  for (const store of stores.splice(0)) await store.close().catch(() => {});
  await removeDir(dir);
});

/** A promise and its resolver. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe("breaking a stale lock, two openers at once", () => {
  it("the opener that wins keeps its lock file even when the loser moved it into tmp/ just before the winner emptied tmp/", async () => {
    dir = await tempDir();
    const setup = createFsStore({ dir });
    await setup.open();
    await setup.close();
    // A lock left by a process that is gone.
    const { stdout } = await promisify(execFile)(process.execPath, [
      "-e",
      "console.log(process.pid)",
    ]);
    const deadPid = Number(stdout.trim());
    const lockFile = path.join(dir, "store.lock");
    const tmpDir = path.join(dir, "tmp");
    await fs.writeFile(
      lockFile,
      `${JSON.stringify({ pid: deadPid, hostname: os.hostname(), since: "then", nonce: "dead" })}\n`,
    );

    const bCleaning = gate(); // B has taken the lock and is about to empty tmp/
    const cMoved = gate(); // C has moved (what it thinks is) the stale lock aside
    const bOpened = gate();
    let cAside: string | undefined;

    const rename = fs.rename.bind(fs);
    vi.spyOn(fs, "rename").mockImplementation(async (from, to) => {
      if (from === lockFile && cAside === undefined) {
        // C's move: wait until B holds the lock, then move it.
        cAside = String(to);
        await bCleaning.promise;
        await rename(from, to);
        cMoved.open();
        return;
      }
      await rename(from, to);
    });
    const readdir = fs.readdir.bind(fs) as (p: unknown) => Promise<string[]>;
    vi.spyOn(fs, "readdir").mockImplementation((async (p: unknown) => {
      if (p === tmpDir && cAside !== undefined) {
        bCleaning.open();
        await cMoved.promise;
      }
      return readdir(p);
    }) as never);
    const readFile = fs.readFile.bind(fs) as (p: unknown, o?: unknown) => Promise<unknown>;
    vi.spyOn(fs, "readFile").mockImplementation((async (p: unknown, o?: unknown) => {
      if (p === cAside) await bOpened.promise;
      return readFile(p, o);
    }) as never);

    const c = createFsStore({ dir });
    const b = createFsStore({ dir });
    stores.push(c, b);
    const cOpening = c.open().then(
      () => "opened",
      (e: { code?: string }) => e.code,
    );
    // Let C read the stale lock and reach its rename first.
    await vi.waitFor(() => expect(cAside).toBeDefined());
    await b.open();
    bOpened.open();
    expect(await cOpening).toBe("STORE_LOCKED");
    vi.restoreAllMocks();

    const held = JSON.parse(await fs.readFile(lockFile, "utf8").catch(() => "null"));
    expect(held?.pid).toBe(process.pid);
    // A third opener is refused while B is open.
    const d = createFsStore({ dir });
    stores.push(d);
    expect(
      await d.open().then(
        () => "opened",
        (e: { code?: string }) => e.code,
      ),
    ).toBe("STORE_LOCKED");
  });
});
