/**
 * Test harness: a real AgentRuntime over a MemoryStore with a scripted provider, a real gateway
 * on 127.0.0.1 port 0, and a `ws` client that checks every frame it receives against
 * OpenClaw's `protocol.schema.json` (and every request it sends against the method's params
 * schema). Not a test file itself.
 */
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import {
  type AgentDefinition,
  AgentRuntime,
  type AgentRuntimeOptions,
  agentRuntimeJobRunner,
  CronSupervisor,
  createProviderChain,
  MemoryStore,
  type MemoryStoreOptions,
  type Transcriber,
} from "@beamclaw/core";
import {
  createScriptedProvider,
  type ScriptEntry,
  type ScriptedProvider,
} from "@beamclaw/core/testing";
import { Ajv, type ValidateFunction } from "ajv";
import { afterEach, expect } from "vitest";
import WebSocket from "ws";
import {
  createDeviceIdentity,
  type DeviceIdentity,
  signDeviceChallenge,
} from "../src/auth/device-identity.js";
import { createGateway, type GatewayServer, type GatewayServerOptions } from "../src/index.js";

// ------------------------------------------------------------------ schema

// `protocol.schema.json` is shipped in the package but not exported: read it as a file.
const schemaPath = fileURLToPath(
  new URL("../node_modules/@openclaw/gateway-protocol/protocol.schema.json", import.meta.url),
);
const schema = JSON.parse(readFileSync(schemaPath, "utf8")) as {
  $id: string;
  methods: Record<string, { scope?: string }>;
};
const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
ajv.addSchema(schema);
const compiled = new Map<string, ValidateFunction>();

/** The validator of a definition (or a JSON pointer under `#/`). */
export function validatorOf(pointer: string): ValidateFunction {
  let v = compiled.get(pointer);
  if (v === undefined) {
    const ref = pointer.startsWith("/")
      ? `${schema.$id}#${pointer}`
      : `${schema.$id}#/definitions/${pointer}`;
    v = ajv.getSchema(ref);
    if (v === undefined) throw new Error(`no schema ${pointer}`);
    compiled.set(pointer, v);
  }
  return v;
}

/** The scope the protocol's method table gives a method. */
export function protocolScope(method: string): string | undefined {
  return schema.methods[method]?.scope;
}

const HEALTH = "/definitions/HelloOk/properties/snapshot/properties/health";

/** Event payload schemas. */
const EVENT_SCHEMAS: Record<string, (payload: unknown) => Array<[string, unknown]>> = {
  tick: (p) => [["TickEvent", p]],
  shutdown: (p) => [["ShutdownEvent", p]],
  chat: (p) => [["ChatEvent", p]],
  agent: (p) => [["AgentEvent", p]],
  health: (p) => [[HEALTH, p]],
  presence: (p) =>
    ((p as { presence?: unknown[] }).presence ?? [null]).map((e) => ["PresenceEntry", e]),
  "device.pair.requested": (p) => [["DevicePairRequestedEvent", p]],
  "device.pair.resolved": (p) => [["DevicePairResolvedEvent", p]],
  "node.pair.requested": (p) => [["DevicePairRequestedEvent", p]],
  "node.pair.resolved": (p) => [["DevicePairResolvedEvent", p]],
  "node.invoke.request": (p) => [["NodeInvokeRequestEvent", p]],
};

