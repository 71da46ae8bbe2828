/**
 * Devices in one hash (`deviceId -> JSON`). Each token is its own hash (`{ d: deviceId,
 * j: JSON }`) that Redis expires at `expiresAt`, plus a set of token hashes per device so a
 * device's tokens can be listed and deleted with it.
 */
import type { DeviceRecord, DeviceStore, DeviceTokenRecord } from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import type { RedisConnection } from "./connection.js";
import { decodeJsonObject, encodeJsonObject } from "./json.js";
import type { KeySpace } from "./keys.js";
import {
  DEVICE_DELETE,
  DEVICE_DELETE_TOKEN,
  DEVICE_LIST_TOKENS,
  DEVICE_PUT_TOKEN,
} from "./scripts.js";
import { requireId, requireNumber } from "./validate.js";

export class RedisDeviceStore implements DeviceStore {
  readonly #conn: RedisConnection;
  readonly #keys: KeySpace;

  constructor(conn: RedisConnection, keys: KeySpace) {
    this.#conn = conn;
    this.#keys = keys;
  }

  async get(deviceId: string): Promise<DeviceRecord | undefined> {
    const field = requireId(deviceId, "device id");
    const key = this.#keys.devices;
    const json = await this.#conn.send<string | null>("hget", [key, field]);
    return json === null ? undefined : decodeJsonObject<DeviceRecord>(json, key);
  }

  async put(device: DeviceRecord): Promise<void> {
    if (typeof device !== "object" || device === null) {
      throw new InvalidArgumentError("device must be an object");
    }
    const id = requireId(device.deviceId, "device id");
    const json = encodeJsonObject(device, "device");
    const key = this.#keys.devices;
    await this.#conn.send("hset", [key, id, json]);
  }

  async delete(deviceId: string): Promise<boolean> {
    const id = requireId(deviceId, "device id");
    const n = await this.#conn.script<number>(
      DEVICE_DELETE,
      [this.#keys.devices, this.#keys.deviceTokens(id)],
      [id, this.#keys.deviceToken("")],
    );
    return n === 1;
  }

  async list(): Promise<DeviceRecord[]> {
    const key = this.#keys.devices;
    const all = await this.#conn.send<string[]>("hvals", [key]);
    return all
      .map((json) => decodeJsonObject<DeviceRecord>(json, key))
      .sort((a, b) => compare(a.deviceId, b.deviceId));
  }

  async putToken(token: DeviceTokenRecord): Promise<void> {
    if (typeof token !== "object" || token === null) {
      throw new InvalidArgumentError("device token must be an object");
    }
    const hash = requireId(token.tokenHash, "tokenHash");
    const deviceId = requireId(token.deviceId, "device token deviceId");
    const expiresAt =
      token.expiresAt === undefined
        ? ""
        : expireAtArg(requireNumber(token.expiresAt, "device token expiresAt"));
    const json = encodeJsonObject(token, "device token");
    await this.#conn.script(
      DEVICE_PUT_TOKEN,
      [this.#keys.deviceToken(hash), this.#keys.deviceTokens(deviceId)],
      [hash, deviceId, json, expiresAt, this.#keys.deviceTokens("")],
    );
  }

  async getToken(tokenHash: string): Promise<DeviceTokenRecord | undefined> {
    const key = this.#keys.deviceToken(requireId(tokenHash, "tokenHash"));
    const json = await this.#conn.send<string | null>("hget", [key, "j"]);
    if (json === null) return undefined;
    const token = decodeJsonObject<DeviceTokenRecord>(json, key);
    return isLive(token, Date.now()) ? token : undefined;
  }

  async deleteToken(tokenHash: string): Promise<boolean> {
    const hash = requireId(tokenHash, "tokenHash");
    const n = await this.#conn.script<number>(
      DEVICE_DELETE_TOKEN,
      [this.#keys.deviceToken(hash)],
      [hash, this.#keys.deviceTokens("")],
    );
    return n === 1;
  }

  async listTokens(deviceId: string): Promise<DeviceTokenRecord[]> {
    const key = this.#keys.deviceTokens(requireId(deviceId, "device id"));
    const all = await this.#conn.script<string[]>(
      DEVICE_LIST_TOKENS,
      [key],
      [this.#keys.deviceToken("")],
    );
    const now = Date.now();
    return all
      .map((json) => decodeJsonObject<DeviceTokenRecord>(json, key))
      .filter((token) => isLive(token, now))
      .sort((a, b) => compare(a.tokenHash, b.tokenHash));
  }
}

/**
 * The `PEXPIREAT` argument for a token's `expiresAt`: a whole number of ms Redis accepts.
 * Beyond `Number.MAX_SAFE_INTEGER` (the year 287,396) the token gets no Redis expiry ('':
 * `isLive` still compares its `expiresAt`), and any time before the epoch is 0 (already
 * expired), so a far-future or far-past time never makes the script fail after it wrote.
 */
function expireAtArg(expiresAt: number): string {
  if (expiresAt > Number.MAX_SAFE_INTEGER) return "";
  return String(Math.max(0, Math.ceil(expiresAt)));
}

/** Redis expires the key at `expiresAt`; this also hides a token in its last millisecond. */
function isLive(token: DeviceTokenRecord, now: number): boolean {
  return token.expiresAt === undefined || token.expiresAt > now;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
