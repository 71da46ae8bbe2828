// BeamClaw gateway dashboard.
//
// Plain modern JavaScript, no framework and no build step: the page is small enough that
// a framework would add more code than it saves. It talks to the gateway over OpenClaw's
// gateway WebSocket protocol (v4) on the origin that served it: it waits for the
// `connect.challenge` event, sends a `connect` request with the token, then uses ordinary
// requests (`sessions.list`, `sessions.search`, `chat.send`, `exec.approval.resolve`, ...)
// and listens to events (`chat`, `sessions.changed`, `session.message`, `exec.approval.*`,
// `presence`, `cron`, `tick`).
//
// Rules kept throughout: server data only ever reaches the DOM through `textContent` and
// attributes (never `innerHTML`), the token lives in `sessionStorage` only, nothing is
// loaded from another origin, and no inline script or style is used (so a strict CSP holds).

const PROTOCOL_VERSION = 4;
const TOKEN_KEY = "beamclaw.gateway.token";
const SELECTED_KEY = "beamclaw.dashboard.session";
const REQUEST_TIMEOUT_MS = 20_000;
const CHALLENGE_WAIT_MS = 2_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15_000;
const SCOPES = ["operator.read", "operator.write", "operator.admin", "operator.approvals"];
/** Hits one search asks for: the most `sessions.search` answers. */
const SEARCH_LIMIT = 25;
/** Quiet time after typing before the search runs (Enter runs it at once). */
const SEARCH_DEBOUNCE_MS = 300;
/** Messages of the page around a search hit (`chat.history` with `messageId`). */
const AROUND_LIMIT = 50;
/**
 * The most bubbles (messages and tool calls) the chat log keeps: beyond it the oldest are
 * dropped, with a note, so that a tab left open on a busy session does not grow without end.
 */
const CHAT_LOG_LIMIT = 500;
/**
 * Close codes that, before the handshake completed, mean "this client will not get in as it
 * is": protocol mismatch, policy violation (bad credentials), unauthorized.
 */
const REFUSAL_CLOSE_CODES = new Set([1002, 1008, 4001, 4003, 4401, 4403]);

// ---------------------------------------------------------------------------------------
// Small helpers

/** @param {string} id */
function $(id) {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`dashboard markup is missing #${id}`);
  return el;
}

/**
 * Creates an element. Strings and numbers among `children` become text nodes, so server
 * data passed here is always text, never markup.
 * @param {string} tag
 * @param {Record<string, string | boolean | undefined> | null} [attrs]
 * @param {...(Node | string | number | null | undefined | false)} children
 */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === false) continue;
      if (name === "class") el.className = String(value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** @param {unknown} value @returns {value is Record<string, unknown>} */
function isRecord(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** @param {unknown} value */
function str(value) {
  return typeof value === "string" ? value : "";
}

/** @param {unknown} value */
function num(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

/** A random id; `crypto.randomUUID` is missing outside secure contexts (plain http on a LAN). */
function newId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const numberFormat = new Intl.NumberFormat();
const costFormat = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 4,
});

/** @param {number | undefined} ms */
function formatTime(ms) {
  if (ms === undefined || ms <= 0) return "—";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

/** @param {number | undefined} ms */
function formatAgo(ms) {
  if (ms === undefined || ms <= 0) return "";
  const seconds = Math.round((Date.now() - ms) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

/** @param {number} ms */
function formatDuration(ms) {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}

/** The text of a chat message: a string, `{ text }`, or `{ content: string | parts[] }`. */
function messageText(message) {
  if (typeof message === "string") return message;
  if (!isRecord(message)) return "";
  if (typeof message.text === "string") return message.text;
  const content = message.content;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (isRecord(part) && part.type === "text" ? str(part.text) : ""))
      .join("");
  }
  return "";
}

/** Tool calls in a message's content parts, as `name` strings. */
function messageToolCalls(message) {
  if (!isRecord(message) || !Array.isArray(message.content)) return [];
  const out = [];
  for (const part of message.content) {
    if (!isRecord(part)) continue;
    if (part.type === "tool-call" || part.type === "toolCall" || part.type === "tool_use") {
      out.push(str(part.toolName) || str(part.name) || "tool");
    }
  }
  return out;
}

/** @param {unknown} value */
function prettyJson(value) {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** Reads an array out of a response that may be the array itself or wrap it in a field. */
function listFrom(payload, ...fields) {
  if (Array.isArray(payload)) return payload;
  if (!isRecord(payload)) return [];
  for (const field of fields) {
    if (Array.isArray(payload[field])) return payload[field];
  }
  return [];
}

// ---------------------------------------------------------------------------------------
// Gateway client: the WebSocket, the handshake, requests and reconnects

class GatewayRequestError extends Error {
  /**
   * @param {string} code @param {string} message @param {unknown} [details]
   * @param {boolean} [retryable]
   */
  constructor(code, message, details, retryable = false) {
    super(message);
    this.name = "GatewayRequestError";
    this.code = code;
    this.details = details;
    this.retryable = retryable;
  }
}

/**
 * One logical connection to the gateway. It reconnects with exponential backoff (with
 * jitter) after a connection drops, but never after the gateway refused the credentials.
 */
class GatewayClient {
  /**
   * @param {{
   *   url: string,
   *   token: string,
   *   onState: (state: string, detail: string) => void,
   *   onHello: (hello: Record<string, unknown>, isReconnect: boolean) => void,
   *   onEvent: (event: string, payload: unknown) => void,
   *   onAuthError: (message: string) => void,
   * }} options
   */
  constructor(options) {
    this.options = options;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {Map<string, { resolve: (v: unknown) => void, reject: (e: Error) => void, timer: number }>} */
    this.pending = new Map();
    this.stopped = false;
    this.attempt = 0;
    this.everConnected = false;
    this.connected = false;
    this.reconnectTimer = 0;
    this.countdownTimer = 0;
    this.challengeTimer = 0;
    this.tickTimer = 0;
    this.tickIntervalMs = 30_000;
    this.lastTickAt = 0;
    this.connectSent = false;
    this.nextRequest = 1;
  }

  start() {
    this.stopped = false;
    this.#open();
  }

  stop() {
    this.stopped = true;
    this.connected = false;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.countdownTimer);
    clearTimeout(this.challengeTimer);
    clearInterval(this.tickTimer);
    this.#failPending(new GatewayRequestError("CLOSED", "disconnected"));
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "client logout");
    }
    this.options.onState("disconnected", "Not connected");
  }

  /**
   * Sends a request; resolves with the response payload or rejects with a
   * `GatewayRequestError` carrying the gateway's error code and message.
   * @param {string} method
   * @param {unknown} [params]
   */
  request(method, params) {
    if (!this.connected || this.ws === null) {
      return Promise.reject(new GatewayRequestError("UNAVAILABLE", "not connected to the gateway"));
    }
    return this.#send(method, params);
  }

  #send(method, params) {
    const id = `dash-${this.nextRequest++}`;
    const ws = this.ws;
    // A socket that began closing (the gateway went away) is not written to: the browser
    // would drop the frame and only warn on the console.
    if (ws === null || ws === undefined || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new GatewayRequestError("UNAVAILABLE", "not connected to the gateway"));
    }
    return new Promise((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this.pending.delete(id);
        reject(new GatewayRequestError("TIMEOUT", `${method} got no answer in time`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      const frame = { type: "req", id, method };
      if (params !== undefined) frame.params = params;
      try {
        ws.send(JSON.stringify(frame));
      } catch (error) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new GatewayRequestError("UNAVAILABLE", String(error)));
      }
    });
  }

  #open() {
    const { url } = this.options;
    this.connectSent = false;
    this.options.onState(
      this.everConnected ? "reconnecting" : "connecting",
      this.everConnected ? "Reconnecting…" : "Connecting…",
    );
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (error) {
      this.options.onAuthError(`Cannot open a WebSocket to ${url}: ${String(error)}`);
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      this.options.onState("authenticating", "Authenticating…");
      // The gateway starts with a `connect.challenge` event; connect without its nonce if
      // it does not come (an older gateway).
      this.challengeTimer = window.setTimeout(() => this.#sendConnect(), CHALLENGE_WAIT_MS);
    });
    ws.addEventListener("message", (message) => {
      if (this.ws !== ws) return;
      this.#onFrame(message.data);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.#onClose(event.code, event.reason);
    });
  }

  /** Token auth signs nothing, so the challenge's nonce is not needed (device identity would). */
  #sendConnect() {
    if (this.connectSent || this.ws === null) return;
    this.connectSent = true;
    clearTimeout(this.challengeTimer);
    const params = {
      minProtocol: PROTOCOL_VERSION,
      maxProtocol: PROTOCOL_VERSION,
      client: {
        id: "openclaw-control-ui",
        displayName: "BeamClaw dashboard",
        version: "0.0.0",
        platform: "web",
        mode: "ui",
        instanceId: instanceId(),
        timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone || undefined,
      },
      role: "operator",
      scopes: SCOPES,
      caps: [],
      auth: { token: this.options.token },
      locale: navigator.language,
      userAgent: navigator.userAgent,
    };
    this.#send("connect", params).then(
      (hello) => this.#onHello(isRecord(hello) ? hello : {}),
      (error) => {
        if (error.code === "CLOSED") return;
        // A busy or starting gateway says so (`retryable`); try again later with backoff.
        if (error.code === "TIMEOUT" || error.retryable) {
          this.ws?.close(4000, "connect retry");
          return;
        }
        this.#refused(error.message || "the gateway refused the connection");
      },
    );
  }

  #onHello(hello) {
    const isReconnect = this.everConnected;
    this.everConnected = true;
    this.connected = true;
    this.attempt = 0;
    const policy = isRecord(hello.policy) ? hello.policy : {};
    this.tickIntervalMs = num(policy.tickIntervalMs) ?? 30_000;
    this.lastTickAt = Date.now();
    clearInterval(this.tickTimer);
    // No tick for more than two intervals: the connection is dead even if TCP has not noticed.
    this.tickTimer = window.setInterval(
      () => {
        if (Date.now() - this.lastTickAt > this.tickIntervalMs * 2.5)
          this.ws?.close(4000, "tick timeout");
      },
      Math.max(1000, this.tickIntervalMs),
    );
    this.options.onState("connected", "Connected");
    this.options.onHello(hello, isReconnect);
  }

  #refused(message) {
    this.stopped = true;
    this.connected = false;
    clearInterval(this.tickTimer);
    this.options.onAuthError(message);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "auth failed");
    }
    this.#failPending(new GatewayRequestError("CLOSED", "disconnected"));
    this.options.onState("disconnected", "Not connected");
  }

  #onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : "");
    } catch {
      return;
    }
    if (!isRecord(frame)) return;
    if (frame.type === "res" && typeof frame.id === "string") {
      const waiter = this.pending.get(frame.id);
      if (!waiter) return;
      this.pending.delete(frame.id);
      clearTimeout(waiter.timer);
      if (frame.ok === true) waiter.resolve(frame.payload);
      else {
        const error = isRecord(frame.error) ? frame.error : {};
        waiter.reject(
          new GatewayRequestError(
            str(error.code) || "ERROR",
            str(error.message) || "request failed",
            error.details,
            error.retryable === true,
          ),
        );
      }
      return;
    }
    if (frame.type !== "event" || typeof frame.event !== "string") return;
    if (frame.event === "connect.challenge") {
      this.#sendConnect();
      return;
    }
    if (!this.connected) return;
    if (frame.event === "tick") this.lastTickAt = Date.now();
    this.options.onEvent(frame.event, frame.payload);
  }

  #onClose(code, reason) {
    const wasConnected = this.connected;
    this.connected = false;
    clearTimeout(this.challengeTimer);
    clearInterval(this.tickTimer);
    this.#failPending(new GatewayRequestError("CLOSED", "connection closed"));
    if (this.stopped) return;
    if (!wasConnected && REFUSAL_CLOSE_CODES.has(code)) {
      this.#refused(reason || `the gateway closed the connection (code ${code})`);
      return;
    }
    this.#scheduleReconnect(code, reason);
  }

  #scheduleReconnect(code, reason) {
    const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = Math.round(exp * (0.8 + Math.random() * 0.4));
    this.attempt++;
    const due = Date.now() + delay;
    const why = reason ? ` (${reason})` : code && code !== 1006 ? ` (code ${code})` : "";
    const show = () => {
      const seconds = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      this.options.onState(
        "reconnecting",
        `Connection lost${why}; retrying in ${seconds} s (attempt ${this.attempt})`,
      );
    };
    show();
    clearInterval(this.countdownTimer);
    this.countdownTimer = window.setInterval(show, 1000);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = window.setTimeout(() => {
      clearInterval(this.countdownTimer);
      if (!this.stopped) this.#open();
    }, delay);
  }

  /** Reconnects now (the user asked to), skipping the rest of the backoff wait. */
  retryNow() {
    if (this.stopped || this.connected || this.ws !== null) return;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.countdownTimer);
    this.#open();
  }

  #failPending(error) {
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
      this.pending.delete(id);
    }
  }
}