/** Result payload schemas of methods that have one. */
const RESULT_SCHEMAS: Record<string, (payload: unknown) => Array<[string, unknown]>> = {
  connect: (p) => [["HelloOk", p]],
  "sessions.rewind": (p) => [["SessionsRewindResult", p]],
  "sessions.fork": (p) => [["SessionsForkResult", p]],
  "sessions.resolve": (p) => [["SessionsResolveResult", p]],
  "chat.message.get": (p) => [["ChatMessageGetResult", p]],
  "sessions.compaction.list": (p) => [["SessionsCompactionListResult", p]],
  "sessions.search": (p) => [["SessionsSearchResult", p]],
  health: (p) => [[HEALTH, p]],
  "logs.tail": (p) => [["LogsTailResult", p]],
  "models.list": (p) => [["ModelsListResult", p]],
  "tools.catalog": (p) => [["ToolsCatalogResult", p]],
  "tools.effective": (p) => [["ToolsEffectiveResult", p]],
  "commands.list": (p) => [["CommandsListResult", p]],
  "agents.list": (p) => [["AgentsListResult", p]],
  "agent.identity.get": (p) => [["AgentIdentityResult", p]],
  "sessions.create": (p) => [["SessionsCreateResult", p]],
  "sessions.delete": (p) => [["SessionsDeleteResult", p]],
  "device.token.rotate": (p) => [["DeviceTokenRotateResult", p]],
  "system-presence": (p) => (p as unknown[]).map((e) => ["PresenceEntry", e]),
  "sessions.list": (p) => (p as { sessions: unknown[] }).sessions.map((r) => ["SessionRow", r]),
  "cron.add": (p) => [["CronAddResult", p]],
  "cron.update": (p) => [["CronJob", p]],
  "cron.list": (p) => (p as { jobs: unknown[] }).jobs.map((j) => ["CronJob", j]),
  "cron.runs": (p) => (p as { entries: unknown[] }).entries.map((e) => ["CronRunLogEntry", e]),
};

/** Params schemas of the methods tests call. */
const PARAM_SCHEMAS: Record<string, string> = {
  connect: "ConnectParams",
  "chat.send": "ChatSendParams",
  "chat.history": "ChatHistoryParams",
  "chat.abort": "ChatAbortParams",
  "chat.message.get": "ChatMessageGetParams",
  "chat.inject": "ChatInjectParams",
  "sessions.compaction.list": "SessionsCompactionListParams",
  "sessions.messages.subscribe": "SessionsMessagesSubscribeParams",
  "sessions.messages.unsubscribe": "SessionsMessagesUnsubscribeParams",
  "sessions.list": "SessionsListParams",
  "sessions.create": "SessionsCreateParams",
  "sessions.send": "SessionsSendParams",
  "sessions.steer": "SessionsSendParams",
  "sessions.abort": "SessionsAbortParams",
  "sessions.patch": "SessionsPatchParams",
  "sessions.reset": "SessionsResetParams",
  "sessions.compact": "SessionsCompactParams",
  "sessions.rewind": "SessionsRewindParams",
  "sessions.fork": "SessionsForkParams",
  "sessions.resolve": "SessionsResolveParams",
  "sessions.search": "SessionsSearchParams",
  "sessions.preview": "SessionsPreviewParams",
  "sessions.usage": "SessionsUsageParams",
  "sessions.delete": "SessionsDeleteParams",
  "sessions.cleanup": "SessionsCleanupParams",
  agent: "AgentParams",
  "agent.wait": "AgentWaitParams",
  wake: "WakeParams",
  "logs.tail": "LogsTailParams",
  "models.list": "ModelsListParams",
  "tools.catalog": "ToolsCatalogParams",
  "tools.effective": "ToolsEffectiveParams",
  "commands.list": "CommandsListParams",
  "agents.list": "AgentsListParams",
  "agent.identity.get": "AgentIdentityParams",
  "config.get": "ConfigGetParams",
  "skills.status": "SkillsStatusParams",
  "cron.list": "CronListParams",
  "cron.status": "CronStatusParams",
  "cron.add": "CronAddParams",
  "cron.update": "CronUpdateParams",
  "cron.remove": "CronRemoveParams",
  "cron.run": "CronRunParams",
  "cron.runs": "CronRunsParams",
  "exec.approval.request": "ExecApprovalRequestParams",
  "exec.approval.resolve": "ExecApprovalResolveParams",
  "exec.approval.waitDecision": "ExecApprovalGetParams",
  "node.list": "NodeListParams",
  "node.describe": "NodeDescribeParams",
  "node.invoke": "NodeInvokeParams",
  "node.invoke.result": "NodeInvokeResultParams",
  "node.pair.list": "NodePairListParams",
  "node.pair.approve": "NodePairApproveParams",
  "node.pair.reject": "NodePairRejectParams",
  "node.pair.remove": "NodePairRemoveParams",
  "device.pair.list": "DevicePairListParams",
  "device.pair.approve": "DevicePairApproveParams",
  "device.pair.reject": "DevicePairRejectParams",
  "device.pair.remove": "DevicePairRemoveParams",
  "device.pair.rename": "DevicePairRenameParams",
  "device.token.rotate": "DeviceTokenRotateParams",
  "device.token.revoke": "DeviceTokenRevokeParams",
  "channels.start": "ChannelsStartParams",
  "channels.stop": "ChannelsStopParams",
  "channels.logout": "ChannelsLogoutParams",
};

