/**
 * Inbound files the channels download for the model: which ones, how much at most, and a
 * download that never holds more than its limit and checks the bytes are what they claim.
 * Shared by the Telegram, Slack and Discord channels.
 */
import {
  baseMediaType,
  decodeTextFile,
  detectMediaType,
  type InboundAttachment,
  InvalidArgumentError,
  isTextMediaType,
  MODEL_IMAGE_TYPES,
} from "@beamclaw/core";

/** How much of an inbound message's files a channel downloads and hands over inline. */
export interface InlineAttachmentOptions {
  /**
   * Images (PNG, JPEG, GIF, WebP) up to this many bytes are downloaded and handed to the host
   * inline (base64), so that the model sees them. 0 turns image downloads off. Default 5 MiB
   * (Anthropic's limit per image).
   */
  inlineImageMaxBytes?: number;
  /**
   * PDF documents up to this many bytes are downloaded and handed to the host inline (base64),
   * so that the model reads them (a `ChannelManager` gives them to the session as documents).
   * 0 turns document downloads off. Default 10 MiB.
   */
  inlineDocumentMaxBytes?: number;
  /**
   * Text files (`text/*`, JSON, YAML, XML, CSV, code: `isTextMediaType`) up to this many bytes
   * are downloaded and handed over inline, so that the model reads them (a `ChannelManager`
   * adds them to the message as `<attachment>` blocks); Discord turns a long message into such
   * a file (`message.txt`). 0 turns text downloads off. Default 256 KiB.
   */
  inlineTextMaxBytes?: number;
  /**
   * Audio (voice notes, recordings) up to this many bytes is downloaded and handed over
   * inline, for a `ChannelManager` with a `transcriber` to turn into text. Default 0 (off:
   * without a transcriber the model cannot use audio); 20 MiB takes every Telegram voice note
   * (the Bot API serves files up to 20 MB) and stays under OpenAI's 25 MB upload limit.
   */
  inlineAudioMaxBytes?: number;
}

/** The limits of {@link InlineAttachmentOptions}, checked, with defaults. */
export interface InlineLimits {
  image: number;
  document: number;
  text: number;
  audio: number;
}

export const DEFAULT_INLINE_IMAGE_MAX_BYTES = 5 * 1024 * 1024;
export const DEFAULT_INLINE_DOCUMENT_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_INLINE_TEXT_MAX_BYTES = 256 * 1024;

/**
 * Checks a channel's inline limits (non-negative integers) and fills in the defaults.
 * Throws `InvalidArgumentError` naming the option otherwise.
 */
export function inlineLimits(
  options: InlineAttachmentOptions | undefined,
  where: string,
): InlineLimits {
  const check = (value: number | undefined, name: string, fallback: number): number => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new InvalidArgumentError(
        `${where}.${name} must be a non-negative integer (bytes; 0 turns it off), got ${String(value)}`,
      );
    }
    return value;
  };
  return {
    image: check(
      options?.inlineImageMaxBytes,
      "inlineImageMaxBytes",
      DEFAULT_INLINE_IMAGE_MAX_BYTES,
    ),
    document: check(
      options?.inlineDocumentMaxBytes,
      "inlineDocumentMaxBytes",
      DEFAULT_INLINE_DOCUMENT_MAX_BYTES,
    ),
    text: check(options?.inlineTextMaxBytes, "inlineTextMaxBytes", DEFAULT_INLINE_TEXT_MAX_BYTES),
    audio: check(options?.inlineAudioMaxBytes, "inlineAudioMaxBytes", 0),
  };
}

/**
 * How many bytes of this attachment a channel downloads at most: the image limit for an
 * image of a type models take, the document limit for a PDF, the text limit for a text file,
 * 0 (do not download) for anything else (voice notes, videos, archives) or when its declared
 * size is over the limit.
 */
export function inlineLimitOf(
  attachment: Pick<InboundAttachment, "kind" | "mediaType" | "size">,
  limits: InlineLimits,
): number {
  const limit = kindLimit(attachment, limits);
  return (attachment.size ?? 0) > limit ? 0 : limit;
}

/** The limit for an attachment's kind and type, whatever its size. */
function kindLimit(
  attachment: Pick<InboundAttachment, "kind" | "mediaType">,
  limits: InlineLimits,
): number {
  if (attachment.mediaType === undefined) return 0;
  const type = baseMediaType(attachment.mediaType);
  if (type === "application/pdf") return limits.document;
  if (MODEL_IMAGE_TYPES.has(type)) return attachment.kind === "image" ? limits.image : 0;
  if (attachment.kind === "audio") return limits.audio;
  if (attachment.kind === "file" && isTextMediaType(type)) return limits.text;
  return 0;
}

