/**
 * The gateway server: one `node:http` (or `https`) server, with the WebSocket protocol on
 * upgrade and the HTTP endpoints on the same port.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { isIP, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import {
  AbortedError,
  type AgentRuntime,
  type BeamClawConfig,
  type ConfigService,
  type CronSupervisor,
  InvalidArgumentError,
  type MemoryPressureMonitor,
  type ModelSource,
  type SessionMaintenance,
  settlesWithin,
  type Transcriber,
} from "@beamclaw/core";
import { WebSocketServer } from "ws";
import { TrustedProxies } from "./auth/client-address.js";
import type { GatewayAuthSettings } from "./auth/handshake.js";
import { pairingRequestLimits } from "./auth/pairing.js";
import { authRateLimiterOf } from "./auth/rate-limit.js";
import { attachChannelDelivery, type GatewayChannelDelivery } from "./channel-delivery.js";
import { type ConnectionCloseInfo, GatewayConnection } from "./connection.js";
import type { GatewayCronBackend } from "./cron.js";
import { cronBackend } from "./cron-adapter.js";
import { configuredPresence, type HeartbeatSettings } from "./heartbeat.js";
import { type GatewayHooksOptions, HookIngress } from "./hooks/ingress.js";
import { createGatewayHttpServer, listenOn, refuseUpgrade } from "./http/listen.js";
import { KEPT_RESPONSE_TTL_MS, MAX_RESPONSES_KEEP_MS } from "./http/responses.js";
import { createHttpHandler } from "./http/router.js";
import { defaultDashboardDir } from "./http/static.js";
import { GatewayHub } from "./hub.js";
import { ConnectionLiveness, DEFAULT_LIVENESS, type LivenessSettings } from "./liveness.js";
import { GatewayLog, type GatewayLogSink } from "./logs.js";
import type { ChannelMethodSource } from "./methods/channels.js";
import { coreMethods } from "./methods/index.js";
import type { GatewayMethodDefinition } from "./methods/types.js";
import type { ConnectedNode, NodeInvokeResult } from "./nodes.js";
import {
  CloseCodes,
  DEFAULT_LIMITS,
  MIN_REQUESTS_PER_SECOND,
  Scopes,
} from "./protocol/constants.js";
import type { GatewaySkillsReport } from "./skills.js";

/** The version this package reports in `hello-ok.server.version`. */
export const GATEWAY_VERSION = "0.0.0";

