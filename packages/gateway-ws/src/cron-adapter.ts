/**
 * `cron.*` on core's `CronSupervisor`: OpenClaw's job shape (`name`, `schedule.kind`,
 * `sessionTarget`, `payload`, `delivery.mode`) translated to and from BeamClaw's
 * `CronJobInput` / `CronJob`, run events from the `beamclaw:cron.run` telemetry channel.
 * What BeamClaw's jobs do not hold (the name, the description, `wakeMode`) is kept beside
 * them in the store's key/value space.
 */
import { randomUUID } from "node:crypto";
import {
  type CronDelivery,
  CronError,
  type CronJob,
  type CronJobInput,
  type CronJobPatch,
  type CronRun,
  type CronSchedule,
  type CronService,
  type CronSupervisor,
  compileSchedule,
  isValidTimeZone,
  type JsonObject,
  type KeyValueStore,
  MAX_RUN_TIMEOUT_MS,
  parseInstant,
  subscribeTelemetry,
} from "@beamclaw/core";
import type { GatewayCronBackend } from "./cron.js";
import { ErrorCodes } from "./protocol/constants.js";
import { GatewayError, invalidRequest } from "./protocol/errors.js";

const META_PREFIX = "gateway:cron-meta:";

interface JobMeta extends JsonObject {
  name: string;
  description?: string;
  wakeMode: "now" | "next-heartbeat";
  payloadKind: "agentTurn" | "systemEvent";
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalidRequest(`${what} must be an object`, { code: "INVALID_PARAMS", field: what });
  }
  return value as Record<string, unknown>;
}

/** A refused schedule field, named in the protocol's terms under `prefix`. */
function badSchedule(
  prefix: string,
  field: string,
  message: string,
  code: "INVALID_PARAMS" | "INVALID_CRON_SCHEDULE" = "INVALID_PARAMS",
): GatewayError {
  return invalidRequest(`${prefix}.${field} ${message}`, { code, field: `${prefix}.${field}` });
}

/**
 * Core's check of one part of a schedule (`compileSchedule`, `parseInstant`): its refusal
 * becomes `INVALID_CRON_SCHEDULE` naming the protocol's field, so that a client learns which
 * field is wrong (`schedule.tz`, not core's `schedule.timezone`).
 */
function checkPart(prefix: string, field: string, check: () => unknown): void {
  try {
    check();
  } catch (error) {
    if (!CronError.isInstance(error)) throw error;
    throw badSchedule(prefix, field, `is refused: ${error.message}`, "INVALID_CRON_SCHEDULE");
  }
}

/**
 * OpenClaw's schedule → BeamClaw's, each field checked here so that a refusal names it
 * (under `prefix`: `schedule` for `cron.add`, `patch.schedule` for `cron.update`). A field of
 * the wrong type is `INVALID_PARAMS`, never dropped (a dropped `tz` would run the job in UTC);
 * a value of the right type core cannot run (an unknown zone, a minute of 61, a date that
 * does not exist) is `INVALID_CRON_SCHEDULE`.
 */