const violations: string[] = [];

function check(what: string, pointer: string, value: unknown): void {
  const validate = validatorOf(pointer);
  if (!validate(value)) {
    violations.push(
      `${what} does not match ${pointer}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 600)}`,
    );
  }
}

/** Checks one frame the client received (and its payload, where the schema has one). */
export function checkFrame(frame: unknown, methodOf: (id: string) => string | undefined): void {
  const f = frame as {
    type?: string;
    id?: string;
    ok?: boolean;
    event?: string;
    payload?: unknown;
  };
  check("frame", "/", frame);
  if (f.type === "event" && f.event === "connect.challenge") {
    const p = f.payload as { nonce?: unknown; ts?: unknown };
    if (typeof p?.nonce !== "string" || typeof p?.ts !== "number") {
      violations.push(`connect.challenge payload is not { nonce, ts }: ${JSON.stringify(p)}`);
    }
  } else if (f.type === "event" && f.event !== undefined && EVENT_SCHEMAS[f.event] !== undefined) {
    for (const [pointer, value] of EVENT_SCHEMAS[f.event]!(f.payload))
      check(`event ${f.event}`, pointer, value);
  } else if (f.type === "res" && f.ok === true && f.id !== undefined) {
    const method = methodOf(f.id);
    const pick = method === undefined ? undefined : RESULT_SCHEMAS[method];
    if (pick !== undefined)
      for (const [pointer, value] of pick(f.payload)) check(`result of ${method}`, pointer, value);
  }
}

/** Fails the test if any frame seen since the last call broke the protocol schema. */
export function useSchemaCheck(): void {
  afterEach(() => {
    const found = violations.splice(0);
    expect(found, found.join("\n\n")).toEqual([]);
  });
}

// ------------------------------------------------------------------ helpers

/**
 * A payload as it came off the wire. Tests read fields of it freely; every frame it came in
 * was checked against the protocol schema first.
 */
// biome-ignore lint/suspicious/noExplicitAny: wire payloads, schema-checked on receipt
export type Wire = any;

/** Polls until `probe` returns something truthy. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | null | Promise<T | undefined | false | null>,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false && value !== null) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

/** A promise with its settle functions. */
export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// ------------------------------------------------------------------ the stack

export const TOKEN = "test-gateway-token";
/** The `authorization` header of an HTTP request made with {@link TOKEN}. */
export const AUTH = { authorization: `Bearer ${TOKEN}` };
export const MAIN: AgentDefinition = { id: "main", model: "scripted/m1" };

/** A started runtime + gateway; `stop()` stops both and closes the store. */
export interface Stack {
  runtime: AgentRuntime;
  gateway: GatewayServer;
  provider: ScriptedProvider;
  store: MemoryStore;
  /** Core's CronSupervisor, when the stack was started with `cron: true`. */
  cron: CronSupervisor | undefined;
  url: string;
  port: number;
  stop(): Promise<void>;
}

const stacks: Stack[] = [];

/**
 * Starts a runtime on a fresh `MemoryStore` whose model is never called (for gateways that
 * are built, started or refused but never run a turn); its stop goes on `cleanups`.
 */
