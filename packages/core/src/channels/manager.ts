/**
 * The channel host: wires channel plugins to an `AgentRuntime` and does, once for every
 * channel, what a channel author should not have to write.
 */
import {
  AlreadyStartedError,
  ChannelNotFoundError,
  ChannelSendError,
  ChildNotFoundError,
  InvalidArgumentError,
  NoProcessError,
  NotSupportedError,
  PairingCodeError,
  TimeoutError,
} from "../errors.js";
import { sleep } from "../providers/backoff.js";
import {
  baseMediaType,
  decodeTextFile,
  detectBase64MediaType,
  isTextMediaType,
  MODEL_IMAGE_TYPES,
  textAttachmentBlock,
  transcriptLine,
} from "../providers/media.js";
import type { JsonValue, Transcriber } from "../providers/types.js";
import type { ExitReason } from "../runtime/exit.js";
import { MAX_TIMER_DELAY_MS } from "../runtime/timers.js";
import { optionalNumber } from "../runtime/validate.js";
import type { RunHandle } from "../sessions/run-handle.js";
import type { AgentRuntime } from "../sessions/runtime.js";
import { normalizeAgentId } from "../sessions/session-key.js";
import {
  errorInfo,
  type QueueMode,
  type RunEvent,
  type UserMessageInput,
} from "../sessions/types.js";
import { emitTelemetry } from "../telemetry.js";
import { APPROVALS_SCOPE } from "../tools/approval.js";
import {
  ChannelActor,
  type ChannelHooks,
  type ChannelLink,
  type ChannelState,
  ChannelSupervisor,
  type ReconnectOptions,
} from "./channel-supervisor.js";
import { chunkText } from "./chunk.js";
import { Debouncer } from "./debounce.js";
import {
  type ChannelLogoutOutcome,
  DEFAULT_CHANNEL_ACCOUNT,
  lifecycleGatewayMethods,
} from "./lifecycle-methods.js";
import {
  ChannelOutbox,
  type OutboxEntry,
  type OutboxPart,
  type OutboxRetryOptions,
} from "./outbox.js";
import {
  type ApprovedPeer,
  type PairingAnswerOptions,
  type PairingRequest,
  PairingStore,
} from "./pairing.js";
import { pairingGatewayMethods } from "./pairing-methods.js";
import {
  type AccessDecision,
  type AccessPolicy,
  decideAccess,
  isOperator,
  validateAccessPolicy,
} from "./policy.js";
import { runSessionCommand } from "./session-commands.js";
import { DM_SCOPES, type DmScope, encodeKeySegment, resolveSessionKey } from "./session-routing.js";
import {
  type ChannelCommand,
  type ChannelTexts,
  defaultChannelTexts,
  parseChannelCommand,
  parseSessionCommand,
  type SessionCommand,
} from "./texts.js";
import type {
  ChannelContext,
  ChannelGatewayMethod,
  ChannelLogger,
  ChannelLogoutResult,
  ChannelPlugin,
  ChannelSendProgress,
  ChannelStateStore,
  ChannelTarget,
  InboundAttachment,
  InboundMessage,
  InboundMessageInput,
  OutboundMedia,
  ReceiveResult,
} from "./types.js";
import { assertChannelPlugin, normalizeInbound } from "./validate.js";

/**
 * How one channel routes and guards its messages. Every field has a default. The timers'
 * periods (`debounceMs`, `typingIntervalMs`, `streamThrottleMs`) are at most 2,147,483,647 ms.
 */
export interface ChannelSettings extends AccessPolicy {
  /** The agent that answers on this channel. Default: the runtime's first agent. */
  agentId?: string;
  /** How DMs map to sessions. Default `main`. */
  dmScope?: DmScope;
  /**
   * Merge a sender's messages that arrive within this many ms of each other into one (a
   * burst waits at most 4× this). Default 0: off.
   */
  debounceMs?: number;
  /** How long a platform message id is remembered for duplicate suppression. Default 24 h. */
  dedupeTtlMs?: number;
  /** How often the typing indicator is repeated while a run streams. Default 4000. */
  typingIntervalMs?: number;
  /** Queue mode of messages that arrive while the session's run is active. Default: the runtime's. */
  queueMode?: QueueMode;
  /**
   * How a reply appears while the agent writes it. `off` (default): in one message (or
   * chunks) when the run ends. `edit`: a first message as soon as text arrives, edited as
   * more arrives — at most once per `streamThrottleMs`, later when the platform asks to wait —
   * with the final edit carrying exactly the final text (through the durable outbox); text
   * beyond `maxMessageLength` continues in further messages. Needs the `edits` capability.
   */
  streaming?: "off" | "edit";
  /**
   * The least time between two updates of a streamed reply, ms. Default 1000 (Discord allows
   * 5 edits per 5 s per channel; Telegram about one message per second per chat).
   */
  streamThrottleMs?: number;
  /**
   * Who may use the session commands (`/new` or `/reset`, `/stop`, `/status`, `/think`) on
   * their conversation: `all` (default) who may talk to the agent, `operators` only the
   * channel's operators, `off` nobody (the words go to the agent as text). In a group, the
   * conversation is the group's.
   */
  sessionCommands?: "all" | "operators" | "off";
}

/** A channel to run: the plugin, its settings section, and how it routes. */
export interface ChannelEntry<TConfig = unknown> extends ChannelSettings {
  plugin: ChannelPlugin<TConfig>;
  /** Passed to the plugin as `ctx.config`. Default `{}`. */
  config?: TConfig;
}

/**
 * Options of {@link ChannelManager}. Its time limits (`startTimeoutMs`, `transcribeTimeoutMs`,
 * `reconnect`'s) are at most 2,147,483,647 ms, a timer's limit (`InvalidArgumentError` above).
 */
export interface ChannelManagerOptions {
  /** The runtime whose sessions answer. It must be started before the manager. */
  runtime: AgentRuntime;
  channels: ReadonlyArray<ChannelEntry<never> | ChannelEntry>;
  /** Default: silent. `console` works. */
  logger?: ChannelLogger;
  /** Replacements for the host's own chat texts. */
  texts?: Partial<ChannelTexts>;
  reconnect?: ReconnectOptions;
  /** Retries of outbound messages. */
  outbox?: OutboxRetryOptions;
  /**
   * Pairing codes: validity (default one hour) and pending requests per channel account
   * (default 3).
   */
  pairing?: { ttlMs?: number; maxPending?: number };
  /** How long `start()` waits for each channel's first connection attempt. Default 30 000. */
  startTimeoutMs?: number;
  /**
   * Transcribes voice notes and other audio the channels deliver inline (`data`; Telegram,
   * Slack and Discord download audio up to their `inlineAudioMaxBytes`), so that the agent
   * reads what was said: the message gets `[audio: <name>, transcribed]` and the words. A
   * transcription that fails or takes longer than `transcribeTimeoutMs` leaves the audio
   * named, with a warning. Default: none (audio is named only).
   */
  transcriber?: Transcriber;
  /** Time limit of one transcription, ms. Default 60 000. */
  transcribeTimeoutMs?: number;
  now?: () => number;
  random?: () => number;
}

/** A channel's state, for dashboards and health checks. */
export interface ChannelStatus {
  channel: string;
  label: string;
  state: ChannelState;
  /** Consecutive failed attempts. */
  attempts: number;
  /** Epoch ms of the current connection. */
  connectedAt?: number;
  lastError?: { code: string; message: string };
  /** Epoch ms of the channel's last start (by `start()`, `add`, `replace`, `startChannel`). */
  lastStartAt?: number;
  /** Epoch ms of the channel's last stop (by `stop()`, `replace`, `stopChannel`, `logoutChannel`). */
  lastStopAt?: number;
}

/** Something to send through a channel's outbox. */
export interface OutboundMessage {
  text?: string;
  media?: OutboundMedia;
  replyToMessageId?: string;
}

/** Options of {@link ChannelManager.deliver}. */
export interface DeliverOptions {
  /**
   * Also add the message's text to the conversation of the chat it goes to (OpenClaw's
   * "delivery mirror"), so that when someone answers there, the agent knows what they are
   * answering: once the message is in the outbox, its text is injected (`session.inject`, no
   * label: it is what the assistant said in that chat) into the session that chat's messages
   * go to. That session is the one the chat's last accepted message went to (the manager
   * remembers it, see `ChannelManager.sessionOf`); a chat that never wrote to the bot has no
   * session yet, and nothing is injected. Neither is a message without text (media only).
   *
   * The injection never fails `deliver` nor makes it wait: it runs in the background (a
   * session whose run is active gets the note after the run), and a failure is logged. Once
   * the manager stops, it no longer waits for an injection still waiting for a run: that one
   * is the session's by then, which saves it after the run or drops it when the runtime stops.
   * Default false.
   */
  mirror?: boolean;
  /**
   * The session that wrote the message, when one did (a reply delivered elsewhere). With
   * `mirror`, nothing is injected when the chat's messages go to this very session: it has
   * the message already, as its own answer.
   */
  sourceSessionKey?: string;
}

/** A message's fate: decided now, or after its debounce window. */
type Admission = { result: ReceiveResult } | { later: Promise<ReceiveResult> };

/** What a message's sender, chat and command make of it (see `#assess`). */
type Verdict =
  /** A channel command from an operator: the host answers it. */
  | { kind: "command"; command: ChannelCommand }
  /** Turned away by DM or group policy (or asked to pair). */
  | { kind: "refused"; decision: Extract<AccessDecision, { allow: false }> }
  /** A session command (`/new`, `/status`, ...): the host carries it out. */
  | { kind: "session-command"; sessionKey: string; command: SessionCommand }
  /** For the agent: to its session (unless it is empty). */
  | { kind: "session"; sessionKey: string };

interface ResolvedSettings extends AccessPolicy {
  agentId: string;
  dmScope: DmScope;
  debounceMs: number;
  dedupeTtlMs: number;
  typingIntervalMs: number;
  queueMode: QueueMode | undefined;
  streaming: "off" | "edit";
  streamThrottleMs: number;
  sessionCommands: "all" | "operators" | "off";
}

interface Channel {
  /** Replaced (with the plugin) by `replace()`. */
  link: ChannelLink;
  settings: ResolvedSettings;
  readonly outbox: ChannelOutbox;
  /** Bursts waiting for their debounce window (when `debounceMs` > 0). */
  debouncer: Debouncer<InboundMessage, ReceiveResult> | null;
  /** Resolved after the first connection attempt of a start. */
  firstAttempt: { promise: Promise<void>; resolve: () => void };
  /**
   * Stopped by an operator (`stopChannel`, `logoutChannel`): not started again — by `start()`,
   * `replace` or the supervisor — until `startChannel`.
   */
  held: boolean;
  lastStartAt: number | undefined;
  lastStopAt: number | undefined;
  /** The tail of the channel's lifecycle changes, which run one at a time. */
  lifecycle: Promise<unknown>;
}

