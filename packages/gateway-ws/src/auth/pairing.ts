/**
 * Device pairing and device tokens, kept in the store: paired devices in `store.devices`,
 * pending pairing requests in `store.kv` (they expire), device tokens in
 * `store.devices` by their SHA-256 hash only.
 */
import { randomUUID } from "node:crypto";
import {
  type DeviceRecord,
  InvalidArgumentError,
  type JsonObject,
  type Store,
} from "@beamclaw/core";
import { ErrorCodes, type GatewayRole, Scopes } from "../protocol/constants.js";
import { GatewayError, missingScope } from "../protocol/errors.js";
import { addressKey } from "./client-address.js";
import { hashToken, newToken } from "./shared-secret.js";

const REQUEST_PREFIX = "gateway:pairing:";
const REQUEST_TTL_MS = 10 * 60_000;
/** The {@link StandingLog} of each device, under its id. */
const STANDING_PREFIX = "gateway:device-standing:";
/** The changes a {@link StandingLog} keeps (the latest). */
const STANDING_LOG_LENGTH = 64;
/**
 * How long a {@link StandingLog} is kept after its last change: 30 days. A connection older
 * than that whose device changed since is judged by the device's record and token instead.
 */
const STANDING_LOG_TTL_MS = 30 * 24 * 60 * 60_000;
/** Compare-and-set tries of one append to a {@link StandingLog} before giving up. */
const STANDING_APPEND_TRIES = 50;

/**
 * The changes to a device's standing that close its open connections (`device.pair.remove`,
 * `node.pair.remove`, `device.token.rotate`, `device.token.revoke`), numbered in the order they
 * were made through any gateway on the store. A connection takes the number reached as its
 * handshake begins ({@link DevicePairing.standingMark}); the first later change that reaches
 * it is the one that closes it, with that change's reason, as on a single gateway.
 */
interface StandingLog extends JsonObject {
  /** The number of the last change (0: none yet). */
  seq: number;
  /** The latest changes, oldest first. */
  changes: StandingEntry[];
}

/** One change of a {@link StandingLog}. */
interface StandingEntry extends JsonObject {
  seq: number;
  /** The role changed (`"*"` for `device unpaired`). */
  role: string;
  /** Its close reason: `device unpaired`, `<role> unpaired`, `device token rotated` / `revoked`. */
  reason: string;
}

/** A pairing request waiting for an operator (the `device.pair.requested` payload). */
export interface PairingRequest {
  requestId: string;
  deviceId: string;
  publicKey: string;
  displayName?: string;
  platform?: string;
  deviceFamily?: string;
  clientId?: string;
  clientMode?: string;
  role: string;
  roles: string[];
  scopes: string[];
  /** Node commands the device declared (node role). */
  commands?: string[];
  remoteIp?: string;
  /** Approved automatically (loopback) rather than by an operator. */
  silent?: boolean;
  /** The device is paired already and asks for more (role or scopes). */
  isRepair?: boolean;
  reason: "not-paired" | "role-upgrade" | "scope-upgrade";
  ts: number;
}

/** A paired device as stored. */
export interface PairedDevice extends DeviceRecord {
  deviceId: string;
  publicKey: string;
  roles: string[];
  scopes: string[];
  displayName?: string;
  label?: string;
  platform?: string;
  deviceFamily?: string;
  clientId?: string;
  clientMode?: string;
  commands?: string[];
  createdAtMs: number;
  approvedAtMs: number;
  lastSeenAtMs?: number;
}

/** A device token as stored (by hash). */
export interface StoredDeviceToken extends JsonObject {
  tokenHash: string;
  deviceId: string;
  role: string;
  scopes: string[];
  createdAtMs: number;
  /** Issued by `device.token.rotate` (not by a handshake). */
  rotated?: boolean;
}

