/**
 * The gateway's state behind the sockets: connections, presence, runs, approvals, nodes,
 * pairing, heartbeats and the method table, and the one `broadcast` every event goes through.
 */
import {
  type AgentRuntime,
  type BeamClawConfig,
  type ConfigService,
  INJECTED_MESSAGES_TOPIC,
  type InjectedMessageEvent,
  type JsonObject,
  type ModelSource,
  parseSessionKey,
  parseTraceparent,
  SessionMaintenance,
  type SessionRecord,
  type Transcriber,
} from "@beamclaw/core";
import { type ApprovalEntry, ExecApprovals } from "./approvals.js";
import { TrustedProxies } from "./auth/client-address.js";
import { DeviceWatch } from "./auth/device-watch.js";
import type { GatewayAuthSettings } from "./auth/handshake.js";
import { DevicePairing, type PairingRequest, scopeAllows } from "./auth/pairing.js";
import type { GatewayConnection } from "./connection.js";
import type { GatewayCronBackend } from "./cron.js";
import { type HeartbeatEvent, HeartbeatService, type HeartbeatSettings } from "./heartbeat.js";
import type { ConnectionLiveness } from "./liveness.js";
import type { GatewayLog } from "./logs.js";
import { recordMessages } from "./methods/session-helpers.js";
import type { GatewayMethodDefinition, MethodCall } from "./methods/types.js";
import { NodeRegistry } from "./nodes.js";
import { ErrorCodes, Scopes } from "./protocol/constants.js";
import { GatewayError, missingScope, toErrorShape } from "./protocol/errors.js";
import { type ParamsObject, paramsObject } from "./protocol/params.js";
import { isRunEvent, RunTracker } from "./runs.js";
import { SessionMessageFeed } from "./session-messages.js";
import type { GatewaySkillsReport } from "./skills.js";

/** An internal method: its scope rule and handler. */
export interface HubMethod {
  /** A scope, `node` (node role only), or a rule computed from the params. */
  scope: string | ((params: ParamsObject, hub: GatewayHub) => string[]);
  /** Refused while the gateway drains (it would start new work). */
  startsWork?: boolean;
  handler(call: MethodCall, hub: GatewayHub): unknown | Promise<unknown>;
}

/** Options of an event broadcast. */
export interface BroadcastOptions {
  /** Only connections with this scope (operator role) receive it. */
  scope?: string;
  /** For slow consumers, drop this event instead of disconnecting them (tick, presence, health). */
  dropIfSlow?: boolean;
  /** Attach the current state versions. */
  withStateVersion?: boolean;
  /** Only connections this returns true for. */
  filter?: (connection: GatewayConnection) => boolean;
}

/** Events this gateway emits (advertised in `hello-ok.features.events`). */
export const GATEWAY_EVENTS: readonly string[] = [
  "connect.challenge",
  "tick",
  "presence",
  "health",
  "heartbeat",
  "chat",
  "agent",
  "cron",
  "sessions.changed",
  "session.message",
  "exec.approval.requested",
  "exec.approval.resolved",
  "node.pair.requested",
  "node.pair.resolved",
  "device.pair.requested",
  "device.pair.resolved",
  "device.pair.setup.completed",
  "node.invoke.request",
  "node.invoke.cancel",
  "node.pending",
  "config.changed",
  "shutdown",
];

/** A presence entry (the protocol's `PresenceEntry`). */
export type PresenceEntry = Record<string, unknown> & { ts: number };

