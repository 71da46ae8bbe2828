/**
 * One Socket Mode connection: `apps.connections.open`, a WebSocket, Slack's `hello`, then
 * envelopes to acknowledge. Built on `@slack/socket-mode` (loaded when the first connection
 * opens, so an HTTP-mode channel never loads it) with its own reconnecting turned off: the
 * channel decides what a closed connection means.
 * https://docs.slack.dev/apis/events-api/using-socket-mode
 */
import type { SocketModeClient } from "@slack/socket-mode";
import type { FetchFunction, Logger as SlackLogger, WebClientOptions } from "@slack/web-api";

/** One envelope Slack delivered (`events_api`, `interactive`, `slash_commands`, ...). */
export interface SocketModeEnvelope {
  type: string;
  envelopeId: string;
  /** The envelope's `payload` (for `events_api`: the `event_callback` with its `event`). */
  payload: unknown;
  /** `retry_attempt`: 0 on the first delivery. */
  retryAttempt: number | undefined;
  retryReason: string | undefined;
  /** Acknowledges the envelope on the connection it came on; rejects if that one is gone. */
  ack(): Promise<void>;
}

/** Why a connection ended without being closed by us. */
export interface SocketModeClose {
  /** The `reason` of Slack's `disconnect` message, if Slack sent one first. */
  reason: string | undefined;
}

export interface SocketModeConnectionOptions {
  appToken: string;
  /** Options of the `WebClient` that calls `apps.connections.open`. */
  clientOptions: WebClientOptions;
  logger: SlackLogger;
  clientPingTimeoutMs: number | undefined;
  serverPingTimeoutMs: number | undefined;
  /** How long to wait for `hello`. */
  connectTimeoutMs: number;
  onEnvelope(envelope: SocketModeEnvelope): void;
  /** The connection ended on its own (dropped, timed out, or Slack asked us to reconnect). */
  onClose(close: SocketModeClose): void;
}

