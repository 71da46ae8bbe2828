/**
 * Google Gemini API adapter (`POST /v1beta/models/{model}:streamGenerateContent?alt=sse`), and
 * the same models on Vertex AI (`POST /v1/projects/{project}/locations/{location}/publishers/
 * google/models/{model}:streamGenerateContent?alt=sse`), which speaks the same JSON.
 *
 * Stream: server-sent events whose data is each a `GenerateContentResponse` chunk:
 * `candidates[0].content.parts` (text, `thought: true` summaries, `functionCall` parts,
 * `thoughtSignature` on any part), `usageMetadata`, `modelVersion`, `responseId`, and on the
 * last chunk `candidates[0].finishReason`. There is no terminal event: the chunk with the
 * finish reason is the last, and the body ends after it. A prompt refused outright comes as
 * `promptFeedback.blockReason` with no candidate. An error after the 200 comes as a chunk
 * `{ "error": { "code", "message", "status" } }`.
 */
import {
  answerToolCalls,
  type FinishReason,
  InvalidArgumentError,
  type JsonObject,
  type JsonValue,
  type ModelCallOptions,
  type ModelInfo,
  type ModelMessage,
  type ModelProvider,
  type ModelRequest,
  type ModelStreamEvent,
  type ModelUsage,
  type ProviderErrorKind,
  type ThinkingLevel,
  type ToolResultPart,
} from "@beamclaw/core";
import { abortable } from "./abortable.js";
import { hasText, userContent } from "./blank-text.js";
import {
  abortedError,
  type CallContext,
  errorFromStreamEvent,
  providerError,
  type VendorErrorInfo,
} from "./errors.js";
import {
  checkBaseUrl,
  checkTimeout,
  createHttpClient,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_TIMEOUT_MS,
  type ProviderHttpOptions,
  resolveApiKey,
} from "./http.js";
import {
  field,
  inputObject,
  isWire,
  lookup,
  numberField,
  stringField,
  withProviderOptions,
} from "./json.js";
import { copyModel, findModel, GOOGLE_MODELS, mergeModels } from "./models.js";
import { checkRequest, modelOf } from "./request.js";
import { parseSseJson, readSse, streamCutError } from "./sse.js";

/** The `format` of the thinking parts that carry Gemini's thought signatures. */
export const GOOGLE_THINKING_FORMAT = "google";

/**
 * The signature Google documents for a function call Gemini did not make (a conversation
 * that began with another model, a call added by hand): it tells Gemini 3, which otherwise
 * refuses a function call without its thought signature, to skip the check.
 */
export const GOOGLE_SKIP_SIGNATURE = "skip_thought_signature_validator";

/** Thinking token budgets (Gemini 2.5 models) per thinking level. */
export type GoogleThinkingBudgets = Record<Exclude<ThinkingLevel, "off">, number>;

/** Default {@link GoogleProviderOptions.thinkingBudgets}. */
export const DEFAULT_GOOGLE_THINKING_BUDGETS: Readonly<GoogleThinkingBudgets> = {
  minimal: 512,
  low: 2048,
  medium: 8192,
  high: 24_576,
};

/** Where on Vertex AI the models are called (see {@link GoogleProviderOptions.vertex}). */
export interface GoogleVertexOptions {
  /**
   * The Google Cloud project id. Omitted: Vertex AI express mode, where an API key alone
   * (`apiKey`) names the project.
   */
  project?: string;
  /** The region, e.g. `us-central1`, or `global` (the default). */
  location?: string;
}

/** An OAuth 2 access token, or a function that gives a valid one for each call. */
export type GoogleAccessToken = string | (() => string | Promise<string>);

