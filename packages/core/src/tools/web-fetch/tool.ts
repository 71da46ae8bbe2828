import { z } from "zod";
import { InvalidArgumentError, WebFetchError } from "../../errors.js";
import type { JsonObject, JsonValue } from "../../providers/types.js";
import { optionalNumber } from "../../runtime/validate.js";
import type { AgentTool } from "../../sessions/tools.js";
import { DEFAULT_TOOL_TEXT_BYTES, fitJsonText, jsonTextBytes } from "../output-cap.js";

/** What a result's `url` and `finalUrl` may take of its room beside the content, in bytes. */
const URL_ALLOWANCE_BYTES = 2 * 1024;

import { createSsrfGuard } from "./guard.js";
import { htmlToMarkdown, htmlToText } from "./html.js";
import {
  parseOriginHeaders,
  type SafeFetchOptions,
  type SafeFetchResult,
  safeFetch,
} from "./safe-fetch.js";

/** How `web_fetch` returns a page. */
export type WebFetchFormat = "markdown" | "text" | "html";

/** Options of {@link createWebFetchTool}. */
export interface WebFetchToolOptions
  extends Pick<
    SafeFetchOptions,
    "allow" | "resolveHost" | "maxRedirects" | "timeoutMs" | "userAgent" | "originHeaders"
  > {
  /**
   * Headers for every URL the model fetches, whatever its origin (and, like all of them, not
   * after a redirect to another origin). Since the model chooses the URL, only headers that
   * carry no secret belong here (`accept-language`, `from`, ...): a name that can carry a
   * credential (`authorization`, `proxy-authorization`, `cookie`, or one that contains
   * `key`, `token`, `secret`, `auth`, `session`, `password`, `credential` or `signature`)
   * is refused with `InvalidArgumentError` — put it in `originHeaders` under the origin it is
   * for, where it is sent to that origin only.
   */
  headers?: Record<string, string>;
  /** Default `web_fetch`. */
  name?: string;
  /** The most body bytes a call may download; a call's `maxBytes` can only lower it. Default 2 MiB. */
  maxBytes?: number;
  /** The most characters of content returned to the model. Default 50 000. */
  maxChars?: number;
  /**
   * The most bytes of content returned to the model, measured as serialized (UTF-8 JSON
   * text, escapes counted); the start is kept. Default 61 440 (60 KiB), so that a result
   * fits the tool runner's default cap on a result (64 KiB), which would otherwise cut the
   * result's JSON text. Keep it below the runner's `maxOutputBytes` when that is changed;
   * `Infinity` for no byte limit.
   */
  maxOutputBytes?: number;
  /** Format when the call does not name one. Default `markdown`. */
  defaultFormat?: WebFetchFormat;
}

/** The input of the `web_fetch` tool. */
export interface WebFetchInput {
  url: string;
  format?: WebFetchFormat;
  maxBytes?: number;
}

const inputSchema = z
  .object({
    url: z.string().min(1),
    format: z.enum(["markdown", "text", "html"]).optional(),
    maxBytes: z.number().int().positive().optional(),
  })
  .strict();

/** Header names that can carry a credential: refused in the tool's unscoped `headers`. */
const CREDENTIAL_HEADER =
  /^(authorization|proxy-authorization|cookie)$|(^|[-_])(api)?(key|token|secret|auth\w*|session|password|passwd|credentials?|signature)s?($|[-_])/i;

const HTML_TYPES = new Set(["text/html", "application/xhtml+xml"]);

/** Text-like media types: the tool reads these and refuses images, PDFs, archives and the like. */
function isTextual(mediaType: string): boolean {
  return (
    mediaType === "" ||
    mediaType.startsWith("text/") ||
    HTML_TYPES.has(mediaType) ||
    mediaType === "application/json" ||
    mediaType.endsWith("+json") ||
    mediaType === "application/xml" ||
    mediaType.endsWith("+xml") ||
    mediaType === "application/javascript" ||
    mediaType === "application/ecmascript" ||
    mediaType === "application/x-ndjson" ||
    mediaType === "application/yaml" ||
    mediaType === "application/x-yaml" ||
    mediaType === "application/toml"
  );
}

/**
 * Creates the `web_fetch` tool: fetches an http(s) URL through {@link safeFetch} (SSRF guard
 * on every hop, pinned connections, redirect and size caps, timeout) and returns the page as
 * Markdown (default), plain text or raw HTML. JSON is pretty-printed; Markdown and other text
 * pass through. Asks servers for `text/markdown` first. An HTTP error status, a blocked URL
 * or a binary content type fails the call with a typed error the model can read.
 *
 * Output: `{ url, finalUrl, status, contentType, format, title?, content, truncated, bytes }`.
 *
 * @example
 * ```ts
 * const tools = new BasicToolRunner({
 *   tools: [createWebFetchTool({ maxBytes: 1_000_000, allow: ["wiki.corp.example"] })],
 * });
 * ```
 */
