import { randomUUID } from "node:crypto";
import type { RoutedSessionRequest } from "../cluster/ownership.js";
import {
  AbortedError,
  BeamClawError,
  FencedError,
  InvalidArgumentError,
  NoProcessError,
  OverloadedError,
  RunTimeoutError,
  SessionBusyError,
} from "../errors.js";
import { answerToolCalls } from "../providers/tool-results.js";
import type { JsonObject, JsonValue, ModelMessage, ThinkingLevel } from "../providers/types.js";
import { Actor, STOPPING } from "../runtime/actor.js";
import type { ExitReason } from "../runtime/exit.js";
import { CANCELLATION, Cancellation, defineLazySignal } from "../runtime/lazy-abort.js";
import { LocalPubSub, type PubSub } from "../runtime/pubsub.js";
import { type LongTimer, startTimer } from "../runtime/timers.js";
import { describeArg } from "../runtime/validate.js";
import { iterateKvKeys } from "../store/kv-paging.js";
import type { QueuedMessage, SessionRecord, Store, TranscriptRecord } from "../store/types.js";
import {
  emitTelemetry,
  type SessionRunTrace,
  telemetryTenantOf,
  traceTelemetry,
} from "../telemetry.js";
import {
  type AgentLoopInput,
  type CallUsage,
  type CostFunction,
  type ModelSource,
  type PersistOptions,
  promptCacheKey,
  runAgentLoop,
} from "./agent-loop.js";
import {
  COMPACTION_SYSTEM_PROMPT,
  type CompactionEntry,
  type CompactionResult,
  type CompactOptions,
  checkCompactOptions,
  compactionCut,
  messagesOf,
  renderForSummary,
  summaryMessage,
  summaryRequest,
} from "./compaction.js";
import { type ContextWindow, estimateMessageTokens } from "./context-window.js";
import { PREPARED_OUTPUT, type RunOutput, resolveOutput } from "./output.js";
import { RunEventLog, type SendDisposition } from "./run-handle.js";
import {
  type AgentDefinition,
  errorInfo,
  INJECTED_MESSAGES_TOPIC,
  type InjectedMessageEvent,
  type InjectResult,
  type QuarantinedMessage,
  type QueueMode,
  type RewindOptions,
  type RewindResult,
  type RunEvent,
  type RunResult,
  type SendOptions,
  type SessionMetadata,
  type SubagentUsage,
  type ToolRunner,
  type UserMessageInput,
} from "./types.js";
import type { UsageEntry } from "./usage.js";

/** Where quarantined messages live in `store.kv`. @internal */
export const QUARANTINE_PREFIX = "beamclaw:quarantine:";

function isCompactionResult(value: unknown): value is CompactionResult {
  const status = (value as { status?: unknown } | undefined)?.status;
  return (
    typeof value === "object" &&
    value !== null &&
    !(value instanceof Error) &&
    (status === "compacted" || status === "skipped")
  );
}

/**
 * A copy of `m` with a model run's usage and cost added to its counters, updated at `now`.
 * `Object.assign`, not `{ ...m, updatedAt }`: on Node 20 a spread that adds a property costs
 * 1-2 µs and leaves an object whose later copies are slow too.
 */
function withUsage(
  m: SessionMetadata,
  run: { usage: RunResult["usage"]; costUsd: number },
  now: number,
): SessionMetadata {
  const next: SessionMetadata = Object.assign({}, m);
  next.updatedAt = now;
  next.inputTokens = m.inputTokens + run.usage.inputTokens;
  next.outputTokens = m.outputTokens + run.usage.outputTokens;
  next.cacheReadTokens = m.cacheReadTokens + (run.usage.cacheReadTokens ?? 0);
  next.cacheWriteTokens = m.cacheWriteTokens + (run.usage.cacheWriteTokens ?? 0);
  next.costUsd = m.costUsd + run.costUsd;
  return next;
}

/** `autoCompact` without a threshold: compact at this share of the known budget. */
const AUTO_COMPACT_SHARE = 0.75;
/** How many of the latest counted compactions' run ids a session's metadata keeps. */
const COUNTED_COMPACTIONS = 16;

/** A stored `contextLimit` that can be used (records may come from older versions or hands). */
function isContextLimit(value: unknown): value is { model: string; maxTokens: number } {
  const limit = value as { model?: unknown; maxTokens?: unknown } | undefined;
  return (
    typeof limit?.model === "string" &&
    typeof limit.maxTokens === "number" &&
    Number.isInteger(limit.maxTokens) &&
    limit.maxTokens > 0
  );
}

/**
 * The `store.kv` key of a quarantined message; `|` never occurs in a session key, so the
 * keys of one session are exactly those starting with `quarantineKey(sessionKey, "")`.
 * @internal
 */
export function quarantineKey(sessionKey: string, id: string): string {
  return `${QUARANTINE_PREFIX}${sessionKey}|${id}`;
}

/**
 * Where the session operations given an idempotency key (`inject`, `rewind`, `compact`) are
 * remembered in `store.kv`, for the store's `dedupeWindowMs`. @internal
 */
export const SESSION_OP_PREFIX = "beamclaw:session-op:";

/** The start of the `store.kv` keys of one session's keyed operations. @internal */
export function sessionOpPrefix(sessionKey: string): string {
  return `${SESSION_OP_PREFIX}${sessionKey}|`;
}

/**
 * A session operation given an idempotency key, as remembered in `store.kv`: written before
 * the operation writes to the transcript (whose entries then carry the key), and marked
 * done once it did, so that a retry with the key finds what the first call did, also when
 * the store saved the write but its reply was lost.
 */
interface KeyedOperation extends JsonObject {
  op: "inject" | "rewind" | "compact";
  /** The transcript's last seq before the operation wrote: what it wrote comes after. */
  savedAfter: number;
  /** The injection's id (`inject`): its run id is `inject:<id>`. */
  id?: string;
  /** Its result: known before it writes (`rewind`, `compact`), or once it did (`inject`). */
  result?: JsonValue;
  /** What it wrote is known to be saved (or it wrote nothing): `result` is final. */
  done?: boolean;
}

/** A result as JSON (fields left undefined dropped), for `store.kv`. */
function asJson(value: object): JsonValue {
  return JSON.parse(JSON.stringify(value)) as JsonValue;
}

/** Where the sub-agents a session spawned are recorded in `store.kv`. @internal */
export const SUBAGENT_PREFIX = "beamclaw:subagent:";

/**
 * The `store.kv` key recording one spawn of a sub-agent: its parent, the spawn's slot (the
 * parent's run id and the spawn's place in that run) and the child's key. Written when it is
 * spawned, before the child starts. A session's spawns are the keys starting with
 * {@link subagentIndexPrefix}, counted by distinct slot: a run that replays after a crash or a
 * restart fills the same slots again instead of counting twice. @internal
 */
export function subagentIndexKey(parentKey: string, slot: string, childKey: string): string {
  return `${subagentIndexPrefix(parentKey)}${slot}|${childKey}`;
}

/** The start of the {@link subagentIndexKey}s of one parent (`|` never occurs in a session key). @internal */
export function subagentIndexPrefix(parentKey: string): string {
  return `${SUBAGENT_PREFIX}${parentKey}|`;
}

/** The slot (`runId|n`) and child key of a {@link subagentIndexKey}. @internal */
export function parseSubagentIndexKey(key: string): { slot: string; child: string } {
  const parts = key.slice(SUBAGENT_PREFIX.length).split("|");
  return { slot: `${parts[1]}|${parts[2]}`, child: parts.slice(3).join("|") };
}

/** The sub-agent spawns a session has recorded (see {@link subagentIndexKey}). */
interface SubagentClaims {
  /** Their slots (`runId|n`). */
  slots: Set<string>;
  /**
   * Spawns counted in the record (`subagentsSpawned`) beyond the recorded slots: those of
   * a record written before spawns were recorded one by one.
   */
  base: number;
}

/** What every session actor of a runtime shares. @internal */
export interface SessionContext {
  store: Store;
  source: ModelSource;
  tools: ToolRunner;
  pubsub: PubSub;
  cost?: CostFunction;
  resolveAgent(agentId: string): AgentDefinition;
  hibernateAfterMs: number;
  historyLimit: number;
  maxQueuedMessages: number;
  /** Crashes of its session during a message's runs after which it is quarantined. */
  quarantineAfterCrashes: number;
  /**
   * Per durable-queue id: how many times its session crashed (or was killed) while running
   * it, in this process. Outlives the session actors; an entry goes when its message is done.
   */
  crashes: Map<string, number>;
  mailboxLimit: number;
  defaultQueueMode: QueueMode;
  /** Logs of messages accepted but not yet finished, by durable-queue id (survive a crash). */
  logs: Map<string, RunEventLog>;
  onUsage(entry: UsageEntry): void;
  now(): number;
  /** The process registered under the session's name (`session:<key>`), if any. */
  holderOf(key: string): unknown;
  /**
   * The run a durable-queue message joined when a session took it (its own, or the run it was
   * collected or steered into), while the runtime still follows its handle: a replay after a
   * crash puts it back into that run, so that its handle's run id, events and abort keep
   * naming the run it is in.
   */
  joinedRun?(queueId: string): string | undefined;
  /**
   * Deletes the sub-agent sessions a session spawned (any depth) and the records of those
   * spawns, as `SessionHandle.delete` does: for a session that deletes itself.
   */
  deleteSubagents?(key: string): Promise<void>;
}

/** How long (in 1 ms waits) a recovering session waits to be registered before it replays. */
const REPLAY_WAITS = 1_000;
/** Unfinished messages a recovering session takes from the store at once (the most it gives). */
const REPLAY_PAGE = 1_000;
/** How soon a message of a session's own that found its mailbox full is sent again. */
const SELF_RETRY_MS = 10;
/**
 * The shortest and the longest wait a full queue suggests (`OverloadedError.retryAfterMs`,
 * see `#queueRetryAfterMs`). At most 30 s: older openai-node versions (the 60 s cap whose
 * removal https://github.com/openai/openai-node/issues/1840 asks about) and openai-python
 * ignore a `Retry-After` of 60 s or more and retry after their own short backoff.
 */
const QUEUE_RETRY_MIN_MS = 1_000;
const QUEUE_RETRY_MAX_MS = 30_000;

/** A message accepted by a session. @internal */
export interface SessionDelivery {
  input: UserMessageInput;
  options: Omit<SendOptions, "signal">;
  runId: string;
  queueId: string;
  log: RunEventLog;
  /**
   * True when the message was sent without an idempotency key (the queue holds it under one
   * made up by the runtime, see {@link madeUpKey}): it leaves the queue without a dedupe
   * record.
   */
  unkeyed: boolean;
  /**
   * When the message's run must be over, epoch ms on the runtime's clock (`ctx.now()`), if
   * it has an absolute deadline: a sub-agent's, set when it was spawned and kept with the
   * message in the durable queue (see {@link queuedDeadlineAt}), so that a replay after a
   * crash or a restart does not get a fresh time limit.
   */
  deadlineAt?: number;
}

/**
 * The absolute deadline kept with a queued message (its payload's `deadlineAt`), if it has a
 * usable one. @internal
 */
export function queuedDeadlineAt(payload: unknown): number | undefined {
  const deadlineAt = (payload as { deadlineAt?: unknown } | null)?.deadlineAt;
  return typeof deadlineAt === "number" && Number.isFinite(deadlineAt) ? deadlineAt : undefined;
}

/**
 * The idempotency key the runtime files a message under when its sender gave none. Nobody
 * else knows it, so nobody can send it again.
 * @internal
 */
export function madeUpKey(runId: string): string {
  return `auto:${runId}`;
}

/** Whether a queued message is filed under a key the runtime made up ({@link madeUpKey}). @internal */
export function hasMadeUpKey(message: QueuedMessage): boolean {
  const { runId } = message.payload as { runId?: unknown };
  return typeof runId === "string" && message.idempotencyKey === madeUpKey(runId);
}

interface Batch {
  runId: string;
  inputs: UserMessageInput[];
  logs: RunEventLog[];
  queueIds: string[];
  /**
   * Those of `queueIds` sent without an idempotency key: they leave the durable queue
   * without a dedupe record (see `#dequeue`). Absent when there are none.
   */
  unkeyed?: string[];
  mode: QueueMode;
  model?: string;
  thinking?: ThinkingLevel;
  /** Attempts of this run that failed to save (see `#retryLater`). */
  saveFailures?: number;
  /** The message's own time limit (`SendOptions.timeoutMs`). */
  timeoutMs?: number;
  /** The form of the answer (`SendOptions.output`), prepared. */
  output?: RunOutput;
  /** The caller's span (`SendOptions.traceparent`). */
  traceparent?: string;
  /** Its vendors' state (`SendOptions.tracestate`). */
  tracestate?: string;
  /**
   * When the run must be over (`performance.now()` ms), set when it first starts: a run that
   * runs again after a failed save keeps its deadline.
   */
  deadline?: number;
  /** The message's absolute deadline (see {@link SessionDelivery.deadlineAt}). */
  deadlineAt?: number;
  /**
   * A run that goes on for messages steered into it after its model had answered (see
   * `#continueSteered`): what its earlier part did, added to its result when it ends.
   */
  carried?: CarriedRun;
}

/** What the earlier part of a run that went on for late steered messages did. */
interface CarriedRun {
  result: RunResult;
  /** Its inputs (steered ones included): a retry after a failed save runs them again. */
  inputs: UserMessageInput[];
  lastAssistant: { seq: number; at: number } | undefined;
  /** Sub-agents its earlier part spawned (see `ActiveRun.spawned`). */
  spawned: number;
}

interface ActiveRun extends Batch {
  /**
   * Aborts the run. Its `AbortSignal` is made only if something outside the library (a
   * provider, a tool) reads it; the loop, the chain and the tool layer watch it directly.
   */
  controller: Cancellation;
  /** performance.now() when the run started. */
  startedAt: number;
  steered: UserMessageInput[];
  /** Steered messages the run has taken in, so that a retry runs them again. */
  taken: UserMessageInput[];
  /** Why saving one of its messages failed: the run runs again, unacknowledged. */
  saveFailure?: unknown;
  /** Cancels the timer of its next attempt, while it waits for one. */
  cancelRetry?: () => void;
  /** The timer of its time limit, while it has one (see `#armTimeout`). */
  timeLimit: ReturnType<typeof setTimeout> | undefined;
  /** The transcript `seq` and `at` of its last saved assistant message. */
  lastAssistant: { seq: number; at: number } | undefined;
  /**
   * Sub-agents this attempt of the run has spawned: the next spawn's place in the run (a
   * replay starts again at 0 and so fills the slots its first attempt recorded).
   */
  spawned: number;
}

/** First wait before a run whose messages could not be saved runs again; it doubles. */
const SAVE_RETRY_BASE_MS = 100;
/** Longest wait between attempts of a run whose messages could not be saved. */
const SAVE_RETRY_MAX_MS = 30_000;

/** What `takeSteered` hands out when nothing was steered (never mutated). */
const NOTHING_STEERED: UserMessageInput[] = [];

/** Requests a session actor answers. @internal */
export type SessionCall =
  | { type: "send"; delivery: SessionDelivery }
  | { type: "abort"; runId: string }
  | { type: "info" }
  | { type: "patch"; patch: SessionPatch }
  | { type: "reset" }
  | { type: "compact"; options?: CompactOptions }
  | { type: "rewind"; options?: RewindOptions }
  | Extract<RoutedSessionRequest, { type: "inject" }>;

