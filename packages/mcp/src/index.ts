/**
 * `@beamclaw/mcp`: the tools of a Model Context Protocol server (stdio or Streamable HTTP) as
 * BeamClaw tools. {@link McpToolServer} connects, lists the server's tools (every page), and
 * registers each with a `ToolRegistry` (an `AgentRuntime`'s `tools`) as `<server>__<tool>`,
 * keeping the registry in step when the server says its list changed. A call runs under the
 * tool layer's time limit and abort; a server that exits is connected again at the next call.
 */
import { stat } from "node:fs/promises";
import { types } from "node:util";
import {
  AbortedError,
  type AgentTool,
  type ApprovalPolicy,
  BeamClawError,
  InvalidArgumentError,
  type JsonObject,
  type JsonValue,
  type ToolContext,
  type ToolResultWithImages,
  toolResult,
} from "@beamclaw/core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  ErrorCode,
  PaginatedResultSchema,
  type Tool,
  ToolListChangedNotificationSchema,
  ToolSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type {
  JsonSchemaType,
  JsonSchemaValidator,
  jsonSchemaValidator,
} from "@modelcontextprotocol/sdk/validation";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { closingCancelledFetch } from "./http-fetch.js";
import { ProcessGroupStdioTransport } from "./stdio-transport.js";

/** How to reach an MCP server: a command it runs as (stdio), or its Streamable HTTP URL. */
export type McpTransportOptions =
  | {
      /** The executable that runs the server; it speaks MCP on its stdin and stdout. */
      command: string;
      args?: string[];
      /**
       * Variables of the server's environment, set over the MCP SDK's safe default (`PATH`,
       * `HOME` and a few more; not this process's secrets), which is all it gets without them.
       * Names match `^[A-Za-z_][A-Za-z0-9_]*$`; values are strings without NUL.
       */
      env?: Record<string, string>;
      /** The server's working directory: one that exists (checked at `start()`). */
      cwd?: string;
    }
  | {
      /**
       * The server's Streamable HTTP endpoint, e.g. `http://127.0.0.1:3000/mcp`; without
       * credentials (`user:pass@`: an `Authorization` header goes in `headers`).
       */
      url: string;
      /**
       * Sent with every request (an `Authorization` header, say): header names to values
       * without CR, LF or NUL.
       */
      headers?: Record<string, string>;
    };

/** Options of {@link McpToolServer}. */
export type McpToolServerOptions = McpTransportOptions & {
  /**
   * `^[a-zA-Z0-9_-]{1,32}$`: the prefix of its tools' names (`<name>__<tool>`), which keeps
   * two servers' tools apart and names them in an agent's allowlist (`["files__*"]` is not a
   * pattern: list them, or allow `["*"]`).
   */
  name: string;
  /** Only these of the server's tools (their names on the server). Default: all. */
  include?: string[];
  /** A tool call's time limit, in ms. Default: the tool layer's (`toolTimeoutMs`). */
  timeoutMs?: number;
  /** Time limit of connecting and of listing the tools, in ms. Default 30 000. */
  connectTimeoutMs?: number;
  /**
   * When its tools' calls need a person's approval (the runtime's `ApprovalGate`): `inherit`
   * (default) follows the gate's mode, `always` asks at every call, `never` never asks (a
   * server whose tools only read).
   */
  approval?: ApprovalPolicy;
};

/** A tool of an MCP server, with its approval policy. */
export type McpTool = AgentTool & { readonly approval: ApprovalPolicy };

/** Where {@link McpToolServer} registers its tools: a `ToolRegistry` (`runtime.tools`). */
export interface McpToolRegistry {
  register(tool: AgentTool): void;
  unregister(name: string): boolean;
}

/**
 * An MCP server could not be reached, refused a request, or does not speak MCP.
 *
 * Safe to log whole (`console.error`, `util.inspect`, a logger's error serializer): its message
 * shows no URL's userinfo (`user:pass@`) or query values (`?token=***`), nor, for an error of
 * {@link McpToolServer}, a value of its configured `headers` or of its URL's query; and its
 * `cause` is not the error that caused it but a redacted copy of it: an error of the same class
 * (its prototype: `instanceof`, `name`) with the same fields (`code`, `errno`, `status`, ...),
 * its message, stack and string fields redacted the same way, and its own `cause` (and an
 * `AggregateError`'s `errors`) copied so in turn. Arrays and plain objects in it are copied
 * so; other objects (a `Response`, `Headers`, a `Buffer`), functions and getters are left out.
 */
export class McpError extends BeamClawError {
  /** The server's name (`McpToolServerOptions.name`). */
  readonly server: string;
  /**
   * False for a tool call that failed after it was sent (the server may have run it): the
   * tool layer does not retry it, even when the cause was a network error.
   */
  readonly isRetryable: boolean | undefined;
  constructor(
    server: string,
    message: string,
    options?: { cause?: unknown; isRetryable?: boolean },
  ) {
    // A URL's userinfo or query (a token) is never shown, whatever the message quotes, nor
    // whatever the cause's chain does (a fetch error naming the URL, an SDK error a body).
    super(
      "MCP_ERROR",
      redact(message),
      options?.cause === undefined ? undefined : { cause: redactedCopy(options.cause, redact) },
    );
    this.server = server;
    this.isRetryable = options?.isRetryable;
  }
  static override isInstance = (value: unknown): value is McpError =>
    BeamClawError.isInstance(value) && value.code === "MCP_ERROR";
}

/**
 * An option of an MCP server's configuration is refused (`field` says which: `url`, `env`,
 * `cwd`, `headers`); nothing was started. Its message names the server and the field, never a
 * secret (a header's value, a URL's password or query).
 *
 * @example
 * ```ts
 * try {
 *   new McpToolServer({ name: "web", url: "https://me:token@example.com/mcp" });
 * } catch (error) {
 *   if (McpConfigError.isInstance(error)) console.error(error.server, error.field); // web url
 * }
 * ```
 */
export class McpConfigError extends InvalidArgumentError {
  /** The server's name (`McpToolServerOptions.name`). */
  readonly server: string;
  /** The option refused: `url`, `env`, `cwd` or `headers`. */
  readonly field: string;
  constructor(server: string, field: string, message: string) {
    super(`McpToolServer "${server}": ${field} ${message}`);
    this.server = server;
    this.field = field;
  }
  static override isInstance = (value: unknown): value is McpConfigError =>
    InvalidArgumentError.isInstance(value) &&
    typeof (value as { field?: unknown }).field === "string" &&
    typeof (value as { server?: unknown }).server === "string";
}

