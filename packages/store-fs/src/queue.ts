/**
 * The durable inbound queue, in two kinds of append-only files.
 *
 * `queue.jsonl` holds what is pending:
 *
 * ```jsonl
 * {"op":"enqueue","message":{"id":"0000000000000001","idempotencyKey":"tg:42","sessionKey":"agent:main:main","payload":{...},"enqueuedAt":1,"deliveries":0}}
 * {"op":"deliver","ids":["0000000000000001"]}
 * {"op":"discard","id":"0000000000000002"}
 * ```
 *
 * `queue-acked/<ms>.jsonl` (one file per period of the dedupe window, named after its first
 * ack) holds the acknowledged messages, one line each:
 *
 * ```jsonl
 * {"op":"acked","message":{"id":"0000000000000001",...,"deliveries":1},"at":2}
 * ```
 *
 * `enqueue` resolves only once its line is fsync'd, so a message acknowledged to its sender
 * survives a crash; `ack` resolves once the message's `acked` line is fsync'd; on open, the
 * pending log is replayed and then every acked file, so what was enqueued and not acked is
 * pending again, with its delivery count.
 *
 * An acked idempotency key is remembered for `dedupeWindowMs`, so a sender's retry after a
 * crash is recognised as a duplicate instead of running twice. Memory holds only what that
 * needs: per key, the message id, the ack time and where its line is. The payload stays on
 * disk and is read back only when a duplicate arrives. An acked file is deleted whole once its
 * newest ack has left the window; nothing acked is ever copied.
 *
 * Compaction rewrites `queue.jsonl` as the id counter and the pending messages, so it costs
 * O(pending), however many acks the window holds. Before an acked file is deleted, a
 * compaction that saw all its acks must have reached the disk: until then `queue.jsonl` may
 * still hold those messages' `enqueue` lines, which the file's acks cancel on open.
 *
 * Stores written before acked files existed (`{"op":"ack"}` and `{"op":"acked"}` lines in
 * `queue.jsonl`) are migrated on open: the acks still inside the window are written to an
 * acked file, then `queue.jsonl` is compacted. A crash in between repeats the migration.
 */
import fs from "node:fs/promises";
import path from "node:path";
import type {
  EnqueueResult,
  InboundQueue,
  JsonObject,
  QueuedMessage,
  QueuePendingOptions,
} from "@beamclaw/core";
import { InvalidArgumentError, StoreError } from "@beamclaw/core";
import { AppendLog, shouldCompact } from "./append-log.js";
import type { StoreContext } from "./context.js";
import { readDirIfExists } from "./files.js";
import {
  describeValue,
  isPlainObject,
  optionsBag,
  pageLimit,
  requireKey,
  storedLine,
  stringifyStored,
  toJsonObjectText,
} from "./json.js";
import { badLine, type JsonlLine } from "./jsonl.js";
import { loadLog, readJsonl } from "./log-table.js";

/** File name of the pending queue log. */
export const QUEUE_FILE = "queue.jsonl";
/** Directory of the acked-message files. */
export const QUEUE_ACKED_DIR = "queue-acked";
const ID_DIGITS = 16;
const ACKED_FILE = /^(\d{1,16})\.jsonl$/;

/**
 * How long one acked file takes new acks: an eighth of the window (so at most about nine
 * files exist), at least 10 s (not a file per second under a tiny window), at most 1 h.
 */
export function ackedPeriodMs(dedupeWindowMs: number): number {
  return Math.min(Math.max(Math.ceil(dedupeWindowMs / 8), 10_000), 3_600_000);
}

/** One acked file. */
interface AckedFile {
  /** Absolute path. */
  readonly file: string;
  /** The time in its name: new acks go to it until `opened + period`. */
  readonly opened: number;
  /** Open for appends while it is the current file. */
  log: AppendLog | undefined;
  /** Bytes in the file once every submitted line is written (the next line's offset). */
  size: number;
  /** Newest ack in it. */
  newestAck: number;
  /** Lines submitted and not yet durable. */
  inflight: number;
  /** A durable compaction of the pending log saw every ack in it. */
  compacted: boolean;
}

