/**
 * `web_fetch`: an agent tool that reads web pages, and the SSRF-guarded `safeFetch` under it.
 *
 * @example
 * ```ts
 * import { BasicToolRunner, createWebFetchTool, safeFetch } from "@beamclaw/core";
 *
 * const runner = new BasicToolRunner({ tools: [createWebFetchTool()] });
 * const page = await safeFetch("https://example.com/", { maxBytes: 100_000 });
 * ```
 */
export {
  type CheckedTarget,
  createSsrfGuard,
  type ResolveHost,
  type SsrfGuard,
  type SsrfGuardOptions,
} from "./guard.js";
export {
  type HtmlExtraction,
  type HtmlExtractionOptions,
  htmlToMarkdown,
  htmlToText,
} from "./html.js";
export { classifyAddress } from "./ip.js";
export {
  type SafeFetchOptions,
  type SafeFetchResult,
  safeFetch,
} from "./safe-fetch.js";
export {
  createWebFetchTool,
  type WebFetchFormat,
  type WebFetchInput,
  type WebFetchToolOptions,
} from "./tool.js";
