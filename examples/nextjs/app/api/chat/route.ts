/**
 * `POST /api/chat` with `{ sessionKey, text }`: sends the message to the session and streams
 * the run's events as server-sent events, one `data:` line of JSON per `RunEvent`, from
 * `run-start` to `run-end`. When the client goes away (closed tab, `AbortController`), the
 * run is aborted: its model call, its tools and a pending approval request end with it.
 */
import type { RunHandle } from "@beamclaw/core";
import { errorResponse, json, readJsonObject } from "../../../lib/http";
import { getRuntime } from "../../../lib/runtime";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

/** An SSE comment every so often keeps proxies from closing a stream that waits for a person. */
const KEEPALIVE_MS = 15_000;
const MAX_TEXT = 10_000;

export async function POST(request: Request): Promise<Response> {
  const body = await readJsonObject(request);
  const sessionKey = body?.sessionKey;
  const text = body?.text;
  if (typeof sessionKey !== "string" || typeof text !== "string" || text.trim() === "") {
    return json(
      { error: { code: "INVALID_ARGUMENT", message: "expected { sessionKey, text }" } },
      400,
    );
  }
  if (text.length > MAX_TEXT) {
    return json(
      { error: { code: "INVALID_ARGUMENT", message: `text is over ${MAX_TEXT} characters` } },
      413,
    );
  }

  let run: RunHandle;
  try {
    const agents = (await getRuntime()).runtime;
    // `signal`: a client that disconnects aborts the run (Next.js aborts `request.signal`).
    run = await agents.session(sessionKey).send(text, { signal: request.signal });
  } catch (error) {
    return errorResponse(error);
  }

  // One `data:` line of JSON per event (and its `id:`), a `: keepalive` comment every 15 s
  // while the run waits for a person, and headers that keep `next start`'s gzip and proxies
  // from buffering the stream. A client that goes away cancels the body: the run is aborted.
  return run.toResponse({ keepaliveMs: KEEPALIVE_MS });
}