export async function startIdleRuntime(
  cleanups: Array<() => Promise<void>>,
): Promise<AgentRuntime> {
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: {
      // biome-ignore lint/correctness/useYield: never called
      async *stream() {
        throw new Error("not used");
      },
    },
    agents: [MAIN],
  });
  await runtime.start();
  cleanups.push(async () => {
    await runtime.stop();
    await store.close();
  });
  return runtime;
}

/** Stops every stack started by the test (call from `afterEach`). */
export async function stopStacks(): Promise<void> {
  for (const stack of stacks.splice(0).reverse()) await stack.stop();
}

/** Starts a runtime and a gateway (token auth with {@link TOKEN} unless told otherwise). */
export async function startStack(
  options: {
    responses?: ScriptEntry[];
    agents?: AgentDefinition[];
    runtime?: Partial<AgentRuntimeOptions>;
    gateway?: Partial<GatewayServerOptions>;
    /** Give the gateway core's CronSupervisor (running jobs through the runtime). */
    cron?: boolean;
    /** Options of the stack's `MemoryStore` (its clock, for TTLs). */
    store?: MemoryStoreOptions;
  } = {},
): Promise<Stack> {
  const store = new MemoryStore(options.store);
  await store.open();
  const provider = createScriptedProvider({ id: "scripted", responses: options.responses ?? [] });
  const models = createProviderChain({
    providers: [provider],
    retry: { maxAttempts: 1 },
    circuitBreaker: false,
  });
  const runtime = new AgentRuntime({
    store,
    models,
    agents: options.agents ?? [MAIN],
    ...options.runtime,
  });
  await runtime.start();
  const cron =
    options.cron === true
      ? await new CronSupervisor({
          store,
          runJob: agentRuntimeJobRunner(runtime),
          agents: runtime.agents.map((a) => a.id),
        }).start()
      : undefined;
  const gateway = createGateway({
    runtime,
    models,
    ...(cron === undefined ? {} : { cron }),
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    tickIntervalMs: 60_000,
    ...options.gateway,
  });
  const { port } = await gateway.start();
  const stack: Stack = {
    runtime,
    gateway,
    provider,
    store,
    cron,
    url: `ws://127.0.0.1:${port}`,
    port,
    async stop() {
      await gateway.stop();
      await cron?.stop();
      await runtime.stop();
      await store.close();
    },
  };
  stacks.push(stack);
  return stack;
}

// ------------------------------------------------------------------ the client

/** A failed request, with the protocol's error shape. */
export class RpcError extends Error {
  readonly code: string;
  readonly details: unknown;
  readonly retryable: boolean | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(error: {
    code: string;
    message: string;
    details?: unknown;
    retryable?: boolean;
    retryAfterMs?: number;
  }) {
    super(error.message);
    this.code = error.code;
    this.details = error.details;
    this.retryable = error.retryable;
    this.retryAfterMs = error.retryAfterMs;
  }
}

/** Options of {@link TestClient.connect}. */
export interface ConnectOptions {
  token?: string;
  password?: string;
  deviceToken?: string;
  role?: string;
  scopes?: string[];
  minProtocol?: number;
  maxProtocol?: number;
  clientId?: string;
  mode?: string;
  device?: DeviceIdentity;
  /** Sign with this nonce instead of the challenge's (to test replays). */
  signNonce?: string;
  caps?: string[];
  commands?: string[];
  /** Options of the `ws` client (e.g. `ca` for a `wss://` gateway with a test certificate). */
  socket?: WebSocket.ClientOptions;
}

export type Frame = Record<string, unknown> & { type: string };
export type EventFrame = { type: "event"; event: string; payload?: Wire; seq?: number };

let nextId = 0;
const sockets = new Set<WebSocket>();

/** Closes every client socket still open (call from `afterEach`). */
export async function closeClients(): Promise<void> {
  await Promise.all(
    [...sockets].map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once("close", () => resolve());
          ws.terminate();
        }),
    ),
  );
  sockets.clear();
}

