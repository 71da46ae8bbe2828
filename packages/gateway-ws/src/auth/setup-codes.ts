/**
 * Setup codes (`device.pair.setupCode`): a short-lived, single-use bootstrap token, wrapped
 * with the gateway's URL in a code a phone or node can paste or scan. A device presents the
 * token as `connect.auth.bootstrapToken` (with its device identity) instead of the shared
 * secret; its pairing request still needs an operator's approval, and its access is bounded
 * by the code's profile. The first successful connect completes the setup and uses the token
 * up. Kept in `store.kv`: the token by its SHA-256 hash only.
 */
import { randomUUID } from "node:crypto";
import type { JsonObject, KeyValueStore } from "@beamclaw/core";
import { Scopes } from "../protocol/constants.js";
import { hashToken, newToken } from "./shared-secret.js";

const SETUP_PREFIX = "gateway:setup:";
const TOKEN_PREFIX = "gateway:setup-token:";
/** How long a setup code can be used. */
export const SETUP_CODE_TTL_MS = 10 * 60_000;
/** How long a setup's outcome stays readable (`device.pair.setupStatus`) after it expired. */
const STATUS_RETENTION_MS = 24 * 60 * 60_000;

/** What a device paired through a setup code may become. */
export type SetupAccess = "full" | "limited" | "node";

/** Operator scopes a `limited` setup may grant. */
export const LIMITED_SETUP_SCOPES: readonly string[] = [
  Scopes.READ,
  Scopes.WRITE,
  Scopes.APPROVALS,
];

/** The device that completed a setup (the protocol's `DevicePairSetupCompletedEvent`). */
export interface SetupCompletion {
  setupId: string;
  deviceId: string;
  deviceName?: string;
  access: SetupAccess;
  ts: number;
}

/** A setup as stored. */
export interface SetupRecord {
  setupId: string;
  access: SetupAccess;
  createdAtMs: number;
  expiresAtMs: number;
  completion?: SetupCompletion;
}

/** Setup codes over `store.kv`. */
export class SetupCodes {
  readonly #kv: KeyValueStore;
  readonly #now: () => number;

  constructor(kv: KeyValueStore, now: () => number) {
    this.#kv = kv;
    this.#now = now;
  }

  /** Creates a setup; the token is returned once and stored only as its hash. */
  async create(access: SetupAccess): Promise<{ record: SetupRecord; token: string }> {
    const now = this.#now();
    const record: SetupRecord = {
      setupId: randomUUID(),
      access,
      createdAtMs: now,
      expiresAtMs: now + SETUP_CODE_TTL_MS,
    };
    const token = newToken();
    await this.#kv.set(SETUP_PREFIX + record.setupId, record as unknown as JsonObject, {
      ttlMs: SETUP_CODE_TTL_MS + STATUS_RETENTION_MS,
    });
    await this.#kv.set(
      TOKEN_PREFIX + hashToken(token),
      { setupId: record.setupId },
      { ttlMs: SETUP_CODE_TTL_MS },
    );
    return { record, token };
  }

  async get(setupId: string): Promise<SetupRecord | undefined> {
    return (await this.#kv.get(SETUP_PREFIX + setupId)) as unknown as SetupRecord | undefined;
  }

  /** The setup a bootstrap token opens, if the token is live and the setup not completed. */
  async lookup(token: string): Promise<SetupRecord | undefined> {
    if (token.length === 0 || token.length > 512) return undefined;
    const ref = (await this.#kv.get(TOKEN_PREFIX + hashToken(token))) as
      | { setupId?: unknown }
      | undefined;
    if (typeof ref?.setupId !== "string") return undefined;
    const record = await this.get(ref.setupId);
    if (record === undefined || record.completion !== undefined) return undefined;
    if (record.expiresAtMs <= this.#now()) return undefined;
    return record;
  }

  /** Records the device that completed a setup and uses its token up. */
  async complete(
    token: string,
    device: { deviceId: string; deviceName?: string },
  ): Promise<SetupCompletion | undefined> {
    const record = await this.lookup(token);
    if (record === undefined) return undefined;
    const completion: SetupCompletion = {
      setupId: record.setupId,
      deviceId: device.deviceId,
      ...(device.deviceName === undefined || device.deviceName.length === 0
        ? {}
        : { deviceName: device.deviceName }),
      access: record.access,
      ts: this.#now(),
    };
    // Whoever deletes the token completes the setup: a second device racing on it does not.
    if (!(await this.#kv.delete(TOKEN_PREFIX + hashToken(token)))) return undefined;
    await this.#kv.set(
      SETUP_PREFIX + record.setupId,
      { ...record, completion } as unknown as JsonObject,
      { ttlMs: STATUS_RETENTION_MS },
    );
    return completion;
  }
}

/** Whether a connect's role and scopes fit a setup's access. */
export function setupAllows(access: SetupAccess, role: string, scopes: readonly string[]): boolean {
  if (access === "full") return true;
  if (role === "node") return true;
  if (access === "node") return false;
  return scopes.every((s) => LIMITED_SETUP_SCOPES.includes(s));
}

/** The code a device pastes or scans: base64url JSON of the gateway URL and the token. */
export function encodeSetupCode(url: string, bootstrapToken: string): string {
  return Buffer.from(JSON.stringify({ url, bootstrapToken }), "utf8").toString("base64url");
}

/** Reads a setup code back (for clients and tests); `undefined` when it is not one. */
export function decodeSetupCode(code: string): { url: string; bootstrapToken: string } | undefined {
  try {
    const value = JSON.parse(Buffer.from(code, "base64url").toString("utf8")) as {
      url?: unknown;
      bootstrapToken?: unknown;
    };
    if (typeof value.url !== "string" || typeof value.bootstrapToken !== "string") return undefined;
    return { url: value.url, bootstrapToken: value.bootstrapToken };
  } catch {
    return undefined;
  }
}
