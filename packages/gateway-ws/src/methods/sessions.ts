/** `sessions.*`: list, get, create, send, abort, patch, reset, compact, rewind, fork, delete, subscribe. */
import { randomUUID } from "node:crypto";
import {
  parseSessionKey,
  type QueueMode,
  type SessionPatch,
  type SessionRecord,
  type ThinkingLevel,
  type UserMessageInput,
} from "@beamclaw/core";
import type { GatewayHub, HubMethod } from "../hub.js";
import { ErrorCodes, Scopes } from "../protocol/constants.js";
import { GatewayError, invalidRequest } from "../protocol/errors.js";
import {
  optionalBool,
  optionalEnum,
  optionalInt,
  optionalString,
  type ParamsObject,
  requireString,
} from "../protocol/params.js";
import { MAX_FOLLOWED_SESSIONS } from "../session-messages.js";
import { abortQueued, sessionRoute } from "./chat.js";
import {
  attachmentImages,
  chatHistory,
  compactionCheckpoints,
  noSuchSession,
  QUEUE_MODES,
  requestedSession,
  runTimeoutParam,
  sanitizeMessage,
  sendToSession,
  sessionExists,
  sessionRow,
  THINKING_LEVELS,
} from "./session-helpers.js";
import type { MethodCall } from "./types.js";

const MAX_SCAN = 10_000;
/** `sessions.list` orders: the store's own (`updatedAt`), or by the last run. */
const SORT_KEYS = ["updatedAt", "lastInteractionAt"] as const;

/** Unicode code point order, as the store's ties use. */
function codePointCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

function byLastInteraction(a: SessionRecord, b: SessionRecord): number {
  const at = (r: SessionRecord) => (typeof r.lastRunAt === "number" ? r.lastRunAt : -1);
  return at(b) - at(a) || b.updatedAt - a.updatedAt || codePointCompare(a.key, b.key);
}

/** Fields of `sessions.patch` BeamClaw keeps; others are reported back as `ignored`. */
const PATCH_FIELDS = new Set(["key", "agentId", "label", "thinkingLevel", "verboseLevel", "model"]);

function sessionKeyParam(method: string, p: ParamsObject): string {
  const raw = p.key ?? p.sessionKey;
  if (typeof raw !== "string" || raw.length === 0 || raw.length > 512) {
    throw invalidRequest(`invalid ${method} params: key must be a non-empty string`, {
      code: "INVALID_PARAMS",
      field: "key",
    });
  }
  return raw;
}

/** Sends the message of a `sessions.send`-shaped request (`queueMode` given or the caller's). */
function sendFromParams(call: MethodCall, hub: GatewayHub, queueMode: QueueMode | undefined) {
  const { method, params: p } = call;
  return sendToSession(hub, {
    sessionKey: sessionKeyParam(method, p),
    agentId: optionalString(method, p, "agentId", { nonEmpty: true }),
    message: sanitizeMessage(requireString(method, p, "message", 1_000_000)),
    images: attachmentImages(p.attachments),
    displayRunId: optionalString(method, p, "idempotencyKey", { nonEmpty: true }),
    thinking: optionalEnum(method, p, "thinking", THINKING_LEVELS),
    queueMode: queueMode ?? optionalEnum(method, p, "queueMode", QUEUE_MODES),
    timeoutMs: runTimeoutParam(method, p, "timeoutMs"),
    traceparent: call.traceparent,
    sender: `gateway:${call.caller.connId}`,
  });
}

/**
 * The store's session records (of `agentId`, updated since `updatedSince`), page by page,
 * the first MAX_SCAN of them at most.
 */
async function* scanSessions(
  hub: GatewayHub,
  filter: { agentId?: string; updatedSince?: number },
): AsyncGenerator<SessionRecord> {
  let cursor: string | undefined;
  let scanned = 0;
  do {
    const page = await hub.runtime.store.sessions.list({
      limit: 500,
      ...filter,
      ...(cursor === undefined ? {} : { cursor }),
    });
    for (const record of page.items) {
      scanned++;
      yield record;
    }
    cursor = page.cursor;
  } while (cursor !== undefined && scanned < MAX_SCAN);
}

