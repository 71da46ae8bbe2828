/**
 * The HTTP layer every adapter shares: one ky instance per provider with no retries (the
 * core `ProviderChain` owns retries, backoff and fallback, so a retry here would multiply
 * them), a time limit for the response headers, and every failure turned into a
 * `ProviderError` with the vendor's error body parsed.
 */
import { InvalidArgumentError, type JsonObject, type ModelCallOptions } from "@beamclaw/core";
import ky, { type KyInstance, TimeoutError as KyTimeoutError } from "ky";
import {
  abortedError,
  type CallContext,
  errorFromResponse,
  errorFromThrown,
  providerError,
  type VendorErrorParser,
} from "./errors.js";

/** A `fetch` implementation: the global one, or one you inject (proxy agent, tracing, test). */
export type FetchFunction = (
  input: Request | URL | string,
  init?: RequestInit,
) => Promise<Response>;

/** Options every provider accepts. */
export interface ProviderHttpOptions {
  /** The provider id used in `provider/model` references. */
  id?: string;
  /** API key. Each provider documents its environment-variable default. */
  apiKey?: string;
  /** API root, e.g. `https://api.anthropic.com/v1`; paths such as `messages` are appended. */
  baseUrl?: string;
  /** Extra headers sent with every request (per-call `headers` override them). */
  headers?: Record<string, string>;
  /**
   * Longest wait for the response headers, in ms; then the call fails with kind `timeout`.
   * Default 60 000. `Infinity` disables it.
   */
  timeoutMs?: number;
  /**
   * Longest silence between two chunks of a streaming response, in ms; then the call fails
   * with kind `timeout`. Default 300 000 (reasoning models can think for minutes without
   * sending anything). `Infinity` disables it.
   */
  idleTimeoutMs?: number;
  /** The `fetch` to use. Default: `globalThis.fetch`, looked up at call time. */
  fetch?: FetchFunction;
}

/** Default of {@link ProviderHttpOptions.timeoutMs}. */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Default of {@link ProviderHttpOptions.idleTimeoutMs}. */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** The largest delay a JavaScript timer supports. */
const MAX_TIMER_MS = 2_147_483_647;

/** What an adapter gives the HTTP client. */
export interface HttpClientConfig {
  baseUrl: string;
  /** Headers of every request (authentication, API version). */
  headers: Record<string, string>;
  timeoutMs: number;
  fetch: FetchFunction | undefined;
  parseVendorError: VendorErrorParser;
}

/** A 2xx response whose body is an event stream. */
export interface StreamResponse {
  response: Response;
  body: ReadableStream<Uint8Array>;
}

/** The requests an adapter makes. */
export interface HttpClient {
  /** POSTs `body` as JSON and returns the streaming 2xx response; anything else throws. */
  postEventStream(
    path: string,
    body: JsonObject,
    context: CallContext,
    call: ModelCallOptions,
  ): Promise<StreamResponse>;
  /** GETs a JSON document. */
  getJson(path: string, context: CallContext, call?: ModelCallOptions): Promise<unknown>;
}

/** Validates a time limit option: a positive number of ms, or `Infinity` for none. */
export function checkTimeout(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value) || value <= 0) {
    throw new InvalidArgumentError(
      `${name} must be a positive number of milliseconds or Infinity, got ${String(value)}`,
    );
  }
  return value;
}

/** Validates an option that must be a positive integer (a token count). */
export function checkPositiveInteger(name: string, value: number | undefined, fallback: number) {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new InvalidArgumentError(`${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** Validates `baseUrl` and strips trailing slashes. */
export function checkBaseUrl(value: string | undefined, fallback: string): string {
  const url = value ?? fallback;
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("protocol");
  } catch {
    throw new InvalidArgumentError(`baseUrl must be an http(s) URL, got ${JSON.stringify(url)}`);
  }
  return url.replace(/\/+$/, "");
}

/** Creates the ky-backed client of one provider. */
export function createHttpClient(config: HttpClientConfig): HttpClient {
  const injected = config.fetch;
  const api: KyInstance = ky.create({
    prefixUrl: config.baseUrl,
    headers: config.headers,
    retry: 0,
    timeout: config.timeoutMs >= MAX_TIMER_MS ? false : config.timeoutMs,
    throwHttpErrors: false,
    // Looked up per call, so a fetch patched after the provider was created (an HTTP mock,
    // an instrumentation library) is the one used.
    fetch: (input, init) => (injected ?? globalThis.fetch)(input, init),
  });

  async function send(
    method: "get" | "post",
    path: string,
    context: CallContext,
    call: ModelCallOptions,
    json?: JsonObject,
  ): Promise<Response> {
    const { signal } = call;
    if (signal?.aborted) throw abortedError(context, signal);
    let response: Response;
    try {
      response = await api(path, {
        method,
        ...(json === undefined ? {} : { json }),
        ...(signal === undefined ? {} : { signal }),
        ...(call.headers === undefined ? {} : { headers: call.headers }),
      });
    } catch (error) {
      if (error instanceof KyTimeoutError && !signal?.aborted) {
        throw providerError(
          "timeout",
          `no response within ${config.timeoutMs} ms (timeoutMs)`,
          context,
          { cause: error },
        );
      }
      throw errorFromThrown(error, context, signal);
    }
    if (!response.ok) throw await errorFromResponse(response, context, config.parseVendorError);
    return response;
  }

  return {
    async postEventStream(path, body, context, call) {
      const response = await send("post", path, context, call, body);
      const type = response.headers.get("content-type") ?? "";
      if (response.body === null) {
        throw providerError("network", "the response has no body", context);
      }
      // A gateway or a server that ignored `stream: true` answers with a document instead.
      if (/json|html|xml/i.test(type)) {
        const text = await response.text().catch(() => "");
        throw providerError(
          "malformed_stream",
          `expected an event stream, got ${type} (status ${response.status})`,
          context,
          { responseBody: text },
        );
      }
      return { response, body: response.body };
    },
    async getJson(path, context, call = {}) {
      const response = await send("get", path, context, call);
      const text = await response.text().catch((error: unknown) => {
        throw errorFromThrown(error, context, call.signal);
      });
      try {
        return JSON.parse(text) as unknown;
      } catch (error) {
        throw providerError("malformed_stream", "the response is not valid JSON", context, {
          cause: error,
          responseBody: text,
        });
      }
    },
  };
}

/** Reads an API key from the options or the environment, without failing when absent. */
export function resolveApiKey(explicit: string | undefined, envName: string): string | undefined {
  if (explicit !== undefined) return explicit;
  const fromEnv = typeof process === "undefined" ? undefined : process.env[envName];
  return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
}