/** What the scopes `granted` allow: admin allows all, write allows read. */
export function scopeAllows(granted: Iterable<string>, needed: string): boolean {
  const set = granted instanceof Set ? (granted as Set<string>) : new Set(granted);
  if (set.has(needed) || set.has(Scopes.ADMIN)) return true;
  return needed === Scopes.READ && set.has(Scopes.WRITE);
}

/** Whether every scope in `requested` is allowed by `granted`. */
export function scopesWithin(requested: readonly string[], granted: readonly string[]): boolean {
  return requested.every((s) => scopeAllows(granted, s));
}

/**
 * Caps on pending pairing requests (`gateway.auth.pairingRequests`), so that whoever holds the
 * shared secret cannot fill the store with requests (each waits 10 minutes). Expired requests
 * do not count; approving or rejecting one frees its slot; a device asking again for the same
 * role reuses (or replaces) its own request rather than taking another slot. Loopback requests
 * approved automatically are never refused.
 */
export interface PairingRequestLimits {
  /** Pending requests in all. Default 100. */
  maxPending?: number;
  /** Pending requests from one client address (`remoteIp`). Default 10. */
  maxPendingPerAddress?: number;
}

/** The defaults of {@link PairingRequestLimits}. */
export const DEFAULT_PAIRING_REQUEST_LIMITS = {
  maxPending: 100,
  maxPendingPerAddress: 10,
} as const satisfies Required<PairingRequestLimits>;

/**
 * {@link PairingRequestLimits} with the defaults filled in.
 *
 * @throws InvalidArgumentError for a cap that is not a positive integer.
 */
export function pairingRequestLimits(
  limits: PairingRequestLimits | undefined,
): Required<PairingRequestLimits> {
  const pick = (name: keyof PairingRequestLimits): number => {
    const value = limits?.[name] ?? DEFAULT_PAIRING_REQUEST_LIMITS[name];
    if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
      throw new InvalidArgumentError(
        `gateway auth pairingRequests.${name} must be a positive integer, got ${String(value)}`,
      );
    }
    return value;
  };
  return { maxPending: pick("maxPending"), maxPendingPerAddress: pick("maxPendingPerAddress") };
}

/**
 * `UNAVAILABLE` / `PAIRING_REQUESTS_FULL`: too many pairing requests wait for an operator, in
 * all (`limit: "total"`) or from the caller's address (`limit: "address"`). Retryable: a slot
 * frees when a request is approved, rejected or expires.
 */
function pairingRequestsFull(limit: "total" | "address", max: number): GatewayError {
  return new GatewayError(
    ErrorCodes.UNAVAILABLE,
    limit === "total"
      ? `too many pending pairing requests (${max}); retry after an operator answered some`
      : `too many pending pairing requests from this address (${max}); retry later`,
    {
      details: {
        code: "PAIRING_REQUESTS_FULL",
        limit,
        max,
        recommendedNextStep: "wait_then_retry",
      },
      retryable: true,
    },
  );
}

/**
 * What {@link DevicePairing.requestPairing} did: recorded (or kept) a request, or found the
 * device paired already for what it asks.
 */
export type PairingOutcome =
  | { request: PairingRequest; created: boolean; paired?: undefined }
  | { paired: PairedDevice; request?: undefined; created?: undefined };

/**
 * Whether a paired device already holds what a request asks: the same key, the role and (for
 * an operator) the scopes. A node's commands are not asked: it may run the approved ones.
 */
export function pairingCovers(
  device: PairedDevice,
  asked: Pick<PairingRequest, "publicKey" | "role" | "scopes">,
): boolean {
  return (
    device.publicKey === asked.publicKey &&
    device.roles.includes(asked.role) &&
    (asked.role === "node" || scopesWithin(asked.scopes, device.scopes))
  );
}

