/**
 * Reading the store's JSONL files on open: read, repair a torn tail (cut it, fsync, report
 * it), and, for the append logs, hand each line to its owner and return the
 * {@link AppendLog} that continues the file.
 */
import path from "node:path";
import { AppendLog } from "./append-log.js";
import type { StoreContext } from "./context.js";
import { readFileIfExists, truncateDurably } from "./files.js";
import { type JsonlLine, type ParsedJsonl, parseJsonl } from "./jsonl.js";

/**
 * Reads a JSONL file (absolute path), cutting and reporting a torn tail; `undefined` if the
 * file does not exist.
 */
export async function readJsonl(
  context: StoreContext,
  file: string,
): Promise<ParsedJsonl | undefined> {
  const content = await readFileIfExists(file);
  if (content === undefined) return undefined;
  const name = context.relative(file);
  const parsed = parseJsonl(content, name);
  if (parsed.dropped !== undefined) {
    await truncateDurably(file, parsed.validLength, context.files.fsync);
    context.report({
      kind: "torn-tail-truncated",
      file: name,
      bytes: parsed.dropped.bytes,
      detail: `${name}: cut ${parsed.dropped.bytes} bytes: ${parsed.dropped.reason}`,
    });
  }
  return parsed;
}

/**
 * Opens the append log at `fileName` (relative to the store directory), calling `apply` for
 * each line in order.
 */
export async function loadLog(
  context: StoreContext,
  fileName: string,
  apply: (line: JsonlLine, name: string) => void,
): Promise<AppendLog> {
  const file = path.join(context.dir, fileName);
  const name = context.relative(file);
  const parsed = await readJsonl(context, file);
  for (const line of parsed?.lines ?? []) apply(line, name);
  return new AppendLog(
    file,
    context.files,
    {
      exists: parsed !== undefined,
      size: parsed?.validLength ?? 0,
      lineCount: parsed?.lines.length ?? 0,
    },
    (error, f) => context.fail(error, f),
  );
}
