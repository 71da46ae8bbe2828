/**
 * What the host itself says in a chat (pairing codes, approval prompts, command answers).
 * Every text can be replaced, e.g. to translate it.
 */
import type { JsonValue, ThinkingLevel } from "../providers/types.js";
import type { ApprovalDecision } from "../tools/approval.js";

/** An approval request as shown in a chat. */
export interface ApprovalPrompt {
  /** What to type after `/approve` or `/deny`: the first 8 characters of the request id. */
  shortId: string;
  toolName: string;
  input: JsonValue;
  /** Epoch ms. */
  expiresAt: number;
  /** Epoch ms, now. */
  now: number;
}

/** The host's texts. */
export interface ChannelTexts {
  /** To an unknown sender under DM policy `pairing`, when a new code was made. */
  pairingRequest(code: string, expiresInMinutes: number): string;
  /** To a sender whose pairing an operator approved. */
  pairingApproved(): string;
  /** Posted to the chat of a run that waits for a tool approval. */
  approvalRequest(prompt: ApprovalPrompt): string;
  /** Appended to the prompt (edited, where the channel can edit) once answered. */
  approvalAnswered(decision: ApprovalDecision, by: string): string;
  /** To an operator whose `/approve` or `/deny` matched no pending request. */
  approvalUnknown(shortId: string): string;
  /** The reply when a run failed without an answer. */
  runFailed(error: { code: string; message: string }): string;
  /** After `/new` (or `/reset`): the conversation was cleared. */
  sessionReset(): string;
  /** After `/stop`: whether a run was stopped. */
  runStopped(stopped: boolean): string;
  /** The answer to `/status`. */
  sessionStatus(status: SessionStatusView): string;
  /** After `/think <level>`, or the answer to `/think` alone (`changed` false). */
  thinkingLevel(level: ThinkingLevel, changed: boolean): string;
  /** The answer to `/think` with a word that is not a level. */
  thinkingUsage(given: string): string;
  /** After `/compact`: how many messages the summary replaced (0: nothing to compact yet). */
  compacted(summarizedMessages: number): string;
}