interface Follower {
  readonly channel: Channel;
  readonly runId: string;
  readonly entryId: string;
  readonly target: ChannelTarget;
  readonly replyToMessageId: string | undefined;
  readonly controller: AbortController;
  typing: NodeJS.Timeout | undefined;
  /** The reply shown while it streams (`streaming: "edit"`). */
  stream: StreamedReply | undefined;
}

/** A reply shown while the run writes it: preview messages edited as text arrives. */
interface StreamedReply {
  /** The text so far. */
  text: string;
  /** The messages posted for it, in order, and the text each shows now. */
  previews: Array<{ messageId: string; text: string }>;
  timer: NodeJS.Timeout | undefined;
  flushing: Promise<void> | undefined;
  /** No update before this (the throttle, or the platform's retry-after). Epoch ms. */
  notBefore: number;
  /** The run ended: no more updates; the outbox sends the final text. */
  closed: boolean;
}

interface Prompt {
  channel: string;
  runId: string;
  target: ChannelTarget;
  text: string;
  messageId: string | undefined;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** How long the session of a chat is remembered after its last message (for `mirror`). */
const CHAT_SESSION_TTL_MS = 90 * DAY_MS;
/** A chat's session is written again, for the same session, at most this often. */
const CHAT_SESSION_REFRESH_MS = DAY_MS;
/** Chats whose last written session is remembered in memory, to skip rewriting it. */
const CHAT_SESSION_CACHE_SIZE = 10_000;
const QUEUE_MODES: readonly QueueMode[] = ["steer", "followup", "collect", "interrupt"];

const silentLogger: ChannelLogger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** An async iterable fed by `push`, ended by `close`. */
class EventQueue<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #wake: (() => void) | null = null;
  #closed = false;
  push(item: T): void {
    if (this.#closed) return;
    this.#items.push(item);
    this.#wake?.();
  }
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      const item = this.#items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.#closed) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = null;
    }
  }
}

/** Iterates `source` until it ends or `signal` aborts (then it stops waiting at once). */
async function* untilAborted<T>(
  source: AsyncIterable<T>,
  signal: AbortSignal,
): AsyncGenerator<T, void, undefined> {
  const iterator = source[Symbol.asyncIterator]();
  const aborted = new Promise<{ done: true; value: undefined }>((resolve) => {
    if (signal.aborted) resolve({ done: true, value: undefined });
    else
      signal.addEventListener("abort", () => resolve({ done: true, value: undefined }), {
        once: true,
      });
  });
  for (;;) {
    const next = await Promise.race([iterator.next(), aborted]);
    if (next.done) return;
    yield next.value;
  }
}

