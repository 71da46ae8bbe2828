/**
 * The HTTP layer every adapter shares: one ky instance per provider with no retries (the
 * core `ProviderChain` owns retries, backoff and fallback, so a retry here would multiply
 * them), a time limit for the response headers, and every failure turned into a
 * `ProviderError` with the vendor's error body parsed.
 */
import {
  InvalidArgumentError,
  type JsonObject,
  type ModelCallOptions,
  wellFormedJson,
} from "@beamclaw/core";
import ky, { type KyInstance } from "ky";
import {
  abortedError,
  type CallContext,
  errorFromResponse,
  errorFromThrown,
  providerError,
  type VendorErrorParser,
} from "./errors.js";

/**
 * A `fetch` implementation: the global one, or one you inject (proxy agent, tracing, test).
 * It is called with a `Request` and an `init` whose `signal` is the request's cancellation (the
 * caller's abort, `timeoutMs`): a wrapper should pass `init` on, as
 * `(input, init) => fetch(input, { ...init, dispatcher })` does. One that drops it still has
 * its call end at once on an abort or a timeout, but the request itself runs on until its
 * response comes (whose body is then cancelled).
 */
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
   * Longest wait for the response headers of a stream, in ms; then the call fails with kind
   * `timeout` and the request is cancelled. For a response that is not a stream (an HTTP
   * error, a JSON document) it also bounds the reading of its body. Default 60 000.
   * `Infinity` disables it.
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
export const MAX_TIMER_MS = 2_147_483_647;

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
  /**
   * Ends the request's watch of the caller's signal: call it once done with the body
   * (`readSse` does, given it as its `release` option). Until then the caller's abort
   * cancels the request.
   */
  release(): void;
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
  /** POSTs `form` as `multipart/form-data` (a file upload) and returns the JSON answer. */
  postForm(
    path: string,
    form: FormData,
    context: CallContext,
    call?: ModelCallOptions,
  ): Promise<unknown>;
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

/**
 * The name of the first of `headers` that cannot be sent (a name that is not an HTTP token, a
 * value with a line break or a character beyond U+00FF), or undefined when all can. Its value
 * is never shown: it may be an API key.
 */
function unsendableHeader(headers: Record<string, string>): string | undefined {
  for (const [name, value] of Object.entries(headers)) {
    try {
      new Headers([[name, value]]);
    } catch {
      return name;
    }
  }
  return undefined;
}

function unsendableMessage(name: string): string {
  return `the ${JSON.stringify(name)} header cannot be sent: its name is not an HTTP token, or its value holds a line break or a character beyond U+00FF (for the API key's header, look for a stray character in the key)`;
}

/** Most bytes of an error's body, or of a document where an event stream was expected, read. */
export const ERROR_BODY_MAX_BYTES = 64 * 1024;

/**
 * The cancellation of one request: aborted when the caller's signal aborts, or when the time
 * limit runs out (the response headers of an event stream; the whole body of any other
 * response). It is what the request's `fetch` follows, and it stops a body being read as
 * text, whatever made the body (a mocked or proxied body may ignore the request's signal).
 *
 * The caller's signal is joined to it by hand, with one listener that is removed once the
 * client is done with the response (an error's body or a JSON document read, an event
 * stream's body ended or cancelled). Handing the caller's signal to ky instead would join it
 * to ky's own with `AbortSignal.any`, which on Node 20 costs a provider call about 30 µs of
 * CPU, and the agent loop always passes one.
 */
class RequestCancellation {
  readonly #controller = new AbortController();
  readonly #caller: AbortSignal | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Stops the body being read as text, if one is. */
  #stopReading: (() => void) | undefined;
  /** Ends the wait for the response headers, if one is waiting. */
  #stopWaiting: ((error: unknown) => void) | undefined;

