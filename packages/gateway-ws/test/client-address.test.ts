/** `TrustedProxies`: which peers are trusted proxies, and which forwarded hop is the client. */
import { InvalidArgumentError } from "@beamclaw/core";
import { describe, expect, it } from "vitest";
import { TrustedProxies } from "../src/auth/client-address.js";

describe("TrustedProxies", () => {
  const req = (peer: string, headers: Record<string, string> = {}) =>
    ({ socket: { remoteAddress: peer }, headers }) as unknown as Parameters<
      TrustedProxies["clientAddress"]
    >[0];

  it("matches IPv4 and IPv6 CIDR ranges, single addresses and IPv4-mapped peers", () => {
    const proxies = new TrustedProxies(["10.0.0.0/8", "fd00::/8", "192.0.2.10", "2001:db8::1"]);
    expect(proxies.has("10.255.0.1")).toBe(true);
    expect(proxies.has("11.0.0.1")).toBe(false);
    expect(proxies.has("::ffff:10.1.1.1")).toBe(true);
    expect(proxies.has("fd12:3456::1")).toBe(true);
    expect(proxies.has("fe80::1")).toBe(false);
    expect(proxies.has("192.0.2.10")).toBe(true);
    expect(proxies.has("192.0.2.11")).toBe(false);
    expect(proxies.has("2001:db8::1")).toBe(true);
    expect(proxies.has("2001:db8::2")).toBe(false);
  });

  it("reads hops with ports and brackets, and stops at a hop that is not an address", () => {
    const proxies = new TrustedProxies(["10.0.0.1", "10.0.0.2"]);
    const through = (xff: string) =>
      proxies.clientAddress(req("10.0.0.1", { "x-forwarded-for": xff }));
    expect(through("203.0.113.7:5000")).toBe("203.0.113.7");
    expect(through("[2001:db8::7]:443")).toBe("2001:db8::7");
    expect(through("garbage, 10.0.0.2")).toBe("10.0.0.2");
    expect(through("10.0.0.2, 10.0.0.1")).toBe("10.0.0.2");
    expect(proxies.clientAddress(req("203.0.113.9", { "x-forwarded-for": "1.2.3.4" }))).toBe(
      "203.0.113.9",
    );
  });

  it("refuses entries that are not addresses or valid CIDR ranges", () => {
    for (const bad of ["10.0.0.0/33", "fd00::/129", "10.0.0.0/", "example.com", "10.0.0.0/8/1"]) {
      expect(() => new TrustedProxies([bad])).toThrow(InvalidArgumentError);
    }
  });
});
