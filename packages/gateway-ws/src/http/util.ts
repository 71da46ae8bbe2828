import type { IncomingMessage, ServerResponse } from "node:http";
import { parseTraceparent, parseTracestate, type SendOptions } from "@beamclaw/core";

/** A request body that could not be read. */
export class BodyError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Reads a request body up to `maxBytes` (413 beyond). */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? "0");
    if (Number.isFinite(declared) && declared > maxBytes) {
      reject(new BodyError(413, `request body over ${maxBytes} bytes`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on("data", (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > maxBytes) {
        failed = true;
        reject(new BodyError(413, `request body over ${maxBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on("error", (error) => {
      if (!failed) {
        failed = true;
        reject(new BodyError(400, error.message));
      }
    });
  });
}

/** Writes a JSON response. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(text);
}

/** An error in OpenAI's shape. */
export function openAiError(
  res: ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | null = null,
  headers: Record<string, string> = {},
  param: string | null = null,
): void {
  sendJson(res, status, { error: { message, type, param, code } }, headers);
}

/** The bearer token of a request, if any. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (typeof header !== "string") return undefined;
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  return match?.[1]?.trim();
}

/** A single header value (the first one of a repeated header). */
export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The client's span from the W3C Trace Context headers, as send options: the run joins its
 * trace. A malformed `traceparent`, or several (joined by Node into one value), is ignored; a
 * malformed `tracestate` is dropped and the `traceparent` kept, as the specification asks.
 */
export function traceContextOf(
  req: IncomingMessage,
): Pick<SendOptions, "traceparent" | "tracestate"> {
  const { traceparent, tracestate } = req.headers;
  if (parseTraceparent(traceparent) === undefined) return {};
  const entries = parseTracestate(tracestate);
  return {
    traceparent: traceparent as string,
    ...(entries === undefined || entries.length === 0 ? {} : { tracestate: tracestate as string }),
  };
}