type SessionInfo =
  | { type: "run-done"; runId: string; result: RunResult }
  | { type: "idle-check" }
  | { type: "hibernate-if-idle" }
  | { type: "replay"; waited?: number }
  | { type: "retry-run"; runId: string }
  | { type: "retry-dequeue" }
  | { type: "run-timeout"; runId: string }
  | { type: "inject-due" }
  | { type: "save-record" }
  | {
      type: "compaction-done";
      compaction: Compaction;
      outcome: { result: RunResult; snapshot: ModelMessage[] } | { error: unknown };
    };

/** A compaction asked for: waits for the active run; holds new runs while it summarizes. */
interface Compaction {
  trigger: "manual" | "auto";
  /** performance.now() when it was asked for. */
  askedAt: number;
  keepTurns: number;
  timeoutMs: number;
  instructions: string | undefined;
  done: Promise<CompactionResult>;
  resolve: (result: CompactionResult) => void;
  reject: (error: unknown) => void;
  controller: AbortController;
  running: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The summarizing model call's usage, saved with the compaction's transcript entry. */
  callUsage?: CallUsage;
  /** The idempotency keys of the calls it answers (the first, and those that joined it). */
  keys: string[];
  /** The transcript's last seq before its entry was written (when keyed). */
  savedAfter?: number;
}

/**
 * A session's answer to a `compact` request: the compaction's outcome, later (the actor
 * does not wait for the model). @internal
 */
export class PendingCompaction {
  constructor(readonly done: Promise<CompactionResult>) {}
}

/**
 * A session's answer to an `inject` request while it is busy: the injection's outcome,
 * once the active run is done. @internal
 */
export class PendingInjection {
  constructor(readonly done: Promise<InjectResult>) {}
}

/** An injection waiting for the active run (see `SessionActor.#requestInjection`). */
interface Injection {
  /** `inject:<id>`: the run id it is saved under. */
  runId: string;
  message: ModelMessage;
  done: Promise<InjectResult>;
  resolve(result: InjectResult): void;
  reject(error: unknown): void;
}

/** Fields of a session's metadata a client may change. */
export interface SessionPatch {
  displayName?: string | null;
  channel?: string | null;
  thinkingLevel?: ThinkingLevel | null;
  verboseLevel?: "off" | "on" | "full" | null;
  modelOverride?: string | null;
}

/** A snapshot of a session. */
export interface SessionInfoSnapshot {
  metadata: SessionMetadata;
  activeRunId: string | undefined;
  queued: number;
  historyLength: number;
}

const PATCHABLE = [
  "displayName",
  "channel",
  "thinkingLevel",
  "verboseLevel",
  "modelOverride",
] as const;

/** The values a patchable field may take, when it is not any string. */
const PATCH_VALUES: Partial<Record<(typeof PATCHABLE)[number], readonly string[]>> = {
  thinkingLevel: ["off", "minimal", "low", "medium", "high"],
  verboseLevel: ["off", "on", "full"],
};

/** Copies a run's result onto its `beamclaw:session.run` trace; a failed run is an error. */
function settleRunTrace(result: RunResult, trace: SessionRunTrace): void {
  trace.status = result.status;
  trace.steps = result.steps;
  trace.inputTokens = result.usage.inputTokens;
  trace.outputTokens = result.usage.outputTokens;
  trace.costUsd = result.costUsd;
  if (result.status === "failed") trace.error = result.error ?? "failed";
}

/** The metadata of a new session: no runs, counters at zero. @internal */
export function newMetadata(key: string, agentId: string, now: number): SessionMetadata {
  return {
    key,
    agentId,
    createdAt: now,
    updatedAt: now,
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    costUsd: 0,
    runs: 0,
  };
}

/**
 * One conversation as an actor: its metadata and history in memory while it is active, its
 * runs, and its queue of waiting messages. Runs execute beside the mailbox (a run is long;
 * the mailbox stays free for steer, abort and info), and report back as messages.
 *
 * Everything a session acknowledges is in the store before the acknowledgement: its messages
 * in the durable inbound queue until their run is done, every transcript entry before the
 * run goes on. A crashed session is restarted by its supervisor (transient) and comes back
 * from the store, replaying unfinished messages; an idle one hibernates (saves and stops)
 * and is revived by the next message.
 * @internal
 */