/**
 * Longest tool description offered to the model, in bytes of UTF-8: a longer one is cut there,
 * ends with `… [description truncated]`, and is reported by `truncated()`.
 */
export const MAX_DESCRIPTION_BYTES = 4_096;
/** What ends a description cut at {@link MAX_DESCRIPTION_BYTES}. */
const DESCRIPTION_MARKER = "… [description truncated]";
/**
 * Largest tool input schema, in bytes of its JSON (UTF-8): a tool with a larger one is left
 * out (`leftOut()`), as no model prompt should carry it.
 */
export const MAX_INPUT_SCHEMA_BYTES = 65_536;

const NAME = /^[a-zA-Z0-9_-]{1,32}$/;
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
/** Reconnects after an exit are at least this far apart. */
const RECONNECT_INTERVAL_MS = 1_000;
/** Longest wait, at `stop()`, for the DELETE that ends a Streamable HTTP session. */
const END_SESSION_TIMEOUT_MS = 5_000;
/** Listings that a server's list changes ask for start at least this far apart. */
const LIST_CHANGED_INTERVAL_MS = 250;

/** A tool a listing left out, and why (`leftOut()`). */
interface LeftOut {
  tool: string;
  reason: string;
}

interface ServerTool {
  name: string;
  description?: string;
  inputSchema: JsonObject;
  /** What its structured content must match (see `McpToolServer.#outputChecks`). */
  outputSchema?: JsonObject;
  /** How it runs as an MCP task (2025-11-25): `"required"`, only as one. */
  execution?: { taskSupport?: string };
}

/**
 * One MCP server's tools, as BeamClaw tools. `start()` connects and lists them; with a
 * `registry`, each is registered as `<name>__<tool>` and the registry follows the server's
 * changes; `stop()` unregisters them and closes the connection (a stdio server's process
 * ends). A server that exits or drops the connection is connected again at the next call (at
 * most once a second); calls meanwhile fail as tool errors the model can read.
 *
 * @example
 * ```ts
 * const files = new McpToolServer({
 *   name: "files",
 *   command: "npx",
 *   args: ["-y", "@modelcontextprotocol/server-filesystem", "/srv/docs"],
 * });
 * await files.start({ registry: runtime.tools });
 * // agents: [{ id: "main", model: "anthropic/claude-sonnet-4-5", tools: files.toolNames() }]
 * // ...
 * await files.stop();
 * ```
 */
export class McpToolServer {
  readonly name: string;
  readonly #options: McpToolServerOptions;
  #client: Client | undefined;
  #leftOut: ReadonlyArray<{ tool: string; reason: string }> = [];
  #truncated: ReadonlyArray<{ tool: string; reason: string }> = [];
  #connecting: Promise<Client> | undefined;
  /** Cancels the connect under way (its `initialize` request), for `stop()`. */
  #connectAbort: AbortController | undefined;
  /** The connect that calls began (a reconnect), and how many calls wait for it. */
  #callConnect: { abort: AbortController; waiting: number } | undefined;
  #tools = new Map<string, McpTool>();
  /**
   * Each listed tool's output schema check, by its name on the server: done here, not by the
   * SDK, whose `callTool` checks a tool error's structured content too and then throws its own
   * error in place of the tool's.
   */
  #outputChecks = new Map<string, JsonSchemaValidator<unknown>>();
  #registry: McpToolRegistry | undefined;
  #state: "idle" | "running" | "stopped" = "idle";
  #lastConnect = 0;
  #refreshing: Promise<void> | undefined;
  /** A listing waiting behind the one under way, not begun: a change meanwhile joins it. */
  #queued: Promise<void> | undefined;
  /** When the last listing began (`Date.now()`). */
  #lastListing = 0;
  /** Ends the wait of a listing that a list change asked for early, for `stop()`. */
  #endPause: (() => void) | undefined;
  /** Each connection's stdio transport, to say how its process ended (a client forgets it). */
  #stdio = new WeakMap<Client, ProcessGroupStdioTransport>();
  /**
   * What no message or cause may show (the configured URL's query values, the headers'
   * values), longest first.
   */
  readonly #secrets: string[] = [];

  /** @throws InvalidArgumentError for options of the wrong kind. */
  constructor(options: McpToolServerOptions) {
    checkOptions(options);
    this.name = options.name;
    this.#options = options;
    if ("url" in options) {
      // Its query's values (an `?api_key=`) and its headers' values (an `Authorization`'s,
      // and its credentials after the scheme), should a server's answer quote them bare.
      const values = [...new URL(options.url).searchParams.values()];
      for (const value of Object.values(options.headers ?? {})) {
        values.push(value, value.trim().replace(/^\S+\s+/, ""));
      }
      for (const value of new Set(values)) if (value.length >= 4) this.#secrets.push(value);
      this.#secrets.sort((a, b) => b.length - a.length);
    }
  }

  /** `text` with the configured URL's query values and the headers' values never shown. */
  #hide = (text: string): string => {
    for (const secret of this.#secrets) text = text.replaceAll(secret, "***");
    return redact(text);
  };

