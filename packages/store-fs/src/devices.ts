/**
 * Paired devices and their tokens, one JSON file each, replaced atomically:
 *
 * - `devices/<deviceId>.json`: the device record;
 * - `device-tokens/<tokenHash>.json`: a token record (only the hash of the secret is ever
 *   stored).
 *
 * All are read on open. Deleting a device deletes its tokens first and the device last, so a
 * crash in between leaves a device with fewer tokens, never a token of a deleted device.
 * Expired tokens are never returned; their files (and their entries in memory) are removed on
 * open and by the next `putToken`, so a store that stays open for months while it issues
 * short-lived tokens holds only the tokens that were live at the last issue, not every token
 * it ever issued.
 */
import path from "node:path";
import type { DeviceRecord, DeviceStore, DeviceTokenRecord } from "@beamclaw/core";
import { InvalidArgumentError, StoreError } from "@beamclaw/core";
import type { StoreContext } from "./context.js";
import { encodeFileName } from "./file-names.js";
import { readDirIfExists, readFileIfExists } from "./files.js";
import {
  describeValue,
  isPlainObject,
  requireFiniteNumber,
  requireKey,
  toJsonObjectText,
} from "./json.js";
import { KeyedMutex } from "./mutex.js";

/** Directory of device files. */
export const DEVICES_DIR = "devices";
/** Directory of device-token files. */
export const TOKENS_DIR = "device-tokens";

interface Token {
  json: string;
  deviceId: string;
  expiresAt: number | undefined;
}

