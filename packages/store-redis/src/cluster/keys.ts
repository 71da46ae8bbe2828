/**
 * The Redis keys and pub/sub channels of the cluster backplane, in one place (the README's
 * "Cluster" section lists the same names). Every name is `prefix + "cluster:" + kind`; the
 * kinds are chosen so that none is a prefix of another where a caller's part follows, and
 * `cluster:` is not a prefix of any of the store's own kinds (nor they of it).
 */
export class ClusterKeys {
  readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** Hash: nodeId -> `<joinedAt>:<member JSON>`. */
  get members(): string {
    return `${this.prefix}cluster:members`;
  }
  /** Sorted set: nodeId, score = last heartbeat (the Redis server's clock, ms). */
  get heartbeats(): string {
    return `${this.prefix}cluster:heartbeats`;
  }
  /** Channel: membership notices `{ type, nodeId }`. */
  get membershipChannel(): string {
    return `${this.prefix}cluster:membership`;
  }
  /** Channel: messages to one node. */
  nodeChannel(nodeId: string): string {
    return `${this.prefix}cluster:node:${nodeId}`;
  }
  /** Channel: one pub/sub topic. */
  topicChannel(topic: string): string {
    return `${this.prefix}cluster:topic:${topic}`;
  }
  /** Hash: registered name -> `{"t":registeredAt,"n":nodeId,"l":localId,"m":meta}`. */
  get names(): string {
    return `${this.prefix}cluster:names`;
  }
  /** Set: the names one node holds (so they go when the node does). */
  namesOf(nodeId: string): string {
    return `${this.prefix}cluster:names-of:${nodeId}`;
  }
  /** Hash: one node's presence entries, key -> `{"t":updatedAt,"m":meta}`; expires unless heartbeats renew it. */
  presence(nodeId: string): string {
    return `${this.prefix}cluster:presence:${nodeId}`;
  }
  /** Channel: presence changes `{ type, nodeId, key, entry }`. */
  get presenceChannel(): string {
    return `${this.prefix}cluster:presence-events`;
  }
  /** Hash: nodeId -> placements onto the node that its heartbeats have not reported started. */
  get placements(): string {
    return `${this.prefix}cluster:placements`;
  }
  /** Hash: nodeId -> the node's last reported total of sessions started on a placement. */
  get placementsReported(): string {
    return `${this.prefix}cluster:placements-reported`;
  }
  /** The topic of a topic channel, or undefined for another channel. */
  topicOf(channel: string): string | undefined {
    const head = `${this.prefix}cluster:topic:`;
    return channel.startsWith(head) ? channel.slice(head.length) : undefined;
  }
}
