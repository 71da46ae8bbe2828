/**
 * `POST /api/chat` with `{ sessionKey, text }`: sends the message to the session and streams
 * the run's events as server-sent events, one `data:` line of JSON per `RunEvent`, from
 * `run-start` to `run-end`. When the client goes away (closed tab, `AbortController`), the
 * run is aborted: its model call, its tools and a pending approval request end with it.
 */
import type { RunEvent, RunHandle } from "@beamclaw/core";
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

  const encoder = new TextEncoder();
  let closed = false;
  let keepalive: ReturnType<typeof setInterval> | undefined;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (chunk: string) => {
        if (closed) return;
        try {
          controller.enqueue(encoder.encode(chunk));
        } catch {
          closed = true; // the stream went away without `cancel`
        }
      };
      const finish = () => {
        clearInterval(keepalive);
        if (closed) return;
        closed = true;
        try {
          controller.close();
        } catch {
          // already closed
        }
      };
      keepalive = setInterval(() => write(": keepalive\n\n"), KEEPALIVE_MS);
      void (async () => {
        try {
          for await (const event of run) {
            if (closed) break; // nobody reads any more; `cancel` aborted the run
            write(`data: ${JSON.stringify(event)}\n\n`);
          }
        } catch (error) {
          // The message could not run (the runtime stopped, the session was deleted).
          const event: RunEvent = {
            type: "error",
            runId: run.runId,
            sessionKey: run.sessionKey,
            error: { code: "RUN_FAILED", message: (error as Error).message },
          };
          write(`data: ${JSON.stringify(event)}\n\n`);
        } finally {
          finish();
        }
      })();
    },
    cancel() {
      // The response was cancelled: the client disconnected.
      closed = true;
      clearInterval(keepalive);
      void run.abort().catch(() => undefined);
    },
  });

  return new Response(stream, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      // `no-transform` also keeps `next start`'s gzip from buffering the stream.
      "cache-control": "no-cache, no-transform",
      "x-accel-buffering": "no",
    },
  });
}
