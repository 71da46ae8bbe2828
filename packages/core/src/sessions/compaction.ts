/**
 * Compaction: the older part of a session's history replaced, for the model, by a summary the
 * model writes of it. The transcript keeps every message; a compaction entry in it says which
 * messages the summary stands for, so that a revived session rebuilds the same history.
 */
import { InvalidArgumentError } from "../errors.js";
import type { JsonObject, JsonValue, ModelMessage, ModelUsage } from "../providers/types.js";
import { MAX_TIMER_DELAY_MS } from "../runtime/timers.js";
import { optionalString } from "../runtime/validate.js";
import type { TranscriptRecord } from "../store/types.js";

/** Options of `SessionHandle.compact()`. */
export interface CompactOptions {
  /** What the summary must keep in particular ("the decisions about the schema"). */
  instructions?: string;
  /**
   * How many of the most recent turns (a user message and what followed it) stay word for
   * word after the summary. Default 2.
   */
  keepTurns?: number;
  /**
   * Longest time for the summary, ms; then it is abandoned and nothing changes. Default the
   * agent's `timeoutMs`, else 5 minutes.
   */
  timeoutMs?: number;
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

/** What `SessionHandle.compact()` did. */
export interface CompactionResult {
  /**
   * `compacted`: the summary replaced the older messages. `skipped`: there was nothing old
   * enough to summarize (no more than `keepTurns` turns since the start or the last summary),
   * or the conversation was reset meanwhile; nothing changed.
   */
  status: "compacted" | "skipped";
  /** History messages the summary replaced (0 when skipped). */
  summarizedMessages: number;
  /** History messages kept word for word after it. */
  keptMessages: number;
  /** The summary, when compacted. */
  summary?: string;
  /** The summarizing model call's usage (counted in the session's usage and cost too). */
  usage: ModelUsage;
  costUsd: number;
}

/** The compaction entry of a transcript: the messages before it, but the last `kept`, are `summary`. */
export interface CompactionEntry extends JsonObject {
  summary: string;
  /** Message entries right before this one that stay. */
  kept: number;
  /** The `seq` of the first of them, when there are any: what a rebuild goes by. */
  firstKeptSeq?: number;
  /** Message entries it replaced (informative: a history read from a tail may hold fewer). */
  summarized: number;
  /** Who asked for it: `session.compact` (`manual`) or the agent's `autoCompact` (`auto`). */
  trigger?: "manual" | "auto";
  /** The history's estimated tokens before it and after it (informative). */
  tokensBefore?: number;
  tokensAfter?: number;
}

/** Default {@link CompactOptions.keepTurns}. */
export const DEFAULT_KEEP_TURNS = 2;
/** Default {@link CompactOptions.timeoutMs} when the agent has no `timeoutMs`. */
export const DEFAULT_COMPACTION_TIMEOUT_MS = 300_000;
/** Longest `instructions`, characters. */
const MAX_INSTRUCTIONS = 4_000;
/** A tool's input or output is shown to the summarizer up to this many characters. */
const TOOL_TEXT_CHARS = 1_500;

/** What the summary message says before the summary. */
const SUMMARY_HEADING = "[Summary of the earlier conversation]";

/** The system prompt of the summarizing call. */
export const COMPACTION_SYSTEM_PROMPT = [
  "You summarize a conversation between a user and an AI assistant so that the assistant can",
  "carry on from your summary alone, without the messages it replaces.",
  "Keep what the rest of the conversation may need: the user's goals and requests, decisions",
  "made, facts, names, numbers and preferences the user gave, what tools were used and what",
  "they found, work done and left to do, open questions. Leave out pleasantries and anything",
  "already settled that does not matter any more. Write in the conversation's language, as",
  "short plain text or a list, with no preamble.",
].join(" ");

/** Summary messages, so that a later compaction knows them (made here only). */
const summaries = new WeakSet<ModelMessage>();

/** The message that stands for the summarized part of a history. */
export function summaryMessage(summary: string): ModelMessage {
  const message: ModelMessage = {
    role: "user",
    content: [{ type: "text", text: `${SUMMARY_HEADING}\n${summary}` }],
  };
  summaries.add(message);
  return message;
}

/** Checks `compact()`'s options; returns them with defaults. */
export function checkCompactOptions(
  options: CompactOptions | undefined,
  agentTimeoutMs: number | undefined,
): Required<Omit<CompactOptions, "instructions" | "idempotencyKey">> & {
  instructions: string | undefined;
} {
  if (options !== undefined && (typeof options !== "object" || options === null)) {
    throw new InvalidArgumentError("compact options must be an object");
  }
  const keepTurns = options?.keepTurns ?? DEFAULT_KEEP_TURNS;
  if (!(Number.isInteger(keepTurns) && keepTurns >= 0 && keepTurns <= 1_000)) {
    throw new InvalidArgumentError(
      `keepTurns must be a whole number from 0 to 1000, got ${String(options?.keepTurns)}`,
    );
  }
  const timeoutMs = options?.timeoutMs ?? agentTimeoutMs ?? DEFAULT_COMPACTION_TIMEOUT_MS;
  if (!(Number.isInteger(timeoutMs) && timeoutMs >= 1 && timeoutMs <= MAX_TIMER_DELAY_MS)) {
    throw new InvalidArgumentError(
      `timeoutMs must be a whole number of milliseconds from 1 to ${MAX_TIMER_DELAY_MS}, got ${String(options?.timeoutMs)}`,
    );
  }
  const instructions = options?.instructions;
  if (
    instructions !== undefined &&
    (typeof instructions !== "string" || instructions.length > MAX_INSTRUCTIONS)
  ) {
    throw new InvalidArgumentError(
      `instructions must be a string of at most ${MAX_INSTRUCTIONS} characters`,
    );
  }
  optionalString(options?.idempotencyKey, "idempotencyKey", true);
  return {
    keepTurns,
    timeoutMs,
    instructions: instructions?.trim() === "" ? undefined : instructions?.trim(),
  };
}

/**
 * Where the summarized part of `history` ends: the start of the `keepTurns`-th last turn (a
 * turn starts at a user message). Undefined when there is nothing to summarize: no more than
 * `keepTurns` turns, or only an earlier summary before them.
 */
export function compactionCut(
  history: readonly ModelMessage[],
  keepTurns: number,
): number | undefined {
  const starts: number[] = [];
  history.forEach((message, i) => {
    if (message.role === "user" && !summaries.has(message)) starts.push(i);
  });
  const cut = keepTurns === 0 ? history.length : starts[starts.length - keepTurns];
  if (cut === undefined || cut === 0) return undefined;
  if (cut === 1 && summaries.has(history[0]!)) return undefined;
  return cut;
}

function clip(text: string, max: number): string {
  return text.length > max
    ? `${text.slice(0, max)}... [${text.length - max} more characters]`
    : text;
}

function jsonText(value: JsonValue | undefined): string {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? "";
  } catch {
    return String(value);
  }
}

