/**
 * OpenAI Responses API (`POST /responses` with `stream: true`).
 *
 * Stream: typed events: `response.created`, `response.output_item.added` (a `message`,
 * `function_call` or `reasoning` item), `response.output_text.delta`,
 * `response.function_call_arguments.delta` / `.done`,
 * `response.reasoning_summary_text.delta`, `response.output_item.done`, and one terminal
 * event: `response.completed` (with usage), `response.incomplete`, `response.failed`, or
 * `error`. There is no `[DONE]` sentinel.
 */
import {
  answerToolCalls,
  type FilePart,
  type FinishReason,
  type JsonObject,
  type ModelCallOptions,
  type ModelMessage,
  type ModelRequest,
  type ModelStreamEvent,
  type ProviderError,
  type ThinkingLevel,
  type ThinkingPart,
} from "@beamclaw/core";
import { LRUCache } from "lru-cache";
import { hasText, userContent } from "./blank-text.js";
import { type CallContext, errorFromStreamEvent, providerError } from "./errors.js";
import type { HttpClient, StreamResponse } from "./http.js";
import {
  field,
  isWholeJson,
  isWire,
  lookup,
  mergeIntoField,
  numberField,
  parseToolInput,
  stringField,
  toolInputText,
  toolOutputText,
  withProviderOptions,
} from "./json.js";
import {
  chatUsage,
  fileName,
  imageUrl,
  jsonSchemaFormat,
  type OpenAIEffortMemory,
  type OpenAIRefusal,
  openAIModelReasons,
  parseOpenAIError,
  postMending,
  refusedOptionError,
} from "./openai-chat.js";
import { checkRequest, modelOf } from "./request.js";
import { parseSseJson, readSse, streamCutError } from "./sse.js";

/** A document as an `input_file` item part: inline data with its file name, or a URL. */
function responsesFile(part: FilePart, context: CallContext): JsonObject {
  if (part.data !== undefined) {
    return {
      type: "input_file",
      filename: fileName(part),
      file_data: `data:${part.mediaType};base64,${part.data}`,
    };
  }
  if (part.url !== undefined) return { type: "input_file", file_url: part.url };
  throw providerError("invalid_request", "a file part needs `data` or `url`", context);
}

/**
 * The `signature` of a thinking part made from Responses reasoning: the reasoning item's id,
 * then the id of the output item that came right after it and, for a function call, that
 * call's `call_id` (`rs_1|fc_2|call_3`, `rs_1|msg_2`, or `rs_1` when nothing followed). OpenAI
 * pairs a reasoning item with the item after it, and refuses one sent back without that item's
 * id (HTTP 400 "Item 'rs_…' of type 'reasoning' was provided without its required following
 * item"), so the pair is kept with the reasoning.
 */
function reasoningSignature(id: string, next: { id: string; callId?: string } | undefined): string {
  if (next === undefined) return id;
  return next.callId === undefined ? `${id}|${next.id}` : `${id}|${next.id}|${next.callId}`;
}

/** A {@link reasoningSignature} read back. */
function readReasoningSignature(signature: string): {
  id: string;
  nextId?: string;
  callId?: string;
} {
  const [id = signature, nextId, ...rest] = signature.split("|");
  return {
    id,
    ...(nextId === undefined || nextId === "" ? {} : { nextId }),
    ...(rest.length === 0 ? {} : { callId: rest.join("|") }),
  };
}

/**
 * Maps the normalized conversation to Responses `input` items. Thinking is sent back as a
 * `reasoning` item only when it came from the Responses API (its `signature` starts with the
 * reasoning item id `rs_...`, its `redacted` is the `encrypted_content`), right before the item
 * that followed it in the model's output, which is sent with its own id (`fc_...` for a function
 * call, `msg_...` for the text, as an output message): the pair OpenAI checks. Reasoning whose
 * following item is not known (saved before this was kept, or the output ended after it) is
 * sent without its id, and only when it carries its encrypted content.
 *
 * With `stored` false (the request sets `store: false`), OpenAI keeps none of its output, and
 * an input item sent with an id it made is looked up and refused (HTTP 404 "Item with id
 * 'rs_…' not found. Items are not persisted when `store` is set to false"), on every later
 * turn too: no item then goes with an id, and reasoning goes only with its encrypted content
 * (`include: ["reasoning.encrypted_content"]`), in the same place.
 *
 * `reasoning.leaveOut` leaves out reasoning by its encrypted content (OpenAI refused to verify
 * it), whole: the item after it then goes without its id, as with no reasoning at all.
 */
