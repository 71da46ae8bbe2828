/**
 * Transcripts: one append-only JSONL file per session,
 * `<bucket>/transcripts/<session>.jsonl`, one line per entry:
 *
 * ```jsonl
 * {"seq":1,"entry":{"role":"user","text":"hi"}}
 * {"seq":2,"entry":{"role":"assistant","text":"hello"},"more":true}
 * {"seq":3,"entry":{"role":"assistant","text":"anything else?"}}
 * ```
 *
 * An append of several entries is one `write` and one fsync; every line of it but the last
 * carries `"more":true`, so if a crash tears the write, the repair cuts the whole incomplete
 * append, not just its last line: appends are all or nothing.
 *
 * A transcript is checked (and repaired) the first time it is touched after `open()`: the
 * offset of every {@link INDEX_STRIDE}-th line is indexed then, so `read` of any page is one
 * positioned read of that page's bytes and fewer than 2 × INDEX_STRIDE lines around them,
 * however long the transcript, and the index costs half a byte per line. Up to {@link MAX_CACHED_TRANSCRIPTS}
 * indexes and {@link MAX_OPEN_FILES} file handles are kept; the least recently used go first.
 */
import { constants } from "node:buffer";
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import type {
  JsonObject,
  TranscriptReadOptions,
  TranscriptRecord,
  TranscriptStore,
} from "@beamclaw/core";
import { InvalidArgumentError, StoreError } from "@beamclaw/core";
import { bucketOf } from "./buckets.js";
import { appendDurably, type StoreContext } from "./context.js";
import { encodeFileName } from "./file-names.js";
import { readFileIfExists, truncateDurably } from "./files.js";
import {
  describeValue,
  optionsBag,
  pageLimit,
  requireKey,
  storedLine,
  toJsonObjectText,
} from "./json.js";
import { KeyedMutex } from "./mutex.js";

/** Transcript indexes kept in memory. */
export const MAX_CACHED_TRANSCRIPTS = 2048;
/**
 * Every how many lines a transcript's index keeps a byte offset. A read starts at the last
 * indexed line at or before its first line and skips fewer than this many lines; the index
 * costs 8 bytes per this many lines, not per line, so a long transcript's index stays small.
 */
export const INDEX_STRIDE = 16;
/** Transcript files kept open between appends. */
export const MAX_OPEN_FILES = 32;
/** Directory of a bucket's transcripts. */
export const TRANSCRIPTS_DIR = "transcripts";

const NEWLINE = 0x0a;
const MAX_BUFFER_LENGTH = constants.MAX_LENGTH;

interface Transcript {
  file: string;
  exists: boolean;
  /** Seq of the first line (1 unless the file says otherwise). */
  firstSeq: number;
  lastSeq: number;
  /**
   * Byte offset of every {@link INDEX_STRIDE}-th line: `checkpoints[k]` is where line
   * `k * INDEX_STRIDE` starts; line i holds seq `firstSeq + i`.
   */
  checkpoints: number[];
  size: number;
}

/** The file of a session's transcript, relative to the store directory. */
export function transcriptFile(sessionKey: string): string {
  return path.join(bucketOf(sessionKey), TRANSCRIPTS_DIR, `${encodeFileName(sessionKey)}.jsonl`);
}

function seqOption(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new InvalidArgumentError(
      `${what} must be a non-negative integer, got ${describeValue(value)}`,
    );
  }
  return value;
}

/** The transcripts of one open store. */
export class Transcripts implements TranscriptStore {
  readonly #context: StoreContext;
  readonly #mutex = new KeyedMutex();
  /** Insertion order is recency order (re-inserted on use). */
  readonly #cache = new Map<string, Transcript>();
  readonly #handles = new Map<string, FileHandle>();

  constructor(context: StoreContext) {
    this.#context = context;
  }