  /** `reason(error)`, with the configured URL's query values and headers' values never shown. */
  #reason(error: unknown): string {
    return this.#hide(reason(error));
  }

  /** An `McpError` of this server whose cause, a copy of `cause`, shows none of its secrets. */
  #error(message: string, cause: unknown, isRetryable?: boolean): McpError {
    return new McpError(this.name, message, {
      cause: redactedCopy(cause, this.#hide),
      ...(isRetryable === undefined ? {} : { isRetryable }),
    });
  }

  /**
   * Connects, lists the server's tools and, with a `registry`, registers them.
   * @throws McpError when the server cannot be reached, does not answer in time, or has a tool
   *   whose name the registry already holds; nothing is registered then.
   * @throws McpConfigError (field `cwd`) when a stdio server's `cwd` is not a directory that
   *   exists; nothing is started then.
   */
  async start(options: { registry?: McpToolRegistry } = {}): Promise<void> {
    if (this.#state !== "idle") {
      throw new InvalidArgumentError(`MCP server "${this.name}" was already started`);
    }
    this.#state = "running";
    this.#registry = options.registry;
    try {
      await this.#checkCwd();
      await this.#connect();
      await this.#refresh();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /** The tools as they are now (`<name>__<tool>`), for a registry or a `BasicToolRunner`. */
  get tools(): McpTool[] {
    return [...this.#tools.values()];
  }

  /** Their names, for an agent's allowlist. */
  toolNames(): string[] {
    return [...this.#tools.keys()];
  }

  /**
   * What the last listing of the server's tools left out, and why: a tool whose name
   * (`<name>__<tool>`) a model could not call (not `^[a-zA-Z0-9_-]{1,64}$`), a tool the MCP
   * SDK's schema refuses (an input schema not of an object), a tool with an empty name or an
   * input schema over {@link MAX_INPUT_SCHEMA_BYTES} bytes of JSON, a tool whose name the registry
   * already holds, or a name of `include` the server has no tool of (a typo, a tool it no
   * longer has). Empty before `start()`. For a host to say so (the `beamclaw` gateway logs
   * them as warnings).
   *
   * @example
   * ```ts
   * await files.start({ registry: runtime.tools });
   * for (const { tool, reason } of files.leftOut()) console.warn(`${tool}: ${reason}`);
   * ```
   */
  leftOut(): ReadonlyArray<{ tool: string; reason: string }> {
    return this.#leftOut;
  }

  /**
   * The tools of the last listing whose description was cut (at {@link MAX_DESCRIPTION_BYTES}
   * bytes, ending `… [description truncated]`), so that a server cannot flood the model's
   * prompt; they are registered. For a host to say so, as with `leftOut()`.
   */
  truncated(): ReadonlyArray<{ tool: string; reason: string }> {
    return this.#truncated;
  }

  /** A stdio server's `cwd` is a directory that exists: said before anything is started. */
  async #checkCwd(): Promise<void> {
    const cwd = "command" in this.#options ? this.#options.cwd : undefined;
    if (cwd === undefined) return;
    const found = await stat(cwd).catch((error: NodeJS.ErrnoException) => error);
    if (found instanceof Error) {
      throw new McpConfigError(
        this.name,
        "cwd",
        found.code === "ENOENT" ? `${cwd} does not exist` : `${cwd} cannot be read (${found.code})`,
      );
    }
    if (!found.isDirectory())
      throw new McpConfigError(this.name, "cwd", `${cwd} is not a directory`);
  }

  /**
   * Unregisters the tools and closes the connection (a connect under way is cancelled: a
   * `start()` waiting for it fails with `McpError`). Safe to call more than once.
   */
  async stop(): Promise<void> {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    for (const name of this.#tools.keys()) this.#registry?.unregister(name);
    this.#tools.clear();
    // A connect under way is cancelled, not waited out (up to `connectTimeoutMs`).
    this.#connectAbort?.abort();
    this.#endPause?.();
    const client = this.#client ?? (await this.#connecting?.catch(() => undefined));
    this.#client = undefined;
    this.#connecting = undefined;
    if (client !== undefined) await this.#endSession(client);
    await client?.close().catch(() => undefined);
  }

  /**
   * Ends a Streamable HTTP session with a DELETE, as the protocol asks of a client that leaves
   * (a server that does not allow it answers 405, which is fine); bounded, not to hold `stop()`.
   */
  async #endSession(client: Client): Promise<void> {
    const transport = client.transport;
    if (!(transport instanceof StreamableHTTPClientTransport)) return;
    if (transport.sessionId === undefined) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      transport.terminateSession().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(
          resolve,
          Math.min(
            this.#options.connectTimeoutMs ?? END_SESSION_TIMEOUT_MS,
            END_SESSION_TIMEOUT_MS,
          ),
        );
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * Whether `error` says the server no longer knows the Streamable HTTP session (404: it
   * expired, or the server restarted). The client is dropped then: the next request starts a
   * new session, as the protocol asks. So too for a 400 to a request that carried a session id
   * whose answer names the session or an uninitialized server, as many servers answer a
   * session they do not know (the MCP Python SDK's `No valid session ID provided`, servers after
   * the TypeScript SDK's example, its transport new after a restart: `Server not initialized`):
   * a 400 is a request refused, not run.
   */
  #expired(client: Client, error: unknown): boolean {
    if (!(error instanceof StreamableHTTPError)) return false;
    const carried = (client.transport as StreamableHTTPClientTransport | undefined)?.sessionId;
    const unknown =
      error.code === 404 ||
      (error.code === 400 &&
        carried !== undefined &&
        /\bsession\b|not initiali[sz]ed/i.test(error.message));
    if (!unknown) return false;
    if (this.#client === client) this.#client = undefined;
    void client.close().catch(() => undefined);
    return true;
  }

  /** `" (its process exited with code 1; ...)"` for a stdio server's process that has ended. */
  #exitNote(client: Client): string {
    const reason = this.#stdio.get(client)?.exitReason;
    return reason === undefined ? "" : ` (its process ${reason})`;
  }

  /** Whether `stop()` has run (a method: it is read again after an await). */
  #stopped(): boolean {
    return this.#state === "stopped";
  }

  async #connect(): Promise<Client> {
    if (this.#client !== undefined) return this.#client;
    if (this.#connecting !== undefined) return this.#connecting;
    // Stopped: nothing connects again (a listing that a list change queued, say), or a server
    // would be started after `stop()` has returned.
    if (this.#stopped()) {
      throw new McpError(this.name, `MCP server "${this.name}" was stopped`);
    }
    this.#lastConnect = Date.now();
    const connecting = this.#open();
    this.#connecting = connecting;
    try {
      const client = await connecting;
      if (this.#stopped()) {
        await client.close().catch(() => undefined);
        throw new McpError(this.name, `MCP server "${this.name}" was stopped`);
      }
      this.#client = client;
      return client;
    } finally {
      if (this.#connecting === connecting) this.#connecting = undefined;
    }
  }

  /**
   * `#connect()` for a call: an abort of `signal` ends the wait at once with its reason, and a
   * connect that calls began (a reconnect) is cancelled when no call waits for it any more (its
   * transport closed: no half-started connection, no process left running). A connect that
   * `start()` or a listing began runs on.
   */
  async #connectFor(signal: AbortSignal): Promise<Client> {
    if (this.#client !== undefined) return this.#client;
    if (signal.aborted) throw signal.reason ?? new AbortedError("aborted");
    const fresh = this.#connecting === undefined;
    const connecting = this.#connect();
    if (fresh && this.#connectAbort !== undefined) {
      this.#callConnect = { abort: this.#connectAbort, waiting: 0 };
    }
    const owned =
      this.#callConnect !== undefined && this.#callConnect.abort === this.#connectAbort
        ? this.#callConnect
        : undefined;
    if (owned !== undefined) owned.waiting++;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason ?? new AbortedError("aborted"));
      signal.addEventListener("abort", onAbort, { once: true });
    });
    let cancelled = false;
    try {
      return await Promise.race([connecting, aborted]);
    } catch (error) {
      cancelled = signal.aborted;
      throw error;
    } finally {
      signal.removeEventListener("abort", onAbort!);
      // (Settled or not, its failure is this call's only if it waited it out.)
      connecting.catch(() => undefined);
      if (owned !== undefined) {
        owned.waiting--;
        if (owned.waiting === 0) {
          if (this.#callConnect === owned) this.#callConnect = undefined;
          if (cancelled) owned.abort.abort(signal.reason);
        }
      }
    }
  }

  async #open(): Promise<Client> {
    const options = this.#options;
    const client = new Client(
      { name: "beamclaw", version: "1" },
      // The SDK still asks a tool with an output schema for structured content; what that
      // content holds is checked by `#outputChecks`.
      { jsonSchemaValidator: acceptingValidator },
    );
    // Not the SDK's `listChanged` option: it ignores the notification from a server that did
    // not declare `tools.listChanged`, and many servers send it without declaring it.
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      if (this.#stopped()) return;
      void this.#refresh(LIST_CHANGED_INTERVAL_MS).catch(() => undefined);
    });
    const transport = "command" in options ? stdioTransport(options) : httpTransport(options);
    if (transport instanceof ProcessGroupStdioTransport) this.#stdio.set(client, transport);
    // One close, awaited by everyone: the SDK closes a transport whose connect failed without
    // waiting, and a later close would return before the server's process has ended.
    const closeTransport = transport.close.bind(transport);
    let closing: Promise<void> | undefined;
    transport.close = () => {
      closing ??= closeTransport();
      return closing;
    };
    client.onclose = () => {
      // Gone (the process exited, the connection dropped): the next call connects again.
      if (this.#client === client) this.#client = undefined;
    };
    const abort = new AbortController();
    this.#connectAbort = abort;
    try {
      await client.connect(transport, {
        timeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        signal: abort.signal,
      });
    } catch (error) {
      await transport.close().catch(() => undefined);
      throw this.#error(
        `could not connect to MCP server "${this.name}": ${this.#reason(error)}${this.#exitNote(client)}`,
        error,
      );
    } finally {
      if (this.#connectAbort === abort) this.#connectAbort = undefined;
    }
    return client;
  }

  /**
   * Lists the server's tools (every page) and brings the registry in step. One listing at a
   * time; asked for while one is under way, one more listing follows it, which every request
   * meanwhile joins (a flood of list changes lists twice, not once a change). With `spacing`
   * (ms), the listing begins no sooner than that after the last one began (a server that says
   * its list changed at every listing is not listed without a pause).
   */
  #refresh(spacing = 0): Promise<void> {
    if (this.#queued !== undefined) return this.#queued;
    const run = async () => {
      await this.#pause(this.#lastListing + spacing - Date.now());
      if (this.#queued === next) this.#queued = undefined;
      this.#lastListing = Date.now();
      const client = await this.#connect();
      const listed: ServerTool[] = [];
      const refused: LeftOut[] = [];
      let cursor: string | undefined;
      // The whole listing, every page, is bounded; a cursor seen before would list forever.
      const deadline = Date.now() + (this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
      const seen = new Set<string>();
      do {
        let page: { tools?: unknown; nextCursor?: string };
        try {
          // Not `client.listTools()`: its schema refuses the whole page for one tool it does
          // not like (an input schema without `type`, say); each tool is read on its own here.
          page = await client.request(
            { method: "tools/list", params: cursor === undefined ? {} : { cursor } },
            PaginatedResultSchema,
            { timeout: Math.max(1, deadline - Date.now()) },
          );
        } catch (error) {
          this.#expired(client, error);
          // A server that offers no tools (only resources or prompts, say): it declares no
          // `tools` capability and has no `tools/list`. It has none, rather than failing.
          if (
            cursor === undefined &&
            client.getServerCapabilities()?.tools === undefined &&
            (error as { code?: unknown }).code === ErrorCode.MethodNotFound
          ) {
            break;
          }
          throw this.#error(
            `MCP server "${this.name}" did not list its tools: ${this.#reason(error)}`,
            error,
          );
        }
        for (const tool of Array.isArray(page.tools) ? page.tools : []) {
          const read = readTool(tool);
          if ("reason" in read) refused.push(read);
          else listed.push(read);
        }
        cursor = page.nextCursor;
        if (cursor !== undefined) {
          if (seen.has(cursor)) {
            throw new McpError(
              this.name,
              `MCP server "${this.name}" did not list its tools: it repeated the cursor ${JSON.stringify(cursor)}`,
            );
          }
          seen.add(cursor);
        }
      } while (cursor !== undefined);
      // What `listTools()` does with them: the output schemas checked and the tools that need
      // tasks known at a call (for every page: `listTools()` keeps only the last page's).
      (client as unknown as { cacheToolMetadata?: (tools: Tool[]) => void }).cacheToolMetadata?.(
        listed as unknown as Tool[],
      );
      if (this.#state !== "running") return;
      this.#outputChecks = new Map(
        listed.flatMap((tool) =>
          tool.outputSchema === undefined
            ? []
            : [[tool.name, lenientValidator.getValidator(tool.outputSchema as JsonSchemaType)]],
        ),
      );
      this.#apply(listed, refused);
    };
    const previous = this.#refreshing ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(run);
    this.#queued = next;
    this.#refreshing = next;
    void next
      .finally(() => {
        if (this.#refreshing === next) this.#refreshing = undefined;
      })
      .catch(() => undefined);
    return next;
  }

  /** Waits `ms` (none when not positive); `stop()` ends the wait. */
  async #pause(ms: number): Promise<void> {
    if (ms <= 0 || this.#stopped()) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(end, ms);
      function end() {
        clearTimeout(timer);
        resolve();
      }
      this.#endPause = end;
    });
    this.#endPause = undefined;
  }

  /** @throws McpError naming the tools left out because the registry already has their names. */
  #apply(listed: ServerTool[], refused: LeftOut[]): void {
    const include = this.#options.include;
    const next = new Map<string, McpTool>();
    const truncated: LeftOut[] = [];
    // A tool the SDK's schema refuses (named by `include`, if it is given): said, not dropped unseen.
    const leftOut = refused.filter(
      (entry) => include === undefined || include.includes(entry.tool),
    );
    // The server's own names, which a tool of a name changed (`.`, `/`) must not take.
    const exact = new Set(
      listed
        .map((tool) => tool.name)
        .filter((tool) => include === undefined || include.includes(tool)),
    );
    /** Each registered name's tool, by its name on the server. */
    const onServer = new Map<string, string>();
    for (const tool of listed) {
      if (include !== undefined && !include.includes(tool.name)) continue;
      const name = `${this.name}__${modelName(tool.name)}`;
      if (tool.name === "") {
        leftOut.push({ tool: "", reason: "its name is empty, so no model could call it" });
        continue;
      }
      // A name the model could not call (spaces, too long) is left out.
      if (!TOOL_NAME.test(name)) {
        leftOut.push({
          tool: tool.name,
          reason: `its name ${JSON.stringify(name)} does not match ^[a-zA-Z0-9_-]{1,64}$, so no model could call it`,
        });
        continue;
      }
      // `a.b` is `a_b` to the model: not when the server has a tool of that name, or another
      // tool came to it first (`a/b`).
      const taker = next.has(name)
        ? onServer.get(name)
        : modelName(tool.name) !== tool.name && exact.has(modelName(tool.name))
          ? modelName(tool.name)
          : undefined;
      if (taker !== undefined) {
        leftOut.push({
          tool: tool.name,
          reason: `its name becomes ${JSON.stringify(name)} for a model, as the server's tool ${JSON.stringify(taker)} does`,
        });
        continue;
      }
      // A tool that runs only as a task (MCP 2025-11-25) would fail every call made of it.
      if (tool.execution?.taskSupport === "required") {
        leftOut.push({
          tool: tool.name,
          reason:
            'it runs only as an MCP task (execution.taskSupport "required"), which this client does not run',
        });
        continue;
      }
      const schemaBytes = Buffer.byteLength(JSON.stringify(tool.inputSchema ?? {}));
      if (schemaBytes > MAX_INPUT_SCHEMA_BYTES) {
        leftOut.push({
          tool: tool.name,
          reason: `its input schema is ${schemaBytes} bytes of JSON, over the ${MAX_INPUT_SCHEMA_BYTES} a tool may put in a model's prompt`,
        });
        continue;
      }
      const agentTool = this.#agentTool(name, tool);
      if (agentTool.description !== tool.description && tool.description !== undefined) {
        truncated.push({
          tool: tool.name,
          reason: `its description of ${Buffer.byteLength(tool.description)} bytes was cut to ${MAX_DESCRIPTION_BYTES}`,
        });
      }
      next.set(name, agentTool);
      onServer.set(name, tool.name);
    }
    for (const wanted of include ?? []) {
      const known =
        listed.some((tool) => tool.name === wanted) || refused.some((e) => e.tool === wanted);
      if (!known) {
        leftOut.push({ tool: wanted, reason: "named in include, but the server has no such tool" });
      }
    }
    for (const name of this.#tools.keys()) {
      if (!next.has(name)) this.#registry?.unregister(name);
    }
    const taken: string[] = [];
    for (const [name, tool] of next) {
      // Registered again (a changed description or schema replaces the old one).
      if (this.#tools.has(name)) this.#registry?.unregister(name);
      try {
        this.#registry?.register(tool);
      } catch {
        // The registry has a tool of that name (a built-in, another server's): left out.
        next.delete(name);
        taken.push(name);
        // Said at a later listing too (a list change, a reconnect), whose failure none sees.
        leftOut.push({
          tool: onServer.get(name) ?? name.slice(this.name.length + 2),
          reason: `the registry already has a tool named ${name}`,
        });
      }
    }
    this.#tools = next;
    this.#leftOut = leftOut;
    this.#truncated = truncated;
    if (taken.length > 0) {
      throw new McpError(
        this.name,
        `MCP server "${this.name}": the registry already has a tool named ${taken.join(", ")}`,
      );
    }
  }

  #agentTool(name: string, tool: ServerTool): McpTool {
    const inputSchema: JsonObject =
      typeof tool.inputSchema === "object" && tool.inputSchema !== null
        ? tool.inputSchema
        : { type: "object", properties: {} };
    const agentTool: McpTool = {
      name,
      description:
        tool.description === undefined
          ? `${tool.name} (MCP server ${this.name})`
          : capDescription(tool.description),
      inputSchema,
      // Read by the tool layer as a defined tool's `approval` is.
      approval: this.#options.approval ?? "inherit",
      execute: (input, context) => this.#call(tool.name, input, context),
    };
    if (this.#options.timeoutMs !== undefined) agentTool.timeoutMs = this.#options.timeoutMs;
    return agentTool;
  }

  async #call(
    tool: string,
    input: JsonValue,
    context: ToolContext,
  ): Promise<JsonValue | ToolResultWithImages> {
    if (this.#state !== "running") {
      throw new McpError(this.name, `MCP server "${this.name}" is stopped`);
    }
    if (this.#client === undefined && this.#connecting === undefined) {
      const wait = this.#lastConnect + RECONNECT_INTERVAL_MS - Date.now();
      if (wait > 0) {
        throw new McpError(
          this.name,
          `MCP server "${this.name}" is not connected; it is connected again in ${wait} ms`,
        );
      }
    }
    // Arguments are an object (MCP's `arguments`): anything else fails the call, saying so to
    // the model, rather than being sent as no arguments at all.
    if (
      input !== undefined &&
      (typeof input !== "object" || input === null || Array.isArray(input))
    ) {
      throw new InvalidArgumentError(
        `MCP tool ${tool} of server "${this.name}" takes its arguments as a JSON object, got ${
          input === null ? "null" : Array.isArray(input) ? "an array" : `a ${typeof input}`
        }; nothing was sent`,
      );
    }
    const args = input ?? {};
    const signal = context.signal;
    if (signal.aborted) throw signal.reason ?? new AbortedError("aborted");
    const reconnecting = this.#client === undefined;
    let client = await this.#connectFor(signal);
    // A server started again may offer other tools: its list is read again.
    if (reconnecting) void this.#refresh().catch(() => undefined);
    // The call's own signal, following the caller's only while the call runs: the SDK never
    // takes its abort listener off the signal it is given, and a caller's signal that outlives
    // the call (a run's, a session's) would gather one a call and, aborted later, send
    // `notifications/cancelled` for requests that had long been answered.
    const call = new AbortController();
    const onAbort = () => call.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    let result: Awaited<ReturnType<Client["callTool"]>>;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          result = await client.callTool({ name: tool, arguments: args }, undefined, {
            signal: call.signal,
            // The tool layer's time limit applies (its abort reaches the server as a
            // cancellation); the SDK's own 60 s default must not cut a longer one short.
            timeout: 2_147_483_647,
          });
          break;
        } catch (error) {
          if (signal.aborted) throw signal.reason ?? new AbortedError("aborted");
          // A session the server no longer knows (it did not run the call): a new session,
          // its list read again, and the call once more.
          if (attempt === 0 && this.#expired(client, error)) {
            client = await this.#connectFor(signal);
            void this.#refresh().catch(() => undefined);
            continue;
          }
          // Sent: the server may have run it, so it is not run again on its own.
          throw this.#error(
            `MCP tool ${tool} of server "${this.name}" failed: ${this.#reason(error)}${this.#exitNote(client)}`,
            error,
            false,
          );
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    const read = result as { content?: unknown; structuredContent?: unknown; isError?: unknown };
    // A tool error: the model reads it as an error result, its text (the error's message) first.
    // Its structured content is the error's, not the output schema's: it is not checked.
    if (read.isError === true) {
      const text = contentText(read.content);
      const structured = read.structuredContent;
      throw new Error(
        text.trim() !== ""
          ? text
          : typeof structured === "object" && structured !== null
            ? JSON.stringify(structured)
            : `MCP tool ${tool} of server "${this.name}" reported an error (with no message)`,
      );
    }
    const check = this.#outputChecks.get(tool);
    if (check !== undefined && read.structuredContent !== undefined) {
      const checked = check(read.structuredContent);
      if (!checked.valid) {
        throw this.#error(
          `MCP tool ${tool} of server "${this.name}" failed: its structured content does not match the tool's output schema: ${checked.errorMessage}`,
          undefined,
          false,
        );
      }
    }
    return outputOf(read);
  }
}

