/**
 * One turn of the OpenAI-compatible endpoints, whatever their wire shape: a conversation (in
 * Chat Completions' message shape, which `/v1/responses` converts its items to) runs either
 * as a turn in a BeamClaw session (the agent's own tools, history kept server-side) or, when
 * the request brings function tools of its own, as one model call whose tool calls go back
 * to the client. A {@link Dialect} writes the answer: chat completion chunks or Responses API
 * events.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type {
  AgentDefinition,
  JsonValue,
  ModelMessage,
  ModelRequest,
  ModelResponseFormat,
  ModelToolDefinition,
  ModelUsage,
  RunResult,
  UserMessageInput,
} from "@beamclaw/core";
import type { GatewayHub } from "../hub.js";
import { type ParsedAttachments, transcribeAudio } from "../methods/session-helpers.js";
import { isBudgetExceeded, isOverload } from "../retry-after.js";
import {
  dataUrl,
  RequestError,
  runFailure,
  sendRequestFailure,
  sessionUser,
  startSse,
} from "./openai-common.js";
import { header, openAiError, sendJson, traceContextOf } from "./util.js";

/** A content part of a Chat Completions message. */
export type OpenAiContentPart = {
  type?: string;
  text?: string;
  image_url?: { url?: string } | string;
  file?: { filename?: string; file_data?: string; file_id?: string };
  input_audio?: { data?: string; format?: string };
};

/** A Chat Completions message (checked before it gets here). */
export interface OpenAiMessage {
  role?: string;
  content?: string | OpenAiContentPart[] | null;
  name?: string;
  tool_calls?: Array<{
    id?: string;
    type?: string;
    function?: { name?: string; arguments?: string };
  }>;
  tool_call_id?: string;
}

/** A call of one of the client's function tools. */
export interface ClientToolCall {
  id: string;
  name: string;
  input: JsonValue;
}

/**
 * Why an answer ended: `max_steps` is a session turn that reached the agent's step limit,
 * `length` the output token limit.
 */
export type FinishReason = "stop" | "length" | "content_filter" | "tool_calls" | "max_steps";

/**
 * The `code` of the error a streamed answer ends with when the model's answer failed after part
 * of it was sent and the provider chain fell back to answer anew: a stream cannot take text
 * back, and the fallback's answer written after it would repeat it as if new. The run is
 * aborted; the request can be sent again.
 */
export const ANSWER_DISCARDED = "ANSWER_DISCARDED";

/** The message of an {@link ANSWER_DISCARDED} error; `reason` is why the attempt failed. */
function answerDiscarded(reason: string): string {
  const why = reason.length > 300 ? `${reason.slice(0, 297)}...` : reason;
  return (
    `the model's answer failed after part of it was streamed (${why}); a fallback would ` +
    "answer again from the start, which a stream cannot show without repeating what it " +
    "sent: the answer ends here, send the request again"
  );
}

/** A finished answer. */
export interface Answer {
  /**
   * The text (a structured answer's validated JSON). A session turn's is every step's text,
   * a blank line between them (see {@link STEP_SEPARATOR}), as its stream sends it.
   */
  text: string;
  calls: ClientToolCall[];
  usage: ModelUsage | undefined;
  finish: FinishReason;
}

/** The events of one streamed answer, after {@link Dialect.stream} opened it. */
export interface AnswerStream {
  text(delta: string): void;
  /** A client tool call, the `index`th of the answer. */
  toolCall(call: ClientToolCall, index: number): void;
  /**
   * The answer is complete: writes its last events and ends the response (after what the
   * dialect does with the answer first, such as keeping it).
   */
  done(answer: Answer): void | Promise<void>;
  /** The run failed: writes the error and ends the response. */
  fail(message: string, code: string | null): void;
}

/** How an endpoint writes its answers. */
export interface Dialect {
  /**
   * Names the sessions (`agent:<id>:<keyword>-user:<user>`, `agent:<id>:<keyword>:<uuid>`),
   * the transcript's sender (`http:<keyword>`) and the usage of client-tool calls
   * (`agent:<id>:<keyword>-tools`).
   */
  keyword: string;
  /** The answer's id, from the run's id (or a fresh UUID). */
  idOf(seed: string): string;
  /** Opens a stream (the SSE headers are sent) and writes its first events. */
  stream(res: ServerResponse, id: string, created: number): AnswerStream;
  /** The JSON body of a non-streamed answer (once the dialect has done with it). */
  body(id: string, created: number, answer: Answer): unknown | Promise<unknown>;
}

