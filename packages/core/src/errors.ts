/**
 * The typed error hierarchy. Every error BeamClaw throws or rejects with is a
 * {@link BeamClawError} carrying a stable string `code`, so callers can branch on
 * `err.code` without `instanceof`, and `XError.isInstance(err)` works even when two copies
 * of `@beamclaw/core` are loaded (a marker on `Symbol.for`, not a class identity check).
 *
 * @example
 * ```ts
 * try {
 *   await actor.call({ type: "get" }, { timeoutMs: 100 });
 * } catch (err) {
 *   if (TimeoutError.isInstance(err)) retryLater();
 *   else if (isBeamClawError(err, "NO_PROCESS")) reconnect();
 *   else throw err;
 * }
 * ```
 */

const MARKER = Symbol.for("beamclaw.error");

/** Every stable error code defined by `@beamclaw/core`. Adapters may add their own. */
export type BeamClawErrorCode =
  | "TIMEOUT"
  | "OVERLOADED"
  | "NO_PROCESS"
  | "CALLING_SELF"
  | "ABORTED"
  | "RUN_TIMEOUT"
  | "ALREADY_STARTED"
  | "ALREADY_REGISTERED"
  | "INVALID_ARGUMENT"
  | "CHILD_NOT_FOUND"
  | "CHILD_START_FAILED"
  | "MAX_CHILDREN"
  | "MAX_RESTART_INTENSITY"
  | "TASK_CRASHED"
  | "PROVIDER_ERROR"
  | "ALL_PROVIDERS_FAILED"
  | "CIRCUIT_OPEN"
  | "STORE_UNAVAILABLE"
  | "STORE_LOCKED"
  | "STORE_CORRUPT"
  | "STORE_CLOSED"
  | "FENCED"
  | "INVALID_SESSION_KEY"
  | "SSRF_BLOCKED"
  | "WEB_FETCH_FAILED"
  | "INVALID_SKILL"
  | "EXEC_REFUSED"
  | "EXEC_ENV_BLOCKED"
  | "SANDBOX_UNAVAILABLE"
  | "NOT_SUPPORTED"
  | "CHANNEL_SEND_FAILED"
  | "CHANNEL_NOT_FOUND"
  | "INVALID_INBOUND"
  | "PAIRING_CODE_INVALID"
  | "PROCESS_NOT_FOUND"
  | "CRON_JOB_NOT_FOUND"
  | "CRON_JOB_EXISTS"
  | "CRON_JOB_RUNNING"
  | "CRON_JOB_COMPLETED"
  | "CRON_CONFIG_NOT_APPLIED"
  | "INVALID_CRON_SCHEDULE"
  | "CLUSTER_NOT_OWNER"
  | "CLUSTER_DRAINING"
  | "CLUSTER_UNREACHABLE"
  | "CLUSTER_NOT_RUNNING"
  | "OUTPUT_INVALID"
  | "OUTPUT_REFUSED"
  | "SESSION_BUSY";

/** Options every BeamClaw error accepts. */
export interface BeamClawErrorOptions {
  /** The underlying error, kept as the standard `Error.cause`. */
  cause?: unknown;
}

/**
 * Base class of every BeamClaw error. `code` is stable across releases; `message` is for
 * people and may change.
 *
 * @example
 * ```ts
 * class QuotaError extends BeamClawError {
 *   constructor(message: string) {
 *     super("QUOTA_EXCEEDED", message);
 *   }
 * }
 * const error = new QuotaError("no credit left");
 * error.code; // "QUOTA_EXCEEDED"
 * isBeamClawError(error, "QUOTA_EXCEEDED"); // true, also for errors from another copy of the package
 * ```
 */
export class BeamClawError extends Error {
  /** Stable machine-readable code. */
  readonly code: string;
  declare readonly [MARKER]: true;

  constructor(code: string, message: string, options?: BeamClawErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
    Object.defineProperty(this, MARKER, { value: true, enumerable: false });
  }

  /**
   * True when `value` is a BeamClaw error from any copy of the library. Subclasses narrow by
   * their own code: `TimeoutError.isInstance(e)` is true only for `code === "TIMEOUT"`.
   */
  static isInstance(value: unknown): value is BeamClawError {
    return isMarked(value);
  }

  /** A plain-object form for logs and wire protocols. */
  toJSON(): { name: string; code: string; message: string } {
    return { name: this.name, code: this.code, message: this.message };
  }
}

function isMarked(value: unknown): value is BeamClawError {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { [MARKER]?: unknown })[MARKER] === true &&
    typeof (value as { code?: unknown }).code === "string"
  );
}