/**
 * A tool of a `tools/list` page as the SDK's schema reads it, or, for one it refuses (no name,
 * an input schema that is not an object's), the tool's name and why. An input schema without
 * `type` is an object's, as a provider's function parameters are: `type: "object"` is added. An
 * output schema the SDK refuses is dropped (the tool's output is then not checked).
 */
function readTool(tool: unknown): ServerTool | LeftOut {
  if (typeof tool !== "object" || tool === null || Array.isArray(tool)) {
    return { tool: "(no name)", reason: "it is not an object" };
  }
  const schema = (tool as { inputSchema?: unknown }).inputSchema;
  const untyped =
    typeof schema === "object" && schema !== null && !Array.isArray(schema) && !("type" in schema);
  const read: Record<string, unknown> = untyped
    ? { ...tool, inputSchema: { type: "object", ...schema } }
    : { ...tool };
  let parsed = ToolSchema.safeParse(read);
  if (!parsed.success && read.outputSchema !== undefined) {
    delete read.outputSchema;
    parsed = ToolSchema.safeParse(read);
  }
  if (parsed.success) return parsed.data as unknown as ServerTool;
  const name = (tool as { name?: unknown }).name;
  const issue = parsed.error.issues[0];
  const where = issue === undefined || issue.path.length === 0 ? "" : `${issue.path.join(".")}: `;
  return {
    tool: typeof name === "string" ? name : "(no name)",
    reason: `the MCP SDK's schema refuses it (${where}${issue?.message ?? "invalid"})`,
  };
}