/** A per-tab id, so the gateway's presence list can tell two dashboard tabs apart. */
function instanceId() {
  let id = sessionStorage.getItem("beamclaw.dashboard.instance");
  if (!id) {
    id = newId();
    sessionStorage.setItem("beamclaw.dashboard.instance", id);
  }
  return id;
}

function gatewayUrl() {
  const meta = document.querySelector('meta[name="beamclaw-ws-path"]');
  const path = meta?.getAttribute("content") || "/";
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path.startsWith("/") ? path : `/${path}`}`;
}

// ---------------------------------------------------------------------------------------
// Page state

const state = {
  /** @type {GatewayClient | null} */
  client: null,
  /** @type {Record<string, unknown> | null} */
  hello: null,
  /** @type {Map<string, Record<string, unknown>>} key -> session row */
  sessions: new Map(),
  /** @type {Map<string, { state: string, runId?: string, at: number }>} live run status per session */
  live: new Map(),
  selected: "",
  /**
   * The answers the chat log shows streaming, by run id. `interrupted`: the connection dropped
   * while it streamed; its run's next event says whether anything was missed. `own`: it answers
   * a message this tab sent (already on screen).
   * @type {Map<string, { el: HTMLElement, body: HTMLElement, note: HTMLElement, text: string, seq: number, done: boolean, interrupted?: boolean, own?: boolean }>}
   */
  streams: new Map(),
  /** An assistant bubble for a message this tab sent, before its run id is known. */
  /** @type {{ el: HTMLElement, body: HTMLElement, note: HTMLElement, text: string, seq: number, done: boolean, idempotencyKey: string, own: true } | null} */
  pendingStream: null,
  /** @type {string | null} run id of the run this tab is following in the selected session */
  activeRunId: null,
  /** A `sessions.rewind` of this tab is under way (Regenerate, Edit last message). */
  rewinding: false,
  /** @type {number | null} when the gateway process connected to started (from its uptime) */
  gatewayStartedAt: null,
  /**
   * The user bubbles of messages this tab sent, by `chat.send` idempotency key, until the
   * gateway's `session.message` for them names that key as its `clientRunId`.
   * @type {Map<string, HTMLElement>}
   */
  sent: new Map(),
  /**
   * The session this connection follows (`sessions.messages.subscribe`); `ready` settles when
   * the gateway has answered.
   * @type {{ key: string, ready: Promise<void> }}
   */
  follow: { key: "", ready: Promise.resolve() },
  /**
   * User messages drawn from `session.message` events while a history load is on its way
   * (`null` when none is): the history may have been read before they were saved.
   * @type {HTMLElement[] | null}
   */
  arrivals: null,
  /** @type {Map<string, { el: HTMLElement, note: HTMLElement }>} tool-call lines by toolCallId */
  tools: new Map(),
  /** @type {Map<string, { id: string, tool: string, input: unknown, sessionKey: string, expiresAt?: number, createdAt?: number }>} */
  approvals: new Map(),
  /** @type {Record<string, unknown>[]} */
  presence: [],
  reloadTimers: new Map(),
  /** @type {Map<string, string>} agent id -> how its answers are signed (`agents.list` identity) */
  agentLabels: new Map(),
  /** The default agent's id (`agents.list` `defaultId`): cron sessions run as it. */
  defaultAgentId: "main",
  /**
   * The chat log shows the page around a search hit instead of the latest messages: live
   * events of the session are not drawn into it until the user goes back to the latest.
   * @type {{ sessionKey: string, messageId: string } | null}
   */
  around: null,
  /** Bubbles dropped from the top of the chat log since it was last cleared (see `trimChatLog`). */
  droppedBubbles: 0,
  /** Counts history loads, so only the latest one's answer reaches the chat log. */
  historyLoads: 0,
  /** The search box: the latest search's number (older answers are dropped) and its timer. */
  search: { seq: 0, timer: 0 },
};

// ---------------------------------------------------------------------------------------
// Connection state and login

function setConnectionState(kind, text) {
  const el = $("connection");
  el.dataset.state = kind;
  $("connection-text").textContent = text;
  const online = kind === "connected";
  for (const id of ["chat-input", "chat-send"]) {
    /** @type {HTMLInputElement} */ ($(id)).disabled = !online || state.selected === "";
  }
  updateAbortButton();
  $("reconnect").hidden = kind !== "reconnecting" || state.client === null;
  document.body.dataset.connection = kind;
}

function showLoginError(message) {
  const el = $("login-error");
  el.textContent = message;
  el.hidden = message === "";
}

function showApp(visible) {
  $("login-view").hidden = visible;
  $("app-view").hidden = !visible;
  $("logout").hidden = !visible;
}

function setLoginBusy(busy) {
  const button = /** @type {HTMLButtonElement} */ ($("login-submit"));
  button.disabled = busy;
  button.textContent = busy ? "Connecting…" : "Connect";
}

function login(token) {
  state.client?.stop();
  showLoginError("");
  setLoginBusy(true);
  sessionStorage.setItem(TOKEN_KEY, token);
  const client = new GatewayClient({
    url: gatewayUrl(),
    token,
    onState: (kind, text) => {
      if (state.client === client) setConnectionState(kind, text);
    },
    onHello: (hello, isReconnect) => {
      if (state.client !== client) return;
      state.hello = hello;
      setLoginBusy(false);
      /** @type {HTMLInputElement} */ ($("token")).value = "";
      showApp(true);
      onConnected(isReconnect);
    },
    onEvent: (event, payload) => {
      if (state.client === client) onEvent(event, payload);
    },
    onAuthError: (message) => {
      if (state.client !== client) return;
      state.client = null;
      setConnectionState("disconnected", "Not connected");
      sessionStorage.removeItem(TOKEN_KEY);
      setLoginBusy(false);
      resetApp();
      showApp(false);
      showLoginError(`Login failed: ${message}. Check the gateway token and try again.`);
      $("token").focus();
    },
  });
  state.client = client;
  client.start();
}

function logout() {
  const client = state.client;
  state.client = null;
  client?.stop();
  sessionStorage.removeItem(TOKEN_KEY);
  resetApp();
  showApp(false);
  setConnectionState("disconnected", "Not connected");
  showLoginError("");
  $("token").focus();
}

function resetApp() {
  state.hello = null;
  state.sessions.clear();
  state.live.clear();
  state.streams.clear();
  state.tools.clear();
  state.pendingStream = null;
  state.activeRunId = null;
  state.sent.clear();
  undrawn.clear();
  state.follow = { key: "", ready: Promise.resolve() };
  state.gatewayStartedAt = null;
  state.approvals.clear();
  state.presence = [];
  clearChatLog();
  showAround(null);
  clearSearch();
  renderSessions();
  renderApprovals();
  renderPresence();
  clearPanels();
}

/** Empties the cron, nodes and usage panels: nothing a gateway showed outlives its login. */
function clearPanels() {
  sessionUsageLoadedAt = 0;
  for (const id of [
    "cron-body",
    "nodes-list",
    "usage-body",
    "usage-providers",
    "usage-sessions-body",
    "usage-log-list",
  ]) {
    $(id).replaceChildren();
  }
  $("usage-log").hidden = true;
  for (const id of ["cron-table", "usage-table", "usage-sessions-table"]) $(id).hidden = true;
  for (const [id, text] of [
    ["cron-empty", "No cron jobs."],
    ["nodes-empty", "No nodes paired."],
    ["usage-empty", "No usage recorded."],
    ["usage-sessions-empty", "No session used a model in the last 7 days."],
  ]) {
    $(id).textContent = text;
    $(id).hidden = false;
  }
  $("cron-message").textContent = "";
}

/** @param {boolean} isReconnect */
function onConnected(isReconnect) {
  const hello = state.hello ?? {};
  // A new connection follows no session yet.
  state.follow = { key: "", ready: Promise.resolve() };
  // When the gateway process started, as its uptime says: another time is another process.
  const snapshotUptime = isRecord(hello.snapshot) ? num(hello.snapshot.uptimeMs) : undefined;
  const startedAt = snapshotUptime === undefined ? null : Date.now() - snapshotUptime;
  const sameGateway =
    startedAt !== null &&
    state.gatewayStartedAt !== null &&
    Math.abs(startedAt - state.gatewayStartedAt) < 2_000;
  state.gatewayStartedAt = startedAt;
  if (isReconnect) {
    // Events may have been missed while disconnected. An answer that was streaming stays, and
    // goes on in its bubble if its run still does (`checkInterrupted` asks the gateway).
    let following = false;
    for (const [runId, stream] of state.streams) {
      if (stream.done) continue;
      stream.interrupted = true;
      stream.note.textContent = "Connection lost; catching up…";
      stream.note.hidden = false;
      if (runId === state.activeRunId) following = true;
    }
    state.pendingStream = null;
    if (!following) state.activeRunId = null;
    state.live.clear();
    updateAbortButton();
    setRunState("");
  }
  const snapshot = isRecord(hello.snapshot) ? hello.snapshot : {};
  state.presence = listFrom(snapshot.presence);
  renderPresence();
  const defaults = isRecord(snapshot.sessionDefaults) ? snapshot.sessionDefaults : {};
  if (state.selected === "") {
    const remembered = sessionStorage.getItem(SELECTED_KEY);
    const fallback = str(defaults.mainSessionKey) || "agent:main:main";
    selectSession(remembered || fallback, { loadHistory: false });
  }
  followSelected();
  /** @type {HTMLInputElement} */ ($("new-session-key")).placeholder =
    str(defaults.mainSessionKey) || "agent:main:main";
  const client = state.client;
  client?.request("sessions.subscribe", {}).catch(() => undefined);
  void Promise.allSettled([
    loadSessions(),
    loadApprovals(),
    loadCron(),
    loadNodes(),
    loadPresence(),
    loadUsage({ sessions: true }),
    loadAgents(),
    loadHistory(),
    checkInterrupted(sameGateway),
  ]);
}

/**
 * After a reconnect: ends the answers whose runs ended while the connection was down (their
 * final event was missed), and shows the history as stored in their place. An answer whose
 * run is still going waits for its next event. `agent.wait` (`timeoutMs: 0`) says whether the
 * gateway saw the run end; it answers `timeout` for a run still going but also for one it no
 * longer remembers (a busy gateway trims them), so the session's stored state
 * (`sessions.describe`) has the last word: a run it does not show running has ended. A new
 * session whose first message is not saved yet has no stored state, and `agent.wait` alone
 * decides.
 * @param {boolean} sameGateway the gateway answering now is the process that ran them
 */
async function checkInterrupted(sameGateway) {
  const client = state.client;
  const key = state.selected;
  const waiting = [...state.streams].filter(([, s]) => s.interrupted === true && !s.done);
  if (!client || key === "" || waiting.length === 0) return;
  // Another gateway (or this one restarted) does not have the runs: none is going.
  let going = waiting.map(() => false);
  if (sameGateway) {
    const [row, ...unfinished] = await Promise.all([
      client.request("sessions.describe", { key }).then(
        (res) => (isRecord(res) && isRecord(res.session) ? res.session : null),
        () => null,
      ),
      ...waiting.map(([runId]) =>
        runId === "_"
          ? false
          : client.request("agent.wait", { runId, timeoutMs: 0 }).then(
              (res) => isRecord(res) && res.status === "timeout",
              // Not answered (an older gateway): not followed; the history shows it.
              () => false,
            ),
      ),
    ]);
    const runningNow = row === null ? null : row.status === "running" ? str(row.lastRunId) : "";
    going = waiting.map(
      ([runId], i) => unfinished[i] === true && (runningNow === null || runningNow === runId),
    );
  }
  if (key !== state.selected) return;
  let ended = false;
  waiting.forEach(([, stream], i) => {
    // Its events came meanwhile, or it is still going.
    if (stream.done || stream.interrupted !== true || going[i]) return;
    stream.interrupted = false;
    finishStream(stream, "aborted", "Ended while the connection was down; reloaded from history.");
    ended = true;
  });
  if (ended) reloadSoon("history", loadHistory);
}

/**
 * The first event of an answer's run after a reconnect: without a gap in its `seq`, nothing
 * was missed and the answer goes on; with one, the text so far is kept, marked, until the
 * run's final event brings it whole.
 * @param {{ note: HTMLElement, text: string, interrupted?: boolean }} stream
 * @param {boolean} continuous the event follows the last one shown
 */
function resumeStream(stream, continuous) {
  stream.interrupted = false;
  if (continuous) {
    stream.note.textContent = "";
    stream.note.hidden = true;
  } else {
    if (stream.text !== "") stream.text += " … ";
    stream.note.textContent =
      "Part of this answer was missed while the connection was down; it shows whole when it ends.";
    stream.note.hidden = false;
  }
}

// ---------------------------------------------------------------------------------------
// Events

function onEvent(event, payload) {
  switch (event) {
    case "chat":
      onChatEvent(payload);
      break;
    case "agent":
      onAgentEvent(payload);
      break;
    case "sessions.changed":
      onSessionsChanged(payload);
      break;
    case "session.message":
      onSessionsChanged(payload);
      onSessionMessage(payload);
      break;
    case "exec.approval.requested":
    case "plugin.approval.requested":
      onApprovalRequested(payload);
      break;
    case "exec.approval.resolved":
    case "plugin.approval.resolved":
      onApprovalResolved(payload);
      break;
    case "presence":
      onPresence(payload);
      break;
    case "cron":
      reloadSoon("cron", loadCron);
      break;
    case "node.pair.requested":
    case "node.pair.resolved":
    case "node.connected":
    case "node.disconnected":
      reloadSoon("nodes", loadNodes);
      break;
    case "shutdown": {
      const p = isRecord(payload) ? payload : {};
      setConnectionState(
        "reconnecting",
        `Gateway is shutting down${p.reason ? ` (${str(p.reason)})` : ""}`,
      );
      break;
    }
    default:
      break;
  }
}

/** Coalesces bursts of change events into one reload. */
function reloadSoon(name, load, delayMs = 150) {
  if (state.reloadTimers.has(name)) return;
  state.reloadTimers.set(
    name,
    window.setTimeout(() => {
      state.reloadTimers.delete(name);
      void load();
    }, delayMs),
  );
}

function onSessionsChanged(payload) {
  const p = isRecord(payload) ? payload : {};
  const row = isRecord(p.session) ? p.session : isRecord(p.entry) ? p.entry : null;
  const key = str(p.sessionKey) || str(p.key) || str(row?.key);
  if (row && key) {
    state.sessions.set(key, { ...(state.sessions.get(key) ?? {}), ...row, key });
    renderSessions();
  }
  reloadSoon("sessions", loadSessions);
  reloadSoon("usage", loadUsage, 1000);
  // Another tab (or client) rewrote the history this tab shows.
  const reason = str(p.reason);
  if (
    key === state.selected &&
    (reason === "rewound" || reason === "reset" || reason === "compacted") &&
    !state.rewinding &&
    state.around === null
  ) {
    reloadSoon("history", loadHistory);
  }
}

function setLive(sessionKey, liveState, runId) {
  if (!sessionKey) return;
  const before = state.live.get(sessionKey)?.state;
  state.live.set(sessionKey, { state: liveState, runId, at: Date.now() });
  let added = false;
  if (!state.sessions.has(sessionKey)) {
    state.sessions.set(sessionKey, { key: sessionKey, updatedAt: Date.now() });
    reloadSoon("sessions", loadSessions);
    added = true;
  }
  // Deltas arrive many times a second; redraw the list only when something changed.
  if (added || before !== liveState) renderSessions();
}

function onChatEvent(payload) {
  if (!isRecord(payload)) return;
  const sessionKey = str(payload.sessionKey);
  const runId = str(payload.runId);
  const chatState = str(payload.state);
  if (chatState === "delta" || chatState === "status") {
    const waiting = [...state.approvals.values()].some((a) => a.sessionKey === sessionKey);
    setLive(sessionKey, waiting ? "awaiting approval" : "streaming", runId);
  } else if (chatState === "final") setLive(sessionKey, "idle", runId);
  else if (chatState === "aborted") setLive(sessionKey, "aborted", runId);
  else if (chatState === "error") setLive(sessionKey, "error", runId);

  // The log shows an earlier page (a search hit): the run shows when the user goes back.
  if (sessionKey !== state.selected || chatState === "" || state.around !== null) return;
  const stream = streamFor(runId);
  if (stream === null) return;
  const seq = num(payload.seq);
  if (seq !== undefined && seq <= stream.seq && chatState === "delta") return;
  if (stream.interrupted === true)
    resumeStream(stream, seq !== undefined && seq === stream.seq + 1);
  if (seq !== undefined) stream.seq = seq;
  switch (chatState) {
    case "status":
      setRunState("Starting…");
      break;
    case "delta": {
      if (stream.done) return;
      if (typeof payload.deltaText === "string") {
        stream.text =
          payload.replace === true ? payload.deltaText : stream.text + payload.deltaText;
      } else {
        const full = messageText(payload.message);
        if (full !== "") stream.text = full;
      }
      drawSoon(stream);
      if (stream.el.dataset.state !== "streaming") {
        stream.el.dataset.state = "streaming";
        stream.el.setAttribute("aria-busy", "true");
      }
      if (!hasPendingApproval(sessionKey)) setRunState("Streaming…");
      break;
    }
    case "final": {
      const full = messageText(payload.message);
      if (full !== "") stream.text = full;
      drawNow(stream);
      const tools = messageToolCalls(payload.message);
      if (tools.length > 0 && stream.text === "")
        stream.body.textContent = `(called ${tools.join(", ")})`;
      finishStream(stream, "final", "");
      setRunState("Done.");
      // A run this tab did not start (another client, a channel, cron): show the session's
      // history as stored (its user message too, on a gateway that does not send it live).
      if (runId && stream.own !== true) reloadSoon("history", loadHistory, 200);
      break;
    }
    case "aborted": {
      const full = messageText(payload.message);
      if (full !== "") stream.text = full;
      drawNow(stream);
      finishStream(stream, "aborted", str(payload.errorMessage) || "Stopped before it finished.");
      setRunState("Stopped.");
      break;
    }
    case "error": {
      const message = str(payload.errorMessage) || "The run failed.";
      finishStream(stream, "error", `Error: ${message}`);
      setRunState(`Failed: ${message}`);
      break;
    }
    default:
      break;
  }
}

/**
 * Tool activity of a run (`agent` events, streams `tool` and `approval`): a line per tool
 * call, placed before the run's answer, saying when it waits for approval and how it ended.
 */
function onAgentEvent(payload) {
  if (!isRecord(payload) || !isRecord(payload.data)) return;
  const data = payload.data;
  const stream = str(payload.stream);
  if (str(data.sessionKey) !== state.selected || state.around !== null) return;
  if (stream !== "tool" && stream !== "approval") return;
  const toolCallId = str(data.toolCallId);
  if (toolCallId === "") return;
  let tool = state.tools.get(toolCallId);
  const phase = str(data.phase);
  if (tool === undefined) {
    if (phase !== "start" && phase !== "requested") return;
    const name = str(data.name) || "tool";
    const args = data.args === undefined ? "" : compactJson(data.args);
    const body = h("div", { class: "bubble-body" }, args === "" ? name : `${name} ${args}`);
    const note = h("p", { class: "bubble-note" }, "running…");
    const el = h(
      "article",
      {
        class: "bubble bubble-tool",
        "data-role": "tool",
        "data-state": "running",
        "data-run-id": str(payload.runId) || undefined,
      },
      h("h3", { class: "bubble-author" }, "Tool call"),
      body,
      note,
    );
    // Before the run's answer bubble while it is still empty, so the log reads in order.
    const answer = state.streams.get(str(payload.runId)) ?? state.pendingStream;
    if (answer && !answer.done && answer.text === "") answer.el.before(el);
    else $("chat-log").append(el);
    tool = { el, note };
    state.tools.set(toolCallId, tool);
    trimChatLog();
  }
  if (phase === "requested") {
    tool.el.dataset.state = "awaiting-approval";
    tool.note.textContent = "waiting for approval…";
  } else if (phase === "result") {
    const failed = data.isError === true;
    tool.el.dataset.state = failed ? "error" : "done";
    const output = data.result === undefined ? "" : compactJson(data.result);
    tool.note.textContent = `${failed ? "failed" : "done"}${output ? `: ${truncate(output, 300)}` : ""}`;
  }
  scrollChat();
}

/** @param {unknown} value */
function compactJson(value) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** @param {string} text @param {number} max */
function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function hasPendingApproval(sessionKey) {
  for (const approval of state.approvals.values()) {
    if (approval.sessionKey === sessionKey) return true;
  }
  return false;
}

/** The assistant bubble for a run of the selected session, made on its first event. */
function streamFor(runId) {
  const key = runId || "_";
  const existing = state.streams.get(key);
  if (existing) return existing;
  let stream;
  if (state.pendingStream && (state.activeRunId === null || state.activeRunId === runId)) {
    // The first event of the message this tab sent (it can beat the `chat.send` response).
    stream = state.pendingStream;
    state.pendingStream = null;
    if (!state.activeRunId) state.activeRunId = runId || null;
  } else {
    stream = makeBubble("assistant", "");
  }
  if (runId) stream.el.dataset.runId = runId;
  state.streams.set(key, stream);
  return stream;
}

/** Streams whose text changed since they were last drawn. */
const undrawn = new Set();
let drawFrame = 0;

/**
 * Draws a stream's text at the next frame, once however many deltas arrive before it: a
 * delta drawn at once (and the log scrolled, which lays the page out) would make a fast
 * stream's cost grow with its length times its deltas, and freeze the page.
 */
function drawSoon(stream) {
  undrawn.add(stream);
  if (drawFrame === 0) drawFrame = window.requestAnimationFrame(drawStreams);
}

function drawStreams() {
  drawFrame = 0;
  for (const stream of undrawn) drawNow(stream);
  scrollChat();
}

/** Shows a stream's text as it is now. */
function drawNow(stream) {
  undrawn.delete(stream);
  stream.body.textContent = stream.text;
}

function finishStream(stream, finalState, note) {
  if (undrawn.has(stream)) drawNow(stream);
  stream.done = true;
  stream.el.dataset.state = finalState;
  stream.el.removeAttribute("aria-busy");
  stream.note.textContent = note;
  stream.note.hidden = note === "";
  for (const [runId, s] of state.streams) {
    if (s === stream && runId === state.activeRunId) state.activeRunId = null;
  }
  if (state.pendingStream === null && state.activeRunId === null) updateAbortButton();
  scrollChat();
}

function onApprovalRequested(payload) {
  const approval = parseApproval(payload);
  if (approval === null) return;
  state.approvals.set(approval.id, approval);
  renderApprovals();
  if (approval.sessionKey) setLive(approval.sessionKey, "awaiting approval");
  if (approval.sessionKey === state.selected) {
    setRunState(`Waiting for approval to run ${approval.tool}.`);
  }
}

function onApprovalResolved(payload) {
  const p = isRecord(payload) ? payload : {};
  const id = str(p.id) || str(p.requestId) || str(p.approvalId);
  const approval = state.approvals.get(id);
  if (!approval) return;
  state.approvals.delete(id);
  renderApprovals();
  if (approval.sessionKey && state.live.get(approval.sessionKey)?.state === "awaiting approval") {
    setLive(approval.sessionKey, "streaming");
  }
  if (approval.sessionKey === state.selected) {
    const decision = str(p.decision);
    setRunState(
      decision === "deny"
        ? `${approval.tool} was denied.`
        : decision === "allow-once" || decision === "allow-always"
          ? `${approval.tool} approved; running…`
          : `${approval.tool} was not approved in time.`,
    );
  }
}

/**
 * Reads an approval request: OpenClaw's `{ id, request: {...}, createdAtMs, expiresAtMs }`,
 * or the flat form of a BeamClaw `tool-approval-request`.
 */
function parseApproval(payload) {
  if (!isRecord(payload)) return null;
  const request = isRecord(payload.request) ? payload.request : payload;
  const id =
    str(payload.id) || str(payload.requestId) || str(payload.approvalId) || str(request.id);
  if (id === "") return null;
  const tool =
    str(request.toolName) ||
    str(payload.toolName) ||
    str(request.tool) ||
    str(request.display) ||
    str(request.command) ||
    "tool";
  const input =
    request.input ?? request.args ?? request.arguments ?? request.commandArgv ?? request.command;
  return {
    id,
    tool,
    input,
    display: str(request.display) || str(request.commandPreview) || "",
    sessionKey: str(request.sessionKey) || str(payload.sessionKey),
    expiresAt: num(payload.expiresAtMs) ?? num(payload.expiresAt) ?? num(request.expiresAt),
    createdAt: num(payload.createdAtMs) ?? num(payload.createdAt),
  };
}

function onPresence(payload) {
  const list = listFrom(payload, "presence", "entries");
  if (list.length > 0 || Array.isArray(payload) || (isRecord(payload) && "presence" in payload)) {
    state.presence = list;
    renderPresence();
  } else {
    reloadSoon("presence", loadPresence);
  }
  // Nodes come and go with their connections: refresh their connected state too.
  reloadSoon("nodes", loadNodes, 300);
}

// ---------------------------------------------------------------------------------------
// Sessions

async function loadSessions() {
  const client = state.client;
  if (!client) return;
  try {
    const res = await client.request("sessions.list", {});
    const rows = listFrom(res, "sessions", "items");
    const next = new Map();
    for (const row of rows) {
      if (isRecord(row) && typeof row.key === "string") next.set(row.key, row);
    }
    // Keep a session this tab opened that the gateway has not stored yet.
    if (state.selected && !next.has(state.selected) && state.sessions.has(state.selected)) {
      next.set(state.selected, state.sessions.get(state.selected));
    }
    // A session gone from the list (deleted) takes its live status with it.
    for (const key of state.live.keys()) {
      if (!next.has(key)) state.live.delete(key);
    }
    state.sessions = next;
    renderSessions();
  } catch (error) {
    $("sessions-empty").textContent = `Could not load sessions: ${error.message}`;
  }
}

/** A session's name in lists: its label or derived title, else its key. */
function sessionTitle(key) {
  const row = state.sessions.get(key) ?? {};
  return str(row.displayName) || str(row.label) || str(row.derivedTitle) || key;
}

/** The status shown for a session: live events first, then the stored run status. */
function sessionStatus(key, row) {
  const live = state.live.get(key);
  if (live) return live.state;
  const status = str(row.status);
  if (status === "running" || status === "queued") return status;
  if (status === "failed" || status === "timeout") return "error";
  if (status === "killed") return "aborted";
  return "idle";
}

function renderSessions() {
  const list = $("sessions-list");
  const rows = [...state.sessions.values()].sort(
    (a, b) => (num(b.updatedAt) ?? 0) - (num(a.updatedAt) ?? 0),
  );
  $("sessions-empty").hidden = rows.length > 0;
  if (rows.length === 0) $("sessions-empty").textContent = "No sessions yet.";
  // The list is redrawn on live updates: keep keyboard focus on the same session.
  const focused =
    document.activeElement instanceof HTMLElement && list.contains(document.activeElement)
      ? document.activeElement.dataset.sessionKey
      : undefined;
  list.replaceChildren(
    ...rows.map((row) => {
      const key = str(row.key);
      const status = sessionStatus(key, row);
      const title = sessionTitle(key);
      const tokens =
        num(row.totalTokens) ?? (num(row.inputTokens) ?? 0) + (num(row.outputTokens) ?? 0);
      const selected = key === state.selected;
      const button = h(
        "button",
        {
          type: "button",
          class: "session-button",
          "aria-current": selected ? "true" : undefined,
          "data-session-key": key,
        },
        h("span", { class: "session-title" }, title),
        title !== key ? h("span", { class: "session-key" }, key) : null,
        h(
          "span",
          { class: "session-meta" },
          h("span", { class: "status", "data-status": status }, status),
          row.updatedAt ? h("span", null, formatAgo(num(row.updatedAt))) : null,
          tokens > 0 ? h("span", null, `${numberFormat.format(tokens)} tokens`) : null,
        ),
      );
      button.addEventListener("click", () => selectSession(key, { loadHistory: true }));
      return h("li", { "data-session-key": key, "data-status": status }, button);
    }),
  );
  if (focused !== undefined) {
    for (const button of list.querySelectorAll("button[data-session-key]")) {
      if (/** @type {HTMLElement} */ (button).dataset.sessionKey === focused) {
        /** @type {HTMLElement} */ (button).focus();
      }
    }
  }
}

/** Forgets the runs the chat log was following (their streams, tools, state line, error). */
function forgetRuns() {
  state.streams.clear();
  state.tools.clear();
  state.pendingStream = null;
  state.activeRunId = null;
  state.sent.clear();
  updateAbortButton();
  setRunState("");
  showChatError("");
}

/** @param {string} key @param {{ loadHistory: boolean }} options */
function selectSession(key, options) {
  const normalized = key.trim().toLowerCase();
  if (normalized === "") return;
  const changed = normalized !== state.selected;
  state.selected = normalized;
  sessionStorage.setItem(SELECTED_KEY, normalized);
  if (!state.sessions.has(normalized)) state.sessions.set(normalized, { key: normalized });
  $("chat-session").textContent = normalized;
  const online = state.client?.connected === true;
  /** @type {HTMLTextAreaElement} */ ($("chat-input")).disabled = !online;
  /** @type {HTMLButtonElement} */ ($("chat-send")).disabled = !online;
  renderSessions();
  if (changed) {
    forgetRuns();
    clearChatLog();
    followSelected();
    if (options.loadHistory) void loadHistory();
  }
}

/**
 * Follows the selected session's transcript (`sessions.messages.subscribe`), so messages
 * others add to it (a channel's user, a cron job, another tab) arrive as `session.message`
 * events; stops following the one followed before.
 */
function followSelected() {
  const client = state.client;
  const key = state.selected;
  if (!client?.connected || key === state.follow.key) return;
  const previous = state.follow.key;
  if (previous !== "") {
    client.request("sessions.messages.unsubscribe", { key: previous }).catch(() => undefined);
  }
  // Not followed (an older gateway, a key it refuses): the user message of a run this tab
  // did not start shows when the run ends and the history is reloaded.
  const ready =
    key === ""
      ? Promise.resolve()
      : client.request("sessions.messages.subscribe", { key }).then(
          () => undefined,
          () => undefined,
        );
  state.follow = { key, ready };
}

// ---------------------------------------------------------------------------------------
// Chat

/**
 * Replaces the chat log with the selected session's stored history. The answers still
 * streaming in the log (and their tool calls) are kept after it, and go on in their bubbles:
 * what they will say is not stored yet.
 */
async function loadHistory() {
  const client = state.client;
  const key = state.selected;
  if (!client || key === "") return;
  const load = ++state.historyLoads;
  /** @type {HTMLElement[]} */
  const arrived = [];
  state.arrivals = arrived;
  let res;
  try {
    // Follow first: what is saved after the history was read then comes as an event.
    await state.follow.ready;
    res = await client.request("chat.history", { sessionKey: key, limit: 200 });
  } catch (error) {
    if (load === state.historyLoads) state.arrivals = null;
    showChatError(`Could not load the history: ${error.message}`);
    return;
  }
  if (key !== state.selected || load !== state.historyLoads) return;
  state.arrivals = null;
  // Don't replace what is on screen while this tab is following a run.
  if (state.pendingStream || state.activeRunId) return;
  const messages = listFrom(res, "messages", "items", "entries");
  const log = $("chat-log");
  const live = [...state.streams].filter(([, s]) => !s.done && s.el.isConnected);
  const liveRuns = new Set(live.map(([runKey]) => runKey));
  const liveTools = [...state.tools].filter(([, t]) => liveRuns.has(t.el.dataset.runId ?? ""));
  // Their bubbles (answers and tool calls) in the order the log shows them.
  const keep = new Set([...live.map(([, s]) => s.el), ...liveTools.map(([, t]) => t.el)]);
  const kept = [...log.children].filter((el) => keep.has(/** @type {HTMLElement} */ (el)));
  clearChatLog();
  state.streams.clear();
  state.tools.clear();
  showAround(null);
  renderHistory(messages);
  // A message that arrived while the history was on its way and is not in it is newer.
  for (const el of arrived) {
    if (findMessage(el.dataset.messageId ?? "") === null) log.append(el);
  }
  // Still following them: their next events go on in the same bubbles.
  for (const [runKey, stream] of live) state.streams.set(runKey, stream);
  for (const [toolCallId, tool] of liveTools) state.tools.set(toolCallId, tool);
  log.append(...kept);
  for (const [idempotencyKey, el] of state.sent) {
    if (!el.isConnected) state.sent.delete(idempotencyKey);
  }
  trimChatLog();
  scrollChat();
}

/** The bubble of the chat log showing the stored message `messageId`, if one does. */
function findMessage(messageId) {
  if (messageId === "") return null;
  for (const el of $("chat-log").querySelectorAll("article[data-message-id]")) {
    if (/** @type {HTMLElement} */ (el).dataset.messageId === messageId) {
      return /** @type {HTMLElement} */ (el);
    }
  }
  return null;
}

/**
 * A message added to the followed session's transcript (`session.message`), whoever added it.
 * Only a user message is drawn here, before the answer of its run: the assistant's answers
 * come as `chat` events (a `chat.inject` note too), and this tab's own messages are on screen
 * since it sent them (`clientRunId` is their `chat.send` idempotency key).
 */
function onSessionMessage(payload) {
  if (!isRecord(payload) || !isRecord(payload.message)) return;
  // The log shows an earlier page (a search hit): "Back to latest messages" loads them.
  if (str(payload.sessionKey) !== state.selected || state.around !== null) return;
  const message = payload.message;
  if (str(message.role) !== "user") return;
  const messageId = str(payload.messageId) || historyMessageId(message);
  const runId = str(payload.clientRunId);
  const own = runId === "" ? undefined : state.sent.get(runId);
  if (own !== undefined) {
    state.sent.delete(runId);
    if (own.isConnected) {
      if (messageId !== "") own.dataset.messageId = messageId;
      return;
    }
  }
  // Already on screen (a history load read it).
  if (findMessage(messageId) !== null) return;
  const text = messageText(message);
  if (text === "") return;
  const bubble = makeBubble("user", text);
  bubble.done = true;
  bubble.el.dataset.state = "received";
  if (messageId !== "") bubble.el.dataset.messageId = messageId;
  if (runId !== "") {
    // Before what its run has shown already (its tool calls, its answer streaming), unless
    // the run has its user message on screen (this one came in later, steering it).
    const first = [...$("chat-log").querySelectorAll("article[data-run-id]")].find(
      (el) => /** @type {HTMLElement} */ (el).dataset.runId === runId,
    );
    if (first !== undefined && first.getAttribute("data-role") !== "user") first.before(bubble.el);
    bubble.el.dataset.runId = runId;
  }
  state.arrivals?.push(bubble.el);
  scrollChat();
}

/** Appends stored messages (a `chat.history` page) to the chat log, each with its id. */
function renderHistory(messages) {
  for (const message of messages) {
    if (!isRecord(message)) continue;
    const inner = isRecord(message.message) ? message.message : message;
    const role = str(inner.role) || str(message.role) || "assistant";
    if (role === "system") continue;
    const text = messageText(inner);
    const tools = messageToolCalls(inner);
    if (text === "" && tools.length === 0) continue;
    const bubble = makeBubble(role, text === "" ? `(called ${tools.join(", ")})` : text);
    bubble.done = true;
    bubble.el.dataset.state = "history";
    const id = historyMessageId(message) || historyMessageId(inner);
    if (id !== "") bubble.el.dataset.messageId = id;
  }
}

/** The id `chat.history` gives a message (`__openclaw.id`), as search hits name it. */
function historyMessageId(message) {
  return isRecord(message.__openclaw) ? str(message.__openclaw.id) : "";
}

/**
 * Appends a message bubble to the chat log.
 * @param {string} role
 * @param {string} text
 */
function makeBubble(role, text) {
  const label =
    role === "user"
      ? "You"
      : role === "tool" || role === "toolResult"
        ? "Tool"
        : assistantLabel(state.selected);
  const body = h("div", { class: "bubble-body" }, text);
  const note = h("p", { class: "bubble-note" });
  note.hidden = true;
  const el = h(
    "article",
    {
      class: `bubble bubble-${role === "user" ? "user" : role === "assistant" ? "assistant" : "tool"}`,
      "data-role": role,
    },
    h("h3", { class: "bubble-author" }, label),
    body,
    note,
  );
  $("chat-log").append(el);
  trimChatLog();
  scrollChat();
  return { el, body, note, text, seq: -1, done: false };
}

/** Empties the chat log (and forgets that bubbles were dropped from it). */
function clearChatLog() {
  $("chat-log").replaceChildren();
  state.droppedBubbles = 0;
  const note = $("chat-trimmed");
  note.hidden = true;
  note.textContent = "";
}

/**
 * Keeps the chat log to its newest {@link CHAT_LOG_LIMIT} bubbles: the oldest beyond it are
 * removed, with the page's entries for them (answers and tool calls it follows), and a note
 * above the log says how many. An answer still streaming and a message this tab sent that the
 * gateway has not confirmed yet stay, however old.
 */
function trimChatLog() {
  const log = $("chat-log");
  let excess = log.children.length - CHAT_LOG_LIMIT;
  if (excess <= 0) return;
  /** @type {Set<Element>} */
  const live = new Set(state.sent.values());
  for (const stream of state.streams.values()) if (!stream.done) live.add(stream.el);
  if (state.pendingStream) live.add(state.pendingStream.el);
  /** @type {Set<Element>} */
  const dropped = new Set();
  for (let el = log.firstElementChild; el !== null && excess > 0; ) {
    const next = el.nextElementSibling;
    if (!live.has(el)) {
      el.remove();
      dropped.add(el);
      excess--;
    }
    el = next;
  }
  if (dropped.size === 0) return;
  for (const [key, stream] of state.streams) if (dropped.has(stream.el)) state.streams.delete(key);
  for (const [key, tool] of state.tools) if (dropped.has(tool.el)) state.tools.delete(key);
  state.droppedBubbles += dropped.size;
  const count = numberFormat.format(state.droppedBubbles);
  const note = $("chat-trimmed");
  note.textContent = `${count} older ${state.droppedBubbles === 1 ? "message is" : "messages are"} no longer shown here: the chat keeps the newest ${numberFormat.format(CHAT_LOG_LIMIT)}.`;
  note.hidden = false;
}

/**
 * How the answers of `sessionKey`'s agent are signed: its identity's emoji and name
 * (`agents.list`), else "Assistant".
 * @param {string} sessionKey
 */
function assistantLabel(sessionKey) {
  const match = /^agent:([^:]+):/.exec(sessionKey);
  const agentId = match ? match[1] : state.defaultAgentId;
  return state.agentLabels.get(agentId ?? "") ?? "Assistant";
}

/** Loads the agents' identities, and signs the answers on screen with them. */
async function loadAgents() {
  const client = state.client;
  if (!client) return;
  const list = await client.request("agents.list", {});
  if (!isRecord(list)) return;
  state.defaultAgentId = str(list.defaultId) || "main";
  state.agentLabels.clear();
  for (const agent of listFrom(list.agents)) {
    if (!isRecord(agent)) continue;
    const identity = isRecord(agent.identity) ? agent.identity : {};
    const label = [str(identity.emoji), str(identity.name)].filter((p) => p !== "").join(" ");
    if (str(agent.id) !== "" && label !== "") state.agentLabels.set(str(agent.id), label);
  }
  const label = assistantLabel(state.selected);
  for (const author of document.querySelectorAll(
    '#chat-log article[data-role="assistant"] .bubble-author',
  )) {
    author.textContent = label;
  }
}

function scrollChat() {
  const log = $("chat-log");
  log.scrollTop = log.scrollHeight;
}

function setRunState(text) {
  const el = $("chat-run-state");
  if (el.textContent !== text) el.textContent = text;
}

function showChatError(text) {
  const el = $("chat-error");
  el.textContent = text;
  el.hidden = text === "";
}

function updateAbortButton() {
  const busy = state.pendingStream !== null || state.activeRunId !== null;
  const online = state.client?.connected === true;
  /** @type {HTMLButtonElement} */ ($("chat-abort")).disabled = !busy || !online;
  // Taking the last message back needs the session at rest (the gateway says SESSION_BUSY).
  for (const id of ["chat-regenerate", "chat-edit-last"]) {
    /** @type {HTMLButtonElement} */ ($(id)).disabled =
      busy || !online || state.selected === "" || state.rewinding;
  }
}

/**
 * Takes the session's last exchange back (`sessions.rewind`, which answers the message as
 * `editorText`): the question and its answer leave the history. `regenerate` sends the
 * question again at once; `edit` puts it in the message box to be changed and sent.
 * @param {"regenerate" | "edit"} mode
 */
async function rewindLast(mode) {
  const client = state.client;
  const sessionKey = state.selected;
  if (!client || sessionKey === "" || state.rewinding) return;
  showChatError("");
  state.rewinding = true;
  updateAbortButton();
  setRunState(mode === "regenerate" ? "Regenerating…" : "Taking the last message back…");
  let res;
  try {
    // OpenClaw's shape: the run of the user message to take back (the last one).
    const recent = await client.request("chat.history", { sessionKey, limit: 50 });
    const messages = isRecord(recent) && Array.isArray(recent.messages) ? recent.messages : [];
    const lastUser = messages.findLast((m) => isRecord(m) && m.role === "user");
    const entryId = isRecord(lastUser) ? str(lastUser.runId) : "";
    res =
      entryId === "" ? undefined : await client.request("sessions.rewind", { sessionKey, entryId });
  } catch (error) {
    state.rewinding = false;
    updateAbortButton();
    setRunState("");
    showChatError(
      `Could not ${mode === "regenerate" ? "regenerate" : "take the message back"}: ${error.message}`,
    );
    return;
  }
  state.rewinding = false;
  const taken = isRecord(res) && typeof res.editorText === "string";
  const text = taken ? str(res.editorText) : "";
  setRunState(taken ? "" : "Nothing to take back.");
  await loadHistory();
  updateAbortButton();
  if (state.selected !== sessionKey || !taken) return;
  const input = /** @type {HTMLTextAreaElement} */ ($("chat-input"));
  input.value = text;
  if (mode === "regenerate" && text.trim() !== "") await sendMessage();
  else input.focus();
}

async function sendMessage() {
  const client = state.client;
  const input = /** @type {HTMLTextAreaElement} */ ($("chat-input"));
  const text = input.value.trim();
  if (!client || text === "" || state.selected === "") return;
  showChatError("");
  // The answer belongs after the newest messages, not in an earlier page.
  if (state.around !== null) {
    input.value = "";
    await showLatest();
  }
  const sessionKey = state.selected;
  const idempotencyKey = newId();
  const sent = makeBubble("user", text).el;
  sent.dataset.state = "sent";
  sent.dataset.runId = idempotencyKey;
  state.sent.set(idempotencyKey, sent);
  const pending = makeBubble("assistant", "");
  pending.el.dataset.state = "pending";
  pending.el.setAttribute("aria-busy", "true");
  state.pendingStream = { ...pending, idempotencyKey, own: true };
  state.activeRunId = null;
  input.value = "";
  setRunState("Sending…");
  updateAbortButton();
  setLive(sessionKey, "streaming");
  try {
    const res = await client.request("chat.send", { sessionKey, message: text, idempotencyKey });
    const runId = isRecord(res) ? str(res.runId) : "";
    if (state.selected !== sessionKey) return;
    if (runId === "" && state.pendingStream?.idempotencyKey === idempotencyKey) {
      // No run was started (e.g. "/stop" aborts the running reply instead).
      state.pendingStream.el.remove();
      state.pendingStream = null;
      setLive(sessionKey, "idle");
      setRunState(isRecord(res) && res.aborted === true ? "Stopped the running reply." : "");
      updateAbortButton();
      return;
    }
    if (runId !== "") sent.dataset.runId = runId;
    if (state.pendingStream?.idempotencyKey === idempotencyKey && runId !== "") {
      // No event yet: bind the bubble to the run now.
      state.pendingStream.el.dataset.runId = runId;
      state.streams.set(runId, state.pendingStream);
      state.pendingStream = null;
      state.activeRunId = runId;
    } else if (state.activeRunId === null && runId !== "" && state.streams.has(runId)) {
      state.activeRunId = state.streams.get(runId)?.done ? null : runId;
    }
    if ($("chat-run-state").textContent === "Sending…") setRunState("Waiting for the model…");
    updateAbortButton();
  } catch (error) {
    if (state.pendingStream?.idempotencyKey === idempotencyKey) {
      const stream = state.pendingStream;
      state.pendingStream = null;
      finishStream(stream, "error", `Not sent: ${error.message}`);
    }
    input.value = text;
    showChatError(`Could not send: ${error.message}`);
    setRunState("");
    setLive(sessionKey, "idle");
    updateAbortButton();
  }
}

async function abortRun() {
  const client = state.client;
  if (!client || state.selected === "") return;
  const params = { sessionKey: state.selected };
  if (state.activeRunId) params.runId = state.activeRunId;
  const runId = state.activeRunId;
  // The gateway may deliver the run's "aborted" event before this request's response:
  // show "Stopping…" first, so the final state is never overwritten by it.
  setRunState("Stopping…");
  try {
    await client.request("chat.abort", params);
  } catch (error) {
    if (state.activeRunId === runId) setRunState("");
    showChatError(`Could not stop: ${error.message}`);
  }
}

// ---------------------------------------------------------------------------------------
// Search

/** Text as `sessions.search` compares it: accents dropped, lower case (`Zürich` is `zurich`). */
function foldText(text) {
  return text
    .normalize("NFKD")
    .replace(/\p{M}+/gu, "")
    .toLowerCase();
}

/** A query's words, folded, each once: what `sessions.search` looks for. */
function searchWords(query) {
  return [...new Set(foldText(query).split(/\s+/u))].filter((word) => word !== "");
}

/**
 * `text` as text nodes, with every occurrence of the folded `words` (found the way the gateway
 * finds them, case and accents aside) wrapped in a `<mark>`. Nothing in `text` is ever parsed
 * as markup.
 * @param {string} text @param {string[]} words
 * @returns {(string | Node)[]}
 */
function highlighted(text, words) {
  // Fold one code point at a time, remembering where each folded character came from.
  let folded = "";
  /** @type {number[]} */
  const origins = [];
  /** @type {number[]} */
  const widths = [];
  for (let i = 0; i < text.length; ) {
    const char = String.fromCodePoint(/** @type {number} */ (text.codePointAt(i)));
    const f = foldText(char);
    folded += f;
    for (let k = 0; k < f.length; k++) {
      origins.push(i);
      widths.push(char.length);
    }
    i += char.length;
  }
  /** @type {Array<[number, number]>} */
  const ranges = [];
  for (const word of words) {
    for (let at = folded.indexOf(word); at >= 0; at = folded.indexOf(word, at + 1)) {
      const last = at + word.length - 1;
      let end = /** @type {number} */ (origins[last]) + /** @type {number} */ (widths[last]);
      // Accents written as separate marks fold to nothing: keep them with their letter.
      while (end < text.length) {
        const next = String.fromCodePoint(/** @type {number} */ (text.codePointAt(end)));
        if (foldText(next) !== "") break;
        end += next.length;
      }
      ranges.push([/** @type {number} */ (origins[at]), end]);
    }
  }
  ranges.sort((a, b) => a[0] - b[0]);
  /** @type {(string | Node)[]} */
  const out = [];
  let done = 0;
  for (const [start, end] of ranges) {
    if (end <= done) continue;
    const from = Math.max(start, done);
    if (from > done) out.push(text.slice(done, from));
    const last = out.at(-1);
    // Overlapping or touching matches make one mark.
    if (from === done && last instanceof HTMLElement && last.tagName === "MARK") {
      last.append(text.slice(from, end));
    } else out.push(h("mark", null, text.slice(from, end)));
    done = end;
  }
  if (done < text.length) out.push(text.slice(done));
  return out;
}

/** Runs the search box's query after a pause in typing; an empty box clears the results. */
function scheduleSearch() {
  clearTimeout(state.search.timer);
  const query = /** @type {HTMLInputElement} */ ($("search-input")).value;
  if (query.trim() === "") {
    clearSearch({ keepQuery: true });
    return;
  }
  state.search.timer = window.setTimeout(() => void runSearch(query), SEARCH_DEBOUNCE_MS);
}

/** @param {string} query */
async function runSearch(query) {
  clearTimeout(state.search.timer);
  const words = searchWords(query);
  // A query of whitespace only asks for nothing.
  if (words.length === 0) return;
  const client = state.client;
  const seq = ++state.search.seq;
  const list = $("search-results");
  showSearchError("");
  setSearchStatus("Searching…");
  list.setAttribute("aria-busy", "true");
  let res;
  try {
    if (!client) throw new GatewayRequestError("UNAVAILABLE", "not connected to the gateway");
    res = await client.request("sessions.search", { query: query.trim(), limit: SEARCH_LIMIT });
  } catch (error) {
    if (seq !== state.search.seq) return;
    list.removeAttribute("aria-busy");
    list.replaceChildren();
    list.hidden = true;
    setSearchStatus("");
    showSearchError(`Search failed: ${error.message}`);
    return;
  }
  if (seq !== state.search.seq) return;
  list.removeAttribute("aria-busy");
  const hits = listFrom(res, "results")
    .filter(isRecord)
    .map((r) => ({
      sessionKey: str(r.sessionKey) || str(r.sessionId),
      messageId: str(r.messageId),
      role: str(r.role),
      timestamp: num(r.timestamp),
      snippet: str(r.snippet),
    }))
    .filter((hit) => hit.sessionKey !== "" && hit.messageId !== "");
  const truncated = isRecord(res) && res.truncated === true;
  list.replaceChildren(...hits.map((hit) => searchHitItem(hit, words)));
  list.hidden = hits.length === 0;
  const shown = `“${query.trim()}”`;
  const count =
    hits.length === 0
      ? `No results for ${shown}.`
      : `${hits.length} ${hits.length === 1 ? "result" : "results"} for ${shown}.`;
  const more = !truncated
    ? ""
    : hits.length === 0
      ? " Older messages were not searched."
      : " Not every match is shown: add words to narrow the search.";
  setSearchStatus(count + more);
}

/**
 * One hit of the result list: a button that opens its session at the message.
 * @param {{ sessionKey: string, messageId: string, role: string, timestamp: number | undefined, snippet: string }} hit
 * @param {string[]} words
 */
function searchHitItem(hit, words) {
  const title = sessionTitle(hit.sessionKey);
  const author = hit.role === "user" ? "You" : assistantLabel(hit.sessionKey);
  const when = hit.timestamp !== undefined && hit.timestamp > 0 ? hit.timestamp : undefined;
  const button = h(
    "button",
    { type: "button", class: "search-hit", "data-message-id": hit.messageId },
    h("span", { class: "session-title" }, title),
    title !== hit.sessionKey ? h("span", { class: "session-key" }, hit.sessionKey) : null,
    h(
      "span",
      { class: "session-meta" },
      h("span", { class: "search-role", "data-role": hit.role }, author),
      when ? h("time", { datetime: new Date(when).toISOString() }, formatTime(when)) : null,
    ),
    h("span", { class: "search-snippet" }, ...highlighted(hit.snippet, words)),
  );
  button.addEventListener("click", () => {
    for (const other of $("search-results").querySelectorAll(".search-hit")) {
      other.removeAttribute("aria-current");
    }
    button.setAttribute("aria-current", "true");
    void openSearchHit(hit, words);
  });
  return h("li", { "data-session-key": hit.sessionKey, "data-message-id": hit.messageId }, button);
}

function setSearchStatus(text) {
  $("search-status").textContent = text;
  $("search-clear").hidden = text === "" && $("search-error").hidden;
}

function showSearchError(text) {
  const el = $("search-error");
  el.textContent = text;
  el.hidden = text === "";
  $("search-clear").hidden = text === "" && $("search-status").textContent === "";
}

/** Empties the results (and the box, unless `keepQuery`); an answer on its way is dropped. */
function clearSearch(options = { keepQuery: false }) {
  clearTimeout(state.search.timer);
  state.search.seq++;
  if (!options.keepQuery) /** @type {HTMLInputElement} */ ($("search-input")).value = "";
  const list = $("search-results");
  list.removeAttribute("aria-busy");
  list.replaceChildren();
  list.hidden = true;
  showSearchError("");
  setSearchStatus("");
}

/**
 * Opens a search hit: its session, showing the page of history around the message
 * (`chat.history` with `messageId`), the message marked, in view and focused.
 * @param {{ sessionKey: string, messageId: string }} hit
 * @param {string[]} words
 */
async function openSearchHit(hit, words) {
  const client = state.client;
  if (!client) return;
  selectSession(hit.sessionKey, { loadHistory: false });
  const key = state.selected;
  // Stop following runs here: the log shows the past until the user asks for the latest.
  forgetRuns();
  state.around = { sessionKey: key, messageId: hit.messageId };
  const load = ++state.historyLoads;
  let res;
  try {
    res = await client.request("chat.history", {
      sessionKey: key,
      messageId: hit.messageId,
      limit: AROUND_LIMIT,
    });
  } catch (error) {
    if (load !== state.historyLoads || key !== state.selected) return;
    state.around = null;
    await loadHistory();
    showChatError(`Could not open that message: ${error.message}`);
    return;
  }
  if (load !== state.historyLoads || key !== state.selected) return;
  const log = $("chat-log");
  clearChatLog();
  renderHistory(listFrom(res, "messages", "items", "entries"));
  showAround({ newer: (isRecord(res) ? num(res.offset) : undefined) ?? 0 });
  const found = [...log.querySelectorAll("article[data-message-id]")].find(
    (el) => /** @type {HTMLElement} */ (el).dataset.messageId === hit.messageId,
  );
  if (!(found instanceof HTMLElement)) return;
  found.classList.add("bubble-found");
  found.dataset.found = "true";
  found.tabIndex = -1;
  found
    .querySelector(".bubble-author")
    ?.append(h("span", { class: "visually-hidden" }, " (search result)"));
  const body = found.querySelector(".bubble-body");
  if (body) body.replaceChildren(...highlighted(body.textContent ?? "", words));
  found.scrollIntoView({ block: "center" });
  found.focus({ preventScroll: true });
}

/**
 * Shows (or, with `null`, hides) the note that the chat log holds an earlier page of the
 * session, with the button back to the latest messages.
 * @param {{ newer: number } | null} view
 */
function showAround(view) {
  if (view === null) {
    state.around = null;
    for (const hit of $("search-results").querySelectorAll(".search-hit[aria-current]")) {
      hit.removeAttribute("aria-current");
    }
  }
  $("chat-context").hidden = view === null;
  $("chat-context-text").textContent =
    view === null
      ? ""
      : `Showing the conversation around a search result${
          view.newer > 0
            ? `; ${numberFormat.format(view.newer)} newer ${view.newer === 1 ? "message is" : "messages are"} not shown`
            : ""
        }.`;
}

/** Leaves the page around a search hit for the session's latest messages, followed live. */
async function showLatest() {
  if (state.around === null) return;
  showAround(null);
  await loadHistory();
}

/** Arrow keys move between the search box and its hits. */
function onSearchKeydown(event) {
  if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
  const hits = /** @type {HTMLElement[]} */ ([
    ...$("search-results").querySelectorAll(".search-hit"),
  ]);
  if (hits.length === 0) return;
  const at = hits.indexOf(/** @type {HTMLElement} */ (document.activeElement));
  // Up from the box stays there (the caret moves as usual).
  if (at < 0 && event.key === "ArrowUp") return;
  const next = event.key === "ArrowDown" ? Math.min(hits.length - 1, at + 1) : at - 1;
  event.preventDefault();
  if (next < 0) $("search-input").focus();
  else hits[next]?.focus();
}

// ---------------------------------------------------------------------------------------
// Approvals

async function loadApprovals() {
  const client = state.client;
  if (!client) return;
  try {
    const res = await client.request("exec.approval.list", {});
    const next = new Map();
    for (const item of listFrom(res, "approvals", "pending", "items", "requests")) {
      const approval = parseApproval(item);
      if (approval) next.set(approval.id, approval);
    }
    state.approvals = next;
    renderApprovals();
  } catch (error) {
    showApprovalsError(`Could not load approvals: ${error.message}`);
  }
}

function showApprovalsError(text) {
  const el = $("approvals-error");
  el.textContent = text;
  el.hidden = text === "";
}

function renderApprovals() {
  const list = $("approvals-list");
  const template = /** @type {HTMLTemplateElement} */ ($("approval-template"));
  const items = [...state.approvals.values()];
  $("approvals-count").textContent = String(items.length);
  $("approvals-empty").hidden = items.length > 0;
  list.replaceChildren(
    ...items.map((approval) => {
      const fragment = /** @type {DocumentFragment} */ (template.content.cloneNode(true));
      const li = /** @type {HTMLElement} */ (fragment.querySelector("li"));
      li.dataset.approvalId = approval.id;
      li.setAttribute("aria-label", `Approval for ${approval.tool}`);
      /** @type {HTMLElement} */ (li.querySelector(".approval-tool")).textContent = approval.tool;
      /** @type {HTMLElement} */ (li.querySelector(".approval-session")).textContent =
        approval.sessionKey ? `in ${approval.sessionKey}` : "";
      // An exec approval binds to its command (`display`); a tool approval shows its arguments.
      /** @type {HTMLElement} */ (li.querySelector(".approval-input")).textContent =
        approval.display && approval.display !== approval.tool
          ? approval.display
          : prettyJson(approval.input);
      /** @type {HTMLElement} */ (li.querySelector(".approval-expiry")).textContent =
        approval.expiresAt
          ? `Denied automatically at ${new Date(approval.expiresAt).toLocaleTimeString()}`
          : "";
      const group = /** @type {HTMLElement} */ (li.querySelector(".approval-actions"));
      group.setAttribute("aria-label", `Decide on ${approval.tool}`);
      for (const button of li.querySelectorAll("button[data-decision]")) {
        button.addEventListener("click", () =>
          resolveApproval(
            approval.id,
            /** @type {HTMLElement} */ (button).dataset.decision ?? "deny",
            li,
          ),
        );
      }
      return li;
    }),
  );
}

async function resolveApproval(id, decision, li) {
  const client = state.client;
  if (!client) return;
  showApprovalsError("");
  /** @type {HTMLButtonElement} */ for (const button of li.querySelectorAll("button"))
    button.disabled = true;
  try {
    await client.request("exec.approval.resolve", { id, decision });
    onApprovalResolved({ id, decision });
  } catch (error) {
    /** @type {HTMLButtonElement} */ for (const button of li.querySelectorAll("button"))
      button.disabled = false;
    showApprovalsError(`Could not send the decision: ${error.message}`);
    if (error.code === "APPROVAL_NOT_FOUND") {
      // Answered elsewhere or expired: it is no longer waiting.
      state.approvals.delete(id);
      renderApprovals();
    }
  }
}

// ---------------------------------------------------------------------------------------
// Cron

async function loadCron() {
  const client = state.client;
  if (!client) return;
  const body = $("cron-body");
  try {
    const res = await client.request("cron.list", { includeDisabled: true });
    const jobs = listFrom(res, "jobs", "items").filter(isRecord);
    $("cron-empty").hidden = jobs.length > 0;
    $("cron-empty").textContent = "No cron jobs.";
    $("cron-table").hidden = jobs.length === 0;
    body.replaceChildren(...jobs.map(cronRow));
  } catch (error) {
    $("cron-empty").hidden = false;
    $("cron-empty").textContent =
      isRecord(error.details) && error.details.code === "SUBSYSTEM_UNAVAILABLE"
        ? "This gateway has no cron service."
        : `Could not load cron jobs: ${error.message}`;
    $("cron-table").hidden = true;
  }
}

function cronSchedule(schedule) {
  if (typeof schedule === "string") return schedule;
  if (!isRecord(schedule)) return "—";
  switch (schedule.kind ?? schedule.type) {
    case "at":
      return `once at ${str(schedule.at) || formatTime(num(schedule.value))}`;
    case "every": {
      const ms = num(schedule.everyMs) ?? num(schedule.value);
      return ms ? `every ${formatDuration(ms)}` : "every —";
    }
    case "cron":
      return `${str(schedule.expr) || str(schedule.value)}${schedule.tz ? ` (${str(schedule.tz)})` : ""}`;
    default:
      return prettyJson(schedule);
  }
}

function cronRow(job) {
  const id = str(job.id) || str(job.jobId);
  const name = str(job.displayName) || str(job.name) || id;
  const jobState = isRecord(job.state) ? job.state : {};
  const next = num(jobState.nextRunAtMs) ?? num(job.nextRunAtMs) ?? num(job.nextRun);
  const lastAt = num(jobState.lastRunAtMs) ?? num(job.lastRunAtMs);
  const lastStatus = str(jobState.lastRunStatus) || str(jobState.lastStatus) || str(job.lastStatus);
  const running = num(jobState.runningAtMs) !== undefined;
  const button = h(
    "button",
    { type: "button", class: "small", "aria-label": `Run ${name} now` },
    "Run now",
  );
  button.addEventListener("click", async () => {
    const client = state.client;
    if (!client) return;
    button.disabled = true;
    const message = $("cron-message");
    message.textContent = `Starting ${name}…`;
    try {
      await client.request("cron.run", { id, mode: "force" });
      message.textContent = `${name} started.`;
      reloadSoon("cron", loadCron, 500);
    } catch (error) {
      message.textContent = `Could not run ${name}: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });
  return h(
    "tr",
    { "data-job-id": id },
    h(
      "th",
      { scope: "row" },
      h("span", { class: "job-name" }, name),
      job.enabled === false
        ? h("span", { class: "status", "data-status": "disabled" }, "disabled")
        : null,
      h("span", { class: "job-schedule" }, cronSchedule(job.schedule)),
    ),
    h(
      "td",
      null,
      h("span", { class: "run-line" }, "next: ", running ? "running now" : formatTime(next)),
      h(
        "span",
        { class: "run-line" },
        "last: ",
        lastAt ? formatAgo(lastAt) : "never",
        lastStatus ? " " : "",
        lastStatus
          ? h(
              "span",
              { class: "status", "data-status": lastStatus === "ok" ? "idle" : "error" },
              lastStatus,
            )
          : null,
      ),
    ),
    h("td", { class: "actions" }, button),
  );
}