/** Pairing requests, paired devices and device tokens over a `Store`. */
export class DevicePairing {
  readonly #store: Store;
  readonly #now: () => number;
  /** The caps on pending requests. */
  readonly limits: Required<PairingRequestLimits>;
  /**
   * The tail of each queue of {@link DevicePairing.#inTurn}: `""` for
   * {@link DevicePairing.requestPairing} as a whole, `device:<id>` for the changes of one
   * device's pairing (its requests, their answers, its record). Dropped once drained.
   */
  readonly #turns = new Map<string, Promise<void>>();
  /** Ticks at each change recorded in {@link DevicePairing.#changes}. */
  #clock = 0;
  /**
   * The last change of each kind to a device's standing, per {@link changeKey}: its tokens
   * for a role revoked or superseded, the device (or one role of it) unpaired.
   */
  readonly #changes = new Map<string, PairingChange>();

  /** @throws InvalidArgumentError for a cap in `limits` that is not a positive integer. */
  constructor(store: Store, now: () => number = Date.now, limits?: PairingRequestLimits) {
    this.#store = store;
    this.#now = now;
    this.limits = pairingRequestLimits(limits);
  }

  async device(deviceId: string): Promise<PairedDevice | undefined> {
    return (await this.#store.devices.get(deviceId)) as PairedDevice | undefined;
  }

  async pendingRequests(): Promise<PairingRequest[]> {
    const keys = await this.#store.kv.keys(REQUEST_PREFIX);
    const out: PairingRequest[] = [];
    for (const key of keys) {
      const request = await this.#store.kv.get(key);
      if (request !== undefined) out.push(request as unknown as PairingRequest);
    }
    return out.sort((a, b) => a.ts - b.ts);
  }

  async request(requestId: string): Promise<PairingRequest | undefined> {
    const request = await this.#store.kv.get(`${REQUEST_PREFIX}${requestId}`);
    return request as unknown as PairingRequest | undefined;
  }

  async pairedDevices(): Promise<PairedDevice[]> {
    return (await this.#store.devices.list()) as PairedDevice[];
  }

  /**
   * Records a pairing request (or returns the pending one of the same device and role).
   * `created` says whether it is new (and so worth announcing). When the device is paired
   * already for what it asks (an approval ran since the caller read it), nothing is recorded
   * and the device is returned as `paired`.
   *
   * A pending request never grows under its `requestId`: operators approve what was announced.
   * When the device asks again for no more than the pending request holds, that request is kept
   * (its scopes and commands unchanged, its other details refreshed). When it asks for more
   * scopes or commands, the pending request is dropped and a new one, with a new `requestId`,
   * is made (`created: true`), so that approving the old id cannot grant the wider access.
   *
   * A new request must fit within {@link DevicePairing.limits} (unless
   * `options.enforceLimits` is `false`, for a request approved at once).
   *
   * Calls are serialized within this instance (each reads the pending requests, then writes),
   * so concurrent connects cannot together overshoot a cap; and with the answers
   * ({@link DevicePairing.approve}, {@link DevicePairing.reject}) and removal of the same
   * device, so a request repeated while it is answered is neither written back after the
   * answer nor lost under it.
   *
   * @throws GatewayError `UNAVAILABLE` (`PAIRING_REQUESTS_FULL`, retryable) when the pending
   *   requests fill a cap; nothing is changed then.
   */
  requestPairing(
    fields: Omit<PairingRequest, "requestId" | "ts">,
    options: { enforceLimits?: boolean } = {},
  ): Promise<PairingOutcome> {
    return this.#inTurn("", () =>
      this.#inTurn(deviceTurn(fields.deviceId), () => this.#requestPairing(fields, options)),
    );
  }

  /**
   * Runs `task` once every task queued before it under `key` has settled. Queues are only
   * ever entered in the order `""`, then `device:<id>`, so they cannot wait on each other.
   */
  #inTurn<T>(key: string, task: () => Promise<T>): Promise<T> {
    const run = (this.#turns.get(key) ?? Promise.resolve()).then(task);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#turns.set(key, tail);
    void tail.then(() => {
      if (this.#turns.get(key) === tail) this.#turns.delete(key);
    });
    return run;
  }

  async #requestPairing(
    fields: Omit<PairingRequest, "requestId" | "ts">,
    options: { enforceLimits?: boolean },
  ): Promise<PairingOutcome> {
    // An approval that ran while the caller was on its way here may have paired it already.
    const paired = await this.device(fields.deviceId);
    if (paired !== undefined && pairingCovers(paired, fields)) return { paired };
    const pendingList = await this.pendingRequests();
    const same = pendingList.find(
      (pending) => pending.deviceId === fields.deviceId && pending.role === fields.role,
    );
    if (same !== undefined) {
      const pendingCommands = new Set(same.commands ?? []);
      const widens =
        !scopesWithin(fields.scopes, same.scopes) ||
        (fields.commands ?? []).some((c) => !pendingCommands.has(c));
      if (!widens) {
        const merged: PairingRequest = {
          ...same,
          ...fields,
          scopes: same.scopes,
          ...(same.commands === undefined ? {} : { commands: same.commands }),
          requestId: same.requestId,
          ts: same.ts,
        };
        await this.#store.kv.set(`${REQUEST_PREFIX}${same.requestId}`, json(merged), {
          ttlMs: REQUEST_TTL_MS,
        });
        return { request: merged, created: false };
      }
    }
    // A replaced request frees its own slot; a refused one leaves the pending one as it was.
    if (options.enforceLimits !== false) {
      this.#checkRoom(
        pendingList.filter((pending) => pending !== same),
        fields.remoteIp,
      );
    }
    if (same !== undefined) await this.#store.kv.delete(`${REQUEST_PREFIX}${same.requestId}`);
    const request: PairingRequest = { ...fields, requestId: randomUUID(), ts: this.#now() };
    await this.#store.kv.set(`${REQUEST_PREFIX}${request.requestId}`, json(request), {
      ttlMs: REQUEST_TTL_MS,
    });
    return { request, created: true };
  }

  /** Refuses a new request when the pending ones fill either cap. */
  #checkRoom(pending: readonly PairingRequest[], remoteIp: string | undefined): void {
    const { maxPending, maxPendingPerAddress } = this.limits;
    if (pending.length >= maxPending) throw pairingRequestsFull("total", maxPending);
    if (remoteIp === undefined) return;
    const address = addressKey(remoteIp);
    const fromAddress = pending.filter(
      (r) => r.remoteIp !== undefined && addressKey(r.remoteIp) === address,
    ).length;
    if (fromAddress >= maxPendingPerAddress) {
      throw pairingRequestsFull("address", maxPendingPerAddress);
    }
  }

  /**
   * Approves a pending request: the device is paired with the union of old and new grants.
   *
   * With `options.approverScopes` (the scopes of the operator approving), an operator
   * request asking for a scope the approver does not hold itself is refused: whoever may
   * approve pairings may not hand out more than they have.
   *
   * Runs in turn with {@link DevicePairing.requestPairing} and the other changes of the
   * device's pairing.
   *
   * @throws GatewayError `INVALID_REQUEST` (`PAIRING_REQUEST_NOT_FOUND`) for an unknown,
   *   answered, superseded or expired request; `FORBIDDEN` (`MISSING_SCOPE`) when the approver
   *   lacks a requested scope. Nothing is changed then.
   */
  async approve(
    requestId: string,
    options: { approverScopes?: Iterable<string> } = {},
  ): Promise<{ request: PairingRequest; device: PairedDevice }> {
    const asked = await this.request(requestId);
    if (asked === undefined) throw requestNotFound(requestId);
    return this.#inTurn(deviceTurn(asked.deviceId), () => this.#approve(requestId, options));
  }

  async #approve(
    requestId: string,
    options: { approverScopes?: Iterable<string> },
  ): Promise<{ request: PairingRequest; device: PairedDevice }> {
    const request = await this.request(requestId);
    if (request === undefined) throw requestNotFound(requestId);
    if (options.approverScopes !== undefined) {
      const held = new Set(options.approverScopes);
      const lacking = request.scopes.find((s) => !scopeAllows(held, s));
      if (lacking !== undefined) throw missingScope(lacking);
    }
    const now = this.#now();
    const existing = await this.device(request.deviceId);
    const keepOld = existing !== undefined && existing.publicKey === request.publicKey;
    const device: PairedDevice = {
      ...(keepOld ? existing : {}),
      deviceId: request.deviceId,
      publicKey: request.publicKey,
      roles: [...new Set([...(keepOld ? existing.roles : []), ...request.roles])],
      scopes: [...new Set([...(keepOld ? existing.scopes : []), ...request.scopes])],
      createdAtMs: keepOld ? existing.createdAtMs : now,
      approvedAtMs: now,
      ...optional({
        displayName: request.displayName,
        platform: request.platform,
        deviceFamily: request.deviceFamily,
        clientId: request.clientId,
        clientMode: request.clientMode,
        commands:
          request.commands === undefined
            ? undefined
            : [
                ...new Set([
                  ...((keepOld ? existing.commands : undefined) ?? []),
                  ...request.commands,
                ]),
              ],
      }),
    };
    // Whoever deletes the request answers it: of two concurrent answers (two approvals, or an
    // approval and a rejection), only one succeeds.
    const key = `${REQUEST_PREFIX}${requestId}`;
    if (!(await this.#store.kv.delete(key))) throw requestNotFound(requestId);
    try {
      await this.#store.devices.put(device);
    } catch (error) {
      // The store refused the device: the request waits again rather than being lost.
      const ttlMs = Math.max(1, request.ts + REQUEST_TTL_MS - now);
      await this.#store.kv.set(key, json(request), { ttlMs }).catch(() => undefined);
      throw error;
    }
    return { request, device };
  }

  /**
   * Rejects (drops) a pending request. Runs in turn with {@link DevicePairing.requestPairing}
   * and the other changes of the device's pairing.
   *
   * @throws GatewayError `INVALID_REQUEST` (`PAIRING_REQUEST_NOT_FOUND`) for an unknown request,
   *   or one another operator answered first.
   */
  async reject(requestId: string): Promise<PairingRequest> {
    const asked = await this.request(requestId);
    if (asked === undefined) throw requestNotFound(requestId);
    return this.#inTurn(deviceTurn(asked.deviceId), async () => {
      const request = await this.request(requestId);
      if (request === undefined) throw requestNotFound(requestId);
      if (!(await this.#store.kv.delete(`${REQUEST_PREFIX}${requestId}`))) {
        throw requestNotFound(requestId);
      }
      return request;
    });
  }

  /**
   * Unpairs a device (its tokens go with it). A handshake of the device that began before
   * is refused as its connection registers (see {@link DevicePairing.changeSince}).
   */
  remove(deviceId: string): Promise<boolean> {
    return this.#inTurn(deviceTurn(deviceId), async () => {
      const removed = await this.#store.devices.delete(deviceId);
      if (removed) this.#recordChange(changeKey("unpaired", deviceId, "*"), "device unpaired");
      return removed;
    });
  }

  /**
   * Takes `role` from a paired device (the device is removed with its last role). A
   * handshake of the device for that role that began before is refused as its connection
   * registers. Returns the device as left, or `undefined` when it is gone.
   */
  removeRole(deviceId: string, role: string): Promise<PairedDevice | undefined> {
    return this.#inTurn(deviceTurn(deviceId), async () => {
      const device = await this.device(deviceId);
      if (device === undefined) return undefined;
      device.roles = device.roles.filter((r) => r !== role);
      if (device.roles.length === 0) await this.#store.devices.delete(deviceId);
      else await this.#store.devices.put(device);
      this.#recordChange(changeKey("unpaired", deviceId, role), `${role} unpaired`);
      return device.roles.length === 0 ? undefined : device;
    });
  }

  /**
   * Changes the stored record of a paired device: `change` gets the record as stored now and
   * returns it changed, or `undefined` to leave it. In turn with the other changes of the
   * device's pairing, so a device unpaired meanwhile is not written back: resolves with
   * `undefined` then (and when `change` declined).
   */
  updateDevice(
    deviceId: string,
    change: (device: PairedDevice) => PairedDevice | undefined,
  ): Promise<PairedDevice | undefined> {
    return this.#inTurn(deviceTurn(deviceId), async () => {
      const stored = await this.device(deviceId);
      const changed = stored === undefined ? undefined : change(stored);
      if (changed !== undefined) await this.#store.devices.put(changed);
      return changed;
    });
  }

  /**
   * Issues a new token for a device and role, revoking the role's earlier tokens: a device
   * holds at most one live token per role. `rotation`: issued by `device.token.rotate`, whose
   * sweep closes the connections of the earlier tokens (recorded with the token).
   */
  async issueToken(
    deviceId: string,
    role: string,
    scopes: readonly string[],
    options: { rotation?: boolean } = {},
  ): Promise<{ token: string; issuedAtMs: number }> {
    await this.#revokeTokens(deviceId, role, "device token rotated");
    const token = newToken();
    const issuedAtMs = this.#now();
    const record: StoredDeviceToken = {
      tokenHash: hashToken(token),
      deviceId,
      role,
      scopes: [...scopes],
      createdAtMs: issuedAtMs,
      ...(options.rotation === true ? { rotated: true } : {}),
    };
    await this.#store.devices.putToken(record);
    return { token, issuedAtMs };
  }

  /**
   * Deletes one token (by its secret) without recording a change: for a token just issued to
   * a connection that is refused before it got it.
   */
  async dropToken(token: string): Promise<void> {
    await this.#store.devices.deleteToken(hashToken(token));
  }

  /** The stored token a bearer token stands for, if it is live. */
  async lookupToken(token: string): Promise<StoredDeviceToken | undefined> {
    if (token.length === 0 || token.length > 512) return undefined;
    return (await this.#store.devices.getToken(hashToken(token))) as StoredDeviceToken | undefined;
  }

  /** Revokes every token of a device for one role. Returns how many. */
  revokeTokens(deviceId: string, role: string): Promise<number> {
    return this.#revokeTokens(deviceId, role, "device token revoked");
  }

  async #revokeTokens(deviceId: string, role: string, reason: string): Promise<number> {
    let count = 0;
    for (const token of (await this.#store.devices.listTokens(deviceId)) as StoredDeviceToken[]) {
      if (token.role !== role) continue;
      if (await this.#store.devices.deleteToken(token.tokenHash)) {
        count++;
        // Recorded as soon as the token is gone: a check that marked before its lookup, and
        // finds this change after its mark, knows its token may be dead.
        this.#recordChange(changeKey("token", deviceId, role), reason);
      }
    }
    return count;
  }

  #recordChange(key: string, reason: string): void {
    this.#changes.set(key, { at: ++this.#clock, reason });
  }

  /**
   * A mark of this instance's changes so far, for {@link DevicePairing.changeSince}. Take it
   * before the handshake reads the device's token or record.
   */
  mark(): number {
    return this.#clock;
  }

  /**
   * Whether a connection of `deviceId` for `role`, whose handshake took `mark`, lost its
   * standing through this instance since: the device (or that role of it) was unpaired, or,
   * when it came in with a device token (`byToken`), that role's tokens were revoked or
   * superseded. Returns the close reason the sweep of that change closed the device's other
   * connections with (`"device unpaired"`, `"node unpaired"`, `"device token rotated"`,
   * `"device token revoked"`), or `undefined` when nothing changed. Synchronous, so that it can
   * run in the same turn as the connection registers: a change after that finds it in the sweep.
   */
  changeSince(deviceId: string, role: string, byToken: boolean, mark: number): string | undefined {
    const keys = [changeKey("unpaired", deviceId, "*"), changeKey("unpaired", deviceId, role)];
    if (byToken) keys.push(changeKey("token", deviceId, role));
    let last: PairingChange | undefined;
    for (const key of keys) {
      const change = this.#changes.get(key);
      if (change !== undefined && change.at > mark && (last === undefined || change.at > last.at))
        last = change;
    }
    return last?.reason;
  }

  /**
   * The number of the last change recorded in the device's standing log
   * ({@link DevicePairing.recordStandingChange}), for {@link DevicePairing.standingChange}.
   * Take it before the handshake reads the device's token or record.
   */
  async standingMark(deviceId: string): Promise<number> {
    return (await this.#standingLog(deviceId))?.seq ?? 0;
  }

  /**
   * Records, in the store, a change to a device's standing about to be made (before it is, so
   * that a re-check finding the change in the store finds it recorded): its unpairing
   * (`role` `"*"`, `device unpaired`), the unpairing of one role (`<role> unpaired`), or the
   * rotation or revocation of a role's tokens (`device token rotated` / `revoked`). Appended
   * with compare-and-set, so changes made at once through several gateways all count.
   *
   * @throws GatewayError `UNAVAILABLE` when the log kept changing under every try.
   */
  async recordStandingChange(deviceId: string, role: string, reason: string): Promise<void> {
    const key = `${STANDING_PREFIX}${deviceId}`;
    for (let attempt = 0; attempt < STANDING_APPEND_TRIES; attempt++) {
      const stored = await this.#store.kv.get(key);
      // A value that is no log (written by something else) is replaced by a new log.
      const current = isStandingLog(stored) ? stored : undefined;
      const seq = (current?.seq ?? 0) + 1;
      const changes = [...(current?.changes ?? []), { seq, role, reason }];
      const next: StandingLog = { seq, changes: changes.slice(-STANDING_LOG_LENGTH) };
      const written =
        stored === undefined
          ? await this.#store.kv.set(key, next, { ifAbsent: true, ttlMs: STANDING_LOG_TTL_MS })
          : await this.#store.kv.set(key, next, { ifValue: stored, ttlMs: STANDING_LOG_TTL_MS });
      if (written) return;
    }
    throw new GatewayError(
      ErrorCodes.UNAVAILABLE,
      `device ${deviceId.slice(0, 12)}: its change could not be recorded (concurrent changes); retry`,
      { retryable: true, details: { code: "DEVICE_CHANGE_CONFLICT", deviceId } },
    );
  }

  /**
   * Whether a connection of `deviceId` for `role` (by a device token: `byToken`), whose
   * handshake began at `mark` ({@link DevicePairing.standingMark}), lost its standing since,
   * by the device's standing log: `covered` when the log still holds every change since
   * `mark`, and then `reason`, the close reason of the first of them that reaches the
   * connection (as a single gateway's close sweep of it would have), or `undefined`.
   */
  async standingChange(
    deviceId: string,
    role: string,
    byToken: boolean,
    mark: number,
  ): Promise<{ covered: boolean; reason?: string }> {
    const log = await this.#standingLog(deviceId);
    if (log === undefined) return { covered: mark === 0 };
    // A log behind the mark ran out (`STANDING_LOG_TTL_MS`) and was started again: it cannot
    // tell what happened in between.
    if (log.seq < mark) return { covered: false };
    if (log.seq === mark) return { covered: true };
    const oldest = log.changes[0]?.seq ?? log.seq + 1;
    if (oldest > mark + 1) return { covered: false };
    for (const change of log.changes) {
      if (change.seq <= mark) continue;
      if (change.reason === "device unpaired") return { covered: true, reason: change.reason };
      if (change.role !== role) continue;
      if (change.reason === `${role} unpaired` || byToken) {
        return { covered: true, reason: change.reason };
      }
    }
    return { covered: true };
  }

  async #standingLog(deviceId: string): Promise<StandingLog | undefined> {
    const log = await this.#store.kv.get(`${STANDING_PREFIX}${deviceId}`);
    return isStandingLog(log) ? log : undefined;
  }

  /**
   * {@link DevicePairing.changeSince} as the store tells it, for changes made elsewhere (by
   * another gateway on the same store): whether the device is still paired for `role` with
   * `publicKey` and, when it came in with the device token hashed `tokenHash`, whether that
   * token is still live. Returns the close reason of the change, or `undefined`.
   *
   * `sweptOnly` (for a connection already open): a token superseded only by one a handshake
   * issued is no change, as a single gateway sweeps only on `device.token.rotate` / `revoke`.
   */
  async storedChange(
    deviceId: string,
    role: string,
    publicKey: string,
    tokenHash: string | undefined,
    options: { sweptOnly?: boolean } = {},
  ): Promise<string | undefined> {
    const device = await this.device(deviceId);
    if (device === undefined || device.publicKey !== publicKey) return "device unpaired";
    if (!device.roles.includes(role)) return `${role} unpaired`;
    if (tokenHash === undefined) return undefined;
    const token = (await this.#store.devices.getToken(tokenHash)) as StoredDeviceToken | undefined;
    if (token !== undefined && token.deviceId === deviceId && token.role === role) return undefined;
    // Another live token of the role superseded this one; none means it was revoked.
    const others = ((await this.#store.devices.listTokens(deviceId)) as StoredDeviceToken[]).filter(
      (t) => t.role === role,
    );
    if (others.length === 0) return "device token revoked";
    if (options.sweptOnly === true && !others.some((t) => t.rotated === true)) return undefined;
    return "device token rotated";
  }
}

function isStandingLog(value: unknown): value is StandingLog {
  if (typeof value !== "object" || value === null) return false;
  const log = value as Partial<Record<keyof StandingLog, unknown>>;
  return (
    typeof log.seq === "number" &&
    Array.isArray(log.changes) &&
    log.changes.every(
      (c: unknown) =>
        typeof c === "object" &&
        c !== null &&
        typeof (c as StandingEntry).seq === "number" &&
        typeof (c as StandingEntry).role === "string" &&
        typeof (c as StandingEntry).reason === "string",
    )
  );
}

/** The last change of one kind to a device's standing: when (a tick) and its close reason. */
interface PairingChange {
  at: number;
  reason: string;
}

function changeKey(kind: "token" | "unpaired", deviceId: string, role: string): string {
  return `${kind}\u0000${deviceId}\u0000${role}`;
}

/** The {@link DevicePairing.#inTurn} queue of one device's pairing. */
function deviceTurn(deviceId: string): string {
  return `device:${deviceId}`;
}

function requestNotFound(requestId: string): GatewayError {
  return new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown pairing request ${requestId}`, {
    details: { code: "PAIRING_REQUEST_NOT_FOUND", requestId },
  });
}

/** Builds a pairing request's fields for a connecting device. */
export function pairingFields(input: {
  deviceId: string;
  publicKey: string;
  role: GatewayRole;
  scopes: string[];
  client: {
    displayName?: string;
    platform?: string;
    deviceFamily?: string;
    id: string;
    mode: string;
  };
  commands?: string[];
  remoteIp?: string;
  existing?: PairedDevice;
}): Omit<PairingRequest, "requestId" | "ts"> {
  const { existing } = input;
  const reason: PairingRequest["reason"] =
    existing === undefined
      ? "not-paired"
      : existing.roles.includes(input.role)
        ? "scope-upgrade"
        : "role-upgrade";
  return {
    deviceId: input.deviceId,
    publicKey: input.publicKey,
    role: input.role,
    roles: [input.role],
    scopes: input.scopes,
    reason,
    ...(existing === undefined ? {} : { isRepair: true }),
    ...optional({
      displayName: input.client.displayName,
      platform: input.client.platform,
      deviceFamily: input.client.deviceFamily,
      clientId: input.client.id,
      clientMode: input.client.mode,
      commands: input.commands,
      remoteIp: input.remoteIp,
    }),
  };
}

/** Drops `undefined` fields: what is stored is exactly what is read back. */
function json(value: object): JsonObject {
  return JSON.parse(JSON.stringify(value)) as JsonObject;
}

function optional<T extends Record<string, unknown>>(fields: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}
