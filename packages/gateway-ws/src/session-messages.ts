/**
 * `sessions.messages.subscribe`: a connection follows the transcripts of some sessions and
 * is sent each message added to them as a `session.message` event (OpenClaw's), whoever
 * added it: a chat client, a channel (a Telegram user's message shows as it arrives), a cron
 * job, `chat.inject`.
 *
 * The feed reads what is new in a followed session's transcript when one of its runs says
 * something was saved: the first streamed text or the end of a model step (the user's message
 * is saved before the model is called), a tool call or result, the end of the run. Reads of
 * one session never overlap; a trigger during a read makes one more read after it. Only
 * sessions some connection follows are read.
 */
import type { RunEvent } from "@beamclaw/core";
import type { GatewayConnection } from "./connection.js";
import type { GatewayHub } from "./hub.js";
import { recordMessages } from "./methods/session-helpers.js";
import { Scopes } from "./protocol/constants.js";

/** The most sessions one connection may follow. */
export const MAX_FOLLOWED_SESSIONS = 100;
/** Transcript entries read at a time. */
const READ_PAGE = 200;

interface Track {
  /** The seq of the last transcript entry sent (or there when following began). */
  lastSeq: number;
  reading: boolean;
  again: boolean;
}

/** See the module comment. */
export class SessionMessageFeed {
  readonly #hub: GatewayHub;
  readonly #tracks = new Map<string, Track>();
  /** Runs whose first text delta has triggered a read. */
  readonly #streaming = new Set<string>();

  constructor(hub: GatewayHub) {
    this.#hub = hub;
  }

  /**
   * What the feed holds now: the sessions it reads for their followers, and the runs whose
   * first streamed text has already triggered a read. For diagnostics and tests: both fall
   * back to zero once nobody follows and the runs have ended.
   */
  stats(): { sessions: number; streamingRuns: number } {
    return { sessions: this.#tracks.size, streamingRuns: this.#streaming.size };
  }

  /** Follows `key` for `connection`, from the transcript's end now. */
  async follow(connection: GatewayConnection, key: string): Promise<void> {
    connection.followedSessions.add(key);
    if (this.#tracks.has(key)) return;
    const lastSeq = await this.#hub.runtime.store.transcripts.lastSeq(key);
    if (!this.#tracks.has(key) && connection.followedSessions.has(key)) {
      this.#tracks.set(key, { lastSeq, reading: false, again: false });
    }
  }

  /** Stops following `key` for `connection`. */
  unfollow(connection: GatewayConnection, key: string): void {
    connection.followedSessions.delete(key);
    if (!this.#followed(key)) this.#tracks.delete(key);
  }

  /**
   * Stops following every session for `connection`, which closed: a session nobody else
   * follows is no longer read, and nothing of it is kept.
   */
  leave(connection: GatewayConnection): void {
    const keys = [...connection.followedSessions];
    connection.followedSessions.clear();
    for (const key of keys) {
      if (!this.#followed(key)) this.#tracks.delete(key);
    }
  }

  /** A run event from `events:global`: reads the session's transcript when it saved something. */
  onRunEvent(event: RunEvent): void {
    // Whether or not its session is still followed: a follower may have left mid-run.
    if (event.type === "run-end") this.#streaming.delete(event.runId);
    if (!this.#tracks.has(event.sessionKey)) return;
    if (event.type === "run-start" || event.type === "tool-approval-request") return;
    if (event.type === "text-delta") {
      if (this.#streaming.has(event.runId)) return;
      this.#streaming.add(event.runId);
    }
    this.poke(event.sessionKey);
  }

  /** Something was saved to `key`'s transcript (e.g. by `chat.inject`): sends what is new. */
  poke(key: string): void {
    const track = this.#tracks.get(key);
    if (track === undefined) return;
    if (track.reading) {
      track.again = true;
      return;
    }
    track.reading = true;
    void this.#read(key, track);
  }

  /** Whether `connection` is sent `key`'s messages. */
  #followed(key: string): boolean {
    for (const connection of this.#hub.connections) {
      if (connection.isOpen && connection.followedSessions.has(key)) return true;
    }
    return false;
  }

  async #read(key: string, track: Track): Promise<void> {
    const transcripts = this.#hub.runtime.store.transcripts;
    try {
      do {
        track.again = false;
        if (!this.#followed(key)) {
          this.#tracks.delete(key);
          return;
        }
        let page = await transcripts.read(key, { afterSeq: track.lastSeq, limit: READ_PAGE });
        if (page.length === 0 && track.lastSeq > 0) {
          // Reset since (the transcript starts again at 1): follow the new one from its start.
          const last = await transcripts.lastSeq(key);
          if (last < track.lastSeq) {
            track.lastSeq = 0;
            page = await transcripts.read(key, { afterSeq: 0, limit: READ_PAGE });
          }
        }
        for (const record of page) {
          track.lastSeq = record.seq;
          if (record.entry.discarded === true) continue;
          for (const message of recordMessages(record)) this.#send(key, message);
        }
        if (page.length === READ_PAGE) track.again = true;
      } while (track.again);
    } catch (error) {
      this.#hub.log.warn(`session.message: could not read ${key}: ${(error as Error).message}`);
    } finally {
      track.reading = false;
    }
  }

  #send(key: string, message: ReturnType<typeof recordMessages>[number]): void {
    const meta = message.__openclaw as { id: string; seq: number };
    const active = this.#hub.runs.active(key).map((run) => run.runId);
    // The run as the client that sent its message knows it (its `chat.send` idempotency key).
    const runId = typeof message.runId === "string" ? message.runId : undefined;
    this.#hub.broadcast(
      "session.message",
      {
        sessionKey: key,
        message,
        messageId: meta.id,
        messageSeq: meta.seq,
        hasActiveRun: active.length > 0,
        activeRunIds: active,
        ...(runId === undefined ? {} : { clientRunId: this.#hub.runs.displayId(runId) }),
      },
      { scope: Scopes.READ, filter: (c) => c.followedSessions.has(key) },
    );
  }
}