// ---------------------------------------------------------------------------------------
// Nodes and presence

async function loadNodes() {
  const client = state.client;
  if (!client) return;
  const list = $("nodes-list");
  try {
    const res = await client.request("node.list", {});
    const nodes = listFrom(res, "nodes", "items").filter(isRecord);
    $("nodes-empty").hidden = nodes.length > 0;
    $("nodes-empty").textContent = "No nodes paired.";
    list.replaceChildren(
      ...nodes.map((node) => {
        const id = str(node.nodeId) || str(node.id) || str(node.deviceId);
        const name = str(node.displayName) || str(node.name) || id;
        const connected =
          node.connected === true || node.online === true || str(node.status) === "connected";
        return h(
          "li",
          { "data-node-id": id },
          h(
            "span",
            { class: "status", "data-status": connected ? "connected" : "offline" },
            connected ? "connected" : "offline",
          ),
          h("strong", null, name),
          [str(node.platform), str(node.version), name !== id ? id : ""]
            .filter(Boolean)
            .join(" · "),
        );
      }),
    );
  } catch (error) {
    $("nodes-empty").hidden = false;
    $("nodes-empty").textContent = `Could not load nodes: ${error.message}`;
    list.replaceChildren();
  }
}

async function loadPresence() {
  const client = state.client;
  if (!client) return;
  try {
    const res = await client.request("system-presence", {});
    state.presence = listFrom(res, "presence", "entries");
    renderPresence();
  } catch {
    // The hello snapshot already gave a list; keep it.
  }
}

