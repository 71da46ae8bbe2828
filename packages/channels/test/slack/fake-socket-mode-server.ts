/**
 * A fake Slack Socket Mode endpoint: a `ws` server on 127.0.0.1 speaking Slack's Socket Mode
 * protocol (https://docs.slack.dev/apis/events-api/using-socket-mode): `hello` on connect,
 * `events_api` envelopes, acknowledgements by `envelope_id`, `disconnect` messages. Like
 * Slack, it keeps every event until one of its deliveries is acknowledged and redelivers the
 * unacknowledged ones, oldest first, on the next connection (`retry_attempt` counting up).
 */
import type { AddressInfo } from "node:net";
import { type WebSocket, WebSocketServer } from "ws";
import { FAKE_APP_ID } from "./fake-slack-api.js";

/** An `event_callback` payload: what an `events_api` envelope carries. */
export type EventCallback = Record<string, unknown> & { event_id: string };

/** A close handshake held by {@link FakeSocketModeServer.holdCloseHandshake}. */
export interface CloseHandshakeHold {
  /** Whether the client's close frame came. */
  isReceived: boolean;
  /** Resolves once the client's close frame came. */
  readonly received: Promise<void>;
  /** Answers the close frame (at once if it came, else when it comes). */
  release(): void;
}

interface PendingEvent {
  payload: EventCallback;
  deliveries: number;
}

export class FakeSocketModeServer {
  readonly #wss: WebSocketServer;
  readonly #port: number;
  /** Events not yet acknowledged, in the order they first came. */
  readonly #pending: PendingEvent[] = [];
  /** envelope_id → event_id of every delivery. */
  readonly #envelopes = new Map<string, string>();
  readonly #acked = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #current: WebSocket | undefined;
  #envelopeCounter = 0;
  /** Connections opened so far. */
  connections = 0;
  /** Acknowledgements received, including late and repeated ones. */
  acks = 0;
  /** Sends every frame to the client here too (for assertions). */
  readonly frames: Array<Record<string, unknown>> = [];