  constructor(caller: AbortSignal | undefined, timeoutMs: number) {
    this.#caller = caller;
    caller?.addEventListener("abort", this.#onCallerAbort, { once: true });
    if (timeoutMs < MAX_TIMER_MS) this.#timer = setTimeout(this.#onTimeout, timeoutMs);
  }

  /** The signal the request's `fetch` follows. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** True once the request was cancelled (the caller aborted, or the time limit ran out). */
  get cancelled(): boolean {
    return this.#controller.signal.aborted;
  }

  /**
   * Waits for `response`, or for the cancellation, whichever comes first: a `fetch` that does
   * not follow its `init.signal` (a wrapper that drops `init`) cannot hold the call past an
   * abort or the time limit. A response that comes after that has its body cancelled.
   */
  waitFor(response: Promise<Response>): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      this.#stopWaiting = reject;
      response.then(
        (value) => {
          this.#stopWaiting = undefined;
          if (this.cancelled) value.body?.cancel().catch(() => {});
          resolve(value);
        },
        (error: unknown) => {
          this.#stopWaiting = undefined;
          reject(error);
        },
      );
    });
  }

  /** An event stream's headers are in: its chunks have their own idle limit from here on. */
  streamStarted(): void {
    clearTimeout(this.#timer);
  }

  /** The client is done with the response: stops the timer and the watch of the caller. */
  release(): void {
    clearTimeout(this.#timer);
    this.#caller?.removeEventListener("abort", this.#onCallerAbort);
  }

  /**
   * Reads `response`'s body as text, up to `maxBytes` (the rest is cancelled); a cancellation
   * stops the read, and the text read so far is returned. A body that fails mid-way gives
   * what came before the failure.
   */
  async readText(response: Response, maxBytes = Number.POSITIVE_INFINITY): Promise<string> {
    if (response.body === null || this.cancelled) return "";
    const reader = response.body.getReader();
    const stop = () => {
      reader.cancel().catch(() => {});
    };
    this.#stopReading = stop;
    const decoder = new TextDecoder();
    let text = "";
    let bytes = 0;
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done || this.cancelled) break;
        bytes += value.byteLength;
        if (bytes > maxBytes) {
          text += decoder.decode(value.subarray(0, value.byteLength - (bytes - maxBytes)), {
            stream: true,
          });
          stop();
          break;
        }
        text += decoder.decode(value, { stream: true });
      }
    } catch {
      // The body failed (connection reset, or the cancel above): keep what was read.
    } finally {
      this.#stopReading = undefined;
    }
    return text + decoder.decode();
  }

  readonly #onCallerAbort = (): void => {
    clearTimeout(this.#timer);
    this.#cancel(this.#caller?.reason);
  };

  readonly #onTimeout = (): void => {
    this.#caller?.removeEventListener("abort", this.#onCallerAbort);
    this.#cancel(new Error("the request timed out"));
  };

  #cancel(reason: unknown): void {
    this.#controller.abort(reason);
    this.#stopWaiting?.(reason);
    this.#stopReading?.();
  }
}

/**
 * Creates the ky-backed client of one provider. Headers that cannot be sent throw
 * `InvalidArgumentError`.
 */