function renderPresence() {
  const entries = state.presence.filter(isRecord);
  $("presence-empty").hidden = entries.length > 0;
  $("presence-list").replaceChildren(
    ...entries.map((entry) => {
      const who = str(entry.host) || str(entry.deviceId) || str(entry.instanceId) || "client";
      const details = [str(entry.mode), str(entry.platform), str(entry.version)]
        .filter(Boolean)
        .join(" · ");
      const since = num(entry.onlineSince) ?? num(entry.ts);
      return h(
        "li",
        null,
        h("strong", null, who),
        details,
        str(entry.text) ? h("span", { class: "muted" }, str(entry.text)) : null,
        since ? h("span", { class: "muted" }, `since ${formatAgo(since)}`) : null,
      );
    }),
  );
}

// ---------------------------------------------------------------------------------------
// Usage

/** Flattens a `usage.cost` answer into rows of day × provider. */
function usageRows(res) {
  const rows = [];
  const push = (day, provider, t) => {
    if (!isRecord(t)) return;
    rows.push({
      day,
      provider: provider || "all",
      calls: num(t.calls) ?? num(t.requests),
      input: num(t.inputTokens) ?? num(t.input) ?? 0,
      output: num(t.outputTokens) ?? num(t.output) ?? 0,
      cost: num(t.costUsd) ?? num(t.totalCost) ?? num(t.cost) ?? 0,
    });
  };
  // Flat rows: [{ day, provider, ...totals }]
  for (const r of listFrom(res, "rows", "byProviderDay", "entries")) {
    if (isRecord(r))
      push(str(r.day) || str(r.date), str(r.provider), isRecord(r.totals) ? r.totals : r);
  }
  if (rows.length > 0) return rows;
  // Daily rows, maybe with a per-provider breakdown: [{ date, providers: {...} | [...] }]
  for (const d of listFrom(res, "daily", "days")) {
    if (!isRecord(d)) continue;
    const day = str(d.date) || str(d.day);
    const providers = d.providers ?? d.byProvider;
    if (Array.isArray(providers)) {
      for (const p of providers) if (isRecord(p)) push(day, str(p.provider) || str(p.id), p);
    } else if (isRecord(providers)) {
      for (const [provider, t] of Object.entries(providers)) push(day, provider, t);
    } else push(day, str(d.provider), d);
  }
  return rows;
}