/** Options of {@link createGoogleProvider}. */
export interface GoogleProviderOptions extends ProviderHttpOptions {
  /**
   * Default `process.env.GEMINI_API_KEY`, else `process.env.GOOGLE_API_KEY`; sent as
   * `x-goog-api-key`. Not read from the environment when `accessToken` is given.
   */
  apiKey?: string;
  /**
   * Default `https://generativelanguage.googleapis.com/v1beta`; with `vertex`,
   * `https://{location}-aiplatform.googleapis.com/v1` (`https://aiplatform.googleapis.com/v1`
   * for `global`).
   */
  baseUrl?: string;
  /**
   * Call the models on Vertex AI instead of the Gemini API: `{ project, location }` with an
   * `accessToken` (or an API key bound to a service account), or `{}` for express mode with
   * an API key.
   */
  vertex?: GoogleVertexOptions;
  /**
   * An OAuth 2 access token for Vertex AI, sent as `Authorization: Bearer`: a function is
   * called before each request (tokens last an hour; a library such as
   * `google-auth-library` caches and refreshes them). A function that throws fails the call
   * with kind `auth`.
   */
  accessToken?: GoogleAccessToken;
  /**
   * Thinking token budget per level, for models that take a budget (Gemini 2.5). Default
   * {@link DEFAULT_GOOGLE_THINKING_BUDGETS}. Gemini 3 models take the level itself.
   */
  thinkingBudgets?: Partial<GoogleThinkingBudgets>;
  /**
   * Send {@link GOOGLE_SKIP_SIGNATURE} with a function call of the history that has no
   * thought signature of Gemini's (it came from another provider, after a failover, or was
   * written by hand), as Google documents for that case; Gemini 3 refuses such a history
   * otherwise. Default true.
   */
  skipMissingSignatures?: boolean;
  /** Corrections and additions to the built-in model and price list. */
  models?: ModelInfo[];
}

const GOOGLE_STATUS_KINDS: Record<string, ProviderErrorKind> = {
  INVALID_ARGUMENT: "invalid_request",
  FAILED_PRECONDITION: "invalid_request",
  OUT_OF_RANGE: "invalid_request",
  NOT_FOUND: "invalid_request",
  ALREADY_EXISTS: "invalid_request",
  UNAUTHENTICATED: "auth",
  PERMISSION_DENIED: "auth",
  RESOURCE_EXHAUSTED: "rate_limit",
  INTERNAL: "server",
  UNKNOWN: "server",
  DATA_LOSS: "server",
  UNAVAILABLE: "overloaded",
  DEADLINE_EXCEEDED: "timeout",
  CANCELLED: "server",
  ABORTED: "server",
};

/** `google.rpc.ErrorInfo` reasons that mean the key, not the request, is at fault. */
const AUTH_REASONS = new Set(["API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_EXPIRED"]);

/** `"33s"`, `"1.5s"` (a protobuf `Duration` in JSON) as milliseconds. */
function durationMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?)s$/.exec(value.trim());
  return match === null ? undefined : Math.round(Number(match[1]) * 1000);
}

/**
 * Reads Google's error body, `{"error":{"code":429,"message":"...","status":
 * "RESOURCE_EXHAUSTED","details":[...]}}`, also as the streaming endpoints often send it,
 * wrapped in a one-element array (`[{"error":{...}}]`): the status names the kind; an
 * `ErrorInfo` whose reason is an invalid API key (Google answers those with 400) makes it
 * `auth`; a `RetryInfo.retryDelay` becomes the wait.
 */
export function parseGoogleError(body: unknown): VendorErrorInfo {
  const error = field(Array.isArray(body) ? body[0] : body, "error");
  const status = stringField(error, "status");
  const message = stringField(error, "message");
  const details = field(error, "details");
  let authReason = false;
  let retryAfterMs: number | undefined;
  if (Array.isArray(details)) {
    for (const detail of details) {
      const type = stringField(detail, "@type") ?? "";
      if (type.endsWith("google.rpc.ErrorInfo")) {
        const reason = stringField(detail, "reason");
        if (reason !== undefined && AUTH_REASONS.has(reason)) authReason = true;
      } else if (type.endsWith("google.rpc.RetryInfo")) {
        retryAfterMs = durationMs(stringField(detail, "retryDelay"));
      }
    }
  }
  // Google's status names the failure more precisely than the HTTP code (a 504 is
  // `DEADLINE_EXCEEDED`, a timeout): it decides the kind, in a stream and out of one.
  const kind = lookup(GOOGLE_STATUS_KINDS, status);
  return {
    ...(status === undefined ? {} : { type: status }),
    ...(message === undefined ? {} : { message }),
    ...(kind === undefined ? {} : { kind }),
    ...(authReason ? { kind: "auth" as const, isRetryable: false } : {}),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  };
}

const FINISH_REASONS: Record<string, FinishReason> = {
  STOP: "stop",
  MAX_TOKENS: "length",
  SAFETY: "content-filter",
  RECITATION: "content-filter",
  BLOCKLIST: "content-filter",
  PROHIBITED_CONTENT: "content-filter",
  SPII: "content-filter",
  IMAGE_SAFETY: "content-filter",
  IMAGE_PROHIBITED_CONTENT: "content-filter",
  IMAGE_RECITATION: "content-filter",
  MALFORMED_FUNCTION_CALL: "error",
  UNEXPECTED_TOOL_CALL: "error",
  TOO_MANY_TOOL_CALLS: "error",
  MALFORMED_RESPONSE: "error",
  MISSING_THOUGHT_SIGNATURE: "error",
};

