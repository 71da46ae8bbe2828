import type { BeamClawError } from "../errors.js";
import type {
  FinishReason,
  ImagePart,
  JsonObject,
  JsonValue,
  ModelMessage,
  ModelToolDefinition,
  ModelUsage,
  ThinkingLevel,
  ToolCallPart,
} from "../providers/types.js";
import { MAX_TIMER_DELAY_MS } from "../runtime/timers.js";
import type { AgentIdentity } from "./identity.js";
import type { OutputOption } from "./output.js";

/**
 * The longest time limit a run may have (`SendOptions.timeoutMs`, `AgentDefinition.timeoutMs`),
 * in ms: what one Node.js timer can wait (2,147,483,647, about 24.8 days).
 */
export const MAX_RUN_TIMEOUT_MS = MAX_TIMER_DELAY_MS;

/** How an agent behaves: its model, prompt, tools and limits. */
export interface AgentDefinition {
  /** Matches `^[a-z0-9][a-z0-9_-]{0,63}$`. */
  id: string;
  /** Primary model as `provider/model`, e.g. `anthropic/claude-sonnet-4-5`. */
  model: string;
  /** Tried in order when the primary fails. */
  fallbacks?: string[];
  systemPrompt?: string;
  /** Skill texts appended to the system prompt (the skills loader fills these). */
  skills?: string[];
  /** Names of the tools this agent may call; `["*"]` for all registered tools. Default none. */
  tools?: string[];
  /** Model calls per run before it stops with status `max-steps`. Default 16. */
  maxSteps?: number;
  /**
   * Time limit of one run of this agent, in ms, counted from the moment the run starts (not
   * while its message waits behind another run). A run past it is cancelled (its provider
   * request and tools with it) and ends `aborted` with a `RUN_TIMEOUT` error. A message's
   * own `SendOptions.timeoutMs` applies when it is shorter. Default: no limit.
   */
  timeoutMs?: number;
  thinking?: ThinkingLevel;
  maxOutputTokens?: number;
  temperature?: number;
  /**
   * The most tokens one model request of this agent may carry: its model's context window
   * less room for the answer. Estimated (about four characters a token, 1,600 an image,
   * system prompt and tool definitions included); the oldest turns of the history are left
   * out of a request that would go past it, whole turns at a time, never the current run's
   * messages, and only from the request: the history and the transcript keep them. A cut
   * goes down to three quarters of the budget, and later requests start at the same message
   * while they fit, so that a provider's prompt cache keeps serving their beginning.
   *
   * Whether or not it is set, a request the provider refuses as longer than the model's
   * context window (before any output) is cut to 70% of its estimate and tried again, up to
   * three tries; the session remembers the cut for its later runs on that model.
   * Default: no budget of its own.
   */
  contextTokens?: number;
  /**
   * Compact the session by itself (see `SessionHandle.compact`) after a run that leaves its
   * history near the context window: estimated past `thresholdTokens`, by default three
   * quarters of `contextTokens` or of the cut the session learned from a refusal (with
   * neither, it waits for the first refusal). Messages that arrive meanwhile wait for it; a
   * failed one is tried again after the next run. Default off.
   */
  autoCompact?: boolean | AutoCompactOptions;
  /**
   * The form of every answer of this agent: JSON conforming to a schema (see
   * `SendOptions.output`, which takes precedence for one message). Default: free text.
   */
  output?: OutputOption;
  /** Sub-agent limits; sub-agents are off unless this is set. */
  subagents?: SubagentLimits;
  /**
   * How clients show the agent (name, emoji, avatar): the gateway's `agents.list`,
   * `agent.identity.get` and dashboard. Never sent to the model. Default: its id.
   */
  identity?: AgentIdentity;
}