/** How long the sessions' usage stays as loaded when runs end (it reads their transcripts). */
const SESSION_USAGE_FRESH_MS = 60_000;
let sessionUsageLoadedAt = 0;

/**
 * Reloads the usage card; the sessions' usage too when `sessions` is true (login, Refresh)
 * or it is older than {@link SESSION_USAGE_FRESH_MS}.
 */
async function loadUsage({ sessions = false } = {}) {
  const client = state.client;
  if (!client) return;
  const withSessions = sessions || Date.now() - sessionUsageLoadedAt > SESSION_USAGE_FRESH_MS;
  if (withSessions) sessionUsageLoadedAt = Date.now();
  const [cost, status] = await Promise.allSettled([
    client.request("usage.cost", {}),
    client.request("usage.status", {}),
    withSessions ? loadSessionUsage() : undefined,
  ]);
  if (cost.status === "fulfilled") {
    const rows = usageRows(cost.value).sort((a, b) =>
      a.day === b.day ? a.provider.localeCompare(b.provider) : a.day < b.day ? 1 : -1,
    );
    $("usage-empty").hidden = rows.length > 0;
    $("usage-empty").textContent = "No usage recorded.";
    $("usage-table").hidden = rows.length === 0;
    $("usage-body").replaceChildren(
      ...rows.map((r) =>
        h(
          "tr",
          { "data-provider": r.provider, "data-day": r.day },
          h("th", { scope: "row" }, r.day || "—"),
          h("td", null, r.provider),
          h("td", { class: "num" }, r.calls === undefined ? "—" : numberFormat.format(r.calls)),
          h("td", { class: "num" }, numberFormat.format(r.input)),
          h("td", { class: "num" }, numberFormat.format(r.output)),
          h("td", { class: "num" }, `$${costFormat.format(r.cost)}`),
        ),
      ),
    );
  } else {
    $("usage-empty").hidden = false;
    $("usage-empty").textContent = `Could not load usage: ${cost.reason?.message ?? "error"}`;
    $("usage-table").hidden = true;
  }
  const box = $("usage-providers");
  if (status.status === "fulfilled") {
    const providers = listFrom(status.value, "providers").filter(isRecord);
    box.replaceChildren(
      ...(providers.length > 0 ? [h("h3", null, "Provider status")] : []),
      ...providers.map((p) => {
        const name = str(p.displayName) || str(p.provider) || str(p.id);
        const windows = listFrom(p.windows).filter(isRecord);
        const parts = windows.map((w) => {
          const used = num(w.usedPercent);
          return `${str(w.label) || "window"}: ${used === undefined ? "—" : `${Math.round(used)} % used`}`;
        });
        const today = isRecord(p.today) ? p.today : null;
        if (today) {
          parts.push(
            `today: ${numberFormat.format(num(today.calls) ?? 0)} calls, $${costFormat.format(num(today.costUsd) ?? 0)}`,
          );
        }
        if (str(p.error)) parts.push(`error: ${str(p.error)}`);
        if (str(p.state)) parts.push(str(p.state));
        return h("p", { class: "provider" }, h("strong", null, name), parts.join(" · "));
      }),
    );
  } else box.replaceChildren();
}