export class SessionActor extends Actor<SessionCall, unknown, never, SessionInfo> {
  readonly key: string;
  readonly #agentId: string;
  readonly #ctx: SessionContext;
  readonly #recovering: boolean;
  #metadata!: SessionMetadata;
  #history: ModelMessage[] = [];
  /** What its runs learned of the model's context window (see `AgentLoopInput.contextWindow`). */
  readonly #contextWindow: ContextWindow = {
    ref: undefined,
    learnedMaxTokens: undefined,
    horizon: undefined,
  };
  /** The `cacheKey` of its model requests, made on its first run. */
  #cacheKey: string | undefined;
  /** A compaction asked for and not done yet (see `compact`). */
  #compaction: Compaction | null = null;
  /**
   * A compaction without an idempotency key whose write failed in a way that may have saved
   * it (the store's reply lost) and whose entry could not be looked for then: the next
   * compaction asked for looks for it (by its run id, saved with it) and counts it if it
   * was saved (see `#settleUnconfirmedCompaction`). Kept in memory only.
   */
  #unconfirmedCompaction:
    | { runId: string; savedAfter: number; result: CompactionResult }
    | undefined;
  /** Injections waiting for the active run's end (see `inject`), oldest first. */
  #injections: Injection[] = [];
  #active: ActiveRun | null = null;
  #pending: Batch[] = [];
  #pendingCount = 0;
  /** How long its last run that completed took (ms), for `#queueRetryAfterMs`. */
  #lastRunMs: number | undefined;
  /**
   * A recovering session's unfinished messages are still to be replayed: messages that
   * arrive meanwhile wait behind them (see the `replay` message).
   */
  #replayDue = false;
  /** Being deleted (see `markDeleted`). */
  #deleted = false;
  /** Times it was deleted or reset (see `spawnEpoch`). */
  #spawnEpoch = 0;
  /** Its recorded sub-agent spawns, once a spawn needed them (see `claimSubagent`). */
  #claims: Promise<SubagentClaims> | undefined;
  /**
   * Its record is in the store (it was there at start, or a save of it succeeded). A new
   * session's first saved message writes it (see `save-record`), so that it is listed and
   * described during its first run, not only once that run ends.
   */
  #recordSaved = false;
  /** A `save-record` message is on its way. */
  #recordDue = false;
  /** The last replay got a full page from the store: replay again once it is done. */
  #replayMore = false;
  /**
   * Runs aborted while their messages were still to be replayed (see `#abort`): the replay
   * ends them as aborted instead of running them.
   */
  readonly #abortedBeforeReplay = new Set<string>();
  #lastActivity = 0;
  #idleArmed = false;
  /** The session's PubSub topic, built once: a run publishes many events. */
  readonly #topic: string;
  /** Timers of its own messages (see `#sendSelfAfter`), cancelled when it stops. */
  readonly #selfTimers = new Set<LongTimer>();
  /** Whether the listener that aborts the active run when the session stops is in place. */
  #watchingStop = false;
  /**
   * Per run id of a replayed message: the crash markers in its transcript, i.e. how many
   * times it started and died, in any process (read once, by a recovering `init`).
   */
  #crashMarks: ReadonlyMap<string, number> = NO_CRASH_MARKS;
  /** This start took the session over from another cluster node (see the constructor). */
  readonly #takenOver: boolean;
  /**
   * After a takeover, the runs that were running on the node that went (they wrote their
   * first message, see `init`) and are not announced here yet: the followers there (on the
   * session's topics) saw them start, so their replay is the same run (see `#announceStart`).
   */
  #startedElsewhere: Set<string> | undefined;
  /**
   * Messages whose run is over whose removal from the durable queue the store refused (see
   * `#dequeueAll`): tried again with backoff while the session stays in memory.
   */
  #undequeued: Array<{ id: string; unkeyed: boolean }> = [];
  /** Failed rounds of `retry-dequeue` in a row (for its backoff). */
  #dequeueFailures = 0;
  /** A `retry-dequeue` message is on its way. */
  #dequeueRetryArmed = false;

  /**
   * `takenOver`: this start is a cluster node's takeover of the session from a node that went
   * (see `#startedElsewhere`).
   */
  constructor(
    key: string,
    agentId: string,
    ctx: SessionContext,
    recovering: boolean,
    takenOver = false,
  ) {
    super({ name: `session ${key}`, mailboxLimit: ctx.mailboxLimit });
    this.key = key;
    this.#topic = `session:${key}`;
    this.#agentId = agentId;
    this.#ctx = ctx;
    this.#recovering = recovering;
    this.#takenOver = takenOver;
    this.monitor((reason) => {
      for (const timer of this.#selfTimers) timer.cancel();
      this.#selfTimers.clear();
      if (reason === "killed") this.#release(reason);
    });
  }

  /**
   * Sends the session a message of its own (a run's end, a replay, a timer's). Unlike a
   * request, it must not be lost to a full mailbox (a flood of requests): then it is tried
   * again shortly, until the session takes it or stops (a stopped session drops it).
   */
  #sendSelf(message: SessionInfo): void {
    try {
      this.send(message);
    } catch (error) {
      if (!OverloadedError.isInstance(error)) throw error;
      this.#sendSelfAfter(message, SELF_RETRY_MS);
    }
  }

  /** {@link #sendSelf} after `delayMs`; returns a function that cancels it. */
  #sendSelfAfter(message: SessionInfo, delayMs: number): () => void {
    if (!this.alive) return () => {};
    const timers = this.#selfTimers;
    const timer = startTimer(() => {
      timers.delete(timer);
      this.#sendSelf(message);
    }, delayMs);
    timers.add(timer);
    return () => {
      timer.cancel();
      timers.delete(timer);
    };
  }

  get metadata(): SessionMetadata {
    return this.#metadata;
  }

  /**
   * Tells the session it is being deleted (the runtime's `delete`, before it stops it): its
   * unfinished runs then end as aborted (`SESSION_DELETED`) instead of waiting for a restart.
   * @internal
   */
  markDeleted(): void {
    this.#deleted = true;
    this.#spawnEpoch++;
  }

  /**
   * Changes when the session is deleted (`markDeleted`) or reset, before either looks for
   * the sub-agents it spawned. A spawn that reads the same value before it claims its slot
   * and once its child is made raced with neither: a later delete or reset finds the child
   * in the store. One that reads another value must remove the child itself. @internal
   */
  get spawnEpoch(): number {
    return this.#spawnEpoch;
  }

  /**
   * Counts the sub-agent `childKey` that run `runId` of this session spawns, unless the
   * session has spawned `max` already (then false, as when the run is no longer active).
   * The spawn is recorded in the store (see {@link subagentIndexKey}) before this resolves, so
   * a crash or a restart loses no count, and a replay of the run, whose spawns take the same
   * slots, counts none twice; `subagentsSpawned` mirrors the count and is saved with the
   * metadata when the run ends. Called by the runtime's spawn tool. @internal
   */
  async claimSubagent(max: number, runId: string, childKey: string): Promise<boolean> {
    const active = this.#active;
    if (active === null || active.runId !== runId) return false;
    const claims = await this.#subagentClaims();
    if (this.#active !== active) return false;
    const slot = `${runId}|${active.spawned}`;
    const claimed = claims.slots.has(slot) || claims.base + claims.slots.size < max;
    if (claimed) {
      active.spawned++;
      const added = !claims.slots.has(slot);
      claims.slots.add(slot);
      try {
        await this.#ctx.store.kv.set(subagentIndexKey(this.key, slot, childKey), this.#ctx.now());
      } catch (error) {
        // Not recorded: not spawned, and not counted.
        if (added) claims.slots.delete(slot);
        throw error;
      }
    }
    // The count as recorded (a crash may have cut the run that counted the last ones).
    const count = claims.base + claims.slots.size;
    if (this.#metadata.subagentsSpawned !== count) {
      this.#metadata = { ...this.#metadata, subagentsSpawned: count };
    }
    return claimed;
  }

  /** The recorded spawns, read from the store on the first spawn of this actor's life. */
  #subagentClaims(): Promise<SubagentClaims> {
    this.#claims ??= this.#readSubagentClaims().catch((error: unknown) => {
      this.#claims = undefined;
      throw error;
    });
    return this.#claims;
  }

  /** The recorded spawns, read page by page from the store. */
  async #readSubagentClaims(): Promise<SubagentClaims> {
    const slots = new Set<string>();
    for await (const key of iterateKvKeys(this.#ctx.store.kv, subagentIndexPrefix(this.key))) {
      slots.add(parseSubagentIndexKey(key).slot);
    }
    return { slots, base: Math.max(0, (this.#metadata.subagentsSpawned ?? 0) - slots.size) };
  }

  /**
   * Adds what a sub-agent's run used to this session's `subagentUsage` (this session is its
   * parent or an ancestor of it), saved with the metadata when this session's run ends.
   * @internal
   */
  addSubagentUsage(run: { usage: RunResult["usage"]; costUsd: number }): void {
    const u: Partial<SubagentUsage> = this.#metadata.subagentUsage ?? {};
    this.#metadata = {
      ...this.#metadata,
      subagentUsage: {
        inputTokens: (u.inputTokens ?? 0) + run.usage.inputTokens,
        outputTokens: (u.outputTokens ?? 0) + run.usage.outputTokens,
        cacheReadTokens: (u.cacheReadTokens ?? 0) + (run.usage.cacheReadTokens ?? 0),
        cacheWriteTokens: (u.cacheWriteTokens ?? 0) + (run.usage.cacheWriteTokens ?? 0),
        costUsd: (u.costUsd ?? 0) + run.costUsd,
        runs: (u.runs ?? 0) + 1,
      },
    };
  }

  /** The `cacheKey` of its model requests, made once. */
  #promptCacheKey(): string {
    if (this.#cacheKey === undefined) this.#cacheKey = promptCacheKey(this.key);
    return this.#cacheKey;
  }

  protected override async init(): Promise<void> {
    const { store } = this.#ctx;
    const record = await store.sessions.get(this.key);
    this.#recordSaved = record !== undefined;
    this.#metadata =
      record === undefined
        ? newMetadata(this.key, this.#agentId, this.#ctx.now())
        : ({
            ...newMetadata(this.key, this.#agentId, record.createdAt),
            ...record,
          } as SessionMetadata);
    const limit = this.#metadata.contextLimit;
    if (isContextLimit(limit)) {
      this.#contextWindow.ref = limit.model;
      this.#contextWindow.learnedMaxTokens = limit.maxTokens;
    }
    const tail = (
      await store.transcripts.read(this.key, { order: "desc", limit: this.#ctx.historyLimit })
    ).reverse();
    // Entries of runs that never finished (they will run again, or were cut short) must not
    // reach the model: a replay would repeat the user message and leave tool calls unanswered.
    // A discard marker cancels the entries of its run written before it; a replay of the run
    // (same run id) writes after it and counts.
    let live = liveEntries(tail);
    if (this.#recovering) {
      const unfinished = await store.queue.pending({ sessionKey: this.key });
      const replayed = new Set(
        unfinished.map((m) => String((m.payload as { runId?: unknown }).runId)),
      );
      const marks = [...new Set(live.map((r) => String(r.entry.runId)))].filter((runId) =>
        replayed.has(runId),
      );
      if (marks.length > 0) {
        const at = this.#ctx.now();
        // `cause: "crash"`: the run started (it wrote its first message) and its process or
        // session died before it finished. These markers are the crash count that survives
        // the process (see `#replay`); a clean stop writes `cause: "stopped"` instead.
        await store.transcripts.append(
          this.key,
          marks.map((runId) => ({ runId, at, discarded: true, cause: "crash" })),
        );
        const marked = new Set(marks);
        live = live.filter((r) => !marked.has(String(r.entry.runId)));
      }
      this.#crashMarks = crashMarks(tail, replayed, marks);
      if (this.#takenOver && marks.length > 0) this.#startedElsewhere = new Set(marks);
    }
    this.#history = historyOf(live);
    this.#touch();
    // After a crash, messages that were accepted but not finished run again.
    if (this.#recovering) {
      this.#replayDue = true;
      this.#sendSelf({ type: "replay" });
    }
  }

  /**
   * A bad request (overload, a field that cannot be patched) is answered with its error;
   * it must not crash the session and its active run.
   */
  protected override async handleCall(message: SessionCall): Promise<unknown> {
    try {
      return await this.#answer(message);
    } catch (error) {
      // Fenced: another node owns the session now; stop here without acknowledging.
      if (FencedError.isInstance(error)) void this.stop("normal");
      return new SessionRequestFailure(error);
    }
  }

  async #answer(message: SessionCall): Promise<unknown> {
    switch (message.type) {
      case "send":
        return this.#accept(message.delivery);
      case "abort":
        return this.#abort(message.runId);
      case "info":
        return {
          metadata: { ...this.#metadata },
          activeRunId: this.#active?.runId,
          queued: this.#pendingCount,
          historyLength: this.#history.length,
        } satisfies SessionInfoSnapshot;
      case "patch":
        return this.#patch(message.patch);
      case "reset":
        return this.#reset();
      case "compact":
        return this.#requestKeyedCompaction(message.options);
      case "rewind":
        return this.#rewind(message.options ?? {});
      case "inject":
        return this.#requestInjection(message);
      default:
        throw new InvalidArgumentError(`unknown session request ${JSON.stringify(message)}`);
    }
  }

  protected override async handleInfo(message: SessionInfo | { type: string }): Promise<void> {
    if (message.type === "run-done") {
      const { runId, result } = message as Extract<SessionInfo, { type: "run-done" }>;
      // Fenced (another node owns the session now): stop without acknowledging; it replays.
      await this.#finishRun(runId, result).catch((error: unknown) => {
        if (!FencedError.isInstance(error)) throw error;
        void this.stop("normal");
      });
    } else if (message.type === "idle-check") {
      this.#idleArmed = false;
      this.#checkIdle();
    } else if (message.type === "replay") {
      // Only the process registered under the session's name runs its messages. Two starts
      // can race (the supervisor's restart and a revival); the one that lost the name is
      // stopped by its supervisor, and must not have taken a message in the meantime (that
      // would count a crash against it, and run it twice).
      const holder = this.#ctx.holderOf(this.key) as { status?: string } | undefined;
      const live = holder?.status === "running" || holder?.status === "starting";
      if (live && holder !== this) return;
      const waited = (message as Extract<SessionInfo, { type: "replay" }>).waited ?? 0;
      if (holder !== this && waited < REPLAY_WAITS) {
        this.#sendSelfAfter({ type: "replay", waited: waited + 1 }, 1);
        return;
      }
      await this.#replay();
    } else if (message.type === "retry-dequeue") {
      await this.#retryDequeue().catch((error: unknown) => {
        if (!FencedError.isInstance(error)) throw error;
        void this.stop("normal");
      });
    } else if (message.type === "retry-run") {
      const { runId } = message as Extract<SessionInfo, { type: "retry-run" }>;
      await this.#retryRun(runId).catch((error: unknown) => {
        if (!FencedError.isInstance(error)) throw error;
        void this.stop("normal");
      });
    } else if (message.type === "run-timeout") {
      // A run past its limit that was waiting to run again (a failed save) ends now.
      const { runId } = message as Extract<SessionInfo, { type: "run-timeout" }>;
      const active = this.#active;
      if (active !== null && active.runId === runId && active.saveFailure !== undefined) {
        this.#abortActive(active, active.controller.reason as BeamClawError);
      }
    } else if (message.type === "save-record") {
      await this.#saveFirstRecord();
    } else if (message.type === "inject-due") {
      await this.#injectWaiting();
    } else if (message.type === "compaction-done") {
      await this.#finishCompaction(message as Extract<SessionInfo, { type: "compaction-done" }>);
    } else if (message.type === "hibernate-if-idle") {
      // Memory pressure: an idle session hibernates now rather than after hibernateAfterMs.
      if (
        this.#active === null &&
        this.#pending.length === 0 &&
        !this.#replayDue &&
        this.#compaction === null &&
        this.#injections.length === 0 &&
        this.#undequeued.length === 0
      ) {
        void this.stop("normal");
      }
    }
  }

  protected override async terminate(reason: ExitReason): Promise<void> {
    const active = this.#active;
    this.#release(reason);
    // Finished runs' messages the store refused to remove get a last try: left, they would
    // run again at the next start.
    for (const message of this.#undequeued.splice(0)) {
      await this.#dequeueOne(message.id, message.unkeyed).catch(() => undefined);
    }
    if (active !== null && isCleanStop(reason)) {
      // A clean stop (shutdown, hibernation, a fenced node) cut the run short: what it wrote is
      // cancelled now, with a marker that is not a crash, so that the run's replay after the
      // next start is not counted against its message (see `#replay`). If this write fails,
      // the next start counts the cut as one crash: the cost of a stop that could not save.
      await this.#ctx.store.transcripts
        .append(this.key, [
          { runId: active.runId, at: this.#ctx.now(), discarded: true, cause: "stopped" },
        ])
        .catch(() => undefined);
    }
    // Only a session that has a record saves it (its time, a sub-agent counted during a cut
    // run): one started only to be asked (`info`, `abort` of an unknown key) leaves nothing,
    // and a new session cut before its record was written gets it when its message replays.
    if (this.#metadata !== undefined && this.#recordSaved) {
      await this.#ctx.store.sessions.put(this.#metadata as SessionRecord).catch(() => undefined);
    }
  }

  /**
   * Tells the handles of unfinished messages what happened. After a crash (or kill) they stay
   * open: the messages are still in the durable queue, and the restarted session runs them
   * again into the same logs. After a normal stop they fail: the messages run on next start.
   */
  #release(reason: ExitReason): void {
    const stopped = new NoProcessError(`session ${this.key} stopped (${String(reason)})`, reason);
    this.#cancelCompaction(stopped);
    this.#cancelInjections(stopped);
    const crashed = !isCleanStop(reason);
    const active = this.#active;
    if (crashed && active !== null) {
      // The messages of the run in progress are suspects (see `#quarantine`).
      const crashes = this.#ctx.crashes;
      for (const id of active.queueIds) crashes.set(id, (crashes.get(id) ?? 0) + 1);
    }
    if (active !== null) {
      disarm(active);
      active.controller.abort(new AbortedError(`session ${this.key} stopped`));
    }
    const unfinished = [...(active === null ? [] : [active]), ...this.#pending];
    this.#active = null;
    this.#pending = [];
    this.#pendingCount = 0;
    for (const batch of unfinished) {
      if (this.#deleted && !crashed) {
        // Deleted: its runs are over for good. Each ends as aborted, published like any run's
        // end, so that its handles and the session's subscribers see it end.
        const result = this.#emptyResult(batch.runId, "aborted");
        result.error = { code: "SESSION_DELETED", message: `session ${this.key} was deleted` };
        if (batch !== active) this.#emit(batch, this.#runStartEvent(batch));
        this.#emit(batch, { runId: batch.runId, sessionKey: this.key, type: "run-end", result });
        continue;
      }
      if (crashed && batch === active) {
        // The run's subscribers saw it start: they are told of the crash as its handles are.
        this.#emit(batch, crashedEvent(batch.runId, this.key));
        // What it streamed is withdrawn: the restarted session runs it again in the same run
        // (no second `run-start`, see `#startedBefore`), and its followers (who add the text
        // up) must not show its answer twice. As after a failed save (see `#retryLater`).
        this.#emit(batch, crashResetEvent(batch.runId, this.key));
        continue;
      }
      for (const log of batch.logs) {
        if (crashed) {
          log.push(crashedEvent(batch.runId, this.key));
        } else {
          log.fail(
            new NoProcessError(
              `session ${this.key} stopped (${String(reason)}); the message stays queued and runs after restart`,
              reason,
            ),
          );
        }
      }
    }
  }

  // ------------------------------------------------------------------ messages

  /**
   * Takes a message. `replayed`: one accepted before a crash, replayed now; it was
   * acknowledged, so the cap on waiting messages does not refuse it.
   */
  #accept(
    delivery: SessionDelivery,
    replayed = false,
  ): { disposition: SendDisposition; runId: string } {
    this.#touch();
    // A message already taken (a replay after a cluster takeover raced its delivery) is
    // answered with its run, never run twice.
    const taken = this.#holding(delivery.queueId);
    if (taken !== undefined) return taken;
    // A message whose run is over but which the store has not let go of yet (see
    // `#dequeueAll`) is still pending there: a delivery of it again must not run it again.
    if (this.#isUndequeued(delivery.queueId)) {
      throw new BeamClawError("DUPLICATE", `message ${delivery.queueId} was already handled`);
    }
    if (replayed) {
      const rejoined = this.#rejoin(delivery);
      if (rejoined !== undefined) return rejoined;
    }
    const mode = delivery.options.queueMode ?? this.#ctx.defaultQueueMode;
    const active = this.#active;
    if (active === null) {
      if (this.#replayDue || this.#compaction !== null || this.#injections.length > 0)
        return this.#queueBehindReplay(delivery, mode, replayed);
      this.#start(this.#batch(delivery, mode));
      return { disposition: "started", runId: delivery.runId };
    }
    if (!replayed && this.#pendingCount + active.steered.length >= this.#ctx.maxQueuedMessages) {
      throw this.#queueFull("messages");
    }
    if (mode === "steer") {
      active.steered.push(delivery.input);
      active.logs.push(delivery.log);
      active.queueIds.push(delivery.queueId);
      if (delivery.unkeyed) unkeyedOf(active).push(delivery.queueId);
      this.#emitTo([delivery.log], this.#runStartEvent(active));
      return { disposition: "steered", runId: active.runId };
    }
    this.#pendingCount++;
    if (mode === "interrupt") {
      // Ahead of the follow-ups, behind interrupts sent before it that wait for the same
      // interrupted run to end: the user's messages are never answered out of order.
      let at = 0;
      while (at < this.#pending.length && this.#pending[at]!.mode === "interrupt") at++;
      this.#pending.splice(at, 0, this.#batch(delivery, mode));
      this.#abortActive(active, new AbortedError("interrupted by a new message"));
      return { disposition: "interrupted", runId: delivery.runId };
    }
    const last = this.#pending.at(-1);
    if (mode === "collect" && last !== undefined && last.mode === "collect") {
      last.inputs.push(delivery.input);
      last.logs.push(delivery.log);
      last.queueIds.push(delivery.queueId);
      if (delivery.unkeyed) unkeyedOf(last).push(delivery.queueId);
      return { disposition: "queued", runId: last.runId };
    }
    this.#pending.push(this.#batch(delivery, mode));
    return { disposition: "queued", runId: delivery.runId };
  }

  /**
   * The refusal of one more message (or injected note) than `maxQueuedMessages`, with the
   * wait it suggests (see {@link #queueRetryAfterMs}).
   */
  #queueFull(what: "messages" | "injected messages"): OverloadedError {
    const limit = this.#ctx.maxQueuedMessages;
    const retryAfterMs = this.#queueRetryAfterMs();
    return new OverloadedError(
      `session ${this.key} already has ${limit} ${what} waiting; retry in ${retryAfterMs} ms`,
      limit,
      { retryAfterMs },
    );
  }

  /**
   * How long a sender refused for a full queue should wait: until the active run is likely
   * to end, when the session takes the next message waiting (and the injected notes), which
   * makes room. Estimated as the duration of the session's last completed run less the
   * active run's time so far, and no later than the active run's time limit; with nothing to
   * go by (no run completed yet in this incarnation, or no run active: a replay or a
   * compaction is due first) the shortest wait. Always from 1 s to 30 s.
   */
  #queueRetryAfterMs(): number {
    const active = this.#active;
    let estimate = QUEUE_RETRY_MIN_MS;
    if (active !== null) {
      const now = performance.now();
      if (this.#lastRunMs !== undefined) estimate = this.#lastRunMs - (now - active.startedAt);
      if (active.deadline !== undefined) estimate = Math.min(estimate, active.deadline - now);
    }
    return Math.round(Math.min(QUEUE_RETRY_MAX_MS, Math.max(QUEUE_RETRY_MIN_MS, estimate)));
  }

  /** A message that arrived before the replay of a crashed session's unfinished ones. */
  #queueBehindReplay(
    delivery: SessionDelivery,
    mode: QueueMode,
    replayed = false,
  ): { disposition: SendDisposition; runId: string } {
    if (!replayed && this.#pendingCount >= this.#ctx.maxQueuedMessages) {
      throw this.#queueFull("messages");
    }
    this.#pendingCount++;
    // Nothing runs yet: a steer or an interrupt has nothing to join or stop.
    this.#pending.push(
      this.#batch(delivery, mode === "steer" || mode === "interrupt" ? "followup" : mode),
    );
    return { disposition: "queued", runId: delivery.runId };
  }

  /**
   * A replayed message whose run (see `SessionContext.joinedRun`) another replayed message
   * started again: it goes back into that run, as it was taken before the crash (steered
   * into the run now running, collected into the one waiting). Undefined when no such run is
   * there (it runs on its own, under that run id).
   */
  #rejoin(delivery: SessionDelivery): { disposition: SendDisposition; runId: string } | undefined {
    const { runId } = delivery;
    const active = this.#active;
    if (active !== null && active.runId === runId) {
      active.steered.push(delivery.input);
      active.logs.push(delivery.log);
      active.queueIds.push(delivery.queueId);
      if (delivery.unkeyed) unkeyedOf(active).push(delivery.queueId);
      if (!this.#startedBefore([delivery.queueId])) {
        this.#emitTo([delivery.log], this.#runStartEvent(active));
      }
      return { disposition: "steered", runId };
    }
    const batch = this.#pending.find((b) => b.runId === runId);
    if (batch === undefined) return undefined;
    batch.inputs.push(delivery.input);
    batch.logs.push(delivery.log);
    batch.queueIds.push(delivery.queueId);
    if (delivery.unkeyed) unkeyedOf(batch).push(delivery.queueId);
    this.#pendingCount++;
    return { disposition: "queued", runId };
  }

  /** The run that already holds durable-queue message `queueId`, if any. */
  #holding(queueId: string): { disposition: SendDisposition; runId: string } | undefined {
    const active = this.#active;
    if (active?.queueIds.includes(queueId)) {
      return { disposition: "started", runId: active.runId };
    }
    for (const batch of this.#pending) {
      if (batch.queueIds.includes(queueId)) return { disposition: "queued", runId: batch.runId };
    }
    return undefined;
  }

  #batch(delivery: SessionDelivery, mode: QueueMode): Batch {
    const batch: Batch = {
      runId: delivery.runId,
      inputs: [delivery.input],
      logs: [delivery.log],
      queueIds: [delivery.queueId],
      mode,
    };
    if (delivery.unkeyed) batch.unkeyed = [delivery.queueId];
    if (delivery.options.model !== undefined) batch.model = delivery.options.model;
    if (delivery.options.thinking !== undefined) batch.thinking = delivery.options.thinking;
    if (delivery.options.timeoutMs !== undefined) batch.timeoutMs = delivery.options.timeoutMs;
    if (typeof delivery.options.traceparent === "string") {
      batch.traceparent = delivery.options.traceparent;
      if (typeof delivery.options.tracestate === "string") {
        batch.tracestate = delivery.options.tracestate;
      }
    }
    if (delivery.deadlineAt !== undefined) batch.deadlineAt = delivery.deadlineAt;
    // Checked when the message was sent or replayed: prepared already, found again here.
    if (delivery.options.output !== undefined) {
      batch.output = resolveOutput(delivery.options.output, "output");
    }
    return batch;
  }

  async #abort(runId: string): Promise<boolean> {
    if (this.#active !== null && this.#active.runId === runId) {
      this.#abortActive(this.#active, new AbortedError(`run ${runId} aborted`));
      return true;
    }
    const index = this.#pending.findIndex((b) => b.runId === runId);
    if (index === -1) {
      // A restarted session holds the messages it has not replayed yet only in the store: an
      // abort of one of them is kept for the replay, which ends that run unstarted.
      if ((this.#replayDue || this.#replayMore) && (await this.#unfinishedRun(runId))) {
        this.#abortedBeforeReplay.add(runId);
        return true;
      }
      return false;
    }
    const [batch] = this.#pending.splice(index, 1);
    this.#pendingCount -= batch!.inputs.length;
    void this.#endUnstarted(batch!);
    return true;
  }

  /** Whether an unfinished message of the session in the store belongs to run `runId`. */
  async #unfinishedRun(runId: string): Promise<boolean> {
    if (this.#abortedBeforeReplay.has(runId)) return true;
    for (let after: string | undefined; ; ) {
      const page = await this.#ctx.store.queue.pending({
        sessionKey: this.key,
        limit: REPLAY_PAGE,
        ...(after === undefined ? {} : { after }),
      });
      if (page.some((message) => this.#runOf(message) === runId)) return true;
      if (page.length < REPLAY_PAGE) return false;
      after = page[page.length - 1]!.id;
    }
  }

  /** The run a queued message belongs to: the one it joined (see `joinedRun`), else its own. */
  #runOf(message: QueuedMessage): string | undefined {
    const joined = this.#ctx.joinedRun?.(message.id);
    if (joined !== undefined) return joined;
    const { runId } = message.payload as { runId?: unknown };
    return typeof runId === "string" ? runId : undefined;
  }

  /**
   * Aborts the active run. One that waits to run again (its messages could not be saved) is
   * not running: it ends now, as aborted, like a queued batch that never ran.
   */
  #abortActive(active: ActiveRun, reason: BeamClawError): void {
    active.controller.abort(reason);
    if (active.saveFailure === undefined || this.#active !== active) return;
    active.cancelRetry?.();
    disarm(active);
    this.#active = null;
    const result = this.#emptyResult(active.runId, "aborted");
    if (RunTimeoutError.isInstance(reason)) {
      // Set on the error event and the result alike, as the loop does for a running run.
      result.error = errorInfo(reason);
      this.#emit(active, {
        runId: active.runId,
        sessionKey: this.key,
        type: "error",
        error: result.error,
      });
    }
    this.#emit(active, { runId: active.runId, sessionKey: this.key, type: "run-end", result });
    for (const id of active.queueIds) this.#ctx.logs.delete(id);
    void this.#dequeueAll(active, active.queueIds).catch(() => undefined);
    this.#startNext();
  }

  /**
   * Ends a queued batch that never ran: aborted, published, and out of the durable queue.
   * Returns when the store took its messages off the queue (or kept them for a retry).
   */
  #endUnstarted(batch: Batch): Promise<void> {
    const result = this.#emptyResult(batch.runId, "aborted");
    if (!this.#startedBefore(batch.queueIds)) this.#announceStart(batch);
    this.#emit(batch, { runId: batch.runId, sessionKey: this.key, type: "run-end", result });
    for (const id of batch.queueIds) {
      this.#ctx.logs.delete(id);
      this.#ctx.crashes.delete(id);
    }
    return this.#dequeueAll(batch, batch.queueIds).catch(() => undefined);
  }

  /**
   * The unfinished messages (after a crash) still in the store, to be replayed, as the
   * batches of their runs: a reset ends them as aborted, unrun, as it ends queued messages,
   * and takes them off the queue before the replay looks. Messages already taken (`held`)
   * are not among them.
   */
  async #unreplayed(held: ReadonlySet<string>): Promise<Batch[]> {
    const batches = new Map<string, Batch>();
    for (let after: string | undefined; ; ) {
      const page = await this.#ctx.store.queue.pending({
        sessionKey: this.key,
        limit: REPLAY_PAGE,
        ...(after === undefined ? {} : { after }),
      });
      for (const message of page) {
        if (held.has(message.id)) continue;
        const runId = this.#runOf(message) ?? randomUUID();
        const log = this.#ctx.logs.get(message.id) ?? new RunEventLog();
        const { input } = message.payload as { input?: UserMessageInput };
        const valid = typeof input === "object" && input !== null && typeof input.text === "string";
        let batch = batches.get(runId);
        if (batch === undefined) {
          batch = { runId, inputs: [], logs: [], queueIds: [], mode: "followup" };
          batches.set(runId, batch);
        }
        if (valid) batch.inputs.push(input);
        batch.logs.push(log);
        batch.queueIds.push(message.id);
        if (hasMadeUpKey(message)) unkeyedOf(batch).push(message.id);
      }
      if (page.length < REPLAY_PAGE) break;
      after = page[page.length - 1]!.id;
    }
    return [...batches.values()];
  }

  /**
   * Takes a message whose run is over out of the durable queue. One sent with an idempotency
   * key is acknowledged, so that the key is remembered for the store's dedupe window; one
   * sent without is discarded: its key was made up here and nobody can send it again, so a
   * dedupe record would only cost the store (store-fs writes the whole message to its
   * acknowledged log, store-redis keeps it for the window, `MemoryStore` holds it in memory).
   */
  #dequeue(batch: Batch, id: string): Promise<void> {
    return this.#dequeueOne(id, batch.unkeyed?.includes(id) === true);
  }

  #dequeueOne(id: string, unkeyed: boolean): Promise<void> {
    const queue = this.#ctx.store.queue;
    return unkeyed ? queue.discard(id) : queue.ack(id);
  }

  /**
   * Takes the messages of a run that is over out of the durable queue (see `#dequeue`). One
   * the store refuses is kept and tried again with backoff (`retry-dequeue`), and the
   * session stays in memory until it is gone: the run is over all the same, so its handles
   * get its end, and none of its messages (a steered or collected one) runs again on its own.
   * Only a crash or a stop before the store takes them replays them, as after any crash.
   *
   * @throws FencedError another node owns the session now (it stops; they replay there).
   */
  async #dequeueAll(batch: Batch, ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      try {
        await this.#dequeue(batch, id);
      } catch (error) {
        if (FencedError.isInstance(error)) throw error;
        this.#undequeued.push({ id, unkeyed: batch.unkeyed?.includes(id) === true });
        this.#armDequeueRetry();
      }
    }
  }

  /** Whether queue message `id` belongs to a run that is over (see `#dequeueAll`). */
  #isUndequeued(id: string): boolean {
    return this.#undequeued.length > 0 && this.#undequeued.some((message) => message.id === id);
  }

  #armDequeueRetry(): void {
    if (this.#dequeueRetryArmed) return;
    this.#dequeueRetryArmed = true;
    const failures = ++this.#dequeueFailures;
    const ceiling = Math.min(SAVE_RETRY_MAX_MS, SAVE_RETRY_BASE_MS * 2 ** (failures - 1));
    this.#sendSelfAfter({ type: "retry-dequeue" }, ceiling * (0.5 + Math.random() / 2));
  }

  /** `retry-dequeue`: tries the messages `#dequeueAll` could not remove again. */
  async #retryDequeue(): Promise<void> {
    this.#dequeueRetryArmed = false;
    const waiting = this.#undequeued.splice(0);
    for (const [at, message] of waiting.entries()) {
      try {
        await this.#dequeueOne(message.id, message.unkeyed);
      } catch (error) {
        if (FencedError.isInstance(error)) {
          this.#undequeued.unshift(...waiting.slice(at));
          throw error;
        }
        this.#undequeued.push(message);
      }
    }
    if (this.#undequeued.length > 0) this.#armDequeueRetry();
    else this.#dequeueFailures = 0;
  }

  async #patch(patch: SessionPatch): Promise<SessionMetadata> {
    if (typeof patch !== "object" || patch === null || Array.isArray(patch))
      throw new InvalidArgumentError(`patch must be an object, got ${describeArg(patch)}`);
    for (const field of Object.keys(patch)) {
      if (!(PATCHABLE as readonly string[]).includes(field)) {
        throw new InvalidArgumentError(`session field "${field}" cannot be patched`);
      }
      // Checked before anything is written: a refused patch changes nothing.
      const value = (patch as Record<string, unknown>)[field];
      if (value === null || value === undefined) continue;
      const allowed = PATCH_VALUES[field as (typeof PATCHABLE)[number]];
      const ok =
        allowed === undefined
          ? typeof value === "string" && (field !== "modelOverride" || /^[^/]+\/.+$/.test(value))
          : typeof value === "string" && allowed.includes(value);
      if (!ok) {
        throw new InvalidArgumentError(
          `session field "${field}" must be ${allowed === undefined ? (field === "modelOverride" ? 'a "provider/model" string' : "a string") : `one of ${allowed.join(", ")}`} (or null to clear it), got ${describeArg(value)}`,
        );
      }
    }
    const next: SessionMetadata = { ...this.#metadata };
    for (const field of PATCHABLE) {
      if (!(field in patch)) continue;
      const value = patch[field];
      if (value === null || value === undefined) delete next[field];
      else (next as JsonObject)[field] = value;
    }
    next.updatedAt = this.#ctx.now();
    await this.#ctx.store.sessions.put(next as SessionRecord);
    this.#recordSaved = true;
    this.#metadata = next;
    return { ...next };
  }

  /**
   * Undoes the session's last runs (`rewind`): a discard marker per run, written after it,
   * takes its messages out of the history for good (as after a crash, but not counted as
   * one), and the history is read back without them. Only runs after the last compaction
   * can be undone (a summary cannot be taken apart), and only while the session is at rest.
   */
  async #rewind(options: RewindOptions): Promise<RewindResult> {
    const key = options.idempotencyKey;
    if (key !== undefined) {
      const applied = await this.#appliedOperation("rewind", key);
      if (applied !== undefined) return applied as unknown as RewindResult;
    }
    if (this.#active !== null || this.#pendingCount > 0 || this.#replayDue) {
      throw new SessionBusyError(
        `session ${this.key} is running or has messages waiting; rewind it once they are done (or abort them)`,
        this.#active?.runId,
      );
    }
    if (this.#compaction !== null) {
      throw new SessionBusyError(`session ${this.key} is being compacted; rewind it after`);
    }
    const { store } = this.#ctx;
    const read = async () =>
      liveEntries(
        (
          await store.transcripts.read(this.key, { order: "desc", limit: this.#ctx.historyLimit })
        ).reverse(),
      );
    const live = await read();
    let from = 0;
    for (let i = 0; i < live.length; i++) if (live[i]!.entry.compaction !== undefined) from = i + 1;
    const runs: string[] = [];
    for (let i = from; i < live.length; i++) {
      const entry = live[i]!.entry;
      if (entry.message === undefined || typeof entry.runId !== "string") continue;
      if (!runs.includes(entry.runId)) runs.push(entry.runId);
    }
    let first: number;
    if (options.runId !== undefined) {
      first = runs.indexOf(options.runId);
      if (first === -1) {
        throw new InvalidArgumentError(
          `run ${options.runId} is not among the runs session ${this.key} can rewind (its last ${runs.length}, after any compaction)`,
        );
      }
    } else {
      const count = options.runs ?? 1;
      if (count > runs.length) {
        throw new InvalidArgumentError(
          `session ${this.key} has ${runs.length} run(s) that can be rewound (after any compaction), not ${count}`,
        );
      }
      first = runs.length - count;
    }
    const undone = runs.slice(first);
    const set = new Set(undone);
    const inputs: UserMessageInput[] = [];
    let removedMessages = 0;
    for (let i = from; i < live.length; i++) {
      const entry = live[i]!.entry;
      if (entry.message === undefined || !set.has(String(entry.runId))) continue;
      removedMessages++;
      const message = entry.message as unknown as ModelMessage;
      if (message.role === "user" && entry.retry !== true) inputs.push(inputOf(message));
    }
    const at = this.#ctx.now();
    const result: RewindResult = { runIds: undone, inputs, removedMessages };
    const markers: JsonObject[] = undone.map((runId) => ({
      runId,
      at,
      discarded: true,
      cause: "rewind",
    }));
    const record =
      key === undefined ? undefined : await this.#beginOperation(key, "rewind", markers, result);
    await store.transcripts.append(this.key, markers);
    this.#history = historyOf(await read());
    this.#touch();
    if (key !== undefined && record !== undefined) await this.#operationDone(key, record);
    return result;
  }

  // ------------------------------------------------------------------ keyed operations

  /**
   * The record of an operation given idempotency key `key`, if one is remembered.
   * @throws InvalidArgumentError when the key was given to another operation.
   */
  async #operation(op: KeyedOperation["op"], key: string): Promise<KeyedOperation | undefined> {
    const record = await this.#ctx.store.kv.get<KeyedOperation>(
      `${sessionOpPrefix(this.key)}${key}`,
    );
    if (record === undefined) return undefined;
    if (record.op !== op) {
      throw new InvalidArgumentError(
        `idempotency key "${key}" was given to a ${record.op} of session ${this.key}, not to a ${op}`,
      );
    }
    return record;
  }

  /** Remembers a keyed operation for the store's `dedupeWindowMs` (as `send`'s keys are). */
  async #rememberOperation(key: string, record: KeyedOperation): Promise<void> {
    const ttlMs = Math.max(1, Math.ceil(this.#ctx.store.queue.dedupeWindowMs));
    await this.#ctx.store.kv.set(`${sessionOpPrefix(this.key)}${key}`, record, { ttlMs });
  }

  /**
   * Remembers a keyed operation about to write `entries` (which are marked with its key),
   * with its result when it is known already; the record, to mark done once written.
   */
  async #beginOperation(
    key: string,
    op: KeyedOperation["op"],
    entries: JsonObject[],
    result: object | undefined,
    id?: string,
  ): Promise<KeyedOperation> {
    const record: KeyedOperation = {
      op,
      savedAfter: await this.#ctx.store.transcripts.lastSeq(this.key),
    };
    if (id !== undefined) record.id = id;
    if (result !== undefined) record.result = asJson(result);
    await this.#rememberOperation(key, record);
    for (const entry of entries) entry.idempotencyKeys = [key];
    return record;
  }

  /**
   * Marks a keyed operation done (with `result` when given). A failure here costs a retry
   * only a look at the transcript, so it is not the caller's.
   */
  async #operationDone(key: string, record: KeyedOperation, result?: object): Promise<boolean> {
    const done: KeyedOperation = { ...record, done: true };
    if (result !== undefined) done.result = asJson(result);
    return this.#rememberOperation(key, done).then(
      () => true,
      () => false,
    );
  }

  /**
   * The result of the operation given `key`, when it was applied already: marked done, or
   * its entries (marked with the key) are in the transcript after its `savedAfter` (the
   * store saved them, and the reply was lost). The history is read back then, as it is
   * missing what the lost write saved. Undefined when it must be applied (again).
   * `recover`, when given, finishes what the lost write's caller could not (it marks the
   * operation done itself).
   */
  async #appliedOperation(
    op: KeyedOperation["op"],
    key: string,
    recover?: (saved: TranscriptRecord, record: KeyedOperation) => Promise<void>,
  ): Promise<JsonValue | undefined> {
    const record = await this.#operation(op, key);
    if (record?.result === undefined) return undefined;
    if (record.done === true) return record.result;
    const saved = await this.#findSavedAfter(record.savedAfter, (entry) =>
      Array.isArray(entry.idempotencyKeys) ? entry.idempotencyKeys.includes(key) : false,
    );
    if (saved === undefined) return undefined;
    await this.#reloadHistory();
    if (recover === undefined) await this.#operationDone(key, record);
    else await recover(saved, record);
    return record.result;
  }

  /** The first transcript entry after `seq` that `matches`, reading forward page by page. */
  async #findSavedAfter(
    seq: number,
    matches: (entry: JsonObject) => boolean,
  ): Promise<TranscriptRecord | undefined> {
    const page = 1_000;
    for (let after = seq; ; ) {
      const records = await this.#ctx.store.transcripts.read(this.key, {
        afterSeq: after,
        limit: page,
      });
      const found = records.find((record) => matches(record.entry));
      if (found !== undefined) return found;
      if (records.length < page) return undefined;
      after = records.at(-1)!.seq;
    }
  }

  /** Reads the history back from the transcript (its live entries, newest `historyLimit`). */
  async #reloadHistory(): Promise<void> {
    const tail = await this.#ctx.store.transcripts.read(this.key, {
      order: "desc",
      limit: this.#ctx.historyLimit,
    });
    this.#history = historyOf(liveEntries(tail.reverse()));
  }

  /** Resolves with the keys of the sub-agents it had spawned (the runtime deletes them). */
  async #reset(): Promise<string[]> {
    // Unfinished messages of a crash not replayed yet end too, unrun: read before anything
    // changes, so that a store that cannot list them leaves the session as it was.
    const unreplayed =
      this.#replayDue || this.#replayMore
        ? await this.#unreplayed(
            new Set([
              ...this.#pending.flatMap((batch) => batch.queueIds),
              ...this.#undequeued.map((message) => message.id),
            ]),
          )
        : undefined;
    // Before the spawns are read: a spawn under way removes its child itself.
    this.#spawnEpoch++;
    this.#cancelCompaction(new AbortedError(`session ${this.key} was reset`));
    this.#cancelInjections(new AbortedError(`session ${this.key} was reset`));
    const active = this.#active;
    if (active !== null) {
      // The run ends now: it writes nothing more and its late result is ignored.
      disarm(active);
      this.#active = null;
      active.controller.abort(new AbortedError("session reset"));
      this.#emit(active, {
        runId: active.runId,
        sessionKey: this.key,
        type: "run-end",
        result: this.#emptyResult(active.runId, "aborted"),
      });
      for (const id of active.queueIds) {
        this.#ctx.logs.delete(id);
        this.#ctx.crashes.delete(id);
        await this.#dequeue(active, id);
      }
    }
    if (unreplayed !== undefined) {
      this.#replayDue = false;
      this.#replayMore = false;
      this.#abortedBeforeReplay.clear();
      await Promise.all(unreplayed.map((batch) => this.#endUnstarted(batch)));
    }
    // A key with no session (no record, no message, nothing queued or running) has nothing
    // to reset: it is left without a record, as `info()` leaves it.
    const exists =
      this.#recordSaved || active !== null || this.#pending.length > 0 || this.#history.length > 0;
    for (const batch of this.#pending) void this.#endUnstarted(batch);
    this.#pending = [];
    this.#pendingCount = 0;
    await this.#ctx.store.transcripts.delete(this.key);
    this.#history = [];
    // Its count of sub-agents starts again too; their sessions go with the conversation.
    const spawned = new Set<string>();
    for await (const spawn of iterateKvKeys(this.#ctx.store.kv, subagentIndexPrefix(this.key))) {
      spawned.add(parseSubagentIndexKey(spawn).child);
      await this.#ctx.store.kv.delete(spawn);
    }
    this.#claims = undefined;
    const children = [...spawned];
    if (!exists) return children;
    const previous = this.#metadata;
    const next: SessionMetadata = {
      ...newMetadata(this.key, this.#agentId, previous.createdAt),
      updatedAt: this.#ctx.now(),
    };
    // A reset clears the conversation and its counters, not the session's settings.
    for (const field of PATCHABLE) {
      const value = previous[field];
      if (value !== undefined) (next as JsonObject)[field] = value;
    }
    await this.#ctx.store.sessions.put(next as SessionRecord);
    this.#recordSaved = true;
    this.#metadata = next;
    return children;
  }

  /**
   * Writes a new session's record once its first message is saved (see `#recordSaved`). A
   * failure is left to the run's end, which writes the record again (and meets a fencing
   * error there, if that is the cause).
   */
  async #saveFirstRecord(): Promise<void> {
    this.#recordDue = false;
    if (this.#recordSaved || this.#deleted) return;
    const next: SessionMetadata = { ...this.#metadata, updatedAt: this.#ctx.now() };
    try {
      await this.#ctx.store.sessions.put(next as SessionRecord);
    } catch {
      return;
    }
    this.#recordSaved = true;
    // Only the time: a run may have counted a sub-agent meanwhile (saved when it ends).
    this.#metadata = { ...this.#metadata, updatedAt: next.updatedAt };
  }

  async #replay(): Promise<void> {
    const pending = await this.#ctx.store.queue.replay({
      sessionKey: this.key,
      limit: REPLAY_PAGE,
    });
    // A full page: more may wait behind it, replayed once this page is done (until then the
    // store hands back the same page).
    this.#replayMore = pending.length >= REPLAY_PAGE;
    // Messages that arrived while the replay waited (see `#queueBehindReplay`) run after it.
    const arrived = this.#pending.length;
    this.#replayDue = false;
    /**
     * Runs that end unstarted, with their messages: aborted before this replay (see `#abort`),
     * or of messages nobody follows any more (`replayAfterRestart: false`).
     */
    const aborted = new Map<string, Batch>();
    // Messages ended unrun whose session exists only for them (`ephemeralSession`).
    let ephemeral = 0;
    for (const message of pending) {
      // Its run is over (a page replayed before it ran it); the store has not let go of it.
      if (this.#isUndequeued(message.id)) continue;
      const payload = message.payload as {
        input?: UserMessageInput;
        options?: Omit<SendOptions, "signal">;
        runId?: string;
      };
      if (
        typeof payload.input !== "object" ||
        payload.input === null ||
        typeof payload.input.text !== "string"
      ) {
        await this.#quarantine(message, "its payload is not a message this runtime can run");
        continue;
      }
      if (payload.options?.output !== undefined) {
        try {
          resolveOutput(payload.options.output, "output");
        } catch (error) {
          await this.#quarantine(
            message,
            `its output schema cannot be used: ${(error as Error).message}`,
          );
          continue;
        }
      }
      const crashes = this.#crashesOf(message);
      if (crashes >= this.#ctx.quarantineAfterCrashes) {
        // A poison message: its session crashed during every run of it. Set aside rather
        // than run for ever, and the session goes on with the rest.
        await this.#quarantine(
          message,
          `its session crashed ${crashes} times while running it (quarantineAfterCrashes: ${this.#ctx.quarantineAfterCrashes})`,
        );
        continue;
      }
      // Its answer was only for a caller following its run, and none does in this process:
      // the process that accepted it went. Ended unrun rather than run for nobody.
      const unfollowed =
        payload.options?.replayAfterRestart === false && !this.#ctx.logs.has(message.id);
      if (unfollowed && payload.options?.ephemeralSession === true) ephemeral++;
      const log = this.#ctx.logs.get(message.id) ?? new RunEventLog();
      this.#ctx.logs.set(message.id, log);
      const delivery: SessionDelivery = {
        input: payload.input,
        options: { ...(payload.options ?? {}), queueMode: "followup" },
        // The run it was taken into (collected, steered) before the crash, if it joined one.
        runId: this.#runOf(message) ?? randomUUID(),
        queueId: message.id,
        log,
        unkeyed: hasMadeUpKey(message),
      };
      // A sub-agent keeps the deadline it was spawned with, however often it is replayed.
      const deadlineAt = queuedDeadlineAt(payload);
      if (deadlineAt !== undefined) delivery.deadlineAt = deadlineAt;
      if (unfollowed || this.#abortedBeforeReplay.has(delivery.runId)) {
        const batch = aborted.get(delivery.runId);
        if (batch === undefined) aborted.set(delivery.runId, this.#batch(delivery, "followup"));
        else {
          batch.inputs.push(delivery.input);
          batch.logs.push(delivery.log);
          batch.queueIds.push(delivery.queueId);
          if (delivery.unkeyed) unkeyedOf(batch).push(delivery.queueId);
        }
        continue;
      }
      this.#accept(delivery, true);
    }
    // Nothing but such messages, nothing behind them, nothing arrived, nothing running: the
    // session was only theirs, and goes with them, as their caller would have deleted it.
    if (
      ephemeral > 0 &&
      ephemeral === pending.length &&
      !this.#replayMore &&
      arrived === 0 &&
      this.#active === null
    ) {
      await Promise.all([...aborted.values()].map((batch) => this.#endUnstarted(batch)));
      this.#abortedBeforeReplay.clear();
      await this.#deleteEphemeral();
      return;
    }
    for (const [runId, batch] of aborted) {
      this.#abortedBeforeReplay.delete(runId);
      void this.#endUnstarted(batch);
    }
    if (arrived > 0) this.#pending.unshift(...this.#pending.splice(arrived));
    if (this.#active === null) this.#startNext();
  }

  /**
   * Deletes what the store holds of a session that existed only for messages ended unrun
   * (`SendOptions.ephemeralSession`): the sub-agents it spawned, its remembered approvals,
   * transcript and record, as `SessionHandle.delete` does, and stops it. A store that
   * refuses leaves the session as it was (a later start tries again only if a message of it
   * is still queued).
   */
  async #deleteEphemeral(): Promise<void> {
    const recordSaved = this.#recordSaved;
    this.#deleted = true;
    this.#recordSaved = false;
    try {
      // The sub-agents its run spawned before the restart go with it, as with any delete.
      await this.#ctx.deleteSubagents?.(this.key);
      await this.#ctx.store.approvals.clear(this.key);
      await this.#ctx.store.transcripts.delete(this.key);
      await this.#ctx.store.sessions.delete(this.key);
    } catch {
      this.#deleted = false;
      this.#recordSaved = recordSaved;
      return;
    }
    this.#history = [];
    void this.stop("normal");
  }

  /**
   * How many times a message's session crashed while running it: the larger of this
   * process's count (every crash of the session during its runs) and its transcript's crash
   * markers (runs that wrote their first message and died, in any process: a message that
   * takes the whole process down is counted too). Never the sum: a crash in this process
   * after the first write is in both.
   */
  #crashesOf(message: QueuedMessage): number {
    const inProcess = this.#ctx.crashes.get(message.id) ?? 0;
    const runId = (message.payload as { runId?: unknown }).runId;
    const marked = typeof runId === "string" ? (this.#crashMarks.get(runId) ?? 0) : 0;
    return Math.max(inProcess, marked);
  }

  /**
   * Moves a pending message aside: recorded under `quarantineKey` (with why), then removed
   * from the queue (acknowledged, so a redelivery of its idempotency key is not run either),
   * in that order so that nothing is lost if either write fails. A caller waiting on its
   * run gets a failed run with code `QUARANTINED`.
   */
  async #quarantine(message: QueuedMessage, reason: string): Promise<void> {
    const record: QuarantinedMessage = {
      id: message.id,
      sessionKey: this.key,
      idempotencyKey: message.idempotencyKey,
      payload: message.payload,
      enqueuedAt: message.enqueuedAt,
      deliveries: message.deliveries,
      crashes: this.#crashesOf(message),
      quarantinedAt: this.#ctx.now(),
      reason,
    };
    await this.#ctx.store.kv.set(
      quarantineKey(this.key, message.id),
      record as unknown as JsonObject,
    );
    await this.#ctx.store.queue.ack(message.id);
    const started = this.#startedBefore([message.id]);
    this.#ctx.crashes.delete(message.id);
    const payload = message.payload as { input?: unknown; runId?: unknown };
    const runId = typeof payload.runId === "string" ? payload.runId : randomUUID();
    emitTelemetry("beamclaw:session.quarantine", () => ({
      session: this.key,
      agent: this.#agentId,
      runId,
      messageId: message.id,
      crashes: record.crashes,
      reason,
      tenant: telemetryTenantOf(this.#ctx.store),
    }));
    const log = this.#ctx.logs.get(message.id);
    this.#ctx.logs.delete(message.id);
    const input = payload.input as UserMessageInput | undefined;
    const batch: Batch = {
      runId,
      inputs: typeof input?.text === "string" ? [input] : [],
      logs: log === undefined ? [] : [log],
      queueIds: [],
      mode: "followup",
    };
    const error = {
      code: "QUARANTINED",
      message: `message ${message.id} was quarantined: ${reason}`,
    };
    if (!started) this.#announceStart(batch);
    this.#emit(batch, { runId, sessionKey: this.key, type: "error", error });
    this.#emit(batch, {
      runId,
      sessionKey: this.key,
      type: "run-end",
      result: { ...this.#emptyResult(runId, "failed"), error },
    });
  }

  // ------------------------------------------------------------------ runs

  #start(batch: Batch): void {
    const controller = new Cancellation();
    // Field by field, not `{ ...batch, controller }`: on Node 20 a spread followed by new
    // properties costs about 2 µs.
    const active: ActiveRun = {
      runId: batch.runId,
      inputs: batch.inputs,
      logs: batch.logs,
      queueIds: batch.queueIds,
      // Always set (if only to undefined): one hidden class for every run.
      unkeyed: batch.unkeyed,
      mode: batch.mode,
      controller,
      steered: [],
      taken: [],
      startedAt: performance.now(),
      timeLimit: undefined,
      lastAssistant: undefined,
      spawned: 0,
    };
    if (batch.model !== undefined) active.model = batch.model;
    if (batch.thinking !== undefined) active.thinking = batch.thinking;
    if (batch.saveFailures !== undefined) active.saveFailures = batch.saveFailures;
    if (batch.output !== undefined) active.output = batch.output;
    if (batch.carried !== undefined) {
      active.carried = batch.carried;
      active.lastAssistant = batch.carried.lastAssistant;
      active.spawned = batch.carried.spawned;
    }
    // A killed or stopped session cancels its active run, even when terminate never runs.
    // One callback for the session's life rather than one per run, on the actor's stop watch
    // rather than its `signal` (an AbortSignal and an EventTarget listener per session).
    const stopping = this[STOPPING]();
    if (stopping.aborted) controller.abort(stopping.reason);
    else if (!this.#watchingStop) {
      this.#watchingStop = true;
      stopping.onAbort(() => this.#active?.controller.abort(stopping.reason));
    }
    this.#active = active;
    const agent = this.#ctx.resolveAgent(this.#agentId);
    if (
      batch.timeoutMs !== undefined ||
      agent.timeoutMs !== undefined ||
      batch.deadlineAt !== undefined
    ) {
      this.#armTimeout(active, batch, agent);
    }
    const models = [
      batch.model ?? this.#metadata.modelOverride ?? agent.model,
      ...(agent.fallbacks ?? []),
    ];
    // A run that runs again after a failed save, or after its session crashed while running
    // it, started already: its followers saw it start (and its text withdrawn).
    if (batch.carried === undefined) {
      if (batch.saveFailures === undefined && !this.#startedBefore(batch.queueIds)) {
        this.#announceStart(active);
      }
    } else {
      // The run goes on: its messages are steered in, as at its next step.
      for (const steered of batch.inputs) {
        this.#emit(active, {
          runId: batch.runId,
          sessionKey: this.key,
          type: "steer",
          input: steered,
        });
      }
    }
    const emit = (event: RunEvent) => {
      // After a failed save the run ends and runs again: its error is not the last word.
      if (this.#active === active && active.saveFailure === undefined) this.#emit(active, event);
    };
    const thinking = batch.thinking ?? this.#metadata.thinkingLevel;
    const input: Omit<AgentLoopInput, "signal"> = {
      runId: batch.runId,
      sessionKey: this.key,
      agent,
      models,
      history: this.#history,
      inputs: batch.inputs,
      source: this.#ctx.source,
      tools: this.#ctx.tools,
      [CANCELLATION]: controller,
      emit,
      persist: (message, options) => this.#persist(active, message, options),
      contextWindow: this.#contextWindow,
      cacheKey: this.#promptCacheKey(),
      takeSteered: () => {
        if (active.steered.length === 0) return NOTHING_STEERED;
        const steered = active.steered.splice(0);
        active.taken.push(...steered);
        return steered;
      },
    };
    if (thinking !== undefined) input.thinking = thinking;
    if (this.#ctx.cost !== undefined) input.cost = this.#ctx.cost;
    // The message's own, else the agent's (prepared once: the agents were checked).
    const output =
      batch.output ??
      (agent.output === undefined ? undefined : resolveOutput(agent.output, "output"));
    if (output !== undefined) input[PREPARED_OUTPUT] = output;
    // Its `signal` is made only when read (see ActiveRun.controller): the loop, the chain and
    // the tool layer watch the cancellation instead.
    const loopInput: AgentLoopInput = defineLazySignal(input, controller);
    const loop = traceTelemetry(
      "beamclaw:session.run",
      () => ({
        runId: batch.runId,
        agent: this.#agentId,
        session: this.key,
        tenant: telemetryTenantOf(this.#ctx.store),
        parentSession: this.#metadata.parentKey,
        parentRunId: this.#metadata.parentRunId,
        parentTraceparent: this.#metadata.parentTraceparent,
        traceparent: batch.traceparent,
        tracestate: batch.tracestate,
      }),
      () => runAgentLoop(loopInput),
      settleRunTrace,
    );
    // If the session stopped meanwhile, the message is dropped: terminate told the logs.
    void loop.then((result) => this.#sendSelf({ type: "run-done", runId: batch.runId, result }));
  }

  /**
   * Starts the timer of a run's time limit: the shorter of its message's and its agent's,
   * from when the run first started, and no later than the message's absolute deadline when
   * it has one (a sub-agent's, kept across replays). Past it the run is cancelled with a
   * {@link RunTimeoutError}; one waiting to run again after a failed save ends at once, and
   * so does one whose deadline has passed before it starts.
   */
  #armTimeout(active: ActiveRun, batch: Batch, agent: AgentDefinition): void {
    const limitMs = Math.min(batch.timeoutMs ?? Infinity, agent.timeoutMs ?? Infinity);
    if (batch.timeoutMs !== undefined) active.timeoutMs = batch.timeoutMs;
    let deadline = batch.deadline ?? active.startedAt + limitMs;
    if (batch.deadlineAt !== undefined) {
      // Epoch ms on the runtime's clock, from the store: turned into this process's clock.
      deadline = Math.min(deadline, performance.now() + (batch.deadlineAt - this.#ctx.now()));
    }
    active.deadline = deadline;
    const fire = () => {
      active.timeLimit = undefined;
      if (this.#active !== active || active.controller.aborted) return;
      active.controller.abort(
        new RunTimeoutError(
          `run ${active.runId} went past its time limit of ${limitMs} ms and was cancelled`,
          limitMs,
        ),
      );
      if (active.saveFailure !== undefined) {
        this.#sendSelf({ type: "run-timeout", runId: active.runId });
      }
    };
    const left = deadline - performance.now();
    // Already over (a sub-agent replayed past its deadline): cancelled before it calls a model.
    if (left <= 0 && batch.deadlineAt !== undefined) fire();
    else active.timeLimit = setTimeout(fire, Math.max(0, left));
  }

  async #persist(run: ActiveRun, message: ModelMessage, options?: PersistOptions): Promise<void> {
    // A run that was reset or superseded writes nothing more.
    if (this.#active !== run || this.status !== "running") {
      throw new AbortedError(`run ${run.runId} no longer owns session ${this.key}`);
    }
    const at = this.#ctx.now();
    const saved = message as unknown as JsonObject;
    // Literals of fixed shapes (the store copies every entry): what the model call that
    // produced an assistant message used is saved with it (usage per session over time is
    // summed from these); the loop's own retry request is marked.
    const usage = options?.usage;
    const entry: JsonObject =
      usage !== undefined
        ? { runId: run.runId, at, message: saved, usage }
        : options?.retry === true
          ? { runId: run.runId, at, message: saved, retry: true }
          : { runId: run.runId, at, message: saved };
    let seq: number;
    try {
      seq = await this.#ctx.store.transcripts.append(this.key, [entry]);
    } catch (error) {
      run.saveFailure ??= error;
      throw error;
    }
    if (message.role === "assistant") run.lastAssistant = { seq, at };
    else if (!this.#recordSaved && !this.#recordDue) {
      // A new session's first message is saved: its record follows, from the mailbox (where
      // every other write of the record is made, so none of them is overtaken).
      this.#recordDue = true;
      this.#sendSelf({ type: "save-record" });
    }
    this.#history.push(message);
    const excess = this.#history.length - this.#ctx.historyLimit;
    // In place: a session at its limit trims on every message, and a copy of the whole
    // history each time costs more than the rest of the save.
    if (excess > 0) dropOldest(this.#history, excess);
  }

  async #finishRun(runId: string, result: RunResult): Promise<void> {
    const active = this.#active;
    if (active === null || active.runId !== runId) return;
    // The run's saved part was cancelled (a save refused as bad input): it failed.
    let cancelled = false;
    if (active.saveFailure !== undefined && !active.controller.aborted) {
      // Not all of the turn is saved: it must not be acknowledged. Fenced: another node owns
      // the session now (handleInfo stops it; the message replays there).
      if (FencedError.isInstance(active.saveFailure)) throw active.saveFailure;
      // Refused as bad input (a value no store keeps): running it again would write the same,
      // so the run fails once, its saved part cancelled, and it is acknowledged.
      if (!InvalidArgumentError.isInstance(active.saveFailure) || !(await this.#discard(runId))) {
        this.#retryLater(active);
        return;
      }
      const reason = active.saveFailure.message;
      cancelled = true;
      active.saveFailure = undefined;
      active.lastAssistant = undefined;
      result = {
        ...result,
        status: "failed",
        text: "",
        messages: [],
        error: {
          code: "INVALID_ARGUMENT",
          message: `the run's messages could not be saved: ${reason}`,
        },
      };
    }
    if (active.steered.length > 0 && result.status === "completed" && !active.controller.aborted) {
      this.#continueSteered(active, result);
      return;
    }
    if (active.carried !== undefined) {
      result = joinResults(active.carried.result, result);
      // Cancelled after a refused save: the discard marker covers its earlier part too, so
      // it reports none of its messages, as a run that did not go on.
      if (cancelled) result.messages = [];
    }
    if (active.lastAssistant !== undefined) result.finalMessage = active.lastAssistant;
    const m = this.#metadata;
    const now = this.#ctx.now();
    const next = withUsage(m, result, now);
    next.lastRunAt = now;
    next.runs = m.runs + 1;
    const window = this.#contextWindow;
    if (
      window.learnedMaxTokens !== m.contextLimit?.maxTokens ||
      (window.learnedMaxTokens !== undefined && window.ref !== m.contextLimit?.model)
    ) {
      if (window.learnedMaxTokens === undefined || window.ref === undefined) {
        delete next.contextLimit;
      } else {
        next.contextLimit = { model: window.ref, maxTokens: window.learnedMaxTokens };
      }
    }
    await this.#ctx.store.sessions.put(next as SessionRecord);
    this.#recordSaved = true;
    this.#metadata = next;
    // The turn is done and saved: now the messages may leave the durable queue (one the
    // store refuses is tried again later; the run is over all the same).
    await this.#dequeueAll(active, active.queueIds);
    const crashes = this.#ctx.crashes;
    for (const id of active.queueIds) {
      this.#ctx.logs.delete(id);
      if (crashes.size > 0) crashes.delete(id);
    }
    disarm(active);
    this.#active = null;
    const durationMs = performance.now() - active.startedAt;
    // An aborted or failed run says little about how long the next one takes.
    if (result.status === "completed") this.#lastRunMs = durationMs;
    this.#emit(active, { runId, sessionKey: this.key, type: "run-end", result });
    this.#maybeAutoCompact();
    emitTelemetry("beamclaw:session.run", () => ({
      session: this.key,
      agent: this.#agentId,
      runId,
      status: result.status,
      steps: result.steps,
      durationMs,
      inputTokens: result.usage.inputTokens,
      outputTokens: result.usage.outputTokens,
      costUsd: result.costUsd,
      tenant: telemetryTenantOf(this.#ctx.store),
    }));
    this.#touch();
    this.#startNext();
  }

  /**
   * Messages were steered into the run after its last look for them (its model had answered
   * and its end was on the way): the run goes on for them, as it would have at its next step,
   * rather than end and acknowledge them unanswered. Its earlier part's result is carried
   * into the one it ends with.
   */
  #continueSteered(active: ActiveRun, result: RunResult): void {
    const earlier = active.carried;
    const batch: Batch = {
      runId: active.runId,
      inputs: active.steered.splice(0),
      logs: active.logs,
      queueIds: active.queueIds,
      mode: active.mode,
      carried: {
        result: earlier === undefined ? result : joinResults(earlier.result, result),
        inputs: [...(earlier?.inputs ?? []), ...active.inputs, ...active.taken],
        lastAssistant: active.lastAssistant,
        spawned: active.spawned,
      },
    };
    if (active.unkeyed !== undefined) batch.unkeyed = active.unkeyed;
    if (active.model !== undefined) batch.model = active.model;
    if (active.thinking !== undefined) batch.thinking = active.thinking;
    if (active.saveFailures !== undefined) batch.saveFailures = active.saveFailures;
    if (active.timeoutMs !== undefined) batch.timeoutMs = active.timeoutMs;
    if (active.output !== undefined) batch.output = active.output;
    if (active.deadline !== undefined) batch.deadline = active.deadline;
    disarm(active);
    this.#active = null;
    this.#start(batch);
  }

  /** Starts the next waiting batch, if any. */
  #startNext(): void {
    // Never a second run: a skipped compaction may have started the next one already.
    if (this.#active !== null) return;
    // A compaction asked for during the run goes first; messages wait for it.
    const compaction = this.#compaction;
    if (compaction !== null) {
      if (!compaction.running) this.#beginCompaction(compaction);
      return;
    }
    // Injections asked for during the run go next (saved by the `inject-due` message, which
    // starts the next batch after them).
    if (this.#injections.length > 0) {
      this.#sendSelf({ type: "inject-due" });
      return;
    }
    const next = this.#pending.shift();
    if (next !== undefined) {
      this.#pendingCount -= next.inputs.length;
      this.#start(next);
    } else if (this.#replayMore && !this.#replayDue) {
      // The replayed page is done: the messages behind it are next.
      this.#replayMore = false;
      this.#replayDue = true;
      this.#sendSelf({ type: "replay" });
    }
  }

  /**
   * A message of the run could not be saved (a store failure): the run keeps the session,
   * tells its handles, and runs again after a backoff (100 ms doubling to 30 s, jittered).
   * Its messages stay in the durable queue until an attempt is saved whole, so a restart
   * in the meantime replays them, and nothing is acknowledged twice.
   */
  #retryLater(active: ActiveRun): void {
    const failures = (active.saveFailures ?? 0) + 1;
    active.saveFailures = failures;
    const ceiling = Math.min(SAVE_RETRY_MAX_MS, SAVE_RETRY_BASE_MS * 2 ** (failures - 1));
    const delayMs = ceiling * (0.5 + Math.random() / 2);
    const failure = active.saveFailure;
    this.#emit(active, {
      runId: active.runId,
      sessionKey: this.key,
      type: "error",
      error: {
        code: "SAVE_FAILED",
        message: `the run could not be saved (${failure instanceof Error ? failure.message : String(failure)}); it will run again`,
      },
    });
    // What the attempt streamed is withdrawn: the run streams its answer anew when it runs
    // again, and its followers (who add the text up) must not show it twice.
    this.#emit(active, {
      runId: active.runId,
      sessionKey: this.key,
      type: "text-reset",
      reason: "the run could not be saved and runs again",
    });
    active.cancelRetry = this.#sendSelfAfter({ type: "retry-run", runId: active.runId }, delayMs);
  }

  /**
   * Cancels what a run whose messages could not all be saved did save: a discard marker (as
   * after a crash), and the history read back without it, so that none of it reaches the
   * model.
   */
  async #discardOrThrow(runId: string): Promise<void> {
    const { store } = this.#ctx;
    await store.transcripts.append(this.key, [
      { runId, at: this.#ctx.now(), discarded: true, cause: "save-failed" },
    ]);
    await this.#reloadHistory();
  }

  /** {@link #discardOrThrow}; false if the store failed (fenced: throws). */
  async #discard(runId: string): Promise<boolean> {
    try {
      await this.#discardOrThrow(runId);
      return true;
    } catch (error) {
      if (FencedError.isInstance(error)) throw error;
      return false;
    }
  }

  /** Runs a run again whose messages could not be saved (see `#retryLater`). */
  async #retryRun(runId: string): Promise<void> {
    const active = this.#active;
    if (active === null || active.runId !== runId || active.saveFailure === undefined) return;
    active.cancelRetry = undefined;
    try {
      await this.#discardOrThrow(runId);
    } catch (error) {
      if (FencedError.isInstance(error)) throw error;
      active.saveFailure = error;
      this.#retryLater(active);
      return;
    }
    this.#active = null;
    const batch: Batch = {
      runId,
      // A run that went on for late steered messages runs again whole: the discard marker
      // cancelled its earlier part too.
      inputs: [
        ...(active.carried?.inputs ?? []),
        ...active.inputs,
        ...active.taken,
        ...active.steered,
      ],
      logs: active.logs,
      queueIds: active.queueIds,
      mode: active.mode,
      saveFailures: active.saveFailures ?? 0,
    };
    if (active.unkeyed !== undefined) batch.unkeyed = active.unkeyed;
    if (active.model !== undefined) batch.model = active.model;
    if (active.thinking !== undefined) batch.thinking = active.thinking;
    if (active.timeoutMs !== undefined) batch.timeoutMs = active.timeoutMs;
    if (active.output !== undefined) batch.output = active.output;
    if (active.deadline !== undefined) batch.deadline = active.deadline;
    disarm(active);
    this.#start(batch);
  }

  /**
   * Whether a run of messages `queueIds` started before: one of them was in the run that was
   * running when the session crashed in this process (see `#release`). Its handles and the
   * session's subscribers saw its `run-start`, then `SESSION_CRASHED` and a `text-reset`: its
   * replay is the same run and does not start again.
   */
  #startedBefore(queueIds: readonly string[]): boolean {
    const crashes = this.#ctx.crashes;
    return crashes.size > 0 && queueIds.some((id) => (crashes.get(id) ?? 0) > 0);
  }

  /**
   * Tells a run's followers that it starts: `run-start`, to its handles and on the session's
   * topics. One that started on a node that went while running it (see `#startedElsewhere`)
   * is the same run to the followers there, on the topics: they are told of the crash, as a
   * session that crashes tells them (`SESSION_CRASHED`, then `text-reset`, see `#release`),
   * and get no second `run-start`; its handles here, new, get theirs.
   */
  #announceStart(batch: Batch): void {
    const event = this.#runStartEvent(batch);
    if (this.#startedElsewhere?.delete(batch.runId) !== true) {
      this.#emit(batch, event);
      return;
    }
    this.#emitTo(batch.logs, event);
    this.#publish(crashedEvent(batch.runId, this.key, OWNER_WENT_MESSAGE));
    this.#publish(crashResetEvent(batch.runId, this.key));
  }

  #runStartEvent(batch: Batch): RunEvent {
    return {
      runId: batch.runId,
      sessionKey: this.key,
      type: "run-start",
      agentId: this.#agentId,
      at: this.#ctx.now(),
      input: batch.inputs,
    };
  }

  #emptyResult(runId: string, status: RunResult["status"]): RunResult {
    return {
      runId,
      sessionKey: this.key,
      status,
      text: "",
      messages: [],
      steps: 0,
      usage: { inputTokens: 0, outputTokens: 0 },
      costUsd: 0,
    };
  }

  #emit(batch: Batch, event: RunEvent): void {
    this.#emitTo(batch.logs, event);
    if (event.type === "usage") this.#meter(event);
    this.#publish(event);
  }

  /** Publishes a run's event on the session's topic and `events:global`. */
  #publish(event: RunEvent): void {
    const { pubsub } = this.#ctx;
    if (pubsub instanceof LocalPubSub) {
      // In-process fan-out needs no promise per event (a run streams many).
      pubsub.publishSync(this.#topic, event);
      pubsub.publishSync("events:global", event);
    } else {
      pubsub.publish(this.#topic, event).catch(() => undefined);
      pubsub.publish("events:global", event).catch(() => undefined);
    }
  }

  #emitTo(logs: RunEventLog[], event: RunEvent): void {
    for (const log of logs) log.push(event);
  }

  // ------------------------------------------------------------------ compaction

  /**
   * Asks for a compaction: it starts now when no run is active, else when the active run
   * ends; messages that arrive meanwhile wait for it. A second request joins the first.
   */
  #requestCompaction(
    options: CompactOptions | undefined,
    trigger: "manual" | "auto" = "manual",
  ): PendingCompaction {
    const key = options?.idempotencyKey;
    const current = this.#compaction;
    if (current !== null) {
      if (key !== undefined && !current.keys.includes(key)) current.keys.push(key);
      return new PendingCompaction(current.done);
    }
    const agent = this.#ctx.resolveAgent(this.#agentId);
    const checked = checkCompactOptions(options, agent.timeoutMs);
    let resolve!: (result: CompactionResult) => void;
    let reject!: (error: unknown) => void;
    const done = new Promise<CompactionResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A caller that went away must not leave an unhandled rejection behind.
    done.catch(() => undefined);
    const compaction: Compaction = {
      trigger,
      askedAt: performance.now(),
      ...checked,
      done,
      resolve,
      reject,
      controller: new AbortController(),
      running: false,
      timer: undefined,
      keys: key === undefined ? [] : [key],
    };
    this.#compaction = compaction;
    this.#touch();
    if (this.#active === null && !this.#replayDue) this.#beginCompaction(compaction);
    return new PendingCompaction(done);
  }

  /**
   * A `compact` request: with an idempotency key seen before, the first call's result (when
   * it was applied); else {@link #requestCompaction}.
   */
  async #requestKeyedCompaction(
    options: CompactOptions | undefined,
  ): Promise<PendingCompaction | CompactionResult> {
    await this.#settleUnconfirmedCompaction();
    const key = options?.idempotencyKey;
    if (key !== undefined) {
      const applied = await this.#appliedOperation("compact", key, (saved, record) =>
        this.#recoverCompaction(key, saved, record),
      );
      if (applied !== undefined) return applied as unknown as CompactionResult;
    }
    return this.#requestCompaction(options);
  }

  /**
   * Looks for the compaction without a key whose save was not confirmed (see
   * `#unconfirmedCompaction`): saved, it is in the history (read back) and counted now, once;
   * not saved, it is forgotten. A store that still cannot tell leaves it for the next time.
   */
  async #settleUnconfirmedCompaction(): Promise<void> {
    const lost = this.#unconfirmedCompaction;
    if (lost === undefined) return;
    const saved = await this.#compactionSaved(lost.runId, lost.savedAfter);
    if (saved === undefined || this.#unconfirmedCompaction !== lost) return;
    this.#unconfirmedCompaction = undefined;
    if (!saved) return;
    await this.#reloadHistory();
    await this.#countCompaction(lost.runId, lost.result);
  }

  /**
   * Whether the compaction of run `runId` is in the transcript after `savedAfter`; undefined
   * when the store cannot tell.
   */
  #compactionSaved(runId: string, savedAfter: number): Promise<boolean | undefined> {
    return this.#findSavedAfter(
      savedAfter,
      (entry) => entry.runId === runId && entry.compaction !== undefined,
    ).then(
      (found) => found !== undefined,
      () => undefined,
    );
  }

  /**
   * A keyed compaction the store saved whose key is not marked done (its reply was lost, or
   * the write marking it done failed): counted now, unless it was counted already (see
   * `#countCompaction`). Every key it answers is marked done first (this call's last); a
   * store failure there is the caller's, whose retry finishes it then.
   */
  async #recoverCompaction(
    key: string,
    saved: TranscriptRecord,
    record: KeyedOperation,
  ): Promise<void> {
    const keys = Array.isArray(saved.entry.idempotencyKeys)
      ? saved.entry.idempotencyKeys.filter((k): k is string => typeof k === "string")
      : [];
    const done: KeyedOperation = { ...record, done: true };
    for (const other of keys) if (other !== key) await this.#rememberOperation(other, done);
    await this.#rememberOperation(key, done);
    await this.#countCompaction(
      String(saved.entry.runId),
      record.result as unknown as CompactionResult,
    );
  }

  /**
   * Counts a saved compaction (of run `runId`) in the session's metadata: its model call, and
   * `compactions`; its run id is saved with the count (`countedCompactions`), in the same
   * write, so that it is never counted twice (by a retry that finds it saved after this
   * session stopped, and its memory with it).
   */
  async #countCompaction(runId: string, result: CompactionResult): Promise<void> {
    const m = this.#metadata;
    const counted = Array.isArray(m.countedCompactions) ? m.countedCompactions : [];
    if (counted.includes(runId)) return;
    const next = withUsage(m, result, this.#ctx.now());
    next.compactions = (m.compactions ?? 0) + 1;
    next.countedCompactions = [...counted, runId].slice(-COUNTED_COMPACTIONS);
    await this.#ctx.store.sessions.put(next as SessionRecord).catch(() => undefined);
    this.#metadata = next;
  }

  /**
   * After a run: compacts when the agent asks for it (`autoCompact`) and the history's
   * estimated tokens reached its threshold. Its outcome goes to telemetry only.
   */
  #maybeAutoCompact(): void {
    if (this.#compaction !== null) return;
    const agent = this.#ctx.resolveAgent(this.#agentId);
    const auto = agent.autoCompact;
    if (auto === undefined || auto === false) return;
    const options = auto === true ? {} : auto;
    let threshold = options.thresholdTokens;
    if (threshold === undefined) {
      const budget = this.#knownBudget(agent);
      if (budget === Infinity) return;
      threshold = Math.floor(budget * AUTO_COMPACT_SHARE);
    }
    if (estimateTokens(this.#history) < threshold) return;
    this.#requestCompaction(
      options.keepTurns === undefined ? {} : { keepTurns: options.keepTurns },
      "auto",
    );
  }

  /**
   * The tokens one request may carry, as far as the session knows: the agent's
   * `contextTokens` and the cut learned for its current model; `Infinity` when neither.
   */
  #knownBudget(agent: AgentDefinition): number {
    const window = this.#contextWindow;
    const model = this.#metadata.modelOverride ?? agent.model;
    const learned = window.ref === model ? window.learnedMaxTokens : undefined;
    return Math.min(agent.contextTokens ?? Infinity, learned ?? Infinity);
  }

  /** Summarizes the history before its last `keepTurns` turns, off the actor's mailbox. */
  #beginCompaction(compaction: Compaction): void {
    compaction.running = true;
    const cut = compactionCut(this.#history, compaction.keepTurns);
    if (cut === undefined) {
      this.#endCompaction(compaction, {
        status: "skipped",
        summarizedMessages: 0,
        keptMessages: this.#history.length,
        usage: { inputTokens: 0, outputTokens: 0 },
        costUsd: 0,
      });
      return;
    }
    const snapshot = this.#history.slice(0, cut);
    const agent = this.#ctx.resolveAgent(this.#agentId);
    const models = [this.#metadata.modelOverride ?? agent.model, ...(agent.fallbacks ?? [])];
    // What the session knows of the model's context window bounds the text to summarize.
    const budget = this.#knownBudget(agent);
    const rendered = renderForSummary(snapshot, budget === Infinity ? Infinity : budget * 3);
    const runId = `compaction:${randomUUID()}`;
    const input: AgentLoopInput = {
      runId,
      sessionKey: this.key,
      // The agent's models, not its prompt, skills, tools or budget: one answer, no tools.
      agent: {
        id: agent.id,
        model: agent.model,
        systemPrompt: COMPACTION_SYSTEM_PROMPT,
        maxSteps: 1,
        ...(agent.maxOutputTokens === undefined ? {} : { maxOutputTokens: agent.maxOutputTokens }),
      },
      models,
      history: [],
      inputs: [{ text: summaryRequest(rendered, compaction.instructions) }],
      source: this.#ctx.source,
      tools: this.#ctx.tools,
      signal: compaction.controller.signal,
      emit: (event) => {
        if (event.type === "usage") this.#meter(event);
      },
      persist: async (_message, options) => {
        if (options?.usage !== undefined) compaction.callUsage = options.usage;
      },
      takeSteered: () => NOTHING_STEERED,
      cacheKey: this.#promptCacheKey(),
    };
    if (this.#ctx.cost !== undefined) input.cost = this.#ctx.cost;
    compaction.timer = setTimeout(() => {
      compaction.controller.abort(
        new RunTimeoutError(
          `the compaction of session ${this.key} went past its time limit of ${compaction.timeoutMs} ms`,
          compaction.timeoutMs,
        ),
      );
    }, compaction.timeoutMs);
    const deliver = (
      outcome: Extract<SessionInfo, { type: "compaction-done" }>["outcome"],
    ): void => {
      try {
        this.send({ type: "compaction-done", compaction, outcome });
      } catch {
        // A full mailbox: the outcome must not be lost, or the held messages would wait for ever.
        if (this.#compaction === compaction) setTimeout(() => deliver(outcome), 10);
      }
    };
    void runAgentLoop(input).then(
      (result) => deliver({ result, snapshot }),
      (error: unknown) => deliver({ error }),
    );
  }

  /** Applies a finished summary (or its failure), then lets the held messages run. */
  async #finishCompaction(
    message: Extract<SessionInfo, { type: "compaction-done" }>,
  ): Promise<void> {
    const compaction = message.compaction;
    // Reset or stopped meanwhile: it was answered then.
    if (this.#compaction !== compaction) return;
    const { outcome } = message;
    if ("error" in outcome) {
      this.#endCompaction(compaction, outcome.error);
      return;
    }
    const { result, snapshot } = outcome;
    const summary = result.text.trim();
    if (result.status !== "completed" || summary === "") {
      this.#endCompaction(
        compaction,
        result.error !== undefined
          ? Object.assign(new Error(result.error.message), { code: result.error.code })
          : new Error(`the model gave no summary (status ${result.status})`),
      );
      return;
    }
    const cut = snapshot.length;
    // Runs were held, so the history still starts with the snapshot, unless it was trimmed
    // (a history limit) or cleared; the summary then replaces what is left of it.
    const at = this.#history.indexOf(snapshot[cut - 1]!);
    if (at === -1) {
      this.#endCompaction(compaction, {
        status: "skipped",
        summarizedMessages: 0,
        keptMessages: this.#history.length,
        usage: result.usage,
        costUsd: result.costUsd,
      });
      return;
    }
    const kept = this.#history.length - (at + 1);
    const summaryMsg = summaryMessage(summary);
    const entry: CompactionEntry = {
      summary,
      kept,
      summarized: at + 1,
      trigger: compaction.trigger,
      tokensBefore: estimateTokens(this.#history),
      tokensAfter: estimateTokens([summaryMsg, ...this.#history.slice(at + 1)]),
    };
    const compacted: CompactionResult = {
      status: "compacted",
      summarizedMessages: at + 1,
      keptMessages: kept,
      summary,
      usage: result.usage,
      costUsd: result.costUsd,
    };
    /** Where the transcript ended before the summary's write (once that write is tried). */
    let savedAfter: number | undefined;
    try {
      const firstKeptSeq = kept === 0 ? undefined : await this.#firstKeptSeq(kept);
      if (firstKeptSeq !== undefined) entry.firstKeptSeq = firstKeptSeq;
      const saved: JsonObject = { runId: result.runId, at: this.#ctx.now(), compaction: entry };
      if (compaction.callUsage !== undefined) saved.usage = compaction.callUsage;
      // Keyed: remembered with its result before it is saved (a retry finds it either way).
      for (const key of compaction.keys) {
        const record = await this.#beginOperation(key, "compact", [], compacted);
        compaction.savedAfter = record.savedAfter;
      }
      if (compaction.keys.length > 0) saved.idempotencyKeys = [...compaction.keys];
      else savedAfter = await this.#ctx.store.transcripts.lastSeq(this.key);
      await this.#ctx.store.transcripts.append(this.key, [saved]);
    } catch (error) {
      // Not saved: nothing changes (a compaction that cannot be kept would be undone by the
      // next revival). Unless the store saved it and its reply was lost: a keyed one is
      // found by a retry with its key; one without is looked for by the next compaction.
      if (savedAfter !== undefined) {
        this.#unconfirmedCompaction = { runId: result.runId, savedAfter, result: compacted };
      }
      this.#endCompaction(compaction, error);
      return;
    }
    this.#history.splice(0, at + 1, summaryMsg);
    await this.#countCompaction(result.runId, compacted);
    this.#endCompaction(compaction, compacted);
  }

  /** Counts a model call's usage for the session (the runtime's usage meter). */
  #meter(event: Extract<RunEvent, { type: "usage" }>): void {
    this.#ctx.onUsage({
      sessionKey: this.key,
      agentId: this.#agentId,
      provider: event.provider,
      model: event.model,
      usage: event.usage,
      costUsd: event.costUsd,
      at: this.#ctx.now(),
    });
  }

  /** The transcript `seq` of the first of the last `kept` messages (runs are held: none is in flight). */
  async #firstKeptSeq(kept: number): Promise<number | undefined> {
    if (kept > 900) return undefined;
    const tail = (
      await this.#ctx.store.transcripts.read(this.key, { order: "desc", limit: kept + 100 })
    ).reverse();
    const messages = liveEntries(tail).filter((r) => r.entry.message !== undefined);
    return messages.length >= kept ? messages[messages.length - kept]!.seq : undefined;
  }

  /** Answers the compaction's caller and lets the held messages run. */
  #endCompaction(compaction: Compaction, outcome: CompactionResult | unknown): void {
    if (compaction.timer !== undefined) clearTimeout(compaction.timer);
    compaction.timer = undefined;
    if (this.#compaction === compaction) this.#compaction = null;
    const ok = isCompactionResult(outcome);
    emitTelemetry("beamclaw:session.compaction", () => ({
      session: this.key,
      agent: this.#agentId,
      trigger: compaction.trigger,
      status: ok ? outcome.status : "failed",
      summarizedMessages: ok ? outcome.summarizedMessages : 0,
      keptMessages: ok ? outcome.keptMessages : this.#history.length,
      durationMs: performance.now() - compaction.askedAt,
      ...(ok ? {} : { error: errorInfo(outcome) }),
      tenant: telemetryTenantOf(this.#ctx.store),
    }));
    if (ok) {
      // Its keys answer with this result from now on (a skipped one too: nothing to redo).
      for (const key of compaction.keys) {
        void this.#operationDone(
          key,
          { op: "compact", savedAfter: compaction.savedAfter ?? 0 },
          outcome,
        );
      }
      compaction.resolve(outcome);
    } else compaction.reject(outcome);
    this.#touch();
    if (this.#active === null && !this.#replayDue && this.status === "running") this.#startNext();
  }

  /** Ends a compaction now (reset, stop): its caller gets `reason`, its model call is aborted. */
  #cancelCompaction(reason: Error): void {
    const compaction = this.#compaction;
    if (compaction === null) return;
    this.#compaction = null;
    if (compaction.timer !== undefined) clearTimeout(compaction.timer);
    compaction.timer = undefined;
    compaction.controller.abort(reason);
    compaction.reject(reason);
  }

  // ------------------------------------------------------------------ injection

  /**
   * Adds an assistant message without a run (`inject`): now when the session is at rest,
   * else once the active run (and a compaction asked for during it) is done, before the
   * messages waiting; messages sent meanwhile wait for it.
   */
  async #requestInjection(
    request: Extract<SessionCall, { type: "inject" }>,
  ): Promise<InjectResult | PendingInjection> {
    const { text, label, idempotencyKey: key } = request;
    let { id, savedAfter } = request;
    let record: KeyedOperation | undefined;
    if (key !== undefined) {
      record = await this.#operation("inject", key);
      if (record?.done === true && record.result !== undefined) {
        return record.result as unknown as InjectResult;
      }
      if (typeof record?.id === "string") {
        // Asked before with this key: the same injection (still waiting, or saved already).
        id = record.id;
        savedAfter = Math.min(savedAfter ?? record.savedAfter, record.savedAfter);
      } else {
        id ??= randomUUID();
        record = await this.#beginOperation(key, "inject", [], undefined, id);
      }
    }
    const runId = `inject:${id ?? randomUUID()}`;
    /** Marks the keyed injection done with its result. */
    const done = (result: InjectResult): InjectResult => {
      if (key !== undefined && record !== undefined) {
        void this.#operationDone(key, record, result);
      }
      return result;
    };
    // Asked again (a retry after an owner was lost): the same injection, never a second one.
    const waiting = this.#injections.find((injection) => injection.runId === runId);
    if (waiting !== undefined) return new PendingInjection(waiting.done);
    if (savedAfter !== undefined) {
      const saved = await this.#savedInjection(runId, savedAfter);
      if (saved !== undefined) {
        // Saved by this session with its reply lost: its history is missing it.
        if (key !== undefined) await this.#reloadHistory();
        return done(saved);
      }
    }
    const message: ModelMessage = {
      role: "assistant",
      content: [{ type: "text", text: label === undefined ? text : `[${label}]\n\n${text}` }],
    };
    if (
      this.#active === null &&
      !this.#replayDue &&
      this.#compaction === null &&
      this.#injections.length === 0
    ) {
      return done((await this.#saveInjections([{ runId, message }]))[0]!);
    }
    // Held in memory until the run ends: a flood of notes during a long run must not grow
    // without bound, any more than the messages waiting may.
    if (this.#injections.length >= this.#ctx.maxQueuedMessages) {
      throw this.#queueFull("injected messages");
    }
    let resolve!: (result: InjectResult) => void;
    let reject!: (error: unknown) => void;
    const saved = new Promise<InjectResult>((res, rej) => {
      resolve = res;
      reject = rej;
    }).then(done);
    this.#injections.push({ runId, message, done: saved, resolve, reject });
    // Answered through the runtime's await; never left unhandled here.
    saved.catch(() => undefined);
    this.#touch();
    return new PendingInjection(saved);
  }

  /**
   * The injection saved under `runId` among the transcript entries after `seq`, if any: one
   * that a previous owner of the session saved before it was lost. Its writes are fenced, so
   * once this node holds the session's lease nothing of it can land any more.
   */
  async #savedInjection(runId: string, seq: number): Promise<InjectResult | undefined> {
    const record = await this.#findSavedAfter(
      seq,
      (entry) => entry.runId === runId && entry.message !== undefined,
    );
    if (record === undefined) return undefined;
    const entry = record.entry as { at?: unknown; message?: unknown };
    return {
      runId,
      seq: record.seq,
      at: typeof entry.at === "number" ? entry.at : this.#ctx.now(),
      message: entry.message as ModelMessage,
    };
  }

  /** Saves the injections that waited for the run, then lets the waiting messages run. */
  async #injectWaiting(): Promise<void> {
    if (this.#active !== null || this.#compaction !== null) return;
    const waiting = this.#injections;
    this.#injections = [];
    if (waiting.length > 0) {
      try {
        const results = await this.#saveInjections(waiting);
        for (let i = 0; i < waiting.length; i++) waiting[i]!.resolve(results[i]!);
      } catch (error) {
        for (const injection of waiting) injection.reject(error);
      }
    }
    this.#startNext();
  }

  /** Appends injected messages to the transcript and the history, in one write. */
  async #saveInjections(
    injections: ReadonlyArray<{ runId: string; message: ModelMessage }>,
  ): Promise<InjectResult[]> {
    const at = this.#ctx.now();
    const messages = injections.map((injection) => injection.message);
    const entries = injections.map(({ runId, message }) => ({
      runId,
      at,
      message: message as unknown as JsonObject,
    }));
    const last = await this.#ctx.store.transcripts.append(this.key, entries);
    for (const message of messages) this.#history.push(message);
    const excess = this.#history.length - this.#ctx.historyLimit;
    if (excess > 0) dropOldest(this.#history, excess);
    this.#metadata = { ...this.#metadata, updatedAt: at };
    // The message is saved; the session's time follows at the next save if this one fails.
    await this.#ctx.store.sessions.put(this.#metadata as SessionRecord).then(
      () => (this.#recordSaved = true),
      () => undefined,
    );
    this.#touch();
    const results = entries.map((entry, i) => ({
      runId: entry.runId,
      seq: last - entries.length + 1 + i,
      at,
      message: messages[i]!,
    }));
    for (const result of results) {
      const event: InjectedMessageEvent = {
        type: "message-injected",
        sessionKey: this.key,
        ...result,
      };
      this.#ctx.pubsub.publish(INJECTED_MESSAGES_TOPIC, event).catch(() => undefined);
    }
    return results;
  }

  /** Answers the waiting injections with `reason` (a reset, a stop). */
  #cancelInjections(reason: unknown): void {
    const waiting = this.#injections;
    this.#injections = [];
    for (const injection of waiting) injection.reject(reason);
  }

  // ------------------------------------------------------------------ hibernation

  #touch(): void {
    this.#lastActivity = this.#ctx.now();
    if (!this.#idleArmed && this.#ctx.hibernateAfterMs !== Infinity) {
      this.#idleArmed = true;
      this.#sendSelfAfter({ type: "idle-check" }, this.#ctx.hibernateAfterMs);
    }
  }

  #checkIdle(): void {
    if (
      this.#active !== null ||
      this.#pending.length > 0 ||
      this.#replayDue ||
      this.#compaction !== null ||
      this.#injections.length > 0 ||
      this.#undequeued.length > 0
    ) {
      this.#touch();
      return;
    }
    const idleFor = this.#ctx.now() - this.#lastActivity;
    if (idleFor >= this.#ctx.hibernateAfterMs) {
      // Hibernate: terminate saves the metadata; the supervisor forgets a normal exit.
      void this.stop("normal");
      return;
    }
    this.#idleArmed = true;
    this.#sendSelfAfter({ type: "idle-check" }, this.#ctx.hibernateAfterMs - idleFor);
  }
}

