/**
 * The dashboard's chat log over a long-lived tab, driven in a real headless Chromium against a
 * real gateway on 127.0.0.1: it keeps the newest 500 bubbles (messages and tool calls), drops
 * the oldest with a note saying how many (and the page's entries for them), keeps the answer it
 * follows to its end, and forgets the note when another session is opened.
 */
import { defineTool } from "@beamclaw/core";
import type { Browser } from "playwright-core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { launchChromium, openPage, type PageRecord } from "./browser/chromium.js";
import { stateKeys } from "./browser/page-state.js";
import { closeClients, type Stack, startStack, stopStacks, TOKEN } from "./support.js";

/** The chat log's cap (the dashboard's `CHAT_LOG_LIMIT`). */
const LIMIT = 500;
/** Tool calls of the one step: with the user's message and the answer, 562 bubbles. */
const CALLS = 560;

const PING = defineTool({
  name: "ping",
  description: "Answers pong.",
  parameters: z.object({ i: z.number() }),
  execute: () => "pong",
});

let stack: Stack;
let browser: Browser;
let pages: PageRecord[] = [];

beforeEach(async () => {
  stack = await startStack({
    agents: [{ id: "main", model: "scripted/m1", tools: ["ping"] }],
    runtime: { tools: [PING] },
  });
  browser = await launchChromium();
}, 30_000);

afterEach(async () => {
  for (const record of pages) await record.context.close().catch(() => undefined);
  pages = [];
  await browser?.close();
  await closeClients();
  await stopStacks();
}, 30_000);

async function openDashboard(): Promise<PageRecord> {
  const record = await openPage(browser);
  pages.push(record);
  await record.page.goto(`http://127.0.0.1:${stack.port}/`);
  await record.page.getByLabel("Gateway token").fill(TOKEN);
  await record.page.getByRole("button", { name: "Connect" }).click();
  await record.page.locator('#connection[data-state="connected"]').waitFor();
  return record;
}

describe("the dashboard's chat log in a long-lived tab, in a real Chromium", () => {
  it("keeps the newest 500 bubbles and says how many older ones it dropped", async () => {
    const { page, errors } = await openDashboard();
    stack.provider.push(
      { toolCalls: Array.from({ length: CALLS }, (_, i) => ({ toolName: "ping", input: { i } })) },
      "All pinged.",
    );
    const note = page.locator("#chat-trimmed");
    expect(await note.isHidden()).toBe(true);
    const input = page.locator("#chat-input");
    await expect.poll(() => input.isDisabled()).toBe(false);
    await input.fill("Ping them all");
    await input.press("Enter");
    const answer = page.locator('#chat-log article[data-role="assistant"][data-state="final"]');
    await answer.filter({ hasText: "All pinged." }).waitFor();
    // Every tool call has ended (the last one shows its result).
    const tools = page.locator('#chat-log article[data-role="tool"]');
    await expect
      .poll(() => tools.last().getAttribute("data-state"), { timeout: 20_000 })
      .toBe("done");

    const articles = page.locator("#chat-log article");
    expect(await articles.count()).toBe(LIMIT);
    // The newest stay: the answer last, the latest tool calls before it, in order; the user's
    // message (the oldest) is gone.
    expect(await articles.last().textContent()).toContain("All pinged.");
    expect(await page.locator('#chat-log article[data-role="user"]').count()).toBe(0);
    const shown = (await tools.locator(".bubble-body").allTextContents()).map(
      (text) => JSON.parse(text.slice("ping ".length)).i as number,
    );
    expect(shown).toHaveLength(LIMIT - 1);
    expect(shown.at(-1)).toBe(CALLS - 1);
    expect(shown).toEqual(shown.map((_, k) => (shown[0] as number) + k));
    expect(await note.isVisible()).toBe(true);
    expect(await note.textContent()).toContain(`${CALLS + 2 - LIMIT} older messages`);
    expect(await note.textContent()).toContain("newest 500");
    // Nor does the page keep entries for the tool calls it no longer shows.
    const keys = await stateKeys(page);
    expect(keys.tools?.length).toBeLessThanOrEqual(LIMIT);
    expect(keys.tools?.length).toBeGreaterThan(0);

    // Another session: an empty log, and no note.
    await page.getByLabel("New session key").fill("agent:main:elsewhere");
    await page.getByRole("button", { name: "Open" }).click();
    await expect.poll(() => articles.count()).toBe(0);
    expect(await note.isHidden()).toBe(true);
    expect(errors).toEqual([]);
  }, 60_000);
});
