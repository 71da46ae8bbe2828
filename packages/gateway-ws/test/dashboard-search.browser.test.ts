/**
 * The dashboard's message search, driven in a real headless Chromium against a real gateway
 * on 127.0.0.1 whose sessions were filled by real `chat.send` turns through the scripted
 * provider: type words, see the hits with those words marked, open a hit (its session,
 * scrolled to the message, marked), go back to the latest messages; and see that markup in a
 * message stays text.
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, openPage, type PageRecord } from "./browser/chromium.js";
import {
  closeClients,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();

const TRAVEL = "agent:main:travel";
const NOTES = "agent:main:notes";
const SCRATCH = "agent:main:scratch";
const BOOKING = "Book the train to Zürich for the conference, please";
const BOOKED = "Done: the train to Zurich leaves at 9:10.";
/** Filler turns after the booking: 2 + 2 × 29 = 60 messages in the travel session. */
const FILLER_TURNS = 29;
const LAST_ANSWER = `Filler answer ${FILLER_TURNS}`;
/** A message carrying markup that would load `/x` and run script if it were parsed. */
const MARKUP = `Remember the <img src=x onerror="document.title='pwned'"> zebra crossing`;

let stack: Stack;
let browser: Browser;
const pages: PageRecord[] = [];
let turn = 0;
/** The run id of the scratch session's last turn (the one taken back). */
let unpackRun = "";

/**
 * One real turn: `chat.send`, the scripted model answers `answer`, wait for its final.
 * Returns the run id.
 */
async function send(
  client: TestClient,
  sessionKey: string,
  message: string,
  answer: string,
): Promise<string> {
  stack.provider.push(answer);
  const runId = `search-turn-${++turn}`;
  await client.request("chat.send", { sessionKey, message, idempotencyKey: runId });
  await client.waitEvent("chat", (p) => p.runId === runId && p.state === "final");
  return runId;
}

beforeAll(async () => {
  stack = await startStack();
  const client = await TestClient.connect(stack.url, { token: TOKEN });
  await send(client, TRAVEL, BOOKING, BOOKED);
  for (let i = 1; i <= FILLER_TURNS; i++) {
    await send(client, TRAVEL, `Filler question ${i}`, `Filler answer ${i}`);
  }
  await send(client, NOTES, MARKUP, "Noted the zebra crossing.");
  await send(client, SCRATCH, "Pack the walrus costume", "Packed.");
  unpackRun = await send(client, SCRATCH, "Unpack the walrus costume", "Unpacked.");
  await client.close();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  for (const record of pages) await record.context.close().catch(() => undefined);
  await browser?.close();
  await closeClients();
  await stopStacks();
}, 30_000);

/** A logged-in dashboard in a fresh context; `queries` collects its `sessions.search` queries. */
async function openDashboard(): Promise<PageRecord & { queries: string[] }> {
  const record = await openPage(browser);
  pages.push(record);
  const queries: string[] = [];
  record.page.on("websocket", (socket) =>
    socket.on("framesent", ({ payload }) => {
      const text = String(payload);
      if (!text.includes('"sessions.search"')) return;
      const frame = JSON.parse(text) as { method?: string; params?: { query?: string } };
      if (frame.method === "sessions.search") queries.push(String(frame.params?.query));
    }),
  );
  await record.page.goto(`http://127.0.0.1:${stack.port}/`);
  await record.page.getByLabel("Gateway token").fill(TOKEN);
  await record.page.getByRole("button", { name: "Connect" }).click();
  await record.page.locator('#connection[data-state="connected"]').waitFor();
  return { ...record, queries };
}

/** Types `query` in the search box and presses Enter. */
async function search(page: Page, query: string): Promise<void> {
  const box = page.getByRole("searchbox", { name: "Search conversations" });
  await box.fill(query);
  await box.press("Enter");
}

function results(page: Page) {
  return page.getByRole("list", { name: "Search results" }).getByRole("listitem");
}

function searchStatus(page: Page) {
  return page.locator("#search-status");
}

/** Whether the element `selector` names lies wholly inside the chat log's visible area. */
function inChatView(page: Page, selector: string): Promise<boolean> {
  return page.evaluate(`(() => {
    const log = document.getElementById("chat-log").getBoundingClientRect();
    const el = document.querySelector(${JSON.stringify(selector)}).getBoundingClientRect();
    return el.top >= log.top && el.bottom <= log.bottom && el.height > 0;
  })()`);
}