  async append(sessionKey: string, entries: JsonObject[]): Promise<number> {
    requireKey(sessionKey, "session key");
    if (!Array.isArray(entries)) {
      throw new InvalidArgumentError(`entries must be an array, got ${describeValue(entries)}`);
    }
    // An index loop, not `map`: `map` skips the holes of a sparse array.
    const texts: string[] = [];
    for (let i = 0; i < entries.length; i++) {
      texts.push(toJsonObjectText(entries[i], `entries[${i}]`));
    }
    return this.#mutex.run(sessionKey, async () => {
      const t = await this.#load(sessionKey);
      if (texts.length === 0) return t.lastSeq;
      // One buffer per line: entries that each fit in a string may not fit in one together.
      const lines: Buffer[] = [];
      let bytes = 0;
      for (let i = 0; i < texts.length; i++) {
        const more = i < texts.length - 1 ? ',"more":true' : "";
        const line = storedLine(`entries[${i}]`, [
          `{"seq":${t.lastSeq + 1 + i},"entry":`,
          texts[i]!,
          `${more}}\n`,
        ]);
        lines.push(Buffer.from(line, "utf8"));
        bytes += lines[i]!.length;
      }
      if (bytes > MAX_BUFFER_LENGTH) {
        throw new InvalidArgumentError(
          `entries are too large to store in one append (${bytes} bytes; at most ${MAX_BUFFER_LENGTH})`,
        );
      }
      const data = Buffer.concat(lines, bytes);
      await this.#write(sessionKey, t, data);
      let offset = t.size;
      let index = t.lastSeq + 1 - t.firstSeq;
      for (const line of lines) {
        if (index % INDEX_STRIDE === 0) t.checkpoints.push(offset);
        offset += line.length;
        index++;
      }
      t.size += data.length;
      t.lastSeq += texts.length;
      return t.lastSeq;
    });
  }

  async read(sessionKey: string, options?: TranscriptReadOptions): Promise<TranscriptRecord[]> {
    requireKey(sessionKey, "session key");
    const opts = optionsBag(options, "transcripts.read options");
    const afterSeq = seqOption(opts.afterSeq, "afterSeq") ?? 0;
    const beforeSeq = seqOption(opts.beforeSeq, "beforeSeq") ?? Number.POSITIVE_INFINITY;
    const limit = pageLimit(opts.limit, "limit", 100, 1000);
    const order = opts.order ?? "asc";
    if (order !== "asc" && order !== "desc") {
      throw new InvalidArgumentError(`order must be "asc" or "desc", got ${describeValue(order)}`);
    }
    return this.#mutex.run(sessionKey, async () => {
      const t = await this.#load(sessionKey);
      const lo = Math.max(afterSeq + 1, t.firstSeq);
      const hi = Math.min(beforeSeq - 1, t.lastSeq);
      if (lo > hi || !t.exists) return [];
      const from = order === "asc" ? lo : Math.max(lo, hi - limit + 1);
      const to = order === "asc" ? Math.min(hi, lo + limit - 1) : hi;
      // From the indexed line at or before `from` to the indexed line after `to` (or the end).
      const lines = t.lastSeq - t.firstSeq + 1;
      const first = from - t.firstSeq;
      const checkpoint = Math.floor(first / INDEX_STRIDE);
      const start = t.checkpoints[checkpoint]!;
      const after = to - t.firstSeq + 1;
      const endCheckpoint = Math.ceil(after / INDEX_STRIDE);
      const end = endCheckpoint * INDEX_STRIDE < lines ? t.checkpoints[endCheckpoint]! : t.size;
      const bytes = await this.#readRange(sessionKey, t, start, end);
      const records: TranscriptRecord[] = [];
      let skip = first - checkpoint * INDEX_STRIDE;
      let pos = 0;
      let seq = from;
      while (pos < bytes.length && seq <= to) {
        const nl = bytes.indexOf(NEWLINE, pos);
        const stop = nl === -1 ? bytes.length : nl;
        if (stop > pos && skip > 0) {
          skip--;
        } else if (stop > pos) {
          const value = parseLine(bytes.toString("utf8", pos, stop), t.file, this.#context);
          if (value.seq !== seq) {
            throw new StoreError(
              "STORE_CORRUPT",
              `${this.#context.relative(t.file)}: expected seq ${seq} at byte ${start + pos}, found ${value.seq}`,
            );
          }
          records.push({ seq: value.seq, entry: value.entry });
          seq++;
        }
        pos = stop + 1;
      }
      if (order === "desc") records.reverse();
      return records;
    });
  }

  async lastSeq(sessionKey: string): Promise<number> {
    requireKey(sessionKey, "session key");
    return this.#mutex.run(sessionKey, async () => (await this.#load(sessionKey)).lastSeq);
  }

  async delete(sessionKey: string): Promise<boolean> {
    requireKey(sessionKey, "session key");
    return this.#mutex.run(sessionKey, async () => {
      await this.#closeHandle(sessionKey);
      this.#cache.delete(sessionKey);
      const file = path.join(this.#context.dir, transcriptFile(sessionKey));
      return this.#context.files.removeFile(file);
    });
  }

  /** Closes every cached file handle (after pending operations). */
  async close(): Promise<void> {
    await this.#mutex.idle();
    const handles = [...this.#handles.values()];
    this.#handles.clear();
    await Promise.all(handles.map((h) => h.close()));
  }

  /** The transcript's index, building it (and repairing a torn tail) on first touch. */
  async #load(sessionKey: string): Promise<Transcript> {
    const cached = this.#cache.get(sessionKey);
    if (cached !== undefined) {
      this.#cache.delete(sessionKey);
      this.#cache.set(sessionKey, cached);
      return cached;
    }
    const file = path.join(this.#context.dir, transcriptFile(sessionKey));
    const content = await readFileIfExists(file);
    const t: Transcript =
      content === undefined
        ? { file, exists: false, firstSeq: 1, lastSeq: 0, checkpoints: [], size: 0 }
        : await this.#index(file, content);
    this.#cache.set(sessionKey, t);
    this.#evict();
    return t;
  }

  async #index(file: string, content: Buffer): Promise<Transcript> {
    const name = this.#context.relative(file);
    const offsets: number[] = [];
    let pos = 0;
    while (pos < content.length) {
      const nl = content.indexOf(NEWLINE, pos);
      if (nl === -1) break; // torn: no newline
      if (nl > pos) offsets.push(pos);
      pos = nl + 1;
    }
    let validLength = pos;
    const reasons: string[] = [];
    if (pos < content.length) reasons.push("the last line has no newline (torn write)");
    const lastValue = (): { more?: unknown } | undefined => {
      try {
        return JSON.parse(lineAt(content, offsets, offsets.length - 1, validLength)) as {
          more?: unknown;
        };
      } catch {
        return undefined;
      }
    };
    // A power loss can leave garbage (zeros) in the last complete line.
    if (offsets.length > 0 && lastValue() === undefined) {
      validLength = offsets.pop()!;
      reasons.push("the last line is not valid JSON (torn write)");
    }
    // An append of several entries is complete only with its line that has no "more":true.
    let cutAppend = false;
    while (offsets.length > 0 && lastValue()?.more === true) {
      validLength = offsets.pop()!;
      cutAppend = true;
    }
    if (cutAppend) {
      reasons.push(
        "an append of several entries was cut short (lines with more:true, no final line)",
      );
    }
    const reason = reasons.join("; ");
    if (validLength < content.length) {
      await truncateDurably(file, validLength, this.#context.files.fsync);
      this.#context.report({
        kind: "torn-tail-truncated",
        file: name,
        bytes: content.length - validLength,
        detail: `${name}: cut ${content.length - validLength} bytes: ${reason}`,
      });
    }
    if (offsets.length === 0) {
      return { file, exists: true, firstSeq: 1, lastSeq: 0, checkpoints: [], size: validLength };
    }
    const first = parseLine(lineAt(content, offsets, 0, validLength), file, this.#context);
    const last = parseLine(
      lineAt(content, offsets, offsets.length - 1, validLength),
      file,
      this.#context,
    );
    if (last.seq !== first.seq + offsets.length - 1) {
      throw new StoreError(
        "STORE_CORRUPT",
        `${name}: ${offsets.length} lines from seq ${first.seq} should end at seq ${first.seq + offsets.length - 1}, but the last line has seq ${last.seq}`,
      );
    }
    // Every line's offset was needed to check the tail; the index keeps every INDEX_STRIDE-th.
    const checkpoints: number[] = [];
    for (let i = 0; i < offsets.length; i += INDEX_STRIDE) checkpoints.push(offsets[i]!);
    return {
      file,
      exists: true,
      firstSeq: first.seq,
      lastSeq: last.seq,
      checkpoints,
      size: validLength,
    };
  }

  #evict(): void {
    if (this.#cache.size <= MAX_CACHED_TRANSCRIPTS) return;
    for (const key of this.#cache.keys()) {
      if (this.#cache.size <= MAX_CACHED_TRANSCRIPTS) break;
      if (!this.#mutex.isBusy(key)) this.#cache.delete(key);
    }
  }

  async #handle(sessionKey: string, t: Transcript): Promise<FileHandle> {
    const open = this.#handles.get(sessionKey);
    if (open !== undefined) {
      this.#handles.delete(sessionKey);
      this.#handles.set(sessionKey, open);
      return open;
    }
    const dir = path.dirname(t.file);
    await this.#context.files.ensureDir(dir);
    const handle = await fs.open(t.file, "a+", 0o644);
    if (!t.exists) {
      try {
        await this.#context.files.syncDir(dir);
      } catch (error) {
        await handle.close();
        throw error;
      }
      t.exists = true;
    }
    this.#handles.set(sessionKey, handle);
    if (this.#handles.size > MAX_OPEN_FILES) {
      for (const [key, h] of this.#handles) {
        if (this.#handles.size <= MAX_OPEN_FILES) break;
        if (key === sessionKey || this.#mutex.isBusy(key)) continue;
        this.#handles.delete(key);
        await h.close();
      }
    }
    return handle;
  }

  async #closeHandle(sessionKey: string): Promise<void> {
    const handle = this.#handles.get(sessionKey);
    if (handle === undefined) return;
    this.#handles.delete(sessionKey);
    await handle.close();
  }

  async #write(sessionKey: string, t: Transcript, data: Buffer): Promise<void> {
    const handle = await this.#handle(sessionKey, t);
    await appendDurably(handle, data, t.size, this.#context, t.file);
  }

  async #readRange(sessionKey: string, t: Transcript, start: number, end: number): Promise<Buffer> {
    const handle = await this.#handle(sessionKey, t);
    const buffer = Buffer.alloc(end - start);
    let read = 0;
    while (read < buffer.length) {
      const { bytesRead } = await handle.read(buffer, read, buffer.length - read, start + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return read === buffer.length ? buffer : buffer.subarray(0, read);
  }
}

function lineAt(content: Buffer, offsets: number[], i: number, validLength: number): string {
  const start = offsets[i]!;
  const end = i + 1 < offsets.length ? offsets[i + 1]! : validLength;
  let stop = end;
  while (stop > start && content[stop - 1] === NEWLINE) stop--;
  return content.toString("utf8", start, stop);
}

function parseLine(
  text: string,
  file: string,
  context: StoreContext,
): { seq: number; entry: JsonObject } {
  let value: { seq?: unknown; entry?: unknown };
  try {
    value = JSON.parse(text) as { seq?: unknown; entry?: unknown };
  } catch (error) {
    throw new StoreError(
      "STORE_CORRUPT",
      `${context.relative(file)}: a line is not valid JSON: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (
    typeof value?.seq !== "number" ||
    !Number.isInteger(value.seq) ||
    typeof value.entry !== "object" ||
    value.entry === null
  ) {
    const preview = text.length > 120 ? `${text.slice(0, 120)}…` : text;
    throw new StoreError(
      "STORE_CORRUPT",
      `${context.relative(file)}: expected {"seq":<n>,"entry":{...}}, found ${preview}`,
    );
  }
  return { seq: value.seq, entry: value.entry as JsonObject };
}
