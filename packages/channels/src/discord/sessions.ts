/**
 * Gateway sessions, one per shard, kept by the channel across connections so that the next
 * connection RESUMEs where the last one stopped — and where "stopped" means the last event
 * the host has *taken*, not merely received.
 *
 * Discord has no per-message acknowledgement: a RESUME names the last sequence number the
 * client has, and Discord replays every event after it. So the sequence stored here (and
 * sent in RESUME and heartbeats) is the acknowledged one: it advances past an event only
 * when that event is done — a MESSAGE_CREATE once `ctx.receive` resolved (the message is in
 * the durable queue), anything else at once — and only in order. An event received but not
 * yet taken when the connection drops is replayed after the resume; an event already taken
 * is not (and if one were replayed anyway, it is recognised by its sequence and skipped).
 */
import type { SessionInfo } from "@discordjs/ws";

/** One shard's resumable session. */
export interface ShardSession {
  sessionId: string;
  resumeURL: string;
  shardCount: number;
  /** The highest sequence number up to which every event was taken. */
  acked: number;
}

/** Marks one dispatch as done (taken by the host, or not a message). */
export interface DispatchTicket {
  readonly sequence: number | undefined;
  complete(): void;
}

interface Pending {
  sequence: number;
  sessionId: string;
  generation: number;
  done: boolean;
}

const noTicket = (sequence: number | undefined): DispatchTicket => ({
  sequence,
  complete() {},
});

/** The sessions of every shard, and the acknowledgement of the events received on them. */
export class GatewaySessions {
  readonly #sessions = new Map<number, ShardSession>();
  readonly #pending = new Map<number, Pending[]>();
  #generation = 0;

  /** The session of a shard, if it has one. */
  get(shardId: number): ShardSession | undefined {
    return this.#sessions.get(shardId);
  }

  /** True when at least one shard has a session to resume. */
  get resumable(): boolean {
    return this.#sessions.size > 0;
  }

  /** What `@discordjs/ws` resumes with: the acknowledged sequence, not the last received. */
  info(shardId: number): SessionInfo | null {
    const session = this.#sessions.get(shardId);
    if (session === undefined) return null;
    return {
      shardId,
      shardCount: session.shardCount,
      sessionId: session.sessionId,
      resumeURL: session.resumeURL,
      sequence: session.acked,
    };
  }

  /**
   * Takes `@discordjs/ws`'s news: a new session (READY) starts acknowledged at READY's
   * sequence; an update of the current one only moves the resume URL (the sequence is ours
   * to move); `null` (Discord invalidated the session) forgets it.
   */
  update(shardId: number, info: SessionInfo | null): void {
    if (info === null) {
      this.clear(shardId);
      return;
    }
    const current = this.#sessions.get(shardId);
    if (current === undefined || current.sessionId !== info.sessionId) {
      this.#sessions.set(shardId, {
        sessionId: info.sessionId,
        resumeURL: info.resumeURL,
        shardCount: info.shardCount,
        acked: info.sequence,
      });
      this.#pending.delete(shardId);
      return;
    }
    current.resumeURL = info.resumeURL;
    current.shardCount = info.shardCount;
  }

  /** Forgets one shard's session, or all: the next connection identifies afresh. */
  clear(shardId?: number): void {
    if (shardId === undefined) {
      this.#sessions.clear();
      this.#pending.clear();
    } else {
      this.#sessions.delete(shardId);
      this.#pending.delete(shardId);
    }
  }

  /**
   * A new connection begins: events of the last one that were not taken are dropped from
   * the books (they stay unacknowledged, so the resumed session replays them, and a late
   * completion of theirs is ignored); events that were taken but could not be acknowledged
   * yet (an earlier one was not taken) are kept, so that their replay is recognised.
   */
  newConnection(): void {
    this.#generation++;
    for (const [shardId, queue] of this.#pending) {
      this.#pending.set(
        shardId,
        queue.filter((entry) => entry.done),
      );
    }
  }

  /**
   * Registers a received dispatch. Returns the ticket to complete once it is done, or
   * `"replayed"` when it was taken before (skip it).
   */
  begin(shardId: number, sequence: number | null | undefined): DispatchTicket | "replayed" {
    const session = this.#sessions.get(shardId);
    if (typeof sequence !== "number") return noTicket(undefined);
    if (session === undefined) return noTicket(sequence);
    if (sequence <= session.acked) return "replayed";
    const queue = this.#pending.get(shardId) ?? [];
    this.#pending.set(shardId, queue);
    if (queue.some((entry) => entry.sequence === sequence)) return "replayed";
    const entry: Pending = {
      sequence,
      sessionId: session.sessionId,
      generation: this.#generation,
      done: false,
    };
    // Replays arrive in order, but may slot in before events kept from the last connection.
    const after = queue.findIndex((e) => e.sequence > sequence);
    if (after < 0) queue.push(entry);
    else queue.splice(after, 0, entry);
    return {
      sequence,
      complete: () => {
        if (entry.done || entry.generation !== this.#generation) return;
        entry.done = true;
        this.#advance(shardId);
      },
    };
  }

  #advance(shardId: number): void {
    const queue = this.#pending.get(shardId);
    const session = this.#sessions.get(shardId);
    if (queue === undefined) return;
    while (queue[0]?.done === true) {
      const entry = queue.shift()!;
      if (session?.sessionId === entry.sessionId && entry.sequence > session.acked) {
        session.acked = entry.sequence;
      }
    }
  }
}