/** What dedupe needs of an acked message; its payload stays in `file`. */
interface AckedRef {
  readonly id: string;
  readonly ackedAt: number;
  readonly file: AckedFile;
  /** Where its line starts, and its length without the newline. */
  readonly offset: number;
  readonly length: number;
}

/** An ack found in the pending log of a store of the earlier format. */
interface LegacyAck {
  message: QueuedMessage;
  at: number;
}

function formatId(n: number): string {
  return String(n).padStart(ID_DIGITS, "0");
}

const QUEUE_ID = new RegExp(`^[0-9]{${ID_DIGITS}}$`);

/** The `after` of `pending`: an id of this store's form (zero-padded digits, so ordered as strings). */
function queuePosition(value: unknown): string {
  if (typeof value !== "string" || !QUEUE_ID.test(value)) {
    throw new InvalidArgumentError(
      `queue.pending after must be the id of a queued message (${ID_DIGITS} digits), got ${describeValue(value)}`,
    );
  }
  return value;
}

function isMessage(value: unknown): value is QueuedMessage {
  if (!isPlainObject(value)) return false;
  return (
    typeof value.id === "string" &&
    typeof value.idempotencyKey === "string" &&
    typeof value.sessionKey === "string" &&
    isPlainObject(value.payload) &&
    typeof value.enqueuedAt === "number" &&
    typeof value.deliveries === "number"
  );
}

function copy(message: QueuedMessage): QueuedMessage {
  return JSON.parse(JSON.stringify(message)) as QueuedMessage;
}

function ackedLine(message: QueuedMessage, at: number): string {
  return `{"op":"acked","message":${JSON.stringify(message)},"at":${at}}\n`;
}

/** The inbound queue of one open store. */
export class Queue implements InboundQueue {
  readonly dedupeWindowMs: number;
  readonly #context: StoreContext;
  readonly #ackedDir: string;
  readonly #periodMs: number;
  #log!: AppendLog;
  /** Insertion order is enqueue order. */
  readonly #pending = new Map<string, QueuedMessage>();
  readonly #pendingByKey = new Map<string, string>();
  /** By idempotency key; insertion order is ack order (oldest first), so expiry trims the front. */
  readonly #acked = new Map<string, AckedRef>();
  /**
   * Acked messages whose `acked` line is not durable yet, by id: a compaction in that window
   * keeps them as pending (a crash before the ack is durable replays them, as it always did),
   * and a duplicate is answered from here.
   */
  readonly #ackInFlight = new Map<string, { message: QueuedMessage; written: Promise<void> }>();
  /** Oldest first. */
  readonly #ackedFiles: AckedFile[] = [];
  #current: AckedFile | undefined;
  #compacting = false;
  /** File closes and deletions in progress, awaited by `close()`. */
  readonly #chores = new Set<Promise<unknown>>();
  #nextId = 1;

  private constructor(context: StoreContext, dedupeWindowMs: number) {
    this.#context = context;
    this.dedupeWindowMs = dedupeWindowMs;
    this.#ackedDir = path.join(context.dir, QUEUE_ACKED_DIR);
    this.#periodMs = ackedPeriodMs(dedupeWindowMs);
  }