/** Options of {@link GatewayServer}. Explicit options win over `config.gateway`. */
export interface GatewayServerOptions {
  /** The agent runtime the gateway fronts (started and stopped by its owner). */
  runtime: AgentRuntime;
  /** The validated configuration (`parseConfig` / `loadConfigFile`); gives defaults below. */
  config?: BeamClawConfig;
  /** Live configuration: `config.get` reads it and `config.changed` is announced. */
  configService?: ConfigService;
  /**
   * What answers `cron.*`: core's `CronSupervisor` (translated to OpenClaw's job shape) or any
   * {@link GatewayCronBackend}. Without one those methods answer `UNAVAILABLE`.
   */
  cron?: CronSupervisor | GatewayCronBackend;
  /** Where model output comes from (the runtime's `ProviderChain`), for client-tool completions. */
  models?: ModelSource;
  /** Address to listen on. Default `config.gateway.host`, else `127.0.0.1`. */
  host?: string;
  /** Port (0 picks a free one). Default `config.gateway.port`, else 18789. */
  port?: number;
  /** How clients authenticate. Default `config.gateway.auth`. */
  auth?: Partial<GatewayAuthSettings>;
  /** PEM certificate and key: serve HTTPS and WSS. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Largest frame after the handshake. Default `config.gateway.maxPayloadBytes` (1 MiB). */
  maxPayloadBytes?: number;
  /** Outbound buffer per connection before a slow consumer is disconnected. Default 8 MiB. */
  maxBufferedBytes?: number;
  /** `tick` interval. Default `config.gateway.tickIntervalMs` (30 s). */
  tickIntervalMs?: number;
  /**
   * How long, in ms, a run's streamed text may be held back so that its deltas go out
   * together. Every operator connection receives every run's `chat` and `agent` events, so
   * each text delta costs two frames per client; with a window, the first delta opens it, the
   * deltas within it join it, and the joined text leaves as one `chat` delta (`deltaText`,
   * with `replace` when it follows a reset) and one `agent` `assistant` event when it closes,
   * or at once when the run has any other event (a tool call, a reset, its end), so events
   * never change order and `deltaText`s still add up to the reply. Tens of milliseconds are
   * not visible in a streamed reply and cut the frames of a fast model many times over.
   * Default `config.gateway.streamCoalesceMs`, else 0: every delta is sent as it comes.
   */
  streamCoalesceMs?: number;
  /**
   * Liveness of connected clients and nodes: each open connection is pinged every
   * `intervalMs` (30 s) and its pong or any frame is a beat; after `missedBeatsOffline` (3)
   * missed beats in a row it is offline and closed, which updates `presence` for everyone.
   * Counters are in `status`. `false` turns it off. Default `config.gateway.presence`, with
   * the deprecated `config.heartbeat.presenceIntervalMs` / `missedBeatsOffline` for what it
   * does not set.
   */
  presence?: Partial<LivenessSettings> | false;
  /**
   * How often, in ms, the open device connections are checked against the store, for several
   * gateways on one store (e.g. `@beamclaw/store-redis`): a connection whose device another
   * gateway unpaired, or whose device token it rotated or revoked, is closed as on a single
   * gateway (1008, `device unpaired` / `node unpaired` / `device token rotated` / `device token
   * revoked`). Such a change is also announced on the runtime's pub/sub, which closes them
   * at once when the gateways share one (a cluster's, e.g. `ClusterNode`'s runtime); this
   * check finds what no notice brought (one or two store reads per device connection). Each
   * change is recorded in the store before it is made, and a connection is judged by the
   * changes since its own handshake: one that came in with a token rotated or revoked since
   * is closed even if a newer token was issued after, one that came in with the current token
   * or the shared secret stays.
   * A positive integer, or `false` for none. Default 30 s when the runtime's store is shared
   * by several processes (`capabilities.multiProcess`), else none.
   */
  deviceRecheckMs?: number | false;
  /** Time a client has to complete `connect`. Default 15 s. */
  handshakeTimeoutMs?: number;
  /**
   * Requests per second per connection (token bucket refill rate). Default 50. A positive
   * number, not only an integer: `0.5` allows 30 requests a minute, `1 / 60` one a minute (at
   * least {@link MIN_REQUESTS_PER_SECOND}, one a day).
   */
  requestsPerSecond?: number;
  /** Requests a connection may make at once before the rate applies (a positive integer). Default 100. */
  requestBurst?: number;
  /**
   * OpenAI-compatible endpoints. Default `config.gateway.http`: `chatCompletions` and
   * `models` on, `responses` (`POST /v1/responses`, OpenResponses) off. `responsesKeepMs`:
   * how long a stateless response is kept for `previous_response_id` (an integer from 0, which
   * keeps none, to 365 days; default 30 days).
   */
  http?: {
    chatCompletions?: boolean;
    models?: boolean;
    responses?: boolean;
    responsesKeepMs?: number;
  };
  /**
   * Browser origins (e.g. `https://ops.example.com`) allowed to open WebSockets and call the
   * HTTP API besides the gateway's own. A browser request from any other origin is refused
   * (403), so a web page cannot drive a gateway it happens to reach. Default
   * `config.gateway.allowedOrigins` (live with a `configService`), else none.
   *
   * With `auth.mode: none`, requests (other than the health probes) must also name the
   * gateway by an IP address, `localhost`, or the host of one of these origins in their `Host`
   * header (else 403 `host_not_allowed`): a page whose own name was pointed at 127.0.0.1
   * (DNS rebinding) cannot reach it. Behind a proxy that forwards its public host name, list
   * that origin here.
   */
  allowedOrigins?: string[];
  /**
   * Reverse proxies (IPv4 / IPv6 addresses and CIDR ranges, e.g. `["10.0.0.0/8", "::1"]`)
   * whose `X-Forwarded-For` / `X-Real-IP` name the client. A request whose socket comes from
   * one of them counts as coming from the rightmost forwarded hop that is not a trusted proxy
   * (else `X-Real-IP`): for the failed-login limit (WebSocket `connect`, HTTP API, hooks),
   * pairing requests' `remoteIp` and their per-address cap, presence and logs. Forwarded
   * headers from any other peer are ignored. Default `config.gateway.trustedProxies`, else
   * none: the socket's peer address is the client, and behind a proxy all clients share the
   * proxy's address.
   *
   * @example
   * ```ts
   * createGateway({ runtime, trustedProxies: ["127.0.0.1", "10.0.0.0/8", "fd00::/8"] });
   * ```
   */
  trustedProxies?: string[];
  /**
   * The skills the agents were built with, for `skills.status` (what `beamclaw gateway`
   * passes): the report, or a function giving the one the agents run with now (a host that
   * rebuilds its agents on a config reload, as `beamclaw gateway` does). Default:
   * `config.skills.dirs` loaded on each call, with each agent's `skills`.
   */
  skills?: GatewaySkillsReport | (() => GatewaySkillsReport);
  /** Directory served at `/`; `false` for none. Default the package's `dashboard/`. */
  dashboardDir?: string | false;
  /** Heartbeat settings. Default `config.heartbeat` (off). */
  heartbeat?: Partial<HeartbeatSettings>;
  /**
   * Inbound webhooks (`POST /hooks/wake`, `/hooks/agent`, mapped `/hooks/<name>`): settings
   * that replace `config.hooks` (read live otherwise), and transforms registered by name for
   * mappings' `transform.module`. Off unless `enabled`. See docs/webhooks.md.
   */
  hooks?: GatewayHooksOptions;
  /**
   * Session maintenance (core's `SessionMaintenance`) that `sessions.cleanup` runs: the host's
   * (whose periodic passes it starts and stops). Default one on `config.sessions.maintenance`,
   * read live, that runs only when called.
   */
  maintenance?: SessionMaintenance;
  /** Version reported to clients. */
  version?: string;
  /** Receives every log line (the ring behind `logs.tail` keeps them too). */
  logSink?: GatewayLogSink;
  /**
   * Called when a connection has closed (code, reason, peak outbound buffer). An exception it
   * throws is logged (`error`), never thrown on.
   */
  onConnectionClose?: (info: ConnectionCloseInfo) => void;
  /**
   * The monitor the runtime sheds load with (`AgentRuntimeOptions.memoryPressure`; its owner
   * starts and stops it). Under pressure the gateway logs it, trims its cache of finished
   * runs and answers `/readyz` with 503 (`status: "memory-pressure"`); the runtime's refusals
   * reach clients as retryable errors (`UNAVAILABLE` with `details.code` `OVERLOADED` and
   * `details.reason` `memory`; HTTP 503 with `Retry-After`).
   */
  memoryPressure?: MemoryPressureMonitor;
  /**
   * Methods of channel plugins to mount beside the built-in ones: `ChannelManager
   * .gatewayMethods()` (`channels.status`, `channels.start` / `stop` / `logout`,
   * `channels.pairing.*` and each plugin's `<channel>.<name>`), or a function returning them,
   * read at every call. Each is answered
   * for callers with its scope, after its params schema; a method that throws answers with a
   * protocol error. A name the gateway has built in is refused (`AlreadyRegisteredError`).
   */
  channelMethods?: ChannelMethodSource;
  /**
   * Where `chat.send` with `deliver: true` puts replies: a `ChannelManager` (its durable
   * outboxes). Without it such a send answers `UNAVAILABLE` (`SUBSYSTEM_UNAVAILABLE`).
   */
  channels?: GatewayChannelDelivery;
  /**
   * Speech to text (e.g. `createOpenAITranscriber()` of `@beamclaw/providers`): audio
   * attachments of `chat.send` are transcribed and their words added to the message. Without
   * it they are refused with `UNSUPPORTED_ATTACHMENT`.
   */
  transcriber?: Transcriber;
  /**
   * `false`: open no port. A front server (e.g. {@link TenantGateway}) hands this gateway its
   * HTTP requests and WebSocket upgrades through `handleRequest()` and `handleUpgrade()`, and
   * `start()` resolves with `port` 0. Default `true`.
   */
  listen?: boolean;
  /**
   * The path this gateway is reached under when a front server routes to it (e.g.
   * `/tenants/acme`): the dashboard connects its WebSocket there. Default `/`.
   */
  basePath?: string;
  /** Clock, for tests. */
  now?: () => number;
}