/** Everything the hub is built from. */
export interface GatewayHubOptions {
  runtime: AgentRuntime;
  config: BeamClawConfig | undefined;
  configService: ConfigService | undefined;
  cron: GatewayCronBackend | undefined;
  models: ModelSource | undefined;
  auth: GatewayAuthSettings;
  heartbeat: HeartbeatSettings;
  log: GatewayLog;
  version: string;
  now: () => number;
  limits: {
    maxPayloadBytes: number;
    maxBufferedBytes: number;
    tickIntervalMs: number;
    handshakeTimeoutMs: number;
    requestsPerSecond: number;
    requestBurst: number;
    deviceSignatureSkewMs: number;
    /** How long a run's streamed text may be held back (`GatewayServerOptions.streamCoalesceMs`). */
    streamCoalesceMs: number;
    /** Re-check period of open device connections (`deviceRecheckMs`); 0: none. */
    deviceRecheckMs: number;
  };
  methods: Record<string, HubMethod>;
  /**
   * The skills the agents were built with, when the host says (for `skills.status`); a
   * function gives the current ones.
   */
  skills?: GatewaySkillsReport | (() => GatewaySkillsReport);
  /** Transcribes `chat.send` audio attachments (`GatewayServerOptions.transcriber`). */
  transcriber?: Transcriber;
  /** Session maintenance for `sessions.cleanup` (`GatewayServerOptions.maintenance`). */
  maintenance?: SessionMaintenance;
  /** Reverse proxies whose forwarded headers name the client (`GatewayServerOptions.trustedProxies`). */
  trustedProxies?: TrustedProxies;
}

/** See the module comment. */
export class GatewayHub {
  readonly runtime: AgentRuntime;
  readonly configService: ConfigService | undefined;
  readonly cron: GatewayCronBackend | undefined;
  readonly models: ModelSource | undefined;
  readonly #skills: GatewaySkillsReport | (() => GatewaySkillsReport) | undefined;
  /** The skills the agents run with, when the host said (as it says now). */
  get skills(): GatewaySkillsReport | undefined {
    const skills = this.#skills;
    return typeof skills === "function" ? skills() : skills;
  }
  /** Speech to text for audio attachments, when the host gave one. */
  readonly transcriber: Transcriber | undefined;
  /** What `sessions.cleanup` runs: the host's, else one on `config.sessions.maintenance`. */
  readonly maintenance: SessionMaintenance;
  readonly auth: GatewayAuthSettings;
  readonly log: GatewayLog;
  readonly version: string;
  readonly now: () => number;
  readonly limits: GatewayHubOptions["limits"];
  readonly pairing: DevicePairing;
  /** Closes open device connections on device changes made through other gateways. */
  readonly deviceWatch: DeviceWatch;
  /** Finds a request's client address through the trusted reverse proxies. */
  readonly trustedProxies: TrustedProxies;
  readonly runs: RunTracker;
  /** The sessions connections follow with `sessions.messages.subscribe`. */
  readonly sessionMessages = new SessionMessageFeed(this);
  readonly approvals: ExecApprovals;
  readonly nodes = new NodeRegistry();
  readonly heartbeat: HeartbeatService;
  readonly connections = new Set<GatewayConnection>();
  readonly presence = new Map<string, PresenceEntry>();
  readonly stateVersion = { presence: 0, health: 0 };
  /** Ping/pong liveness of open connections; set by the server while it runs. */
  liveness: ConnectionLiveness | undefined;
  readonly startedAt: number;
  readonly #methods = new Map<string, HubMethod>();
  readonly #pluginMethods = new Map<string, GatewayMethodDefinition>();
  readonly #config: BeamClawConfig | undefined;
  readonly #unsubscribe: Array<() => void> = [];
  draining = false;
  /**
   * Aborted when a stop gives up waiting for work in progress (`drainTimeoutMs` ran out):
   * what runs outside a session's run (a model call with a request's own tools) ends then,
   * as the runs are aborted.
   */
  readonly halt = new AbortController();

