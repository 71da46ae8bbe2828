/**
 * A fast, long answer in a real headless Chromium against a real gateway on 127.0.0.1 (one
 * WebSocket frame per delta): the dashboard draws what arrived once per frame, not once per
 * delta, and ends with the whole answer.
 */
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, openPage, type PageRecord } from "./browser/chromium.js";
import { type Stack, startStack, stopStacks, TOKEN } from "./support.js";

const DELTAS = 3000;
const WORDS = Array.from({ length: DELTAS }, (_, i) => `w${i} `);
const ANSWER = WORDS.join("");
const SESSION = "agent:main:fast";

let stack: Stack;
let browser: Browser;
const pages: PageRecord[] = [];

beforeAll(async () => {
  stack = await startStack({
    responses: [
      {
        events: [
          { type: "response-start", model: "test-model" },
          ...WORDS.map((text) => ({ type: "text-delta" as const, text })),
          { type: "finish", reason: "stop" },
        ],
      },
    ],
  });
  browser = await launchChromium();
}, 30_000);

afterAll(async () => {
  for (const record of pages) await record.context.close().catch(() => undefined);
  await browser?.close();
  await stopStacks();
}, 30_000);

describe("a long answer streaming into the dashboard", () => {
  it("is drawn once per frame however many deltas arrive, and ends whole", async () => {
    const record = await openPage(browser);
    pages.push(record);
    const { page } = record;
    await page.goto(`http://127.0.0.1:${stack.port}/`);
    await page.getByLabel("Gateway token").fill(TOKEN);
    await page.getByRole("button", { name: "Connect", exact: true }).click();
    await page.locator('#connection[data-state="connected"]').waitFor();
    await page.getByLabel("New session key").fill(SESSION);
    await page.getByRole("button", { name: "Open", exact: true }).click();

    // Counts each time an answer's text is replaced in the log.
    await page.evaluate(`
      window.__draws = 0;
      new MutationObserver((records) => {
        for (const r of records) {
          const target = r.target instanceof Element ? r.target : r.target.parentElement;
          if (target?.closest('article[data-role="assistant"] .bubble-body')) window.__draws++;
        }
      }).observe(document.getElementById("chat-log"), {
        childList: true,
        characterData: true,
        subtree: true,
      });
    `);
    await page.getByLabel("Message").fill("Go");
    await page.getByRole("button", { name: "Send", exact: true }).click();

    const answer = page.locator('#chat-log article[data-role="assistant"][data-state="final"]');
    await answer.waitFor({ timeout: 30_000 });
    expect(await answer.locator(".bubble-body").textContent()).toBe(ANSWER);
    const draws = Number(await page.evaluate("window.__draws"));
    // Once per delta would be DELTAS; once per frame is a small part of that.
    expect(draws).toBeGreaterThan(0);
    expect(draws).toBeLessThan(DELTAS / 10);
    expect(record.errors).toEqual([]);
  }, 60_000);
});