/** A request the session refused; the runtime rethrows `error` to the caller. @internal */
export class SessionRequestFailure {
  constructor(readonly error: unknown) {}
}

const NO_CRASH_MARKS: ReadonlyMap<string, number> = new Map();

/** The estimated tokens of some messages (see `estimateMessageTokens`). */
function estimateTokens(messages: readonly ModelMessage[]): number {
  let tokens = 0;
  for (const message of messages) tokens += estimateMessageTokens(message);
  return tokens;
}

/** The `text-reset` that follows a run's `SESSION_CRASHED` (see {@link crashedEvent}). */
function crashResetEvent(runId: string, sessionKey: string): RunEvent {
  return {
    runId,
    sessionKey,
    type: "text-reset",
    reason: "the session crashed and the run runs again",
  };
}

/**
 * The `SESSION_CRASHED` message a node that takes a session over publishes as it replays a
 * run that started on a node that went (see `#announceStart`): the run has moved off that
 * node. A caller's follower of the run (`RunFollower`) tells of that node's death once, this
 * way or by its own membership notice, whichever comes first.
 * @internal
 */
export const OWNER_WENT_MESSAGE =
  "the node running this session went; the message runs again on another node";

/** What the handles (and, for the run in progress, the subscribers) of a crashed session hear. */
function crashedEvent(
  runId: string,
  sessionKey: string,
  message = "the session crashed; the message will run again",
): RunEvent {
  return { runId, sessionKey, type: "error", error: { code: "SESSION_CRASHED", message } };
}

