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
    // The client closes the socket itself on Slack's `disconnect` message; this listener runs
    // right after it, before the close completes, to learn why.
    client.on("ws_message", (data: unknown) => {
      // Slack's control messages are text frames; binary ones are ignored by the client too.
      if (typeof data !== "string" || !data.includes('"disconnect"')) return;
      try {
        const message = JSON.parse(data) as { type?: unknown; reason?: unknown };
        if (message.type === "disconnect") {
          disconnectReason = typeof message.reason === "string" ? message.reason : "unknown";
        }
      } catch {
        // not JSON: the client ignores it too
      }
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