/** A session as `/status` shows it. */
export interface SessionStatusView {
  /** `provider/model`: the session's override or its agent's model. */
  model: string;
  thinkingLevel: ThinkingLevel;
  /** Whether a run is going on now. */
  running: boolean;
  /** Messages waiting for it. */
  queued: number;
  runs: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

function preview(input: JsonValue): string {
  const text = typeof input === "string" ? input : JSON.stringify(input);
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

/** The default (English) texts. */
export const defaultChannelTexts: ChannelTexts = {
  pairingRequest: (code, minutes) =>
    `This assistant only talks with people its owner approved. Your pairing code is ${code} (valid for ${minutes} minutes): send it to the owner to be let in.`,
  pairingApproved: () => "You are approved: the assistant will answer your messages from now on.",
  approvalRequest: ({ shortId, toolName, input, expiresAt, now }) =>
    [
      `Approval needed: the agent wants to run ${toolName} with ${preview(input)}`,
      "Reply with one of:",
      `/approve ${shortId}`,
      `/approve ${shortId} always`,
      `/deny ${shortId}`,
      `(denied by default in ${Math.max(1, Math.round((expiresAt - now) / 1000))} s)`,
    ].join("\n"),
  approvalAnswered: (decision, by) =>
    decision === "deny"
      ? `Denied by ${by}.`
      : `Allowed${decision === "allow-always" ? " always" : " once"} by ${by}.`,
  approvalUnknown: (shortId) => `No pending approval matches "${shortId}" (answered or expired).`,
  runFailed: (error) => `Sorry, that failed (${error.code}): ${error.message}`,
  sessionReset: () => "Started a new conversation: the earlier messages are forgotten.",
  runStopped: (stopped) => (stopped ? "Stopped." : "Nothing is running."),
  sessionStatus: (s) =>
    [
      `Model: ${s.model}, thinking ${s.thinkingLevel}`,
      s.running ? `Working on a reply${s.queued > 0 ? `, ${s.queued} more waiting` : ""}` : "Idle",
      `${s.runs} ${s.runs === 1 ? "reply" : "replies"} so far: ${s.inputTokens + s.outputTokens} tokens, $${s.costUsd.toFixed(4)}`,
    ].join("\n"),
  thinkingLevel: (level, changed) =>
    changed ? `Thinking is ${level} from now on.` : `Thinking is ${level}.`,
  thinkingUsage: (given) =>
    `"${given}" is not a thinking level: use /think off, minimal, low, medium or high.`,
  compacted: (n) =>
    n === 0
      ? "Nothing to compact yet: the conversation is short."
      : `Compacted: the ${n} earliest messages are now a summary.`,
};

const THINKING_LEVELS: readonly string[] = ["off", "minimal", "low", "medium", "high"];

/** A command anyone allowed to talk to the agent may type about their own conversation. */
export type SessionCommand =
  | { kind: "new" }
  | { kind: "stop" }
  | { kind: "status" }
  | { kind: "think"; level?: ThinkingLevel; invalid?: string }
  | { kind: "compact"; instructions?: string };

/**
 * Reads a session command: `/new` or `/reset` (clear the conversation), `/stop` (abort the
 * reply being written), `/status`, `/think [off|minimal|low|medium|high]`, `/compact [what to
 * keep]` (summarize the older part of the conversation). A command may be
 * addressed to a bot (`/new@MyBot`, as Telegram writes it in groups). Anything else is
 * `undefined` (and goes to the agent as text).
 *
 * @example
 * ```ts
 * parseSessionCommand("/think high"); // { kind: "think", level: "high" }
 * parseSessionCommand("/new please"); // undefined: commands take no other words
 * ```
 */
export function parseSessionCommand(text: string): SessionCommand | undefined {
  const words = text.trim().split(/\s+/);
  const [head, first] = words;
  if (head === undefined || !head.startsWith("/")) return undefined;
  const name = head.toLowerCase().replace(/@\S*$/, "");
  if (name === "/compact") {
    const instructions = text.trim().slice(head.length).trim();
    return instructions === "" ? { kind: "compact" } : { kind: "compact", instructions };
  }
  if (words.length === 1) {
    if (name === "/new" || name === "/reset") return { kind: "new" };
    if (name === "/stop") return { kind: "stop" };
    if (name === "/status") return { kind: "status" };
    if (name === "/think") return { kind: "think" };
    return undefined;
  }
  if (name === "/think" && words.length === 2 && first !== undefined) {
    const level = first.toLowerCase();
    return THINKING_LEVELS.includes(level)
      ? { kind: "think", level: level as ThinkingLevel }
      : { kind: "think", invalid: first };
  }
  return undefined;
}

/** A command an operator typed in a chat. */
export type ChannelCommand =
  | { kind: "approve"; id: string; decision: ApprovalDecision }
  | { kind: "pair"; action: "approve" | "reject"; code: string }
  | { kind: "pair-list" };

/**
 * Reads an operator command: `/approve <id> [once|always]`, `/deny <id>`,
 * `/pair approve <code>`, `/pair reject <code>`, `/pair list`. Anything else is `undefined`
 * (and goes to the agent as text).
 *
 * @example
 * ```ts
 * parseChannelCommand("/approve 1a2b3c4d always"); // { kind: "approve", id: "1a2b3c4d", decision: "allow-always" }
 * ```
 */
export function parseChannelCommand(text: string): ChannelCommand | undefined {
  const words = text.trim().split(/\s+/);
  const [head, first, second] = words;
  if (head === undefined) return undefined;
  const name = head.toLowerCase().replace(/@\S*$/, ""); // "/approve@MyBot" in Telegram groups
  if (name === "/approve" && first !== undefined && words.length <= 3) {
    const mode = second?.toLowerCase();
    if (mode !== undefined && mode !== "once" && mode !== "always") return undefined;
    return {
      kind: "approve",
      id: first,
      decision: mode === "always" ? "allow-always" : "allow-once",
    };
  }
  if (name === "/deny" && first !== undefined && words.length === 2) {
    return { kind: "approve", id: first, decision: "deny" };
  }
  if (name === "/pair") {
    const action = first?.toLowerCase();
    if (action === "list" && words.length === 2) return { kind: "pair-list" };
    if (
      (action === "approve" || action === "reject") &&
      second !== undefined &&
      words.length === 3
    ) {
      return { kind: "pair", action, code: second };
    }
  }
  return undefined;
}

/** One argument of a {@link ChatCommandInfo}. */
export interface ChatCommandArg {
  name: string;
  description: string;
  type: "string";
  /** The command needs it. */
  required?: boolean;
  /** The words it takes, when it takes only some. */
  choices?: readonly string[];
}

/**
 * A command people can type in a chat a `ChannelManager` serves, described for clients
 * (command menus, autocomplete; the gateway's `commands.list`).
 */
export interface ChatCommandInfo {
  /** Its name, e.g. `new`. */
  name: string;
  /** How it is typed: `/new`, and the same command's other spellings (`/reset`). */
  textAliases: readonly string[];
  description: string;
  category: "session" | "options" | "status" | "management" | "tools";
  /** Only the channel's `operators` may use it (others' `/approve` goes to the agent as text). */
  operatorOnly: boolean;
  args: readonly ChatCommandArg[];
}

/**
 * Every chat command, as {@link parseSessionCommand} and {@link parseChannelCommand} read
 * them: the session commands (`/new`, `/stop`, `/status`, `/think`, `/compact`; who may use
 * them is the manager's `sessionCommands` option) and the operators' (`/approve`, `/deny`,
 * `/pair`).
 */
export const CHAT_COMMANDS: readonly ChatCommandInfo[] = Object.freeze([
  {
    name: "new",
    textAliases: ["/new", "/reset"],
    description: "Start the conversation afresh: the agent forgets what was said before.",
    category: "session",
    operatorOnly: false,
    args: [],
  },
  {
    name: "stop",
    textAliases: ["/stop"],
    description: "Stop the reply being written.",
    category: "session",
    operatorOnly: false,
    args: [],
  },
  {
    name: "status",
    textAliases: ["/status"],
    description:
      "Show the session's model, thinking level, whether it is busy, runs, tokens and cost.",
    category: "status",
    operatorOnly: false,
    args: [],
  },
  {
    name: "think",
    textAliases: ["/think"],
    description: "Show the thinking level, or set it.",
    category: "options",
    operatorOnly: false,
    args: [
      { name: "level", description: "The new level.", type: "string", choices: THINKING_LEVELS },
    ],
  },
  {
    name: "compact",
    textAliases: ["/compact"],
    description: "Summarize the older part of the conversation to make room.",
    category: "session",
    operatorOnly: false,
    args: [{ name: "instructions", description: "What the summary must keep.", type: "string" }],
  },
  {
    name: "approve",
    textAliases: ["/approve"],
    description: "Let a tool call that waits for approval run, once or always.",
    category: "tools",
    operatorOnly: true,
    args: [
      { name: "id", description: "The request's short id.", type: "string", required: true },
      {
        name: "mode",
        description: "For this call only, or always.",
        type: "string",
        choices: ["once", "always"],
      },
    ],
  },
  {
    name: "deny",
    textAliases: ["/deny"],
    description: "Refuse a tool call that waits for approval.",
    category: "tools",
    operatorOnly: true,
    args: [{ name: "id", description: "The request's short id.", type: "string", required: true }],
  },
  {
    name: "pair",
    textAliases: ["/pair"],
    description: "List pending pairing requests, or approve or reject one by its code.",
    category: "management",
    operatorOnly: true,
    args: [
      {
        name: "action",
        description: "What to do.",
        type: "string",
        required: true,
        choices: ["list", "approve", "reject"],
      },
      { name: "code", description: "The pairing code (approve, reject).", type: "string" },
    ],
  },
]);