/** Whether an exit reason is a clean stop (not a crash or a kill). */
function isCleanStop(reason: ExitReason): boolean {
  return typeof reason === "string" && reason !== "killed";
}

/**
 * Per run id in `runIds`: the crash markers (`discarded` with `cause: "crash"`) among
 * `records`, plus one for each of `added` (the markers just written after them). Markers
 * without a cause (written before causes were recorded, or after a failed save) and those of
 * clean stops do not count.
 */
function crashMarks(
  records: readonly TranscriptRecord[],
  runIds: ReadonlySet<string>,
  added: readonly string[],
): ReadonlyMap<string, number> {
  const counts = new Map<string, number>();
  for (const record of records) {
    const entry = record.entry;
    if (entry.discarded !== true || entry.cause !== "crash") continue;
    const runId = String(entry.runId);
    if (runIds.has(runId)) counts.set(runId, (counts.get(runId) ?? 0) + 1);
  }
  for (const runId of added) counts.set(runId, (counts.get(runId) ?? 0) + 1);
  return counts;
}

/** A user message of the transcript as `send` takes it. */
export function inputOf(message: Extract<ModelMessage, { role: "user" }>): UserMessageInput {
  let text = "";
  const images: NonNullable<UserMessageInput["images"]> = [];
  const files: NonNullable<UserMessageInput["files"]> = [];
  for (const part of message.content) {
    if (part.type === "text") {
      text += part.text;
      continue;
    }
    const where = {
      mediaType: part.mediaType,
      ...(part.data === undefined ? {} : { data: part.data }),
      ...(part.url === undefined ? {} : { url: part.url }),
    };
    if (part.type === "image") images.push(where);
    else files.push(part.filename === undefined ? where : { ...where, filename: part.filename });
  }
  return {
    text,
    ...(images.length === 0 ? {} : { images }),
    ...(files.length === 0 ? {} : { files }),
  };
}

