import { TextDecoder } from "node:util";
import ky, { type KyInstance } from "ky";
import {
  AbortedError,
  InvalidArgumentError,
  isBeamClawError,
  TimeoutError,
  WebFetchError,
} from "../../errors.js";
import { createSsrfGuard, type SsrfGuard, type SsrfGuardOptions } from "./guard.js";
import { createPinnedFetch } from "./pinned-fetch.js";

/** Options of {@link safeFetch}. */
export interface SafeFetchOptions extends SsrfGuardOptions {
  /** Default `GET`. */
  method?: string;
  /**
   * Request headers for `url`'s origin. They follow a redirect within that origin; on a
   * redirect to another origin every one of them is dropped except the harmless ones
   * (`accept`, `accept-language`, `content-language`, `content-type`, `user-agent`), so an
   * `authorization`, a `cookie` or a custom API-key header never reaches a site the first
   * one redirected to. Headers meant for other origins go in `originHeaders`.
   */
  headers?: Record<string, string>;
  /**
   * Headers sent only to one origin each, keyed by origin (`https://api.example.com`,
   * `http://127.0.0.1:8080`: scheme, host and a non-default port, no path): a request (the
   * first or a redirect) gets the headers of exactly its own origin and nothing else. They
   * win over `headers` of the same name.
   *
   * @throws InvalidArgumentError (from {@link safeFetch}) for a key that is not an http(s)
   *   origin or a header name or value `Headers` refuses.
   */
  originHeaders?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** Not allowed with GET or HEAD. */
  body?: string | Uint8Array;
  /** Redirects followed, each one checked like the first URL. Default 5. */
  maxRedirects?: number;
  /** Response body bytes kept (after decompression); the rest is not downloaded. Default 2 MiB. */
  maxBytes?: number;
  /** For the whole fetch: every hop, and reading the body. Default 30 000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Default `Mozilla/5.0 (compatible; BeamClaw; +https://github.com/beamclaw/beamclaw)`. */
  userAgent?: string;
  /**
   * Decides from the final response's media type (lowercase, no parameters, `""` when absent)
   * whether to download the body. Returning false cancels it and throws a `WebFetchError`
   * of kind `unsupported-content-type`. Default: accept everything.
   */
  acceptContentType?: (mediaType: string) => boolean;
  /** A guard built once with {@link createSsrfGuard}; overrides `allow` and `resolveHost`. */
  guard?: SsrfGuard;
}

