import { randomUUID } from "node:crypto";
import type { RoutedSessionRequest, SessionOwnership } from "../cluster/ownership.js";
import {
  AbortedError,
  AlreadyStartedError,
  BeamClawError,
  InvalidArgumentError,
  isBeamClawError,
  NoProcessError,
  OverloadedError,
} from "../errors.js";
import { abortedBy } from "../providers/backoff.js";
import { ProviderChain } from "../providers/chain.js";
import { MODEL_IMAGE_TYPES } from "../providers/media.js";
import type {
  JsonObject,
  JsonValue,
  ModelMessage,
  ThinkingLevel,
  ToolCallPart,
} from "../providers/types.js";
import { type ExitReason, formatExitReason, isNormalExit } from "../runtime/exit.js";
import type { MemoryPressureMonitor } from "../runtime/memory-pressure.js";
import { LocalPubSub, type PubSub } from "../runtime/pubsub.js";
import { Registry } from "../runtime/registry.js";
import { DynamicSupervisor, Supervisor } from "../runtime/supervisor.js";
import { TaskSupervisor } from "../runtime/task-supervisor.js";
import { type LongTimer, startTimer } from "../runtime/timers.js";
import {
  describeArg,
  optionalFunction,
  optionalNumber,
  optionalObject,
  optionalOneOf,
  optionalSignal,
  optionalString,
  requireObject,
} from "../runtime/validate.js";
import { iterateKvKeys } from "../store/kv-paging.js";
import type {
  QueuedMessage,
  Store,
  TranscriptReadOptions,
  TranscriptRecord,
} from "../store/types.js";
import {
  emitTelemetry,
  parseTraceparent,
  parseTracestate,
  type ToolRunTrace,
  telemetryTenantOf,
} from "../telemetry.js";
import { ApprovalGate, type ApprovalGateOptions } from "../tools/approval.js";
import { capToolOutput, DEFAULT_TOOL_MAX_OUTPUT_BYTES } from "../tools/output-cap.js";
import {
  type RegisteredTool,
  SupervisedToolRunner,
  type ToolCallRecord,
  ToolRegistry,
  traceToolCall,
} from "../tools/registry.js";
import { loneSurrogateIndex } from "../unicode.js";
import type { CostFunction, ModelSource } from "./agent-loop.js";
import { type CompactionResult, type CompactOptions, checkCompactOptions } from "./compaction.js";
import { checkAgentIdentity } from "./identity.js";
import {
  type OutputOf,
  type OutputOption,
  type RunOutput,
  resolveOutput,
  storedOutput,
} from "./output.js";
import { RunEventLog, RunHandle } from "./run-handle.js";
import {
  hasMadeUpKey,
  inputOf,
  liveEntries,
  madeUpKey,
  newMetadata,
  PendingCompaction,
  PendingInjection,
  parseSubagentIndexKey,
  QUARANTINE_PREFIX,
  quarantineKey,
  queuedDeadlineAt,
  SessionActor,
  type SessionActor as SessionActorType,
  type SessionCall,
  type SessionContext,
  type SessionDelivery,
  type SessionInfoSnapshot,
  type SessionPatch,
  SessionRequestFailure,
  sessionOpPrefix,
  subagentIndexPrefix,
} from "./session-actor.js";
import { normalizeAgentId, parseSessionKey, subagentKey } from "./session-key.js";
import {
  summarizeTranscriptUsage,
  type TranscriptUsageOptions,
  type TranscriptUsageSummary,
} from "./transcript-usage.js";
import {
  type AgentDefinition,
  type ForkOptions,
  type ForkResult,
  type InjectOptions,
  type InjectResult,
  MAX_RUN_TIMEOUT_MS,
  type QuarantinedMessage,
  type QueueMode,
  type RewindOptions,
  type RewindResult,
  type RunResult,
  type SendOptions,
  type SessionDeleteOptions,
  type SessionDeleteResult,
  type SessionMetadata,
  type SubagentLimits,
  type ToolContext,
  type ToolRunner,
  type UserMessageInput,
} from "./types.js";
import { UsageMeter } from "./usage.js";

/** Options of {@link AgentRuntime}. */
export interface AgentRuntimeOptions {
  /** Where sessions, transcripts and the inbound queue live. */
  store: Store;
  /** Where model output comes from: a `ProviderChain` (or any {@link ModelSource}). */
  models: ModelSource;
  agents: AgentDefinition[];
  /** The agent of `cron:<jobId>` sessions and of keys naming no agent. Default: the first agent. */
  defaultAgentId?: string;
  /**
   * Tools (made with `defineTool`, or plain `AgentTool`s) for the built-in supervised runner,
   * or a whole `ToolRunner` of your own.
   */
  tools?: ToolRunner | RegisteredTool[];
  /** Tool-call approval; without it nothing is asked. */
  approvals?: Omit<ApprovalGateOptions, "store">;
  /** Per-call tool timeout. Default 120 000 ms. */
  toolTimeoutMs?: number;
  /**
   * Cap on a tool result's size in bytes of UTF-8 (built-in runner, and a sub-agent's answer
   * to its parent); longer results are cut with a marker saying how much was dropped.
   * Default 65 536; `Infinity` for no cap.
   */
  toolMaxOutputBytes?: number;
  /** Default: a `LocalPubSub`. */
  pubsub?: PubSub;
  /** Idle time after which a session is saved and dropped from memory. Default 300 000 ms. */
  hibernateAfterMs?: number;
  /** Messages of history kept in memory and sent to the model. Default 200. */
  historyLimit?: number;
  /**
   * Messages a session holds waiting for its active run; one more is `OverloadedError`. The
   * same bound holds for the notes `inject` adds while a run is active. Default 100. The
   * error's `retryAfterMs` estimates when the active run ends (which makes room): the
   * duration of the session's last completed run less the active run's time so far, no
   * later than its time limit, from 1 s (also when there is nothing to go by) to 30 s.
   */
  maxQueuedMessages?: number;
  /**
   * Poison messages: a message during whose runs its session crashed (or was killed) this
   * many times is quarantined instead of run again: kept in the store (see
   * {@link AgentRuntime.quarantined}), taken off the queue, and its waiting caller gets a
   * failed run with code `QUARANTINED`; the session goes on with the next message. Crashes
   * are counted in this process and, from the moment a run has saved its first message (its
   * user message, at once), in the session's transcript too (a crash marker per cut-short
   * run), so a message that takes the whole process down on every try (killed for memory, a
   * native crash) is caught across restarts. A clean stop (`runtime.stop()`, hibernation)
   * is not a crash. Default 3.
   */
  quarantineAfterCrashes?: number;
  /** Mailbox bound of each session actor. Default 1000. */
  mailboxLimit?: number;
  /** Default `followup`. */
  defaultQueueMode?: QueueMode;
  /** Sessions alive in memory at once; more is `MaxChildrenError`. Default unlimited. */
  maxActiveSessions?: number;
  /**
   * Prices model usage for cost accounting. Default: the model source's own `cost` (a
   * `ProviderChain` prices from its providers' built-in model lists), else nothing (0).
   */
  cost?: CostFunction;
  /** Clock, for tests. */
  now?: () => number;
  /**
   * Session ownership in a cluster (a `ClusterNode` passes itself): consulted before a
   * session starts here, when one stops, and to route messages and requests for sessions
   * another node owns. Default: none, every session runs in this process.
   */
  ownership?: SessionOwnership;
  /**
   * Sheds load under memory pressure (see `MemoryPressureMonitor`, which its owner starts and
   * stops): while the monitor reports pressure, `send` refuses new messages with a retryable
   * `MemoryPressureError` before anything is queued, and on every sample under pressure each
   * idle session (no run, nothing queued) hibernates at once. Messages already accepted, and
   * their replays after a restart, still run. Default: none.
   */
  memoryPressure?: MemoryPressureMonitor;
}

