/**
 * The Events API over HTTP: Slack POSTs signed JSON to the app's Request URL. This is the
 * request listener: signature and replay window first, then `url_verification` answered,
 * then each `event_callback` handed on and answered 200 once it was taken, or once the ack
 * deadline passed (Slack wants an answer within 3 s), whichever comes first.
 * https://docs.slack.dev/apis/events-api/
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  type ChannelLogger,
  InvalidInboundError,
  type JsonValue,
  NoProcessError,
} from "@beamclaw/core";
import {
  SLACK_SIGNATURE_HEADER,
  SLACK_TIMESTAMP_HEADER,
  SlackSignatureError,
  verifySlackRequest,
} from "./signature.js";

/** How a delivery was retried (`X-Slack-Retry-Num`, `X-Slack-Retry-Reason`). */
export interface SlackDelivery {
  retryNum: number | undefined;
  retryReason: string | undefined;
}

export interface EventsApiListenerOptions {
  signingSecret: string;
  path: string;
  maxBodyBytes: number;
  toleranceMs: number;
  /**
   * How long an event may take to be taken before it is answered 200 anyway, ms (Slack
   * counts a delivery not answered within 3 s as failed, and retries it at once).
   */
  ackDeadlineMs: number;
  now: () => number;
  logger: () => ChannelLogger | undefined;
  /**
   * Handles a verified `event_callback`. Resolves once the event was taken (answered 200 with
   * the value); throws `NoProcessError` while the channel is not running (503),
   * `InvalidInboundError` for an event the host refused as malformed (400, not retried).
   */
  onEventCallback(payload: Record<string, unknown>, delivery: SlackDelivery): Promise<JsonValue>;
}

/** The answer to an event still being taken when the ack deadline passed. */
const PENDING: JsonValue = { ok: true, status: "pending" };

/** What a deadline race settled with. */
type Raced = { done: true; value: JsonValue } | { done: false };

/**
 * `work`'s outcome, or `{ done: false }` once `ms` passed first (the timer is cleared either
 * way, so none is left behind).
 */
function raceDeadline(work: Promise<JsonValue>, ms: number): Promise<Raced> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Raced>((resolve) => {
    timer = setTimeout(() => resolve({ done: false }), ms);
  });
  const settled = work.then((value): Raced => ({ done: true, value }));
  return Promise.race([settled, deadline]).finally(() => clearTimeout(timer));
}