/**
 * True when `value` is a BeamClaw error (from any copy of the library), optionally with the
 * given `code`.
 *
 * @example
 * ```ts
 * try {
 *   await actor.call("get", { timeoutMs: 1_000 });
 * } catch (error) {
 *   if (!isBeamClawError(error, "TIMEOUT")) throw error;
 *   console.log("busy; try again later");
 * }
 * ```
 */
export function isBeamClawError(value: unknown, code?: string): value is BeamClawError {
  return isMarked(value) && (code === undefined || value.code === code);
}

function guard<T extends BeamClawError>(code: string) {
  return (value: unknown): value is T => isMarked(value) && value.code === code;
}

/** A `call`, task or other bounded wait did not finish within its time limit. */
export class TimeoutError extends BeamClawError {
  /** The limit that was exceeded, in milliseconds. */
  readonly timeoutMs: number;
  constructor(message: string, timeoutMs: number, options?: BeamClawErrorOptions) {
    super("TIMEOUT", message, options);
    this.timeoutMs = timeoutMs;
  }
  static override isInstance = guard<TimeoutError>("TIMEOUT");
}

/** Options of {@link OverloadedError}. */
export interface OverloadedErrorOptions extends BeamClawErrorOptions {
  /**
   * A suggested wait before retrying, in ms, when the source can tell when room is likely
   * (a session's queue: when its active run is likely to end). A value that is not a finite
   * number of 0 or more is left out.
   */
  retryAfterMs?: number;
}

/**
 * A bounded queue (an actor's mailbox, a task supervisor's capacity, a session's queue of
 * messages waiting for its run) is full. Retryable: the same request may succeed once the
 * backlog drains; `retryAfterMs`, when set, says how long to wait first (the gateway sends
 * it as `Retry-After`).
 *
 * @example
 * ```ts
 * try {
 *   await session.send("hello");
 * } catch (error) {
 *   if (!OverloadedError.isInstance(error)) throw error;
 *   await sleep(error.retryAfterMs ?? 1_000); // then send it again: nothing was kept
 * }
 * ```
 */
export class OverloadedError extends BeamClawError {
  /** The bound that was hit. */
  readonly limit: number;
  /** Always true: an overload is transient. */
  readonly isRetryable = true;
  /**
   * A suggested wait before retrying, in ms; undefined when the source has no estimate (an
   * actor's mailbox, a task supervisor), and the caller picks its own backoff.
   */
  readonly retryAfterMs: number | undefined;
  constructor(message: string, limit: number, options?: OverloadedErrorOptions) {
    super("OVERLOADED", message, options);
    this.limit = limit;
    const retryAfterMs = options?.retryAfterMs;
    this.retryAfterMs =
      typeof retryAfterMs === "number" && Number.isFinite(retryAfterMs) && retryAfterMs >= 0
        ? retryAfterMs
        : undefined;
  }
  static override isInstance = guard<OverloadedError>("OVERLOADED");
}

/**
 * The target process is not alive: it was never started, has stopped, or stopped while the
 * request was pending. `exitReason` says why it stopped, when known.
 */
export class NoProcessError extends BeamClawError {
  /** The exit reason of the process, when it has exited. */
  readonly exitReason: unknown;
  constructor(message: string, exitReason?: unknown, options?: BeamClawErrorOptions) {
    super("NO_PROCESS", message, options);
    this.exitReason = exitReason;
  }
  static override isInstance = guard<NoProcessError>("NO_PROCESS");
}

/**
 * An actor `call`ed itself: through `this`, through a registered name that resolves to it, or
 * through any other reference to it, from code its handler (or `init`) runs. The call could
 * never be answered (the actor is busy with the handler that waits for the reply), so it is
 * refused at once, as Erlang's `gen_server:call` exits with `calling_self`. Nothing was
 * queued. Use `cast`/`send` for a message to self, or call the logic directly.
 */
export class CallingSelfError extends BeamClawError {
  /** The pid of the actor that called itself. */
  readonly pid: number;
  constructor(message: string, pid: number, options?: BeamClawErrorOptions) {
    super("CALLING_SELF", message, options);
    this.pid = pid;
  }
  static override isInstance = guard<CallingSelfError>("CALLING_SELF");
}

/** Work was cancelled through an `AbortSignal` or because its owner stopped. */
export class AbortedError extends BeamClawError {
  constructor(message: string, options?: BeamClawErrorOptions) {
    super("ABORTED", message, options);
  }
  static override isInstance = guard<AbortedError>("ABORTED");
}