/** The sessions that used a model in the last 7 days, costliest first (`sessions.usage`). */
async function loadSessionUsage() {
  const client = state.client;
  if (!client) return;
  let res;
  try {
    res = await client.request("sessions.usage", { range: "7d", agentScope: "all", limit: 20 });
  } catch (error) {
    $("usage-sessions-empty").hidden = false;
    $("usage-sessions-empty").textContent =
      `Could not load session usage: ${error?.message ?? "error"}`;
    $("usage-sessions-table").hidden = true;
    return;
  }
  const rows = listFrom(res, "sessions")
    .filter((s) => isRecord(s) && isRecord(s.usage))
    .map((s) => {
      const u = s.usage;
      const counts = isRecord(u.messageCounts) ? u.messageCounts : {};
      const tools = isRecord(u.toolUsage) ? u.toolUsage : {};
      return {
        key: str(s.key),
        label: str(s.label) || str(s.key),
        messages: num(counts.total) ?? 0,
        toolCalls: num(tools.totalCalls) ?? 0,
        tokens: num(u.totalTokens) ?? 0,
        cost: num(u.totalCost) ?? 0,
        last: num(u.lastActivity),
      };
    })
    .filter((r) => r.key && (r.tokens > 0 || r.messages > 0))
    .sort((a, b) => b.cost - a.cost || b.tokens - a.tokens);
  $("usage-sessions-empty").hidden = rows.length > 0;
  $("usage-sessions-empty").textContent = "No session used a model in the last 7 days.";
  $("usage-sessions-table").hidden = rows.length === 0;
  $("usage-sessions-body").replaceChildren(
    ...rows.map((r) => {
      const open = h("button", { type: "button", class: "link" }, r.label);
      open.addEventListener("click", () => void loadSessionLog(r.key, r.label));
      return h(
        "tr",
        { "data-session-key": r.key },
        h("th", { scope: "row" }, open),
        h("td", { class: "num" }, numberFormat.format(r.messages)),
        h("td", { class: "num" }, numberFormat.format(r.toolCalls)),
        h("td", { class: "num" }, numberFormat.format(r.tokens)),
        h("td", { class: "num" }, `$${costFormat.format(r.cost)}`),
        h("td", null, r.last === undefined ? "—" : formatAgo(r.last)),
      );
    }),
  );
}