/**
 * The SDK's JSON Schema validator (of tools' `outputSchema`), except that a schema it cannot
 * compile (a `$ref` to nothing) checks nothing, instead of failing the whole tool list.
 */
const lenientValidator: jsonSchemaValidator = {
  getValidator<T>(schema: Parameters<jsonSchemaValidator["getValidator"]>[0]) {
    try {
      ajv ??= new AjvJsonSchemaValidator();
      return ajv.getValidator<T>(schema);
    } catch {
      return (input: unknown) => ({ valid: true, data: input as T, errorMessage: undefined });
    }
  },
};
let ajv: AjvJsonSchemaValidator | undefined;

/** A validator that takes anything: the SDK's own check of structured content is not used. */
const acceptingValidator: jsonSchemaValidator = {
  getValidator<T>(): JsonSchemaValidator<T> {
    return (input) => ({ valid: true, data: input as T, errorMessage: undefined });
  },
};

/**
 * A stdio server's transport: on POSIX its process leads a process group of its own, and
 * `stop()` ends the whole group (a server under `npx` or a shell script is several
 * processes); on Windows, the MCP SDK's transport.
 */
function stdioTransport(options: Extract<McpTransportOptions, { command: string }>) {
  const params = {
    command: options.command,
    ...(options.args === undefined ? {} : { args: options.args }),
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  };
  return process.platform === "win32"
    ? new StdioClientTransport({ ...params, stderr: "ignore" })
    : new ProcessGroupStdioTransport(params);
}