  constructor(options: GatewayHubOptions) {
    this.runtime = options.runtime;
    this.configService = options.configService;
    this.cron = options.cron;
    this.models = options.models;
    this.#skills = options.skills;
    this.transcriber = options.transcriber;
    this.maintenance =
      options.maintenance ??
      new SessionMaintenance(options.runtime, {
        settings: () => this.config?.sessions.maintenance,
        now: options.now,
      });
    this.auth = options.auth;
    this.log = options.log;
    this.version = options.version;
    this.now = options.now;
    this.limits = options.limits;
    this.#config = options.config;
    this.startedAt = options.now();
    this.pairing = new DevicePairing(
      options.runtime.store,
      options.now,
      options.auth.pairingRequests,
    );
    this.deviceWatch = new DeviceWatch({
      pubsub: options.runtime.pubsub,
      pairing: this.pairing,
      connections: this.connections,
      log: options.log,
      everyMs: options.limits.deviceRecheckMs,
    });
    this.trustedProxies = options.trustedProxies ?? new TrustedProxies();
    this.runs = new RunTracker(
      {
        chat: (payload) => this.broadcast("chat", payload, { scope: Scopes.READ }),
        agent: (payload) => this.broadcast("agent", payload, { scope: Scopes.READ }),
        runStarted: (run) => this.sessionsChanged(run.sessionKey, "run-start"),
        runEvent: (_run, event) => this.approvals.onRunEvent(event),
        runEnded: (run) => this.sessionsChanged(run.sessionKey, "run-end"),
      },
      { now: options.now, coalesceMs: options.limits.streamCoalesceMs },
    );
    this.approvals = new ExecApprovals({
      gate: options.runtime.approvals,
      now: options.now,
      defaultTimeoutMs: options.config?.tools.approvals.timeoutMs ?? 120_000,
      sink: {
        requested: (entry) =>
          this.broadcast("exec.approval.requested", approvalPayload(entry), {
            scope: Scopes.APPROVALS,
          }),
        resolved: (entry) =>
          this.broadcast(
            "exec.approval.resolved",
            {
              id: entry.id,
              decision: entry.decision ?? "expired",
              ...(entry.resolvedBy === undefined ? {} : { resolvedBy: entry.resolvedBy }),
              ...(entry.sessionKey === undefined ? {} : { sessionKey: entry.sessionKey }),
              ts: entry.resolvedAtMs ?? this.now(),
            },
            { scope: Scopes.APPROVALS },
          ),
      },
    });
    this.heartbeat = new HeartbeatService({
      runtime: options.runtime,
      settings: options.heartbeat,
      defaultAgentId: this.defaultAgentId,
      onBeat: (event: HeartbeatEvent) => this.broadcast("heartbeat", event, { dropIfSlow: true }),
      now: options.now,
    });
    for (const [name, method] of Object.entries(options.methods)) this.#methods.set(name, method);
  }

  /** The running configuration (live through the config service when there is one). */
  get config(): BeamClawConfig | undefined {
    return this.configService?.current ?? this.#config;
  }

  get defaultAgentId(): string {
    return this.runtime.agents[0]!.id;
  }