function toSchedule(raw: unknown, prefix: string): CronSchedule {
  const s = record(raw, prefix);
  switch (s.kind) {
    case "at": {
      if (typeof s.at !== "string" || s.at.length === 0)
        throw badSchedule(prefix, "at", "must be a date string");
      const at = s.at;
      checkPart(prefix, "at", () => parseInstant(at, `${prefix}.at`));
      return { at };
    }
    case "every": {
      const every = s.everyMs;
      if (typeof every !== "number" || !Number.isSafeInteger(every) || every < 1)
        throw badSchedule(prefix, "everyMs", "must be a whole number of ms > 0");
      const anchor = s.anchorMs;
      if (anchor === undefined) {
        checkPart(prefix, "everyMs", () => compileSchedule({ every }, Date.now()));
        return { every };
      }
      if (typeof anchor !== "number" || !Number.isSafeInteger(anchor) || anchor < 0)
        throw badSchedule(prefix, "anchorMs", "must be epoch ms (a whole number >= 0)");
      checkPart(prefix, "anchorMs", () => parseInstant(anchor, `${prefix}.anchorMs`));
      checkPart(prefix, "everyMs", () => compileSchedule({ every, anchor }, Date.now()));
      return { every, anchor };
    }
    case "cron": {
      if (typeof s.expr !== "string" || s.expr.length === 0)
        throw badSchedule(prefix, "expr", "must be a cron expression");
      const expr = s.expr;
      if (s.tz !== undefined && typeof s.tz !== "string")
        throw badSchedule(prefix, "tz", 'must be an IANA time zone such as "Europe/Berlin"');
      const tz = typeof s.tz === "string" && s.tz.length > 0 ? s.tz : undefined;
      if (tz !== undefined && !isValidTimeZone(tz)) {
        throw badSchedule(
          prefix,
          "tz",
          `must be an IANA time zone such as "Europe/Berlin", got ${JSON.stringify(tz)}`,
          "INVALID_CRON_SCHEDULE",
        );
      }
      checkPart(prefix, "expr", () => compileSchedule({ cron: expr }, Date.now()));
      const stagger = s.staggerMs;
      if (stagger !== undefined) {
        if (typeof stagger !== "number")
          throw badSchedule(prefix, "staggerMs", "must be a whole number of ms");
        // A negative, fractional or too large window is core's to refuse, naming the field.
        checkPart(prefix, "staggerMs", () =>
          compileSchedule({ cron: expr, staggerMs: stagger }, Date.now()),
        );
      }
      return {
        cron: expr,
        ...(tz === undefined ? {} : { timezone: tz }),
        ...(stagger === undefined ? {} : { staggerMs: stagger }),
      };
    }
    default:
      throw invalidRequest(
        `${prefix}.kind ${JSON.stringify(s.kind)} is not supported here (at, every and cron are)`,
        { code: "UNSUPPORTED_SCHEDULE", kind: s.kind },
      );
  }
}

/** BeamClaw's schedule → OpenClaw's. */
function fromSchedule(schedule: CronSchedule): Record<string, unknown> {
  if ("at" in schedule) {
    return {
      kind: "at",
      at: typeof schedule.at === "number" ? new Date(schedule.at).toISOString() : schedule.at,
    };
  }
  if ("every" in schedule) {
    const anchor =
      schedule.anchor === undefined
        ? undefined
        : typeof schedule.anchor === "number"
          ? schedule.anchor
          : Date.parse(schedule.anchor);
    return {
      kind: "every",
      everyMs: schedule.every,
      ...(anchor === undefined || Number.isNaN(anchor) ? {} : { anchorMs: anchor }),
    };
  }
  return {
    kind: "cron",
    expr: schedule.cron,
    ...(schedule.timezone === undefined ? {} : { tz: schedule.timezone }),
    ...(schedule.staggerMs === undefined ? {} : { staggerMs: schedule.staggerMs }),
  };
}

/** The longest run time limit, in whole seconds (core's `MAX_RUN_TIMEOUT_MS`). */
const MAX_TIMEOUT_SECONDS = Math.floor(MAX_RUN_TIMEOUT_MS / 1000);

/**
 * An `agentTurn` payload's `timeoutSeconds` as a job's `timeoutMs`: `undefined` when absent,
 * `null` for `0` (no limit of the job's own), else whole ms (at least 1). Anything else is
 * `INVALID_PARAMS` naming `field`.
 */
function toTimeoutMs(raw: unknown, method: string, field: string): number | null | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== "number" || !Number.isFinite(raw) || raw < 0 || raw > MAX_TIMEOUT_SECONDS) {
    throw invalidRequest(
      `invalid ${method} params: ${field} must be a number of seconds from 0 (no limit) to ${MAX_TIMEOUT_SECONDS}`,
      { code: "INVALID_PARAMS", field },
    );
  }
  return raw === 0 ? null : Math.max(1, Math.round(raw * 1000));
}