function httpTransport(options: Extract<McpTransportOptions, { url: string }>) {
  return new StreamableHTTPClientTransport(new URL(options.url), {
    ...(options.headers === undefined ? {} : { requestInit: { headers: options.headers } }),
    // A cancelled call's response, which the server leaves unanswered, is closed.
    fetch: closingCancelledFetch(),
  });
}

/**
 * An error's message, with what it leaves out: a Streamable HTTP error's status (`HTTP 401:
 * ...`), a network error's cause (`fetch failed (connect ECONNREFUSED ...)`).
 */
function reason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof StreamableHTTPError && typeof error.code === "number" && error.code >= 100) {
    return `HTTP ${error.code}: ${message}`;
  }
  const cause =
    error instanceof Error ? (error.cause as { message?: unknown; code?: unknown }) : undefined;
  const detail =
    typeof cause?.message === "string" && cause.message !== ""
      ? cause.message
      : typeof cause?.code === "string"
        ? cause.code
        : undefined;
  return detail === undefined || message.includes(detail) ? message : `${message} (${detail})`;
}

/**
 * A tool result as the model reads it: its content as text; with structured content, that
 * alone when the text is only its JSON (as the MCP specification asks a server to send along,
 * "Structured Content"), else both, `{ content, structuredContent }`; with the content's images
 * as images (`toolResult`). The tool layer checks each image (type, base64, size): one it
 * refuses becomes a note in the text, `[image image/png not shown: …]`.
 */