/** Limits on the sub-agents one session may spawn. */
export interface SubagentLimits {
  /** How deep sub-agents may nest. Default 1: a sub-agent cannot spawn. */
  maxDepth?: number;
  /**
   * Sub-agents a parent session may spawn in all. Each spawn is recorded in the store
   * before the sub-agent starts (and shown as `subagentsSpawned` in its metadata), so a
   * crash, a restart or a hibernation keeps the count; a run that replays (after a crash or
   * a restart) re-uses the places its first attempt took, so its spawns are not counted
   * twice. A reset of the parent starts the count again. Default 8.
   */
  maxChildren?: number;
  /** Sub-agents running at once per parent. Default 4. */
  maxConcurrent?: number;
  /**
   * A sub-agent that has not reported within this time is stopped, and its parent gets an
   * error result saying it went past its time limit. Default 300 000. The deadline is fixed
   * when the sub-agent is spawned and kept with its message in the durable queue: a child
   * whose session crashed and is revived runs only until that same deadline (one revived past
   * it ends at once, as timed out), never under a fresh limit. A child left unfinished by a
   * restart is not run again (its parent's run replays from its start and spawns afresh).
   */
  timeoutMs?: number;
  /** The agent sub-agents run as. Default: the parent's agent. */
  agentId?: string;
}

/** What happens to a message sent while a run is active. */
export type QueueMode =
  /** Inject it into the active run at the next model call. */
  | "steer"
  /** Run it on its own after the active run (and any earlier follow-ups). */
  | "followup"
  /** Run every message collected during the active run together, as one turn, after it. */
  | "collect"
  /** Abort the active run and run this message now. */
  | "interrupt";

/** A user message for a session. */
export interface UserMessageInput {
  text: string;
  images?: Array<{ mediaType: string; data?: string; url?: string }>;
  /**
   * Documents (PDF; plain text for Anthropic and Gemini), base64 `data` or a `url`, sent to
   * the model as file parts after the images.
   */
  files?: Array<{ mediaType: string; data?: string; url?: string; filename?: string }>;
  /** Who sent it (channel peer, device), stored with the transcript entry. */
  sender?: string;
}