export function toResponsesInput(
  request: ModelRequest,
  context: CallContext,
  stored = true,
  reasoning: ReasoningFilter = {},
): JsonObject[] {
  const items: JsonObject[] = [];
  for (const message of answerToolCalls(request.messages)) {
    if (message.role === "user") {
      items.push({
        role: "user",
        // Never an empty array, which OpenAI refuses ("Invalid 'input[0].content': empty
        // array"): a message of nothing is sent as a placeholder.
        content: userContent(message).map((part) =>
          part.type === "text"
            ? { type: "input_text", text: part.text }
            : part.type === "image"
              ? { type: "input_image", image_url: imageUrl(part, context) }
              : responsesFile(part, context),
        ),
      });
    } else if (message.role === "assistant") {
      pushAssistant(message.content, items, stored, reasoning);
    } else {
      for (const result of message.content) {
        const text = toolOutputText(result.output);
        const images = (result.images ?? []).filter(
          (image) => image.data !== undefined || image.url !== undefined,
        );
        items.push({
          type: "function_call_output",
          call_id: result.toolCallId,
          // With images, the output is a list of `input_text` and `input_image` items.
          output:
            images.length === 0
              ? text
              : [
                  ...(hasText(text) ? [{ type: "input_text", text }] : []),
                  ...images.map((image) => ({
                    type: "input_image",
                    image_url: imageUrl(image, context),
                  })),
                ],
        });
      }
    }
  }
  return items;
}

/**
 * Which reasoning goes back: `leaveOut` names encrypted contents not to send (their reasoning
 * is left out whole, and the items that followed it go without their ids), and `sent`
 * collects the encrypted contents that are sent.
 */
export interface ReasoningFilter {
  leaveOut?: (encrypted: string) => boolean;
  sent?: string[];
}

/** A reasoning item, and the id of the item it is sent right before. */
interface Reasoning {
  item: JsonObject;
  nextId: string;
}