/** A protocol client over a real socket. */
export class TestClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly events: EventFrame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  challenge: { nonce: string; ts: number } | undefined;
  hello: Wire;
  readonly #pending = new Map<
    string,
    { method: string; resolve(v: Wire): void; reject(e: unknown): void }
  >();
  readonly #methods = new Map<string, string>();
  readonly #listeners = new Set<() => void>();
  readonly #challenge = deferred<{ nonce: string; ts: number }>();

  private constructor(url: string, socketOptions?: WebSocket.ClientOptions) {
    this.ws = new WebSocket(url, socketOptions);
    sockets.add(this.ws);
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code, reason) => {
        sockets.delete(this.ws);
        for (const p of this.#pending.values())
          p.reject(new RpcError({ code: "CLOSED", message: `closed ${code}` }));
        this.#pending.clear();
        resolve({ code, reason: reason.toString("utf8") });
        this.#wake();
      });
    });
    this.ws.on("error", () => undefined);
    this.ws.on("message", (data) => this.#onFrame(data.toString("utf8")));
  }

  /** Opens a socket and waits for the challenge (no connect yet). */
  static async open(url: string, socketOptions?: WebSocket.ClientOptions): Promise<TestClient> {
    const client = new TestClient(url, socketOptions);
    await new Promise<void>((resolve, reject) => {
      client.ws.once("open", () => resolve());
      client.ws.once("error", reject);
    });
    await client.#challenge.promise;
    return client;
  }

  /** Opens a socket and completes `connect`; rejects with an RpcError when refused. */
  static async connect(url: string, options: ConnectOptions = {}): Promise<TestClient> {
    const client = await TestClient.open(url, options.socket);
    client.hello = await client.sendConnect(options);
    return client;
  }

  /** The `connect` params these options make (signed over the challenge when a device is given). */
  connectParams(options: ConnectOptions = {}): Record<string, unknown> {
    const role = options.role ?? "operator";
    const scopes = options.scopes ?? [
      "operator.read",
      "operator.write",
      "operator.admin",
      "operator.approvals",
      "operator.pairing",
    ];
    const clientId = options.clientId ?? "test";
    const mode = options.mode ?? "test";
    const auth: Record<string, string> = {};
    if (options.token !== undefined) auth.token = options.token;
    if (options.password !== undefined) auth.password = options.password;
    if (options.deviceToken !== undefined) auth.deviceToken = options.deviceToken;
    const params: Record<string, unknown> = {
      minProtocol: options.minProtocol ?? 4,
      maxProtocol: options.maxProtocol ?? 4,
      client: { id: clientId, version: "1.0.0", platform: "linux", mode },
      role,
      scopes,
      caps: options.caps ?? [],
      ...(options.commands === undefined ? {} : { commands: options.commands }),
      auth,
    };
    if (options.device !== undefined) {
      params.device = signDeviceChallenge(options.device, {
        nonce: options.signNonce ?? this.challenge!.nonce,
        clientId,
        clientMode: mode,
        role,
        scopes,
        token: options.token ?? options.deviceToken ?? "",
        platform: "linux",
      });
    }
    return params;
  }

  sendConnect(options: ConnectOptions = {}): Promise<Wire> {
    return this.request("connect", this.connectParams(options));
  }

  /** Sends a request whose params must match the method's params schema; resolves with the payload. */
  request(method: string, params: unknown = {}): Promise<Wire> {
    const def = PARAM_SCHEMAS[method];
    if (def !== undefined) check(`params of ${method}`, def, params);
    return this.requestUnchecked(method, params);
  }

  /** Sends a request without checking its params (for bad-input tests). */
  requestUnchecked(method: string, params: unknown = {}): Promise<Wire> {
    const id = `r${++nextId}`;
    this.#methods.set(id, method);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { method, resolve, reject });
      this.ws.send(JSON.stringify({ type: "req", id, method, params }));
    });
  }

  /** Sends raw text. */
  sendRaw(text: string | Buffer): void {
    this.ws.send(text);
  }

  /** Waits for an event (already received or coming) matching `predicate`. */
  async waitEvent(
    event: string,
    predicate: (payload: Wire) => boolean = () => true,
    timeoutMs = 5_000,
  ): Promise<EventFrame> {
    return waitFor(
      `event ${event}`,
      () => this.events.find((e) => e.event === event && predicate(e.payload)),
      timeoutMs,
    );
  }

  /** Every response frame with this id (the `agent` method answers twice). */
  responses(id: string): Frame[] {
    return this.frames.filter((f) => f.type === "res" && f.id === id);
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    return this.closed;
  }

  #wake(): void {
    for (const l of this.#listeners) l();
  }

  #onFrame(text: string): void {
    let frame: Frame;
    try {
      frame = JSON.parse(text) as Frame;
    } catch {
      violations.push(`non-JSON frame: ${text.slice(0, 200)}`);
      return;
    }
    checkFrame(frame, (id) => this.#methods.get(id));
    this.frames.push(frame);
    if (frame.type === "event") {
      const event = frame as unknown as EventFrame;
      this.events.push(event);
      if (event.event === "connect.challenge") {
        this.challenge = event.payload;
        this.#challenge.resolve(event.payload);
      }
    } else if (frame.type === "res") {
      const pending = this.#pending.get(frame.id as string);
      if (pending !== undefined) {
        this.#pending.delete(frame.id as string);
        if (frame.ok === true) pending.resolve(frame.payload);
        else pending.reject(new RpcError(frame.error as never));
      }
    }
    this.#wake();
  }
}