/** What `sessions.resolve` says of a session: its key, agent and label. */
function resolvedRow(record: SessionRecord): {
  key: string;
  agentId: string;
  displayName?: string;
} {
  return {
    key: record.key,
    agentId: record.agentId,
    ...(typeof record.displayName === "string" ? { displayName: record.displayName } : {}),
  };
}

function resolved(record: SessionRecord) {
  return { ok: true, ...resolvedRow(record) };
}

/**
 * Whether a session key ends in a UUID (`...:s-<uuid>` from `sessions.create`,
 * `...:fork:<uuid>`, `...:subagent:<uuid>`) whose hex digits start with `shortId`.
 */
function shortIdMatches(key: string, shortId: string): boolean {
  const last = key.slice(key.lastIndexOf(":") + 1).replace(/^s-/, "");
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(last)) return false;
  return last.replaceAll("-", "").startsWith(shortId.replaceAll("-", ""));
}

/** A user message for a client's editor (`editorText`, `editorAttachments` of the protocol). */
function editorOf(input: UserMessageInput): {
  editorText: string;
  editorAttachments?: Array<{ mimeType: string; data: string }>;
} {
  const editorAttachments = [...(input.images ?? []), ...(input.files ?? [])].flatMap((part) =>
    part.data === undefined ? [] : [{ mimeType: part.mediaType, data: part.data }],
  );
  return {
    editorText: input.text,
    ...(editorAttachments.length === 0 ? {} : { editorAttachments }),
  };
}

function modelRef(method: string, value: unknown, field: string): string {
  if (typeof value !== "string" || !/^[^/\s]+\/\S+$/.test(value)) {
    throw invalidRequest(`invalid ${method} params: ${field} must be "provider/model"`, {
      code: "INVALID_PARAMS",
      field,
    });
  }
  return value;
}

async function rowOf(hub: GatewayHub, key: string): Promise<Record<string, unknown> | null> {
  const record = await hub.runtime.store.sessions.get(key);
  return record === undefined ? null : withRoute(hub, sessionRow(hub, record));
}

/** Adds where the session was last reached from (`chat.send`'s `originating*`) to its row. */
async function withRoute(
  hub: GatewayHub,
  row: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const route = await sessionRoute(hub, row.key as string);
  if (route === undefined) return row;
  row.channel = route.channel;
  if (route.accountId !== undefined) row.accountId = route.accountId;
  return row;
}

function patchFrom(method: string, p: ParamsObject): { patch: SessionPatch; ignored: string[] } {
  const patch: SessionPatch = {};
  if (p.label !== undefined) {
    if (
      p.label !== null &&
      (typeof p.label !== "string" || p.label.length === 0 || p.label.length > 512)
    ) {
      throw invalidRequest(
        `invalid ${method} params: label must be a non-empty string of at most 512 characters, or null to clear it`,
        { code: "INVALID_PARAMS", field: "label" },
      );
    }
    patch.displayName = p.label as string | null;
  }
  if (p.thinkingLevel !== undefined) {
    if (p.thinkingLevel !== null && !THINKING_LEVELS.includes(p.thinkingLevel as ThinkingLevel)) {
      throw invalidRequest(
        `invalid ${method} params: thinkingLevel must be one of ${THINKING_LEVELS.join(", ")} or null`,
        { code: "INVALID_PARAMS", field: "thinkingLevel" },
      );
    }
    patch.thinkingLevel = p.thinkingLevel as ThinkingLevel | null;
  }
  if (p.verboseLevel !== undefined) {
    if (p.verboseLevel !== null && !["off", "on", "full"].includes(p.verboseLevel as string)) {
      throw invalidRequest(`invalid ${method} params: verboseLevel must be off, on, full or null`, {
        code: "INVALID_PARAMS",
        field: "verboseLevel",
      });
    }
    patch.verboseLevel = p.verboseLevel as "off" | "on" | "full" | null;
  }
  if (p.model !== undefined) {
    patch.modelOverride = p.model === null ? null : modelRef(method, p.model, "model");
  }
  const ignored = Object.keys(p).filter((k) => !PATCH_FIELDS.has(k));
  return { patch, ignored };
}