/** One turn, as both endpoints ask for it. */
export interface TurnRequest {
  agent: AgentDefinition;
  /** The conversation, in Chat Completions' message shape. */
  messages: OpenAiMessage[];
  stream: boolean;
  /** The request's `user`: a stable session. */
  user: unknown;
  /** A JSON answer (`response_format`, `text.format`). */
  format: ModelResponseFormat | undefined;
  /** The client's function tools: one model call with them instead of a session turn. */
  tools: ModelToolDefinition[];
  toolChoice?: ModelRequest["toolChoice"];
  maxOutputTokens?: number;
  temperature?: number;
  /**
   * Instructions for this turn only (the Responses API's `instructions`). A client-tools call
   * and a fresh session get them as a system message; a kept session, which is sent only the
   * last user message, gets them as a `System:` line before it.
   */
  instructions?: string;
}

/** The session a request names with its header (`x-beamclaw-session-key`, or OpenClaw's). */
export function sessionKeyHeader(req: IncomingMessage): string | undefined {
  return header(req, "x-beamclaw-session-key") ?? header(req, "x-openclaw-session-key");
}

/**
 * Whether a session turn of this request runs in a kept session (its header or its `user`)
 * rather than a fresh one.
 */
export function namesKeptSession(req: IncomingMessage, user: unknown): boolean {
  return sessionKeyHeader(req) !== undefined || sessionUser(user) !== undefined;
}

/** Runs one turn and writes its answer in the dialect. */
export async function runTurn(
  hub: GatewayHub,
  req: IncomingMessage,
  res: ServerResponse,
  dialect: Dialect,
  turn: TurnRequest,
): Promise<void> {
  const instructions = turn.instructions;
  const messages =
    instructions === undefined || instructions.length === 0
      ? turn.messages
      : [{ role: "system", content: instructions }, ...turn.messages];
  if (turn.tools.length > 0) return clientToolsTurn(hub, res, dialect, { ...turn, messages });
  return sessionTurn(hub, req, res, dialect, turn, messages);
}

/** The text parts of a message's content, joined by newlines. */
export function textOf(content: OpenAiMessage["content"]): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter((p) => p?.type === "text" && typeof p.text === "string")
    .map((p) => p.text)
    .join("\n");
}

function imagesOf(content: OpenAiMessage["content"]): UserMessageInput["images"] {
  if (!Array.isArray(content)) return [];
  const images: NonNullable<UserMessageInput["images"]> = [];
  for (const part of content) {
    if (part?.type !== "image_url") continue;
    const url = typeof part.image_url === "string" ? part.image_url : part.image_url?.url;
    if (typeof url !== "string") continue;
    images.push(dataUrl(url) ?? { mediaType: "image/*", url });
  }
  return images;
}

/** A message's `input_audio` parts (checked before), as clips to transcribe. */
function audioOf(content: OpenAiMessage["content"]): ParsedAttachments["audio"] {
  if (!Array.isArray(content)) return [];
  const clips: ParsedAttachments["audio"] = [];
  for (const part of content) {
    const audio = part?.type === "input_audio" ? part.input_audio : undefined;
    if (typeof audio?.data !== "string" || typeof audio.format !== "string") continue;
    const format = audio.format === "mp3" ? "mpeg" : audio.format;
    clips.push({
      name: `audio.${audio.format}`,
      mimeType: `audio/${format}`,
      data: Buffer.from(audio.data, "base64"),
    });
  }
  return clips;
}

/** A message's `file` parts (checked before: base64 data URLs), as documents. */
function filesOf(content: OpenAiMessage["content"]): NonNullable<UserMessageInput["files"]> {
  if (!Array.isArray(content)) return [];
  const files: NonNullable<UserMessageInput["files"]> = [];
  for (const part of content) {
    if (part?.type !== "file" || typeof part.file?.file_data !== "string") continue;
    const data = dataUrl(part.file.file_data);
    if (data === undefined) continue;
    const name = part.file.filename;
    files.push({
      ...data,
      ...(typeof name === "string" && name !== "" ? { filename: name } : {}),
    });
  }
  return files;
}

