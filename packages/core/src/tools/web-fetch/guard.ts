import { lookup } from "node:dns/promises";
import { domainToASCII } from "node:url";
import { InvalidArgumentError, SsrfBlockedError, WebFetchError } from "../../errors.js";
import {
  classifyAddress,
  formatIp,
  type IpNetwork,
  inNetwork,
  parseIp,
  parseNetwork,
  unmapIPv4,
} from "./ip.js";

/** Resolves a host name to every address it has (A and AAAA). */
export type ResolveHost = (hostname: string) => Promise<string[]>;

/** Options of {@link createSsrfGuard}. */
export interface SsrfGuardOptions {
  /**
   * Hosts and networks that are allowed even though they are loopback, private, link-local
   * or metadata: IPs (`127.0.0.1`, `::1`), CIDRs (`10.0.0.0/8`, `fd00::/8`), host names
   * (`intranet.example`) and subdomain wildcards (`*.corp.example`). An allowed host name
   * skips the address check; an allowed network admits addresses inside it.
   */
  allow?: string[];
  /**
   * Resolves a host name. Default: `dns.lookup` with `all: true` (the system resolver, so
   * `/etc/hosts` counts). Every address returned is checked, and the connection is made to
   * one of exactly these addresses.
   */
  resolveHost?: ResolveHost;
}

/** A URL the guard let through, with the addresses the connection must use. */
export interface CheckedTarget {
  url: URL;
  /** The host name without brackets, lowercase, without a trailing dot. */
  hostname: string;
  /** The checked addresses; a pinned connection goes to one of these and nowhere else. */
  addresses: Array<{ address: string; family: 4 | 6 }>;
}

/** Checks URLs against the SSRF policy. */
export interface SsrfGuard {
  /**
   * Resolves `url`'s host and checks the scheme and every address.
   * @throws SsrfBlockedError when the URL must not be fetched.
   * @throws WebFetchError (`kind: "dns"`) when the host does not resolve.
   */
  check(url: URL): Promise<CheckedTarget>;
}

// Host names that reach instance metadata without any address check being meaningful.
const METADATA_HOSTS = new Set([
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "instance-data",
  "instance-data.ec2.internal",
]);

const HOST_PATTERN =
  /^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

const defaultResolveHost: ResolveHost = async (hostname) =>
  (await lookup(hostname, { all: true })).map((entry) => entry.address);

/**
 * Creates the SSRF guard `safeFetch` runs before every hop: only `http:` and `https:`;
 * `localhost`, `*.localhost` and metadata host names refused outright; then the host is
 * resolved and refused if ANY address is loopback, private, link-local, CGNAT, unspecified,
 * multicast, broadcast, reserved or cloud metadata (see {@link classifyAddress}), unless the
 * allowlist admits it. IP literals in any notation are normalised first.
 *
 * @example
 * ```ts
 * const guard = createSsrfGuard({ allow: ["10.20.0.0/16", "wiki.corp.example"] });
 * const target = await guard.check(new URL("https://example.com/"));
 * target.addresses; // [{ address: "93.184.215.14", family: 4 }]
 * ```
 * @throws InvalidArgumentError when an allowlist entry is neither an IP, a CIDR nor a host name.
 */
export function createSsrfGuard(options: SsrfGuardOptions = {}): SsrfGuard {
  const networks: IpNetwork[] = [];
  const hosts = new Set<string>();
  const suffixes: string[] = [];
  for (const raw of options.allow ?? []) {
    let entry = normalizeHost(String(raw));
    const wildcard = entry.startsWith("*.") ? "*." : "";
    // Host names compare in their ASCII (punycode) form, as URLs carry them.
    if (/[^\p{ASCII}]/u.test(entry)) {
      const ascii = domainToASCII(entry.slice(wildcard.length));
      if (ascii !== "") entry = wildcard + ascii;
    }
    const network = parseNetwork(entry);
    if (network !== undefined) {
      networks.push(network);
    } else if (HOST_PATTERN.test(entry)) {
      if (entry.startsWith("*.")) suffixes.push(entry.slice(1));
      else hosts.add(entry);
    } else {
      throw new InvalidArgumentError(
        `allow: ${JSON.stringify(raw)} is neither an IP address, a CIDR nor a host name`,
      );
    }
  }
  const resolveHost = options.resolveHost ?? defaultResolveHost;
  const hostAllowed = (host: string) =>
    hosts.has(host) || suffixes.some((suffix) => host.endsWith(suffix));
  const addressAllowed = (address: string) => {
    const ip = parseIp(address);
    if (ip === undefined) return false;
    const plain = unmapIPv4(ip);
    return networks.some((n) => inNetwork(ip, n) || inNetwork(plain, n));
  };

  return {
    async check(url) {
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new SsrfBlockedError(url.href, "scheme");
      }
      const hostname = normalizeHost(url.hostname);
      const literal = parseIp(hostname);
      const allowedByName = literal === undefined && hostAllowed(hostname);
      let addresses: string[];
      if (literal !== undefined) {
        addresses = [formatIp(literal)];
      } else {
        if (!allowedByName) {
          if (hostname === "localhost" || hostname.endsWith(".localhost"))
            throw new SsrfBlockedError(url.href, "loopback", hostname);
          if (METADATA_HOSTS.has(hostname))
            throw new SsrfBlockedError(url.href, "metadata", hostname);
        }
        try {
          addresses = await resolveHost(hostname);
        } catch (error) {
          throw new WebFetchError(
            "dns",
            url.href,
            `cannot resolve ${hostname}: ${errorText(error)}`,
            {
              cause: error,
            },
          );
        }
        if (addresses.length === 0) {
          throw new WebFetchError("dns", url.href, `${hostname} has no addresses`);
        }
      }
      const checked: CheckedTarget["addresses"] = [];
      for (const address of addresses) {
        const ip = parseIp(address);
        if (ip === undefined) {
          throw new WebFetchError("dns", url.href, `${hostname} resolved to a non-IP ${address}`);
        }
        const canonical = formatIp(ip);
        if (!allowedByName && !addressAllowed(canonical)) {
          const reason = classifyAddress(ip);
          if (reason !== undefined) throw new SsrfBlockedError(url.href, reason, canonical);
        }
        checked.push({ address: canonical, family: ip.family });
      }
      return { url, hostname, addresses: checked };
    },
  };
}

/** Lowercase, no brackets, no trailing dots: how hosts are compared. */
function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  return h.replace(/\.+$/, "");
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" ? code : error.message;
  }
  return String(error);
}
