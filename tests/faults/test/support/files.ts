/**
 * "No file is corrupt", checked on a store-fs directory: every `.jsonl` file is whole lines of
 * JSON, each ending in a newline; every `.json` file is one JSON document; and the store opens
 * again (its own checks refuse a corrupt file with `STORE_CORRUPT`) with no repair other than
 * the ones listed as allowed.
 */
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { createFsStore, type FsStore } from "@beamclaw/store-fs";

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile()) yield path;
  }
}

/** Problems found in the store's files (empty when every file is whole JSON). */
export async function corruptFiles(dir: string): Promise<string[]> {
  const problems: string[] = [];
  for await (const path of walk(dir)) {
    const name = relative(dir, path);
    if (name.startsWith("tmp/") || name === "store.lock") continue;
    const text = await readFile(path, "utf8");
    if (path.endsWith(".jsonl")) {
      if (text.length > 0 && !text.endsWith("\n")) problems.push(`${name}: last line is cut`);
      text
        .split("\n")
        .slice(0, -1)
        .forEach((line, i) => {
          try {
            JSON.parse(line);
          } catch {
            problems.push(`${name}:${i + 1}: not JSON: ${line.slice(0, 80)}`);
          }
        });
    } else if (path.endsWith(".json")) {
      try {
        JSON.parse(text);
      } catch {
        problems.push(`${name}: not JSON`);
      }
    }
  }
  return problems;
}

/**
 * Opens the store in `dir` (which must not be open elsewhere), hands it to `use`, closes it.
 * Resolves with what `use` returned and the repairs the store made on open.
 */
export async function withReopenedStore<T>(
  dir: string,
  use: (store: FsStore) => Promise<T>,
): Promise<{ value: T; recoveries: string[] }> {
  const store = createFsStore({ dir });
  await store.open();
  try {
    const value = await use(store);
    return { value, recoveries: store.recoveries.map((r) => `${r.kind} ${r.file}`) };
  } finally {
    await store.close();
  }
}
