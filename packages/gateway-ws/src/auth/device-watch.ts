/**
 * Closes this gateway's open device connections when another gateway on the same store
 * unpairs their device or rotates or revokes their token. A gateway that makes such a change
 * closes its own connections at once (`device.pair.remove`, `node.pair.remove`,
 * `device.token.rotate`, `device.token.revoke`) and announces it on the runtime's pub/sub
 * (cluster-wide when the runtime runs on a cluster's pub/sub, e.g. a `ClusterNode`'s); every
 * other gateway hearing it closes the same connections of its own, as a single gateway would,
 * once the store confirms they lost their standing. A periodic re-check of the open device
 * connections against the store stands in for a notice that never came (no shared pub/sub, or
 * one lost: pub/sub is at most once).
 *
 * Each such change is first recorded in the device's standing log in the store
 * (`DevicePairing.recordStandingChange`), and each device connection keeps the log's number
 * as its handshake began: the first change recorded since that reaches the connection is the
 * one a single gateway would have closed it with, whatever happened after (a newer token
 * issued by a shared-secret handshake, the device paired again), so both paths close the same
 * connections with the same reason.
 */
import { randomUUID } from "node:crypto";
import type { PubSub } from "@beamclaw/core";
import type { GatewayConnection } from "../connection.js";
import type { GatewayLog } from "../logs.js";
import { CloseCodes } from "../protocol/constants.js";
import type { DevicePairing } from "./pairing.js";

/** The pub/sub topic of device changes. @internal */
export const DEVICE_CHANGES_TOPIC = "gateway:device-changes";

/** The close reason of each change to a device's standing (the same on every gateway). */
export type DeviceChangeReason =
  | "device unpaired"
  | "node unpaired"
  | "device token rotated"
  | "device token revoked";

const REASONS: ReadonlySet<string> = new Set<DeviceChangeReason>([
  "device unpaired",
  "node unpaired",
  "device token rotated",
  "device token revoked",
]);

/** A change to a device's standing: its unpairing, or the rotation or revocation of a role's token. */
export interface DeviceChange {
  deviceId: string;
  /** The role changed (`"node"` for `node unpaired`; any for `device unpaired`). */
  role: string;
  reason: DeviceChangeReason;
}

/** A {@link DeviceChange} as announced: the hub that made it, so that it skips its own. */
interface DeviceChangeNotice extends DeviceChange {
  type: "device-changed";
  origin: string;
}

/** What a device connection authenticated with, to check against the store later. */
export interface DeviceStanding {
  publicKey: string;
  /** The hash of the device token it came in with (absent: it came with the shared secret). */
  tokenHash?: string;
  /**
   * The device's standing-log number as its handshake began (`DevicePairing.standingMark`):
   * the changes recorded after it are the ones that reach the connection.
   */
  mark?: number;
}

/**
 * The open connections a change closes: every connection of an unpaired device, the node
 * connections of a device unpaired as a node, and the connections that came in with a token
 * of the role rotated or revoked (the shared secret still works: those stay open).
 */
export function changedConnections(
  connections: Iterable<GatewayConnection>,
  change: DeviceChange,
): GatewayConnection[] {
  return [...connections].filter((c) => {
    if (c.deviceId !== change.deviceId) return false;
    if (change.reason === "device unpaired") return true;
    if (change.reason === "node unpaired") return c.role === "node";
    return c.role === change.role && c.authMethod === "device-token";
  });
}

/** See the module comment. */
export class DeviceWatch {
  readonly #origin = randomUUID();
  readonly #pubsub: PubSub;
  readonly #pairing: DevicePairing;
  readonly #connections: ReadonlySet<GatewayConnection>;
  readonly #log: GatewayLog;
  readonly #everyMs: number;
  #timer: NodeJS.Timeout | undefined;
  #off: (() => void) | undefined;
  #sweeping = false;
  #stopped = false;
  /** Re-checks under way, awaited by `stop()` (they read the store). */
  readonly #work = new Set<Promise<void>>();

  constructor(options: {
    pubsub: PubSub;
    pairing: DevicePairing;
    connections: ReadonlySet<GatewayConnection>;
    log: GatewayLog;
    /** Period of the re-check of every open device connection; 0: none. */
    everyMs: number;
  }) {
    this.#pubsub = options.pubsub;
    this.#pairing = options.pairing;
    this.#connections = options.connections;
    this.#log = options.log;
    this.#everyMs = options.everyMs;
  }

