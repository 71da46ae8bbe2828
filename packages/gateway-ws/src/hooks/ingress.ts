/**
 * Inbound webhooks on the gateway's port, as OpenClaw's `hooks`: an external service (GitHub,
 * a monitor, Gmail through Pub/Sub, a form) calls
 *
 * - `POST <path>/wake` `{ text, mode?, agentId? }`: a line for the agent's main session,
 *   which its next heartbeat reads (at once with `mode: "now"`);
 * - `POST <path>/agent` `{ message, name?, agentId?, sessionKey?, deliver?, channel?, to?,
 *   model?, thinking?, timeoutSeconds?, waitForCompletion?, idempotencyKey? }`: a run of the
 *   agent on the message, its answer delivered to a chat or summarized in the main session;
 * - `POST <path>/<name>`: whatever a mapping of `hooks.mappings` (or a preset) makes of the
 *   payload: a wake or an agent run, from templates or a transform function.
 *
 * Requests carry the hooks' own token (`Authorization: Bearer` or `x-openclaw-token`, never
 * the query string); repeated wrong tokens from an address are refused for a while (429).
 * Payload text reaches the model wrapped as untrusted content. See docs/webhooks.md.
 */
import { createHash, randomUUID } from "node:crypto";
import { realpath } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import {
  ConfigError,
  type ConfigInput,
  type HookMappingConfig,
  type HooksConfig,
  HooksConfigSchema,
  isHeartbeatAck,
  iterateKvKeys,
  type JsonObject,
  MAX_RUN_TIMEOUT_MS,
  parseSessionKey,
  type RunResult,
  type ThinkingLevel,
} from "@beamclaw/core";
import { AuthRateLimiter, isLoopbackRequest } from "../auth/rate-limit.js";
import { secretsEqual } from "../auth/shared-secret.js";
import { channelDeliveryOf, channelTargetOf } from "../channel-delivery.js";
import {
  BodyError,
  bearerToken,
  header,
  readBody,
  sendJson,
  traceContextOf,
} from "../http/util.js";
import type { GatewayHub } from "../hub.js";
import { JsonTextError, parseJsonBody } from "../json-text.js";
import { sendToSession } from "../methods/session-helpers.js";
import {
  BUDGET_EXCEEDED,
  budgetResetHeaders,
  OVERLOAD_CODES,
  retryAfterHeaders,
  retryAfterMsOf,
} from "../retry-after.js";
import { wrapExternalContent } from "./external-content.js";
import { isTemplated, renderTemplate } from "./template.js";

/** What a transform is given: the request, parsed. */
export interface HookTransformContext {
  /** The JSON body. */
  payload: Record<string, unknown>;
  /** The request's headers (lower-case names), without the token. */
  headers: Record<string, string>;
  /** What followed the hooks path (`github` for `/hooks/github`). */
  path: string;
  /** The mapping that matched. */
  mapping: HookMappingConfig;
}

/**
 * What a transform makes of a request: fields that replace the mapping's (`message` and
 * `text` are the agent's message and the wake line, taken as they are). `null` (or
 * `undefined`): nothing to do; the request is answered 204.
 */
export interface HookTransformResult {
  action?: "agent" | "wake";
  message?: string;
  text?: string;
  name?: string;
  agentId?: string;
  sessionKey?: string;
  wakeMode?: "now" | "next-heartbeat";
  deliver?: boolean;
  channel?: string;
  to?: string;
  accountId?: string;
  model?: string;
  thinking?: ThinkingLevel;
  timeoutSeconds?: number;
}

/**
 * A mapping's `transform`: a function of a module of `hooks.transformsDir`, or one the host
 * registers under a name (`GatewayServerOptions.hooks.transforms`).
 *
 * @example
 * ```ts
 * // hooks/transforms/github.mjs
 * export default ({ payload }) =>
 *   payload.action === "opened"
 *     ? { message: `New issue: ${payload.issue.title}`, name: "GitHub" }
 *     : null; // other events: nothing to do
 * ```
 */
export type HookTransform = (
  context: HookTransformContext,
) => HookTransformResult | null | undefined | Promise<HookTransformResult | null | undefined>;

/** The gateway's `hooks` option: settings that replace `config.hooks`, and named transforms. */
export interface GatewayHooksOptions {
  /** The `hooks` section (as in `beamclaw.yaml`); default `config.hooks`, read live. */
  settings?: ConfigInput["hooks"];
  /** Transforms by name: a mapping's `transform.module` names one of these before a file. */
  transforms?: Record<string, HookTransform>;
  /** What a relative `transformsDir` is relative to. Default the working directory. */
  baseDir?: string;
}

/** How a hook's agent run ended, as `waitForCompletion` reports it (never its text). */
export interface HookCompletion {
  status: "ok" | "error" | "aborted" | "timeout";
  /** Whether the answer was worth delivering: `silent` is a bare HEARTBEAT_OK. */
  replyDisposition: "visible" | "silent" | "empty";
  /** Whether a delivery to a chat was tried, and whether it was put in the channel's outbox. */
  deliveryAttempted: boolean;
  delivered: boolean;
  /** Why nothing was delivered when a delivery was asked for. */
  deliverySuppressionReason?: "silent" | "empty" | "run-failed";
  deliveryError?: "delivery-failed";
  /** Whether a summary (or a failure note) went to the agent's main session. */
  mainSessionEvent: boolean;
}

/**
 * A request refused: its status and a code a caller can branch on; `retryAfterMs`, for a
 * refusal to retry later (an overload), goes into the answer's `error` and its `Retry-After`.
 */
class HookError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    /** More of the answer's body (a batch's `results`). */
    readonly extra: Record<string, unknown> = {},
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  /** The answer's `error`. */
  get body(): { code: string; message: string; retryAfterMs?: number } {
    return {
      code: this.code,
      message: this.message,
      ...(this.retryAfterMs === undefined ? {} : { retryAfterMs: this.retryAfterMs }),
    };
  }
}

/**
 * What the runtime (or the gateway) threw, as the hook's answer: the request's fault 400,
 * what passes 503 (an overload says when to retry, see {@link retryAfterMsOf}), a tenant's
 * spent token budget 429 `BUDGET_EXCEEDED` (with `Retry-After` to its reset), anything else
 * 500 "internal error".
 */
