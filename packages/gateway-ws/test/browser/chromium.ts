/**
 * Launches Debian's Chromium (`/usr/bin/chromium`) through playwright-core for the dashboard
 * tests. Playwright's own browser download is never used: CI installs the `chromium` package
 * (see `.ci/run`).
 */
import { existsSync } from "node:fs";
import {
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  chromium,
  type Page,
} from "playwright-core";

/** Where Debian puts Chromium. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Starts a headless Chromium; close it with `browser.close()`. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `${CHROMIUM_PATH} is missing: install Debian's chromium (apt-get install -y chromium)`,
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    timeout: 15_000,
  });
}

/** What a page did that a test may want to assert on. */
export interface PageRecord {
  page: Page;
  context: BrowserContext;
  /** Every URL the page requested (HTTP and WebSocket). */
  requests: string[];
  /** Uncaught errors and console errors (CSP violations land here). */
  errors: string[];
}

/**
 * Opens a fresh context (its own sessionStorage) and page, recording requests and errors.
 * `options` are added to the context's (`bypassCSP: true` lets a test see whether markup
 * would run if the page ever parsed it, with the gateway's CSP out of the way).
 */
export async function openPage(
  browser: Browser,
  options: BrowserContextOptions = {},
): Promise<PageRecord> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 950 }, ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const record: PageRecord = { page, context, requests: [], errors: [] };
  page.on("request", (request) => record.requests.push(request.url()));
  page.on("websocket", (socket) => record.requests.push(socket.url()));
  page.on("pageerror", (error) => record.errors.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") record.errors.push(`console: ${message.text()}`);
  });
  return record;
}
