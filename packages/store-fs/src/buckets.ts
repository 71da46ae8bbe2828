/**
 * Where a session's files live. A key of the form `agent:<agentId>:<rest>` belongs to
 * `agents/<agentId>/`; any other key (`cron:<jobId>`, or anything a caller invents) to
 * `unscoped/`. The place is a function of the key alone, so the session record, its
 * transcript and its approvals are always found side by side, whatever the record says.
 */
import path from "node:path";
import { encodeFileName } from "./file-names.js";

/** Directory of sessions whose key names no agent. */
export const UNSCOPED_DIR = "unscoped";
/** Directory holding one directory per agent. */
export const AGENTS_DIR = "agents";

/** The bucket directory of `sessionKey`, relative to the store directory. */
export function bucketOf(sessionKey: string): string {
  if (sessionKey.startsWith("agent:")) {
    const end = sessionKey.indexOf(":", 6);
    if (end > 6) return path.join(AGENTS_DIR, encodeFileName(sessionKey.slice(6, end)));
  }
  return UNSCOPED_DIR;
}