/**
 * Maps Gemini's `finishReason` to the normalized finish reason. Gemini says `STOP` also when
 * it called functions: `calledTools` makes that `tool-calls`.
 */
export function mapGoogleFinishReason(
  reason: string | undefined,
  calledTools: boolean,
): FinishReason {
  if (calledTools && (reason === undefined || reason === "STOP")) return "tool-calls";
  if (reason === undefined) return "other";
  return lookup(FINISH_REASONS, reason) ?? "other";
}

type GooglePart = JsonObject;

/** The ids made up for Gemini's calls that have none (Gemini 2.x): never sent back. */
const MADE_UP_CALL_ID = /^gemini_call_\d+$/;

/** A tool's output as the `response` object of a `functionResponse` (a protobuf `Struct`). */
function functionResponse(output: JsonValue, isError: boolean | undefined): JsonObject {
  // Google's convention: the result under `output`, a failure under `error`; an object
  // result is sent as it is.
  if (isError) return { error: output };
  return isWire(output) ? (output as JsonObject) : { output };
}

/**
 * A function response's `response`, and its images: Gemini 3 takes them as the response's
 * `parts` (`inlineData`); an earlier model takes none, and its response says what it misses.
 */
function functionResponseImages(result: ToolResultPart, takesImages: boolean): JsonObject {
  const response = functionResponse(result.output, result.isError);
  const images = (result.images ?? []).filter((image) => image.data !== undefined);
  if (images.length === 0) return { response };
  if (!takesImages) {
    return {
      response: {
        ...response,
        images: images.map(
          (image) =>
            `[image ${image.mediaType} not shown: this model takes no images in tool results]`,
        ),
      },
    };
  }
  return {
    response,
    parts: images.map((image) => ({
      inlineData: { mimeType: image.mediaType, data: image.data },
    })),
  };
}

function userParts(message: Extract<ModelMessage, { role: "user" }>, context: CallContext) {
  const parts: GooglePart[] = [];
  // Never empty ("contents.parts must not be empty"), nor an empty text part (a part without
  // data): a message of nothing keeps its turn as a placeholder, so that the conversation
  // still ends with the user's turn, as Gemini requires.
  for (const part of userContent(message)) {
    if (part.type === "text") {
      parts.push({ text: part.text });
    } else if (part.data !== undefined) {
      // Images and documents (PDF, text) alike.
      parts.push({ inlineData: { mimeType: part.mediaType, data: part.data } });
    } else if (part.url !== undefined) {
      parts.push({ fileData: { mimeType: part.mediaType, fileUri: part.url } });
    } else {
      throw providerError(
        "invalid_request",
        `${part.type === "image" ? "an image" : "a file"} part needs \`data\` or \`url\``,
        context,
      );
    }
  }
  return parts;
}

/**
 * A model turn's parts. Gemini's thought signatures (kept as thinking parts of format
 * `google`, in the order they came) go back on the parts Gemini puts them on: the first on
 * the first function call (Gemini 3 gives one per step, there), the next ones on the
 * following calls; in a turn without calls, on its last text part. A turn with calls but no
 * signature of Gemini's gets {@link GOOGLE_SKIP_SIGNATURE} on its first call when `skip`.
 * Thought summaries are not sent back: the signatures carry the model's reasoning.
 *
 * With `echoed` (a Gemini 3 request: Gemini 3 names every call), a call of a turn Gemini made
 * (one with a signature of Gemini's) keeps the `id` Gemini gave it, which is added to
 * `echoed` so that its result names it too; made-up ids (`gemini_call_N`) and the ids of
 * other providers' calls are not sent.
 */
