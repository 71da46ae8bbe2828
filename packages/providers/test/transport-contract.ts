/**
 * The failures every adapter must report the same way, run unchanged against each one:
 * HTTP errors with the vendor's documented bodies, `retry-after`, a stream cut mid-way, a
 * malformed event, timeouts, and abort. Each adapter supplies its endpoint, a fixture of a
 * good stream, and its vendor's error bodies.
 */
import { getEventListeners } from "node:events";
import {
  AbortedError,
  type ModelProvider,
  type ModelRequest,
  ProviderError,
  type ProviderErrorKind,
} from "@beamclaw/core";
import { HttpResponse, http } from "msw";
import type { setupServer } from "msw/node";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ERROR_BODY_MAX_BYTES } from "../src/http.js";
import type { ProviderHttpOptions } from "../src/index.js";
import { RELEASE_GRACE_MS, RELEASE_MAX_BYTES } from "../src/sse.js";
import { collect, collectFailure, errorResponse, sseResponse, untilAborted } from "./support.js";

/** One documented HTTP error of a vendor and what it must become. */
export interface HttpErrorCase {
  status: number;
  /** The vendor's error body (an object is sent as JSON, a string as text). */
  body: unknown;
  kind: ProviderErrorKind;
  retryable: boolean;
  /** What the case is, for the test name. */
  what: string;
}

export interface TransportContractConfig {
  name: string;
  server: ReturnType<typeof setupServer>;
  /** The endpoint the adapter POSTs to. */
  url: string;
  provider: (options?: ProviderHttpOptions) => ModelProvider;
  request: ModelRequest;
  /** A complete, good stream for this endpoint. */
  goodStream: string;
  httpErrors: HttpErrorCase[];
  /** A 429 body of the vendor, used for the retry-after cases. */
  rateLimitBody: unknown;
}

function jsonOrText(status: number, body: unknown, headers: Record<string, string> = {}) {
  if (typeof body === "string") {
    return new HttpResponse(body as never, {
      status,
      headers: { "content-type": "text/plain", ...headers },
    });
  }
  return errorResponse(status, body, headers);
}

function firstEvent(text: string): string {
  const end = text.indexOf("\n\n");
  return text.slice(0, end + 2);
}

/** A body that sends `prefix` and then stays open without sending anything. */
function stalled(prefix: string): HttpResponse<never> {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(prefix));
    },
  });
  return new HttpResponse(body as never, { headers: { "content-type": "text/event-stream" } });
}

