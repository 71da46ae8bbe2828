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

/** Pairing requests, paired devices and device tokens over a `Store`. */
export class DevicePairing {
  readonly #store: Store;
  readonly #now: () => number;
  /** The caps on pending requests. */
  readonly limits: Required<PairingRequestLimits>;
  /** {@link DevicePairing.requestPairing} calls run one at a time (each settled before the next). */
  #pairingQueue: Promise<unknown> = Promise.resolve();
  /** Per `deviceId` and role: how often its tokens were revoked or superseded, and how last. */
  readonly #tokenChanges = new Map<string, TokenChange>();

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
   * `created` says whether it is new (and so worth announcing).
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
   * so concurrent connects cannot together overshoot a cap.
   *
   * @throws GatewayError `UNAVAILABLE` (`PAIRING_REQUESTS_FULL`, retryable) when the pending
   *   requests fill a cap; nothing is changed then.
   */
  requestPairing(
    fields: Omit<PairingRequest, "requestId" | "ts">,
    options: { enforceLimits?: boolean } = {},
  ): Promise<{ request: PairingRequest; created: boolean }> {
    const run = this.#pairingQueue.then(() => this.#requestPairing(fields, options));
    this.#pairingQueue = run.catch(() => undefined);
    return run;
  }

  async #requestPairing(
    fields: Omit<PairingRequest, "requestId" | "ts">,
    options: { enforceLimits?: boolean },
  ): Promise<{ request: PairingRequest; created: boolean }> {
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
   * @throws GatewayError `INVALID_REQUEST` (`PAIRING_REQUEST_NOT_FOUND`) for an unknown,
   *   answered, superseded or expired request; `FORBIDDEN` (`MISSING_SCOPE`) when the approver
   *   lacks a requested scope. Nothing is changed then.
   */
  async approve(
    requestId: string,
    options: { approverScopes?: Iterable<string> } = {},
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
   * Rejects (drops) a pending request.
   *
   * @throws GatewayError `INVALID_REQUEST` (`PAIRING_REQUEST_NOT_FOUND`) for an unknown request,
   *   or one another operator answered first.
   */
  async reject(requestId: string): Promise<PairingRequest> {
    const request = await this.request(requestId);
    if (request === undefined) throw requestNotFound(requestId);
    if (!(await this.#store.kv.delete(`${REQUEST_PREFIX}${requestId}`))) {
      throw requestNotFound(requestId);
    }
    return request;
  }

  /** Unpairs a device (its tokens go with it). */
  async remove(deviceId: string): Promise<boolean> {
    return this.#store.devices.delete(deviceId);
  }

  async update(device: PairedDevice): Promise<void> {
    await this.#store.devices.put(device);
  }

  /**
   * Issues a new token for a device and role, revoking the role's earlier tokens: a device
   * holds at most one live token per role.
   */
  async issueToken(
    deviceId: string,
    role: string,
    scopes: readonly string[],
  ): Promise<{ token: string; issuedAtMs: number }> {
    await this.#revokeTokens(deviceId, role, "rotated");
    const token = newToken();
    const issuedAtMs = this.#now();
    const record: StoredDeviceToken = {
      tokenHash: hashToken(token),
      deviceId,
      role,
      scopes: [...scopes],
      createdAtMs: issuedAtMs,
    };
    await this.#store.devices.putToken(record);
    return { token, issuedAtMs };
  }

  /** The stored token a bearer token stands for, if it is live. */
  async lookupToken(token: string): Promise<StoredDeviceToken | undefined> {
    if (token.length === 0 || token.length > 512) return undefined;
    return (await this.#store.devices.getToken(hashToken(token))) as StoredDeviceToken | undefined;
  }

  /** Revokes every token of a device for one role. Returns how many. */
  revokeTokens(deviceId: string, role: string): Promise<number> {
    return this.#revokeTokens(deviceId, role, "revoked");
  }

  async #revokeTokens(
    deviceId: string,
    role: string,
    change: TokenChange["change"],
  ): Promise<number> {
    let count = 0;
    for (const token of (await this.#store.devices.listTokens(deviceId)) as StoredDeviceToken[]) {
      if (token.role !== role) continue;
      if (await this.#store.devices.deleteToken(token.tokenHash)) {
        count++;
        // Counted as soon as the token is gone: a check that saw the old count before its
        // lookup, and sees a new one now, knows its token may be dead.
        const key = tokenChangeKey(deviceId, role);
        this.#tokenChanges.set(key, {
          generation: (this.#tokenChanges.get(key)?.generation ?? 0) + 1,
          change,
        });
      }
    }
    return count;
  }

  /**
   * How many tokens of `deviceId` for `role` this instance has revoked or superseded so far.
   * Read before a token lookup and compared afterwards, it tells whether the token found live
   * may have died since (see {@link DevicePairing.tokenChangeSince}).
   */
  tokenGeneration(deviceId: string, role: string): number {
    return this.#tokenChanges.get(tokenChangeKey(deviceId, role))?.generation ?? 0;
  }

  /**
   * How the tokens of `deviceId` for `role` last changed (`"rotated"` or `"revoked"`) when
   * that happened after {@link DevicePairing.tokenGeneration} returned `generation`;
   * `undefined` when they are unchanged since.
   */
  tokenChangeSince(
    deviceId: string,
    role: string,
    generation: number,
  ): TokenChange["change"] | undefined {
    const last = this.#tokenChanges.get(tokenChangeKey(deviceId, role));
    return last === undefined || last.generation === generation ? undefined : last.change;
  }
}

/** The last revocation of a device's tokens for a role: superseded by a new token, or revoked. */
interface TokenChange {
  generation: number;
  change: "rotated" | "revoked";
}

function tokenChangeKey(deviceId: string, role: string): string {
  return `${deviceId}\u0000${role}`;
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