function modelParts(
  message: Extract<ModelMessage, { role: "assistant" }>,
  skip: boolean,
  echoed: Set<string> | undefined,
) {
  const signatures: string[] = [];
  const texts: GooglePart[] = [];
  const calls: GooglePart[] = [];
  const callIds: string[] = [];
  const parts: GooglePart[] = [];
  for (const part of message.content) {
    if (part.type === "thinking") {
      if (part.format === GOOGLE_THINKING_FORMAT && part.signature !== undefined) {
        signatures.push(part.signature);
      }
    } else if (part.type === "text") {
      // Blank text says nothing: left out, as Anthropic's adapter does (an empty one would be
      // a part without data, which Gemini refuses: "required oneof field 'data' must have one
      // initialized field"). A turn left without parts is left out, and the user turns
      // around it merge; beside calls, the calls go alone.
      if (!hasText(part.text)) continue;
      const text: GooglePart = { text: part.text };
      texts.push(text);
      parts.push(text);
    } else {
      const call: GooglePart = {
        functionCall: { name: part.toolName, args: inputObject(part.input) },
      };
      calls.push(call);
      callIds.push(part.toolCallId);
      parts.push(call);
    }
  }
  if (echoed !== undefined && signatures.length > 0) {
    calls.forEach((call, i) => {
      const id = callIds[i];
      if (typeof id !== "string" || id === "" || MADE_UP_CALL_ID.test(id)) return;
      call.functionCall = { id, ...(call.functionCall as JsonObject) };
      echoed.add(id);
    });
  }
  if (calls.length > 0) {
    if (signatures.length === 0 && skip) signatures.push(GOOGLE_SKIP_SIGNATURE);
    signatures.forEach((signature, i) => {
      const call = calls[i];
      if (call !== undefined) call.thoughtSignature = signature;
    });
  } else if (signatures.length > 0 && texts.length > 0) {
    (texts.at(-1) as GooglePart).thoughtSignature = signatures.at(-1) as string;
  }
  return parts;
}

/**
 * Maps the normalized conversation to Gemini `contents`: `user` and `model` turns, tool
 * results as `functionResponse` parts of a user turn; consecutive turns of one role merged.
 * With `echoCallIds` (Gemini 3, which names every call and asks for the name back), Gemini's
 * calls go back with their `id`, and so do their results.
 */
export function toGoogleContents(
  messages: ModelMessage[],
  context: CallContext,
  skipMissingSignatures = true,
  echoCallIds = false,
): JsonObject[] {
  const out: Array<{ role: "user" | "model"; parts: GooglePart[] }> = [];
  /** The ids of Gemini's own calls sent back: their results name them. */
  const echoed = echoCallIds ? new Set<string>() : undefined;
  for (const message of answerToolCalls(messages)) {
    let role: "user" | "model";
    let parts: GooglePart[];
    if (message.role === "user") {
      role = "user";
      parts = userParts(message, context);
    } else if (message.role === "assistant") {
      role = "model";
      parts = modelParts(message, skipMissingSignatures, echoed);
    } else {
      role = "user";
      parts = message.content.map((result) => ({
        functionResponse: {
          ...(echoed?.has(result.toolCallId) === true ? { id: result.toolCallId } : {}),
          name: result.toolName,
          ...functionResponseImages(result, echoCallIds),
        },
      }));
    }
    if (parts.length === 0) continue;
    const last = out.at(-1);
    if (last !== undefined && last.role === role) last.parts.push(...parts);
    else out.push({ role, parts });
  }
  return out.map((turn) => ({ role: turn.role, parts: turn.parts }));
}

function toolConfig(choice: ModelRequest["toolChoice"]): JsonObject | undefined {
  if (choice === undefined) return undefined;
  if (choice === "auto") return { functionCallingConfig: { mode: "AUTO" } };
  if (choice === "none") return { functionCallingConfig: { mode: "NONE" } };
  if (choice === "required") return { functionCallingConfig: { mode: "ANY" } };
  return { functionCallingConfig: { mode: "ANY", allowedFunctionNames: [choice.toolName] } };
}

/**
 * True for the Gemini 3 family, which takes a thinking level instead of a token budget, and a
 * JSON response format beside function declarations.
 */
function takesThinkingLevel(model: string): boolean {
  return /(^|\/)gemini-3/.test(model);
}

/**
 * False for the models that take no `thinkingConfig` (Gemini 1.x and 2.0, Gemma), which
 * refuse one with HTTP 400 ("thinking is not supported by this model"): a thinking level is
 * not sent to them, as `off` would ask for nothing.
 */
function canThink(model: string): boolean {
  return !/(^|\/)(gemini-1\.|gemini-2\.0-|gemma-)/.test(model);
}

/** The least thinking budget of Gemini 2.5 Pro, which cannot stop thinking (128 to 32 768). */
const GEMINI_25_PRO_MIN_BUDGET = 128;

/**
 * The Gemini 3 thinking level sent for `level`, among those the model has (Gemini refuses
 * the others with HTTP 400, "Thinking level MEDIUM is not supported for this model"): Pro
 * models have no `minimal`, which becomes `low`; Gemini 3 Pro has only `low` and `high`, and
 * `medium` becomes `high`.
 */