/** Connects a node (token auth, a fresh device identity) that offers `commands`. */
export function connectNode(
  url: string,
  options: { device?: DeviceIdentity; commands?: string[] } = {},
): Promise<TestClient> {
  return TestClient.connect(url, {
    token: TOKEN,
    role: "node",
    scopes: [],
    device: options.device ?? createDeviceIdentity(),
    clientId: "node-host",
    mode: "node",
    caps: ["exec"],
    ...(options.commands === undefined ? {} : { commands: options.commands }),
  });
}

/** The RpcError a request fails with; fails the test if it succeeds. */
export async function rpcError(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof RpcError) return error;
    throw error;
  }
  throw new Error("expected the request to fail, but it succeeded");
}

// ------------------------------------------------------------------ socket writes

type WriteCallback = (error?: Error | null) => void;
type Chunk = { chunk: Buffer | string };

/**
 * Records every write the gateway's end of a connection on `port` makes: one entry per
 * `_write` / `_writev` call, its bytes joined.
 */
export function recordServerWrites(port: number): { writes: Buffer[]; restore(): void } {
  const proto = Socket.prototype as unknown as {
    _write(chunk: Buffer, encoding: string, cb: WriteCallback): void;
    _writev(chunks: Chunk[], cb: WriteCallback): void;
  };
  const write = proto._write;
  const writev = proto._writev;
  const writes: Buffer[] = [];
  const toBuffer = (c: Buffer | string) => (typeof c === "string" ? Buffer.from(c) : c);
  proto._write = function (this: Socket, chunk, encoding, cb) {
    if (this.localPort === port) writes.push(Buffer.from(toBuffer(chunk)));
    return write.call(this, chunk, encoding, cb);
  };
  proto._writev = function (this: Socket, chunks, cb) {
    if (this.localPort === port) writes.push(Buffer.concat(chunks.map((c) => toBuffer(c.chunk))));
    return writev.call(this, chunks, cb);
  };
  return {
    writes,
    restore() {
      proto._write = write;
      proto._writev = writev;
    },
  };
}

/** The texts of the (unmasked, unfragmented) WebSocket frames in a server's write. */
export function framesIn(bytes: Buffer): string[] {
  const texts: string[] = [];
  let at = 0;
  while (at < bytes.length) {
    const opcode = bytes[at]! & 0x0f;
    let length = bytes[at + 1]! & 0x7f;
    let start = at + 2;
    if (length === 126) {
      length = bytes.readUInt16BE(at + 2);
      start = at + 4;
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(at + 2));
      start = at + 10;
    }
    if (start + length > bytes.length) throw new Error("a frame split across writes");
    if (opcode === 0x1) texts.push(bytes.subarray(start, start + length).toString("utf8"));
    at = start + length;
  }
  return texts;
}

