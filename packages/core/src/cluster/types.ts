/**
 * The cluster contract: what a backplane (Redis in `@beamclaw/store-redis`) provides so that
 * several BeamClaw processes act as one. Core owns these interfaces; `ClusterNode` builds
 * session ownership, routing, failover and drain on top of them and of the shared `Store`.
 */
import type { JsonObject, JsonValue } from "../providers/types.js";
import type { PubSub, PubSubHandler } from "../runtime/pubsub.js";

/** One node of the cluster, as every node sees it. */
export interface ClusterMember {
  /** Unique per process incarnation (a restarted process joins with a new id). */
  readonly nodeId: string;
  /** Free-form metadata given at join (host, version, region, ...). */
  readonly meta: JsonObject;
  /** Sessions active on the node at its last heartbeat; placement picks the smallest. */
  readonly sessions: number;
  /** A draining node takes no new sessions and hands its own over before it leaves. */
  readonly draining: boolean;
  /** Epoch ms (the backplane's clock) when the node joined. */
  readonly joinedAt: number;
  /** Epoch ms (the backplane's clock) of its last heartbeat. */
  readonly heartbeatAt: number;
}

/**
 * A membership change:
 * - `join`: a node appeared (also a node that comes back after it was declared down);
 * - `update`: a node's `draining` flag or metadata changed;
 * - `leave`: a node left on purpose (`leave()`);
 * - `down`: a node stopped heartbeating for `downAfterMs` and was removed.
 */
export interface MembershipEvent {
  type: "join" | "update" | "leave" | "down";
  member: ClusterMember;
}

/** What a node reports about itself with every heartbeat. */
export interface MemberStatus {
  /** Sessions active on this node. */
  sessions: number;
  draining: boolean;
  /**
   * Sessions started here on a placement ({@link ClusterBackplane.place}), in total since
   * the node joined. A backplane that places counts a placement onto a node until a
   * heartbeat of that node reports the session started (it is then in `sessions`).
   */
  placedStarted?: number;
}

/** A message between nodes: any JSON object. */
export type NodeMessage = { [key: string]: JsonValue };

/** Receives a message sent to this node; `from` is the sender's node id. */
export type NodeMessageHandler = (message: NodeMessage, from: string) => void;

/**
 * The cluster-wide `PubSub` (Phoenix.PubSub style): `subscribe` is local, `publish` reaches
 * the subscribers of the topic on every node. Local subscribers get the message
 * synchronously, before `publish` resolves; remote ones get a JSON copy, in publish order per
 * publishing node, at most once (a message published while the backplane is disconnected is
 * not delivered remotely).
 *
 * @example
 * ```ts
 * const off = backplane.pubsub.subscribe<RunEvent>("events:global", (e) => dashboard.push(e));
 * await backplane.pubsub.whenSubscribed("events:global"); // other nodes' events arrive now
 * await backplane.pubsub.publish("events:global", { type: "hello" }); // every node's subscribers
 * off();
 * ```
 */
export interface ClusterPubSub extends PubSub {
  /**
   * Resolves once messages published on `topic` by other nodes reach this node (its remote
   * subscription is active). Subscribe first, then await this, then trigger the publisher.
   */
  whenSubscribed(topic: string): Promise<void>;
  /**
   * Subscribes to `topic` for this node's own publishes only, without a cluster-wide
   * subscription (nothing goes over the network), until `widen()` makes it cluster-wide.
   * For a subscriber that expects the topic to be published here and rarely elsewhere.
   */
  subscribeLocal<T = unknown>(topic: string, handler: PubSubHandler<T>): LocalSubscription;
}

/** A subscription made with {@link ClusterPubSub.subscribeLocal}. */
export interface LocalSubscription {
  /** Makes it cluster-wide (idempotent). */
  widen(): void;
  unsubscribe(): void;
}

/** Options of {@link ClusterBackplane.join}. */
export interface JoinOptions {
  /** Free-form metadata the other nodes see (JSON). */
  meta?: JsonObject;
  /** Called before every heartbeat: what this node reports. */
  status: () => MemberStatus;
}

