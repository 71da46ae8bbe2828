/** `chat.send`, `chat.history`, `chat.abort`, `agent`, `agent.wait`. */
import {
  type ChannelTarget,
  type JsonObject,
  MAX_RUN_TIMEOUT_MS,
  parseSessionCommand,
  type RunResult,
  runSessionCommand,
} from "@beamclaw/core";
import { channelDeliveryOf, channelTargetOf } from "../channel-delivery.js";
import { assistantText } from "../chat-format.js";
import type { GatewayHub, HubMethod } from "../hub.js";
import { messageIdOf } from "../message-ids.js";
import { ErrorCodes, Scopes } from "../protocol/constants.js";
import { GatewayError, invalidRequest, subsystemUnavailable } from "../protocol/errors.js";
import {
  optionalBool,
  optionalEnum,
  optionalInt,
  optionalString,
  optionalStringArray,
  type ParamsObject,
  requireString,
} from "../protocol/params.js";
import type { RunSnapshot } from "../runs.js";
import { asConnectionWait } from "./connection-waits.js";
import {
  attachmentImages,
  attachmentPolicy,
  capHistoryChars,
  chatHistoryAround,
  chatHistoryDelta,
  chatHistoryPage,
  chatMessageById,
  decodeHistoryCursor,
  inputReceipts,
  messageWithFiles,
  noSuchSession,
  parseAttachments,
  pendingInputs,
  QUEUE_MODES,
  requestedSession,
  runTimeoutParam,
  sanitizeMessage,
  sendToSession,
  sessionExists,
  sessionRow,
  THINKING_LEVELS,
  transcribeAudio,
} from "./session-helpers.js";

/** Where a session's messages came from last and its replies may go (`originating*`). */
export interface SessionRoute {
  channel: string;
  to?: string;
  accountId?: string;
  threadId?: string;
  updatedAt: number;
}

const ROUTE_PREFIX = "gateway:session-route:";
/** `chat.message.get`'s `maxChars` when the caller gives none (as `chat.history`'s most). */
const DEFAULT_MESSAGE_CHARS = 500_000;

/** The route a session was last reached through (`chat.send`'s `originating*` fields). */
export async function sessionRoute(
  hub: GatewayHub,
  sessionKey: string,
): Promise<SessionRoute | undefined> {
  return (await hub.runtime.store.kv.get(ROUTE_PREFIX + sessionKey)) as unknown as
    | SessionRoute
    | undefined;
}

function originOf(method: string, p: ParamsObject, now: number): SessionRoute | undefined {
  const field = (name: string) => optionalString(method, p, name, { maxLength: 512 });
  const channel = field("originatingChannel");
  const to = field("originatingTo");
  const accountId = field("originatingAccountId");
  const threadId = field("originatingThreadId");
  if (channel === undefined || channel.length === 0) {
    if (to !== undefined || accountId !== undefined || threadId !== undefined) {
      throw invalidRequest(`invalid ${method} params: originating fields need originatingChannel`, {
        code: "INVALID_PARAMS",
        field: "originatingChannel",
      });
    }
    return undefined;
  }
  return {
    channel,
    ...(to === undefined || to.length === 0 ? {} : { to }),
    ...(accountId === undefined || accountId.length === 0 ? {} : { accountId }),
    ...(threadId === undefined || threadId.length === 0 ? {} : { threadId }),
    updatedAt: now,
  };
}

/** The chat a route names: its `to` ({@link channelTargetOf}), account and thread. */
function targetOf(route: SessionRoute): ChannelTarget {
  return channelTargetOf(route.to ?? "", {
    ...(route.accountId === undefined ? {} : { accountId: route.accountId }),
    ...(route.threadId === undefined ? {} : { threadId: route.threadId }),
  });
}

const STOP_COMMANDS = new Set(["/stop", "/abort", "stop"]);

/** How many carried-out chat commands are remembered by idempotency key, per gateway. */
const COMMANDS_KEPT = 1000;
const commandsDone = new WeakMap<GatewayHub, Map<string, Promise<unknown>>>();

