/**
 * Several tenants behind one port. Each tenant is a complete gateway (`GatewayServer` in
 * `listen: false` mode) over its own runtime, with its own auth settings, device pairings,
 * device tokens, approvals, runs and presence; the front server only routes by path:
 * `/tenants/<id>` (WebSocket) and `/tenants/<id>/...` (HTTP: the OpenAI-compatible API, the
 * probes, the dashboard) reach tenant `<id>` and nothing else. A credential is only ever checked
 * by the tenant it was issued by, so a client of one tenant can never list, read, send to or
 * approve in another tenant's sessions: there is no code path from one tenant's connection to
 * another tenant's state.
 */

import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { AlreadyRegisteredError, InvalidArgumentError, NoProcessError } from "@beamclaw/core";
import { createGatewayHttpServer, listenOn, refuseUpgrade } from "./http/listen.js";
import {
  createGateway,
  type GatewayServer,
  type GatewayServerOptions,
  type GatewayStopOptions,
} from "./server.js";

/** Tenant ids: the same rule as `TenantManager`'s. */
const TENANT_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** One tenant of a {@link TenantGateway}. */
export interface TenantGatewayTenant {
  /** `^[a-z0-9][a-z0-9_-]{0,63}$`; the path segment after the base path. */
  id: string;
  /**
   * The tenant's gateway: its runtime (e.g. `TenantManager.get(id).runtime`), its auth (its own
   * token or password; device pairings and device tokens live in its runtime's store), and any
   * other gateway option. Listening options (`host`, `port`, `tls`) belong to the front server.
   */
  gateway: Omit<GatewayServerOptions, "host" | "port" | "tls" | "listen">;
}

/** Options of {@link TenantGateway}. */
export interface TenantGatewayOptions {
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Port (0 picks a free one). Default 18789. */
  port?: number;
  /** PEM certificate and key: serve HTTPS and WSS. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** The path tenants are found under. Default `/tenants`. */
  basePath?: string;
  /** The tenants to start with; more can be added while running. */
  tenants?: TenantGatewayTenant[];
}

/**
 * See the module comment.
 *
 * @example
 * ```ts
 * const front = new TenantGateway({
 *   port: 18789,
 *   tenants: [
 *     { id: "acme", gateway: { runtime: acme.runtime, auth: { mode: "token", token: acmeToken } } },
 *     { id: "globex", gateway: { runtime: globex.runtime, auth: { mode: "token", token: globexToken } } },
 *   ],
 * });
 * await front.start(); // ws://127.0.0.1:18789/tenants/acme, ws://127.0.0.1:18789/tenants/globex
 * // ...
 * await front.stop();
 * ```
 */
export class TenantGateway {
  readonly #host: string;
  readonly #port: number;
  readonly #tls: TenantGatewayOptions["tls"];
  readonly #basePath: string;
  readonly #tenants = new Map<string, GatewayServer>();
  /** Each tenant gateway's one start, shared by `start()`, `addTenant()` and the stops. */
  readonly #starts = new WeakMap<GatewayServer, Promise<void>>();
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;
  #phase: "idle" | "starting" | "running" | "stopping" | "stopped" = "idle";
  /** The `start()` in progress (settled, never rejecting), for a `stop()` to wait for. */
  #starting: Promise<void> = Promise.resolve();
  /** The `stop()` under way or done, shared by every caller of `stop()`. */
  #stopping: Promise<void> | undefined;
  #address: { host: string; port: number } | undefined;

  constructor(options: TenantGatewayOptions = {}) {
    this.#host = options.host ?? "127.0.0.1";
    this.#port = options.port ?? 18_789;
    this.#tls = options.tls;
    const basePath = (options.basePath ?? "/tenants").replace(/\/+$/, "");
    if (!/^(\/[\w.-]+)+$/.test(basePath)) {
      throw new InvalidArgumentError(
        `basePath must look like /tenants (segments of letters, digits, _ . -), got ${JSON.stringify(options.basePath)}`,
      );
    }
    this.#basePath = basePath;
    for (const tenant of options.tenants ?? []) this.#create(tenant);
  }

  /** Where the server listens (after `start()`). */
  get address(): { host: string; port: number } | undefined {
    return this.#address;
  }