/**
 * The last user message's audio as transcript lines (see `transcribeAudio`). Without a
 * transcriber, audio is refused (400 `unsupported_content`) rather than silently dropped; a
 * failed transcription is a 503 to retry.
 */
async function transcribed(hub: GatewayHub, audio: ParsedAttachments["audio"]): Promise<string[]> {
  if (audio.length === 0) return [];
  if (hub.transcriber === undefined) {
    throw new RequestError(
      400,
      "input_audio needs speech to text, and this gateway has no transcriber (beamclaw.yaml: transcription)",
      "invalid_request_error",
      "unsupported_content",
      "messages",
    );
  }
  try {
    return await transcribeAudio(hub, audio);
  } catch (error) {
    throw new RequestError(
      503,
      error instanceof Error ? error.message : String(error),
      "server_error",
      "transcription_failed",
    );
  }
}

/** The whole conversation as one prompt, for a session that starts empty. */
function flatten(messages: OpenAiMessage[]): string {
  if (messages.length === 1 && messages[0]!.role === "user") return textOf(messages[0]!.content);
  const lines: string[] = [];
  for (const m of messages) {
    const text = textOf(m.content);
    if (text.length === 0) continue;
    const who =
      m.role === "system" || m.role === "developer"
        ? "System"
        : m.role === "assistant"
          ? "Assistant"
          : m.role === "tool"
            ? "Tool"
            : "User";
    lines.push(`${who}: ${text}`);
  }
  return lines.join("\n\n");
}

function lastUser(messages: OpenAiMessage[]): OpenAiMessage {
  for (let i = messages.length - 1; i >= 0; i--)
    if (messages[i]!.role === "user") return messages[i]!;
  throw new RequestError(
    400,
    "messages must contain a user message",
    "invalid_request_error",
    "invalid_messages",
  );
}

/**
 * The message a kept session (its header or `user`) is sent: the request's last, which must
 * be a user message. The session has the earlier ones already; the last user message sent
 * before a trailing assistant or tool message would be asked again, and what follows it lost.
 */
function keptSessionMessage(messages: OpenAiMessage[], dialect: Dialect): OpenAiMessage {
  const index = messages.length - 1;
  const last = messages[index];
  if (last?.role === "user") return last;
  throw new RequestError(
    400,
    `a kept session (x-beamclaw-session-key or user) is sent only the last message, which must be a user message, not ${String(last?.role)}`,
    "invalid_request_error",
    "invalid_messages",
    dialect.keyword === "openai" ? `messages[${index}].role` : "input",
  );
}

/**
 * What separates the texts of a session turn's steps in its answer: a turn whose model
 * answers, calls one of the agent's tools and answers again ("Let me check." then "It is 4.")
 * is answered `"Let me check.\n\nIt is 4."`, streamed or not, on `/v1/chat/completions` and
 * `/v1/responses` alike. A stream sends it as a delta of its own, before the first text of a
 * step that follows a step with text.
 */
const STEP_SEPARATOR = "\n\n";

/**
 * The text of a session turn: every step's text (its assistant messages' text parts), the
 * non-empty ones joined by {@link STEP_SEPARATOR}, as {@link StepTexts} streams it. A result
 * without its messages (a run that never started) falls back to its last answer's text.
 */
function turnText(result: RunResult): string {
  const texts: string[] = [];
  for (const message of result.messages) {
    if (message.role !== "assistant") continue;
    let text = "";
    for (const part of message.content) if (part.type === "text") text += part.text;
    if (text.length > 0) texts.push(text);
  }
  return texts.length === 0 ? result.text : texts.join(STEP_SEPARATOR);
}

/**
 * The text deltas of a streamed session turn as the client gets them, so that what it reads
 * adds up to {@link turnText}: {@link STEP_SEPARATOR} goes before the first text of a step
 * when an earlier step sent text. A step ends where the run goes on after it: at its tools'
 * results or a message steered into the run.
 */
class StepTexts {
  /** Whether an earlier step sent text. */
  #earlier = false;
  /** Whether the current step (its model call) sent text. */
  #current = false;

  /** Whether the current step sent text (a `text-reset` of it cannot be taken back). */
  get sent(): boolean {
    return this.#current;
  }

  /** The deltas to send for a text delta of the run (none for an empty one). */
  delta(text: string): string[] {
    if (text.length === 0) return [];
    const out = !this.#current && this.#earlier ? [STEP_SEPARATOR, text] : [text];
    this.#current = true;
    return out;
  }

