/**
 * The HTTP endpoint Telegram POSTs updates to in webhook mode. Telegram sends the secret
 * given to `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`; a request without it, or with
 * another, is refused before its body is read. Telegram redelivers an update until it gets a
 * 2xx, so 200 is answered only once the host is done with the update.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type ChannelLogger, InvalidInboundError, NoProcessError } from "@beamclaw/core";
import { closesGracefully } from "../shared/settle.js";

/** The header Telegram puts the webhook's secret token in. */
export const SECRET_TOKEN_HEADER = "x-telegram-bot-api-secret-token";

/** Where and how the webhook endpoint listens. */
export interface TelegramWebhookOptions {
  /**
   * The secret Telegram sends with every update (`secret_token` of `setWebhook`): 16-256
   * characters `A-Z`, `a-z`, `0-9`, `_` and `-`.
   */
  secretToken: string;
  /**
   * The public HTTPS URL Telegram should POST to. When set, `start` calls `setWebhook` with
   * it and the secret; leave it out when the webhook is registered elsewhere (one
   * registration for several replicas behind a proxy).
   */
  url?: string;
  /** Interface to listen on. Default `127.0.0.1` (put a TLS-terminating proxy in front). */
  host?: string;
  /** Port to listen on; 0 picks a free one (see `localUrl` after `start`). Default 8787. */
  port?: number;
  /** Path of the endpoint. Default `/telegram`. */
  path?: string;
  /** Largest body accepted. Default 1 MiB. */
  maxBodyBytes?: number;
  /** `max_connections` of `setWebhook` (1-100): parallel deliveries. Telegram's default 40. */
  maxConnections?: number;
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/** Compares in constant time (over the digests, so lengths leak nothing either). */
function sameSecret(given: string | string[] | undefined, expected: Buffer): boolean {
  if (typeof given !== "string" || given.length === 0) return false;
  return timingSafeEqual(digest(given), expected);
}

function answer(
  res: ServerResponse,
  status: number,
  body?: Record<string, unknown>,
  headers: Record<string, string> = {},
): void {
  if (body === undefined) {
    res.writeHead(status, { "content-length": "0", ...headers });
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** A running webhook endpoint. */
export interface TelegramWebhookServer {
  /** Where it listens, e.g. `http://127.0.0.1:8787/telegram`. */
  readonly localUrl: string;
  /**
   * Stops listening; requests under way get up to 5 s to be answered (an update the host is
   * taking is answered 200, not dropped for Telegram to deliver again), then every
   * connection is closed. Resolves once the server is closed.
   */
  close(): Promise<void>;
}

/**
 * Listens for Telegram's webhook requests and hands each update to `handle`. Answers: 401 for
 * a missing or wrong secret token, 404 for another path, 405 for another method, 413 for a
 * body over the limit, 400 for a body that is not an update, 503 while the channel stops,
 * 500 when the host failed (Telegram retries both), 200 once `handle` resolved, and 200 (with
 * an error in the log) for an update `handle` refused as malformed (`InvalidInboundError`),
 * which Telegram's redelivery would not mend.
 */
export async function listenForTelegramWebhook(
  options: TelegramWebhookOptions,
  handle: (update: Record<string, unknown>) => Promise<void>,
  logger: ChannelLogger,
  onError: (error: unknown) => void,
): Promise<TelegramWebhookServer> {
  const path = options.path ?? "/telegram";
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const expected = digest(options.secretToken);

  const readBody = async (req: IncomingMessage): Promise<Buffer | undefined> => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > maxBodyBytes) return undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > maxBodyBytes) return undefined;
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  };

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname !== path) return answer(res, 404, { error: "not found" });
      if (req.method !== "POST") return answer(res, 405, { error: "use POST" }, { allow: "POST" });
      if (!sameSecret(req.headers[SECRET_TOKEN_HEADER], expected)) {
        logger.warn("telegram webhook request with a missing or wrong secret token refused", {
          remoteAddress: req.socket.remoteAddress,
        });
        return answer(
          res,
          401,
          { error: `missing or wrong ${SECRET_TOKEN_HEADER}` },
          { connection: "close" },
        );
      }
      const body = await readBody(req);
      if (body === undefined) {
        answer(
          res,
          413,
          { error: `the body is larger than ${maxBodyBytes} bytes` },
          { connection: "close" },
        );
        req.destroy();
        return;
      }
      let update: unknown;
      try {
        update = JSON.parse(body.toString("utf8"));
      } catch {
        return answer(res, 400, { error: "the body is not JSON" });
      }
      if (
        typeof update !== "object" ||
        update === null ||
        Array.isArray(update) ||
        !Number.isSafeInteger((update as { update_id?: unknown }).update_id)
      ) {
        return answer(res, 400, { error: "the body is not a Telegram Update (no update_id)" });
      }
      await handle(update as Record<string, unknown>);
      answer(res, 200);
    } catch (error) {
      if (NoProcessError.isInstance(error)) {
        answer(res, 503, { error: "the channel is not running" }, { "retry-after": "5" });
      } else if (InvalidInboundError.isInstance(error)) {
        // Redelivering it would not make it valid: confirm it, and say so in the log.
        logger.error("telegram update is malformed; confirmed and dropped", {
          error: error.message,
          field: error.field,
        });
        answer(res, 200);
      } else {
        logger.error("telegram webhook request failed", {
          error: error instanceof Error ? error.message : String(error),
        });
        if (!res.headersSent) answer(res, 500, { error: "internal error; retry later" });
        else res.destroy();
      }
    }
  };

  const server = http.createServer((req, res) => {
    void onRequest(req, res);
  });
  const close = closesGracefully(server);
  server.requestTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8787, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", onError);
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    localUrl: `http://${shownHost}:${address.port}${path}`,
    close: async () => {
      const dropped = await close();
      if (dropped > 0) {
        logger.warn("telegram webhook: requests the host did not answer in time were dropped", {
          requests: dropped,
        });
      }
    },
  };
}