/** A session, addressed by key; it is revived from the store when needed. */
export interface SessionHandle {
  readonly key: string;
  readonly agentId: string;
  /**
   * Sends a user message. Resolves once the message is accepted (written to the durable
   * queue and taken by the session) with the handle of its run.
   *
   * @throws OverloadedError when the session's mailbox or queue is full (nothing is kept);
   *   for a full queue its `retryAfterMs` suggests when to send again (see
   *   {@link AgentRuntimeOptions.maxQueuedMessages}).
   * @throws InvalidArgumentError for a message or option of the wrong kind (no text string,
   *   `images` that are not `{ mediaType, data | url }`, an unknown `queueMode` or `thinking`,
   *   an empty `idempotencyKey`, a `signal` that is not an `AbortSignal`, a `model` that is
   *   not `provider/model`, an `output` that is not a zod or JSON Schema of an object, text,
   *   a sender or a file name holding a lone surrogate: half of a UTF-16 pair, which every
   *   model API refuses) and for a message of nothing (text empty or only whitespace, and no
   *   image or file: a photo without a caption is a message); nothing is queued then.
   * @throws AbortedError when `options.signal` is aborted before the session takes the
   *   message (already aborted when `send` is called, or aborted while it is queued); nothing
   *   is left queued and nothing runs.
   *
   * @example
   * ```ts
   * const run = await session.send("Classify: 'my card was charged twice'", {
   *   output: z.object({ category: z.enum(["billing", "bug", "other"]), urgent: z.boolean() }),
   * });
   * const { output } = await run.result; // typed { category: ...; urgent: boolean } | undefined
   * ```
   */
  send<O extends OutputOption = never>(
    message: string | UserMessageInput,
    options?: SendOptions & { output?: O },
  ): Promise<RunHandle<[O] extends [never] ? JsonValue : OutputOf<O>>>;
  /**
   * Aborts a run (active or queued). Resolves false if the session has no such run.
   * @throws InvalidArgumentError when `runId` is not a string.
   */
  abort(runId: string): Promise<boolean>;
  /** Metadata and state. */
  info(): Promise<SessionInfoSnapshot>;
  /** Transcript entries, paged. */
  history(options?: TranscriptReadOptions): Promise<TranscriptRecord[]>;
  /**
   * What the session used over a span of time, from its transcript: model calls (tokens,
   * cost, duration) per UTC day and model, messages, and tool calls. Reads the store only,
   * like `history()` (a hibernated session stays asleep). See
   * {@link summarizeTranscriptUsage}.
   *
   * @example
   * ```ts
   * const week = await session.usage({ from: Date.now() - 7 * 86_400_000 });
   * console.log(week.totals.costUsd, week.byDay, week.tools);
   * ```
   * @throws InvalidArgumentError when `from` is after `to` or `maxEntries` is not a positive
   *   integer.
   */
  usage(options?: TranscriptUsageOptions): Promise<TranscriptUsageSummary>;
  /**
   * Changes display name, channel, thinking/verbose level or model override (`null` clears
   * a field).
   * @throws InvalidArgumentError for an unknown field or a value of the wrong kind; nothing
   *   is changed then.
   */
  patch(patch: SessionPatch): Promise<SessionMetadata>;
  /**
   * Aborts everything, clears the transcript and counters; the settings (display name,
   * channel, levels, model override) stay. The sub-agents it spawned belonged to the
   * conversation: their sessions are deleted as `delete` deletes them, and its count of
   * spawns (`SubagentLimits.maxChildren`) starts again. A key with no session is left as it
   * was: no record is written for it.
   */
  reset(): Promise<void>;
  /**
   * Compacts the history: the model writes a summary of all but the most recent turns, and
   * the summary stands for them in every later request (the transcript keeps every message).
   * Waits for the active run; messages sent meanwhile wait for the compaction. A second call
   * while one is under way joins it. With `idempotencyKey`, a retry (after a failure, even
   * one whose write the store had saved) answers with the first call's result and makes no
   * second summary.
   *
   * @example
   * ```ts
   * const { status, summarizedMessages } = await session.compact({ keepTurns: 2 });
   * ```
   * @throws InvalidArgumentError for bad options (an empty `idempotencyKey`, or one given to
   *   another operation of the session); the provider's error when the summary failed
   *   (nothing changes then); AbortedError when the session was reset meanwhile.
   */
  compact(options?: CompactOptions): Promise<CompactionResult>;
  /**
   * Stops the session and deletes its metadata, its unfinished messages, its remembered
   * tool approvals (`allow-always`), the tools registered for it alone
   * (`runtime.tools.registerForSession`) and its transcript (or, with `archiveTranscript`, moves
   * the transcript to `<key>:deleted:<epoch ms>`): a session made again under the same key
   * starts with nothing of it, and is asked again before its tools run.
   * The sessions of the sub-agents it spawned (`spawn_subagent`) are deleted with it, at
   * any depth and with the same options, running or not: they are found from the spawns
   * recorded in the store, so also for a hibernated session or after a restart.
   * Its active and queued runs end as aborted with error `SESSION_DELETED` (a `run-end`
   * their handles and the session's subscribers see). In a cluster the request goes to the
   * session's owner.
   * @throws InvalidArgumentError for options of the wrong kind.
   * @throws StoreError when the store fails; an archive that could not be finished is
   *   removed, and the session's transcript is left where it was.
   */
  delete(options?: SessionDeleteOptions): Promise<SessionDeleteResult>;
  /**
   * Adds an assistant message to the conversation without running the model: a note from
   * the host ("Your order has shipped") that the model sees from the next run on, and that
   * `history()` readers and the gateway's `chat.history` show. It is saved to the transcript
   * under its own run id (`inject:<uuid>`), costs nothing and counts no usage. While a run is
   * active it waits for the run's end and goes before the messages waiting; messages sent
   * meanwhile wait for it. In a cluster the request goes to the session's owner. With
   * `idempotencyKey`, a retry (after a failure, even one whose write the store had saved)
   * answers with the first call's note and saves no second one.
   *
   * @example
   * ```ts
   * await session.inject("Your order #1234 has shipped.", { label: "shop" });
   * ```
   * @throws InvalidArgumentError for text that is not a string, or is empty or only
   *   whitespace, or a label that is not one line of 1 to 100 characters, either holding a
   *   lone surrogate, or an empty `idempotencyKey` (or one given to another operation of the
   *   session); nothing is saved then.
   * @throws AbortedError when the session was reset while the injection waited;
   *   NoProcessError when it stopped meanwhile (nothing was saved).
   * @throws OverloadedError when `maxQueuedMessages` notes already wait for the active run
   *   (nothing is saved; try again once it has ended, after its `retryAfterMs`).
   * @throws ClusterError `CLUSTER_UNREACHABLE` when no node answered in time: a node asked
   *   may have saved it before it was lost, and the message says so with its run id
   *   (`inject:<uuid>`), to look for in the transcript before injecting it again.
   */
  inject(text: string, options?: InjectOptions): Promise<InjectResult>;
  /**
   * Undoes the session's last runs (default the last one; `runs` for more, `runId` for that
   * run and every one after it): their messages leave the history the model sees, and
   * `chat.history` readers, for good, and their user messages are handed back, to send
   * again (regenerate an answer) or edited (take the conversation another way). The
   * transcript keeps what was undone, behind a discard marker. Usage and cost already spent
   * stay counted. Only runs after the last compaction can be undone. In a cluster the
   * request goes to the session's owner. With `idempotencyKey`, a retry (after a failure,
   * even one whose write the store had saved) answers with the first call's result and
   * undoes nothing more.
   *
   * @example
   * ```ts
   * // Regenerate the last answer.
   * const { inputs } = await session.rewind();
   * const run = await session.send(inputs[0]!);
   * ```
   * @throws SessionBusyError while a run is active, messages wait, or a compaction runs.
   * @throws InvalidArgumentError for bad options (an empty `idempotencyKey`, or one given to
   *   another operation of the session), more runs than the session can undo, or a `runId`
   *   that is not among them; nothing is changed then.
   */
  rewind(options?: RewindOptions): Promise<RewindResult>;
  /**
   * Branches the conversation: a new session (`key`, default `agent:<agentId>:fork:<uuid>`)
   * whose history is this one's up to the user message of `runId`, which is handed back to
   * send there, edited or not. This session is left as it is (an "edit" that keeps the
   * original). Discarded runs and markers are not copied; a compaction before the point is
   * (its summary stands in the fork too). The fork's metadata starts fresh, with
   * `forkedFrom` set to this session's key; its record is written with the history, so the
   * fork is listed (and looked after by maintenance) before its first message.
   *
   * @example
   * ```ts
   * const { key, input } = await session.fork({ runId });
   * await runtime.session(key).send({ ...input, text: "Ask it another way" });
   * ```
   * @throws InvalidArgumentError for bad options, a `runId` without a user message in this
   *   session, or a `key` that is taken; nothing is written then.
   * @throws StoreError when the store fails; a half-written fork is removed.
   */
  fork(options: ForkOptions): Promise<ForkResult>;
}

const SUBAGENT_TOOL = "spawn_subagent";

/** Unfinished messages the runtime reads at once to revive their sessions (the store's most). */
const BACKLOG_PAGE = 1_000;
/** How soon the runtime looks again for unfinished messages behind a full page. */
const BACKLOG_RETRY_MS = 1_000;

/** The life of an {@link AgentRuntime}; see {@link AgentRuntime.status}. */
export type AgentRuntimeStatus = "new" | "running" | "failed" | "stopped";

/**
 * The agent runtime: sessions as supervised actors over a store, a model source and tools.
 *
 * Its supervision tree: a `one_for_one` root with the tool `TaskSupervisor` and the session
 * `DynamicSupervisor` (sessions are `transient`: a crashed one is restarted and replays its
 * unfinished messages; a hibernated one is forgotten until its next message). Session actors
 * are found through a `Registry` under `session:<key>`.
 *
 * @example
 * ```ts
 * const runtime = new AgentRuntime({
 *   store: new MemoryStore(),
 *   models: createProviderChain({ providers: [anthropic], models: [] }),
 *   agents: [{ id: "main", model: "anthropic/claude-sonnet-4-5" }],
 * });
 * await runtime.start();
 * const run = await runtime.session("agent:main:main").send("hello");
 * console.log((await run.result).text);
 * await runtime.stop();
 * ```
 */
export class AgentRuntime {
  readonly store: Store;
  readonly pubsub: PubSub;
  readonly registry = new Registry();
  readonly usage: UsageMeter;
  readonly #options: AgentRuntimeOptions;
  readonly #agents = new Map<string, AgentDefinition>();
  readonly #tools: ToolRunner;
  /** The tools of the built-in runner (absent when a custom `ToolRunner` was given). */
  readonly tools: ToolRegistry | undefined;
  /** Answers tool-approval requests (absent when approvals are not configured). */
  readonly approvals: ApprovalGate | undefined;
  readonly #logs = new Map<string, RunEventLog>();
  /** Crashes per unfinished message (see `quarantineAfterCrashes`). */
  readonly #crashes = new Map<string, number>();
  readonly #starting = new Map<string, Promise<SessionActorType>>();
  /** The run each unfinished message joined (collected and steered messages share one). */
  readonly #runOf = new Map<string, string>();
  /** Sub-agents running per parent session (only parents with some running). */
  readonly #subagentsRunning = new Map<string, number>();
  /** The cap on a sub-agent's result, as on any tool result (`toolMaxOutputBytes`). */
  #subagentMaxOutputBytes = DEFAULT_TOOL_MAX_OUTPUT_BYTES;
  readonly #now: () => number;
  #root: Supervisor | null = null;
  #sessions: DynamicSupervisor | null = null;
  #tasks: TaskSupervisor | null = null;
  #ctx: SessionContext | null = null;
  #state: AgentRuntimeStatus = "new";
  #failure: ExitReason | undefined;
  readonly #failedListeners = new Set<(reason: ExitReason) => void>();
  #offPressure: (() => void) | undefined;
  /** The start-up look for unfinished messages has not seen them all (see `#reviveBacklog`). */
  #backlogOpen = false;
  /** The queue id of the last message the previous look read (its `after` cursor). */
  #backlogCursor: string | undefined;
  /** The next look for unfinished messages, while `#backlogOpen`. */
  #backlogTimer: LongTimer | undefined;