/**
 * How nodes find each other and talk: membership with heartbeats and failure detection,
 * node-to-node messages, and a cluster-wide {@link ClusterPubSub}. Session leases are not
 * here: they are the shared `Store`'s `locks` (fencing tokens included).
 *
 * `join` opens everything (connections, the heartbeat timer) and `leave` closes all of it;
 * nothing starts before `join`.
 *
 * @example
 * ```ts
 * const backplane = createRedisBackplane({ url: "redis://127.0.0.1:6379", prefix: "myapp:" });
 * backplane.onMembership((e) => console.log(e.type, e.member.nodeId));
 * backplane.onMessage((message, from) => console.log(from, message));
 * await backplane.join({ status: () => ({ sessions: 0, draining: false }) });
 * await backplane.send(backplane.members()[0]!.nodeId, { hello: "world" });
 * await backplane.leave();
 * ```
 */
export interface ClusterBackplane {
  /** This node's id. */
  readonly nodeId: string;
  /** Heartbeat period, ms. */
  readonly heartbeatIntervalMs: number;
  /** A node whose last heartbeat is older than this is declared `down`, ms. */
  readonly downAfterMs: number;
  /** The cluster-wide pub/sub; usable (locally) before `join`, cluster-wide after. */
  readonly pubsub: ClusterPubSub;
  /** True between a successful `join` and `leave`. */
  readonly joined: boolean;
  /** Connects, announces this node, and starts heartbeating and watching the others. */
  join(options: JoinOptions): Promise<void>;
  /** Heartbeats now (status and membership refreshed at once, e.g. after starting to drain). */
  heartbeat(): Promise<void>;
  /** Announces the departure, stops the timer and closes every connection. Idempotent. */
  leave(): Promise<void>;
  /** Live members as of the last heartbeat or notification, this node included, by id. */
  members(): ClusterMember[];
  /** Subscribes to membership changes; returns the unsubscribe function. */
  onMembership(handler: (event: MembershipEvent) => void): () => void;
  /**
   * Sends `message` to node `nodeId` (at most once). Resolves `true` when the node was
   * connected to receive it, `false` when it is not (gone), without waiting for it to be
   * handled.
   */
  send(nodeId: string, message: NodeMessage): Promise<boolean>;
  /** Subscribes to messages sent to this node; returns the unsubscribe function. */
  onMessage(handler: NodeMessageHandler): () => void;
  /**
   * Optional: picks where a new session goes, atomically across the cluster. Among
   * `candidates` (node ids, in order of preference for ties) it takes the one with the
   * smallest load — the sessions its last heartbeat reported plus the placements made onto
   * it that its heartbeats have not reported started yet — and counts the placement in the
   * same step. So a burst of new sessions placed from any nodes splits evenly however late
   * the heartbeats are. Resolves `undefined` when no candidate is a live member.
   */
  place?(key: string, candidates: readonly string[]): Promise<string | undefined>;
  /** The cluster-wide registry of unique names, when the backplane provides one. */
  readonly registry?: ClusterRegistry;
  /** Cluster-wide presence, when the backplane provides it. */
  readonly presence?: ClusterPresence;
}

// ------------------------------------------------------------------ registry

/** A name registered cluster-wide: the node whose process holds it. */
export interface ClusterRegistration {
  name: string;
  /** The node the name lives on. */
  nodeId: string;
  /** The process on that node (its own id for it: an actor's name, a connection id, ...). */
  localId: string;
  /** Free-form metadata given at registration (JSON). */
  meta: JsonObject;
  /** Epoch ms (the backplane's clock) of the registration. */
  registeredAt: number;
}

/** Receives a message sent to a name registered on this node; `from` is the sender's node. */
export type NamedMessageHandler = (message: NodeMessage, from: string) => void;

/** Options of {@link ClusterRegistry.register}. */
export interface ClusterRegisterOptions {
  /** How the process is known on this node. Default the name. */
  localId?: string;
  /** Metadata every node sees in `lookup` and `list`. */
  meta?: JsonObject;
  /**
   * The process the name belongs to: the name is unregistered when it exits (as the local
   * `Registry` does).
   */
  process?: { monitor(onExit: () => void): () => void };
}

