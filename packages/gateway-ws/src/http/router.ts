/**
 * HTTP on the gateway's port: health probes (no auth), the OpenAI-compatible API (bearer auth),
 * inbound webhooks (`hooks`, their own token), and the dashboard's static files at `/`.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { formatExitReason } from "@beamclaw/core";
import { scopeAllows } from "../auth/pairing.js";
import { authRateLimiterOf, isLoopbackRequest } from "../auth/rate-limit.js";
import { secretsEqual } from "../auth/shared-secret.js";
import type { HookIngress } from "../hooks/ingress.js";
import type { GatewayHub } from "../hub.js";
import { Scopes } from "../protocol/constants.js";
import { handleChatCompletions, handleModel, handleModels, MODEL_ITEM_PATH } from "./openai.js";
import { handleResponseItem, handleResponses, RESPONSE_ITEM_PATH } from "./responses.js";
import { dashboardHeaders, serveStatic } from "./static.js";
import { bearerToken, openAiError, sendJson } from "./util.js";

/** What the router needs besides the hub. */
export interface HttpRouterOptions {
  hub: GatewayHub;
  /** The gateway's lifecycle, for the probes. */
  phase(): "starting" | "running" | "draining" | "stopped";
  chatCompletions: boolean;
  models: boolean;
  /** `POST /v1/responses` (OpenResponses); off unless set. */
  responses?: boolean;
  /** How long `/v1/responses` keeps a stateless response (0: none). Default 30 days. */
  responsesKeepMs?: number;
  dashboardDir: string | undefined;
  /** Where a front server mounts this gateway (`/tenants/acme`): the dashboard connects there. */
  basePath?: string;
  maxBodyBytes: number;
  /** Whether a browser request's `Origin` may use the API. */
  originAllowed(req: IncomingMessage): boolean;
  /**
   * Whether a request's `Host` may reach the gateway (all but the health probes); refused
   * with 403 `host_not_allowed`. Default: every host.
   */
  hostAllowed?(req: IncomingMessage): boolean;
  /** True while the runtime sheds load under memory pressure (`/readyz` answers 503). */
  underMemoryPressure?(): boolean;
  /** Inbound webhooks (`hooks`), answered under their path when enabled. */
  hooks?: HookIngress;
}

/** Whether a request's bearer token lets it use the API. */
export async function authorizeHttp(hub: GatewayHub, req: IncomingMessage): Promise<boolean> {
  if (hub.auth.mode === "none") return true;
  const token = bearerToken(req);
  if (token === undefined) return false;
  const secret = hub.auth.mode === "token" ? hub.auth.token : hub.auth.password;
  if (secretsEqual(token, secret ?? "")) return true;
  // A device token with write access works too.
  const stored = await hub.pairing.lookupToken(token);
  return (
    stored !== undefined && stored.role === "operator" && scopeAllows(stored.scopes, Scopes.WRITE)
  );
}

/**
 * {@link authorizeHttp} under the gateway's limit on failed logins (`auth.rateLimit`), the one
 * the WebSocket `connect` counts against: a wrong bearer token is a failed login of its remote
 * address (a request without one is not), and a locked-out address is refused before its
 * token is looked at: `retryAfterMs` says how long it waits.
 */
async function authorizeHttpLimited(
  hub: GatewayHub,
  req: IncomingMessage,
): Promise<{ ok: true } | { ok: false; retryAfterMs?: number }> {
  const limiter = hub.auth.mode === "none" ? null : authRateLimiterOf(hub.auth, hub.now);
  const address = hub.trustedProxies.clientAddress(req);
  const loopback = isLoopbackRequest(req);
  const gate = limiter?.check(address, loopback) ?? { allowed: true };
  if (!gate.allowed) return { ok: false, retryAfterMs: gate.retryAfterMs };
  if (await authorizeHttp(hub, req)) {
    if (bearerToken(req) !== undefined) limiter?.recordSuccess(address);
    return { ok: true };
  }
  if (limiter === null || bearerToken(req) === undefined) return { ok: false };
  limiter.recordFailure(address, loopback);
  return { ok: false };
}

/**
 * Response headers a page calling the API across origins may read: the OpenAI SDKs wait
 * `retry-after-ms` (else `retry-after`, whole seconds) before retrying a 429 or 503.
 */
const CORS_EXPOSED_HEADERS = "retry-after, retry-after-ms, x-should-retry, www-authenticate";
/** How long a browser may keep a granted preflight, seconds. */
const CORS_MAX_AGE_S = 600;
/** A list of header names (RFC 9110 tokens), as a preflight's `Access-Control-Request-Headers`. */
const HEADER_NAME_LIST = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/;