/** Options of {@link GatewayServer.stop}. */
export interface GatewayStopOptions {
  /** Sent to clients in the `shutdown` event. Default `gateway stopping`. */
  reason?: string;
  /** How long runs in progress may finish before they are aborted. Default 0. */
  drainTimeoutMs?: number;
  /** Told to clients: when to reconnect. */
  restartExpectedMs?: number;
}

/** A connected client, as {@link GatewayServer.connections} lists it. */
export interface ConnectionSummary {
  connId: string;
  role: "operator" | "node";
  scopes: string[];
  clientId: string | undefined;
  deviceId: string | undefined;
  remoteAddress: string | undefined;
}

/**
 * BeamClaw's gateway: OpenClaw's gateway WebSocket protocol (v4, v3 accepted),
 * OpenAI-compatible HTTP, health probes and the dashboard, on one port. Nothing listens until
 * `start()`; `stop()` closes every socket and timer it opened.
 *
 * @example
 * ```ts
 * const runtime = new AgentRuntime({ store, models: chain, agents: [{ id: "main", model: "local/llama3" }] });
 * await runtime.start();
 * const gateway = createGateway({ runtime, port: 18789, auth: { mode: "token", token: process.env.TOKEN } });
 * const { port } = await gateway.start();
 * console.log(`ws://127.0.0.1:${port}`);
 * // ...
 * await gateway.stop({ drainTimeoutMs: 10_000 });
 * await runtime.stop();
 * ```
 */
export class GatewayServer {
  readonly log: GatewayLog;
  readonly #hub: GatewayHub;
  readonly #hooks: HookIngress;
  readonly #options: GatewayServerOptions;
  readonly #host: string;
  readonly #port: number;
  readonly #responsesKeepMs: number;
  #phase: "starting" | "running" | "draining" | "stopped" = "starting";
  #server: Server | null = null;
  #wss: WebSocketServer | null = null;
  #handleRequest: ((req: IncomingMessage, res: ServerResponse) => void) | null = null;
  #handleUpgrade: ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) | null = null;
  #tick: NodeJS.Timeout | null = null;
  readonly #liveness: ConnectionLiveness | undefined;
  #address: { host: string; port: number } | undefined;
  #started = false;
  /** The `start()` under way or done (settled, never rejecting), for a `stop()` to wait for. */
  #starting: Promise<void> = Promise.resolve();
  /** The `stop()` under way or done, shared by every caller of `stop()`. */
  #stopping: Promise<void> | undefined;
  readonly #sockets = new Set<Socket>();
  /**
   * The HTTP requests being answered (a streamed chat completion among them): a stop lets
   * them write their last events before it closes their sockets.
   */
  readonly #answering = new Set<Promise<void>>();
  #offMemory: Array<() => void> = [];