function outputOf(result: {
  content?: unknown;
  structuredContent?: unknown;
}): JsonValue | ToolResultWithImages {
  const structured = result.structuredContent;
  let output: JsonValue;
  if (typeof structured === "object" && structured !== null) {
    // Text blocks that are the structured content's JSON say nothing more: left out.
    const parts = (Array.isArray(result.content) ? result.content : []).filter(
      (part: unknown) => !isJsonOf(part, structured),
    );
    const text = contentText(parts, false);
    output =
      text.trim() === ""
        ? (structured as JsonObject)
        : { content: text, structuredContent: structured as JsonObject };
  } else {
    output = contentText(result.content, false);
  }
  const images = (Array.isArray(result.content) ? result.content : [])
    .filter((part: unknown) => (part as { type?: unknown } | null)?.type === "image")
    .map((part: Record<string, unknown>) => ({
      type: "image" as const,
      mediaType: typeof part.mimeType === "string" ? part.mimeType : "",
      data: typeof part.data === "string" ? part.data : "",
    }));
  return images.length === 0 ? output : toolResult(output, { images });
}

/**
 * A tool result's content as text; an image as `[image <type>]` when `images` is true (in an
 * error's message), else left out (it goes to the model as an image).
 */
function contentText(content: unknown, images = true): string {
  const parts = Array.isArray(content) ? content : [];
  const texts: string[] = [];
  for (const part of parts as Array<Record<string, unknown> | null>) {
    switch (part?.type) {
      case "text":
        texts.push(String(part.text ?? ""));
        break;
      case "image":
        if (images) texts.push(`[image ${String(part.mimeType ?? "")}]`);
        break;
      case "audio":
        texts.push(`[audio ${String(part.mimeType ?? "")}]`);
        break;
      case "resource": {
        const resource = (part.resource ?? {}) as Record<string, unknown>;
        texts.push(
          typeof resource.text === "string"
            ? resource.text
            : `[resource ${String(resource.uri ?? "")}]`,
        );
        break;
      }
      case "resource_link":
        texts.push(`[resource ${String(part.uri ?? "")}]`);
        break;
      default:
        texts.push("");
    }
  }
  return texts.join("\n");
}

function checkOptions(options: McpToolServerOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError("McpToolServer needs options { name, command | url }");
  }
  if (typeof options.name !== "string" || !NAME.test(options.name)) {
    throw new InvalidArgumentError(
      `McpToolServer name must match ${NAME.source}, got ${JSON.stringify(options.name)}`,
    );
  }
  const hasCommand = "command" in options && options.command !== undefined;
  const hasUrl = "url" in options && options.url !== undefined;
  if (hasCommand === hasUrl) {
    throw new InvalidArgumentError(
      `McpToolServer "${options.name}" needs either a command (stdio) or a url (Streamable HTTP)`,
    );
  }
  if (hasCommand && (typeof options.command !== "string" || options.command.length === 0)) {
    throw new InvalidArgumentError(
      `McpToolServer "${options.name}": command must be a non-empty string`,
    );
  }
  if (hasCommand && options.args !== undefined) {
    if (!Array.isArray(options.args) || !options.args.every((a) => typeof a === "string")) {
      throw new InvalidArgumentError(`McpToolServer "${options.name}": args must be strings`);
    }
  }
  if (hasCommand) {
    const { env, cwd } = options as Extract<McpTransportOptions, { command: string }>;
    if (env !== undefined) checkEnv(options.name, env);
    if (cwd !== undefined && (typeof cwd !== "string" || cwd === "" || cwd.includes("\0"))) {
      throw new McpConfigError(options.name, "cwd", "must be a directory's path (a string)");
    }
  }
  if (hasUrl) {
    const { url, headers } = options as Extract<McpTransportOptions, { url: string }>;
    checkUrl(options.name, url);
    if (headers !== undefined) checkHeaders(options.name, headers);
  }
  if (options.include !== undefined) {
    if (!Array.isArray(options.include) || !options.include.every((t) => typeof t === "string")) {
      throw new InvalidArgumentError(`McpToolServer "${options.name}": include must be tool names`);
    }
  }
  if (
    options.approval !== undefined &&
    !["inherit", "always", "never"].includes(options.approval as string)
  ) {
    throw new InvalidArgumentError(
      `McpToolServer "${options.name}": approval must be inherit, always or never`,
    );
  }
  for (const key of ["timeoutMs", "connectTimeoutMs"] as const) {
    const value = options[key];
    if (value !== undefined && !(Number.isInteger(value) && value > 0 && value <= 2_147_483_647)) {
      throw new InvalidArgumentError(
        `McpToolServer "${options.name}": ${key} must be a positive integer of ms, got ${JSON.stringify(value)}`,
      );
    }
  }
}

/**
 * Checks that `value` (the option `field`) is an object of names matching `names` (`what`
 * they are) to strings, and returns its entries. A value is never put in a message: it is
 * often a secret (an `Authorization` header, a token in `env`).
 */
function stringRecord(
  server: string,
  field: string,
  value: unknown,
  names: RegExp,
  what: string,
): Array<[string, string]> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new McpConfigError(server, field, `must be an object of ${what} names to strings`);
  }
  for (const [name, entry] of Object.entries(value)) {
    if (!names.test(name)) {
      throw new McpConfigError(
        server,
        field,
        `has a name that is no ${what}'s, ${JSON.stringify(name)} (it must match ${names.source})`,
      );
    }
    if (typeof entry !== "string") {
      throw new McpConfigError(server, field, `${name} must be a string, got ${typeof entry}`);
    }
  }
  return Object.entries(value as Record<string, string>);
}

/** A portable environment variable name (POSIX): a letter or `_`, then letters, digits, `_`. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `env`: names of variables, each with a string without NUL (no process could be given one). */
function checkEnv(server: string, env: unknown): void {
  for (const [name, value] of stringRecord(server, "env", env, ENV_NAME, "environment variable")) {
    if (value.includes("\0")) {
      throw new McpConfigError(server, "env", `${name} holds a NUL character`);
    }
  }
}

/** An HTTP header's name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * `headers`: names that are tokens, values that `fetch` can send (no CR, LF or NUL, which
 * would end a header or split it, and no character beyond U+00FF).
 */
function checkHeaders(server: string, headers: unknown): void {
  for (const [name, value] of stringRecord(
    server,
    "headers",
    headers,
    HEADER_NAME,
    "HTTP header",
  )) {
    if (/[\r\n\0]/.test(value)) {
      throw new McpConfigError(server, "headers", `${name} holds a CR, LF or NUL character`);
    }
    if (/[\u0100-\u{10ffff}]/u.test(value)) {
      throw new McpConfigError(
        server,
        "headers",
        `${name} holds a character beyond U+00FF, which no HTTP header can carry`,
      );
    }
  }
}

/**
 * `url`: an http(s) URL without credentials (`user:pass@`: they belong in `headers`, an
 * `Authorization` header; `fetch` refuses them, and they would show in messages). A URL that
 * does not parse is not echoed whole: redacted, as every message here is.
 */
