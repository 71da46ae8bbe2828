/**
 * The durable inbound queue: one append-only log, `queue.jsonl`:
 *
 * ```jsonl
 * {"op":"enqueue","message":{"id":"0000000000000001","idempotencyKey":"tg:42","sessionKey":"agent:main:main","payload":{...},"enqueuedAt":1,"deliveries":0}}
 * {"op":"deliver","ids":["0000000000000001"]}
 * {"op":"ack","id":"0000000000000001","at":2}
 * {"op":"discard","id":"0000000000000002"}
 * ```
 *
 * `enqueue` resolves only once its line is fsync'd, so a message acknowledged to its sender
 * survives a crash; `ack` removes it once its turn is done; on open, the log is replayed:
 * what was enqueued and not acked is pending again, with its delivery count. Acked
 * idempotency keys are remembered for `dedupeWindowMs` (in the log too), so a sender's retry
 * after a crash is recognised as a duplicate instead of running twice.
 *
 * Compaction rewrites the log as: the id counter, the acks still inside the dedupe window
 * (`{"op":"acked",...}`), and the pending messages.
 */
import type { EnqueueResult, InboundQueue, JsonObject, QueuedMessage } from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import { type AppendLog, shouldCompact } from "./append-log.js";
import type { StoreContext } from "./context.js";
import {
  describeValue,
  isPlainObject,
  optionsBag,
  pageLimit,
  requireKey,
  toJsonObjectText,
} from "./json.js";
import { badLine, type JsonlLine } from "./jsonl.js";
import { loadLog } from "./log-table.js";

/** File name of the queue log. */
export const QUEUE_FILE = "queue.jsonl";
const ID_DIGITS = 16;

interface Acked {
  message: QueuedMessage;
  ackedAt: number;
}