  /**
   * @throws InvalidArgumentError for options of the wrong kind or out of range (no agents, an
   *   agent without an id or a `provider/model`, an unknown `defaultAgentId`, a store or
   *   model source without its methods, a negative or fractional limit, an unknown queue
   *   mode...).
   */
  constructor(options: AgentRuntimeOptions) {
    checkRuntimeOptions(options);
    const limit = options.quarantineAfterCrashes;
    if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 1)) {
      throw new InvalidArgumentError(
        `quarantineAfterCrashes must be a whole number >= 1, got ${describeArg(limit)}`,
      );
    }
    this.#options = options;
    this.store = options.store;
    this.pubsub = options.pubsub ?? new LocalPubSub();
    this.#now = options.now ?? Date.now;
    this.usage = new UsageMeter(this.store);
    for (const [id, agent] of validateAgents(options.agents)) this.#agents.set(id, agent);
    if (options.defaultAgentId !== undefined) {
      // Checked here, not at the first cron or agent-less key, where it would fail every send.
      this.#agent(options.defaultAgentId);
    }
    this.approvals =
      options.approvals === undefined
        ? undefined
        : new ApprovalGate({ ...options.approvals, store: this.store.approvals });
    if (Array.isArray(options.tools) || options.tools === undefined) {
      this.tools = new ToolRegistry(options.tools ?? []);
      this.#tools = new SupervisedToolRunner({
        registry: this.tools,
        tasks: () => this.#tasks ?? undefined,
        ...(this.approvals === undefined ? {} : { approvals: this.approvals }),
        ...(options.toolTimeoutMs === undefined ? {} : { defaultTimeoutMs: options.toolTimeoutMs }),
        ...(options.toolMaxOutputBytes === undefined
          ? {}
          : { maxOutputBytes: options.toolMaxOutputBytes }),
        resolveAgent: (id) => this.#agent(id),
      });
      if (options.toolMaxOutputBytes !== undefined) {
        this.#subagentMaxOutputBytes = options.toolMaxOutputBytes;
      }
    } else {
      this.tools = undefined;
      this.#tools = options.tools;
    }
  }

  /**
   * Applies changed settings while running (config hot reload): the agents (the next run of
   * each session uses its agent's new definition; sessions of a removed agent fail their next
   * run with a clear error), and the default tool timeout and result size cap of the built-in
   * tool runner.
   *
   * @throws InvalidArgumentError for invalid agents (nothing is changed then).
   */
  reconfigure(changes: {
    agents?: AgentDefinition[];
    toolTimeoutMs?: number;
    toolMaxOutputBytes?: number;
  }): void {
    requireObject(changes, "reconfigure changes");
    const agents = changes.agents === undefined ? undefined : validateAgents(changes.agents);
    if (changes.toolMaxOutputBytes !== undefined) {
      if (!(this.#tools instanceof SupervisedToolRunner)) {
        throw new InvalidArgumentError(
          "toolMaxOutputBytes applies to the built-in tool runner only",
        );
      }
      this.#tools.setMaxOutputBytes(changes.toolMaxOutputBytes);
      this.#subagentMaxOutputBytes = changes.toolMaxOutputBytes;
    }
    if (changes.toolTimeoutMs !== undefined) {
      if (!(this.#tools instanceof SupervisedToolRunner)) {
        throw new InvalidArgumentError("toolTimeoutMs applies to the built-in tool runner only");
      }
      this.#tools.setDefaultTimeoutMs(changes.toolTimeoutMs);
    }
    if (agents !== undefined) {
      this.#agents.clear();
      for (const [id, agent] of agents) this.#agents.set(id, agent);
    }
  }

  /**
   * `"new"` until {@link AgentRuntime.start}, `"running"`, `"stopped"` after
   * {@link AgentRuntime.stop}, or `"failed"`: the supervision tree gave up (its restart
   * intensity was exceeded), so no session can run until the runtime is stopped and a new one
   * started. Unfinished messages stay queued in the store for that new runtime.
   */
  get status(): AgentRuntimeStatus {
    return this.#state;
  }

  /**
   * The root of the runtime's supervision tree (children `tools` and `sessions`), for
   * inspection (`whichChildren()`, `countChildren()`); `null` before {@link AgentRuntime.start}.
   */
  get supervisor(): Supervisor | null {
    return this.#root;
  }

  /** Why the runtime failed (the root supervisor's exit reason); `undefined` unless `"failed"`. */
  get failure(): ExitReason | undefined {
    return this.#failure;
  }

  /**
   * Calls `listener` once if the runtime fails (see {@link AgentRuntime.status}), with the
   * root supervisor's exit reason. The host decides what follows: restart the runtime, report
   * unready, or exit. Returns a function that removes the listener.
   *
   * @example
   * ```ts
   * runtime.onFailed((reason) => {
   *   console.error("the runtime gave up:", reason);
   *   void runtime.stop().then(() => process.exit(1));
   * });
   * ```
   */
  onFailed(listener: (reason: ExitReason) => void): () => void {
    if (typeof listener !== "function") {
      throw new InvalidArgumentError("onFailed() needs a function");
    }
    this.#failedListeners.add(listener);
    return () => {
      this.#failedListeners.delete(listener);
    };
  }

  /** The agents this runtime serves. */
  get agents(): AgentDefinition[] {
    return [...this.#agents.values()];
  }

  /** Starts the supervision tree and replays messages left unfinished by the last run. */
  async start(): Promise<void> {
    if (this.#state !== "new") throw new AlreadyStartedError("the runtime was already started");
    this.#state = "running";
    const { maxActiveSessions } = this.#options;
    let sessionStarts = 0;
    // Each (re)start makes fresh processes: a stopped actor never starts again.
    this.#root = await new Supervisor({
      name: "runtime",
      strategy: "one_for_one",
      children: [
        {
          id: "tools",
          start: () => {
            this.#tasks = new TaskSupervisor({ name: "tools" });
            return this.#tasks.start();
          },
        },
        {
          id: "sessions",
          type: "supervisor",
          start: () => {
            this.#sessions = new DynamicSupervisor({
              name: "sessions",
              maxRestarts: 100,
              periodMs: 10_000,
              ...(maxActiveSessions === undefined ? {} : { maxChildren: maxActiveSessions }),
            });
            const started = this.#sessions.start();
            if (sessionStarts++ === 0) return started;
            // Restarted by the root (killed, or it gave up on a session that kept crashing):
            // the sessions it held are gone with it, and their unfinished messages wait in
            // the durable queue. They run again now, not at the next start of the runtime.
            return started.then((sessions) => {
              this.#reviveAfterRestart();
              return sessions;
            });
          },
        },
      ],
    }).start();
    const root = this.#root;
    // The tree gave up (a child kept crashing past its restart intensity): nothing can run
    // any more. Fail fast and visibly rather than answer every send with a dead process.
    root.monitor((reason) => {
      if (this.#state === "running" && this.#root === root && !isNormalExit(reason)) {
        this.#fail(reason);
      }
    });
    const tools = this.#withSubagentTool(this.#tools);
    this.#ctx = {
      store: this.store,
      source: this.#options.models,
      tools,
      pubsub: this.#options.ownership?.sessionPubSub ?? this.pubsub,
      ...costOf(this.#options),
      resolveAgent: (id) => this.#agent(id),
      hibernateAfterMs: this.#options.hibernateAfterMs ?? 300_000,
      historyLimit: this.#options.historyLimit ?? 200,
      maxQueuedMessages: this.#options.maxQueuedMessages ?? 100,
      quarantineAfterCrashes: this.#options.quarantineAfterCrashes ?? 3,
      crashes: this.#crashes,
      mailboxLimit: this.#options.mailboxLimit ?? 1000,
      defaultQueueMode: this.#options.defaultQueueMode ?? "followup",
      logs: this.#logs,
      onUsage: (entry) => this.usage.record(entry),
      now: this.#now,
      holderOf: (key) => this.registry.whereis(`session:${key}`),
      joinedRun: (queueId) => this.#runOf.get(queueId),
      deleteSubagents: (key) => this.#deleteSubagentsOf(key),
    };
    this.#offPressure = this.#options.memoryPressure?.onPressure(() => {
      this.hibernateIdleSessions();
    });
    // Messages accepted before a crash or restart and never finished run again, once each.
    await this.#reviveBacklog();
  }

  /**
   * Revives the sessions that hold messages accepted before a crash or restart and never
   * finished: each replays its own. The store gives at most 1,000 at once, oldest first;
   * while a look finds a full page, the next look reads the page after it (the queue's
   * `after` cursor) a second later, so sessions behind a page held by slow runs are revived
   * too, at most a page's sessions a second; a session started for a new message meanwhile
   * first looks for its own (see `#ensure`). Throws only at start (a store that cannot be
   * read); a later look that fails is tried again from where it stopped.
   */
  async #reviveBacklog(): Promise<void> {
    const pending = await this.store.queue.pending({
      limit: BACKLOG_PAGE,
      ...(this.#backlogCursor === undefined ? {} : { after: this.#backlogCursor }),
    });
    // In a cluster, the cluster's own sweep revives what no node holds.
    const more = pending.length >= BACKLOG_PAGE && this.#options.ownership === undefined;
    // Open while this page's sessions are revived (a session started meanwhile for a new
    // message looks for its own first), and after it while pages remain.
    if (more) this.#backlogOpen = true;
    for (const key of new Set(pending.map((m) => m.sessionKey))) {
      if (this.#state !== "running") return;
      // A live session took (or is taking) its own at its start.
      if (this.registry.whereis(`session:${key}`) !== undefined) continue;
      try {
        await this.#ensure(key, true);
      } catch (error) {
        // In a cluster another node may own the session; the cluster revives its orphans.
        if (this.#options.ownership === undefined || !isClusterRefusal(error)) throw error;
      }
    }
    // Moved on only once this page's sessions are revived: a look that failed reads it again.
    this.#backlogOpen = more;
    this.#backlogCursor = more ? pending[pending.length - 1]!.id : undefined;
    if (more) this.#lookAgainForBacklog();
  }

  /**
   * After the session supervisor was restarted: revives the sessions that hold unfinished
   * messages, from the first page of the queue; sessions started meanwhile for new messages
   * replay their own first (see `#ensure`). A look that fails is tried again a second later.
   */
  #reviveAfterRestart(): void {
    if (this.#state !== "running") return;
    this.#backlogOpen = true;
    this.#backlogCursor = undefined;
    this.#backlogTimer?.cancel();
    this.#backlogTimer = undefined;
    this.#reviveBacklog().catch(() => this.#lookAgainForBacklog());
  }

  /** Looks for unfinished messages again in a second (see `#reviveBacklog`). */
  #lookAgainForBacklog(): void {
    if (this.#state !== "running" || this.#backlogTimer !== undefined) return;
    this.#backlogTimer = startTimer(() => {
      this.#backlogTimer = undefined;
      this.#reviveBacklog().catch(() => this.#lookAgainForBacklog());
    }, BACKLOG_RETRY_MS);
  }

  /** Stops every session (saving it), then the tree. Unfinished messages stay queued. */
  async stop(): Promise<void> {
    if (this.#state !== "running" && this.#state !== "failed") {
      this.#state = "stopped";
      return;
    }
    this.#state = "stopped";
    this.#offPressure?.();
    this.#offPressure = undefined;
    this.#backlogTimer?.cancel();
    this.#backlogTimer = undefined;
    this.#backlogCursor = undefined;
    this.approvals?.close();
    await this.#root?.stop("shutdown");
    await this.usage.flush();
    for (const log of this.#logs.values()) {
      log.fail(
        new NoProcessError(
          "the runtime stopped; the message stays queued for the next start",
          "shutdown",
        ),
      );
    }
    this.#logs.clear();
  }

  /** Sessions alive in memory right now. */
  activeSessions(): string[] {
    return [...this.registry.registeredKeys()].map((k) => k.slice("session:".length));
  }

  /**
   * Asks every session in memory to hibernate now if it is idle (no run, nothing queued): it
   * saves and leaves memory, and its next message revives it from the store. Busy sessions
   * are left alone. Done on every memory-pressure sample when `memoryPressure` is set.
   * Returns how many sessions were asked; they stop shortly after.
   */
  hibernateIdleSessions(): number {
    let asked = 0;
    for (const key of [...this.registry.registeredKeys()]) {
      if (!key.startsWith("session:")) continue;
      try {
        if (this.registry.whereis<SessionActorType>(key)?.send({ type: "hibernate-if-idle" }))
          asked++;
      } catch {
        // A full mailbox: that session is busy, not idle.
      }
    }
    return asked;
  }

  /**
   * Messages quarantined as poison (see `quarantineAfterCrashes`), oldest first; only those of one
   * session with `sessionKey`.
   */
  async quarantined(options: { sessionKey?: string } = {}): Promise<QuarantinedMessage[]> {
    requireObject(options, "quarantined options");
    const prefix =
      options.sessionKey === undefined
        ? QUARANTINE_PREFIX
        : quarantineKey(parseSessionKey(options.sessionKey).key, "");
    const out: QuarantinedMessage[] = [];
    for await (const key of iterateKvKeys(this.store.kv, prefix)) {
      const record = await this.store.kv.get<JsonObject>(key);
      if (record !== undefined) out.push(record as unknown as QuarantinedMessage);
    }
    return out.sort((a, b) => a.quarantinedAt - b.quarantinedAt || (a.id < b.id ? -1 : 1));
  }

  /**
   * Sends a quarantined message to its session again, as a new message (its idempotency key
   * gets `:released:<id>` appended), then removes it from quarantine. Resolves with its run.
   *
   * @throws InvalidArgumentError when no such message is quarantined, or it cannot be sent.
   */
  async releaseQuarantined(sessionKey: string, id: string): Promise<RunHandle> {
    const key = quarantineKey(parseSessionKey(sessionKey).key, id);
    const record = (await this.store.kv.get<JsonObject>(key)) as QuarantinedMessage | undefined;
    if (record === undefined) {
      throw new InvalidArgumentError(`no quarantined message ${id} in session ${sessionKey}`);
    }
    const payload = record.payload as {
      input?: UserMessageInput;
      options?: Omit<SendOptions, "signal">;
    };
    if (typeof payload.input !== "object" || payload.input === null) {
      throw new InvalidArgumentError(
        `quarantined message ${id} has no user message to send (${record.reason}); drop it instead`,
      );
    }
    const run = (await this.session(record.sessionKey).send(payload.input, {
      ...(payload.options ?? {}),
      idempotencyKey: `${record.idempotencyKey}:released:${record.id}`,
    })) as RunHandle;
    await this.store.kv.delete(key);
    return run;
  }

  /** Deletes a quarantined message for good. Resolves false if there was none. */
  async dropQuarantined(sessionKey: string, id: string): Promise<boolean> {
    return this.store.kv.delete(quarantineKey(parseSessionKey(sessionKey).key, id));
  }

  /**
   * The session with this key (normalized; see `parseSessionKey`). Nothing starts until the
   * handle is used.
   *
   * @throws InvalidSessionKeyError for a malformed key; InvalidArgumentError for an unknown agent.
   */
  session(rawKey: string): SessionHandle {
    const parsed = parseSessionKey(rawKey);
    const agentId = parsed.agentId ?? this.#options.defaultAgentId ?? this.agents[0]!.id;
    this.#agent(agentId);
    const key = parsed.key;
    return {
      key,
      agentId,
      send: async <O extends OutputOption = never>(
        message: string | UserMessageInput,
        options?: SendOptions & { output?: O },
      ) => {
        const handle = await this.#send(key, message, options);
        // Parsed by the caller's zod schema, whichever node ran it.
        return options?.output === undefined
          ? (handle as RunHandle<[O] extends [never] ? JsonValue : OutputOf<O>>)
          : handle.withOutput<[O] extends [never] ? JsonValue : OutputOf<O>>(
              resolveOutput(options.output, "output"),
            );
      },
      abort: async (runId) => {
        if (typeof runId !== "string") {
          throw new InvalidArgumentError(`a run id must be a string, got ${describeArg(runId)}`);
        }
        return (await this.#request(key, { type: "abort", runId })) as boolean;
      },
      info: async () => (await this.#request(key, { type: "info" })) as SessionInfoSnapshot,
      history: (options) => this.store.transcripts.read(key, options),
      usage: (options) => summarizeTranscriptUsage(this.store.transcripts, key, options),
      patch: async (patch) =>
        (await this.#request(key, { type: "patch", patch })) as SessionMetadata,
      reset: async () => {
        const children = await this.#request(key, { type: "reset" });
        // The sub-agents it had spawned belonged to the conversation it clears.
        if (Array.isArray(children)) await this.#deleteSubagents(children.map(String), false);
      },
      inject: async (text, options) => {
        const { label, idempotencyKey } = checkInjection(text, options);
        // One id for every attempt: a retry after its owner was lost never saves it twice.
        const reply = await this.#request(key, {
          type: "inject",
          text,
          ...(label === undefined ? {} : { label }),
          id: randomUUID(),
          ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
        });
        return reply instanceof PendingInjection ? reply.done : (reply as InjectResult);
      },
      rewind: async (options) => {
        const opts = checkRewindOptions(options);
        return (await this.#request(key, {
          type: "rewind",
          ...(opts === undefined ? {} : { options: opts }),
        })) as RewindResult;
      },
      fork: async (options) => {
        this.#requireRunning();
        const opts = optionalObject<ForkOptions>(options, "fork options");
        if (typeof opts.runId !== "string" || opts.runId === "") {
          throw new InvalidArgumentError(
            `fork needs a runId (a non-empty string), got ${describeArg(opts.runId)}`,
          );
        }
        if (opts.key !== undefined && typeof opts.key !== "string") {
          throw new InvalidArgumentError(`fork key must be a string, got ${describeArg(opts.key)}`);
        }
        return this.#fork(key, opts.runId, opts.key);
      },
      compact: async (options) => {
        checkCompactOptions(options, undefined);
        const reply = await this.#request(key, {
          type: "compact",
          ...(options === undefined ? {} : { options }),
        });
        return reply instanceof PendingCompaction ? reply.done : (reply as CompactionResult);
      },
      delete: async (options) => {
        this.#requireRunning();
        const opts = optionalObject<SessionDeleteOptions>(options, "delete options");
        if (opts.archiveTranscript !== undefined && typeof opts.archiveTranscript !== "boolean") {
          throw new InvalidArgumentError(
            `archiveTranscript must be a boolean, got ${describeArg(opts.archiveTranscript)}`,
          );
        }
        return this.#deleteSession(key, opts.archiveTranscript === true);
      },
    };
  }

  // ------------------------------------------------------------------ internals

  /** See `SessionHandle.delete`; its sub-agents' sessions go too, whatever their depth. */
  async #deleteSession(key: string, archive: boolean): Promise<SessionDeleteResult> {
    const routed = await this.#options.ownership?.routeRequest(key, {
      type: "delete",
      ...(archive ? { options: { archiveTranscript: true } } : {}),
    });
    if (routed !== undefined) {
      this.tools?.clearSession(key);
      return routed.reply as SessionDeleteResult;
    }
    const actor = this.registry.whereis<SessionActorType>(`session:${key}`);
    if (actor !== undefined) {
      actor.markDeleted();
      await this.#sessions?.terminateChild(actor).catch(() => undefined);
    }
    // Its sub-agents next, from the spawns recorded in the store (so also those of a
    // hibernated session, or of one spawned before a restart): stopped first, it spawns
    // no more; a delete that fails here leaves it to be deleted again, children and all.
    await this.#deleteSubagentsOf(key, archive);
    // Nothing of a deleted session may come back: its unfinished messages go too.
    const pending = await this.store.queue.pending({ sessionKey: key });
    for (const message of pending) {
      this.#logs
        .get(message.id)
        ?.fail(new NoProcessError(`session ${key} was deleted`, "shutdown"));
      this.#logs.delete(message.id);
      this.#crashes.delete(message.id);
      // As a session does when a run is over: a made-up key is not remembered.
      await (hasMadeUpKey(message)
        ? this.store.queue.discard(message.id)
        : this.store.queue.ack(message.id));
    }
    // A new session may have messages (waiting, or saved by its first run) before its
    // record is written.
    const existed =
      pending.length > 0 ||
      (await this.store.sessions.get(key)) !== undefined ||
      (await this.store.transcripts.lastSeq(key)) > 0;
    const archivedAs = archive ? await this.#archiveTranscript(key) : undefined;
    // Its remembered allow-always decisions go first: a session made again under this key
    // must be asked again, and a delete that fails after this only asks again too.
    await this.store.approvals.clear(key);
    // Its keyed operations (`inject`, `rewind`, `compact`): a session made again starts anew.
    for await (const operation of iterateKvKeys(this.store.kv, sessionOpPrefix(key))) {
      await this.store.kv.delete(operation);
    }
    await this.store.transcripts.delete(key);
    await this.store.sessions.delete(key);
    // Its own tools too (`tools.registerForSession`): a session made again starts without.
    this.tools?.clearSession(key);
    return archivedAs === undefined ? { existed } : { existed, archivedAs };
  }

  /**
   * Deletes the sub-agent sessions `key` spawned (found from the spawns recorded in the
   * store, read page by page, each with its own sub-agents), each spawn's record after its
   * session: a delete that fails leaves the records of the sessions it did not delete.
   */
  async #deleteSubagentsOf(key: string, archive = false): Promise<void> {
    const deleted = new Set<string>();
    for await (const spawn of iterateKvKeys(this.store.kv, subagentIndexPrefix(key))) {
      const { child } = parseSubagentIndexKey(spawn);
      if (!deleted.has(child)) {
        deleted.add(child);
        await this.#deleteSession(child, archive);
      }
      await this.store.kv.delete(spawn);
    }
  }

  /** Deletes sub-agent sessions (each with its own sub-agents), once each. */
  async #deleteSubagents(children: readonly string[], archive: boolean): Promise<void> {
    for (const child of new Set(children)) await this.#deleteSession(child, archive);
  }

  /** See `SessionHandle.fork`. Reads the source's transcript; writes only the new session. */
  async #fork(source: string, runId: string, requested: string | undefined): Promise<ForkResult> {
    const agentId =
      parseSessionKey(source).agentId ?? this.#options.defaultAgentId ?? this.agents[0]!.id;
    const key =
      requested === undefined
        ? `agent:${agentId}:fork:${randomUUID()}`
        : parseSessionKey(requested).key;
    if (key === source) throw new InvalidArgumentError("a fork needs a key of its own");
    if (
      (await this.store.sessions.get(key)) !== undefined ||
      (await this.store.transcripts.lastSeq(key)) > 0
    ) {
      throw new InvalidArgumentError(`session ${key} exists already; fork into a new key`);
    }
    const records: TranscriptRecord[] = [];
    for (let afterSeq = 0; ; ) {
      const page = await this.store.transcripts.read(source, { afterSeq, limit: 1000 });
      if (page.length === 0) break;
      records.push(...page);
      afterSeq = page[page.length - 1]!.seq;
    }
    const live = liveEntries(records);
    const cut = live.findIndex(
      (r) =>
        r.entry.runId === runId &&
        r.entry.retry !== true &&
        (r.entry.message as { role?: unknown } | undefined)?.role === "user",
    );
    if (cut === -1) {
      throw new InvalidArgumentError(
        `run ${runId} has no user message in session ${source} (undone, or not this session's)`,
      );
    }
    // Marked as copied, without their model calls' usage: the parent made (and paid for)
    // them; the fork's usage over time counts only its own.
    const entries = live.slice(0, cut).map((r) => {
      const { usage: _paidByTheParent, ...entry } = r.entry;
      entry.forkedFrom = source;
      return entry;
    });
    const record: SessionMetadata = {
      ...newMetadata(key, parseSessionKey(key).agentId ?? agentId, this.#now()),
      forkedFrom: source,
    };
    try {
      for (let i = 0; i < entries.length; i += 1000) {
        await this.store.transcripts.append(key, entries.slice(i, i + 1000));
      }
      // After the history: a record is never there without it.
      await this.store.sessions.put(record);
    } catch (error) {
      await this.store.transcripts.delete(key).catch(() => undefined);
      throw error;
    }
    return {
      key,
      input: inputOf(
        live[cut]!.entry.message as unknown as Extract<ModelMessage, { role: "user" }>,
      ),
      copiedMessages: entries.filter((e) => e.message !== undefined).length,
    };
  }

  /**
   * Copies a (stopped) session's transcript to `<key>:deleted:<now>`, page by page; the key
   * it was copied to, or undefined when there was nothing to copy. A copy that fails is
   * removed before the error is thrown: the transcript stays only where it was.
   */
  async #archiveTranscript(key: string): Promise<string | undefined> {
    const archiveKey = `${key}:deleted:${this.#now()}`;
    let afterSeq = 0;
    try {
      for (;;) {
        const page = await this.store.transcripts.read(key, { afterSeq, limit: 1000 });
        if (page.length === 0) break;
        await this.store.transcripts.append(
          archiveKey,
          page.map((record) => record.entry),
        );
        afterSeq = page[page.length - 1]!.seq;
      }
    } catch (error) {
      await this.store.transcripts.delete(archiveKey).catch(() => undefined);
      throw error;
    }
    return afterSeq === 0 ? undefined : archiveKey;
  }

  #agent(id: string): AgentDefinition {
    const agent = this.#agents.get(id);
    if (agent === undefined) throw new InvalidArgumentError(`unknown agent "${id}"`);
    return agent;
  }

  #requireRunning(): void {
    if (this.#state === "failed") {
      const reason = this.#failure ?? "killed";
      throw new NoProcessError(
        `the runtime failed (its supervision tree gave up: ${formatExitReason(reason)}); stop it and start a new one, and queued messages run again`,
        reason,
      );
    }
    if (this.#state !== "running") {
      throw new NoProcessError(
        `the runtime is ${this.#state === "new" ? "not started" : "stopped"}`,
      );
    }
  }

  /** The root supervisor exited abnormally while running. */
  #fail(reason: ExitReason): void {
    this.#state = "failed";
    this.#failure = reason;
    const error = new NoProcessError(
      `the runtime failed (its supervision tree gave up: ${formatExitReason(reason)}); the message stays queued for a new runtime`,
      reason,
    );
    // Callers waiting on a run hear of it now; their messages stay queued in the store.
    for (const log of this.#logs.values()) log.fail(error);
    this.#logs.clear();
    for (const listener of [...this.#failedListeners]) {
      try {
        listener(reason);
      } catch {
        // A listener's own failure must not hide the runtime's from the others.
      }
    }
  }

  /**
   * `deadlineAt`: an absolute deadline of the run (epoch ms on the runtime's clock), kept with
   * the message in the durable queue so that every replay of it ends by then (a sub-agent's).
   */
  async #send(
    key: string,
    message: string | UserMessageInput,
    options: SendOptions = {},
    deadlineAt?: number,
  ): Promise<RunHandle> {
    this.#requireRunning();
    // Checked before anything is queued: a refused message leaves nothing in the store.
    const input = checkSend(message, options);
    const output = sendOutput(options);
    // Under memory pressure a new message is refused before anything is queued.
    this.#options.memoryPressure?.assertAccepting(`a message to session ${key}`);
    const { signal, ...rest } = options;
    // Aborted already: nothing is queued, and nothing runs (as `fetch` refuses such a signal).
    if (signal?.aborted) throw abortedBy(signal, `a message to session ${key}`);
    const runId = randomUUID();
    const stored: JsonObject = {
      input: input as unknown as JsonObject,
      // The output's schema is kept as JSON Schema: a replay, or the node that runs it, asks
      // for the same answer.
      options: (output === undefined
        ? rest
        : { ...rest, output: storedOutput(output) }) as JsonObject,
      runId,
    };
    if (deadlineAt !== undefined) stored.deadlineAt = deadlineAt;
    const { message: queued, duplicate } = await this.store.queue.enqueue({
      idempotencyKey: options.idempotencyKey ?? madeUpKey(runId),
      sessionKey: key,
      payload: stored,
    });
    if (duplicate) {
      const log = this.#logs.get(queued.id);
      const originalRunId =
        this.#runOf.get(queued.id) ??
        String((queued.payload as { runId?: JsonValue }).runId ?? queued.id);
      if (log !== undefined) {
        return new RunHandle(originalRunId, key, "duplicate", log, () =>
          this.session(key).abort(originalRunId),
        );
      }
      // In a cluster the original may be running on another node: follow it there.
      const routed = await this.#options.ownership?.routeSend(queued, {
        duplicate: true,
        ...(signal === undefined ? {} : { signal }),
      });
      if (routed !== undefined) return routed;
      const done = new RunEventLog();
      done.fail(
        new BeamClawError(
          "DUPLICATE",
          `a message with idempotency key "${options.idempotencyKey}" was already handled`,
        ),
      );
      return new RunHandle(originalRunId, key, "duplicate", done, async () => false);
    }
    const ownership = this.#options.ownership;
    if (ownership !== undefined) {
      const routed = await ownership.routeSend(queued, signal === undefined ? {} : { signal });
      if (routed !== undefined) return routed;
    }
    return this.#deliverQueued(
      key,
      queued.id,
      input,
      rest,
      runId,
      options.idempotencyKey === undefined,
      signal,
      deadlineAt,
    );
  }

  /**
   * Hands a message that is already in the durable queue to its session on this node and
   * returns its run's handle: how a cluster node takes a message another node accepted (and
   * queued) for a session this node owns. A message this runtime already holds gets a handle
   * on its run (`duplicate`); neither runs twice.
   *
   * `fresh: true` says the message was just enqueued by this process and handed to no one
   * yet, which skips the check that it is still pending (a store read).
   *
   * @throws BeamClawError `DUPLICATE` when the message is no longer pending (its run is done).
   * @throws ClusterError when this node may not run the session (another node owns it); the
   *   message stays queued.
   * @example
   * ```ts
   * const { message } = await store.queue.enqueue({ idempotencyKey, sessionKey, payload });
   * const run = await ownerRuntime.deliver(message); // as ClusterNode does on the owner
   * ```
   */
  async deliver(message: QueuedMessage, options: { fresh?: boolean } = {}): Promise<RunHandle> {
    this.#requireRunning();
    const key = message.sessionKey;
    const payload = message.payload as {
      input?: UserMessageInput;
      options?: Omit<SendOptions, "signal">;
      runId?: string;
    };
    if (typeof payload?.input?.text !== "string") {
      throw new InvalidArgumentError(`queued message ${message.id} holds no user message`);
    }
    // A queued message's output schema is checked before its session takes it.
    if (payload.options?.output !== undefined) {
      resolveOutput(payload.options.output, `queued message ${message.id}: output`);
    }
    const runId = typeof payload.runId === "string" ? payload.runId : randomUUID();
    const known = this.#followKnown(key, message.id, runId);
    if (known !== undefined) return known;
    if (options.fresh !== true) {
      const pending = await this.store.queue.pending({ sessionKey: key, limit: 1000 });
      // Checked again after the read: a replay may have taken it meanwhile.
      const again = this.#followKnown(key, message.id, runId);
      if (again !== undefined) return again;
      if (!pending.some((m) => m.id === message.id)) {
        throw new BeamClawError("DUPLICATE", `message ${message.id} was already handled`);
      }
    }
    return this.#deliverQueued(
      key,
      message.id,
      payload.input,
      payload.options ?? {},
      runId,
      hasMadeUpKey(message),
      undefined,
      queuedDeadlineAt(payload),
    );
  }

  /** A handle on the run of a message this runtime already holds, if it does. */
  #followKnown(key: string, queueId: string, runId: string): RunHandle | undefined {
    const log = this.#logs.get(queueId);
    if (log === undefined) return undefined;
    const followed = this.#runOf.get(queueId) ?? runId;
    return new RunHandle(followed, key, "duplicate", log, () => this.session(key).abort(followed));
  }

  /** Gives a queued message to its (local) session; the part of `send` after the queue. */
  async #deliverQueued(
    key: string,
    queueId: string,
    input: UserMessageInput,
    rest: Omit<SendOptions, "signal">,
    runId: string,
    unkeyed: boolean,
    signal?: AbortSignal,
    deadlineAt?: number,
  ): Promise<RunHandle> {
    // Already taken (by a replay after a cluster takeover): follow that run.
    const known = this.#followKnown(key, queueId, runId);
    if (known !== undefined) return known;
    const queued = { id: queueId };
    if (signal?.aborted) {
      // Aborted while the message was being queued: its session never takes it, so its run
      // cannot start (and call the model) before the abort reaches it.
      await this.store.queue.discard(queued.id).catch(() => undefined);
      throw abortedBy(signal, `a message to session ${key}`);
    }
    const log = new RunEventLog();
    this.#logs.set(queued.id, log);
    let accepted: { disposition: RunHandle["disposition"]; runId: string };
    const delivery: SessionDelivery = {
      input,
      options: rest,
      runId,
      queueId: queued.id,
      log,
      unkeyed,
    };
    if (deadlineAt !== undefined) delivery.deadlineAt = deadlineAt;
    try {
      accepted = (await this.#call(key, { type: "send", delivery })) as typeof accepted;
    } catch (error) {
      if (
        NoProcessError.isInstance(error) &&
        (typeof error.exitReason === "object" || error.exitReason === "killed")
      ) {
        // The session crashed (or was killed) with the message in its mailbox: it is in the
        // durable queue, and the restarted session replays it into this same log. (Killed as
        // the runtime stops or the session is deleted, the log ends then.)
        accepted = { disposition: "queued", runId };
      } else if (this.#options.ownership !== undefined && isClusterRefusal(error)) {
        // Another node owns the session: the message stays queued and runs there. A send
        // that joined it here meanwhile learns the same as this one.
        if (this.#logs.get(queued.id) === log) this.#logs.delete(queued.id);
        log.fail(error);
        throw error;
      } else {
        // Not accepted (overload, bad request): it must not run later either, and a retry
        // with the same idempotency key must count as new. A send that joined it by its key
        // meanwhile (a `duplicate` following this log) fails with the same refusal.
        this.#logs.delete(queued.id);
        log.fail(error);
        await this.store.queue.discard(queued.id).catch(() => undefined);
        throw error;
      }
    }
    this.#runOf.set(queued.id, accepted.runId);
    emitTelemetry("beamclaw:session.message", () => ({
      session: key,
      agent: parseSessionKey(key).agentId ?? this.#options.defaultAgentId ?? this.agents[0]!.id,
      runId: accepted.runId,
      disposition: accepted.disposition,
      tenant: telemetryTenantOf(this.store),
    }));
    void log.result.finally(() => this.#runOf.delete(queued.id)).catch(() => undefined);
    const handle = new RunHandle(accepted.runId, key, accepted.disposition, log, () =>
      this.session(key).abort(accepted.runId),
    );
    if (signal !== undefined) {
      const onAbort = () => void handle.abort().catch(() => undefined);
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        void log.result
          .finally(() => signal.removeEventListener("abort", onAbort))
          .catch(() => undefined);
      }
    }
    return handle;
  }

  /**
   * Answers a session request here, without asking `ownership` where it goes: how a cluster
   * node that owns the session answers a request routed to it (the same reply as the
   * session handle's method of that name gives).
   *
   * @throws NoProcessError when the runtime is not running; the request's own errors.
   * @internal
   */
  async answerRequest(key: string, request: RoutedSessionRequest): Promise<unknown> {
    const reply = await this.#call(key, request as SessionCall);
    if (reply instanceof PendingInjection || reply instanceof PendingCompaction) return reply.done;
    return reply;
  }

  /** A request for a session: answered by its owner in a cluster, else locally. */
  async #request(key: string, request: RoutedSessionRequest): Promise<unknown> {
    this.#requireRunning();
    const routed = await this.#options.ownership?.routeRequest(key, request);
    if (routed !== undefined) return routed.reply;
    return this.#call(key, request as SessionCall);
  }

  /** Calls the session, reviving it first; retries once if it hibernated meanwhile. */
  async #call(key: string, message: SessionCall): Promise<unknown> {
    this.#requireRunning();
    for (let attempt = 0; ; attempt++) {
      const actor = await this.#ensure(key, false);
      let reply: unknown;
      try {
        reply = await actor.call(message, { timeoutMs: 30_000 });
      } catch (error) {
        const hibernated = NoProcessError.isInstance(error) && error.exitReason === "normal";
        if (!hibernated || attempt >= 2) throw error;
        continue;
      }
      if (reply instanceof SessionRequestFailure) throw reply.error;
      return reply;
    }
  }

  /** The live session actor for `key`, starting (reviving) it if needed. */
  async #ensure(key: string, recovering: boolean): Promise<SessionActorType> {
    const name = `session:${key}`;
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = this.registry.whereis<SessionActorType>(name);
      if (existing !== undefined) {
        if (existing.status === "running" || existing.status === "starting") return existing;
        await existing.whenStopped();
        continue;
      }
      const starting = this.#starting.get(key);
      if (starting !== undefined) {
        // Another caller's start: if it lost the name to a racing start (the supervisor's
        // restart after a crash), look again, as that caller does.
        try {
          return await starting;
        } catch (error) {
          if (!isAlreadyRegistered(error)) throw error;
          continue;
        }
      }
      const parsed = parseSessionKey(key);
      const agentId = parsed.agentId ?? this.#options.defaultAgentId ?? this.agents[0]!.id;
      const ctx = this.#ctx!;
      const ownership = this.#options.ownership;
      let starts = 0;
      const promise = (async () => {
        // In a cluster, the session runs here only once this node holds its lease; a node
        // that just took it over replays what the previous owner left unfinished.
        const takeover = ownership === undefined ? false : (await ownership.claim(key)).takeover;
        try {
          // While the start-up look has not seen every unfinished message, a session started
          // for a new message may hold some of its own from before: it replays them first.
          const backlog =
            !recovering &&
            !takeover &&
            this.#backlogOpen &&
            (await this.store.queue.pending({ sessionKey: key, limit: 1 })).length > 0;
          const first = recovering || takeover || backlog;
          return await this.#sessions!.startChild<SessionActorType>({
            restart: "transient",
            // The first start is a revival; a restart after a crash replays unfinished messages.
            start: async () => {
              const restart = starts++ > 0;
              // The first start after a takeover replays runs the node that went was running.
              const actor = await new SessionActor(
                key,
                agentId,
                ctx,
                first || restart,
                takeover && !restart,
              ).start();
              if (ownership !== undefined) {
                actor.monitor((reason) => ownership.released(key, reason));
              }
              return actor;
            },
            via: this.registry.via(name),
          });
        } catch (error) {
          // Nothing runs under the claim (unless it lost the name to a start that does).
          if (ownership !== undefined && !isAlreadyRegistered(error)) {
            ownership.released(key, "normal");
          }
          throw error;
        }
      })();
      this.#starting.set(key, promise);
      try {
        return await promise;
      } catch (error) {
        if (!isAlreadyRegistered(error)) throw error;
      } finally {
        this.#starting.delete(key);
      }
    }
    throw new OverloadedError(`session ${key} could not be started (it keeps stopping)`, 5);
  }

  /** Adds the sub-agent tool for agents that allow sub-agents. */
  #withSubagentTool(inner: ToolRunner): ToolRunner {
    const runtime = this;
    return {
      definitions(agent, sessionKey) {
        const defs = inner.definitions(agent, sessionKey);
        const limits = agent.subagents;
        if (limits === undefined) return defs;
        const depth = parseSessionKey(sessionKey).depth;
        if (depth >= (limits.maxDepth ?? 1)) return defs;
        return [
          ...defs,
          {
            name: SUBAGENT_TOOL,
            description:
              "Delegate a self-contained task to a sub-agent. It works in its own session and returns its final answer.",
            inputSchema: {
              type: "object",
              properties: {
                task: { type: "string", description: "What the sub-agent should do." },
              },
              required: ["task"],
              additionalProperties: false,
            },
          },
        ];
      },
      async execute(call, context) {
        if (call.toolName !== SUBAGENT_TOOL) return inner.execute(call, context);
        return runtime.#spawnSubagent(call, context);
      },
    };
  }

  /**
   * A `spawn_subagent` call, traced and counted like every tool call (see `traceToolCall`):
   * its trace names the sub-agent's session once made (`ToolRunTrace.subagentSession`).
   */
  #spawnSubagent(
    call: ToolCallPart,
    context: ToolContext,
  ): Promise<{ output: JsonValue; isError: boolean }> {
    const spawn: ToolCallRecord = { attempts: 0, denied: false };
    return traceToolCall(call, context, spawn, async () => {
      const { output, isError } = await this.#runSubagent(call.input, context, spawn);
      // A child's answer goes into its parent's transcript and every later request of it:
      // capped like every other tool result.
      return { output: capToolOutput(output, this.#subagentMaxOutputBytes), isError };
    });
  }

  async #runSubagent(
    input: JsonValue,
    context: ToolContext,
    spawn: ToolCallRecord,
  ): Promise<{ output: JsonValue; isError: boolean }> {
    const parent = this.#agent(context.agentId);
    const limits: SubagentLimits = parent.subagents ?? {};
    const task = (input as { task?: unknown } | null)?.task;
    // Checked as `send` checks its text, before the child's session is made.
    if (typeof task !== "string" || task.trim() === "") {
      return { output: "spawn_subagent needs a non-empty task string", isError: true };
    }
    const depth = parseSessionKey(context.sessionKey).depth;
    if (depth >= (limits.maxDepth ?? 1)) {
      return { output: "sub-agents may not spawn further sub-agents", isError: true };
    }
    const running = this.#subagentsRunning.get(context.sessionKey) ?? 0;
    if (running >= (limits.maxConcurrent ?? 4)) {
      return { output: `${running} sub-agents are already running (the limit)`, isError: true };
    }
    const agentId = limits.agentId ?? context.agentId;
    // A sub-agent of a sub-agent (maxDepth > 1) extends its parent's key, under its own agent.
    const childKey =
      depth === 0
        ? subagentKey(agentId, randomUUID())
        : `agent:${agentId}:${context.sessionKey.split(":").slice(2).join(":")}:subagent:${randomUUID()}`;
    const parentActor = this.registry.whereis<SessionActorType>(`session:${context.sessionKey}`);
    const maxChildren = limits.maxChildren ?? 8;
    this.#subagentsRunning.set(context.sessionKey, running + 1);
    spawn.attempts = 1;
    // Read before the spawn is recorded (see `spawnEpoch`).
    const epoch = parentActor?.spawnEpoch;
    let claimed: boolean;
    try {
      // Recorded in the store before the child exists (see `claimSubagent`).
      claimed =
        parentActor !== undefined &&
        (await parentActor.claimSubagent(maxChildren, context.runId, childKey));
    } catch (error) {
      this.#subagentDone(context.sessionKey);
      if (context.signal.aborted) throw error;
      return {
        output: `sub-agent could not be spawned: ${(error as Error).message}`,
        isError: true,
      };
    }
    if (!claimed) {
      this.#subagentDone(context.sessionKey);
      return {
        output: `this session already spawned ${maxChildren} sub-agents (the limit)`,
        isError: true,
      };
    }
    // The child's run time limit: a sub-agent past it is cancelled like any run, and says so.
    // Its deadline is fixed now and kept with its message: a child replayed after a crash or
    // a restart runs until this same deadline, never under a fresh limit.
    const timeoutMs = Math.min(limits.timeoutMs ?? 300_000, MAX_RUN_TIMEOUT_MS);
    try {
      let run: RunHandle | undefined;
      try {
        if (parentActor!.spawnEpoch === epoch) {
          // Before the child's first run can start: its span goes under this call's.
          if (spawn.trace !== undefined) spawn.trace.subagentSession = childKey;
          const span = spanOf(spawn.trace);
          await this.store.sessions.put({
            key: childKey,
            agentId,
            createdAt: this.#now(),
            updatedAt: this.#now(),
            parentKey: context.sessionKey,
            parentRunId: context.runId,
            ...(span.traceparent === undefined ? {} : { parentTraceparent: span.traceparent }),
          });
          const child = this.session(childKey);
          run = await this.#send(
            child.key,
            { text: task },
            // Only the parent's tool call reads the answer: after a restart its run replays
            // from its start and spawns afresh, so this message is ended unrun, not run for
            // nobody.
            {
              signal: context.signal,
              timeoutMs,
              replayAfterRestart: false,
              // The call's span (set by a tracer): the child's run joins its trace anywhere.
              ...span,
            },
            this.#now() + timeoutMs,
          );
        }
      } finally {
        // The parent was deleted or reset while its child was being made: its cascade may
        // have looked for the child before the child (or its spawn's record) was in the
        // store. Nothing of the child may outlive it.
        if (parentActor!.spawnEpoch !== epoch)
          await this.#discardSubagent(context.sessionKey, childKey);
      }
      if (run === undefined || parentActor!.spawnEpoch !== epoch) {
        throw new AbortedError(`session ${context.sessionKey} was deleted or reset`);
      }
      const result = await run.result;
      this.#addSubagentUsage(context.sessionKey, result);
      // A child agent with a structured `output` reports the value, not its JSON text.
      if (result.status === "completed") {
        return { output: result.output ?? result.text, isError: false };
      }
      return {
        output: `sub-agent ${childKey} ended with status ${result.status}${result.error ? `: ${result.error.message}` : ""}`,
        isError: true,
      };
    } catch (error) {
      if (context.signal.aborted) throw error;
      return { output: `sub-agent ${childKey} failed: ${(error as Error).message}`, isError: true };
    } finally {
      this.#subagentDone(context.sessionKey);
    }
  }

  /**
   * Removes a sub-agent spawned by a session deleted or reset meanwhile: its session (with
   * anything it spawned) and the record of its spawn. Best effort: a store that fails leaves
   * the spawn's record, and the parent's next delete or reset finds the child by it.
   */
  async #discardSubagent(parentKey: string, childKey: string): Promise<void> {
    try {
      await this.#deleteSession(childKey, false);
      for await (const spawn of iterateKvKeys(this.store.kv, subagentIndexPrefix(parentKey))) {
        if (parseSubagentIndexKey(spawn).child === childKey) await this.store.kv.delete(spawn);
      }
    } catch {
      // Left to the parent's next delete or reset (see above).
    }
  }

  /** A sub-agent of `parentKey` is no longer running (see `SubagentLimits.maxConcurrent`). */
  #subagentDone(parentKey: string): void {
    const left = (this.#subagentsRunning.get(parentKey) ?? 1) - 1;
    if (left > 0) this.#subagentsRunning.set(parentKey, left);
    else this.#subagentsRunning.delete(parentKey);
  }

  /**
   * Adds a sub-agent run's usage to the `subagentUsage` of its parent and of every ancestor
   * above it (each waits in its own spawn call, so it is active here).
   */
  #addSubagentUsage(parentKey: string, result: RunResult): void {
    for (let key: string | undefined = parentKey; key !== undefined; ) {
      const actor: SessionActorType | undefined = this.registry.whereis(`session:${key}`);
      if (actor === undefined) return;
      actor.addSubagentUsage(result);
      key = actor.metadata.parentKey;
    }
  }
}