/**
 * A run went past its time limit (`SendOptions.timeoutMs` or `AgentDefinition.timeoutMs`):
 * it was cancelled, its provider request and tools with it, and ended with status `aborted`
 * and this error's `code` and message in its result.
 */
export class RunTimeoutError extends BeamClawError {
  /** The limit the run went past. */
  readonly timeoutMs: number;
  constructor(message: string, timeoutMs: number, options?: BeamClawErrorOptions) {
    super("RUN_TIMEOUT", message, options);
    this.timeoutMs = timeoutMs;
  }
  static override isInstance = guard<RunTimeoutError>("RUN_TIMEOUT");
}

/**
 * A run asked for a structured answer (`SendOptions.output`) did not give one: its answer
 * was not JSON conforming to the schema after every retry (`OUTPUT_INVALID`), or the model
 * refused to answer (`OUTPUT_REFUSED`). A run's result carries the code and message; its
 * `text` keeps the model's last answer.
 */
export class OutputError extends BeamClawError {
  /** What was wrong with the last answer (JSON or schema problems), or the refusal's text. */
  readonly problems: string;
  constructor(
    code: "OUTPUT_INVALID" | "OUTPUT_REFUSED",
    message: string,
    problems: string,
    options?: BeamClawErrorOptions,
  ) {
    super(code, message, options);
    this.problems = problems;
  }
  static override isInstance = (value: unknown): value is OutputError =>
    isMarked(value) && (value.code === "OUTPUT_INVALID" || value.code === "OUTPUT_REFUSED");
}

/**
 * A session request that needs the session at rest (`rewind`) came while a run was active,
 * messages were waiting to run, or a compaction was under way.
 */
export class SessionBusyError extends BeamClawError {
  /** The run that was active, if one was. */
  readonly activeRunId: string | undefined;
  constructor(message: string, activeRunId?: string, options?: BeamClawErrorOptions) {
    super("SESSION_BUSY", message, options);
    this.activeRunId = activeRunId;
  }
  static override isInstance = guard<SessionBusyError>("SESSION_BUSY");
}

/** `start()` was called on something that is already running or has already run. */
export class AlreadyStartedError extends BeamClawError {
  constructor(message: string, options?: BeamClawErrorOptions) {
    super("ALREADY_STARTED", message, options);
  }
  static override isInstance = guard<AlreadyStartedError>("ALREADY_STARTED");
}

/** A unique name is already held by a live process. */
export class AlreadyRegisteredError extends BeamClawError {
  /** The name that is taken. */
  readonly key: unknown;
  constructor(message: string, key: unknown, options?: BeamClawErrorOptions) {
    super("ALREADY_REGISTERED", message, options);
    this.key = key;
  }
  static override isInstance = guard<AlreadyRegisteredError>("ALREADY_REGISTERED");
}

/** An argument or option is invalid; `message` says which and why. */
export class InvalidArgumentError extends BeamClawError {
  constructor(message: string, options?: BeamClawErrorOptions) {
    super("INVALID_ARGUMENT", message, options);
  }
  static override isInstance = guard<InvalidArgumentError>("INVALID_ARGUMENT");
}

/** A supervisor has no child with the given id. */
export class ChildNotFoundError extends BeamClawError {
  readonly childId: string;
  constructor(childId: string, options?: BeamClawErrorOptions) {
    super("CHILD_NOT_FOUND", `no child with id "${childId}"`, options);
    this.childId = childId;
  }
  static override isInstance = guard<ChildNotFoundError>("CHILD_NOT_FOUND");
}

/** A child's `start` function threw or returned something that is not a live process. */
export class ChildStartError extends BeamClawError {
  readonly childId: string;
  constructor(childId: string, cause: unknown) {
    super("CHILD_START_FAILED", `child "${childId}" failed to start: ${describe(cause)}`, {
      cause,
    });
    this.childId = childId;
  }
  static override isInstance = guard<ChildStartError>("CHILD_START_FAILED");
}

/** A dynamic supervisor already runs `maxChildren` children. */
export class MaxChildrenError extends BeamClawError {
  readonly limit: number;
  readonly isRetryable = true;
  constructor(limit: number) {
    super("MAX_CHILDREN", `the supervisor already runs its maximum of ${limit} children`);
    this.limit = limit;
  }
  static override isInstance = guard<MaxChildrenError>("MAX_CHILDREN");
}