  /** The run went on to a new step. */
  nextStep(): void {
    this.#earlier ||= this.#current;
    this.#current = false;
  }
}

/** The answer's content: the validated JSON of a structured answer, else the text. */
function contentOf(result: RunResult): string {
  return result.output === undefined ? turnText(result) : JSON.stringify(result.output);
}

function answerOf(result: RunResult): Answer {
  return {
    text: contentOf(result),
    calls: [],
    usage: result.usage,
    finish:
      result.status === "max-steps"
        ? "max_steps"
        : result.finishReason === "length"
          ? "length"
          : result.finishReason === "content-filter"
            ? "content_filter"
            : "stop",
  };
}

/** A turn in a BeamClaw session: the agent's own tools, history kept server-side. */
async function sessionTurn(
  hub: GatewayHub,
  req: IncomingMessage,
  res: ServerResponse,
  dialect: Dialect,
  turn: TurnRequest,
  messages: OpenAiMessage[],
): Promise<void> {
  const { agent, stream, format } = turn;
  const explicitKey = sessionKeyHeader(req);
  const user = sessionUser(turn.user);
  const ephemeral = explicitKey === undefined && user === undefined;
  const key =
    explicitKey ??
    (user !== undefined
      ? `agent:${agent.id}:${dialect.keyword}-user:${user}`
      : `agent:${agent.id}:${dialect.keyword}:${randomUUID()}`);
  const session = hub.session(key, explicitKey === undefined ? agent.id : undefined);
  // Watched from here: a client that leaves while its message is prepared (a transcription)
  // gets no run, and one that leaves later has its run aborted.
  let abortRun: (() => void) | undefined;
  let finished = false;
  let gone = false;
  res.on("close", () => {
    gone = true;
    if (!finished) abortRun?.();
  });
  const last = ephemeral ? lastUser(messages) : keptSessionMessage(messages, dialect);
  // A fresh session gets the whole conversation; a kept one already has its history.
  let typed = ephemeral ? flatten(messages) : textOf(last.content);
  if (!ephemeral && turn.instructions !== undefined && turn.instructions.length > 0) {
    typed = `System: ${turn.instructions}\n\nUser: ${typed}`;
  }
  // A fresh session also gets the images, documents and audio of the earlier user messages
  // (the flattened conversation holds only their text), in order.
  const sources = ephemeral ? messages.filter((m) => m.role === "user") : [last];
  const heard = await transcribed(
    hub,
    sources.flatMap((m) => audioOf(m.content)),
  );
  const text = [typed, ...heard].filter((part) => part.length > 0).join("\n\n");
  const images = sources.flatMap((m) => imagesOf(m.content) ?? []);
  const files = sources.flatMap((m) => filesOf(m.content));
  if (text.trim().length === 0 && images.length === 0 && files.length === 0) {
    throw new RequestError(
      400,
      "the last user message is empty",
      "invalid_request_error",
      "invalid_messages",
    );
  }
  if (gone) {
    if (ephemeral) await session.delete().catch(() => undefined);
    return;
  }
  const handle = await session.send(
    {
      text,
      ...(images.length === 0 ? {} : { images }),
      ...(files.length === 0 ? {} : { files }),
      sender: `http:${dialect.keyword}`,
    },
    {
      // A fresh session's answer is only for this request: after a forced exit or a crash
      // of the gateway, nobody would read it, so the next start does not run it again, and
      // deletes the session as the end of this request would have.
      ...(ephemeral ? { replayAfterRestart: false, ephemeralSession: true } : {}),
      ...traceContextOf(req),
      ...(format === undefined
        ? {}
        : {
            output: {
              schema: format.schema,
              name: format.name,
              ...(format.description === undefined ? {} : { description: format.description }),
              ...(format.strict === undefined ? {} : { strict: format.strict }),
            },
          }),
    },
  );
  abortRun = () => void handle.abort().catch(() => undefined);
  if (gone) abortRun();
  const id = dialect.idOf(handle.runId);
  const created = Math.floor(hub.now() / 1000);
  try {
    if (!stream) {
      const result = await handle.result;
      finished = true;
      const failure = runFailure(result, { freshSession: ephemeral });
      if (failure !== undefined) {
        return openAiError(
          res,
          failure.status,
          failure.message,
          failure.type,
          failure.code,
          failure.headers,
        );
      }
      return sendJson(res, 200, await dialect.body(id, created, answerOf(result)));
    }
    startSse(res);
    const out = dialect.stream(res, id, created);
    let ended = false;
    // What the steps sent: a new model call starts after tool results or a steered message.
    const steps = new StepTexts();
    try {
      for await (const event of handle) {
        // A JSON answer is sent whole once validated: a try that did not conform (and the
        // model's own fences) never reach the client.
        if (event.type === "text-delta" && format === undefined) {
          for (const delta of steps.delta(event.text)) out.text(delta);
        }
        if (event.type === "tool-result" || event.type === "steer") steps.nextStep();
        if (event.type === "text-reset" && steps.sent && !ended) {
          // What was sent is void and cannot be taken back: end here rather than add the
          // fallback's answer after it.
          ended = true;
          out.fail(answerDiscarded(event.reason), ANSWER_DISCARDED);
          void handle.abort().catch(() => undefined);
          break;
        }
        if (event.type === "run-end" && !ended) {
          if (format !== undefined && event.result.output !== undefined) {
            out.text(contentOf(event.result));
          }
          ended = true;
          // A run that failed or was cut short did not finish its answer: an error, not a stop.
          const failure = runFailure(event.result);
          if (failure !== undefined) out.fail(failure.message, failure.code);
          else await out.done(answerOf(event.result));
        }
      }
    } catch (error) {
      if (!ended) out.fail((error as Error).message, null);
      ended = true;
    }
    finished = true;
    if (!ended) out.fail("the run ended without a result", null);
  } finally {
    finished = true;
    if (ephemeral) await session.delete().catch(() => undefined);
  }
}

