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
  /** The topic of a topic channel, or undefined for another channel. */
  topicOf(channel: string): string | undefined {
    const head = `${this.prefix}cluster:topic:`;
    return channel.startsWith(head) ? channel.slice(head.length) : undefined;
  }
}
