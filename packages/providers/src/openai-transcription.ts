/**
 * Speech to text over OpenAI's Audio API (`POST /v1/audio/transcriptions`, multipart), and
 * the OpenAI-compatible servers that copy it (Groq's Whisper, a local whisper server).
 */
import {
  baseMediaType,
  InvalidArgumentError,
  type Transcriber,
  type TranscriptionInput,
  type TranscriptionOptions,
  type TranscriptionResult,
} from "@beamclaw/core";
import type { CallContext } from "./errors.js";
import { providerError } from "./errors.js";
import { type ProviderHttpOptions, resolveApiKey } from "./http.js";
import { lookup } from "./json.js";
import { createOpenAIHttpClient } from "./openai-chat.js";

/** Options of {@link createOpenAITranscriber}. */
export interface OpenAITranscriberOptions extends Omit<ProviderHttpOptions, "idleTimeoutMs"> {
  /** Default `process.env.OPENAI_API_KEY`; sent as `Authorization: Bearer`. */
  apiKey?: string;
  /**
   * Default `https://api.openai.com/v1`; e.g. `https://api.groq.com/openai/v1` for Groq
   * (with `model: "whisper-large-v3-turbo"`).
   */
  baseUrl?: string;
  /**
   * The model. Default `gpt-4o-mini-transcribe`; also `gpt-4o-transcribe`, `whisper-1`, or a
   * compatible server's own.
   */
  model?: string;
  /** The spoken language (ISO-639-1), when every recording is in one. Per call: `language`. */
  language?: string;
  /** A text to guide the style or spelling (names, jargon), sent as `prompt`. */
  prompt?: string;
  /** The largest audio file sent, bytes; larger ones fail before any request. Default 25 MiB (OpenAI's limit). */
  maxBytes?: number;
  /** Time limit of one request, ms (uploading, transcribing, answering). Default 60 000. */
  timeoutMs?: number;
}

/** File extensions by audio type: vendors read the format from the file name. */
const EXTENSIONS: Record<string, string> = {
  "audio/ogg": "ogg",
  "audio/opus": "ogg",
  "audio/mpeg": "mp3",
  "audio/mp3": "mp3",
  "audio/mp4": "m4a",
  "audio/m4a": "m4a",
  "audio/x-m4a": "m4a",
  "audio/aac": "m4a",
  "audio/wav": "wav",
  "audio/x-wav": "wav",
  "audio/wave": "wav",
  "audio/webm": "webm",
  "audio/flac": "flac",
  "audio/x-flac": "flac",
  "video/mp4": "mp4",
  "video/webm": "webm",
};

/** A file name whose extension says the format: the given one if it has one, else from the type. */
function fileNameOf(input: TranscriptionInput): string {
  if (input.filename !== undefined && /\.[a-z0-9]{2,5}$/i.test(input.filename)) {
    return input.filename;
  }
  const extension = lookup(EXTENSIONS, baseMediaType(input.mediaType)) ?? "ogg";
  return `${input.filename ?? "audio"}.${extension}`;
}

/**
 * Creates a {@link Transcriber} over OpenAI's Audio API (or a server speaking it): give it to
 * a `ChannelManager` as `transcriber` and voice notes reach the agent as text. Vendor errors
 * are `ProviderError`s with the kinds of the chat providers (`auth`, `rate_limit` with
 * `retryAfterMs`, `invalid_request`, ...); no retries (the caller decides).
 *
 * @example
 * ```ts
 * const transcriber = createOpenAITranscriber(); // reads OPENAI_API_KEY
 * const { text } = await transcriber.transcribe({
 *   data: await readFile("voice.ogg"),
 *   mediaType: "audio/ogg",
 * });
 * ```
 */
export function createOpenAITranscriber(options: OpenAITranscriberOptions = {}): Transcriber {
  const id = options.id ?? "openai";
  const model = options.model ?? "gpt-4o-mini-transcribe";
  if (typeof model !== "string" || model.length === 0) {
    throw new InvalidArgumentError("model must be a non-empty string");
  }
  const maxBytes = options.maxBytes ?? 25 * 1024 * 1024;
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new InvalidArgumentError(
      `maxBytes must be a positive integer, got ${String(options.maxBytes)}`,
    );
  }
  const apiKey = resolveApiKey(options.apiKey, "OPENAI_API_KEY");
  const http = createOpenAIHttpClient(options, apiKey, "https://api.openai.com/v1");
  return {
    id,
    async transcribe(
      input: TranscriptionInput,
      call: TranscriptionOptions = {},
    ): Promise<TranscriptionResult> {
      const context: CallContext = { provider: id, model };
      if (!(input?.data instanceof Uint8Array) || typeof input.mediaType !== "string") {
        throw new InvalidArgumentError("transcribe needs { data: Uint8Array, mediaType: string }");
      }
      if (apiKey === undefined && options.baseUrl === undefined) {
        throw providerError("auth", "no API key: pass `apiKey` or set OPENAI_API_KEY", context);
      }
      if (input.data.byteLength === 0) {
        throw providerError("invalid_request", "the audio is empty", context);
      }
      if (input.data.byteLength > maxBytes) {
        throw providerError(
          "invalid_request",
          `the audio is ${input.data.byteLength} bytes, over the ${maxBytes}-byte limit (maxBytes)`,
          context,
        );
      }
      const form = new FormData();
      form.append(
        "file",
        new Blob([input.data], { type: baseMediaType(input.mediaType) }),
        fileNameOf(input),
      );
      form.append("model", model);
      form.append("response_format", "json");
      const language = call.language ?? options.language;
      if (language !== undefined) form.append("language", language);
      if (options.prompt !== undefined) form.append("prompt", options.prompt);
      const answer = await http.postForm(
        "audio/transcriptions",
        form,
        context,
        call.signal === undefined ? {} : { signal: call.signal },
      );
      const text = (answer as { text?: unknown } | null)?.text;
      if (typeof text !== "string") {
        throw providerError("malformed_stream", "the answer has no `text`", context, {
          responseBody: JSON.stringify(answer),
        });
      }
      const result: TranscriptionResult = { text };
      const { language: spoken, duration } = answer as { language?: unknown; duration?: unknown };
      if (typeof spoken === "string") result.language = spoken;
      if (typeof duration === "number") result.durationSeconds = duration;
      return result;
    },
  };
}
