/**
 * Failed logins per remote address, over real sockets: clients connect from different
 * loopback source addresses (127.0.0.2, 127.0.0.3, ...: all of 127/8 is local on Linux), so
 * each is its own remote address to the gateway. Every frame is checked against the schema.
 */
import { InvalidArgumentError, parseConfig } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { AuthRateLimiter } from "../src/auth/rate-limit.js";
import { createGateway } from "../src/index.js";
import {
  checkFrame,
  closeClients,
  deferred,
  startStack,
  stopStacks,
  TOKEN,
  useSchemaCheck,
  type Wire,
} from "./support.js";

useSchemaCheck();
const sockets = new Set<WebSocket>();
afterEach(async () => {
  await Promise.all(
    [...sockets].map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once("close", () => resolve());
          ws.terminate();
        }),
    ),
  );
  sockets.clear();
  await closeClients();
  await stopStacks();
});

interface Attempt {
  ok: boolean;
  payload?: Wire;
  error?: Wire;
  close: Promise<{ code: number; reason: string }>;
  ws: WebSocket;
}

/** Connects from `localAddress` and sends `connect` with `auth`; resolves with the answer. */
async function connectFrom(
  url: string,
  localAddress: string,
  auth: Record<string, string>,
): Promise<Attempt> {
  const ws = new WebSocket(url, { localAddress });
  sockets.add(ws);
  const challenge = deferred<void>();
  const answer = deferred<{ ok: boolean; payload?: Wire; error?: Wire }>();
  const close = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => {
      sockets.delete(ws);
      resolve({ code, reason: reason.toString("utf8") });
      answer.reject(new Error(`closed ${code} before answering`));
    }),
  );
  ws.on("error", () => undefined);
  ws.on("message", (data) => {
    const frame = JSON.parse(data.toString("utf8")) as Wire;
    checkFrame(frame, (id) => (id === "c1" ? "connect" : undefined));
    if (frame.type === "event" && frame.event === "connect.challenge") challenge.resolve();
    if (frame.type === "res" && frame.id === "c1") answer.resolve(frame);
  });
  await challenge.promise;
  ws.send(
    JSON.stringify({
      type: "req",
      id: "c1",
      method: "connect",
      params: {
        minProtocol: 4,
        maxProtocol: 4,
        client: { id: "test", version: "1.0.0", platform: "linux", mode: "test" },
        role: "operator",
        scopes: ["operator.read"],
        caps: [],
        auth,
      },
    }),
  );
  const res = await answer.promise;
  return { ...res, close, ws };
}

async function closeAttempt(attempt: Attempt): Promise<void> {
  if (attempt.ws.readyState === WebSocket.OPEN) attempt.ws.close(1000);
  await attempt.close;
}

