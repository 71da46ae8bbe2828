import type { LookupAddress, LookupOptions } from "node:dns";
import * as http from "node:http";
import * as https from "node:https";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream";
import * as zlib from "node:zlib";
import type { CheckedTarget } from "./guard.js";

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `fetch` for one checked target, to hand to ky as its `fetch` option. It speaks HTTP
 * through `node:http`/`node:https` with a `lookup` that answers only with the addresses the
 * guard checked, so the socket connects to exactly those (a DNS answer that changes between
 * the check and the connect, "DNS rebinding", is never consulted). TLS still verifies the
 * certificate against the host name (SNI and `checkServerIdentity` use the URL's host).
 * `agent: false` gives every request a fresh connection that closes after the response:
 * a pooled socket could be shared with a request pinned elsewhere, and would outlive `stop`.
 * Redirects are never followed here.
 */
export function createPinnedFetch(target: CheckedTarget): typeof fetch {
  return async (input, init) => {
    const request = input instanceof Request ? input : new Request(input, init);
    const url = new URL(request.url);
    if (url.origin !== target.url.origin) {
      // Only a hook that rewrote the request could get here; it must not escape the check.
      throw new Error(`a fetch pinned to ${target.url.origin} was asked for ${url.origin}`);
    }
    const headers: Record<string, string> = {};
    request.headers.forEach((value, key) => {
      headers[key] = value;
    });
    headers["accept-encoding"] ??= "gzip, deflate, br";
    const body = request.body === null ? undefined : Buffer.from(await request.arrayBuffer());
    const signal = request.signal;
    signal.throwIfAborted();

    return await new Promise<Response>((resolve, reject) => {
      const transport = url.protocol === "https:" ? https : http;
      const req = transport.request({
        protocol: url.protocol,
        hostname: target.hostname,
        port: url.port === "" ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: request.method,
        headers,
        agent: false,
        lookup: pinnedLookup(target),
      });
      let settled = false;
      const onAbort = () => req.destroy(signal.reason instanceof Error ? signal.reason : undefined);
      const cleanup = () => signal.removeEventListener("abort", onAbort);
      signal.addEventListener("abort", onAbort, { once: true });
      req.on("error", (error) => {
        cleanup();
        if (!settled) {
          settled = true;
          reject(signal.aborted ? signal.reason : error);
        }
      });
      req.once("response", (res) => {
        settled = true;
        const status = res.statusCode ?? 0;
        const responseHeaders = new Headers();
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
          try {
            responseHeaders.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
          } catch {
            // A header value fetch cannot represent; the body is still usable without it.
          }
        }
        const noBody = request.method === "HEAD" || [204, 205, 304].includes(status);
        if (status < 200 || status > 599) {
          res.destroy();
          cleanup();
          reject(new Error(`invalid HTTP status ${status}`));
          return;
        }
        if (noBody) {
          res.resume();
          res.once("close", cleanup);
          resolve(
            new Response(null, { status, statusText: res.statusMessage, headers: responseHeaders }),
          );
          return;
        }
        const decoded = decode(res, responseHeaders);
        resolve(
          new Response(toWebStream(decoded, req, signal, cleanup), {
            status,
            statusText: res.statusMessage,
            headers: responseHeaders,
          }),
        );
      });
      req.end(body);
    });
  };
}

function pinnedLookup(target: CheckedTarget) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    const family = options.family === 4 || options.family === 6 ? options.family : undefined;
    const candidates = target.addresses.filter((a) => family === undefined || a.family === family);
    process.nextTick(() => {
      const first = candidates[0];
      if (first === undefined) {
        const error: NodeJS.ErrnoException = new Error(
          `no checked IPv${family} address for ${hostname}`,
        );
        error.code = "ENOTFOUND";
        callback(error, options.all === true ? [] : "", family);
      } else if (options.all === true) {
        callback(null, candidates);
      } else {
        callback(null, first.address, first.family);
      }
    });
  };
}

/** Undoes `content-encoding` (gzip, deflate, br) and drops the headers that described it. */
function decode(res: http.IncomingMessage, headers: Headers): Readable {
  const encoding = (headers.get("content-encoding") ?? "").trim().toLowerCase();
  let decoder: zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined;
  const flush = { flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  if (encoding === "gzip" || encoding === "x-gzip") decoder = zlib.createGunzip(flush);
  else if (encoding === "deflate") decoder = zlib.createInflate(flush);
  else if (encoding === "br") decoder = zlib.createBrotliDecompress();
  if (decoder === undefined) return res;
  headers.delete("content-encoding");
  headers.delete("content-length");
  pipeline(res, decoder, () => {
    // Errors surface on `decoder`, which the body stream listens to.
  });
  return decoder;
}

/** A web ReadableStream over a Node stream, with backpressure; cancel closes the socket. */
function toWebStream(
  source: Readable,
  req: http.ClientRequest,
  signal: AbortSignal,
  cleanup: () => void,
): ReadableStream<Uint8Array> {
  let done = false;
  const finish = () => {
    if (done) return false;
    done = true;
    cleanup();
    return true;
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      source.on("data", (chunk: Buffer) => {
        if (done) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) source.pause();
      });
      source.once("end", () => {
        if (finish()) controller.close();
      });
      source.on("error", (error) => {
        if (finish()) controller.error(signal.aborted ? signal.reason : error);
      });
      source.once("close", () => {
        // Closed before "end": the connection was cut or destroyed mid-body.
        if (finish())
          controller.error(
            signal.aborted ? signal.reason : new Error("connection closed before the body ended"),
          );
      });
    },
    pull() {
      source.resume();
    },
    cancel() {
      finish();
      source.destroy();
      req.destroy();
    },
  });
}