function refusalOf(error: unknown): HookError {
  if (error instanceof HookError) return error;
  const e = error as { code?: unknown; message?: unknown } | null | undefined;
  const code = typeof e?.code === "string" ? e.code : "INTERNAL";
  if (code === BUDGET_EXCEEDED) {
    // The tenant's token budget is spent: nothing gets through before it resets, which
    // `Retry-After` says (a sender that retries then delivers the event).
    return new HookError(429, code, String(e?.message), budgetResetHeaders(error));
  }
  const status = CLIENT_ERRORS.has(code) ? 400 : RETRYABLE.has(code) ? 503 : 500;
  const retryAfterMs = status === 500 ? undefined : retryAfterMsOf(error);
  return new HookError(
    status,
    code,
    status === 500 ? "internal error" : String(e?.message),
    retryAfterHeaders(retryAfterMs),
    {},
    retryAfterMs,
  );
}

/** The caller's W3C trace context (see `traceContextOf`). */
type RequestTraceContext = ReturnType<typeof traceContextOf>;

/** The action a request comes to, checked. */
interface AgentAction {
  route: string;
  name: string | undefined;
  agentId: string;
  sessionKey: string;
  /** True when the session was made for this request (kept `sessionRetentionMs`). */
  isolated: boolean;
  message: string;
  wakeMode: "now" | "next-heartbeat";
  deliver: boolean;
  destination: { channel: string; to: string; accountId?: string } | undefined;
  model: string | undefined;
  thinking: ThinkingLevel | undefined;
  timeoutMs: number | undefined;
}

const THINKING = new Set(["off", "minimal", "low", "medium", "high"]);
/** Error codes of the runtime and the gateway that are the request's fault (400)... */
const CLIENT_ERRORS = new Set([
  "INVALID_ARGUMENT",
  "INVALID_REQUEST",
  "INVALID_SESSION_KEY",
  "UNKNOWN_AGENT",
]);
/** ...and those that pass (503, retry): a store failing for a moment among them. */
const RETRYABLE = new Set([
  ...OVERLOAD_CODES,
  "UNAVAILABLE",
  "NO_PROCESS",
  "STORE_UNAVAILABLE",
  "STORE_LOCKED",
]);
const MAX_IDEMPOTENCY_KEY = 256;
/** The most items one `forEach` request takes. */
const MAX_BATCH = 50;
/** How long an idempotency key replays its run. */
const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/**
 * How long a claim of an idempotency key whose admission is not known to have ended holds
 * off the requests with the same key (409 `idempotency_conflict`, retry). Past this its
 * claimant is taken to have died (or hung) in the middle, and a retry sends the run again
 * under the claim's run id, which the session runs only if it never got it.
 */
const ADMIT_STALE_MS = 2 * 60 * 1000;
/**
 * How long a replay that waits for a completion another gateway will record waits at most,
 * beyond the run's own time limit (or, without one, in all).
 */
const REPLAY_WAIT_MS = 10 * 60 * 1000;
/** How often such a replay reads the stored record. */
const REPLAY_POLL_MS = 250;
/** How deep a payload's objects and arrays may nest (a real webhook's are a few levels). */
const MAX_PAYLOAD_DEPTH = 128;
/** How long a request may take to send its body (408 beyond). */
const BODY_TIMEOUT_MS = 10_000;
/** The longest wake line or summary left in a main session. */
const MAX_EVENT_CHARS = 2_000;
const SWEEP_INTERVAL_MS = 60 * 60 * 1000;
const ISOLATED_PREFIX = "hooks:isolated:";
const IDEMPOTENCY_PREFIX = "hooks:idem:";
/** Headers a transform never sees. */
const SECRET_HEADERS = new Set(["authorization", "x-openclaw-token", "cookie"]);

/** The built-in mappings (`hooks.presets`). */
const PRESETS: Record<string, HookMappingConfig> = {
  gmail: {
    id: "gmail",
    match: { path: "gmail" },
    action: "agent",
    forEach: "messages",
    name: "Gmail",
    wakeMode: "now",
    sessionKey: "hook:gmail:{{messages[0].id}}",
    messageTemplate:
      "New email from {{messages[0].from}}\nSubject: {{messages[0].subject}}\n{{messages[0].snippet}}\n{{messages[0].body}}",
  },
};

/** The mappings a request is matched against, in order: `mappings`, then the presets'. */
export function hookMappings(settings: HooksConfig): HookMappingConfig[] {
  return [...settings.mappings, ...settings.presets.map((p) => PRESETS[p]!)];
}

/**
 * What an idempotency key's record holds: the request (its fingerprint), the run and session
 * it went to, and, once the run ended, its completion. `admitting` (a claim id, unique to the
 * request that wrote it) is there from the claim until the run is known to be admitted: only
 * that request may take the claim back (when its run is refused), and only while the record
 * is still the one it wrote.
 */
interface IdempotencyRecord {
  fingerprint?: string;
  runId?: string;
  sessionKey?: string;
  at?: number;
  admitting?: string;
  completion?: JsonObject;
}

/**
 * A request's hold on an idempotency key. `pending`: the record as it was written or read
 * while it says `admitting`, which the request marks admitted once its run is.
 */
interface IdempotencyClaim {
  key: string;
  fingerprint: string;
  pending?: IdempotencyRecord;
}

/** See the module comment. One per gateway; `stop()` waits for what its requests started. */
export class HookIngress {
  readonly #hub: GatewayHub;
  readonly #fixed: HooksConfig | undefined;
  readonly #transforms: Record<string, HookTransform>;
  readonly #baseDir: string | undefined;
  readonly #limiter: AuthRateLimiter;
  readonly #pending = new Set<Promise<unknown>>();
  readonly #completions = new Map<string, Promise<HookCompletion>>();
  readonly #modules = new Map<string, Promise<HookTransform>>();
  #lastSweepAt = 0;
  #stopped = false;

  /** @throws ConfigError when `options.settings` is not a valid `hooks` section. */
  constructor(hub: GatewayHub, options: GatewayHooksOptions = {}) {
    this.#hub = hub;
    this.#transforms = options.transforms ?? {};
    this.#baseDir = options.baseDir;
    if (options.settings !== undefined) {
      const parsed = HooksConfigSchema.safeParse(options.settings);
      if (!parsed.success) {
        throw new ConfigError(
          "GatewayServerOptions.hooks.settings",
          parsed.error.issues.map((i) => ({
            path: ["hooks", ...i.path.map(String)].join("."),
            message: i.message,
          })),
        );
      }
      this.#fixed = parsed.data;
    }
    const rateLimit = hub.auth.rateLimit;
    this.#limiter = new AuthRateLimiter(rateLimit === false ? {} : (rateLimit ?? {}), hub.now);
  }