  constructor(options: GatewayServerOptions) {
    if (options?.runtime === undefined) {
      throw new InvalidArgumentError("createGateway needs a runtime (an AgentRuntime)");
    }
    this.#options = options;
    const config = options.config;
    const gw = config?.gateway;
    this.#host = options.host ?? gw?.host ?? "127.0.0.1";
    this.#port = options.port ?? gw?.port ?? 18_789;
    const pairingRequests = options.auth?.pairingRequests ?? gw?.auth.pairingRequests;
    const auth: GatewayAuthSettings = {
      mode: options.auth?.mode ?? gw?.auth.mode ?? "token",
      token: options.auth?.token ?? gw?.auth.token,
      password: options.auth?.password ?? gw?.auth.password,
      autoApproveLoopback:
        options.auth?.autoApproveLoopback ?? gw?.auth.autoApproveLoopback ?? true,
      rateLimit: options.auth?.rateLimit ?? gw?.auth.rateLimit,
      ...(pairingRequests === undefined ? {} : { pairingRequests }),
    };
    // Checks the limits now (InvalidArgumentError) rather than at the first connect.
    authRateLimiterOf(auth, options.now ?? Date.now);
    pairingRequestLimits(auth.pairingRequests);
    const trustedProxies = new TrustedProxies(options.trustedProxies ?? gw?.trustedProxies ?? []);
    if (auth.mode === "token" && !auth.token) {
      throw new InvalidArgumentError(
        "gateway auth mode is token but no token is set (gateway.auth.token, e.g. ${BEAMCLAW_GATEWAY_TOKEN})",
      );
    }
    if (auth.mode === "password" && !auth.password) {
      throw new InvalidArgumentError(
        "gateway auth mode is password but no password is set (gateway.auth.password)",
      );
    }
    const positive = (name: string, value: number | undefined, fallback: number) => {
      const v = value ?? fallback;
      if (!Number.isInteger(v) || v <= 0) {
        throw new InvalidArgumentError(`${name} must be a positive integer, got ${String(value)}`);
      }
      return v;
    };
    const nonNegative = (name: string, value: number | undefined, fallback: number) => {
      const v = value ?? fallback;
      if (!Number.isInteger(v) || v < 0 || v > 10_000) {
        throw new InvalidArgumentError(
          `${name} must be an integer from 0 to 10000, got ${String(value)}`,
        );
      }
      return v;
    };
    const keepMs =
      options.http?.responsesKeepMs ?? gw?.http.responsesKeepMs ?? KEPT_RESPONSE_TTL_MS;
    if (!Number.isInteger(keepMs) || keepMs < 0 || keepMs > MAX_RESPONSES_KEEP_MS) {
      throw new InvalidArgumentError(
        `http.responsesKeepMs must be an integer from 0 to ${MAX_RESPONSES_KEEP_MS} (365 days), got ${String(keepMs)}`,
      );
    }
    this.#responsesKeepMs = keepMs;
    const maxPayloadBytes = positive(
      "maxPayloadBytes",
      options.maxPayloadBytes,
      gw?.maxPayloadBytes ?? DEFAULT_LIMITS.maxPayloadBytes,
    );
    const limits = {
      maxPayloadBytes,
      maxBufferedBytes: positive(
        "maxBufferedBytes",
        options.maxBufferedBytes,
        Math.max(DEFAULT_LIMITS.maxBufferedBytes, 2 * maxPayloadBytes),
      ),
      tickIntervalMs: positive(
        "tickIntervalMs",
        options.tickIntervalMs,
        gw?.tickIntervalMs ?? DEFAULT_LIMITS.tickIntervalMs,
      ),
      handshakeTimeoutMs: positive(
        "handshakeTimeoutMs",
        options.handshakeTimeoutMs,
        DEFAULT_LIMITS.handshakeTimeoutMs,
      ),
      requestsPerSecond: requestRate(options.requestsPerSecond),
      requestBurst: positive("requestBurst", options.requestBurst, DEFAULT_LIMITS.requestBurst),
      streamCoalesceMs: nonNegative(
        "streamCoalesceMs",
        options.streamCoalesceMs,
        gw?.streamCoalesceMs ?? 0,
      ),
      deviceSignatureSkewMs: DEFAULT_LIMITS.deviceSignatureSkewMs,
      // Off on a store of one process: every change to it is made, and swept, here.
      deviceRecheckMs:
        options.deviceRecheckMs === false ||
        (options.deviceRecheckMs === undefined && !options.runtime.store.capabilities.multiProcess)
          ? 0
          : positive("deviceRecheckMs", options.deviceRecheckMs, DEVICE_RECHECK_MS),
    };
    const hb = config?.heartbeat;
    this.log = new GatewayLog(options.logSink === undefined ? {} : { sink: options.logSink });
    this.#hub = new GatewayHub({
      runtime: options.runtime,
      config,
      configService: options.configService,
      cron: cronOf(options),
      models: options.models,
      auth,
      heartbeat: {
        enabled: options.heartbeat?.enabled ?? hb?.enabled ?? false,
        everyMs: options.heartbeat?.everyMs ?? hb?.everyMs ?? 1_800_000,
        ...(options.heartbeat?.activeHours !== undefined || hb?.activeHours !== undefined
          ? { activeHours: options.heartbeat?.activeHours ?? hb?.activeHours }
          : {}),
        ...((options.heartbeat?.prompt ?? hb?.prompt) === undefined
          ? {}
          : { prompt: options.heartbeat?.prompt ?? hb?.prompt }),
        ...((options.heartbeat?.heartbeatFile ?? hb?.heartbeatFile) === undefined
          ? {}
          : { heartbeatFile: options.heartbeat?.heartbeatFile ?? hb?.heartbeatFile }),
        ...((options.heartbeat?.turnTimeoutMs ?? hb?.turnTimeoutMs) === undefined
          ? {}
          : { turnTimeoutMs: options.heartbeat?.turnTimeoutMs ?? hb?.turnTimeoutMs }),
      },
      log: this.log,
      version: options.version ?? GATEWAY_VERSION,
      now: options.now ?? Date.now,
      limits,
      methods: coreMethods(options.channelMethods),
      ...(options.skills === undefined ? {} : { skills: options.skills }),
      ...(options.transcriber === undefined ? {} : { transcriber: options.transcriber }),
      ...(options.maintenance === undefined ? {} : { maintenance: options.maintenance }),
      trustedProxies,
    });
    if (options.channels !== undefined) attachChannelDelivery(this.#hub, options.channels);
    this.#hooks = new HookIngress(this.#hub, options.hooks);
    const presence = options.presence ?? configuredPresence(config);
    this.#liveness =
      presence === false
        ? undefined
        : new ConnectionLiveness(
            {
              intervalMs: positive(
                "presence.intervalMs",
                presence?.intervalMs,
                DEFAULT_LIVENESS.intervalMs,
              ),
              missedBeatsOffline: positive(
                "presence.missedBeatsOffline",
                presence?.missedBeatsOffline,
                DEFAULT_LIVENESS.missedBeatsOffline,
              ),
            },
            this.log,
          );
  }

  /** Where the server listens (after `start()`). */
  get address(): { host: string; port: number } | undefined {
    return this.#address;
  }

  /** `running` between `start()` and `stop()`; `draining` while stopping. */
  get phase(): "starting" | "running" | "draining" | "stopped" {
    return this.#phase;
  }

  /**
   * Listens and starts the tick. Resolves with the bound address.
   *
   * A `stop()` called meanwhile waits for this start to finish, then stops the gateway.
   *
   * @throws the listen error (e.g. `EADDRINUSE`), after releasing everything;
   *   InvalidArgumentError when the gateway was already started (it cannot be started again).
   */
  async start(): Promise<{ host: string; port: number }> {
    if (this.#started) throw new InvalidArgumentError("the gateway was already started");
    this.#started = true;
    const starting = this.#start();
    this.#starting = starting.then(
      () => undefined,
      () => undefined,
    );
    return starting;
  }

  async #start(): Promise<{ host: string; port: number }> {
    const options = this.#options;
    const hub = this.#hub;
    const gw = options.config?.gateway;
    const dashboardDir =
      options.dashboardDir === false ? undefined : (options.dashboardDir ?? defaultDashboardDir());
    const handler = createHttpHandler({
      hub,
      phase: () => this.#phase,
      chatCompletions: options.http?.chatCompletions ?? gw?.http.chatCompletions ?? true,
      models: options.http?.models ?? gw?.http.models ?? true,
      responses: options.http?.responses ?? gw?.http.responses ?? false,
      responsesKeepMs: this.#responsesKeepMs,
      dashboardDir,
      ...(options.basePath === undefined ? {} : { basePath: options.basePath }),
      maxBodyBytes: hub.limits.maxPayloadBytes,
      originAllowed: (req) => originAllowed(req, this.#allowedOrigins()),
      hostAllowed: (req) => hub.auth.mode !== "none" || hostAllowed(req, this.#allowedOrigins()),
      underMemoryPressure: () => options.memoryPressure?.underPressure === true,
      hooks: this.#hooks,
    });
    const listener = (req: Parameters<typeof handler>[0], res: Parameters<typeof handler>[1]) => {
      const answering: Promise<void> = handler(req, res).finally(() =>
        this.#answering.delete(answering),
      );
      this.#answering.add(answering);
    };
    const wss = new WebSocketServer({ noServer: true, maxPayload: hub.limits.maxPayloadBytes });
    this.#wss = wss;
    this.#handleRequest = listener;
    this.#handleUpgrade = (req, socket, head) => {
      if (this.#phase !== "running") {
        refuseUpgrade(socket, "503 Service Unavailable");
        return;
      }
      if (!originAllowed(req, this.#allowedOrigins())) {
        hub.log.warn(`refused a WebSocket from origin ${String(req.headers.origin)}`);
        refuseUpgrade(socket, "403 Forbidden");
        return;
      }
      if (hub.auth.mode === "none" && !hostAllowed(req, this.#allowedOrigins())) {
        hub.log.warn(`refused a WebSocket for host ${String(req.headers.host)} (auth mode none)`);
        refuseUpgrade(socket, "403 Forbidden");
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        if (this.#phase !== "running") {
          ws.close(CloseCodes.GOING_AWAY, "gateway shutting down");
          return;
        }
        const connection = new GatewayConnection({
          socket: ws,
          stream: socket,
          request: req,
          hub,
          onClose: (info) => {
            hub.log.info(`closed conn=${info.connId} code=${info.code} ${info.reason}`);
            // Called from the socket's close event: a host callback that throws must not
            // end the process (an uncaught exception there would).
            try {
              options.onConnectionClose?.(info);
            } catch (error) {
              hub.log.error(
                `onConnectionClose failed for conn=${info.connId}: ${error instanceof Error ? error.message : String(error)}`,
              );
            }
          },
        });
        this.#liveness?.attach(connection, ws);
      });
    };
    // Whatever fails here (a certificate the HTTPS server refuses, the listen, the hub's
    // heartbeat settings) releases what was opened: no port stays bound, no socket open.
    try {
      if (options.listen === false) {
        this.#address = { host: this.#host, port: 0 };
      } else {
        const server = createGatewayHttpServer(
          options.tls,
          listener,
          this.#sockets,
          (req, socket, head) => this.#handleUpgrade?.(req, socket, head),
        );
        this.#server = server;
        const port = await listenOn(server, this.#port, this.#host);
        server.on("error", (error) => hub.log.error(`server error: ${error.message}`));
        this.#address = { host: this.#host, port };
      }
      await hub.start();
    } catch (error) {
      await this.#abandonStart();
      throw error;
    }
    const memory = options.memoryPressure;
    if (memory !== undefined) {
      this.#offMemory.push(
        memory.onPressure((event) => {
          if (!event.first) return;
          const trimmed = hub.runs.trimFinished(100);
          hub.log.warn(
            `memory pressure (${event.exceeded.join(", ")}: heap ${mib(event.sample.heapUsedBytes)}, rss ${mib(event.sample.rssBytes)}): refusing new runs, hibernating idle sessions, trimmed ${trimmed} finished runs`,
          );
        }),
        memory.onRecovered((event) =>
          hub.log.info(
            `memory pressure over after ${event.durationMs} ms (heap ${mib(event.sample.heapUsedBytes)}, rss ${mib(event.sample.rssBytes)}): accepting runs again`,
          ),
        ),
      );
    }
    if (this.#liveness !== undefined) {
      this.#liveness.start();
      hub.liveness = this.#liveness;
    }
    this.#tick = setInterval(() => {
      hub.broadcast("tick", { ts: hub.now() }, { dropIfSlow: true });
      hub
        .broadcastHealth()
        .catch((error: Error) => hub.log.warn(`health refresh failed: ${error.message}`));
    }, hub.limits.tickIntervalMs);
    this.#phase = "running";
    hub.log.info(
      options.listen === false
        ? `serving under ${options.basePath ?? "/"} (auth ${hub.auth.mode})`
        : `listening on ${options.tls === undefined ? "http" : "https"}://${this.#address.host}:${this.#address.port} (auth ${hub.auth.mode})`,
    );
    return this.#address;
  }

  /** Undoes a `start()` that failed part-way, leaving the gateway `stopped`. */
  async #abandonStart(): Promise<void> {
    await this.#hub.stop().catch(() => undefined);
    this.#wss?.close();
    const server = this.#server;
    if (server?.listening === true) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const socket of this.#sockets) socket.destroy();
      await closed;
    }
    this.#server = null;
    this.#wss = null;
    this.#handleRequest = this.#handleUpgrade = null;
    this.#phase = "stopped";
  }

  /**
   * Stops: no new connections or work, a `shutdown` event, runs in progress get up to
   * `drainTimeoutMs` to finish (then are aborted: an OpenAI-compatible answer they stream
   * ends with an error event and its end, given up to 5 s more to be written), every socket
   * is closed (1001), and every
   * timer is cleared. Does not stop the runtime. During `start()`, waits for it to finish
   * first; a second call (also while the first is under way) resolves when the first does.
   */
  stop(options: GatewayStopOptions = {}): Promise<void> {
    // Never started: nothing to release (and a later `start()` may still run it).
    if (!this.#started) {
      this.#phase = "stopped";
      return Promise.resolve();
    }
    this.#stopping ??= this.#stop(options);
    return this.#stopping;
  }

  async #stop(options: GatewayStopOptions): Promise<void> {
    await this.#starting;
    if (this.#phase === "stopped") return;
    const hub = this.#hub;
    if (this.#wss === null) {
      this.#phase = "stopped";
      return;
    }
    this.#phase = "draining";
    hub.draining = true;
    const server = this.#server;
    const closed =
      server === null
        ? Promise.resolve()
        : new Promise<void>((resolve) => server.close(() => resolve()));
    hub.broadcast("shutdown", {
      reason: options.reason ?? "gateway stopping",
      ...(options.restartExpectedMs === undefined
        ? {}
        : { restartExpectedMs: options.restartExpectedMs }),
    });
    const deadline = hub.now() + Math.max(0, options.drainTimeoutMs ?? 0);
    while (hub.runs.active().length > 0 && hub.now() < deadline) {
      await new Promise<void>((resolve) => setTimeout(resolve, 25));
    }
    hub.halt.abort(new AbortedError("the gateway is shutting down"));
    for (const run of hub.runs.active()) {
      await hub.runtime
        .session(run.sessionKey)
        .abort(run.coreRunId)
        .catch(() => false);
    }
    // The HTTP answers of the runs just aborted end once their runs do (a run saves what it
    // did first): a stream writes its error and its end (`[DONE]`, `response.failed`) rather
    // than being cut when the sockets close below.
    await settlesWithin(this.#answering, HTTP_SETTLE_MS);
    // What hook requests started (deliveries of the runs just ended, their clean-up).
    await this.#hooks.stop();
    if (this.#tick !== null) clearInterval(this.#tick);
    this.#tick = null;
    this.#liveness?.stop();
    for (const off of this.#offMemory.splice(0)) off();
    await hub.stop();
    for (const connection of [...hub.connections]) {
      connection.close(CloseCodes.GOING_AWAY, "gateway shutting down");
    }
    const wss = this.#wss!;
    for (const client of wss.clients) client.close(CloseCodes.GOING_AWAY, "gateway shutting down");
    // Give close handshakes a moment, then cut whatever is left.
    const until = Date.now() + 1000;
    while (wss.clients.size > 0 && Date.now() < until) {
      await new Promise<void>((resolve) => setTimeout(resolve, 10));
    }
    for (const client of wss.clients) client.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    server?.closeAllConnections?.();
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    this.#server = null;
    this.#wss = null;
    this.#handleRequest = this.#handleUpgrade = null;
    this.#phase = "stopped";
    hub.log.info("stopped");
  }

  /**
   * Answers one HTTP request (the OpenAI-compatible API, probes, dashboard) as if it had
   * reached this gateway's own port: for a front server that routes to gateways created with
   * `listen: false`. `req.url` must already be relative to this gateway. Before `start()` and
   * after `stop()` it answers 503.
   */
  handleRequest(req: IncomingMessage, res: ServerResponse): void {
    if (this.#handleRequest === null) {
      res.writeHead(503, { "content-type": "application/json; charset=utf-8" });
      res.end(JSON.stringify({ ok: false, status: this.#phase }));
      return;
    }
    this.#handleRequest(req, res);
  }

  /**
   * Takes one WebSocket upgrade (see {@link GatewayServer.handleRequest}). Before `start()`
   * and after `stop()` it answers 503 and closes the socket.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.#handleUpgrade === null) {
      refuseUpgrade(socket, "503 Service Unavailable");
      return;
    }
    this.#handleUpgrade(req, socket, head);
  }

  /**
   * Adds a method (a channel plugin's), answered for callers with `scope`. Returns a function
   * that removes it.
   *
   * @example
   * ```ts
   * gateway.registerMethod("discord.status", {
   *   scope: "operator.read",
   *   handler: async () => ({ connected: discord.connected }),
   * });
   * ```
   */
  registerMethod(name: string, definition: GatewayMethodDefinition): () => void {
    return this.#hub.registerMethod(name, definition);
  }

  /**
   * Sends an event to every connected operator with `scope` (default `operator.read`).
   * `dropIfSlow` events are skipped for a client that is not reading fast enough, instead of
   * disconnecting it. Returns how many clients got it.
   */
  broadcast(
    event: string,
    payload: unknown,
    options: { scope?: string; dropIfSlow?: boolean } = {},
  ): number {
    return this.#hub.broadcast(event, payload, {
      scope: options.scope ?? Scopes.READ,
      ...(options.dropIfSlow === undefined ? {} : { dropIfSlow: options.dropIfSlow }),
    });
  }

  /**
   * Runs a command on a connected node (what `node.invoke` does for operators): the node gets
   * a `node.invoke.request` event and answers with `node.invoke.result`.
   *
   * @example
   * ```ts
   * const result = await gateway.invokeNode({ nodeId, command: "system.run", params: { argv: ["uname", "-a"] } });
   * ```
   * `signal` gives the invoke up: the wait ends at once with the signal's reason, and the node
   * is sent `node.invoke.cancel` (`reason: "caller-gone"`) to stop the command, as when
   * `timeoutMs` passes (`reason: "timeout"`); its answer after that is ignored.
   *
   * @throws GatewayError `UNAVAILABLE` when the node is not connected or does not answer in
   * time; `INVALID_REQUEST` when it did not declare the command; the signal's reason when
   * `signal` aborts.
   */
  invokeNode(request: {
    nodeId: string;
    command: string;
    params?: unknown;
    timeoutMs?: number;
    idempotencyKey?: string;
    signal?: AbortSignal;
  }): Promise<NodeInvokeResult> {
    return this.#hub.nodes.invoke({
      nodeId: request.nodeId,
      command: request.command,
      ...(request.params === undefined ? {} : { params: request.params }),
      timeoutMs: request.timeoutMs ?? 30_000,
      idempotencyKey: request.idempotencyKey ?? randomUUID(),
      ...(request.signal === undefined ? {} : { signal: request.signal }),
    });
  }

  /** The connected nodes, with the commands each declared (what `createNodeExecHost` checks). */
  nodes(): ConnectedNode[] {
    return this.#hub.nodes.list();
  }

  /** The origins allowed now: the option, else the running configuration's. */
  #allowedOrigins(): readonly string[] {
    return this.#options.allowedOrigins ?? this.#hub.config?.gateway.allowedOrigins ?? [];
  }

  /** The connected clients. */
  connections(): ConnectionSummary[] {
    return [...this.#hub.connections]
      .filter((c) => c.isOpen)
      .map((c) => ({
        connId: c.connId,
        role: c.role,
        scopes: [...c.scopes],
        clientId: c.client?.id,
        deviceId: c.deviceId,
        remoteAddress: c.remoteAddress,
      }));
  }
}

/**
 * How long a stop waits, once the runs in progress are aborted, for the HTTP requests being
 * answered to end (a stream writing its error and its end) before it closes their sockets.
 */
const HTTP_SETTLE_MS = 5_000;
/** Default `deviceRecheckMs` on a store several processes share. */
const DEVICE_RECHECK_MS = 30_000;

/**
 * Whether a request may come from its `Origin`: requests without one (non-browser clients)
 * and same-origin ones may, and those from `allowed` origins.
 */
function originAllowed(req: IncomingMessage, allowed: readonly string[] | undefined): boolean {
  const origin = req.headers.origin;
  if (origin === undefined || origin === "") return true;
  let parsed: URL;
  try {
    parsed = new URL(origin);
  } catch {
    return false;
  }
  if (parsed.host === req.headers.host) return true;
  return (allowed ?? []).some((a) => a === origin || a === parsed.origin);
}

/**
 * Whether a request's `Host` may reach a gateway without authentication (`auth.mode: none`):
 * an IP address, `localhost` (or a name under `.localhost`), or the host of an allowed
 * origin. A web page whose own name its owner pointed at 127.0.0.1 (DNS rebinding) sends that
 * name, and its requests count as same-origin in the browser: they are refused here.
 */
function hostAllowed(req: IncomingMessage, allowed: readonly string[]): boolean {
  const host = req.headers.host;
  // No Host (HTTP/1.0): not a browser.
  if (host === undefined) return true;
  let name: string;
  try {
    name = new URL(`http://${host}`).hostname.toLowerCase();
  } catch {
    return false;
  }
  const bare = name.startsWith("[") ? name.slice(1, -1) : name;
  if (isIP(bare) !== 0 || name === "localhost" || name.endsWith(".localhost")) return true;
  return allowed.some((origin) => {
    try {
      return new URL(origin).hostname.toLowerCase() === name;
    } catch {
      return false;
    }
  });
}

function cronOf(options: GatewayServerOptions): GatewayCronBackend | undefined {
  const cron = options.cron;
  if (cron === undefined) return undefined;
  if (typeof (cron as CronSupervisor).forAgent === "function") {
    return cronBackend(cron as CronSupervisor, {
      kv: options.runtime.store.kv,
      agents: () => options.runtime.agents.map((a) => a.id),
    });
  }
  return cron as GatewayCronBackend;
}

/**
 * Creates a {@link GatewayServer} (not started).
 *
 * @example
 * ```ts
 * const gateway = createGateway({ runtime, config, configService });
 * await gateway.start();
 * ```
 */
export function createGateway(options: GatewayServerOptions): GatewayServer {
  return new GatewayServer(options);
}

/** `requestsPerSecond`, checked: a finite number from {@link MIN_REQUESTS_PER_SECOND} on. */
function requestRate(value: number | undefined): number {
  const v = value ?? DEFAULT_LIMITS.requestsPerSecond;
  if (typeof v !== "number" || !Number.isFinite(v) || v < MIN_REQUESTS_PER_SECOND) {
    throw new InvalidArgumentError(
      `requestsPerSecond must be a positive number of at least one a day (${MIN_REQUESTS_PER_SECOND}), e.g. 0.5 for 30 a minute; got ${String(value)}`,
    );
  }
  return v;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
}