/** The messages of live transcript entries, made safe to send (see `repairHistory`). */
function historyOf(live: readonly TranscriptRecord[]): ModelMessage[] {
  return repairHistory(messagesOf(live));
}

/**
 * Makes a restored history safe to send: it starts at a user message, and every assistant
 * tool call has its result. A call left without one in the last turn (a crash cut the run
 * short; its replay redoes it) is dropped with everything from it. One in an earlier turn (a
 * run that ended while its tools ran, saved before the loop answered its calls) gets an error
 * result (see `answerToolCalls`), so that the turns after it are kept.
 */
function repairHistory(history: ModelMessage[]): ModelMessage[] {
  let out = trimToTurn(history);
  const lastTurn = out.findLastIndex((m) => m.role === "user");
  for (let i = Math.max(lastTurn, 0); i < out.length; i++) {
    const message = out[i]!;
    if (message.role !== "assistant") continue;
    const next = out[i + 1];
    const answered = next?.role === "tool" ? next.content.map((r) => r.toolCallId) : [];
    if (message.content.some((p) => p.type === "tool-call" && !answered.includes(p.toolCallId))) {
      out = out.slice(0, i);
      break;
    }
  }
  return answerToolCalls(out);
}

/**
 * The entries that count, in order: markers removed, and every entry of a run that has a
 * discard marker after it dropped (that attempt never finished; a later replay of the same
 * run writes after the marker).
 */
