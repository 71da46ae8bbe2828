/**
 * Memory audit of the dashboard, driven in a real headless Chromium against a real gateway on
 * 127.0.0.1: a dashboard left open for weeks must not keep, run after run and session after
 * session, entries for things it no longer shows. The page's `state` lives in its module scope;
 * the test finds it in the page's heap through the DevTools protocol (`Runtime.queryObjects`)
 * and lists what its maps and sets are keyed by.
 */
import type { Browser, Page } from "playwright-core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { launchChromium, openPage, type PageRecord } from "./browser/chromium.js";
import { stateKeys } from "./browser/page-state.js";
import {
  closeClients,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
} from "./support.js";

useSchemaCheck();

let stack: Stack;
let browser: Browser;
let pages: PageRecord[] = [];

beforeEach(async () => {
  stack = await startStack();
  browser = await launchChromium();
}, 30_000);

afterEach(async () => {
  for (const record of pages) await record.context.close().catch(() => undefined);
  pages = [];
  await browser?.close();
  await closeClients();
  await stopStacks();
}, 30_000);

/** A logged-in dashboard in a fresh context; `sends` collects its `chat.send` idempotency keys. */
async function openDashboard(): Promise<PageRecord & { sends: string[] }> {
  const record = await openPage(browser);
  pages.push(record);
  const sends: string[] = [];
  record.page.on("websocket", (ws) => {
    ws.on("framesent", ({ payload }) => {
      const frame = JSON.parse(String(payload)) as Wire;
      if (frame.type === "req" && frame.method === "chat.send") {
        sends.push(frame.params.idempotencyKey);
      }
    });
  });
  await record.page.goto(`http://127.0.0.1:${stack.port}/`);
  await record.page.getByLabel("Gateway token").fill(TOKEN);
  await record.page.getByRole("button", { name: "Connect" }).click();
  await record.page.locator('#connection[data-state="connected"]').waitFor();
  return { ...record, sends };
}

/** The fields of `state` that still hold any of `names` (as a map key or a set member). */
async function holding(page: Page, names: string[]): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const [field, keys] of Object.entries(await stateKeys(page))) {
    const held = keys.filter((key) => names.includes(key));
    if (held.length > 0) out[field] = held;
  }
  return out;
}

describe("dashboard memory over a long-lived page, in a real Chromium", () => {
  it("keeps nothing about the runs it sent once they ended and another session is open", async () => {
    const { page, sends, errors } = await openDashboard();
    const input = page.locator("#chat-input");
    await expect.poll(() => input.isDisabled()).toBe(false);
    const answers = ["First answer.", "Second answer.", "Third answer."];
    for (const [i, answer] of answers.entries()) {
      stack.provider.push(answer);
      await input.fill(`Question ${i + 1}`);
      await input.press("Enter");
      await page
        .locator('#chat-log article[data-role="assistant"][data-state="final"]')
        .filter({ hasText: answer })
        .waitFor();
      await expect.poll(() => page.locator("#chat-abort").isDisabled()).toBe(true);
    }
    expect(sends).toHaveLength(answers.length);

    await page.getByLabel("New session key").fill("agent:main:elsewhere");
    await page.getByRole("button", { name: "Open" }).click();
    await expect
      .poll(() => page.locator("#chat-session").textContent())
      .toBe("agent:main:elsewhere");
    await expect.poll(() => page.locator("#chat-log article").count()).toBe(0);

    expect(await holding(page, sends)).toEqual({});
    expect(errors).toEqual([]);
  });

  it("forgets the live state of sessions deleted while the page is open", async () => {
    const { page, errors } = await openDashboard();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const keys = ["agent:main:leak-a", "agent:main:leak-b", "agent:main:leak-c"];
    for (const [i, sessionKey] of keys.entries()) {
      stack.provider.push(`Answer ${i}.`);
      const idempotencyKey = `leak-run-${i}`;
      await client.request("chat.send", { sessionKey, message: `Hello ${i}`, idempotencyKey });
      await client.waitEvent("chat", (p) => p.runId === idempotencyKey && p.state === "final");
    }
    const rows = page.locator("#sessions-list li[data-session-key^='agent:main:leak-']");
    await expect.poll(() => rows.count()).toBe(keys.length);
    // The page saw their runs: it shows their status.
    await expect.poll(() => holding(page, keys)).toHaveProperty("live");

    for (const key of keys) {
      const res = await client.request("sessions.delete", { key });
      expect(res.deleted).toBe(true);
    }
    await expect.poll(() => rows.count()).toBe(0);

    expect(await holding(page, keys)).toEqual({});
    expect(errors).toEqual([]);
  });
});