/** Maps one assistant message's parts to input items (see {@link toResponsesInput}). */
function pushAssistant(
  content: Extract<ModelMessage, { role: "assistant" }>["content"],
  items: JsonObject[],
  stored: boolean,
  reasoning: ReasoningFilter,
): void {
  const callIds = new Set<string>();
  // Text that says nothing (empty, or only whitespace) is not sent (see `flushText`), so
  // reasoning cannot be paired with it.
  let sendsText = false;
  for (const part of content) {
    if (part.type === "tool-call") callIds.add(part.toolCallId);
    else if (part.type === "text" && hasText(part.text)) sendsText = true;
  }
  // Each reasoning part goes before its pair (a call, by call id; or the text), or stays where
  // it is (`inPlace`), or is left out.
  const beforeCall = new Map<string, Reasoning>();
  let beforeText: Reasoning | undefined;
  const inPlace = new Map<ThinkingPart, JsonObject>();
  for (const part of content) {
    if (part.type !== "thinking" || part.signature?.startsWith("rs_") !== true) continue;
    if (part.redacted !== undefined && reasoning.leaveOut?.(part.redacted) === true) continue;
    // Not stored, reasoning without its encrypted content cannot be sent back at all.
    if (!stored && part.redacted === undefined) continue;
    const { id, nextId, callId } = readReasoningSignature(part.signature);
    const item: JsonObject = {
      type: "reasoning",
      ...(stored ? { id } : {}),
      summary: part.text === "" ? [] : [{ type: "summary_text", text: part.text }],
      ...(part.redacted === undefined ? {} : { encrypted_content: part.redacted }),
    };
    // Sent whatever happens below: before its pair, or in place.
    if (part.redacted !== undefined) reasoning.sent?.push(part.redacted);
    if (
      nextId?.startsWith("fc_") === true &&
      callId !== undefined &&
      callIds.has(callId) &&
      !beforeCall.has(callId)
    ) {
      beforeCall.set(callId, { item, nextId });
      continue;
    }
    if (nextId?.startsWith("msg_") === true && sendsText && beforeText === undefined) {
      beforeText = { item, nextId };
      continue;
    }
    // Without the item after it, the id would be refused: the encrypted content goes alone.
    if (part.redacted !== undefined) {
      delete item.id;
      inPlace.set(part, item);
    }
  }
  let text = "";
  // A run of text that says nothing is left out, as Anthropic's and Gemini's adapters leave
  // out blank text: a blank answer is no item at all (roles need not alternate here), and
  // beside calls the calls go alone.
  const flushText = () => {
    if (!hasText(text)) {
      text = "";
      return;
    }
    if (beforeText !== undefined) {
      items.push(
        beforeText.item,
        stored
          ? {
              type: "message",
              id: beforeText.nextId,
              role: "assistant",
              status: "completed",
              content: [{ type: "output_text", text, annotations: [] }],
            }
          : { role: "assistant", content: text },
      );
      beforeText = undefined;
    } else {
      items.push({ role: "assistant", content: text });
    }
    text = "";
  };
  for (const part of content) {
    if (part.type === "text") {
      text += part.text;
    } else if (part.type === "thinking") {
      const item = inPlace.get(part);
      if (item !== undefined) {
        flushText();
        items.push(item);
      }
    } else {
      flushText();
      const paired = beforeCall.get(part.toolCallId);
      if (paired !== undefined) items.push(paired.item);
      items.push({
        type: "function_call",
        ...(paired === undefined || !stored ? {} : { id: paired.nextId }),
        call_id: part.toolCallId,
        name: part.toolName,
        arguments: toolInputText(part.input),
      });
    }
  }
  flushText();
}

/**
 * Maps a request to the Responses API body; `promptCacheKey` sends its `cacheKey` as
 * `prompt_cache_key`. A `responseFormat` becomes `text.format` (type `json_schema`).
 * `stored` false: the request sets `store: false`; `reasoning`: which reasoning goes back
 * (see {@link toResponsesInput}).
 */
export function toResponsesRequest(
  request: ModelRequest,
  context: CallContext,
  promptCacheKey = true,
  stored = true,
  reasoning: ReasoningFilter = {},
): JsonObject {
  const body: JsonObject = {
    model: request.model,
    input: toResponsesInput(request, context, stored, reasoning),
    stream: true,
  };
  if (request.system !== undefined && request.system !== "") body.instructions = request.system;
  if (request.tools !== undefined && request.tools.length > 0) {
    body.tools = request.tools.map((tool) => ({
      type: "function",
      name: tool.name,
      description: tool.description,
      parameters: tool.inputSchema,
      // Responses defaults to strict schemas, which reject ordinary JSON Schema (optional
      // properties, no `additionalProperties: false`); strict mode is opt-in here.
      strict: false,
    }));
    const choice = request.toolChoice;
    if (choice !== undefined) {
      body.tool_choice =
        typeof choice === "string" ? choice : { type: "function", name: choice.toolName };
    }
  }
  if (request.maxOutputTokens !== undefined) body.max_output_tokens = request.maxOutputTokens;
  if (request.temperature !== undefined) body.temperature = request.temperature;
  // Requests with the same key go where their prefix is cached.
  if (promptCacheKey && request.cacheKey !== undefined) body.prompt_cache_key = request.cacheKey;
  // Not to the models that do not reason, which refuse it (see `openAIModelReasons`).
  if (
    request.thinking !== undefined &&
    request.thinking !== "off" &&
    openAIModelReasons(request.model)
  ) {
    body.reasoning = { effort: request.thinking, summary: "auto" };
  }
  if (request.responseFormat !== undefined) {
    const format = { type: "json_schema", ...jsonSchemaFormat(request.responseFormat) };
    mergeIntoField(body, "text", { format });
  }
  return body;
}

