/**
 * A fake Discord gateway: a real WebSocket server on 127.0.0.1 speaking Discord's documented
 * gateway protocol (JSON encoding, v10), for tests.
 *
 * https://discord.com/developers/docs/events/gateway
 * - on connect: HELLO (op 10, `heartbeat_interval`); HEARTBEAT (op 1) is answered with
 *   HEARTBEAT ACK (op 11)
 * - IDENTIFY (op 2): token check (close 4004), privileged intents check (close 4014), then
 *   READY (op 0, `t: "READY"`, with `session_id`, `resume_gateway_url`, `user`) and a
 *   GUILD_CREATE per guild
 * - every dispatch (op 0) carries the session's next sequence number `s`, and is kept so
 *   that a RESUME (op 6) can replay what came after the client's `seq`, then RESUMED
 * - a RESUME of an unknown or ended session gets INVALID SESSION (op 9, `d: false`); a
 *   `seq` ahead of the session closes 4007
 * - a client closing with 1000/1001 ends its session (Discord's rule); any other close, or
 *   a dropped socket, leaves it resumable
 * - tests can drop sockets, send RECONNECT (op 7) and INVALID SESSION (op 9), and stop
 *   acknowledging heartbeats
 */
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { type RawData, type WebSocket, WebSocketServer } from "ws";

/** Gateway opcodes. */
export const Op = {
  Dispatch: 0,
  Heartbeat: 1,
  Identify: 2,
  Resume: 6,
  Reconnect: 7,
  InvalidSession: 9,
  Hello: 10,
  HeartbeatAck: 11,
} as const;

/** MESSAGE_CONTENT, GUILD_MEMBERS, GUILD_PRESENCES. */
const PRIVILEGED_INTENTS = (1 << 15) | (1 << 1) | (1 << 8);

/** One payload as it went over the wire. */
export interface GatewayPayload {
  op: number;
  d: unknown;
  s: number | null;
  t: string | null;
}

/** A gateway session: what a RESUME continues. */
export interface FakeSession {
  id: string;
  seq: number;
  /** Every dispatch of the session, for replays. */
  events: GatewayPayload[];
  socket: WebSocket | null;
  /** Ended (a 1000 close, INVALID SESSION false): it cannot be resumed. */
  ended: boolean;
  intents: number;
  shard: [number, number];
}

export interface FakeGatewayOptions {
  token: string;
  /** The bot user READY announces. */
  user: { id: string; username: string };
  /** Guilds announced by GUILD_CREATE after READY. */
  guilds: () => Array<Record<string, unknown>>;
  /** Default 41 250 ms (Discord's usual value). */
  heartbeatIntervalMs?: number;
  /** Whether the application may use privileged intents (MESSAGE_CONTENT). Default true. */
  privilegedIntents?: boolean;
}

/** What a test can change while the gateway runs. */
export interface FakeGatewayBehaviour {
  /** Answer HEARTBEAT with HEARTBEAT ACK. Default true. */
  ackHeartbeats: boolean;
  /** Answer IDENTIFY and RESUME. Default true (false: a gateway that hangs after HELLO). */
  answerHandshakes: boolean;
  /** The token IDENTIFY and RESUME must carry. */
  token: string;
}

/** What the fake saw a client send, for assertions. */
export interface ClientFrame {
  op: number;
  d: unknown;
}

export class FakeGateway {
  readonly url: string;
  readonly sessions = new Map<string, FakeSession>();
  /** Every frame clients sent, in order. */
  readonly frames: ClientFrame[] = [];
  /** Close codes of client sockets, in order. */
  readonly closeCodes: number[] = [];
  readonly behaviour: FakeGatewayBehaviour;
  readonly #server: WebSocketServer;
  readonly #options: FakeGatewayOptions;
  readonly #sockets = new Set<WebSocket>();
  readonly #sessionOf = new Map<WebSocket, FakeSession>();