export function createWebFetchTool(options: WebFetchToolOptions = {}): AgentTool {
  const maxBytes = options.maxBytes ?? 2 * 1024 * 1024;
  const maxChars = options.maxChars ?? 50_000;
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (!Number.isInteger(maxChars) || maxChars < 1) {
    throw new InvalidArgumentError(`maxChars: expected a positive integer, got ${maxChars}`);
  }
  optionalNumber(options.maxOutputBytes, "createWebFetchTool: maxOutputBytes", {
    min: "positive",
    integer: true,
    infinity: true,
  });
  const maxOutputBytes = options.maxOutputBytes ?? DEFAULT_TOOL_TEXT_BYTES;
  // Built once, so a bad allowlist fails here rather than on the first call.
  const guard = createSsrfGuard(options);
  parseOriginHeaders(options.originHeaders);
  for (const name of Object.keys(options.headers ?? {})) {
    if (CREDENTIAL_HEADER.test(name)) {
      throw new InvalidArgumentError(
        `createWebFetchTool: the header ${JSON.stringify(name)} can carry a credential, and headers are sent to whatever URL the model fetches; configure it as originHeaders: { "https://the.origin": { ${JSON.stringify(name)}: ... } } so that only that origin gets it`,
      );
    }
  }
  const defaultFormat = options.defaultFormat ?? "markdown";
  return {
    name: options.name ?? "web_fetch",
    description:
      "Fetch a public web page or file over http(s) and return its readable content. " +
      "HTML is converted to Markdown (or plain text / raw HTML with `format`); JSON and text are returned as is. " +
      "Internal, private and cloud-metadata addresses are refused.",
    inputSchema: {
      type: "object",
      properties: {
        url: { type: "string", description: "Absolute http or https URL." },
        format: {
          type: "string",
          enum: ["markdown", "text", "html"],
          description: `How to return HTML pages. Default ${defaultFormat}.`,
        },
        maxBytes: {
          type: "integer",
          minimum: 1,
          maximum: maxBytes,
          description: `Download at most this many bytes. Default and maximum ${maxBytes}.`,
        },
      },
      required: ["url"],
      additionalProperties: false,
    },
    // A little over the fetch's own limit, so its clearer TimeoutError wins the race.
    timeoutMs: timeoutMs + 1_000,
    async execute(input, context) {
      const parsed = inputSchema.safeParse(input);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const field = issue?.path.join(".") || "input";
        throw new InvalidArgumentError(`web_fetch ${field}: ${issue?.message ?? "invalid input"}`);
      }
      const { url, format = defaultFormat } = parsed.data;
      const result = await safeFetch(url, {
        guard,
        maxRedirects: options.maxRedirects,
        timeoutMs,
        userAgent: options.userAgent,
        headers: {
          accept:
            format === "html"
              ? "text/html, application/xhtml+xml, text/plain;q=0.8, application/json;q=0.8, */*;q=0.5"
              : "text/markdown, text/html;q=0.9, application/xhtml+xml;q=0.9, text/plain;q=0.8, application/json;q=0.8, */*;q=0.5",
          ...options.headers,
        },
        originHeaders: options.originHeaders,
        maxBytes: Math.min(parsed.data.maxBytes ?? maxBytes, maxBytes),
        signal: context.signal,
        acceptContentType: isTextual,
      });
      if (result.status >= 400) {
        const excerpt = render(result, "text").content.slice(0, 300);
        throw new WebFetchError(
          "http",
          result.finalUrl,
          `HTTP ${result.status}${result.statusText ? ` ${result.statusText}` : ""} from ${result.finalUrl}${excerpt ? `: ${excerpt}` : ""}`,
          { statusCode: result.status },
        );
      }
      const rendered = render(result, format);
      let content = rendered.content;
      if (content.length > maxChars) {
        content = content.slice(0, maxChars);
        // Never end with the first half of a surrogate pair.
        const last = content.charCodeAt(maxChars - 1);
        if (last >= 0xd800 && last <= 0xdbff) content = content.slice(0, -1);
      }
      // The addresses go into the result too: what they take past an allowance of 2 KiB (the
      // rest of the result's room) comes off the content's share.
      const urlBytes = jsonTextBytes(result.url) + jsonTextBytes(result.finalUrl);
      content = fitJsonText(
        content,
        Math.max(0, maxOutputBytes - Math.max(0, urlBytes - URL_ALLOWANCE_BYTES)),
        "head",
      );
      const cut = content.length < rendered.content.length;
      const output: JsonObject = {
        url: result.url,
        finalUrl: result.finalUrl,
        status: result.status,
        contentType: result.mediaType,
        format: rendered.format,
        content,
        truncated: result.truncated || cut,
        bytes: result.body.byteLength,
      };
      // A title is a line; a page's 200 KB <title> must not push the result past the cap.
      if (rendered.title !== undefined) output.title = fitJsonText(rendered.title, 1024, "head");
      return output as JsonValue;
    },
  };
}

function looksLikeHtml(text: string): boolean {
  return /^\s*(?:<!doctype html|<html[\s>]|<head[\s>]|<body[\s>])/i.test(text.slice(0, 1024));
}

function render(
  result: SafeFetchResult,
  format: WebFetchFormat,
): { format: WebFetchFormat | "json"; title?: string; content: string } {
  const text = result.text();
  const type = result.mediaType;
  if (HTML_TYPES.has(type) || (type === "" && looksLikeHtml(text))) {
    if (format === "html") return { format, content: text };
    const extraction = (format === "text" ? htmlToText : htmlToMarkdown)(text, {
      baseUrl: result.finalUrl,
    });
    return { format, title: extraction.title, content: extraction.content };
  }
  if (type === "application/json" || type.endsWith("+json")) {
    try {
      return { format: "json", content: JSON.stringify(JSON.parse(text), null, 2) };
    } catch {
      // Cut by maxBytes, or not JSON after all: hand it over as it came.
      return { format: "json", content: text };
    }
  }
  return { format: type === "text/markdown" ? "markdown" : "text", content: text };
}