/**
 * Whether `req` comes from a browser page of another origin that may use the API (the
 * gateway's `allowedOrigins`); if so, the response says so (`Access-Control-Allow-Origin`).
 * Bearer tokens, not cookies, authorize the API: no credentials are allowed.
 */
function corsAllowed(
  req: IncomingMessage,
  res: ServerResponse,
  options: HttpRouterOptions,
): boolean {
  const origin = req.headers.origin;
  if (typeof origin !== "string" || origin === "" || !options.originAllowed(req)) return false;
  res.setHeader("access-control-allow-origin", origin);
  res.setHeader("vary", "Origin");
  res.setHeader("access-control-expose-headers", CORS_EXPOSED_HEADERS);
  return true;
}

/**
 * A CORS preflight from an allowed origin: 204 naming the path's methods and the headers the
 * page asked to send (the bearer token's `Authorization`, `Content-Type`, an SDK's own).
 */
function answerPreflight(
  req: IncomingMessage,
  res: ServerResponse,
  methods: readonly string[],
): void {
  const asked = req.headers["access-control-request-headers"];
  const headers: Record<string, string> = {
    "access-control-allow-methods": methods.join(", "),
    "access-control-max-age": String(CORS_MAX_AGE_S),
  };
  if (typeof asked === "string" && HEADER_NAME_LIST.test(asked.trim())) {
    headers["access-control-allow-headers"] = asked.trim();
  }
  res.writeHead(204, headers);
  res.end();
}

