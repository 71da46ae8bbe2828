/**
 * The transcript index keeps the offset of every INDEX_STRIDE-th line only (so a long
 * transcript's index stays small); a read starts at the indexed line before its page and
 * skips to it. Every page (`afterSeq`, `beforeSeq`, `limit`, `order`) across the stride
 * boundaries reads exactly what a list of the entries says, with the index built by appends
 * and rebuilt from the file after a reopen, for a file whose seqs do not start at 1, and for
 * one with blank lines (which the index skips).
 */
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { INDEX_STRIDE, transcriptFile } from "../src/transcripts.js";
import { removeDir, tempDir } from "./support.js";

let dir: string;
const opened: FsStore[] = [];

beforeEach(async () => {
  dir = await tempDir("store-fs-index-");
});

afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  await removeDir(dir);
});

async function open(): Promise<FsStore> {
  const store = createFsStore({ dir });
  opened.push(store);
  await store.open();
  return store;
}

const KEY = "agent:main:index";

/** Every page a reader can ask for around the stride boundaries, checked against `seqs`. */
async function expectEveryPage(store: FsStore, seqs: number[]): Promise<void> {
  const last = seqs.at(-1) ?? 0;
  const limits = [
    1,
    2,
    INDEX_STRIDE - 1,
    INDEX_STRIDE,
    INDEX_STRIDE + 1,
    2 * INDEX_STRIDE + 3,
    1000,
  ];
  const befores = [undefined, seqs[0]! + 1, seqs[0]! + INDEX_STRIDE, last, last + 1];
  for (let afterSeq = 0; afterSeq <= last + 1; afterSeq++) {
    for (const beforeSeq of befores) {
      for (const limit of limits) {
        for (const order of ["asc", "desc"] as const) {
          const wanted = seqs.filter((s) => s > afterSeq && s < (beforeSeq ?? Infinity));
          const page = order === "asc" ? wanted.slice(0, limit) : wanted.slice(-limit).reverse();
          const records = await store.transcripts.read(KEY, {
            afterSeq,
            ...(beforeSeq === undefined ? {} : { beforeSeq }),
            limit,
            order,
          });
          const got = records.map((r) => [r.seq, r.entry.n]);
          expect(
            got,
            `afterSeq ${afterSeq} beforeSeq ${beforeSeq} limit ${limit} ${order}`,
          ).toEqual(page.map((s) => [s, s]));
        }
      }
    }
  }
}

describe("the sparse transcript index", () => {
  it("reads every page exactly, as appended and after a reopen rebuilds the index", async () => {
    let store = await open();
    const seqs: number[] = [];
    // Appends of 1 to 2 × INDEX_STRIDE + 1 entries, so that they straddle the indexed lines.
    for (const size of [1, 3, INDEX_STRIDE, 1, INDEX_STRIDE + 1, 2 * INDEX_STRIDE + 1, 5, 2]) {
      const entries = Array.from({ length: size }, (_, i) => ({ n: seqs.length + 1 + i }));
      await store.transcripts.append(KEY, entries);
      for (let i = 0; i < size; i++) seqs.push(seqs.length + 1);
    }
    expect(await store.transcripts.lastSeq(KEY)).toBe(seqs.length);
    await expectEveryPage(store, seqs);

    await store.close();
    opened.length = 0;
    store = await open();
    await expectEveryPage(store, seqs);
    // Appends after the rebuild extend the rebuilt index.
    await store.transcripts.append(KEY, [{ n: seqs.length + 1 }, { n: seqs.length + 2 }]);
    seqs.push(seqs.length + 1, seqs.length + 2);
    await expectEveryPage(store, seqs);
  });

  it("reads a file whose seqs start after 1 and that holds blank lines", async () => {
    await (await open()).close(); // a store directory, then a transcript written by hand
    opened.length = 0;
    const file = path.join(dir, transcriptFile(KEY));
    await mkdir(path.dirname(file), { recursive: true });
    const seqs = Array.from({ length: 3 * INDEX_STRIDE + 2 }, (_, i) => i + 7);
    await writeFile(file, "");
    for (const seq of seqs) {
      // A blank line now and then: the index skips blank lines, and so must a read.
      const blank = seq % 5 === 0 ? "\n" : "";
      await appendFile(file, `${blank}{"seq":${seq},"entry":{"n":${seq}}}\n`);
    }
    const store = await open();
    expect(await store.transcripts.lastSeq(KEY)).toBe(seqs.at(-1));
    await expectEveryPage(store, seqs);
  });
});