/**
 * Unique names across the cluster (Erlang's `:global`, Elixir's `Horde.Registry`): a name
 * registered on one node is found from every node, and a message sent to it reaches the
 * process on whichever node holds it (`via`-style addressing over the backplane). A name
 * lives as long as its node: when the node leaves, or dies (stops heartbeating for the
 * backplane's `downAfterMs`), its names disappear and may be registered elsewhere.
 *
 * @example
 * ```ts
 * await node.registry.register("billing-worker", (message, from) => worker.send(message));
 * // on any node:
 * const where = await node.registry.lookup("billing-worker"); // { nodeId, localId, ... }
 * await node.registry.send("billing-worker", { invoice: 42 }); // true when delivered
 * ```
 */
export interface ClusterRegistry {
  /**
   * Registers `name` on this node with the handler of its messages. Registering a name this
   * node already holds replaces the handler and metadata. Rejects with
   * `AlreadyRegisteredError` when a live node holds it, `InvalidArgumentError` for an empty
   * name, and `ClusterError` (`CLUSTER_NOT_RUNNING`) before `join` or after `leave`.
   */
  register(
    name: string,
    handler: NamedMessageHandler,
    options?: ClusterRegisterOptions,
  ): Promise<ClusterRegistration>;
  /** Unregisters a name this node holds; false when it does not hold it. */
  unregister(name: string): Promise<boolean>;
  /** Where `name` lives now, if a live node holds it. */
  lookup(name: string): Promise<ClusterRegistration | undefined>;
  /** Every live registration (whose name starts with `prefix`), sorted by name. */
  list(prefix?: string): Promise<ClusterRegistration[]>;
  /**
   * Sends `message` to the process registered as `name`, wherever it is (at most once).
   * Resolves `true` when its node took it, `false` when no live node holds the name.
   */
  send(name: string, message: NodeMessage): Promise<boolean>;
  /** Names this node holds. */
  localNames(): string[];
}

// ------------------------------------------------------------------ presence

/** One presence entry: something (a client, a device, a user) present on a node. */
export interface ClusterPresenceEntry {
  /** What is present (a client id, a device id, a user id). Unique per node. */
  key: string;
  /** The node it is present on. */
  nodeId: string;
  /** Free-form metadata (JSON): what it is, since when, ... */
  meta: JsonObject;
  /** Epoch ms of its last `track`. */
  updatedAt: number;
}

/**
 * A presence change anywhere in the cluster: `join` (tracked), `update` (tracked again with
 * new metadata), `leave` (untracked, or its node left or died).
 */
export interface ClusterPresenceEvent {
  type: "join" | "update" | "leave";
  entry: ClusterPresenceEntry;
}

/**
 * Cluster-wide presence (Phoenix.Presence style): each node tracks what is present on it
 * (its connected clients, devices, users), and every node can list the union. Entries of a
 * node that leaves or dies disappear with it, within the backplane's `downAfterMs`.
 *
 * @example
 * ```ts
 * await node.presence.track(`client:${connectionId}`, { user: "ada", since: Date.now() });
 * node.presence.onChange((e) => console.log(e.type, e.entry.key, "on", e.entry.nodeId));
 * const everyone = await node.presence.list(); // the entries of every live node
 * await node.presence.untrack(`client:${connectionId}`);
 * ```
 */
export interface ClusterPresence {
  /** Tracks `key` as present on this node (again: updates its metadata). */
  track(key: string, meta?: JsonObject): Promise<void>;
  /** Stops tracking `key` on this node; false when it was not tracked. */
  untrack(key: string): Promise<boolean>;
  /** The entries of every live node, sorted by key, then node id. */
  list(): Promise<ClusterPresenceEntry[]>;
  /**
   * Subscribes to presence changes on every node (this one included); returns the
   * unsubscribe function. Leaves of a dead node's entries come when it is declared `down`.
   */
  onChange(handler: (event: ClusterPresenceEvent) => void): () => void;
}
