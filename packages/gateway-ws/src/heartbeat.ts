/**
 * Heartbeats as the protocol drives them (`set-heartbeats`, `wake`, `last-heartbeat`, the
 * `heartbeat` event), on core's `HeartbeatRunner`: a periodic turn in the default agent's main
 * session, with `wake` texts added to the next turn (or to one run at once). Off unless
 * `heartbeat.enabled` or `set-heartbeats` turns it on.
 *
 * Wake texts wait in the store's key/value space, one key each
 * (`heartbeat:wake:<session key, URI-encoded>:<ordered id>`, kept {@link WAKE_TTL_MS}), so a
 * restart loses none and every gateway of a store sees them; a beat claims each by deleting
 * it (one beat gets a line, whichever gateway runs it) and puts them back if its message
 * could not be sent, or if its run ended without the model answering at all (a provider
 * error, a stop or a time limit before the first reply): the next beat carries them again.
 * A run that got as far as one model reply keeps them claimed (no line is handed twice).
 */
import {
  type AgentRuntime,
  type BeamClawConfig,
  DEFAULT_HEARTBEAT_PROMPT,
  type HeartbeatOutcome,
  HeartbeatRunner,
  type HeartbeatTurn,
  heartbeatPreview,
  parseSessionKey,
} from "@beamclaw/core";
import type { LivenessSettings } from "./liveness.js";

/** Wake lines kept waiting for one session's beats at most (the oldest go first). */
export const MAX_PENDING_WAKES = 1_000;
/** How long a wake line waits for a beat before the store lets it go: a day. */
export const WAKE_TTL_MS = 24 * 60 * 60 * 1000;
const WAKE_PREFIX = "heartbeat:wake:";
/**
 * Orders the wake lines this process writes within one millisecond (lines of two processes
 * in the same millisecond keep no order between them).
 */
let wakeSeq = 0;

/** The key prefix of a session's waiting wake lines (one session's only: its key is encoded). */
export function wakePrefix(sessionKey: string): string {
  return `${WAKE_PREFIX}${encodeURIComponent(sessionKey)}:`;
}

/** A waiting wake line as stored. */
interface StoredWake {
  text: string;
  at: number;
}

function isStoredWake(value: unknown): value is StoredWake {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as StoredWake).text === "string" &&
    typeof (value as StoredWake).at === "number"
  );
}

/** The `heartbeat` event payload and the `last-heartbeat` result. */
export interface HeartbeatEvent {
  ts: number;
  /** `ok-token`: the agent answered HEARTBEAT_OK (nothing to do); `sent`: it said something. */
  status: "sent" | "ok-token" | "skipped" | "failed";
  sessionKey?: string;
  preview?: string;
  durationMs?: number;
  reason?: string;
}

/** Heartbeat settings (the `heartbeat` section of the configuration). */
export interface HeartbeatSettings {
  enabled: boolean;
  everyMs: number;
  activeHours?: { start: string; end: string; timezone?: string | undefined } | undefined;
  /** What the agent is asked at each beat. Default core's `DEFAULT_HEARTBEAT_PROMPT`. */
  prompt?: string;
  /**
   * A `HEARTBEAT.md` checklist appended to the prompt, read at every beat (an edit counts from
   * the next one; a missing file leaves the prompt alone; one of only headings and blank
   * lines skips the beat, unless wake lines wait for it). A relative path is the process's working directory's;
   * `beamclaw gateway` resolves the configuration's against the config file's directory.
   */
  heartbeatFile?: string;
  /**
   * Time limit of one beat's turn, ms: a turn still running then is aborted and the beat
   * reported `failed`, so a turn that never ends does not keep every later beat busy
   * (core's `HeartbeatRunner` `turnTimeoutMs`). Default: no limit.
   */
  turnTimeoutMs?: number;
}

/**
 * The gateway's liveness settings from a configuration: `gateway.presence`, with the
 * deprecated `heartbeat.presenceIntervalMs` and `heartbeat.missedBeatsOffline` filling in
 * what it does not set. `gateway.presence: false` is off whatever the aliases say; undefined
 * when neither sets anything (the gateway's defaults then).
 */
export function configuredPresence(
  config: Pick<BeamClawConfig, "gateway" | "heartbeat"> | undefined,
): Partial<LivenessSettings> | false | undefined {
  const presence = config?.gateway?.presence;
  if (presence === false) return false;
  const intervalMs = presence?.intervalMs ?? config?.heartbeat?.presenceIntervalMs;
  const missedBeatsOffline = presence?.missedBeatsOffline ?? config?.heartbeat?.missedBeatsOffline;
  if (presence === undefined && intervalMs === undefined && missedBeatsOffline === undefined) {
    return undefined;
  }
  return {
    ...(intervalMs === undefined ? {} : { intervalMs }),
    ...(missedBeatsOffline === undefined ? {} : { missedBeatsOffline }),
  };
}