  /** Replays the logs (repairing torn tails) and migrates a store of the earlier format. */
  static async load(context: StoreContext, dedupeWindowMs: number): Promise<Queue> {
    const queue = new Queue(context, dedupeWindowMs);
    const legacy: LegacyAck[] = [];
    queue.#log = await loadLog(context, QUEUE_FILE, (line, name) =>
      queue.#applyLine(line, name, legacy),
    );
    try {
      if (legacy.length > 0) await queue.#migrate(legacy);
      await queue.#loadAckedFiles();
      const cutoff = context.now() - dedupeWindowMs;
      const expired = queue.#ackedFiles.some((f) => f.newestAck < cutoff);
      // Once compacted, every acked file is reflected in the pending log, so the expired ones
      // can go (not if the compaction was skipped for a full disk: a later one will do).
      if ((legacy.length > 0 || expired) && (await queue.#compactNow())) {
        for (const f of queue.#ackedFiles) f.compacted = true;
      }
      queue.#expire();
      await Promise.all([...queue.#chores]);
    } catch (error) {
      await queue.close().catch(() => {});
      throw error;
    }
    return queue;
  }

  #applyLine(line: JsonlLine, name: string, legacy: LegacyAck[]): void {
    const op = line.value as Record<string, unknown> | null;
    switch (op?.op) {
      case "enqueue":
        if (!isMessage(op.message)) throw badLine(name, line, "a queued message");
        this.#addPending(op.message);
        break;
      case "deliver":
        if (!Array.isArray(op.ids)) throw badLine(name, line, '{"op":"deliver","ids":[...]}');
        for (const id of op.ids) {
          const message = this.#pending.get(String(id));
          if (message !== undefined) message.deliveries++;
        }
        break;
      case "ack": {
        // Earlier format: acks were lines of this log.
        if (typeof op.id !== "string" || typeof op.at !== "number") {
          throw badLine(name, line, '{"op":"ack","id":"...","at":<ms>}');
        }
        const message = this.#removePending(op.id);
        if (message !== undefined) legacy.push({ message, at: op.at });
        break;
      }
      case "discard":
        if (typeof op.id !== "string") throw badLine(name, line, '{"op":"discard","id":"..."}');
        this.#removePending(op.id);
        break;
      case "acked":
        // Earlier format: compaction kept the acks of the window here, message and all.
        if (!isMessage(op.message) || typeof op.at !== "number") {
          throw badLine(name, line, '{"op":"acked","message":{...},"at":<ms>}');
        }
        legacy.push({ message: op.message, at: op.at });
        this.#bumpId(op.message.id);
        break;
      case "counter":
        if (typeof op.nextId !== "number")
          throw badLine(name, line, '{"op":"counter","nextId":<n>}');
        this.#nextId = Math.max(this.#nextId, op.nextId);
        break;
      default:
        throw badLine(name, line, "an enqueue, deliver, discard or counter operation");
    }
  }

  /** Writes the earlier format's acks that are still inside the window to an acked file. */
  async #migrate(legacy: LegacyAck[]): Promise<void> {
    const cutoff = this.#context.now() - this.dedupeWindowMs;
    const kept = legacy.filter((a) => a.at >= cutoff).sort((a, b) => a.at - b.at);
    if (kept.length === 0) return;
    // Named after the oldest ack, so a migration repeated after a crash replaces its own file.
    const file = path.join(this.#ackedDir, `${Math.max(0, Math.floor(kept[0]!.at))}.jsonl`);
    let text = "";
    for (const { message, at } of kept) text += ackedLine(message, at);
    await this.#context.files.writeFileAtomic(file, text);
  }

  async #loadAckedFiles(): Promise<void> {
    const names = (await readDirIfExists(this.#ackedDir))
      .map((name) => ({ name, match: ACKED_FILE.exec(name) }))
      .filter((n) => n.match !== null)
      .sort((a, b) => Number(a.match![1]) - Number(b.match![1]));
    const cutoff = this.#context.now() - this.dedupeWindowMs;
    for (const { name, match } of names) {
      const file = path.join(this.#ackedDir, name);
      const parsed = await readJsonl(this.#context, file);
      if (parsed === undefined) continue;
      const entry: AckedFile = {
        file,
        opened: Number(match![1]),
        log: undefined,
        size: parsed.validLength,
        newestAck: Number.NEGATIVE_INFINITY,
        inflight: 0,
        compacted: false,
      };
      const relative = this.#context.relative(file);
      for (const line of parsed.lines) {
        const op = line.value as Record<string, unknown> | null;
        if (op?.op !== "acked" || !isMessage(op.message) || typeof op.at !== "number") {
          throw badLine(relative, line, '{"op":"acked","message":{...},"at":<ms>}');
        }
        const message = op.message;
        this.#removePending(message.id);
        this.#bumpId(message.id);
        entry.newestAck = Math.max(entry.newestAck, op.at);
        // Remembered while acknowledged less than the window ago (see `#expire`).
        if (op.at <= cutoff) continue;
        this.#acked.delete(message.idempotencyKey);
        this.#acked.set(message.idempotencyKey, {
          id: message.id,
          ackedAt: op.at,
          file: entry,
          offset: line.offset,
          length: Buffer.byteLength(line.text),
        });
      }
      this.#ackedFiles.push(entry);
    }
  }

  async enqueue(input: {
    idempotencyKey: string;
    sessionKey: string;
    payload: JsonObject;
  }): Promise<EnqueueResult> {
    if (!isPlainObject(input)) {
      throw new InvalidArgumentError(`enqueue takes an object, got ${describeValue(input)}`);
    }
    const idempotencyKey = requireKey(input.idempotencyKey, "idempotencyKey");
    const sessionKey = requireKey(input.sessionKey, "sessionKey");
    const payloadText = toJsonObjectText(input.payload, "payload");
    this.#expire();
    const pendingId = this.#pendingByKey.get(idempotencyKey);
    if (pendingId !== undefined) {
      const original = this.#pending.get(pendingId)!;
      // The original may still be on its way to disk: answer once it is there.
      await this.#log.barrier();
      return { message: copy(original), duplicate: true };
    }
    const acked = this.#acked.get(idempotencyKey);
    if (acked !== undefined) return { message: await this.#readAcked(acked), duplicate: true };
    const message: QueuedMessage = {
      id: formatId(this.#nextId), // taken by #addPending (#bumpId)
      idempotencyKey,
      sessionKey,
      payload: JSON.parse(payloadText) as JsonObject,
      enqueuedAt: this.#context.now(),
      deliveries: 0,
    };
    // Room for what the message's later lines add: its `acked` line's time, more deliveries.
    const line = storedLine(
      "queued message",
      ['{"op":"enqueue","message":', stringifyStored(message, "queued message"), "}\n"],
      64,
    );
    this.#addPending(message);
    const written = this.#log.append(line);
    this.#maybeCompact();
    await written;
    return { message: copy(message), duplicate: false };
  }

  async ack(id: string): Promise<void> {
    requireKey(id, "message id");
    const message = this.#removePending(id);
    if (message === undefined) {
      // Acked already, perhaps still on its way to disk: resolve once it is there.
      const inFlight = this.#ackInFlight.get(id);
      await (inFlight?.written ?? this.#log.barrier());
      return;
    }
    const at = this.#context.now();
    this.#expire();
    const target = this.#currentFile(at);
    const line = ackedLine(message, at);
    const bytes = Buffer.byteLength(line);
    this.#acked.delete(message.idempotencyKey);
    this.#acked.set(message.idempotencyKey, {
      id: message.id,
      ackedAt: at,
      file: target,
      offset: target.size,
      length: bytes - 1,
    });
    target.size += bytes;
    target.newestAck = Math.max(target.newestAck, at);
    target.inflight++;
    const written = target.log!.append(line);
    this.#ackInFlight.set(message.id, { message, written });
    const settled = () => {
      target.inflight--;
      this.#ackInFlight.delete(message.id);
    };
    written.then(settled, settled);
    this.#maybeCompact();
    await written;
  }

  async discard(id: string): Promise<void> {
    requireKey(id, "message id");
    if (this.#removePending(id) === undefined) {
      await this.#log.barrier();
      return;
    }
    const written = this.#log.append(`{"op":"discard","id":${JSON.stringify(id)}}\n`);
    this.#maybeCompact();
    await written;
  }

  async pending(options?: QueuePendingOptions): Promise<QueuedMessage[]> {
    const after = optionsBag(options, "queue.pending options").after;
    const from = after === undefined ? undefined : queuePosition(after);
    const selected = this.#select(options, "queue.pending options", from);
    await this.#log.barrier();
    return selected.map(copy);
  }

  async replay(options?: { sessionKey?: string; limit?: number }): Promise<QueuedMessage[]> {
    const selected = this.#select(options, "queue.replay options");
    if (selected.length === 0) {
      await this.#log.barrier();
      return [];
    }
    for (const message of selected) message.deliveries++;
    const out = selected.map(copy);
    const ids = selected.map((m) => m.id);
    const written = this.#log.append(`{"op":"deliver","ids":${JSON.stringify(ids)}}\n`);
    this.#maybeCompact();
    await written;
    return out;
  }

  /** Closes the logs (after pending writes) and waits for file deletions in progress. */
  async close(): Promise<void> {
    const logs = [this.#log, ...this.#ackedFiles.map((f) => f.log)];
    for (const f of this.#ackedFiles) f.log = undefined;
    this.#current = undefined;
    await Promise.all(logs.map((log) => log?.close()));
    while (this.#chores.size > 0) await Promise.all([...this.#chores]);
  }

  /**
   * Pending messages in enqueue order (the map's order is id order: ids are assigned in
   * order and compaction writes them sorted), those after the id `after` only when given.
   */
  #select(
    options: { sessionKey?: string; limit?: number } | undefined,
    what: string,
    after?: string,
  ): QueuedMessage[] {
    const opts = optionsBag(options, what);
    const limit = pageLimit(opts.limit, "limit", 100, 1000);
    if (opts.sessionKey !== undefined) requireKey(opts.sessionKey, "sessionKey");
    const out: QueuedMessage[] = [];
    for (const message of this.#pending.values()) {
      if (out.length >= limit) break;
      if (after !== undefined && message.id <= after) continue;
      if (opts.sessionKey === undefined || message.sessionKey === opts.sessionKey)
        out.push(message);
    }
    return out;
  }

  #addPending(message: QueuedMessage): void {
    this.#pending.set(message.id, message);
    this.#pendingByKey.set(message.idempotencyKey, message.id);
    this.#bumpId(message.id);
  }

  #removePending(id: string): QueuedMessage | undefined {
    const message = this.#pending.get(id);
    if (message === undefined) return undefined;
    this.#pending.delete(id);
    if (this.#pendingByKey.get(message.idempotencyKey) === id) {
      this.#pendingByKey.delete(message.idempotencyKey);
    }
    return message;
  }

  #bumpId(id: string): void {
    const n = Number(id);
    if (Number.isSafeInteger(n) && n >= this.#nextId) this.#nextId = n + 1;
  }

  /** The acked file new acks go to, starting a new one when the current one's period is over. */
  #currentFile(now: number): AckedFile {
    const current = this.#current;
    if (current !== undefined && now < current.opened + this.#periodMs) return current;
    if (current !== undefined) this.#seal(current);
    let opened = Math.max(0, Math.floor(now));
    while (this.#ackedFiles.some((f) => f.opened === opened)) opened++;
    const file = path.join(this.#ackedDir, `${opened}.jsonl`);
    const next: AckedFile = {
      file,
      opened,
      log: new AppendLog(
        file,
        this.#context.files,
        { exists: false, size: 0, lineCount: 0 },
        (e, f) => this.#context.fail(e, f),
      ),
      size: 0,
      newestAck: Number.NEGATIVE_INFINITY,
      inflight: 0,
      compacted: false,
    };
    this.#ackedFiles.push(next);
    this.#current = next;
    return next;
  }

  /** Stops appending to `file`: its handle is closed once its writes are done. */
  #seal(file: AckedFile): void {
    const log = file.log;
    file.log = undefined;
    if (this.#current === file) this.#current = undefined;
    if (log !== undefined) this.#chore(log.close());
  }

  #chore(work: Promise<unknown>): void {
    const tracked = work.catch(() => {});
    this.#chores.add(tracked);
    tracked.then(() => this.#chores.delete(tracked));
  }

  /** The original of an acked message, from its line on disk. */
  async #readAcked(ref: AckedRef): Promise<QueuedMessage> {
    const inFlight = this.#ackInFlight.get(ref.id);
    if (inFlight !== undefined) {
      const original = copy(inFlight.message);
      await inFlight.written;
      return original;
    }
    const handle = await fs.open(ref.file.file, "r");
    let text: string;
    try {
      const buffer = Buffer.alloc(ref.length);
      let read = 0;
      while (read < ref.length) {
        const { bytesRead } = await handle.read(buffer, read, ref.length - read, ref.offset + read);
        if (bytesRead === 0) break;
        read += bytesRead;
      }
      text = buffer.toString("utf8", 0, read);
    } finally {
      await handle.close();
    }
    let value: { message?: unknown } | undefined;
    try {
      value = JSON.parse(text) as { message?: unknown };
    } catch {
      value = undefined;
    }
    if (!isMessage(value?.message) || value.message.id !== ref.id) {
      throw new StoreError(
        "STORE_CORRUPT",
        `${this.#context.relative(ref.file.file)} at byte ${ref.offset}: expected the acked message ${ref.id}`,
      );
    }
    return value.message;
  }

  /**
   * Forgets acks older than the window, and deletes acked files whose every ack is forgotten
   * once a compaction has seen them (asking for one if none has).
   */
  #expire(): void {
    const cutoff = this.#context.now() - this.dedupeWindowMs;
    // A key is remembered while acknowledged less than the window ago: `now - ackedAt <
    // dedupeWindowMs`, so a window of 0 remembers nothing after `ack`.
    for (const [key, ref] of this.#acked) {
      if (ref.ackedAt > cutoff) break;
      this.#acked.delete(key);
    }
    let needCompaction = false;
    for (let i = 0; i < this.#ackedFiles.length; i++) {
      const f = this.#ackedFiles[i]!;
      if (f === this.#current || f.newestAck >= cutoff || f.inflight > 0) continue;
      if (!f.compacted) {
        needCompaction = true;
        continue;
      }
      this.#ackedFiles.splice(i--, 1);
      this.#seal(f);
      this.#chore(this.#context.files.removeFile(f.file));
    }
    // The current file is sealed as soon as its period is over, so that it can expire too.
    const current = this.#current;
    if (current !== undefined && this.#context.now() >= current.opened + this.#periodMs) {
      this.#seal(current);
    }
    if (needCompaction && !this.#compacting) this.#compact();
  }

  #maybeCompact(): void {
    const live = this.#pending.size + this.#ackInFlight.size + 1;
    if (this.#compacting || !shouldCompact(this.#log.lineCount, live)) return;
    this.#compact();
  }

  /**
   * Rewrites the pending log; acked files sealed and settled now are marked once it is durable.
   * Resolves with whether it was (`false` when it failed or was skipped for a full disk).
   */
  #compact(): Promise<boolean> {
    const seen = this.#ackedFiles.filter(
      (f) => f !== this.#current && f.log === undefined && f.inflight === 0,
    );
    const snapshot = [`{"op":"counter","nextId":${this.#nextId}}\n`];
    let messages: Iterable<QueuedMessage> = this.#pending.values();
    if (this.#ackInFlight.size > 0) {
      const inFlight = [...this.#ackInFlight.values()].map((a) => a.message);
      messages = [...this.#pending.values(), ...inFlight].sort((a, b) =>
        a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
      );
    }
    for (const message of messages) {
      snapshot.push(`{"op":"enqueue","message":${JSON.stringify(message)}}\n`);
    }
    this.#compacting = true;
    const done = this.#log.rewrite(snapshot, snapshot.length).then(
      () => {
        for (const f of seen) f.compacted = true;
        return true;
      },
      () => false,
    );
    const finished = done.finally(() => {
      this.#compacting = false;
    });
    this.#chore(finished);
    return finished;
  }

  async #compactNow(): Promise<boolean> {
    const compacted = await this.#compact();
    await this.#log.barrier();
    return compacted;
  }
}