/**
 * Carries out a chat command (`/new`, `/stop`, ...) once per idempotency key: a retried
 * `chat.send` (the client lost the answer) gets the first one's answer instead of resetting,
 * compacting or aborting again. One that failed may be retried.
 */
function commandOnce<T>(
  hub: GatewayHub,
  idempotencyKey: string,
  run: () => Promise<T>,
): Promise<T> {
  let done = commandsDone.get(hub);
  if (done === undefined) {
    done = new Map();
    commandsDone.set(hub, done);
  }
  const earlier = done.get(idempotencyKey);
  if (earlier !== undefined) return earlier as Promise<T>;
  const result = run();
  done.set(idempotencyKey, result);
  if (done.size > COMMANDS_KEPT) {
    const oldest = done.keys().next().value;
    if (oldest !== undefined) done.delete(oldest);
  }
  result.catch(() => {
    if (done.get(idempotencyKey) === result) done.delete(idempotencyKey);
  });
  return result;
}

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
  if (runId !== undefined && runs.length === 0 && (await abortQueued(hub, sessionKey, runId))) {
    aborted.push(runId);
  }
  return { ok: true, aborted: aborted.length > 0, runIds: aborted };
}

/**
 * Aborts a run of `sessionKey` that was accepted as `runId` but has not started (queued
 * behind the active run): the session takes it out of its queue and ends it as aborted.
 * False when the session has no such run waiting (another session's, finished, unknown).
 */
export async function abortQueued(
  hub: GatewayHub,
  sessionKey: string,
  runId: string,
): Promise<boolean> {
  if (hub.runs.finished(runId) !== undefined) return false;
  return hub.session(sessionKey).abort(hub.runs.queuedCoreId(runId) ?? runId);
}

/**
 * Once the run ends, puts its reply in the channel's outbox (which sends it when the channel
 * is connected, retrying as it needs). A run that failed, was aborted or said nothing delivers
 * nothing.
 *
 * The reply is mirrored into the conversation of the chat it goes to (`mirror`), unless that
 * conversation is the session that wrote it (`sourceSessionKey`): a session reached from the
 * chat itself (`dmScope: main`, or the chat's own session) has the reply already, as its
 * answer, and a second copy would only repeat it to the model; a chat whose messages go to
 * another session gets the reply there too, so that an answer in the chat is understood.
 */