const QUEUE_MODES: readonly QueueMode[] = ["steer", "followup", "collect", "interrupt"];
const THINKING_LEVELS: readonly ThinkingLevel[] = ["off", "minimal", "low", "medium", "high"];

/** What the constructor checks before it keeps anything (see {@link AgentRuntime}). */
function checkRuntimeOptions(options: AgentRuntimeOptions): void {
  requireObject(options, "AgentRuntime options");
  const store = options.store as Partial<Store> | null | undefined;
  if (
    typeof store !== "object" ||
    store === null ||
    typeof store.queue?.enqueue !== "function" ||
    typeof store.sessions?.put !== "function" ||
    typeof store.transcripts?.append !== "function" ||
    typeof store.kv?.set !== "function"
  ) {
    throw new InvalidArgumentError(
      `AgentRuntime store must be a Store (a MemoryStore, FsStore, RedisStore...), got ${describeArg(store)}`,
    );
  }
  if (
    typeof options.models !== "object" ||
    options.models === null ||
    typeof options.models.stream !== "function"
  ) {
    throw new InvalidArgumentError(
      `AgentRuntime models must be a ModelSource (a ProviderChain), got ${describeArg(options.models)}`,
    );
  }
  const tools = options.tools as unknown;
  if (
    tools !== undefined &&
    !Array.isArray(tools) &&
    (typeof tools !== "object" ||
      tools === null ||
      typeof (tools as ToolRunner).definitions !== "function" ||
      typeof (tools as ToolRunner).execute !== "function")
  ) {
    throw new InvalidArgumentError(
      `AgentRuntime tools must be an array of tools or a ToolRunner, got ${describeArg(tools)}`,
    );
  }
  if (options.approvals !== undefined) requireObject(options.approvals, "approvals");
  for (const name of ["hibernateAfterMs", "toolTimeoutMs"] as const) {
    optionalNumber(options[name], name, { min: "positive", infinity: name === "hibernateAfterMs" });
  }
  for (const name of ["historyLimit", "maxQueuedMessages", "mailboxLimit"] as const) {
    optionalNumber(options[name], name, { min: 1, integer: true });
  }
  optionalNumber(options.maxActiveSessions, "maxActiveSessions", {
    min: 0,
    integer: true,
    infinity: true,
  });
  optionalOneOf(options.defaultQueueMode, "defaultQueueMode", QUEUE_MODES);
  optionalString(options.defaultAgentId, "defaultAgentId", true);
  optionalFunction(options.now, "now");
  optionalFunction(options.cost, "cost");
  const pubsub = options.pubsub as Partial<PubSub> | null | undefined;
  if (
    pubsub !== undefined &&
    (typeof pubsub !== "object" ||
      pubsub === null ||
      typeof pubsub.publish !== "function" ||
      typeof pubsub.subscribe !== "function")
  ) {
    throw new InvalidArgumentError(
      `AgentRuntime pubsub must be a PubSub, got ${describeArg(pubsub)}`,
    );
  }
}