/** Waits for `promise` (and rethrows its error) until `signal` aborts, then no longer. */
async function settledUnlessAborted(promise: Promise<unknown>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  let onAbort!: () => void;
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve;
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** The final answer of a finished run, read from the transcript. */
async function finalTextOf(
  runtime: AgentRuntime,
  sessionKey: string,
  runId: string,
): Promise<string | undefined> {
  let beforeSeq: number | undefined;
  for (let page = 0; page < 5; page++) {
    const records = await runtime.store.transcripts.read(sessionKey, {
      order: "desc",
      limit: 200,
      ...(beforeSeq === undefined ? {} : { beforeSeq }),
    });
    for (const { entry } of records) {
      const message = entry.message as { role?: string; content?: unknown } | undefined;
      if (
        entry.runId !== runId ||
        message?.role !== "assistant" ||
        !Array.isArray(message.content)
      ) {
        continue;
      }
      return message.content
        .filter((p: { type?: string }) => p.type === "text")
        .map((p: { text?: string }) => p.text ?? "")
        .join("");
    }
    if (records.length < 200) return undefined;
    beforeSeq = records.at(-1)!.seq;
  }
  return undefined;
}

/**
 * Runs channel plugins against an {@link AgentRuntime}: one supervised, reconnecting actor per
 * channel, and — the same for every channel — session-key resolution (`dmScope`, groups,
 * threads), DM policy with pairing codes, group policy with mention gating, duplicate
 * suppression by platform message id, debounce of bursts, typing indicators while a run
 * streams, approval prompts answered with `/approve` and `/deny`, chunking at the platform's
 * limit, and replies through a durable outbox.
 *
 * Every accepted message goes through the session's durable inbound queue (idempotency key
 * `<channel>:<account>:<message id>`), and its reply through the outbox: stop the process in
 * the middle of a run or of a long reply, start it again, and the reply arrives, once.
 *
 * @example
 * ```ts
 * const runtime = new AgentRuntime({ store, models, agents: [{ id: "main", model: "anthropic/claude-sonnet-4-5" }] });
 * await runtime.start();
 * const channels = new ChannelManager({
 *   runtime,
 *   channels: [{ plugin: createWebhookChannel({ secret, callbackUrl }), dmPolicy: "open" }],
 * });
 * await channels.start();
 * // ...
 * await channels.stop();
 * await runtime.stop();
 * ```
 */
export class ChannelManager {
  readonly runtime: AgentRuntime;
  /** Pending pairing requests and approved senders. */
  readonly pairing: PairingStore;
  readonly #channels = new Map<string, Channel>();
  readonly #logger: ChannelLogger;
  readonly #texts: ChannelTexts;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #reconnect: ReconnectOptions;
  readonly #startTimeoutMs: number;
  readonly #transcriber: Transcriber | undefined;
  readonly #transcribeTimeoutMs: number;
  /** Channels told once that their audio comes without data (no inline audio download). */
  readonly #audioHinted = new Set<string>();
  readonly #outboxOptions: OutboxRetryOptions;
  #state: "new" | "running" | "stopping" | "stopped" = "new";
  #supervisor: ChannelSupervisor | null = null;
  readonly #chains = new Map<string, Promise<unknown>>();
  readonly #followers = new Set<Follower>();
  /** Runs a follower of this manager already delivers the reply of, by run id. */
  readonly #followedRuns = new Set<string>();
  readonly #prompts = new Map<string, Prompt>();
  readonly #background = new Set<Promise<unknown>>();
  /** Aborted by `stop()`: mirrors stop waiting for their injection. */
  readonly #stopping = new AbortController();
  /**
   * The session last written for a chat (its `channels:chat-session:` key) and when, most
   * recently written last: a busy chat does not write its session on every message.
   */
  readonly #chatSessions = new Map<string, { sessionKey: string; writtenAt: number }>();

  constructor(options: ChannelManagerOptions) {
    if (typeof options?.runtime?.session !== "function") {
      throw new InvalidArgumentError("ChannelManager needs a runtime (an AgentRuntime)");
    }
    if (!Array.isArray(options.channels)) {
      throw new InvalidArgumentError("ChannelManager: channels must be an array");
    }
    this.runtime = options.runtime;
    this.#logger = options.logger ?? silentLogger;
    this.#texts = { ...defaultChannelTexts, ...options.texts };
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#reconnect = options.reconnect ?? {};
    // Timers' delays: Node fires a longer one at once.
    for (const name of ["baseDelayMs", "maxDelayMs", "stopTimeoutMs"] as const) {
      optionalNumber(this.#reconnect[name], `ChannelManager: reconnect.${name}`, {
        min: 0,
        max: MAX_TIMER_DELAY_MS,
      });
    }
    optionalNumber(options.startTimeoutMs, "ChannelManager: startTimeoutMs", {
      min: "positive",
      max: MAX_TIMER_DELAY_MS,
    });
    this.#startTimeoutMs = options.startTimeoutMs ?? 30_000;
    if (
      options.transcriber !== undefined &&
      (typeof options.transcriber !== "object" ||
        options.transcriber === null ||
        typeof options.transcriber.transcribe !== "function")
    ) {
      throw new InvalidArgumentError(
        "ChannelManager: transcriber must be a Transcriber (an object with transcribe(input))",
      );
    }
    this.#transcriber = options.transcriber;
    const transcribeTimeoutMs = options.transcribeTimeoutMs ?? 60_000;
    if (
      !(transcribeTimeoutMs > 0) ||
      !Number.isSafeInteger(transcribeTimeoutMs) ||
      transcribeTimeoutMs > MAX_TIMER_DELAY_MS
    ) {
      throw new InvalidArgumentError(
        `ChannelManager: transcribeTimeoutMs must be a whole number of ms from 1 to ${MAX_TIMER_DELAY_MS}, got ${String(transcribeTimeoutMs)}`,
      );
    }
    this.#transcribeTimeoutMs = transcribeTimeoutMs;
    this.#outboxOptions = options.outbox ?? {};
    for (const entry of options.channels as ChannelEntry[]) {
      const channel = this.#create(entry);
      this.#channels.set(channel.link.plugin.id, channel);
    }
    this.pairing = new PairingStore({
      kv: this.runtime.store.kv,
      ...options.pairing,
      now: this.#now,
    });
  }

  /** The channel ids, in the order given. */
  get channelIds(): string[] {
    return [...this.#channels.keys()];
  }

  /** The supervisor of the channel actors while running (for introspection). */
  get supervisor(): ChannelSupervisor | undefined {
    return this.#supervisor ?? undefined;
  }

  /**
   * Starts every channel under the `ChannelSupervisor` and waits (up to `startTimeoutMs`)
   * for each one's first connection attempt; a channel that could not connect keeps trying
   * in the background. Then picks up replies left unfinished by the last stop. A channel
   * stopped with `stopChannel` before the start is left stopped.
   *
   * @throws AlreadyStartedError when called twice.
   */
  async start(): Promise<void> {
    if (this.#state !== "new")
      throw new AlreadyStartedError("the channel manager was already started");
    this.#state = "running";
    const supervisor = new ChannelSupervisor();
    this.#supervisor = supervisor;
    await supervisor.start();
    supervisor.monitor((reason) => this.#supervisorExited(reason));
    const started: Channel[] = [];
    for (const channel of [...this.#channels.values()]) {
      await this.#lifecycle(channel, async () => {
        // One an operator stopped before the start stays stopped.
        if (channel.held) return;
        await this.#startChannel(channel, false);
        started.push(channel);
      });
    }
    await this.#firstAttempts(started);
    for (const channel of started) {
      if (!channel.held) await this.#resumeReplies(channel);
    }
  }

  /**
   * Adds a channel. On a running manager it is started at once (and `add` waits, up to
   * `startTimeoutMs`, for its first connection attempt); otherwise with `start()`.
   *
   * @throws InvalidArgumentError for a taken id or bad settings (nothing changes).
   */
  async add<TConfig>(entry: ChannelEntry<TConfig>): Promise<void> {
    this.#assertChangeable("add");
    const channel = this.#create(entry as ChannelEntry);
    this.#channels.set(channel.link.plugin.id, channel);
    if (this.#state !== "running") return;
    await this.#startChannel(channel, true);
    await this.#resumeReplies(channel);
  }

  /**
   * Stops a channel and removes it. Bursts in its debounce are handed on first; what its
   * outbox has not delivered stays in the store, and goes out when a channel with the same
   * id is added again.
   *
   * @throws ChannelNotFoundError
   */
  async remove(channelId: string): Promise<void> {
    this.#assertChangeable("remove");
    const channel = this.#channel(channelId);
    await this.#lifecycle(channel, async () => {
      this.#assertCurrent(channel, "remove");
      await channel.debouncer?.flushAll();
      for (const follower of this.#followers) {
        if (follower.channel === channel) this.#stopTyping(follower);
      }
      await this.#stopChannel(channel);
      await channel.outbox.stop();
      this.#channels.delete(channelId);
    });
  }

  /**
   * Replaces a channel's plugin, settings section and routing with those of `entry` (same
   * channel id) and restarts that channel only: the old plugin is stopped, the new one
   * started. The channel's outbox, pending pairing requests and replies of runs in progress
   * carry over (they go out through the new plugin). A channel stopped with `stopChannel`
   * takes the new plugin and settings and stays stopped until `startChannel`.
   *
   * @throws ChannelNotFoundError when no channel has the entry's id; InvalidArgumentError for
   *   bad settings (the running channel stays as it is).
   */
  async replace<TConfig>(entry: ChannelEntry<TConfig>): Promise<void> {
    this.#assertChangeable("replace");
    assertChannelPlugin(entry?.plugin);
    const channel = this.#channel(entry.plugin.id);
    const settings = this.#resolve(
      entry as ChannelEntry,
      new Set(this.runtime.agents.map((a) => a.id)),
    );
    await this.#lifecycle(channel, async () => {
      this.#assertCurrent(channel, "replace");
      const running = this.#state === "running" && !channel.held;
      if (running) await this.#stopChannel(channel);
      await channel.debouncer?.flushAll();
      channel.link = newLink(entry as ChannelEntry);
      channel.settings = settings;
      channel.debouncer = this.#debouncer(channel);
      if (running) await this.#startChannel(channel, true);
    });
  }

  /**
   * Stops one channel and keeps it stopped, configured as it is: its plugin's `stop` runs, its
   * connection context goes stale (`ctx.receive` rejects, so no inbound message is taken), the
   * supervisor forgets its process (no reconnect, no restart — `restart(channelId)` leaves it
   * alone), and `status` says `stopped`. Bursts waiting in its debounce are handed on first;
   * its outbox keeps what it holds, replies of runs in progress and `deliver()` calls go in
   * too, and all of it goes out after `startChannel`. Before `start()` it only marks the
   * channel to be left stopped. Not persisted: a new manager starts every channel it is given.
   *
   * Resolves `true` when this call stopped the channel, `false` when it was stopped already.
   *
   * @throws ChannelNotFoundError; NoProcessError once the manager is stopped.
   * @example
   * ```ts
   * await channels.stopChannel("telegram"); // true
   * channels.status("telegram").state; // "stopped"
   * await channels.startChannel("telegram"); // connects, sends what waited
   * ```
   */
  async stopChannel(channelId: string): Promise<boolean> {
    this.#assertChangeable("stop");
    const channel = this.#channel(channelId);
    return this.#lifecycle(channel, async () => {
      this.#assertCurrent(channel, "stop");
      return this.#hold(channel);
    });
  }

  /**
   * Starts a channel that is not running — stopped with `stopChannel` or `logoutChannel`, or
   * `failed` (a start error marked not retryable) — as its first start: the plugin connects
   * at once (no backoff left over), `startChannel` waits up to `startTimeoutMs` for the first
   * attempt (a channel that could not connect keeps trying in the background), then picks up
   * the replies the channel owes and sends what its outbox holds. Before `start()` it only
   * undoes a `stopChannel`.
   *
   * Resolves `true` when this call started the channel, `false` when it was running already
   * (connecting, connected or reconnecting; it is not restarted — that is `restart`).
   *
   * @throws ChannelNotFoundError; NoProcessError once the manager is stopped, or when its
   *   supervisor gave up (too many crashes).
   * @example
   * ```ts
   * if (await channels.startChannel("discord")) console.log(channels.status("discord").state);
   * ```
   */
  async startChannel(channelId: string): Promise<boolean> {
    this.#assertChangeable("start");
    const channel = this.#channel(channelId);
    return this.#lifecycle(channel, async () => {
      this.#assertCurrent(channel, "start");
      if (this.#state !== "running") {
        const held = channel.held;
        channel.held = false;
        return held;
      }
      if (!channel.held && isRunning(channel.link.state)) return false;
      const supervisor = this.#supervisor;
      if (supervisor === null || !supervisor.alive) {
        throw new NoProcessError(
          `the channel supervisor gave up (too many crashes); channel "${channelId}" cannot start until the channel manager is replaced`,
        );
      }
      // A failed channel's process is still there, idle: a fresh one starts.
      await this.#stopChannel(channel);
      channel.link.attempts = 0;
      await this.#startChannel(channel, true);
      channel.held = false;
      if (this.#state === "running") await this.#resumeReplies(channel);
      return true;
    });
  }

  /**
   * Logs a channel out (OpenClaw's `channels.logout`): stops it as `stopChannel` does and
   * calls its plugin's `logout`, which drops the login the plugin keeps (a linked web session,
   * cached credentials). The channel stays stopped — also when `logout` fails — until
   * `startChannel`; it then has to log in anew. `logout` gets `reconnect.stopTimeoutMs`
   * (default 10 s) to finish.
   *
   * @throws ChannelNotFoundError; NotSupportedError (`NOT_SUPPORTED`) when the plugin has no
   *   `logout` — a channel whose credentials live in its configuration (a bot token) has no
   *   login to drop; nothing changes then; TimeoutError when `logout` takes too long;
   *   NoProcessError once the manager is stopped.
   * @example
   * ```ts
   * const { cleared } = await channels.logoutChannel("whatsapp");
   * ```
   */
  async logoutChannel(channelId: string): Promise<ChannelLogoutOutcome> {
    this.#assertChangeable("log out");
    const channel = this.#channel(channelId);
    return this.#lifecycle(channel, async () => {
      this.#assertCurrent(channel, "log out");
      const { plugin, config } = channel.link;
      if (typeof plugin.logout !== "function") {
        throw new NotSupportedError(
          "channel logout",
          `channel "${plugin.id}" has no login to drop: its plugin keeps none (its credentials are in its configuration); nothing was changed`,
        );
      }
      const stopped = await this.#hold(channel);
      const logout = plugin.logout.bind(plugin);
      const result = await this.#withinStopTimeout(`channel "${plugin.id}" logout`, () =>
        logout({
          channel: plugin.id,
          accountId: DEFAULT_CHANNEL_ACCOUNT,
          config,
          logger: this.#channelLogger(plugin.id),
          state: this.#stateStore(plugin.id),
        }),
      );
      const cleared = (result as ChannelLogoutResult | undefined)?.cleared === true;
      const loggedOut = (result as ChannelLogoutResult | undefined)?.loggedOut;
      return { cleared, loggedOut: typeof loggedOut === "boolean" ? loggedOut : cleared, stopped };
    });
  }

  /** Stops a channel and keeps it stopped; `false` when it was stopped already. */
  async #hold(channel: Channel): Promise<boolean> {
    if (channel.held) return false;
    if (this.#state === "running") {
      await channel.debouncer?.flushAll();
      await this.#stopChannel(channel);
      // What the plugin handed over while it was being stopped.
      await channel.debouncer?.flushAll();
      const { link } = channel;
      // Also when the supervisor had given up and its process was gone already.
      link.state = "stopped";
      link.connectedAt = undefined;
      channel.outbox.pause();
      channel.firstAttempt.resolve();
    }
    channel.held = true;
    for (const follower of this.#followers) {
      if (follower.channel === channel) this.#stopTyping(follower);
    }
    return true;
  }

  /** Runs `task` after the channel's earlier lifecycle changes. */
  #lifecycle<T>(channel: Channel, task: () => Promise<T>): Promise<T> {
    const run = channel.lifecycle.then(task, task);
    channel.lifecycle = run.catch(() => undefined);
    return run;
  }

  /** `task`'s answer, or a TimeoutError after `reconnect.stopTimeoutMs`. */
  async #withinStopTimeout<T>(what: string, task: () => Promise<T>): Promise<T> {
    const timeoutMs = this.#reconnect.stopTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        Promise.resolve().then(task),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new TimeoutError(`${what} did not finish within ${timeoutMs} ms`, timeoutMs)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  #assertChangeable(what: string): void {
    if (this.#state === "stopping" || this.#state === "stopped") {
      throw new NoProcessError(`the channel manager is stopped; cannot ${what} a channel`);
    }
  }

  /** Before a queued change: the manager still changeable, the channel still this one. */
  #assertCurrent(channel: Channel, what: string): void {
    this.#assertChangeable(what);
    const id = channel.link.plugin.id;
    if (this.#channels.get(id) !== channel) throw new ChannelNotFoundError(id);
  }

  /**
   * Stops every channel: bursts waiting in the debounce are sent on, typing stops, each
   * plugin is stopped (in reverse order), the outboxes stop. What is not yet delivered stays
   * in the store and goes out after the next `start()` (of a new manager: a stopped one does
   * not start again). Channels stopped with `stopChannel` are stopped already. A `mirror`
   * injection still waiting for a session's run is no longer waited for (the session keeps
   * it). Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#state === "new") {
      this.#state = "stopped";
      this.#stopping.abort();
      await Promise.allSettled([...this.#background]);
      return;
    }
    if (this.#state !== "running") return;
    this.#state = "stopping";
    await Promise.allSettled([...this.#channels.values()].map((c) => c.debouncer?.flushAll()));
    await Promise.allSettled([...this.#chains.values()]);
    this.#stopping.abort();
    for (const follower of this.#followers) {
      follower.controller.abort();
      this.#stopTyping(follower);
      if (follower.stream !== undefined) {
        follower.stream.closed = true;
        clearTimeout(follower.stream.timer);
      }
    }
    const running = [...this.#channels.values()].filter((c) => c.link.actor !== undefined);
    await this.#supervisor?.stop("shutdown");
    for (const channel of running) channel.lastStopAt = this.#now();
    for (const channel of [...this.#channels.values()].reverse()) await channel.outbox.stop();
    await Promise.allSettled([...this.#background]);
    this.#prompts.clear();
    this.#state = "stopped";
  }

  /** The state of every channel, or of one. */
  status(): ChannelStatus[];
  status(channelId: string): ChannelStatus;
  status(channelId?: string): ChannelStatus | ChannelStatus[] {
    const one = (channel: Channel): ChannelStatus => {
      const { link } = channel;
      const status: ChannelStatus = {
        channel: link.plugin.id,
        label: link.plugin.meta.label,
        state: link.state,
        attempts: link.attempts,
      };
      if (link.connectedAt !== undefined && link.state === "connected") {
        status.connectedAt = link.connectedAt;
      }
      if (link.lastError !== undefined) status.lastError = errorInfo(link.lastError);
      if (channel.lastStartAt !== undefined) status.lastStartAt = channel.lastStartAt;
      if (channel.lastStopAt !== undefined) status.lastStopAt = channel.lastStopAt;
      return status;
    };
    if (channelId === undefined) return [...this.#channels.values()].map(one);
    return one(this.#channel(channelId));
  }

  /** The outbox of a channel (pending and set-aside messages). */
  outbox(channelId: string): ChannelOutbox {
    return this.#channel(channelId).outbox;
  }

  /**
   * Sends a message through a channel's durable outbox (chunked at its limit): from cron
   * announcements, host code, an operator. Resolves once it is stored, with the entry id;
   * it is sent when the channel is connected. With `options.mirror`, its text also goes into
   * the conversation of the chat it is sent to (see {@link DeliverOptions.mirror}), in the
   * background: the delivery neither waits for it nor fails with it.
   *
   * @example
   * ```ts
   * // A cron announcement the user can answer in the chat: the agent sees what it said.
   * await channels.deliver(
   *   "telegram",
   *   { accountId: "default", chatType: "direct", chatId: "4711" },
   *   { text: "Your daily summary: ..." },
   *   { mirror: true },
   * );
   * ```
   * @throws ChannelNotFoundError, InvalidArgumentError for an empty message or a capability
   *   the channel lacks.
   */
  async deliver(
    channelId: string,
    target: ChannelTarget,
    message: OutboundMessage,
    options: DeliverOptions = {},
  ): Promise<string> {
    const channel = this.#channel(channelId);
    const { capabilities } = channel.link.plugin;
    if (typeof target?.chatId !== "string" || target.chatId.length === 0) {
      throw new InvalidArgumentError("deliver: target.chatId must be a non-empty string");
    }
    if (target.chatType !== "direct" && target.chatType !== "group") {
      throw new InvalidArgumentError('deliver: target.chatType must be "direct" or "group"');
    }
    const parts: OutboxPart[] = [];
    if (message.media !== undefined) {
      if (!capabilities.media) {
        throw new InvalidArgumentError(`channel "${channelId}" cannot send media`);
      }
      parts.push({ kind: "media", media: message.media });
    }
    for (const text of chunkText(message.text ?? "", capabilities.maxMessageLength)) {
      parts.push({ kind: "text", text });
    }
    if (parts.length === 0) throw new InvalidArgumentError("deliver: nothing to send");
    const entry = await channel.outbox.add({
      target: { ...target, accountId: target.accountId ?? "default" },
      parts,
      ...(message.replyToMessageId === undefined
        ? {}
        : { replyToMessageId: message.replyToMessageId }),
    });
    const text = message.text?.trim() ?? "";
    if (options?.mirror === true && text.length > 0 && !this.#stopping.signal.aborted) {
      this.#track(this.#mirror(channel, entry.target, text, options.sourceSessionKey));
    }
    return entry.id;
  }

  /**
   * The session a chat's messages go to: the one its last accepted message went to, as the
   * manager remembers it (in `store.kv`, 90 days after the chat's last message), or
   * `undefined` for a chat that never wrote to the bot (or not for 90 days). `deliver` with
   * `mirror` injects into this session.
   *
   * @throws ChannelNotFoundError
   * @example
   * ```ts
   * await channels.sessionOf("telegram", { accountId: "default", chatType: "direct", chatId: "4711" });
   * // "agent:main:main" once 4711 wrote to the bot
   * ```
   */
  async sessionOf(channelId: string, target: ChannelTarget): Promise<string | undefined> {
    return this.#readChatSession(this.#chatSessionKey(this.#channel(channelId), target));
  }

  /**
   * Approves a pairing code: the sender may talk to the agent from now on, and is told so
   * (unless `options.notify` is false). With `options.accountId`, only a request that came
   * to that account of the channel is approved.
   *
   * @throws PairingCodeError for an unknown, expired or answered code (or one of another
   *   account).
   */
  async approvePairing(
    channelId: string,
    code: string,
    approvedBy?: string,
    options: PairingAnswerOptions & { notify?: boolean } = {},
  ): Promise<ApprovedPeer> {
    const channel = this.#channel(channelId);
    const approved = await this.pairing.approve(channelId, code, approvedBy, options);
    if (options.notify !== false) await this.#tellApproved(channel, approved);
    return approved;
  }

  /**
   * Rejects (dismisses) a pairing code; the sender may ask again later. With
   * `options.accountId`, only a request that came to that account of the channel.
   *
   * @throws PairingCodeError for an unknown, expired or answered code (or one of another
   *   account).
   */
  async rejectPairing(
    channelId: string,
    code: string,
    options: PairingAnswerOptions = {},
  ): Promise<PairingRequest> {
    this.#channel(channelId);
    return this.pairing.reject(channelId, code, options);
  }

  async #tellApproved(channel: Channel, approved: ApprovedPeer): Promise<void> {
    await this.#say(
      channel,
      { accountId: approved.accountId, chatType: "direct", chatId: approved.chatId },
      this.#texts.pairingApproved(),
    );
  }

  /**
   * Stops and starts a channel's plugin now (and forgets its backoff). A channel stopped with
   * `stopChannel` stays stopped: `startChannel` starts it.
   *
   * @throws ChannelNotFoundError
   */
  restart(channelId: string): void {
    const channel = this.#channel(channelId);
    try {
      channel.link.actor?.cast({ type: "restart" });
    } catch {
      // A full mailbox: a restart is already on its way.
    }
  }

  /**
   * The gateway methods of the channels: `channels.status`, `channels.start`,
   * `channels.stop`, `channels.logout` (`operator.admin`; `startChannel`, `stopChannel` and
   * `logoutChannel` of the channel named, whose `accountId` may only be `default`),
   * `channels.pairing.list`, `channels.pairing.approve`, `channels.pairing.dismiss` (params
   * and results as OpenClaw's gateway protocol has them; a request's `requestId` is its
   * pairing code), and every plugin's own as `<channel id>.<name>`. Each names the scope a
   * caller needs; the gateway checks it.
   */
  gatewayMethods(): Record<string, ChannelGatewayMethod> {
    const params = (value: JsonValue | undefined) =>
      (typeof value === "object" && value !== null && !Array.isArray(value) ? value : {}) as Record<
        string,
        JsonValue
      >;
    const methods: Record<string, ChannelGatewayMethod> = {
      "channels.status": {
        description:
          "The state of every channel (OpenClaw's ChannelsStatusResult): { channel? } narrows it to one.",
        scope: "operator.read",
        handler: (p) => {
          const only = params(p).channel;
          return this.#statusReport(
            typeof only === "string" && only.length > 0 ? only : undefined,
          ) as unknown as JsonValue;
        },
      },
      ...lifecycleGatewayMethods({
        running: (id) => isRunning(this.#channel(id).link.state),
        start: (id) => this.startChannel(id),
        stop: (id) => this.stopChannel(id),
        logout: (id) => this.logoutChannel(id),
      }),
      ...pairingGatewayMethods({
        pairing: this.pairing,
        channels: (only) =>
          (only === undefined ? this.channelIds : [this.#channel(only).link.plugin.id]).map(
            (id) => {
              const { link, settings } = this.#channel(id);
              return {
                id,
                label: link.plugin.meta.label.length > 0 ? link.plugin.meta.label : id,
                pairing: (settings.dmPolicy ?? "pairing") === "pairing",
                operators: settings.operators ?? [],
              };
            },
          ),
        approve: async (channelId, accountId, code, approvedBy, notify) => {
          const channel = this.#channel(channelId);
          const approved = await this.pairing.approve(channelId, code, approvedBy, { accountId });
          if (!notify) return { approved, notification: "not-requested" };
          try {
            await this.#tellApproved(channel, approved);
            return { approved, notification: "sent" };
          } catch (error) {
            this.#logger.warn("the approved sender could not be told", { error });
            return { approved, notification: "failed" };
          }
        },
        dismiss: (channelId, accountId, code) => this.rejectPairing(channelId, code, { accountId }),
      }),
    };
    for (const [id, channel] of this.#channels) {
      for (const [name, method] of Object.entries(channel.link.plugin.gatewayMethods ?? {})) {
        methods[`${id}.${name}`] = method;
      }
    }
    return methods;
  }

  /**
   * `channels.status` in the shape of OpenClaw's gateway protocol (`ChannelsStatusResult`):
   * the order, labels and one account per channel, with this host's own status under
   * `channels.<id>`.
   */
  #statusReport(only: string | undefined): Record<string, unknown> {
    const ids = only === undefined ? this.channelIds : [this.#channel(only).link.plugin.id];
    const report = {
      ts: this.#now(),
      channelOrder: ids,
      channelLabels: {} as Record<string, string>,
      channelMeta: [] as Array<{ id: string; label: string; detailLabel: string }>,
      channels: {} as Record<string, unknown>,
      channelAccounts: {} as Record<string, unknown[]>,
      channelDefaultAccountId: {} as Record<string, string>,
    };
    for (const id of ids) {
      const channel = this.#channel(id);
      const { plugin } = channel.link;
      const status = this.status(id);
      const label = plugin.meta.label.length > 0 ? plugin.meta.label : id;
      report.channelLabels[id] = label;
      report.channelMeta.push({ id, label, detailLabel: plugin.meta.description ?? label });
      report.channels[id] = status;
      report.channelAccounts[id] = [
        {
          accountId: "default",
          enabled: true,
          configured: true,
          running: isRunning(status.state),
          connected: status.state === "connected",
          reconnectAttempts: status.attempts,
          lastConnectedAt: status.connectedAt ?? null,
          lastError: status.lastError?.message ?? null,
          healthState: status.state,
          lastStartAt: status.lastStartAt ?? null,
          lastStopAt: status.lastStopAt ?? null,
          dmPolicy: channel.settings.dmPolicy ?? "pairing",
          allowFrom: [...(channel.settings.allowFrom ?? [])],
        },
      ];
      report.channelDefaultAccountId[id] = "default";
    }
    return report;
  }

  // ------------------------------------------------------------------ inbound

  async #receive(channel: Channel, input: InboundMessageInput): Promise<ReceiveResult> {
    const { plugin } = channel.link;
    this.#mayReceive(channel);
    const message = normalizeInbound(plugin.id, input, this.#now);
    const enc = encodeKeySegment;
    const seenKey = `channels:seen:${plugin.id}:${enc(message.accountId)}:${enc(message.messageId)}`;
    // One conversation's messages are admitted one at a time, in the order they came, so that
    // they reach their session in that order.
    const conversation = `${plugin.id}\u0000${enc(message.accountId)}\u0000${enc(message.chatId)}\u0000${message.threadId === undefined ? "" : enc(message.threadId)}`;
    const kv = this.runtime.store.kv;
    let claimed = false;
    let result: ReceiveResult;
    try {
      const admitted = await this.#serial(conversation, async (): Promise<Admission> => {
        const ttlMs = channel.settings.dedupeTtlMs;
        if (!(await kv.set(seenKey, this.#now(), { ttlMs, ifAbsent: true }))) {
          return {
            result: { status: "duplicate", reason: "this platform message was received before" },
          };
        }
        claimed = true;
        return this.#route(channel, message);
      });
      result = "result" in admitted ? admitted.result : await admitted.later;
    } catch (error) {
      // Nothing was accepted: a redelivery of this message must not look like a duplicate.
      if (claimed) await kv.delete(seenKey).catch(() => undefined);
      throw error;
    }
    emitTelemetry("beamclaw:channel.inbound", () => ({
      channel: plugin.id,
      accountId: message.accountId,
      chatType: message.chatType,
      status: result.status,
      ...(result.sessionKey === undefined ? {} : { sessionKey: result.sessionKey }),
    }));
    return result;
  }

  /** @throws NoProcessError unless the manager is running. */
  #mayReceive(channel: Channel): void {
    if (this.#state !== "running") {
      throw new NoProcessError(
        `the channel manager is not running; channel "${channel.link.plugin.id}" cannot receive`,
      );
    }
  }

  /**
   * `ctx.admits`: whether `receive` would take `input` to a session, decided as `#route`
   * decides it, without its side effects.
   */
  async #admits(channel: Channel, input: InboundMessageInput): Promise<boolean> {
    const { plugin } = channel.link;
    this.#mayReceive(channel);
    const verdict = await this.#assess(channel, normalizeInbound(plugin.id, input, this.#now));
    return verdict.kind === "session";
  }

  /**
   * What becomes of a message by who sent it, where, and its command, read-only (the pairing
   * approvals): `#route` carries it out, `ctx.admits` answers from it before the files.
   */
  async #assess(channel: Channel, message: InboundMessage): Promise<Verdict> {
    const { settings } = channel;
    const { plugin } = channel.link;
    if (isOperator(settings, message.peer.id)) {
      const command = parseChannelCommand(message.text);
      if (
        command !== undefined &&
        (command.kind !== "approve" || this.runtime.approvals !== undefined)
      ) {
        return { kind: "command", command };
      }
    }
    let paired = false;
    const dmPolicy = settings.dmPolicy ?? "pairing";
    if (
      message.chatType === "direct" &&
      (dmPolicy === "pairing" || dmPolicy === "allowlist") &&
      !(settings.allowFrom?.includes(message.peer.id) || settings.allowFrom?.includes("*"))
    ) {
      paired = await this.pairing.isApproved(plugin.id, message.accountId, message.peer.id);
    }
    const decision = decideAccess(message, settings, paired);
    if (!decision.allow) return { kind: "refused", decision };
    const sessionKey = resolveSessionKey(message, {
      agentId: settings.agentId,
      dmScope: settings.dmScope,
      caseInsensitiveIds: plugin.meta.caseInsensitiveIds ?? false,
    });
    const sessionCommand =
      settings.sessionCommands === "off" ||
      (settings.sessionCommands === "operators" && !isOperator(settings, message.peer.id))
        ? undefined
        : parseSessionCommand(message.text);
    if (sessionCommand !== undefined) {
      return { kind: "session-command", sessionKey, command: sessionCommand };
    }
    return { kind: "session", sessionKey };
  }

  /** Decides what becomes of a message: an answer now, or one after its debounce window. */
  async #route(channel: Channel, message: InboundMessage): Promise<Admission> {
    const { plugin } = channel.link;
    const target = targetOf(message);
    const verdict = await this.#assess(channel, message);
    if (verdict.kind === "command") {
      await this.#command(channel, message, verdict.command);
      return { result: { status: "command", reason: verdict.command.kind } };
    }
    if (verdict.kind === "refused") {
      const { decision } = verdict;
      if (decision.outcome === "pairing") {
        const { request, created, capped } = await this.pairing.request(
          plugin.id,
          message.accountId,
          message.peer,
          message.chatId,
        );
        if (created && request !== undefined) {
          const minutes = Math.max(1, Math.round(this.pairing.ttlMs / 60_000));
          await this.#say(channel, target, this.#texts.pairingRequest(request.code, minutes));
          this.#logger.info("pairing requested", {
            channel: plugin.id,
            peer: message.peer.id,
            code: request.code,
          });
        }
        return {
          result: {
            status: "pairing",
            reason: capped ? "too many pairing requests are pending" : decision.reason,
          },
        };
      }
      return { result: { status: decision.outcome, reason: decision.reason } };
    }
    const { sessionKey } = verdict;
    if (verdict.kind === "session-command") {
      // In line with the conversation's messages: `/new` after a message clears it too.
      return {
        result: await this.#serial(sessionKey, () =>
          this.#sessionCommand(channel, message, sessionKey, verdict.command),
        ),
      };
    }
    if (message.text.trim().length === 0 && message.attachments.length === 0) {
      return { result: { status: "ignored", reason: "the message is empty" } };
    }
    if (channel.debouncer !== null) {
      // One burst per conversation and sender.
      return { later: channel.debouncer.push(`${sessionKey}\u0000${message.peer.id}`, message) };
    }
    return {
      result: await this.#serial(sessionKey, () => this.#accept(channel, sessionKey, [message])),
    };
  }

  /** Carries out a session command on the sender's conversation and answers in the chat. */
  async #sessionCommand(
    channel: Channel,
    message: InboundMessage,
    sessionKey: string,
    command: SessionCommand,
  ): Promise<ReceiveResult> {
    const answer = await runSessionCommand(this.runtime, sessionKey, command, this.#texts);
    await this.#say(channel, targetOf(message), answer);
    return { status: "command", reason: `session-${command.kind}`, sessionKey };
  }

  /** Runs `task` after the previous task of `key`: one conversation's messages stay in order. */
  #serial<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#chains.get(key) ?? Promise.resolve();
    const run = previous.then(task, task);
    const tail = run.catch(() => undefined);
    this.#chains.set(key, tail);
    void tail.then(() => {
      if (this.#chains.get(key) === tail) this.#chains.delete(key);
    });
    return run;
  }

  /** Hands (merged) messages to their session, and follows the run for the reply. */
  async #accept(
    channel: Channel,
    sessionKey: string,
    messages: InboundMessage[],
  ): Promise<ReceiveResult> {
    const last = messages.at(-1)!;
    const input = await this.#input(channel, messages);
    const idempotencyKey = `${last.channel}:${last.accountId}:${last.messageId}`;
    const target = targetOf(last);
    const queueMode = channel.settings.queueMode;
    const entry = await channel.outbox.add({
      target,
      state: "pending-run",
      ...(last.chatType === "group" ? { replyToMessageId: last.messageId } : {}),
      run: { sessionKey, idempotencyKey, input, ...(queueMode === undefined ? {} : { queueMode }) },
    });
    let handle: RunHandle;
    try {
      handle = await this.runtime
        .session(sessionKey)
        .send(input, { idempotencyKey, ...(queueMode === undefined ? {} : { queueMode }) });
    } catch (error) {
      await channel.outbox.remove(entry.id).catch(() => undefined);
      throw error;
    }
    // Where this chat's messages go, for deliveries mirrored into its conversation.
    await this.#rememberChatSession(channel, last, sessionKey);
    if (handle.disposition === "duplicate") {
      await channel.outbox.remove(entry.id);
      return {
        status: "duplicate",
        sessionKey,
        runId: handle.runId,
        reason: "the session had it already",
      };
    }
    if (handle.disposition === "steered" || this.#followedRuns.has(handle.runId)) {
      // It joined a run whose reply another entry already waits for.
      await channel.outbox.remove(entry.id);
    } else {
      this.#follow(channel, entry, handle.runId, handle);
    }
    return { status: "accepted", sessionKey, runId: handle.runId };
  }

  /** The session input of one message (or a debounced burst). */
  async #input(channel: Channel, messages: InboundMessage[]): Promise<UserMessageInput> {
    const first = messages[0]!;
    const last = messages.at(-1)!;
    const lines: string[] = [];
    if (first.replyTo?.text !== undefined) {
      const quoted =
        first.replyTo.text.length > 300
          ? `${first.replyTo.text.slice(0, 297)}...`
          : first.replyTo.text;
      lines.push(...quoted.split("\n").map((l) => `> ${l}`));
    }
    const images: NonNullable<UserMessageInput["images"]> = [];
    const files: NonNullable<UserMessageInput["files"]> = [];
    /** Text files, appended to the text after a blank line each. */
    const blocks: string[] = [];
    for (const message of messages) {
      if (message.text.length > 0) lines.push(message.text);
      for (const a of message.attachments) {
        const heard = await this.#transcribe(channel, a);
        if (heard !== undefined) {
          lines.push(heard);
          continue;
        }
        const media = forModel(a);
        if (media?.type === "image") images.push(media.part);
        else if (media?.type === "file") files.push(media.part);
        else if (media?.type === "text") blocks.push(media.block);
        else {
          const what = [a.name, a.mediaType].filter(Boolean).join(", ");
          const url = a.url !== undefined && a.privateUrl !== true ? ` ${a.url}` : "";
          lines.push(`[${a.kind}${what ? `: ${what}` : ""}${url}]`);
        }
      }
    }
    let text = [lines.join("\n"), ...blocks].filter((part) => part.length > 0).join("\n\n");
    // In a group the agent must know who speaks.
    if (last.chatType === "group") text = `${last.peer.name ?? last.peer.id}: ${text}`;
    const input: UserMessageInput = { text, sender: `${channel.link.plugin.id}:${last.peer.id}` };
    if (images.length > 0) input.images = images;
    if (files.length > 0) input.files = files;
    return input;
  }

  /**
   * An audio attachment's transcript line (`[audio: <name>, transcribed]` and the words), or
   * `undefined` when there is nothing to transcribe or the transcription failed (the audio
   * is then named, and a warning logged).
   */
  async #transcribe(channel: Channel, a: InboundAttachment): Promise<string | undefined> {
    const transcriber = this.#transcriber;
    if (transcriber === undefined || a.kind !== "audio") return undefined;
    if (a.data === undefined) {
      if (!this.#audioHinted.has(channel.link.plugin.id)) {
        this.#audioHinted.add(channel.link.plugin.id);
        this.#logger.info(
          "a voice message came without its audio, so it is only named: set the channel's attachments.inlineAudioMaxBytes to have it transcribed",
          { channel: channel.link.plugin.id },
        );
      }
      return undefined;
    }
    try {
      return await transcriptLine(
        transcriber,
        {
          data: Buffer.from(a.data, "base64"),
          mediaType: a.mediaType ?? "audio/ogg",
          ...(a.name === undefined ? {} : { filename: a.name }),
        },
        { signal: AbortSignal.timeout(this.#transcribeTimeoutMs) },
      );
    } catch (error) {
      this.#logger.warn("a voice message could not be transcribed; it is only named", {
        channel: channel.link.plugin.id,
        transcriber: transcriber.id,
        error: errorInfo(error),
      });
      return undefined;
    }
  }

  // ------------------------------------------------------------------ runs and replies

  /** Follows a run's events: typing while it streams, approval prompts, the reply at its end. */
  #follow(
    channel: Channel,
    entry: OutboxEntry,
    runId: string,
    events: AsyncIterable<RunEvent>,
    cleanup?: () => void,
  ): void {
    const follower: Follower = {
      channel,
      runId,
      entryId: entry.id,
      target: entry.target,
      replyToMessageId: entry.replyToMessageId,
      controller: new AbortController(),
      typing: undefined,
      stream:
        channel.settings.streaming === "edit"
          ? {
              text: "",
              previews: [],
              timer: undefined,
              flushing: undefined,
              notBefore: 0,
              closed: false,
            }
          : undefined,
    };
    this.#followers.add(follower);
    this.#followedRuns.add(runId);
    this.#track(
      (async () => {
        try {
          for await (const event of untilAborted(events, follower.controller.signal)) {
            if (event.runId !== runId) continue;
            await this.#onRunEvent(follower, event);
            if (event.type === "run-end") break;
          }
        } catch (error) {
          // The runtime stopped (the message stays queued) or the store failed: the entry stays
          // pending and the next start picks the run up again.
          this.#logger.debug("stopped following a run", { runId, error });
        } finally {
          cleanup?.();
          this.#stopTyping(follower);
          if (follower.stream !== undefined) {
            follower.stream.closed = true;
            clearTimeout(follower.stream.timer);
          }
          this.#followers.delete(follower);
          this.#followedRuns.delete(runId);
          for (const [requestId, prompt] of this.#prompts) {
            if (prompt.runId === runId) this.#prompts.delete(requestId);
          }
        }
      })(),
    );
  }

  async #onRunEvent(follower: Follower, event: RunEvent): Promise<void> {
    const { channel } = follower;
    switch (event.type) {
      case "run-start":
      case "tool-call":
        this.#startTyping(follower);
        return;
      case "text-delta":
        this.#startTyping(follower);
        if (follower.stream !== undefined) {
          follower.stream.text += event.text;
          this.#scheduleStream(follower);
        }
        return;
      case "text-reset":
        // The chain fell back to another provider: the text starts over.
        if (follower.stream !== undefined) {
          follower.stream.text = "";
          this.#scheduleStream(follower);
        }
        return;
      case "tool-approval-request": {
        if (this.runtime.approvals === undefined) return;
        const text = this.#texts.approvalRequest({
          shortId: event.requestId.slice(0, 8),
          toolName: event.toolName,
          input: event.input,
          expiresAt: event.expiresAt,
          now: this.#now(),
        });
        this.#prompts.set(event.requestId, {
          channel: channel.link.plugin.id,
          runId: event.runId,
          target: follower.target,
          text,
          messageId: undefined,
        });
        const parts = chunkText(text, channel.link.plugin.capabilities.maxMessageLength);
        await channel.outbox.add({
          target: follower.target,
          parts: parts.map((t) => ({ kind: "text" as const, text: t })),
          tag: `approval:${event.requestId}`,
        });
        return;
      }
      case "run-end": {
        this.#stopTyping(follower);
        const { result } = event;
        let text = result.status === "aborted" ? "" : result.text;
        if (result.status === "failed" && text.trim().length === 0) {
          text = this.#texts.runFailed(
            result.error ?? { code: "INTERNAL", message: "the run failed" },
          );
        }
        if (follower.stream !== undefined) {
          await channel.outbox.ready(follower.entryId, await this.#endStream(follower, text));
        } else {
          await this.#ready(channel, follower.entryId, text);
        }
        return;
      }
      default:
        return;
    }
  }

  async #ready(channel: Channel, entryId: string, text: string): Promise<void> {
    const parts = chunkText(text, channel.link.plugin.capabilities.maxMessageLength).map(
      (t): OutboxPart => ({ kind: "text", text: t }),
    );
    await channel.outbox.ready(entryId, parts);
  }

  /**
   * Picks up the reply of a message accepted before the last stop: the message is sent to its
   * session again under the same idempotency key, which either runs it (it never reached the
   * queue), joins it (it is still queued or running: its events are followed) or says it is
   * done (its answer is read from the transcript).
   */
  async #resume(channel: Channel, entry: OutboxEntry): Promise<void> {
    const run = entry.run!;
    const queue = this.runtime.store.queue;
    if (this.#now() - entry.createdAt > queue.dedupeWindowMs) {
      // Past the queue's dedupe window a resend could run the message twice.
      await channel.outbox.remove(entry.id);
      this.#logger.warn("dropped a reply older than the inbound dedupe window", {
        channel: channel.link.plugin.id,
        outboxId: entry.id,
      });
      return;
    }
    // Subscribed before anything else, so that no event between the checks is missed.
    const events = new EventQueue<RunEvent>();
    const unsubscribe = this.runtime.pubsub.subscribe<RunEvent>(
      `session:${run.sessionKey}`,
      (event) => events.push(event),
    );
    let following = false;
    try {
      const handle = await this.runtime.session(run.sessionKey).send(run.input, {
        idempotencyKey: run.idempotencyKey,
        ...(run.queueMode === undefined ? {} : { queueMode: run.queueMode as QueueMode }),
      });
      if (handle.disposition !== "duplicate") {
        if (this.#followedRuns.has(handle.runId)) await channel.outbox.remove(entry.id);
        else this.#follow(channel, entry, handle.runId, handle);
        return;
      }
      if (this.#followedRuns.has(handle.runId)) {
        await channel.outbox.remove(entry.id);
        return;
      }
      const pending = (await queue.pending({ sessionKey: run.sessionKey, limit: 1000 })).some(
        (m) => m.idempotencyKey === run.idempotencyKey,
      );
      if (pending) {
        following = true;
        this.#follow(channel, entry, handle.runId, events, () => {
          unsubscribe();
          events.close();
        });
        return;
      }
      const text = await finalTextOf(this.runtime, run.sessionKey, handle.runId);
      await this.#ready(channel, entry.id, text ?? "");
    } catch (error) {
      this.#logger.warn("could not pick up an unfinished reply; will try at the next start", {
        channel: channel.link.plugin.id,
        outboxId: entry.id,
        error,
      });
    } finally {
      if (!following) {
        unsubscribe();
        events.close();
      }
    }
  }

  /** Updates the streamed reply soon: now, or once the throttle (or a retry-after) allows. */
  #scheduleStream(follower: Follower): void {
    const stream = follower.stream!;
    if (stream.closed || stream.timer !== undefined || stream.flushing !== undefined) return;
    stream.timer = setTimeout(
      () => {
        stream.timer = undefined;
        stream.flushing = this.#flushStream(follower).finally(() => {
          stream.flushing = undefined;
        });
      },
      // Capped: a longer wait (a huge retry-after or throttle) would make Node fire at once.
      Math.min(Math.max(0, stream.notBefore - this.#now()), MAX_TIMER_DELAY_MS),
    );
  }

  /**
   * Shows the text so far: each platform-sized piece in its preview message — edited when it
   * changed, posted when it is new. Best effort: a failed update waits for the next one (or
   * the platform's retry-after); the final text goes through the outbox.
   */
  async #flushStream(follower: Follower): Promise<void> {
    const stream = follower.stream!;
    const { link, settings } = follower.channel;
    const { plugin } = link;
    const text = stream.text;
    const connection = link.connection;
    if (link.state !== "connected" || connection === undefined) return;
    const signal = AbortSignal.any([follower.controller.signal, connection.signal]);
    const pieces =
      text.trim().length === 0 ? [] : chunkText(text, plugin.capabilities.maxMessageLength);
    try {
      for (const [i, piece] of pieces.entries()) {
        if (stream.closed || signal.aborted) return;
        const preview = stream.previews[i];
        if (preview === undefined) {
          const sent = await plugin.sendText(follower.target, piece, {
            signal,
            idempotencyKey: `${follower.entryId}:stream:${i}`,
            ...(i === 0 && follower.replyToMessageId !== undefined
              ? { replyToMessageId: follower.replyToMessageId }
              : {}),
          });
          stream.previews.push({ messageId: sent.messageId, text: piece });
        } else if (preview.text !== piece) {
          await plugin.edit!(follower.target, preview.messageId, piece, { signal });
          preview.text = piece;
        }
      }
    } catch (error) {
      const retryAfterMs = (error as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
      // A NaN would leave `notBefore` NaN for good, and every later update unthrottled.
      if (typeof retryAfterMs === "number" && retryAfterMs > 0) {
        stream.notBefore = Math.max(stream.notBefore, this.#now() + retryAfterMs);
      }
      this.#logger.debug("a streamed reply could not be updated", {
        channel: plugin.id,
        runId: follower.runId,
        error,
      });
    }
    stream.notBefore = Math.max(stream.notBefore, this.#now() + settings.streamThrottleMs);
    if (!stream.closed && stream.text !== text) {
      // More came meanwhile: the next update, after the throttle.
      queueMicrotask(() => this.#scheduleStream(follower));
    }
  }

  /**
   * Ends a streamed reply: the outbox parts that make what the chat shows equal to the final
   * text — an edit of each preview whose text differs, new messages for the pieces beyond
   * the previews, and "…" in previews the final text no longer needs.
   */
  async #endStream(follower: Follower, text: string): Promise<OutboxPart[]> {
    const stream = follower.stream!;
    stream.closed = true;
    clearTimeout(stream.timer);
    stream.timer = undefined;
    await stream.flushing;
    // The final update keeps the pace (and any retry-after the platform asked for).
    const wait = Math.min(stream.notBefore - this.#now(), 60_000);
    if (wait > 0 && stream.previews.length > 0) {
      await sleep(wait, follower.controller.signal).catch(() => undefined);
    }
    const pieces = chunkText(text, follower.channel.link.plugin.capabilities.maxMessageLength);
    const parts: OutboxPart[] = [];
    for (const [i, piece] of pieces.entries()) {
      const preview = stream.previews[i];
      if (preview === undefined) parts.push({ kind: "text", text: piece });
      else if (preview.text !== piece) {
        parts.push({ kind: "edit", messageId: preview.messageId, text: piece });
      }
    }
    if (pieces.length > 0) {
      for (const extra of stream.previews.slice(pieces.length)) {
        if (extra.text !== "…") parts.push({ kind: "edit", messageId: extra.messageId, text: "…" });
      }
    }
    return parts;
  }

  #startTyping(follower: Follower): void {
    const { link, settings } = follower.channel;
    const { plugin } = link;
    if (
      follower.channel.held ||
      follower.typing !== undefined ||
      !plugin.capabilities.typing ||
      plugin.typing === undefined
    )
      return;
    const tick = () => {
      if (link.state !== "connected" || follower.controller.signal.aborted) return;
      Promise.resolve()
        .then(() => plugin.typing!(follower.target, { signal: link.connection!.signal }))
        .catch((error: unknown) =>
          this.#logger.debug("typing failed", { channel: plugin.id, error }),
        );
    };
    tick();
    follower.typing = setInterval(tick, settings.typingIntervalMs);
  }

  #stopTyping(follower: Follower): void {
    if (follower.typing !== undefined) clearInterval(follower.typing);
    follower.typing = undefined;
  }

  async #sendPart(
    channel: Channel,
    entry: OutboxEntry,
    part: OutboxPart,
    index: number,
    signal: AbortSignal,
    progress: ChannelSendProgress,
  ) {
    const { plugin, connection } = channel.link;
    const options = {
      idempotencyKey: `${entry.id}:${index}`,
      progress,
      signal: connection === undefined ? signal : AbortSignal.any([signal, connection.signal]),
      ...(index === 0 && entry.replyToMessageId !== undefined
        ? { replyToMessageId: entry.replyToMessageId }
        : {}),
    };
    if (part.kind === "text") return plugin.sendText(entry.target, part.text, options);
    if (part.kind === "edit") {
      if (plugin.edit === undefined) {
        throw new ChannelSendError(plugin.id, `channel "${plugin.id}" cannot edit messages`, {
          isRetryable: false,
        });
      }
      const { replyToMessageId: _reply, ...editOptions } = options as typeof options & {
        replyToMessageId?: string;
      };
      await plugin.edit(entry.target, part.messageId, part.text, editOptions);
      return { messageId: part.messageId };
    }
    if (plugin.sendMedia === undefined) {
      throw new ChannelSendError(plugin.id, `channel "${plugin.id}" cannot send media`, {
        isRetryable: false,
      });
    }
    return plugin.sendMedia(entry.target, part.media, options);
  }

  #delivered(entry: OutboxEntry): void {
    if (entry.tag?.startsWith("approval:") !== true) return;
    const prompt = this.#prompts.get(entry.tag.slice("approval:".length));
    if (prompt !== undefined) prompt.messageId = entry.messageIds[0];
  }

  /** Sends host text (pairing codes, command answers) through the outbox. */
  async #say(channel: Channel, target: ChannelTarget, text: string): Promise<void> {
    const parts = chunkText(text, channel.link.plugin.capabilities.maxMessageLength);
    if (parts.length === 0) return;
    await channel.outbox.add({
      target,
      parts: parts.map((t) => ({ kind: "text" as const, text: t })),
    });
  }

  // ------------------------------------------------------------------ operator commands

  async #command(
    channel: Channel,
    message: InboundMessage,
    command: ChannelCommand,
  ): Promise<void> {
    const target = targetOf(message);
    const by = message.peer.name ?? message.peer.id;
    const channelId = channel.link.plugin.id;
    if (command.kind === "pair-list") {
      const pending = await this.pairing.pending(channelId);
      await this.#say(
        channel,
        target,
        pending.length === 0
          ? "No pairing requests are pending."
          : pending.map((p) => `${p.code}  ${p.peerName ?? p.peerId}`).join("\n"),
      );
      return;
    }
    if (command.kind === "pair") {
      try {
        if (command.action === "approve") {
          const approved = await this.approvePairing(
            channelId,
            command.code,
            `${channelId}:${message.peer.id}`,
          );
          await this.#say(channel, target, `Approved ${approved.peerName ?? approved.peerId}.`);
        } else {
          const rejected = await this.rejectPairing(channelId, command.code);
          await this.#say(channel, target, `Rejected ${rejected.peerName ?? rejected.peerId}.`);
        }
      } catch (error) {
        if (!PairingCodeError.isInstance(error)) throw error;
        await this.#say(channel, target, error.message);
      }
      return;
    }
    const gate = this.runtime.approvals!;
    const id = command.id.toLowerCase();
    const matches =
      id.length < 4 ? [] : gate.pending().filter((p) => p.requestId.toLowerCase().startsWith(id));
    if (matches.length !== 1) {
      await this.#say(channel, target, this.#texts.approvalUnknown(command.id));
      return;
    }
    const { requestId } = matches[0]!;
    const answered = gate.answer(requestId, command.decision, {
      scopes: [APPROVALS_SCOPE],
      id: `${channelId}:${message.peer.id}`,
    });
    if (!answered) {
      await this.#say(channel, target, this.#texts.approvalUnknown(command.id));
      return;
    }
    const note = this.#texts.approvalAnswered(command.decision, by);
    const prompt = this.#prompts.get(requestId);
    this.#prompts.delete(requestId);
    let edited = false;
    if (prompt?.messageId !== undefined) {
      const owner = this.#channels.get(prompt.channel);
      const plugin = owner?.link.plugin;
      if (
        plugin?.capabilities.edits &&
        plugin.edit !== undefined &&
        owner?.link.state === "connected"
      ) {
        try {
          const text = `${prompt.text}\n${note}`;
          if (text.length <= plugin.capabilities.maxMessageLength) {
            await plugin.edit(prompt.target, prompt.messageId, text);
            edited = prompt.channel === channelId && prompt.target.chatId === target.chatId;
          }
        } catch (error) {
          this.#logger.debug("could not edit the approval prompt", { error });
        }
      }
    }
    if (!edited) await this.#say(channel, target, note);
  }

  /** The host's record of one channel (not started). */
  #create(entry: ChannelEntry): Channel {
    assertChannelPlugin(entry?.plugin);
    const id = entry.plugin.id;
    if (this.#channels.has(id)) throw new InvalidArgumentError(`two channels with id "${id}"`);
    const settings = this.#resolve(entry, new Set(this.runtime.agents.map((a) => a.id)));
    const channel: Channel = {
      link: newLink(entry),
      settings,
      outbox: new ChannelOutbox({
        kv: this.runtime.store.kv,
        channel: id,
        ...this.#outboxOptions,
        logger: this.#logger,
        now: this.#now,
        random: this.#random,
        send: (entry, part, index, signal, progress) =>
          this.#sendPart(channel, entry, part, index, signal, progress),
        onDelivered: (entry) => this.#delivered(entry),
      }),
      debouncer: null,
      firstAttempt: deferred(),
      held: false,
      lastStartAt: undefined,
      lastStopAt: undefined,
      lifecycle: Promise.resolve(),
    };
    channel.debouncer = this.#debouncer(channel);
    return channel;
  }

  /** The debounce of bursts of a channel, when its `debounceMs` asks for one. */
  #debouncer(channel: Channel): Debouncer<InboundMessage, ReceiveResult> | null {
    if (channel.settings.debounceMs === 0) return null;
    return new Debouncer<InboundMessage, ReceiveResult>(
      channel.settings.debounceMs,
      (key, messages) => {
        const sessionKey = key.slice(0, key.indexOf("\u0000"));
        return this.#serial(sessionKey, () => this.#accept(channel, sessionKey, messages));
      },
      { now: this.#now },
    );
  }

  /** Starts a channel's actor under the supervisor and waits for its first attempt. */
  async #startChannel(channel: Channel, wait: boolean): Promise<void> {
    const supervisor = this.#supervisor!;
    channel.firstAttempt = deferred();
    const hooks = this.#hooks();
    await supervisor.startChild({
      id: channel.link.plugin.id,
      restart: "transient",
      shutdownMs: (this.#reconnect.stopTimeoutMs ?? 10_000) + 5_000,
      start: () => new ChannelActor(channel.link, hooks).start(),
    });
    channel.lastStartAt = this.#now();
    if (wait) await this.#firstAttempts([channel]);
  }

  /** Waits (up to `startTimeoutMs`) for the first connection attempt of each channel. */
  async #firstAttempts(channels: Channel[]): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(channels.map((c) => c.firstAttempt.promise)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#startTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Picks up the replies of a channel left unfinished by the last stop. */
  async #resumeReplies(channel: Channel): Promise<void> {
    const entries = await channel.outbox.list();
    // A run still followed since before a `stopChannel` delivers its reply itself.
    const followed = new Set(
      [...this.#followers].filter((f) => f.channel === channel).map((f) => f.entryId),
    );
    for (const entry of entries) {
      if (entry.state === "pending-run" && entry.run !== undefined && !followed.has(entry.id)) {
        this.#track(this.#resume(channel, entry));
      }
    }
  }

  /** Stops a channel's actor (and so its plugin); the supervisor forgets it. */
  async #stopChannel(channel: Channel): Promise<void> {
    const supervisor = this.#supervisor;
    if (supervisor === null || !supervisor.alive) return;
    try {
      await supervisor.terminateChild(channel.link.plugin.id);
    } catch (error) {
      // Its actor had ended already (a normal exit of a transient child is forgotten, and a
      // stopped channel has none), or the supervisor stopped meanwhile, and its children with it.
      if (ChildNotFoundError.isInstance(error) || !supervisor.alive) return;
      throw error;
    }
    channel.lastStopAt = this.#now();
  }

  // ------------------------------------------------------------------ chat sessions

  /** `channels:chat-session:<channel>:<account>:<chat type>:<chat>[:<thread>]` in `store.kv`. */
  #chatSessionKey(channel: Channel, target: ChannelTarget): string {
    const { plugin } = channel.link;
    if (target?.chatType !== "direct" && target?.chatType !== "group") {
      throw new InvalidArgumentError('a chat target\'s chatType must be "direct" or "group"');
    }
    // The ids as the session keys have them: the same chat in another case is the same chat.
    const caseInsensitive = plugin.meta.caseInsensitiveIds ?? false;
    const id = (value: string) => encodeKeySegment(value, { caseInsensitive });
    const thread = target.threadId === undefined ? "" : `:${id(target.threadId)}`;
    return `channels:chat-session:${plugin.id}:${id(target.accountId ?? "default")}:${target.chatType}:${id(target.chatId)}${thread}`;
  }

  /** The session key stored under a chat's `channels:chat-session:` key, if any. */
  async #readChatSession(key: string): Promise<string | undefined> {
    const value = (await this.runtime.store.kv.get(key)) as { sessionKey?: unknown } | undefined;
    return typeof value?.sessionKey === "string" ? value.sessionKey : undefined;
  }

  /**
   * Remembers that the chat of `message` talks to `sessionKey` (for `deliver`'s `mirror`).
   * Written again only when the session changed or a day passed since the last write here,
   * so that a busy chat does not write on every message. A failed write is logged: the
   * message was accepted.
   */
  async #rememberChatSession(
    channel: Channel,
    message: InboundMessage,
    sessionKey: string,
  ): Promise<void> {
    try {
      const key = this.#chatSessionKey(channel, targetOf(message));
      const now = this.#now();
      const known = this.#chatSessions.get(key);
      if (
        known !== undefined &&
        known.sessionKey === sessionKey &&
        now - known.writtenAt < CHAT_SESSION_REFRESH_MS
      ) {
        return;
      }
      await this.runtime.store.kv.set(key, { sessionKey, at: now }, { ttlMs: CHAT_SESSION_TTL_MS });
      // Most recently written last; the oldest goes when the cache is full.
      this.#chatSessions.delete(key);
      this.#chatSessions.set(key, { sessionKey, writtenAt: now });
      if (this.#chatSessions.size > CHAT_SESSION_CACHE_SIZE) {
        this.#chatSessions.delete(this.#chatSessions.keys().next().value!);
      }
    } catch (error) {
      this.#logger.warn("could not record the session of a chat", {
        channel: channel.link.plugin.id,
        sessionKey,
        error,
      });
    }
  }

  /**
   * Injects a delivered message's text into the session its chat's messages go to, if one
   * is known and it is not the session that wrote it. Never rejects; stops waiting (not the
   * injection) when the manager stops.
   */
  async #mirror(
    channel: Channel,
    target: ChannelTarget,
    text: string,
    sourceSessionKey: string | undefined,
  ): Promise<void> {
    const channelId = channel.link.plugin.id;
    let sessionKey: string | undefined;
    try {
      sessionKey = await this.#readChatSession(this.#chatSessionKey(channel, target));
      if (sessionKey === undefined || sessionKey === sourceSessionKey) return;
      const injected = this.runtime.session(sessionKey).inject(text);
      // Awaited here, or, once the manager stopped waiting, left to the session to settle.
      injected.catch(() => undefined);
      await settledUnlessAborted(injected, this.#stopping.signal);
    } catch (error) {
      this.#logger.warn("a delivered message could not be mirrored into its chat's session", {
        channel: channelId,
        ...(sessionKey === undefined ? {} : { sessionKey }),
        error,
      });
    }
  }

  // ------------------------------------------------------------------ plumbing

  #channel(channelId: string): Channel {
    const channel = this.#channels.get(channelId);
    if (channel === undefined) throw new ChannelNotFoundError(channelId);
    return channel;
  }

  #track(promise: Promise<unknown>): void {
    const tracked = promise.catch((error: unknown) => {
      this.#logger.error("channel task failed", { error });
    });
    this.#background.add(tracked);
    void tracked.then(() => this.#background.delete(tracked));
  }

  #hooks(): ChannelHooks {
    return {
      logger: this.#logger,
      reconnect: this.#reconnect,
      random: this.#random,
      now: this.#now,
      context: (link, generation, signal) => this.#context(link, generation, signal),
      changed: (link) => {
        const channel = this.#channels.get(link.plugin.id);
        if (channel === undefined) return;
        if (link.state === "connected") channel.outbox.resume();
        else channel.outbox.pause();
        if (link.state !== "connecting") channel.firstAttempt.resolve();
      },
    };
  }

  /** A plugin's durable state: `channels:state:<channel>:<account>:<key>` in `store.kv`. */
  #stateStore(channelId: string): ChannelStateStore {
    const kv = this.runtime.store.kv;
    const key = (accountId: string, name: string) => {
      if (typeof accountId !== "string" || accountId.length === 0) {
        throw new InvalidArgumentError("channel state: accountId must be a non-empty string");
      }
      if (typeof name !== "string" || name.length === 0) {
        throw new InvalidArgumentError("channel state: key must be a non-empty string");
      }
      return `channels:state:${channelId}:${encodeKeySegment(accountId)}:${encodeKeySegment(name)}`;
    };
    return {
      get: (accountId, name) => kv.get(key(accountId, name)),
      set: async (accountId, name, value) => {
        await kv.set(key(accountId, name), value);
      },
      delete: (accountId, name) => kv.delete(key(accountId, name)),
    };
  }

  /** The manager's logger, with the channel id in every line. */
  #channelLogger(id: string): ChannelLogger {
    const logger = this.#logger;
    const withChannel = (fields?: Record<string, unknown>) => ({ channel: id, ...fields });
    return {
      debug: (m, f) => logger.debug(m, withChannel(f)),
      info: (m, f) => logger.info(m, withChannel(f)),
      warn: (m, f) => logger.warn(m, withChannel(f)),
      error: (m, f) => logger.error(m, withChannel(f)),
    };
  }

  #context(link: ChannelLink, generation: number, signal: AbortSignal): ChannelContext<unknown> {
    const channel = this.#channels.get(link.plugin.id)!;
    const id = link.plugin.id;
    /** `call()`, unless this context went stale. */
    const current = <T>(call: () => Promise<T>): Promise<T> =>
      signal.aborted || generation !== link.generation
        ? Promise.reject(
            new NoProcessError(
              `channel "${id}": this context is stale (the channel stopped or restarted)`,
            ),
          )
        : call();
    return {
      channel: id,
      config: link.config,
      signal,
      state: this.#stateStore(id),
      logger: this.#channelLogger(id),
      receive: (input) => current(() => this.#receive(channel, input)),
      admits: (input) => current(() => this.#admits(channel, input)),
      disconnected: (error) => {
        if (signal.aborted || generation !== link.generation) return;
        try {
          (link.actor as ChannelActor | undefined)?.cast({
            type: "disconnected",
            generation,
            error,
          });
        } catch {
          // A full mailbox: the actor is busy reconnecting already.
        }
      },
    };
  }

  #supervisorExited(reason: ExitReason): void {
    if (reason === "normal" || reason === "shutdown") return;
    this.#logger.error("the channel supervisor gave up; channels are down", { reason });
    for (const channel of this.#channels.values()) {
      channel.link.state = "failed";
      channel.link.lastError = reason;
      channel.outbox.pause();
      channel.firstAttempt.resolve();
    }
  }

  #resolve(entry: ChannelEntry, agentIds: Set<string>): ResolvedSettings {
    const where = `channel "${entry.plugin.id}"`;
    validateAccessPolicy(entry, where);
    const agentId = normalizeAgentId(entry.agentId ?? this.runtime.agents[0]!.id);
    if (!agentIds.has(agentId))
      throw new InvalidArgumentError(`${where}: unknown agent "${agentId}"`);
    const dmScope = entry.dmScope ?? "main";
    if (!DM_SCOPES.includes(dmScope)) {
      throw new InvalidArgumentError(`${where}: dmScope must be one of ${DM_SCOPES.join(", ")}`);
    }
    const number = (
      value: number | undefined,
      name: string,
      fallback: number,
      min: number,
      max = Number.MAX_SAFE_INTEGER,
    ) => {
      const n = value ?? fallback;
      if (!Number.isInteger(n) || n < min || n > max) {
        throw new InvalidArgumentError(
          `${where}: ${name} must be an integer from ${min} to ${max}, got ${n}`,
        );
      }
      return n;
    };
    if (entry.queueMode !== undefined && !QUEUE_MODES.includes(entry.queueMode)) {
      throw new InvalidArgumentError(
        `${where}: queueMode must be one of ${QUEUE_MODES.join(", ")}`,
      );
    }
    const streaming = entry.streaming ?? "off";
    if (streaming !== "off" && streaming !== "edit") {
      throw new InvalidArgumentError(`${where}: streaming must be "off" or "edit"`);
    }
    const sessionCommands = entry.sessionCommands ?? "all";
    if (!["all", "operators", "off"].includes(sessionCommands)) {
      throw new InvalidArgumentError(
        `${where}: sessionCommands must be "all", "operators" or "off"`,
      );
    }
    if (streaming === "edit" && (!entry.plugin.capabilities.edits || !entry.plugin.edit)) {
      throw new InvalidArgumentError(
        `${where}: streaming "edit" needs a channel that can edit its messages (capabilities.edits)`,
      );
    }
    return {
      ...entry,
      agentId,
      dmScope,
      streaming,
      sessionCommands,
      // Timers' delays: Node fires a longer one at once.
      streamThrottleMs: number(
        entry.streamThrottleMs,
        "streamThrottleMs",
        1_000,
        0,
        MAX_TIMER_DELAY_MS,
      ),
      debounceMs: number(entry.debounceMs, "debounceMs", 0, 0, MAX_TIMER_DELAY_MS),
      dedupeTtlMs: number(entry.dedupeTtlMs, "dedupeTtlMs", DAY_MS, 1),
      typingIntervalMs: number(
        entry.typingIntervalMs,
        "typingIntervalMs",
        4_000,
        100,
        MAX_TIMER_DELAY_MS,
      ),
      queueMode: entry.queueMode,
    };
  }
}

