/**
 * Heartbeats as the protocol drives them (`set-heartbeats`, `wake`, `last-heartbeat`, the
 * `heartbeat` event), on core's `HeartbeatRunner`: a periodic turn in the default agent's main
 * session, with `wake` texts added to the next turn (or to one run at once). Off unless
 * `heartbeat.enabled` or `set-heartbeats` turns it on.
 */
import {
  type AgentRuntime,
  DEFAULT_HEARTBEAT_PROMPT,
  type HeartbeatOutcome,
  HeartbeatRunner,
  type HeartbeatTurn,
} from "@beamclaw/core";

/** Wake lines kept waiting for beats at most (the oldest go first). */
const MAX_PENDING_WAKES = 1_000;

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
  #stopped = true;
  #last: HeartbeatEvent | null = null;
  readonly #wakes: Array<{ text: string; sessionKey: string }> = [];
  #pending: Promise<unknown> = Promise.resolve();

  constructor(options: {
    runtime: AgentRuntime;
    settings: HeartbeatSettings;
    defaultAgentId: string;
    onBeat: (event: HeartbeatEvent) => void;
  }) {
    this.#runtime = options.runtime;
    this.#settings = options.settings;
    this.#onBeat = options.onBeat;
    this.#agentId = options.defaultAgentId;
    this.#enabled = options.settings.enabled;
    this.#sessionKey = `agent:${options.defaultAgentId}:main`;
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

  /** Stops the runner and waits for any one-off beat to end. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#pending.catch(() => undefined);
    const runner = this.#runner;
    this.#runner = null;
    await runner?.stop();
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
   * Queues `text` for the next beat of `sessionKey` (default: the heartbeat session); with
   * `now`, runs a beat of that session at once (in the background). `coalesced` when the same
   * text was already the newest waiting for that session (it is not queued twice).
   */
  wake(text: string, now: boolean, sessionKey: string = this.#sessionKey): "queued" | "coalesced" {
    let outcome: "queued" | "coalesced" = "queued";
    const newest = this.#wakes.findLast((w) => w.sessionKey === sessionKey);
    if (newest?.text === text) outcome = "coalesced";
    else {
      // Bounded: a flood of distinct wakes keeps the newest.
      if (this.#wakes.length >= MAX_PENDING_WAKES) this.#wakes.shift();
      this.#wakes.push({ text, sessionKey });
    }
    if (!now || this.#stopped) return outcome;
    this.#pending = this.#pending.then(() => this.#beatNow(sessionKey)).catch(() => undefined);
    return outcome;
  }

  async #beatNow(sessionKey: string): Promise<void> {
    if (this.#stopped) return;
    if (this.#runner !== null && sessionKey === this.#sessionKey) {
      await this.#runner.runNow();
      return;
    }
    // A one-off runner for this beat: its timer is cleared when it stops right after.
    const once = this.#newRunner(sessionKey);
    await once.start();
    try {
      await once.runNow();
    } finally {
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
    const wakes: string[] = [];
    for (let i = this.#wakes.length - 1; i >= 0; i--) {
      if (this.#wakes[i]!.sessionKey !== session.key && this.#wakes[i]!.sessionKey !== sessionKey)
        continue;
      wakes.unshift(this.#wakes[i]!.text);
      this.#wakes.splice(i, 1);
    }
    const text =
      wakes.length === 0
        ? prompt
        : `${prompt}\n\nSystem events:\n${wakes.map((w) => `- ${w}`).join("\n")}`;
    const run = await session.send(
      { text, sender: "heartbeat" },
      // No idempotency key: each beat is new, and a message without one leaves the queue
      // without a dedupe record.
      { signal },
    );
    const result = await run.result;
    if (result.status === "completed" || result.status === "max-steps") {
      return { status: "ok", text: result.text };
    }
    return { status: "error", error: result.error?.message ?? `the turn ended ${result.status}` };
  };

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
      ...(outcome.type === "delivered" ? { preview: outcome.text.slice(0, 200) } : {}),
      ...(outcome.type === "error" ? { reason: outcome.error } : {}),
    };
    this.#last = event;
    this.#onBeat(event);
  }
}