  private constructor(wss: WebSocketServer) {
    this.#wss = wss;
    this.#port = (wss.address() as AddressInfo).port;
    wss.on("connection", (ws) => this.#onConnection(ws));
  }

  static async start(): Promise<FakeSocketModeServer> {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((resolve, reject) => {
      wss.once("listening", resolve);
      wss.once("error", reject);
    });
    return new FakeSocketModeServer(wss);
  }

  /** A fresh URL, as `apps.connections.open` hands out. */
  url(): string {
    return `ws://127.0.0.1:${this.#port}/link/?ticket=${this.connections + 1}-${Date.now()}&app_id=${FAKE_APP_ID}`;
  }

  /** Whether a client is connected and greeted. */
  get connected(): boolean {
    return this.#current !== undefined && this.#current.readyState === this.#current.OPEN;
  }

  /** Events not acknowledged yet. */
  get outstanding(): number {
    return this.#pending.length;
  }

  isAcked(eventId: string): boolean {
    return this.#acked.has(eventId);
  }

  /**
   * Delivers an event: at once on the current connection, or on the next one. An event that
   * is still pending (or was acknowledged) is delivered again as a retry, the way Slack
   * retries an envelope it got no acknowledgement for.
   */
  deliver(payload: EventCallback): void {
    let pending = this.#pending.find((p) => p.payload.event_id === payload.event_id);
    if (pending === undefined) {
      pending = { payload, deliveries: 0 };
      if (!this.#acked.has(payload.event_id)) this.#pending.push(pending);
    }
    if (this.#current !== undefined) this.#send(this.#current, pending);
  }

  /**
   * Sends a raw frame on the current connection, as it is (a malformed one, for tests of
   * what the client does with frames Slack's protocol does not allow). False when no client
   * is connected.
   */
  sendRaw(data: string | Buffer, options: { binary?: boolean } = {}): boolean {
    const ws = this.#current;
    if (ws === undefined || ws.readyState !== ws.OPEN) return false;
    ws.send(data, { binary: options.binary ?? false });
    return true;
  }

  /** Sends every pending event again on the current connection (Slack's 3-second retry). */
  redeliverPending(): void {
    const current = this.#current;
    if (current === undefined) return;
    for (const pending of [...this.#pending]) this.#send(current, pending);
  }

  /**
   * Slack asks the client to reconnect; it closes the socket itself if the client does not.
   * New envelopes wait for the next connection.
   */
  requestRefresh(reason = "refresh_requested"): void {
    const ws = this.#current;
    if (ws === undefined) return;
    this.#current = undefined;
    this.#frame(ws, { type: "disconnect", reason, debug_info: { host: "applink-fake-1" } });
    this.#later(10_000, () => ws.terminate());
  }

  /** Drops the connection without a close handshake (a network failure). */
  drop(): void {
    const ws = this.#current;
    this.#current = undefined;
    ws?.terminate();
  }

  /**
   * Holds the close handshake of the current connection: the close frame the client sends is
   * not answered (so the client's close does not complete) until `release()`. `received`
   * resolves once the client's close frame came.
   */
  holdCloseHandshake(): CloseHandshakeHold {
    const ws = this.#current;
    if (ws === undefined) throw new Error("no Socket Mode client connected");
    const answer = ws.close.bind(ws);
    let pending: (() => void) | undefined;
    let released = false;
    let received!: () => void;
    const hold: CloseHandshakeHold = {
      isReceived: false,
      received: new Promise<void>((resolve) => {
        received = resolve;
      }),
      release() {
        released = true;
        pending?.();
      },
    };
    // `ws` answers a close frame by calling `close` on its own side: that call waits.
    ws.close = (code?: number, reason?: string | Buffer) => {
      pending = () => answer(code, reason);
      hold.isReceived = true;
      received();
      if (released) pending();
    };
    return hold;
  }

  /** Waits until the next client connection is greeted (or is already). */
  async waitForConnection(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.connected) {
      if (Date.now() > deadline) throw new Error("no Socket Mode client connected");
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const ws of this.#wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  #later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      run();
    }, ms);
    this.#timers.add(timer);
  }

  #onConnection(ws: WebSocket): void {
    this.connections++;
    this.#current = ws;
    ws.on("message", (data) => {
      let message: { envelope_id?: unknown };
      try {
        message = JSON.parse(String(data)) as { envelope_id?: unknown };
      } catch {
        return;
      }
      if (typeof message.envelope_id !== "string") return;
      this.acks++;
      const eventId = this.#envelopes.get(message.envelope_id);
      if (eventId === undefined) return;
      this.#acked.add(eventId);
      const index = this.#pending.findIndex((p) => p.payload.event_id === eventId);
      if (index >= 0) this.#pending.splice(index, 1);
    });
    ws.on("close", () => {
      if (this.#current === ws) this.#current = undefined;
    });
    ws.on("error", () => undefined);
    this.#frame(ws, {
      type: "hello",
      num_connections: this.#wss.clients.size,
      debug_info: { host: "applink-fake-1", build_number: 105, approximate_connection_time: 18060 },
      connection_info: { app_id: FAKE_APP_ID },
    });
    // Slack redelivers what was never acknowledged.
    for (const pending of [...this.#pending]) this.#send(ws, pending);
  }

  #send(ws: WebSocket, pending: PendingEvent): void {
    const envelopeId = `env-${++this.#envelopeCounter}-${pending.payload.event_id}`;
    this.#envelopes.set(envelopeId, pending.payload.event_id);
    const retry = pending.deliveries;
    pending.deliveries++;
    this.#frame(ws, {
      envelope_id: envelopeId,
      payload: pending.payload,
      type: "events_api",
      accepts_response_payload: false,
      retry_attempt: retry,
      retry_reason: retry === 0 ? "" : "timeout",
    });
  }

  #frame(ws: WebSocket, frame: Record<string, unknown>): void {
    this.frames.push(frame);
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
  }
}