const INCOMPLETE_REASONS: Record<string, FinishReason> = {
  max_output_tokens: "length",
  content_filter: "content-filter",
};

interface CallState {
  toolCallId: string;
  toolName: string;
  json: string;
  done: boolean;
}

/**
 * A short key of a (long) text: the hex SHA-256 of its UTF-8 bytes, by Web Crypto
 * (`crypto.subtle`, on Node 20 and later, browsers and edge runtimes alike).
 */
async function digest(text: string): Promise<string> {
  const hash = await globalThis.crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(hash), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * The encrypted reasoning contents OpenAI refused to verify (`invalid_encrypted_content`, as
 * HTTP 400 or as an error event in the stream: made under another organization, project or
 * key, or for another model), kept by one provider instance so that later calls leave them out
 * at once instead of paying a refused request each turn: the SHA-256 digests of the 1024 most
 * recently used (a lookup counts as a use).
 */
export class RejectedReasoning {
  readonly #digests = new LRUCache<string, true>({ max: 1024 });

  /** True when `encrypted` was refused. */
  async has(encrypted: string): Promise<boolean> {
    return this.#digests.get(await digest(encrypted)) === true;
  }

  /** Remembers that `encrypted` was refused. */
  async add(encrypted: string): Promise<void> {
    this.#digests.set(await digest(encrypted), true);
  }

  /** How many are kept. */
  get size(): number {
    return this.#digests.size;
  }
}

/** The encrypted reasoning contents in `request` that `rejected` holds as refused. */
async function refusedIn(request: ModelRequest, rejected: RejectedReasoning): Promise<Set<string>> {
  const contents = new Set<string>();
  // Nothing refused yet (the usual case): no digest of the history on every call.
  if (rejected.size === 0) return contents;
  for (const message of request.messages) {
    if (message.role !== "assistant") continue;
    for (const part of message.content) {
      if (part.type === "thinking" && part.redacted !== undefined) contents.add(part.redacted);
    }
  }
  const refused = new Set<string>();
  for (const encrypted of contents) if (await rejected.has(encrypted)) refused.add(encrypted);
  return refused;
}

/** The `code` of a Responses `error` event, or of a failed response's `error`. */
function streamErrorCode(failure: unknown): string | undefined {
  const inner = field(failure, "error");
  return stringField(isWire(inner) ? inner : failure, "code");
}

/** What `include` asks for to get reasoning back when OpenAI stores nothing. */
const ENCRYPTED_REASONING = "reasoning.encrypted_content";

/** What a Responses stream needs from its provider. */
export interface ResponsesStreamSetup {
  id: string;
  http: HttpClient;
  apiKey: string | undefined;
  idleTimeoutMs: number;
  /** Send the request's `cacheKey` as `prompt_cache_key`. */
  promptCacheKey: boolean;
  /** The provider's encrypted reasoning OpenAI refused (see {@link RejectedReasoning}). */
  rejectedReasoning: RejectedReasoning;
  /** The provider's memory of the reasoning efforts its models refused. */
  efforts: OpenAIEffortMemory;
}

/**
 * Streams one Responses API call as normalized events.
 *
 * Encrypted reasoning OpenAI no longer verifies (`invalid_encrypted_content`) is refused
 * either with HTTP 400 or, after the 200, as an `error` event or a `response.failed` whose
 * `response.error.code` says so. Either way, while nothing has been yielded, the call is sent
 * once more without the encrypted reasoning, and the contents sent are remembered as refused.
 * So that a refusal in the stream can still be answered that way, a call that sends encrypted
 * reasoning holds its `response-start` back until the first other event (or the failure).
 */
export async function* streamResponses(
  request: ModelRequest,
  options: ModelCallOptions,
  setup: ResponsesStreamSetup,
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  const context: CallContext = { provider: setup.id, model: modelOf(request) };
  checkRequest(request, context);
  if (setup.apiKey === undefined) {
    throw providerError("auth", "no API key: pass `apiKey` or set OPENAI_API_KEY", context);
  }
  // `providerOptions.openai.store: false` (Zero Data Retention): no item id can go back.
  const stored = request.providerOptions?.[setup.id]?.store !== false;
  const rejected = setup.rejectedReasoning;
  const refusedBefore = await refusedIn(request, rejected);
  /** The encrypted reasoning contents this request sends. */
  const sent: string[] = [];
  const body = withProviderOptions(
    toResponsesRequest(request, context, setup.promptCacheKey, stored, {
      leaveOut: (encrypted) => refusedBefore.has(encrypted),
      sent,
    }),
    request.providerOptions,
    setup.id,
  );
  const own = request.providerOptions?.[setup.id];
  // Nothing stored, reasoning comes back only as its encrypted content, which must be asked
  // for: added to the caller's `include` for the models that reason (the others refuse it).
  if (!stored && openAIModelReasons(request.model)) {
    const include = own?.include ?? [];
    if (Array.isArray(include) && !include.includes(ENCRYPTED_REASONING)) {
      body.include = [...include, ENCRYPTED_REASONING];
    }
  }
  // The effort made from `thinking` (not a `reasoning` the caller set in `providerOptions`)
  // follows what the model's refusals taught.
  const level = request.thinking;
  const ownEffort = level !== undefined && isWire(body.reasoning) && own?.reasoning === undefined;
  const withEffort = (from: JsonObject, effort: ThinkingLevel | null): JsonObject => {
    const { reasoning: _, ...rest } = from;
    return effort === null ? rest : { ...rest, reasoning: { effort, summary: "auto" } };
  };
  let effortMended = false;
  /** True once the encrypted contents sent were refused; `remembered`, once remembered so. */
  let reasoningRefused = false;
  let remembered = false;
  /** True once the call was sent again without its encrypted reasoning. */
  let reasoningLeftOut = false;
  /**
   * `refused` without any encrypted reasoning, once; undefined when that was done already or
   * the request sent none.
   */
  const leaveOutReasoning = (refused: JsonObject): JsonObject | undefined => {
    if (reasoningLeftOut || sent.length === 0) return undefined;
    reasoningLeftOut = true;
    return {
      ...refused,
      input: toResponsesInput(request, context, stored, { leaveOut: () => true }),
    };
  };
  /** Remembers the contents sent as refused, so that later calls leave them out at once. */
  const rememberRefused = async (): Promise<void> => {
    if (!reasoningRefused || remembered) return;
    remembered = true;
    await Promise.all(sent.map((encrypted) => rejected.add(encrypted)));
  };
  const mend = (refusal: OpenAIRefusal, refused: JsonObject): JsonObject | undefined => {
    // Encrypted reasoning that no longer verifies: sent again without any.
    if (refusal.code === "invalid_encrypted_content") {
      reasoningRefused = sent.length > 0;
      return leaveOutReasoning(refused);
    }
    const effort = field(refused.reasoning, "effort");
    if (!ownEffort || effortMended || typeof effort !== "string") return undefined;
    const next = setup.efforts.learn(request.model, level, effort, refusal);
    if (next === undefined) return undefined;
    effortMended = true;
    return withEffort(refused, next);
  };
  /** The body OpenAI last answered with its 200. */
  let accepted = ownEffort ? withEffort(body, setup.efforts.effort(request.model, level)) : body;
  /** Posts `from`, mended as {@link postMending} does; `accepted` follows. */
  const post = async (from: JsonObject): Promise<StreamResponse> => {
    accepted = from;
    try {
      return await postMending(
        setup.http,
        "responses",
        from,
        context,
        options,
        (refusal, refused) => {
          const mended = mend(refusal, refused);
          if (mended !== undefined) accepted = mended;
          return mended;
        },
        (refusal, refused) =>
          refusedOptionError(refusal, request, context, field(refused.reasoning, "effort")),
      );
    } finally {
      await rememberRefused();
    }
  };

  let response = await post(accepted);
  for (;;) {
    // While the call may still be sent again, its `response-start` waits for another event.
    const mayRetry = !reasoningLeftOut && sent.length > 0;
    let start: ModelStreamEvent | undefined;
    let yielded = false;
    const refusal: { error?: ProviderError } = {};
    for await (const event of responseEvents(response, request, options, setup, context, refusal)) {
      if (mayRetry && !yielded && event.type === "response-start") {
        start = event;
        continue;
      }
      if (start !== undefined) yield start;
      start = undefined;
      yielded = true;
      yield event;
    }
    if (refusal.error === undefined) return;
    // Refused in the stream: sent again only when nothing streamed (output is never repeated).
    reasoningRefused = sent.length > 0;
    const retry = yielded ? undefined : leaveOutReasoning(accepted);
    if (retry === undefined) {
      await rememberRefused();
      throw refusal.error;
    }
    response = await post(retry);
  }
}

/**
 * The normalized events of one Responses stream. An `invalid_encrypted_content` refusal in
 * the stream (an `error` event, or `response.failed`) ends it without a throw: its error is
 * put in `refusal.error` for the caller to answer.
 */
async function* responseEvents(
  response: StreamResponse,
  request: ModelRequest,
  options: ModelCallOptions,
  setup: ResponsesStreamSetup,
  context: CallContext,
  refusal: { error?: ProviderError },
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  const { body: stream, release } = response;
  const calls = new Map<string, CallState>();
  let refused = false;
  /**
   * Calls whose arguments are not whole JSON, with every call after them (to keep their
   * order), held until the terminal event: `response.completed` yields them, while at
   * `response.incomplete` (`max_output_tokens`, `content_filter`) they were cut off and are
   * dropped, as are calls that never got their `.done`.
   */
  const held: Array<{ call: Extract<ModelStreamEvent, { type: "tool-call" }>; whole: boolean }> =
    [];

  function* endCall(call: CallState, args: string | undefined): Generator<ModelStreamEvent> {
    if (call.done) return;
    call.done = true;
    const json = args ?? call.json;
    const event = {
      type: "tool-call" as const,
      toolCallId: call.toolCallId,
      toolName: call.toolName,
      input: parseToolInput(json),
    };
    const whole = isWholeJson(json);
    if (whole && held.length === 0) yield event;
    else held.push({ call: event, whole });
  }

  // A reasoning item's `thinking-end` waits for the item after it, whose id its signature
  // keeps (see `reasoningSignature`).
  let reasoning: { id: string | undefined; encrypted: string | undefined } | undefined;
  function* endReasoning(next?: { id: string; callId?: string }): Generator<ModelStreamEvent> {
    if (reasoning === undefined) return;
    const { id, encrypted } = reasoning;
    reasoning = undefined;
    yield {
      type: "thinking-end",
      ...(id === undefined ? {} : { signature: reasoningSignature(id, next) }),
      ...(encrypted === undefined ? {} : { redacted: encrypted }),
    };
  }

  let complete = false;
  for await (const event of readSse(stream, {
    context,
    release,
    signal: options.signal,
    idleTimeoutMs: setup.idleTimeoutMs,
    complete: () => complete,
  })) {
    const data = parseSseJson(event, context);
    if (!isWire(data)) {
      throw providerError("malformed_stream", "an event that is not a JSON object", context, {
        responseBody: event.data,
      });
    }
    switch (stringField(data, "type")) {
      case "response.created": {
        const response = field(data, "response");
        const id = stringField(response, "id");
        yield {
          type: "response-start",
          ...(id === undefined ? {} : { id }),
          model: stringField(response, "model") ?? request.model,
        };
        break;
      }
      case "response.output_item.added": {
        const item = field(data, "item");
        const itemType = stringField(item, "type");
        if (itemType !== "function_call") {
          const id = stringField(item, "id");
          yield* endReasoning(itemType === "message" && id !== undefined ? { id } : undefined);
          break;
        }
        const itemId = stringField(item, "id");
        const toolCallId = stringField(item, "call_id");
        const toolName = stringField(item, "name");
        if (itemId === undefined || toolCallId === undefined || toolName === undefined) {
          throw providerError(
            "malformed_stream",
            "function_call item without id, call_id or name",
            context,
            { responseBody: event.data },
          );
        }
        yield* endReasoning({ id: itemId, callId: toolCallId });
        calls.set(itemId, { toolCallId, toolName, json: "", done: false });
        yield { type: "tool-call-start", toolCallId, toolName };
        break;
      }
      case "response.output_text.delta": {
        const text = stringField(data, "delta");
        if (text) yield { type: "text-delta", text };
        break;
      }
      case "response.refusal.delta": {
        const text = stringField(data, "delta");
        refused = true;
        if (text) yield { type: "text-delta", text };
        break;
      }
      case "response.reasoning_summary_part.added": {
        // Separate summary parts read as paragraphs.
        if ((numberField(data, "summary_index") ?? 0) > 0) {
          yield { type: "thinking-delta", text: "\n\n" };
        }
        break;
      }
      case "response.reasoning_summary_text.delta":
      case "response.reasoning_text.delta": {
        const text = stringField(data, "delta");
        if (text) yield { type: "thinking-delta", text };
        break;
      }
      case "response.function_call_arguments.delta": {
        const call = calls.get(stringField(data, "item_id") ?? "");
        const fragment = stringField(data, "delta") ?? "";
        if (call !== undefined && fragment !== "") {
          call.json += fragment;
          yield { type: "tool-call-delta", toolCallId: call.toolCallId, inputTextDelta: fragment };
        }
        break;
      }
      case "response.function_call_arguments.done": {
        const call = calls.get(stringField(data, "item_id") ?? "");
        if (call !== undefined) yield* endCall(call, stringField(data, "arguments"));
        break;
      }
      case "response.output_item.done": {
        const item = field(data, "item");
        const itemType = stringField(item, "type");
        if (itemType === "function_call") {
          const call = calls.get(stringField(item, "id") ?? "");
          // An item the output token limit cut off ends `incomplete`: it must not run.
          if (call !== undefined && stringField(item, "status") === "incomplete") call.done = true;
          if (call !== undefined) yield* endCall(call, stringField(item, "arguments"));
        } else if (itemType === "reasoning") {
          yield* endReasoning();
          reasoning = {
            id: stringField(item, "id"),
            encrypted: stringField(item, "encrypted_content"),
          };
        }
        break;
      }
      case "response.completed":
      case "response.incomplete": {
        complete = true;
        const response = field(data, "response");
        yield* endReasoning();
        const incomplete = data.type === "response.incomplete";
        if (incomplete) {
          for (const call of calls.values()) call.done = true;
        } else {
          for (const call of calls.values()) yield* endCall(call, undefined);
        }
        for (const { call, whole } of held.splice(0)) if (whole || !incomplete) yield call;
        const usage = chatUsage(field(response, "usage"));
        if (usage !== undefined) yield { type: "usage", usage };
        const status = stringField(response, "status") ?? "completed";
        if (data.type === "response.incomplete") {
          const why = stringField(field(response, "incomplete_details"), "reason");
          yield {
            type: "finish",
            reason: lookup(INCOMPLETE_REASONS, why) ?? "other",
            rawReason: why ?? status,
          };
        } else {
          const reason: FinishReason = calls.size > 0 ? "tool-calls" : refused ? "refusal" : "stop";
          yield { type: "finish", reason, rawReason: status };
        }
        return;
      }
      case "response.failed":
      case "error": {
        const failure = data.type === "error" ? data : field(data, "response");
        const error = errorFromStreamEvent(failure, event.data, context, parseOpenAIError);
        if (streamErrorCode(failure) !== "invalid_encrypted_content") throw error;
        refusal.error = error;
        return;
      }
      default:
      // Lifecycle and content-part events carry nothing the normalized stream needs.
    }
  }
  throw streamCutError(context, "response.completed");
}