/**
 * A supervisor restarted children more than `maxRestarts` times within `periodMs` and gave
 * up. It stops with this error as its exit reason, which its own supervisor sees as a crash.
 */
export class MaxRestartIntensityError extends BeamClawError {
  readonly maxRestarts: number;
  readonly periodMs: number;
  constructor(maxRestarts: number, periodMs: number, lastReason: unknown) {
    super(
      "MAX_RESTART_INTENSITY",
      `reached max restart intensity (${maxRestarts} restarts in ${periodMs} ms); last exit: ${describe(lastReason)}`,
      { cause: lastReason },
    );
    this.maxRestarts = maxRestarts;
    this.periodMs = periodMs;
  }
  static override isInstance = guard<MaxRestartIntensityError>("MAX_RESTART_INTENSITY");
}

/** A supervised task threw something that is not an `Error`; the thrown value is `cause`. */
export class TaskCrashedError extends BeamClawError {
  constructor(message: string, options?: BeamClawErrorOptions) {
    super("TASK_CRASHED", message, options);
  }
  static override isInstance = guard<TaskCrashedError>("TASK_CRASHED");
}

/**
 * What went wrong with a provider call:
 * - `rate_limit` (HTTP 429), `overloaded` (529/503, Anthropic `overloaded_error`), `server`
 *   (other 5xx), `network` (connection refused/reset, cut mid-stream), `timeout`: retryable.
 * - `auth` (401/403), `invalid_request` (400/404/413/422), `malformed_stream` (an event that
 *   cannot be parsed), `unknown`: not retryable.
 */
export type ProviderErrorKind =
  | "rate_limit"
  | "overloaded"
  | "server"
  | "network"
  | "timeout"
  | "auth"
  | "invalid_request"
  | "malformed_stream"
  | "unknown";

/** Details of a {@link ProviderError}. */
export interface ProviderErrorDetails extends BeamClawErrorOptions {
  kind: ProviderErrorKind;
  /** Provider id, e.g. `anthropic`. */
  provider: string;
  model?: string;
  statusCode?: number;
  /** Whether retrying the same request may succeed. Defaults from `kind`. */
  isRetryable?: boolean;
  /** How long the provider asked us to wait (`retry-after`, `retry-after-ms`), in ms. */
  retryAfterMs?: number;
  responseHeaders?: Record<string, string>;
  /** The (possibly truncated) response body, for diagnostics. */
  responseBody?: string;
}

const RETRYABLE_KINDS: ReadonlySet<ProviderErrorKind> = new Set([
  "rate_limit",
  "overloaded",
  "server",
  "network",
  "timeout",
]);

/**
 * A model provider call failed.
 *
 * @example
 * ```ts
 * // In an adapter: say what went wrong, and whether retrying can help.
 * throw new ProviderError("rate limited", {
 *   kind: "rate_limit", // retryable by default
 *   provider: "acme",
 *   statusCode: 429,
 *   retryAfterMs: 2_000,
 * });
 *
 * // In a caller: branch on the kind, not on the message.
 * if (ProviderError.isInstance(error) && error.isRetryable) await sleep(error.retryAfterMs ?? 1_000);
 * ```
 */
export class ProviderError extends BeamClawError {
  readonly kind: ProviderErrorKind;
  readonly provider: string;
  readonly model: string | undefined;
  readonly statusCode: number | undefined;
  readonly isRetryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly responseHeaders: Record<string, string> | undefined;
  readonly responseBody: string | undefined;
  constructor(message: string, details: ProviderErrorDetails) {
    super("PROVIDER_ERROR", message, details);
    this.kind = details.kind;
    this.provider = details.provider;
    this.model = details.model;
    this.statusCode = details.statusCode;
    this.isRetryable = details.isRetryable ?? RETRYABLE_KINDS.has(details.kind);
    this.retryAfterMs = details.retryAfterMs;
    this.responseHeaders = details.responseHeaders;
    this.responseBody = details.responseBody;
  }
  static override isInstance = guard<ProviderError>("PROVIDER_ERROR");
}

/** One failed attempt of a provider chain. */
export interface ProviderAttempt {
  /** `provider/model`. */
  ref: string;
  /** 1-based attempt number for this ref. */
  attempt: number;
  error: unknown;
  /** True when no call was made: the ref's circuit was open (`error` is a `CircuitOpenError`). */
  skipped?: true;
}

/**
 * Every provider of a chain failed (after retries); `attempts` names each one, in order,
 * skips for an open circuit included (`skipped: true`, "skipped" in the message).
 */