function gemini3Level(model: string, level: Exclude<ThinkingLevel, "off">): string {
  if (!/pro/.test(model)) return level;
  if (level === "minimal") return "low";
  if (level === "medium" && /(^|\/)gemini-3-pro/.test(model)) return "high";
  return level;
}

/**
 * The `thinkingConfig` of a request. Gemini 3 takes the level (`minimal` to `high`, those
 * the model lacks mapped to the nearest it has) and cannot stop thinking: `off` asks for the
 * least it has (`low` on Pro models, which have no `minimal`). Gemini 2.5 takes a token
 * budget; `off` is a budget of 0, except on Gemini 2.5 Pro, which cannot stop thinking and
 * refuses 0: there it is the least budget it takes (128). Thought summaries are asked for
 * whenever thinking is on.
 */
function thinkingConfig(
  model: string,
  level: ThinkingLevel,
  budgets: GoogleThinkingBudgets,
): JsonObject {
  if (takesThinkingLevel(model)) {
    if (level === "off") return { thinkingLevel: /pro/.test(model) ? "low" : "minimal" };
    return { thinkingLevel: gemini3Level(model, level), includeThoughts: true };
  }
  if (level === "off") {
    return {
      thinkingBudget: /(^|\/)gemini-2\.5-pro/.test(model) ? GEMINI_25_PRO_MIN_BUDGET : 0,
    };
  }
  return { thinkingBudget: budgets[level], includeThoughts: true };
}

/** Settings of the Gemini request mapping. */
export interface GoogleRequestSettings {
  thinkingBudgets: GoogleThinkingBudgets;
  skipMissingSignatures: boolean;
}

/**
 * Maps a request to the `generateContent` body. Tools are declared with
 * `parametersJsonSchema` (JSON Schema as it is, not the OpenAPI subset of `parameters`); a
 * `responseFormat` becomes `responseMimeType: "application/json"` with `responseJsonSchema`,
 * except beside tools on models before Gemini 3, which refuse the pair: there it is not sent.
 */
export function toGoogleRequest(
  request: ModelRequest,
  settings: GoogleRequestSettings,
  context: CallContext,
): JsonObject {
  const body: JsonObject = {
    contents: toGoogleContents(
      request.messages,
      context,
      settings.skipMissingSignatures,
      takesThinkingLevel(request.model),
    ),
  };
  if (request.system !== undefined && request.system !== "") {
    body.systemInstruction = { parts: [{ text: request.system }] };
  }
  if (request.tools !== undefined && request.tools.length > 0) {
    body.tools = [
      {
        functionDeclarations: request.tools.map((tool) => ({
          name: tool.name,
          description: tool.description,
          parametersJsonSchema: tool.inputSchema,
        })),
      },
    ];
    const config = toolConfig(request.toolChoice);
    if (config !== undefined) body.toolConfig = config;
  }
  const generation: JsonObject = {};
  if (request.maxOutputTokens !== undefined) generation.maxOutputTokens = request.maxOutputTokens;
  if (request.temperature !== undefined) generation.temperature = request.temperature;
  if (request.thinking !== undefined && canThink(request.model)) {
    generation.thinkingConfig = thinkingConfig(
      request.model,
      request.thinking,
      settings.thinkingBudgets,
    );
  }
  // Before Gemini 3, Gemini refuses a JSON response format beside function declarations
  // (HTTP 400, "Tool use with a response mime type: 'application/json' is unsupported"): the
  // tools are sent without it, and the answer is left to the caller's validation (the agent
  // loop checks it against the schema whatever the provider did).
  const formatWithTools = takesThinkingLevel(request.model) || body.tools === undefined;
  if (request.responseFormat !== undefined && formatWithTools) {
    // Gemini names no schema and has no strict switch: `name`, `description` and `strict`
    // are not sent.
    generation.responseMimeType = "application/json";
    generation.responseJsonSchema = request.responseFormat.schema;
  }
  if (Object.keys(generation).length > 0) body.generationConfig = generation;
  return body;
}

/**
 * Gemini's `usageMetadata` as normalized usage: `promptTokenCount` already counts the cached
 * tokens (`cachedContentTokenCount`), and output is the answer plus the thinking
 * (`candidatesTokenCount` + `thoughtsTokenCount`), as both are billed as output.
 */