function toPrompt(raw: unknown): { prompt: string; kind: JobMeta["payloadKind"] } {
  const p = record(raw, "payload");
  if (p.kind === "agentTurn" && typeof p.message === "string" && p.message.length > 0)
    return { prompt: p.message, kind: "agentTurn" };
  if (p.kind === "systemEvent" && typeof p.text === "string" && p.text.length > 0)
    return { prompt: p.text, kind: "systemEvent" };
  throw invalidRequest(
    `payload.kind ${JSON.stringify(p.kind)} is not supported here (agentTurn with a message, systemEvent with a text are)`,
    { code: "UNSUPPORTED_PAYLOAD", kind: p.kind },
  );
}

function toSession(raw: unknown): "main" | "isolated" {
  if (raw === "main" || raw === "isolated") return raw;
  throw invalidRequest(
    `sessionTarget ${JSON.stringify(raw)} is not supported here (main and isolated are)`,
    {
      code: "UNSUPPORTED_SESSION_TARGET",
    },
  );
}

function toDelivery(raw: unknown): CronDelivery {
  if (raw === undefined) return { kind: "none" };
  const d = record(raw, "delivery");
  if (d.mode === "none") return { kind: "none" };
  if (d.mode === "announce" && typeof d.channel === "string" && typeof d.to === "string") {
    return { kind: "announce", channel: d.channel, target: d.to };
  }
  if (d.mode === "webhook" && typeof d.to === "string") return { kind: "webhook", url: d.to };
  throw invalidRequest(
    "delivery must be { mode: none }, { mode: announce, channel, to } or { mode: webhook, to }",
    {
      code: "UNSUPPORTED_DELIVERY",
    },
  );
}

function fromDelivery(delivery: CronDelivery): Record<string, unknown> {
  if (delivery.kind === "announce")
    return { mode: "announce", channel: delivery.channel, to: delivery.target };
  if (delivery.kind === "webhook") return { mode: "webhook", to: delivery.url };
  return { mode: "none" };
}

/** A BeamClaw job in OpenClaw's `CronJob` shape. */
export function toProtocolJob(job: CronJob, meta: JobMeta | undefined): Record<string, unknown> {
  const s = job.state;
  const lastStatus =
    s.lastStatus === "ok"
      ? "ok"
      : s.lastStatus === undefined
        ? undefined
        : s.lastStatus === "error"
          ? "error"
          : "skipped";
  const state = {
    ...(s.nextRunAt === undefined ? {} : { nextRunAtMs: s.nextRunAt }),
    ...(s.runningAt === undefined ? {} : { runningAtMs: s.runningAt }),
    ...(s.lastRunAt === undefined ? {} : { lastRunAtMs: s.lastRunAt }),
    ...(lastStatus === undefined ? {} : { lastRunStatus: lastStatus, lastStatus }),
    ...(s.lastError === undefined ? {} : { lastError: s.lastError }),
    ...(s.lastDurationMs === undefined ? {} : { lastDurationMs: s.lastDurationMs }),
    consecutiveErrors: s.consecutiveErrors,
    ...(s.disabledReason !== undefined && s.disabledAt !== undefined && s.consecutiveErrors > 0
      ? {
          autoDisabled: {
            reason: "consecutive-failures",
            atMs: s.disabledAt,
            consecutiveErrors: s.consecutiveErrors,
          },
        }
      : {}),
  };
  return {
    id: job.id,
    agentId: job.agentId,
    name: meta?.name ?? job.id,
    ...(meta?.description === undefined ? {} : { description: meta.description }),
    enabled: job.enabled,
    createdAtMs: job.createdAt,
    updatedAtMs: job.updatedAt,
    schedule: fromSchedule(job.schedule),
    sessionTarget: job.session,
    wakeMode: meta?.wakeMode ?? "now",
    payload:
      meta?.payloadKind === "systemEvent"
        ? { kind: "systemEvent", text: job.prompt }
        : {
            kind: "agentTurn",
            message: job.prompt,
            ...(job.timeoutMs === undefined ? {} : { timeoutSeconds: job.timeoutMs / 1000 }),
          },
    delivery: fromDelivery(job.delivery),
    state,
    ...(state.nextRunAtMs === undefined ? {} : { nextRunAtMs: state.nextRunAtMs }),
    ...(state.lastRunAtMs === undefined ? {} : { lastRunAtMs: state.lastRunAtMs }),
    ...(lastStatus === undefined ? {} : { lastRunStatus: lastStatus }),
  };
}