/**
 * The messages to summarize as one text the model reads (tool calls and results shortened,
 * images and documents named, thinking left out), cut from the front to at most `maxChars`.
 */
export function renderForSummary(messages: readonly ModelMessage[], maxChars = Infinity): string {
  const blocks: string[] = [];
  for (const message of messages) {
    if (message.role === "user") {
      const text = message.content
        .map((part) =>
          part.type === "text"
            ? part.text
            : part.type === "image"
              ? "[an image]"
              : `[a document${part.filename === undefined ? "" : `: ${part.filename}`}]`,
        )
        .join("\n");
      blocks.push(summaries.has(message) ? text : `User: ${text}`);
    } else if (message.role === "assistant") {
      for (const part of message.content) {
        if (part.type === "text" && part.text.trim() !== "") blocks.push(`Assistant: ${part.text}`);
        else if (part.type === "tool-call") {
          blocks.push(
            `Assistant called the tool ${part.toolName} with ${clip(jsonText(part.input), TOOL_TEXT_CHARS)}`,
          );
        }
      }
    } else {
      for (const result of message.content) {
        blocks.push(
          `${result.isError ? "Error from" : "Result of"} ${result.toolName}: ${clip(jsonText(result.output), TOOL_TEXT_CHARS)}`,
        );
      }
    }
  }
  const text = blocks.join("\n\n");
  if (text.length <= maxChars) return text;
  const omitted = "[The beginning of the conversation is left out.]\n\n";
  return omitted + text.slice(text.length - Math.max(0, maxChars - omitted.length));
}

/** The user message of the summarizing call. */
export function summaryRequest(rendered: string, instructions: string | undefined): string {
  return [
    "The conversation to summarize:",
    "",
    "<conversation>",
    rendered,
    "</conversation>",
    "",
    instructions === undefined
      ? "Write the summary."
      : `Write the summary. Keep in particular: ${instructions}`,
  ].join("\n");
}

/**
 * A session's history from its live transcript records: the messages in order, each
 * compaction entry replacing the messages before it (but its last `kept`) with its summary.
 */
export function messagesOf(live: readonly TranscriptRecord[]): ModelMessage[] {
  let messages: ModelMessage[] = [];
  /** The `seq` of each of `messages` (a summary's is its compaction entry's). */
  let seqs: number[] = [];
  for (const record of live) {
    const entry = record.entry;
    if (entry.message !== undefined) {
      messages.push(entry.message as unknown as ModelMessage);
      seqs.push(record.seq);
      continue;
    }
    const compaction = entry.compaction as Partial<CompactionEntry> | undefined;
    if (
      compaction !== undefined &&
      typeof compaction.summary === "string" &&
      Number.isInteger(compaction.kept) &&
      (compaction.kept as number) >= 0
    ) {
      const kept = compaction.kept as number;
      const firstKeptSeq = compaction.firstKeptSeq;
      let keep: ModelMessage[];
      if (typeof firstKeptSeq === "number") {
        keep = [];
        for (let i = messages.length - 1; i >= 0 && seqs[i]! >= firstKeptSeq; i--) {
          keep.unshift(messages[i]!);
        }
      } else {
        keep = kept === 0 ? [] : messages.slice(-kept);
      }
      messages = [summaryMessage(compaction.summary), ...keep];
      seqs = [record.seq, ...seqs.slice(seqs.length - keep.length)];
    }
  }
  return messages;
}
