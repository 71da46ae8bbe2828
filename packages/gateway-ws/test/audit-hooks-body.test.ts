/**
 * Audit of the hooks endpoint over raw sockets: a refusal that leaves the body unread (a wrong
 * token, a body over the limit) closes the connection instead of reading whatever the sender
 * keeps sending, and a request whose body arrives once the gateway is stopping starts nothing.
 */
import { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { HOOK_TOKEN, hookStack } from "./audit-hooks-support.js";
import { deferred, stopStacks, waitFor } from "./support.js";

const sockets: Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await stopStacks();
});

/** A raw connection: what the server sent, and whether it closed the connection. */
async function connect(port: number) {
  const socket = new Socket();
  sockets.push(socket);
  let received = "";
  const closed = new Promise<void>((resolve) => {
    socket.on("close", () => resolve());
  });
  socket.on("data", (chunk: Buffer) => {
    received += chunk.toString("latin1");
  });
  socket.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
    socket.connect(port, "127.0.0.1");
  });
  return {
    socket,
    closed,
    /** The status line and headers of the first response, once they are all in. */
    async head(): Promise<{ status: number; headers: Record<string, string> }> {
      const text = await waitFor("a response head", () =>
        received.includes("\r\n\r\n") ? received.slice(0, received.indexOf("\r\n\r\n")) : false,
      );
      const [statusLine, ...lines] = text.split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const at = line.indexOf(":");
        headers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
      }
      return { status: Number(statusLine!.split(" ")[1]), headers };
    },
    body(): string {
      return received.slice(received.indexOf("\r\n\r\n") + 4);
    },
  };
}

function requestHead(port: number, headers: Record<string, string>): string {
  const lines = [`POST /hooks/wake HTTP/1.1`, `Host: 127.0.0.1:${port}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return `${lines.join("\r\n")}\r\n\r\n`;
}

describe("hooks: a refusal with the body unread", () => {
  it("closes the connection after a wrong token, rather than reading a body it declared large", async () => {
    const { port } = await hookStack();
    const conn = await connect(port);
    conn.socket.write(
      requestHead(port, {
        authorization: "Bearer wrong-token",
        "content-type": "application/json",
        "content-length": String(50 * 1024 * 1024),
      }),
    );
    conn.socket.write('{"text":"');
    const head = await conn.head();
    expect(head.status).toBe(401);
    expect(head.headers.connection).toBe("close");
    // The server ends the connection itself: the 50 MiB are never read.
    await conn.closed;
  });

  it("closes the connection after a chunked body went over maxBodyBytes", async () => {
    const { port } = await hookStack({ maxBodyBytes: 1024 });
    const conn = await connect(port);
    conn.socket.write(
      requestHead(port, {
        authorization: `Bearer ${HOOK_TOKEN}`,
        "content-type": "application/json",
        "transfer-encoding": "chunked",
      }),
    );
    const chunk = "x".repeat(2048);
    conn.socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    const head = await conn.head();
    expect(head.status).toBe(413);
    expect(head.headers.connection).toBe("close");
    expect(JSON.parse(conn.body())).toMatchObject({ error: { code: "payload_too_large" } });
    await conn.closed;
  });

  it("keeps a keep-alive connection open after a request it answered with its body read", async () => {
    const { port } = await hookStack();
    const conn = await connect(port);
    const body = JSON.stringify({ text: "hello" });
    conn.socket.write(
      requestHead(port, {
        authorization: `Bearer ${HOOK_TOKEN}`,
        "content-type": "application/json",
        "content-length": String(Buffer.byteLength(body)),
      }) + body,
    );
    const head = await conn.head();
    expect(head.status).toBe(200);
    expect(head.headers.connection).not.toBe("close");
  });
});

describe("hooks: a body that arrives while the gateway stops", () => {
  it("answers 503 and starts no run when the body is complete only once the gateway drains", async () => {
    // The gateway's clock, read when the hook's token is checked: right before the body is read.
    const checked = deferred();
    let armed = false;
    const stack = await hookStack(
      {},
      {
        responses: ["done"],
        now: () => {
          if (armed) checked.resolve();
          return Date.now();
        },
      },
    );
    const conn = await connect(stack.port);
    armed = true;
    const body = JSON.stringify({ message: "run me" });
    conn.socket.write(
      requestHead(stack.port, {
        authorization: `Bearer ${HOOK_TOKEN}`,
        "content-type": "application/json",
        "content-length": String(Buffer.byteLength(body)),
      }).replace("/hooks/wake", "/hooks/agent"),
    );
    conn.socket.write(body.slice(0, 5));
    // The request is admitted and its body is being read: now the gateway stops.
    await checked.promise;
    const stopping = stack.gateway.stop();
    await waitFor("the gateway draining", () => stack.gateway.phase === "draining");
    conn.socket.write(body.slice(5));
    const head = await conn.head();
    await stopping;
    expect(head.status).toBe(503);
    expect(JSON.parse(conn.body())).toMatchObject({ error: { code: "unavailable" } });
    expect(stack.provider.calls.length).toBe(0);
  });
});