export class AllProvidersFailedError extends BeamClawError {
  readonly attempts: readonly ProviderAttempt[];
  constructor(attempts: readonly ProviderAttempt[]) {
    super(
      "ALL_PROVIDERS_FAILED",
      `all providers failed: ${attempts.map((a) => `${a.ref}#${a.attempt}${a.skipped === true ? " skipped" : ""}: ${describe(a.error)}`).join("; ")}`,
      { cause: attempts.at(-1)?.error },
    );
    this.attempts = attempts;
  }
  static override isInstance = guard<AllProvidersFailedError>("ALL_PROVIDERS_FAILED");
}

/** A provider/model's circuit breaker is open: calls fail fast until it half-opens. */
export class CircuitOpenError extends BeamClawError {
  readonly ref: string;
  readonly retryAfterMs: number;
  readonly isRetryable = true;
  constructor(ref: string, retryAfterMs: number) {
    super("CIRCUIT_OPEN", `circuit for ${ref} is open; retry in ${retryAfterMs} ms`);
    this.ref = ref;
    this.retryAfterMs = retryAfterMs;
  }
  static override isInstance = guard<CircuitOpenError>("CIRCUIT_OPEN");
}

/**
 * A store failed. `code` says how:
 * - `STORE_UNAVAILABLE`: the backend cannot be reached (Redis down); retryable. The operation
 *   was not acknowledged: it applied entirely or not at all, which a retry must tolerate.
 * - `STORE_LOCKED`: another process holds the store (store-fs single-writer lock).
 * - `STORE_CORRUPT`: data on disk cannot be read back; the message names the file.
 * - `STORE_CLOSED`: the store was closed.
 */
export class StoreError extends BeamClawError {
  readonly isRetryable: boolean;
  constructor(
    code: "STORE_UNAVAILABLE" | "STORE_LOCKED" | "STORE_CORRUPT" | "STORE_CLOSED",
    message: string,
    options?: BeamClawErrorOptions,
  ) {
    super(code, message, options);
    this.isRetryable = code === "STORE_UNAVAILABLE";
  }
  static override isInstance = (value: unknown): value is StoreError =>
    isMarked(value) && value.code.startsWith("STORE_");
}

/** A write carried a fencing token older than the lock's current one: a stale lock holder. */
export class FencedError extends BeamClawError {
  readonly lock: string;
  readonly token: number;
  readonly currentToken: number;
  constructor(lock: string, token: number, currentToken: number) {
    super("FENCED", `stale fencing token ${token} for lock "${lock}" (current ${currentToken})`);
    this.lock = lock;
    this.token = token;
    this.currentToken = currentToken;
  }
  static override isInstance = guard<FencedError>("FENCED");
}

/** A session key or agent id is malformed; no such key reaches a store. */
export class InvalidSessionKeyError extends BeamClawError {
  readonly key: string;
  constructor(key: string, reason: string) {
    super("INVALID_SESSION_KEY", `invalid session key ${JSON.stringify(key)}: ${reason}`);
    this.key = key;
  }
  static override isInstance = guard<InvalidSessionKeyError>("INVALID_SESSION_KEY");
}

/**
 * Why {@link SsrfBlockedError} refused a URL: a scheme other than http/https, or a host or
 * resolved address in a range a server-side fetch must not reach.
 */
export type SsrfBlockReason =
  | "scheme"
  | "loopback"
  | "private"
  | "link-local"
  | "metadata"
  | "cgnat"
  | "unspecified"
  | "multicast"
  | "broadcast"
  | "reserved";

/**
 * `safeFetch` / `web_fetch` refused a URL (the one asked for, or a redirect it led to)
 * before connecting: its scheme is not http/https, or its host is, or resolves to, a
 * loopback, private, link-local, CGNAT, multicast, reserved or cloud-metadata address that
 * is not on the allowlist. `address` is the offending address when there is one.
 */
export class SsrfBlockedError extends BeamClawError {
  readonly url: string;
  readonly reason: SsrfBlockReason;
  readonly address: string | undefined;
  constructor(url: string, reason: SsrfBlockReason, address?: string) {
    super(
      "SSRF_BLOCKED",
      `refused to fetch ${url}: ${reason === "scheme" ? "only http and https are allowed" : `${address ?? "its host"} is a ${reason} address`}`,
    );
    this.url = url;
    this.reason = reason;
    this.address = address;
  }
  static override isInstance = guard<SsrfBlockedError>("SSRF_BLOCKED");
}