  /** Listens for other gateways' changes and starts the periodic re-check. */
  start(): void {
    this.#stopped = false;
    this.#off = this.#pubsub.subscribe(DEVICE_CHANGES_TOPIC, (message) => this.#onNotice(message));
    if (this.#everyMs > 0) {
      this.#timer = setInterval(() => this.#track(this.#sweep()), this.#everyMs);
      this.#timer.unref();
    }
  }

  /** Stops listening and re-checking; resolves once the re-checks under way are done. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#off?.();
    this.#off = undefined;
    clearInterval(this.#timer);
    this.#timer = undefined;
    await Promise.all([...this.#work]);
  }

  /**
   * Tells the other gateways of `change`, made (and its connections closed) here. A notice
   * that cannot be sent is logged: the others' periodic re-check finds the change.
   */
  announce(change: DeviceChange): void {
    const notice: DeviceChangeNotice = { type: "device-changed", origin: this.#origin, ...change };
    this.#pubsub.publish(DEVICE_CHANGES_TOPIC, notice).catch((error: unknown) => {
      this.#log.warn(
        `device change not announced (${change.reason} ${change.deviceId.slice(0, 12)}): ${error}`,
      );
    });
  }

  #onNotice(message: unknown): void {
    if (this.#stopped || !isNotice(message) || message.origin === this.#origin) return;
    const change: DeviceChange = {
      deviceId: message.deviceId,
      role: message.role,
      reason: message.reason,
    };
    this.#track(this.#closeChanged(change));
  }

  /**
   * Closes the connections `change` closes, as the gateway that made it closed its own: those
   * the store confirms lost their standing (a connection made since with the device's new
   * token, or after it paired again, stays).
   */
  async #closeChanged(change: DeviceChange): Promise<void> {
    for (const connection of changedConnections(this.#connections, change)) {
      const reason = await this.#lost(connection, false);
      if (reason !== undefined)
        connection.close(CloseCodes.POLICY_VIOLATION, reason.logged ?? change.reason);
    }
  }

  /** One pass over the open device connections (one at a time: a slow store skips ticks). */
  async #sweep(): Promise<void> {
    if (this.#sweeping) return;
    this.#sweeping = true;
    try {
      for (const connection of [...this.#connections]) {
        if (this.#stopped) return;
        const lost = await this.#lost(connection, true);
        if (lost !== undefined) connection.close(CloseCodes.POLICY_VIOLATION, lost.reason);
      }
    } finally {
      this.#sweeping = false;
    }
  }

  /**
   * Why `connection` lost its standing, as the store tells it, or `undefined`: the first change
   * recorded in the device's standing log since its handshake began that reaches it (`logged`,
   * the reason a single gateway closed it with). When the log records none, whether its device
   * is still paired for its role with its key (a change made without the log, e.g. by an
   * older gateway). When the log no longer holds every change since (or the connection has no
   * mark), whether its device, role and token are still in the store; `sweptOnly` then: a
   * token superseded only by a token a handshake issued is no reason (a single gateway leaves
   * those connections open too).
   */
  async #lost(
    connection: GatewayConnection,
    sweptOnly: boolean,
  ): Promise<{ reason: string; logged?: string } | undefined> {
    const standing = connection.deviceStanding;
    const deviceId = connection.deviceId;
    if (deviceId === undefined || standing === undefined) return undefined;
    let tokenHash = standing.tokenHash;
    if (standing.mark !== undefined) {
      const byToken = tokenHash !== undefined;
      const logged = await this.#pairing.standingChange(
        deviceId,
        connection.role,
        byToken,
        standing.mark,
      );
      if (logged.reason !== undefined) return { reason: logged.reason, logged: logged.reason };
      // No change recorded: its token can only have been superseded by a handshake's.
      if (logged.covered) tokenHash = undefined;
    }
    const reason = await this.#pairing.storedChange(
      deviceId,
      connection.role,
      standing.publicKey,
      tokenHash,
      { sweptOnly },
    );
    return reason === undefined ? undefined : { reason };
  }

  #track(work: Promise<void>): void {
    const tracked = work.catch((error: unknown) => {
      this.#log.warn(`device connections not re-checked: ${error}`);
    });
    this.#work.add(tracked);
    void tracked.finally(() => this.#work.delete(tracked));
  }
}

function isNotice(message: unknown): message is DeviceChangeNotice {
  if (typeof message !== "object" || message === null) return false;
  const m = message as Partial<Record<keyof DeviceChangeNotice, unknown>>;
  return (
    m.type === "device-changed" &&
    typeof m.origin === "string" &&
    typeof m.deviceId === "string" &&
    typeof m.role === "string" &&
    typeof m.reason === "string" &&
    REASONS.has(m.reason)
  );
}