/** Returns the request handler of the gateway's HTTP server. */
export function createHttpHandler(options: HttpRouterOptions) {
  const { hub } = options;
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? "GET";
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://gateway.invalid");
    } catch {
      // A target Node's parser lets through but WHATWG URL refuses (`//host:99999`, `//[::1`).
      return openAiError(
        res,
        400,
        "the request target is not a valid URL",
        "invalid_request_error",
        "invalid_url",
      );
    }
    const path = url.pathname;
    try {
      switch (path) {
        case "/health":
        case "/healthz": {
          const phase = options.phase();
          // The runtime's supervision tree gave up: nothing recovers it but a restart.
          const failed = runtimeFailure(hub);
          if (failed !== undefined) return sendJson(res, 503, { ok: false, ...failed });
          return sendJson(res, phase === "stopped" ? 503 : 200, {
            ok: phase !== "stopped",
            status: phase === "stopped" ? "stopped" : "live",
          });
        }
        case "/readyz": {
          const failed = runtimeFailure(hub);
          if (failed !== undefined) return sendJson(res, 503, { ready: false, ...failed });
          const phase = options.phase();
          const pressured = phase === "running" && options.underMemoryPressure?.() === true;
          if (phase === "running" && !pressured) {
            // A store that stopped (disk full, read-only, Redis gone) makes every turn fail:
            // not ready, so an orchestrator stops sending traffic and can restart us.
            const problem = await storeProblem(hub);
            if (problem !== undefined) {
              return sendJson(res, 503, { ready: false, status: "store-unavailable", ...problem });
            }
          }
          const ready = phase === "running" && !pressured;
          return sendJson(res, ready ? 200 : 503, {
            ready,
            status: pressured ? "memory-pressure" : phase,
          });
        }
        case "/startupz": {
          const phase = options.phase();
          const started = phase !== "starting";
          return sendJson(res, started ? 200 : 503, { started, status: phase });
        }
      }
      const hookPath = options.hooks?.owns(path) === true;
      const responseId = RESPONSE_ITEM_PATH.exec(path)?.[1];
      const modelId = MODEL_ITEM_PATH.exec(path)?.[1];
      const apiPath =
        path === "/v1/chat/completions" ||
        path === "/v1/models" ||
        modelId !== undefined ||
        path === "/v1/responses" ||
        responseId !== undefined;
      if (!hookPath && !apiPath) {
        // Every answer under the dashboard's path, its errors too, has its security headers
        // (a 404's JSON or a refusal is a page a browser may be sent to, or framed).
        for (const [name, value] of Object.entries(dashboardHeaders(req))) {
          res.setHeader(name, value);
        }
      }
      if (options.hostAllowed?.(req) === false) {
        return openAiError(
          res,
          403,
          "requests for this host are not allowed: name the gateway by its address or localhost, or list its origin in allowedOrigins",
          "invalid_request_error",
          "host_not_allowed",
        );
      }
      if (hookPath && options.hooks !== undefined) return await options.hooks.handle(req, res, url);
      if (apiPath) {
        const enabled =
          path === "/v1/models" || modelId !== undefined
            ? options.models
            : path === "/v1/responses" || responseId !== undefined
              ? options.responses === true
              : options.chatCompletions;
        if (!enabled)
          return openAiError(
            res,
            404,
            `${path} is turned off in gateway.http`,
            "invalid_request_error",
            "not_found",
          );
        const allowed =
          path === "/v1/models" || modelId !== undefined
            ? ["GET"]
            : responseId !== undefined
              ? ["GET", "DELETE"]
              : ["POST"];
        // A page of an allowed origin (`allowedOrigins`) calls the API across origins: CORS.
        if (corsAllowed(req, res, options)) {
          const preflight = req.headers["access-control-request-method"];
          if (method === "OPTIONS" && typeof preflight === "string") {
            return answerPreflight(req, res, allowed);
          }
        }
        if (!allowed.includes(method)) {
          return openAiError(
            res,
            405,
            `use ${allowed.join(" or ")} ${path}`,
            "invalid_request_error",
            "method_not_allowed",
            { allow: allowed.join(", ") },
          );
        }
        if (!options.originAllowed(req)) {
          return openAiError(
            res,
            403,
            "requests from this origin are not allowed",
            "invalid_request_error",
            "origin_not_allowed",
          );
        }
        if (method === "POST" && !/^application\/json\b/i.test(req.headers["content-type"] ?? "")) {
          // A browser cannot send this cross-site without a preflight, which is never granted.
          return openAiError(
            res,
            415,
            "send the body as application/json",
            "invalid_request_error",
            "unsupported_media_type",
          );
        }
        const authorized = await authorizeHttpLimited(hub, req);
        if (!authorized.ok && authorized.retryAfterMs !== undefined) {
          return openAiError(
            res,
            429,
            "too many failed authentication attempts from this address; retry later",
            "requests",
            "auth_rate_limited",
            { "retry-after": String(Math.max(1, Math.ceil(authorized.retryAfterMs / 1000))) },
          );
        }
        if (!authorized.ok) {
          return openAiError(
            res,
            401,
            "a valid bearer token is required",
            "invalid_request_error",
            "invalid_api_key",
            {
              "www-authenticate": "Bearer",
            },
          );
        }
        if (path === "/v1/models") return handleModels(hub, res);
        if (modelId !== undefined) return handleModel(hub, res, modelId);
        if (responseId !== undefined) return await handleResponseItem(hub, req, res, responseId);
        if (path === "/v1/responses") {
          return await handleResponses(hub, req, res, {
            maxBodyBytes: options.maxBodyBytes,
            ...(options.responsesKeepMs === undefined ? {} : { keepMs: options.responsesKeepMs }),
          });
        }
        return await handleChatCompletions(hub, req, res, options.maxBodyBytes);
      }
      if ((method === "GET" || method === "HEAD") && options.dashboardDir !== undefined) {
        if (await serveStatic(req, res, options.dashboardDir, path, options.basePath)) return;
      }
      if (
        (method === "GET" || method === "HEAD") &&
        path === "/" &&
        options.dashboardDir === undefined
      ) {
        res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        res.end(
          "BeamClaw gateway. The dashboard is not installed; connect a WebSocket client to this port.\n",
        );
        return;
      }
      return openAiError(
        res,
        404,
        `no route for ${method} ${path}`,
        "invalid_request_error",
        "not_found",
      );
    } catch (error) {
      hub.log.error(`http ${method} ${path} failed: ${(error as Error).message}`);
      if (!res.headersSent)
        return openAiError(res, 500, "internal error", "server_error", "internal");
      res.end();
    }
  };
}

/** `{ status: "runtime-failed", reason }` once the runtime's supervision tree gave up. */
function runtimeFailure(hub: GatewayHub): { status: "runtime-failed"; reason: string } | undefined {
  const { runtime } = hub;
  if (runtime.status !== "failed") return undefined;
  return {
    status: "runtime-failed",
    reason: runtime.failure === undefined ? "unknown" : formatExitReason(runtime.failure),
  };
}

/** How long `/readyz` waits for the store's answer before calling it unavailable. */
const READYZ_STORE_TIMEOUT_MS = 2_000;

/** `undefined` when one cheap store read succeeds in time; else the error's code and message. */
async function storeProblem(hub: GatewayHub): Promise<{ code: string; error: string } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      hub.runtime.store.kv.get("beamclaw:readyz"),
      new Promise((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              Object.assign(new Error("the store did not answer in time"), { code: "TIMEOUT" }),
            ),
          READYZ_STORE_TIMEOUT_MS,
        );
      }),
    ]);
    return undefined;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return {
      code: typeof code === "string" ? code : "STORE_UNAVAILABLE",
      error: error instanceof Error ? error.message : String(error),
    };
  } finally {
    clearTimeout(timer);
  }
}