export const sessionMethods: Record<string, HubMethod> = {
  "sessions.list": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const limit = optionalInt(method, p, "limit", { min: 1, max: 1000 }) ?? 100;
      const offset = optionalInt(method, p, "offset", { min: 0 }) ?? 0;
      const agentId = optionalString(method, p, "agentId", { nonEmpty: true });
      const activeMinutes = optionalInt(method, p, "activeMinutes", { min: 1 });
      const search = optionalString(method, p, "search")?.toLowerCase();
      const label = optionalString(method, p, "label", { nonEmpty: true, maxLength: 512 });
      const includeLastMessage = optionalBool(method, p, "includeLastMessage") === true;
      const sortBy = optionalEnum(method, p, "sortBy", SORT_KEYS) ?? "updatedAt";
      const requireLastInteraction = optionalBool(method, p, "requireLastInteraction") === true;
      const spawnedBy = optionalString(method, p, "spawnedBy", { nonEmpty: true });
      const now = hub.now();
      const matches = (r: SessionRecord) => {
        const name = typeof r.displayName === "string" ? r.displayName : "";
        if (label !== undefined && name !== label) return false;
        if (search && !r.key.includes(search) && !name.toLowerCase().includes(search)) return false;
        if (requireLastInteraction && typeof r.lastRunAt !== "number") return false;
        if (spawnedBy !== undefined && r.parentKey !== spawnedBy) return false;
        return true;
      };
      const picked: SessionRecord[] = [];
      let skipped = 0;
      let more = false;
      const records = scanSessions(hub, {
        ...(agentId === undefined ? {} : { agentId }),
        ...(activeMinutes === undefined ? {} : { updatedSince: now - activeMinutes * 60_000 }),
      });
      if (sortBy === "lastInteractionAt") {
        // Not the store's order: every match is read (up to MAX_SCAN) and sorted, newest
        // interaction first, then newest update, then key, so pages never overlap or skip.
        const all: SessionRecord[] = [];
        for await (const record of records) if (matches(record)) all.push(record);
        all.sort(byLastInteraction);
        picked.push(...all.slice(offset, offset + limit));
        more = all.length > offset + limit;
      } else {
        for await (const record of records) {
          if (!matches(record)) continue;
          if (skipped < offset) {
            skipped++;
            continue;
          }
          if (picked.length === limit) {
            more = true;
            break;
          }
          picked.push(record);
        }
      }
      const sessions = [];
      for (const record of picked) {
        const row = await withRoute(hub, sessionRow(hub, record));
        if (includeLastMessage) {
          const [last] = await chatHistory(hub, record.key, 1);
          const content =
            (last?.content as Array<{ type?: string; text?: string }> | undefined) ?? [];
          const text = content.find((c) => c.type === "text")?.text;
          if (text !== undefined) row.lastMessagePreview = text.slice(0, 200);
        }
        sessions.push(row);
      }
      const agent = hub.runtime.agents.find((a) => a.id === (agentId ?? hub.defaultAgentId));
      const slash = agent?.model.indexOf("/") ?? -1;
      return {
        ts: now,
        path: `${hub.runtime.store.kind}:sessions`,
        count: sessions.length,
        offset,
        limit,
        hasMore: more,
        ...(more ? { nextOffset: offset + sessions.length } : {}),
        defaults: {
          ...(agent === undefined || slash < 0
            ? {}
            : { modelProvider: agent.model.slice(0, slash), model: agent.model.slice(slash + 1) }),
        },
        sessions,
      };
    },
  },

  "sessions.get": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const key = hub.session(sessionKeyParam(method, p)).key;
      const limit = optionalInt(method, p, "limit", { min: 1, max: 1000 }) ?? 200;
      const row = await rowOf(hub, key);
      return {
        key,
        session: row,
        messages: row === null ? [] : await chatHistory(hub, key, limit),
      };
    },
  },

  "sessions.resolve": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const text = (field: string) =>
        optionalString(method, p, field, { maxLength: 512 })?.trim() ?? "";
      const key = text("key");
      const sessionId = text("sessionId");
      const label = text("label");
      const shortId = text("shortId").toLowerCase();
      const slugHint = optionalString(method, p, "slugHint", { nonEmpty: true })?.toLowerCase();
      if (slugHint !== undefined && shortId === "") {
        throw invalidRequest(`invalid ${method} params: slugHint requires shortId`, {
          code: "INVALID_PARAMS",
          field: "slugHint",
        });
      }
      const given = [key, sessionId, label, shortId].filter((v) => v !== "").length;
      if (given !== 1) {
        throw invalidRequest(
          `invalid ${method} params: give exactly one of key, sessionId, label or shortId`,
          { code: "INVALID_PARAMS" },
        );
      }
      const agentId = optionalString(method, p, "agentId", { nonEmpty: true })?.toLowerCase();
      const spawnedBy = optionalString(method, p, "spawnedBy", { nonEmpty: true });
      const allowMissing = optionalBool(method, p, "allowMissing") === true;
      const visible = (r: SessionRecord) =>
        (agentId === undefined || r.agentId === agentId) &&
        (spawnedBy === undefined || r.parentKey === spawnedBy);
      const missing = (what: string) => {
        if (allowMissing) return { ok: false };
        throw invalidRequest(`no session found: ${what}`, { code: "SESSION_NOT_FOUND" });
      };
      if (key !== "" || sessionId !== "") {
        // A BeamClaw session's id is its key.
        const wanted = key || sessionId;
        const canonical = hub.session(wanted).key;
        const record = await hub.runtime.store.sessions.get(canonical);
        return record !== undefined && visible(record) ? resolved(record) : missing(wanted);
      }
      const matches: SessionRecord[] = [];
      for await (const record of scanSessions(hub, agentId === undefined ? {} : { agentId })) {
        if (!visible(record)) continue;
        if (label !== "" ? record.displayName === label : shortIdMatches(record.key, shortId)) {
          matches.push(record);
        }
      }
      // A slug hint narrows a short id's matches to the keys that hold it, when any does.
      const hinted = slugHint === undefined ? [] : matches.filter((r) => r.key.includes(slugHint));
      const found = hinted.length > 0 ? hinted : matches;
      if (found.length === 0) return missing(label !== "" ? `label ${label}` : `id ${shortId}`);
      if (found.length === 1) return resolved(found[0]!);
      found.sort(byLastInteraction);
      return { ok: false, candidates: found.slice(0, 10).map(resolvedRow) };
    },
  },

  "sessions.describe": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const key = hub.session(sessionKeyParam(call.method, call.params)).key;
      return { session: await rowOf(hub, key) };
    },
  },

  "sessions.create": {
    scope: Scopes.WRITE,
    startsWork: true,
    async handler(call, hub) {
      const { method, params: p } = call;
      const agentId = optionalString(method, p, "agentId", { nonEmpty: true });
      const requested = optionalString(method, p, "key", { nonEmpty: true });
      const session = hub.session(
        requested ?? `agent:${agentId ?? hub.defaultAgentId}:s-${randomUUID()}`,
        agentId,
      );
      const existing = await hub.runtime.store.sessions.get(session.key);
      // Both read (and checked) before either is used.
      const displayName = optionalString(method, p, "displayName", {
        nonEmpty: true,
        maxLength: 500,
      });
      const labelParam = optionalString(method, p, "label", { nonEmpty: true, maxLength: 512 });
      const label = displayName ?? labelParam;
      const thinking = optionalEnum(method, p, "thinkingLevel", THINKING_LEVELS);
      const model = p.model === undefined ? undefined : modelRef(method, p.model, "model");
      const message = optionalString(method, p, "message") ?? optionalString(method, p, "task");
      if (existing === undefined) {
        // Written by the session itself (a patch saves its record): a record written beside
        // it would be overwritten by the session's next save if it is running already (asked
        // about, or in its first run), and the label and settings lost.
        await session.patch({
          ...(label === undefined ? {} : { displayName: label }),
          ...(thinking === undefined ? {} : { thinkingLevel: thinking }),
          ...(model === undefined ? {} : { modelOverride: model }),
        });
        hub.sessionsChanged(session.key, "created");
      }
      let run: Awaited<ReturnType<typeof sendToSession>> | undefined;
      if (message !== undefined && message.trim().length > 0) {
        run = await sendToSession(hub, {
          sessionKey: session.key,
          message: sanitizeMessage(message),
          images: attachmentImages(p.attachments),
          displayRunId: optionalString(method, p, "idempotencyKey", { nonEmpty: true }),
          traceparent: call.traceparent,
          sender: `gateway:${call.caller.connId}`,
        });
      }
      return {
        ok: true,
        key: session.key,
        sessionId: session.key,
        created: existing === undefined,
        entry: await rowOf(hub, session.key),
        runStarted: run !== undefined,
        ...(run === undefined ? {} : { runId: run.runId }),
      };
    },
  },

  "sessions.send": {
    scope: Scopes.WRITE,
    startsWork: true,
    async handler(call, hub) {
      const outcome = await sendFromParams(call, hub, undefined);
      return { ok: true, key: outcome.sessionKey, runId: outcome.runId, status: outcome.status };
    },
  },

  "sessions.steer": {
    // OpenClaw's: `sessions.send` that interrupts the session's active run (core's queue mode
    // `interrupt`: the run is aborted and this message runs next), or starts one at rest.
    scope: Scopes.WRITE,
    startsWork: true,
    async handler(call, hub) {
      const outcome = await sendFromParams(call, hub, "interrupt");
      const interrupted = outcome.disposition === "interrupted";
      hub.sessionsChanged(outcome.sessionKey, interrupted ? "steer" : "send");
      return {
        ok: true,
        key: outcome.sessionKey,
        runId: outcome.runId,
        status: outcome.status,
        ...(interrupted ? { interruptedActiveRun: true } : {}),
      };
    },
  },

  "sessions.abort": {
    scope: Scopes.WRITE,
    async handler(call, hub) {
      const { method, params: p } = call;
      const runId = optionalString(method, p, "runId", { nonEmpty: true });
      const rawKey = optionalString(method, p, "key", { nonEmpty: true });
      if (runId === undefined && rawKey === undefined) {
        throw invalidRequest(`invalid ${method} params: give key, runId or both`, {
          code: "INVALID_PARAMS",
          field: "key",
        });
      }
      const key = rawKey === undefined ? undefined : hub.session(rawKey).key;
      const runs =
        runId !== undefined
          ? [hub.runs.find(runId)].filter((r) => r !== undefined && !r.done)
          : hub.runs.active(key);
      if (key !== undefined && runs.some((r) => r!.sessionKey !== key)) {
        throw invalidRequest("runId does not match key", { code: "RUN_SESSION_MISMATCH" });
      }
      const aborted: string[] = [];
      for (const run of runs) {
        if (await hub.session(run!.sessionKey).abort(run!.coreRunId)) aborted.push(run!.runId);
      }
      if (
        runId !== undefined &&
        key !== undefined &&
        runs.length === 0 &&
        (await abortQueued(hub, key, runId))
      ) {
        aborted.push(runId);
      }
      return { ok: true, aborted: aborted.length > 0, runIds: aborted };
    },
  },

  "sessions.patch": {
    scope: Scopes.WRITE,
    async handler(call, hub) {
      const { method, params: p } = call;
      const session = hub.session(
        sessionKeyParam(method, p),
        optionalString(method, p, "agentId", { nonEmpty: true }),
      );
      if (!(await sessionExists(hub, session.key))) throw noSuchSession(session.key);
      const { patch, ignored } = patchFrom(method, p);
      await session.patch(patch);
      hub.sessionsChanged(session.key, "patched");
      return {
        ok: true,
        key: session.key,
        entry: await rowOf(hub, session.key),
        ...(ignored.length === 0 ? {} : { ignored }),
      };
    },
  },

  "sessions.reset": {
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const session = hub.session(sessionKeyParam(call.method, call.params));
      if (!(await sessionExists(hub, session.key))) throw noSuchSession(session.key);
      await session.reset();
      hub.sessionsChanged(session.key, "reset");
      return { ok: true, key: session.key, entry: await rowOf(hub, session.key) };
    },
  },

  "sessions.compact": {
    // Like a reset, it rewrites what the model will see of the conversation.
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const session = hub.session(sessionKeyParam(call.method, call.params));
      if (!(await sessionExists(hub, session.key))) throw noSuchSession(session.key);
      // The summary keeps the latest turns word for word; a line count means nothing here.
      const ignored = call.params.maxLines === undefined ? [] : ["maxLines"];
      const result = await session.compact();
      if (result.status === "compacted") hub.sessionsChanged(session.key, "compacted");
      return {
        ok: true,
        key: session.key,
        compacted: result.status === "compacted",
        summarizedMessages: result.summarizedMessages,
        keptMessages: result.keptMessages,
        ...(result.summary === undefined ? {} : { summary: result.summary }),
        ...(ignored.length === 0 ? {} : { ignored }),
        entry: await rowOf(hub, session.key),
      };
    },
  },

  "sessions.compaction.list": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const session = requestedSession(hub, call, "key");
      return {
        ok: true,
        key: session.key,
        checkpoints: await compactionCheckpoints(hub, session.key),
      };
    },
  },

  "sessions.rewind": {
    // "Edit" and "regenerate" of a chat client (OpenClaw's `SessionsRewindParams`): undoes
    // the run of the user message `entryId` (its `runId` in `chat.history`: the `chat.send`
    // idempotency key or the runtime's id) and every later run, and answers that message for
    // the client's editor. Without `entryId`, the last run. Only at rest: a session with a run
    // in flight or queued messages answers `SESSION_BUSY` (retryable).
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const session = hub.session(sessionKeyParam(call.method, call.params));
      const entryId = optionalString(call.method, call.params, "entryId", {
        nonEmpty: true,
        maxLength: 256,
      });
      if (!(await sessionExists(hub, session.key))) throw noSuchSession(session.key);
      const result = await session.rewind(
        entryId === undefined ? undefined : { runId: hub.runs.coreId(entryId) },
      );
      const runIds = result.runIds.map((id) => hub.runs.displayId(id));
      if (runIds.length > 0) hub.sessionsChanged(session.key, "rewound", { runIds });
      const [first] = result.inputs;
      return first === undefined ? {} : editorOf(first);
    },
  },

  "sessions.fork": {
    // OpenClaw's `SessionsForkParams`: a new session with the history before the user
    // message `entryId` (its `runId` in `chat.history`), that message answered for the
    // client's editor; the original session stays as it is.
    scope: Scopes.WRITE,
    async handler(call, hub) {
      const session = hub.session(sessionKeyParam(call.method, call.params));
      const entryId = requireString(call.method, call.params, "entryId", 256);
      if (!(await sessionExists(hub, session.key))) throw noSuchSession(session.key);
      const fork = await session.fork({ runId: hub.runs.coreId(entryId) });
      hub.sessionsChanged(fork.key, "created", { forkedFrom: session.key });
      return { sessionKey: fork.key, ...editorOf(fork.input) };
    },
  },

  "sessions.delete": {
    // Deleting an agent's main session needs admin; any other session, write.
    scope: (params) => {
      const raw = params.key ?? params.sessionKey;
      try {
        return typeof raw === "string" && parseSessionKey(raw).kind === "main"
          ? [Scopes.ADMIN]
          : [Scopes.WRITE];
      } catch {
        return [Scopes.WRITE];
      }
    },
    async handler(call, hub) {
      const session = hub.session(sessionKeyParam(call.method, call.params));
      // `deleteTranscript: false` keeps the transcript, moved aside (to
      // `<key>:deleted:<epoch ms>`, reported in `archived`) so that a new session under the
      // key starts empty; the default deletes it.
      const keep = optionalBool(call.method, call.params, "deleteTranscript") === false;
      // A session whose first message is not saved yet has no record, but it is there to delete.
      const existed = await sessionExists(hub, session.key);
      let archived: string[] = [];
      if (existed) {
        const result = await session.delete(keep ? { archiveTranscript: true } : undefined);
        if (result.archivedAs !== undefined) archived = [result.archivedAs];
        // The session stops without ending its active run: it ends here, for its clients.
        hub.runs.endSession(session.key, {
          code: "SESSION_DELETED",
          message: `session ${session.key} was deleted`,
        });
        hub.sessionsChanged(session.key, "deleted");
      }
      return { ok: true, key: session.key, deleted: existed, archived };
    },
  },

  "sessions.subscribe": {
    scope: Scopes.READ,
    handler(call, hub) {
      const connection = [...hub.connections].find((c) => c.connId === call.caller.connId);
      if (connection === undefined) {
        throw new GatewayError(ErrorCodes.UNAVAILABLE, "the connection is closing", {
          details: { code: "CONNECTION_CLOSING" },
        });
      }
      connection.sessionsSubscribed = true;
      return { ok: true, subscribed: true };
    },
  },

  "sessions.unsubscribe": {
    scope: Scopes.READ,
    handler(call, hub) {
      const connection = [...hub.connections].find((c) => c.connId === call.caller.connId);
      if (connection !== undefined) connection.sessionsSubscribed = false;
      return { ok: true, subscribed: false };
    },
  },

  "sessions.messages.subscribe": {
    // OpenClaw's: every message added to the session's transcript from now on is sent to
    // this connection as a `session.message` event (see `session-messages.ts`).
    scope: Scopes.READ,
    async handler(call, hub) {
      const session = requestedSession(hub, call, "key");
      const connection = [...hub.connections].find((c) => c.connId === call.caller.connId);
      if (connection === undefined) {
        throw new GatewayError(ErrorCodes.UNAVAILABLE, "the connection is closing", {
          details: { code: "CONNECTION_CLOSING" },
        });
      }
      if (
        !connection.followedSessions.has(session.key) &&
        connection.followedSessions.size >= MAX_FOLLOWED_SESSIONS
      ) {
        throw invalidRequest(
          `this connection follows ${MAX_FOLLOWED_SESSIONS} sessions already; unsubscribe from one first`,
          { code: "TOO_MANY_SUBSCRIPTIONS", max: MAX_FOLLOWED_SESSIONS },
        );
      }
      await hub.sessionMessages.follow(connection, session.key);
      return { subscribed: true, key: session.key };
    },
  },

  "sessions.messages.unsubscribe": {
    scope: Scopes.READ,
    handler(call, hub) {
      const session = requestedSession(hub, call, "key");
      const connection = [...hub.connections].find((c) => c.connId === call.caller.connId);
      if (connection !== undefined) hub.sessionMessages.unfollow(connection, session.key);
      return { subscribed: false, key: session.key };
    },
  },
};