export function createHttpClient(config: HttpClientConfig): HttpClient {
  const unsendable = unsendableHeader(config.headers);
  if (unsendable !== undefined) throw new InvalidArgumentError(unsendableMessage(unsendable));
  const injected = config.fetch;
  const api: KyInstance = ky.create({
    prefixUrl: config.baseUrl,
    headers: config.headers,
    retry: 0,
    // The time limit is the request's own (see RequestCancellation), not ky's.
    timeout: false,
    throwHttpErrors: false,
    // A lone surrogate in a history (a tool's output cut mid-emoji, say) is sent as U+FFFD:
    // as a `\udXXX` escape, every vendor refuses the whole request, and every later one.
    stringifyJson: wellFormedJson,
  });

  /** The error for a request whose cancellation fired: the caller's abort, or the timeout. */
  function cancelledError(context: CallContext, signal: AbortSignal | undefined, cause?: unknown) {
    if (signal?.aborted) return abortedError(context, signal);
    return providerError(
      "timeout",
      `no response within ${config.timeoutMs} ms (timeoutMs)`,
      context,
      cause === undefined ? {} : { cause },
    );
  }

  /**
   * Sends a request and hands the 2xx response to `read`, under the request's cancellation,
   * which is released when `read` settles unless `read` takes it over (and releases it
   * itself) by returning normally with `keep` true. Any other status throws the vendor's
   * error, parsed from its body.
   */
  async function request<T>(
    method: "get" | "post",
    path: string,
    context: CallContext,
    call: ModelCallOptions,
    json: JsonObject | FormData | undefined,
    read: (response: Response, cancellation: RequestCancellation) => Promise<T>,
    keep = false,
  ): Promise<T> {
    const { signal } = call;
    if (signal?.aborted) throw abortedError(context, signal);
    // Checked here: the `Headers` that ky builds would throw a `TypeError` from inside the
    // request, which would pass for a network failure (and be retried).
    const unsendable = call.headers === undefined ? undefined : unsendableHeader(call.headers);
    if (unsendable !== undefined) {
      throw providerError("invalid_request", unsendableMessage(unsendable), context);
    }
    const cancellation = new RequestCancellation(signal, config.timeoutMs);
    let kept = false;
    try {
      let response: Response;
      try {
        response = await cancellation.waitFor(
          api(path, {
            method,
            ...(json === undefined ? {} : json instanceof FormData ? { body: json } : { json }),
            ...(call.headers === undefined ? {} : { headers: call.headers }),
            // Looked up per call, so a fetch patched after the provider was created (an HTTP
            // mock, an instrumentation library) is the one used.
            fetch: (input, init) =>
              (injected ?? globalThis.fetch)(input, { ...init, signal: cancellation.signal }),
          }),
        );
      } catch (error) {
        if (cancellation.cancelled) throw cancelledError(context, signal, error);
        throw errorFromThrown(error, context, signal);
      }
      if (!response.ok) {
        const body = await cancellation.readText(response, ERROR_BODY_MAX_BYTES);
        // Cut short by the caller's abort: that is the answer. By the time limit: the status
        // alone still says what happened.
        if (signal?.aborted) throw abortedError(context, signal);
        throw errorFromResponse(response, body, context, config.parseVendorError);
      }
      const result = await read(response, cancellation);
      kept = keep;
      return result;
    } finally {
      if (!kept) cancellation.release();
    }
  }

  /** Reads a 2xx answer as JSON (`malformed_stream` when it is not). */
  function readJson(context: CallContext, call: ModelCallOptions) {
    return async (response: Response, cancellation: RequestCancellation): Promise<unknown> => {
      const text = await cancellation.readText(response);
      if (cancellation.cancelled) throw cancelledError(context, call.signal);
      try {
        return JSON.parse(text) as unknown;
      } catch (error) {
        throw providerError("malformed_stream", "the response is not valid JSON", context, {
          cause: error,
          responseBody: text,
        });
      }
    };
  }

  return {
    postEventStream(path, body, context, call) {
      return request(
        "post",
        path,
        context,
        call,
        body,
        async (response, cancellation) => {
          const type = response.headers.get("content-type") ?? "";
          if (response.body === null) {
            throw providerError("network", "the response has no body", context);
          }
          // A gateway or a server that ignored `stream: true` answers with a document instead.
          if (/json|html|xml/i.test(type)) {
            const text = await cancellation.readText(response, ERROR_BODY_MAX_BYTES);
            if (call.signal?.aborted) throw abortedError(context, call.signal);
            throw providerError(
              "malformed_stream",
              `expected an event stream, got ${type} (status ${response.status})`,
              context,
              { responseBody: text },
            );
          }
          cancellation.streamStarted();
          return { response, body: response.body, release: () => cancellation.release() };
        },
        true,
      );
    },
    getJson(path, context, call = {}) {
      return request("get", path, context, call, undefined, readJson(context, call));
    },
    postForm(path, form, context, call = {}) {
      return request("post", path, context, call, form, readJson(context, call));
    },
  };
}

/** Reads an API key from the options or the environment, without failing when absent. */
export function resolveApiKey(explicit: string | undefined, envName: string): string | undefined {
  if (explicit !== undefined) return explicit;
  const fromEnv = typeof process === "undefined" ? undefined : process.env[envName];
  return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
}
