/**
 * `GET /api/health`: the identity of this process's runtime (starting it if needed). Every
 * request of one server process reports the same `runtimeId` and `runtimesCreated: 1`, also
 * after hot reloads in `next dev` (`moduleEvaluations` grows, the runtime stays).
 */
import { errorResponse, json } from "../../../lib/http";
import { runtimeHealth } from "../../../lib/runtime";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export async function GET(): Promise<Response> {
  try {
    return json(await runtimeHealth());
  } catch (error) {
    return errorResponse(error);
  }
}
