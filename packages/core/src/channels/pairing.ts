/**
 * DM pairing: an unknown sender gets a short code; an operator approves it; from then on the
 * sender is on the channel's allowlist. Kept in `store.kv`, so it survives restarts and is
 * shared by every node of a cluster.
 */
import { randomBytes } from "node:crypto";
import { InvalidArgumentError, PairingCodeError } from "../errors.js";
import type { JsonObject } from "../providers/types.js";
import { iterateKvKeys } from "../store/kv-paging.js";
import type { KeyValueStore } from "../store/types.js";
import { encodeKeySegment } from "./session-routing.js";
import type { InboundPeer } from "./types.js";

/** Upper case without the look-alikes 0, O, 1 and I: 32 symbols, read aloud without doubt. */
export const PAIRING_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/** Characters in a pairing code. */
export const PAIRING_CODE_LENGTH = 8;

/** A pending pairing request. */
export interface PairingRequest extends JsonObject {
  code: string;
  channel: string;
  accountId: string;
  peerId: string;
  peerName?: string;
  /** The DM conversation, where the sender is told once approved. */
  chatId: string;
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms of the sender's latest message while the request waited (absent: none since). */
  lastSeenAt?: number;
  /** Epoch ms; after this the code is gone. */
  expiresAt: number;
}

/** A sender approved through pairing. */
export interface ApprovedPeer extends JsonObject {
  channel: string;
  accountId: string;
  peerId: string;
  peerName?: string;
  /** The DM conversation. */
  chatId: string;
  approvedAt: number;
  /** Who approved it, for the audit trail. */
  approvedBy?: string;
}

/** What {@link PairingStore.request} did. */
export interface PairingRequestResult {
  /** The sender's pending request, new or existing; absent when `capped`. */
  request: PairingRequest | undefined;
  /** True when this call created it (the code should be sent to the sender now). */
  created: boolean;
  /** True when the channel's account already has `maxPending` requests waiting. */
  capped: boolean;
}

/** Options of {@link PairingStore.approve} and {@link PairingStore.reject}. */
export interface PairingAnswerOptions {
  /** Answer the code only if its request came to this account of the channel. */
  accountId?: string;
}

/** Options of {@link PairingStore}. */
export interface PairingStoreOptions {
  kv: KeyValueStore;
  /** How long a code stays valid. Default 3 600 000 (one hour). */
  ttlMs?: number;
  /**
   * Pending requests per channel account; more are ignored until one expires or is answered.
   * Default 3.
   */
  maxPending?: number;
  now?: () => number;
}

/** Generates a pairing code: 8 characters from {@link PAIRING_CODE_ALPHABET}, uniformly. */
export function generatePairingCode(): string {
  // 256 is a multiple of 32, so `byte & 31` is uniform.
  return Array.from(randomBytes(PAIRING_CODE_LENGTH), (b) => PAIRING_CODE_ALPHABET[b & 31]).join(
    "",
  );
}

/**
 * Pending pairing requests and the senders approved through them, in a key/value store.
 *
 * @example
 * ```ts
 * const pairing = new PairingStore({ kv: store.kv });
 * const { request, created } = await pairing.request("telegram", "default", { id: "4711" });
 * if (created) await reply(`Your pairing code: ${request!.code}`);
 * // later, the operator:
 * await pairing.approve("telegram", "K7M2Q9XD", "owner");
 * await pairing.isApproved("telegram", "default", "4711"); // true
 * ```
 */
export class PairingStore {
  readonly ttlMs: number;
  readonly maxPending: number;
  readonly #kv: KeyValueStore;
  readonly #now: () => number;

  constructor(options: PairingStoreOptions) {
    this.#kv = options.kv;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.maxPending = options.maxPending ?? 3;
    this.#now = options.now ?? Date.now;
    if (!Number.isInteger(this.ttlMs) || this.ttlMs < 1) {
      throw new InvalidArgumentError(`pairing ttlMs must be a positive integer, got ${this.ttlMs}`);
    }
    if (!Number.isInteger(this.maxPending) || this.maxPending < 1) {
      throw new InvalidArgumentError(
        `pairing maxPending must be a positive integer, got ${this.maxPending}`,
      );
    }
  }

