/**
 * The cluster-wide registry of unique names on Redis: one hash of every name (its node,
 * local id, metadata and registration time) and one set per node of the names it holds.
 * A name counts only while its node heartbeats (every read checks the node's last heartbeat
 * in the same script), and the heartbeat that declares a node `down`, or the node's own
 * `leave`, removes its names. A message to a name goes over the node's backplane channel.
 */
import {
  AlreadyRegisteredError,
  ClusterError,
  type ClusterRegisterOptions,
  type ClusterRegistration,
  type ClusterRegistry,
  InvalidArgumentError,
  type JsonObject,
  type NamedMessageHandler,
  type NodeMessage,
} from "@beamclaw/core";
import type { RedisConnection } from "../connection.js";
import { encodeJsonObject } from "../json.js";
import { requireId, show } from "../validate.js";
import type { ClusterKeys } from "./keys.js";
import { PendingRemovals } from "./pending-removals.js";
import { REGISTRY_READ, REGISTRY_REGISTER, REGISTRY_UNREGISTER } from "./scripts.js";

/** The `t` of a node message that carries a message to a registered name. @internal */
export const NAMED_MESSAGE = "beamclaw:named";

/** What the registry and presence need from the backplane. @internal */
export interface ClusterLink {
  readonly nodeId: string;
  readonly joined: boolean;
  readonly downAfterMs: number;
  readonly conn: RedisConnection;
  readonly keys: ClusterKeys;
  /**
   * Reports an entry (`field` of hash `key`) of node `ownerNodeId`'s data that was skipped
   * because it is not what the backplane writes there.
   */
  readonly skipped: (key: string, field: string, ownerNodeId: string) => void;
}

interface Local {
  handler: NamedMessageHandler;
  unmonitor: (() => void) | undefined;
  /** The registration's JSON (without its time), to register it again (see `reclaim`). */
  body: string;
}

/** The Redis {@link ClusterRegistry}: get it as `backplane.registry`. */
export class RedisClusterRegistry implements ClusterRegistry {
  readonly #link: ClusterLink;
  readonly #local = new Map<string, Local>();
  /** Names let go here whose removal from Redis failed; retried at each heartbeat. */
  readonly #unreleased = new PendingRemovals((name) => this.#remove(name));

  /**
   * Registers this node's names again after the cluster declared it down (its heartbeats
   * were late) and so removed them: each name still free, or held by a node that is not
   * live, is this node's again; one a live node took meanwhile is given up here (its handler
   * dropped). Rejects when Redis cannot be reached (the caller tries again later).
   * @internal
   */
  async reclaim(): Promise<void> {
    const { conn, keys, nodeId, downAfterMs } = this.#link;
    for (const [name, local] of [...this.#local]) {
      if (!this.#link.joined) return;
      const reply = await conn.script<[number, string]>(
        REGISTRY_REGISTER,
        [keys.names, keys.heartbeats, keys.namesOf(nodeId)],
        [String(downAfterMs), name, nodeId, local.body, keys.namesOf("")],
      );
      if (Number(reply[0]) !== 1 && this.#local.get(name) === local) {
        this.#local.delete(name);
        local.unmonitor?.();
      }
    }
  }

  /** @internal */
  constructor(link: ClusterLink) {
    this.#link = link;
  }

  async register(
    name: string,
    handler: NamedMessageHandler,
    options: ClusterRegisterOptions = {},
  ): Promise<ClusterRegistration> {
    requireName(name);
    if (typeof handler !== "function") {
      throw new InvalidArgumentError("register needs a message handler function");
    }
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError("register options must be an object");
    }
    const localId = requireId(options.localId ?? name, "localId");
    const meta = options.meta ?? {};
    const body = `{"n":${JSON.stringify(this.#link.nodeId)},"l":${JSON.stringify(localId)},"m":${registrationMeta(meta)}}`;
    this.#requireJoined("register");
    const { conn, keys, nodeId, downAfterMs } = this.#link;
    const reply = await this.#unreleased.takeUp(name, () =>
      conn.script<[number, string]>(
        REGISTRY_REGISTER,
        [keys.names, keys.heartbeats, keys.namesOf(nodeId)],
        [String(downAfterMs), name, nodeId, body, keys.namesOf("")],
      ),
    );
    const registration = parseRegistration(name, reply[1]);
    if (Number(reply[0]) !== 1) {
      throw new AlreadyRegisteredError(
        `"${name}" is already registered on node ${registration?.nodeId ?? "(unknown)"}`,
        name,
      );
    }
    this.#local.get(name)?.unmonitor?.();
    const unmonitor = options.process?.monitor(() => {
      if (this.#local.get(name)?.handler === handler) {
        this.unregister(name).catch(() => undefined);
      }
    });
    this.#local.set(name, { handler, unmonitor, body });
    return registration!;
  }