/** What went wrong with a web fetch that the SSRF guard allowed. */
export type WebFetchErrorKind =
  | "dns"
  | "network"
  | "http"
  | "too-many-redirects"
  | "invalid-redirect"
  | "unsupported-content-type";

/** A web fetch failed: the host did not resolve, the connection failed, or the response was unusable. */
export class WebFetchError extends BeamClawError {
  readonly kind: WebFetchErrorKind;
  readonly url: string;
  readonly statusCode: number | undefined;
  constructor(
    kind: WebFetchErrorKind,
    url: string,
    message: string,
    options?: BeamClawErrorOptions & { statusCode?: number },
  ) {
    super("WEB_FETCH_FAILED", message, options);
    this.kind = kind;
    this.url = url;
    this.statusCode = options?.statusCode;
  }
  static override isInstance = guard<WebFetchError>("WEB_FETCH_FAILED");
}

/** A `SKILL.md` cannot be used: `file` names it and `field` the frontmatter field at fault. */
export class InvalidSkillError extends BeamClawError {
  readonly file: string;
  readonly field: string | undefined;
  constructor(
    file: string,
    field: string | undefined,
    problem: string,
    options?: BeamClawErrorOptions,
  ) {
    super(
      "INVALID_SKILL",
      `${file}: ${field === undefined ? "" : `${field}: `}${problem}`,
      options,
    );
    this.file = file;
    this.field = field;
  }
  static override isInstance = guard<InvalidSkillError>("INVALID_SKILL");
}

/**
 * Two skills whose names differ only in case (`Deploy` and `deploy`): skill names are
 * case-insensitive, so only `kept` is loaded and `dropped` is left out. `files` names both
 * `SKILL.md` files, the kept one first.
 */
export class SkillNameClashError extends BeamClawError {
  readonly kept: { name: string; file: string };
  readonly dropped: { name: string; file: string };
  readonly files: [string, string];
  constructor(kept: { name: string; file: string }, dropped: { name: string; file: string }) {
    super(
      "SKILL_NAME_CLASH",
      `skill ${JSON.stringify(dropped.name)} (${dropped.file}) clashes with ${JSON.stringify(kept.name)} (${kept.file}): skill names are case-insensitive; only ${kept.file} is loaded`,
    );
    this.kept = { name: kept.name, file: kept.file };
    this.dropped = { name: dropped.name, file: dropped.file };
    this.files = [kept.file, dropped.file];
  }
  static override isInstance = guard<SkillNameClashError>("SKILL_NAME_CLASH");
}

/**
 * Eligible skills left out because loading them would exceed `maxSkills` or
 * `maxPromptBytes`: `dropped` lists them in name order, each with the limit it hit.
 */
export class SkillLimitError extends BeamClawError {
  readonly dropped: Array<{ name: string; file: string; limit: "maxSkills" | "maxPromptBytes" }>;
  constructor(
    dropped: Array<{ name: string; file: string; limit: "maxSkills" | "maxPromptBytes" }>,
    limits: { maxSkills: number; maxPromptBytes: number },
  ) {
    super(
      "SKILL_LIMIT",
      `${dropped.length} skill(s) not loaded, over the limit of ${limits.maxSkills} skills or ${limits.maxPromptBytes} prompt bytes: ${dropped.map((d) => `${d.name} (${d.limit})`).join(", ")}`,
    );
    this.dropped = dropped;
  }
  static override isInstance = guard<SkillLimitError>("SKILL_LIMIT");
}

/**
 * Why {@link ExecRefusedError} refused a command: `syntax` (it cannot be parsed),
 * `forbidden-character` (control, invisible or look-alike characters), `unsupported-syntax`
 * (a construct that shells read differently, such as `&>`), `too-complex` (length or nesting
 * limits), `empty`, `cwd` (the working directory is outside the allowed roots), `denied` or
 * `approval-timeout` (the approver said no, or did not answer in time).
 */
export type ExecRefusalReason =
  | "syntax"
  | "forbidden-character"
  | "unsupported-syntax"
  | "too-complex"
  | "empty"
  | "cwd"
  | "denied"
  | "approval-timeout";

/** An exec command was refused before anything ran; `reason` says why. */
export class ExecRefusedError extends BeamClawError {
  readonly reason: ExecRefusalReason;
  /** The command as it was asked for. */
  readonly command: string;
  constructor(
    reason: ExecRefusalReason,
    message: string,
    command: string,
    options?: BeamClawErrorOptions,
  ) {
    super("EXEC_REFUSED", message, options);
    this.reason = reason;
    this.command = command;
  }
  static override isInstance = guard<ExecRefusedError>("EXEC_REFUSED");
}

