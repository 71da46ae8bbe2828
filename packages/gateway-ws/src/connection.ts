/**
 * One client's WebSocket: the `connect.challenge`, the handshake and its timeout, frame
 * checks, the per-connection request rate limit, event sequence numbers, and the outbound
 * buffer limit that disconnects a slow consumer instead of growing memory.
 */
import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { RawData, WebSocket } from "ws";
import type { DeviceStanding } from "./auth/device-watch.js";
import {
  authenticateConnect,
  changedDeviceRefusal,
  FAILED_LOGIN_CODES,
  HandshakeRefusal,
  staleDeviceRefusal,
} from "./auth/handshake.js";
import type { PairedDevice } from "./auth/pairing.js";
import { authRateLimiterOf, isLoopbackRequest } from "./auth/rate-limit.js";
import { SetupCodes } from "./auth/setup-codes.js";
import { GATEWAY_EVENTS, type GatewayHub, type PresenceEntry } from "./hub.js";
import { decodeUtf8, loneSurrogateProblem } from "./json-text.js";
import { attachmentPolicy } from "./methods/session-helpers.js";
import type { CallerInfo } from "./methods/types.js";
import { type ClientInfo, type ConnectParams, parseConnectParams } from "./protocol/connect.js";
import {
  CloseCodes,
  ErrorCodes,
  type GatewayRole,
  MIN_PROTOCOL_VERSION,
  PRE_HANDSHAKE_MAX_BYTES,
  PROTOCOL_VERSION,
  Scopes,
} from "./protocol/constants.js";
import { type ErrorShape, GatewayError, toErrorShape } from "./protocol/errors.js";
import { MAX_WAITS_PER_CONNECTION } from "./runs.js";

/** What happened to a connection, for `onConnectionClose`. */
export interface ConnectionCloseInfo {
  connId: string;
  code: number;
  reason: string;
  /** The largest outbound buffer the connection ever had, in bytes. */
  peakBufferedBytes: number;
  /**
   * Events not sent: dropped because the client read too slowly (tick, presence, health), or
   * larger on their own than `maxBufferedBytes`.
   */
  droppedEvents: number;
  role: GatewayRole;
  deviceId: string | undefined;
}

const REQUEST_KEYS = new Set(["type", "id", "method", "params", "traceparent"]);
const CLOSE_GRACE_MS = 2_000;

function rawLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data instanceof ArrayBuffer ? data.byteLength : data.length;
}