export function liveEntries(records: readonly TranscriptRecord[]): TranscriptRecord[] {
  const cancelled = new Set<string>();
  const out: TranscriptRecord[] = [];
  for (let i = records.length - 1; i >= 0; i--) {
    const record = records[i]!;
    const runId = String(record.entry.runId);
    if (record.entry.discarded === true) cancelled.add(runId);
    else if (!cancelled.has(runId)) out.push(record);
  }
  return out.reverse();
}

/** Drops leading messages until the history starts at a user message (never mid tool call). */
function trimToTurn(history: ModelMessage[]): ModelMessage[] {
  const first = history.findIndex((m) => m.role === "user");
  return first <= 0 ? history : history.slice(first);
}

/** The result of a run that went on (see `#continueSteered`): its parts' figures added up. */
function joinResults(earlier: RunResult, later: RunResult): RunResult {
  const usage = { ...later.usage };
  usage.inputTokens += earlier.usage.inputTokens;
  usage.outputTokens += earlier.usage.outputTokens;
  for (const field of [
    "cacheReadTokens",
    "cacheWriteTokens",
    "cacheWrite1hTokens",
    "reasoningTokens",
  ] as const) {
    if (earlier.usage[field] !== undefined) {
      usage[field] = (usage[field] ?? 0) + earlier.usage[field];
    }
  }
  return {
    ...later,
    messages: [...earlier.messages, ...later.messages],
    steps: earlier.steps + later.steps,
    usage,
    costUsd: earlier.costUsd + later.costUsd,
  };
}

/** `batch.unkeyed`, made if it is not there yet. */
function unkeyedOf(batch: Batch): string[] {
  if (batch.unkeyed === undefined) batch.unkeyed = [];
  return batch.unkeyed;
}

/** Stops the timer of a run's time limit, if it has one. */
function disarm(active: ActiveRun): void {
  if (active.timeLimit !== undefined) {
    clearTimeout(active.timeLimit);
    active.timeLimit = undefined;
  }
}

/**
 * Drops the oldest `count` messages of `history`, in place, and then those before the first
 * user message left, so that the history starts with a turn (when it has a user message left).
 */
function dropOldest(history: ModelMessage[], count: number): void {
  let end = count;
  while (end < history.length && history[end]?.role !== "user") end++;
  history.splice(0, end < history.length ? end : count);
}