  async unregister(name: string): Promise<boolean> {
    requireName(name);
    const local = this.#local.get(name);
    this.#local.delete(name);
    local?.unmonitor?.();
    if (!this.#link.joined) return local !== undefined;
    // A failure (Redis unreachable) leaves the name this node's in Redis for as long as the
    // node lives (a process that exited during a blip): the removal is tried again.
    return this.#unreleased.remove(name);
  }

  /**
   * Tries again the removals from Redis that failed (see `unregister`). Rejects when Redis
   * still cannot be reached (the next heartbeat tries again).
   * @internal
   */
  async retryUnregisters(): Promise<void> {
    if (this.#link.joined) await this.#unreleased.retry();
  }

  async #remove(name: string): Promise<boolean> {
    const { conn, keys, nodeId } = this.#link;
    const n = await conn.script<number>(
      REGISTRY_UNREGISTER,
      [keys.names, keys.namesOf(nodeId)],
      [name, nodeId],
    );
    return Number(n) === 1;
  }

  async lookup(name: string): Promise<ClusterRegistration | undefined> {
    requireName(name);
    return (await this.#read(name, ""))[0];
  }

  async list(prefix = ""): Promise<ClusterRegistration[]> {
    if (typeof prefix !== "string") throw new InvalidArgumentError("list prefix must be a string");
    // The script compares UTF-8 bytes, where a lone surrogate of the prefix is U+FFFD: the
    // names it found are matched against the prefix itself.
    const found = (await this.#read("", prefix)).filter((r) => r.name.startsWith(prefix));
    return found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async send(name: string, message: NodeMessage): Promise<boolean> {
    requireName(name);
    const body = nodeMessageJson(message, "a message");
    this.#requireJoined("send");
    const where = await this.lookup(name);
    if (where === undefined) return false;
    const { conn, keys, nodeId } = this.#link;
    if (where.nodeId === nodeId) return this.deliver(name, message, nodeId);
    const payload = `{"f":${JSON.stringify(nodeId)},"m":{"t":"${NAMED_MESSAGE}","name":${JSON.stringify(name)},"m":${body}}}`;
    const receivers = await conn.send<number>("publish", [keys.nodeChannel(where.nodeId), payload]);
    return Number(receivers) > 0;
  }

  localNames(): string[] {
    return [...this.#local.keys()].sort();
  }

  /** Hands a message to the local handler of `name`; false when it is not registered here. @internal */
  deliver(name: string, message: NodeMessage, from: string): boolean {
    const local = this.#local.get(name);
    if (local === undefined) return false;
    try {
      local.handler(message, from);
    } catch {
      // A throwing handler is the process's problem, not the sender's.
    }
    return true;
  }

  /** Forgets every local name (the backplane left; Redis forgot them in the same step). @internal */
  clear(): void {
    for (const local of this.#local.values()) local.unmonitor?.();
    this.#local.clear();
    this.#unreleased.clear();
  }

  async #read(name: string, prefix: string): Promise<ClusterRegistration[]> {
    this.#requireJoined("read the registry");
    const { conn, keys, downAfterMs } = this.#link;
    const reply = await conn.script<string[]>(
      REGISTRY_READ,
      [keys.names, keys.heartbeats],
      [String(downAfterMs), name, prefix],
    );
    const out: ClusterRegistration[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const registration = parseRegistration(String(reply[i]), String(reply[i + 1]));
      if (registration !== undefined) out.push(registration);
    }
    return out;
  }

  #requireJoined(what: string): void {
    if (!this.#link.joined) {
      throw new ClusterError(
        "CLUSTER_NOT_RUNNING",
        `cannot ${what}: the backplane has not joined the cluster`,
      );
    }
  }
}

/**
 * A non-empty, well-formed name: one with a lone surrogate would reach Redis as U+FFFD, the
 * same name as another.
 */
function requireName(name: unknown): asserts name is string {
  requireId(name, "a registered name");
}

/**
 * A lone surrogate escaped in JSON text (`\ud800`, after an even run of backslashes): Redis'
 * Lua JSON decoder refuses it, and a registration it cannot decode would fail every script
 * that reads the names (lookups, listings, the heartbeat that forgets a dead node's names).
 */
const ESCAPED_LONE_SURROGATE = /(?:^|[^\\])(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}/;

/** The JSON text of a registration's metadata, which the scripts decode. */
function registrationMeta(meta: JsonObject): string {
  const text = json(meta, "registration meta");
  // Paired surrogates stay characters in JSON.stringify's output; only lone ones are escaped.
  if (ESCAPED_LONE_SURROGATE.test(text)) {
    throw new InvalidArgumentError(
      "registration meta must be well-formed Unicode (a string in it has a lone surrogate)",
    );
  }
  return text;
}

/**
 * JSON text of an object, or InvalidArgumentError: as for the store's values, metadata JSON
 * cannot carry unchanged (`NaN`, a `Date`, a cycle, ...) or nested deeper than
 * `MAX_STORED_JSON_DEPTH` is refused (the scripts decode registrations with Redis' Lua JSON
 * decoder, which takes at most 1000 levels). @internal
 */
export function json(value: JsonObject, what: string): string {
  return encodeJsonObject(value, what);
}

function parseRegistration(
  name: string,
  value: string | undefined,
): ClusterRegistration | undefined {
  if (typeof value !== "string") return undefined;
  try {
    const record = JSON.parse(value) as { t?: number; n?: string; l?: string; m?: JsonObject };
    if (typeof record.n !== "string") return undefined;
    return {
      name,
      nodeId: record.n,
      localId: typeof record.l === "string" ? record.l : name,
      meta: record.m ?? {},
      registeredAt: Number(record.t ?? 0),
    };
  } catch {
    return undefined;
  }
}

/**
 * The JSON text of a message to a node, as `JSON.stringify` makes it, or `InvalidArgumentError`:
 * refused here, typed, rather than a `TypeError` from `JSON.stringify` (a cycle, a `BigInt`)
 * or, for `null` or an array, a message every receiver drops although the send reported it
 * delivered. @internal
 */
export function nodeMessageJson(message: unknown, what: string): string {
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    throw new InvalidArgumentError(`${what} must be a JSON object, got ${show(message)}`);
  }
  try {
    return JSON.stringify(message);
  } catch (error) {
    throw new InvalidArgumentError(`${what} must be JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