/** Events `SocketModeClient` emits itself: a frame must not name them as its type. */
const CLIENT_EVENTS: ReadonlySet<string> = new Set([
  "error",
  "connecting",
  "connected",
  "authenticated",
  "reconnecting",
  "disconnecting",
  "disconnected",
  "close",
  "slack_event",
  "ws_message",
  "ws_open",
  "ws_close",
  "outgoing_message",
  "unable_to_socket_mode_start",
  "newListener",
  "removeListener",
]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A text frame as the object Slack's protocol allows, or why it is not one. An envelope
 * whose contents are malformed (`events_api` without `payload.event`, say) is kept, with a
 * type that says so, so that it is still acknowledged by its `envelope_id` and not
 * redelivered.
 */
function readFrame(data: unknown, isBinary: boolean): Record<string, unknown> | string {
  if (isBinary || typeof data !== "string") return "a binary frame";
  let frame: unknown;
  try {
    frame = JSON.parse(data);
  } catch {
    return "not JSON";
  }
  if (!isObject(frame)) return "not a JSON object";
  const type = frame.type;
  if (typeof type !== "string" || type.length === 0) return "no type";
  if (type === "hello" || type === "disconnect") return frame;
  if (CLIENT_EVENTS.has(type)) return { ...frame, type: "unsupported" };
  if (type === "events_api") {
    const payload = frame.payload;
    const eventType = isObject(payload) && isObject(payload.event) ? payload.event.type : undefined;
    if (typeof eventType !== "string" || eventType.length === 0 || CLIENT_EVENTS.has(eventType)) {
      return { ...frame, type: "malformed_events_api" };
    }
  }
  return frame;
}

/** How long `close()` waits for the server's close frame before dropping the socket. */
const CLOSE_HANDSHAKE_MS = 1_000;

/** A connection that is open. */
export class SocketModeConnection {
  readonly #client: SocketModeClient;
  /** Aborts this connection's Web API requests (an `apps.connections.open` in flight). */
  readonly #abort: AbortController;
  #closing = false;
  #closed: Promise<void> | undefined;

  private constructor(client: SocketModeClient, abort: AbortController) {
    this.#client = client;
    this.#abort = abort;
  }

  /**
   * Opens a connection; resolves once Slack said `hello`.
   *
   * @throws the `apps.connections.open` error, or an `Error` when the WebSocket failed, no
   *   `hello` came within `connectTimeoutMs`, or `signal` aborted.
   */
  static async open(
    options: SocketModeConnectionOptions,
    signal: AbortSignal,
  ): Promise<SocketModeConnection> {
    const { SocketModeClient } = await import("@slack/socket-mode");
    const abort = new AbortController();
    const baseFetch = options.clientOptions.fetch ?? globalThis.fetch;
    const fetch: FetchFunction = (url, init) =>
      baseFetch(url, {
        ...init,
        signal:
          init?.signal === undefined ? abort.signal : AbortSignal.any([init.signal, abort.signal]),
      });
    const client = new SocketModeClient({
      appToken: options.appToken,
      logger: options.logger,
      autoReconnectEnabled: false,
      ...(options.clientPingTimeoutMs === undefined
        ? {}
        : { clientPingTimeout: options.clientPingTimeoutMs }),
      ...(options.serverPingTimeoutMs === undefined
        ? {}
        : { serverPingTimeout: options.serverPingTimeoutMs }),
      clientOptions: { ...options.clientOptions, fetch },
    });
    const connection = new SocketModeConnection(client, abort);
    let disconnectReason: string | undefined;
    // @slack/socket-mode (3.1) reads every frame as if it were well-formed: `null`, an
    // `events_api` envelope without `payload.event`, or an envelope whose type names one of
    // the client's own events (`error`, `disconnected`, ...) make its (async) handler throw,
    // an unhandled rejection, or emit an event it must not. Its handler is replaced by one
    // that drops frames that are not Slack's protocol, and hands the rest on.
    const libraryHandlers = client.listeners("ws_message") as Array<
      (data: unknown, isBinary: boolean) => unknown
    >;
    // (A release that reads frames elsewhere keeps its own handling; its listeners stay.)
    if (libraryHandlers.length > 0) client.removeAllListeners("ws_message");
    client.on("ws_message", (data: unknown, isBinary: boolean) => {
      const frame = readFrame(data, isBinary);
      if (typeof frame === "string") {
        options.logger.warn(`ignored a Socket Mode frame: ${frame}`);
        return;
      }
      if (frame.type === "disconnect") {
        disconnectReason = typeof frame.reason === "string" ? frame.reason : "unknown";
      }
      const failed = (error: unknown) => {
        options.logger.warn(
          `a Socket Mode frame could not be handled: ${error instanceof Error ? error.message : String(error)}`,
        );
      };
      for (const handler of libraryHandlers) {
        try {
          Promise.resolve(handler.call(client, JSON.stringify(frame), false)).catch(failed);
        } catch (error) {
          failed(error);
        }
      }
    });
    // A failed WebSocket (a frame that breaks the protocol, say) is reported as an "error"
    // event before it closes; without a listener, that event would throw.
    client.on("error", (error: unknown) => {
      options.logger.warn(
        `Socket Mode connection error: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
    client.on("slack_event", (event: Record<string, unknown>) => {
      if (typeof event.envelope_id !== "string") return; // nothing to acknowledge
      options.onEnvelope({
        type: String(event.type),
        envelopeId: event.envelope_id,
        payload: event.body,
        retryAttempt: typeof event.retry_num === "number" ? event.retry_num : undefined,
        retryReason: typeof event.retry_reason === "string" ? event.retry_reason : undefined,
        ack: () => (event.ack as () => Promise<void>)(),
      });
    });

    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await Promise.race([
        client.start().catch((error: unknown) => {
          throw error ?? new Error("the Socket Mode WebSocket closed before Slack said hello");
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no hello from Slack within ${options.connectTimeoutMs} ms`)),
            options.connectTimeoutMs,
          );
          onAbort = () => reject(new Error("the connection attempt was aborted"));
          if (signal.aborted) onAbort();
          else signal.addEventListener("abort", onAbort, { once: true });
        }),
      ]);
    } catch (error) {
      await connection.close();
      throw error;
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal.removeEventListener("abort", onAbort);
    }
    client.on("disconnected", () => {
      if (connection.#closing) return;
      connection.#closing = true;
      options.onClose({ reason: disconnectReason });
    });
    return connection;
  }

  /** Closes the connection (a close handshake, then the socket is dropped). Idempotent. */
  close(): Promise<void> {
    this.#closing = true;
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    // Without this, a connection closed while `apps.connections.open` is in flight would go
    // on to open its WebSocket afterwards.
    this.#abort.abort();
    const client = this.#client;
    const done = client.disconnect();
    // A peer that never answers the close frame would hold the socket for 30 s: a second
    // disconnect while closing drops it at once.
    const timer = setTimeout(() => client.websocket?.disconnect(), CLOSE_HANDSHAKE_MS);
    try {
      await done;
    } finally {
      clearTimeout(timer);
      client.removeAllListeners();
      // Closing a socket that is still connecting cleans it up at once, and @slack/socket-mode
      // (3.1) then arms its 30 s close-handshake timer anyway; disconnecting the cleaned-up
      // socket once more clears that timer.
      const websocket = client.websocket;
      if (websocket !== undefined && websocket.readyState === undefined) websocket.disconnect();
    }
  }
}