/** Options of `SessionHandle.send`. */
export interface SendOptions {
  /** What to do if a run is active. Default `followup`. */
  queueMode?: QueueMode;
  /**
   * Deduplicates retries: a message with an idempotency key seen before (pending or
   * recently done) is not run again. With a durable store the message is written to the
   * inbound queue before `send` resolves and removed only when its run is done; its key is
   * then remembered for the store's `dedupeWindowMs`. Without a key the message is queued
   * under one the runtime makes up, and leaves the queue without a dedupe record (nothing
   * could repeat a key nobody knows).
   */
  idempotencyKey?: string;
  /**
   * Aborts this message's run. A signal that is aborted already when `send` is called, or
   * that aborts before the session has taken the message, makes `send` reject with
   * `AbortedError`: nothing is left queued and nothing runs (no model call is made).
   */
  signal?: AbortSignal;
  /**
   * Time limit of this message's run, in ms (an integer from 1 to 2,147,483,647), counted
   * from the moment the run starts. Past it the run is cancelled like an `abort`, and its
   * result has status `aborted` with `error.code` `RUN_TIMEOUT` (an `error` event says so
   * first). The agent's `timeoutMs` applies when it is shorter. Messages collected into one
   * run keep the first one's limit; a steered message does not change the active run's.
   * Kept with the message in the durable queue, so a replay runs under it too.
   */
  timeoutMs?: number;
  /** Overrides the agent's model for this run (`provider/model`). */
  model?: string;
  thinking?: ThinkingLevel;
  /**
   * The answer must be JSON conforming to this schema (a zod schema, or `{ schema, name,
   * description, strict, retries }` with a zod schema or a JSON Schema of an object). The
   * schema goes to the provider as the request's response format (constrained decoding
   * where it has it); the model may still call tools first. The final answer is validated;
   * one that does not conform is answered with what is wrong and the model asked again
   * (`retries`, default 1), and the run fails with `OUTPUT_INVALID` after the last try, or
   * `OUTPUT_REFUSED` when the model refuses. The value is `RunResult.output`, parsed by the
   * zod schema on the caller's handle (transforms and defaults applied). Messages collected
   * into one run keep the first one's; the agent's `output` applies when a message has none.
   * Kept with the message in the durable queue (as JSON Schema), so a replay asks for it too.
   */
  output?: OutputOption;
  /**
   * Whether the message runs again after its process goes (a crash, a forced exit, a stop)
   * before its run ended. Default true: an unfinished message is replayed at the next start.
   * False for a message whose answer only its caller reads, while it waits (a stateless HTTP
   * request): after the process that accepted it went, nobody follows its run, so it is not
   * run again but ended unrun, as `aborted`, and taken off the durable queue (a message sent
   * without an idempotency key leaves no dedupe record). A crash of just its session, while
   * its caller still follows it in this process, replays it like any other message. Kept with the
   * message in the durable queue.
   */
  replayAfterRestart?: boolean;
  /**
   * The W3C Trace Context `traceparent` of the caller's span
   * (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`), to trace the run as part of the
   * caller's trace: it is on the run's `beamclaw:session.run` trace context
   * (`SessionRunTrace.traceparent`), and `@beamclaw/core/otel` makes the run's span a child of
   * that span, in this process or on the cluster node that runs the session. Messages
   * collected into one run keep the first one's. Kept with the message in the durable queue,
   * so a replay joins the same trace. A `spawn_subagent` call sends its own span's with the
   * sub-agent's task. Not one {@link parseTraceparent} accepts: `InvalidArgumentError`.
   */
  traceparent?: string;
  /**
   * The W3C Trace Context `tracestate` that came with {@link SendOptions.traceparent} (vendors'
   * `key=value` entries): the run's remote parent span carries it, and it is kept and sent on
   * with the traceparent. Only with a traceparent; not one {@link parseTracestate} accepts:
   * `InvalidArgumentError`.
   */
  tracestate?: string;
  /**
   * Whether the session exists only for this message, as a stateless HTTP request's fresh
   * session does (its caller deletes the session once it has read the answer). Only with
   * `replayAfterRestart: false`. When a later start ends the message unrun (its process went
   * before its run ended), the session is deleted with it (its record, its transcript and
   * its remembered approvals) instead of being kept with an `aborted` message, provided
   * nothing else of it is waiting: a message sent to it without this option keeps it. Default
   * false. Kept with the message in the durable queue.
   */
  ephemeralSession?: boolean;
}

/** Options of `SessionHandle.delete`. */
export interface SessionDeleteOptions {
  /**
   * Keep the transcript rather than delete it: it is moved to the key
   * `<session key>:deleted:<epoch ms>` (read it with `store.transcripts.read`, or open a
   * session on that key to take the conversation up again). A new session under the
   * deleted key starts empty either way. Default false.
   */
  archiveTranscript?: boolean;
}

/** What `SessionHandle.delete` did. */
export interface SessionDeleteResult {
  /**
   * Whether there was anything of the session to delete: its record, its transcript or a
   * message waiting in the queue.
   */
  existed: boolean;
  /** The key its transcript was moved to (`archiveTranscript`), when it had one. */
  archivedAs?: string;
}

/** Options of `SessionHandle.rewind`. */
export interface RewindOptions {
  /** How many of the session's last runs to undo. Default 1. */
  runs?: number;
  /** Undo this run and every run after it (instead of `runs`). */
  runId?: string;
  /**
   * Deduplicates retries, as `send`'s option of that name does: a call with a key this
   * session saw before (within the store's `dedupeWindowMs`, how long `send`'s keys are
   * remembered) applies nothing again and resolves with the first call's result, also when
   * the first call failed after the store had saved it (its reply was lost). The key belongs
   * to the session and to one operation: used for another one (an `inject` key for a
   * `rewind`) it is refused with `InvalidArgumentError`.
   */
  idempotencyKey?: string;
}

/** Options of `SessionHandle.fork`. */
export interface ForkOptions {
  /** The run whose user message the fork starts before: the fork has everything earlier. */
  runId: string;
  /** The new session's key. Default `agent:<agentId>:fork:<uuid>`. It must not exist. */
  key?: string;
}