/** Chat Completions messages as the model's messages, the system ones apart. */
function toModelMessages(messages: OpenAiMessage[]): {
  system: string[];
  messages: ModelMessage[];
} {
  const system: string[] = [];
  const out: ModelMessage[] = [];
  const toolNames = new Map<string, string>();
  for (const m of messages) {
    if (m.role === "system" || m.role === "developer") {
      const text = textOf(m.content);
      if (text.length > 0) system.push(text);
    } else if (m.role === "user") {
      const text = textOf(m.content);
      out.push({
        role: "user",
        content: [
          ...(text.length > 0 ? [{ type: "text" as const, text }] : []),
          ...(imagesOf(m.content) ?? []).map((i) => ({ type: "image" as const, ...i })),
          ...filesOf(m.content).map((f) => ({ type: "file" as const, ...f })),
        ],
      });
    } else if (m.role === "assistant") {
      const text = textOf(m.content);
      const calls = (m.tool_calls ?? []).map((c, i) => {
        const id = c.id ?? `call_${i}`;
        const name = c.function?.name ?? "unknown";
        toolNames.set(id, name);
        let args: JsonValue = {};
        try {
          args = JSON.parse(c.function?.arguments ?? "{}") as JsonValue;
        } catch {
          args = c.function?.arguments ?? "";
        }
        return { type: "tool-call" as const, toolCallId: id, toolName: name, input: args };
      });
      out.push({
        role: "assistant",
        content: [...(text.length > 0 ? [{ type: "text" as const, text }] : []), ...calls],
      });
    } else if (m.role === "tool") {
      const id = m.tool_call_id ?? "";
      const part = {
        type: "tool-result" as const,
        toolCallId: id,
        toolName: toolNames.get(id) ?? m.name ?? "tool",
        output: textOf(m.content),
      };
      const prev = out.at(-1);
      if (prev?.role === "tool") prev.content.push(part);
      else out.push({ role: "tool", content: [part] });
    }
  }
  return { system, messages: out };
}