function checkUrl(server: string, value: unknown): void {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new McpConfigError(server, "url", `is not a URL: ${redact(JSON.stringify(value))}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new McpConfigError(server, "url", "must be http(s)");
  }
  if (url.username !== "" || url.password !== "") {
    throw new McpConfigError(
      server,
      "url",
      `must not hold credentials (user:password@): set an Authorization header in headers instead, e.g. headers: { Authorization: "Basic ..." } (url: ${redactUrl(url)})`,
    );
  }
}

/** `url` with its userinfo and its query's values replaced by `***`. */
function redactUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.username !== "") copy.username = "***";
  if (copy.password !== "") copy.password = "***";
  if (copy.search !== "") {
    const names = [...new URLSearchParams(copy.search).keys()];
    copy.search = names.map((name) => `${encodeURIComponent(name)}=***`).join("&");
  }
  return copy.href;
}

/**
 * `text` with what a URL in it could give away: the userinfo (`user:pass@`) and the query's
 * values of every `scheme://` URL, and (not parsed) the userinfo of what looks like one. Every
 * message of an error here passes through it.
 */
function redact(text: string): string {
  return text
    .replace(/\b[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^\s"'<>`]+/g, (match) => {
      try {
        const url = new URL(match);
        // Nothing to hide: left as written.
        return url.username === "" && url.password === "" && url.search === ""
          ? match
          : redactUrl(url);
      } catch {
        return match.replace(/\/\/[^/?#\s]*@/, "//***@").replace(/\?[^#\s]*/, "?***");
      }
    })
    .replace(/\/\/[^/?#\s@"'<>]*:[^/?#\s@"'<>]*@/g, "//***@");
}

/** How deep {@link redactedCopy} copies (nested causes, arrays, objects); deeper is left out. */
const MAX_COPY_DEPTH = 8;

/**
 * A copy of `value` (an error's cause) that is safe to log whole, each string passed through
 * `hide`: an error is copied as an error of the same class (see {@link McpError}); arrays and
 * plain objects are copied; other objects, functions and what is nested deeper than
 * {@link MAX_COPY_DEPTH} are left out (undefined).
 */
function redactedCopy(
  value: unknown,
  hide: (text: string) => string,
  depth = 0,
  copies = new Map<object, unknown>(),
): unknown {
  if (typeof value === "string") return hide(value);
  if (typeof value === "function") return undefined;
  if (typeof value !== "object" || value === null) return value;
  if (copies.has(value)) return copies.get(value);
  if (depth > MAX_COPY_DEPTH) return undefined;
  if (value instanceof Error || types.isNativeError(value)) {
    return copyError(value, hide, depth, copies);
  }
  if (Array.isArray(value)) {
    const copy: unknown[] = [];
    copies.set(value, copy);
    for (const item of value) copy.push(redactedCopy(item, hide, depth + 1, copies));
    return copy;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return undefined;
  const copy: Record<string, unknown> = Object.create(prototype);
  copies.set(value, copy);
  for (const [key, item] of Object.entries(value)) {
    const copied = redactedCopy(item, hide, depth + 1, copies);
    if (copied !== undefined || item === undefined) copy[key] = copied;
  }
  return copy;
}

/**
 * `error` copied (see {@link redactedCopy}): a native error with `error`'s prototype, its
 * message and stack hidden, its own fields copied as they are (enumerable or not; a getter is
 * left out), and its `name` and `code` own fields (a class may read them from what a copy has
 * not, a `DOMException`).
 */
function copyError(
  error: Error,
  hide: (text: string) => string,
  depth: number,
  copies: Map<object, unknown>,
): Error {
  const copy = new Error(hide(String(read(error, "message") ?? "")));
  copies.set(error, copy);
  for (const key of Reflect.ownKeys(error)) {
    if (key === "message") continue;
    const descriptor = Object.getOwnPropertyDescriptor(error, key);
    if (descriptor === undefined || !("value" in descriptor)) continue;
    const value = redactedCopy(descriptor.value, hide, depth + 1, copies);
    if (value === undefined && descriptor.value !== undefined) continue;
    Object.defineProperty(copy, key, { ...descriptor, value });
  }
  // Its own stack or none: never the copy's (which names this function).
  if (!Object.hasOwn(error, "stack")) delete copy.stack;
  for (const key of ["name", "code"] as const) {
    const value = read(error, key);
    if (Object.hasOwn(copy, key) || !["string", "number"].includes(typeof value)) continue;
    const copied = typeof value === "string" ? hide(value) : value;
    Object.defineProperty(copy, key, { value: copied, writable: true, configurable: true });
  }
  Object.setPrototypeOf(copy, Object.getPrototypeOf(error));
  return copy;
}

/** `object[key]`, or undefined when reading it throws (a getter of another class's). */
function read(object: object, key: string): unknown {
  try {
    return (object as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}

/**
 * A tool's name as a model calls it: the `.` and `/` that MCP allows in a tool's name
 * (`admin.tools.list`, `user-profile/update`) and no model API does become `_`.
 */
function modelName(tool: string): string {
  return tool.replace(/[./]/g, "_");
}

/**
 * `description` cut to {@link MAX_DESCRIPTION_BYTES} bytes of UTF-8 (marker included, at a
 * character's boundary), ending with the marker; as it is when it fits.
 */
function capDescription(description: string): string {
  if (Buffer.byteLength(description) <= MAX_DESCRIPTION_BYTES) return description;
  let budget = MAX_DESCRIPTION_BYTES - Buffer.byteLength(DESCRIPTION_MARKER);
  let cut = "";
  for (const char of description) {
    budget -= Buffer.byteLength(char);
    if (budget < 0) break;
    cut += char;
  }
  return `${cut}${DESCRIPTION_MARKER}`;
}

/** Whether `part` is a text block whose text is `value`'s JSON (however it is spaced). */
function isJsonOf(part: unknown, value: unknown): boolean {
  const text = (part as { type?: unknown; text?: unknown } | null)?.text;
  if ((part as { type?: unknown } | null)?.type !== "text" || typeof text !== "string") {
    return false;
  }
  try {
    return sameJson(JSON.parse(text), value);
  } catch {
    return false;
  }
}

/** Whether two JSON values are equal (objects whatever the order of their keys). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = Object.keys(left);
  return (
    keys.length === Object.keys(right).length &&
    keys.every((key) => Object.hasOwn(right, key) && sameJson(left[key], right[key]))
  );
}
