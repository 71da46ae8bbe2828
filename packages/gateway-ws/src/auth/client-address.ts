/**
 * The address a client connects from, for the failed-login limit, pairing requests, presence
 * and logs. Without trusted proxies it is the socket's peer. Behind a reverse proxy every
 * socket comes from the proxy, so that all clients would share one address (and one
 * failed-login bucket): when the peer is one of the gateway's `trustedProxies`, the client is
 * the rightmost `X-Forwarded-For` hop that is not a trusted proxy itself, else `X-Real-IP`.
 * Headers from a peer that is not trusted are ignored: anyone can send them.
 */
import type { IncomingMessage } from "node:http";
import { BlockList, isIP } from "node:net";
import { InvalidArgumentError } from "@beamclaw/core";

/** An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as its IPv4 address; others as given. */
function unmapped(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped?.[1] ?? address;
}

/**
 * One key per client address, for counting by address: IPv4-mapped IPv6 addresses count as
 * their IPv4 address, IPv6 addresses in lower case.
 */
export function addressKey(address: string): string {
  return unmapped(address).toLowerCase();
}

/**
 * One `X-Forwarded-For` / `X-Real-IP` hop as a bare address: brackets and ports
 * (`[2001:db8::1]:443`, `203.0.113.7:5000`) dropped. `undefined` when it is not an IP address.
 */
function hopAddress(raw: string): string | undefined {
  let hop = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (bracketed !== null) hop = bracketed[1]!;
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(hop)) hop = hop.slice(0, hop.lastIndexOf(":"));
  return isIP(hop) === 0 ? undefined : unmapped(hop);
}

/**
 * The gateway's trusted reverse proxies (`trustedProxies`: IPv4 / IPv6 addresses and CIDR
 * ranges) and how a request's client address is found through them.
 *
 * @example
 * ```ts
 * const proxies = new TrustedProxies(["10.0.0.0/8", "fd00::/8", "192.0.2.10"]);
 * proxies.clientAddress(req); // "203.0.113.7" for a request relayed by 10.1.2.3
 * ```
 */
export class TrustedProxies {
  readonly #list = new BlockList();
  readonly #size: number;

  /**
   * @throws InvalidArgumentError for an entry that is not an IP address or a CIDR range with a
   *   prefix length valid for its family (0-32 for IPv4, 0-128 for IPv6).
   */
  constructor(entries: readonly string[] = []) {
    if (!Array.isArray(entries)) {
      throw new InvalidArgumentError("gateway trustedProxies must be a list of IPs or CIDRs");
    }
    for (const entry of entries) this.#add(entry);
    this.#size = entries.length;
  }

  /** Whether any proxy is trusted (else headers are never read). */
  get enabled(): boolean {
    return this.#size > 0;
  }

  /** Whether `address` (a peer or a forwarded hop) is a trusted proxy. */
  has(address: string | undefined): boolean {
    if (address === undefined || this.#size === 0) return false;
    const bare = unmapped(address);
    const family = isIP(bare);
    if (family === 0) return false;
    return this.#list.check(bare, family === 4 ? "ipv4" : "ipv6");
  }

  /**
   * The client address of a request (an HTTP request or a WebSocket upgrade): the socket's
   * peer, unless the peer is a trusted proxy; then the rightmost `X-Forwarded-For` hop that
   * is not trusted (every hop trusted: the leftmost), else a valid `X-Real-IP`, else the peer.
   * A hop that is not an IP address ends the walk at the trusted hop that reported it.
   */
  clientAddress(req: Pick<IncomingMessage, "headers" | "socket">): string | undefined {
    const peer = req.socket.remoteAddress;
    if (!this.has(peer)) return peer;
    const forwarded = req.headers["x-forwarded-for"];
    const hops = (Array.isArray(forwarded) ? forwarded.join(",") : (forwarded ?? ""))
      .split(",")
      .filter((hop) => hop.trim() !== "");
    let nearest = unmapped(peer!);
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hopAddress(hops[i]!);
      if (hop === undefined) return nearest;
      if (!this.has(hop)) return hop;
      nearest = hop;
    }
    if (hops.length > 0) return nearest;
    const realIp = req.headers["x-real-ip"];
    const real = typeof realIp === "string" ? hopAddress(realIp) : undefined;
    return real ?? peer;
  }

  #add(entry: unknown): void {
    const invalid = () =>
      new InvalidArgumentError(
        `gateway trustedProxies: ${JSON.stringify(entry)} is not an IP address or CIDR range`,
      );
    if (typeof entry !== "string") throw invalid();
    const [rawAddress, prefixText, extra] = entry.trim().split("/");
    if (extra !== undefined || rawAddress === undefined) throw invalid();
    const address = unmapped(rawAddress);
    const family = isIP(address);
    if (family === 0) throw invalid();
    const type = family === 4 ? "ipv4" : "ipv6";
    if (prefixText === undefined) {
      this.#list.addAddress(address, type);
      return;
    }
    const max = family === 4 ? 32 : 128;
    const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
    if (!(prefix >= 0 && prefix <= max)) throw invalid();
    this.#list.addSubnet(address, prefix, type);
  }
}