describe("failed logins per address", () => {
  it("locks an address out after N wrong credentials; other addresses are unaffected", async () => {
    let shift = 0;
    const stack = await startStack({
      gateway: {
        auth: {
          mode: "token",
          token: TOKEN,
          rateLimit: { maxAttempts: 3, windowMs: 60_000, lockoutMs: 120_000 },
        },
        now: () => Date.now() + shift,
      },
    });
    for (let i = 0; i < 3; i++) {
      const wrong = await connectFrom(stack.url, "127.0.0.2", { token: `guess-${i}` });
      expect(wrong.ok).toBe(false);
      expect(wrong.error.details).toMatchObject({ code: "AUTH_TOKEN_MISMATCH" });
      expect((await wrong.close).code).toBe(1008);
    }
    // Locked: even the right token is refused, with the time to wait.
    const locked = await connectFrom(stack.url, "127.0.0.2", { token: TOKEN });
    expect(locked.ok).toBe(false);
    expect(locked.error).toMatchObject({
      code: "UNAVAILABLE",
      retryable: true,
      details: { code: "AUTH_RATE_LIMITED", recommendedNextStep: "wait_then_retry" },
    });
    expect(locked.error.retryAfterMs).toBeGreaterThan(60_000);
    expect(locked.error.retryAfterMs).toBeLessThanOrEqual(120_000);
    expect(locked.error.details.retryAfterMs).toBe(locked.error.retryAfterMs);
    expect((await locked.close).code).toBe(1008);

    // Another address (and loopback itself) logs in fine meanwhile.
    const other = await connectFrom(stack.url, "127.0.0.3", { token: TOKEN });
    expect(other.ok).toBe(true);
    expect(other.payload.type).toBe("hello-ok");
    await closeAttempt(other);
    const local = await connectFrom(stack.url, "127.0.0.1", { token: TOKEN });
    expect(local.ok).toBe(true);
    await closeAttempt(local);
    // ... and its success did not unlock the first address.
    const stillLocked = await connectFrom(stack.url, "127.0.0.2", { token: TOKEN });
    expect(stillLocked.error.details).toMatchObject({ code: "AUTH_RATE_LIMITED" });

    // Once the lockout has passed, the address may log in again.
    shift = 121_000;
    const back = await connectFrom(stack.url, "127.0.0.2", { token: TOKEN });
    expect(back.ok).toBe(true);
    await closeAttempt(back);
  });

  it("counts wrong credentials only, in a window, and forgets them on success", async () => {
    let shift = 0;
    const stack = await startStack({
      gateway: {
        auth: { mode: "token", token: TOKEN, rateLimit: { maxAttempts: 3, windowMs: 10_000 } },
        now: () => Date.now() + shift,
      },
    });
    // A client that sends no token is not guessing: never locked out for it.
    for (let i = 0; i < 4; i++) {
      const missing = await connectFrom(stack.url, "127.0.0.4", {});
      expect(missing.error.details).toMatchObject({ code: "AUTH_TOKEN_MISSING" });
    }
    const fine = await connectFrom(stack.url, "127.0.0.4", { token: TOKEN });
    expect(fine.ok).toBe(true);
    await closeAttempt(fine);

    // Two failures, a success (which clears them), two failures: still allowed.
    for (const token of ["x1", "x2", TOKEN, "x3", "x4"]) {
      const attempt = await connectFrom(stack.url, "127.0.0.5", { token });
      expect(attempt.ok).toBe(token === TOKEN);
      if (attempt.ok) await closeAttempt(attempt);
    }
    const allowed = await connectFrom(stack.url, "127.0.0.5", { token: TOKEN });
    expect(allowed.ok).toBe(true);
    await closeAttempt(allowed);

    // Failures in different windows do not add up.
    for (const token of ["y1", "y2"]) {
      expect((await connectFrom(stack.url, "127.0.0.6", { token })).ok).toBe(false);
    }
    shift += 11_000;
    for (const token of ["y3", "y4"]) {
      expect((await connectFrom(stack.url, "127.0.0.6", { token })).ok).toBe(false);
    }
    const notLocked = await connectFrom(stack.url, "127.0.0.6", { token: TOKEN });
    expect(notLocked.ok).toBe(true);
    await closeAttempt(notLocked);
  });

  it("exempts loopback only when configured, and can be turned off", async () => {
    const exempt = await startStack({
      gateway: {
        auth: {
          mode: "password",
          password: "pw",
          rateLimit: { maxAttempts: 2, exemptLoopback: true },
        },
      },
    });
    for (let i = 0; i < 4; i++) {
      const wrong = await connectFrom(exempt.url, "127.0.0.7", { password: `nope-${i}` });
      expect(wrong.error.details).toMatchObject({ code: "AUTH_PASSWORD_MISMATCH" });
    }
    const ok = await connectFrom(exempt.url, "127.0.0.7", { password: "pw" });
    expect(ok.ok).toBe(true);
    await closeAttempt(ok);

    const strict = await startStack({
      gateway: { auth: { mode: "password", password: "pw", rateLimit: { maxAttempts: 2 } } },
    });
    for (let i = 0; i < 2; i++) await connectFrom(strict.url, "127.0.0.7", { password: "no" });
    expect(
      (await connectFrom(strict.url, "127.0.0.7", { password: "pw" })).error.details,
    ).toMatchObject({ code: "AUTH_RATE_LIMITED" });

    const off = await startStack({
      gateway: { auth: { mode: "password", password: "pw", rateLimit: false } },
    });
    for (let i = 0; i < 12; i++) await connectFrom(off.url, "127.0.0.7", { password: "no" });
    const fine = await connectFrom(off.url, "127.0.0.7", { password: "pw" });
    expect(fine.ok).toBe(true);
    await closeAttempt(fine);
  });

  it("takes its settings from the config file and refuses bad ones", async () => {
    const config = parseConfig({
      gateway: {
        auth: { mode: "token", token: TOKEN, rateLimit: { maxAttempts: 1, lockoutMs: 30_000 } },
      },
      providers: { scripted: { kind: "openai-compatible", baseUrl: "http://127.0.0.1:9/v1" } },
      agents: { main: { model: "scripted/m1" } },
    });
    expect(config.gateway.auth.rateLimit).toEqual({ maxAttempts: 1, lockoutMs: 30_000 });
    const stack = await startStack({ gateway: { auth: undefined, config } });
    await connectFrom(stack.url, "127.0.0.8", { token: "wrong" });
    const locked = await connectFrom(stack.url, "127.0.0.8", { token: TOKEN });
    expect(locked.error.details).toMatchObject({ code: "AUTH_RATE_LIMITED" });
    expect(locked.error.retryAfterMs).toBeLessThanOrEqual(30_000);

    expect(() =>
      parseConfig({
        gateway: { auth: { mode: "token", token: TOKEN, rateLimit: { maxAttempts: 0 } } },
        providers: { scripted: { kind: "openai-compatible", baseUrl: "http://127.0.0.1:9/v1" } },
        agents: { main: { model: "scripted/m1" } },
      }),
    ).toThrow(/rateLimit/);
    expect(() =>
      createGateway({
        runtime: stack.runtime,
        auth: { mode: "token", token: TOKEN, rateLimit: { windowMs: -1 } },
      }),
    ).toThrow(InvalidArgumentError);
  });
});

describe("AuthRateLimiter memory", () => {
  it("remembers at most maxTrackedAddresses and forgets expired entries", () => {
    let now = 1_000_000;
    const limiter = new AuthRateLimiter(
      { maxAttempts: 2, windowMs: 1_000, lockoutMs: 5_000, maxTrackedAddresses: 3 },
      () => now,
    );
    for (let i = 0; i < 10; i++) limiter.recordFailure(`10.0.0.${i}`, false);
    expect(limiter.size).toBeLessThanOrEqual(3);
    // The most recent ones are the ones kept.
    limiter.recordFailure("10.0.0.9", false);
    expect(limiter.check("10.0.0.9", false)).toMatchObject({ allowed: false });
    now += 6_000;
    limiter.recordFailure("10.0.0.42", false);
    for (let i = 0; i < 256; i++) limiter.check("10.0.0.42", false);
    expect(limiter.size).toBe(1);
    // IPv4-mapped IPv6 is the same client as its IPv4 address.
    limiter.recordFailure("::ffff:10.0.0.42", false);
    expect(limiter.check("10.0.0.42", false)).toMatchObject({ allowed: false });
  });
});