/**
 * Checks a message's `images` or `files`: an array of `{ mediaType, data | url }` (files may
 * add a `filename`).
 */
function checkMedia(list: unknown, name: "images" | "files"): void {
  if (list === undefined) return;
  if (!Array.isArray(list)) {
    throw new InvalidArgumentError(`message ${name} must be an array, got ${describeArg(list)}`);
  }
  for (const [i, item] of list.entries()) {
    const at = `message ${name}[${i}]`;
    requireObject(item, at);
    const { mediaType, data, url, filename } = item as Record<string, unknown>;
    optionalString(mediaType, `${at}.mediaType`, true);
    if (mediaType === undefined) throw new InvalidArgumentError(`${at} needs a mediaType string`);
    // Another type would be saved in the history, and a vendor that refuses it (each takes
    // these four, as written here; some more) would refuse every later turn of the session.
    // An image by URL may say `image/*`: its type is the fetched file's.
    if (
      name === "images" &&
      !MODEL_IMAGE_TYPES.has(mediaType as string) &&
      !(mediaType === "image/*" && data === undefined)
    ) {
      throw new InvalidArgumentError(
        `${at}.mediaType must be ${[...MODEL_IMAGE_TYPES].join(", ")} (the image types every model API takes; image/* for an image by URL), got ${describeArg(mediaType)}`,
      );
    }
    optionalString(data, `${at}.data`);
    optionalString(url, `${at}.url`);
    if (name === "files") optionalString(filename, `${at}.filename`, true);
    if (data === undefined && url === undefined) {
      throw new InvalidArgumentError(`${at} needs data or a url`);
    }
  }
}