/** See the module comment. */
export class HeartbeatService {
  readonly #runtime: AgentRuntime;
  readonly #settings: HeartbeatSettings;
  readonly #onBeat: (event: HeartbeatEvent) => void;
  readonly #agentId: string;
  readonly #sessionKey: string;
  #enabled: boolean;
  #runner: HeartbeatRunner | null = null;
  /** The one-off runners of `wake(…, true)` beats of other sessions, while their beat runs. */
  readonly #onceRunners = new Set<HeartbeatRunner>();
  #stopped = true;
  #last: HeartbeatEvent | null = null;
  #pending: Promise<unknown> = Promise.resolve();
  readonly #now: () => number;

  constructor(options: {
    runtime: AgentRuntime;
    settings: HeartbeatSettings;
    defaultAgentId: string;
    onBeat: (event: HeartbeatEvent) => void;
    now?: () => number;
  }) {
    this.#runtime = options.runtime;
    this.#settings = options.settings;
    this.#onBeat = options.onBeat;
    this.#agentId = options.defaultAgentId;
    this.#enabled = options.settings.enabled;
    this.#sessionKey = `agent:${options.defaultAgentId}:main`;
    this.#now = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  get everyMs(): number {
    return this.#settings.everyMs;
  }

  get sessionKey(): string {
    return this.#sessionKey;
  }

  get prompt(): string {
    return this.#settings.prompt ?? DEFAULT_HEARTBEAT_PROMPT;
  }