/** Whether a channel in this state runs: it is connected, or connecting or reconnecting. */
function isRunning(state: ChannelState): boolean {
  return state !== "stopped" && state !== "failed";
}

/** Where replies to a message go. */
function targetOf(message: InboundMessage): ChannelTarget {
  const target: ChannelTarget = {
    accountId: message.accountId,
    chatType: message.chatType,
    chatId: message.chatId,
  };
  if (message.threadId !== undefined) target.threadId = message.threadId;
  return target;
}

/** A channel's link to its plugin, before its first start. */
function newLink(entry: ChannelEntry): ChannelLink {
  return {
    plugin: entry.plugin,
    config: entry.config ?? {},
    state: "stopped",
    attempts: 0,
    generation: 0,
    pluginStarted: false,
    lastError: undefined,
    connectedAt: undefined,
    connection: undefined,
    actor: undefined,
  };
}

type ModelMedia =
  | { type: "image"; part: NonNullable<UserMessageInput["images"]>[number] }
  | { type: "file"; part: NonNullable<UserMessageInput["files"]>[number] }
  | { type: "text"; block: string };

/**
 * What of an attachment the model can be given: an image (PNG, JPEG, GIF, WebP) or a PDF
 * delivered inline, whose bytes are what they claim (the type is taken from the bytes), a
 * text file delivered inline (a text type, UTF-8: added to the message as an `<attachment>`
 * block, as the gateway's `chat.send` does), or an image of such a type at a URL anyone can
 * fetch. `undefined` for anything else, which the message names instead: a vendor refuses a
 * request with a file it cannot read, and the conversation would keep failing with it.
 */
function forModel(a: InboundAttachment): ModelMedia | undefined {
  if (a.data !== undefined) {
    const detected = detectBase64MediaType(a.data);
    if (detected === undefined) {
      if (a.mediaType === undefined || !isTextMediaType(a.mediaType)) return undefined;
      const text = decodeTextFile(Buffer.from(a.data, "base64"));
      if (text === undefined) return undefined;
      const type = baseMediaType(a.mediaType);
      return { type: "text", block: textAttachmentBlock(a.name ?? "attachment", type, text) };
    }
    if (MODEL_IMAGE_TYPES.has(detected)) {
      return { type: "image", part: { mediaType: detected, data: a.data } };
    }
    return {
      type: "file",
      part: {
        mediaType: detected,
        data: a.data,
        ...(a.name === undefined ? {} : { filename: a.name }),
      },
    };
  }
  if (
    a.kind === "image" &&
    a.url !== undefined &&
    a.privateUrl !== true &&
    a.mediaType !== undefined &&
    MODEL_IMAGE_TYPES.has(a.mediaType.toLowerCase())
  ) {
    return { type: "image", part: { mediaType: a.mediaType.toLowerCase(), url: a.url } };
  }
  return undefined;
}