/** What `SessionHandle.fork` made. */
export interface ForkResult {
  /** The new session's key. */
  key: string;
  /** The user message of `runId`, as `send` takes it: send it (edited) to the new session. */
  input: UserMessageInput;
  /** How many messages the new session starts with. */
  copiedMessages: number;
}

/** What `SessionHandle.rewind` undid. */
export interface RewindResult {
  /** The runs undone, oldest first. */
  runIds: string[];
  /**
   * The user messages of those runs, oldest first, as `send` takes them: send the first
   * again to regenerate an answer, or an edited one to take the conversation another way.
   * (A message's `sender` is not kept in the transcript.)
   */
  inputs: UserMessageInput[];
  /** How many messages left the history (user messages, answers, tool calls and results). */
  removedMessages: number;
}

/** Options of `SessionHandle.inject`. */
export interface InjectOptions {
  /**
   * A short label written before the text, as `[label]` and a blank line (as OpenClaw's
   * `chat.inject` writes it): who or what the note is from. At most 100 characters, one line.
   */
  label?: string;
  /**
   * Deduplicates retries, as `send`'s option of that name does: a call with a key this
   * session saw before (within the store's `dedupeWindowMs`, how long `send`'s keys are
   * remembered) applies nothing again and resolves with the first call's result, also when
   * the first call failed after the store had saved it (its reply was lost). The key belongs
   * to the session and to one operation: used for another one (an `inject` key for a
   * `rewind`) it is refused with `InvalidArgumentError`.
   */
  idempotencyKey?: string;
}

/** What `SessionHandle.inject` added. */
export interface InjectResult {
  /**
   * The id it is saved under in the transcript, `inject:<uuid>`, as a run's messages are
   * (`rewind` can undo it like a run; `fork` copies it).
   */
  runId: string;
  /** Its transcript entry's `seq`. */
  seq: number;
  /** When it was saved (ms since the epoch, the runtime's clock). */
  at: number;
  /** The assistant message as saved: one text part, the label first. */
  message: ModelMessage;
}

/**
 * The PubSub topic on which a runtime announces every message added by
 * `SessionHandle.inject` (by the host, a channel's delivery mirror, the gateway's
 * `chat.inject`), as an {@link InjectedMessageEvent}: not a run, so not on `session:<key>` or
 * `events:global`, whose listeners follow runs.
 */
export const INJECTED_MESSAGES_TOPIC = "sessions:injected";

/** A message added by `SessionHandle.inject`, as {@link INJECTED_MESSAGES_TOPIC} carries it. */
export interface InjectedMessageEvent extends InjectResult {
  type: "message-injected";
  sessionKey: string;
}

/** How a run ended. */
export type RunStatus = "completed" | "aborted" | "failed" | "max-steps";

/** The final assistant message of a run. `TOutput`: the type of its structured `output`. */
export interface RunResult<TOutput = JsonValue> {
  runId: string;
  sessionKey: string;
  status: RunStatus;
  /** The text of the final answer (all text parts joined). */
  text: string;
  /** Every message the run added to the history (assistant turns and tool results). */
  messages: ModelMessage[];
  steps: number;
  /**
   * Tokens of every model call the run made, failed attempts included (a provider that
   * failed after reporting usage, before the chain fell back).
   */
  usage: ModelUsage;
  /** The cost in US dollars of those calls, each priced on the `provider/model` it went to. */
  costUsd: number;
  /**
   * The structured answer, when the run asked for one (`SendOptions.output`, the agent's
   * `output`) and completed: the JSON the model wrote, accepted by the schema; on the
   * handle of the caller who gave a zod schema, that schema's parse of it.
   */
  output?: TOutput;
  /**
   * Set when status is `failed`, and when the run was aborted because it went past its time
   * limit (`code` `RUN_TIMEOUT`).
   */
  error?: { code: string; message: string };
  /**
   * Why the run's last model call ended, as its provider said (absent when no call finished):
   * `stop` for a whole answer; `length` when the answer was cut at the output token limit,
   * `content-filter` or `refusal` when the provider withheld it — a `completed` run whose
   * answer is cut short or empty says so here; `tool-calls` for a run that ended at
   * `max-steps`.
   */
  finishReason?: FinishReason;
  /**
   * Where a session saved the run's last assistant message: its transcript entry's `seq` and
   * `at`, so that a reader can name the message without reading the transcript back (the
   * gateway's message ids are made of them). Absent when no assistant message was saved.
   */
  finalMessage?: { seq: number; at: number };
}

