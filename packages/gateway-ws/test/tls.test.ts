/**
 * The gateway with `tls`: HTTPS and WSS on one port, over real TLS connections that verify
 * the server's certificate (a self-signed test certificate for localhost and 127.0.0.1 in
 * `fixtures/`, for these tests only). A streamed chat over `wss://`, its frames checked
 * against the protocol schema, each delta's two frames in one write to the TLS stream; the
 * probes and the OpenAI-compatible API over `https://`; a plain `ws://` client refused.
 */
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import {
  closeClients,
  framesIn,
  recordServerWrites,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const fixture = (name: string) =>
  readFileSync(fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url)), "utf8");
const cert = fixture("localhost-cert.pem");
const key = fixture("localhost-key.pem");

/** An HTTPS request that trusts only the test certificate. */
function httpsRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? "GET", headers: options.headers, ca: cert },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

describe("TLS", () => {
  it("streams a chat over wss:// with the certificate verified, each delta's frames in one write", async () => {
    const chunks = ["Sec", "ure ", "hello"];
    const stack = await startStack({
      responses: [{ text: chunks, chunkDelayMs: 30 }],
      gateway: { tls: { cert, key } },
    });
    const url = `wss://127.0.0.1:${stack.port}`;
    const client = await TestClient.connect(url, { token: TOKEN, socket: { ca: cert } });
    expect(client.hello.type).toBe("hello-ok");
    const recorder = recordServerWrites(stack.port);
    let final: Wire;
    try {
      await client.request("chat.send", {
        sessionKey: "agent:main:main",
        message: "hi",
        idempotencyKey: "tls-1",
      });
      final = (await client.waitEvent("chat", (p) => p.runId === "tls-1" && p.state === "final"))
        .payload;
    } finally {
      recorder.restore();
    }
    expect(final.message.content[0].text).toBe(chunks.join(""));
    const deltas = client.events
      .filter(
        (e) => e.event === "chat" && e.payload.runId === "tls-1" && e.payload.state === "delta",
      )
      .map((e) => e.payload.deltaText);
    expect(deltas).toEqual(chunks);
    // What the gateway wrote to the TLS stream (before encryption): each delta's chat and
    // agent frames in one write, as over plain TCP.
    const writes = recorder.writes.map((w) => framesIn(w).map((t) => JSON.parse(t)));
    expect(writes.length).toBeGreaterThan(0);
    for (const delta of chunks) {
      const write = writes.find((w) =>
        w.some((f) => f.event === "chat" && f.payload.deltaText === delta),
      );
      expect(write, `the chat delta "${delta}"`).toBeDefined();
      expect(
        write!.some(
          (f) =>
            f.event === "agent" &&
            f.payload.stream === "assistant" &&
            f.payload.data.delta === delta,
        ),
        `the agent event of "${delta}" in the same write`,
      ).toBe(true);
    }
  });

  it("serves the probes and the OpenAI-compatible API over https://", async () => {
    const stack = await startStack({ responses: ["over https"], gateway: { tls: { cert, key } } });
    const base = `https://127.0.0.1:${stack.port}`;
    expect((await httpsRequest(`${base}/readyz`)).status).toBe(200);
    const completion = await httpsRequest(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "main", messages: [{ role: "user", content: "hi" }] }),
    });
    expect(completion.status).toBe(200);
    expect(JSON.parse(completion.body).choices[0].message.content).toBe("over https");
  });

  it("refuses a client that does not trust the certificate, and a plain ws:// client", async () => {
    const stack = await startStack({ gateway: { tls: { cert, key } } });
    // No `ca`: the self-signed certificate is not trusted.
    const untrusted = new WebSocket(`wss://127.0.0.1:${stack.port}`);
    const error = await new Promise<Error>((resolve) => untrusted.once("error", resolve));
    expect((error as NodeJS.ErrnoException).code).toBe("DEPTH_ZERO_SELF_SIGNED_CERT");
    // Plain WebSocket to a TLS port: the handshake never completes.
    const plain = new WebSocket(`ws://127.0.0.1:${stack.port}`);
    const outcome = await new Promise<string>((resolve) => {
      plain.once("open", () => resolve("open"));
      plain.once("error", () => resolve("error"));
      plain.once("close", () => resolve("close"));
    });
    expect(outcome).not.toBe("open");
    plain.terminate();
    untrusted.terminate();
    // The gateway still serves a trusted client afterwards.
    const client = await TestClient.connect(`wss://127.0.0.1:${stack.port}`, {
      token: TOKEN,
      socket: { ca: cert },
    });
    expect(client.hello.type).toBe("hello-ok");
  });
});
