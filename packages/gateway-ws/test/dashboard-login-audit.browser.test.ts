/**
 * The dashboard's token handling in a real headless Chromium against a real gateway on
 * 127.0.0.1: the token never lands in a URL, even when it is submitted before the page's
 * script has loaded, and logging out forgets it along with everything the gateway showed.
 */
import type { Browser, Route } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, openPage, type PageRecord } from "./browser/chromium.js";
import {
  CRON_JOB,
  type DashboardGateway,
  startDashboardGateway,
  TOKEN,
} from "./browser/fixture.js";

const TOKEN_KEY = "beamclaw.gateway.token";

let gw: DashboardGateway;
let browser: Browser;
const pages: PageRecord[] = [];

beforeAll(async () => {
  gw = await startDashboardGateway();
  browser = await launchChromium();
}, 30_000);

afterAll(async () => {
  for (const record of pages) await record.context.close().catch(() => undefined);
  await browser?.close();
  await gw?.stop();
}, 30_000);

describe("dashboard token handling in a real Chromium", () => {
  it("does not put a token submitted before its script has loaded into the URL", async () => {
    const record = await openPage(browser);
    pages.push(record);
    const { page } = record;
    // Hold the first load of app.js back: the form is on screen, its script not yet running.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let first = true;
    await page.route("**/app.js", async (route: Route) => {
      if (first) {
        first = false;
        await held;
      }
      await route.continue();
    });
    // A module script holds DOMContentLoaded back, not the form: it is usable once parsed.
    await page.goto(`${gw.baseUrl}/`, { waitUntil: "commit" });
    await page.locator("#token").fill(TOKEN);
    await page.locator("#token").press("Enter");
    release();
    await page.waitForLoadState("load");
    expect(page.url()).toBe(`${gw.baseUrl}/`);
    expect(record.requests.filter((url) => url.includes(TOKEN))).toEqual([]);
    // Once the script runs, the same token logs in as usual.
    await page.locator("#login-submit:enabled").waitFor();
    await page.getByRole("button", { name: "Connect" }).click();
    await page.locator('#connection[data-state="connected"]').waitFor();
    expect(page.url()).toBe(`${gw.baseUrl}/`);
    expect(record.requests.filter((url) => url.includes(TOKEN))).toEqual([]);
    expect(record.errors).toEqual([]);
  });

  it("forgets the token and what the gateway showed on Log out", async () => {
    const record = await openPage(browser);
    pages.push(record);
    const { page } = record;
    await page.goto(`${gw.baseUrl}/`);
    await page.getByLabel("Gateway token").fill(TOKEN);
    await page.getByRole("button", { name: "Connect" }).click();
    await page.locator('#connection[data-state="connected"]').waitFor();
    await page.locator(`#cron-body tr[data-job-id="${CRON_JOB.id}"]`).waitFor();
    await page
      .getByRole("list", { name: "Connected clients" })
      .getByText("BeamClaw dashboard")
      .first()
      .waitFor();

    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("Gateway token").waitFor();
    expect(await page.evaluate(`sessionStorage.getItem(${JSON.stringify(TOKEN_KEY)})`)).toBeNull();
    expect(await page.locator("#token").inputValue()).toBe("");
    // Nothing of the gateway's data stays in the page, shown or hidden.
    const text = String(await page.evaluate("document.body.textContent"));
    expect(text).not.toContain(CRON_JOB.name);
    expect(await page.locator("#cron-body tr").count()).toBe(0);
    expect(await page.locator("#presence-list li").count()).toBe(0);
    // Reloading the tab does not log back in.
    await page.reload();
    await page.getByLabel("Gateway token").waitFor();
    expect(await page.locator("#app-view").isHidden()).toBe(true);
    expect(record.errors).toEqual([]);
  });
});
