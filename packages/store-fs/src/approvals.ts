/**
 * Remembered approvals: one small JSON file per session,
 * `<bucket>/approvals/<session>.json`, replaced atomically on every change:
 *
 * ```json
 * {"sessionKey":"agent:main:main","approvals":[{"pattern":"exec:ls *","decision":"allow","decidedAt":1}]}
 * ```
 *
 * A change rewrites only that session's file (a handful of records), never anyone else's.
 */
import path from "node:path";
import type { ApprovalRecord, ApprovalStore } from "@beamclaw/core";
import { InvalidArgumentError, StoreError } from "@beamclaw/core";
import { bucketOf } from "./buckets.js";
import type { StoreContext } from "./context.js";
import { encodeFileName } from "./file-names.js";
import { readFileIfExists } from "./files.js";
import {
  describeValue,
  isPlainObject,
  requireFiniteNumber,
  requireKey,
  toJsonObjectText,
} from "./json.js";
import { KeyedMutex } from "./mutex.js";

/** Directory of a bucket's approval files. */
export const APPROVALS_DIR = "approvals";

/** The file of a session's approvals, relative to the store directory. */
export function approvalsFile(sessionKey: string): string {
  return path.join(bucketOf(sessionKey), APPROVALS_DIR, `${encodeFileName(sessionKey)}.json`);
}

/** The approvals of one open store. */
export class Approvals implements ApprovalStore {
  readonly #context: StoreContext;
  readonly #mutex = new KeyedMutex();

  constructor(context: StoreContext) {
    this.#context = context;
  }

  async list(sessionKey: string): Promise<ApprovalRecord[]> {
    requireKey(sessionKey, "session key");
    return this.#mutex.run(sessionKey, () => this.#read(sessionKey));
  }

  async put(sessionKey: string, record: ApprovalRecord): Promise<void> {
    requireKey(sessionKey, "session key");
    if (!isPlainObject(record)) {
      throw new InvalidArgumentError(
        `approval record must be a plain object, got ${describeValue(record)}`,
      );
    }
    requireKey(record.pattern, "approval pattern");
    if (record.decision !== "allow" && record.decision !== "deny") {
      throw new InvalidArgumentError(
        `approval decision must be "allow" or "deny", got ${describeValue(record.decision)}`,
      );
    }
    requireFiniteNumber(record.decidedAt, "approval decidedAt");
    const json = toJsonObjectText(record, "approval record");
    const copy = JSON.parse(json) as ApprovalRecord;
    await this.#mutex.run(sessionKey, async () => {
      const records = await this.#read(sessionKey);
      const at = records.findIndex((r) => r.pattern === copy.pattern);
      if (at === -1) records.push(copy);
      else records[at] = copy;
      await this.#write(sessionKey, records);
    });
  }

  async clear(sessionKey: string, pattern?: string): Promise<number> {
    requireKey(sessionKey, "session key");
    if (pattern !== undefined) requireKey(pattern, "approval pattern");
    return this.#mutex.run(sessionKey, async () => {
      const records = await this.#read(sessionKey);
      const kept = pattern === undefined ? [] : records.filter((r) => r.pattern !== pattern);
      const removed = records.length - kept.length;
      if (removed > 0) await this.#write(sessionKey, kept);
      return removed;
    });
  }

  /** Waits for pending operations. */
  async close(): Promise<void> {
    await this.#mutex.idle();
  }

  async #read(sessionKey: string): Promise<ApprovalRecord[]> {
    const file = path.join(this.#context.dir, approvalsFile(sessionKey));
    const content = await readFileIfExists(file);
    if (content === undefined) return [];
    let value: { sessionKey?: unknown; approvals?: unknown };
    try {
      value = JSON.parse(content.toString("utf8")) as typeof value;
    } catch (error) {
      throw new StoreError(
        "STORE_CORRUPT",
        `${this.#context.relative(file)} is not valid JSON: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (value?.sessionKey !== sessionKey || !Array.isArray(value.approvals)) {
      throw new StoreError(
        "STORE_CORRUPT",
        `${this.#context.relative(file)} should hold {"sessionKey":${JSON.stringify(sessionKey)},"approvals":[...]}`,
      );
    }
    return value.approvals as ApprovalRecord[];
  }

  async #write(sessionKey: string, records: ApprovalRecord[]): Promise<void> {
    const file = path.join(this.#context.dir, approvalsFile(sessionKey));
    if (records.length === 0) {
      await this.#context.files.removeFile(file);
      return;
    }
    const body = records.map((r) => `    ${JSON.stringify(r)}`).join(",\n");
    const text = `{\n  "sessionKey": ${JSON.stringify(sessionKey)},\n  "approvals": [\n${body}\n  ]\n}\n`;
    await this.#context.files.writeFileAtomic(file, text);
  }
}
