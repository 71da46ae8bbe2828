/** `freePort` and `canListen` of `@beamclaw/core/testing`, against real sockets. */
import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { canListen, freePort } from "../src/testing/index.js";

describe("@beamclaw/core/testing ports", () => {
  it("freePort gives a port a server can listen on, and canListen tells when one holds it", async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(await canListen(port)).toBe(true);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    try {
      expect(await canListen(port)).toBe(false);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(await canListen(port)).toBe(true);
  });

  it("freePort rejects an address that is not this machine's", async () => {
    await expect(freePort("192.0.2.1")).rejects.toMatchObject({ code: "EADDRNOTAVAIL" });
  });
});
