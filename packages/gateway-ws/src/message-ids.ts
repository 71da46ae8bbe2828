/**
 * Message ids: how `chat.history`, `chat.message.get`, `chat.inject` and `sessions.search`
 * name one chat message of a session's transcript.
 *
 * An id is `<seq>-<tag>` for the chat message of the transcript entry `seq`, and
 * `<seq>-<tag>.<part>` for the second and later chat messages of one entry (a tool message
 * with several results shows as one chat message each). `seq` alone would not do: a reset
 * clears the transcript and its seqs start again at 1, so `tag` (a hash of the entry's time
 * and run) tells the new entry 1 from the old one; an id of a message that is gone never
 * finds another one.
 */
import type { JsonObject } from "@beamclaw/core";

/** A transcript entry as the session actor writes it. */
export type TranscriptEntry = JsonObject & { message?: unknown; at?: unknown; runId?: unknown };

/** What an entry is known by beyond its seq: its time and run. */
export function fingerprint(entry: TranscriptEntry): string {
  return `${typeof entry.at === "number" ? entry.at : 0}:${String(entry.runId ?? "")}`;
}

/** 32-bit FNV-1a of the fingerprint, in base 36. */
function tagOf(entry: TranscriptEntry): string {
  const text = fingerprint(entry);
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(36);
}

/** The id of the `part`-th chat message (from 0) of transcript entry `seq`. */
export function messageIdOf(seq: number, entry: TranscriptEntry, part = 0): string {
  const id = `${seq}-${tagOf(entry)}`;
  return part === 0 ? id : `${id}.${part}`;
}

/** A message id taken apart. */
export interface MessageIdParts {
  seq: number;
  tag: string;
  part: number;
}

const ID = /^([1-9][0-9]{0,15})-([0-9a-z]{1,7})(?:\.([1-9][0-9]{0,5}))?$/;

/** Takes an id apart; `undefined` for anything that is not a message id. */
export function parseMessageId(id: string): MessageIdParts | undefined {
  const match = ID.exec(id);
  if (match === null) return undefined;
  const seq = Number(match[1]);
  if (!Number.isSafeInteger(seq)) return undefined;
  return { seq, tag: match[2]!, part: match[3] === undefined ? 0 : Number(match[3]) };
}

/** Whether `entry`, read at `seq`, is the entry the id was given to. */
export function isEntryOf(parts: MessageIdParts, seq: number, entry: TranscriptEntry): boolean {
  return parts.seq === seq && parts.tag === tagOf(entry);
}
