/**
 * Where a session goes when no node owns it: the least-loaded node for new traffic, and a
 * rendezvous hash (every node computes the same answer) for orphans after a failure.
 * @internal
 */
import type { ClusterMember } from "./types.js";

/** FNV-1a, 32 bits: a fast, stable string hash (not for security). */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * The member with the highest hash of `(key, nodeId)`: the same on every node that sees the
 * same members, and only the keys of a departed node move when membership changes.
 */
export function rendezvous(key: string, nodeIds: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const nodeId of nodeIds) {
    const score = fnv1a(`${key}\u0000${nodeId}`);
    if (score > bestScore || (score === bestScore && best !== undefined && nodeId < best)) {
      best = nodeId;
      bestScore = score;
    }
  }
  return best;
}

/**
 * The least-loaded candidate: fewest sessions (`load`), ties to `self` (no hop), then to the
 * rendezvous order of `key` (so ties spread over nodes instead of piling on one).
 */
export function leastLoaded(
  key: string,
  candidates: readonly ClusterMember[],
  load: (member: ClusterMember) => number,
  self: string,
): string | undefined {
  let min = Number.POSITIVE_INFINITY;
  for (const member of candidates) min = Math.min(min, load(member));
  const tied = candidates.filter((m) => load(m) === min).map((m) => m.nodeId);
  if (tied.length === 0) return undefined;
  if (tied.includes(self)) return self;
  return rendezvous(key, tied);
}