/** Throws unless `text` is well-formed Unicode (holds no lone surrogate). */
function checkWellFormed(text: string, what: string): void {
  const at = loneSurrogateIndex(text);
  if (at !== -1) {
    throw new InvalidArgumentError(
      `${what} holds a lone surrogate (half of a UTF-16 pair) at index ${at}; send well-formed Unicode`,
    );
  }
}

/**
 * Checks a message and its send options before anything is queued: a message refused here
 * leaves nothing in the store, while one accepted must be able to run.
 */
function checkSend(message: unknown, options: unknown): UserMessageInput {
  const input = (typeof message === "string" ? { text: message } : message) as UserMessageInput;
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new InvalidArgumentError(
      `a message must be a string or an object with a text string, got ${describeArg(message)}`,
    );
  }
  if (typeof input.text !== "string") {
    throw new InvalidArgumentError(`a message needs a text string, got ${describeArg(input.text)}`);
  }
  optionalString(input.sender, "message sender");
  checkMedia(input.images, "images");
  checkMedia(input.files, "files");
  // A message of nothing would be saved and sent, and vendors refuse a message without
  // content. A photo without a caption (a channel's) has no text, and is a message.
  if (input.text.trim() === "" && !input.images?.length && !input.files?.length) {
    throw new InvalidArgumentError(
      "a message needs text (not only whitespace), an image or a file; got none",
    );
  }
  // A lone surrogate would be saved, and every model API refuses a history holding one.
  checkWellFormed(input.text, "message text");
  if (input.sender !== undefined) checkWellFormed(input.sender, "message sender");
  for (const [i, file] of (input.files ?? []).entries()) {
    if (file.filename !== undefined) checkWellFormed(file.filename, `message files[${i}].filename`);
  }
  const opts = optionalObject<SendOptions>(options, "send options");
  optionalOneOf(opts.queueMode, "queueMode", QUEUE_MODES);
  optionalString(opts.idempotencyKey, "idempotencyKey", true);
  optionalSignal(opts.signal, "signal");
  if (opts.model !== undefined && !isModelRef(opts.model)) {
    throw new InvalidArgumentError(
      `model must be "provider/model", got ${describeArg(opts.model)}`,
    );
  }
  optionalOneOf(opts.thinking, "thinking", THINKING_LEVELS);
  checkRunTimeout(opts.timeoutMs, "timeoutMs");
  if (opts.replayAfterRestart !== undefined && typeof opts.replayAfterRestart !== "boolean") {
    throw new InvalidArgumentError(
      `replayAfterRestart must be a boolean, got ${describeArg(opts.replayAfterRestart)}`,
    );
  }
  if (opts.traceparent !== undefined && parseTraceparent(opts.traceparent) === undefined) {
    throw new InvalidArgumentError(
      `traceparent must be a W3C trace context traceparent ("00-<32 hex>-<16 hex>-<2 hex>", ids not all zero), got ${describeArg(opts.traceparent)}`,
    );
  }
  if (opts.tracestate !== undefined) {
    if (opts.traceparent === undefined) {
      throw new InvalidArgumentError("tracestate needs a traceparent");
    }
    if (parseTracestate(opts.tracestate) === undefined) {
      throw new InvalidArgumentError(
        `tracestate must be a W3C trace context tracestate (up to 32 "key=value" entries, comma separated), got ${describeArg(opts.tracestate)}`,
      );
    }
  }
  if (opts.ephemeralSession !== undefined && typeof opts.ephemeralSession !== "boolean") {
    throw new InvalidArgumentError(
      `ephemeralSession must be a boolean, got ${describeArg(opts.ephemeralSession)}`,
    );
  }
  if (opts.ephemeralSession === true && opts.replayAfterRestart !== false) {
    throw new InvalidArgumentError(
      "ephemeralSession: true needs replayAfterRestart: false (a message replayed after a restart keeps its session)",
    );
  }
  return input;
}

