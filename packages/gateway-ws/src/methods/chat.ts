/** `chat.send`, `chat.history`, `chat.abort`, `agent`, `agent.wait`. */
import type { GatewayHub, HubMethod } from "../hub.js";
import { Scopes } from "../protocol/constants.js";
import { invalidRequest } from "../protocol/errors.js";
import {
  optionalEnum,
  optionalInt,
  optionalString,
  type ParamsObject,
  requireString,
} from "../protocol/params.js";
import type { RunSnapshot } from "../runs.js";
import {
  attachmentImages,
  chatHistory,
  QUEUE_MODES,
  sanitizeMessage,
  sendToSession,
  THINKING_LEVELS,
} from "./session-helpers.js";

const STOP_COMMANDS = new Set(["/stop", "/abort", "stop"]);

async function abortSession(
  hub: GatewayHub,
  sessionKey: string,
  runId?: string,
): Promise<{ ok: true; aborted: boolean; runIds: string[] }> {
  const runs =
    runId === undefined
      ? hub.runs.active(sessionKey)
      : [hub.runs.find(runId)].filter((r) => r !== undefined && !r.done);
  if (runs.some((r) => r!.sessionKey !== sessionKey)) {
    throw invalidRequest("runId does not match sessionKey", { code: "RUN_SESSION_MISMATCH" });
  }
  const aborted: string[] = [];
  for (const run of runs) {
    if (await hub.session(run!.sessionKey).abort(run!.coreRunId)) aborted.push(run!.runId);
  }
  return { ok: true, aborted: aborted.length > 0, runIds: aborted };
}

function thinkingParam(method: string, p: ParamsObject) {
  return optionalEnum(method, p, "thinking", THINKING_LEVELS);
}

/** The final answer of `agent` and `agent.wait`. */
function waitResult(runId: string, snapshot: RunSnapshot | undefined): Record<string, unknown> {
  if (snapshot === undefined) return { runId, status: "timeout" };
  return {
    runId,
    status: snapshot.status,
    sessionKey: snapshot.sessionKey,
    startedAt: snapshot.startedAt,
    endedAt: snapshot.endedAt,
    stopReason: snapshot.stopReason,
    ...(snapshot.error === undefined
      ? {}
      : { error: snapshot.error.message, errorCode: snapshot.error.code }),
  };
}

export const chatMethods: Record<string, HubMethod> = {
  "chat.send": {
    scope: Scopes.WRITE,
    startsWork: true,
    async handler(call, hub) {
      const { method, params: p } = call;
      const sessionKey = requireString(method, p, "sessionKey", 512);
      const idempotencyKey = requireString(method, p, "idempotencyKey", 256);
      if (typeof p.message !== "string") {
        throw invalidRequest(`invalid ${method} params: message must be a string`, {
          code: "INVALID_PARAMS",
          field: "message",
        });
      }
      const message = sanitizeMessage(p.message);
      const images = attachmentImages(p.attachments);
      if (message.trim().length === 0 && (images?.length ?? 0) === 0) {
        throw invalidRequest("message or attachment required");
      }
      const agentId = optionalString(method, p, "agentId", { nonEmpty: true });
      const session = hub.session(sessionKey, agentId);
      if (STOP_COMMANDS.has(message.trim().toLowerCase())) {
        return abortSession(hub, session.key);
      }
      const outcome = await sendToSession(hub, {
        sessionKey: session.key,
        agentId,
        message,
        images,
        displayRunId: idempotencyKey,
        thinking: thinkingParam(method, p),
        queueMode: optionalEnum(method, p, "queueMode", QUEUE_MODES),
        sender: `gateway:${call.caller.connId}`,
      });
      return { runId: outcome.runId, status: outcome.status };
    },
  },

  "chat.history": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const session = hub.session(
        requireString(method, p, "sessionKey", 512),
        optionalString(method, p, "agentId", { nonEmpty: true }),
      );
      const limit = optionalInt(method, p, "limit", { min: 1, max: 1000 }) ?? 200;
      const record = await hub.runtime.store.sessions.get(session.key);
      return {
        sessionKey: session.key,
        sessionId: session.key,
        messages: await chatHistory(hub, session.key, limit),
        ...(typeof record?.thinkingLevel === "string"
          ? { thinkingLevel: record.thinkingLevel }
          : {}),
        ...(typeof record?.verboseLevel === "string" ? { verboseLevel: record.verboseLevel } : {}),
      };
    },
  },

  "chat.abort": {
    scope: Scopes.WRITE,
    handler(call, hub) {
      const { method, params: p } = call;
      const session = hub.session(requireString(method, p, "sessionKey", 512));
      return abortSession(hub, session.key, optionalString(method, p, "runId", { nonEmpty: true }));
    },
  },

  agent: {
    scope: Scopes.WRITE,
    startsWork: true,
    async handler(call, hub) {
      const { method, params: p } = call;
      const message = sanitizeMessage(requireString(method, p, "message", 1_000_000));
      const idempotencyKey = requireString(method, p, "idempotencyKey", 256);
      const agentId = optionalString(method, p, "agentId", { nonEmpty: true });
      const sessionKey =
        optionalString(method, p, "sessionKey", { nonEmpty: true }) ??
        `agent:${agentId ?? hub.defaultAgentId}:main`;
      const timeoutSeconds = optionalInt(method, p, "timeout", { min: 0 });
      const acceptedAt = hub.now();
      const outcome = await sendToSession(hub, {
        sessionKey,
        agentId,
        message,
        images: attachmentImages(p.attachments),
        displayRunId: idempotencyKey,
        thinking: thinkingParam(method, p),
        sender: `gateway:${call.caller.connId}`,
      });
      // OpenClaw's `agent` answers twice: "accepted" now, the outcome when the run ends.
      const timeoutMs =
        timeoutSeconds === undefined || timeoutSeconds === 0 ? 2 ** 31 - 1 : timeoutSeconds * 1000;
      void hub.runs.wait(outcome.runId, timeoutMs, call.signal).then((snapshot) => {
        if (call.signal.aborted) return;
        const base = waitResult(outcome.runId, snapshot);
        call.respondAgain(true, {
          ...base,
          summary: snapshot?.text.slice(0, 200) ?? "",
          result: {
            payloads:
              snapshot === undefined || snapshot.text.length === 0 ? [] : [{ text: snapshot.text }],
            meta: {
              durationMs:
                snapshot === undefined ? undefined : snapshot.endedAt - snapshot.startedAt,
              agentId: snapshot?.agentId,
              sessionKey: outcome.sessionKey,
              stopReason: snapshot?.stopReason,
              usage: snapshot?.result?.usage,
            },
          },
        });
      });
      return {
        runId: outcome.runId,
        status: outcome.status === "started" ? "accepted" : outcome.status,
        acceptedAt,
        sessionKey: outcome.sessionKey,
      };
    },
  },

  "agent.wait": {
    scope: Scopes.WRITE,
    async handler(call, hub) {
      const { method, params: p } = call;
      const runId = requireString(method, p, "runId", 256);
      const timeoutMs = optionalInt(method, p, "timeoutMs", { min: 0, max: 2 ** 31 - 1 }) ?? 30_000;
      return waitResult(runId, await hub.runs.wait(runId, timeoutMs, call.signal));
    },
  },
};