  /** Starts following the runtime, the config service and the cron service. */
  async start(): Promise<void> {
    this.#unsubscribe.push(
      this.runtime.pubsub.subscribe("events:global", (message) => {
        this.runs.onGlobalEvent(message);
        if (isRunEvent(message)) this.sessionMessages.onRunEvent(message);
      }),
      // Notes added without a run (`chat.inject`, a channel's delivery mirror, the host's
      // `session.inject`): shown to every client as OpenClaw's `chat.inject` shows them.
      this.runtime.pubsub.subscribe(INJECTED_MESSAGES_TOPIC, (message) =>
        this.#injected(message as InjectedMessageEvent),
      ),
    );
    if (this.configService !== undefined) {
      this.#unsubscribe.push(
        this.configService.on("config.invalid", ({ error }) =>
          this.log.warn(
            `the configuration changed but is invalid; the running one stays: ${error.message}`,
          ),
        ),
      );
      this.#unsubscribe.push(
        this.configService.on("config.changed", ({ diff }) =>
          this.broadcast(
            "config.changed",
            { changed: diff.changed, applied: diff.applied, restartRequired: diff.restartRequired },
            { scope: Scopes.READ },
          ),
        ),
      );
    }
    if (this.cron?.subscribe !== undefined) {
      this.#unsubscribe.push(
        this.cron.subscribe((event) => this.broadcast("cron", event, { scope: Scopes.READ })),
      );
    }
    this.deviceWatch.start();
    await this.heartbeat.start();
  }

  /** A note injected into a session: a `chat` final, `sessions.changed`, `session.message`. */
  #injected(event: InjectedMessageEvent): void {
    if (
      event?.type !== "message-injected" ||
      typeof event.sessionKey !== "string" ||
      typeof event.runId !== "string" ||
      !Number.isSafeInteger(event.seq) ||
      typeof event.at !== "number" ||
      typeof event.message !== "object"
    ) {
      return;
    }
    const [message] = recordMessages({
      seq: event.seq,
      entry: {
        runId: event.runId,
        at: event.at,
        message: event.message as unknown as JsonObject,
      },
    });
    if (message === undefined) return;
    const messageId = (message.__openclaw as { id: string }).id;
    this.broadcast(
      "chat",
      {
        runId: `inject-${messageId}`,
        sessionKey: event.sessionKey,
        seq: 0,
        state: "final",
        message,
      },
      { scope: Scopes.READ },
    );
    this.sessionsChanged(event.sessionKey, "injected");
    this.sessionMessages.poke(event.sessionKey);
  }

  /** Stops following; ends waits, approvals and node invokes. */
  async stop(): Promise<void> {
    for (const off of this.#unsubscribe.splice(0)) off();
    await this.deviceWatch.stop();
    await this.heartbeat.stop();
    this.runs.close();
    this.approvals.close();
    this.nodes.close();
  }

  // ------------------------------------------------------------------ methods

  /** Names of every callable method (core and plugin). */
  methodNames(): string[] {
    return [...this.#methods.keys(), ...this.#pluginMethods.keys()];
  }

  /**
   * Adds a method (channel plugins). Core methods cannot be replaced.
   *
   * @throws GatewayError `INVALID_REQUEST` for a taken or malformed name.
   */
  registerMethod(name: string, definition: GatewayMethodDefinition): () => void {
    if (!/^[a-z][a-z0-9_.-]{0,127}$/i.test(name)) {
      throw new GatewayError(ErrorCodes.INVALID_REQUEST, `invalid method name "${name}"`);
    }
    if (this.#methods.has(name) || this.#pluginMethods.has(name)) {
      throw new GatewayError(ErrorCodes.INVALID_REQUEST, `method "${name}" is already registered`);
    }
    if (typeof definition?.handler !== "function" || typeof definition.scope !== "string") {
      throw new GatewayError(
        ErrorCodes.INVALID_REQUEST,
        `method "${name}" needs a scope and a handler`,
      );
    }
    this.#pluginMethods.set(name, definition);
    return () => {
      if (this.#pluginMethods.get(name) === definition) this.#pluginMethods.delete(name);
    };
  }

  /** Runs one request of an open connection and answers it. Never throws. */
  async dispatch(
    connection: GatewayConnection,
    frame: { id: string; method: string; params?: unknown; traceparent?: unknown },
  ): Promise<void> {
    const { id, method } = frame;
    let answered = false;
    let later: (() => void) | undefined;
    try {
      const core = this.#methods.get(method);
      const plugin = core === undefined ? this.#pluginMethods.get(method) : undefined;
      if (core === undefined && plugin === undefined) {
        throw new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown method: ${method}`, {
          details: { code: "UNKNOWN_METHOD", method },
        });
      }
      const params = paramsObject(method, frame.params);
      const scope = core !== undefined ? core.scope : plugin!.scope;
      const needed = typeof scope === "function" ? scope(params, this) : [scope];
      this.#authorize(connection, method, needed);
      if (core?.startsWork === true && this.draining) {
        throw new GatewayError(ErrorCodes.UNAVAILABLE, "the gateway is shutting down", {
          details: { code: "SHUTTING_DOWN" },
          retryable: true,
        });
      }
      const call: MethodCall = {
        method,
        id,
        params,
        caller: connection.caller(),
        signal: connection.signal,
        ...(parseTraceparent(frame.traceparent) === undefined
          ? {}
          : { traceparent: frame.traceparent as string }),
        // A second answer never overtakes the first (an `agent` whose run had already ended).
        respondAgain: (ok, payload, error) => {
          const send = () => connection.respond(id, ok, payload, error);
          if (answered) send();
          else later = send;
        },
      };
      const result =
        core !== undefined
          ? await core.handler(call, this)
          : await plugin!.handler({
              method,
              params,
              caller: call.caller,
              signal: call.signal,
            });
      connection.respond(id, true, result === undefined ? { ok: true } : result);
    } catch (error) {
      const shape = toErrorShape(error);
      if (shape.code === ErrorCodes.UNAVAILABLE && !GatewayError.isInstance(error)) {
        this.log.warn(`${method} failed: ${shape.message}`);
      }
      connection.respond(id, false, undefined, shape);
    }
    answered = true;
    later?.();
  }

  #authorize(connection: GatewayConnection, method: string, needed: string[]): void {
    for (const scope of needed) {
      if (scope === "node") {
        if (connection.role !== "node") {
          throw new GatewayError(ErrorCodes.FORBIDDEN, `${method} may only be called by a node`, {
            details: { code: "ROLE_NOT_ALLOWED", role: connection.role, requiredRole: "node" },
          });
        }
        continue;
      }
      if (connection.role !== "operator") {
        throw new GatewayError(ErrorCodes.FORBIDDEN, `role node may not call ${method}`, {
          details: { code: "ROLE_NOT_ALLOWED", role: connection.role, requiredRole: "operator" },
        });
      }
      if (!scopeAllows(connection.scopes, scope)) throw missingScope(scope, needed);
    }
  }

  // ------------------------------------------------------------------ events

  /** Sends an event to every open connection it is meant for. Returns how many got it. */
  broadcast(event: string, payload: unknown, options: BroadcastOptions = {}): number {
    let count = 0;
    // Serialized once, on the first connection that gets it, for every connection.
    let payloadJson: string | undefined;
    let serialized = false;
    for (const connection of this.connections) {
      if (!connection.isOpen) continue;
      if (options.scope !== undefined) {
        if (connection.role !== "operator" || !scopeAllows(connection.scopes, options.scope))
          continue;
      }
      if (options.filter !== undefined && !options.filter(connection)) continue;
      if (!serialized) {
        try {
          payloadJson = JSON.stringify(payload);
        } catch (error) {
          this.log.error(`unserializable ${event} event: ${(error as Error).message}`);
          return 0;
        }
        serialized = true;
      }
      const sent = connection.sendEventJson(event, payloadJson, {
        ...(options.dropIfSlow === undefined ? {} : { dropIfSlow: options.dropIfSlow }),
        ...(options.withStateVersion ? { stateVersion: { ...this.stateVersion } } : {}),
      });
      if (sent) count++;
    }
    return count;
  }

  /** `sessions.changed` to the connections that subscribed with `sessions.subscribe`. */
  sessionsChanged(sessionKey: string, reason: string, extra: Record<string, unknown> = {}): void {
    this.broadcast(
      "sessions.changed",
      { sessionKey, reason, ts: this.now(), ...extra },
      { scope: Scopes.READ, filter: (c) => c.sessionsSubscribed },
    );
  }

  pairingRequested(request: PairingRequest, created: boolean): void {
    if (!created) return;
    this.log.info(`pairing requested device=${request.deviceId} role=${request.role}`);
    this.broadcast(
      request.role === "node" ? "node.pair.requested" : "device.pair.requested",
      pairingRequestedPayload(request),
      { scope: Scopes.PAIRING },
    );
  }

  pairingResolved(request: PairingRequest, decision: "approved" | "rejected"): void {
    this.log.info(`pairing ${decision} device=${request.deviceId} role=${request.role}`);
    this.broadcast(
      request.role === "node" ? "node.pair.resolved" : "device.pair.resolved",
      { requestId: request.requestId, deviceId: request.deviceId, decision, ts: this.now() },
      { scope: Scopes.PAIRING },
    );
  }

  // ------------------------------------------------------------------ presence

  presenceList(): PresenceEntry[] {
    return [...this.presence.values()];
  }

  updatePresence(key: string, entry: PresenceEntry | undefined): void {
    if (entry === undefined) this.presence.delete(key);
    else this.presence.set(key, entry);
    this.stateVersion.presence++;
    this.broadcast(
      "presence",
      { presence: this.presenceList() },
      {
        dropIfSlow: true,
        withStateVersion: true,
      },
    );
  }

  // ------------------------------------------------------------------ health

  /** The health summary (`health` method, `health` event, `hello-ok.snapshot.health`). */
  async health(): Promise<Record<string, unknown>> {
    const started = this.now();
    const store = this.runtime.store;
    const count = await store.sessions.count();
    const page = await store.sessions.list({ limit: 5 });
    const now = this.now();
    const recent = page.items.map((s: SessionRecord) => ({
      key: s.key,
      updatedAt: s.updatedAt,
      age: Math.max(0, now - s.updatedAt),
    }));
    const config = this.config;
    const heartbeat = {
      enabled: this.heartbeat.enabled,
      every: `${Math.round(this.heartbeat.everyMs / 1000)}s`,
      everyMs: this.heartbeat.everyMs,
      prompt: this.heartbeat.prompt,
      target: this.heartbeat.sessionKey,
      ackMaxChars: 300,
    };
    const agents = [];
    for (const agent of this.runtime.agents) {
      const agentPage = await store.sessions.list({ agentId: agent.id, limit: 5 });
      agents.push({
        agentId: agent.id,
        isDefault: agent.id === this.defaultAgentId,
        heartbeat,
        sessions: {
          path: `${store.kind}:sessions/${agent.id}`,
          count: await store.sessions.count(agent.id),
          recent: agentPage.items.map((s) => ({
            key: s.key,
            updatedAt: s.updatedAt,
            age: Math.max(0, now - s.updatedAt),
          })),
        },
      });
    }
    return {
      ok: true,
      ts: now,
      durationMs: Math.max(0, this.now() - started),
      channels: Object.fromEntries(
        Object.keys(config?.channels ?? {}).map((id) => [id, { configured: true }]),
      ),
      channelOrder: Object.keys(config?.channels ?? {}),
      channelLabels: {},
      heartbeatSeconds: Math.round(this.heartbeat.everyMs / 1000),
      defaultAgentId: this.defaultAgentId,
      agents,
      sessions: { path: `${store.kind}:sessions`, count, recent },
    };
  }

  /** Refreshes health and tells every connection (each tick). */
  async broadcastHealth(): Promise<void> {
    const health = await this.health();
    this.stateVersion.health++;
    this.broadcast("health", health, { dropIfSlow: true, withStateVersion: true });
  }

  // ------------------------------------------------------------------ helpers

  /** Resolves a session key the way every method does: normalized, agent checked. */
  session(key: string, agentId?: string) {
    const parsed = parseSessionKey(key);
    if (agentId !== undefined && parsed.agentId !== undefined && parsed.agentId !== agentId) {
      throw new GatewayError(
        ErrorCodes.INVALID_REQUEST,
        `session ${parsed.key} belongs to agent ${parsed.agentId}, not ${agentId}`,
        { details: { code: "AGENT_MISMATCH" } },
      );
    }
    try {
      return this.runtime.session(parsed.key);
    } catch (error) {
      const agent = parsed.agentId ?? agentId ?? "";
      throw new GatewayError(ErrorCodes.INVALID_REQUEST, (error as Error).message, {
        details: { code: "UNKNOWN_AGENT_ID", agentId: agent },
      });
    }
  }
}

const PAIRING_EVENT_FIELDS = [
  "requestId",
  "deviceId",
  "publicKey",
  "displayName",
  "platform",
  "deviceFamily",
  "clientId",
  "clientMode",
  "role",
  "roles",
  "scopes",
  "remoteIp",
  "silent",
  "isRepair",
  "ts",
] as const;

/** The `device.pair.requested` / `node.pair.requested` payload (the protocol's fields only). */
export function pairingRequestedPayload(request: PairingRequest): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of PAIRING_EVENT_FIELDS) {
    if (request[field] !== undefined) out[field] = request[field];
  }
  return out;
}

/** The `exec.approval.requested` payload and `exec.approval.list` entry. */
export function approvalPayload(entry: ApprovalEntry): Record<string, unknown> {
  return {
    id: entry.id,
    kind: entry.kind,
    request: entry.request,
    ...(entry.sessionKey === undefined ? {} : { sessionKey: entry.sessionKey }),
    createdAtMs: entry.createdAtMs,
    expiresAtMs: entry.expiresAtMs,
  };
}
