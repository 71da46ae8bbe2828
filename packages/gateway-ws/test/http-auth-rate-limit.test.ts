/**
 * Wrong bearer tokens on the OpenAI-compatible API count as failed logins, as wrong
 * credentials on the WebSocket `connect` do: over real sockets, from different loopback
 * source addresses (all of 127/8 is local on Linux), each its own remote address.
 */
import { request as httpRequest } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { closeClients, type Reply, startStack, stopStacks, TOKEN } from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

/** `GET /v1/models` from `localAddress`, with `token` as the bearer token when given. */
function modelsFrom(
  port: number,
  localAddress: string,
  token?: string,
  extraHeaders: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        localAddress,
        path: "/v1/models",
        agent: false,
        headers: {
          ...extraHeaders,
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            json: JSON.parse(text),
          });
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("failed bearer tokens per address", () => {
  it("locks an address out of the API after N wrong tokens; other addresses are unaffected", async () => {
    const stack = await startStack({
      gateway: { auth: { mode: "token", token: TOKEN, rateLimit: { maxAttempts: 3 } } },
    });
    // No token at all is not a guess: it does not count.
    for (let i = 0; i < 5; i++) {
      expect((await modelsFrom(stack.port, "127.0.0.2")).status).toBe(401);
    }
    expect((await modelsFrom(stack.port, "127.0.0.2", TOKEN)).status).toBe(200);
    for (let i = 0; i < 3; i++) {
      expect((await modelsFrom(stack.port, "127.0.0.2", `guess-${i}`)).status).toBe(401);
    }
    const locked = await modelsFrom(stack.port, "127.0.0.2", TOKEN);
    expect(locked.status).toBe(429);
    expect(Number(locked.headers["retry-after"])).toBeGreaterThan(0);
    expect(locked.json.error).toEqual({
      message: expect.any(String),
      type: "requests",
      param: null,
      code: "auth_rate_limited",
    });
    expect((await modelsFrom(stack.port, "127.0.0.3", TOKEN)).status).toBe(200);
  });

  it("does not exempt a request relayed with a Forwarded header from the loopback exemption", async () => {
    const stack = await startStack({
      gateway: {
        auth: { mode: "token", token: TOKEN, rateLimit: { maxAttempts: 2, exemptLoopback: true } },
      },
    });
    const forwarded = { forwarded: "for=203.0.113.9;proto=https" };
    for (let i = 0; i < 2; i++) {
      expect((await modelsFrom(stack.port, "127.0.0.5", `guess-${i}`, forwarded)).status).toBe(401);
    }
    expect((await modelsFrom(stack.port, "127.0.0.5", TOKEN, forwarded)).status).toBe(429);
  });

  it("counts nothing with rateLimit: false", async () => {
    const stack = await startStack({
      gateway: { auth: { mode: "token", token: TOKEN, rateLimit: false } },
    });
    for (let i = 0; i < 12; i++) {
      expect((await modelsFrom(stack.port, "127.0.0.4", "wrong")).status).toBe(401);
    }
    expect((await modelsFrom(stack.port, "127.0.0.4", TOKEN)).status).toBe(200);
  });
});