  /** The settings in force: the gateway's option, else the live `config.hooks`. */
  get settings(): HooksConfig | undefined {
    return this.#fixed ?? this.#hub.config?.hooks;
  }

  /** Whether `path` is one of the hooks' (so {@link handle} answers it). */
  owns(path: string): boolean {
    const settings = this.settings;
    if (settings?.enabled !== true) return false;
    return path === settings.path || path.startsWith(`${settings.path}/`);
  }

  /** Answers a request to one of the hooks' paths. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const settings = this.settings!;
    try {
      const route = url.pathname.slice(settings.path.length + 1);
      const reply = await this.#handle(req, url, route, settings);
      if (reply === null) {
        res.writeHead(204, { "cache-control": "no-store" });
        res.end();
        return;
      }
      sendJson(res, 200, reply);
    } catch (error) {
      const refused = refusalOf(error);
      if (refused !== error && refused.status === 500) {
        const message = (error as { message?: unknown } | null | undefined)?.message;
        this.#hub.log.error(`hook ${url.pathname} failed: ${String(message ?? error)}`);
      }
      // Refused before its body was all read (a wrong token, a body too large or too slow):
      // the connection is closed after the answer, rather than kept alive to read and drop
      // whatever the sender goes on sending.
      sendJson(
        res,
        refused.status,
        { ok: false, error: refused.body, ...refused.extra },
        req.complete ? refused.headers : { ...refused.headers, connection: "close" },
      );
    }
  }

  /** Waits for the deliveries and the clean-up its requests started. */
  async stop(): Promise<void> {
    this.#stopped = true;
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  // ------------------------------------------------------------------ the request

  async #handle(
    req: IncomingMessage,
    url: URL,
    route: string,
    settings: HooksConfig,
  ): Promise<Record<string, unknown> | null> {
    if (req.method !== "POST") {
      throw new HookError(405, "method_not_allowed", "hooks take POST", { allow: "POST" });
    }
    if (url.searchParams.has("token")) {
      throw new HookError(
        400,
        "token_in_query",
        "send the hook token in a header (Authorization: Bearer or x-openclaw-token), never in the URL",
      );
    }
    this.#refuseWhileStopping();
    this.#authorize(req, settings);
    if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) {
      throw new HookError(415, "unsupported_media_type", "send the body as application/json");
    }
    const payload = await this.#readPayload(req, settings.maxBodyBytes);
    // A body that took its time may end after the stop began: what it asks would start after
    // the gateway aborted the runs in progress, and run on unwatched.
    this.#refuseWhileStopping();
    if (route === "wake") return this.#wake(payload, settings);
    if (route === "agent") {
      const action = this.#agentAction(
        {
          route,
          name: optionalText(payload, "name", 200),
          agentId: optionalText(payload, "agentId", 64),
          sessionKey: optionalText(payload, "sessionKey", 512),
          sessionKeyFromCaller: true,
          message: wrapExternalContent(requiredText(payload, "message"), {
            name: optionalText(payload, "name", 200),
            path: `${settings.path}/agent`,
          }),
          wakeMode: wakeModeOf(payload.wakeMode, "wakeMode"),
          deliver: optionalBool(payload, "deliver"),
          channel: optionalText(payload, "channel", 64),
          to: optionalText(payload, "to", 512),
          accountId: optionalText(payload, "accountId", 128),
          model: optionalText(payload, "model", 256),
          thinking: thinkingOf(payload.thinking),
          timeoutSeconds: optionalSeconds(payload.timeoutSeconds),
        },
        settings,
      );
      return this.#run(action, req, payload, settings);
    }
    return this.#mapped(req, route, payload, settings);
  }

  #refuseWhileStopping(): void {
    if (this.#stopped || this.#hub.draining) {
      throw new HookError(503, "unavailable", "the gateway is stopping", { "retry-after": "5" });
    }
  }

  #authorize(req: IncomingMessage, settings: HooksConfig): void {
    const address = this.#hub.trustedProxies.clientAddress(req);
    // Behind a proxy on this host every caller has a loopback address: none is exempt.
    const loopback = isLoopbackRequest(req);
    const allowed = this.#limiter.check(address, loopback);
    if (!allowed.allowed) throw tooMany(allowed.retryAfterMs);
    const presented = bearerToken(req) ?? header(req, "x-openclaw-token")?.trim();
    if (presented !== undefined && secretsEqual(presented, settings.token ?? "")) {
      this.#limiter.recordSuccess(address);
      return;
    }
    const after = this.#limiter.recordFailure(address, loopback);
    if (!after.allowed) throw tooMany(after.retryAfterMs);
    throw new HookError(401, "unauthorized", "a valid hook token is required", {
      "www-authenticate": "Bearer",
    });
  }

  async #readPayload(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
    let timer: NodeJS.Timeout | undefined;
    let body: Buffer;
    try {
      body = await Promise.race([
        readBody(req, maxBytes),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new HookError(408, "request_timeout", "the body did not arrive in time")),
            BODY_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (error) {
      if (error instanceof BodyError) {
        throw new HookError(
          error.status,
          error.status === 413 ? "payload_too_large" : "bad_body",
          error.message,
        );
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
    let payload: unknown;
    try {
      payload = parseJsonBody(body);
    } catch (error) {
      if (error instanceof JsonTextError) throw new HookError(400, error.code, error.message);
      throw error;
    }
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
      throw new HookError(400, "invalid_payload", "the body must be a JSON object");
    }
    if (deeperThan(payload, MAX_PAYLOAD_DEPTH)) {
      // A mapping's message (the payload as JSON) or a template of an object would overflow
      // the stack on it, and fail the request with a 500.
      throw new HookError(
        400,
        "invalid_payload",
        `the body is nested deeper than ${MAX_PAYLOAD_DEPTH} levels`,
      );
    }
    return payload as Record<string, unknown>;
  }

  // ------------------------------------------------------------------ wake

  #wake(payload: Record<string, unknown>, settings: HooksConfig): Promise<Record<string, unknown>> {
    if (payload.sessionKey !== undefined) {
      throw new HookError(
        400,
        "invalid_payload",
        "a wake goes to the agent's main session: sessionKey is not taken",
      );
    }
    return this.#wakeAction({
      text: requiredText(payload, "text"),
      mode: wakeModeOf(payload.mode, "mode"),
      agentId: optionalText(payload, "agentId", 64),
      settings,
    });
  }

  async #wakeAction(input: {
    text: string;
    mode: "now" | "next-heartbeat";
    agentId: string | undefined;
    settings: HooksConfig;
  }): Promise<Record<string, unknown>> {
    const agentId = this.#agentId(input.agentId, input.settings);
    const text = clip(input.text.trim(), MAX_EVENT_CHARS);
    if (text.length === 0) throw new HookError(400, "invalid_payload", "text is empty");
    const eventOutcome = await this.#hub.heartbeat.wake(
      text,
      input.mode === "now",
      mainKey(agentId),
    );
    this.#hub.log.info(`hook wake for ${agentId} (${input.mode}, ${eventOutcome})`);
    return { ok: true, mode: input.mode, eventOutcome };
  }

  // ------------------------------------------------------------------ mappings

  async #mapped(
    req: IncomingMessage,
    route: string,
    payload: Record<string, unknown>,
    settings: HooksConfig,
  ): Promise<Record<string, unknown> | null> {
    const mapping = hookMappings(settings).find(
      (m) =>
        (m.match.path === undefined || m.match.path === route) &&
        (m.match.source === undefined || payload.source === m.match.source),
    );
    if (mapping === undefined) {
      throw new HookError(404, "not_found", `no hook mapping for ${settings.path}/${route}`);
    }
    if (mapping.forEach === undefined) {
      return this.#mappedOne(req, route, payload, mapping, settings);
    }
    return this.#batch(req, route, payload, mapping, mapping.forEach, settings);
  }

  /**
   * A mapping with `forEach`: one action per item of the payload's array `key`, each seeing
   * the payload with that item alone in the array (so `{{messages[0].subject}}` is the item's).
   * 204 for an empty array or when no item makes an action; when an item fails, the others
   * still run and the answer is that item's status with every item's result.
   */
  async #batch(
    req: IncomingMessage,
    route: string,
    payload: Record<string, unknown>,
    mapping: HookMappingConfig,
    key: string,
    settings: HooksConfig,
  ): Promise<Record<string, unknown> | null> {
    const items = payload[key];
    if (!Array.isArray(items)) {
      throw new HookError(
        400,
        "invalid_payload",
        `${key} must be an array (hook mapping ${mappingName(mapping)} takes one action per item)`,
      );
    }
    if (items.length > MAX_BATCH) {
      throw new HookError(
        413,
        "batch_too_large",
        `${key} has ${items.length} items; at most ${MAX_BATCH} are taken at once`,
      );
    }
    const results: Array<Record<string, unknown>> = [];
    let failed: HookError | undefined;
    for (let i = 0; i < items.length; i++) {
      try {
        const reply = await this.#mappedOne(
          req,
          route,
          { ...payload, [key]: [items[i]] },
          mapping,
          settings,
          i,
        );
        results.push(reply ?? { ok: true, skipped: true });
      } catch (error) {
        // An item the runtime refused for now (an overload) says so, as a single request does.
        const refused = refusalOf(error);
        if (refused !== error && refused.status === 500) {
          this.#hub.log.error(
            `hook ${settings.path}/${route} item ${i} failed: ${(error as Error).message}`,
          );
        }
        failed ??= refused;
        results.push({ ok: false, error: refused.body });
      }
    }
    if (failed !== undefined) {
      const count = results.filter((r) => r.ok === false).length;
      throw new HookError(
        failed.status,
        "partial_batch",
        `${count} of ${items.length} items failed`,
        failed.headers,
        { results },
        failed.retryAfterMs,
      );
    }
    if (results.every((r) => r.skipped === true)) return null;
    return { ok: true, count: items.length, results };
  }

  /** One action of a mapping: its transform, then its templates over `payload`. */
  async #mappedOne(
    req: IncomingMessage,
    route: string,
    payload: Record<string, unknown>,
    mapping: HookMappingConfig,
    settings: HooksConfig,
    item?: number,
  ): Promise<Record<string, unknown> | null> {
    let result: HookTransformResult = {};
    if (mapping.transform !== undefined) {
      const transform = await this.#transform(mapping.transform, settings);
      const out = await transform({
        payload,
        headers: visibleHeaders(req),
        path: route,
        mapping: structuredClone(mapping),
      });
      if (out === null || out === undefined) return null;
      if (typeof out !== "object") {
        throw new Error(
          `the transform of hook mapping ${mappingName(mapping)} returned ${typeof out}`,
        );
      }
      result = out;
    }
    const action = result.action ?? mapping.action;
    const render = (template: string | undefined) =>
      template === undefined ? undefined : renderTemplate(template, payload);
    if (action === "wake") {
      const text =
        result.text ??
        render(mapping.textTemplate) ??
        (typeof payload.text === "string" ? payload.text : undefined);
      if (text === undefined) {
        throw new HookError(
          400,
          "invalid_payload",
          `hook mapping ${mappingName(mapping)} found no text to wake with`,
        );
      }
      return this.#wakeAction({
        text,
        mode: result.wakeMode ?? mapping.wakeMode ?? "now",
        agentId: result.agentId ?? mapping.agentId,
        settings,
      });
    }
    const rawMessage =
      result.message ??
      render(mapping.messageTemplate) ??
      clip(JSON.stringify(payload, null, 2), 100_000);
    const name = result.name ?? mapping.name;
    const keyTemplate = mapping.sessionKey;
    const sessionKey = result.sessionKey ?? render(keyTemplate);
    const agentAction = this.#agentAction(
      {
        route,
        name,
        agentId: result.agentId ?? mapping.agentId,
        sessionKey,
        // A key that comes from the payload (or a transform reading it) is the caller's choice.
        sessionKeyFromCaller:
          result.sessionKey !== undefined ||
          (keyTemplate !== undefined && isTemplated(keyTemplate)),
        message:
          mapping.allowUnsafeExternalContent === true
            ? rawMessage
            : wrapExternalContent(rawMessage, { name, path: `${settings.path}/${route}` }),
        wakeMode: result.wakeMode ?? mapping.wakeMode ?? "now",
        deliver: result.deliver ?? mapping.deliver,
        channel: result.channel ?? mapping.channel,
        to: result.to !== undefined ? result.to : render(mapping.to),
        accountId: result.accountId ?? mapping.accountId,
        model: result.model ?? mapping.model,
        thinking: result.thinking ?? mapping.thinking,
        timeoutSeconds: result.timeoutSeconds ?? mapping.timeoutSeconds,
      },
      settings,
    );
    return this.#run(agentAction, req, payload, settings, item);
  }

  /** The function a mapping's `transform` names: a registered one, else its module's export. */
  #transform(
    spec: { module: string; export?: string | undefined },
    settings: HooksConfig,
  ): Promise<HookTransform> {
    const registered = this.#transforms[spec.module];
    if (registered !== undefined) return Promise.resolve(registered);
    const dir =
      settings.transformsDir === undefined
        ? undefined
        : resolve(this.#baseDir ?? ".", settings.transformsDir);
    if (dir === undefined) {
      return Promise.reject(new Error(`hook transform ${spec.module}: no hooks.transformsDir`));
    }
    const cacheKey = `${dir}\0${spec.module}\0${spec.export ?? "default"}`;
    let loaded = this.#modules.get(cacheKey);
    if (loaded === undefined) {
      loaded = loadTransform(dir, spec.module, spec.export ?? "default");
      // A module that failed to load is tried again by the next request.
      loaded.catch(() => this.#modules.delete(cacheKey));
      this.#modules.set(cacheKey, loaded);
    }
    return loaded;
  }

  // ------------------------------------------------------------------ agent runs

  /** Checks a request's run: its agent, session and destination. */
  #agentAction(
    input: {
      route: string;
      name: string | undefined;
      agentId: string | undefined;
      sessionKey: string | undefined;
      sessionKeyFromCaller: boolean;
      message: string;
      wakeMode: "now" | "next-heartbeat" | undefined;
      deliver: boolean | undefined;
      channel: string | undefined;
      to: string | undefined;
      accountId: string | undefined;
      model: string | undefined;
      thinking: ThinkingLevel | undefined;
      timeoutSeconds: number | undefined;
    },
    settings: HooksConfig,
  ): AgentAction {
    const agentId = this.#agentId(input.agentId, settings);
    let key = input.sessionKey?.trim();
    let isolated = false;
    if (key !== undefined && key.length > 0) {
      if (input.sessionKeyFromCaller) checkCallerKey(key, settings);
    } else if (settings.defaultSessionKey !== undefined) {
      key = settings.defaultSessionKey;
    } else {
      key = `hook:${randomUUID()}`;
      isolated = true;
    }
    const sessionKey = qualifiedKey(key, agentId);
    const deliver = input.deliver ?? true;
    let destination: AgentAction["destination"];
    if (deliver && (input.channel !== undefined || input.to !== undefined)) {
      destination = this.#destination(input.channel, input.to, input.accountId);
    }
    if (input.model !== undefined && !/^[^/\s]+\/\S+$/.test(input.model)) {
      throw new HookError(
        400,
        "invalid_payload",
        `model must be "provider/model", got ${input.model}`,
      );
    }
    return {
      route: input.route,
      name: input.name,
      agentId,
      sessionKey,
      isolated,
      message: input.message,
      wakeMode: input.wakeMode ?? "now",
      deliver,
      destination,
      model: input.model,
      thinking: input.thinking,
      timeoutMs: input.timeoutSeconds === undefined ? undefined : input.timeoutSeconds * 1000,
    };
  }

  #destination(channel: string | undefined, to: string | undefined, accountId: string | undefined) {
    if (channel === undefined || to === undefined || to.length === 0) {
      throw new HookError(400, "invalid_destination", "a delivery needs both channel and to");
    }
    if (channel === "last") {
      throw new HookError(
        400,
        "invalid_destination",
        'channel "last" is not supported by hooks: name the channel and the chat (to)',
      );
    }
    const channels = channelDeliveryOf(this.#hub);
    if (channels === undefined || !channels.channelIds.includes(channel)) {
      const known = channels?.channelIds ?? [];
      throw new HookError(
        400,
        "unknown_channel",
        `no channel "${channel}" to deliver to (${known.length === 0 ? "there are no channels" : `the channels are ${known.join(", ")}`})`,
      );
    }
    return { channel, to, ...(accountId === undefined ? {} : { accountId }) };
  }

  /** The agent a request runs: the one it names (if allowed and configured), else the default. */
  #agentId(requested: string | undefined, settings: HooksConfig): string {
    const agents = this.#hub.runtime.agents.map((a) => a.id);
    const agentId = (requested ?? this.#hub.defaultAgentId).toLowerCase();
    const allowed = settings.allowedAgentIds;
    if (allowed !== undefined && !allowed.includes("*") && !allowed.includes(agentId)) {
      throw new HookError(
        400,
        "agent_not_allowed",
        `hooks may not run agent ${agentId} (hooks.allowedAgentIds)`,
      );
    }
    if (!agents.includes(agentId)) {
      throw new HookError(
        400,
        "unknown_agent",
        `no agent ${agentId} (the agents are ${agents.join(", ")})`,
      );
    }
    return agentId;
  }

  /** Starts the run (or finds the one its idempotency key started) and answers. */
  async #run(
    action: AgentAction,
    req: IncomingMessage,
    payload: Record<string, unknown>,
    settings: HooksConfig,
    item?: number,
  ): Promise<Record<string, unknown>> {
    const wait = payload.waitForCompletion === true;
    if (payload.waitForCompletion !== undefined && typeof payload.waitForCompletion !== "boolean") {
      throw new HookError(400, "invalid_payload", "waitForCompletion must be a boolean");
    }
    const requestKey = idempotencyKeyOf(req, payload);
    // The caller's span (W3C Trace Context headers): not part of the request's fingerprint, as
    // each retry of a request comes from a span of its own.
    const trace = traceContextOf(req);
    // Each item of a batch (`forEach`) is a request of its own under the batch's key.
    const idempotencyKey =
      requestKey === undefined || item === undefined ? requestKey : `${requestKey}#${item}`;
    const kv = this.#hub.runtime.store.kv;
    let claim: IdempotencyClaim | undefined;
    if (idempotencyKey !== undefined) {
      const identity = sha256(
        `${sha256(settings.token ?? "")}\n${action.route}\n${idempotencyKey}`,
      );
      const fingerprint = sha256(
        JSON.stringify({ ...action, sessionKey: action.isolated ? "" : action.sessionKey }),
      );
      claim = { key: IDEMPOTENCY_PREFIX + identity, fingerprint };
      const runId = `hook-${randomUUID()}`;
      const record = {
        fingerprint,
        runId,
        sessionKey: action.sessionKey,
        at: this.#hub.now(),
        admitting: randomUUID(),
      };
      const fresh = await kv.set(claim.key, record, { ifAbsent: true, ttlMs: IDEMPOTENCY_TTL_MS });
      if (!fresh) return this.#replay(action, claim, wait, trace);
      return this.#start(action, runId, { ...claim, pending: record }, wait, false, trace);
    }
    return this.#start(action, `hook-${randomUUID()}`, undefined, wait, false, trace);
  }

  /**
   * A request whose idempotency key was seen: the same run's answer. When neither its
   * completion nor its run is known here (it ran in another process, or before a restart, or
   * the process stopped before sending it), it is sent again under the same run id to the same
   * session, whose own deduplication runs it only if it never ran. While the request that
   * claimed the key is still being admitted, it is a 409 to retry: sent now, the same run could
   * be told accepted and then refused with the claimant's, or run while the claimant, refused,
   * gives the key back for a retry to run it again.
   */
  async #replay(
    action: AgentAction,
    claim: IdempotencyClaim,
    wait: boolean,
    trace: RequestTraceContext,
  ): Promise<Record<string, unknown>> {
    const { key, fingerprint } = claim;
    const stored = await this.#hub.runtime.store.kv.get<IdempotencyRecord & JsonObject>(key);
    if (stored?.runId === undefined) {
      throw new HookError(
        409,
        "idempotency_conflict",
        "a request with this idempotency key is being admitted; retry",
        { "retry-after": "1" },
      );
    }
    if (stored.fingerprint !== fingerprint) {
      throw new HookError(
        409,
        "idempotency_key_reused",
        "this idempotency key was used for a different request",
      );
    }
    let completion = stored.completion as HookCompletion | undefined;
    const running = this.#completions.get(key);
    if (completion === undefined && running === undefined) {
      const admitting = stored.admitting !== undefined;
      if (admitting && this.#hub.now() - (stored.at ?? 0) < ADMIT_STALE_MS) {
        throw new HookError(
          409,
          "idempotency_conflict",
          "a request with this idempotency key is being admitted; retry",
          { "retry-after": "1" },
        );
      }
      const sessionKey = stored.sessionKey ?? action.sessionKey;
      return this.#start(
        { ...action, sessionKey, isolated: false },
        stored.runId,
        admitting ? { key, fingerprint, pending: stored } : claim,
        wait,
        true,
        trace,
      );
    }
    if (wait && completion === undefined && running !== undefined) completion = await running;
    return {
      ok: true,
      runId: stored.runId,
      sessionKey: stored.sessionKey,
      replayed: true,
      ...(completion === undefined ? {} : { completion }),
    };
  }

  async #start(
    action: AgentAction,
    runId: string,
    claim: IdempotencyClaim | undefined,
    wait: boolean,
    replayed = false,
    trace: RequestTraceContext = {},
  ): Promise<Record<string, unknown>> {
    const kv = this.#hub.runtime.store.kv;
    let outcome: Awaited<ReturnType<typeof sendToSession>>;
    try {
      outcome = await sendToSession(this.#hub, {
        sessionKey: action.sessionKey,
        agentId: action.agentId,
        message: action.message,
        displayRunId: runId,
        thinking: action.thinking,
        timeoutMs: action.timeoutMs,
        model: action.model,
        ...trace,
        sender: action.name === undefined ? "hook" : `hook:${action.name}`,
      });
    } catch (error) {
      // Not admitted: the same key may try again, a new run then. Only the claim this request
      // wrote is taken back (a claim another request made since, or the record of a run a
      // replay sent, stays); a replay's claim stays as it was: its run may have been sent
      // before, and must keep its id.
      if (claim?.pending !== undefined && !replayed) {
        await kv.delete(claim.key, { ifValue: claim.pending as JsonObject }).catch(() => false);
      }
      throw error;
    }
    if (claim?.pending !== undefined) {
      // Admitted: the same key now replays this run. Written before the answer, so that a retry
      // that follows it is never held off as "being admitted". Only over the claim this request
      // holds: a gateway that took it over as stale may have recorded the run's completion since.
      const pending = JSON.stringify(claim.pending);
      const { admitting: _admitting, ...admitted } = claim.pending;
      await this.#replaceRecord(
        claim.key,
        (stored) => JSON.stringify(stored) === pending,
        admitted as JsonObject,
      ).catch((error: unknown) =>
        this.#hub.log.warn(
          `hook ${action.route}: the idempotency record of run ${runId} could not be marked admitted: ${error instanceof Error ? error.message : String(error)}`,
        ),
      );
    }
    const result = outcome.result;
    if (result === undefined) {
      // The session had it already (a replay): it runs, or ran, elsewhere or before. A caller
      // who waits gets the completion the gateway running it records.
      const reply = { ok: true, runId, sessionKey: action.sessionKey, replayed: true };
      if (!wait || claim === undefined) return reply;
      const waited = this.#storedCompletion(claim.key, action.timeoutMs);
      this.#track(waited);
      const completion = await waited;
      return completion === undefined ? reply : { ...reply, completion };
    }
    if (action.isolated) {
      // Named for the session lists (`sessions.list`, the dashboard): "Hook: GitHub".
      this.#track(
        this.#hub.runtime
          .session(action.sessionKey)
          .patch({ displayName: `Hook: ${action.name ?? action.route}` }),
      );
      this.#track(
        kv
          .set(ISOLATED_PREFIX + action.sessionKey, { createdAt: this.#hub.now() })
          .catch(() => false),
      );
    }
    this.#maybeSweep();
    this.#hub.log.info(`hook ${action.route}: run ${outcome.runId} in ${action.sessionKey}`);
    const completion = this.#complete(action, outcome.runId, result);
    const recorded = completion.then(async (done) => {
      if (claim !== undefined) {
        // Only over a record of this run that has no completion yet: never over a claim the key
        // got since (its record expired or was taken back) nor a completion already recorded.
        await this.#replaceRecord(
          claim.key,
          (stored) =>
            stored.runId === outcome.runId &&
            stored.fingerprint === claim.fingerprint &&
            stored.completion === undefined,
          {
            fingerprint: claim.fingerprint,
            runId: outcome.runId,
            sessionKey: action.sessionKey,
            completion: { ...done } as JsonObject,
          },
        ).catch(() => false);
        this.#completions.delete(claim.key);
      }
      return done;
    });
    if (claim !== undefined) this.#completions.set(claim.key, recorded);
    this.#track(recorded);
    const reply = {
      ok: true,
      runId: outcome.runId,
      sessionKey: action.sessionKey,
      ...(replayed ? { replayed: true } : {}),
    };
    if (!wait) return reply;
    return { ...reply, completion: await recorded };
  }

  /**
   * Writes `next` as the idempotency record under `key` when the record there is one `accept`
   * takes (or there is none, then only if none is written meanwhile); returns whether it wrote.
   * The record is read, judged, then written with `kv.set`'s compare-and-set (`ifValue`: the
   * record as read), so a writer that got a stale view earlier (a gateway that took its
   * claim's admission over) is refused, and so is one whose record another write replaced
   * between this read and this write: that write is never overwritten.
   */
  async #replaceRecord(
    key: string,
    accept: (stored: IdempotencyRecord) => boolean,
    next: JsonObject,
  ): Promise<boolean> {
    const kv = this.#hub.runtime.store.kv;
    const stored = await kv.get<IdempotencyRecord & JsonObject>(key);
    if (stored === undefined) {
      return kv.set(key, next, { ifAbsent: true, ttlMs: IDEMPOTENCY_TTL_MS });
    }
    if (!accept(stored)) return false;
    return kv.set(key, next, { ifValue: stored, ttlMs: IDEMPOTENCY_TTL_MS });
  }

  /**
   * The completion recorded under an idempotency key by whichever gateway runs the request,
   * read every {@link REPLAY_POLL_MS} until it is there, the gateway stops, or the run's time
   * limit plus {@link REPLAY_WAIT_MS} has passed (`undefined` then).
   */
  async #storedCompletion(
    key: string,
    timeoutMs: number | undefined,
  ): Promise<HookCompletion | undefined> {
    const kv = this.#hub.runtime.store.kv;
    const deadline = Date.now() + (timeoutMs ?? 0) + REPLAY_WAIT_MS;
    while (!this.#stopped && Date.now() < deadline) {
      const stored = await kv.get<{ completion?: JsonObject }>(key).catch(() => undefined);
      const completion = stored?.completion as HookCompletion | undefined;
      if (completion !== undefined) return completion;
      await new Promise((resolve) => setTimeout(resolve, REPLAY_POLL_MS).unref());
    }
    return undefined;
  }

  /** After the run: its answer delivered, or summarized in the main session. Never throws. */
  async #complete(
    action: AgentAction,
    runId: string,
    result: Promise<RunResult>,
  ): Promise<HookCompletion> {
    let run: RunResult | undefined;
    let failure: string | undefined;
    try {
      run = await result;
    } catch (error) {
      failure = error instanceof Error ? error.message : String(error);
    }
    const status: HookCompletion["status"] =
      run === undefined
        ? "error"
        : run.status === "completed" || run.status === "max-steps"
          ? "ok"
          : run.error?.code === "RUN_TIMEOUT"
            ? "timeout"
            : run.status === "aborted"
              ? "aborted"
              : "error";
    const text = run?.text.trim() ?? "";
    const replyDisposition =
      text.length === 0 ? "empty" : isHeartbeatAck(text) ? "silent" : "visible";
    const completion: HookCompletion = {
      status,
      replyDisposition,
      deliveryAttempted: false,
      delivered: false,
      mainSessionEvent: false,
    };
    const label = `Hook ${action.name ?? action.route}`;
    const log = this.#hub.log;
    if (status !== "ok") {
      const why = failure ?? run?.error?.message ?? status;
      log.warn(`hook agent run ${runId} ended ${status}: ${why}`);
      completion.mainSessionEvent = await this.#mainSessionEvent(
        action,
        `${label} failed (${status}): ${why}`,
      );
      if (action.deliver) completion.deliverySuppressionReason = "run-failed";
      return completion;
    }
    if (!action.deliver) {
      log.info(`hook agent run ${runId} completed (not delivered: deliver is false)`);
      return completion;
    }
    if (replyDisposition !== "visible") {
      completion.deliverySuppressionReason = replyDisposition;
      log.info(`hook agent run ${runId} completed (${replyDisposition}: nothing to deliver)`);
      return completion;
    }
    if (action.destination === undefined) {
      completion.mainSessionEvent = await this.#mainSessionEvent(action, `${label}: ${text}`);
      log.info(`hook agent run ${runId} completed (summary in the main session)`);
      return completion;
    }
    const { channel, to, accountId } = action.destination;
    completion.deliveryAttempted = true;
    try {
      const channels = channelDeliveryOf(this.#hub);
      if (channels === undefined) throw new Error("the gateway has no channels");
      await channels.deliver(
        channel,
        channelTargetOf(to, accountId === undefined ? {} : { accountId }),
        { text },
        { mirror: true, sourceSessionKey: action.sessionKey },
      );
      completion.delivered = true;
      log.info(`hook agent run ${runId} completed (answer queued for ${channel})`);
    } catch (error) {
      completion.deliveryError = "delivery-failed";
      log.warn(
        `hook agent run ${runId} completed, but its answer could not be delivered to ${channel}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    return completion;
  }

  /**
   * A line for the agent's main session (its next heartbeat reads it). False when there is
   * none to write, or the store refused it: the completion is recorded all the same (were it
   * to fail, its idempotency key would keep a failed completion in memory for good).
   */
  async #mainSessionEvent(action: AgentAction, text: string): Promise<boolean> {
    if (action.sessionKey === mainKey(action.agentId)) return false;
    try {
      await this.#hub.heartbeat.wake(
        clip(text, MAX_EVENT_CHARS),
        action.wakeMode === "now",
        mainKey(action.agentId),
      );
    } catch (error) {
      this.#hub.log.warn(
        `hook ${action.route}: the main session's line could not be queued: ${error instanceof Error ? error.message : String(error)}`,
      );
      return false;
    }
    return true;
  }

  // ------------------------------------------------------------------ house-keeping

  #track(promise: Promise<unknown>): void {
    const tracked = promise.catch(() => undefined).finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }

  /** Deletes the sessions of requests without a key once they are older than the retention. */
  #maybeSweep(): void {
    const now = this.#hub.now();
    if (now - this.#lastSweepAt < SWEEP_INTERVAL_MS) return;
    this.#lastSweepAt = now;
    const retention = this.settings?.sessionRetentionMs ?? 86_400_000;
    this.#track(this.#sweep(now - retention));
  }

  async #sweep(cutoff: number): Promise<void> {
    const { runtime } = this.#hub;
    for await (const key of iterateKvKeys(runtime.store.kv, ISOLATED_PREFIX)) {
      if (this.#stopped) return;
      const entry = await runtime.store.kv.get<{ createdAt?: number }>(key);
      if (typeof entry?.createdAt === "number" && entry.createdAt > cutoff) continue;
      const sessionKey = key.slice(ISOLATED_PREFIX.length);
      try {
        await runtime.session(sessionKey).delete();
      } catch (error) {
        this.#hub.log.warn(
          `hooks: could not delete the old session ${sessionKey}: ${(error as Error).message}`,
        );
        continue;
      }
      await runtime.store.kv.delete(key);
    }
  }
}

