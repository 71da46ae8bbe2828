/**
 * Limits every Store adapter enforces the same way, so that a value one store accepts no
 * other refuses: an app tested on `MemoryStore` behaves the same on `@beamclaw/store-fs`,
 * `@beamclaw/store-redis` or a third-party adapter (the conformance suite checks it).
 */
import { InvalidArgumentError } from "../errors.js";

/**
 * The deepest nesting of arrays and objects a store accepts in a JSON value: 512 levels.
 *
 * The depth of a value is the number of arrays and objects on its deepest path from the top:
 * a string, number, boolean or `null` has depth 0; `[]`, `{}`, `[1]` and `{ a: 1 }` have depth
 * 1; `{ a: [1] }` and `[[]]` have depth 2. An empty array or object counts as a level.
 *
 * It is counted from the JSON value a write takes, whole: the value of `kv.set`; the record of
 * `sessions.put`, `cron.putJob`, `cron.appendRun`, `devices.put`, `devices.putToken` and
 * `approvals.put` (the record is itself level 1, so its fields may nest 511 more); each entry
 * of `transcripts.append`; the `payload` of `queue.enqueue`; and the same arguments of the
 * fenced writes. A value of depth up to this limit is stored and read back equal; a deeper one
 * is refused with `InvalidArgumentError` naming the path of the first array or object past the
 * limit and the limit itself, and nothing is written (a transcript append with one such entry
 * appends none).
 *
 * The runtime's own records are a few levels deep. A transcript entry wraps a tool's output
 * (and a tool call's input) in 4 levels, so those may nest 508 deep. The limit also bounds the
 * recursion of every adapter's checks, copies and serializers, well within the call stack.
 *
 * @example
 * ```ts
 * import { MAX_STORED_JSON_DEPTH, MemoryStore } from "@beamclaw/core";
 *
 * const store = new MemoryStore();
 * await store.open();
 * let value: unknown = "leaf";
 * for (let i = 0; i < MAX_STORED_JSON_DEPTH; i++) value = [value];
 * await store.kv.set("k", value as never); // stored: depth 512
 * await store.kv.set("k", [value] as never); // rejects: InvalidArgumentError, depth 513
 * ```
 */
export const MAX_STORED_JSON_DEPTH = 512;

/**
 * The message of the `InvalidArgumentError` a store throws for a value deeper than
 * {@link MAX_STORED_JSON_DEPTH}; `path` names the first array or object past the limit (e.g.
 * `kv.set: value.a[0]`). Adapters use it so that every store words the refusal the same way.
 */
export function storedJsonTooDeepMessage(path: string): string {
  return `${path} is nested deeper than ${MAX_STORED_JSON_DEPTH} levels of arrays and objects (MAX_STORED_JSON_DEPTH)`;
}

/**
 * The error a store throws for a value that threw while it was read: a getter or a proxy trap
 * of the value (at `what`, e.g. `kv.set: value`) threw `error`. Such a value is not plain
 * data, and a retry cannot help, so it is `InvalidArgumentError` (not a store failure) and
 * nothing is written. An `InvalidArgumentError` is returned as it is. Adapters use it so that
 * every store words the refusal the same way.
 *
 * @example
 * ```ts
 * import { unreadableStoredValueError } from "@beamclaw/core";
 *
 * function encode(value: unknown, what: string): string {
 *   try {
 *     return JSON.stringify(value);
 *   } catch (error) {
 *     throw unreadableStoredValueError(what, error);
 *   }
 * }
 * ```
 */
export function unreadableStoredValueError(what: string, error: unknown): InvalidArgumentError {
  if (InvalidArgumentError.isInstance(error)) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new InvalidArgumentError(
    `${what} threw while it was read (${reason}); only plain JSON data can be stored`,
    { cause: error },
  );
}