/** One model call with the client's own function tools; tool calls go back to the client. */
async function clientToolsTurn(
  hub: GatewayHub,
  res: ServerResponse,
  dialect: Dialect,
  turn: TurnRequest,
): Promise<void> {
  const source = hub.models;
  if (source === undefined) {
    throw new RequestError(
      501,
      "client-supplied tools need the gateway's model source (createGateway({ models }))",
      "invalid_request_error",
      "tools_unavailable",
    );
  }
  const { agent, stream, toolChoice } = turn;
  const converted = toModelMessages(turn.messages);
  const system = [agent.systemPrompt, ...converted.system].filter(
    (s): s is string => typeof s === "string" && s.length > 0,
  );
  // One model call: the format goes to the provider, the client reads the answer itself.
  const clientFormat = turn.format;
  const maxOutputTokens = turn.maxOutputTokens ?? agent.maxOutputTokens;
  const temperature = turn.temperature ?? agent.temperature;
  const controller = new AbortController();
  let finished = false;
  // A gateway stopping past its drain time ends the call, which ends the answer with an error.
  const halt = () => controller.abort(hub.halt.signal.reason);
  hub.halt.signal.addEventListener("abort", halt, { once: true });
  // Also once the answer is complete: a response closes either way.
  res.on("close", () => {
    hub.halt.signal.removeEventListener("abort", halt);
    if (!finished) controller.abort();
  });
  const id = dialect.idOf(randomUUID());
  const created = Math.floor(hub.now() / 1000);
  let text = "";
  let calls: ClientToolCall[] = [];
  let usage: ModelUsage | undefined;
  let reason: FinishReason = "stop";
  let attempt: { provider: string; model: string } | undefined;
  let out: AnswerStream | undefined;
  // A stream opens with the source's first event: a refusal before it (a tenant's limits,
  // read when the source is first read) is still an HTTP status, not an error in a stream.
  const open = (): AnswerStream | undefined => {
    if (stream && out === undefined) {
      startSse(res);
      out = dialect.stream(res, id, created);
    }
    return out;
  };
  try {
    const events = source.stream(
      {
        ...(system.length === 0 ? {} : { system: system.join("\n\n") }),
        messages: converted.messages,
        tools: turn.tools,
        ...(toolChoice === undefined ? {} : { toolChoice }),
        ...(maxOutputTokens === undefined ? {} : { maxOutputTokens }),
        ...(temperature === undefined ? {} : { temperature }),
        ...(clientFormat === undefined ? {} : { responseFormat: clientFormat }),
      },
      { models: [agent.model, ...(agent.fallbacks ?? [])], signal: controller.signal },
    );
    for await (const event of events) {
      open();
      switch (event.type) {
        case "attempt-start":
          attempt = { provider: String(event.provider), model: String(event.model) };
          break;
        case "attempt-failed":
          if (event.discardOutput !== true) break;
          if (out !== undefined && (text.length > 0 || calls.length > 0)) {
            // Sent, and a stream cannot take it back: end here rather than add the
            // fallback's answer after it.
            finished = true;
            controller.abort();
            const e = event.error as { message?: unknown } | undefined;
            return out.fail(answerDiscarded(String(e?.message ?? e)), ANSWER_DISCARDED);
          }
          text = "";
          calls = [];
          break;
        case "text-delta":
          text += String(event.text);
          out?.text(String(event.text));
          break;
        case "tool-call": {
          const call = {
            id: String(event.toolCallId),
            name: String(event.toolName),
            input: (event.input ?? {}) as JsonValue,
          };
          out?.toolCall(call, calls.length);
          calls.push(call);
          break;
        }
        case "usage":
          usage = event.usage as ModelUsage;
          break;
        case "finish":
          reason =
            event.reason === "length"
              ? "length"
              : event.reason === "content-filter"
                ? "content_filter"
                : "stop";
          break;
      }
    }
  } catch (error) {
    finished = true;
    const e = error as { message?: string; code?: unknown };
    const code = typeof e.code === "string" ? e.code : null;
    if (out !== undefined) return out.fail(e.message ?? String(error), code);
    // Before the answer started (a stream too): a tenant's refusal (its limited model
    // source) is answered as before a session turn, a spent budget a 429 not to retry, its
    // request rate a 429 with Retry-After; anything else is the model call failing.
    if (isBudgetExceeded(error) || isOverload(error)) return sendRequestFailure(res, error);
    return openAiError(res, 502, e.message ?? String(error), "server_error", code);
  }
  finished = true;
  if (usage !== undefined && attempt !== undefined) {
    hub.runtime.usage.record({
      sessionKey: `agent:${agent.id}:${dialect.keyword}-tools`,
      agentId: agent.id,
      provider: attempt.provider,
      model: attempt.model,
      usage,
      costUsd: 0,
      at: hub.now(),
    });
  }
  const answer: Answer = { text, calls, usage, finish: calls.length > 0 ? "tool_calls" : reason };
  const opened = open();
  if (opened !== undefined) return await opened.done(answer);
  sendJson(res, 200, await dialect.body(id, created, answer));
}