describe("dashboard search in a real Chromium", () => {
  it("finds messages across sessions with the query's words marked, says when nothing matches or not every match is shown, and ignores a blank query", async () => {
    const record = await openDashboard();
    const { page } = record;
    const searchLandmark = page.getByRole("search", { name: "Search conversations" });
    expect(await searchLandmark.isVisible()).toBe(true);

    // Case and accents aside: "zurich TRAIN" finds "Zürich" and "Zurich".
    await search(page, "zurich TRAIN");
    await searchStatus(page).filter({ hasText: "2 results for “zurich TRAIN”." }).waitFor();
    expect(await page.getByRole("status").filter({ hasText: "2 results" }).count()).toBe(1);
    const hits = results(page);
    expect(await hits.count()).toBe(2);
    const asked = hits.filter({ has: page.locator('.search-role[data-role="user"]') });
    const answered = hits.filter({ has: page.locator('.search-role[data-role="assistant"]') });
    expect(await asked.getAttribute("data-session-key")).toBe(TRAVEL);
    expect(await asked.locator(".search-snippet").textContent()).toBe(BOOKING);
    expect(await asked.locator("mark").allTextContents()).toEqual(["train", "Zürich"]);
    expect(await asked.locator(".search-role").textContent()).toBe("You");
    expect(await asked.locator("time").count()).toBe(1);
    expect(await answered.locator(".search-snippet").textContent()).toBe(BOOKED);
    expect(await answered.locator("mark").allTextContents()).toEqual(["train", "Zurich"]);
    expect(await answered.locator(".session-title").textContent()).toBe(TRAVEL);
    // Each hit is a button: reachable with Tab, opened with Enter.
    expect(await hits.getByRole("button").count()).toBe(2);

    // Typing alone searches (after a pause); more matched than the 25 shown.
    await page.getByRole("searchbox", { name: "Search conversations" }).fill("filler");
    await searchStatus(page)
      .filter({ hasText: "25 results for “filler”. Not every match is shown" })
      .waitFor();
    expect(await hits.count()).toBe(25);
    expect(await hits.locator("mark").first().textContent()).toBe("Filler");

    await search(page, "quokka");
    await searchStatus(page).filter({ hasText: "No results for “quokka”." }).waitFor();
    expect(await page.getByRole("list", { name: "Search results" }).isHidden()).toBe(true);

    // Whitespace only: no search, no answer on screen.
    await search(page, "   ");
    expect(await searchStatus(page).textContent()).toBe("");
    expect(await page.getByRole("list", { name: "Search results" }).isHidden()).toBe(true);

    // The next search is answered; the blank one never reached the gateway.
    await search(page, "walrus");
    await searchStatus(page).filter({ hasText: "2 results for “walrus”." }).waitFor();
    await expect.poll(() => record.queries.includes("walrus")).toBe(true);
    expect(record.queries.filter((q) => q.trim() === "")).toEqual([]);
    expect(new Set(record.queries)).toEqual(
      new Set(["zurich TRAIN", "filler", "quokka", "walrus"]),
    );

    // Clear empties the box and the results.
    await page.getByRole("button", { name: "Clear" }).click();
    expect(await page.getByRole("searchbox", { name: "Search conversations" }).inputValue()).toBe(
      "",
    );
    expect(await searchStatus(page).textContent()).toBe("");
    expect(await page.getByRole("list", { name: "Search results" }).isHidden()).toBe(true);
    expect(record.errors).toEqual([]);
  });

  it("shows the gateway's error for a query it refuses, and keeps working", async () => {
    const { page, errors } = await openDashboard();
    const tooMany = Array.from({ length: 33 }, (_, i) => `word${i}`).join(" ");
    await search(page, tooMany);
    const alert = page.getByRole("alert").filter({ hasText: "Search failed" });
    await alert.waitFor();
    expect(await alert.textContent()).toContain("at most 32 are searched for");
    expect(await searchStatus(page).textContent()).toBe("");
    expect(await page.getByRole("list", { name: "Search results" }).isHidden()).toBe(true);

    await search(page, "walrus costume");
    await searchStatus(page).filter({ hasText: "2 results for “walrus costume”." }).waitFor();
    expect(await alert.isHidden()).toBe(true);
    expect(await page.locator('#connection[data-state="connected"]').count()).toBe(1);
    expect(errors).toEqual([]);
  });

  it("opens a hit's session scrolled to the message and marked, then goes back to the latest messages", async () => {
    const { page, errors } = await openDashboard();
    const log = page.getByRole("log", { name: "Conversation" });
    expect(await page.locator("#chat-session").textContent()).toBe("agent:main:main");

    await search(page, "zurich train");
    await searchStatus(page).filter({ hasText: "2 results" }).waitFor();
    const asked = results(page).filter({ has: page.locator('.search-role[data-role="user"]') });
    const messageId = await asked.getAttribute("data-message-id");
    expect(messageId).toBeTruthy();
    await asked.getByRole("button").click();

    // The travel session, at the page of 50 messages around the booking (its first message).
    const found = log.locator("article.bubble-found");
    await found.waitFor();
    expect(await page.locator("#chat-session").textContent()).toBe(TRAVEL);
    expect(
      await page
        .locator(`#sessions-list li[data-session-key="${TRAVEL}"] button`)
        .getAttribute("aria-current"),
    ).toBe("true");
    expect(await found.count()).toBe(1);
    expect(await found.getAttribute("data-message-id")).toBe(messageId);
    expect(await found.locator(".bubble-body").textContent()).toBe(BOOKING);
    expect(await found.locator(".bubble-body mark").allTextContents()).toEqual(["train", "Zürich"]);
    expect(await log.locator("article").count()).toBe(50);
    expect(await log.getByText(LAST_ANSWER, { exact: true }).count()).toBe(0);
    const context = page.locator("#chat-context-text");
    expect(await context.textContent()).toBe(
      "Showing the conversation around a search result; 10 newer messages are not shown.",
    );
    // In view (the log opened at its top, not at the newest message), and focused.
    await expect.poll(() => inChatView(page, "#chat-log article.bubble-found")).toBe(true);
    expect(await page.evaluate(`document.activeElement?.dataset.messageId`)).toBe(messageId);

    // Back to the live view: the newest messages, scrolled to the end, nothing marked.
    await page.getByRole("button", { name: "Back to latest messages" }).click();
    await log.getByText(LAST_ANSWER, { exact: true }).waitFor();
    expect(await page.locator("#chat-context").isHidden()).toBe(true);
    expect(await log.locator("article.bubble-found").count()).toBe(0);
    expect(await log.locator("article").count()).toBe(60);
    expect(await log.locator("article .bubble-body").last().textContent()).toBe(LAST_ANSWER);
    await expect.poll(() => inChatView(page, "#chat-log article:last-child")).toBe(true);
    expect(await inChatView(page, "#chat-log article:first-child")).toBe(false);

    // With the keyboard: arrow down from the box to a hit, Enter opens it.
    const box = page.getByRole("searchbox", { name: "Search conversations" });
    await box.focus();
    await box.press("ArrowDown");
    const firstHit = results(page).first();
    const firstId = await firstHit.getAttribute("data-message-id");
    expect(await page.evaluate(`document.activeElement?.closest("li")?.dataset.messageId`)).toBe(
      firstId,
    );
    await page.keyboard.press("Enter");
    await log.locator(`article.bubble-found[data-message-id="${firstId}"]`).waitFor();
    await expect.poll(() => inChatView(page, "#chat-log article.bubble-found")).toBe(true);
    expect(await page.locator("#chat-context").isVisible()).toBe(true);
    expect(errors).toEqual([]);
  });

  it("says so when a hit's message is gone, and shows the session's latest messages instead", async () => {
    const { page, errors } = await openDashboard();
    await search(page, "unpack");
    await searchStatus(page).filter({ hasText: "2 results for “unpack”." }).waitFor();
    const asked = results(page).filter({ has: page.locator('.search-role[data-role="user"]') });
    const messageId = await asked.getAttribute("data-message-id");

    // Another client takes the last turn back: its messages can no longer be shown.
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("sessions.rewind", { sessionKey: SCRATCH, entryId: unpackRun });
    await client.close();

    await asked.getByRole("button").click();
    const alert = page.getByRole("alert").filter({ hasText: "Could not open that message" });
    await alert.waitFor();
    expect(await alert.textContent()).toContain(`no message ${messageId} in ${SCRATCH}`);
    expect(await page.locator("#chat-session").textContent()).toBe(SCRATCH);
    const log = page.getByRole("log", { name: "Conversation" });
    await log.getByText("Packed.", { exact: true }).waitFor();
    expect(await log.locator("article .bubble-body").allTextContents()).toEqual([
      "Pack the walrus costume",
      "Packed.",
    ]);
    expect(await page.locator("#chat-context").isHidden()).toBe(true);
    expect(await log.locator("article.bubble-found").count()).toBe(0);
    expect(errors).toEqual([]);
  });

  it("shows markup in a message as text, in the hits and in the opened conversation", async () => {
    const { page, errors, requests } = await openDashboard();
    await search(page, "zebra");
    await searchStatus(page).filter({ hasText: "2 results for “zebra”." }).waitFor();
    const asked = results(page).filter({ has: page.locator('.search-role[data-role="user"]') });
    expect(await asked.locator(".search-snippet").textContent()).toBe(MARKUP);
    expect(await asked.locator("mark").allTextContents()).toEqual(["zebra"]);
    expect(await page.locator("#search-results img, #search-results [onerror]").count()).toBe(0);

    await asked.getByRole("button").click();
    const found = page.locator("#chat-log article.bubble-found");
    await found.waitFor();
    expect(await found.locator(".bubble-body").textContent()).toBe(MARKUP);
    expect(await page.locator("#chat-log img, #chat-log [onerror]").count()).toBe(0);

    // Nothing was loaded from it and nothing ran.
    expect(requests.filter((url) => new URL(url).pathname === "/x")).toEqual([]);
    expect(await page.title()).toBe("BeamClaw dashboard");
    expect(errors).toEqual([]);
  });
});