interface RunEventBase {
  runId: string;
  sessionKey: string;
}

/** The events of a run, in order: `run-start` first, `run-end` last. */
export type RunEvent =
  | (RunEventBase & { type: "run-start"; agentId: string; at: number; input: UserMessageInput[] })
  | (RunEventBase & { type: "text-delta"; text: string })
  | (RunEventBase & { type: "thinking-delta"; text: string })
  /**
   * Discard the text received so far of the current answer: a provider attempt failed after
   * streaming output and the chain fell back (the next attempt streams it anew), or a
   * structured answer did not conform to its schema and the model is asked again, or the
   * run's messages could not be saved (an `error` event `SAVE_FAILED` first), or its session
   * crashed while it ran (an `error` event `SESSION_CRASHED` first), and the run runs again,
   * streaming its answer anew (with no second `run-start`: it is the same run).
   */
  | (RunEventBase & { type: "text-reset"; reason: string })
  | (RunEventBase & { type: "tool-call"; toolCallId: string; toolName: string; input: JsonValue })
  | (RunEventBase & {
      type: "tool-approval-request";
      requestId: string;
      toolCallId: string;
      toolName: string;
      input: JsonValue;
      /** What the decision binds to (the tool, or an exec command's canonical form). */
      key: string;
      /** A human-readable form of `key`, e.g. the exact command that will run. */
      display: string;
      /** Epoch ms after which the default decision applies. */
      expiresAt: number;
    })
  | (RunEventBase & {
      type: "tool-result";
      toolCallId: string;
      toolName: string;
      output: JsonValue;
      isError: boolean;
      /** The images of the result (see `ToolResultPart.images`), if it carries images. */
      images?: ImagePart[];
    })
  | (RunEventBase & { type: "steer"; input: UserMessageInput })
  /**
   * One model call's usage, priced on the `provider/model` that made it: the answering call
   * of each step, and any attempt that failed after reporting usage (its tokens were spent
   * even though another ref answered).
   */
  | (RunEventBase & {
      type: "usage";
      provider: string;
      model: string;
      usage: ModelUsage;
      costUsd: number;
    })
  | (RunEventBase & { type: "error"; error: { code: string; message: string } })
  | (RunEventBase & { type: "run-end"; result: RunResult });

/** Context passed to a tool while it runs. */
export interface ToolContext {
  signal: AbortSignal;
  sessionKey: string;
  agentId: string;
  runId: string;
  toolCallId: string;
  /** Publishes an event of the run (approval requests, progress). */
  emit(event: RunEvent): void;
}

/** What the agent loop needs from the tool layer. */
export interface ToolRunner {
  /** The tools the given agent may call in this session, as sent to the model. */
  definitions(agent: AgentDefinition, sessionKey: string): ModelToolDefinition[];
  /**
   * Runs one tool call. Never throws for a tool's own failure: returns `isError: true` with a
   * message the model can read. Throws only when the run is aborted. `images`: the result's
   * images for the model (see `ToolResultPart.images`), already checked.
   */
  execute(
    call: ToolCallPart,
    context: ToolContext,
  ): Promise<{ output: JsonValue; isError: boolean; images?: ImagePart[] }>;
}

/** A session's metadata as the session layer keeps it (stored as a `SessionRecord`). */
/** Options of `AgentDefinition.autoCompact`. */
export interface AutoCompactOptions {
  /** Compact once the history's estimated tokens reach this. */
  thresholdTokens?: number;
  /** The most recent turns kept word for word. Default 2. */
  keepTurns?: number;
}