  private constructor(server: WebSocketServer, options: FakeGatewayOptions) {
    this.#server = server;
    this.#options = options;
    this.behaviour = { ackHeartbeats: true, answerHandshakes: true, token: options.token };
    const { port } = server.address() as AddressInfo;
    this.url = `ws://127.0.0.1:${port}`;
    server.on("connection", (socket) => this.#connected(socket));
  }

  static async start(options: FakeGatewayOptions): Promise<FakeGateway> {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((resolve, reject) => {
      server.once("listening", resolve);
      server.once("error", reject);
    });
    return new FakeGateway(server, options);
  }

  /** How many IDENTIFY / RESUME frames clients sent. */
  count(op: number): number {
    return this.frames.filter((f) => f.op === op).length;
  }

  /** Sockets open now. */
  get connections(): number {
    return this.#sockets.size;
  }

  /** Sessions that can still receive events (connected, or resumable). */
  liveSessions(): FakeSession[] {
    return [...this.sessions.values()].filter((s) => !s.ended);
  }

  /** A session with an open socket (identified or resumed). */
  connectedSession(): FakeSession | undefined {
    return this.liveSessions().find(
      (s) => s.socket !== null && s.socket.readyState === s.socket.OPEN,
    );
  }

  /**
   * Dispatches an event to every live session: sent now to a connected one, kept for the
   * replay of a disconnected one. Returns how many sessions got it.
   */
  dispatch(t: string, d: unknown): number {
    const live = this.liveSessions();
    for (const session of live) this.#dispatchTo(session, t, d);
    return live.length;
  }

  /** Drops every client socket without a close frame (as a network failure would). */
  drop(): void {
    for (const socket of this.#sockets) socket.terminate();
  }

  /** Closes every client socket with a close frame carrying `code`. */
  closeWith(code: number, reason = ""): void {
    for (const socket of this.#sockets) socket.close(code, reason);
  }

  /** Sends RECONNECT (op 7): the client should reconnect and resume. */
  requestReconnect(): void {
    for (const socket of this.#sockets)
      this.#send(socket, { op: Op.Reconnect, d: null, s: null, t: null });
  }

  /** Sends INVALID SESSION (op 9) to every client; `resumable: false` ends their sessions. */
  invalidateSessions(resumable: boolean): void {
    for (const socket of this.#sockets) {
      const session = this.#sessionOf.get(socket);
      if (session !== undefined && !resumable) session.ended = true;
      this.#send(socket, { op: Op.InvalidSession, d: resumable, s: null, t: null });
    }
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.terminate();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ------------------------------------------------------------------ protocol

  #connected(socket: WebSocket): void {
    this.#sockets.add(socket);
    socket.on("message", (data) => this.#received(socket, data));
    socket.on("close", (code) => {
      this.#sockets.delete(socket);
      this.closeCodes.push(code);
      const session = this.#sessionOf.get(socket);
      this.#sessionOf.delete(socket);
      if (session === undefined) return;
      if (session.socket === socket) session.socket = null;
      // A client closing with 1000 or 1001 ends its session; anything else may resume.
      if (code === 1000 || code === 1001) session.ended = true;
    });
    socket.on("error", () => undefined);
    this.#send(socket, {
      op: Op.Hello,
      d: { heartbeat_interval: this.#options.heartbeatIntervalMs ?? 41_250 },
      s: null,
      t: null,
    });
  }

  #received(socket: WebSocket, data: RawData): void {
    let frame: ClientFrame;
    try {
      frame = JSON.parse(data.toString()) as ClientFrame;
    } catch {
      socket.close(4002, "Error while decoding payload.");
      return;
    }
    this.frames.push({ op: frame.op, d: frame.d });
    switch (frame.op) {
      case Op.Heartbeat:
        if (this.behaviour.ackHeartbeats)
          this.#send(socket, { op: Op.HeartbeatAck, d: null, s: null, t: null });
        return;
      case Op.Identify:
        if (!this.behaviour.answerHandshakes) return;
        this.#identify(socket, frame.d as Record<string, unknown>);
        return;
      case Op.Resume:
        if (!this.behaviour.answerHandshakes) return;
        this.#resume(socket, frame.d as Record<string, unknown>);
        return;
      default:
        return;
    }
  }

  #identify(socket: WebSocket, d: Record<string, unknown>): void {
    if (this.#sessionOf.has(socket)) {
      socket.close(4005, "Already authenticated.");
      return;
    }
    if (d.token !== this.behaviour.token) {
      socket.close(4004, "Authentication failed.");
      return;
    }
    const intents = typeof d.intents === "number" ? d.intents : -1;
    if (intents < 0 || intents >= 1 << 26) {
      socket.close(4013, "Invalid intent(s).");
      return;
    }
    if (this.#options.privilegedIntents === false && (intents & PRIVILEGED_INTENTS) !== 0) {
      socket.close(4014, "Disallowed intent(s).");
      return;
    }
    const shard = (Array.isArray(d.shard) ? d.shard : [0, 1]) as [number, number];
    const session: FakeSession = {
      id: randomBytes(16).toString("hex"),
      seq: 0,
      events: [],
      socket,
      ended: false,
      intents,
      shard,
    };
    this.sessions.set(session.id, session);
    this.#sessionOf.set(socket, session);
    const guilds = this.#options.guilds();
    this.#dispatchTo(session, "READY", {
      v: 10,
      user: {
        id: this.#options.user.id,
        username: this.#options.user.username,
        discriminator: "0",
        global_name: null,
        avatar: null,
        bot: true,
        verified: true,
        flags: 0,
      },
      guilds: guilds.map((g) => ({ id: g.id, unavailable: true })),
      session_id: session.id,
      resume_gateway_url: this.url,
      shard,
      application: { id: this.#options.user.id, flags: 0 },
    });
    for (const guild of guilds) this.#dispatchTo(session, "GUILD_CREATE", guild);
  }

  #resume(socket: WebSocket, d: Record<string, unknown>): void {
    if (d.token !== this.behaviour.token) {
      socket.close(4004, "Authentication failed.");
      return;
    }
    const session = typeof d.session_id === "string" ? this.sessions.get(d.session_id) : undefined;
    if (session === undefined || session.ended) {
      this.#send(socket, { op: Op.InvalidSession, d: false, s: null, t: null });
      return;
    }
    const seq = typeof d.seq === "number" ? d.seq : 0;
    if (seq > session.seq) {
      socket.close(4007, "Invalid seq.");
      return;
    }
    // Only one socket per session: a stale one is cut.
    if (session.socket !== null && session.socket !== socket) session.socket.terminate();
    session.socket = socket;
    this.#sessionOf.set(socket, session);
    for (const event of session.events) {
      if ((event.s ?? 0) > seq) this.#send(socket, event);
    }
    // RESUMED takes a sequence number but is not an event to replay.
    session.seq++;
    this.#send(socket, { op: Op.Dispatch, t: "RESUMED", s: session.seq, d: { _trace: ["fake"] } });
  }

  #dispatchTo(session: FakeSession, t: string, d: unknown): void {
    session.seq++;
    const payload: GatewayPayload = { op: Op.Dispatch, t, s: session.seq, d };
    session.events.push(payload);
    if (session.socket !== null) this.#send(session.socket, payload);
  }

  #send(socket: WebSocket, payload: GatewayPayload): void {
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(payload));
  }
}