  /**
   * The sender's pending request: the existing one (its `lastSeenAt` moved to now), or a new
   * one with a fresh code unless the channel's account already has `maxPending` waiting.
   */
  async request(
    channel: string,
    accountId: string,
    peer: InboundPeer,
    chatId: string = peer.id,
  ): Promise<PairingRequestResult> {
    const peerKey = this.#peerKey(channel, accountId, peer.id);
    for (let attempt = 0; attempt < 3; attempt++) {
      const existingCode = await this.#kv.get<string>(peerKey);
      if (existingCode !== undefined) {
        const codeKey = this.#codeKey(channel, existingCode);
        const existing = await this.#kv.get<PairingRequest>(codeKey);
        if (existing !== undefined) {
          // Kept beside the request, so that this write can never bring back a request that
          // was answered in between.
          const now = this.#now();
          const ttlMs = existing.expiresAt - now;
          if (ttlMs > 0) await this.#kv.set(this.#seenKey(channel, existingCode), now, { ttlMs });
          return { request: { ...existing, lastSeenAt: now }, created: false, capped: false };
        }
        // The code was answered or expired while the peer's pointer lived on: start over.
        await this.#kv.delete(peerKey);
        continue;
      }
      const waiting = (await this.pending(channel)).filter((r) => r.accountId === accountId);
      if (waiting.length >= this.maxPending) {
        return { request: undefined, created: false, capped: true };
      }
      const now = this.#now();
      const request: PairingRequest = {
        code: generatePairingCode(),
        channel,
        accountId,
        peerId: peer.id,
        chatId,
        createdAt: now,
        expiresAt: now + this.ttlMs,
      };
      if (peer.name !== undefined) request.peerName = peer.name;
      const created = await this.#kv.set(peerKey, request.code, {
        ttlMs: this.ttlMs,
        ifAbsent: true,
      });
      if (!created) continue; // another receive for the same peer won the race
      const fresh = await this.#kv.set(this.#codeKey(channel, request.code), request, {
        ttlMs: this.ttlMs,
        ifAbsent: true,
      });
      if (!fresh) {
        // A code collision (one in 2^40): drop the pointer and draw again.
        await this.#kv.delete(peerKey);
        continue;
      }
      return { request, created: true, capped: false };
    }
    return { request: undefined, created: false, capped: true };
  }

  /**
   * Pending requests, of one channel or all, oldest first; those of the same millisecond by
   * channel, then code (the store's key order), so that every call lists them alike.
   */
  async pending(channel?: string): Promise<PairingRequest[]> {
    const prefix =
      channel === undefined ? "channels:pairing:" : `channels:pairing:${channel}:code:`;
    // channels:pairing:<channel>:code:<CODE> (the peer pointers share the prefix).
    const out: PairingRequest[] = [];
    for await (const key of iterateKvKeys(this.#kv, prefix)) {
      if (key.split(":")[3] !== "code") continue;
      const request = await this.#kv.get<PairingRequest>(key);
      if (request === undefined) continue;
      const seen = await this.#kv.get<number>(this.#seenKey(request.channel, request.code));
      out.push(typeof seen === "number" ? { ...request, lastSeenAt: seen } : request);
    }
    return out.sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * Approves a pending code: its sender joins the channel's approved peers. With
   * `options.accountId`, only a request of that account is approved.
   *
   * @throws PairingCodeError for an unknown, expired or already answered code (or one of
   *   another account).
   */
  async approve(
    channel: string,
    code: string,
    approvedBy?: string,
    options: PairingAnswerOptions = {},
  ): Promise<ApprovedPeer> {
    const request = await this.#take(channel, code, options.accountId);
    const approved: ApprovedPeer = {
      channel,
      accountId: request.accountId,
      peerId: request.peerId,
      chatId: request.chatId,
      approvedAt: this.#now(),
    };
    if (request.peerName !== undefined) approved.peerName = request.peerName;
    if (approvedBy !== undefined) approved.approvedBy = approvedBy;
    await this.#kv.set(this.#approvedKey(channel, request.accountId, request.peerId), approved);
    return approved;
  }

  /**
   * Rejects (dismisses) a pending code; its sender may ask again (and get a new code) later.
   * With `options.accountId`, only a request of that account is rejected.
   *
   * @throws PairingCodeError for an unknown, expired or already answered code (or one of
   *   another account).
   */
  async reject(
    channel: string,
    code: string,
    options: PairingAnswerOptions = {},
  ): Promise<PairingRequest> {
    return this.#take(channel, code, options.accountId);
  }

  /** Whether the sender was approved through pairing. */
  async isApproved(channel: string, accountId: string, peerId: string): Promise<boolean> {
    return (await this.#kv.get(this.#approvedKey(channel, accountId, peerId))) !== undefined;
  }

  /** Senders approved through pairing, of one channel or all. */
  async approved(channel?: string): Promise<ApprovedPeer[]> {
    const prefix = channel === undefined ? "channels:approved:" : `channels:approved:${channel}:`;
    const out: ApprovedPeer[] = [];
    for await (const key of iterateKvKeys(this.#kv, prefix)) {
      const peer = await this.#kv.get<ApprovedPeer>(key);
      if (peer !== undefined) out.push(peer);
    }
    return out;
  }

  /** Removes an approval. Returns whether there was one. */
  async revoke(channel: string, accountId: string, peerId: string): Promise<boolean> {
    return this.#kv.delete(this.#approvedKey(channel, accountId, peerId));
  }

  async #take(channel: string, rawCode: string, accountId?: string): Promise<PairingRequest> {
    const code = typeof rawCode === "string" ? rawCode.trim().toUpperCase() : "";
    const valid =
      code.length === PAIRING_CODE_LENGTH &&
      [...code].every((c) => PAIRING_CODE_ALPHABET.includes(c));
    const key = this.#codeKey(channel, code);
    const found = valid ? await this.#kv.get<PairingRequest>(key) : undefined;
    const request = accountId === undefined || found?.accountId === accountId ? found : undefined;
    // Deleting decides who answered: of two concurrent answers, only one deletes the key.
    if (request === undefined || !(await this.#kv.delete(key))) {
      throw new PairingCodeError(channel, String(rawCode));
    }
    await this.#kv.delete(this.#peerKey(channel, request.accountId, request.peerId));
    await this.#kv.delete(this.#seenKey(channel, request.code));
    return request;
  }

  #codeKey(channel: string, code: string): string {
    return `channels:pairing:${channel}:code:${code}`;
  }

  #seenKey(channel: string, code: string): string {
    return `channels:pairing:${channel}:seen:${code}`;
  }

  #peerKey(channel: string, accountId: string, peerId: string): string {
    return `channels:pairing:${channel}:peer:${encodeKeySegment(accountId)}:${encodeKeySegment(peerId)}`;
  }

  #approvedKey(channel: string, accountId: string, peerId: string): string {
    return `channels:approved:${channel}:${encodeKeySegment(accountId)}:${encodeKeySegment(peerId)}`;
  }
}