/** A BeamClaw run-log entry in OpenClaw's `CronRunLogEntry` shape. */
export function toRunLogEntry(run: CronRun): Record<string, unknown> {
  return {
    ts: run.finishedAt ?? run.startedAt,
    jobId: run.jobId,
    action: "finished",
    status: run.status === "ok" ? "ok" : run.status === "error" ? "error" : "skipped",
    ...(run.error === undefined ? {} : { error: run.error }),
    ...(run.output === undefined ? {} : { summary: run.output }),
    runId: run.runId,
    runAtMs: run.startedAt,
    ...(run.durationMs === undefined ? {} : { durationMs: run.durationMs }),
    ...(run.sessionKey === undefined ? {} : { sessionKey: run.sessionKey }),
    ...deliveryOf(run),
  };
}

/** A run's delivery in the run log's terms: `not-requested` when the job delivers nowhere. */
function deliveryOf(run: CronRun): Record<string, unknown> {
  const d = run.delivery;
  if (d === undefined) return { deliveryStatus: "not-requested" };
  if (d.status === "ok") return { delivered: true, deliveryStatus: "delivered" };
  return {
    delivered: false,
    deliveryStatus: "not-delivered",
    ...(d.error === undefined ? {} : { deliveryError: d.error }),
  };
}

type JobView = Record<string, unknown> & {
  id: string;
  name: string;
  updatedAtMs: number;
  schedule: { kind: string };
  state: { nextRunAtMs?: number; lastRunStatus?: string };
};