/** What {@link safeFetch} returns: the final response, its body read up to the cap. */
export interface SafeFetchResult {
  /** The URL asked for. */
  url: string;
  /** The URL of the final response, after redirects. */
  finalUrl: string;
  /** Every redirect target followed, in order. */
  redirects: string[];
  status: number;
  statusText: string;
  headers: Headers;
  /** The media type, lowercase without parameters; `""` when the response has none. */
  mediaType: string;
  /** The `charset` parameter, when present. */
  charset: string | undefined;
  /** The body, at most `maxBytes` long. */
  body: Uint8Array;
  /** True when the body was longer than `maxBytes` and was cut. */
  truncated: boolean;
  /** The body decoded with its charset (or a `<meta charset>`, else UTF-8). */
  text(): string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const DEFAULT_USER_AGENT =
  "Mozilla/5.0 (compatible; BeamClaw; +https://github.com/beamclaw/beamclaw)";
// What still goes to another origin after a redirect: nothing that can carry a credential.
const CROSS_ORIGIN_HEADERS = new Set([
  "accept",
  "accept-language",
  "content-language",
  "content-type",
  "user-agent",
]);

// ky does the request plumbing; redirects, timeouts and retries are decided here, per hop.
const http: KyInstance = ky.create({
  redirect: "manual",
  retry: 0,
  timeout: false,
  throwHttpErrors: false,
});

/**
 * Fetches a URL from the server side without letting it reach the server's own network:
 * the SSRF guard ({@link createSsrfGuard}) checks the URL, resolves its host and refuses
 * loopback, private, link-local, metadata and other internal addresses; the connection is
 * pinned to the checked addresses; redirects are followed by hand (at most `maxRedirects`)
 * and every hop is checked again. The body is streamed and cut at `maxBytes`. Any status is
 * returned as is, like `fetch`.
 *
 * @example
 * ```ts
 * const page = await safeFetch("https://example.com/", { maxBytes: 500_000, timeoutMs: 10_000 });
 * console.log(page.status, page.mediaType, page.truncated, page.text().slice(0, 200));
 * ```
 * @throws SsrfBlockedError when a URL on the way is refused (nothing was sent to it).
 * @throws WebFetchError on DNS, connection, redirect and content-type failures.
 * @throws TimeoutError after `timeoutMs`; AbortedError when `signal` aborts.
 * @throws InvalidArgumentError on a malformed URL or option.
 */
export async function safeFetch(
  url: string | URL,
  options: SafeFetchOptions = {},
): Promise<SafeFetchResult> {
  const start = parseUrl(url);
  const maxRedirects = positiveInteger(options.maxRedirects ?? 5, "maxRedirects", true);
  const maxBytes = positiveInteger(options.maxBytes ?? 2 * 1024 * 1024, "maxBytes");
  const timeoutMs = positiveInteger(options.timeoutMs ?? 30_000, "timeoutMs");
  let method = (options.method ?? "GET").toUpperCase();
  let body = options.body;
  if (body !== undefined && (method === "GET" || method === "HEAD")) {
    throw new InvalidArgumentError(`body: a ${method} request cannot have a body`);
  }
  const guard = options.guard ?? createSsrfGuard(options);
  const scoped = parseOriginHeaders(options.originHeaders);
  // The headers carried from hop to hop; `originHeaders` are added per hop.
  const headers = toHeaders(options.headers, "headers");
  if (!headers.has("user-agent"))
    headers.set("user-agent", options.userAgent ?? DEFAULT_USER_AGENT);

  const timeout = new AbortController();
  const timer = setTimeout(
    () =>
      timeout.abort(
        new TimeoutError(`fetching ${start.href} took over ${timeoutMs} ms`, timeoutMs),
      ),
    timeoutMs,
  );
  const signal =
    options.signal === undefined
      ? timeout.signal
      : AbortSignal.any([options.signal, timeout.signal]);
  try {
    const redirects: string[] = [];
    let current = start;
    for (;;) {
      // DNS cannot be cancelled; the timeout and the signal still end the wait for it.
      const target = await untilAborted(guard.check(current), signal);
      let response: Response;
      try {
        response = await http(current, {
          method,
          headers: withOriginHeaders(headers, scoped.get(current.origin)),
          body,
          signal,
          fetch: createPinnedFetch(target),
        });
      } catch (error) {
        if (signal.aborted || isBeamClawError(error)) throw error;
        throw new WebFetchError(
          "network",
          current.href,
          `fetching ${current.href} failed: ${describeNetworkError(error)}`,
          {
            cause: error,
          },
        );
      }
      const location = response.headers.get("location");
      if (REDIRECTS.has(response.status) && location !== null) {
        await response.body?.cancel();
        if (redirects.length >= maxRedirects) {
          throw new WebFetchError(
            "too-many-redirects",
            start.href,
            `${start.href} redirected more than ${maxRedirects} times`,
          );
        }
        let next: URL | undefined;
        try {
          next = new URL(location, current);
        } catch {
          // reported below
        }
        if (next === undefined || next.username !== "" || next.password !== "") {
          throw new WebFetchError(
            "invalid-redirect",
            current.href,
            `${current.href} redirected to an unusable URL ${JSON.stringify(location)}`,
          );
        }
        // What browsers do: 303 turns anything but HEAD into GET; 301/302 turn POST into GET.
        if (
          (response.status === 303 && method !== "HEAD") ||
          ((response.status === 301 || response.status === 302) && method === "POST")
        ) {
          method = "GET";
          body = undefined;
          headers.delete("content-type");
          headers.delete("content-length");
        }
        if (next.origin !== current.origin) {
          // Like fetch drops `authorization`, but for every header that may carry a secret.
          for (const name of [...headers.keys()]) {
            if (!CROSS_ORIGIN_HEADERS.has(name)) headers.delete(name);
          }
        }
        redirects.push(next.href);
        current = next;
        continue;
      }
      return await readResult(start, current, redirects, response, maxBytes, options);
    }
  } catch (error) {
    if (signal.aborted) {
      if (timeout.signal.aborted) throw timeout.signal.reason;
      const reason: unknown = options.signal?.reason;
      throw isBeamClawError(reason)
        ? reason
        : new AbortedError(`fetching ${start.href} was aborted`, { cause: reason });
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** `headers` plus those configured for the hop's origin (which win). */
function withOriginHeaders(headers: Headers, own: Headers | undefined): Headers {
  if (own === undefined) return headers;
  const out = new Headers(headers);
  for (const [name, value] of own) out.set(name, value);
  return out;
}

function toHeaders(init: Readonly<Record<string, string>> | undefined, what: string): Headers {
  if (init !== undefined && (typeof init !== "object" || init === null || Array.isArray(init))) {
    throw new InvalidArgumentError(`${what}: expected an object of header names to values`);
  }
  try {
    return new Headers(init as Record<string, string> | undefined);
  } catch (error) {
    throw new InvalidArgumentError(`${what}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Checks `originHeaders` and keys it by normalised origin. Internal: not exported from the
 * package (the web_fetch tool checks its options with it when it is created).
 *
 * @throws InvalidArgumentError for a key that is not an http(s) origin, or a bad header.
 */
export function parseOriginHeaders(
  config: SafeFetchOptions["originHeaders"],
): Map<string, Headers> {
  const out = new Map<string, Headers>();
  if (config === undefined) return out;
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new InvalidArgumentError("originHeaders: expected an object keyed by origin");
  }
  for (const [key, init] of Object.entries(config)) {
    let origin: URL | undefined;
    try {
      origin = new URL(key);
    } catch {
      // reported below
    }
    if (
      origin === undefined ||
      (origin.protocol !== "http:" && origin.protocol !== "https:") ||
      origin.pathname !== "/" ||
      origin.search !== "" ||
      origin.hash !== "" ||
      origin.username !== "" ||
      origin.password !== "" ||
      !/^https?:\/\/[^/?#]+\/?$/i.test(key)
    ) {
      throw new InvalidArgumentError(
        `originHeaders: ${JSON.stringify(key)} is not an http(s) origin such as "https://api.example.com"`,
      );
    }
    if (out.has(origin.origin)) {
      throw new InvalidArgumentError(
        `originHeaders: ${JSON.stringify(key)} names the origin ${origin.origin} a second time`,
      );
    }
    out.set(origin.origin, toHeaders(init, `originHeaders[${JSON.stringify(key)}]`));
  }
  return out;
}

async function readResult(
  start: URL,
  final: URL,
  redirects: string[],
  response: Response,
  maxBytes: number,
  options: SafeFetchOptions,
): Promise<SafeFetchResult> {
  const { mediaType, charset } = parseContentType(response.headers.get("content-type"));
  if (options.acceptContentType !== undefined && !options.acceptContentType(mediaType)) {
    await response.body?.cancel();
    throw new WebFetchError(
      "unsupported-content-type",
      final.href,
      `${final.href} is ${mediaType === "" ? "of no declared type" : mediaType}, which is not fetched as text`,
      { statusCode: response.status },
    );
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  if (response.body !== null) {
    const reader = response.body.getReader();
    for (;;) {
      const chunk = await reader.read().catch((error: unknown) => {
        if (isBeamClawError(error)) throw error;
        throw new WebFetchError(
          "network",
          final.href,
          `reading ${final.href} failed: ${describeNetworkError(error)}`,
          {
            cause: error,
          },
        );
      });
      if (chunk.done) break;
      const room = maxBytes - size;
      if (chunk.value.byteLength > room) {
        if (room > 0) chunks.push(chunk.value.subarray(0, room));
        size = maxBytes;
        truncated = true;
        await reader.cancel();
        break;
      }
      chunks.push(chunk.value);
      size += chunk.value.byteLength;
    }
  }
  const bytes = concat(chunks, size);
  let decoded: string | undefined;
  return {
    url: start.href,
    finalUrl: final.href,
    redirects,
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
    mediaType,
    charset,
    body: bytes,
    truncated,
    text() {
      decoded ??= decodeText(bytes, charset, mediaType, truncated);
      return decoded;
    },
  };
}

/** Splits `text/html; charset=UTF-8` into `text/html` and `utf-8`. */
export function parseContentType(header: string | null): {
  mediaType: string;
  charset: string | undefined;
} {
  if (header === null) return { mediaType: "", charset: undefined };
  const [type = "", ...params] = header.split(";");
  let charset: string | undefined;
  for (const param of params) {
    const eq = param.indexOf("=");
    if (eq !== -1 && param.slice(0, eq).trim().toLowerCase() === "charset") {
      charset =
        param
          .slice(eq + 1)
          .trim()
          .replace(/^"|"$/g, "")
          .toLowerCase() || undefined;
    }
  }
  return { mediaType: type.trim().toLowerCase(), charset };
}

function decodeText(
  bytes: Uint8Array,
  charset: string | undefined,
  mediaType: string,
  truncated: boolean,
): string {
  let label = charset;
  if (label === undefined && (mediaType === "text/html" || mediaType === "")) {
    const head = new TextDecoder("latin1").decode(bytes.subarray(0, 1024));
    label = /<meta[^>]+charset\s*=\s*["']?\s*([a-z0-9_:.-]+)/i.exec(head)?.[1]?.toLowerCase();
  }
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(label ?? "utf-8");
  } catch {
    decoder = new TextDecoder("utf-8");
  }
  // A cut body may end inside a multi-byte character: `stream` holds the partial one back.
  return decoder.decode(bytes, { stream: truncated });
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function parseUrl(url: string | URL): URL {
  let parsed: URL;
  try {
    parsed = new URL(url instanceof URL ? url.href : url);
  } catch (error) {
    throw new InvalidArgumentError(`url: ${JSON.stringify(url)} is not an absolute URL`, {
      cause: error,
    });
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw new InvalidArgumentError("url: credentials in the URL are not supported; send a header");
  }
  return parsed;
}

function positiveInteger(value: number, name: string, zeroAllowed = false): number {
  if (!Number.isInteger(value) || value < (zeroAllowed ? 0 : 1) || value > 2 ** 31 - 1) {
    throw new InvalidArgumentError(
      `${name}: expected a ${zeroAllowed ? "non-negative" : "positive"} integer, got ${value}`,
    );
  }
  return value;
}

function describeNetworkError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code =
    (error as { code?: unknown }).code ?? (error.cause as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? `${code} ${error.message}` : error.message;
}