  /** Starts the periodic runner if heartbeats are on. */
  async start(): Promise<void> {
    this.#stopped = false;
    if (this.#enabled) await this.#startRunner();
  }

  /**
   * Stops the runner and any beat in flight: a `wake(…, true)` beat still running is aborted
   * (its turn's signal), not waited for, and reports nothing after.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    const runner = this.#runner;
    this.#runner = null;
    // Stopping a runner aborts its turn and ends its `runNow`, so the beats queued behind it end.
    await Promise.all([runner?.stop(), ...[...this.#onceRunners].map((once) => once.stop())]);
    await this.#pending.catch(() => undefined);
  }

  /** Turns the periodic heartbeat on or off. */
  async setEnabled(enabled: boolean): Promise<void> {
    this.#enabled = enabled;
    if (this.#stopped) return;
    if (enabled && this.#runner === null) await this.#startRunner();
    if (!enabled && this.#runner !== null) {
      const runner = this.#runner;
      this.#runner = null;
      await runner.stop();
    }
  }

  last(): HeartbeatEvent | null {
    return this.#last;
  }

  /**
   * Queues `text` for the next beat of `sessionKey` (default: the heartbeat session), in the
   * store; with `now`, runs a beat of that session at once (in the background). `coalesced`
   * when the same text is already the newest waiting for that session (it is not queued
   * twice). Past {@link MAX_PENDING_WAKES} lines waiting for a session, the oldest go.
   *
   * @throws StoreError when the store refuses the line (nothing is queued then).
   */
  async wake(
    text: string,
    now: boolean,
    sessionKey: string = this.#sessionKey,
  ): Promise<"queued" | "coalesced"> {
    const key = parseSessionKey(sessionKey).key;
    const prefix = wakePrefix(key);
    const kv = this.#runtime.store.kv;
    const waiting = await kv.keys(prefix);
    const newestKey = waiting.at(-1);
    const newest = newestKey === undefined ? undefined : await kv.get(newestKey);
    let outcome: "queued" | "coalesced" = "coalesced";
    if (!isStoredWake(newest) || newest.text !== text) {
      outcome = "queued";
      const at = this.#now();
      const id = `${String(at).padStart(15, "0")}-${String(wakeSeq++ % 1e6).padStart(6, "0")}-${Math.random().toString(36).slice(2, 8)}`;
      await kv.set(`${prefix}${id}`, { text, at }, { ttlMs: WAKE_TTL_MS });
      // Bounded: a flood of distinct wakes keeps the newest.
      for (const old of waiting.slice(0, Math.max(0, waiting.length + 1 - MAX_PENDING_WAKES))) {
        await kv.delete(old);
      }
    }
    if (now && !this.#stopped) {
      this.#pending = this.#pending.then(() => this.#beatNow(key)).catch(() => undefined);
    }
    return outcome;
  }

  /** The wake lines waiting for `sessionKey`, oldest first (read, not claimed). */
  async pendingWakes(sessionKey: string = this.#sessionKey): Promise<string[]> {
    const kv = this.#runtime.store.kv;
    const texts: string[] = [];
    for (const key of await kv.keys(wakePrefix(parseSessionKey(sessionKey).key))) {
      const line = await kv.get(key);
      if (isStoredWake(line)) texts.push(line.text);
    }
    return texts;
  }

  /**
   * Takes the wake lines waiting for a session, oldest first: each is claimed by deleting it,
   * so that of two beats (of two gateways) only one gets a line.
   */
  async #claimWakes(sessionKey: string): Promise<Array<{ key: string; line: StoredWake }>> {
    const kv = this.#runtime.store.kv;
    const claimed: Array<{ key: string; line: StoredWake }> = [];
    for (const key of await kv.keys(wakePrefix(sessionKey))) {
      const line = await kv.get(key);
      if (!(await kv.delete(key))) continue;
      if (isStoredWake(line)) claimed.push({ key, line });
    }
    return claimed;
  }

  async #beatNow(sessionKey: string): Promise<void> {
    if (this.#stopped) return;
    if (this.#runner !== null && sessionKey === this.#sessionKey) {
      await this.#runner.runNow();
      return;
    }
    // A one-off runner for this beat: its timer is cleared when it stops right after.
    const once = this.#newRunner(sessionKey);
    this.#onceRunners.add(once);
    try {
      await once.start();
      if (!this.#stopped) await once.runNow();
    } finally {
      this.#onceRunners.delete(once);
      await once.stop();
    }
  }

  async #startRunner(): Promise<void> {
    const runner = this.#newRunner(this.#sessionKey);
    this.#runner = runner;
    await runner.start();
  }

  #newRunner(sessionKey: string): HeartbeatRunner {
    const agentId = this.#runtime.session(sessionKey).agentId;
    const runner = new HeartbeatRunner({
      agentId,
      sessionKey,
      runTurn: this.#turn,
      everyMs: this.#settings.everyMs,
      prompt: this.prompt,
      ...(this.#settings.turnTimeoutMs === undefined
        ? {}
        : { turnTimeoutMs: this.#settings.turnTimeoutMs }),
      ...(this.#settings.heartbeatFile === undefined
        ? {}
        : {
            heartbeatFile: this.#settings.heartbeatFile,
            // Wake lines need their beat even when the checklist is empty (headings only).
            hasPendingEvents: async (key: string) => (await this.pendingWakes(key)).length > 0,
          }),
      ...(this.#settings.activeHours === undefined
        ? {}
        : {
            activeHours: {
              start: this.#settings.activeHours.start,
              end: this.#settings.activeHours.end,
              ...(this.#settings.activeHours.timezone === undefined
                ? {}
                : { timezone: this.#settings.activeHours.timezone }),
            },
          }),
    });
    runner.events.on("heartbeat", (outcome) => this.#record(outcome, sessionKey));
    return runner;
  }

  /** One heartbeat turn: the prompt plus the session's queued wake texts, sent to the session. */
  readonly #turn: HeartbeatTurn = async ({ sessionKey, prompt, signal }) => {
    const session = this.#runtime.session(sessionKey);
    if ((await session.info()).activeRunId !== undefined) return { status: "skipped" };
    const claimed = await this.#claimWakes(session.key);
    const text =
      claimed.length === 0
        ? prompt
        : `${prompt}\n\nSystem events:\n${claimed.map((w) => `- ${w.line.text}`).join("\n")}`;
    let run: Awaited<ReturnType<typeof session.send>>;
    try {
      run = await session.send(
        { text, sender: "heartbeat" },
        // No idempotency key: each beat is new, and a message without one leaves the queue
        // without a dedupe record.
        { signal },
      );
    } catch (error) {
      // Not sent: the lines wait for the next beat.
      await this.#putBack(claimed);
      throw error;
    }
    const result = await run.result;
    if (result.status === "completed" || result.status === "max-steps") {
      return { status: "ok", text: result.text };
    }
    // Failed (or aborted) before the model said anything: the lines wait for the next beat.
    // Once it replied, even in part, they count as handed over and are not sent twice.
    if (!result.messages.some((m) => m.role === "assistant")) await this.#putBack(claimed);
    return { status: "error", error: result.error?.message ?? `the turn ended ${result.status}` };
  };

  /** Puts claimed wake lines back under their own keys (so a line is never there twice). */
  async #putBack(claimed: ReadonlyArray<{ key: string; line: StoredWake }>): Promise<void> {
    const kv = this.#runtime.store.kv;
    for (const { key, line } of claimed) {
      await kv.set(key, { ...line }, { ttlMs: WAKE_TTL_MS }).catch(() => undefined);
    }
  }

  #record(outcome: HeartbeatOutcome, sessionKey: string): void {
    const event: HeartbeatEvent = {
      ts: outcome.at,
      status:
        outcome.type === "suppressed"
          ? "ok-token"
          : outcome.type === "delivered"
            ? "sent"
            : outcome.type === "skipped"
              ? "skipped"
              : "failed",
      sessionKey,
      ...(outcome.type === "skipped"
        ? { reason: outcome.reason }
        : { durationMs: outcome.durationMs }),
      ...(outcome.type === "delivered" ? { preview: heartbeatPreview(outcome.text, 200) } : {}),
      ...(outcome.type === "error" ? { reason: outcome.error } : {}),
    };
    this.#last = event;
    this.#onBeat(event);
  }
}
