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
}