/** Orders jobs as `cron.list` asks (`nextRunAtMs` ascending by default; jobs without one last). */
function sortJobs(views: JobView[], sortBy: unknown, sortDir: unknown): void {
  const dir = sortDir === "desc" ? -1 : 1;
  views.sort((a, b) => {
    let order: number;
    if (sortBy === "name") order = a.name.localeCompare(b.name);
    else if (sortBy === "updatedAtMs") order = a.updatedAtMs - b.updatedAtMs;
    else {
      const an = a.state.nextRunAtMs;
      const bn = b.state.nextRunAtMs;
      if (an === undefined || bn === undefined) {
        // Not due at all sorts last in either direction.
        order = an === bn ? 0 : an === undefined ? 1 : -1;
        if (order !== 0) return order;
      } else order = an - bn;
    }
    return order !== 0 ? dir * order : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
}

/** The most runs a store lists at once (`CronStore.listRuns`). */
const RUN_PAGE = 1000;

/**
 * A job's whole run log, newest first, read by pages however long the service keeps it
 * (`runLogKeep`). A run logged while it is read may list one twice: each run id is kept once.
 * A store that ignores `offset` (one written before it) lists its first page again: reading
 * stops there.
 */
async function wholeRunLog(service: CronService, id: string): Promise<CronRun[]> {
  const runs: CronRun[] = [];
  const seen = new Set<string>();
  for (let offset = 0; ; offset += RUN_PAGE) {
    const page = await service.runs(id, { limit: RUN_PAGE, offset });
    let added = 0;
    for (const run of page) {
      if (seen.has(run.runId)) continue;
      seen.add(run.runId);
      runs.push(run);
      added++;
    }
    if (page.length < RUN_PAGE || added === 0) return runs;
  }
}

function rethrow(error: unknown): never {
  if (CronError.isInstance(error)) {
    const notFound = error.code === "CRON_JOB_NOT_FOUND";
    throw new GatewayError(ErrorCodes.INVALID_REQUEST, error.message, {
      details: notFound
        ? { code: "CRON_JOB_NOT_FOUND", jobId: error.jobId ?? "" }
        : { code: error.code, ...(error.jobId === undefined ? {} : { jobId: error.jobId }) },
    });
  }
  throw error;
}

function page<T>(items: T[], params: Record<string, unknown>) {
  const limit =
    typeof params.limit === "number" && params.limit > 0
      ? Math.min(200, Math.floor(params.limit))
      : 50;
  const offset =
    typeof params.offset === "number" && params.offset > 0 ? Math.floor(params.offset) : 0;
  const slice = items.slice(offset, offset + limit);
  const hasMore = offset + slice.length < items.length;
  return {
    slice,
    total: items.length,
    offset,
    limit,
    hasMore,
    ...(hasMore ? { nextOffset: offset + slice.length } : {}),
  };
}

/**
 * Turns core's `CronSupervisor` (one `CronService` per agent) into the gateway's cron backend.
 *
 * @example
 * ```ts
 * const crons = await new CronSupervisor({ store, runJob: agentRuntimeJobRunner(runtime) }).start();
 * const gateway = createGateway({ runtime, cron: cronBackend(crons, { store, agents: ["main"] }) });
 * ```
 */
export function cronBackend(
  supervisor: CronSupervisor,
  options: {
    kv: KeyValueStore;
    /** The agents that exist: their ids, or a function that says (for agents added by a reload). */
    agents: readonly string[] | (() => readonly string[]);
    defaultAgentId?: string;
  },
): GatewayCronBackend {
  const agents = (): readonly string[] =>
    typeof options.agents === "function" ? options.agents() : options.agents;
  const defaultAgent = () => options.defaultAgentId ?? agents()[0];
  /** An agent id a client named: it must be an agent that exists (or whose jobs run here). */
  const knownAgent = (agentId: string): string => {
    const id = agentId.toLowerCase();
    if (!agents().includes(id) && !supervisor.runningAgents().includes(id)) {
      throw new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown agent "${agentId}"`, {
        details: { code: "UNKNOWN_AGENT_ID", agentId },
      });
    }
    return id;
  };
  const meta = async (id: string) =>
    (await options.kv.get(`${META_PREFIX}${id}`)) as JobMeta | undefined;
  const services = async (agentId?: unknown): Promise<CronService[]> => {
    // Only agents that exist: a client's agent id must never start a service of its own.
    const ids =
      typeof agentId === "string" && agentId.length > 0
        ? [knownAgent(agentId)]
        : [...new Set([...agents(), ...supervisor.runningAgents()])];
    return Promise.all(ids.map((id) => supervisor.forAgent(id)));
  };
  const allJobs = async (agentId?: unknown) =>
    (await Promise.all((await services(agentId)).map((s) => s.list()))).flat();
  const owner = async (id: string): Promise<CronService> => {
    for (const service of await services()) {
      if ((await service.list()).some((j) => j.id === id)) return service;
    }
    throw new GatewayError(ErrorCodes.INVALID_REQUEST, `no cron job "${id}"`, {
      details: { code: "CRON_JOB_NOT_FOUND", jobId: id },
    });
  };
  const view = async (job: CronJob) => toProtocolJob(job, await meta(job.id));

  return {
    async list(params) {
      let jobs = await allJobs(params.agentId);
      const enabled = params.enabled ?? (params.includeDisabled === true ? "all" : "enabled");
      if (enabled === "enabled") jobs = jobs.filter((j) => j.enabled);
      if (enabled === "disabled") jobs = jobs.filter((j) => !j.enabled);
      // BeamClaw jobs have no trigger scripts: every job is unconditional.
      if (params.trigger === "conditional") jobs = [];
      let views = (await Promise.all(jobs.map(view))) as JobView[];
      const query = typeof params.query === "string" ? params.query.toLowerCase() : "";
      if (query !== "") {
        views = views.filter((j) => `${j.id} ${j.name}`.toLowerCase().includes(query));
      }
      const kind = params.scheduleKind;
      if (typeof kind === "string" && kind !== "all") {
        views = views.filter((j) => j.schedule.kind === kind);
      }
      const last = params.lastRunStatus;
      if (typeof last === "string" && last !== "all") {
        views = views.filter((j) => (j.state.lastRunStatus ?? "unknown") === last);
      }
      sortJobs(views, params.sortBy, params.sortDir);
      const { slice, ...paging } = page(views, params);
      return { jobs: slice, ...paging };
    },

    async status() {
      const statuses = await Promise.all((await services()).map((s) => s.cronStatus()));
      const next = statuses
        .filter((s) => s.nextRunAt !== undefined)
        .sort((a, b) => a.nextRunAt! - b.nextRunAt!)[0];
      return {
        enabled: true,
        jobs: statuses.reduce((n, s) => n + s.jobs, 0),
        enabledJobs: statuses.reduce((n, s) => n + s.enabled, 0),
        running: statuses.reduce((n, s) => n + s.running, 0),
        ...(next === undefined ? {} : { nextWakeAtMs: next.nextRunAt, nextJobId: next.nextJobId }),
        agents: statuses,
      };
    },

    async add(params) {
      const agentId =
        typeof params.agentId === "string" && params.agentId.length > 0
          ? knownAgent(params.agentId)
          : defaultAgent();
      if (agentId === undefined) {
        throw invalidRequest("cron.add needs an agentId", {
          code: "INVALID_PARAMS",
          field: "agentId",
        });
      }
      const { prompt, kind } = toPrompt(params.payload);
      // A system event has no time limit in the protocol: only an agent turn's is read.
      const timeoutMs =
        kind === "agentTurn"
          ? toTimeoutMs(
              (params.payload as Record<string, unknown>).timeoutSeconds,
              "cron.add",
              "payload.timeoutSeconds",
            )
          : undefined;
      const input: CronJobInput = {
        id: randomUUID(),
        agentId,
        schedule: toSchedule(params.schedule, "schedule"),
        session: toSession(params.sessionTarget ?? "isolated"),
        prompt,
        enabled: params.enabled !== false,
        delivery: toDelivery(params.delivery),
        ...(typeof timeoutMs === "number" ? { timeoutMs } : {}),
      };
      const service = await supervisor.forAgent(agentId).catch(rethrow);
      const job = await service.add(input).catch(rethrow);
      const jobMeta: JobMeta = {
        name: typeof params.name === "string" ? params.name : job.id,
        ...(typeof params.description === "string" ? { description: params.description } : {}),
        wakeMode: params.wakeMode === "next-heartbeat" ? "next-heartbeat" : "now",
        payloadKind: kind,
      };
      await options.kv.set(`${META_PREFIX}${job.id}`, jobMeta);
      return toProtocolJob(job, jobMeta);
    },

    async update(id, patch) {
      const service = await owner(id);
      const change: CronJobPatch = {};
      if (patch.schedule !== undefined)
        change.schedule = toSchedule(patch.schedule, "patch.schedule");
      if (patch.sessionTarget !== undefined) change.session = toSession(patch.sessionTarget);
      if (patch.enabled !== undefined) {
        if (typeof patch.enabled !== "boolean")
          throw invalidRequest("patch.enabled must be a boolean", {
            code: "INVALID_PARAMS",
            field: "patch.enabled",
          });
        change.enabled = patch.enabled;
      }
      if (patch.delivery !== undefined) change.delivery = toDelivery(patch.delivery);
      const old = await meta(id);
      let kind: JobMeta["payloadKind"] | undefined;
      if (patch.payload !== undefined) {
        const p = record(patch.payload, "patch.payload");
        if (
          p.kind === "agentTurn" &&
          p.message === undefined &&
          (old?.payloadKind ?? "agentTurn") === "agentTurn"
        ) {
          // A patch of an agent turn's other fields (its time limit): the message stays.
          kind = "agentTurn";
        } else {
          const payload = toPrompt(p);
          change.prompt = payload.prompt;
          kind = payload.kind;
        }
        // `timeoutSeconds` absent keeps the limit; `0` clears it; a system event has none.
        const timeoutMs =
          kind === "agentTurn"
            ? toTimeoutMs(p.timeoutSeconds, "cron.update", "patch.payload.timeoutSeconds")
            : null;
        if (timeoutMs !== undefined) change.timeoutMs = timeoutMs;
      }
      const job =
        Object.keys(change).length === 0
          ? await service.get(id).catch(rethrow)
          : await service.update(id, change).catch(rethrow);
      const next: JobMeta = {
        name: typeof patch.name === "string" ? patch.name : (old?.name ?? id),
        ...(typeof patch.description === "string"
          ? { description: patch.description }
          : old?.description === undefined
            ? {}
            : { description: old.description }),
        wakeMode:
          patch.wakeMode === "now" || patch.wakeMode === "next-heartbeat"
            ? patch.wakeMode
            : (old?.wakeMode ?? "now"),
        payloadKind: kind ?? old?.payloadKind ?? "agentTurn",
      };
      await options.kv.set(`${META_PREFIX}${id}`, next);
      return toProtocolJob(job, next);
    },

    async remove(id) {
      let service: CronService;
      try {
        service = await owner(id);
      } catch {
        return { removed: false };
      }
      const removed = await service.remove(id).catch(rethrow);
      await options.kv.delete(`${META_PREFIX}${id}`);
      return { removed };
    },

    async run(id, mode) {
      const service = await owner(id);
      // Core checks the mode and starts the run in one step, by its own clock (the one its
      // schedules run on), and answers once the run has started or been refused; the run
      // goes on in the background and its end is announced as a `cron` event.
      const start = await service
        .startRun(id, mode === "force" ? {} : { only: mode === "due" ? "due" : "enabled" })
        .catch(rethrow);
      if (!start.started) return { ok: true, ran: false, reason: start.reason };
      start.finished.catch(() => undefined);
      return { ok: true, ran: true, jobId: id };
    },

    async runs(params) {
      const id =
        typeof params.id === "string"
          ? params.id
          : typeof params.jobId === "string"
            ? params.jobId
            : undefined;
      let entries: CronRun[];
      if (id !== undefined && params.scope !== "all") {
        entries = await wholeRunLog(await owner(id), id).catch(rethrow);
      } else {
        const jobs = await allJobs(params.agentId);
        entries = (
          await Promise.all(
            jobs.map(async (j) => wholeRunLog(await supervisor.forAgent(j.agentId), j.id)),
          )
        ).flat();
      }
      const statuses = Array.isArray(params.statuses)
        ? params.statuses
        : typeof params.status === "string" && params.status !== "all"
          ? [params.status]
          : undefined;
      const deliveries = Array.isArray(params.deliveryStatuses)
        ? params.deliveryStatuses
        : typeof params.deliveryStatus === "string"
          ? [params.deliveryStatus]
          : undefined;
      const names = new Map<string, string>();
      for (const jobId of new Set(entries.map((e) => e.jobId))) {
        names.set(jobId, (await meta(jobId))?.name ?? jobId);
      }
      let shown: Array<Record<string, unknown>> = entries.map((run) => ({
        ...toRunLogEntry(run),
        jobName: names.get(run.jobId) ?? run.jobId,
      }));
      if (statuses !== undefined) shown = shown.filter((e) => statuses.includes(e.status));
      if (deliveries !== undefined) {
        shown = shown.filter((e) => deliveries.includes(e.deliveryStatus));
      }
      if (typeof params.runId === "string") shown = shown.filter((e) => e.runId === params.runId);
      const query = typeof params.query === "string" ? params.query.toLowerCase() : "";
      if (query !== "") {
        shown = shown.filter((e) =>
          [e.jobId, e.jobName, e.runId, e.summary, e.error]
            .filter((v) => typeof v === "string")
            .join(" ")
            .toLowerCase()
            .includes(query),
        );
      }
      shown.sort((a, b) =>
        params.sortDir === "asc"
          ? (a.ts as number) - (b.ts as number)
          : (b.ts as number) - (a.ts as number),
      );
      const { slice, ...paging } = page(shown, params);
      return { entries: slice, ...paging };
    },

    subscribe(listener) {
      return subscribeTelemetry("beamclaw:cron.run", (event) => {
        listener({
          action: "finished",
          jobId: event.jobId,
          agentId: event.agentId,
          runId: event.runId,
          status: event.status,
          trigger: event.trigger,
          runAtMs: event.startedAt,
          durationMs: event.durationMs,
          ...(event.error === undefined ? {} : { error: event.error }),
          ts: Date.now(),
        });
      });
    },
  };
}