/** An HTTP error response whose JSON body sends `prefix` and then stays open. */
function stalledError(status: number, prefix: string): HttpResponse<never> {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(prefix));
    },
  });
  return new HttpResponse(body as never, {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** What a test's response body does after its first chunk. */
interface BodySource {
  pull?(controller: ReadableStreamDefaultController<Uint8Array>): void | Promise<void>;
  cancel?(reason?: unknown): void;
}

/**
 * A fetch whose response body the test owns: it starts with `prefix`, then behaves as
 * `source` says. (msw does not pass a consumer's cancel back to a handler's stream.)
 */
function ownedBodyFetch(prefix: string, source: BodySource = {}): () => Promise<Response> {
  return async () =>
    new Response(
      new ReadableStream<Uint8Array>({
        ...source,
        start(controller) {
          controller.enqueue(new TextEncoder().encode(prefix));
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
}

export function describeTransportContract(config: TransportContractConfig): void {
  const { server, url, request } = config;

  describe(`${config.name}: transport failures`, () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it.each(config.httpErrors)(
      "HTTP $status ($what) becomes ProviderError kind $kind, retryable $retryable, with status, headers and body",
      async ({ status, body, kind, retryable }) => {
        server.use(
          http.post(url, () => jsonOrText(status, body, { "request-id": "req_test_123" })),
        );
        const error = await collect(config.provider().stream(request)).catch((e: unknown) => e);
        expect(ProviderError.isInstance(error)).toBe(true);
        const failure = error as ProviderError;
        expect(failure.kind).toBe(kind);
        expect(failure.isRetryable).toBe(retryable);
        expect(failure.statusCode).toBe(status);
        expect(failure.provider).toBe(config.provider().id);
        expect(failure.model).toBe(request.model);
        expect(failure.responseHeaders?.["request-id"]).toBe("req_test_123");
        expect(failure.responseBody).toBe(typeof body === "string" ? body : JSON.stringify(body));
        expect(failure.retryAfterMs).toBeUndefined();
      },
    );

    it("HTTP 429 with retry-after in seconds gives retryAfterMs", async () => {
      server.use(
        http.post(url, () => errorResponse(429, config.rateLimitBody, { "retry-after": "7" })),
      );
      const { error } = await collectFailure(config.provider().stream(request));
      expect(error.kind).toBe("rate_limit");
      expect(error.isRetryable).toBe(true);
      expect(error.retryAfterMs).toBe(7000);
    });

    it("HTTP 429 with retry-after as an HTTP date gives the time until that date", async () => {
      vi.useFakeTimers({ toFake: ["Date"] });
      vi.setSystemTime(new Date("2025-06-01T12:00:00.000Z"));
      const at = new Date("2025-06-01T12:00:30.000Z").toUTCString();
      server.use(
        http.post(url, () => errorResponse(429, config.rateLimitBody, { "retry-after": at })),
      );
      const { error } = await collectFailure(config.provider().stream(request));
      expect(error.retryAfterMs).toBe(30_000);
    });

    it("retry-after-ms takes precedence over retry-after", async () => {
      server.use(
        http.post(url, () =>
          errorResponse(429, config.rateLimitBody, {
            "retry-after": "2",
            "retry-after-ms": "1250",
          }),
        ),
      );
      const { error } = await collectFailure(config.provider().stream(request));
      expect(error.retryAfterMs).toBe(1250);
    });

    it("x-should-retry from the vendor decides whether the error is retryable", async () => {
      server.use(
        http.post(url, () => jsonOrText(500, "internal error", { "x-should-retry": "false" })),
      );
      const { error: noRetry } = await collectFailure(config.provider().stream(request));
      expect(noRetry.kind).toBe("server");
      expect(noRetry.isRetryable).toBe(false);
      server.use(http.post(url, () => jsonOrText(409, "conflict", { "x-should-retry": "true" })));
      const { error: retry } = await collectFailure(config.provider().stream(request));
      expect(retry.isRetryable).toBe(true);
    });

    it.each([
      ["no messages", { model: "m" }, /messages/],
      ["an empty model", { model: "", messages: [] }, /model/],
      ["an unknown role", { model: "m", messages: [{ role: "system", content: [] }] }, /role/],
      [
        "a fractional maxOutputTokens",
        { model: "m", messages: [], maxOutputTokens: 2.5 },
        /maxOutputTokens/,
      ],
      ["a NaN temperature", { model: "m", messages: [], temperature: Number.NaN }, /temperature/],
      ["an unknown thinking level", { model: "m", messages: [], thinking: "max" }, /thinking/],
      [
        "a tool without a schema",
        { model: "m", messages: [], tools: [{ name: "t", description: "" }] },
        /inputSchema/,
      ],
    ])(
      "a request with %s is rejected as invalid_request before anything is sent",
      async (_what, bad, message) => {
        let requests = 0;
        server.use(
          http.post(url, () => {
            requests++;
            return sseResponse(config.goodStream);
          }),
        );
        const { error } = await collectFailure(
          config.provider().stream(bad as unknown as ModelRequest),
        );
        expect(ProviderError.isInstance(error)).toBe(true);
        expect(error.kind).toBe("invalid_request");
        expect(error.isRetryable).toBe(false);
        expect(error.message).toMatch(message);
        expect(requests).toBe(0);
      },
    );

    it("a connection reset mid-stream is a retryable network error after the events already received", async () => {
      const cutAt = Math.floor(config.goodStream.length * 0.6);
      server.use(
        http.post(url, () =>
          sseResponse(config.goodStream, { cutAfterBytes: cutAt, cut: "error" }),
        ),
      );
      const { events, error } = await collectFailure(config.provider().stream(request));
      expect(events[0]?.type).toBe("response-start");
      expect(events.some((e) => e.type === "finish")).toBe(false);
      expect(error.kind).toBe("network");
      expect(error.isRetryable).toBe(true);
    });

    it("a stream that closes before the terminal event is a retryable network error", async () => {
      const cutAt = Math.floor(config.goodStream.length * 0.6);
      server.use(
        http.post(url, () =>
          sseResponse(config.goodStream, { cutAfterBytes: cutAt, cut: "close" }),
        ),
      );
      const { events, error } = await collectFailure(config.provider().stream(request));
      expect(events.length).toBeGreaterThan(0);
      expect(error.kind).toBe("network");
      expect(error.message).toMatch(/ended before/);
      expect(error.isRetryable).toBe(true);
    });

    it("an event whose data is not valid JSON is malformed_stream, not retryable, with the data kept", async () => {
      const text = `${firstEvent(config.goodStream)}data: {"type": oops\n\n`;
      server.use(http.post(url, () => sseResponse(text)));
      const { events, error } = await collectFailure(config.provider().stream(request));
      expect(events[0]?.type).toBe("response-start");
      expect(events.some((e) => e.type === "finish")).toBe(false);
      expect(error.kind).toBe("malformed_stream");
      expect(error.isRetryable).toBe(false);
      expect(error.responseBody).toContain("oops");
    });

    it.each([
      ["without a signal", false],
      ["with the caller's signal", true],
    ])(
      "no response headers within timeoutMs is a retryable timeout, and the request is cancelled (%s)",
      async (_what, withSignal) => {
        let cancelled: Promise<void> | undefined;
        server.use(
          http.post(url, async ({ request: req }) => {
            cancelled = untilAborted(req.signal);
            await cancelled;
            return HttpResponse.error();
          }),
        );
        const controller = new AbortController();
        const { error } = await collectFailure(
          config
            .provider({ timeoutMs: 50 })
            .stream(request, withSignal ? { signal: controller.signal } : {}),
        );
        expect(error.kind).toBe("timeout");
        expect(error.isRetryable).toBe(true);
        await expect(cancelled).resolves.toBeUndefined();
        // The caller's signal is not aborted by the timeout, and keeps no listener.
        expect(controller.signal.aborted).toBe(false);
        expect(getEventListeners(controller.signal, "abort")).toEqual([]);
      },
    );

    it("a stream silent for idleTimeoutMs is a retryable timeout", async () => {
      server.use(http.post(url, () => stalled(firstEvent(config.goodStream))));
      const { events, error } = await collectFailure(
        config.provider({ idleTimeoutMs: 50 }).stream(request),
      );
      expect(events[0]?.type).toBe("response-start");
      expect(events.some((e) => e.type === "finish")).toBe(false);
      expect(error.kind).toBe("timeout");
      expect(error.isRetryable).toBe(true);
    });

    it("aborting mid-stream throws AbortedError and cancels the HTTP request", async () => {
      let requestAborted: Promise<void> | undefined;
      server.use(
        http.post(url, ({ request: req }) => {
          requestAborted = untilAborted(req.signal);
          return stalled(firstEvent(config.goodStream));
        }),
      );
      const controller = new AbortController();
      const seen: string[] = [];
      const failure = await (async () => {
        for await (const event of config
          .provider()
          .stream(request, { signal: controller.signal })) {
          seen.push(event.type);
          controller.abort(new Error("user pressed stop"));
        }
      })().catch((e: unknown) => e);
      expect(seen).toEqual(["response-start"]);
      expect(AbortedError.isInstance(failure)).toBe(true);
      expect((failure as AbortedError).cause).toEqual(new Error("user pressed stop"));
      await expect(requestAborted).resolves.toBeUndefined();
    });

    it("an abort that lands while the next event is on its way stops it, and closes the stream", async () => {
      // The whole stream in one chunk: after the first event, the next ones are already
      // parsed, and an abort can only land between a next() call and its result.
      let cancelled = false;
      const oneChunkFetch = ownedBodyFetch(config.goodStream, {
        cancel() {
          cancelled = true;
        },
      });
      const controller = new AbortController();
      const seen: string[] = [];
      const failure = await (async () => {
        for await (const event of config
          .provider({ fetch: oneChunkFetch })
          .stream(request, { signal: controller.signal })) {
          seen.push(event.type);
          if (seen.length === 1) queueMicrotask(() => controller.abort(new Error("stop")));
        }
      })().catch((e: unknown) => e);
      expect(seen).toEqual(["response-start"]);
      expect(AbortedError.isInstance(failure)).toBe(true);
      expect((failure as AbortedError).cause).toEqual(new Error("stop"));
      // The stream was closed: its body cancelled and its abort listener removed.
      expect(cancelled).toBe(true);
      expect(getEventListeners(controller.signal, "abort")).toEqual([]);
    });

    it("an already aborted signal throws AbortedError without sending a request", async () => {
      let requests = 0;
      server.use(
        http.post(url, () => {
          requests++;
          return sseResponse(config.goodStream);
        }),
      );
      const failure = await collect(
        config.provider().stream(request, { signal: AbortSignal.abort() }),
      ).catch((e: unknown) => e);
      expect(AbortedError.isInstance(failure)).toBe(true);
      expect(requests).toBe(0);
    });

    it("aborting while the response headers are awaited throws AbortedError, cancels the request and leaves no listener", async () => {
      let requestAborted: Promise<void> | undefined;
      let received!: () => void;
      const arrived = new Promise<void>((resolve) => {
        received = resolve;
      });
      server.use(
        http.post(url, async ({ request: req }) => {
          requestAborted = untilAborted(req.signal);
          received();
          await requestAborted;
          return HttpResponse.error();
        }),
      );
      const controller = new AbortController();
      const failure = collect(config.provider().stream(request, { signal: controller.signal }))
        .then(() => undefined)
        .catch((e: unknown) => e);
      await arrived;
      controller.abort(new Error("user pressed stop"));
      const error = await failure;
      expect(AbortedError.isInstance(error)).toBe(true);
      expect((error as AbortedError).cause).toEqual(new Error("user pressed stop"));
      await expect(requestAborted).resolves.toBeUndefined();
      expect(getEventListeners(controller.signal, "abort")).toEqual([]);
    });

    it("an error response whose body stalls still ends at the caller's abort", async () => {
      server.use(http.post(url, () => stalledError(500, '{"error":')));
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(new Error("stop")), 50);
      const failure = await collect(
        config.provider().stream(request, { signal: controller.signal }),
      ).catch((e: unknown) => e);
      clearTimeout(timer);
      expect(controller.signal.aborted).toBe(true);
      expect(AbortedError.isInstance(failure)).toBe(true);
      expect(getEventListeners(controller.signal, "abort")).toEqual([]);
    });

    it("an error response whose body does not end gives the HTTP error when timeoutMs runs out", async () => {
      const [httpError] = config.httpErrors;
      server.use(http.post(url, () => stalledError(httpError!.status, '{"error":')));
      const { error } = await collectFailure(config.provider({ timeoutMs: 100 }).stream(request));
      expect(error.statusCode).toBe(httpError!.status);
      expect(error.responseBody).toBe('{"error":');
    });

    it("an endless error body is read only up to its limit, then cancelled", async () => {
      let sent = 0;
      let cancelled = false;
      const endlessError = async () =>
        new Response(
          new ReadableStream<Uint8Array>({
            pull(controller) {
              const chunk = new TextEncoder().encode("x".repeat(8 * 1024));
              sent += chunk.byteLength;
              controller.enqueue(chunk);
            },
            cancel() {
              cancelled = true;
            },
          }),
          { status: 500, headers: { "content-type": "text/plain" } },
        );
      const { error } = await collectFailure(
        config.provider({ fetch: endlessError }).stream(request),
      );
      expect(error.statusCode).toBe(500);
      expect(error.kind).toBe("server");
      expect(cancelled).toBe(true);
      expect(sent).toBeGreaterThanOrEqual(ERROR_BODY_MAX_BYTES);
      expect(sent).toBeLessThan(ERROR_BODY_MAX_BYTES + 64 * 1024);
      expect(error.responseBody?.startsWith("xxxx")).toBe(true);
    });

    it("a fetch that ignores its signal still ends at the caller's abort, and its late response's body is cancelled", async () => {
      let cancelled = false;
      let answer!: () => void;
      const deaf = () =>
        new Promise<Response>((resolve) => {
          answer = () =>
            resolve(
              new Response(
                new ReadableStream<Uint8Array>({
                  cancel() {
                    cancelled = true;
                  },
                }),
                { headers: { "content-type": "text/event-stream" } },
              ),
            );
        });
      const controller = new AbortController();
      const failure = collect(
        config.provider({ fetch: deaf }).stream(request, { signal: controller.signal }),
      ).catch((e: unknown) => e);
      await new Promise((resolve) => setTimeout(resolve, 20));
      controller.abort(new Error("stop"));
      const error = await failure;
      expect(AbortedError.isInstance(error)).toBe(true);
      expect(getEventListeners(controller.signal, "abort")).toEqual([]);
      answer();
      await vi.waitFor(() => expect(cancelled).toBe(true), { timeout: 1_000, interval: 5 });
    });

    it("a fetch that ignores its signal still ends when timeoutMs runs out", async () => {
      const never = () => new Promise<Response>(() => {});
      const started = performance.now();
      const { error } = await collectFailure(
        config.provider({ fetch: never, timeoutMs: 50 }).stream(request),
      );
      expect(error.kind).toBe("timeout");
      expect(performance.now() - started).toBeLessThan(2_000);
    });

    it("a signal shared by many calls keeps no listener once they have ended, however they ended", async () => {
      const controller = new AbortController();
      const { signal } = controller;
      const listeners = () => getEventListeners(signal, "abort").length;
      // Completed.
      server.use(http.post(url, () => sseResponse(config.goodStream)));
      for (let i = 0; i < 3; i++) {
        const events = await collect(config.provider().stream(request, { signal }));
        expect(events.at(-1)?.type).toBe("finish");
      }
      expect(listeners()).toBe(0);
      // Failed with an HTTP error.
      const [httpError] = config.httpErrors;
      server.use(http.post(url, () => jsonOrText(httpError!.status, httpError!.body)));
      const { error } = await collectFailure(config.provider().stream(request, { signal }));
      expect(error.statusCode).toBe(httpError!.status);
      expect(listeners()).toBe(0);
      // Left early by the caller.
      server.use(http.post(url, () => stalled(firstEvent(config.goodStream))));
      for await (const event of config.provider().stream(request, { signal })) {
        expect(event.type).toBe("response-start");
        expect(listeners()).toBeGreaterThan(0);
        break;
      }
      expect(listeners()).toBe(0);
      // Cut mid-stream.
      server.use(
        http.post(url, () =>
          sseResponse(config.goodStream, {
            cutAfterBytes: Math.floor(config.goodStream.length / 2),
            cut: "error",
          }),
        ),
      );
      const cut = await collectFailure(config.provider().stream(request, { signal }));
      expect(cut.error.kind).toBe("network");
      expect(listeners()).toBe(0);
      expect(signal.aborted).toBe(false);
    });

    it("breaking out of the loop early cancels the response body", async () => {
      // msw does not pass a consumer's cancel back to the handler's stream, so this case
      // injects a fetch whose body it owns.
      let cancelled = false;
      const stalledFetch = ownedBodyFetch(firstEvent(config.goodStream), {
        cancel() {
          cancelled = true;
        },
      });
      for await (const event of config.provider({ fetch: stalledFetch }).stream(request)) {
        expect(event.type).toBe("response-start");
        break;
      }
      expect(cancelled).toBe(true);
    });

    it("after the terminal event the body is read to its end, not cancelled, so its connection can be reused", async () => {
      // The server's end of the response comes 20 ms after the terminal event, as it does when
      // it arrives in a later packet. A cancelled body makes undici close the connection: every
      // call would then open a new TCP and TLS connection.
      let cancelled = false;
      let ended = false;
      const lateEndFetch = ownedBodyFetch(config.goodStream, {
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          ended = true;
          controller.close();
        },
        cancel() {
          cancelled = true;
        },
      });
      const events = await collect(config.provider({ fetch: lateEndFetch }).stream(request));
      // The caller was not held until the end of the body.
      expect(ended).toBe(false);
      expect(events.at(-1)?.type).toBe("finish");
      await vi.waitFor(() => expect(ended).toBe(true), { timeout: 2_000, interval: 5 });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(cancelled).toBe(false);
    });

    it("a body left open after the terminal event does not hold the caller, and is cancelled after a grace period", async () => {
      let cancelledAt: number | undefined;
      const openFetch = ownedBodyFetch(config.goodStream, {
        cancel() {
          cancelledAt = performance.now();
        },
      });
      const events = await collect(config.provider({ fetch: openFetch }).stream(request));
      const doneAt = performance.now();
      expect(events.at(-1)?.type).toBe("finish");
      expect(cancelledAt).toBeUndefined();
      await vi.waitFor(() => expect(cancelledAt).toBeDefined(), {
        timeout: RELEASE_GRACE_MS + 2_000,
        interval: 20,
      });
      expect(cancelledAt! - doneAt).toBeGreaterThanOrEqual(RELEASE_GRACE_MS - 50);
    });

    it("a body that goes on sending after the terminal event is cancelled once it exceeds the limit", async () => {
      let cancelled = false;
      let sent = 0;
      const chattyFetch = ownedBodyFetch(config.goodStream, {
        pull(controller) {
          // SSE comment lines: nothing the adapter would deliver, only bytes.
          const chunk = new TextEncoder().encode(`: ${"x".repeat(8 * 1024)}\n`);
          sent += chunk.byteLength;
          controller.enqueue(chunk);
        },
        cancel() {
          cancelled = true;
        },
      });
      const events = await collect(config.provider({ fetch: chattyFetch }).stream(request));
      expect(events.at(-1)?.type).toBe("finish");
      await vi.waitFor(() => expect(cancelled).toBe(true), { timeout: 500, interval: 5 });
      expect(sent).toBeGreaterThan(RELEASE_MAX_BYTES);
      expect(sent).toBeLessThan(RELEASE_MAX_BYTES + 64 * 1024);
    });
  });
}