/** An HTTP response as tests read it. */
export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Wire;
}

/** The `data:` payloads of an SSE body, JSON-parsed (`[DONE]` as the string). */
export function sseData(text: string): Wire[] {
  return text
    .split("\n\n")
    .filter((block) => block.startsWith("data: "))
    .map((block) => block.slice(6))
    .map((data) => (data === "[DONE]" ? "[DONE]" : JSON.parse(data)));
}

/** The events of an SSE body: each block's `event:` name and JSON `data:`. */
export function sseEvents(text: string): Array<{ event: string | undefined; data: Wire }> {
  return text
    .split("\n\n")
    .filter((block) => block.trim().length > 0)
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((l) => l.startsWith("event: "))?.slice(7);
      const data = lines.find((l) => l.startsWith("data: "))!.slice(6);
      return { event, data: JSON.parse(data) };
    });
}

/** One HTTP request to 127.0.0.1 without keep-alive (so nothing stays open). */
export function httpCall(
  port: number,
  path: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: unknown;
    /** The client's source address (another loopback address, e.g. `127.0.0.2`). */
    localAddress?: string;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body =
      options.body === undefined
        ? undefined
        : typeof options.body === "string" || Buffer.isBuffer(options.body)
          ? options.body
          : JSON.stringify(options.body);
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        path,
        method: options.method ?? "GET",
        agent: false,
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
        headers: { "content-type": "application/json", ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** A scripted answer that says one word and then waits until its call is aborted. */
export const HANGING_ANSWER: ScriptEntry = {
  events: [
    { type: "response-start", model: "m1" },
    { type: "text-delta", text: "thinking" },
    { type: "delay", ms: Infinity },
  ],
};

/** The results of the stack's runs, in the order they end (from `events:global`). */
export function runEnds(stack: Stack): Array<{ status: string }> {
  const ends: Array<{ status: string }> = [];
  stack.runtime.pubsub.subscribe(
    "events:global",
    (e: { type?: string; result?: { status: string } }) => {
      if (e.type === "run-end" && e.result !== undefined) ends.push(e.result);
    },
  );
  return ends;
}

/**
 * POSTs a streaming request (bearer {@link TOKEN}) and drops the connection once the answer
 * has shown `marker` (by default, as soon as anything arrives).
 */
export function leaveMidStream(
  port: number,
  path: string,
  body: unknown,
  marker = "",
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        agent: false,
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      },
      (res) => {
        let seen = "";
        res.on("data", (chunk: Buffer) => {
          seen += chunk.toString("utf8");
          if (seen.includes(marker)) {
            req.destroy();
            resolve();
          }
        });
      },
    );
    req.on("error", () => undefined);
    req.once("error", reject);
    req.end(JSON.stringify(body));
  });
}

/** What a {@link recordingTranscriber} was given: the audio's bytes as text, its type and name. */
export interface HeardClip {
  bytes: string;
  mediaType: string;
  filename?: string;
}

/**
 * A transcriber (id `test-stt`) that records each clip it is given in `heard` and answers
 * `answer(bytes)`, or throws (as a vendor that cannot decode the audio) for a clip whose bytes
 * are `failOn`.
 */
export function recordingTranscriber(answer: (bytes: string) => string, failOn: string) {
  const heard: HeardClip[] = [];
  const transcriber: Transcriber = {
    id: "test-stt",
    async transcribe(input) {
      const bytes = Buffer.from(input.data).toString();
      heard.push({
        bytes,
        mediaType: input.mediaType,
        ...(input.filename === undefined ? {} : { filename: input.filename }),
      });
      if (bytes === failOn) throw new Error("the vendor could not decode the audio");
      return { text: answer(bytes) };
    },
  };
  return { transcriber, heard };
}

export { canListen, freePort } from "@beamclaw/core/testing";