/** The W3C trace context a tracer set on a tool call's trace, as send options (or none). */
function spanOf(trace: ToolRunTrace | undefined): Pick<SendOptions, "traceparent" | "tracestate"> {
  if (trace === undefined || parseTraceparent(trace.traceparent) === undefined) return {};
  const state = trace.tracestate;
  return {
    traceparent: trace.traceparent!,
    ...(state !== undefined && state !== "" && parseTracestate(state) !== undefined
      ? { tracestate: state }
      : {}),
  };
}

/** A message's `output` option, checked and prepared, or undefined. */
function sendOutput(options: SendOptions | undefined): RunOutput | undefined {
  const output = options?.output;
  return output === undefined ? undefined : resolveOutput(output, "output");
}

/** Throws unless `value` is undefined or a whole number of ms a timer can wait. */
function checkRunTimeout(value: unknown, what: string): void {
  if (value === undefined) return;
  if (
    typeof value !== "number" ||
    !Number.isInteger(value) ||
    value < 1 ||
    value > MAX_RUN_TIMEOUT_MS
  ) {
    throw new InvalidArgumentError(
      `${what} must be a whole number of ms from 1 to ${MAX_RUN_TIMEOUT_MS}, got ${describeArg(value)}`,
    );
  }
}

function isModelRef(value: unknown): value is string {
  if (typeof value !== "string") return false;
  const slash = value.indexOf("/");
  return slash > 0 && slash < value.length - 1;
}

