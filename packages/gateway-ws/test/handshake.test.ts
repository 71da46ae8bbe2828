import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

describe("the handshake", () => {
  it("opens with a connect.challenge event carrying a nonce and a timestamp", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const first = client.frames[0]!;
    expect(first).toMatchObject({ type: "event", event: "connect.challenge" });
    expect(client.challenge!.nonce).toMatch(/^[0-9a-f-]{36}$/);
    expect(Math.abs(client.challenge!.ts - Date.now())).toBeLessThan(60_000);
  });

  it("answers a v4 connect with hello-ok carrying server, features, snapshot, auth and policy", async () => {
    const { url } = await startStack({
      gateway: { maxPayloadBytes: 200_000, maxBufferedBytes: 900_000 },
    });
    const client = await TestClient.connect(url, { token: TOKEN, scopes: ["operator.read"] });
    const hello = client.hello;
    expect(hello.type).toBe("hello-ok");
    expect(hello.protocol).toBe(4);
    expect(hello.server.connId).toMatch(/^[0-9a-f-]{36}$/);
    expect(hello.features.methods).toEqual(
      expect.arrayContaining(["health", "chat.send", "sessions.list", "cron.list"]),
    );
    expect(hello.features.events).toEqual(expect.arrayContaining(["tick", "chat", "shutdown"]));
    expect(hello.snapshot.health.ok).toBe(true);
    expect(hello.snapshot.presence).toEqual(
      expect.arrayContaining([expect.objectContaining({ mode: "test" })]),
    );
    expect(hello.auth).toEqual({ role: "operator", scopes: ["operator.read"] });
    expect(hello.policy).toEqual({
      maxPayload: 200_000,
      maxBufferedBytes: 900_000,
      tickIntervalMs: 60_000,
      // Base64 in a 200 000-byte frame decodes to at most 150 000 bytes.
      attachments: { maxBytes: 150_000, maxImageBytes: 150_000 },
    });
  });

  it("accepts a client that offers only protocol 3 and speaks 3 to it", async () => {
    const { url } = await startStack();
    const client = await TestClient.connect(url, { token: TOKEN, minProtocol: 3, maxProtocol: 3 });
    expect(client.hello.protocol).toBe(3);
  });

  it("negotiates the highest version both sides speak", async () => {
    const { url } = await startStack();
    const client = await TestClient.connect(url, { token: TOKEN, minProtocol: 3, maxProtocol: 9 });
    expect(client.hello.protocol).toBe(4);
  });
});

describe("handshake refusals", () => {
  it("refuses a protocol range without 3 or 4 with INVALID_REQUEST and close code 1002", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const error = await rpcError(
      client.sendConnect({ token: TOKEN, minProtocol: 5, maxProtocol: 6 }),
    );
    expect(error.code).toBe("INVALID_REQUEST");
    expect(error.message).toBe("protocol mismatch");
    expect(error.details).toMatchObject({ expectedProtocol: 4, minProtocol: 3 });
    expect(await client.closed).toEqual({ code: 1002, reason: "protocol mismatch" });
  });

  it("refuses a client offering only protocols older than 3", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const error = await rpcError(
      client.sendConnect({ token: TOKEN, minProtocol: 1, maxProtocol: 2 }),
    );
    expect(error.code).toBe("INVALID_REQUEST");
    expect((await client.closed).code).toBe(1002);
  });

  it("closes a connection that does not complete connect within the handshake timeout (1008)", async () => {
    const { url } = await startStack({ gateway: { handshakeTimeoutMs: 150 } });
    const client = await TestClient.open(url);
    expect(await client.closed).toEqual({ code: 1008, reason: "handshake timeout" });
  });

  it("closes with 1009 on a pre-handshake frame over 64 KiB, before reading it as a request", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    client.sendRaw(
      JSON.stringify({
        type: "req",
        id: "big",
        method: "connect",
        params: { pad: "x".repeat(70_000) },
      }),
    );
    const closed = await client.closed;
    expect(closed.code).toBe(1009);
    expect(client.frames.filter((f) => f.type === "res")).toEqual([]);
  });

  it("accepts a pre-handshake connect just under 64 KiB", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const params = { ...client.connectParams({ token: TOKEN }), userAgent: "u".repeat(60_000) };
    const hello = await client.requestUnchecked("connect", params);
    expect(hello.type).toBe("hello-ok");
  });

  it("refuses a first request other than connect and closes with 1008", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const error = await rpcError(client.requestUnchecked("health", {}));
    expect(error.code).toBe("INVALID_REQUEST");
    expect(error.message).toMatch(/first request must be connect/);
    expect((await client.closed).code).toBe(1008);
  });

  it("closes with 1008 on a pre-handshake frame that is not JSON", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    client.sendRaw("{not json");
    expect((await client.closed).code).toBe(1008);
  });

  it("refuses connect params missing the client block, naming the field", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const error = await rpcError(
      client.requestUnchecked("connect", { minProtocol: 4, maxProtocol: 4 }),
    );
    expect(error.code).toBe("INVALID_REQUEST");
    expect(error.details).toMatchObject({ field: "client" });
    expect((await client.closed).code).toBe(1008);
  });

  it("refuses an unknown role", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const error = await rpcError(client.sendConnect({ token: TOKEN, role: "superuser" }));
    expect(error.details).toMatchObject({ code: "INVALID_ROLE" });
    expect((await client.closed).code).toBe(1008);
  });

  it("stays up for other clients after refusing one", async () => {
    const { url } = await startStack();
    const bad = await TestClient.open(url);
    bad.sendRaw("\u0000garbage");
    await bad.closed;
    const good = await TestClient.connect(url, { token: TOKEN });
    expect((await good.request("health")).ok).toBe(true);
  });
});

describe("events", () => {
  it("numbers every event of a connection with an increasing seq, starting after the challenge", async () => {
    const stack = await startStack({ responses: [{ text: ["a", "b", "c"] }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "hi",
      idempotencyKey: "seq-1",
    });
    await client.waitEvent("chat", (p) => p.state === "final");
    const seqs = client.events.map((e) => e.seq);
    expect(seqs[0]).toBe(0);
    expect(seqs.length).toBeGreaterThan(4);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe(seqs[i - 1]! + 1);
  });

  it("sends tick events at the announced interval", async () => {
    const { url } = await startStack({ gateway: { tickIntervalMs: 40 } });
    const client = await TestClient.connect(url, { token: TOKEN });
    const tick = await client.waitEvent("tick");
    expect(tick.payload.ts).toBeGreaterThan(0);
  });

  it("announces shutdown to clients, then closes them with 1001", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await stack.gateway.stop({ reason: "maintenance", restartExpectedMs: 5000 });
    const closed = await client.closed;
    expect(client.events.find((e) => e.event === "shutdown")?.payload).toEqual({
      reason: "maintenance",
      restartExpectedMs: 5000,
    });
    expect(closed.code).toBe(1001);
  });

  it("keeps one presence entry per connected client and removes it on disconnect", async () => {
    const stack = await startStack();
    const watcher = await TestClient.connect(stack.url, { token: TOKEN });
    const other = await TestClient.connect(stack.url, {
      token: TOKEN,
      clientId: "cli",
      mode: "cli",
    });
    await watcher.waitEvent("presence", (p) =>
      p.presence.some((e: { mode: string }) => e.mode === "cli"),
    );
    await other.close();
    await watcher.waitEvent(
      "presence",
      (p) => !p.presence.some((e: { mode: string }) => e.mode === "cli"),
    );
    const list = await watcher.request("system-presence");
    expect(list.map((e: { mode: string }) => e.mode)).toEqual(["test"]);
  });
});
