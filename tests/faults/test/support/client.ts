/**
 * A client of the gateway's WebSocket protocol (OpenClaw v4) over a real socket: `connect`
 * with the token, requests, and every event kept in order. Failed requests reject with
 * {@link RpcError}, which carries the protocol's error shape.
 */
import WebSocket from "ws";

/** A request the gateway answered with `ok: false`. */
export class RpcError extends Error {
  readonly code: string;
  readonly details: { code?: string; reason?: string } | undefined;
  readonly retryable: boolean | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(error: {
    code: string;
    message: string;
    details?: { code?: string; reason?: string };
    retryable?: boolean;
    retryAfterMs?: number;
  }) {
    super(error.message);
    this.code = error.code;
    this.details = error.details;
    this.retryable = error.retryable;
    this.retryAfterMs = error.retryAfterMs;
  }
}

// biome-ignore lint/suspicious/noExplicitAny: wire payloads
export type Wire = any;
export interface EventFrame {
  event: string;
  payload: Wire;
}

const open = new Set<WebSocket>();

/** Terminates every client socket still open (call from `afterEach`). */
export async function closeAllClients(): Promise<void> {
  await Promise.all(
    [...open].map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once("close", () => resolve());
          ws.terminate();
        }),
    ),
  );
  open.clear();
}

export class GatewayClient {
  readonly events: EventFrame[] = [];
  readonly closed: Promise<number>;
  readonly #ws: WebSocket;
  readonly #pending = new Map<string, { resolve(v: Wire): void; reject(e: unknown): void }>();
  #next = 0;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    open.add(ws);
    this.closed = new Promise((resolve) =>
      ws.once("close", (code) => {
        open.delete(ws);
        for (const p of this.#pending.values())
          p.reject(new RpcError({ code: "CLOSED", message: `connection closed (${code})` }));
        this.#pending.clear();
        resolve(code);
      }),
    );
    ws.on("error", () => undefined);
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as Wire;
      if (frame.type === "event") this.events.push({ event: frame.event, payload: frame.payload });
      else if (frame.type === "res") {
        const p = this.#pending.get(frame.id);
        if (p === undefined) return;
        this.#pending.delete(frame.id);
        if (frame.ok) p.resolve(frame.payload);
        else p.reject(new RpcError(frame.error));
      }
    });
  }

  /** Connects and completes the handshake with the token (all operator scopes). */
  static async connect(url: string, token: string): Promise<GatewayClient> {
    const ws = new WebSocket(url);
    const client = new GatewayClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    await client.waitEvent("connect.challenge", () => true, 5_000);
    await client.request("connect", {
      minProtocol: 4,
      maxProtocol: 4,
      client: { id: "test", version: "1.0.0", platform: "linux", mode: "test" },
      role: "operator",
      scopes: ["operator.read", "operator.write", "operator.admin", "operator.approvals"],
      caps: [],
      auth: { token },
    });
    return client;
  }

  request(method: string, params: unknown = {}): Promise<Wire> {
    const id = `r${++this.#next}`;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ type: "req", id, method, params }));
    });
  }

  /** An event already received or still to come that matches, within `timeoutMs`. */
  async waitEvent(
    event: string,
    predicate: (payload: Wire) => boolean = () => true,
    timeoutMs = 15_000,
  ): Promise<EventFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find((e) => e.event === event && predicate(e.payload));
      if (found !== undefined) return found;
      if (Date.now() > deadline)
        throw new Error(`no ${event} event within ${timeoutMs} ms matched`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** The end of a chat run: its `final`, `error` or `aborted` event. */
  chatEnd(runId: string, timeoutMs = 15_000): Promise<EventFrame> {
    return this.waitEvent(
      "chat",
      (p) => p.runId === runId && ["final", "error", "aborted"].includes(p.state),
      timeoutMs,
    );
  }

  /** Drops the connection without a close handshake (a client that vanishes). */
  terminate(): Promise<number> {
    this.#ws.terminate();
    return this.closed;
  }

  close(): Promise<number> {
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.close(1000);
    return this.closed;
  }
}

/** The error a request fails with; throws if it succeeds. */
export async function rpcError(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof RpcError) return error;
    throw error;
  }
  throw new Error("expected the request to fail, but it succeeded");
}

/** Polls `probe` until it returns something truthy, within `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | null | Promise<T | undefined | false | null>,
  timeoutMs = 15_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false && value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
