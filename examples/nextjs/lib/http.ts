/** Small helpers the route handlers share. Server only. */
import { isBeamClawError } from "@beamclaw/core";

/** A JSON response. */
export function json(body: unknown, status = 200): Response {
  return Response.json(body, { status, headers: { "cache-control": "no-store" } });
}

/** The JSON object body of a request, or `undefined` when it is not one. */
export async function readJsonObject(
  request: Request,
): Promise<Record<string, unknown> | undefined> {
  try {
    const body: unknown = await request.json();
    return typeof body === "object" && body !== null && !Array.isArray(body)
      ? (body as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Maps a BeamClaw error to an HTTP status and a body the page can show. */
export function errorResponse(error: unknown): Response {
  if (isBeamClawError(error)) {
    const status =
      error.code === "INVALID_SESSION_KEY" || error.code === "INVALID_ARGUMENT"
        ? 400
        : error.code === "OVERLOADED" || error.code === "MAX_CHILDREN"
          ? 503
          : error.code === "FORBIDDEN"
            ? 403
            : 500;
    return json({ error: { code: error.code, message: error.message } }, status);
  }
  console.error(error);
  return json({ error: { code: "INTERNAL", message: "internal error" } }, 500);
}