function deliverReply(
  hub: GatewayHub,
  runId: string,
  result: Promise<RunResult>,
  delivery: { route: SessionRoute; target: ChannelTarget; sessionKey: string },
  replyToId: string | undefined,
): void {
  const { route, target } = delivery;
  void result
    .then(async (outcome) => {
      const text = outcome.text.trim();
      if (outcome.status !== "completed" || text.length === 0) {
        hub.log.info(
          `chat.send ${runId}: nothing delivered to ${route.channel} (${outcome.status})`,
        );
        return;
      }
      const channels = channelDeliveryOf(hub);
      if (channels === undefined) return;
      const entryId = await channels.deliver(
        route.channel,
        target,
        { text, ...(replyToId === undefined ? {} : { replyToMessageId: replyToId }) },
        { mirror: true, sourceSessionKey: delivery.sessionKey },
      );
      hub.log.info(`chat.send ${runId}: reply queued for ${route.channel} (outbox ${entryId})`);
    })
    .catch((error: unknown) =>
      hub.log.warn(
        `chat.send ${runId}: the reply could not be delivered to ${route.channel}: ${
          error instanceof Error ? error.message : String(error)
        }`,
      ),
    );
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
      const typed = sanitizeMessage(p.message);
      const { images, files, documents, audio } = parseAttachments(p.attachments, {
        ...attachmentPolicy(hub.limits.maxPayloadBytes),
        audio: hub.transcriber !== undefined,
      });
      const heard = await transcribeAudio(hub, audio, call.signal);
      const message = messageWithFiles(
        [typed, ...heard].filter((part) => part.length > 0).join("\n\n"),
        files,
      );
      if (message.trim().length === 0 && images.length === 0 && documents.length === 0) {
        throw invalidRequest("message or attachment required", {
          code: "INVALID_PARAMS",
          field: "message",
        });
      }
      const agentId = optionalString(method, p, "agentId", { nonEmpty: true });
      const session = hub.session(sessionKey, agentId);
      const sessionId = optionalString(method, p, "sessionId", { nonEmpty: true });
      if (sessionId !== undefined && sessionId !== session.key) {
        throw invalidRequest(`sessionId ${sessionId} is not the session of ${session.key}`, {
          code: "SESSION_ID_MISMATCH",
        });
      }
      const textOnly =
        files.length === 0 && documents.length === 0 && images.length === 0 && heard.length === 0;
      if (STOP_COMMANDS.has(typed.trim().toLowerCase()) && textOnly) {
        return commandOnce(hub, idempotencyKey, () => abortSession(hub, session.key));
      }
      const command = textOnly ? parseSessionCommand(typed) : undefined;
      if (command !== undefined) {
        // A chat command, as in the channels (`commands.list`): carried out, never sent to
        // the model; its answer is the message's `chat` final, for every client to show.
        return commandOnce(hub, idempotencyKey, async () => {
          const answer = await runSessionCommand(hub.runtime, session.key, command);
          if (command.kind === "new") hub.sessionsChanged(session.key, "reset");
          if (command.kind === "compact") hub.sessionsChanged(session.key, "compacted");
          if (command.kind === "think" && command.level !== undefined) {
            hub.sessionsChanged(session.key, "patched");
          }
          hub.broadcast(
            "chat",
            {
              runId: idempotencyKey,
              sessionKey: session.key,
              seq: 1,
              state: "final",
              message: assistantText(answer, hub.now()),
              stopReason: "command",
            },
            { scope: Scopes.READ },
          );
          return { runId: idempotencyKey, status: "ok", command: command.kind };
        });
      }
      const origin = originOf(method, p, hub.now());
      const deliver = optionalBool(method, p, "deliver") === true;
      const replyToId = optionalString(method, p, "replyToId", { nonEmpty: true, maxLength: 512 });
      // Everything a delivery needs is checked before anything runs.
      let delivery: { route: SessionRoute; target: ChannelTarget; sessionKey: string } | undefined;
      if (deliver) {
        const route = origin ?? (await sessionRoute(hub, session.key));
        if (route?.to === undefined) {
          throw invalidRequest(
            "deliver needs a target: originatingChannel and originatingTo, or a session reached through a channel before",
            { code: "DELIVERY_TARGET_MISSING" },
          );
        }
        const channels = channelDeliveryOf(hub);
        if (channels === undefined) {
          throw subsystemUnavailable(
            "channels",
            "deliver: this gateway has no chat channels to deliver replies through",
          );
        }
        if (!channels.channelIds.includes(route.channel)) {
          throw new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown channel ${route.channel}`, {
            details: { code: "CHANNEL_NOT_FOUND", channel: route.channel },
          });
        }
        delivery = { route, target: targetOf(route), sessionKey: session.key };
      }
      const outcome = await sendToSession(hub, {
        sessionKey: session.key,
        agentId,
        message,
        images,
        files: documents,
        displayRunId: idempotencyKey,
        thinking: thinkingParam(method, p),
        queueMode: optionalEnum(method, p, "queueMode", QUEUE_MODES),
        timeoutMs: runTimeoutParam(method, p, "timeoutMs"),
        traceparent: call.traceparent,
        sender:
          origin === undefined
            ? `gateway:${call.caller.connId}`
            : `${origin.channel}:${origin.to ?? call.caller.connId}`,
      });
      if (origin !== undefined) {
        // The session's metadata says where it was reached; the full route is kept beside it.
        await hub.runtime.store.kv.set(ROUTE_PREFIX + session.key, origin as unknown as JsonObject);
        await session
          .patch({ channel: origin.channel })
          .catch((error: Error) =>
            hub.log.warn(
              `chat.send: could not record the channel of ${session.key}: ${error.message}`,
            ),
          );
      }
      if (delivery !== undefined && outcome.result !== undefined) {
        deliverReply(hub, outcome.runId, outcome.result, delivery, replyToId);
      }
      return { runId: outcome.runId, status: outcome.status };
    },
  },

  "chat.history": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const session = requestedSession(hub, call);
      const sessionId = optionalString(method, p, "sessionId", { nonEmpty: true });
      if (sessionId !== undefined && sessionId !== session.key) {
        throw invalidRequest(`sessionId ${sessionId} is not the session of ${session.key}`, {
          code: "SESSION_ID_MISMATCH",
        });
      }
      const limit = optionalInt(method, p, "limit", { min: 1, max: 1000 });
      const offset = optionalInt(method, p, "offset", { min: 0, max: 100_000 }) ?? 0;
      const maxChars = optionalInt(method, p, "maxChars", { min: 1, max: 500_000 });
      const cursorText = optionalString(method, p, "cursor", { maxLength: 4096 });
      const messageId = optionalString(method, p, "messageId", { nonEmpty: true });
      const runIds = optionalStringArray(method, p, "inputRunIds");
      if (
        runIds !== undefined &&
        (runIds.length === 0 ||
          runIds.length > 50 ||
          runIds.some((id) => id.length > 256) ||
          new Set(runIds).size < runIds.length)
      ) {
        throw invalidRequest(
          `invalid ${method} params: inputRunIds must be 1 to 50 different run ids of at most 256 characters`,
          { code: "INVALID_PARAMS", field: "inputRunIds" },
        );
      }
      // Where the messages the client sent stand (not for a page around one message).
      const receipts =
        runIds === undefined
          ? {}
          : messageId === undefined
            ? await inputReceipts(hub, session.key, runIds)
            : { inputReceipts: [], inputConsumptions: [] };
      const record = await hub.runtime.store.sessions.get(session.key);
      if (messageId !== undefined) {
        // The page around one message (a search hit): a window into the past, continued
        // with `offset`, so no delta cursor.
        const mixed = cursorText !== undefined ? "cursor" : offset > 0 ? "offset" : undefined;
        if (mixed !== undefined) {
          throw invalidRequest(`invalid ${method} params: messageId and ${mixed} do not mix`, {
            code: "INVALID_PARAMS",
            field: mixed,
          });
        }
        const around = await chatHistoryAround(hub, session.key, messageId, limit ?? 200);
        if (around === undefined) {
          throw invalidRequest(`no message ${messageId} in ${session.key} to show`, {
            code: "MESSAGE_NOT_FOUND",
            field: "messageId",
          });
        }
        let { messages, newer } = around;
        if (maxChars !== undefined) {
          // The newest that fit, unless that leaves the message out: then it and older ones.
          const capped = capHistoryChars(messages, maxChars);
          const anchor = around.anchor.__openclaw;
          if (capped.some((m) => m.__openclaw === anchor)) messages = capped;
          else {
            const at = messages.indexOf(around.anchor);
            newer += messages.length - 1 - at;
            messages = capHistoryChars(messages.slice(0, at + 1), maxChars);
          }
        }
        return {
          sessionKey: session.key,
          sessionId: session.key,
          messages,
          ...(newer > 0 ? { offset: newer } : {}),
          ...receipts,
        };
      }
      if (cursorText !== undefined) {
        // Delta mode: only what was added after the cursor (or `reset`: read it all again).
        if (offset > 0) {
          throw invalidRequest(`invalid ${method} params: cursor and offset do not mix`, {
            code: "INVALID_PARAMS",
            field: "offset",
          });
        }
        const cursor = decodeHistoryCursor(session.key, cursorText);
        const delta = await chatHistoryDelta(hub, session.key, cursor, limit ?? 1000, maxChars);
        if (delta.kind === "reset") return { kind: "reset" };
        const active = hub.runs.active(session.key)[0];
        return {
          kind: "delta",
          messages: delta.messages,
          deltaCursor: delta.deltaCursor,
          ...receipts,
          sessionInfo: record === undefined ? null : sessionRow(hub, record),
          ...(active === undefined
            ? {}
            : {
                inFlightRun: {
                  runId: active.runId,
                  sessionKey: active.sessionKey,
                  startedAt: active.startedAt,
                  text: active.text,
                },
              }),
        };
      }
      const want = limit ?? 200;
      // `offset` pages back: skip that many of the newest messages.
      const page = await chatHistoryPage(hub, session.key, want + offset);
      const end = page.messages.length - offset;
      let messages = end <= 0 ? [] : page.messages.slice(Math.max(0, end - want), end);
      if (maxChars !== undefined) messages = capHistoryChars(messages, maxChars);
      return {
        sessionKey: session.key,
        sessionId: session.key,
        messages,
        deltaCursor: page.deltaCursor,
        ...(offset > 0 ? { offset } : {}),
        ...receipts,
        pendingInputs: await pendingInputs(hub, session.key, want),
        ...(typeof record?.thinkingLevel === "string"
          ? { thinkingLevel: record.thinkingLevel }
          : {}),
        ...(typeof record?.verboseLevel === "string" ? { verboseLevel: record.verboseLevel } : {}),
      };
    },
  },

  "chat.message.get": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const session = requestedSession(hub, call);
      const messageId = requireString(method, p, "messageId", 256);
      const maxChars =
        optionalInt(method, p, "maxChars", { min: 1, max: 2_000_000 }) ?? DEFAULT_MESSAGE_CHARS;
      return chatMessageById(hub, session.key, messageId, maxChars);
    },
  },

  "chat.inject": {
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const { method, params: p } = call;
      const session = requestedSession(hub, call);
      const text = sanitizeMessage(requireString(method, p, "message", 1_000_000));
      if (text.trim().length === 0) {
        throw invalidRequest("message must not be empty", {
          code: "INVALID_PARAMS",
          field: "message",
        });
      }
      const label = optionalString(method, p, "label", { maxLength: 100 });
      if (label !== undefined && /[\r\n]/.test(label)) {
        throw invalidRequest("invalid chat.inject params: label must be one line", {
          code: "INVALID_PARAMS",
          field: "label",
        });
      }
      // As OpenClaw: a note goes into a conversation that exists, never starts one.
      if (!(await sessionExists(hub, session.key))) throw noSuchSession(session.key);
      const injected = await session.inject(
        text,
        label === undefined || label.length === 0 ? undefined : { label },
      );
      // Shown to every client by the hub, which hears of every injection (see `#injected`).
      return {
        ok: true,
        messageId: messageIdOf(injected.seq, { runId: injected.runId, at: injected.at }),
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
      // OpenClaw's agent timeout, in seconds: the run's time limit, and how long the second
      // answer waits for it (0: neither).
      const runTimeoutMs = runTimeoutParam(method, p, "timeout", "s");
      const acceptedAt = hub.now();
      const outcome = await sendToSession(hub, {
        sessionKey,
        agentId,
        message,
        images: attachmentImages(p.attachments),
        displayRunId: idempotencyKey,
        thinking: thinkingParam(method, p),
        timeoutMs: runTimeoutMs,
        traceparent: call.traceparent,
        sender: `gateway:${call.caller.connId}`,
      });
      // OpenClaw's `agent` answers twice: "accepted" now, the outcome when the run ends.
      // A little past the run's own limit, so that the run's timeout is what answers.
      // A retry of a run that ended before this gateway could see it end (before a restart,
      // or longer ago than the finished runs it keeps) has no end left to wait for: waiting
      // would hold the answer, a timer and a listener on the connection for days.
      const over = outcome.status !== "started" && outcome.status !== "in_flight";
      const timeoutMs = over
        ? 0
        : runTimeoutMs === undefined
          ? MAX_RUN_TIMEOUT_MS
          : Math.min(runTimeoutMs + 1000, MAX_RUN_TIMEOUT_MS);
      void hub.runs.wait(outcome.runId, timeoutMs, call.signal).then((snapshot) => {
        if (call.signal.aborted) return;
        const base =
          snapshot === undefined && over
            ? { runId: outcome.runId, status: outcome.status, sessionKey: outcome.sessionKey }
            : waitResult(outcome.runId, snapshot);
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
      return asConnectionWait(call.signal, method, async () =>
        waitResult(runId, await hub.runs.wait(runId, timeoutMs, call.signal)),
      );
    },
  },
};