/**
 * Environment variables on the exec blocklist (`LD_PRELOAD`, `NODE_OPTIONS`, `PATH`, ...)
 * were supplied, as an option or inside the command (`LD_PRELOAD=x cmd`, `env X=1 cmd`,
 * `export X=1`). They are refused, never silently dropped; nothing ran.
 */
export class BlockedEnvError extends BeamClawError {
  readonly names: readonly string[];
  constructor(names: readonly string[], where: string) {
    super(
      "EXEC_ENV_BLOCKED",
      `environment variable${names.length === 1 ? "" : "s"} ${names.join(", ")} ${names.length === 1 ? "is" : "are"} blocked (${where})`,
    );
    this.names = names;
  }
  static override isInstance = guard<BlockedEnvError>("EXEC_ENV_BLOCKED");
}

/** A sandbox driver (`bubblewrap`, `docker`) is not installed or does not work here. */
export class SandboxUnavailableError extends BeamClawError {
  readonly driver: string;
  constructor(driver: string, message: string, options?: BeamClawErrorOptions) {
    super("SANDBOX_UNAVAILABLE", message, options);
    this.driver = driver;
  }
  static override isInstance = guard<SandboxUnavailableError>("SANDBOX_UNAVAILABLE");
}

/** A feature exists as an interface but is not available in this build or configuration. */
export class NotSupportedError extends BeamClawError {
  readonly feature: string;
  constructor(feature: string, message: string) {
    super("NOT_SUPPORTED", message);
    this.feature = feature;
  }
  static override isInstance = guard<NotSupportedError>("NOT_SUPPORTED");
}

/** No background process has this slug: it never existed, expired, or was removed. */
export class ProcessNotFoundError extends BeamClawError {
  readonly slug: string;
  constructor(slug: string) {
    super("PROCESS_NOT_FOUND", `no background process "${slug}"`);
    this.slug = slug;
  }
  static override isInstance = guard<ProcessNotFoundError>("PROCESS_NOT_FOUND");
}

/**
 * A cron request failed. `code` says how:
 * - `CRON_JOB_NOT_FOUND`: no job with that id (for this agent).
 * - `CRON_JOB_EXISTS`: `add` with an id already in use.
 * - `CRON_JOB_RUNNING`: `runNow` while the job is running (a job never overlaps itself).
 * - `CRON_JOB_COMPLETED`: `enable` or `runNow` of a one-shot `at` job that already ran.
 * - `INVALID_CRON_SCHEDULE`: a malformed expression, time zone, date or interval.
 * - `CRON_CONFIG_NOT_APPLIED`: `CronSupervisor.applyConfig` checked the configuration but a
 *   write failed while applying it; `cause` is the failure, and the message says whether the
 *   previous configuration was restored.
 */
export class CronError extends BeamClawError {
  /** The job the request was about, when there is one. */
  readonly jobId: string | undefined;
  constructor(
    code:
      | "CRON_JOB_NOT_FOUND"
      | "CRON_JOB_EXISTS"
      | "CRON_JOB_RUNNING"
      | "CRON_JOB_COMPLETED"
      | "CRON_CONFIG_NOT_APPLIED"
      | "INVALID_CRON_SCHEDULE",
    message: string,
    jobId?: string,
    options?: BeamClawErrorOptions,
  ) {
    super(code, message, options);
    this.jobId = jobId;
  }
  static override isInstance = (value: unknown): value is CronError =>
    isMarked(value) && (value.code.startsWith("CRON_") || value.code === "INVALID_CRON_SCHEDULE");
}

/**
 * What a failed send holds up in the durable outbox while it waits to retry: `chat` only the
 * conversation it was for (the same chat, peer or thread; other conversations keep flowing),
 * `channel` every conversation of the channel (a global rate limit, a lost connection).
 */
export type ChannelSendScope = "chat" | "channel";

/**
 * A channel could not deliver an outbound message (send, media, edit, typing). Plugins throw
 * it so the durable outbox knows what to do: `isRetryable` messages are tried again with
 * backoff (after `retryAfterMs` when the platform said so); the others are set aside at once.
 * A rate limit (`statusCode` 429, or any `retryAfterMs`) is waited out without counting as a
 * failed attempt; `scope` says whether the wait holds up one conversation or the channel.
 */