function formatId(n: number): string {
  return String(n).padStart(ID_DIGITS, "0");
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

/** The inbound queue of one open store. */
export class Queue implements InboundQueue {
  readonly dedupeWindowMs: number;
  readonly #context: StoreContext;
  #log!: AppendLog;
  /** Insertion order is enqueue order. */
  readonly #pending = new Map<string, QueuedMessage>();
  readonly #pendingByKey = new Map<string, string>();
  /** Insertion order is ack order (oldest first), so expiry trims from the front. */
  readonly #acked = new Map<string, Acked>();
  #nextId = 1;

  private constructor(context: StoreContext, dedupeWindowMs: number) {
    this.#context = context;
    this.dedupeWindowMs = dedupeWindowMs;
  }

  /** Replays the log (repairing a torn tail). */
  static async load(context: StoreContext, dedupeWindowMs: number): Promise<Queue> {
    const queue = new Queue(context, dedupeWindowMs);
    queue.#log = await loadLog(context, QUEUE_FILE, (line, name) => queue.#applyLine(line, name));
    queue.#expireAcked();
    return queue;
  }

  #applyLine(line: JsonlLine, name: string): void {
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
      case "ack":
        if (typeof op.id !== "string" || typeof op.at !== "number") {
          throw badLine(name, line, '{"op":"ack","id":"...","at":<ms>}');
        }
        this.#applyAck(op.id, op.at);
        break;
      case "discard":
        if (typeof op.id !== "string") throw badLine(name, line, '{"op":"discard","id":"..."}');
        this.#applyDiscard(op.id);
        break;
      case "acked":
        if (!isMessage(op.message) || typeof op.at !== "number") {
          throw badLine(name, line, '{"op":"acked","message":{...},"at":<ms>}');
        }
        this.#acked.delete(op.message.idempotencyKey);
        this.#acked.set(op.message.idempotencyKey, { message: op.message, ackedAt: op.at });
        this.#bumpId(op.message.id);
        break;
      case "counter":
        if (typeof op.nextId !== "number")
          throw badLine(name, line, '{"op":"counter","nextId":<n>}');
        this.#nextId = Math.max(this.#nextId, op.nextId);
        break;
      default:
        throw badLine(name, line, "an enqueue, deliver, ack, acked or counter operation");
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
    this.#expireAcked();
    const pendingId = this.#pendingByKey.get(idempotencyKey);
    const original =
      pendingId !== undefined
        ? this.#pending.get(pendingId)
        : this.#acked.get(idempotencyKey)?.message;
    if (original !== undefined) {
      // The original may still be on its way to disk: answer once it is there.
      await this.#log.barrier();
      return { message: copy(original), duplicate: true };
    }
    const message: QueuedMessage = {
      id: formatId(this.#nextId++),
      idempotencyKey,
      sessionKey,
      payload: JSON.parse(payloadText) as JsonObject,
      enqueuedAt: this.#context.now(),
      deliveries: 0,
    };
    this.#addPending(message);
    const written = this.#log.append(`{"op":"enqueue","message":${JSON.stringify(message)}}\n`);
    this.#maybeCompact();
    await written;
    return { message: copy(message), duplicate: false };
  }

  async ack(id: string): Promise<void> {
    requireKey(id, "message id");
    if (!this.#pending.has(id)) {
      await this.#log.barrier();
      return;
    }
    const at = this.#context.now();
    this.#applyAck(id, at);
    const written = this.#log.append(`{"op":"ack","id":${JSON.stringify(id)},"at":${at}}\n`);
    this.#maybeCompact();
    await written;
  }

  async discard(id: string): Promise<void> {
    requireKey(id, "message id");
    if (!this.#pending.has(id)) {
      await this.#log.barrier();
      return;
    }
    this.#applyDiscard(id);
    const written = this.#log.append(`{"op":"discard","id":${JSON.stringify(id)}}\n`);
    this.#maybeCompact();
    await written;
  }

  async pending(options?: { sessionKey?: string; limit?: number }): Promise<QueuedMessage[]> {
    const selected = this.#select(options, "queue.pending options");
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

  /** Closes the log (after pending writes). */
  async close(): Promise<void> {
    await this.#log.close();
  }

  #select(
    options: { sessionKey?: string; limit?: number } | undefined,
    what: string,
  ): QueuedMessage[] {
    const opts = optionsBag(options, what);
    const limit = pageLimit(opts.limit, "limit", 100, 1000);
    if (opts.sessionKey !== undefined) requireKey(opts.sessionKey, "sessionKey");
    const out: QueuedMessage[] = [];
    for (const message of this.#pending.values()) {
      if (out.length >= limit) break;
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

  #bumpId(id: string): void {
    const n = Number(id);
    if (Number.isSafeInteger(n) && n >= this.#nextId) this.#nextId = n + 1;
  }

  #applyAck(id: string, at: number): void {
    const message = this.#pending.get(id);
    if (message === undefined) return;
    this.#pending.delete(id);
    if (this.#pendingByKey.get(message.idempotencyKey) === id) {
      this.#pendingByKey.delete(message.idempotencyKey);
    }
    this.#acked.delete(message.idempotencyKey);
    this.#acked.set(message.idempotencyKey, { message, ackedAt: at });
  }

  /** A refused message leaves without a trace: its idempotency key is not remembered. */
  #applyDiscard(id: string): void {
    const message = this.#pending.get(id);
    if (message === undefined) return;
    this.#pending.delete(id);
    if (this.#pendingByKey.get(message.idempotencyKey) === id) {
      this.#pendingByKey.delete(message.idempotencyKey);
    }
  }

  #expireAcked(): void {
    const cutoff = this.#context.now() - this.dedupeWindowMs;
    for (const [key, acked] of this.#acked) {
      if (acked.ackedAt >= cutoff) break;
      this.#acked.delete(key);
    }
  }

  #maybeCompact(): void {
    this.#expireAcked();
    const live = this.#pending.size + this.#acked.size + 1;
    if (!shouldCompact(this.#log.lineCount, live)) return;
    let snapshot = `{"op":"counter","nextId":${this.#nextId}}\n`;
    for (const { message, ackedAt } of this.#acked.values()) {
      snapshot += `{"op":"acked","message":${JSON.stringify(message)},"at":${ackedAt}}\n`;
    }
    for (const message of this.#pending.values()) {
      snapshot += `{"op":"enqueue","message":${JSON.stringify(message)}}\n`;
    }
    this.#log.rewrite(snapshot, live).catch(() => {});
  }
}