// ------------------------------------------------------------------ helpers

function tooMany(retryAfterMs: number): HookError {
  return new HookError(
    429,
    "too_many_attempts",
    "too many wrong hook tokens from this address; retry later",
    {
      "retry-after": String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
    },
  );
}

function mainKey(agentId: string): string {
  return `agent:${agentId}:main`;
}

function mappingName(mapping: HookMappingConfig): string {
  return mapping.id ?? mapping.match.path ?? `source=${mapping.match.source}`;
}

/** A caller's session key must be allowed, and start with an allowed prefix when some are set. */
function checkCallerKey(key: string, settings: HooksConfig): void {
  if (!settings.allowRequestSessionKey) {
    throw new HookError(
      400,
      "session_key_not_allowed",
      "callers may not choose the session (hooks.allowRequestSessionKey is false)",
    );
  }
  const prefixes = settings.allowedSessionKeyPrefixes;
  const lower = key.toLowerCase();
  if (prefixes.length > 0 && !prefixes.some((p) => lower.startsWith(p.toLowerCase()))) {
    throw new HookError(
      400,
      "session_key_not_allowed",
      `the session key must start with ${prefixes.join(" or ")}`,
    );
  }
}

/** `key` as a session of `agentId`: `hook:x` → `agent:<id>:hook:x`; an `agent:` key must be its. */
function qualifiedKey(key: string, agentId: string): string {
  const full = /^agent:/i.test(key) ? key : `agent:${agentId}:${key}`;
  let parsed: ReturnType<typeof parseSessionKey>;
  try {
    parsed = parseSessionKey(full);
  } catch (error) {
    throw new HookError(400, "invalid_session_key", (error as Error).message);
  }
  if (parsed.agentId !== agentId) {
    throw new HookError(
      400,
      "invalid_session_key",
      `session ${parsed.key} is not agent ${agentId}'s`,
    );
  }
  return parsed.key;
}