/** One session's newest messages with what each answer cost (`sessions.usage.logs`). */
async function loadSessionLog(key, label) {
  const client = state.client;
  if (!client) return;
  const box = $("usage-log");
  box.hidden = false;
  $("usage-log-title").textContent = `Cost log of ${label}`;
  const list = $("usage-log-list");
  try {
    const res = await client.request("sessions.usage.logs", { key, limit: 50 });
    const logs = listFrom(res, "logs").filter(isRecord);
    list.replaceChildren(
      ...logs.map((log) => {
        const tokens = num(log.tokens);
        const cost = num(log.cost);
        return h(
          "li",
          { "data-role": str(log.role) },
          h(
            "span",
            { class: "muted" },
            `${str(log.role)} · ${formatTime(num(log.timestamp) ?? 0)}`,
          ),
          tokens === undefined
            ? null
            : h(
                "span",
                { class: "log-cost" },
                `${numberFormat.format(tokens)} tokens · $${costFormat.format(cost ?? 0)}`,
              ),
          h("pre", { class: "log-text" }, str(log.content)),
        );
      }),
    );
    if (logs.length === 0) list.replaceChildren(h("li", { class: "empty" }, "No messages."));
  } catch (error) {
    list.replaceChildren(
      h("li", { class: "empty" }, `Could not load the messages: ${error?.message ?? "error"}`),
    );
  }
}