export class ChannelSendError extends BeamClawError {
  /** The channel id, e.g. `discord`. */
  readonly channel: string;
  readonly isRetryable: boolean;
  /** How long the platform asked us to wait, in ms. */
  readonly retryAfterMs: number | undefined;
  /** The platform's HTTP status, when there is one. */
  readonly statusCode: number | undefined;
  /**
   * The platform's own error code, when it answered one: Slack's `error`
   * (`channel_not_found`, `ratelimited`), Discord's JSON `code` (`10003`), Telegram's
   * `description` (`Forbidden: bot was blocked by the user`; its `error_code` is the HTTP
   * status, in `statusCode`).
   */
  readonly platformCode: string | undefined;
  /**
   * What the retry holds up in the outbox (see {@link ChannelSendScope}). `undefined`:
   * `chat`.
   */
  readonly scope: ChannelSendScope | undefined;
  constructor(
    channel: string,
    message: string,
    details: BeamClawErrorOptions & {
      isRetryable: boolean;
      retryAfterMs?: number;
      statusCode?: number;
      platformCode?: string;
      scope?: ChannelSendScope;
    },
  ) {
    super("CHANNEL_SEND_FAILED", message, details);
    this.channel = channel;
    this.isRetryable = details.isRetryable;
    this.retryAfterMs = details.retryAfterMs;
    this.statusCode = details.statusCode;
    this.platformCode = details.platformCode;
    this.scope = details.scope;
  }
  static override isInstance = guard<ChannelSendError>("CHANNEL_SEND_FAILED");
}

/** No channel with this id is registered with the channel manager. */
export class ChannelNotFoundError extends BeamClawError {
  readonly channel: string;
  constructor(channel: string) {
    super("CHANNEL_NOT_FOUND", `no channel "${channel}" is registered`);
    this.channel = channel;
  }
  static override isInstance = guard<ChannelNotFoundError>("CHANNEL_NOT_FOUND");
}

/**
 * A channel plugin handed `ctx.receive` a message that is not a well-formed inbound message;
 * `field` names the offending field. Nothing was recorded: a corrected redelivery goes through.
 */
export class InvalidInboundError extends BeamClawError {
  readonly channel: string;
  readonly field: string;
  constructor(channel: string, field: string, problem: string) {
    super("INVALID_INBOUND", `channel "${channel}": inbound ${field} ${problem}`);
    this.channel = channel;
    this.field = field;
  }
  static override isInstance = guard<InvalidInboundError>("INVALID_INBOUND");
}

/** A pairing code is unknown, expired, or already used. */
export class PairingCodeError extends BeamClawError {
  readonly channel: string;
  readonly pairingCode: string;
  constructor(channel: string, pairingCode: string) {
    super(
      "PAIRING_CODE_INVALID",
      `no pending pairing request with code "${pairingCode}" on channel "${channel}" (unknown, expired or already answered)`,
    );
    this.channel = channel;
    this.pairingCode = pairingCode;
  }
  static override isInstance = guard<PairingCodeError>("PAIRING_CODE_INVALID");
}

/**
 * A cluster request could not be served here. `code` says why:
 * - `CLUSTER_NOT_OWNER`: another node holds the session's lease (`owner`, when known);
 *   requests are routed there, so callers see this only in a rare race: retry.
 * - `CLUSTER_DRAINING`: this node is draining and takes no new sessions.
 * - `CLUSTER_UNREACHABLE`: no node could take the request in time (`owner`: the one tried).
 * - `CLUSTER_NOT_RUNNING`: the cluster node is not started, or was stopped.
 * Every one is retryable; a message already accepted (queued) is never lost by them.
 */
export class ClusterError extends BeamClawError {
  /** The node that owns the session, when known. */
  readonly owner: string | undefined;
  constructor(
    code: "CLUSTER_NOT_OWNER" | "CLUSTER_DRAINING" | "CLUSTER_UNREACHABLE" | "CLUSTER_NOT_RUNNING",
    message: string,
    owner?: string,
    options?: BeamClawErrorOptions,
  ) {
    super(code, message, options);
    this.owner = owner;
  }
  static override isInstance = (value: unknown): value is ClusterError =>
    isMarked(value) && value.code.startsWith("CLUSTER_");
}

/** A short human description of any thrown value or exit reason. */
export function describe(reason: unknown): string {
  if (reason instanceof Error) {
    const code = (reason as { code?: unknown }).code;
    return typeof code === "string" ? `${code}: ${reason.message}` : reason.message;
  }
  if (typeof reason === "string") return reason;
  try {
    return JSON.stringify(reason) ?? String(reason);
  } catch {
    return String(reason);
  }
}