function idempotencyKeyOf(
  req: IncomingMessage,
  payload: Record<string, unknown>,
): string | undefined {
  const raw =
    header(req, "idempotency-key") ??
    header(req, "x-openclaw-idempotency-key") ??
    (payload.idempotencyKey === undefined ? undefined : payload.idempotencyKey);
  if (raw === undefined) return undefined;
  const key = typeof raw === "string" ? raw.trim() : "";
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY) {
    throw new HookError(
      400,
      "invalid_idempotency_key",
      `an idempotency key is 1 to ${MAX_IDEMPOTENCY_KEY} characters`,
    );
  }
  return key;
}

function visibleHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (SECRET_HEADERS.has(name) || value === undefined) continue;
    out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

function requiredText(payload: Record<string, unknown>, field: string): string {
  const value = payload[field];
  if (typeof value !== "string" || value.trim().length === 0) {
    throw new HookError(400, "invalid_payload", `${field} is required (a non-empty string)`);
  }
  return value;
}

function optionalText(
  payload: Record<string, unknown>,
  field: string,
  max: number,
): string | undefined {
  const value = payload[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value.trim().length === 0 || value.length > max) {
    throw new HookError(
      400,
      "invalid_payload",
      `${field} must be a non-empty string of at most ${max} characters`,
    );
  }
  return value.trim();
}