/** A frame's text. `ws` checks text frames are UTF-8; a binary frame is checked here. */
function rawText(data: RawData): string {
  if (Array.isArray(data)) return decodeUtf8(Buffer.concat(data));
  return decodeUtf8(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
}

/** See the module comment. */
export class GatewayConnection {
  readonly connId = randomUUID();
  /** The challenge this connection's device signature must carry. */
  readonly nonce = randomUUID();
  /** The client's address: the socket's peer, or through a trusted proxy the client it names. */
  readonly remoteAddress: string | undefined;
  readonly isLoopback: boolean;
  /** The URL this client reached the gateway at (scheme and `Host` of its upgrade request). */
  readonly gatewayUrl: string | undefined;
  role: GatewayRole = "operator";
  scopes: ReadonlySet<string> = new Set();
  client: ClientInfo | undefined;
  deviceId: string | undefined;
  authMethod = "none";
  /** What its device authenticated with, re-checked against the store (see `DeviceWatch`). */
  deviceStanding: DeviceStanding | undefined;
  protocol = PROTOCOL_VERSION;
  sessionsSubscribed = false;
  /** Sessions whose new messages it is sent (`sessions.messages.subscribe`). */
  readonly followedSessions = new Set<string>();
  readonly #socket: WebSocket;
  /**
   * The stream under the WebSocket (TCP or TLS), corked from the first frame of an event-loop
   * turn until the check phase of that turn, so that every frame sent meanwhile leaves in one
   * write (see {@link GatewayConnection.#cork}).
   */
  readonly #stream: Duplex;
  #corked = false;
  readonly #uncork = () => {
    this.#corked = false;
    // An ended or destroyed stream has already let its buffer go (`end()` uncorks).
    if (!this.#stream.destroyed && this.#stream.writableCorked > 0) this.#stream.uncork();
  };
  readonly #hub: GatewayHub;
  readonly #abort = new AbortController();
  #state: "handshake" | "authenticating" | "open" | "closing" | "closed" = "handshake";
  #seq = 0;
  #peakBuffered = 0;
  #dropped = 0;
  #tokens: number;
  #refilledAt: number;
  #handshakeTimer: NodeJS.Timeout | undefined;
  #graceTimer: NodeJS.Timeout | undefined;
  #presenceKey: string | undefined;
  /**
   * The ids of this connection's requests not answered yet: a request reusing one is refused
   * (`DUPLICATE_REQUEST_ID`) rather than run a second time under an id that already names one.
   */
  readonly #inFlight = new Set<string>();
  readonly #onClose: (info: ConnectionCloseInfo) => void;

  constructor(options: {
    socket: WebSocket;
    /** The stream `ws` writes the WebSocket's frames to (the upgrade's socket). */
    stream: Duplex;
    request: IncomingMessage;
    hub: GatewayHub;
    onClose: (info: ConnectionCloseInfo) => void;
  }) {
    this.#socket = options.socket;
    this.#stream = options.stream;
    this.#hub = options.hub;
    this.#onClose = options.onClose;
    // Through a trusted reverse proxy, the client it forwards for (`trustedProxies`).
    this.remoteAddress = options.hub.trustedProxies.clientAddress(options.request);
    this.isLoopback = isLoopbackRequest(options.request);
    const host = options.request.headers.host;
    const secure = (options.request.socket as { encrypted?: boolean }).encrypted === true;
    this.gatewayUrl =
      typeof host === "string" && /^[\w.:[\]-]+$/.test(host)
        ? `${secure ? "wss" : "ws"}://${host}`
        : undefined;
    this.#tokens = options.hub.limits.requestBurst;
    this.#refilledAt = options.hub.now();
    // Every wait (up to MAX_WAITS_PER_CONNECTION) and every call in flight (about a burst's
    // worth) listens to this signal: past Node's default of 10 that is by design, not a leak.
    setMaxListeners(MAX_WAITS_PER_CONNECTION + options.hub.limits.requestBurst, this.#abort.signal);
    const socket = this.#socket;
    socket.on("message", (data, isBinary) => this.#onMessage(data, isBinary));
    socket.on("close", (code, reason) => this.#closed(code, reason.toString("utf8")));
    socket.on("error", (error) => {
      this.#hub.log.warn(`connection ${this.connId} error: ${error.message}`);
      this.close(CloseCodes.INTERNAL_ERROR, "socket error");
    });
    this.#handshakeTimer = setTimeout(() => {
      if (this.#state === "handshake" || this.#state === "authenticating") {
        this.#hub.log.warn(`handshake timeout conn=${this.connId} remote=${this.remoteAddress}`);
        this.close(CloseCodes.POLICY_VIOLATION, "handshake timeout");
      }
    }, options.hub.limits.handshakeTimeoutMs);
    this.#sendFrame({
      type: "event",
      event: "connect.challenge",
      payload: { nonce: this.nonce, ts: options.hub.now() },
      seq: this.#seq,
    });
  }

  /** True after a successful `connect`, until the connection starts closing. */
  get isOpen(): boolean {
    return this.#state === "open";
  }

  /** Aborts when the connection closes (for long waits on its behalf). */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  caller(): CallerInfo {
    const client = this.client ?? {
      id: "unknown",
      version: "0",
      platform: "unknown",
      mode: "unknown",
    };
    return {
      connId: this.connId,
      role: this.role,
      scopes: this.scopes,
      client: {
        id: client.id,
        version: client.version,
        platform: client.platform,
        mode: client.mode,
        ...(client.displayName === undefined ? {} : { displayName: client.displayName }),
        ...(client.instanceId === undefined ? {} : { instanceId: client.instanceId }),
      },
      deviceId: this.deviceId,
      authMethod: this.authMethod,
      isLoopback: this.isLoopback,
      ...(this.gatewayUrl === undefined ? {} : { gatewayUrl: this.gatewayUrl }),
    };
  }

  /**
   * Sends an event with the next sequence number. A frame that would push the outbound buffer
   * past `maxBufferedBytes` disconnects the client (code 1008, "slow consumer"), or is
   * dropped when `dropIfSlow`; a frame larger on its own than `maxBufferedBytes` is never
   * sent (logged; the client is not disconnected). A dropped event still uses its sequence
   * number, so the client sees the gap.
   */
  sendEvent(
    event: string,
    payload: unknown,
    options: { dropIfSlow?: boolean; stateVersion?: { presence: number; health: number } } = {},
  ): boolean {
    if (this.#state !== "open") return false;
    let payloadJson: string | undefined;
    try {
      payloadJson = JSON.stringify(payload);
    } catch (error) {
      this.#hub.log.error(`unserializable frame: ${(error as Error).message}`);
      return false;
    }
    return this.sendEventJson(event, payloadJson, options);
  }

  /**
   * {@link sendEvent} with the payload already serialized (`JSON.stringify(payload)`, or
   * `undefined` for none): a broadcast serializes a payload once for every connection. The
   * frame is the same text `JSON.stringify` makes of `{ type, event, payload, seq,
   * stateVersion }`.
   */
  sendEventJson(
    event: string,
    payloadJson: string | undefined,
    options: { dropIfSlow?: boolean; stateVersion?: { presence: number; health: number } } = {},
  ): boolean {
    if (this.#state !== "open") return false;
    const seq = ++this.#seq;
    const text =
      `{"type":"event","event":${JSON.stringify(event)}` +
      (payloadJson === undefined ? "" : `,"payload":${payloadJson}`) +
      `,"seq":${seq}` +
      (options.stateVersion === undefined
        ? ""
        : `,"stateVersion":${JSON.stringify(options.stateVersion)}`) +
      "}";
    return this.#sendText(text, options.dropIfSlow === true);
  }

  /**
   * Answers a request. An answer larger on its own than `maxBufferedBytes` is replaced by an
   * `INVALID_REQUEST` with `details.code` `RESPONSE_TOO_LARGE` (ask for less: a `limit`, a
   * `maxChars`): it says nothing of how fast the client reads, so it does not disconnect it.
   * An answer JSON cannot hold (a plugin method that returned a BigInt or a cycle) is replaced
   * by an `UNAVAILABLE` with `details.code` `UNSERIALIZABLE_RESPONSE`, and logged.
   */
  respond(id: string, ok: boolean, payload?: unknown, error?: ErrorShape): void {
    if (this.#state === "closing" || this.#state === "closed") return;
    let text: string;
    try {
      text = JSON.stringify({
        type: "res",
        id,
        ok,
        ...(ok
          ? payload === undefined
            ? {}
            : { payload }
          : { error: error ?? toErrorShape(error) }),
      });
    } catch (cause) {
      // A method's answer JSON cannot hold (a BigInt, a cycle): the caller is told, rather
      // than left waiting for an answer that never comes.
      const why = cause instanceof Error ? cause.message : String(cause);
      this.#hub.log.error(`unserializable response to request ${id} conn=${this.connId}: ${why}`);
      this.#sendFrame({
        type: "res",
        id,
        ok: false,
        error: {
          code: ErrorCodes.UNAVAILABLE,
          message: `the answer could not be sent as JSON: ${why}`,
          details: { code: "UNSERIALIZABLE_RESPONSE" },
        },
      });
      return;
    }
    const bytes = Buffer.byteLength(text, "utf8");
    const maxBytes = this.#hub.limits.maxBufferedBytes;
    if (bytes > maxBytes) {
      this.#hub.log.warn(
        `response of ${bytes} bytes refused conn=${this.connId}: over maxBufferedBytes ${maxBytes}`,
      );
      this.#sendFrame({
        type: "res",
        id,
        ok: false,
        error: {
          code: ErrorCodes.INVALID_REQUEST,
          message: `the answer is ${bytes} bytes, more than the ${maxBytes} a connection may buffer; ask for less (a smaller limit or maxChars)`,
          details: { code: "RESPONSE_TOO_LARGE", bytes, maxBytes },
        },
      });
      return;
    }
    this.#sendText(text, false);
  }

  /** Closes the connection (a close frame, then the socket is cut after a grace period). */
  close(code: number, reason: string): void {
    if (this.#state === "closing" || this.#state === "closed") return;
    this.#state = "closing";
    clearTimeout(this.#handshakeTimer);
    this.#abort.abort();
    try {
      this.#socket.close(code, reason);
    } catch {
      this.#socket.terminate();
    }
    // A client that does not read never answers the close frame: cut it.
    this.#graceTimer = setTimeout(() => this.#socket.terminate(), CLOSE_GRACE_MS);
  }

  /** Cuts the socket now (stop with no grace left). */
  terminate(): void {
    this.#socket.terminate();
  }

  #sendFrame(frame: Record<string, unknown>, dropIfSlow = false): boolean {
    if (this.#state === "closing" || this.#state === "closed") return false;
    let text: string;
    try {
      text = JSON.stringify(frame);
    } catch (error) {
      this.#hub.log.error(`unserializable frame: ${(error as Error).message}`);
      return false;
    }
    return this.#sendText(text, dropIfSlow);
  }

  #sendText(text: string, dropIfSlow: boolean): boolean {
    if (this.#state === "closing" || this.#state === "closed") return false;
    const bytes = Buffer.byteLength(text, "utf8");
    const maxBytes = this.#hub.limits.maxBufferedBytes;
    if (bytes > maxBytes) {
      // Larger on its own than the whole buffer: it says nothing of how fast the client
      // reads, so it is not sent rather than disconnecting a client that keeps up. An event
      // keeps its sequence number, so the client sees the gap (and reloads what it missed).
      this.#dropped++;
      this.#hub.log.warn(
        `frame of ${bytes} bytes not sent conn=${this.connId}: over maxBufferedBytes ${maxBytes}`,
      );
      return false;
    }
    if (this.#socket.bufferedAmount + bytes > maxBytes) {
      if (dropIfSlow) {
        this.#dropped++;
        return false;
      }
      this.#hub.log.warn(
        `slow consumer conn=${this.connId}: outbound buffer over ${this.#hub.limits.maxBufferedBytes} bytes`,
      );
      this.close(CloseCodes.POLICY_VIOLATION, "slow consumer");
      return false;
    }
    this.#cork();
    this.#socket.send(text);
    this.#peakBuffered = Math.max(this.#peakBuffered, this.#socket.bufferedAmount);
    return true;
  }

  /**
   * Holds this turn's frames back until its check phase, so that they leave in one write.
   *
   * A streamed reply sends a client several frames at a time (a text delta is a `chat` and an
   * `agent` event; a tool call, its events and the run's), and `ws` writes each frame as it is
   * sent: one system call each, the gateway's largest cost under load (a loopback write, where
   * the kernel also runs the receiver's side of TCP, costs more than making the frame). With
   * the stream corked until `setImmediate`, a turn's frames to one client cost one write; no
   * frame waits longer than the rest of the event-loop turn that sent it. Buffered bytes still
   * count toward `bufferedAmount`, so the slow-consumer limit is unchanged.
   */
  #cork(): void {
    if (this.#corked || this.#stream.destroyed || !this.#stream.writable) return;
    this.#corked = true;
    this.#stream.cork();
    setImmediate(this.#uncork);
  }

  #onMessage(data: RawData, _isBinary: boolean): void {
    if (this.#state === "closing" || this.#state === "closed") return;
    const size = rawLength(data);
    if (this.#state !== "open" && size > PRE_HANDSHAKE_MAX_BYTES) {
      this.close(CloseCodes.MESSAGE_TOO_BIG, "frame over the 64 KiB pre-handshake limit");
      return;
    }
    let text: string;
    try {
      text = rawText(data);
    } catch {
      this.#reject(undefined, "invalid request frame: not UTF-8");
      return;
    }
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      this.#reject(undefined, "invalid request frame: not JSON");
      return;
    }
    const f = frame as Record<string, unknown> | null;
    const id = typeof f?.id === "string" && f.id.length > 0 ? f.id : undefined;
    const surrogate = loneSurrogateProblem(frame, text);
    const problem =
      typeof f !== "object" || f === null || Array.isArray(f)
        ? "a frame must be a JSON object"
        : surrogate !== undefined
          ? surrogate
          : f.type !== "req"
            ? 'only "req" frames may be sent to the gateway'
            : id === undefined
              ? "id must be a non-empty string"
              : typeof f.method !== "string" || f.method.length === 0
                ? "method must be a non-empty string"
                : Object.keys(f).find((k) => !REQUEST_KEYS.has(k)) !== undefined
                  ? `unknown frame field "${Object.keys(f).find((k) => !REQUEST_KEYS.has(k))}"`
                  : undefined;
    if (problem !== undefined) {
      this.#reject(id, `invalid request frame: ${problem}`);
      return;
    }
    const request = f as { id: string; method: string; params?: unknown; traceparent?: unknown };
    if (this.#state === "handshake") {
      if (request.method !== "connect") {
        this.#reject(id, "invalid handshake: the first request must be connect");
        return;
      }
      this.#state = "authenticating";
      void this.#handshake(request).catch((error) => {
        this.#hub.log.error(`handshake failed conn=${this.connId}: ${(error as Error).message}`);
        this.respond(request.id, false, undefined, toErrorShape(error));
        this.close(CloseCodes.INTERNAL_ERROR, "handshake failed");
      });
      return;
    }
    if (this.#state === "authenticating") {
      this.respond(request.id, false, undefined, {
        code: ErrorCodes.INVALID_REQUEST,
        message: "the handshake is still in progress",
      });
      return;
    }
    if (!this.#take()) {
      const retryAfterMs = Math.ceil(
        ((1 - this.#tokens) * 1000) / this.#hub.limits.requestsPerSecond,
      );
      this.respond(request.id, false, undefined, {
        code: ErrorCodes.UNAVAILABLE,
        message: `rate limit: at most ${rateText(this.#hub.limits.requestsPerSecond)}`,
        details: { code: "RATE_LIMITED", limit: this.#hub.limits.requestsPerSecond },
        retryable: true,
        retryAfterMs: Math.max(1, retryAfterMs),
      });
      return;
    }
    if (request.method === "connect") {
      this.respond(request.id, false, undefined, {
        code: ErrorCodes.INVALID_REQUEST,
        message: "already connected",
      });
      return;
    }
    if (this.#inFlight.has(request.id)) {
      this.respond(request.id, false, undefined, {
        code: ErrorCodes.INVALID_REQUEST,
        message: `request id "${request.id.slice(0, 200)}" is already in use by a request not answered yet; give each request its own id`,
        details: { code: "DUPLICATE_REQUEST_ID" },
      });
      return;
    }
    this.#inFlight.add(request.id);
    void this.#hub.dispatch(this, request).finally(() => this.#inFlight.delete(request.id));
  }

  /** Refuses a bad frame: before the handshake it also closes the connection. */
  #reject(id: string | undefined, message: string): void {
    const shape = { code: ErrorCodes.INVALID_REQUEST, message };
    if (this.#state === "open" || this.#state === "authenticating") {
      this.respond(id ?? "invalid", false, undefined, shape);
      return;
    }
    if (id !== undefined) this.respond(id, false, undefined, shape);
    this.close(CloseCodes.POLICY_VIOLATION, message.slice(0, 120));
  }

  #take(): boolean {
    const now = this.#hub.now();
    const { requestsPerSecond, requestBurst } = this.#hub.limits;
    this.#tokens = Math.min(
      requestBurst,
      this.#tokens + ((now - this.#refilledAt) * requestsPerSecond) / 1000,
    );
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  async #handshake(request: { id: string; params?: unknown }): Promise<void> {
    const hub = this.#hub;
    const limiter = authRateLimiterOf(hub.auth, hub.now);
    const gate = limiter?.check(this.remoteAddress, this.isLoopback) ?? { allowed: true };
    if (!gate.allowed) {
      hub.log.warn(
        `connect refused conn=${this.connId} remote=${this.remoteAddress}: locked out after failed logins`,
      );
      this.respond(
        request.id,
        false,
        undefined,
        new GatewayError(
          ErrorCodes.UNAVAILABLE,
          "unauthorized: too many failed authentication attempts (retry later)",
          {
            details: {
              code: "AUTH_RATE_LIMITED",
              retryAfterMs: Math.ceil(gate.retryAfterMs),
              recommendedNextStep: "wait_then_retry",
            },
            retryable: true,
            retryAfterMs: gate.retryAfterMs,
          },
        ).toShape(),
      );
      this.close(CloseCodes.POLICY_VIOLATION, "too many failed authentication attempts");
      return;
    }
    let params: ConnectParams;
    try {
      params = parseConnectParams(request.params);
    } catch (error) {
      this.respond(request.id, false, undefined, toErrorShape(error));
      this.close(CloseCodes.POLICY_VIOLATION, "invalid connect params");
      return;
    }
    if (params.maxProtocol < MIN_PROTOCOL_VERSION || params.minProtocol > PROTOCOL_VERSION) {
      this.respond(
        request.id,
        false,
        undefined,
        new GatewayError(ErrorCodes.INVALID_REQUEST, "protocol mismatch", {
          details: {
            code: "PROTOCOL_MISMATCH",
            expectedProtocol: PROTOCOL_VERSION,
            minProtocol: MIN_PROTOCOL_VERSION,
            maxProtocol: PROTOCOL_VERSION,
          },
        }).toShape(),
      );
      this.close(CloseCodes.PROTOCOL_MISMATCH, "protocol mismatch");
      return;
    }
    let outcome: Awaited<ReturnType<typeof authenticateConnect>>;
    try {
      outcome = await authenticateConnect({
        params,
        nonce: this.nonce,
        isLoopback: this.isLoopback,
        remoteAddress: this.remoteAddress,
        settings: hub.auth,
        pairing: hub.pairing,
        setupCodes: new SetupCodes(hub.runtime.store.kv, hub.now),
        now: hub.now(),
        signatureSkewMs: hub.limits.deviceSignatureSkewMs,
        onPairingRequested: (r, created) => hub.pairingRequested(r, created),
        onPairingResolved: (r, decision) => hub.pairingResolved(r, decision),
      });
    } catch (error) {
      if (!(error instanceof HandshakeRefusal)) throw error;
      const reason = (error.shape.details as { code?: unknown } | undefined)?.code;
      if (limiter !== null && typeof reason === "string" && FAILED_LOGIN_CODES.has(reason)) {
        limiter.recordFailure(this.remoteAddress, this.isLoopback);
      }
      this.#refuseConnect(request.id, params, error);
      return;
    }
    limiter?.recordSuccess(this.remoteAddress);
    if ((this.#state as string) !== "authenticating") return;
    // The device's record and token as the store has them now: another gateway on the same
    // store may have unpaired the device or rotated its token while the handshake ran.
    const unpaired = await staleDeviceRefusal(hub.pairing, outcome, hub.auth.mode);
    if ((this.#state as string) !== "authenticating") return;
    if (unpaired !== undefined) {
      await this.#refuseStale(request.id, params, unpaired, outcome.issuedToken);
      return;
    }
    // Read before the connection opens: from then on it is sent events, and the first frame
    // it is sent after the challenge must be its hello-ok.
    const health = await hub.health();
    if ((this.#state as string) !== "authenticating") return;
    // Checked in the same turn as the connection joins `hub.connections`: a token rotated or
    // revoked, or a device unpaired, through this gateway while the handshake ran was swept
    // without this connection, so it is refused here.
    const stale = changedDeviceRefusal(hub.pairing, outcome, hub.auth.mode);
    if (stale !== undefined) {
      await this.#refuseStale(request.id, params, stale, outcome.issuedToken);
      return;
    }
    clearTimeout(this.#handshakeTimer);
    this.protocol = Math.min(params.maxProtocol, PROTOCOL_VERSION);
    this.role = outcome.role;
    this.scopes = new Set(outcome.scopes);
    this.client = params.client;
    this.deviceId = outcome.deviceId;
    this.authMethod = outcome.authMethod;
    if (outcome.device !== undefined) {
      this.deviceStanding = {
        publicKey: outcome.device.publicKey,
        ...(outcome.authMethod === "device-token" && outcome.tokenHash !== undefined
          ? { tokenHash: outcome.tokenHash }
          : {}),
        ...(outcome.standingMark === undefined ? {} : { mark: outcome.standingMark }),
      };
    }
    this.#state = "open";
    hub.connections.add(this);
    if (outcome.role === "node") this.#registerNode(params, outcome.device);
    const presence = this.#presenceEntry(params, outcome.scopes);
    const snapshot = {
      presence: [...hub.presenceList(), ...(presence === undefined ? [] : [presence])],
      health,
      stateVersion: { ...hub.stateVersion },
      uptimeMs: Math.max(0, hub.now() - hub.startedAt),
      authMode: hub.auth.mode,
      sessionDefaults: {
        defaultAgentId: hub.defaultAgentId,
        mainKey: "main",
        mainSessionKey: `agent:${hub.defaultAgentId}:main`,
        scope: "per-sender",
      },
    };
    this.respond(request.id, true, {
      type: "hello-ok",
      protocol: this.protocol,
      server: { version: hub.version, connId: this.connId },
      features: { methods: hub.methodNames(), events: [...GATEWAY_EVENTS] },
      snapshot,
      auth: {
        role: outcome.role,
        scopes: outcome.scopes,
        ...(outcome.issuedToken === undefined
          ? {}
          : { deviceToken: outcome.issuedToken.token, issuedAtMs: outcome.issuedToken.issuedAtMs }),
      },
      policy: {
        maxPayload: hub.limits.maxPayloadBytes,
        maxBufferedBytes: hub.limits.maxBufferedBytes,
        tickIntervalMs: hub.limits.tickIntervalMs,
        attachments: attachmentPolicy(hub.limits.maxPayloadBytes),
      },
    });
    if (outcome.setupCompletion !== undefined) {
      hub.log.info(
        `setup ${outcome.setupCompletion.setupId} completed by device ${outcome.setupCompletion.deviceId.slice(0, 12)}`,
      );
      hub.broadcast("device.pair.setup.completed", outcome.setupCompletion, {
        scope: Scopes.PAIRING,
      });
    }
    hub.log.info(
      `connected conn=${this.connId} client=${params.client.id} role=${outcome.role} auth=${outcome.authMethod}${outcome.deviceId === undefined ? "" : ` device=${outcome.deviceId.slice(0, 12)}`}`,
    );
    if (presence !== undefined) hub.updatePresence(this.#presenceKey!, presence);
  }

  /**
   * Refuses a `connect` whose device lost its standing while the handshake ran; a token the
   * handshake issued it (it came with the shared secret) is deleted first: its device was
   * unpaired, and the token would be left behind in the store.
   */
  async #refuseStale(
    requestId: string,
    params: ConnectParams,
    refusal: HandshakeRefusal,
    issued: { token: string } | undefined,
  ): Promise<void> {
    if (issued !== undefined) {
      await this.#hub.pairing.dropToken(issued.token).catch((error: unknown) => {
        this.#hub.log.warn(`connect refused conn=${this.connId}: its new token was left: ${error}`);
      });
    }
    this.#refuseConnect(requestId, params, refusal);
  }

  /** Answers a refused `connect` with its error and closes as the refusal says. */
  #refuseConnect(requestId: string, params: ConnectParams, refusal: HandshakeRefusal): void {
    this.#hub.log.warn(
      `connect refused conn=${this.connId} remote=${this.remoteAddress} client=${params.client.id}: ${refusal.shape.message}`,
    );
    this.respond(requestId, false, undefined, refusal.shape);
    this.close(refusal.closeCode, refusal.closeReason);
  }

  #presenceEntry(params: ConnectParams, scopes: string[]): PresenceEntry | undefined {
    if (params.client.mode === "probe") return undefined;
    this.#presenceKey = this.deviceId ?? params.client.instanceId ?? this.connId;
    const now = this.#hub.now();
    const entry: PresenceEntry = {
      host: params.client.displayName ?? params.client.id,
      version: params.client.version,
      platform: params.client.platform,
      mode: params.client.mode,
      reason: "connect",
      ts: now,
      onlineSince: now,
      roles: [this.role],
      scopes,
      instanceId: this.deviceId ?? params.client.instanceId ?? this.connId,
    };
    if (!this.isLoopback && this.remoteAddress !== undefined) entry.ip = this.remoteAddress;
    if (params.client.deviceFamily !== undefined) entry.deviceFamily = params.client.deviceFamily;
    if (params.client.modelIdentifier !== undefined)
      entry.modelIdentifier = params.client.modelIdentifier;
    if (params.client.timeZone !== undefined) entry.timeZone = params.client.timeZone;
    if (this.deviceId !== undefined) entry.deviceId = this.deviceId;
    return entry;
  }

  #registerNode(params: ConnectParams, device: PairedDevice | undefined): void {
    this.#hub.nodes.register(
      {
        nodeId: this.deviceId!,
        connId: this.connId,
        displayName: params.client.displayName ?? device?.label ?? params.client.id,
        platform: params.client.platform,
        version: params.client.version,
        ...(params.client.deviceFamily === undefined
          ? {}
          : { deviceFamily: params.client.deviceFamily }),
        ...(params.client.modelIdentifier === undefined
          ? {}
          : { modelIdentifier: params.client.modelIdentifier }),
        caps: params.caps ?? [],
        commands: params.commands ?? [],
        ...(params.permissions === undefined ? {} : { permissions: params.permissions }),
        connectedAtMs: this.#hub.now(),
        ...(this.remoteAddress === undefined ? {} : { remoteIp: this.remoteAddress }),
      },
      this,
    );
  }

  #closed(code: number, reason: string): void {
    if (this.#state === "closed") return;
    const wasOpen = this.#state === "open" || this.#state === "closing";
    this.#state = "closed";
    clearTimeout(this.#handshakeTimer);
    clearTimeout(this.#graceTimer);
    this.#abort.abort();
    const hub = this.#hub;
    hub.connections.delete(this);
    hub.sessionMessages.leave(this);
    if (this.role === "node" && wasOpen) hub.nodes.unregister(this.connId);
    if (this.#presenceKey !== undefined && wasOpen) {
      // Another connection of the same device keeps the entry.
      const stillThere = [...hub.connections].some((c) => c.#presenceKey === this.#presenceKey);
      if (!stillThere) hub.updatePresence(this.#presenceKey, undefined);
    }
    this.#onClose({
      connId: this.connId,
      code,
      reason,
      peakBufferedBytes: this.#peakBuffered,
      droppedEvents: this.#dropped,
      role: this.role,
      deviceId: this.deviceId,
    });
  }
}

/** A request rate in the largest unit that makes it at least one: "30 requests per minute". */
function rateText(perSecond: number): string {
  for (const [unit, seconds] of [
    ["second", 1],
    ["minute", 60],
    ["hour", 3_600],
  ] as const) {
    if (perSecond * seconds >= 1) return perUnit(perSecond * seconds, unit);
  }
  return perUnit(perSecond * 86_400, "day");
}

function perUnit(n: number, unit: string): string {
  const shown = Number(n.toPrecision(3));
  return `${shown} ${shown === 1 ? "request" : "requests"} per ${unit}`;
}
