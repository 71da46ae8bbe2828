/**
 * `POST /api/approvals` with `{ requestId, decision }`: answers a `tool-approval-request`
 * (`decision`: `allow-once`, `allow-always` or `deny`).
 *
 * This example answers with the `operator.approvals` scope for anyone who can reach the
 * route. A real app MUST authenticate the caller first (session cookie, token) and pass the
 * scopes of that user: whoever can post here can let the agent's tools run.
 */
import type { ApprovalDecision } from "@beamclaw/core";
import { errorResponse, json, readJsonObject } from "../../../lib/http";
import { getRuntime } from "../../../lib/runtime";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

const DECISIONS: readonly string[] = [
  "allow-once",
  "allow-always",
  "deny",
] satisfies ApprovalDecision[];

export async function POST(request: Request): Promise<Response> {
  const body = await readJsonObject(request);
  const requestId = body?.requestId;
  const decision = body?.decision;
  if (
    typeof requestId !== "string" ||
    typeof decision !== "string" ||
    !DECISIONS.includes(decision)
  ) {
    return json(
      {
        error: {
          code: "INVALID_ARGUMENT",
          message: "expected { requestId, decision: allow-once | allow-always | deny }",
        },
      },
      400,
    );
  }
  try {
    const agents = (await getRuntime()).runtime;
    // Replace with the authenticated user's scopes and id (see above).
    const answered = agents.approvals?.answer(requestId, decision as ApprovalDecision, {
      scopes: ["operator.approvals"],
      id: "nextjs-example",
    });
    if (answered !== true) {
      return json(
        {
          answered: false,
          error: {
            code: "NOT_FOUND",
            message: "no such pending request (answered, expired or aborted)",
          },
        },
        404,
      );
    }
    return json({ answered: true });
  } catch (error) {
    return errorResponse(error);
  }
}