export function toGoogleUsage(metadata: unknown): ModelUsage {
  const prompt = numberField(metadata, "promptTokenCount") ?? 0;
  const toolPrompt = numberField(metadata, "toolUsePromptTokenCount") ?? 0;
  const answer = numberField(metadata, "candidatesTokenCount") ?? 0;
  const thoughts = numberField(metadata, "thoughtsTokenCount");
  const cached = numberField(metadata, "cachedContentTokenCount");
  return {
    inputTokens: prompt + toolPrompt,
    outputTokens: answer + (thoughts ?? 0),
    ...(cached === undefined ? {} : { cacheReadTokens: cached }),
    ...(thoughts === undefined ? {} : { reasoningTokens: thoughts }),
  };
}

const STREAM = ":streamGenerateContent?alt=sse";

/**
 * The API path of a model's streaming call. Gemini API: `gemini-2.5-flash` and
 * `models/gemini-2.5-flash` are `models/gemini-2.5-flash`, a tuned model (`tunedModels/...`)
 * keeps its collection. Vertex AI: a publisher model under the project and location
 * (`projects/.../publishers/google/models/gemini-2.5-flash`, or `publishers/google/models/...`
 * in express mode); a full resource name (`projects/...`, e.g. a tuned model's endpoint) as it
 * is.
 */
function streamPath(model: string, vertex: GoogleVertexOptions | undefined): string {
  if (vertex !== undefined) {
    if (model.startsWith("projects/")) {
      return `${model.split("/").map(encodeURIComponent).join("/")}${STREAM}`;
    }
    const name = encodeURIComponent(bareModel(model));
    const scope =
      vertex.project === undefined
        ? ""
        : `projects/${vertex.project}/locations/${vertex.location ?? "global"}/`;
    return `${scope}publishers/google/models/${name}${STREAM}`;
  }
  const slash = model.indexOf("/");
  const collection = slash === -1 ? "models" : model.slice(0, slash);
  const name = slash === -1 ? model : model.slice(slash + 1);
  return `${collection}/${encodeURIComponent(name)}${STREAM}`;
}

/** A project id or a location as Google Cloud spells them: nothing that could leave the path. */
const CLOUD_NAME = /^[a-z][a-z0-9-]{0,62}$/;

function checkVertex(vertex: GoogleVertexOptions | undefined): GoogleVertexOptions | undefined {
  if (vertex === undefined) return undefined;
  if (typeof vertex !== "object" || vertex === null || Array.isArray(vertex)) {
    throw new InvalidArgumentError(
      `vertex must be an object { project?, location? }, got ${JSON.stringify(vertex)}`,
    );
  }
  for (const name of ["project", "location"] as const) {
    const value = vertex[name];
    if (value !== undefined && (typeof value !== "string" || !CLOUD_NAME.test(value))) {
      throw new InvalidArgumentError(
        `vertex.${name} must be a Google Cloud ${name} name (lower-case letters, digits and hyphens), got ${JSON.stringify(value)}`,
      );
    }
  }
  if (vertex.location !== undefined && vertex.project === undefined) {
    throw new InvalidArgumentError(
      "vertex.location needs vertex.project (express mode has no location)",
    );
  }
  return { ...vertex };
}

/** The API root of the Gemini API, or of Vertex AI in `vertex.location`. */
function defaultBaseUrl(vertex: GoogleVertexOptions | undefined): string {
  if (vertex === undefined) return "https://generativelanguage.googleapis.com/v1beta";
  const location = vertex.location ?? "global";
  return location === "global"
    ? "https://aiplatform.googleapis.com/v1"
    : `https://${location}-aiplatform.googleapis.com/v1`;
}

/** The token the access token function gives, or `auth` when it throws. */
async function fetchToken(token: () => string | Promise<string>, context: CallContext) {
  try {
    return await token();
  } catch (error) {
    throw providerError(
      "auth",
      `the access token could not be had: ${error instanceof Error ? error.message : String(error)}`,
      context,
      { cause: error },
    );
  }
}

