import type { SsrfBlockReason } from "../../errors.js";

/** An IP address as bytes: 4 for IPv4, 16 for IPv6. */
export interface IpAddress {
  family: 4 | 6;
  bytes: Uint8Array;
}

/** A network: an address and the number of leading bits that must match. */
export interface IpNetwork extends IpAddress {
  prefix: number;
}

/**
 * Parses an IPv4 address the way `inet_aton` and the WHATWG URL parser do: one to four
 * parts, each decimal, octal (leading `0`) or hex (`0x`), the last part filling the
 * remaining bytes. So `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` all give 127.0.0.1.
 */
export function parseIPv4(text: string): Uint8Array | undefined {
  const trimmed = text.endsWith(".") ? text.slice(0, -1) : text;
  const parts = trimmed.split(".");
  if (parts.length === 0 || parts.length > 4) return undefined;
  const values: number[] = [];
  for (const part of parts) {
    const value = parseIPv4Part(part);
    if (value === undefined) return undefined;
    values.push(value);
  }
  const last = values.pop() as number;
  if (values.some((v) => v > 255)) return undefined;
  if (last >= 256 ** (4 - values.length)) return undefined;
  let n = last;
  for (let i = 0; i < values.length; i++) n += (values[i] as number) * 256 ** (3 - i);
  return new Uint8Array([(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
}

function parseIPv4Part(part: string): number | undefined {
  // Longer parts cannot be valid (and would lose precision); they are host names.
  if (part.length === 0 || part.length > 34) return undefined;
  let value: number;
  if (/^0x[0-9a-f]*$/i.test(part))
    value = part.length === 2 ? 0 : Number.parseInt(part.slice(2), 16);
  else if (/^0[0-7]*$/.test(part)) value = Number.parseInt(part, 8);
  else if (/^[1-9][0-9]*$/.test(part)) value = Number.parseInt(part, 10);
  else return undefined;
  return Number.isSafeInteger(value) && value <= 0xffffffff ? value : undefined;
}

/** Parses an IPv6 address, with or without brackets, zone id or a dotted IPv4 tail. */
export function parseIPv6(text: string): Uint8Array | undefined {
  let s = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const zone = s.indexOf("%");
  if (zone !== -1) s = s.slice(0, zone);
  if (!s.includes(":")) return undefined;
  const lastColon = s.lastIndexOf(":");
  const last = s.slice(lastColon + 1);
  if (last.includes(".")) {
    // A dotted IPv4 tail (`::ffff:127.0.0.1`) becomes its two hex groups.
    const parts = last.split(".");
    if (parts.length !== 4 || parts.some((p) => !/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255))
      return undefined;
    const [a, b, c, d] = parts.map(Number) as [number, number, number, number];
    s = `${s.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const parse = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    for (const group of half.split(":")) {
      if (!/^[0-9a-f]{1,4}$/i.test(group)) return undefined;
      out.push(Number.parseInt(group, 16));
    }
    return out;
  };
  const head = parse(halves[0] as string);
  const tail = halves.length === 2 ? parse(halves[1] as string) : [];
  if (head === undefined || tail === undefined) return undefined;
  let groups: number[];
  if (halves.length === 1) {
    if (head.length !== 8) return undefined;
    groups = head;
  } else {
    const zeros = 8 - head.length - tail.length;
    if (zeros < 1) return undefined;
    groups = [...head, ...new Array<number>(zeros).fill(0), ...tail];
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 255;
  });
  return bytes;
}

/** Parses an IPv4 (any notation) or IPv6 literal; `undefined` for anything else. */
export function parseIp(text: string): IpAddress | undefined {
  if (text.includes(":")) {
    const bytes = parseIPv6(text);
    return bytes === undefined ? undefined : { family: 6, bytes };
  }
  const bytes = parseIPv4(text);
  return bytes === undefined ? undefined : { family: 4, bytes };
}

/** Parses `10.0.0.0/8`, `fc00::/7` or a single address (a network of one). */
export function parseNetwork(text: string): IpNetwork | undefined {
  const slash = text.indexOf("/");
  const ip = parseIp(slash === -1 ? text : text.slice(0, slash));
  if (ip === undefined) return undefined;
  const max = ip.family === 4 ? 32 : 128;
  if (slash === -1) return { ...ip, prefix: max };
  const bits = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return undefined;
  return { ...ip, prefix: Number(bits) };
}

/** Formats an address canonically: dotted IPv4, compressed lowercase IPv6. */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return Array.from(ip.bytes).join(".");
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2)
    groups.push(((ip.bytes[i] as number) << 8) | (ip.bytes[i + 1] as number));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

/** Whether `ip` lies in `network` (families must match). */
export function inNetwork(ip: IpAddress, network: IpNetwork): boolean {
  if (ip.family !== network.family) return false;
  let bits = network.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((ip.bytes[i] as number) & mask) !== ((network.bytes[i] as number) & mask)) return false;
  }
  return true;
}

/** The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) stands for, else `ip`. */
export function unmapIPv4(ip: IpAddress): IpAddress {
  if (ip.family === 6 && inNetwork(ip, MAPPED)) return { family: 4, bytes: ip.bytes.slice(12) };
  return ip;
}

function net(text: string): IpNetwork {
  const network = parseNetwork(text);
  if (network === undefined) throw new Error(`bad built-in network ${text}`);
  return network;
}

const MAPPED = net("::ffff:0:0/96");
const COMPATIBLE = net("::/96");
const NAT64 = net("64:ff9b::/96");
const SIX_TO_FOUR = net("2002::/16");
const GLOBAL_UNICAST = net("2000::/3");

/** Cloud instance-metadata endpoints (AWS, GCP, Azure, Oracle, ECS, Alibaba). */
const METADATA: IpNetwork[] = [
  "169.254.169.254",
  "169.254.170.2",
  "169.254.170.23",
  "100.100.100.200",
  "192.0.0.192",
  "fd00:ec2::254",
  "fd00:ec2::23",
].map(net);

// Order matters only for the reason reported; every listed range is refused.
const IPV4_RANGES: Array<[IpNetwork, SsrfBlockReason]> = [
  ["0.0.0.0/8", "unspecified"],
  ["10.0.0.0/8", "private"],
  ["100.64.0.0/10", "cgnat"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local"],
  ["172.16.0.0/12", "private"],
  ["192.0.0.0/24", "reserved"],
  ["192.0.2.0/24", "reserved"],
  ["192.88.99.0/24", "reserved"],
  ["192.168.0.0/16", "private"],
  ["198.18.0.0/15", "reserved"],
  ["198.51.100.0/24", "reserved"],
  ["203.0.113.0/24", "reserved"],
  ["224.0.0.0/4", "multicast"],
  ["255.255.255.255/32", "broadcast"],
  ["240.0.0.0/4", "reserved"],
].map(([cidr, reason]) => [net(cidr as string), reason as SsrfBlockReason]);

const IPV6_RANGES: Array<[IpNetwork, SsrfBlockReason]> = [
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["fc00::/7", "private"],
  ["fe80::/10", "link-local"],
  ["fec0::/10", "private"],
  ["ff00::/8", "multicast"],
  // Special-purpose blocks inside 2000::/3: Teredo and friends, documentation, SRv6.
  ["2001::/23", "reserved"],
  ["2001:db8::/32", "reserved"],
  ["3fff::/20", "reserved"],
  ["5f00::/16", "reserved"],
].map(([cidr, reason]) => [net(cidr as string), reason as SsrfBlockReason]);

/**
 * Why a server-side fetch must not connect to `address`, or `undefined` when it may.
 * Refuses loopback, private (RFC 1918, ULA), link-local, CGNAT, unspecified, multicast,
 * broadcast, reserved and documentation ranges and cloud-metadata addresses, including
 * their IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6 forms. Of IPv6 only global
 * unicast (2000::/3) is allowed. A string that is not an IP literal returns `"reserved"`.
 *
 * @example
 * ```ts
 * classifyAddress("10.1.2.3"); // "private"
 * classifyAddress("::ffff:a9fe:a9fe"); // "metadata"
 * classifyAddress("93.184.215.14"); // undefined
 * ```
 */
export function classifyAddress(address: string | IpAddress): SsrfBlockReason | undefined {
  const ip = typeof address === "string" ? parseIp(address) : address;
  if (ip === undefined) return "reserved";
  return ip.family === 4 ? classifyV4(ip) : classifyV6(ip);
}

function classifyV4(ip: IpAddress): SsrfBlockReason | undefined {
  if (METADATA.some((m) => inNetwork(ip, m))) return "metadata";
  for (const [range, reason] of IPV4_RANGES) if (inNetwork(ip, range)) return reason;
  return undefined;
}

function embedded(bytes: Uint8Array, offset: number): IpAddress {
  return { family: 4, bytes: bytes.slice(offset, offset + 4) };
}

function classifyV6(ip: IpAddress): SsrfBlockReason | undefined {
  if (METADATA.some((m) => inNetwork(ip, m))) return "metadata";
  for (const [range, reason] of IPV6_RANGES.slice(0, 2)) if (inNetwork(ip, range)) return reason;
  if (inNetwork(ip, MAPPED)) return classifyV4(embedded(ip.bytes, 12));
  // Deprecated IPv4-compatible form: never routable, and often still reaches the IPv4 host.
  if (inNetwork(ip, COMPATIBLE)) return classifyV4(embedded(ip.bytes, 12)) ?? "reserved";
  if (inNetwork(ip, NAT64)) return classifyV4(embedded(ip.bytes, 12));
  if (inNetwork(ip, SIX_TO_FOUR)) return classifyV4(embedded(ip.bytes, 2));
  for (const [range, reason] of IPV6_RANGES) if (inNetwork(ip, range)) return reason;
  return inNetwork(ip, GLOBAL_UNICAST) ? undefined : "reserved";
}
