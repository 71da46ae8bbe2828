/**
 * Every Redis key the store uses, in one place. The README's "Key structure" table lists the
 * same names.
 *
 * A key is `prefix + kind + variable part`, where each `kind` token ends in `:` (or is a
 * complete fixed name) and no two tokens agree up to the point where one of them ends. So
 * the mapping from (kind, id) to a Redis key is injective: no id, whatever characters it
 * holds (`:` included), can make one key of one kind equal a key of another kind, and every
 * key stays under the prefix.
 */
export class KeySpace {
  /** The prefix every key starts with, e.g. `beamclaw:`. */
  readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** Hash `{ a: agentId, j: record JSON }`. */
  session(key: string): string {
    return `${this.prefix}session:${key}`;
  }
  /** Sorted set of every session key, score `-updatedAt` (so ascending = newest first). */
  get sessionsAll(): string {
    return `${this.prefix}sessions:all`;
  }
  /** The same sorted set, for one agent. */
  sessionsOfAgent(agentId: string): string {
    return `${this.prefix}sessions:agent:${agentId}`;
  }
  /** List of entry JSON; index `i` holds `seq = i + 1`. */
  transcript(sessionKey: string): string {
    return `${this.prefix}transcript:${sessionKey}`;
  }
  /** Hash `jobId -> job JSON`. */
  get cronJobs(): string {
    return `${this.prefix}cron:jobs`;
  }
  /** Sorted set of one job's runs, score `startedAt`. */
  cronRuns(jobId: string): string {
    return `${this.prefix}cron:runs:${jobId}`;
  }
  /** Counter that makes run-log members unique and orders runs with equal `startedAt`. */
  get cronRunSeq(): string {
    return `${this.prefix}cron:run-seq`;
  }
  /** Hash `deviceId -> device JSON`. */
  get devices(): string {
    return `${this.prefix}devices`;
  }
  /** Hash `{ d: deviceId, j: token JSON }`, expiring at `expiresAt`. */
  deviceToken(tokenHash: string): string {
    return `${this.prefix}device-token:${tokenHash}`;
  }
  /** Set of one device's token hashes. */
  deviceTokens(deviceId: string): string {
    return `${this.prefix}device-tokens:${deviceId}`;
  }
  /** Hash `pattern -> approval JSON`. */
  approvals(sessionKey: string): string {
    return `${this.prefix}approvals:${sessionKey}`;
  }
  /** Counter of queued messages; message ids are its values. */
  get queueSeq(): string {
    return `${this.prefix}queue:seq`;
  }
  /** Sorted set of pending message ids, score = id (enqueue order). */
  get queuePending(): string {
    return `${this.prefix}queue:pending`;
  }
  /** The same, for one session. */
  queueOfSession(sessionKey: string): string {
    return `${this.prefix}queue:session:${sessionKey}`;
  }
  /**
   * Hash `pending message id -> its session key`, so that a pending id whose message hash is
   * gone can still be removed from its session's set. Ids enqueued before it existed have no
   * entry.
   */
  get queueSessionOf(): string {
    return `${this.prefix}queue:session-of`;
  }
  /** Hash of one message `{ i, s, p, t, d }`. */
  queueMessage(id: string): string {
    return `${this.prefix}queue:msg:${id}`;
  }
  /** `idempotencyKey -> message id`. */
  queueIdempotency(idempotencyKey: string): string {
    return `${this.prefix}queue:idem:${idempotencyKey}`;
  }
  /** One key/value entry: the value's JSON. */
  kv(key: string): string {
    return `${this.prefix}kv:${key}`;
  }
  /** Sorted set of every kv key, score 0, for prefix listing by lexicographic range. */
  get kvIndex(): string {
    return `${this.prefix}kv-index`;
  }
  /** Sorted set of kv keys that have a TTL, score = expiry (epoch ms). */
  get kvExpiry(): string {
    return `${this.prefix}kv-expiry`;
  }
  /** A held lock: `token:expiresAt:owner`, expiring with the lease. */
  lock(name: string): string {
    return `${this.prefix}lock:${name}`;
  }
  /**
   * The lock's fencing-token counter; tokens only grow. It expires `LOCK_TOKEN_RETENTION_MS`
   * after the lease, and starts again above every earlier token (see `LOCK_ACQUIRE`).
   */
  lockToken(name: string): string {
    return `${this.prefix}lock-token:${name}`;
  }
}

/** `prefix` with the glob characters of `SCAN MATCH` escaped, followed by `*`. */
export function scanPatternFor(prefix: string): string {
  return `${prefix.replace(/[\\*?[\]]/g, "\\$&")}*`;
}