async function readRecords(
  context: StoreContext,
  dir: string,
  check: (value: Record<string, unknown>) => string | undefined,
): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>();
  const abs = path.join(context.dir, dir);
  for (const name of (await readDirIfExists(abs)).sort()) {
    if (!name.endsWith(".json")) continue;
    const file = path.join(abs, name);
    const content = await readFileIfExists(file);
    if (content === undefined) continue;
    let value: unknown;
    try {
      value = JSON.parse(content.toString("utf8"));
    } catch (error) {
      throw new StoreError(
        "STORE_CORRUPT",
        `${context.relative(file)} is not valid JSON: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const id = isPlainObject(value) ? check(value) : undefined;
    if (id === undefined || !isPlainObject(value)) {
      throw new StoreError("STORE_CORRUPT", `${context.relative(file)} is not a valid record`);
    }
    if (`${encodeFileName(id)}.json` !== name) {
      throw new StoreError(
        "STORE_CORRUPT",
        `${context.relative(file)} holds ${JSON.stringify(id)}, whose file is ${encodeFileName(id)}.json (was it renamed by hand?)`,
      );
    }
    out.set(id, value);
  }
  return out;
}

/** The devices of one open store. */
export class Devices implements DeviceStore {
  readonly #context: StoreContext;
  readonly #devices = new Map<string, string>();
  readonly #tokens = new Map<string, Token>();
  /** One queue for all device and token writes: they are rare, and a delete spans both. */
  readonly #mutex = new KeyedMutex();

  private constructor(context: StoreContext) {
    this.#context = context;
  }

  /** Reads every device and token file; removes expired tokens. */
  static async load(context: StoreContext): Promise<Devices> {
    const devices = new Devices(context);
    const records = await readRecords(context, DEVICES_DIR, (v) =>
      typeof v.deviceId === "string" ? v.deviceId : undefined,
    );
    for (const [id, record] of records) devices.#devices.set(id, JSON.stringify(record));
    const tokens = await readRecords(context, TOKENS_DIR, (v) =>
      typeof v.tokenHash === "string" && typeof v.deviceId === "string" ? v.tokenHash : undefined,
    );
    const now = context.now();
    for (const [hash, record] of tokens) {
      const expiresAt = typeof record.expiresAt === "number" ? record.expiresAt : undefined;
      if (expiresAt !== undefined && expiresAt <= now) {
        await context.files.removeFile(devices.#tokenFile(hash));
        continue;
      }
      devices.#tokens.set(hash, {
        json: JSON.stringify(record),
        deviceId: record.deviceId as string,
        expiresAt,
      });
    }
    return devices;
  }

  async get(deviceId: string): Promise<DeviceRecord | undefined> {
    requireKey(deviceId, "deviceId");
    return this.#serial(async () => {
      const json = this.#devices.get(deviceId);
      return json === undefined ? undefined : (JSON.parse(json) as DeviceRecord);
    });
  }

  async put(device: DeviceRecord): Promise<void> {
    if (!isPlainObject(device)) {
      throw new InvalidArgumentError(`device must be a plain object, got ${describeValue(device)}`);
    }
    const id = requireKey(device.deviceId, "deviceId");
    const json = toJsonObjectText(device, "device");
    await this.#serial(async () => {
      await this.#context.files.writeFileAtomic(this.#deviceFile(id), `${json}\n`);
      this.#devices.set(id, json);
    });
  }

  async delete(deviceId: string): Promise<boolean> {
    requireKey(deviceId, "deviceId");
    return this.#serial(async () => {
      for (const [hash, token] of [...this.#tokens]) {
        if (token.deviceId !== deviceId) continue;
        await this.#context.files.removeFile(this.#tokenFile(hash));
        this.#tokens.delete(hash);
      }
      const existed = await this.#context.files.removeFile(this.#deviceFile(deviceId));
      this.#devices.delete(deviceId);
      return existed;
    });
  }

  async list(): Promise<DeviceRecord[]> {
    return this.#serial(async () =>
      [...this.#devices.keys()]
        .sort()
        .map((id) => JSON.parse(this.#devices.get(id)!) as DeviceRecord),
    );
  }

  async putToken(token: DeviceTokenRecord): Promise<void> {
    if (!isPlainObject(token)) {
      throw new InvalidArgumentError(
        `device token must be a plain object, got ${describeValue(token)}`,
      );
    }
    const hash = requireKey(token.tokenHash, "tokenHash");
    const deviceId = requireKey(token.deviceId, "token deviceId");
    const expiresAt =
      token.expiresAt === undefined
        ? undefined
        : requireFiniteNumber(token.expiresAt, "token expiresAt");
    const json = toJsonObjectText(token, "device token");
    await this.#serial(async () => {
      await this.#removeExpiredTokens();
      await this.#context.files.writeFileAtomic(this.#tokenFile(hash), `${json}\n`);
      this.#tokens.set(hash, { json, deviceId, expiresAt });
    });
  }

  async getToken(tokenHash: string): Promise<DeviceTokenRecord | undefined> {
    requireKey(tokenHash, "tokenHash");
    return this.#serial(async () => {
      const token = this.#tokens.get(tokenHash);
      if (token === undefined || this.#expired(token)) return undefined;
      return JSON.parse(token.json) as DeviceTokenRecord;
    });
  }

  async deleteToken(tokenHash: string): Promise<boolean> {
    requireKey(tokenHash, "tokenHash");
    return this.#serial(async () => {
      const token = this.#tokens.get(tokenHash);
      const existed = await this.#context.files.removeFile(this.#tokenFile(tokenHash));
      this.#tokens.delete(tokenHash);
      return existed && token !== undefined && !this.#expired(token);
    });
  }

  async listTokens(deviceId: string): Promise<DeviceTokenRecord[]> {
    requireKey(deviceId, "deviceId");
    return this.#serial(async () =>
      [...this.#tokens.entries()]
        .filter(([, t]) => t.deviceId === deviceId && !this.#expired(t))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([, t]) => JSON.parse(t.json) as DeviceTokenRecord),
    );
  }

  /** Waits for pending operations. */
  async close(): Promise<void> {
    await this.#mutex.idle();
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.#mutex.run("devices", fn);
  }

  /**
   * Deletes the files of the tokens expired by now and forgets them: no read returns them any
   * more, so nothing but this would ever remove them while the store stays open. Runs before a
   * token is written, so a failure here rejects `putToken` with the new token not written.
   */
  async #removeExpiredTokens(): Promise<void> {
    for (const [hash, token] of [...this.#tokens]) {
      if (!this.#expired(token)) continue;
      await this.#context.files.removeFile(this.#tokenFile(hash));
      this.#tokens.delete(hash);
    }
  }

  #expired(token: Token): boolean {
    return token.expiresAt !== undefined && token.expiresAt <= this.#context.now();
  }

  #deviceFile(id: string): string {
    return path.join(this.#context.dir, DEVICES_DIR, `${encodeFileName(id)}.json`);
  }

  #tokenFile(hash: string): string {
    return path.join(this.#context.dir, TOKENS_DIR, `${encodeFileName(hash)}.json`);
  }
}