/** A download that did not succeed: the status or the reason, never the URL (it may hold a token). */
export class FileDownloadError extends Error {
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined;
  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FileDownloadError";
    this.status = status;
  }
}

/** Options of {@link downloadFile}. */
export interface DownloadFileOptions {
  /** Default: the global `fetch`. */
  fetch?: typeof globalThis.fetch;
  /** Request headers (e.g. `Authorization`). */
  headers?: Record<string, string>;
  /** The most bytes to read: a larger file is left unread. */
  maxBytes: number;
  /** Time limit of the whole download, ms. */
  timeoutMs: number;
  /** Ends the download early (the channel stopping). */
  signal?: AbortSignal;
}

/**
 * Downloads a file, reading at most `maxBytes` of it: `undefined` when it is larger (by its
 * `Content-Length`, or once more arrived), else its bytes and `Content-Type`. Throws
 * {@link FileDownloadError} when the server answers other than 2xx, the connection fails or
 * the time runs out; the caller's abort rejects with the signal's reason.
 */
export async function downloadFile(
  url: string,
  options: DownloadFileOptions,
): Promise<{ data: Buffer; contentType: string | undefined } | undefined> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal =
    options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout]);
  const fetchFn = options.fetch ?? globalThis.fetch;
  /** What a failure means: the caller's abort as it is, else the time limit or `otherwise`. */
  const failed = (error: unknown, otherwise: string): unknown =>
    options.signal?.aborted
      ? options.signal.reason
      : new FileDownloadError(
          timeout.aborted ? `the download took longer than ${options.timeoutMs} ms` : otherwise,
          undefined,
          { cause: error },
        );
  let response: Response;
  try {
    response = await fetchFn(url, {
      ...(options.headers === undefined ? {} : { headers: options.headers }),
      signal,
    });
  } catch (error) {
    throw failed(error, "the download could not connect");
  }
  if (!response.ok) {
    void response.body?.cancel().catch(() => undefined);
    throw new FileDownloadError(`the file download answered ${response.status}`, response.status);
  }
  const contentType = response.headers.get("content-type") ?? undefined;
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (declared > options.maxBytes || response.body === null) {
    // Not worth reading: drop the connection instead (not awaited: a cancel may linger).
    void response.body?.cancel().catch(() => undefined);
    return response.body === null ? { data: Buffer.alloc(0), contentType } : undefined;
  }
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      length += value.byteLength;
      if (length > options.maxBytes) {
        void reader.cancel().catch(() => undefined);
        return undefined;
      }
      chunks.push(value);
    }
  } catch (error) {
    throw failed(error, "the download was cut off");
  }
  return { data: Buffer.concat(chunks, length), contentType };
}

/**
 * The attachment with its downloaded bytes inline, once they are checked: they must be a
 * PDF when it claims one, an image of a type models take when it claims an image (the type
 * is then taken from the bytes: a JPEG named `image/png` is a JPEG), and UTF-8 text without
 * NUL bytes when it claims a text type. Throws
 * {@link FileDownloadError} when they are not (an HTML login page served in place of the
 * file, say).
 */
export function withInlineData(attachment: InboundAttachment, data: Buffer): InboundAttachment {
  const claimed = attachment.mediaType === undefined ? "" : baseMediaType(attachment.mediaType);
  if (
    claimed !== "application/pdf" &&
    !MODEL_IMAGE_TYPES.has(claimed) &&
    isTextMediaType(claimed)
  ) {
    if (decodeTextFile(data) === undefined) {
      throw new FileDownloadError("the downloaded content is not UTF-8 text");
    }
    return { ...attachment, data: data.toString("base64"), size: data.length };
  }
  if (attachment.kind === "audio") {
    // Audio is for a transcriber, which reads many formats; there is no signature to check.
    if (data.length === 0) throw new FileDownloadError("the downloaded audio is empty");
    return { ...attachment, data: data.toString("base64"), size: data.length };
  }
  const detected = detectMediaType(data);
  const pdf = claimed === "application/pdf";
  const fits = pdf
    ? detected === "application/pdf"
    : detected !== undefined && MODEL_IMAGE_TYPES.has(detected);
  if (!fits) {
    throw new FileDownloadError(
      `the downloaded content is not ${pdf ? "a PDF" : "a PNG, JPEG, GIF or WebP image"}`,
    );
  }
  return { ...attachment, mediaType: detected, data: data.toString("base64"), size: data.length };
}