// ---------------------------------------------------------------------------------------
// Wiring

function init() {
  // Off in the markup until now: submitted before this script ran, the form would go out as
  // a GET with the token in the URL (history, logs, the Referer of anything it loads).
  /** @type {HTMLButtonElement} */ ($("login-submit")).disabled = false;
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = /** @type {HTMLInputElement} */ ($("token")).value.trim();
    if (token === "") {
      showLoginError("Enter the gateway token.");
      $("token").focus();
      return;
    }
    login(token);
  });
  $("logout").addEventListener("click", logout);
  $("reconnect").addEventListener("click", () => state.client?.retryNow());

  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void sendMessage();
  });
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      void sendMessage();
    }
  });
  $("chat-abort").addEventListener("click", () => void abortRun());
  $("chat-regenerate").addEventListener("click", () => void rewindLast("regenerate"));
  $("chat-edit-last").addEventListener("click", () => void rewindLast("edit"));

  $("new-session-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = /** @type {HTMLInputElement} */ ($("new-session-key"));
    const key = input.value.trim() || input.placeholder;
    input.value = "";
    selectSession(key, { loadHistory: true });
    $("chat-input").focus();
  });
  $("sessions-refresh").addEventListener("click", () => void loadSessions());
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void runSearch(/** @type {HTMLInputElement} */ ($("search-input")).value);
  });
  $("search-input").addEventListener("input", scheduleSearch);
  $("search-input").addEventListener("keydown", onSearchKeydown);
  $("search-results").addEventListener("keydown", onSearchKeydown);
  $("search-clear").addEventListener("click", () => {
    clearSearch();
    $("search-input").focus();
  });
  $("chat-latest").addEventListener("click", async () => {
    await showLatest();
    if (!(/** @type {HTMLTextAreaElement} */ ($("chat-input")).disabled)) $("chat-input").focus();
  });
  $("cron-refresh").addEventListener("click", () => void loadCron());
  $("nodes-refresh").addEventListener("click", () => {
    void loadNodes();
    void loadPresence();
  });
  $("usage-refresh").addEventListener("click", () => void loadUsage({ sessions: true }));

  // Relative times ("3 min ago") age while the page is open.
  window.setInterval(() => {
    if (state.client?.connected) renderSessions();
  }, 30_000);

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved);
  else $("token").focus();
}

init();