export interface SessionMetadata extends JsonObject {
  key: string;
  agentId: string;
  createdAt: number;
  updatedAt: number;
  displayName?: string;
  channel?: string;
  thinkingLevel?: ThinkingLevel;
  verboseLevel?: "off" | "on" | "full";
  /** `provider/model` that replaces the agent's model for this session. */
  modelOverride?: string;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  costUsd: number;
  runs: number;
  lastRunAt?: number;
  /** How many times the history was compacted (see `SessionHandle.compact`). */
  compactions?: number;
  /**
   * The run ids of the latest compactions counted in `compactions` (the newest 16), saved
   * with the count so that a retry that finds one of them saved does not count it again.
   */
  countedCompactions?: string[];
  /** The parent of a sub-agent session. */
  parentKey?: string;
  /**
   * The run of the parent whose `spawn_subagent` call made this sub-agent session: its runs'
   * telemetry names it (`SessionRunTrace.parentRunId`), so traces can join them.
   */
  parentRunId?: string;
  /**
   * The W3C Trace Context `traceparent` of the `spawn_subagent` call's span that made this
   * sub-agent session, when a tracer gave the call one (`ToolRunTrace.traceparent`): its runs'
   * telemetry carries it (`SessionRunTrace.parentTraceparent`), so a later run, on whichever
   * cluster node, can be linked to the spawn.
   */
  parentTraceparent?: string;
  /** The session a fork was branched from (see `SessionHandle.fork`). */
  forkedFrom?: string;
  /**
   * Sub-agents this session has spawned (checked against `SubagentLimits.maxChildren`). Each
   * spawn is recorded in the store as it is made, so the count survives a crash of the
   * session and a restart; a run that replays fills its first attempt's places again, so a
   * replayed spawn is not counted twice. A reset starts it again at 0.
   */
  subagentsSpawned?: number;
  /**
   * What the sub-agents this session spawned used, at any depth (their own sub-agents
   * included): absent until one has run. The session's own counters (`inputTokens`,
   * `costUsd`...) and its `SessionHandle.usage()` count only its own model calls, and each
   * sub-agent's session counts its own, so summing sessions never counts a call twice (nor do
   * the runtime's per-agent meters, which count each call once, under the agent that made
   * it); a session's whole cost is `costUsd + (subagentUsage?.costUsd ?? 0)`. Saved with the
   * session's counters when its run ends; cleared by a reset.
   */
  subagentUsage?: SubagentUsage;
  /**
   * What the session learned of its model's context window: `model` (`provider/model`)
   * refused a request as too long, so requests to it are cut to about `maxTokens`. Kept so
   * that a revived session, or one on another node, does not meet the same refusal again.
   */
  contextLimit?: { model: string; maxTokens: number };
}

/** What a session's sub-agents used (see `SessionMetadata.subagentUsage`). */
export interface SubagentUsage extends JsonObject {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  costUsd: number;
  /** Sub-agent runs counted (a run that failed or was aborted counts what it used). */
  runs: number;
}

/** A typed error as it travels in events. */
export function errorInfo(error: unknown): { code: string; message: string } {
  const e = error as Partial<BeamClawError> | undefined;
  return {
    code: typeof e?.code === "string" ? e.code : "INTERNAL",
    message: error instanceof Error ? error.message : String(error),
  };
}

/**
 * A message set aside instead of run again (see `AgentRuntimeOptions.quarantineAfterCrashes`): kept in
 * the store's key/value space until it is released or dropped, so nothing accepted is lost.
 */
export interface QuarantinedMessage {
  /** Its id in the durable queue. */
  id: string;
  sessionKey: string;
  idempotencyKey: string;
  /** As it was queued: `{ input, options, runId }` for a message sent through a session. */
  payload: JsonObject;
  /** Epoch ms. */
  enqueuedAt: number;
  /** How many times a starting session had picked it up from the queue. */
  deliveries: number;
  /** How many times its session crashed while running it (0 for a payload that cannot run). */
  crashes: number;
  /** Epoch ms. */
  quarantinedAt: number;
  /** Why it was set aside. */
  reason: string;
}