/** `pending`, or `AbortedError` as soon as `signal` aborts, whichever comes first. */
function unlessAborted<T>(
  pending: Promise<T>,
  signal: AbortSignal | undefined,
  context: CallContext,
): Promise<T> {
  if (signal === undefined) return pending;
  if (signal.aborted) return Promise.reject(abortedError(context, signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError(context, signal));
    signal.addEventListener("abort", onAbort, { once: true });
    pending.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/**
 * The call's options with `Authorization: Bearer` from the access token added. An abort
 * while a token function is awaited ends the wait at once (the token, when it comes, is
 * dropped).
 */
async function withAccessToken(
  token: GoogleAccessToken,
  options: ModelCallOptions,
  context: CallContext,
): Promise<ModelCallOptions> {
  if (options.signal?.aborted) throw abortedError(context, options.signal);
  const value: unknown =
    typeof token === "function"
      ? await unlessAborted(fetchToken(token, context), options.signal, context)
      : token;
  if (typeof value !== "string" || value === "") {
    throw providerError("auth", "the access token function gave no token", context);
  }
  return { ...options, headers: { authorization: `Bearer ${value}`, ...options.headers } };
}

/** The model id without its `models/` prefix, as the other adapters name models. */
function bareModel(model: string): string {
  return model.startsWith("models/") ? model.slice("models/".length) : model;
}

async function* streamGoogle(
  request: ModelRequest,
  options: ModelCallOptions,
  setup: {
    id: string;
    http: ReturnType<typeof createHttpClient>;
    apiKey: string | undefined;
    accessToken: GoogleAccessToken | undefined;
    vertex: GoogleVertexOptions | undefined;
    idleTimeoutMs: number;
    settings: GoogleRequestSettings;
  },
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  const context: CallContext = { provider: setup.id, model: modelOf(request) };
  checkRequest(request, context);
  if (setup.apiKey === undefined && setup.accessToken === undefined) {
    throw providerError(
      "auth",
      setup.vertex === undefined
        ? "no API key: pass `apiKey` or set GEMINI_API_KEY (or GOOGLE_API_KEY)"
        : "no credentials for Vertex AI: pass `accessToken`, or `apiKey` (express mode)",
      context,
    );
  }
  const body = withProviderOptions(
    toGoogleRequest(request, setup.settings, context),
    request.providerOptions,
    setup.id,
  );
  const call =
    setup.accessToken === undefined
      ? options
      : await withAccessToken(setup.accessToken, options, context);
  const { body: stream, release } = await setup.http.postEventStream(
    streamPath(request.model, setup.vertex),
    body,
    context,
    call,
  );

  let started = false;
  let complete = false;
  let calledTools = false;
  let unnamedCalls = 0;
  let usage: ModelUsage | undefined;
  const malformed = (message: string, raw: string) =>
    providerError("malformed_stream", message, context, { responseBody: raw });

  for await (const event of readSse(stream, {
    context,
    release,
    signal: options.signal,
    idleTimeoutMs: setup.idleTimeoutMs,
    complete: () => complete,
  })) {
    const data = parseSseJson(event, context);
    if (!isWire(data)) throw malformed("a chunk that is not a JSON object", event.data);
    if (data.error !== undefined) {
      throw errorFromStreamEvent(data, event.data, context, parseGoogleError);
    }
    if (!started) {
      started = true;
      const responseId = stringField(data, "responseId");
      yield {
        type: "response-start",
        ...(responseId === undefined ? {} : { id: responseId }),
        model: bareModel(stringField(data, "modelVersion") ?? request.model),
      };
    }
    if (data.usageMetadata !== undefined) usage = toGoogleUsage(data.usageMetadata);
    const blockReason = stringField(field(data, "promptFeedback"), "blockReason");
    const candidates = field(data, "candidates");
    const candidate = Array.isArray(candidates) ? candidates[0] : undefined;
    if (candidate === undefined && blockReason !== undefined) {
      // The prompt itself was refused: no candidate will come.
      complete = true;
      if (usage !== undefined) yield { type: "usage", usage };
      yield { type: "finish", reason: "content-filter", rawReason: `prompt:${blockReason}` };
      return;
    }
    const parts = field(field(candidate, "content"), "parts");
    if (parts !== undefined && !Array.isArray(parts)) {
      throw malformed("candidates[0].content.parts is not an array", event.data);
    }
    for (const part of (parts ?? []) as unknown[]) {
      if (!isWire(part)) throw malformed("a part that is not a JSON object", event.data);
      const signature = stringField(part, "thoughtSignature");
      const text = stringField(part, "text");
      const call = field(part, "functionCall");
      if (call !== undefined) {
        const toolName = stringField(call, "name");
        if (toolName === undefined) throw malformed("functionCall without a name", event.data);
        const args = field(call, "args") ?? {};
        // Gemini 2.x names no call: the id is made up (results go back by name and order).
        const toolCallId = stringField(call, "id") ?? `gemini_call_${++unnamedCalls}`;
        calledTools = true;
        // The signature comes first: the thinking it closes came before the call.
        if (signature !== undefined) {
          yield { type: "thinking-end", signature, format: GOOGLE_THINKING_FORMAT };
        }
        yield { type: "tool-call-start", toolCallId, toolName };
        yield { type: "tool-call-delta", toolCallId, inputTextDelta: JSON.stringify(args) };
        yield { type: "tool-call", toolCallId, toolName, input: args as JsonValue };
        continue;
      }
      if (text !== undefined && text !== "") {
        yield part.thought === true
          ? { type: "thinking-delta", text }
          : { type: "text-delta", text };
      }
      // A signature on a text or thought part (often an empty one, at the end of a stream).
      if (signature !== undefined) {
        yield { type: "thinking-end", signature, format: GOOGLE_THINKING_FORMAT };
      }
      // Other parts (executable code, inline data of generated images) are not part of the
      // normalized model: skipped.
    }
    const finishReason = stringField(candidate, "finishReason");
    if (finishReason !== undefined) {
      // The last chunk: the body ends after it.
      complete = true;
      if (usage !== undefined) yield { type: "usage", usage };
      yield {
        type: "finish",
        reason: mapGoogleFinishReason(finishReason, calledTools),
        rawReason: finishReason,
      };
      return;
    }
  }
  throw streamCutError(context, "a chunk with a finishReason");
}

/**
 * Creates the Google Gemini API provider (Google AI Studio keys), or, with `vertex`, the
 * Gemini models of Vertex AI.
 *
 * @example
 * ```ts
 * const gemini = createGoogleProvider(); // reads GEMINI_API_KEY
 * for await (const event of gemini.stream({
 *   model: "gemini-2.5-flash",
 *   messages: [{ role: "user", content: [{ type: "text", text: "Hello" }] }],
 * })) {
 *   if (event.type === "text-delta") process.stdout.write(event.text);
 * }
 * ```
 */
export function createGoogleProvider(options: GoogleProviderOptions = {}): ModelProvider {
  const id = options.id ?? "google";
  const accessToken = options.accessToken;
  if (
    accessToken !== undefined &&
    typeof accessToken !== "function" &&
    (typeof accessToken !== "string" || accessToken === "")
  ) {
    throw new InvalidArgumentError(
      "accessToken must be a non-empty string or a function that returns one",
    );
  }
  const vertex = checkVertex(options.vertex);
  // An OAuth token is the credential: the environment's API keys are not sent beside it.
  const apiKey =
    accessToken !== undefined
      ? options.apiKey
      : (resolveApiKey(options.apiKey, "GEMINI_API_KEY") ??
        resolveApiKey(undefined, "GOOGLE_API_KEY"));
  const timeoutMs = checkTimeout("timeoutMs", options.timeoutMs, DEFAULT_TIMEOUT_MS);
  const idleTimeoutMs = checkTimeout(
    "idleTimeoutMs",
    options.idleTimeoutMs,
    DEFAULT_IDLE_TIMEOUT_MS,
  );
  const thinkingBudgets = { ...DEFAULT_GOOGLE_THINKING_BUDGETS, ...options.thinkingBudgets };
  for (const [level, budget] of Object.entries(thinkingBudgets)) {
    if (!Number.isInteger(budget) || budget <= 0) {
      throw new InvalidArgumentError(
        `thinkingBudgets.${level} must be a positive integer, got ${String(budget)}`,
      );
    }
  }
  const skipMissingSignatures = options.skipMissingSignatures ?? true;
  if (typeof skipMissingSignatures !== "boolean") {
    throw new InvalidArgumentError(
      `skipMissingSignatures must be a boolean, got ${JSON.stringify(skipMissingSignatures)}`,
    );
  }
  const settings: GoogleRequestSettings = { thinkingBudgets, skipMissingSignatures };
  const http = createHttpClient({
    baseUrl: checkBaseUrl(options.baseUrl, defaultBaseUrl(vertex)),
    headers: {
      ...(apiKey === undefined ? {} : { "x-goog-api-key": apiKey }),
      ...options.headers,
    },
    timeoutMs,
    fetch: options.fetch,
    parseVendorError: parseGoogleError,
  });
  const models = options.models;
  /** The price list `modelInfo` reads: the built-in one with the caller's corrections. */
  const priced = mergeModels(GOOGLE_MODELS, models);
  return {
    specificationVersion: "v1",
    id,
    stream(request: ModelRequest, callOptions: ModelCallOptions = {}) {
      return abortable(
        streamGoogle(request, callOptions, {
          id,
          http,
          apiKey,
          accessToken,
          vertex,
          idleTimeoutMs,
          settings,
        }),
        callOptions.signal,
        { provider: id, model: modelOf(request) },
      );
    },
    async listModels() {
      return mergeModels(GOOGLE_MODELS, models);
    },
    modelInfo(modelId: string) {
      const known = findModel(priced, modelId);
      return known === undefined ? undefined : copyModel(known);
    },
  };
}
