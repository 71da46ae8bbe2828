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
 *
 * Cancelled attempts. A discard marker cancels the entries of its run written before it (an
 * attempt whose save failed, which the run then makes again; one cut short by a crash or a
 * stop, which the restarted session runs again; a rewound run). `session.message` has no form
 * that takes a message back, so the feed never sends what it knows to be cancelled, and never
 * sends one message twice:
 * - entries cancelled by a marker read in the same page are not sent;
 * - once a run reports `SAVE_FAILED` (its attempt will be discarded and run again), its entries
 *   read before its marker (a write whose reply was lost) are held back and dropped when the
 *   marker comes (sent after all if the run ends without one: aborted while it waited);
 * - entries of a run written after its marker that repeat a message the feed already sent for
 *   the cancelled attempt (the user's message, which the retry saves again; an identical
 *   answer) are not sent again: the subscriber has it. A different answer is sent as new.
 * Normal messages are sent as soon as they are read, as before.
 */
import { createHash } from "node:crypto";
import type { RunEvent, TranscriptRecord } from "@beamclaw/core";
import type { GatewayConnection } from "./connection.js";
import type { GatewayHub } from "./hub.js";
import { liveRecordsNewestFirst, recordMessages } from "./methods/session-helpers.js";
import { Scopes } from "./protocol/constants.js";

/** The most sessions one connection may follow. */
export const MAX_FOLLOWED_SESSIONS = 100;
/** Transcript entries read at a time. */
const READ_PAGE = 200;
/** Runs per followed session whose sent messages are remembered (the oldest forgotten). */
const MAX_REMEMBERED_RUNS = 16;

/** What the feed remembers of one run of a followed session until it ends. */
interface RunMemo {
  /** Digests of the messages sent for the run's current attempt, in order. */
  sent: string[];
  /** Digests of the messages sent for its cancelled attempts, not yet seen again. */
  shown: string[];
  /** It reported `SAVE_FAILED`: its entries are held back until its discard marker. */
  failed: boolean;
  /** The entries held back; sent after all if the run ends with no marker (aborted). */
  held: TranscriptRecord[];
  /** Its `run-end` came: forgotten after the next read (which sees all it saved). */
  ended: boolean;
}

interface Track {
  /** The seq of the last transcript entry sent (or there when following began). */
  lastSeq: number;
  reading: boolean;
  again: boolean;
  /** Runs with something sent, held back or repeated (see the module comment). */
  runs: Map<string, RunMemo>;
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
      this.#tracks.set(key, { lastSeq, reading: false, again: false, runs: new Map() });
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
    const track = this.#tracks.get(event.sessionKey);
    if (track === undefined) return;
    if (event.type === "run-end") {
      const memo = track.runs.get(event.runId);
      if (memo !== undefined) memo.ended = true;
    }
    if (event.type === "error" && event.error.code === "SAVE_FAILED") {
      // Its attempt is discarded (a marker, then the run again): hold back what it saved.
      memoOf(track, event.runId).failed = true;
      this.#streaming.delete(event.runId);
    }
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
        const ended = [...track.runs].filter(([, memo]) => memo.ended).map(([runId]) => runId);
        let page = await transcripts.read(key, { afterSeq: track.lastSeq, limit: READ_PAGE });
        if (page.length === 0 && track.lastSeq > 0) {
          // Reset since (the transcript starts again at 1): follow the new one from its start.
          const last = await transcripts.lastSeq(key);
          if (last < track.lastSeq) {
            track.lastSeq = 0;
            page = await transcripts.read(key, { afterSeq: 0, limit: READ_PAGE });
          }
        }
        const last = page.at(-1);
        // Not those a marker in this page cancels.
        const live = new Set(liveRecordsNewestFirst([...page].reverse()));
        if (last !== undefined) track.lastSeq = last.seq;
        for (const record of page) {
          if (record.entry.discarded === true) {
            const memo = track.runs.get(String(record.entry.runId));
            if (memo !== undefined) {
              memo.shown.push(...memo.sent);
              memo.sent = [];
              memo.failed = false;
              memo.held = [];
            }
          } else if (live.has(record)) {
            this.#sendRecord(key, track, record);
          }
        }
        if (page.length === READ_PAGE) track.again = true;
        else for (const runId of ended) this.#forget(key, track, runId);
      } while (track.again);
    } catch (error) {
      this.#hub.log.warn(`session.message: could not read ${key}: ${(error as Error).message}`);
    } finally {
      track.reading = false;
    }
  }

  /** Sends `record`'s messages unless held back or already sent (see the module comment). */
  #sendRecord(key: string, track: Track, record: TranscriptRecord): void {
    const messages = recordMessages(record);
    if (messages.length === 0) return;
    const runId = record.entry.runId;
    if (typeof runId !== "string") {
      for (const message of messages) this.#send(key, message);
      return;
    }
    const known = track.runs.get(runId);
    if (known?.failed === true) {
      known.held.push(record);
      return;
    }
    // Only a run that is still going can be cancelled and made again. The transcript names
    // the runtime's run id (a `chat.send` run is known to clients by its idempotency key).
    if (!this.#hub.runs.active(key).some((run) => run.coreRunId === runId) && known === undefined) {
      for (const message of messages) this.#send(key, message);
      return;
    }
    const memo = known ?? memoOf(track, runId);
    const digest = digestOf(record.entry.message);
    memo.sent.push(digest);
    const repeat = memo.shown.indexOf(digest);
    if (repeat !== -1) {
      // The cancelled attempt's copy was sent: the subscriber has it.
      memo.shown.splice(repeat, 1);
      return;
    }
    for (const message of messages) this.#send(key, message);
  }

  /**
   * Forgets an ended run. One aborted while it waited to run again wrote no marker: what it
   * held back stayed in the transcript, and is sent now.
   */
  #forget(key: string, track: Track, runId: string): void {
    const memo = track.runs.get(runId);
    track.runs.delete(runId);
    for (const record of memo?.held ?? []) {
      for (const message of recordMessages(record)) this.#send(key, message);
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

/** The memo of `runId` in `track`, made if new (the oldest forgotten past the cap). */
function memoOf(track: Track, runId: string): RunMemo {
  let memo = track.runs.get(runId);
  if (memo === undefined) {
    memo = { sent: [], shown: [], failed: false, held: [], ended: false };
    track.runs.set(runId, memo);
    if (track.runs.size > MAX_REMEMBERED_RUNS) {
      track.runs.delete(track.runs.keys().next().value as string);
    }
  }
  return memo;
}

/** A short digest of a saved message (a retry's copy of a message has the same one). */
function digestOf(message: unknown): string {
  return createHash("sha256").update(JSON.stringify(message)).digest("base64url");
}