  /** The tenants' ids, in the order they were added. */
  tenantIds(): string[] {
    return [...this.#tenants.keys()];
  }

  /** A tenant's gateway (its `broadcast`, `registerMethod`, `connections`), or `undefined`. */
  tenant(id: string): GatewayServer | undefined {
    return this.#tenants.get(id);
  }

  /** The path of a tenant's WebSocket and HTTP API: `/tenants/<id>`. */
  pathOf(id: string): string {
    return `${this.#basePath}/${id}`;
  }

  /**
   * Starts every tenant's gateway, then listens. Resolves with the bound address. Tenants
   * may be added and removed meanwhile: an added one is started once (by `addTenant`, whose
   * failure is its own), a removed one is not started or is stopped once its start is over;
   * a `stop()` meanwhile waits for the start to finish, then stops everything.
   *
   * @throws the listen error (e.g. `EADDRINUSE`), or a tenant's start error, after stopping
   *   the tenants again.
   */
  async start(): Promise<{ host: string; port: number }> {
    if (this.#phase !== "idle")
      throw new InvalidArgumentError("the tenant gateway was already started");
    this.#phase = "starting";
    const starting = this.#start();
    this.#starting = starting.then(
      () => undefined,
      () => undefined,
    );
    return starting;
  }

  async #start(): Promise<{ host: string; port: number }> {
    try {
      for (const [id, gateway] of [...this.#tenants]) {
        // Removed before its turn: not started at all.
        if (this.#tenants.get(id) !== gateway) continue;
        try {
          await this.#startTenant(gateway);
        } catch (error) {
          // One removed while it was starting fails no one.
          if (this.#tenants.get(id) === gateway) throw error;
        }
      }
      const listener = (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res);
      const server = createGatewayHttpServer(
        this.#tls,
        listener,
        this.#sockets,
        (req, socket, head) => this.#onUpgrade(req, socket, head),
      );
      this.#server = server;
      this.#address = { host: this.#host, port: await listenOn(server, this.#port, this.#host) };
      // A `stop()` that came meanwhile owns the phase from here.
      if (this.#phase === "starting") this.#phase = "running";
      return this.#address;
    } catch (error) {
      this.#server = null;
      // Every tenant, including those added meanwhile (each once its own start is over).
      await Promise.all([...this.#tenants.values()].map((gateway) => this.#stopTenant(gateway)));
      this.#phase = "stopped";
      throw error;
    }
  }

  /** Starts a tenant's gateway once, however many callers ask. */
  #startTenant(gateway: GatewayServer): Promise<void> {
    let started = this.#starts.get(gateway);
    if (started === undefined) {
      started = gateway.start().then(() => undefined);
      this.#starts.set(gateway, started);
    }
    return started;
  }

  /**
   * Stops a tenant's gateway once its start, if one is under way, has settled (as
   * `GatewayServer.stop()` itself waits for it).
   */
  async #stopTenant(gateway: GatewayServer, options: GatewayStopOptions = {}): Promise<void> {
    await this.#starts.get(gateway)?.catch(() => undefined);
    await gateway.stop(options);
  }

  /**
   * Adds a tenant; started at once when the front server runs or is starting (once: the
   * front's `start()` leaves it to this call; during `start()` this resolves once the front
   * listens).
   *
   * @throws AlreadyRegisteredError for an id in use; InvalidArgumentError for a bad id or
   *   options; NoProcessError once the gateway is stopping, or when it stops (its start
   *   failed, or `stop()`) before the tenant is served; the tenant's start error. The tenant
   *   is not added when this throws.
   */
  async addTenant(tenant: TenantGatewayTenant): Promise<GatewayServer> {
    if (this.#phase === "stopping" || this.#phase === "stopped") {
      throw new NoProcessError("the tenant gateway is stopped");
    }
    const gateway = this.#create(tenant);
    const duringStart = this.#phase === "starting";
    if (this.#phase === "running" || duringStart) {
      try {
        await this.#startTenant(gateway);
        // Added while the front was starting: served only if that start succeeds (a failed
        // one stops every tenant, this one too).
        if (duringStart) await this.#starting;
        if (this.#ended()) {
          throw new NoProcessError("the tenant gateway stopped while the tenant was starting");
        }
      } catch (error) {
        if (this.#tenants.get(tenant.id) === gateway) this.#tenants.delete(tenant.id);
        throw error;
      }
    }
    return gateway;
  }

  /** Whether `stop()` (or a failed `start()`) has begun; read afresh after an `await`. */
  #ended(): boolean {
    return this.#phase === "stopping" || this.#phase === "stopped";
  }

  /**
   * Removes a tenant: its clients get the `shutdown` event and are disconnected, its runs get
   * `drainTimeoutMs`. Does not stop its runtime. Returns whether it existed. During `start()`,
   * a tenant not yet started is not started; one starting is stopped once it has started.
   */
  async removeTenant(id: string, options: GatewayStopOptions = {}): Promise<boolean> {
    const gateway = this.#tenants.get(id);
    if (gateway === undefined) return false;
    this.#tenants.delete(id);
    await this.#stopTenant(gateway, options);
    return true;
  }

  /**
   * Stops listening and stops every tenant's gateway (not their runtimes). During `start()`,
   * waits for it to finish first. A second call (also while the first is under way) resolves
   * when the first does.
   */
  stop(options: GatewayStopOptions = {}): Promise<void> {
    if (this.#phase === "stopped") return this.#stopping ?? Promise.resolve();
    this.#stopping ??= this.#stop(options);
    return this.#stopping;
  }

  async #stop(options: GatewayStopOptions): Promise<void> {
    const wasStarted = this.#phase !== "idle";
    this.#phase = "stopping";
    await this.#starting;
    const server = this.#server;
    const closed =
      server === null
        ? Promise.resolve()
        : new Promise<void>((resolve) => server.close(() => resolve()));
    if (wasStarted) {
      await Promise.all(
        [...this.#tenants.values()].map((gateway) => this.#stopTenant(gateway, options)),
      );
    }
    server?.closeAllConnections?.();
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    this.#server = null;
    this.#phase = "stopped";
  }

  #create(tenant: TenantGatewayTenant): GatewayServer {
    if (typeof tenant?.id !== "string" || !TENANT_ID.test(tenant.id)) {
      throw new InvalidArgumentError(
        `a tenant id must match ${TENANT_ID.source}, got ${JSON.stringify(tenant?.id)}`,
      );
    }
    if (this.#tenants.has(tenant.id)) {
      throw new AlreadyRegisteredError(`tenant ${tenant.id} is already on this gateway`, tenant.id);
    }
    const gateway = createGateway({
      ...tenant.gateway,
      listen: false,
      basePath: this.pathOf(tenant.id),
    });
    this.#tenants.set(tenant.id, gateway);
    return gateway;
  }

  /** The tenant a path belongs to, and the rest of the path (at least `/`). */
  #route(rawUrl: string | undefined): { gateway: GatewayServer; rest: string } | undefined {
    const url = rawUrl ?? "/";
    const prefix = `${this.#basePath}/`;
    if (!url.startsWith(prefix)) return undefined;
    const after = url.slice(prefix.length);
    const end = after.search(/[/?#]/);
    const id = end === -1 ? after : after.slice(0, end);
    const gateway = this.#tenants.get(id);
    if (gateway === undefined) return undefined;
    const rest = end === -1 ? "/" : after.slice(end);
    return { gateway, rest: rest.startsWith("/") ? rest : `/${rest}` };
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz" || path === "/health") {
      const ok = this.#phase === "running";
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json; charset=utf-8" });
      res.end(JSON.stringify({ ok, status: ok ? "live" : this.#phase }));
      return;
    }
    const route = this.#route(req.url);
    if (route === undefined) {
      res.writeHead(404, { "content-type": "application/json; charset=utf-8" });
      res.end(JSON.stringify({ error: { message: "no such tenant or path", type: "not_found" } }));
      return;
    }
    req.url = route.rest;
    route.gateway.handleRequest(req, res);
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const route = this.#phase === "running" ? this.#route(req.url) : undefined;
    if (route === undefined) {
      refuseUpgrade(
        socket,
        this.#phase === "running" ? "404 Not Found" : "503 Service Unavailable",
      );
      return;
    }
    req.url = route.rest;
    route.gateway.handleUpgrade(req, socket, head);
  }
}

/** Creates a {@link TenantGateway} (call `start()` to listen). */
export function createTenantGateway(options: TenantGatewayOptions = {}): TenantGateway {
  return new TenantGateway(options);
}