function json(
  res: ServerResponse,
  status: number,
  body: JsonValue,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Tells Slack not to retry a delivery that will never succeed. */
const NO_RETRY = { "x-slack-no-retry": "1" };

/** The raw body, or `undefined` when it is over the limit. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * A `node:http` request listener for Slack's Events API.
 *
 * | answer | when |
 * |---|---|
 * | 200 `{ challenge }` | `url_verification` (saving the Request URL in the app's settings) |
 * | 200 | an event taken by the host (or one the channel ignores) |
 * | 200 `{ status: "pending" }` | an event still being taken when `ackDeadlineMs` passed (or a redelivery of one) |
 * | 400 + `X-Slack-No-Retry` | not JSON, a `url_verification` without a string `challenge`, or a message the host refused as malformed |
 * | 401 `{ error, problem }` | a missing, malformed, wrong or stale signature |
 * | 404, 405, 413 | another path, another method, a body over the limit |
 * | 500, 503 | the host failed or is not running, before the deadline: Slack retries (1 min, 5 min) |
 *
 * An event is taken once: a redelivery (same `event_id`) arriving while it is still being
 * taken joins it rather than handing it on again, and gets the same answer. Once an event was
 * answered `pending`, its later failure can no longer make Slack retry: it is logged
 * (`error`, with its `event_id`) and the event is lost.
 */
export function eventsApiListener(
  options: EventsApiListenerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  /** `event_id` → the taking of an event under way (its redeliveries join it). */
  const taking = new Map<string, Promise<JsonValue>>();
  /** Hands an event on, or joins its taking under way; late failures are logged. */
  const take = (envelope: Record<string, unknown>, delivery: SlackDelivery) => {
    const eventId = typeof envelope.event_id === "string" ? envelope.event_id : undefined;
    const under = eventId === undefined ? undefined : taking.get(eventId);
    if (under !== undefined) {
      options.logger()?.debug("slack redelivered an event still being taken; joined it", {
        eventId,
        retryNum: delivery.retryNum,
        retryReason: delivery.retryReason,
      });
      return { work: under, joined: true };
    }
    const work = options.onEventCallback(envelope, delivery);
    if (eventId !== undefined) {
      taking.set(eventId, work);
      const forget = () => {
        if (taking.get(eventId) === work) taking.delete(eventId);
      };
      work.then(forget, forget);
    }
    return { work, joined: false };
  };
  /** After a `pending` answer: how the event ended, logged (nobody else hears it). */
  const follow = (work: Promise<JsonValue>, envelope: Record<string, unknown>) => {
    work.then(
      (value) => {
        options.logger()?.debug("slack event taken after it was acknowledged", {
          eventId: envelope.event_id,
          result: value,
        });
      },
      (error: unknown) => {
        options.logger()?.error("slack event failed after it was answered pending; it is lost", {
          eventId: envelope.event_id,
          error,
        });
      },
    );
  };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname !== options.path) return json(res, 404, { error: "not found" });
      if (req.method !== "POST") return json(res, 405, { error: "use POST" }, { allow: "POST" });
      const body = await readBody(req, options.maxBodyBytes);
      if (body === undefined) {
        json(
          res,
          413,
          { error: `the body is larger than ${options.maxBodyBytes} bytes` },
          { connection: "close", ...NO_RETRY },
        );
        req.destroy();
        return;
      }
      try {
        verifySlackRequest(
          options.signingSecret,
          body,
          {
            signature: req.headers[SLACK_SIGNATURE_HEADER],
            timestamp: req.headers[SLACK_TIMESTAMP_HEADER],
          },
          { toleranceMs: options.toleranceMs, now: options.now() },
        );
      } catch (error) {
        if (!SlackSignatureError.isInstance(error)) throw error;
        options.logger()?.warn("refused a Slack request with a bad signature", {
          problem: error.problem,
        });
        return json(res, 401, { error: error.message, problem: error.problem });
      }
      let payload: unknown;
      try {
        payload = JSON.parse(body.toString("utf8"));
      } catch {
        return json(res, 400, { error: "the body is not JSON" }, NO_RETRY);
      }
      if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
        return json(res, 400, { error: "the body must be a JSON object" }, NO_RETRY);
      }
      const envelope = payload as Record<string, unknown>;
      if (envelope.type === "url_verification") {
        if (typeof envelope.challenge !== "string") {
          return json(res, 400, { error: "url_verification needs a string challenge" }, NO_RETRY);
        }
        return json(res, 200, { challenge: envelope.challenge });
      }
      if (envelope.type !== "event_callback") {
        // app_rate_limited and friends: nothing to deliver, but worth knowing.
        options.logger()?.warn("Slack sent a non-event callback", { type: envelope.type });
        return json(res, 200, { ok: true });
      }
      const retry = header(req, "x-slack-retry-num");
      const delivery: SlackDelivery = {
        retryNum: retry === undefined ? undefined : Number(retry),
        retryReason: header(req, "x-slack-retry-reason"),
      };
      const { work, joined } = take(envelope, delivery);
      const raced = await raceDeadline(work, options.ackDeadlineMs);
      if (raced.done) return json(res, 200, raced.value);
      // Still being taken: answered now, so that Slack does not count a failed delivery.
      if (!joined) follow(work, envelope);
      json(res, 200, PENDING);
    } catch (error) {
      if (InvalidInboundError.isInstance(error)) {
        json(res, 400, { error: error.message, field: error.field }, NO_RETRY);
      } else if (NoProcessError.isInstance(error)) {
        json(res, 503, { error: "the channel is not running" }, { "retry-after": "5" });
      } else {
        options.logger()?.error("Slack event request failed", { error });
        if (!res.headersSent) json(res, 500, { error: "internal error; retry later" });
        else res.destroy();
      }
    }
  };
  return (req, res) => {
    void handle(req, res);
  };
}