function validateAgents(agents: AgentDefinition[]): Map<string, AgentDefinition> {
  if (!Array.isArray(agents)) {
    throw new InvalidArgumentError(`agents must be an array, got ${describeArg(agents)}`);
  }
  if (agents.length === 0) throw new InvalidArgumentError("a runtime needs at least one agent");
  const out = new Map<string, AgentDefinition>();
  for (const [i, agent] of agents.entries()) {
    requireObject(agent, `agents[${i}]`);
    const id = normalizeAgentId(agent.id);
    if (out.has(id)) throw new InvalidArgumentError(`duplicate agent id "${id}"`);
    if (typeof agent.model !== "string" || !agent.model.includes("/")) {
      throw new InvalidArgumentError(
        `agent "${id}": model must be "provider/model", got ${describeArg(agent.model)}`,
      );
    }
    checkRunTimeout(agent.timeoutMs, `agent "${id}": timeoutMs`);
    optionalNumber(agent.contextTokens, `agent "${id}": contextTokens`, {
      min: 1,
      integer: true,
    });
    checkAutoCompact(agent.autoCompact, `agent "${id}": autoCompact`);
    // Checked (and prepared) once, here: a run of the agent uses the prepared form.
    if (agent.output !== undefined) resolveOutput(agent.output, `agent "${id}": output`);
    const checked: AgentDefinition = { ...agent, id };
    if (agent.identity !== undefined) {
      checked.identity = checkAgentIdentity(agent.identity, `agent "${id}": identity`);
    }
    checkSubagentLimits(agent.subagents, `agent "${id}": subagents`);
    out.set(id, checked);
  }
  // A sub-agent's agent must be one of these: otherwise every spawn would make a child
  // session that cannot run.
  for (const [id, agent] of out) {
    const named = agent.subagents?.agentId;
    if (named !== undefined && !out.has(named.trim().toLowerCase())) {
      throw new InvalidArgumentError(
        `agent "${id}": subagents.agentId names no agent: ${JSON.stringify(named)}`,
      );
    }
  }
  return out;
}

/** Checks `AgentDefinition.subagents` (see {@link SubagentLimits}). */
function checkSubagentLimits(value: unknown, where: string): void {
  if (value === undefined) return;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${where} must be an object, got ${describeArg(value)}`);
  }
  const limits = value as Record<string, unknown>;
  const { maxDepth, maxChildren, maxConcurrent, timeoutMs, agentId, ...rest } = limits;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) {
    throw new InvalidArgumentError(`${where}: unknown option ${JSON.stringify(unknown[0])}`);
  }
  optionalNumber(maxDepth, `${where}.maxDepth`, { min: 1, integer: true });
  optionalNumber(maxChildren, `${where}.maxChildren`, { min: 1, integer: true, infinity: true });
  optionalNumber(maxConcurrent, `${where}.maxConcurrent`, {
    min: 1,
    integer: true,
    infinity: true,
  });
  // Longer than a run's longest limit is cut to it at the spawn.
  optionalNumber(timeoutMs, `${where}.timeoutMs`, { min: 1, integer: true, infinity: true });
  optionalString(agentId, `${where}.agentId`);
}

/** Checks `AgentDefinition.autoCompact`. */
function checkAutoCompact(value: unknown, where: string): void {
  if (value === undefined || typeof value === "boolean") return;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(
      `${where} must be a boolean or { thresholdTokens, keepTurns }, got ${describeArg(value)}`,
    );
  }
  const { thresholdTokens, keepTurns, ...rest } = value as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) {
    throw new InvalidArgumentError(`${where}: unknown option ${JSON.stringify(unknown[0])}`);
  }
  optionalNumber(thresholdTokens, `${where}.thresholdTokens`, { min: 1, integer: true });
  optionalNumber(keepTurns, `${where}.keepTurns`, { min: 0, integer: true });
  if (typeof keepTurns === "number" && keepTurns > 1000) {
    throw new InvalidArgumentError(`${where}.keepTurns must be at most 1000, got ${keepTurns}`);
  }
}

/** Two revivals raced and the other one won the name: look it up again. */
function isAlreadyRegistered(error: unknown): boolean {
  return (
    error instanceof BeamClawError &&
    (error.code === "ALREADY_REGISTERED" ||
      (error.code === "CHILD_START_FAILED" &&
        (error.cause as { code?: string } | undefined)?.code === "ALREADY_REGISTERED"))
  );
}

/** A cluster refused to run a session here (another node owns it, or this one drains). */
function isClusterRefusal(error: unknown): boolean {
  return isBeamClawError(error) && error.code.startsWith("CLUSTER_");
}

/** Checks `SessionHandle.inject`'s text and options; the label and key, if any. */
function checkInjection(
  text: unknown,
  options: InjectOptions | undefined,
): { label?: string; idempotencyKey?: string } {
  if (typeof text !== "string" || text.trim().length === 0) {
    throw new InvalidArgumentError(
      `inject needs the message text (a non-empty string), got ${describeArg(text)}`,
    );
  }
  checkWellFormed(text, "inject text");
  const { label, idempotencyKey } = optionalObject<InjectOptions>(options, "inject options");
  optionalString(idempotencyKey, "idempotencyKey", true);
  const keyed = idempotencyKey === undefined ? {} : { idempotencyKey };
  if (label === undefined) return keyed;
  if (
    typeof label !== "string" ||
    label.length === 0 ||
    label.length > 100 ||
    /[\r\n]/.test(label)
  ) {
    throw new InvalidArgumentError(
      `an inject label must be one line of 1 to 100 characters, got ${describeArg(label)}`,
    );
  }
  checkWellFormed(label, "inject label");
  return { label, ...keyed };
}

/** Checks the options of `SessionHandle.rewind`; a copy of the fields it knows. */
function checkRewindOptions(options: unknown): RewindOptions | undefined {
  if (options === undefined) return undefined;
  const opts = optionalObject<RewindOptions>(options, "rewind options");
  const { runs, runId, idempotencyKey } = opts;
  optionalString(idempotencyKey, "idempotencyKey", true);
  if (runs !== undefined && runId !== undefined) {
    throw new InvalidArgumentError("rewind takes `runs` or `runId`, not both");
  }
  if (runs !== undefined && !(Number.isInteger(runs) && runs >= 1)) {
    throw new InvalidArgumentError(`runs must be a positive integer, got ${describeArg(runs)}`);
  }
  if (runId !== undefined && (typeof runId !== "string" || runId === "")) {
    throw new InvalidArgumentError(`runId must be a non-empty string, got ${describeArg(runId)}`);
  }
  return {
    ...(runs === undefined ? {} : { runs }),
    ...(runId === undefined ? {} : { runId }),
    ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
  };
}

/** The runtime's cost accounting: its `cost` option, else its model source's own prices. */
function costOf(options: AgentRuntimeOptions): { cost?: CostFunction } {
  if (options.cost !== undefined) return { cost: options.cost };
  const models = options.models;
  if (typeof models.cost !== "function") return {};
  // A chain none of whose providers knows a price prices nothing: no cost function at all.
  if (models instanceof ProviderChain && !models.priced) return {};
  return { cost: models.cost.bind(models) };
}
