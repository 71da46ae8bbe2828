/**
 * Traffic through real cluster nodes, and what the store shows afterwards. Each session is
 * driven by one loop that sends numbered messages (`<key> #<n>`, idempotency key = text)
 * one after another through the live nodes in turn, as clients behind a load balancer
 * would, retrying a refused message on another node with the same idempotency key.
 */
import type { RedisStore } from "../../src/index.js";
import type { ClusterNodeProcess, RunOutcome } from "./cluster.js";
import { sleep } from "./settle.js";

/** One message of the traffic. */
export interface Sent {
  key: string;
  text: string;
  /** A node acknowledged it (it is in the durable queue). */
  acknowledged: boolean;
  /** The node that acknowledged it. */
  via?: string;
  /** What the acknowledging node reported at the end. */
  outcome?: RunOutcome;
  /** `phase()` when it was acknowledged. */
  phase: string;
  /** Refusals before it was acknowledged, by code. */
  refusals: string[];
}

/** Refusals a client retries (on another node, same idempotency key). */
const RETRYABLE = new Set([
  "NODE_EXITED",
  "IPC",
  "STORE_UNAVAILABLE",
  "NO_PROCESS",
  "OVERLOADED",
  "CLUSTER_NOT_OWNER",
  "CLUSTER_DRAINING",
  "CLUSTER_UNREACHABLE",
  "CLUSTER_NOT_RUNNING",
]);

export interface LoopOptions {
  key: string;
  /** The nodes a client may use now (the load balancer's rotation). */
  nodes: () => ClusterNodeProcess[];
  stop: () => boolean;
  phase: () => string;
  log: Sent[];
  /** Give up on one message after this long (ms). */
  retryForMs?: number;
}

/** Sends messages for one session until `stop()`, each after the previous one's run ended. */
export async function sessionLoop(options: LoopOptions): Promise<void> {
  const { key, nodes, stop, phase, log } = options;
  for (let n = 0; !stop(); n++) {
    const text = `${key} #${n}`;
    const sent: Sent = { key, text, acknowledged: false, phase: phase(), refusals: [] };
    log.push(sent);
    const giveUpAt = Date.now() + (options.retryForMs ?? 15_000);
    for (let attempt = 0; Date.now() < giveUpAt && !stop(); attempt++) {
      const live = nodes().filter((node) => node.alive);
      if (live.length === 0) {
        await sleep(50);
        continue;
      }
      const node = live[(n + attempt) % live.length]!;
      const outcome = await node.send(key, text, text);
      if (outcome.kind === "refused") {
        sent.refusals.push(outcome.code);
        if (!RETRYABLE.has(outcome.code)) break;
        await sleep(50);
        continue;
      }
      sent.acknowledged = true;
      sent.via = node.nodeId;
      sent.phase = phase();
      sent.outcome = await outcome.result;
      break;
    }
    if (!sent.acknowledged) return;
  }
}

/**
 * The user and assistant texts a session's transcript shows as run, in order, and how many
 * attempts were cut short (discard markers).
 */
export async function transcriptOf(
  store: RedisStore,
  key: string,
): Promise<{ users: string[]; answers: string[]; cutShort: number }> {
  const entries: Array<Record<string, unknown>> = [];
  for (let after = 0; ; ) {
    const page = await store.transcripts.read(key, { afterSeq: after, limit: 1000 });
    if (page.length === 0) break;
    for (const record of page) entries.push(record.entry as Record<string, unknown>);
    after = page.at(-1)!.seq;
  }
  // A discard marker cancels the entries of its run written before it (an attempt cut short
  // by a crash); the replay of that run, under the same run id, comes after it.
  const cancelled = new Set<string>();
  const cutShort = entries.filter((e) => e.discarded === true).length;
  const live: Array<Record<string, unknown>> = [];
  for (const entry of entries.reverse()) {
    if (entry.discarded === true) cancelled.add(String(entry.runId));
    else if (!cancelled.has(String(entry.runId))) live.push(entry);
  }
  const users: string[] = [];
  const answers: string[] = [];
  for (const entry of live.reverse()) {
    const message = entry.message as
      | { role: string; content: Array<{ type: string; text?: string }> }
      | undefined;
    if (message === undefined) continue;
    const text = message.content.map((part) => part.text ?? "").join("");
    if (message.role === "user") users.push(text);
    if (message.role === "assistant") answers.push(text);
  }
  return { users, answers, cutShort };
}

/** Waits until the durable queue under the store's prefix is empty (every turn done). */
export async function queueDrained(store: RedisStore, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pending = await store.queue.pending({ limit: 1000 });
    if (pending.length === 0 || Date.now() > deadline) return pending.length;
    await sleep(50);
  }
}

/** Texts that occur more than once in `list`. */
export function repeated(list: readonly string[]): string[] {
  const seen = new Set<string>();
  const twice = new Set<string>();
  for (const item of list) (seen.has(item) ? twice : seen).add(item);
  return [...twice];
}