function optionalBool(payload: Record<string, unknown>, field: string): boolean | undefined {
  const value = payload[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean")
    throw new HookError(400, "invalid_payload", `${field} must be a boolean`);
  return value;
}

function wakeModeOf(value: unknown, field: string): "now" | "next-heartbeat" {
  if (value === undefined || value === null) return "now";
  if (value !== "now" && value !== "next-heartbeat") {
    throw new HookError(400, "invalid_payload", `${field} must be "now" or "next-heartbeat"`);
  }
  return value;
}

function thinkingOf(value: unknown): ThinkingLevel | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || !THINKING.has(value)) {
    throw new HookError(
      400,
      "invalid_payload",
      `thinking must be one of ${[...THINKING].join(", ")}`,
    );
  }
  return value as ThinkingLevel;
}

function optionalSeconds(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  const max = Math.floor(MAX_RUN_TIMEOUT_MS / 1000);
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    throw new HookError(
      400,
      "invalid_payload",
      `timeoutSeconds must be a whole number from 1 to ${max}`,
    );
  }
  return value;
}

/** Whether objects and arrays in `value` nest more than `max` levels (walked without recursion). */
function deeperThan(value: object, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (item === null || typeof item !== "object") continue;
    if (depth > max) return true;
    for (const child of Object.values(item)) {
      if (child !== null && typeof child === "object") stack.push([child, depth + 1]);
    }
  }
  return false;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/**
 * The file of transform `module` in `dir`: a relative `.js`/`.mjs`/`.cjs` path that stays
 * inside `dir` once links are followed.
 *
 * @throws Error saying what is wrong with it.
 */
export async function transformFile(dir: string, module: string): Promise<string> {
  if (isAbsolute(module) || !/\.(m?js|cjs)$/.test(module)) {
    throw new Error(
      `hook transform ${module}: a relative .js or .mjs path inside hooks.transformsDir`,
    );
  }
  const root = await realpath(resolve(dir));
  const file = await realpath(resolve(root, module));
  const inside = relative(root, file);
  if (inside.startsWith(`..${sep}`) || inside === ".." || isAbsolute(inside)) {
    throw new Error(`hook transform ${module} is outside hooks.transformsDir`);
  }
  return file;
}

/** Imports transform `module` of `dir` and returns its `name` export. */
async function loadTransform(dir: string, module: string, name: string): Promise<HookTransform> {
  const file = await transformFile(dir, module);
  const loaded = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const fn = loaded[name];
  if (typeof fn !== "function") {
    throw new Error(`hook transform ${module} has no function export ${name}`);
  }
  return fn as HookTransform;
}
